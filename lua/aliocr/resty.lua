--- The transport inside nginx: HTTP/1.1 over nginx's non-blocking sockets
-- (cosockets), so that a call yields to nginx's event loop instead of
-- blocking the worker. The core builds its requests (config:request) and
-- its response tables (reader:response: the transport contract of
-- src/response.c, the same as the C engine's), so results, errors, billing
-- and retries are decided by the same code. The fields a transport has are
-- listed in lua/aliocr/curl.lua.
-- @module aliocr.resty
local M = { name = "resty", light_threads = true, supports_jobs = false }

local concat, lower, floor, max, min = table.concat, string.lower, math.floor, math.max, math.min

-- Phases in which nginx lets Lua use sockets.
-- ngx_lua's "yieldable" contexts, where cosockets, ngx.sleep and light
-- threads all work: those of 0.10.23 (Debian 12), plus precontent,
-- proxy_ssl_cert and proxy_ssl_verify of later releases.
local SOCKET_PHASES = {
  rewrite = true, server_rewrite = true, access = true, precontent = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true, proxy_ssl_cert = true,
  proxy_ssl_verify = true,
}

--- Whether this code runs inside nginx's Lua module.
function M.available()
  return type(ngx) == "table" and type(ngx.get_phase) == "function" and type(ngx.socket) == "table"
end

--- Sleeps without blocking nginx's worker.
function M.sleep(seconds) ngx.sleep(seconds) end

--- Runs `fn()` in `seconds`, in a light thread of its own (an nginx timer),
-- unless nginx's worker is exiting by then.
function M.later(seconds, fn)
  ngx.timer.at(seconds, function(premature) if not premature then fn() end end)
end

--- Why nothing new is to start: nginx's worker is shutting down (a QUIT,
-- or a HUP's old worker); nil while it serves.
function M.exiting()
  if ngx.worker.exiting() == true then return "nginx's worker is exiting" end
  return nil
end

-- The most light threads one ngx.thread.wait is given (LuaJIT unpacks at
-- most about 8000 values).
local MAX_WAIT = 1000
local unpack = table.unpack or unpack -- luacheck: ignore 143

--- Runs `worker(t, stopped)` in `n` light threads and waits for all of
-- them. `stopped()` says why the threads are to take no new work (nil while
-- they may): one of them raised (what the others have under way they
-- finish: a call cut off would leave its billing unknown), or the light
-- thread that called run_threads is dead (killed by ngx.thread.kill: its
-- threads live on without it, and nobody waits for their work). Then
-- returns true, or false and the first error.
function M.run_threads(n, worker)
  local failure
  -- nginx's coroutine.status knows the light threads it killed.
  local caller = coroutine.running()
  local function stopped()
    if failure ~= nil then return "one of its light threads raised an error" end
    if caller and coroutine.status(caller) == "dead" then return "the light thread that ran it was killed" end
    return nil
  end
  local function guarded(t)
    local ok, err = pcall(worker, t, stopped)
    if not ok and failure == nil then failure = err end
    return t
  end
  local threads, left = {}, 0
  for t = 1, n do
    local th, err = ngx.thread.spawn(guarded, t)
    if not th then
      failure = failure or ("cannot start a light thread: " .. tostring(err))
      break
    end
    threads[t], left = th, left + 1
  end
  -- Each thread is waited for as soon as it ends (not in order): one that
  -- ended stays a "zombie" until waited for, and if this light thread were
  -- killed meanwhile nobody could ever wait for it, and nginx would never
  -- end the request. While this thread waits, an ended one wakes it at once
  -- (with more than MAX_WAIT threads, the first MAX_WAIT are waited for).
  local pending = {}
  while left > 0 do
    local list, k = pending, 0
    for _, th in pairs(threads) do
      k = k + 1
      list[k] = th
      if k == MAX_WAIT then break end
    end
    for i = k + 1, #list do list[i] = nil end
    local ok, t = ngx.thread.wait(unpack(list, 1, k))
    if not ok or threads[t] == nil then
      -- Not one of ours that ended (never, short of a bug in nginx): wait
      -- for each in turn, as nginx would have it.
      for _, th in pairs(threads) do ngx.thread.wait(th) end
      break
    end
    threads[t], left = nil, left - 1
  end
  if failure ~= nil then return false, failure end
  return true
end

--- Nil where nginx allows sockets; elsewhere the message of the refusal,
-- naming the phase and the way out (the caller raises it, from its caller's line).
function M.check_place()
  local phase = ngx.get_phase()
  if SOCKET_PHASES[phase] then return nil end
  local way
  if phase == "exit_worker" then
    -- nginx allows no new timer there either.
    way = "an exiting worker can start no timer either: make the call while the worker serves " ..
      "(from a request handler, or from a timer that checks ngx.worker.exiting())"
  elseif phase == "init" then
    way = "the master process runs it, before any worker: start a timer from init_worker_by_lua " ..
      "(ngx.timer.at(0, function() ... end)) and make the call there"
  else
    way = "make the call from a rewrite, access or content handler, or from a timer " ..
      "(ngx.timer.at(0, function() ... end))"
  end
  return "nginx does not allow sockets in the '" .. phase .. "' phase: " .. way
end

-- The response of an attempt that got no answer: failures are named as
-- libcurl names them, so that an error looks the same whatever the
-- transport (the response table is the core's: src/response.c).
local transport_failure -- aliocr.core's, loaded with the first engine

-- The bytes asked of the socket at a time.
local PIECE = 65536

local http_reader -- aliocr.core's too

-- Which location's TLS trust applies: nginx verifies a server's certificate
-- with the lua_ssl_trusted_certificate (and lua_ssl_verify_depth) of the
-- location that makes the call (a timer: of the location that made the
-- timer), which Lua cannot read. Each location has a configuration array
-- of its own, kept for the worker's life: its address names the trust, so
-- that a connection verified under one location's trust is never reused
-- under another's. nil when it cannot be told (then verified connections
-- are not kept at all).
local trust_scope
do
  local has_ffi, ffi = pcall(require, "ffi")
  local has_base, base = pcall(require, "resty.core.base")
  if has_ffi and has_base and type(base) == "table" and base.get_request then
    -- The head of nginx's ngx_http_request_t, unchanged since nginx 0.x.
    pcall(ffi.cdef, [[
      typedef struct { uint32_t signature; void *connection; void **ctx; void **main_conf; void **srv_conf;
        void **loc_conf; } aliocr_ngx_request_head;
    ]])
    local NGX_HTTP_MODULE = 0x50545448 -- "HTTP": the signature of every request
    trust_scope = function()
      local r = base.get_request()
      if r == nil then return nil end
      local head = ffi.cast("aliocr_ngx_request_head *", r)
      if head.signature ~= NGX_HTTP_MODULE then return nil end
      return string.format("%x", tonumber(ffi.cast("uintptr_t", head.loc_conf)))
    end
  else
    trust_scope = function() return nil end
  end
end

local Engine = {}
Engine.__index = Engine

--- A new engine for a client's configuration (an aliocr.Config, which
-- builds every request) and its settings (aliocr.options, all checked):
-- `decode` (the JSON decoder), `concurrency` (the pool keeps at least 30
-- connections, more for a higher concurrency), `idle_timeout` (the seconds
-- a kept-alive connection stays in nginx's pool), `connect_timeout_ms`,
-- `max_bytes`, `verify`, `ca_file`, `proxy`, `user_agent`.
function M.engine(config, opts)
  local core = require("aliocr.core")
  http_reader, transport_failure = core.http_reader, core.transport_failure
  return setmetatable({
    config = config,
    settings = opts,
    pool_size = max(30, opts.concurrency),
    idle_ms = opts.idle_timeout * 1000,
  }, Engine)
end

function Engine:close()
  self.closed = true
  return true
end

-- The parts of a URL the client checked already (aliocr.url): scheme, user
-- info (or nil), host (an IPv6 address without its brackets), port, and the
-- path with its query. A proxy without a scheme is an HTTP proxy.
local function parse_url(url)
  local scheme, authority, rest = url:match("^(%a[%w+.-]*)://([^/?#]*)(.*)$")
  if not scheme then scheme, authority, rest = "http", url:match("^([^/?#]*)(.*)$") end
  scheme = lower(scheme)
  local userinfo, hostport = authority:match("^(.*)@(.*)$")
  hostport = hostport or authority
  local host, port = hostport:match("^%[([^%]]+)%]:?(%d*)$")
  if not host then host, port = hostport:match("^([^:]*):?(%d*)$") end
  port = tonumber(port) or (scheme == "https" and 443 or 80)
  local path = rest:gsub("#.*$", "")
  if path == "" or path:sub(1, 1) == "?" then path = "/" .. path end
  return scheme, userinfo, lower(host), port, path
end

-- Whether `host` is an IP address (then nginx looks nothing up).
local function is_ip(host)
  return host:find(":", 1, true) ~= nil or host:match("^%d+%.%d+%.%d+%.%d+$") ~= nil
end

-- The address as nginx's connect takes it (an IPv6 one in brackets).
local function address(host)
  return host:find(":", 1, true) and ("[" .. host .. "]") or host
end

--- Why the nginx transport cannot take a client's settings, or nil.
-- `cfg`: the client's settings (aliocr.options): `urls = { name = url }`,
-- `proxy` (a URL or nil) and `verify` here, already checked by aliocr.url
-- as libcurl takes them.
function M.unsupported(cfg)
  if cfg.proxy then
    local scheme = parse_url(cfg.proxy)
    if scheme ~= "http" then
      return "inside nginx the proxy must be an http:// proxy (nginx's sockets speak neither SOCKS nor " ..
        "TLS to a proxy), not " .. scheme .. "://"
    end
  end
  if cfg.verify then
    for _, url in pairs(cfg.urls) do
      local scheme, _, host = parse_url(url)
      if scheme == "https" and is_ip(host) then
        return "inside nginx an https:// URL must name its host (" .. url:match("^[^/]*//[^/]*") ..
          "): nginx checks a certificate's DNS names only, not IP addresses; use the host name " ..
          "the certificate is for, or tls_verify = false"
      end
    end
  end
  return nil
end

local function now() ngx.update_time() return ngx.now() end

-- The milliseconds left before `deadline` (at least 1).
local function left_ms(deadline) return max(1, floor((deadline - now()) * 1000)) end

-- Every socket operation may take what is left before `deadline`; the
-- connect at most `connect_ms` of that.
local function set_deadline(sock, deadline, connect_ms)
  local ms = left_ms(deadline)
  sock:settimeouts(min(connect_ms or ms, ms), ms, ms)
end

local function connect_error(err)
  if err:find("no resolver defined", 1, true) then
    return "COULDNT_RESOLVE_HOST", err .. " (nginx needs a resolver directive to look up names, " ..
      "e.g. `resolver 127.0.0.53;`)"
  end
  if err:find("could not be resolved", 1, true) then return "COULDNT_RESOLVE_HOST", err end
  if err == "timeout" then return "OPERATION_TIMEDOUT", "connect timed out" end
  return "COULDNT_CONNECT", "failed to connect: " .. err
end

local function connect_to(sock, host, port, opts) return "done", sock:connect(host, port, opts) end

-- Sleeps until `deadline`, or until light thread `caller` is dead (killed),
-- checking it every 0.1 s.
local function watch_until(deadline, caller)
  while true do
    local left = deadline - now()
    if left <= 0 then return "deadline" end
    if coroutine.status(caller) == "dead" then return "abandoned" end
    ngx.sleep(min(left, 0.1))
  end
end

-- Connects in a light thread of its own, given up at `deadline`, or as soon
-- as `caller` is dead: it is this thread's child, so this thread can kill it
-- (the caller, once killed, could not, and nginx would not end the request
-- before nginx's resolver gave up).
local function connect_watched(sock, host, port, opts, deadline, caller)
  local th = ngx.thread.spawn(connect_to, sock, host, port, opts)
  local timer = ngx.thread.spawn(watch_until, deadline, caller)
  local _, which, ok, err = ngx.thread.wait(th, timer)
  if which ~= "done" then
    ngx.thread.kill(th)
    return nil, "timeout"
  end
  ngx.thread.kill(timer)
  return ok, err
end

-- Connects within `ms`. nginx looks a name up with its resolver, bounded by
-- resolver_timeout (30 s unless set) and not by the socket's timeouts: a
-- name is then connected to under a watch that gives up after `ms`.
-- Returns true, or nil and the error ("timeout" when it took too long).
local function connect(sock, host, port, opts, ms)
  if is_ip(host) then return sock:connect(address(host), port, opts) end
  local th = ngx.thread.spawn(connect_watched, sock, host, port, opts, now() + ms / 1000, coroutine.running())
  local _, ok, err = ngx.thread.wait(th)
  return ok, err
end

-- Feeds the answer on `sock` to `reader` until it is done; the socket may
-- take at most what is left before `deadline`. Returns true, or nil, a
-- libcurl name and a message.
local function read_answer(sock, reader, deadline)
  local state, name, msg = "more", nil, nil
  while state == "more" do
    local ms = left_ms(deadline)
    sock:settimeouts(ms, ms, ms)
    local data, err = sock:receiveany(PIECE)
    if data then
      state, name, msg = reader:feed(data)
    elseif err == "closed" then
      state, name, msg = reader:eof()
    elseif err == "timeout" then
      return nil, "OPERATION_TIMEDOUT", reader:head() and "operation timed out during the body" or
        "operation timed out: no complete answer"
    else
      return nil, "RECV_ERROR", "receive failed: " .. tostring(err)
    end
  end
  if state ~= "done" then return nil, name, msg end
  return true
end

-- The Basic credentials of a proxy's user info, as the header takes them.
local function proxy_authorization(userinfo)
  local user, password = userinfo:match("^([^:]*):?(.*)$")
  return "Basic " .. ngx.encode_base64(ngx.unescape_uri(user) .. ":" .. ngx.unescape_uri(password))
end

-- One try on one connection of the request `req` (url, headers, body:
-- config:request's). Returns the response; or nil when a kept-alive
-- connection turned out to be dead while the request was being written (the
-- server closed it while idle), so that the gateway cannot have received all
-- of it: the caller tries once more on a new one. Once the request went
-- out, a connection that dies gives an error, never a resend. `on_send` is
-- called before the first byte of the request goes out.
function Engine:_once(req, deadline, fresh, on_send)
  local scheme, _, host, port, path = parse_url(req.url)
  local verify = self.settings.verify
  local proxy_userinfo, proxy_host, proxy_port
  if self.settings.proxy then
    _, proxy_userinfo, proxy_host, proxy_port = parse_url(self.settings.proxy)
  end
  local tls = scheme == "https"

  local sock = ngx.socket.tcp()
  local connect_ms = min(self.settings.connect_timeout_ms, left_ms(deadline))
  set_deadline(sock, deadline, connect_ms)
  -- Connections are shared by every client of the worker with the same
  -- target, proxy and TLS trust (verified under the same location's, or
  -- not verified).
  local scope = "plain"
  if tls then scope = verify and trust_scope() or "unverified" end
  local keep = scope ~= nil
  local pool = concat({ scheme, host, port, verify and "v" or "n", scope or "once", self.settings.ca_file or "",
    self.settings.proxy or "" }, "|")
  local connect_started = now()
  local ok, err = connect(sock, proxy_host or host, proxy_port or port,
    { pool = pool, pool_size = self.pool_size }, connect_ms)
  if not ok then
    local name, msg = connect_error(err)
    if name == "OPERATION_TIMEDOUT" and not is_ip(proxy_host or host) then
      msg = "resolving or connecting timed out after " .. connect_ms .. " ms"
    end
    if proxy_host and name == "COULDNT_RESOLVE_HOST" then name = "COULDNT_RESOLVE_PROXY" end
    return transport_failure(name, msg, false)
  end
  local reused = (sock:getreusedtimes() or 0) > 0
  local may_be_stale = reused and not fresh

  if tls and not reused then
    -- The tunnel and the handshake are part of the connect, as libcurl
    -- counts them.
    local connect_deadline = min(deadline, connect_started + connect_ms / 1000)
    if proxy_host then
      set_deadline(sock, connect_deadline)
      local target = address(host) .. ":" .. port
      local lines = { "CONNECT " .. target .. " HTTP/1.1", "Host: " .. target }
      if proxy_userinfo then lines[#lines + 1] = "Proxy-Authorization: " .. proxy_authorization(proxy_userinfo) end
      lines[#lines + 1] = "\r\n"
      ok = sock:send(concat(lines, "\r\n"))
      local reader = http_reader(0, true)
      local done, name = nil, nil
      if ok then done, name = read_answer(sock, reader, connect_deadline) end
      local status = done and reader:head()
      if status ~= 200 then
        sock:close()
        if name == "OPERATION_TIMEDOUT" or (not ok and now() >= connect_deadline) then
          return transport_failure("OPERATION_TIMEDOUT", "the proxy's answer to CONNECT timed out")
        end
        if status == 407 then
          return transport_failure("COULDNT_CONNECT", "the proxy refused the credentials (407)")
        end
        return transport_failure("COULDNT_CONNECT", "the proxy refused to tunnel to " .. target ..
          (status and (" (" .. status .. ")") or ""))
      end
    end
    set_deadline(sock, connect_deadline)
    -- No SNI for an address (RFC 6066), as libcurl; an https:// URL with an
    -- address is refused at aliocr.new unless verification is off.
    local server_name = not is_ip(host) and host or nil
    local called
    called, ok, err = pcall(sock.sslhandshake, sock, nil, server_name, verify)
    if not called then
      -- lua-resty-core 0.1.25 (Debian 12) raises "assertion failed!" instead
      -- of returning the error when a handshake that completed at once
      -- failed nginx's checks; with verification on, that is the check of
      -- the certificate.
      ok, err = nil, verify and "certificate verify failed" or "the handshake failed"
    end
    if not ok then
      sock:close()
      if err == "timeout" then return transport_failure("OPERATION_TIMEDOUT", "the TLS handshake timed out") end
      -- nginx words a failed verification "<X509 error number>: <reason>",
      -- or "certificate host mismatch".
      if err:find("^%d+: ") or err:find("certificate verify failed", 1, true) or
          err:find("host mismatch", 1, true) then
        return transport_failure("PEER_FAILED_VERIFICATION",
          "SSL certificate problem: " .. err .. " (nginx trusts the CAs of lua_ssl_trusted_certificate)")
      end
      return transport_failure("SSL_CONNECT_ERROR", "TLS handshake failed: " .. err)
    end
  end

  -- The request.
  local target = path
  if proxy_host and not tls then target = scheme .. "://" .. address(host) .. ":" .. port .. path end
  local default_port = (tls and port == 443) or (not tls and port == 80)
  -- config:request gives a body to a POST only; a storage request names its method.
  local method = req.method or (req.body and "POST" or "GET")
  local lines = {
    method .. " " .. target .. " HTTP/1.1",
    "Host: " .. address(host) .. (default_port and "" or (":" .. port)),
  }
  if proxy_host and not tls and proxy_userinfo then
    lines[#lines + 1] = "Proxy-Authorization: " .. proxy_authorization(proxy_userinfo)
  end
  if self.settings.user_agent then lines[#lines + 1] = "User-Agent: " .. self.settings.user_agent end
  for _, h in ipairs(req.headers) do lines[#lines + 1] = h end
  local body = req.body
  if body then lines[#lines + 1] = "Content-Length: " .. #body end
  lines[#lines + 1] = ""
  lines[#lines + 1] = body or ""

  set_deadline(sock, deadline)
  if on_send then on_send() end
  local bytes
  bytes, err = sock:send(concat(lines, "\r\n"))
  if not bytes then
    sock:close()
    if may_be_stale and err == "closed" then return nil end
    return transport_failure(err == "timeout" and "OPERATION_TIMEDOUT" or "SEND_ERROR", "send failed: " .. err, true)
  end

  -- The answer.
  local reader = http_reader(self.settings.max_bytes)
  local done, name, msg = read_answer(sock, reader, deadline)
  local r
  local raw = req.method ~= nil -- a storage request's answer: every header, no decoding
  local decode = self.settings.decode
  if done then
    if keep and reader:keepalive() then
      sock:setkeepalive(self.idle_ms, self.pool_size)
    else
      sock:close()
    end
    r = reader:response(decode, true, nil, nil, nil, raw)
  else
    sock:close()
    if name == "too_large" then
      r = reader:response(decode, true, nil, nil, nil, raw)
    elseif may_be_stale and not reader:got_any() and (name == "GOT_NOTHING" or msg:find("reset", 1, true)) then
      -- The whole request went out: the gateway may have received it and
      -- billed it, so it is not sent again (the C engine refuses libcurl's
      -- resend in the same case).
      r = reader:response(decode, true, nil, nil, true, raw)
    else
      r = reader:response(decode, true, name, msg, nil, raw)
    end
  end
  reader:free()
  return r
end

--- One call, as the C engine's `perform` makes it: `engine:perform(
-- interface, image_url, params, method, timeout_ms[, on_send])`; returns
-- the response table (the transport contract: src/response.c). `on_send`,
-- when given, is called before the first byte of the request goes out
-- (after the connect and the TLS handshake).
function Engine:perform(api, image, params, method, timeout_ms, on_send)
  if self.closed then error("attempt to use a closed aliocr engine", 2) end
  if type(api) == "table" then return self:_storage(api, image) end
  local url, headers, body = self.config:request(api, image, params, method)
  local req = { url = url, headers = headers, body = body }
  local deadline = now() + timeout_ms / 1000
  -- A stale connection is found only by the send, after on_send ran.
  return self:_once(req, deadline, false, on_send) or self:_once(req, deadline, true, nil)
end

--- A storage request (an OSS PUT or DELETE), as the C engine's
-- `perform(request, timeout_ms)` makes it: `request` has `method`, `url`,
-- `headers` (signed already) and, for a PUT, `body` or `file` and `size`
-- (read whole here: nginx's socket takes strings). Its response has every
-- header and the body undecoded. Raises on misuse and when the file cannot
-- be read.
function Engine:_storage(request, timeout_ms)
  local m = request.method
  if m ~= "PUT" and m ~= "GET" and m ~= "DELETE" and m ~= "POST" then
    error("the nginx transport sends PUT, GET, DELETE or POST storage requests, not " .. tostring(m), 3)
  end
  local body = request.body
  if request.file then
    local f, why = io.open(request.file, "rb")
    if not f then error("cannot open the file to send: " .. tostring(why), 3) end
    body = f:read(request.size) or ""
    f:close()
    if #body ~= request.size then error("the file to send is shorter than it was", 3) end
  end
  local req = { url = request.url, headers = request.headers or {}, body = body, method = m }
  local deadline = now() + timeout_ms / 1000
  return self:_once(req, deadline, false, nil) or self:_once(req, deadline, true, nil)
end

return M
