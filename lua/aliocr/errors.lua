--- Error objects, and how an answer becomes a result or an error.
--
-- The order follows the gateway reference: a transport failure first (no
-- complete answer), then `X-Ca-Error-Code`, then `X-Ca-Error-Message` by
-- prefix, then the vendor's status (666), then 2xx bodies that are not JSON
-- or whose `ok` is not 1, then any other status.
-- @module aliocr.errors
local M = {}

local Error = {}
Error.__index = Error
Error.__name = "aliocr.Error"

local function billing(b)
  if b == true then return "billed" end
  if b == false then return "not billed" end
  return "billing unknown"
end

--- One readable line: kind, message, status, code, billing, request id,
-- attempts. Never a secret: nothing here comes from the credentials.
function Error.__tostring(e)
  local parts = {}
  if e.status then parts[#parts + 1] = "HTTP " .. e.status end
  if e.code then parts[#parts + 1] = "code " .. e.code end
  parts[#parts + 1] = billing(e.billed)
  if e.request_id then parts[#parts + 1] = "request " .. e.request_id end
  if e.attempts then
    parts[#parts + 1] = e.attempts .. (e.attempts == 1 and " attempt" or " attempts")
  end
  return "aliocr " .. e.kind .. " error: " .. tostring(e.msg) .. " (" .. table.concat(parts, ", ") .. ")"
end

function M.new(fields) return setmetatable(fields, Error) end

--- True when `v` is an aliocr error object.
function M.is_error(v) return getmetatable(v) == Error end

--- The error of a call the client's budget refused before it was sent
-- (kind `budget`): `billed` is false, or nil when an earlier attempt's
-- billing is unknown.
function M.budget(b, billed, attempts)
  return M.new({ kind = "budget", ok = 0, billed = billed, retryable = false, attempts = attempts,
    code = "BUDGET_EXCEEDED", code_source = "aliocr",
    msg = "not sent: the budget of " .. b.limit .. " billed call" .. (b.limit == 1 and "" or "s") ..
      (b.period and (" per " .. b.period .. " s") or "") .. " is used up" })
end

--- The error of a call that was cancelled (kind `cancelled`): `billed` is
-- false when nothing of it can have been billed, nil when unknown.
function M.cancelled(msg, billed, attempts)
  return M.new({ kind = "cancelled", ok = 0, msg = msg, billed = billed, retryable = false, attempts = attempts })
end

-- Gateway errors -----------------------------------------------------------

-- Classic X-Ca-Error-Message prefixes (reference table 3.1).
local auth_prefixes = {
  "Invalid AppCode", "Need authorization", "Invalid AppKey", "Invalid AppSecret",
  "Empty Signature", "Invalid Signature", "Unauthorized", "Expiry of Authorization",
  "App authorization expired",
}
local quota_prefixes = {
  "Quota Exhausted", "Quota Expired", "User Arrears", "Api Market Subscription",
  "Provider Account Overdue",
}

local function starts(s, prefix) return s:sub(1, #prefix) == prefix end

local function any_prefix(s, list)
  for _, p in ipairs(list) do if starts(s, p) then return true end end
  return false
end

--- Kind and retryability of a gateway error by its VPC code (reference 3.2):
-- the first letter is the category, characters 2-4 the status.
local function by_code(code, status)
  local letter = code:sub(1, 1)
  status = tonumber(code:sub(2, 4)) or status or 0
  if code == "I403AA" then return "auth", false end
  if letter == "A" then return "auth", false end
  if letter == "B" then return "quota", false end
  -- The DOMAIN limit (T429ID) is a daily cap: retrying soon cannot pass it.
  if letter == "T" then return "throttled", code ~= "T429ID" end
  if code == "I400NC" then return "gateway", true end -- nonce used: a new nonce may pass
  if code == "X500ED" or code == "X500AM" then return "gateway", false end -- configuration
  return "gateway", status >= 500
end

--- Kind and retryability of a classic gateway error by its message.
local function by_message(msg, status)
  if any_prefix(msg, auth_prefixes) then return "auth", false end
  if any_prefix(msg, quota_prefixes) then return "quota", false end
  if starts(msg, "Throttled by") then
    -- The DOMAIN limit is a daily cap: retrying soon cannot pass it.
    return "throttled", not starts(msg, "Throttled by DOMAIN")
  end
  if starts(msg, "Nonce Used") then return "gateway", true end
  return "gateway", (status or 0) >= 500
end

-- Transport failures that a new attempt cannot mend.
local permanent = {
  PEER_FAILED_VERIFICATION = true, SSL_CACERT_BADFILE = true, SSL_CERTPROBLEM = true,
  SSL_CIPHER = true, UNSUPPORTED_PROTOCOL = true, URL_MALFORMAT = true, OUT_OF_MEMORY = true,
}

local http_retryable = { [429] = true, [500] = true, [502] = true, [503] = true, [504] = true }

local function is_2xx(status) return status ~= nil and status >= 200 and status <= 299 end

--- Whether an attempt was billed, by its response: true when a 2xx status
-- arrived (the gateway bills exactly those), nil (unknown) when the request
-- went out and no status came back, false otherwise.
function M.billing(r)
  local status = r.status ~= 0 and r.status or nil
  if status then return is_2xx(status) end
  if r.error and r.sent then return nil end
  return false
end

-- The seconds of a Retry-After header (its delay-seconds form; an
-- HTTP-date, or anything else, is ignored), at most an hour.
local function retry_after(h)
  local v = h["retry-after"]
  local digits = type(v) == "string" and v:match("^%s*(%d+)%s*$")
  if not digits then return nil end
  return math.min(tonumber(digits), 3600)
end

--- Classifies a transport's response (the table both transports return:
-- see src/response.c, and docs/development.md). Returns an error (without
-- attempts and elapsed), or nil when `r` is a success, with its decoded
-- body in `r.json`.
function M.classify(r)
  local h = r.headers or {}
  local status = r.status ~= 0 and r.status or nil
  local request_id = h["x-ca-request-id"]
  local billed = M.billing(r)

  if r.too_large then
    if billed then
      return M.new({
        kind = "protocol", ok = 0, status = status, billed = true, code = "RESPONSE_TOO_LARGE", code_source = "aliocr",
        msg = "the answer is larger than max_response_bytes; it was abandoned",
        request_id = request_id, retryable = false,
      })
    end
    -- Not 2xx: the body was abandoned, and the status and the headers tell
    -- the rest (a gateway error, 666, or an http error).
    local err = M.classify({ status = r.status, headers = h, body = "" })
    if not err.code then err.code, err.code_source = "RESPONSE_TOO_LARGE", "aliocr" end
    return err
  end

  if r.error then
    -- No complete answer. Billing is known when a status line arrived (the
    -- gateway bills exactly the 2xx ones) or when nothing was sent at all;
    -- otherwise the request may have reached the gateway: unknown (see
    -- M.billing).
    -- TLS spoken to a plain HTTP port (an https:// URL with the port of an
    -- http:// one) is a configuration mistake: no retry mends it.
    local misconfigured = r.error == "SSL_CONNECT_ERROR" and type(r.message) == "string"
      and r.message:find("wrong version number", 1, true) ~= nil
    return M.new({
      kind = r.error == "OPERATION_TIMEDOUT" and "timeout" or "transport",
      ok = 0, msg = r.message, status = status, billed = billed, code = r.error, code_source = "transport",
      request_id = request_id, retryable = billed == false and not permanent[r.error] and not misconfigured,
    })
  end

  local code, message = h["x-ca-error-code"], h["x-ca-error-message"]
  if code == "" then code = nil end
  if message == "" then message = nil end
  if code or message then
    local kind, retryable
    if code then kind, retryable = by_code(code, status) else kind, retryable = by_message(message, status) end
    return M.new({
      kind = kind, ok = 0, msg = message or code, status = status, billed = billed, code = code,
      code_source = code and "gateway" or nil,
      request_id = request_id, retryable = retryable and not billed,
      retry_after = retryable and retry_after(h) or nil,
    })
  end

  local body = r.json
  local ok, msg
  if type(body) == "table" then ok, msg = body.ok, body.msg end
  if type(msg) ~= "string" then msg = nil end

  if status == 666 then
    return M.new({
      kind = "api", ok = ok or 0, msg = msg or "the vendor refused the call (HTTP 666)",
      status = status, billed = false, request_id = request_id, retryable = false,
    })
  end

  if billed then
    if type(body) ~= "table" then
      local too_deep = r.json_error and r.json_error:find("too many nested", 1, true)
      local why
      if too_deep then
        why = "the answer is nested deeper than json_max_depth: " .. r.json_error
      elseif r.json_error then
        why = "the answer is not JSON: " .. r.json_error
      else
        why = r.body == "" and "the answer is empty" or "the answer is not a JSON object"
      end
      return M.new({
        kind = "protocol", ok = 0, status = status, billed = true, request_id = request_id,
        retryable = false, code = too_deep and "JSON_TOO_DEEP" or "BAD_JSON", code_source = "aliocr", msg = why,
      })
    end
    if ok ~= 1 then
      return M.new({
        kind = "protocol", ok = ok ~= nil and ok or 0, status = status, billed = true,
        msg = msg or "the answer's ok is not 1", request_id = request_id, retryable = false,
      })
    end
    return nil
  end

  return M.new({
    kind = "http", ok = ok or 0, msg = msg or ("HTTP " .. tostring(status)), status = status,
    billed = false, request_id = request_id, retryable = http_retryable[status] == true,
  })
end

-- Storage (OSS) -------------------------------------------------------------

-- An element of OSS's XML error body (its text, entities left as they are
-- but the five of XML).
local function xml_field(body, name)
  local v = body:match("<" .. name .. ">(.-)</" .. name .. ">")
  if not v then return nil end
  v = v:gsub("&lt;", "<"):gsub("&gt;", ">"):gsub("&quot;", '"'):gsub("&apos;", "'"):gsub("&amp;", "&")
  return v
end

--- Classifies the response of a storage request (`action`: "upload" or
-- "delete"): nil when it succeeded (2xx), else an error of kind "storage",
-- never billed (the service was not called), with OSS's error code
-- (SignatureDoesNotMatch, RequestTimeTooSkewed, AccessDenied, ...) and
-- request id (x-oss-request-id) when OSS answered.
function M.classify_storage(r, action)
  local h = r.headers or {}
  local status = r.status ~= 0 and r.status or nil
  local request_id = h["x-oss-request-id"]
  if r.error == "ABORTED_BY_CALLBACK" and action == "upload" then
    -- The engine's read of the file stopped: it is shorter than when it was checked.
    return M.image("CHANGED", "the image file changed (it is shorter) since it was checked")
  end
  if r.error then
    return M.new({
      kind = "storage", ok = 0, msg = action .. " failed: " .. tostring(r.message), status = status, billed = false,
      code = r.error, code_source = "transport", request_id = request_id, action = action,
      retryable = not permanent[r.error],
      -- An upload that may have reached OSS may have stored its object.
      _maybe_stored = r.sent and action == "upload" or nil,
    })
  end
  if is_2xx(status) then return nil end
  local body = r.body or ""
  local code, message = xml_field(body, "Code"), xml_field(body, "Message")
  request_id = request_id or xml_field(body, "RequestId")
  return M.new({
    kind = "storage", ok = 0, status = status, billed = false, code = code, code_source = code and "oss" or nil,
    msg = action .. " refused by OSS: " .. (message or code or ("HTTP " .. tostring(status))),
    request_id = request_id, action = action,
    retryable = http_retryable[status] == true,
  })
end

--- The error of a local image that cannot be used (kind "image", not
-- billed: nothing was sent), with aliocr's code.
function M.image(code, msg)
  return M.new({ kind = "image", ok = 0, msg = msg, billed = false, retryable = false, code = code,
    code_source = "aliocr" })
end

--- The error of an uploader function that failed (returned nil and a
-- message, or raised): kind "storage", not billed.
function M.uploader(msg, action)
  return M.new({ kind = "storage", ok = 0, msg = action .. " failed: " .. tostring(msg), billed = false,
    code = "UPLOADER", code_source = "aliocr", action = action, retryable = false })
end

return M
