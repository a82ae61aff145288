-- aliocr inside nginx (issue 19, items 6, 8 and 12): name lookups bounded
-- by the call's time limits, TLS trust never shared through the keep-alive
-- pool across locations that trust differently, IPv6 literals, HTTPS by IP
-- address, and proxies (credentials, scheme-less, refused kinds). The spec
-- runs its own DNS server (helpers.dns), HTTP proxies (helpers.proxy), a
-- TLS server that echoes the SNI name it got, the emulator and a client-side
-- nginx with the locations of helpers.nginx_net.
local aliocr = require("aliocr")
local cjson = require("cjson")
local socket = require("socket")
local dnsh = require("helpers.dns")
local emulator = require("helpers.emulator")
local mime = require("mime")
local nginx = require("helpers.nginx")
local outcome = require("helpers.outcome")
local proxyh = require("helpers.proxy")
local util = require("helpers.util")

local DEBIAN_CAS = "/etc/ssl/certs/ca-certificates.crt"
local USER, PASSWORD, WRONG = "u", "pr0xy-s3cret", "wr0ng-pa55"
local SECRETS = { PASSWORD, WRONG, mime.b64(USER .. ":" .. PASSWORD), mime.b64(USER .. ":" .. WRONG) }

-- A value as it comes out of JSON (the libcurl side goes through it too).
local function via_json(v) return cjson.decode(cjson.encode(v)) end

local function port_of(url) return url:match(":(%d+)$") or url:match(":(%d+)/") end

