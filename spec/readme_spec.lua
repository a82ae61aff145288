-- The README says what the code does: its curl examples, run against a
-- fresh emulator, print what the README shows, and every option of
-- `bin/aliocr-emulator --help` is in its options table.
local emulator = require("helpers.emulator")
local sh = require("helpers.sh")

local readme = sh.read_all("README.md")

-- The examples of the section "Calling it with curl": each `curl` line with
-- the lines the README shows under it.
local function examples()
  local section = readme:match("### Calling it with curl\n(.-)\n###")
  assert(section, "README has no section 'Calling it with curl'")
  local list = {}
  for block in section:gmatch("```sh\n(.-)```") do
    for line in block:gmatch("[^\n]+") do
      if line:find("^curl ") then
        list[#list + 1] = { command = line, expect = {} }
      elseif list[#list] then
        table.insert(list[#list].expect, line)
      end
    end
  end
  return list
end

-- A README output line as a pattern: "..." stands for anything.
local function pattern(line)
  local parts = {}
  for piece in (line .. "..."):gmatch("(.-)%.%.%.") do
    parts[#parts + 1] = piece:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")
  end
  return "^" .. table.concat(parts, ".-") .. "%s*$"
end

describe("README", function()
  local emu

  setup(function() emu = emulator.start({ "--port", "0", "--appcode", "demo" }) end)
  teardown(function() assert.same({ processes = {}, files = {} }, emu:stop()) end)

  it("has curl examples that print what it shows, against a fresh emulator", function()
    local list = examples()
    assert.truthy(#list >= 5, "expected the README's curl examples")
    for _, ex in ipairs(list) do
      assert.truthy(#ex.expect > 0, "no output shown for: " .. ex.command)
      local out = sh.capture("E=" .. sh.q(emu.endpoint) .. "; " .. ex.command .. " 2>&1")
      local lines = {}
      for line in out:gmatch("[^\r\n]+") do lines[#lines + 1] = line end
      -- Each line shown must come, in order, among the lines printed (curl -i
      -- prints more headers than the README shows).
      local at = 1
      for _, want in ipairs(ex.expect) do
        local p = pattern(want)
        while at <= #lines and not lines[at]:find(p) do at = at + 1 end
        assert.truthy(at <= #lines, ex.command .. "\nshould print: " .. want .. "\nprinted:\n" .. out)
        at = at + 1
      end
    end
  end)

  it("lists every option of bin/aliocr-emulator --help", function()
    local help = sh.capture(emulator.bin .. " --help")
    local table_rows = readme:match("### Options\n(.-)\n###")
    assert.truthy(table_rows)
    local n = 0
    for opt in help:gmatch("%s(%-%-[%w%-]+)") do
      if opt ~= "--help" then
        n = n + 1
        assert.truthy(table_rows:find("`" .. opt, 1, true), opt .. " is not in the README's options table")
      end
    end
    assert.truthy(n >= 15)
  end)
end)
