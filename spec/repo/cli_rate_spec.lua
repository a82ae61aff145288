-- bin/aliocr --qps N and --adaptive-rate: the attempts paced (the emulator
-- sees them 1/N s apart at least), a summary of what the limiter delayed on
-- stderr, and bad values refused as usage errors before anything is sent.
local cli = require("helpers.cli")
local emulator = require("helpers.emulator")
local sh = require("helpers.sh")
local util = require("helpers.util")

describe("bin/aliocr --qps and --adaptive-rate", function()
  local emu, dir

  setup(function()
    dir = sh.tmpdir()
    emu = emulator.start({ "--port", "0", "--appcode", "demo" })
  end)
  teardown(function()
    util.stop_clean(emu)
    os.execute("rm -rf " .. sh.q(dir))
  end)
  before_each(function() emu:reset() end)

  local function arrivals() return emu:arrivals() end

  it("--qps 5 paces the images whatever the concurrency, and says what waited", function()
    local args = { "--qps", "5", "-c", "4" }
    for i = 1, 4 do args[#args + 1] = emu.image .. "?n=" .. i end
    local r = cli.run(dir, cli.env_for(emu), args)
    assert.equal(0, r.status, r.err)
    util.assert_paced(arrivals(), 5, 4)
    assert.matches("aliocr: rate limit: 3 attempts waited [%d.]+ s in all for a token, 0 throttled answers, " ..
      "5%.0 calls/s at the end", r.err)
  end)

  it("--qps with --adaptive-rate: the adaptive rate never goes above it", function()
    local args = { "--qps", "4", "--adaptive-rate", "-c", "4" }
    for i = 1, 4 do args[#args + 1] = emu.image .. "?n=" .. i end
    local r = cli.run(dir, cli.env_for(emu), args)
    assert.equal(0, r.status, r.err)
    util.assert_paced(arrivals(), 4, 4)
  end)

  it("--adaptive-rate slows down after the emulator throttles, and every image gets through", function()
    emu:settings({ rate = 3 })
    local args = { "--adaptive-rate", "-c", "6", "--retries", "10" }
    for i = 1, 12 do args[#args + 1] = emu.image .. "?n=" .. i end
    local r = cli.run(dir, cli.env_for(emu), args)
    assert.equal(0, r.status, r.err)
    local throttled = tonumber(r.err:match("(%d+) throttled answers?,"))
    assert.truthy(throttled, r.err)
    local total = emu:settled_ledger().total
    assert.same({ 12, 12 + throttled }, { total.billed, total.requests })
  end)

  it("refuses a bad rate as a usage error, before anything is sent; --help tells both", function()
    for _, bad in ipairs({ "0", "-1", "x", "nan" }) do
      local r = cli.run(dir, cli.env_for(emu), { "--qps=" .. bad, emu.image })
      assert.equal(2, r.status)
      assert.matches("^aliocr: %-%-qps must be a positive number, got '" .. bad:gsub("%-", "%%-") .. "'", r.err)
    end
    for _, big in ipairs({ "2e6", "1e999" }) do
      local r = cli.run(dir, cli.env_for(emu), { "--qps=" .. big, emu.image })
      assert.equal(2, r.status)
      assert.matches("^aliocr: %-%-qps must be at most 1000000", r.err)
    end
    assert.equal(0, #emu:requests())
    local help = cli.run(dir, cli.env_for(emu), { "--help" })
    assert.matches("%-%-qps", help.out)
    assert.matches("%-%-adaptive%-rate", help.out)
  end)
end)
