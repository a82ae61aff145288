-- What the request logs never show: an STS security token in a presigned
-- OSS URL, as it stands in a request line or, percent-encoded, in a form
-- (an image URL given to the gateway).
local M = {}

-- The parameter's name, any case, then "=" or its encoding "%3D".
local NAME = "[xX]%-[oO][sS][sS]%-[sS][eE][cC][uU][rR][iI][tT][yY]%-[tT][oO][kK][eE][nN]"

--- `s` with the value of every x-oss-security-token parameter written
-- REDACTED (up to the next "&", or its encoding "%26").
function M.redact(s)
  if type(s) ~= "string" then return s end
  s = s:gsub("(" .. NAME .. "=)[^&%s]*", "%1REDACTED")
  local n
  s, n = s:gsub("(" .. NAME .. "%%3[dD])(.-)(%%26)", "%1REDACTED%3")
  if n == 0 then s = s:gsub("(" .. NAME .. "%%3[dD])([^&]*)", "%1REDACTED") end
  return s
end

--- A copy of the table `t` with each string value redacted.
function M.redact_values(t)
  if type(t) ~= "table" then return t end
  local out = {}
  for k, v in pairs(t) do out[k] = M.redact(v) end
  return out
end

return M
