-- The rate limiter's benchmark (part of `make bench`): PROCS separate
-- client processes (bench/rate_client.lua), each a batch of N images at
-- concurrency CONC, against one emulator that lets the app make RATE calls
-- per second (403 Throttled by APP Flow Control, not billed, beyond that).
-- Run without a limiter, then with rate_limit = { adaptive = true }: the
-- aggregate throughput (images read per second, the first start to the last
-- end) and the throttled share of the requests the emulator's ledger
-- counted. Prints a table (markdown) on stdout.
--
--   lua5.4 bench/rate.lua   (RATE_PROCS, RATE_N, RATE_CONC, RATE_LIMIT,
--                            RATE_MODES="none adaptive" change them)
local root = arg[0]:match("^(.*)/bench/[^/]*$") or "."
package.path = root .. "/lua/?.lua;" .. package.path
package.cpath = root .. "/build/?.so;" .. package.cpath
package.path = root .. "/bench/?.lua;" .. package.path

local cjson = require("cjson")
local common = require("common")
local core = require("aliocr.core")

local PROCS = tonumber(os.getenv("RATE_PROCS") or "4")
local N = tonumber(os.getenv("RATE_N") or "300")
local CONC = tonumber(os.getenv("RATE_CONC") or "10")
local RATE = tonumber(os.getenv("RATE_LIMIT") or "20")
local MODES = os.getenv("RATE_MODES") or "none adaptive"
local APPCODE = "bench-appcode"
local q = common.q

local function say(...) io.stderr:write(...) io.stderr:write("\n") end

local function ledger(emu)
  local t = common.control(emu, "GET", "/ledger").total
  return t.requests or 0, t.billed or 0
end

-- One run of PROCS processes in MODE: their JSON lines, and the seconds
-- from the first start to the last end.
local function run(emu, mode)
  local started = core.monotonic()
  local pipes = {}
  for i = 1, PROCS do
    local cmd = "ALIOCR_APPCODE=" .. APPCODE .. " lua5.4 " .. q(root .. "/bench/rate_client.lua") .. " " ..
      q(emu.advanced) .. " " .. q(mode) .. " " .. N .. " " .. CONC .. " 2>&1"
    pipes[i] = assert(io.popen(cmd, "r"))
  end
  local out = {}
  for i, p in ipairs(pipes) do
    local text = p:read("a")
    p:close()
    local ok, t = pcall(cjson.decode, text:match("{.*}") or "")
    if not ok then error("client " .. i .. " printed: " .. text) end
    out[i] = t
  end
  return out, core.monotonic() - started
end

local emu = common.start_emulator(root, APPCODE)
local ok, err = pcall(function()
  common.control(emu, "POST", "/settings", { rate = RATE })
  print(("%d processes, each a batch of %d at concurrency %d, against an emulator limited to %d calls/s"):format(
    PROCS, N, CONC, RATE))
  print("")
  print("| limiter | read | failed | throughput | of the limit | requests | throttled | delayed | waited |")
  print("|---|---|---|---|---|---|---|---|---|")
  for mode in MODES:gmatch("%S+") do
    -- The next run starts in a fresh second of the emulator's window.
    core.sleep(1.1)
    local r0, b0 = ledger(emu)
    local out, seconds = run(emu, mode)
    local r1, b1 = ledger(emu)
    local read, failed, delayed, waited = 0, 0, 0, 0
    for _, t in ipairs(out) do
      read, failed = read + t.ok, failed + t.failed
      delayed, waited = delayed + t.delayed, waited + t.waited
    end
    local requests, billed = r1 - r0, b1 - b0
    local throttled = requests - billed
    local rate = read / seconds
    print(("| %s | %d | %d | %.1f/s | %.2f | %d | %d (%.1f %%) | %d | %.0f s |"):format(
      mode == "none" and "none" or mode == "adaptive" and "adaptive" or ("qps " .. mode),
      read, failed, rate, rate / RATE, requests, throttled, 100 * throttled / math.max(requests, 1), delayed, waited))
    say(("rate: %s: %.1f s, %s"):format(mode, seconds, cjson.encode(out)))
  end
end)
emu.stop()
if not ok then error(err, 0) end
