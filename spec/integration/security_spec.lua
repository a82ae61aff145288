-- Secrets never show: under every misbehaviour of the emulator (the rows of
-- helpers.faults), in both auth modes, neither the AppCode nor the
-- AppSecret appears in a result, an error's fields or its tostring, a job,
-- the client or its stats (libcurl), in what a call inside nginx gives, in
-- the command line tool's output (json and text, stdout and stderr), nor in
-- a log line (the emulator's output and logs, nginx's error log). And the
-- emulator listens on loopback only.
--
-- The other security checks live beside the code they check:
-- CR/LF in a credential or a header-bound option (client_calls_spec), no
-- redirect followed and http/https only (client_transport_spec, and every
-- transport in nginx_spec and fault_matrix_spec), TLS verification on by
-- default (client_transport_spec, emulator_tls_spec, nginx_spec), the size
-- and depth caps (client_transport_spec, client_errors_spec,
-- fault_matrix_spec), the emulator's loopback-only addresses and fetches
-- (emulator_launch_spec, recognition_spec, emulator_api_spec).
local aliocr = require("aliocr")
local emulator = require("helpers.emulator")
local faults = require("helpers.faults")
local nginx = require("helpers.nginx")
local sh = require("helpers.sh")
local util = require("helpers.util")

local q, capture, read_all = sh.q, sh.capture, sh.read_all

local SECRET_APPCODE = "sEcReT-appcode-7d1f0b"
local SECRET_APP_SECRET = "sEcReT-appsecret-93ac5e"
local TOOL = emulator.root .. "/bin/aliocr"
-- The tool runs under lua5.4 against build/, whatever runs the specs: its
-- checks are made once, in the plain lua5.4 run (not again under valgrind or
-- the sanitizers, which never reach it).
local WITH_TOOL = _VERSION == "Lua 5.4" and not util.VALGRIND and os.getenv("ASAN") ~= "1"

-- The two auth modes: client options and the tool's environment. A row
-- that needs credentials the gateway refuses gets the secret with a suffix,
-- so that showing those would show the secret too.
local AUTHS = {
  { name = "AppCode", secret = SECRET_APPCODE,
    client = function(wrong) return { appcode = SECRET_APPCODE .. (wrong and "x" or "") } end,
    env = function(wrong) return { ALIOCR_APPCODE = SECRET_APPCODE .. (wrong and "x" or "") } end },
  { name = "AppKey and AppSecret", secret = SECRET_APP_SECRET,
    client = function(wrong) return { app_key = "skey", app_secret = SECRET_APP_SECRET .. (wrong and "x" or "") } end,
    env = function(wrong)
      return { ALIOCR_APP_KEY = "skey", ALIOCR_APP_SECRET = SECRET_APP_SECRET .. (wrong and "x" or "") }
    end },
}

