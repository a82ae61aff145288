-- A small HTTP proxy for specs (run by helpers.proxy as its own lua5.4
-- process), on a free port of 127.0.0.1: absolute-form requests
-- ("POST http://host:port/path HTTP/1.1") are forwarded one per connection
-- (it asks the server to close, and closes after the answer), and CONNECT
-- opens a tunnel. With PROXY_AUTH=user:password in its environment it
-- requires "Proxy-Authorization: Basic ..." with those credentials and
-- answers 407 otherwise. Usage:
--   [PROXY_AUTH=user:password] lua5.4 spec/helpers/proxy_server.lua DIR
-- It writes its port to DIR/port and one line per request to DIR/log:
--   "<connection number> <method> <target> <auth>"
-- where auth is ok, wrong or missing (credentials required), or given or
-- none (not required). The credentials themselves are never written.
-- Target names it looks up itself: localhost and emulator.test are
-- 127.0.0.1. It runs until killed.
local socket = require("socket")
local mime = require("mime")

local dir = assert(arg[1], "usage: proxy_server.lua DIR")
local auth = os.getenv("PROXY_AUTH")
local expected = auth and ("Basic " .. mime.b64(auth)) or nil
local NAMES = { localhost = "127.0.0.1", ["emulator.test"] = "127.0.0.1" }

local server = assert(socket.bind("127.0.0.1", 0))
server:settimeout(0)
local _, port = server:getsockname()
local log = assert(io.open(dir .. "/log", "ab"))
log:setvbuf("line")
do
  local f = assert(io.open(dir .. "/port.tmp", "wb"))
  f:write(tostring(port), "\n")
  f:close()
  os.rename(dir .. "/port.tmp", dir .. "/port")
end

-- Coroutines waiting for a socket: waiting[co] = { sock, "r" | "w" }.
local waiting = {}
local function wait(sock, mode) coroutine.yield(sock, mode) end

local function resume(co, ...)
  local ok, sock, mode = coroutine.resume(co, ...)
  if not ok then
    io.stderr:write("proxy: ", tostring(sock), "\n")
    return
  end
  if coroutine.status(co) ~= "dead" then waiting[co] = { sock, mode } end
end

local function spawn(f, ...) resume(coroutine.create(f), ...) end

-- A connection with a read buffer.
local function conn(sock)
  sock:settimeout(0)
  return { sock = sock, buf = "" }
end

-- More bytes into c.buf; false when the peer closed (or failed) and nothing came.
local function fill(c)
  while true do
    local data, err, partial = c.sock:receive(65536)
    data = data or partial or ""
    if data ~= "" then
      c.buf = c.buf .. data
      return true
    end
    if err ~= "timeout" then return false end
    wait(c.sock, "r")
  end
end

local function readline(c)
  while true do
    local i, j = c.buf:find("\r?\n")
    if i then
      local line = c.buf:sub(1, i - 1)
      c.buf = c.buf:sub(j + 1)
      return line
    end
    if #c.buf > 65536 or not fill(c) then return nil end
  end
end

local function readn(c, n)
  while #c.buf < n do
    if not fill(c) then return nil end
  end
  local data = c.buf:sub(1, n)
  c.buf = c.buf:sub(n + 1)
  return data
end

local function sendall(sock, data)
  local i = 1
  while i <= #data do
    local sent, err, last = sock:send(data, i)
    if sent then
      i = sent + 1
    elseif err == "timeout" then
      i = last + 1
      wait(sock, "w")
    else
      return false
    end
  end
  return true
end

local function connect(host, to_port)
  host = NAMES[host:lower()] or host:gsub("^%[(.*)%]$", "%1")
  local s = host:find(":", 1, true) and socket.tcp6() or socket.tcp()
  s:settimeout(2)
  local ok = s:connect(host, to_port)
  if not ok then
    s:close()
    return nil
  end
  return conn(s)
end

