-- Issue 19, item 13: aliocr in every phase of nginx's Lua module (Debian's
-- nginx with libnginx-mod-http-lua 0.10.23). Where ngx_lua allows cosockets
-- (its README: rewrite, access, content, ngx.timer, ssl_certificate,
-- ssl_session_fetch, ssl_client_hello; and server_rewrite, which its source
-- counts among the yieldable contexts too), a call and a batch work and are
-- billed. Everywhere else they raise the same message, naming the phase and
-- a way out that works there, from the line of the caller (the handler's,
-- not a file of aliocr's); with transport = "curl" so do a call, a batch,
-- submit, poll and wait, in every phase.
local cjson = require("cjson")
local socket = require("socket")
local emulator = require("helpers.emulator")
local http = require("helpers.http")
local nginx = require("helpers.nginx")
local sh = require("helpers.sh")
local util = require("helpers.util")

local HANDLERS = "spec/helpers/nginx_phases.lua"

-- The line of each call in the handlers (marked "-- line: <name>").
local LINES = {}
do
  local n = 0
  for line in io.lines(HANDLERS) do
    n = n + 1
    local name = line:match("%-%- line: ([%w_]+)$")
    if name then LINES[name] = n end
  end
end

local ALLOWED = { "server_rewrite", "rewrite", "access", "content", "timer" }
local SSL = { "ssl_client_hello", "ssl_cert", "ssl_session_fetch" }
local REFUSED = { "init", "init_worker", "set", "header_filter", "body_filter", "log", "balancer",
  "ssl_session_store", "exit_worker" }

-- The locations and hooks of each phase; `}` closes the test server, so
-- that http-level hooks and a TLS server (on a unix socket) follow; the
-- test configuration's own `}` closes that server.
local function extra(image, tls_dir)
  local function probe(key) return string.format('require("helpers.nginx_phases").probe(%q, %q)', key, image) end
  local function ssl_probe(key)
    return string.format('require("helpers.nginx_phases").ssl_probe(%q, %q)', key, image)
  end
  -- A TLS 1.2 server (session IDs, no tickets: the session hooks run) on a
  -- unix socket, with `hook`; left open.
  local function tls_server(name, hook)
    return table.concat({ "server {", "listen unix:@PREFIX@/" .. name .. ".sock ssl;",
      "ssl_certificate " .. tls_dir .. "/server.pem;", "ssl_certificate_key " .. tls_dir .. "/server.key;",
      "ssl_protocols TLSv1.2;", "ssl_session_tickets off;", hook, 'location / { return 200 "tls\\n"; }' }, " ")
  end
  return table.concat({
    'server_rewrite_by_lua_block { if ngx.var.uri == "/phases/server_rewrite" then ' ..
      probe("server_rewrite") .. " end }",
    'location = /phases/server_rewrite { content_by_lua_block { ngx.say("done") } }',
    'location = /phases/rewrite { rewrite_by_lua_block { ' .. probe("rewrite") ..
      ' } content_by_lua_block { ngx.say("done") } }',
    'location = /phases/access { access_by_lua_block { ' .. probe("access") ..
      ' } content_by_lua_block { ngx.say("done") } }',
    'location = /phases/content { content_by_lua_block { ' .. probe("content") .. ' ngx.say("done") } }',
    string.format('location = /phases/timer { content_by_lua_block { require("helpers.nginx_phases").timer(%q) } }',
      image),
    'location = /phases/set { set_by_lua_block $phases_set { ' .. probe("set") ..
      ' return "done" } content_by_lua_block { ngx.say(ngx.var.phases_set) } }',
    'location = /phases/header_filter { header_filter_by_lua_block { ' .. probe("header_filter") ..
      ' } content_by_lua_block { ngx.say("done") } }',
    'location = /phases/body_filter { body_filter_by_lua_block { if ngx.arg[2] then ' .. probe("body_filter") ..
      ' end } content_by_lua_block { ngx.say("done") } }',
    'location = /phases/log { log_by_lua_block { ' .. probe("log") .. ' } content_by_lua_block { ngx.say("done") } }',
    "location = /phases/balancer { proxy_pass http://aliocr_phases/ping; }",
    'location = /phases/tls { content_by_lua_block { require("helpers.nginx_phases").tls({ ' ..
      '"unix:@PREFIX@/hello.sock", "unix:@PREFIX@/cert.sock", "unix:@PREFIX@/plain.sock" }) } }',
    'location = /phases/results { content_by_lua_block { require("helpers.nginx_phases").report() } }',
    "}",
    "init_by_lua_block { " .. probe("init") .. " }",
    "init_worker_by_lua_block { " .. probe("init_worker") .. " }",
    string.format('exit_worker_by_lua_block { require("helpers.nginx_phases").exit_worker(%q) }', image),
    "ssl_session_fetch_by_lua_block { " .. ssl_probe("ssl_session_fetch") .. " }",
    "ssl_session_store_by_lua_block { " .. probe("ssl_session_store") .. " }",
    "upstream aliocr_phases { server 127.0.0.1:@PORT@; balancer_by_lua_block { " .. probe("balancer") .. " } }",
    tls_server("hello", "ssl_client_hello_by_lua_block { " .. ssl_probe("ssl_client_hello") .. " }") .. " }",
    tls_server("cert", "ssl_certificate_by_lua_block { " .. ssl_probe("ssl_cert") .. " }") .. " }",
    -- (the test configuration's `}` closes it)
    tls_server("plain", ""),
  }, "\n    ")
end

-- Asserts that `e` is aliocr's message raised from the handlers' line of
-- `name`, and contains `text`.
local function raised_at(out, name, text)
  local e = out[name] and out[name].raised
  assert.is_string(e, name .. " did not raise: " .. cjson.encode(out[name]))
  local file, line = e:match("^(.-):(%d+): aliocr: ")
  assert.is_truthy(file, name .. ": no position of the caller: " .. e)
  assert.matches("nginx_phases.lua", file, 1, true)
  assert.equal(LINES[name], tonumber(line), name .. ": " .. e)
  assert.matches(text, e, 1, true)
  return e:match(": (aliocr: .*)$")
end

if not util.nginx_only_here() then
  describe("inside nginx, phase by phase", function() pending(util.NGINX_ONLY) end)
  return
end

describe("inside nginx, phase by phase", function()
  local emu, ngx_, results, broken

  setup(function()
    emu = emulator.start({ "--port", "0", "--https-port", "0", "--appcode", "demo" })
    local tls_dir = emu.ca_file:match("^(.*)/[^/]+$")
    ngx_ = nginx.start(nginx.test_config(emu.ca_file, extra(emu.image, tls_dir)),
      { ALIOCR_APPCODE = "demo", ALIOCR_ENDPOINT = emu.endpoint })
  end)

  teardown(function()
    if ngx_ then assert.same({}, ngx_:stop()) end
    util.stop_clean(emu)
  end)

  -- Runs the request phases one by one (the ledger grows by 3 billed calls
  -- in each allowed phase, by none in the others); then the SSL hooks and
  -- the exit of a worker (a reload); returns what every phase did.
  local function run()
    local billed = emu:settled_ledger().total.billed
    assert.equal(0, billed)
    for _, phase in ipairs({ "server_rewrite", "rewrite", "access", "content", "timer", "set", "header_filter",
        "body_filter", "log", "balancer" }) do
      local r = http.request({ url = ngx_.url .. "/phases/" .. phase, timeout = 30 })
      assert.equal(200, r.status, phase .. ": " .. r.body .. "\n" .. ngx_:log())
      local now = emu:settled_ledger().total.billed
      local allowed = false
      for _, p in ipairs(ALLOWED) do allowed = allowed or p == phase end
      assert.equal(allowed and 3 or 0, now - billed, phase .. " billed")
      billed = now
    end
    local r = http.request({ url = ngx_.url .. "/phases/tls", timeout = 60 })
    assert.equal(200, r.status, r.body)
    local out = cjson.decode(http.request({ url = ngx_.url .. "/phases/results" }).body)
    -- A reload: the worker exits (its exit_worker hook writes what it did).
    os.execute("kill -HUP " .. ngx_.pid)
    local file = ngx_.prefix .. "/exit_worker.json"
    local deadline = socket.gettime() + 20
    while not io.open(file) and socket.gettime() < deadline do socket.sleep(0.05) end
    out.exit_worker = cjson.decode(sh.read_all(file))
    out.tls = r.body
    return out
  end
  local function run_all()
    if broken then error(broken, 0) end
    if not results then
      local ok, e = pcall(run)
      if not ok then
        broken = e
        error(e, 0)
      end
      results = e
    end
    return results
  end

  it("item 13: a call and a batch work in every phase where ngx_lua allows cosockets, server_rewrite too",
    function()
      local all = run_all()
      for _, phase in ipairs(ALLOWED) do
        local out = all[phase]
        assert.is_table(out, phase .. " did not run")
        assert.equal(phase, out.phase)
        assert.same({ ok = true, billed = true }, out.call, phase .. ": " .. cjson.encode(out.call))
        assert.same({ ok = 2, billed = 2, n = 2 }, out.batch, phase .. ": " .. cjson.encode(out.batch))
      end
    end)

  it("item 13: the SSL hooks where ngx_lua allows cosockets are not refused (calls work where nginx can " ..
     "yield there)", function()
    local all = run_all()
    local stuck = {}
    for _, phase in ipairs(SSL) do
      local out = all[phase]
      assert.is_table(out, phase .. " did not run: " .. all.tls)
      assert.equal(phase, out.phase)
      if out.call then
        assert.same({ ok = true, billed = true }, out.call, phase .. ": " .. cjson.encode(out.call))
        assert.same({ ok = 2, billed = 2, n = 2 }, out.batch, phase .. ": " .. cjson.encode(out.batch))
      else
        assert.is_false(out.refused, phase)
        stuck[#stuck + 1] = phase
      end
    end
    if #stuck > 0 then
      -- Debian's nginx lacks OpenResty's SSL patches (ngx_lua's README):
      -- any yield in these hooks ends the handshake, aliocr's or not.
      print("# this nginx cannot yield in " .. table.concat(stuck, ", ") .. ": calls there not tried")
    end
  end)

  it("item 13: elsewhere a call and a batch raise the same message, from the caller's line, " ..
     "with advice that works in that phase", function()
    local all = run_all()
    for _, phase in ipairs(REFUSED) do
      local out = all[phase]
      assert.is_table(out, phase .. " did not run")
      assert.equal(phase, out.phase)
      local what = "nginx does not allow sockets in the '" .. phase .. "' phase: "
      local call = raised_at(out, "call", what)
      local batch = raised_at(out, "batch", what)
      assert.equal(call, batch)
      if phase == "exit_worker" then
        -- No timer can start there: the advice is to call while the worker serves.
        assert.matches("can start no timer", call, 1, true)
        assert.matches("ngx.worker.exiting()", call, 1, true)
      elseif phase == "init" then
        assert.matches("init_worker_by_lua", call, 1, true)
        assert.matches("ngx.timer.at(0, function() ... end)", call, 1, true)
      else
        assert.matches("from a timer (ngx.timer.at(0, function() ... end))", call, 1, true)
      end
    end
  end)

  it("item 13: in every phase, transport \"curl\" refuses a call, a batch, submit, poll and wait alike, " ..
     "and submit, poll and wait on the resty transport say what to use, each from the caller's line", function()
    local all = run_all()
    local phases = {}
    for _, p in ipairs(ALLOWED) do phases[#phases + 1] = p end
    for _, p in ipairs(REFUSED) do phases[#phases + 1] = p end
    for _, p in ipairs(SSL) do
      if all[p] and all[p].call then phases[#phases + 1] = p end
    end
    for _, phase in ipairs(phases) do
      local out = all[phase]
      local first
      for _, name in ipairs({ "curl_call", "curl_batch", "curl_submit", "curl_poll", "curl_wait" }) do
        local e = raised_at(out, name, "the curl transport would block nginx's worker")
        first = first or e
        assert.equal(first, e, phase .. ": " .. name)
      end
      for _, name in ipairs({ "submit", "poll", "wait" }) do
        raised_at(out, name, "submit, poll and wait drive libcurl; inside nginx use batch")
      end
    end
  end)
end)