-- A TLS server (an nginx of its own, with the emulator's certificate) that
-- answers every request with an OCR answer whose text is "sni=<the SNI
-- name the client sent>" (empty when it sent none).
local function sni_conf(cert_dir)
  return table.concat({
    "worker_processes 1;",
    "daemon off;",
    "pid @PREFIX@/nginx.pid;",
    "error_log @PREFIX@/logs/error.log warn;",
    "events { worker_connections 64; }",
    "http {",
    "  access_log off;",
    "  client_body_temp_path @PREFIX@/body;",
    "  proxy_temp_path @PREFIX@/proxy;",
    "  fastcgi_temp_path @PREFIX@/fastcgi;",
    "  uwsgi_temp_path @PREFIX@/uwsgi;",
    "  scgi_temp_path @PREFIX@/scgi;",
    "  server {",
    "    listen 127.0.0.1:@PORT@ ssl;",
    "    ssl_certificate " .. cert_dir .. "/server.pem;",
    "    ssl_certificate_key " .. cert_dir .. "/server.key;",
    "    location / {",
    "      default_type application/json;",
    [[      return 200 '{"ok":1,"msg":"sni","data":"sni=$ssl_server_name"}';]],
    "    }",
    "  }",
    "}",
  }, "\n") .. "\n"
end

-- The client-side nginx's own locations: /net_a trusts the test CA, /net_b
-- Debian's CAs only; both look names up with the spec's DNS server.
local function locations(ca_file, resolver)
  local call = [[content_by_lua_block { require("helpers.nginx_net").call() }]]
  return table.concat({
    "location = /net_a {",
    "  resolver " .. resolver .. " ipv6=off;",
    "  lua_ssl_trusted_certificate " .. ca_file .. ";",
    "  " .. call,
    "}",
    "location = /net_b {",
    "  resolver " .. resolver .. " ipv6=off;",
    "  lua_ssl_trusted_certificate " .. DEBIAN_CAS .. ";",
    "  " .. call,
    "}",
    [[location = /net_new { content_by_lua_block { require("helpers.nginx_net").new() } }]],
  }, "\n")
end

if not util.nginx_only_here() then
  describe("inside nginx: names, TLS trust, IPv6, proxies", function() pending(util.NGINX_ONLY) end)
  return
end

describe("inside nginx: names, TLS trust, IPv6, proxies", function()
  local emu, dns, open_proxy, auth_proxy, sni, ngx_
  local https_name -- the emulator's HTTPS endpoint by name: https://localhost:<port>

  setup(function()
    emu = emulator.start({ "--port", "0", "--https-port", "0", "--appcode", "demo" })
    https_name = "https://localhost:" .. port_of(emu.https)
    dns = dnsh.start({ ["emulator.test"] = "127.0.0.1", localhost = "127.0.0.1" })
    open_proxy = proxyh.start()
    auth_proxy = proxyh.start({ auth = USER .. ":" .. PASSWORD })
    sni = nginx.start(sni_conf((emu.ca_file:gsub("/[^/]*$", ""))))
    ngx_ = nginx.start(nginx.test_config(emu.ca_file, locations(emu.ca_file, dns.address)),
      { ALIOCR_APPCODE = "demo", ALIOCR_ENDPOINT = emu.endpoint })
  end)

  teardown(function()
    if ngx_ then assert.same({}, ngx_:stop()) end
    if sni then assert.same({}, sni:stop()) end
    if auth_proxy then assert.same({}, auth_proxy:stop()) end
    if open_proxy then assert.same({}, open_proxy:stop()) end
    if dns then assert.same({}, dns:stop()) end
    util.stop_clean(emu)
  end)

  before_each(function() emu:reset() end)

  -- One call inside nginx, at `path`, with the client options `client`
  -- (appcode and a short retry delay added): its outcome, as
  -- helpers.nginx_net.call answers it.
  local function call(path, client, url, timeout)
    local c = { appcode = "demo", retry_delay = 0.01 }
    for k, v in pairs(client) do c[k] = v end
    return ngx_:post(path, { client = c, kind = "recognize", url = url or emu.image }, timeout)
  end

  -- The same call with libcurl, in this process.
  local function outside(client, url)
    local c = { appcode = "demo", retry_delay = 0.01 }
    for k, v in pairs(client) do c[k] = v end
    local cl = aliocr.new(c)
    local res, err = cl:recognize(url or emu.image)
    local out = via_json(outcome.of(res, err, cl:stats()))
    out.text = err and tostring(err)
    cl:close()
    return out
  end

  -- What aliocr.new raises inside nginx for `client` (nil when it takes them).
  local function refused_inside(client)
    local out = ngx_:post("/net_new", { client = client })
    if out.ok then return nil end
    return out.error
  end

  local function shown(out)
    return cjson.encode(out.error or out.result) .. " (" .. tostring(out.message) .. ")"
  end

  local function assert_ok(out, what)
    assert.is_table(out.result, (what or "") .. ": " .. shown(out))
    assert.equal(1, out.result.ok)
    assert.is_true(out.result.billed)
  end

  local function assert_failed_verification(out, what)
    assert.is_table(out.error, (what or "") .. ": the call succeeded: " .. shown(out))
    assert.equal("transport", out.error.kind, shown(out))
    assert.equal("PEER_FAILED_VERIFICATION", out.error.code, shown(out))
    assert.is_false(out.error.billed)
  end

  local function assert_no_secret(text, where)
    for _, s in ipairs(SECRETS) do
      assert.is_nil(tostring(text or ""):find(s, 1, true), "a proxy credential in " .. where)
    end
  end

  describe("item 6: name lookups", function()
    -- A call whose lookup never ends, with a spec-side bound far over the
    -- expected one: a hung handler fails the spec with a message instead of
    -- waiting for nginx's 30 s resolver_timeout per attempt.
    local function timed_call(client)
      local started = socket.gettime()
      local ok, out = pcall(call, "/net_a", client, nil, 40)
      local took = socket.gettime() - started
      assert.is_true(ok, "the call did not end within 40 s: " .. tostring(out))
      return out, took
    end

    it("item 6: a name the resolver never answers: each attempt ends within connect_timeout, " ..
       "retried, not billed, OPERATION_TIMEDOUT", function()
      local out, took = timed_call({ endpoint = "http://silent.test:" .. port_of(emu.endpoint),
        timeout = 1, connect_timeout = 0.5, retries = 2 })
      assert.equal("resty", out.transport)
      assert.is_table(out.error, shown(out))
      assert.is_truthy(out.error.kind == "timeout" or out.error.kind == "transport", shown(out))
      assert.equal("OPERATION_TIMEDOUT", out.error.code, shown(out))
      assert.is_false(out.error.billed)
      assert.equal(3, out.error.attempts)
      assert.same({ requests = 1, attempts = 3, billed = 0, not_billed = 1, unknown = 0 }, {
        requests = out.stats.requests, attempts = out.stats.attempts, billed = out.stats.billed,
        not_billed = out.stats.not_billed, unknown = out.stats.unknown })
      -- Three attempts of about 0.5 s each (nginx's resolver would wait 30 s each).
      assert.is_true(took < util.slow(5), "the call took " .. took .. " s")
      assert.is_true(dns:asked("silent.test") >= 1, "the resolver was not asked")
      assert.equal(0, emu:ledger().total.requests)
    end)

    it("item 6: the call's timeout bounds the lookup when it is shorter than connect_timeout", function()
      local out, took = timed_call({ endpoint = "http://silent2.test:" .. port_of(emu.endpoint),
        timeout = 0.6, connect_timeout = 5, retries = 0 })
      assert.is_table(out.error, shown(out))
      assert.equal("OPERATION_TIMEDOUT", out.error.code, shown(out))
      assert.is_false(out.error.billed)
      assert.equal(1, out.error.attempts)
      assert.is_true(took < util.slow(3), "the call took " .. took .. " s")
      assert.is_true(dns:asked("silent2.test") >= 1, "the resolver was not asked")
    end)

    it("item 6: a name the resolver answers works (the emulator by name)", function()
      local port = port_of(emu.endpoint)
      local out = call("/net_a", { endpoint = "http://emulator.test:" .. port })
      assert_ok(out, "http://emulator.test")
      local log = emu:log_of(1)
      assert.equal(1, #log)
      assert.equal("emulator.test:" .. port, util.header(log[1], "host"))
      assert.is_true(dns:asked("emulator.test") >= 1)
    end)
  end)

  describe("item 8: TLS trust and the keep-alive pool", function()
    it("item 8: a connection verified where the test CA is trusted is not reused where it is not", function()
      local a = call("/net_a", { endpoint = https_name })
      assert_ok(a, "location A (test CA)")
      local b = call("/net_b", { endpoint = https_name, connect_timeout = util.slow(3) })
      assert_failed_verification(b, "location B (Debian's CAs) after A")
      local log = emu:log_of(1)
      assert.equal(1, #log, "location B's call reached the emulator")
    end)

    it("item 8: an unverified connection is never reused by a verified call", function()
      -- In A: unverified, then verified: a new connection, verified.
      assert_ok(call("/net_a", { endpoint = https_name, tls_verify = false }), "A, tls_verify = false")
      assert_ok(call("/net_a", { endpoint = https_name }), "A, verified")
      local log = emu:log_of(2)
      assert.equal(2, #log)
      assert.are_not.equal(log[1].connection, log[2].connection,
        "the verified call went out on the unverified connection")
      -- In B: unverified, then verified: verification fails.
      emu:reset()
      assert_ok(call("/net_b", { endpoint = https_name, tls_verify = false }), "B, tls_verify = false")
      assert_failed_verification(call("/net_b", { endpoint = https_name, connect_timeout = util.slow(3) }),
        "B, verified, after B unverified")
      -- Unverified in A, then verified in B: verification fails.
      assert_ok(call("/net_a", { endpoint = https_name, tls_verify = false }), "A, tls_verify = false")
      assert_failed_verification(call("/net_b", { endpoint = https_name, connect_timeout = util.slow(3) }),
        "B, verified, after A unverified")
      assert.equal(2, #emu:log_of(2), "a verified call in B reached the emulator")
    end)

    it("item 8: the same through an HTTP proxy (CONNECT)", function()
      local via = "http://" .. open_proxy.address
      local before = #open_proxy:log()
      assert_ok(call("/net_a", { endpoint = https_name, proxy = via }), "A through the proxy")
      local plog = open_proxy:log()
      assert.is_true(#plog > before, "the call did not go through the proxy")
      assert.equal("CONNECT", plog[#plog].method)
      assert.equal("localhost:" .. port_of(emu.https), plog[#plog].target)
      assert_failed_verification(call("/net_b", { endpoint = https_name, proxy = via,
        connect_timeout = util.slow(3) }), "B through the proxy, after A")
      assert.equal(1, #emu:log_of(1), "location B's call reached the emulator")
      -- Unverified, then verified, through the proxy: a new tunnel.
      emu:reset()
      assert_ok(call("/net_a", { endpoint = https_name, proxy = via, tls_verify = false }), "A unverified")
      assert_ok(call("/net_a", { endpoint = https_name, proxy = via }), "A verified")
      local log = emu:log_of(2)
      assert.equal(2, #log)
      assert.are_not.equal(log[1].connection, log[2].connection,
        "the verified call went out on the unverified tunnel")
      assert_ok(call("/net_b", { endpoint = https_name, proxy = via, tls_verify = false }), "B unverified")
      assert_failed_verification(call("/net_b", { endpoint = https_name, proxy = via,
        connect_timeout = util.slow(3) }), "B verified through the proxy, after B unverified")
      assert.equal(3, #emu:log_of(3), "a verified call in B reached the emulator")
    end)
  end)

  describe("item 12: addresses and proxies", function()
    it("item 12: an IPv6 literal endpoint works: http://[::1]:port", function()
      local emu6 = emulator.start({ "--host", "::1", "--port", "0", "--appcode", "demo" })
      finally(function() util.stop_clean(emu6) end)
      assert.matches("^http://%[::1%]:%d+$", emu6.endpoint)
      local out = call("/net_a", { endpoint = emu6.endpoint }, emu6.image)
      assert.equal("resty", out.transport)
      assert_ok(out, emu6.endpoint)
      local want = outside({ endpoint = emu6.endpoint }, emu6.image)
      out.elapsed, out.transport, out.message, out.text, want.text = nil, nil, nil, nil, nil
      assert.same(want, out)
    end)

    it("item 12: an HTTPS endpoint addressed by an IP with tls_verify on is refused at aliocr.new " ..
       "inside nginx, saying to use a host name or tls_verify = false", function()
      for _, endpoint in ipairs({ emu.https, "https://[::1]:8443" }) do
        local e = refused_inside({ appcode = "demo", endpoint = endpoint })
        assert.is_string(e, endpoint .. " was taken")
        assert.matches("^aliocr: ", e)
        assert.matches("host name", e, 1, true)
        assert.matches("tls_verify = false", e, 1, true)
        assert.is_nil(e:find("resty.lua", 1, true), e)
      end
      -- A URL of one interface, too.
      local e = refused_inside({ appcode = "demo", urls = { advanced = emu.https .. "/ocr/advanced",
        handwriting = https_name .. "/ocr/handwriting" } })
      assert.is_string(e, "urls.advanced by IP was taken")
      assert.matches("^aliocr: .*host name", e)
      -- Outside nginx libcurl verifies the certificate's IP entry: the same endpoint works.
      local out = outside({ endpoint = emu.https, ca_file = emu.ca_file })
      assert.is_table(out.result, cjson.encode(out))
      assert.is_true(out.result.billed)
    end)

    it("item 12: with tls_verify = false an HTTPS endpoint addressed by an IP works and sends no SNI, " ..
       "as libcurl", function()
      local out = call("/net_a", { endpoint = emu.https, tls_verify = false })
      assert_ok(out, emu.https .. ", tls_verify = false")
      -- The SNI echo server: by IP no name is sent (libcurl sends none either).
      local by_ip = "https://127.0.0.1:" .. sni.port
      out = call("/net_a", { endpoint = by_ip, tls_verify = false })
      assert.is_table(out.result, shown(out))
      local curl = outside({ endpoint = by_ip, tls_verify = false })
      assert.equal("sni=", curl.result.text)
      assert.equal("sni=", out.result.text, "nginx's socket sent an SNI name for an IP address")
      -- By name the name is sent: the echo server does tell.
      out = call("/net_a", { endpoint = "https://localhost:" .. sni.port })
      assert.is_table(out.result, shown(out))
      assert.equal("sni=localhost", out.result.text)
    end)

    it("item 12: a proxy with credentials (http://u:p@host:port) is used with Proxy-Authorization: Basic, " ..
       "never bypassed", function()
      local via = "http://" .. USER .. ":" .. PASSWORD .. "@" .. auth_proxy.address
      local before = #auth_proxy:log()
      local out = call("/net_a", { endpoint = emu.endpoint, proxy = via })
      assert_ok(out, "through the proxy with credentials")
      local plog = auth_proxy:log()
      assert.equal(before + 1, #plog, "the call did not go through the proxy")
      assert.same({ method = "POST", target = emu.advanced, auth = "ok" },
        { method = plog[#plog].method, target = plog[#plog].target, auth = plog[#plog].auth })
      local log = emu:log_of(1)
      assert.equal(1, #log)
      assert.is_nil(util.header(log[1], "proxy-authorization"))
      -- HTTPS: CONNECT with the credentials.
      out = call("/net_a", { endpoint = https_name, proxy = via })
      assert_ok(out, "HTTPS through the proxy with credentials")
      plog = auth_proxy:log()
      assert.equal(before + 2, #plog, "the HTTPS call did not go through the proxy")
      assert.same({ method = "CONNECT", target = "localhost:" .. port_of(emu.https), auth = "ok" },
        { method = plog[#plog].method, target = plog[#plog].target, auth = plog[#plog].auth })
      assert_no_secret(ngx_:log(), "nginx's log")
    end)

    it("item 12: a wrong proxy password fails, not billed, nothing sent around the proxy", function()
      local via = "http://" .. USER .. ":" .. WRONG .. "@" .. auth_proxy.address
      local before = #auth_proxy:log()
      local out = call("/net_a", { endpoint = emu.endpoint, proxy = via })
      assert.is_table(out.error, "the call succeeded with a wrong proxy password: " .. shown(out))
      local plog = auth_proxy:log()
      assert.equal(before + 1, #plog, "the call did not go through the proxy: " .. shown(out))
      assert.equal("wrong", plog[#plog].auth)
      -- As libcurl: the proxy's 407 is the answer.
      local want = outside({ endpoint = emu.endpoint, proxy = via })
      assert.same({ kind = want.error.kind, status = want.error.status, billed = want.error.billed },
        { kind = out.error.kind, status = out.error.status, billed = out.error.billed })
      assert_no_secret(out.message, "the error's msg")
      assert_no_secret(out.text, "the error")
      -- HTTPS: the proxy refuses the tunnel.
      before = #auth_proxy:log()
      out = call("/net_a", { endpoint = https_name, proxy = via, retries = 0 })
      assert.is_table(out.error, "the HTTPS call succeeded with a wrong proxy password: " .. shown(out))
      assert.is_not_true(out.error.billed)
      plog = auth_proxy:log()
      assert.equal(before + 1, #plog, "the HTTPS call did not go through the proxy: " .. shown(out) ..
        "; the proxy's log: " .. cjson.encode(plog))
      assert.same({ "CONNECT", "wrong" }, { plog[#plog].method, plog[#plog].auth })
      assert_no_secret(out.message, "the error's msg")
      assert_no_secret(out.text, "the error")
      assert.equal(0, #emu:requests(), "a request reached the emulator around the proxy")
      assert_no_secret(ngx_:log(), "nginx's log")
    end)

    it("item 12: host:port without a scheme is an HTTP proxy, as libcurl takes it", function()
      local before = #open_proxy:log()
      local out = call("/net_a", { endpoint = emu.endpoint, proxy = open_proxy.address })
      assert_ok(out, "proxy " .. open_proxy.address)
      local plog = open_proxy:log()
      assert.equal(before + 1, #plog, "the call did not go through the proxy")
      assert.equal(emu.advanced, plog[#plog].target)
      -- With credentials, still without a scheme.
      local before_auth = #auth_proxy:log()
      out = call("/net_a", { endpoint = emu.endpoint,
        proxy = USER .. ":" .. PASSWORD .. "@" .. auth_proxy.address })
      assert_ok(out, "a scheme-less proxy with credentials")
      plog = auth_proxy:log()
      assert.equal(before_auth + 1, #plog, "the call did not go through the proxy")
      assert.same({ emu.advanced, "ok" }, { plog[#plog].target, plog[#plog].auth })
      assert.equal(2, #emu:log_of(2))
      assert_no_secret(ngx_:log(), "nginx's log")
    end)

    it("item 12: socks and https:// proxies are refused at aliocr.new inside nginx with a clear message", function()
      for _, p in ipairs({ "socks5://127.0.0.1:1080", "socks5h://127.0.0.1:1080", "socks4://127.0.0.1:1080",
                           "socks4a://127.0.0.1:1080", "https://127.0.0.1:3128",
                           "socks5://" .. USER .. ":" .. PASSWORD .. "@127.0.0.1:1080" }) do
        local e = refused_inside({ appcode = "demo", endpoint = emu.endpoint, proxy = p })
        assert.is_string(e, "proxy " .. p .. " was taken inside nginx")
        assert.matches("^aliocr: ", e)
        assert.matches("proxy", e, 1, true)
        assert.matches("nginx", e, 1, true)
        assert.is_nil(e:find("resty.lua", 1, true), e)
        assert_no_secret(e, "the message")
        -- libcurl takes them: outside nginx aliocr.new does too.
        aliocr.new({ appcode = "demo", endpoint = emu.endpoint, proxy = p }):close()
      end
      assert.equal(0, #emu:requests())
    end)

    it("item 12: an endpoint with a user name or password is refused at aliocr.new inside nginx, " ..
       "as outside", function()
      local endpoint = "http://" .. USER .. ":" .. PASSWORD .. "@127.0.0.1:" .. port_of(emu.endpoint)
      local e = refused_inside({ appcode = "demo", endpoint = endpoint })
      assert.is_string(e, "the endpoint was taken inside nginx")
      assert.matches("^aliocr: ", e)
      assert.matches("must not have a user name or password", e, 1, true)
      assert_no_secret(e, "the message")
      local ok, outside_e = pcall(aliocr.new, { appcode = "demo", endpoint = endpoint })
      assert.is_false(ok)
      assert.matches("must not have a user name or password", outside_e, 1, true)
      assert.equal(0, #emu:requests())
    end)
  end)
end)
