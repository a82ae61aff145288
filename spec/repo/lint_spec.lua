-- The Lua code is luacheck-clean, and the Lua layer keeps to syntax that
-- every target (5.1, 5.3, 5.4, LuaJIT) parses.
local run = require("helpers.sh").run

describe("lint", function()
  it("luacheck finds nothing in lua/, emulator/, spec/, examples/, bench/, bin/aliocr, scripts/make-samples",
    function()
    local out, status = run("luacheck --no-color -q lua emulator spec examples bin/aliocr scripts/make-samples bench")
    assert.equal(0, status, out)
  end)

  it("lua/ parses under Lua 5.1 and LuaJIT as well as 5.4", function()
    for _, lua in ipairs({ "lua5.1", "luajit", "lua5.4" }) do
      local out, status = run("for f in $(find lua -name '*.lua'); do " .. lua ..
        " -e \"assert(loadfile('$f'))\" || exit 1; done")
      assert.equal(0, status, lua .. ": " .. out)
    end
  end)

  it("the emulator's Lua parses under LuaJIT, which runs it inside nginx", function()
    local out, status = run("for f in emulator/lua/aliocr_emu/*.lua; do " ..
      "luajit -e \"assert(loadfile('$f'))\" || exit 1; done")
    assert.equal(0, status, out)
  end)
end)
