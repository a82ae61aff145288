-- Fetches an image URL for the OCR backend, over nginx's non-blocking
-- sockets, on loopback only: the emulator never reaches beyond the machine.
local state = require("aliocr_emu.state")

local M = {}

M.max_bytes = 10 * 1024 * 1024
M.timeout_ms = 5000

local loopback_names = { localhost = "127.0.0.1", ["localhost.localdomain"] = "127.0.0.1" }

--- Splits an http(s) URL; nil, reason when it is not one.
function M.parse(url)
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then return nil, "not an absolute URL" end
  scheme = scheme:lower()
  if scheme ~= "http" and scheme ~= "https" then return nil, "scheme is not http or https" end
  local authority, path = rest:match("^([^/?#]*)(.*)$")
  path = path:gsub("#.*$", "")
  if path == "" then path = "/" elseif path:sub(1, 1) == "?" then path = "/" .. path end
  authority = authority:gsub("^.*@", "")
  local host, port = authority:match("^%[([^%]]+)%]:?(%d*)$")
  if not host then host, port = authority:match("^([^:]*):?(%d*)$") end
  if not host or host == "" then return nil, "no host" end
  if path:find("[%s%c]") then return nil, "unencoded space or control character" end
  port = tonumber(port) or (scheme == "https" and 443 or 80)
  if port < 1 or port > 65535 then return nil, "bad port" end
  return { scheme = scheme, host = host:lower(), port = port, path = path }
end

--- The loopback address for a host, or nil when it is not on loopback.
function M.loopback_address(host)
  if loopback_names[host] then return loopback_names[host] end
  if host == "::1" then return "[::1]" end
  local a, b, c, d = host:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if a and tonumber(a) == 127 and tonumber(b) < 256 and tonumber(c) < 256 and tonumber(d) < 256 then
    return host
  end
  return nil
end

--- GETs a parsed URL; returns the body, or nil and a reason.
function M.get(u)
  local addr = M.loopback_address(u.host)
  if not addr then return nil, "host is not on loopback" end
  local sock = ngx.socket.tcp()
  sock:settimeout(M.timeout_ms)
  local ok, err = sock:connect(addr, u.port)
  if not ok then return nil, "connect: " .. err end
  if u.scheme == "https" then
    ok, err = sock:sslhandshake(nil, u.host, false)
    if not ok then sock:close() return nil, "tls: " .. err end
  end
  local host = u.host:find(":", 1, true) and ("[" .. u.host .. "]") or u.host
  ok, err = sock:send("GET " .. u.path .. " HTTP/1.0\r\nHost: " .. host .. ":" .. u.port ..
    "\r\nUser-Agent: aliocr-emulator\r\nAccept: image/*\r\nConnection: close\r\n" ..
    "X-Aliocr-Emulator-Fetch: " .. state.fetch_token() .. "\r\n\r\n")
  if not ok then sock:close() return nil, "send: " .. err end
  local line
  line, err = sock:receive("*l")
  if not line then sock:close() return nil, "receive: " .. err end
  local status = tonumber(line:match("^HTTP/%d%.%d (%d%d%d)"))
  if not status then sock:close() return nil, "not an HTTP response" end
  local length
  repeat
    line, err = sock:receive("*l")
    if not line then sock:close() return nil, "receive: " .. err end
    local name, value = line:match("^([^:]+):%s*(.-)%s*$")
    if name and name:lower() == "content-length" then length = tonumber(value) end
  until line == ""
  if status ~= 200 then sock:close() return nil, "HTTP status " .. status end
  if length and length > M.max_bytes then sock:close() return nil, "image too large" end
  local body, partial
  if length then
    body, err = sock:receive(length)
  else
    body, err, partial = sock:receive(M.max_bytes + 1)
    if not body and err == "closed" then body = partial end
    if body and #body > M.max_bytes then sock:close() return nil, "image too large" end
  end
  sock:close()
  if not body then return nil, "receive: " .. err end
  return body
end

--- The image format of some bytes, or nil when they are not an image the
-- vendor takes (jpg, png, bmp, gif).
function M.image_format(bytes)
  if bytes:sub(1, 8) == "\137PNG\r\n\26\n" then return "png" end
  if bytes:sub(1, 3) == "\255\216\255" then return "jpg" end
  if bytes:sub(1, 2) == "BM" and #bytes > 26 then return "bmp" end
  if bytes:sub(1, 6) == "GIF87a" or bytes:sub(1, 6) == "GIF89a" then return "gif" end
  return nil
end

return M
