-- The examples run as documented against the emulator.
local emulator = require("helpers.emulator")
local sh = require("helpers.sh")
local util = require("helpers.util")

describe("examples", function()
  local emu, env

  setup(function()
    emu = emulator.start({ "--port", "0", "--appcode", "demo", "--latency-ms", "50" })
    env = "env -i PATH=" .. sh.q(os.getenv("PATH")) .. " LUA_PATH='lua/?.lua;;' LUA_CPATH='build/?.so;;'" ..
      " ALIOCR_APPCODE=demo ALIOCR_ENDPOINT=" .. sh.q(emu.endpoint) .. " "
  end)

  teardown(function() util.stop_clean(emu) end)

  before_each(function() emu:reset() end)

  it("basic.lua prints the text of one image", function()
    local out, status = sh.run(env .. "lua5.4 examples/basic.lua " .. sh.q(emu.image))
    assert.equal(0, status, out)
    assert.equal("冰心散文精选自从太平洋舟中，银花世界之夜以后，再不曾见有团圆*****到了酣畅处，自己觉得是个羽\n", out)
    out, status = sh.run(env .. "lua5.4 examples/basic.lua " .. sh.q(emu.images .. "missing.png"))
    assert.equal(1, status)
    assert.matches("aliocr api error", out)
  end)

  it("batch.lua prints every image in order and the summary", function()
    local urls = { emu.image, emu.images .. "missing.png", emu.image .. "?n=3" }
    -- Only stdout: the progress line goes to stderr.
    local out, status = sh.run("(" .. env .. "lua5.4 examples/batch.lua " ..
      table.concat({ sh.q(urls[1]), sh.q(urls[2]), sh.q(urls[3]) }, " ") .. " 2>/dev/null)")
    assert.equal(0, status, out)
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.equal(4, #lines, out)
    for i = 1, 3 do assert.equal(i .. "\t" .. urls[i], lines[i]:match("^(%d+\t[^\t]+)")) end
    assert.matches("error: aliocr api error", lines[2])
    assert.matches("^3 images: 2 read, 1 failed, 2 billed, ", lines[4])
    assert.equal(2, emu:ledger().total.billed)
  end)

  it("game_loop.lua drives its jobs with poll(0) and reports its worst frame time", function()
    local out, status = sh.run(env .. "lua5.4 examples/game_loop.lua " .. sh.q(emu.image) .. " 6")
    assert.equal(0, status, out)
    local frames, jobs, failed, worst = out:match(
      "^(%d+) frames, (%d+) jobs %((%d+) failed%), worst frame time in aliocr: ([%d.]+) ms\n$")
    assert.truthy(frames, out)
    assert.equal("6", jobs)
    assert.equal("0", failed)
    assert.truthy(tonumber(frames) >= 26) -- a job every 5th frame, then the last answers
    -- The bound the example states: a frame's share of aliocr (submit and
    -- poll(0)) stays below the 16.7 ms of a 60 fps frame. A poll that waited
    -- for an answer (the emulator takes 50 ms) would break it.
    assert.truthy(tonumber(worst) < 1000 / 60, out)
    assert.equal(6, emu:ledger().total.billed)
  end)
end)
