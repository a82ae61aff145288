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
]]
local SOL_SOCKET, SO_LINGER = 1, 13
local linger = ffi.new("struct aliocr_emu_linger", 1, 0)

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
