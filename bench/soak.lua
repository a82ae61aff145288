-- The soak benchmark (`make soak`; not a timed test): CALLS calls (200,000
-- by default) through one client against the emulator, one in ten meeting
-- an injected fault (503s, 666s, bodies that are not JSON, ok 0, resets,
-- truncated answers, throttling), every few blocks a batch instead of single
-- calls. Prints resident size after warm-up and at the end, open file
-- descriptors before and after, and the client's stats next to the
-- emulator's ledger; exits 1 when they disagree, descriptors leak or the
-- resident size grows by 2 MiB or more after warm-up.
--
--   lua5.4 bench/soak.lua [CALLS]
local root = arg[0]:match("^(.*)/bench/[^/]*$") or "."
package.path = root .. "/lua/?.lua;" .. package.path
package.cpath = root .. "/build/?.so;" .. package.cpath
package.path = root .. "/bench/?.lua;" .. package.path

local cjson = require("cjson")
local common = require("common")
local aliocr = require("aliocr")
local clock = require("aliocr.core").monotonic

local CALLS = tonumber(arg[1] or "200000")
local BLOCK = 100            -- calls per block; the first tenth of each meets a fault
local APPCODE = "soak-appcode"

local rss_kb, open_fds = common.rss_kb, common.open_fds

local emu = common.start_emulator(root, APPCODE)

local function control(method, path, value) return common.control(emu, method, path, value) end

local modes = {
  { mode = "service_unavailable" }, { mode = "vendor_error", msg = "图片下载失败" }, { mode = "not_json" },
  { mode = "ok0", msg = "识别失败" }, { mode = "reset_after_headers" }, { mode = "truncate" },
  { mode = "throttled_app" }, { mode = "internal_error" }, { mode = "html" }, { mode = "async_service" },
}

local ok, err = pcall(function()
  local image = emu.images .. "sample.png"
  local client = aliocr.new({ appcode = APPCODE, endpoint = emu.endpoint, retries = 2, retry_delay = 0.0005,
    retry_max_delay = 0.002, concurrency = 8 })
  local fds_before = open_fds()
  local started = clock()
  local rss_warm, done, blocks = nil, 0, 0
  while done < CALLS do
    blocks = blocks + 1
    local n = math.min(BLOCK, CALLS - done)
    local rule = {}
    for k, v in pairs(modes[blocks % #modes + 1]) do rule[k] = v end
    rule.times = math.max(1, math.floor(n / 10))
    control("POST", "/faults", rule)
    if blocks % 5 == 0 then
      local urls = {}
      for i = 1, n do urls[i] = image end
      client:batch("recognize", urls)
    else
      for _ = 1, n do client:recognize(image) end
    end
    control("DELETE", "/faults")
    done = done + n
    if not rss_warm and done >= 10000 then rss_warm = rss_kb() end
  end
  local seconds = clock() - started
  collectgarbage()
  collectgarbage()
  local rss_end = rss_kb()
  local stats = client:stats()
  client:close()
  local fds_after = open_fds()
  local ledger = control("GET", "/ledger").credentials[APPCODE]
  print(string.format("calls %d in %.1f s (%.0f/s), %d blocks", CALLS, seconds, CALLS / seconds, blocks))
  print(string.format("resident size: %.1f MiB after warm-up (10,000 calls), %.1f MiB at the end",
    (rss_warm or rss_end) / 1024, rss_end / 1024))
  print(string.format("open descriptors: %d before, %d after close", fds_before, fds_after))
  print(string.format("client: %d calls, %d attempts, %d billed, %d not billed, %d unknown; errors %s",
    stats.requests, stats.attempts, stats.billed, stats.not_billed, stats.unknown, cjson.encode(stats.errors)))
  print(string.format("emulator ledger: %d requests, %d billed", ledger.requests, ledger.billed))
  local problems = {}
  if stats.requests ~= CALLS then problems[#problems + 1] = "calls counted " .. stats.requests end
  if stats.billed ~= ledger.billed then problems[#problems + 1] = "billed differs from the ledger" end
  if stats.attempts ~= ledger.requests then problems[#problems + 1] = "attempts differ from the ledger's requests" end
  if fds_after > fds_before then problems[#problems + 1] = "descriptors leaked" end
  if rss_warm and rss_end - rss_warm >= 2048 then problems[#problems + 1] = "resident size grew by 2 MiB or more" end
  if #problems > 0 then error(table.concat(problems, "; "), 0) end
  print("ok: stats equal the ledger, no descriptor leaked, resident size flat")
end)
emu.stop()
if not ok then
  io.stderr:write("soak: ", tostring(err), "\n")
  os.exit(1)
end