--- Every string in `v` (keys and values, recursively; tostring of userdata
-- and of tables with a metatable), collected in `out`.
local function strings_in(v, out, seen)
  out, seen = out or {}, seen or {}
  local t = type(v)
  if t == "string" then
    out[#out + 1] = v
  elseif t == "userdata" then
    out[#out + 1] = tostring(v)
  elseif t == "table" and not seen[v] then
    seen[v] = true
    if getmetatable(v) then out[#out + 1] = tostring(v) end
    for k, x in pairs(v) do
      strings_in(k, out, seen)
      strings_in(x, out, seen)
    end
  end
  return out
end

local function assert_hidden(secret, what, v)
  for _, s in ipairs(strings_in(v)) do
    assert.is_nil(s:find(secret, 1, true), what .. " shows the secret: " .. s)
  end
end

--- Runs the tool with exactly `env` (plus PATH) and `args`; returns its
-- stdout and stderr together.
local function run_tool(env, args)
  local parts = { "timeout", "-k", "5", "60", "env", "-i", "PATH=" .. q(os.getenv("PATH")) }
  for k, v in pairs(env) do parts[#parts + 1] = k .. "=" .. q(v) end
  parts[#parts + 1] = q(TOOL)
  for _, a in ipairs(args) do parts[#parts + 1] = q(a) end
  return capture(table.concat(parts, " ") .. " 2>&1 </dev/null")
end

describe("secrets", function()
  local emu, ngx_

  setup(function()
    emu = emulator.start({ "--port", "0", "--https-port", "0", "--appcode", SECRET_APPCODE,
      "--app-key", "skey:" .. SECRET_APP_SECRET })
    ngx_ = nginx.start(nginx.test_config(emu.ca_file), {})
  end)

  teardown(function()
    if ngx_ then assert.same({}, ngx_:stop()) end
    util.stop_clean(emu)
  end)

  for _, row in ipairs(faults.rows()) do
    it("never show under " .. row[1], function()
      for _, auth in ipairs(AUTHS) do
        local secret, wrong = auth.secret, row.client and row.client.appcode ~= nil
        local endpoint = row.refused and ("http://127.0.0.1:" .. util.closed_port()) or emu.endpoint
        local opts = auth.client(wrong)
        opts.endpoint, opts.retries, opts.retry_delay, opts.timeout = endpoint, 1, 0.01, row.timeout or util.slow(10)
        for k, v in pairs(row.client or {}) do
          if k ~= "appcode" then opts[k] = v end
        end
        local what = auth.name .. ", " .. row[1]

        -- libcurl: a call, a job, the client and its stats.
        faults.arrange(emu, row)
        local c = aliocr.new(opts)
        c:handwriting(emu.image, { timeout = util.slow(10) })
        local res, err = c:recognize(emu.image)
        assert_hidden(secret, what .. ": the result or error", { res, err })
        if err then assert_hidden(secret, what .. ": tostring of the error", tostring(err)) end
        local job = c:submit("recognize", emu.image .. "?n=2")
        c:wait()
        assert_hidden(secret, what .. ": the job", job)
        assert_hidden(secret, what .. ": the client", { tostring(c), c, c:stats() })
        c:close()
        assert_hidden(secret, what .. ": a closed client", tostring(c))

        -- Inside nginx: the outcome and the transport's own message.
        faults.arrange(emu, row)
        local out = ngx_:post("/case", { client = opts, kind = "recognize", url = emu.image, warm = "handwriting",
          warm_opts = { timeout = util.slow(10) } })
        assert_hidden(secret, what .. ": inside nginx", out)

        -- The command line tool, in JSON (every field of each error) and in
        -- text (errors as their tostring, on stderr).
        faults.arrange(emu, row)
        local env = auth.env(wrong)
        env.ALIOCR_ENDPOINT = endpoint
        for _, format in ipairs(WITH_TOOL and { "json", "text" } or {}) do
          local printed = run_tool(env, { "-o", format, "--retries", "1", "--timeout",
            tostring(row.timeout or util.slow(10)), emu.image, emu.image .. "?n=2" })
          assert.is_truthy(#printed > 0, what .. ": the tool printed nothing")
          assert.is_nil(printed:find(secret, 1, true),
            what .. ": aliocr -o " .. format .. " shows the secret:\n" .. printed)
        end
      end
    end)
  end

  it("never show in a log line: the emulator's output and logs, nginx's error log", function()
    -- The emulator did receive them, in every request above.
    for _, secret in ipairs({ SECRET_APPCODE, SECRET_APP_SECRET }) do
      assert.is_nil(emu:output():find(secret, 1, true), "the emulator's output shows the secret")
      -- Its logs (its configuration does hold the credentials, in its
      -- private scratch directory).
      local logs = capture("ls -d " .. q(emu.tmp) .. "/*/logs")
      assert.is_truthy(logs:find("logs", 1, true), "the emulator's logs are not where expected")
      local files = capture("grep -rlF " .. q(secret) .. " " .. q(emu.tmp) .. "/*/logs 2>/dev/null")
      assert.equal("", files, "the emulator's logs show the secret")
      assert.is_nil(ngx_:log():find(secret, 1, true), "nginx's error log shows the secret")
    end
  end)
end)

describe("the emulator's sockets", function()
  it("listen on loopback only", function()
    local emu = emulator.start({ "--port", "0", "--https-port", "0", "--appcode", "demo" })
    finally(function() util.stop_clean(emu) end)
    -- The listening sockets of its processes, from /proc: the inodes of
    -- their descriptors, then the LISTEN rows (state 0A) of the TCP tables.
    local inodes = {}
    local pids = capture("pgrep -f " .. q(emu.tmp .. "/"))
    for pid in pids:gmatch("%d+") do
      for inode in capture("ls -l /proc/" .. pid .. "/fd 2>/dev/null"):gmatch("socket:%[(%d+)%]") do
        inodes[inode] = true
      end
    end
    local listening = {}
    for _, table_ in ipairs({ "/proc/net/tcp", "/proc/net/tcp6" }) do
      for line in read_all(table_):gmatch("[^\n]+") do
        -- sl, local address, remote address, state, 5 more fields, inode.
        local addr, state, inode = line:match("^%s*%d+:%s+(%x+):%x+%s+%x+:%x+%s+(%x%x)" ..
          "%s+%S+%s+%S+%s+%S+%s+%S+%s+%S+%s+(%d+)")
        if addr and state == "0A" and inodes[inode] then listening[#listening + 1] = addr end
      end
    end
    -- API, HTTPS and control listeners at least.
    assert.is_true(#listening >= 3, "listening: " .. table.concat(listening, " "))
    for _, addr in ipairs(listening) do
      -- IPv4 in /proc/net/tcp is little-endian: 127.x.x.x ends in 7F.
      local v4 = #addr == 8 and addr:sub(7, 8) == "7F"
      local v6 = addr == "00000000000000000000000001000000"
      assert.is_true(v4 or v6, "a listener not on loopback: " .. addr)
    end
  end)
end)
