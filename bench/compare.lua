-- Compares this tree with another checkout of aliocr (its core built:
-- `make build/aliocr/core.so` there), side by side on one emulator of this
-- tree:
--
-- - sequential calls per second of interface one (the median of interleaved
--   runs) and instructions per call (callgrind, the difference of a
--   1,200-call and a 200-call run), with AppCode over HTTP, with signature
--   auth over HTTP, and with AppCode over HTTPS (ca_file: the system CA
--   store plus the emulator's test CA);
-- - the client CPU of a new TLS connection after the first (bench/tls.lua,
--   blocking calls; the median of interleaved rounds), against openssl
--   s_time -new on the same listener;
-- - the connections a batch of 100 at concurrency 50 opens on a fresh
--   client, then a second batch on it (bench/conns.lua), HTTP and HTTPS.
--
--   git worktree add /tmp/old <rev> && make -C /tmp/old build/aliocr/core.so
--   lua5.4 bench/compare.lua /tmp/old [ROUNDS] [CALLS]
--
-- Needs valgrind and openssl (scripts/bootstrap bench installs what make
-- bench needs).
local root = arg[0]:match("^(.*)/bench/[^/]*$") or "."
package.path = root .. "/bench/?.lua;" .. package.path
local common = require("common")

local other = assert(arg[1], "usage: lua5.4 bench/compare.lua OTHER_TREE [ROUNDS] [CALLS]")
local rounds, calls = tonumber(arg[2] or "7"), tonumber(arg[3] or "15000")
local trees = { other = other, this = root }
local contenders = { { "other", "appcode" }, { "this", "appcode" }, { "other", "signed" }, { "this", "signed" },
  { "other", "https" }, { "this", "https" } }
local q = common.q

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  p:close()
  return out
end

local function median(list)
  local s = {}
  for i, v in ipairs(list) do s[i] = v end
  table.sort(s)
  return s[math.floor((#s + 1) / 2)]
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
if mode == "https" then opts.ca_file = arg[8] end
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
local bundle = os.tmpname()

local emu = common.start_emulator(root, "bench-appcode")
emu.image = emu.images .. "sample.png"
local ENV = "ALIOCR_APPCODE=bench-appcode "
local function cmd(c, n)
  return "lua5.4 " .. q(program) .. " " .. q(trees[c[1]]) .. " " .. c[2] ..
    " " .. q(c[2] == "https" and emu.advanced_https or emu.advanced) .. " " .. q(emu.image) .. " " .. n .. " " ..
    common.APP_KEY .. " " .. common.APP_SECRET .. " " .. q(bundle)
end

local function sequential()
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
    local function collected(n)
      local out = sh(ENV .. "valgrind --tool=callgrind --callgrind-out-file=/dev/null " .. cmd(c, n))
      return assert(tonumber(out:match("Collected : (%d+)")), out)
    end
    local per = (collected(1200) - collected(200)) / 1000
    io.write(string.format("%-14s %8.0f calls/s (median of %d)  %8.0f instructions per call\n", key,
      median(rates[key]), #rates[key], per))
  end
end

-- bench/tls.lua of a tree: CPU ms per call, on a new connection each
-- (common.CLOSE_APPCODE) or on a kept one.
local function tls_call_ms(tree, new, n)
  local out = sh("BENCH_TREE=" .. q(trees[tree]) .. " ALIOCR_APPCODE=" .. (new and common.CLOSE_APPCODE or
    "bench-appcode") .. " lua5.4 " .. q(root .. "/bench/tls.lua") .. " blocking " .. q(emu.advanced_https) .. " " ..
    q(emu.image) .. " " .. q(bundle) .. " " .. n)
  local got, seconds = out:match("calls (%d+) seconds ([%d.]+)")
  assert(got, out)
  return seconds * 1000 / n
end

local function new_connections()
  common.close_every_connection(emu, "bench-appcode", emu.image)
  -- Calls per run: about half a second of CPU each, from a short first run.
  local n = {}
  for tree in pairs(trees) do n[tree] = math.max(25, math.min(1000, math.floor(500 / tls_call_ms(tree, true, 10)))) end
  local order = { "s_time", "other", "this" }
  local runs = { s_time = {}, other = {}, this = {} }
  local r3 = math.max(3, math.floor(rounds / 2))
  for r = 1, r3 do
    for k = 0, #order - 1 do
      local what = order[(r + k - 1) % #order + 1]
      if what == "s_time" then
        table.insert(runs.s_time, common.s_time(emu, "-new").cpu_ms)
      else
        table.insert(runs[what], tls_call_ms(what, true, n[what]) - tls_call_ms(what, false, 2000))
      end
    end
  end
  common.control(emu, "DELETE", "/faults")
  local floor = median(runs.s_time)
  io.write(string.format("new TLS connection after the first, client CPU ms (median of %d; openssl s_time -new " ..
    "%.3f):\n", r3, floor))
  for _, tree in ipairs({ "other", "this" }) do
    local ms = median(runs[tree])
    io.write(string.format("  %-5s %8.3f ms, %.2f x s_time (%d connections a run)\n", tree, ms, ms / floor, n[tree]))
  end
end

local function batch_connections()
  common.control(emu, "POST", "/settings", { latency_ms = 20 })
  io.write("connections opened by a batch of 100 at concurrency 50 on a fresh client, then a second batch:\n")
  for _, tree in ipairs({ "other", "this" }) do
    local line = {}
    for _, scheme in ipairs({ "http", "https" }) do
      local out = sh("BENCH_TREE=" .. q(trees[tree]) .. " " .. ENV .. "lua5.4 " .. q(root .. "/bench/conns.lua") ..
        " " .. q(scheme == "https" and emu.advanced_https or emu.advanced) .. " " .. q(emu.image) .. " " ..
        q(scheme == "https" and bundle or "-") .. " " .. q(emu.control) .. " 100 50")
      local first, second = out:match("first (%d+) second (%d+)")
      assert(first, out)
      line[#line + 1] = string.format("%s %s, %s", scheme:upper(), first, second)
    end
    io.write(string.format("  %-5s %s\n", tree, table.concat(line, "; ")))
  end
  common.control(emu, "POST", "/settings", { latency_ms = 0 })
end

local ok, err = pcall(function()
  common.write_ca_bundle(emu, bundle)
  sequential()
  new_connections()
  batch_connections()
end)
emu.stop()
os.remove(program)
os.remove(bundle)
assert(ok, err)
