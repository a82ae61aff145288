-- Compares this tree with another checkout of aliocr (its core built:
-- `make build/aliocr/core.so` there), side by side on one emulator of this
-- tree: sequential calls per second of interface one (the median of
-- interleaved runs) and instructions per call (callgrind, the difference of
-- a 1,200-call and a 200-call run), with AppCode and with signature auth.
--
--   git worktree add /tmp/old <rev> && make -C /tmp/old build/aliocr/core.so
--   lua5.4 bench/compare.lua /tmp/old [ROUNDS] [CALLS]
--
-- Needs valgrind (scripts/bootstrap bench installs what make bench needs).
local root = arg[0]:match("^(.*)/bench/[^/]*$") or "."
package.path = root .. "/bench/?.lua;" .. package.path
local common = require("common")

local other = assert(arg[1], "usage: lua5.4 bench/compare.lua OTHER_TREE [ROUNDS] [CALLS]")
local rounds, calls = tonumber(arg[2] or "7"), tonumber(arg[3] or "15000")
local trees = { other = other, this = root }
local contenders = { { "other", "appcode" }, { "this", "appcode" }, { "other", "signed" }, { "this", "signed" } }

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  p:close()
  return out
end

-- One contender's program: N sequential calls with that tree's aliocr.
local PROGRAM = [[
local root, mode, url, image, n = arg[1], arg[2], arg[3], arg[4], tonumber(arg[5])
package.path = root .. "/lua/?.lua;" .. package.path
package.cpath = root .. "/build/?.so;" .. package.cpath
local aliocr = require("aliocr")
local clock = require("aliocr.core").monotonic
local opts = mode == "signed" and { app_key = arg[6], app_secret = arg[7] } or {}
opts.urls, opts.retries = { advanced = url }, 0
local client = aliocr.new(opts)
local start = clock()
for _ = 1, n do assert(client:recognize(image)) end
io.write(string.format("calls %d seconds %.6f\n", n, clock() - start))
client:close()
]]
local program = os.tmpname()
local f = assert(io.open(program, "w"))
f:write(PROGRAM)
f:close()

local emu = common.start_emulator(root, "bench-appcode")
emu.image = emu.images .. "sample.png"
local ENV = "ALIOCR_APPCODE=bench-appcode "
local function cmd(c, n)
  return "lua5.4 " .. common.q(program) .. " " .. common.q(trees[c[1]]) .. " " .. c[2] ..
    " " .. common.q(emu.advanced) .. " " .. common.q(emu.image) .. " " .. n .. " " .. common.APP_KEY .. " " ..
    common.APP_SECRET
end

local ok, err = pcall(function()
  local rates = {}
  for r = 1, rounds do
    for k = 0, #contenders - 1 do
      local c = contenders[(r + k - 1) % #contenders + 1]   -- each round in another order
      local out = sh(ENV .. cmd(c, calls))
      local n, s = out:match("calls (%d+) seconds ([%d.]+)")
      assert(n, out)
      local key = c[1] .. " " .. c[2]
      rates[key] = rates[key] or {}
      table.insert(rates[key], n / s)
    end
  end
  for _, c in ipairs(contenders) do
    local key = c[1] .. " " .. c[2]
    local list = rates[key]
    table.sort(list)
    local function collected(n)
      local out = sh(ENV .. "valgrind --tool=callgrind --callgrind-out-file=/dev/null " .. cmd(c, n))
      return assert(tonumber(out:match("Collected : (%d+)")), out)
    end
    local per = (collected(1200) - collected(200)) / 1000
    io.write(string.format("%-14s %8.0f calls/s (median of %d)  %8.0f instructions per call\n", key,
      list[math.floor((#list + 1) / 2)], #list, per))
  end
end)
emu.stop()
os.remove(program)
assert(ok, err)
