--- Request encoding and the gateway's string-to-sign.
--
-- The string-to-sign follows the Aliyun API gateway (reference sections
-- 2.2-2.4): method, Accept, Content-MD5, Content-Type, Date, the signed
-- headers sorted, then the path with the query and form parameters merged,
-- sorted, raw (not URL-encoded), the first value of a repeated key, and a
-- bare key for an empty value. The HMAC itself is computed in C, where the
-- secret is kept.
-- @module aliocr.signing
local M = {}

local byte, format, concat, sort = string.byte, string.format, table.concat, table.sort

local function escape_char(c) return format("%%%02X", byte(c)) end

--- Percent-encodes everything but RFC 3986's unreserved characters.
function M.escape(s)
  return (s:gsub("[^%w%-%._~]", escape_char))
end

--- `k1=v1&k2=v2` from a list of { key, value } pairs, both escaped.
function M.form(params)
  local parts = {}
  for i, kv in ipairs(params) do
    parts[i] = M.escape(kv[1]) .. "=" .. M.escape(kv[2])
  end
  return concat(parts, "&")
end

--- PathAndParameters from a path and a list of { key, value } pairs.
function M.path_and_parameters(path, params)
  local first, keys = {}, {}
  for _, kv in ipairs(params or {}) do
    if first[kv[1]] == nil then
      first[kv[1]] = kv[2]
      keys[#keys + 1] = kv[1]
    end
  end
  if #keys == 0 then return path end
  sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do
    local v = first[k]
    parts[i] = v == "" and k or (k .. "=" .. v)
  end
  return path .. "?" .. concat(parts, "&")
end

--- The string-to-sign. `t` has method, accept, content_md5, content_type,
-- date (each may be nil), headers = { { name, value }, ... } (the signed
-- ones), path and params (a list of { key, value }).
function M.string_to_sign(t)
  local lines = {
    t.method:upper(), t.accept or "", t.content_md5 or "", t.content_type or "", t.date or "",
  }
  local headers = {}
  for i, h in ipairs(t.headers or {}) do headers[i] = h end
  sort(headers, function(a, b) return a[1] < b[1] end)
  local block = {}
  for i, h in ipairs(headers) do block[i] = h[1] .. ":" .. h[2] .. "\n" end
  return concat(lines, "\n") .. "\n" .. concat(block) .. M.path_and_parameters(t.path, t.params)
end

return M