-- Copies from `a` to `b` until either side closes.
local function copy(a, b)
  while true do
    if a.buf == "" and not fill(a) then break end
    local data = a.buf
    a.buf = ""
    if not sendall(b.sock, data) then break end
  end
  a.sock:close()
  b.sock:close()
end

local function answer(c, status, reason, extra)
  local body = reason .. "\n"
  sendall(c.sock, "HTTP/1.1 " .. status .. " " .. reason .. "\r\n" .. (extra or "") ..
    "Content-Type: text/plain\r\nContent-Length: " .. #body .. "\r\nConnection: close\r\n\r\n" .. body)
  c.sock:close()
end

local connections = 0

local function handle(c)
  connections = connections + 1
  local id = connections
  local line = readline(c)
  if not line then return c.sock:close() end
  local method, target = line:match("^(%u+) (%S+) HTTP/1%.[01]$")
  if not method then return answer(c, 400, "Bad Request") end
  local headers, length, given = {}, 0, nil
  while true do
    local h = readline(c)
    if not h then return c.sock:close() end
    if h == "" then break end
    local name, value = h:match("^([^:]+):%s*(.-)%s*$")
    if not name then return answer(c, 400, "Bad Request") end
    local lname = name:lower()
    if lname == "proxy-authorization" then
      given = value
    elseif lname ~= "proxy-connection" and lname ~= "connection" and lname ~= "keep-alive" then
      headers[#headers + 1] = h
      if lname == "content-length" then length = tonumber(value) or 0 end
    end
  end
  local how
  if expected then
    how = given == nil and "missing" or (given == expected and "ok" or "wrong")
  else
    how = given and "given" or "none"
  end
  log:write(string.format("%d %s %s %s\n", id, method, target, how))
  if how == "missing" or how == "wrong" then
    return answer(c, 407, "Proxy Authentication Required", 'Proxy-Authenticate: Basic realm="spec"\r\n')
  end

  if method == "CONNECT" then
    local host, p = target:match("^(.+):(%d+)$")
    local up = host and connect(host, tonumber(p))
    if not up then return answer(c, 502, "Bad Gateway") end
    if not sendall(c.sock, "HTTP/1.1 200 Connection established\r\n\r\n") then
      up.sock:close()
      return c.sock:close()
    end
    spawn(copy, up, c)
    return copy(c, up)
  end

  local host, p, path = target:match("^[hH][tT][tT][pP]://([^/]+):(%d+)(/.*)$")
  if not host then
    host, path = target:match("^[hH][tT][tT][pP]://([^/:]+)(/.*)$")
    p = 80
  end
  if not host then return answer(c, 400, "Bad Request") end
  local body = readn(c, length)
  if not body then return c.sock:close() end
  local up = connect(host, tonumber(p))
  if not up then return answer(c, 502, "Bad Gateway") end
  headers[#headers + 1] = "Connection: close"
  if not sendall(up.sock, method .. " " .. path .. " HTTP/1.1\r\n" .. table.concat(headers, "\r\n") ..
      "\r\n\r\n" .. body) then
    up.sock:close()
    return c.sock:close()
  end
  copy(up, c)
end

while true do
  local recvt, sendt, closed = { server }, {}, {}
  for co, w in pairs(waiting) do
    if w[1]:getfd() < 0 then
      closed[#closed + 1] = co -- closed by the other direction of a tunnel
    else
      local list = w[2] == "w" and sendt or recvt
      list[#list + 1] = w[1]
    end
  end
  for _, co in ipairs(closed) do
    waiting[co] = nil
    resume(co)
  end
  local readable, writable = socket.select(recvt, sendt, 1)
  local ready = {}
  for co, w in pairs(waiting) do
    if (w[2] == "w" and writable[w[1]]) or (w[2] == "r" and readable[w[1]]) then ready[#ready + 1] = co end
  end
  for _, co in ipairs(ready) do
    waiting[co] = nil
    resume(co)
  end
  if readable[server] then
    local client = server:accept()
    if client then spawn(handle, conn(client)) end
  end
end
