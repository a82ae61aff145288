-- aliocr-scm-1.rockspec: every file it names exists, every Lua module of
-- lua/ is in it, and `luarocks make` (Debian's LuaRocks) into a scratch tree
-- installs a module that a script requires and uses against the emulator.
local emulator = require("helpers.emulator")
local sh = require("helpers.sh")
local util = require("helpers.util")

local q, run = sh.q, sh.run

local ROCKSPEC = "aliocr-scm-1.rockspec"

local function load_rockspec()
  local env = {}
  local chunk = assert(loadfile(ROCKSPEC, "t", env))
  if setfenv then setfenv(chunk, env) end -- Lua 5.1 ignores loadfile's env
  chunk()
  return env
end

describe("the rockspec", function()
  it("names files that exist, and every Lua module of lua/", function()
    local spec = load_rockspec()
    assert.equal("aliocr", spec.package)
    local named = {}
    for name, m in pairs(spec.build.modules) do
      local files = type(m) == "string" and { m } or m.sources
      for _, f in ipairs(files) do
        assert.truthy(io.open(f), name .. ": " .. f .. " does not exist")
        named[f] = true
      end
    end
    for f in sh.capture("find lua -name '*.lua' | sort"):gmatch("[^\n]+") do
      assert.truthy(named[f], f .. " is not in the rockspec")
    end
    for f in sh.capture("ls src/*.c"):gmatch("[^\n]+") do
      assert.truthy(named[f], f .. " is not in the rockspec")
    end
    for _, f in pairs(spec.build.install.bin) do assert.truthy(io.open(f), f) end
    for _, d in ipairs(spec.build.copy_directories) do
      assert.equal(0, select(2, run("test -d " .. q(d))), d)
    end
  end)

  it("finding 18: names as a dependency the rock of every module that bin/aliocr and lua/ require", function()
    -- The rock of each module from outside the project that the code may
    -- require; a module missing here fails the spec until it is added.
    local ROCK_OF = { cjson = "lua-cjson", ["cjson.safe"] = "lua-cjson", argparse = "argparse" }
    -- Lua's own libraries (and LuaJIT's), and nginx's (ngx, resty.*), which
    -- no rock provides.
    local BUILTIN = { string = true, table = true, math = true, io = true, os = true, coroutine = true,
      debug = true, package = true, utf8 = true, bit32 = true, bit = true, jit = true, ffi = true, ngx = true }
    local spec = load_rockspec()
    local rocks = {}
    for _, dep in ipairs(spec.dependencies) do rocks[dep:match("^%s*([^%s<>=~]+)")] = true end

    local files = { "bin/aliocr" }
    for f in sh.capture("find lua -name '*.lua' | sort"):gmatch("[^\n]+") do files[#files + 1] = f end
    local seen = 0
    for _, f in ipairs(files) do
      local src = sh.read_all(f)
      -- require("m"), require "m", require 'm', require("m").new()
      for name in src:gmatch("%f[%w_]require%s*%(?%s*[\"']([^\"']+)[\"']") do
        seen = seen + 1
        local own = name == "aliocr" or name:find("^aliocr%.")
        local exempt = BUILTIN[name] or name:find("^resty%.") or name:find("^ngx%.")
        if not own and not exempt then
          local rock = ROCK_OF[name]
          assert.truthy(rock, f .. " requires '" .. name .. "', whose rock this spec does not know: add it to ROCK_OF")
          assert.truthy(rocks[rock], f .. " requires '" .. name .. "', but the rockspec's dependencies lack '" ..
            rock .. "' (they are: " .. table.concat(spec.dependencies, ", ") .. ")")
        end
      end
    end
    assert.truthy(seen >= 10, "found only " .. seen .. " requires")
  end)

  it("installs with luarocks make into a scratch tree; the module works from there", function()
    if _VERSION ~= "Lua 5.4" or type(jit) == "table" then
      return pending("built once, for Lua 5.4 (under the lua5.4 run of the suite)")
    end
    local tmp, emu = sh.tmpdir(), nil
    -- (busted keeps one finally per test)
    finally(function()
      os.execute("rm -rf " .. q(tmp))
      util.stop_clean(emu)
    end)
    -- A copy of the sources: luarocks builds in the directory it is given.
    local out, status = run("mkdir " .. q(tmp .. "/src") .. " && cp -R " .. ROCKSPEC ..
      " lua src bin examples " .. q(tmp .. "/src"))
    assert.equal(0, status, out)
    -- lua-cjson comes from Debian (lua-cjson), which LuaRocks does not see.
    out, status = run("cd " .. q(tmp .. "/src") .. " && luarocks --lua-version 5.4 --tree " ..
      q(tmp .. "/tree") .. " make --deps-mode none " .. ROCKSPEC)
    assert.equal(0, status, out)
    assert.matches("aliocr scm%-1 is now installed", out)

    emu = emulator.start({ "--port", "0", "--appcode", "demo" })
    local tree = tmp .. "/tree"
    local env = string.format("LUA_PATH=%s LUA_CPATH=%s ALIOCR_APPCODE=demo ALIOCR_ENDPOINT=%s",
      q(tree .. "/share/lua/5.4/?.lua;" .. tree .. "/share/lua/5.4/?/init.lua;;"),
      q(tree .. "/lib/lua/5.4/?.so;;"), q(emu.endpoint))
    out, status = run("cd / && " .. env .. " lua5.4 -e " .. q([[
      local aliocr = require("aliocr")
      print(package.searchpath("aliocr.core", package.cpath))
      local client = aliocr.new({})
      local res = assert(client:handwriting(]] .. string.format("%q", emu.image) .. [[))
      print(res.billed, #res.lines > 0, res.lines[1].position.top ~= nil)
      client:close()]]))
    assert.equal(0, status, out)
    assert.equal(tree .. "/lib/lua/5.4/aliocr/core.so\ntrue\ttrue\ttrue\n", out)
    assert.equal(1, emu:ledger().total.billed)

    -- The command line tool, through LuaRocks' wrapper.
    out, status = run("cd / && " .. env .. " " .. q(tree .. "/bin/aliocr") .. " " .. q(emu.image))
    assert.equal(0, status, out)
    assert.matches("冰心", out)
  end)
end)
