-- bin/aliocr --max-billed N: at most N calls billed in the run; the other
-- images are not sent and are reported as errors of kind budget.
local cjson = require("cjson")
local cli = require("helpers.cli")
local emulator = require("helpers.emulator")
local sh = require("helpers.sh")
local util = require("helpers.util")

describe("bin/aliocr --max-billed", function()
  local emu, dir

  setup(function()
    dir = sh.tmpdir()
    emu = emulator.start({ "--port", "0", "--appcode", "demo" })
  end)
  teardown(function()
    util.stop_clean(emu)
    os.execute("rm -rf " .. sh.q(dir))
  end)

  it("bills at most N: the next is refused (kind budget), the rest not sent, and the run exits 1", function()
    local args = { "-o", "json", "--max-billed", "2", "-c", "1" }
    for i = 1, 5 do args[#args + 1] = emu.image .. "?n=" .. i end
    local r = cli.run(dir, cli.env_for(emu), args)
    assert.equal(1, r.status, r.err)
    local kinds = {}
    for line in r.out:gmatch("[^\n]+") do
      local o = cjson.decode(line)
      kinds[#kinds + 1] = o.result and "ok" or o.error.kind
      if o.error then assert.is_false(o.error.billed) end
    end
    -- The first refusal stops the run: the rest are not handed over.
    assert.same({ "ok", "ok", "budget", "cancelled", "cancelled" }, kinds)
    assert.equal(2, emu:settled_ledger().total.billed)
  end)

  it("refuses a bad N as a usage error, before anything is sent", function()
    for _, bad in ipairs({ "-1", "1.5", "x" }) do
      local r = cli.run(dir, cli.env_for(emu), { "--max-billed=" .. bad, emu.image })
      assert.equal(2, r.status)
      assert.matches("%-%-max%-billed must be a whole number >= 0", r.err)
    end
  end)
end)
