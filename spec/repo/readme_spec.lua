-- The README and the emulator's README say what the code does: the quick
-- start runs as it says, the emulator README's curl examples, run against a
-- fresh emulator, print what it shows, and every option of
-- `bin/aliocr-emulator --help` is in its options table.
local emulator = require("helpers.emulator")
local sh = require("helpers.sh")

local readme = sh.read_all("README.md")
local emulator_readme = sh.read_all("emulator/README.md")

-- The examples of the emulator README's section "Calling it with curl":
-- each `curl` line with the lines it shows under it.
local function examples()
  local section = emulator_readme:match("\n## Calling it with curl\n(.-)\n## ")
  assert(section, "emulator/README.md has no section 'Calling it with curl'")
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

  it("has curl examples (in emulator/README.md) that print what it shows, against a fresh emulator", function()
    local list = examples()
    assert.truthy(#list >= 5, "expected the emulator README's curl examples")
    for _, ex in ipairs(list) do
      assert.truthy(#ex.expect > 0, "no output shown for: " .. ex.command)
      local out = sh.capture("E=" .. sh.q(emu.endpoint) .. "; " .. ex.command .. " 2>&1")
      local lines = {}
      for line in out:gmatch("[^\r\n]+") do lines[#lines + 1] = line end
      -- Each line shown must come, in order, among the lines printed (curl -i
      -- prints more headers than the page shows).
      local at = 1
      for _, want in ipairs(ex.expect) do
        local p = pattern(want)
        while at <= #lines and not lines[at]:find(p) do at = at + 1 end
        assert.truthy(at <= #lines, ex.command .. "\nshould print: " .. want .. "\nprinted:\n" .. out)
        at = at + 1
      end
    end
  end)

  it("has a quick start that reads a sample with the Tesseract backend, as it says", function()
    local section = readme:match("\n## Quick start\n(.-)\n## ")
    assert.truthy(section, "README has no Quick start")
    local launch = section:match("```sh\n(bin/aliocr%-emulator [^\n]*)\n```")
    local script = section:match("```lua\n(.-)```")
    assert.truthy(launch and script, "the Quick start lacks its emulator command or its script")
    local _, lines = script:gsub("\n", "")
    assert.truthy(lines <= 12, "a quick start of " .. lines .. " lines")
    -- The same launch on free ports, and the script pointed at it.
    local argv = {}
    for word in launch:gsub("^bin/aliocr%-emulator ", ""):gmatch("%S+") do argv[#argv + 1] = word end
    for i = 2, #argv do if argv[i - 1] == "--port" then argv[i] = "0" end end
    local tess = emulator.start(argv)
    local ok, err = pcall(function()
      local path = os.tmpname()
      sh.write_all(path, (script:gsub("http://127%.0%.0%.1:8080", tess.endpoint)))
      local out, status = sh.run("LUA_PATH='lua/?.lua;;' LUA_CPATH='build/?.so;;' lua5.4 " .. sh.q(path))
      os.remove(path)
      assert.equal(0, status, out)
      assert.truthy(out:find("图片文字识别的本地模拟器\n今天天气很好", 1, true), out)
      assert.truthy(out:find("\n43\t39\t428\t34\t图片文字识别的本地模拟器\n", 1, true), out)
    end)
    assert.same({ processes = {}, files = {} }, tess:stop())
    assert(ok, err)
  end)

  it("reads in ten minutes, and links the rest of the docs", function()
    local _, words = readme:gsub("%S+", "")
    assert.truthy(words <= 2000, "a README of " .. words .. " words (at most 2000: ten minutes)")
    for _, section in ipairs({ "## The two commands", "## Quick start", "## The Lua API", "## Errors and billing" }) do
      assert.truthy(readme:find("\n" .. section, 1, true), "README lacks the section " .. section)
    end
    local pages = { "emulator/README.md" }
    for name in sh.capture("ls docs"):gmatch("[^\n]+") do pages[#pages + 1] = "docs/" .. name end
    assert.truthy(#pages >= 5, "expected the pages of docs/")
    for _, page in ipairs(pages) do
      assert.truthy(readme:find("](" .. page .. ")", 1, true), "README does not link " .. page)
    end
  end)

  it("lists every option of bin/aliocr-emulator --help (in emulator/README.md)", function()
    local help = sh.capture(emulator.bin .. " --help")
    local table_rows = emulator_readme:match("\n## Options\n(.-)\n## ")
    assert.truthy(table_rows, "emulator/README.md has no section 'Options'")
    local n = 0
    for opt in help:gmatch("%s(%-%-[%w%-]+)") do
      if opt ~= "--help" then
        n = n + 1
        assert.truthy(table_rows:find("`" .. opt, 1, true), opt .. " is not in emulator/README.md's options table")
      end
    end
    assert.truthy(n >= 15)
  end)
end)
