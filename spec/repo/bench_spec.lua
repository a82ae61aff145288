-- The benchmarks' programs keep working (make bench runs them at full size;
-- here each runs a few calls against an emulator): the C libcurl limit, the
-- sequential contenders, the batch, and the result building. No timing is
-- asserted: the figures are for `make bench` to compare.
local emulator = require("helpers.emulator")
local sh = require("helpers.sh")
local util = require("helpers.util")

local function lua54_only()
  if _VERSION ~= "Lua 5.4" or type(jit) == "table" then
    pending("the benchmarks run under lua5.4 (under the lua5.4 run of the suite)")
    return true
  end
end

describe("benchmark programs", function()
  local emu, env

  setup(function()
    emu = emulator.start({ "--port", "0", "--appcode", "bench", "--app-key", "bench-key:bench-secret", "--no-fetch",
      "--log-max", "0" })
    env = "ALIOCR_APPCODE=bench "
  end)
  teardown(function() util.stop_clean(emu) end)

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
end)
