-- OSS's V4 signature (OSS4-HMAC-SHA256), on the specs' side: written from
-- OSS's documentation ("Include a V4 signature in the Authorization header",
-- "Include a V4 signature in a URL") independently of the emulator's
-- verifier (emulator/lua/aliocr_emu/oss_v4.lua), with SHA-256 and the HMAC
-- chain computed by the openssl command line. The specs also check it
-- against Aliyun's own SDK (ali-oss) for the same inputs.
local sh = require("helpers.sh")

local M = {}

M.UNSIGNED = "UNSIGNED-PAYLOAD"

local q = sh.q

local function hex(s) return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end)) end

--- Every byte but A-Z a-z 0-9 - _ . ~ as %XX; "/" kept when `keep_slash`.
function M.uri_encode(s, keep_slash)
  local out = {}
  for i = 1, #s do
    local c = s:sub(i, i)
    if c:find("^[A-Za-z0-9_.~-]$") or (keep_slash and c == "/") then
      out[#out + 1] = c
    else
      out[#out + 1] = string.format("%%%02X", c:byte())
    end
  end
  return table.concat(out)
end

--- An epoch time as x-oss-date writes it: 20231203T121212Z.
function M.datetime(t) return os.date("!%Y%m%dT%H%M%SZ", math.floor(t)) end

local function tmpfile(content)
  local path = os.tmpname()
  sh.write_all(path, content)
  return path
end

--- hex(SHA-256(data)).
function M.sha256(data)
  local path = tmpfile(data)
  local out = sh.capture("openssl dgst -sha256 -r " .. q(path))
  os.remove(path)
  return (out:match("^(%x+)"))
end

--- Base64(MD5(data)), as Content-MD5 carries it, and hex(MD5(data)).
function M.md5(data)
  local path = tmpfile(data)
  local b64 = sh.capture("openssl dgst -md5 -binary " .. q(path) .. " | openssl base64 -A")
  local h = sh.capture("openssl dgst -md5 -r " .. q(path)):match("^(%x+)")
  os.remove(path)
  return b64, h
end

--- The signature: hex(HMAC(SigningKey, string_to_sign)), where SigningKey
-- is the chain of HMAC-SHA256 from "aliyun_v4" .. secret over the date, the
-- region, "oss" and "aliyun_v4_request" (one shell, five openssl runs).
function M.signature(secret, date, region, string_to_sign)
  local path = tmpfile(string_to_sign)
  local script = table.concat({
    "k=" .. hex("aliyun_v4" .. secret),
    "for m in " .. q(date) .. " " .. q(region) .. " oss aliyun_v4_request; do",
    "  k=$(printf %s \"$m\" | openssl dgst -sha256 -mac HMAC -macopt hexkey:$k -r | cut -d' ' -f1)",
    "done",
    "openssl dgst -sha256 -mac HMAC -macopt hexkey:$k -r < " .. q(path) .. " | cut -d' ' -f1",
  }, "\n")
  local out = sh.capture("sh -c " .. q(script))
  os.remove(path)
  return (out:match("(%x+)"))
end

function M.canonical_uri(bucket, key)
  return M.uri_encode("/" .. bucket .. "/" .. (key or ""), true)
end

--- `params` ({ {name, value}, ... }, decoded) as the canonical query.
function M.canonical_query(params)
  local list = {}
  for _, p in ipairs(params or {}) do list[#list + 1] = { M.uri_encode(p[1]), M.uri_encode(p[2]) } end
  table.sort(list, function(a, b) return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2]) end)
  local out = {}
  for i, p in ipairs(list) do out[i] = p[2] == "" and p[1] or (p[1] .. "=" .. p[2]) end
  return table.concat(out, "&")
end

--- The query string of a URL for `params`, encoded the canonical way, in
-- their order.
function M.query_string(params)
  local out = {}
  for i, p in ipairs(params or {}) do out[i] = M.uri_encode(p[1]) .. "=" .. M.uri_encode(p[2]) end
  return table.concat(out, "&")
end

--- The canonical headers of `headers` ({ {name, value}, ... }): content-type,
-- content-md5, x-oss-* and the `additional` names (lower case).
function M.canonical_headers(headers, additional)
  local wanted = {}
  for _, n in ipairs(additional or {}) do wanted[n] = true end
  local list = {}
  for _, h in ipairs(headers or {}) do
    local name = h[1]:lower()
    if name == "content-type" or name == "content-md5" or name:sub(1, 6) == "x-oss-" or wanted[name] then
      list[#list + 1] = { name, (h[2]:gsub("^%s+", ""):gsub("%s+$", "")) }
    end
  end
  table.sort(list, function(a, b) return a[1] < b[1] end)
  local out = {}
  for i, h in ipairs(list) do out[i] = h[1] .. ":" .. h[2] .. "\n" end
  return table.concat(out)
end

function M.canonical_request(method, uri, query, headers, additional, payload)
  return method .. "\n" .. uri .. "\n" .. query .. "\n" .. headers .. "\n" ..
    table.concat(additional or {}, ";") .. "\n" .. payload
end

function M.string_to_sign(datetime, date, region, canonical_request)
  return "OSS4-HMAC-SHA256\n" .. datetime .. "\n" .. date .. "/" .. region .. "/oss/aliyun_v4_request\n" ..
    M.sha256(canonical_request)
end

--- A request signed in its Authorization header. `o`: method, base (the
-- OSS endpoint's URL), bucket, key, query ({ {name, value} }), headers
-- ({ {name, value} } sent and signed as the rules say), id, secret, token
-- (sent as x-oss-security-token), region, time (default now), additional
-- (lower-case names, sorted), payload (x-oss-content-sha256, default
-- UNSIGNED-PAYLOAD; false sends none), credential_date (default the date of
-- time), signature (overrides the computed one).
-- Returns { url, headers = { "Name: value", ... }, authorization,
-- canonical_request, string_to_sign }.
function M.sign(o)
  local dt = M.datetime(o.time or os.time())
  local date = o.credential_date or dt:sub(1, 8)
  local headers = {}
  for _, h in ipairs(o.headers or {}) do headers[#headers + 1] = h end
  headers[#headers + 1] = { "x-oss-date", dt }
  local payload = o.payload
  if payload == nil then payload = M.UNSIGNED end
  if payload then headers[#headers + 1] = { "x-oss-content-sha256", payload } end
  if o.token then headers[#headers + 1] = { "x-oss-security-token", o.token } end
  local canonical = M.canonical_request(o.method, M.canonical_uri(o.bucket, o.key), M.canonical_query(o.query),
    M.canonical_headers(headers, o.additional), o.additional, payload or M.UNSIGNED)
  local sts = M.string_to_sign(dt, date, o.region, canonical)
  local signature = o.signature or M.signature(o.secret, date, o.region, sts)
  local authorization = "OSS4-HMAC-SHA256 Credential=" .. o.id .. "/" .. date .. "/" .. o.region ..
    "/oss/aliyun_v4_request," ..
    ((o.additional and #o.additional > 0) and ("AdditionalHeaders=" .. table.concat(o.additional, ";") .. ",") or "") ..
    "Signature=" .. signature
  local lines = {}
  for _, h in ipairs(headers) do lines[#lines + 1] = h[1] .. ": " .. h[2] end
  lines[#lines + 1] = "Authorization: " .. authorization
  local qs = M.query_string(o.query)
  return {
    url = o.base .. M.canonical_uri(o.bucket, o.key) .. (qs ~= "" and ("?" .. qs) or ""),
    headers = lines, authorization = authorization, canonical_request = canonical, string_to_sign = sts,
  }
end

--- A signed URL (V4 in the query). `o`: method, base, bucket, key, id,
-- secret, token (x-oss-security-token in the query), region, time (default
-- now), expires (seconds), query (more parameters), additional and headers
-- (the headers the request will carry, for the additional ones), signature
-- (overrides the computed one). Returns the URL, the canonical request and
-- the string to sign.
function M.presign(o)
  local dt = M.datetime(o.time or os.time())
  local date = dt:sub(1, 8)
  local params = {}
  for _, p in ipairs(o.query or {}) do params[#params + 1] = p end
  params[#params + 1] = { "x-oss-signature-version", "OSS4-HMAC-SHA256" }
  params[#params + 1] = { "x-oss-credential", o.id .. "/" .. date .. "/" .. o.region .. "/oss/aliyun_v4_request" }
  params[#params + 1] = { "x-oss-date", dt }
  params[#params + 1] = { "x-oss-expires", tostring(o.expires) }
  if o.token then params[#params + 1] = { "x-oss-security-token", o.token } end
  if o.additional and #o.additional > 0 then
    params[#params + 1] = { "x-oss-additional-headers", table.concat(o.additional, ";") }
  end
  local canonical = M.canonical_request(o.method, M.canonical_uri(o.bucket, o.key), M.canonical_query(params),
    M.canonical_headers(o.headers, o.additional), o.additional, M.UNSIGNED)
  local sts = M.string_to_sign(dt, date, o.region, canonical)
  params[#params + 1] = { "x-oss-signature", o.signature or M.signature(o.secret, date, o.region, sts) }
  return o.base .. M.canonical_uri(o.bucket, o.key) .. "?" .. M.query_string(params), canonical, sts
end

return M
