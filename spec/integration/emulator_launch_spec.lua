-- bin/aliocr-emulator as a program: its options, what it prints, and that it
-- stops cleanly on SIGINT and SIGTERM, leaving no process and no file.
local emulator = require("helpers.emulator")
local http = require("helpers.http")

local run = require("helpers.sh").run

local sh = require("helpers.sh")
local util = require("helpers.util")
local fresh_tmp = sh.tmpdir

local function entries(dir) return sh.capture("ls -A " .. sh.q(dir)) end

-- The emulator runs inside nginx (LuaJIT): its specs run once per make test.
if not util.nginx_only_here() then
  describe("aliocr-emulator launcher", function() pending(util.NGINX_ONLY) end)
  return
end

describe("aliocr-emulator launcher", function()
  it("documents its options with --help and exits 0", function()
    local out, status = run(emulator.bin .. " --help")
    assert.equal(0, status)
    for _, opt in ipairs({ "--port", "--https-port", "--appcode", "--app-key", "--quota", "--rate",
                           "--latency-ms", "--backend", "--control-port", "--errors", "--path" }) do
      assert.truthy(out:find(opt, 1, true), "help lacks " .. opt)
    end
  end)

  it("prints its addresses, one 'name value' line each, then 'ready'", function()
    local emu = emulator.start({ "--port", "0", "--appcode", "demo", "--https-port", "0" })
    finally(function() emu:stop() end)
    local out = emu:output()
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.matches("^endpoint http://127%.0%.0%.1:%d+$", lines[1])
    assert.equal("ready", lines[#lines])
    assert.matches("^http://127%.0%.0%.1:%d+/ocr/advanced$", emu.advanced)
    assert.matches("^http://127%.0%.0%.1:%d+/ocr/handwriting$", emu.handwriting)
    assert.matches("^https://127%.0%.0%.1:%d+$", emu.https)
    assert.matches("^http://127%.0%.0%.1:%d+$", emu.control)
    assert.truthy(io.open(emu.ca_file, "r"), "the CA file it printed exists")
    -- What it printed is what it serves.
    local res = emu:call("advanced")
    assert.equal(200, res.status)
  end)

  it("listens on the port it is given", function()
    -- Ask the kernel for a free port, then give it to the emulator.
    local socket = require("socket")
    local s = assert(socket.bind("127.0.0.1", 0))
    local _, port = s:getsockname()
    s:close()
    local emu = emulator.start({ "--port", tostring(port), "--appcode", "demo" })
    finally(function() emu:stop() end)
    assert.equal("http://127.0.0.1:" .. port, emu.endpoint)
    assert.equal(200, emu:call("handwriting").status)
  end)

  for _, signal in ipairs({ "TERM", "INT" }) do
    it("stops on SIG" .. signal .. " leaving no nginx process and no scratch directory", function()
      local emu = emulator.start({ "--port", "0", "--appcode", "demo", "--https-port", "0" })
      assert.truthy(#emu.nginx >= 2, "an nginx master and a worker were running")
      assert.truthy(emu.scratch:find("aliocr%-emulator%."), "a scratch directory was made")
      local left = emu:stop(signal)
      assert.same({}, left.processes)
      assert.same({}, left.files)
      local res = http.request({ url = emu.endpoint .. "/ocr/advanced", timeout = 2 })
      assert.equal(0, res.status)
      assert.equal(7, res.exit) -- couldn't connect: nothing listens any more
    end)
  end

  it("refuses to start without credentials, and leaves nothing behind", function()
    local tmp = fresh_tmp()
    local out, status = run("TMPDIR='" .. tmp .. "' " .. emulator.bin .. " --port 0")
    assert.equal(2, status)
    assert.truthy(out:find("no credentials", 1, true), out)
    assert.equal("", entries(tmp))
    os.execute("rm -rf '" .. tmp .. "'")
  end)

  it("refuses an address that is not loopback", function()
    local out, status = run(emulator.bin .. " --port 0 --appcode demo --host 0.0.0.0")
    assert.equal(2, status)
    assert.truthy(out:find("loopback", 1, true), out)
  end)

  it("refuses bad numbers and bad interface paths with a message", function()
    local out, status = run(emulator.bin .. " --port 0 --appcode demo --quota lots")
    assert.equal(2, status)
    assert.truthy(out:find("--quota must be an integer", 1, true), out)
    out, status = run(emulator.bin .. " --port 0 --appcode demo --path ocr=/x")
    assert.equal(2, status)
    assert.truthy(out:find("--path takes", 1, true), out)
    out, status = run(emulator.bin .. " --port 99999 --appcode demo")
    assert.equal(2, status)
    assert.truthy(out:find("--port must be an integer from 0 to 65535", 1, true), out)
  end)

  it("fails with nginx's reason when its port is taken", function()
    local socket = require("socket")
    local s = assert(socket.bind("127.0.0.1", 0))
    local _, port = s:getsockname()
    local tmp = fresh_tmp()
    local out, status = run("TMPDIR='" .. tmp .. "' " .. emulator.bin .. " --appcode demo --port " .. port)
    s:close()
    assert.equal(1, status)
    assert.truthy(out:find("Address already in use", 1, true), out)
    assert.equal("", entries(tmp))
    os.execute("rm -rf '" .. tmp .. "'")
  end)

  it("takes credentials from the environment", function()
    local emu = emulator.start({ "--port", "0" }, {
      ALIOCR_EMULATOR_APPCODES = "env-code-1,env-code-2",
      ALIOCR_EMULATOR_APP_KEYS = "env-key:env-secret",
    })
    finally(function() emu:stop() end)
    assert.equal(200, emu:call("advanced", { appcode = "env-code-2" }).status)
    local ledger = emu:ledger()
    assert.equal(1, ledger.credentials["env-code-2"].billed)
    assert.is_table(ledger.credentials["env-key"])
  end)

  it("keeps the test CA in --tls-dir across runs", function()
    local dir = fresh_tmp()
    local emu2
    finally(function()
      if emu2 then emu2:stop() end
      os.execute("rm -rf '" .. dir .. "'")
    end)
    local emu = emulator.start({ "--port", "0", "--appcode", "demo", "--https-port", "0", "--tls-dir", dir })
    assert.equal(dir .. "/ca.pem", emu.ca_file)
    local f = assert(io.open(emu.ca_file))
    local first = f:read("*a")
    f:close()
    emu:stop()
    emu2 = emulator.start({ "--port", "0", "--appcode", "demo", "--https-port", "0", "--tls-dir", dir })
    f = assert(io.open(emu2.ca_file))
    assert.equal(first, f:read("*a"))
    f:close()
    local res = http.request({ url = emu2.https .. "/ocr/advanced", cacert = emu2.ca_file,
      headers = { "Authorization: APPCODE demo" }, form = { { "url", emu2.image } } })
    assert.equal(200, res.status)
  end)
end)
