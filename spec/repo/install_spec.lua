-- `make install PREFIX=DIR` gives a standard tree: with LUA_PATH and
-- LUA_CPATH pointed there, require("aliocr") works, and the installed
-- emulator runs from DIR/bin.
local emulator = require("helpers.emulator")

local run = require("helpers.sh").run

describe("make install", function()
  local prefix

  setup(function()
    prefix = require("helpers.sh").tmpdir()
    local out, status = run("make --no-print-directory install PREFIX='" .. prefix .. "'")
    assert.equal(0, status, out)
  end)

  teardown(function() os.execute("rm -rf '" .. prefix .. "'") end)

  it("puts the Lua module and the C core where LUA_PATH and LUA_CPATH find them", function()
    assert.truthy(io.open(prefix .. "/share/lua/5.4/aliocr.lua"))
    assert.truthy(io.open(prefix .. "/lib/lua/5.4/aliocr/core.so"))
    -- Every Lua file of lua/ (aliocr/url.lua among them), at its place.
    for f in require("helpers.sh").capture("find lua -name '*.lua' | sort"):gmatch("[^\n]+") do
      assert.truthy(io.open(prefix .. "/share/lua/5.4/" .. f:sub(5)), f .. " is not installed")
    end
    local env = string.format("LUA_PATH='%s/share/lua/5.4/?.lua;;' LUA_CPATH='%s/lib/lua/5.4/?.so;;' ",
      prefix, prefix)
    local out, status = run(env .. "lua5.4 -e 'local a = require(\"aliocr\"); " ..
      "print(a._VERSION); print(a.versions().curl); print(package.searchpath(\"aliocr.core\", package.cpath))'")
    assert.equal(0, status, out)
    local version, curl, core = out:match("^([^\n]+)\n([^\n]+)\n([^\n]+)\n$")
    assert.matches("^aliocr %d+%.%d+%.%d+$", version)
    -- The core runs with the libcurl it was built against.
    local dev = run("curl-config --version"):match("libcurl (%S+)")
    assert.equal(dev, curl)
    assert.equal(prefix .. "/lib/lua/5.4/aliocr/core.so", core)
  end)

  it("lets a plain lua5.4 script run the DESIGN.md examples against the emulator", function()
    local emu = emulator.start({ "--port", "0", "--appcode", "demo-code", "--app-key", "demo-key:demo-secret" })
    local script = prefix .. "/design_example.lua"
    require("helpers.sh").write_all(script, [[
local aliocr = require("aliocr")
local image = os.getenv("IMAGE")
local client = aliocr.new{ appcode = "demo-code", endpoint = os.getenv("ENDPOINT"), timeout = 10 }
local res, err = client:recognize(image, { show = "1" })
assert(res, tostring(err))
print("recognize", res.ok, res.msg, #res.lines, res.lines[1].words, res.status, res.billed)
res, err = client:handwriting(image)
assert(res, tostring(err))
print("handwriting", #res.lines, res.lines[1].words, res.lines[1].position.top)
res, err = client:recognize(os.getenv("ENDPOINT") .. "/images/missing.png")
print("error", res, aliocr.is_error(err), err.kind, err.status, err.billed)
local signed = aliocr.new{ app_key = "demo-key", app_secret = "demo-secret", signature_method = "HmacSHA1" }
res = assert(signed:recognize(image))
print("signed", res.billed)
local s = client:stats()
print("stats", s.requests, s.billed, s.not_billed)
client:close()
client:close()
]])
    local env = string.format("LUA_PATH='%s/share/lua/5.4/?.lua;;' LUA_CPATH='%s/lib/lua/5.4/?.so;;' " ..
      "ENDPOINT='%s' IMAGE='%s' ALIOCR_ENDPOINT='%s' ", prefix, prefix, emu.endpoint, emu.image, emu.endpoint)
    local out, status = run("cd / && " .. env .. "lua5.4 " .. script)
    local left = emu:stop()
    assert.equal(0, status, out)
    assert.equal(table.concat({
      "recognize\t1\t查询成功\t3\t冰心散文精选\t200\ttrue",
      "handwriting\t4\t拇指云软件\t41",
      "error\tnil\ttrue\tapi\t666\tfalse",
      "signed\ttrue",
      "stats\t3\t2\t1",
    }, "\n") .. "\n", out)
    assert.same({ processes = {}, files = {} }, left)
  end)

  it("installs the command line tool, which runs with the installed module", function()
    local env = string.format("LUA_PATH='%s/share/lua/5.4/?.lua;;' LUA_CPATH='%s/lib/lua/5.4/?.so;;' ",
      prefix, prefix)
    local out, status = run("cd / && " .. env .. prefix .. "/bin/aliocr --help")
    assert.equal(0, status, out)
    assert.matches("^Usage: aliocr", out)
    -- The tool is the module aliocr.cli (and aliocr/cli/*.lua), installed:
    -- the same help as the source tree's, and its exit statuses.
    assert.equal((run("bin/aliocr --help")), out)
    out, status = run("cd / && " .. env .. prefix .. "/bin/aliocr --concurrency 0 http://a/b.png")
    assert.equal(2, status)
    assert.equal("aliocr: --concurrency must be a whole number >= 1, got '0'\nTry 'aliocr --help'.\n", out)
  end)

  it("exports nothing from the C core but luaopen_aliocr_core", function()
    local out = run("nm -D --defined-only '" .. prefix .. "/lib/lua/5.4/aliocr/core.so'")
    local exported = {}
    for name in out:gmatch("%x+ [TDB] (%S+)") do exported[#exported + 1] = name end
    assert.same({ "luaopen_aliocr_core" }, exported)
  end)

  it("installs for every runtime: LUA_VERSION=5.3 and 5.1, and install-luajit", function()
    local cases = {
      { "install LUA_VERSION=5.3", "5.3", "lua5.3" },
      { "install LUA_VERSION=5.1", "5.1", "lua5.1" },
      { "install-luajit", "5.1", "luajit" },
    }
    for _, c in ipairs(cases) do
      local target, version, lua = c[1], c[2], c[3]
      local tree = require("helpers.sh").tmpdir()
      local out, status = run("make --no-print-directory " .. target .. " PREFIX='" .. tree .. "'")
      assert.equal(0, status, out)
      local env = string.format("LUA_PATH='%s/share/lua/%s/?.lua;;' LUA_CPATH='%s/lib/lua/%s/?.so;;' ",
        tree, version, tree, version)
      out, status = run("cd / && " .. env .. lua .. " -e 'local a = require(\"aliocr\"); " ..
        "print(a._VERSION, package.loaded[\"aliocr.core\"] ~= nil)'")
      os.execute("rm -rf '" .. tree .. "'")
      assert.equal(0, status, target .. ": " .. out)
      assert.matches("^aliocr %d+%.%d+%.%d+\ttrue\n$", out)
    end
  end)

  it("installs an emulator that runs from PREFIX/bin", function()
    local bin = prefix .. "/bin/aliocr-emulator"
    local saved = emulator.bin
    emulator.bin = bin
    local ok, emu = pcall(emulator.start, { "--port", "0", "--appcode", "demo" })
    emulator.bin = saved
    assert.is_true(ok, emu)
    local res = emu:call("advanced")
    local left = emu:stop()
    assert.equal(200, res.status)
    assert.same({ processes = {}, files = {} }, left)
  end)
end)
