-- The benchmarks' programs keep working (make bench runs them at full size;
-- here each runs a few calls against an emulator): the C libcurl limit, the
-- sequential contenders over HTTP and HTTPS, the batch, the result
-- building, the new-connection runs (bench/tls.lua, with the emulator
-- closing every connection of one AppCode), the floor they are compared to
-- (openssl s_time), and the count of a batch's connections (bench/conns.lua).
-- No timing is asserted: the figures are for `make bench` to compare.
local emulator = require("helpers.emulator")
local sh = require("helpers.sh")
local util = require("helpers.util")

local function lua54_only()
  if _VERSION ~= "Lua 5.4" or type(jit) == "table" then
    pending("the benchmarks run under lua5.4 (under the lua5.4 run of the suite)")
    return true
  end
end

package.path = "bench/?.lua;" .. package.path
local common = require("common")

describe("benchmark programs", function()
  local emu, env, bundle

  setup(function()
    emu = emulator.start({ "--port", "0", "--https-port", "0", "--appcode", "bench", "--appcode",
      common.CLOSE_APPCODE, "--app-key", "bench-key:bench-secret", "--no-fetch", "--log-max", "0" })
    env = "ALIOCR_APPCODE=bench "
    bundle = os.tmpname()
    common.write_ca_bundle(emu, bundle)
  end)
  teardown(function()
    if bundle then os.remove(bundle) end
    util.stop_clean(emu)
  end)

  it("the C limit and the sequential contenders make their calls, all billed", function()
    if lua54_only() then return end
    local out, status = sh.run("make -s build/bench/limit")
    assert.equal(0, status, out)
    local before = emu:ledger().total.billed
    local cmds = {
      "build/bench/limit " .. sh.q(emu.advanced) .. " " .. sh.q(emu.image) .. " 25",
      "lua5.4 bench/seq.lua aliocr " .. sh.q(emu.advanced) .. " " .. sh.q(emu.image) .. " 25 10",
      "lua5.4 bench/seq.lua aliocr_signed " .. sh.q(emu.advanced) .. " " .. sh.q(emu.image) .. " 25",
      "lua5.4 bench/seq.lua luasocket " .. sh.q(emu.advanced) .. " " .. sh.q(emu.image) .. " 25",
    }
    for _, cmd in ipairs(cmds) do
      out, status = sh.run(env .. cmd)
      assert.equal(0, status, cmd .. "\n" .. out)
      assert.matches("calls 25 seconds [%d.]+", out)
    end
    assert.matches("rss 10 %d+", select(1, sh.run(env .. cmds[2])))
    assert.equal(before + 125, emu:ledger().total.billed)
    -- Without an AppCode the limit refuses to run rather than call anonymously.
    out, status = sh.run("env -u ALIOCR_APPCODE build/bench/limit " .. sh.q(emu.advanced) .. " x 1")
    assert.equal(2, status, out)
  end)

  it("the HTTPS contenders make their calls on one connection, trusting the bundle of the system store and the CA",
    function()
    if lua54_only() then return end
    local out, status = sh.run("make -s build/bench/limit")
    assert.equal(0, status, out)
    -- The bundle is the system store with the emulator's CA after it.
    local text, system, ca = sh.read_all(bundle), sh.read_all(common.SYSTEM_CA), sh.read_all(emu.ca_file)
    assert.is_true(#system > 1000 and #ca > 100)
    assert.equal(system, text:sub(1, #system))
    assert.equal(ca, text:sub(-#ca))
    local url = emu.https .. "/ocr/advanced"
    local before, conns = emu:ledger().total.billed, emu:connections().https
    for _, cmd in ipairs({ "build/bench/limit " .. sh.q(url) .. " " .. sh.q(emu.image) .. " 25",
      "lua5.4 bench/seq.lua aliocr " .. sh.q(url) .. " " .. sh.q(emu.image) .. " 25" }) do
      out, status = sh.run(env .. "BENCH_CA_FILE=" .. sh.q(bundle) .. " " .. cmd)
      assert.equal(0, status, cmd .. "\n" .. out)
      assert.matches("calls 25 seconds [%d.]+", out)
    end
    assert.equal(before + 50, emu:ledger().total.billed)
    assert.equal(conns + 2, emu:connections().https)
    -- Without the bundle the system store cannot verify the test CA.
    out, status = sh.run(env .. "lua5.4 bench/seq.lua aliocr " .. sh.q(url) .. " " .. sh.q(emu.image) .. " 1")
    assert.not_equal(0, status, out)
    assert.matches("certificate", out)
  end)

  it("the new-connection runs open one connection a call for the closing AppCode, one in all for the other",
    function()
    if lua54_only() then return end
    common.close_every_connection(emu, "bench", emu.image)
    finally(function() emu:ctl("DELETE", "/faults") end)
    local url = emu.https .. "/ocr/advanced"
    local function tls(appcode, face, n, ca, fail)
      local before = emu:connections().https
      local out, status = sh.run("ALIOCR_APPCODE=" .. appcode .. " lua5.4 bench/tls.lua " .. face .. " " ..
        sh.q(url) .. " " .. sh.q(emu.image) .. " " .. sh.q(ca) .. " " .. n .. (fail and " fail" or ""))
      assert.equal(0, status, out)
      local first, calls, seconds, failed = out:match("^first ([%d.]+) calls (%d+) seconds ([%d.]+) failed (%d+)\n$")
      assert.is_truthy(first, out)
      assert.equal(n, tonumber(calls))
      assert.is_true(tonumber(first) > 0 and tonumber(seconds) > 0)
      return common.connections(emu).https - before, tonumber(failed)
    end
    local before = emu:ledger().total.billed
    assert.same({ 9, 0 }, { tls(common.CLOSE_APPCODE, "blocking", 8, bundle) })
    assert.same({ 6, 0 }, { tls(common.CLOSE_APPCODE, "submit", 5, bundle) })
    assert.same({ 1, 0 }, { tls("bench", "blocking", 20, bundle) })
    assert.same({ 1, 0 }, { tls("bench", "submit", 20, bundle) })
    assert.equal(before + 9 + 6 + 21 + 21, emu:ledger().total.billed)
    -- The system store (no CA file): every handshake fails the check, no
    -- request goes out.
    assert.same({ 0, 4 }, { tls(common.CLOSE_APPCODE, "blocking", 3, "-", true) })
    assert.equal(before + 57, emu:ledger().total.billed)
    -- A run that expects the check to fail and gets an answer stops.
    local out, status = sh.run("ALIOCR_APPCODE=bench lua5.4 bench/tls.lua blocking " .. sh.q(url) .. " " ..
      sh.q(emu.image) .. " " .. sh.q(bundle) .. " 1 fail")
    assert.not_equal(0, status, out)
    assert.matches("expected a failed certificate check", out)
  end)

  it("openssl s_time gives the floor of a handshake's client CPU on the emulator's listener", function()
    if lua54_only() then return end
    local e = { port_https = tonumber(emu.https:match(":(%d+)$")), ca_file = emu.ca_file }
    local t = common.s_time(e, "-new")
    assert.is_true(t.connections > 0)
    assert.is_true(t.user_ms > 0 and t.cpu_ms >= t.user_ms, require("cjson").encode(t))
  end)

  it("the connection count of two batches is the emulator's, over HTTP and HTTPS", function()
    if lua54_only() then return end
    for _, scheme in ipairs({ "http", "https" }) do
      local url = scheme == "https" and emu.https .. "/ocr/advanced" or emu.advanced
      local before = emu:connections()[scheme]
      local out, status = sh.run(env .. "lua5.4 bench/conns.lua " .. sh.q(url) .. " " .. sh.q(emu.image) .. " " ..
        sh.q(scheme == "https" and bundle or "-") .. " " .. sh.q(emu.control) .. " 12 6")
      assert.equal(0, status, out)
      local first, second = out:match("^first (%d+) second (%d+)\n$")
      assert.is_truthy(first, out)
      first, second = tonumber(first), tonumber(second)
      assert.is_true(first >= 1 and first <= 12, out)
      assert.equal(emu:connections()[scheme] - before, first + second)
    end
  end)

  it("the soak benchmark finds the client's stats equal to the ledger over faulted calls", function()
    if lua54_only() then return end
    local out, status = sh.run("lua5.4 bench/soak.lua 600")
    assert.equal(0, status, out)
    assert.matches("calls 600 in", out)
    assert.matches("ok: stats equal the ledger, no descriptor leaked, resident size flat", out)
  end)

  it("the batch runs every call at its concurrency and the result building compares the same body", function()
    if lua54_only() then return end
    local out, status = sh.run(env .. "lua5.4 bench/batch.lua " .. sh.q(emu.advanced) .. " " .. sh.q(emu.image) ..
      " 60 7")
    assert.equal(0, status, out)
    assert.matches("calls 60 seconds [%d.]+ billed 60", out)
    out, status = sh.run("lua5.4 bench/build.lua 200 3")
    assert.equal(0, status, out)
    assert.matches("^aliocr [%d.]+ cjson [%d.]+ bytes %d+\n$", out)
  end)

  it("the rate benchmark runs its client processes without and with the adaptive limiter", function()
    if lua54_only() then return end
    local out, status = sh.run("RATE_PROCS=2 RATE_N=12 RATE_CONC=3 RATE_LIMIT=4 lua5.4 bench/rate.lua 2>/dev/null")
    assert.equal(0, status, out)
    assert.matches("2 processes, each a batch of 12 at concurrency 3, against an emulator limited to 4 calls/s", out)
    local none = out:match("\n| none | (%d+) | (%d+) |")
    local read, failed, requests, throttled = out:match(
      "\n| adaptive | (%d+) | (%d+) | [%d.]+/s | [%d.]+ | (%d+) | (%d+) ")
    assert.truthy(none, out)
    -- Every image read or failed; the adaptive clients read them all.
    assert.same({ 24, 0 }, { tonumber(read), tonumber(failed) })
    assert.equal(tonumber(requests), tonumber(read) + tonumber(throttled))
  end)
end)
