-- OSS's error answers: the status, the Code and the Message of each error the
-- emulator's OSS endpoint gives, and the XML body OSS sends with them
-- (Content-Type application/xml):
--
--   <?xml version="1.0" encoding="UTF-8"?>
--   <Error>
--     <Code>NoSuchKey</Code>
--     <Message>The specified key does not exist.</Message>
--     <RequestId>5C3D9175B6FC201293AD****</RequestId>
--     <HostId>examplebucket.oss-cn-hangzhou.aliyuncs.com</HostId>
--     ...fields of that error (Key, OSSAccessKeyId, StringToSign, ...)
--     <EC>0002-00000201</EC>
--     <RecommendDoc>https://api.aliyun.com/troubleshoot?q=0002-00000201</RecommendDoc>
--   </Error>
--
-- Sources: OSS's "error responses" page (the body, the x-oss-ec header), its
-- pages of the HTTP 400, 403 and 404 codes (codes and messages), the
-- "signature errors" FAQ (the fields of SignatureDoesNotMatch) and the
-- troubleshooting pages of each fine-grained error code (EC). An EC is sent
-- only where such a page names it for that cause; the rows marked
-- "unconfirmed" use a code and message that no page gave for V4, and
-- emulator/README.md lists them.
local M = {}

-- name = { status, Code, Message, EC (or false) }
local rows = {
  no_such_bucket      = { 404, "NoSuchBucket", "The specified bucket does not exist.", false },
  no_such_key         = { 404, "NoSuchKey", "The specified key does not exist.", false },
  access_denied_acl   = { 403, "AccessDenied", "You have no right to access this object because of bucket acl.",
                          false },
  expired             = { 403, "AccessDenied", "Request has expired.", "0002-00000069" },
  -- unconfirmed: the EC page names the cause, not the Code and Message.
  not_yet_valid       = { 403, "AccessDenied", "Request has not yet become valid: the time is earlier than " ..
                          "x-oss-date by more than 15 minutes.", "0002-00000235" },
  expires_range       = { 400, "InvalidArgument", "x-oss-expires must be from 1 to 604800 seconds.",
                          "0002-00000232" },
  no_expires          = { 400, "InvalidArgument", "x-oss-expires is required for a V4 signed URL.",
                          "0002-00000215" },
  no_credential       = { 400, "InvalidArgument", "x-oss-credential is required for a V4 signed URL.",
                          "0002-00000218" },
  no_signature        = { 400, "InvalidArgument", "x-oss-signature is required for a V4 signed URL.",
                          "0002-00000219" },
  bad_credential      = { 400, "InvalidArgument", "The credential is invalid: expected " ..
                          "<AccessKeyId>/<SignDate>/<SignRegion>/oss/aliyun_v4_request.", "0002-00000224" },
  empty_additional    = { 400, "InvalidArgument", "AdditionalHeaders in the Authorization header is empty.",
                          "0002-00000209" },
  bad_authorization   = { 400, "InvalidArgument", "Authorization header is invalid.", false },
  unknown_auth_param  = { 400, "InvalidArgument", "Unknown parameter in Authorization header.", false },
  -- The emulator takes V4 signatures only (OSS stopped offering V1 to new
  -- accounts in March 2025): an "OSS id:signature" header or a V1 signed URL.
  v1_signature        = { 403, "AccessDenied", "The emulator accepts V4 signatures only (OSS4-HMAC-SHA256).",
                          false },
  bad_date            = { 400, "InvalidArgument", "OSS authentication requires a valid Date.", false },
  -- unconfirmed from here to bad_content_sha256.
  credential_date     = { 400, "InvalidArgument", "Invalid credential date: the date of the credential is not " ..
                          "the date of x-oss-date.", false },
  credential_region   = { 400, "InvalidArgument", "Invalid signing region in the credential: this endpoint " ..
                          "serves region %s.", false },
  no_content_sha256   = { 400, "InvalidArgument", "x-oss-content-sha256 is required for a V4 signature in " ..
                          "the Authorization header.", false },
  bad_content_sha256  = { 400, "InvalidArgument", "x-oss-content-sha256 does not match the body.", false },
  skewed              = { 403, "RequestTimeTooSkewed",
                          "The difference between the request time and the current time is too large.", false },
  invalid_key         = { 403, "InvalidAccessKeyId",
                          "The OSS Access Key Id you provided does not exist in our records.", false },
  -- An STS AccessKey without its token, or a plain one with a token (OSS then
  -- takes the request for an STS one and finds no such STS key).
  sts_key_mismatch    = { 403, "InvalidAccessKeyId",
                          "The OSS Access Key Id you provided does not exist in our records.", "0002-00000002" },
  invalid_token       = { 403, "InvalidSecurityToken", "The security token you provided is invalid.",
                          "0002-00000006" },
  signature_mismatch  = { 403, "SignatureDoesNotMatch", "The request signature we calculated does not match " ..
                          "the signature you provided. Check your key and signing method.", "0002-00000201" },
  invalid_digest      = { 400, "InvalidDigest", "The Content-MD5 you specified was invalid.", false },
  too_large           = { 400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size.", false },
  not_implemented     = { 501, "NotImplemented",
                          "A header you provided implies functionality that is not implemented.", false },
  invalid_object_name = { 400, "InvalidObjectName", "The specified object is not valid.", false },
  method_not_allowed  = { 405, "MethodNotAllowed", "The specified method is not allowed against this resource.",
                          false },
}

--- The status and Message OSS gives with error Code `code`, when the emulator
-- knows that code (for fault rules that name one): status, message.
function M.by_code(code)
  for _, r in pairs(rows) do
    if r[2] == code then return r[1], r[3] end
  end
  local extra = {
    InternalError = { 500, "We encountered an internal error. Please try again." },
    ServiceUnavailable = { 503, "Please reduce your request rate." },
    RequestTimeout = { 400, "Your socket connection to the server was not read from or written to " ..
      "within the timeout period." },
    QuotaExceeded = { 403, "The bucket is out of quota." },
    InvalidArgument = { 400, "Invalid Argument. Parameter is invalid." },
  }
  local e = extra[code]
  if e then return e[1], e[2] end
  return nil
end

--- Error `name`: status, Code, Message (its "%s" filled with `detail`), EC.
function M.lookup(name, detail)
  local r = assert(rows[name], "no OSS error " .. tostring(name))
  local message = r[3]
  if message:find("%s", 1, true) then message = message:format(detail or "") end
  return r[1], r[2], message, r[4] or nil
end

local function escape(s)
  return (tostring(s):gsub("[&<>\"']", {
    ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&apos;",
  }))
end
M.escape = escape

--- The bytes of `s` as OSS writes them in StringToSignBytes: upper-case hex
-- pairs, each followed by a space.
function M.bytes(s)
  return (s:gsub(".", function(c) return string.format("%02X ", c:byte()) end))
end

--- The XML body of an error: `fields` is a list of { name, value } written
-- after HostId, in order; `ec` (optional) adds EC and RecommendDoc.
function M.xml(code, message, request_id, host_id, fields, ec)
  local out = {
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error>\n',
    "  <Code>", escape(code), "</Code>\n",
    "  <Message>", escape(message), "</Message>\n",
    "  <RequestId>", escape(request_id), "</RequestId>\n",
    "  <HostId>", escape(host_id), "</HostId>\n",
  }
  for _, f in ipairs(fields or {}) do
    out[#out + 1] = "  <" .. f[1] .. ">" .. escape(f[2]) .. "</" .. f[1] .. ">\n"
  end
  if ec then
    out[#out + 1] = "  <EC>" .. escape(ec) .. "</EC>\n"
    out[#out + 1] = "  <RecommendDoc>https://api.aliyun.com/troubleshoot?q=" .. escape(ec) .. "</RecommendDoc>\n"
  end
  out[#out + 1] = "</Error>\n"
  return table.concat(out)
end

return M
