-- Ways to answer (or not answer) an API request: a full response, a gateway
-- error, a connection reset, a stalled or cut-short body.
local ffi = require("ffi")
local base = require("resty.core.base")
local errors = require("aliocr_emu.errors")

local M = {}

M.JSON = "application/json; charset=UTF-8"

ffi.cdef[[
typedef struct { uint32_t signature; void *connection; } aliocr_emu_request_t;
typedef struct { void *data; void *read; void *write; int fd; } aliocr_emu_connection_t;
struct aliocr_emu_linger { int l_onoff; int l_linger; };
int setsockopt(int sockfd, int level, int optname, const void *optval, unsigned int optlen);
struct aliocr_emu_sockaddr { uint16_t family; char data[14]; };
int connect(int sockfd, const void *addr, unsigned int addrlen);
]]
local SOL_SOCKET, SO_LINGER = 1, 13
local linger = ffi.new("struct aliocr_emu_linger", 1, 0)
local unspec = ffi.new("struct aliocr_emu_sockaddr") -- family 0: AF_UNSPEC

--- Sends a complete response and ends the request.
function M.send(status, body, content_type, extra_headers)
  ngx.status = status
  if content_type then ngx.header["Content-Type"] = content_type end
  if extra_headers then
    for k, v in pairs(extra_headers) do ngx.header[k] = v end
  end
  ngx.header["Content-Length"] = #body
  if body ~= "" then ngx.print(body) end
  return ngx.exit(ngx.OK)
end

--- Sends gateway error `name` in the headers, with an empty body.
function M.gateway_error(name, style, detail)
  local status, message, code = errors.lookup(name, style, detail)
  ngx.header["X-Ca-Error-Message"] = message
  if code then ngx.header["X-Ca-Error-Code"] = code end
  return M.send(status, "")
end

--- Sends a gateway error given by its parts.
function M.custom_gateway_error(status, message, code)
  ngx.header["X-Ca-Error-Message"] = message
  if code then ngx.header["X-Ca-Error-Code"] = code end
  return M.send(status, "")
end

--- Resets the TCP connection: SO_LINGER with a zero timeout makes the close
-- that follows send RST instead of FIN. Under HTTP/2 there is no socket of
-- the request's own (fd is -1) and only the stream is reset.
function M.reset()
  local r = ffi.cast("aliocr_emu_request_t *", base.get_request())
  local c = ffi.cast("aliocr_emu_connection_t *", r.connection)
  if c.fd >= 0 then
    ffi.C.setsockopt(c.fd, SOL_SOCKET, SO_LINGER, linger, ffi.sizeof(linger))
  end
  return ngx.exit(444)
end

--- Sends the status line and headers (with the full Content-Length of
-- `body`), then `sent` bytes of the body, then calls `after()`.
function M.partial(status, body, content_type, sent, after)
  ngx.status = status
  ngx.header["Content-Type"] = content_type
  ngx.header["Content-Length"] = #body
  ngx.send_headers()
  if sent > 0 then ngx.print(body:sub(1, sent)) end
  ngx.flush(true)
  return after()
end

--- Sends `body` in chunked transfer encoding, in `pieces` parts.
function M.chunked(status, body, content_type, pieces)
  ngx.status = status
  ngx.header["Content-Type"] = content_type
  local size = math.max(1, math.ceil(#body / pieces))
  for i = 1, #body, size do
    ngx.print(body:sub(i, i + size - 1))
    ngx.flush(true)
  end
  return ngx.exit(ngx.OK)
end

--- Sends exactly the bytes of fault rule `r` (see faults.lua, mode "raw")
-- over the request's own socket, bypassing nginx's HTTP output: `data`,
-- then `fill.bytes` copies of `fill.byte` in blocks of 64 KiB (never held
-- whole), then each of `pieces` after a pause of `gap_ms`; then closes the
-- connection (`after` "close"), resets it ("reset") or keeps it open
-- ("hold"), reading and dropping what the client sends, until the client
-- closes it or `hold_ms` pass. The request's status, as the log phase sees
-- it (and bills it), is `r.status`: nothing of `data` is parsed. A write
-- that fails (the client went away) ends the answer there.
function M.raw(r)
  ngx.status = r.status
  -- The raw socket needs the request body read first (gateway.handle did,
  -- for every method that has one) and no header sent.
  local sock, err = ngx.req.socket(true)
  if not sock then
    ngx.log(ngx.ERR, "raw fault: no raw socket: ", err)
    return ngx.exit(444)
  end
  sock:settimeout(10000)
  local ok = true
  local function put(s)
    if ok and s ~= "" then ok = sock:send(s) ~= nil end
    return ok
  end
  put(r.data or "")
  if r.fill then
    local left = r.fill.bytes
    local block = string.rep(r.fill.byte or "A", 65536)
    while left > 0 and ok do
      local n = math.min(left, #block)
      put(n == #block and block or block:sub(1, n))
      left = left - n
    end
  end
  for _, piece in ipairs(r.pieces or {}) do
    if not ok then break end
    if (r.gap_ms or 0) > 0 then ngx.sleep(r.gap_ms / 1000) end
    put(piece)
  end
  local after = r.after or "close"
  if after == "hold" and ok then
    ngx.update_time()
    local deadline = ngx.now() + (r.hold_ms or 60000) / 1000
    while true do
      ngx.update_time()
      local wait = deadline - ngx.now()
      if wait <= 0 then break end
      sock:settimeout(math.max(1, math.floor(wait * 1000)))
      local got, e = sock:receiveany(65536)
      if not got and e ~= "timeout" then break end -- the client closed it
    end
  end
  if after == "reset" then
    -- connect() to AF_UNSPEC disconnects a TCP socket at once with a RST
    -- (Linux), whatever nginx does when it closes the connection later
    -- (after a raw socket it may close it lingering, with a FIN first).
    local req = ffi.cast("aliocr_emu_request_t *", base.get_request())
    local c = ffi.cast("aliocr_emu_connection_t *", req.connection)
    if c.fd >= 0 then ffi.C.connect(c.fd, unspec, ffi.sizeof(unspec)) end
  end
  -- After a raw socket nginx keeps no connection alive: finalizing the
  -- request closes it, and the log phase sees ngx.status as set above.
  return ngx.exit(ngx.OK)
end

local HUGE_HEAD, HUGE_TAIL = '{"ok":1,"msg":"查询成功","data":"', '"}'
M.HUGE_MIN = #HUGE_HEAD + #HUGE_TAIL

--- Streams a body of `bytes` bytes (at least HUGE_MIN: a valid JSON answer
-- padded with "A"s), never holding it whole, with or without a Content-Length.
function M.huge(bytes, chunked)
  local head, tail = HUGE_HEAD, HUGE_TAIL
  local fill = math.max(bytes - #head - #tail, 0)
  ngx.status = 200
  ngx.header["Content-Type"] = M.JSON
  if not chunked then ngx.header["Content-Length"] = #head + fill + #tail end
  ngx.print(head)
  local block = string.rep("A", 65536)
  while fill > 0 do
    local n = math.min(fill, #block)
    ngx.print(n == #block and block or block:sub(1, n))
    local ok = ngx.flush(true)
    if not ok then return ngx.exit(444) end -- the client went away
    fill = fill - n
  end
  ngx.print(tail)
  return ngx.exit(ngx.OK)
end

return M
