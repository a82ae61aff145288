--- The transport inside nginx: HTTP/1.1 over nginx's non-blocking sockets
-- (cosockets), so that a call yields to nginx's event loop instead of
-- blocking the worker. It answers with the same response table as the C
-- engine (status, headers, body, json, the libcurl error names), so results,
-- errors, billing and retries are decided by the same code.
-- @module aliocr.resty
local M = {}

local concat, lower, floor, max, min = table.concat, string.lower, math.floor, math.max, math.min

local MAX_HEADER_LINES = 200

-- Phases in which nginx lets Lua use sockets.
local SOCKET_PHASES = {
  rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true,
}

--- Whether this code runs inside nginx's Lua module.
function M.available()
  return type(ngx) == "table" and type(ngx.get_phase) == "function" and type(ngx.socket) == "table"
end

--- Sleeps without blocking nginx's worker.
function M.sleep(seconds) ngx.sleep(seconds) end

--- Runs `worker(t, stopped)` in `n` light threads and waits for all of
-- them. When one raises, `stopped()` turns true, so that the others take no
-- new work (what they have under way they finish: a call cut off would
-- leave its billing unknown); then returns false and the first error.
function M.run_threads(n, worker)
  local failure
  local function stopped() return failure ~= nil end
  local function guarded(t)
    local ok, err = pcall(worker, t, stopped)
    if not ok and failure == nil then failure = err end
  end
  local threads = {}
  for t = 1, n do
    local th, err = ngx.thread.spawn(guarded, t)
    if not th then
      failure = failure or ("cannot start a light thread: " .. tostring(err))
      break
    end
    threads[t] = th
  end
  for _, th in ipairs(threads) do ngx.thread.wait(th) end
  if failure ~= nil then return false, failure end
  return true
end

--- Raises, naming the phase and the way out, when sockets are not allowed.
function M.check_phase(fail)
  local phase = ngx.get_phase()
  if not SOCKET_PHASES[phase] then
    fail("nginx does not allow sockets in the '" .. phase .. "' phase: make the call from a " ..
      "rewrite, access or content handler, or from a timer (ngx.timer.at(0, function() ... end))")
  end
end

-- libcurl's codes for the failures a cosocket can meet, so that an error
-- looks the same whatever the transport.
local CODES = {
  COULDNT_RESOLVE_PROXY = 5, COULDNT_RESOLVE_HOST = 6, COULDNT_CONNECT = 7, WEIRD_SERVER_REPLY = 8,
  PARTIAL_FILE = 18, OPERATION_TIMEDOUT = 28, SSL_CONNECT_ERROR = 35, GOT_NOTHING = 52,
  SEND_ERROR = 55, RECV_ERROR = 56, PEER_FAILED_VERIFICATION = 60,
}

local function failure(r, name, msg)
  r.curl_code, r.curl_name, r.curl_error = CODES[name], name, msg
  return r
end

local Engine = {}
Engine.__index = Engine

