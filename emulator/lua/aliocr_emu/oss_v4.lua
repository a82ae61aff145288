-- OSS's V4 signature (OSS4-HMAC-SHA256), verified as OSS documents it
-- ("Include a V4 signature in the Authorization header" and "Include a V4
-- signature in a URL"), written here from the documented algorithm:
--
--   CanonicalRequest = Method "\n" CanonicalURI "\n" CanonicalQuery "\n"
--                      CanonicalHeaders "\n" AdditionalHeaders "\n" HashedPayload
--     CanonicalURI      "/" bucket "/" key, URI-encoded, "/" kept
--     CanonicalQuery    every query parameter (a signed URL's x-oss-signature
--                       left out), name and value URI-encoded ("/" too),
--                       sorted, "name=value" or a bare "name" for an empty
--                       value, joined with "&"
--     CanonicalHeaders  content-type, content-md5, every x-oss-* header and
--                       the additional ones, lower-case names sorted,
--                       "name:trimmed value\n" each
--     AdditionalHeaders the additional header names, lower case, sorted,
--                       joined with ";"
--     HashedPayload     x-oss-content-sha256, or UNSIGNED-PAYLOAD
--   StringToSign     = "OSS4-HMAC-SHA256\n" x-oss-date "\n"
--                      SignDate "/" Region "/oss/aliyun_v4_request\n"
--                      hex(SHA256(CanonicalRequest))
--   SigningKey       = HMAC(HMAC(HMAC(HMAC("aliyun_v4" secret, SignDate),
--                                         Region), "oss"), "aliyun_v4_request")
--   Signature        = hex(HMAC(SigningKey, StringToSign))
--
-- `check` takes a request and answers who signed it, or the error OSS gives
-- (names of oss_errors.lua). The order of the checks is the emulator's: the
-- documentation does not give OSS's.
local crypto = require("aliocr_emu.crypto")

local M = {}

M.ALGORITHM = "OSS4-HMAC-SHA256"
M.UNSIGNED = "UNSIGNED-PAYLOAD"
M.SKEW = 15 * 60          -- seconds a header-signed request may be off
M.MAX_EXPIRES = 604800    -- seven days, a signed URL's longest life

--- `s` URI-encoded as the V4 signature wants it: every byte but A-Z a-z
-- 0-9 - _ . ~ as %XX (upper-case hex); "/" kept when `keep_slash`.
function M.uri_encode(s, keep_slash)
  local pattern = keep_slash and "[^%w%-_%.~/]" or "[^%w%-_%.~]"
  return (s:gsub(pattern, function(c) return string.format("%%%02X", c:byte()) end))
end

--- Percent-decodes `s`; "+" becomes a space when `plus` (query strings).
function M.decode(s, plus)
  if plus then s = s:gsub("%+", " ") end
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

--- The query string `raw` (without "?") as a list of { name, value },
-- decoded, in order; a parameter without "=" has the value "".
function M.parse_query(raw)
  local list = {}
  for part in (raw or ""):gmatch("[^&]+") do
    local k, v = part:match("^([^=]*)=?(.*)$")
    list[#list + 1] = { M.decode(k, true), M.decode(v, true) }
  end
  return list
end

--- The first value of query parameter `name` in `list`, or nil.
function M.param(list, name)
  for _, kv in ipairs(list) do
    if kv[1] == name then return kv[2] end
  end
  return nil
end

function M.canonical_uri(bucket, key)
  if not bucket then return "/" end
  return M.uri_encode("/" .. bucket .. "/" .. (key or ""), true)
end

--- The canonical query of `list` (parse_query's), without `skip` (a name).
function M.canonical_query(list, skip)
  local pairs_ = {}
  for _, kv in ipairs(list) do
    if kv[1] ~= skip then pairs_[#pairs_ + 1] = { M.uri_encode(kv[1]), M.uri_encode(kv[2]) } end
  end
  table.sort(pairs_, function(a, b)
    if a[1] ~= b[1] then return a[1] < b[1] end
    return a[2] < b[2]
  end)
  local out = {}
  for i, kv in ipairs(pairs_) do out[i] = kv[2] == "" and kv[1] or (kv[1] .. "=" .. kv[2]) end
  return table.concat(out, "&")
end

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

--- The value of header `name` (lower case) in nginx's table, repeated
-- headers joined with ",", each trimmed; nil when absent.
local function header_value(headers, name)
  local v = headers[name]
  if v == nil then return nil end
  if type(v) == "table" then
    local parts = {}
    for i, x in ipairs(v) do parts[i] = trim(x) end
    return table.concat(parts, ",")
  end
  return trim(v)
end
M.header_value = header_value

--- The additional header names of `value` ("a;b"): lower case, without
-- duplicates, sorted. Nil for an empty one.
function M.additional(value)
  if value == nil then return {} end
  local seen, names = {}, {}
  for n in value:gmatch("[^;]+") do
    n = trim(n):lower()
    if n ~= "" and not seen[n] then
      seen[n] = true
      names[#names + 1] = n
    end
  end
  if #names == 0 then return nil end
  table.sort(names)
  return names
end

local function signed_by_default(name)
  return name == "content-type" or name == "content-md5" or name:sub(1, 6) == "x-oss-"
end

--- The canonical headers block of `headers` (nginx's table, lower-case
-- names) with the `additional` names.
function M.canonical_headers(headers, additional)
  local names, seen = {}, {}
  for name in pairs(headers) do
    name = name:lower()
    if signed_by_default(name) and not seen[name] then
      seen[name] = true
      names[#names + 1] = name
    end
  end
  for _, name in ipairs(additional) do
    if not seen[name] then
      seen[name] = true
      names[#names + 1] = name
    end
  end
  table.sort(names)
  local out = {}
  for i, name in ipairs(names) do out[i] = name .. ":" .. (header_value(headers, name) or "") .. "\n" end
  return table.concat(out)
end

function M.canonical_request(method, uri, query, headers_block, additional, payload)
  return table.concat({ method, uri, query, headers_block, table.concat(additional, ";"), payload }, "\n")
end

function M.scope(date, region) return date .. "/" .. region .. "/oss/aliyun_v4_request" end

function M.string_to_sign(datetime, scope, canonical_request)
  return M.ALGORITHM .. "\n" .. datetime .. "\n" .. scope .. "\n" .. crypto.sha256_hex(canonical_request)
end

function M.signing_key(secret, date, region)
  local k = crypto.hmac_sha256("aliyun_v4" .. secret, date)
  k = crypto.hmac_sha256(k, region)
  k = crypto.hmac_sha256(k, "oss")
  return crypto.hmac_sha256(k, "aliyun_v4_request")
end

function M.signature(secret, date, region, string_to_sign)
  return crypto.hex(crypto.hmac_sha256(M.signing_key(secret, date, region), string_to_sign))
end

-- Days from 1970-01-01 to the civil date y-m-d (proleptic Gregorian).
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

--- Seconds since the epoch of an ISO 8601 basic UTC time (20231203T121212Z),
-- or nil when `s` is not one.
function M.parse_datetime(s)
  if type(s) ~= "string" then return nil end
  local y, mo, d, h, mi, se = s:match("^(%d%d%d%d)(%d%d)(%d%d)T(%d%d)(%d%d)(%d%d)Z$")
  if not y then return nil end
  y, mo, d, h, mi, se = tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi), tonumber(se)
  if mo < 1 or mo > 12 or d < 1 or d > 31 or h > 23 or mi > 59 or se > 60 then return nil end
  return days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se
end

--- An epoch time as OSS writes times in error bodies: 2023-12-03T12:12:12.000Z.
function M.iso8601(t)
  return os.date("!%Y-%m-%dT%H:%M:%S", math.floor(t)) .. string.format(".%03dZ", math.floor((t % 1) * 1000))
end

-- A failure: { name = <oss_errors name>, detail, fields = {{name, value}}, key_id }.
local function fail(name, t)
  t = t or {}
  t.name = name
  return nil, t
end

--- Splits a credential (ID/DATE/REGION/oss/aliyun_v4_request): id, date,
-- region; or nil.
local function credential(value)
  local id, date, region, product, terminal = (value or ""):match("^([^/]+)/([^/]+)/([^/]+)/([^/]+)/([^/]+)$")
  if not id or product ~= "oss" or terminal ~= "aliyun_v4_request" or not date:find("^%d%d%d%d%d%d%d%d$") then
    return nil
  end
  return id, date, region
end

-- The key `id` with the token the request carried: the key, or a failure.
local function identify(keys, id, token)
  local key = keys[id]
  local fields = { { "OSSAccessKeyId", id } }
  if not key then return fail("invalid_key", { fields = fields }) end
  if (key.token ~= nil) ~= (token ~= nil) then
    return fail("sts_key_mismatch", { fields = fields, key_id = id })
  end
  if key.token and token ~= key.token then return fail("invalid_token", { fields = fields, key_id = id }) end
  return key
end

--- Parses an Authorization header's value: { id, date, region,
-- additional = {names}, signature } or a failure.
function M.parse_authorization(value)
  local algorithm, rest = value:match("^%s*(%S+)%s+(.-)%s*$")
  if not algorithm then
    if value:match("^%s*OSS4%-HMAC%-SHA256%s*$") then return fail("bad_authorization") end
    algorithm = value:match("^%s*(%S+)")
  end
  if algorithm == "OSS" then return fail("v1_signature") end
  if algorithm ~= M.ALGORITHM then return fail("bad_authorization") end
  local fields = {}
  for item in rest:gmatch("[^,]+") do
    local k, v = item:match("^%s*([%w]+)=(.-)%s*$")
    if not k then return fail("bad_authorization") end
    if k ~= "Credential" and k ~= "AdditionalHeaders" and k ~= "Signature" then
      return fail("unknown_auth_param")
    end
    fields[k] = v
  end
  if not fields.Credential or not fields.Signature or fields.Signature == "" then
    return fail("bad_authorization")
  end
  local id, date, region = credential(fields.Credential)
  if not id then return fail("bad_credential") end
  local additional = M.additional(fields.AdditionalHeaders)
  if not additional then return fail("empty_additional") end
  return { id = id, date = date, region = region, additional = additional, signature = fields.Signature }
end

--- Checks request `r`: { method, bucket, key, query = parse_query's list,
-- headers = nginx's table (lower-case names), body }, against `keys`
-- ({ [id] = { secret, token } }) and `region`, at time `now` (seconds).
-- Returns { key_id, auth = "header" | "url" } when a known key signed it, or
-- nil and a failure { name, detail, fields, key_id } (key_id when the key
-- was known); nil and nil when the request carries no signature at all.
function M.check(r, keys, region, now)
  local headers = r.headers
  local authz = header_value(headers, "authorization")
  local version = M.param(r.query, "x-oss-signature-version")
  local uri = M.canonical_uri(r.bucket, r.key)

  local parsed, datetime, token, skip, auth
  if authz then
    local err
    parsed, err = M.parse_authorization(authz)
    if not parsed then return nil, err end
    auth = "header"
    token = header_value(headers, "x-oss-security-token")
    datetime = header_value(headers, "x-oss-date")
  elseif version then
    if version ~= M.ALGORITHM then return fail("bad_authorization") end
    auth = "url"
    local cred = M.param(r.query, "x-oss-credential")
    if not cred or cred == "" then return fail("no_credential") end
    if not M.param(r.query, "x-oss-signature") or M.param(r.query, "x-oss-signature") == "" then
      return fail("no_signature")
    end
    local id, date, reg = credential(cred)
    if not id then return fail("bad_credential") end
    local additional = M.additional(M.param(r.query, "x-oss-additional-headers"))
    if not additional then return fail("empty_additional") end
    parsed = { id = id, date = date, region = reg, additional = additional,
               signature = M.param(r.query, "x-oss-signature") }
    token = M.param(r.query, "x-oss-security-token")
    datetime = M.param(r.query, "x-oss-date")
    skip = "x-oss-signature"
  elseif M.param(r.query, "OSSAccessKeyId") or M.param(r.query, "x-oss-access-key-id") then
    return fail("v1_signature")
  else
    return nil, nil
  end

  local key, err = identify(keys, parsed.id, token)
  if not key then return nil, err end
  local known = { key_id = parsed.id, fields = { { "OSSAccessKeyId", parsed.id } } }

  local t = M.parse_datetime(datetime)
  if not t then return fail("bad_date", known) end
  if auth == "header" then
    if math.abs(now - t) > M.SKEW then
      known.fields = {
        { "RequestTime", M.iso8601(t) }, { "ServerTime", M.iso8601(now) },
        { "MaxAllowedSkewMilliseconds", tostring(M.SKEW * 1000) },
      }
      return fail("skewed", known)
    end
  else
    local expires = M.param(r.query, "x-oss-expires")
    if not expires or expires == "" then return fail("no_expires", known) end
    local n = expires:find("^%d+$") and tonumber(expires)
    if not n or n < 1 or n > M.MAX_EXPIRES then return fail("expires_range", known) end
    if now < t - M.SKEW then return fail("not_yet_valid", known) end
    if now > t + n then
      known.fields = { { "Expires", M.iso8601(t + n) }, { "ServerTime", M.iso8601(now) } }
      return fail("expired", known)
    end
  end
  if parsed.date ~= datetime:sub(1, 8) then return fail("credential_date", known) end
  if parsed.region ~= region then
    known.detail = region
    return fail("credential_region", known)
  end

  local payload = M.UNSIGNED
  if auth == "header" then
    payload = header_value(headers, "x-oss-content-sha256")
    if not payload or payload == "" then return fail("no_content_sha256", known) end
  end

  local query = M.canonical_query(r.query, skip)
  local canonical = M.canonical_request(r.method, uri, query, M.canonical_headers(headers, parsed.additional),
    parsed.additional, payload)
  local sts = M.string_to_sign(datetime, M.scope(parsed.date, parsed.region), canonical)
  local expected = M.signature(key.secret, parsed.date, parsed.region, sts)
  if parsed.signature:lower() ~= expected then
    known.fields = {
      { "OSSAccessKeyId", parsed.id }, { "SignatureProvided", parsed.signature },
      { "StringToSign", sts }, { "StringToSignBytes", require("aliocr_emu.oss_errors").bytes(sts) },
      { "CanonicalRequest", canonical },
    }
    return fail("signature_mismatch", known)
  end
  if auth == "header" and payload ~= M.UNSIGNED then
    if not payload:find("^%x+$") or #payload ~= 64 or crypto.sha256_hex(r.body or ""):lower() ~= payload:lower() then
      return fail("bad_content_sha256", known)
    end
  end
  return { key_id = parsed.id, auth = auth }
end

return M
