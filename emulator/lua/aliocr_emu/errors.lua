-- Gateway errors, as the Aliyun API Gateway sends them: in headers, with an
-- empty body. Two styles: "classic" instances send only X-Ca-Error-Message;
-- "vpc" instances add the six-character X-Ca-Error-Code and use its status.
-- Sources: ../shared/reference/aliyun-gateway.md, tables 3.1 and 3.2. Rows
-- the reference marks [unconfirmed] are best guesses and documented as such
-- in emulator/README.md.
--
-- Each row: classic = { status, message }, vpc = { code, message }; the VPC
-- status is the code's characters 2-4. A "%s" in a message takes a detail.
local M = {}

local rows = {
  invalid_url           = { { 400, "Invalid Url" },
                            { "I404NF", "API not found with `%s`" } },
  invalid_method        = { { 400, "Invalid HttpMethod" },
                            { "I405UM", "Unsupported Method `%s`" } },
  need_authorization    = { { 400, "Need authorization" },
                            { "A400MA", "Need authorization" } },
  invalid_appcode       = { { 400, "Invalid AppCode `not exists`" },
                            { "A401AC", "Invalid AppCode `not exists`" } },
  invalid_appkey        = { { 400, "Invalid AppKey" },
                            { "A400IK", "Invalid AppKey" } },
  empty_signature       = { { 404, "Empty Signature" },
                            { "I400MH", "Header `X-Ca-Signature` is Required" } },
  invalid_signature     = { { 400, "Invalid Signature, Server StringToSign:%s" },
                            { "A403IS", "Invalid Signature, Server StringToSign:%s" } },
  invalid_sign_method   = { { 400, "Invalid Signature Method" },
                            { "I400HD", "Invalid Header `X-Ca-Signature-Method` %s" } },
  invalid_content_md5   = { { 400, "Invalid Content-MD5" },
                            { "I400I5", "Invalid Content-MD5" } },
  timestamp_expired     = { { 400, "Timestamp Expired" },
                            { "I400HD", "Invalid Header `X-Ca-Timestamp` Timestamp Expired" } },
  invalid_timestamp     = { { 400, "Invalid Timestamp" },
                            { "I400HD", "Invalid Header `X-Ca-Timestamp` Invalid Timestamp" } },
  nonce_used            = { { 400, "Nonce Used" },
                            { "I400NC", "Nonce Used" } },
  unsupported_multipart = { { 400, "Unsupported Multipart" },
                            { "I400CT", "Invalid Content-Type: `multipart/form-data`" } },
  body_too_large        = { { 413, "Request body too Large" },
                            { "I413RL", "Request body too Large" } },
  unauthorized          = { { 403, "Unauthorized" },
                            { "I403AA", "Unauthorized" } },
  quota_exhausted       = { { 403, "Quota Exhausted" },
                            { "B403MQ", "Api Market Subscription quota exhausted" } },
  quota_expired         = { { 403, "Quota Expired" },
                            { "B403ME", "Api Market Subscription expired" } },
  user_arrears          = { { 403, "User Arrears" },
                            { "B403OD", "Provider Account Overdue" } },
  throttled_app         = { { 403, "Throttled by APP Flow Control" },
                            { "T429PA", "Throttled by APP Flow Control" } },
  throttled_user        = { { 403, "Throttled by USER Flow Control" },
                            { "T429PR", "Throttled by USER Flow Control" } },
  throttled_api         = { { 403, "Throttled by API Flow Control" },
                            { "T429SR", "Throttled by API Flow Control" } },
  throttled_domain      = { { 403, "Throttled by DOMAIN Flow Control" },
                            { "T429ID", "Throttled by DOMAIN Flow Control" } },
  throttled_group       = { { 403, "Throttled by GROUP Flow Control" },
                            { "T429GR", "Throttled by GROUP Flow Control" } },
  internal_error        = { { 500, "Internal Error" },
                            { "X500ER", "Internal Error" } },
  backend_failed        = { { 500, "Failed To Invoke Backend Service" },
                            { "D504CO", "Backend service connect failed 'Connection is closed'" } },
  service_unavailable   = { { 503, "Service Unavailable" },
                            { "D503BB", "Service Busy" } },
  async_service         = { { 504, "Async Service" },
                            { "D504TO", "Backend service request timeout" } },
}

M.names = {}
for name in pairs(rows) do M.names[#M.names + 1] = name end
table.sort(M.names)

-- Header values cannot carry control characters: the gateway writes a
-- newline as "#" (reference 2.9); anything else below 0x20 becomes a space.
local function header_safe(s)
  return (s:gsub("\n", "#"):gsub("[%c]", " "))
end

--- The status, message and code (nil in classic style) of error `name`.
-- `detail` fills the message's "%s", if it has one.
function M.lookup(name, style, detail)
  local row = rows[name]
  if not row then return nil end
  local status, message, code
  if style == "vpc" then
    code, message = row[2][1], row[2][2]
    status = tonumber(code:sub(2, 4))
  else
    status, message = row[1][1], row[1][2]
  end
  if message:find("%s", 1, true) then
    message = message:format(detail or "")
  end
  return status, header_safe(message), code
end

return M
