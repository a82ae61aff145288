-- Authentication as the Aliyun API Gateway does it (reference sections 1-2):
-- "Authorization: APPCODE <code>", or an AppKey/AppSecret signature over the
-- string-to-sign, with the 15-minute timestamp window and nonce replay check.
local crypto = require("aliocr_emu.crypto")
local state = require("aliocr_emu.state")

local M = {}

M.WINDOW_MS = 15 * 60 * 1000

-- Never part of the signed Headers block (reference 2.3).
local unsigned = {
  ["x-ca-signature"] = true, ["x-ca-signature-headers"] = true, ["accept"] = true,
  ["content-md5"] = true, ["content-type"] = true, ["date"] = true,
}

local function header(headers, name)
  local v = headers[name]
  if type(v) == "table" then v = v[1] end
  return v
end

local function first(v)
  if type(v) == "table" then v = v[1] end
  return v
end

--- PathAndParameters: the path, then the parameters (query and form merged
-- by the caller) sorted by key, the first value of a repeated key, raw
-- (decoded) values, and a bare key for an empty value.
function M.path_and_parameters(path, params)
  local keys = {}
  for k in pairs(params) do keys[#keys + 1] = k end
  if #keys == 0 then return path end
  table.sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do
    local v = first(params[k])
    if v == true or v == "" then parts[i] = k else parts[i] = k .. "=" .. v end
  end
  return path .. "?" .. table.concat(parts, "&")
end

--- The string-to-sign of a request (reference 2.2-2.4). `headers` is
-- nginx's case-insensitive header table, `params` the merged parameters.
function M.string_to_sign(method, headers, path, params)
  local lines = {
    method:upper(),
    header(headers, "accept") or "",
    header(headers, "content-md5") or "",
    header(headers, "content-type") or "",
    header(headers, "date") or "",
  }
  local block = {}
  local names, seen = {}, {}
  for name in (header(headers, "x-ca-signature-headers") or ""):gmatch("[^,]+") do
    name = name:match("^%s*(.-)%s*$")
    local lower = name:lower()
    if name ~= "" and not unsigned[lower] and not seen[lower] then
      seen[lower] = true
      names[#names + 1] = name
    end
  end
  table.sort(names)
  for _, name in ipairs(names) do
    block[#block + 1] = name .. ":" .. (header(headers, name) or "") .. "\n"
  end
  return table.concat(lines, "\n") .. "\n" .. table.concat(block) ..
    M.path_and_parameters(path, params)
end

--- Checks a request's credentials. Returns the credential (the app code or
-- the app key) and the auth mode; or nil, an error name (see errors.lua), a
-- detail for the message, and the AppKey when it was a known one.
function M.check(req)
  local headers = req.headers
  local authz = header(headers, "authorization")
  if authz and authz:find("^%s*APPCODE") then
    local code = authz:match("^%s*APPCODE (%S+)%s*$")
    if not code or not state.appcode_known(code) then return nil, "invalid_appcode" end
    return code, "appcode"
  end

  local key = header(headers, "x-ca-key")
  if not key then
    if authz then return nil, "invalid_appcode" end
    return nil, "need_authorization"
  end
  local secret = state.app_secret(key)
  if not secret then return nil, "invalid_appkey" end
  local signature = header(headers, "x-ca-signature")
  if not signature or signature == "" then return nil, "empty_signature", nil, key end
  local method = header(headers, "x-ca-signature-method") or "HmacSHA256"
  local sts = M.string_to_sign(req.method, headers, req.path, req.params)
  local expected = crypto.hmac_base64(method, secret, sts)
  if not expected then return nil, "invalid_sign_method", method, key end
  if expected ~= signature then return nil, "invalid_signature", sts, key end

  local md5 = header(headers, "content-md5")
  if md5 and (req.body == "" or crypto.md5_base64(req.body) ~= md5) then
    return nil, "invalid_content_md5", nil, key
  end

  local ts = header(headers, "x-ca-timestamp")
  if ts then
    if not ts:find("^%d+$") or #ts > 15 then return nil, "invalid_timestamp", nil, key end
    if math.abs(ngx.now() * 1000 - tonumber(ts)) > M.WINDOW_MS then
      return nil, "timestamp_expired", nil, key
    end
  end

  local nonce = header(headers, "x-ca-nonce")
  if nonce and not state.fresh_nonce(key, nonce) then return nil, "nonce_used", nil, key end
  return key, "signature"
end

return M
