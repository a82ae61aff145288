--- URLs: the image URLs a call sends, the client's own interface URLs and
-- its proxy, each checked before anything is sent.
--
-- Every function takes a string and returns a string, or `nil` and a reason:
-- a short English phrase without the "aliocr:" prefix and without the URL's
-- user name or password, for the caller to raise with its own prefix and
-- the name of what it checked (e.g. `"endpoint: " .. reason`). None raises,
-- whatever it is given. Pure Lua, the same under Lua 5.1, 5.3, 5.4 and
-- LuaJIT; bytes, not characters (a UTF-8 character is its bytes).
-- @module aliocr.url
local M = {}

local byte, find, format, lower, match, sub, gsub =
  string.byte, string.find, string.format, string.lower, string.match, string.sub, string.gsub
local concat, tonumber = table.concat, tonumber

-- The percent-encode sets of the WHATWG URL Standard
-- (https://url.spec.whatwg.org/#percent-encoded-bytes) for the parts of an
-- http(s) URL, as gsub replacement tables: each byte that is encoded maps
-- to "%XX" (upper-case hex, as the standard writes them). Every set has the
-- C0 controls and the bytes above 0x7E; those below 0x20 and 0x7F are
-- refused before any encoding, so only the bytes 0x80-0xFF are left of
-- them. "#" and "?" are in some sets too, but they end the part they would
-- be in, so they never reach the encoding.
local function encode_set(chars)
  local t = {}
  for b = 0x80, 0xFF do t[string.char(b)] = format("%%%02X", b) end
  for i = 1, #chars do t[sub(chars, i, i)] = format("%%%02X", byte(chars, i)) end
  return t
end
-- The path percent-encode set: the query set (space " # < >) and ? ^ ` { }
-- (^ since March 2025: whatwg/url pull request 846).
local PATH_SET = encode_set(" \"<>^`{}")
local PATH_BYTES = "[ \"<>%^`{}\128-\255]"
-- The special-query percent-encode set (http and https are special): the
-- query set and the apostrophe.
local QUERY_SET = encode_set(" \"<>'")
local QUERY_BYTES = "[ \"<>'\128-\255]"
-- The fragment percent-encode set: space " < > `.
local FRAGMENT_SET = encode_set(" \"<>`")
local FRAGMENT_BYTES = "[ \"<>`\128-\255]"
-- The userinfo percent-encode set: the path set and / : ; = @ [ \ ] |
-- (":" and "@" only where they are part of the name or the password).
local USERINFO_SET = encode_set(" \"<>^`{}/:;=@[\\]|")
local USERINFO_BYTES = "[ \"<>%^`{}/:;=@%[\\%]|\128-\255]"

local DEFAULT_PORT = { http = "80", https = "443" }

local PROXY_SCHEMES = { http = true, https = true, socks4 = true, socks4a = true, socks5 = true, socks5h = true }

-- A dotted-quad IPv4 address: four decimal numbers 0-255 without leading
-- zeros (which WHATWG and libcurl read as octal).
local function octet(p)
  return #p <= 3 and tonumber(p) <= 255 and (#p == 1 or byte(p, 1) ~= 48)
end
local function dotted_quad(s)
  local a, b, c, d = match(s, "^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  return a ~= nil and octet(a) and octet(b) and octet(c) and octet(d)
end

-- The number of 16-bit pieces in `part` (hex groups separated by ":", the
-- last may be a dotted quad when `v4` allows it, which counts two), or nil
-- when a group is neither.
local function pieces(part, v4)
  if part == "" then return 0 end
  local n, i, len = 0, 1, #part
  while i <= len + 1 do
    local j = find(part, ":", i, true) or len + 1
    local group = sub(part, i, j - 1)
    if find(group, ".", 1, true) then
      if not v4 or j <= len or not dotted_quad(group) then return nil end
      n = n + 2
    elseif find(group, "^%x%x?%x?%x?$") then
      n = n + 1
    else
      return nil
    end
    i = j + 1
  end
  return n
end

-- Whether `a` (between the brackets) is an IPv6 address as the WHATWG IPv6
-- parser reads one: eight pieces, or fewer and one "::", an optional IPv4
-- tail; no zone ("%25eth0"), which the standard refuses.
local function ipv6(a)
  if a == "" or find(a, "[^%x:.]") then return false end
  local c = find(a, "::", 1, true)
  if not c then return pieces(a, true) == 8 end
  local tail = sub(a, c + 2)
  if find(tail, "::", 1, true) then return false end
  local n1, n2 = pieces(sub(a, 1, c - 1), false), pieces(tail, true)
  return n1 ~= nil and n2 ~= nil and n1 + n2 <= 7
end

-- A host name's check. Refused: no host; a byte that the WHATWG standard
-- forbids in a domain (space # % / : < > ? @ [ \ ] ^ |; a "%" would be
-- percent-decoded there, which this module does not do); a name whose last
-- label is a number but that is not a dotted quad (WHATWG and libcurl would
-- read "127.1" or "0x7f.1" as an IPv4 address, not as a name).
local function check_name(host)
  if host == "" then return "has no host" end
  local bad = match(host, "[ #%%/:<>?@%[\\%]%^|]")
  if bad then return "has a character that a host name cannot have ('" .. bad .. "')" end
  local last = match(host, "([^.]*)%.?$")
  if find(last, "^%d+$") or find(last, "^0[xX]%x*$") then
    if not dotted_quad(host) then
      return "has a numeric host that is not a dotted-quad IPv4 address like 192.0.2.1"
    end
  end
  return nil
end

-- A port's check: digits, 1-65535. Returns the port without leading zeros,
-- or nil and the reason.
local function check_port(port)
  if port == "" then return nil, "has an empty port (after ':')" end
  if not find(port, "^%d+$") then return nil, "has a port that is not a number ('" .. port .. "')" end
  local n = tonumber(port)
  if n < 1 or n > 65535 then return nil, "has a port outside 1-65535 (" .. port .. ")" end
  return format("%d", n)
end

-- "host[:port]" or "[IPv6][:port]": returns the host as given and the port
-- (nil when there is none), or nil and the reason.
local function host_port(hp)
  local host, rest
  if byte(hp, 1) == 91 then -- "["
    local close = find(hp, "]", 2, true)
    if not close then return nil, "has an IPv6 address without its closing ']'" end
    host, rest = sub(hp, 1, close), sub(hp, close + 1)
    if not ipv6(sub(hp, 2, close - 1)) then return nil, "has an invalid IPv6 address " .. host end
    if rest ~= "" and byte(rest, 1) ~= 58 then return nil, "has something after the IPv6 address but a port" end
  else
    local colon = find(hp, ":", 1, true)
    host = colon and sub(hp, 1, colon - 1) or hp
    rest = colon and sub(hp, colon) or ""
    local why = check_name(host)
    if why then return nil, why end
  end
  if rest == "" then return host, nil end
  local port, why = check_port(sub(rest, 2))
  if not port then return nil, why end
  return host, port
end

-- The reason a byte of `s` is refused by `endpoint` and `proxy` (every byte
-- must be printable ASCII), or nil.
local function printable(s)
  local at = find(s, "[^\33-\126]")
  if not at then return nil end
  local b = byte(s, at)
  if b == 32 then return "has a space (at byte " .. at .. ")" end
  if b > 127 then return format("has a byte that is not ASCII (0x%02X at byte %d)", b, at) end
  return format("has a control character (0x%02X at byte %d)", b, at)
end

-- The scheme (lower-cased) and what follows "scheme://", or nil.
local function split_scheme(s)
  local scheme, rest = match(s, "^(%a[%w+.-]*)://(.*)$")
  if not scheme then return nil end
  return lower(scheme), rest
end

-- WHATWG's path state over an encoded path that starts with "/": "." and
-- ".." segments (also written %2e) removed. Only called when there is one.
local function remove_dot_segments(path)
  local out, n = {}, 0
  local i, len = 2, #path
  while i <= len + 1 do
    local j = find(path, "/", i, true) or len + 1
    local seg = lower(sub(path, i, j - 1))
    local last = j > len
    if seg == ".." or seg == ".%2e" or seg == "%2e." or seg == "%2e%2e" then
      if n > 0 then
        out[n] = nil
        n = n - 1
      end
      if last then
        n = n + 1
        out[n] = ""
      end
    elseif seg == "." or seg == "%2e" then
      if last then
        n = n + 1
        out[n] = ""
      end
    else
      n = n + 1
      out[n] = sub(path, i, j - 1)
    end
    i = j + 1
  end
  return "/" .. concat(out, "/")
end

--- An image URL as a WHATWG URL parser (a browser, curl, every HTTP library)
-- would send it: what users copy from a storage console, spaces and all.
--
-- Encoded: in the path, space `"` `<` `>` `^` `` ` `` `{` `}`; in the query,
-- space `"` `<` `>` `'`; in the fragment, space `"` `<` `>` `` ` ``; and in
-- all three every byte 0x80-0xFF, each as `%XX` (a UTF-8 character becomes
-- its bytes' escapes; bytes that are not UTF-8 are encoded as they are, not
-- replaced). Kept as they are: existing escapes (`%20` stays `%20`, `%2f` is
-- not upper-cased), a `%` that is not followed by two hex digits, every
-- other printable character.
--
-- Also as WHATWG does: the scheme is lower-cased (`HTTP://` gives `http://`);
-- a backslash before the query is read as `/`; "." and ".." path segments are
-- removed (`/a/../b` gives `/b`); an empty path becomes `/`; a port loses
-- its leading zeros, and the scheme's default one (80, 443) is dropped. The
-- host is kept as written (no lower-casing, no IDNA: a non-ASCII host is
-- kept as its bytes); an IPv6 host is checked, not rewritten.
--
-- Spaces at either end are removed (WHATWG removes control characters there
-- too: here they are refused).
--
-- Refused, where WHATWG would either refuse too or repair a URL that is
-- more likely a mistake: a control character (0x00-0x1F, 0x7F) anywhere; a
-- scheme other than http and https, or none; anything but `//` after the
-- scheme (`http:/x`, `http:x`, which WHATWG reads as `http://x/`); no host,
-- or an empty one (`http:///x`); a host with a character WHATWG forbids
-- (space, `#%/:<>?@[\]^|`); a numeric host that is not a dotted-quad IPv4
-- address (`http://127.1/`, which WHATWG reads as 127.0.0.1); an IPv6
-- address that is not one, or has a zone; a port that is empty, not digits
-- or outside 1-65535 (WHATWG takes 0 and an empty port). A user name and
-- password (`https://user:pw@host/`) are kept (percent-encoded as WHATWG
-- does): the service that fetches the image gets them, as it would from a
-- browser.
-- @string s the URL
-- @treturn[1] string the URL as it is to be sent
-- @treturn[2] nil
-- @treturn[2] string why it is refused
function M.image(s)
  if type(s) ~= "string" then return nil, "must be a string, not a " .. type(s) end
  if byte(s, 1) == 32 or byte(s, -1) == 32 then
    local i, j = find(s, "[^ ]"), #s
    while j > 0 and byte(s, j) == 32 do j = j - 1 end
    s = i and sub(s, i, j) or ""
  end
  if s == "" then return nil, "is empty" end
  local at = find(s, "[%z\1-\31\127]")
  if at then return nil, format("has a control character (0x%02X at byte %d)", byte(s, at), at) end

  local scheme, after = match(s, "^(%a[%w+.-]*):(.*)$")
  if not scheme then return nil, "is not an absolute URL: it must start with http:// or https://" end
  scheme = lower(scheme)
  if scheme ~= "http" and scheme ~= "https" then
    return nil, "must be an http:// or https:// URL, not " .. scheme .. ":"
  end
  -- What ends the path: the query, else the fragment, else the end.
  local stop = find(after, "[?#]") or #after + 1
  if find(after, "\\", 1, true) then
    local head = gsub(sub(after, 1, stop - 1), "\\", "/")
    after = head .. sub(after, stop)
  end
  if sub(after, 1, 2) ~= "//" then
    return nil, "must have '//' and a host after '" .. scheme .. ":'"
  end
  local auth_end = find(after, "[/?#]", 3) or #after + 1
  local authority = sub(after, 3, auth_end - 1)
  -- A user name and password (the last "@" ends them) are kept, encoded
  -- with the userinfo set; an empty password drops its ":", an empty
  -- userinfo its "@", as WHATWG writes them.
  local userinfo = ""
  local ui, rest = match(authority, "^(.*)@(.*)$")
  if ui then
    authority = rest
    local user, pass = match(ui, "^([^:]*):?(.*)$")
    user = gsub(user, USERINFO_BYTES, USERINFO_SET)
    pass = gsub(pass, USERINFO_BYTES, USERINFO_SET)
    if pass ~= "" then user = user .. ":" .. pass end
    if user ~= "" then userinfo = user .. "@" end
  end
  local host, port = host_port(authority)
  if not host then return nil, port end
  if port == DEFAULT_PORT[scheme] then port = nil end

  local path_end = find(after, "[?#]", auth_end) or #after + 1
  local path = sub(after, auth_end, path_end - 1)
  if path == "" then
    path = "/"
  else
    if find(path, PATH_BYTES) then path = gsub(path, PATH_BYTES, PATH_SET) end
    if find(path, "/%.") or find(path, "/%%2[eE]") then path = remove_dot_segments(path) end
  end
  local query, fragment
  local hash = find(after, "#", path_end, true)
  if byte(after, path_end) == 63 then -- "?"
    query = sub(after, path_end + 1, (hash or #after + 1) - 1)
    if find(query, QUERY_BYTES) then query = gsub(query, QUERY_BYTES, QUERY_SET) end
  end
  if hash then
    fragment = sub(after, hash + 1)
    if find(fragment, FRAGMENT_BYTES) then fragment = gsub(fragment, FRAGMENT_BYTES, FRAGMENT_SET) end
  end
  return scheme .. "://" .. userinfo .. host .. (port and (":" .. port) or "") .. path ..
    (query and ("?" .. query) or "") .. (fragment and ("#" .. fragment) or "")
end

--- The check of the client's own URLs (`endpoint`, the interface URLs), which
-- are used as they are given.
--
-- Accepted: `http://` or `https://` (any case), a host (a name, a dotted-quad
-- IPv4 address, or an IPv6 address in brackets), a port 1-65535 when there
-- is one, then any path. Refused: a byte that is not printable ASCII (a
-- space, a control character, a non-ASCII byte: percent-encode the path, use
-- the `xn--` form of a host); another scheme; no host; an empty port, one
-- that is not digits or outside 1-65535 (libcurl would take 99999 and
-- fail every call); a user name or password; a query or a fragment.
-- @string s the URL
-- @treturn[1] string `s` itself
-- @treturn[2] nil
-- @treturn[2] string why it is refused
function M.endpoint(s)
  if type(s) ~= "string" then return nil, "must be a string, not a " .. type(s) end
  if s == "" then return nil, "is empty" end
  local why = printable(s)
  if why then return nil, why end
  local scheme, rest = split_scheme(s)
  if scheme ~= "http" and scheme ~= "https" then
    return nil, "must be an http:// or https:// URL" .. (scheme and (", not " .. scheme .. "://") or "")
  end
  if find(rest, "[?#]") then return nil, "must not have a query or fragment ('?' or '#')" end
  local authority = match(rest, "^[^/]*")
  if find(authority, "@", 1, true) then return nil, "must not have a user name or password (user:password@)" end
  local host, port = host_port(authority)
  if not host then return nil, port end
  return s
end

--- The check of the `proxy` option, for the forms libcurl takes: a scheme of
-- `http://`, `https://`, `socks4://`, `socks4a://`, `socks5://` or
-- `socks5h://` (any case), then `[user:password@]host[:port]` and at most a
-- `/`; or, without a scheme (an HTTP proxy to libcurl),
-- `[user:password@]host:port`, with the port: libcurl would take port 1080
-- for a bare host, which is rarely the proxy's. A port is 1-65535; the host
-- as in @{endpoint}; a user name and password are allowed (as libcurl's,
-- percent-encoded where they need it) and never named in a reason.
-- Refused: a byte that is not printable ASCII, another scheme (`ftp://`),
-- no host (`:::`), a path, a query or a fragment.
-- @string s the proxy
-- @treturn[1] string `s` itself
-- @treturn[2] nil
-- @treturn[2] string why it is refused
function M.proxy(s)
  if type(s) ~= "string" then return nil, "must be a string, not a " .. type(s) end
  if s == "" then return nil, "is empty" end
  local why = printable(s)
  if why then return nil, why end
  local scheme, rest = split_scheme(s)
  if scheme and not PROXY_SCHEMES[scheme] then
    return nil, "must be an http, https, socks4, socks4a, socks5 or socks5h proxy, not " .. scheme .. "://"
  end
  if not scheme then
    if find(s, "^%a[%w+.-]*:/") then return nil, "must have '//' after the scheme" end
    rest = s
  end
  if find(rest, "[?#]") then return nil, "must not have a query or fragment ('?' or '#')" end
  local authority, path = match(rest, "^([^/]*)(.*)$")
  if path ~= "" and path ~= "/" then return nil, "must not have a path" end
  local hp = match(authority, "^.*@(.*)$") or authority
  local host, port = host_port(hp)
  if not host then return nil, port end
  if not scheme and not port then
    return nil, "must be host:port, or have a scheme (http://host): libcurl would use port 1080"
  end
  return s
end

return M