--- A new engine: `{ json_max_depth = 64, pool_size = 30, idle_timeout = 10 }`
-- (idle_timeout: the seconds a kept-alive connection stays in nginx's pool).
function M.engine(opts)
  local cjson = require("cjson").new()
  cjson.decode_max_depth(opts.json_max_depth or 64)
  cjson.decode_invalid_numbers(false)
  return setmetatable({
    decode = cjson.decode,
    pool_size = opts.pool_size or 30,
    idle_ms = (opts.idle_timeout or 10) * 1000,
  }, Engine)
end

function Engine:close()
  self.closed = true
  return true
end

-- scheme, host, port, and the path with its query, of an http(s) URL.
local function parse_url(url)
  local scheme, authority, rest = url:match("^(%a+)://([^/?#]+)(.*)$")
  scheme = lower(scheme or "")
  local host, port = authority:match("^%[([^%]]+)%]:?(%d*)$")
  if not host then host, port = authority:match("^([^:]+):?(%d*)$") end
  port = tonumber(port) or (scheme == "https" and 443 or 80)
  local path = rest:gsub("#.*$", "")
  if path == "" or path:sub(1, 1) == "?" then path = "/" .. path end
  return scheme, host, port, path
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

-- Reads the status line and the headers (after any 1xx answers). Returns
-- status, headers (lower-cased names; repeated ones joined with ", "), or
-- nil, the error, and whether any byte came.
local function read_head(sock)
  local got_any = false
  while true do
    local line, err = sock:receive("*l")
    if not line then return nil, err, got_any end
    got_any = true
    local status = tonumber(line:match("^HTTP/%d%.?%d? (%d%d%d)"))
    if not status then return nil, "weird", true end
    local headers, n = {}, 0
    while true do
      line, err = sock:receive("*l")
      if not line then return nil, err, true, status, headers end
      if line == "" then break end
      n = n + 1
      if n > MAX_HEADER_LINES then return nil, "weird", true end
      local name, value = line:match("^([^:]+):%s*(.-)%s*$")
      if name then
        name = lower(name)
        headers[name] = headers[name] and (headers[name] .. ", " .. value) or value
      end
    end
    if status >= 200 or status == 101 then return status, headers end
  end
end

-- Reads a chunked body up to `cap` bytes; returns the body, or nil, the
-- error ("too large" when over the cap) and what arrived.
local function read_chunked(sock, cap)
  local parts, size = {}, 0
  while true do
    local line, err = sock:receive("*l")
    if not line then return nil, err, concat(parts) end
    local n = tonumber(line:match("^%x+"), 16)
    if not n then return nil, "weird", concat(parts) end
    if n == 0 then
      repeat
        line, err = sock:receive("*l") -- trailers, then the empty line
        if not line then return nil, err, concat(parts) end
      until line == ""
      return concat(parts)
    end
    if size + n > cap then return nil, "too large", concat(parts) end
    local chunk, cerr, partial = sock:receive(n)
    if not chunk then
      parts[#parts + 1] = partial
      return nil, cerr, concat(parts)
    end
    parts[#parts + 1] = chunk
    size = size + n
    local crlf
    crlf, err = sock:receive(2)
    if not crlf then return nil, err, concat(parts) end
  end
end

-- Reads a body that ends when the connection does, up to `cap` bytes.
local function read_to_close(sock, cap)
  local parts, size = {}, 0
  while true do
    local data, err = sock:receiveany(65536)
    if not data then
      if err == "closed" then return concat(parts) end
      return nil, err, concat(parts)
    end
    size = size + #data
    if size > cap then return nil, "too large", concat(parts) end
    parts[#parts + 1] = data
  end
end

-- One try on one connection. Returns the response; `stale` is set when a
-- kept-alive connection turned out to be dead while the request was being
-- written (the server closed it while idle), so that the gateway cannot have
-- received all of it: the caller tries once more on a new one. Once the
-- request went out, a connection that dies gives an error, never a resend.
function Engine:_once(req, deadline, fresh)
  local r = { status = 0, headers = {}, body = "", sent = false, too_large = false, connects = 0 }
  local scheme, host, port, path = parse_url(req.url)
  local verify = req.verify ~= false
  local proxy_scheme, proxy_host, proxy_port
  if req.proxy and req.proxy ~= "" then
    proxy_scheme, proxy_host, proxy_port = parse_url(req.proxy)
    if proxy_scheme ~= "http" then
      return failure(r, "COULDNT_RESOLVE_PROXY", "only http:// proxies are supported inside nginx")
    end
  end

  local sock = ngx.socket.tcp()
  local connect_ms = req.connect_timeout_ms or 300000
  set_deadline(sock, deadline, connect_ms)
  -- Connections are shared by every client of the worker with the same
  -- target, proxy and TLS trust.
  local pool = concat({ scheme, host, port, verify and "v" or "n", req.ca_file or "", req.proxy or "" }, "|")
  local ok, err = sock:connect(proxy_host or host, proxy_port or port,
    { pool = pool, pool_size = self.pool_size })
  if not ok then
    local name, msg = connect_error(err)
    if proxy_host and name == "COULDNT_RESOLVE_HOST" then name = "COULDNT_RESOLVE_PROXY" end
    return failure(r, name, msg)
  end
  local reused = (sock:getreusedtimes() or 0) > 0
  r.connects = reused and 0 or 1
  local may_be_stale = reused and not fresh

  if scheme == "https" and not reused then
    if proxy_host then
      set_deadline(sock, deadline)
      local target = host .. ":" .. port
      ok = sock:send("CONNECT " .. target .. " HTTP/1.1\r\nHost: " .. target .. "\r\n\r\n")
      local status = ok and read_head(sock)
      if status ~= 200 then
        sock:close()
        return failure(r, "COULDNT_CONNECT", "the proxy refused to tunnel to " .. target)
      end
    end
    local called
    called, ok, err = pcall(sock.sslhandshake, sock, nil, host, verify)
    if not called then
      -- lua-resty-core 0.1.25 (Debian 12) raises "assertion failed!" instead
      -- of returning the error when a handshake that completed at once
      -- failed nginx's checks; with verification on, that is the check of
      -- the certificate.
      ok, err = nil, verify and "certificate verify failed (" .. tostring(ok) .. ")" or tostring(ok)
    end
    if not ok then
      sock:close()
      -- nginx words a failed verification "<X509 error number>: <reason>",
      -- or "certificate host mismatch".
      if err:find("^%d+: ") or err:find("certificate verify failed", 1, true) or
          err:find("host mismatch", 1, true) then
        return failure(r, "PEER_FAILED_VERIFICATION",
          "SSL certificate problem: " .. err .. " (nginx trusts the CAs of lua_ssl_trusted_certificate)")
      end
      return failure(r, "SSL_CONNECT_ERROR", "TLS handshake failed: " .. err)
    end
  end

  -- The request.
  local target = path
  if proxy_host and scheme == "http" then target = scheme .. "://" .. host .. ":" .. port .. path end
  local default_port = (scheme == "https" and port == 443) or (scheme == "http" and port == 80)
  local lines = {
    (req.method or "POST") .. " " .. target .. " HTTP/1.1",
    "Host: " .. (host:find(":", 1, true) and ("[" .. host .. "]") or host) .. (default_port and "" or (":" .. port)),
  }
  if req.user_agent then lines[#lines + 1] = "User-Agent: " .. req.user_agent end
  for _, h in ipairs(req.headers or {}) do lines[#lines + 1] = h end
  if req.credentials and req.credentials:mode() == "appcode" then
    lines[#lines + 1] = "Authorization: " .. req.credentials:authorization()
  end
  local body = req.body
  if (req.method or "POST") == "POST" then
    body = body or ""
    lines[#lines + 1] = "Content-Length: " .. #body
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = body or ""

  set_deadline(sock, deadline, connect_ms)
  local bytes
  bytes, err = sock:send(concat(lines, "\r\n"))
  if not bytes then
    sock:close()
    if may_be_stale and err == "closed" then r.stale = true return r end
    r.sent = true
    return failure(r, err == "timeout" and "OPERATION_TIMEDOUT" or "SEND_ERROR", "send failed: " .. err)
  end
  r.sent = true

  -- The answer.
  local status, head_or_err, got_any, partial_status, partial_headers = read_head(sock)
  if not status then
    sock:close()
    err = head_or_err
    if may_be_stale and not got_any and (err == "closed" or err == "connection reset by peer") then
      -- The whole request went out: the gateway may have received it and
      -- billed it, so it is not sent again (the C engine refuses libcurl's
      -- resend in the same case).
      return failure(r, "GOT_NOTHING", "the kept-alive connection closed before any byte of the answer (" ..
        err .. "); the request was not sent again, since the gateway may have received it")
    end
    if partial_status then r.status, r.headers = partial_status, partial_headers end
    if err == "timeout" then return failure(r, "OPERATION_TIMEDOUT", "operation timed out: no complete answer") end
    if err == "weird" then return failure(r, "WEIRD_SERVER_REPLY", "the answer is not HTTP") end
    if err == "closed" and not got_any then return failure(r, "GOT_NOTHING", "empty reply from server") end
    return failure(r, "RECV_ERROR", "receive failed: " .. tostring(err))
  end
  r.status, r.headers = status, head_or_err

  local cap = req.max_bytes or 16 * 1024 * 1024
  local length = tonumber(r.headers["content-length"])
  local data, rest
  local chunked = (r.headers["transfer-encoding"] or ""):lower():find("chunked", 1, true)
  if chunked then length = nil end -- chunked wins over Content-Length (RFC 9112, 6.3)
  if status == 204 or status == 304 then
    length = 0 -- no body, whatever the headers say (RFC 9112, 6.3)
  end
  if length and length > cap then
    r.too_large = true
    sock:close()
    return r
  elseif length == 0 then
    data = ""
  elseif length then
    data, err, rest = sock:receive(length)
  elseif chunked then
    data, err, rest = read_chunked(sock, cap)
  else
    data, err, rest = read_to_close(sock, cap)
  end
  if not data then
    sock:close()
    r.body = rest or ""
    if err == "too large" then
      r.too_large = true
      return r
    end
    if err == "timeout" then return failure(r, "OPERATION_TIMEDOUT", "operation timed out during the body") end
    if err == "weird" then return failure(r, "WEIRD_SERVER_REPLY", "a malformed chunked body") end
    return failure(r, err == "closed" and "PARTIAL_FILE" or "RECV_ERROR",
      "the answer was cut short: " .. tostring(err))
  end
  r.body = data

  if (r.headers["connection"] or ""):lower():find("close", 1, true) or not (length or chunked) then
    sock:close()
  else
    sock:setkeepalive(self.idle_ms, self.pool_size)
  end

  if req.decode ~= false and r.body ~= "" then
    local okj, value = pcall(self.decode, r.body)
    if okj then r.json = value else r.json_error = tostring(value) end
  end
  return r
end

--- One request: the response table of the C engine's `perform`.
function Engine:perform(req)
  if self.closed then error("attempt to use a closed aliocr engine", 2) end
  local started = now()
  local deadline = started + (req.timeout_ms or 300000) / 1000
  local r = self:_once(req, deadline, false)
  if r.stale then r = self:_once(req, deadline, true) end
  r.stale = nil
  r.elapsed = now() - started
  return r
end

return M
