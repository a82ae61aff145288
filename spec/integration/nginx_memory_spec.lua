-- A worker's memory inside nginx whatever the server sends (issue 19, item
-- 1): an answer whose head never ends must cost the worker no more than a
-- bounded head, and the call must fail as libcurl's does, by its limits, not
-- by a timeout long after `timeout`. The server is the emulator's raw mode
-- (the exact bytes, streamed, never held whole); the worker is the only
-- child of the test nginx's master, and its memory is read from
-- /proc/<pid>/status: its peak (VmHWM, after resetting it through
-- clear_refs) where the kernel allows that, else its size after the call.
local cjson = require("cjson")
local socket = require("socket")
local aliocr = require("aliocr")
local emulator = require("helpers.emulator")
local nginx = require("helpers.nginx")
local outcome = require("helpers.outcome")
local sh = require("helpers.sh")
local util = require("helpers.util")

local MiB = 1024 * 1024
local MAX_RESPONSE_BYTES = 1 * MiB
-- What a bounded head may take beyond max_response_bytes.
local HEAD_ALLOWANCE = 1 * MiB
local TIMEOUT = 5
-- Far more than any head limit: a line that never ends.
local ENDLESS = 128 * MiB

local function via_json(v) return cjson.decode(cjson.encode(v)) end

--- A field of /proc/<pid>/status, in bytes (the kernel gives kB).
local function status_bytes(pid, field)
  local text = sh.read_all("/proc/" .. pid .. "/status")
  local kb = text:match(field .. ":%s*(%d+) kB")
  assert(kb, "no " .. field .. " in /proc/" .. pid .. "/status")
  return tonumber(kb) * 1024
end

--- Resets the peak RSS of `pid` (VmHWM); true when the kernel allowed it.
local function reset_peak(pid)
  local f = io.open("/proc/" .. pid .. "/clear_refs", "w")
  if not f then return false end
  local ok = f:write("5")
  ok = f:close() and ok
  return ok and true or false
end

if not util.nginx_only_here() then
  describe("inside nginx, a worker's memory", function() pending(util.NGINX_ONLY) end)
  return
end

describe("inside nginx, a worker's memory", function()
  local emu, ngx_

  setup(function()
    emu = emulator.start({ "--port", "0", "--https-port", "0", "--appcode", "demo" })
    ngx_ = nginx.start(nginx.test_config(emu.ca_file), { ALIOCR_APPCODE = "demo", ALIOCR_ENDPOINT = emu.endpoint })
  end)

  teardown(function()
    if ngx_ then assert.same({}, ngx_:stop()) end
    util.stop_clean(emu)
  end)

  local function worker()
    local pids = {}
    for p in sh.capture("pgrep -P " .. ngx_.pid .. " 2>/dev/null"):gmatch("%d+") do pids[#pids + 1] = p end
    assert.equal(1, #pids, "the test nginx should have one worker")
    return pids[1]
  end

  local CT = "Content-Type: application/json; charset=UTF-8"
  for _, case in ipairs({
    -- libcurl caps one header at 100 KB: transport OUT_OF_MEMORY, 200, billed.
    { "a header line that never ends (128 MiB without LF)",
      data = "HTTP/1.1 200 OK\r\n" .. CT .. "\r\nX-Long: ", byte = "A" },
    -- libcurl: transport RECV_ERROR (too long hexadecimal number), 200, billed.
    { "an endless chunk-size line (128 MiB of hex digits)",
      data = "HTTP/1.1 200 OK\r\n" .. CT .. "\r\nTransfer-Encoding: chunked\r\n\r\n", byte = "1" },
  }) do
    it("item 1: " .. case[1] .. ": the worker stays under its size before plus max_response_bytes plus " ..
       "1 MiB, and the call fails as libcurl's does", function()
      local client = { appcode = "demo", endpoint = emu.endpoint, timeout = TIMEOUT, retries = 0,
        max_response_bytes = MAX_RESPONSE_BYTES }
      local rule = { mode = "raw", status = 200, api = "advanced", data = case.data,
        fill = { bytes = ENDLESS, byte = case.byte } }
      local url = emu.image

      -- The worker after a few normal calls (the modules loaded, the pool
      -- and the caches warm).
      emu:reset()
      for _ = 1, 3 do
        local warm = ngx_:post("/case", { client = client, kind = "recognize", url = url })
        assert.equal(1, warm.result and warm.result.ok, cjson.encode(warm))
      end
      local pid = worker()
      local before = status_bytes(pid, "VmRSS")
      local peak_known = reset_peak(pid)

      emu:reset()
      emu:fault(rule)
      local started = socket.gettime()
      local inside = ngx_:post("/case", { client = client, kind = "recognize", url = url }, 120)
      local took = socket.gettime() - started
      local inside_ledger = emu:settled_ledger()
      local after = status_bytes(pid, "VmRSS")
      local peak = peak_known and status_bytes(pid, "VmHWM") or after
      assert.equal(pid, worker(), "the worker was replaced")

      -- libcurl, for the expected outcome.
      emu:reset()
      emu:fault(rule)
      local c = aliocr.new(client)
      local res, err = c:recognize(url)
      local outside = via_json(outcome.of(res, err, c:stats()))
      c:close()
      local outside_ledger = emu:settled_ledger()

      local limit = before + MAX_RESPONSE_BYTES + HEAD_ALLOWANCE
      local function mb(n) return string.format("%.1f MiB", n / MiB) end
      print(string.format("# %s: worker %s before, %s %s, %s after (limit %s); the call took %.2f s",
        case[1], mb(before), peak_known and "peak" or "no peak known,", mb(peak), mb(after), mb(limit), took))
      assert.is_true(peak < limit, "the worker grew from " .. mb(before) .. " to " .. mb(peak) ..
        " (limit " .. mb(limit) .. ")")
      assert.is_true(after < limit, "the worker stayed at " .. mb(after))
      -- A functional check of the deadline, not of speed: libcurl fails at
      -- once; a call that ends only by a timeout ends near TIMEOUT at least.
      assert.is_true(took < TIMEOUT + 1.5, "the call ended after " .. took .. " s")
      assert.equal("resty", inside.transport)
      local message = inside.message
      inside.transport, inside.message = nil, nil
      assert.same(outside, inside, "inside nginx: " .. tostring(message) .. "; libcurl: " .. tostring(err and err.msg))
      assert.same(outside_ledger, inside_ledger)
    end)
  end
end)
