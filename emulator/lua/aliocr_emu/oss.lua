-- The OSS endpoint (--oss-port): a stand-in for Aliyun Object Storage
-- Service on loopback, for the objects aliocr uploads, signs a URL for, has
-- the vendor download and deletes. What it does, in order:
--
--   1. addressing: path style, /BUCKET/KEY (a Host that is an IP address,
--      localhost or an oss-* endpoint), or virtual-hosted, BUCKET.<host>/KEY
--      (what ali-oss sends for an IP endpoint: Host bucket.oss-REGION.aliyuncs.com)
--   2. the bucket                      404 NoSuchBucket
--   3. the V4 signature (oss_v4.lua), in the Authorization header or in
--      the URL; none: the bucket is private  403 AccessDenied
--   4. a fault rule for OSS, if one matches (faults.lua: oss_error,
--      oss_slow, oss_gone)
--   5. the operation: PutObject (Content-MD5 checked: 400 InvalidDigest),
--      GetObject, HeadObject (404 NoSuchKey), DeleteObject (204, also for a
--      key that is not there); anything else 501 NotImplemented
--
-- Every answer carries x-oss-request-id (24 hex digits), Server: AliyunOSS
-- and Date; errors have OSS's XML body (oss_errors.lua), and a HEAD's error,
-- which has no body, the same XML in base64 in x-oss-err (what ali-oss
-- reads). The log phase counts the request in the ledger and logs it.
local body_of = require("aliocr_emu.body")
local secrets = require("aliocr_emu.secrets")
local crypto = require("aliocr_emu.crypto")
local faults = require("aliocr_emu.faults")
local oss_errors = require("aliocr_emu.oss_errors")
local state = require("aliocr_emu.state")
local store = require("aliocr_emu.oss_store")
local v4 = require("aliocr_emu.oss_v4")

local M = {}

local random = math.random

local function request_id(ctx)
  if not ctx.oss_request_id then
    ctx.oss_request_id = string.format("%06X%06X%06X%06X", random(0, 0xffffff), random(0, 0xffffff),
      random(0, 0xffffff), random(0, 0xffffff))
  end
  return ctx.oss_request_id
end

--- header_filter_by_lua: the headers every OSS answer has.
function M.header_filter()
  local ctx = ngx.ctx
  ngx.header["x-oss-request-id"] = request_id(ctx)
  ngx.header["Server"] = "AliyunOSS"
  ngx.header["x-oss-server-time"] = math.floor((ngx.now() - ngx.req.start_time()) * 1000)
end

-- Content types by extension, for a PUT without Content-Type.
local TYPES = {
  png = "image/png", jpg = "image/jpeg", jpeg = "image/jpeg", gif = "image/gif", bmp = "image/bmp",
  webp = "image/webp", txt = "text/plain", json = "application/json", html = "text/html",
}

-- Sub-resources that name another operation than the object's PUT, GET,
-- HEAD or DELETE (ACL, tagging, multipart upload, ...): not implemented.
local SUBRESOURCES = {
  acl = true, tagging = true, symlink = true, uploads = true, uploadId = true, partNumber = true,
  append = true, position = true, restore = true, objectMeta = true, versionId = true, versions = true,
  cors = true, lifecycle = true, location = true, logging = true, referer = true, website = true,
  ["x-oss-process"] = true, ["x-oss-async-process"] = true, select = true, delete = true,
}

local function first(v)
  if type(v) == "table" then return v[1] end
  return v
end

local send_error

--- Sends OSS error `name` (oss_errors.lua) with extra XML `fields`.
local function fail(name, fields, detail)
  local status, code, message, ec = oss_errors.lookup(name, detail)
  return send_error(status, code, message, fields, ec)
end

--- Sends an OSS error given by its parts.
function send_error(status, code, message, fields, ec)
  local ctx = ngx.ctx
  ctx.oss_code = code
  local xml = oss_errors.xml(code, message, request_id(ctx), ctx.host_id or "", fields, ec)
  ngx.status = status
  if ec then ngx.header["x-oss-ec"] = ec end
  if ngx.req.get_method() == "HEAD" then
    -- No body with HEAD: OSS puts the error in x-oss-err (base64 XML).
    ngx.header["x-oss-err"] = ngx.encode_base64(xml)
    ngx.header["Content-Type"] = "application/xml"
    ngx.header["Content-Length"] = 0
    return ngx.exit(ngx.OK)
  end
  ngx.header["Content-Type"] = "application/xml"
  ngx.header["Content-Length"] = #xml
  ngx.print(xml)
  return ngx.exit(ngx.OK)
end

-- The host name of a Host header (no port; an IPv6 literal without brackets).
local function host_name(host)
  host = (host or ""):lower()
  local v6 = host:match("^%[([^%]]*)%]")
  if v6 then return v6 end
  return (host:gsub(":%d*$", ""))
end

--- The bucket a virtual-hosted request names in its Host, or nil for path
-- style (an IP address, localhost, a host without a dot, an oss-* endpoint).
local function virtual_bucket(name)
  if name == "" or name == "localhost" or name:find(":", 1, true) or name:find("^%d+%.%d+%.%d+%.%d+$") then
    return nil
  end
  local label = name:match("^([^.]+)%.")
  if not label or label:find("^oss%-") then return nil end
  return label
end

--- The bucket and key of a request: bucket (nil: the service itself), key
-- (nil or "": the bucket itself).
local function address(name, path)
  local vb = virtual_bucket(name)
  if vb then return vb, path:sub(2) end
  local bucket, rest = path:match("^/([^/]+)(.*)$")
  if not bucket then return nil end
  if rest == "" then return bucket, nil end
  return bucket, rest:sub(2)
end

-- A GET's or HEAD's query may set headers of the answer (GetObject's
-- response-* parameters).
local OVERRIDES = {
  ["response-content-type"] = "Content-Type", ["response-content-language"] = "Content-Language",
  ["response-expires"] = "Expires", ["response-cache-control"] = "Cache-Control",
  ["response-content-disposition"] = "Content-Disposition", ["response-content-encoding"] = "Content-Encoding",
}

local function object_headers(meta, query)
  ngx.header["Content-Type"] = meta.content_type
  ngx.header["Content-Length"] = meta.size
  ngx.header["ETag"] = '"' .. meta.etag .. '"'
  ngx.header["Content-MD5"] = meta.content_md5
  ngx.header["Last-Modified"] = ngx.http_time(meta.last_modified)
  ngx.header["x-oss-object-type"] = "Normal"
  ngx.header["x-oss-storage-class"] = "Standard"
  for _, kv in ipairs(query) do
    if OVERRIDES[kv[1]] then ngx.header[OVERRIDES[kv[1]]] = kv[2] end
  end
end

local function header_md5(headers)
  local v = first(headers["content-md5"])
  if v then v = v:match("^%s*(.-)%s*$") end
  return v
end

local ops = {}

function ops.PUT(o, bucket, key, headers, body, fault)
  local md5 = header_md5(headers)
  if md5 and md5 ~= crypto.md5_base64(body) then return fail("invalid_digest") end
  local content_type = first(headers["content-type"])
  if not content_type or content_type == "" then
    content_type = TYPES[(key:match("%.([%w]+)$") or ""):lower()] or "application/octet-stream"
  end
  local meta, err = store.put(o.dir, bucket, key, body, content_type, crypto.md5_hex(body):upper(),
    crypto.md5_base64(body))
  if not meta then
    ngx.log(ngx.ERR, "oss: cannot store ", bucket, "/", key, ": ", tostring(err))
    return send_error(500, "InternalError", "We encountered an internal error. Please try again.")
  end
  if fault and fault.mode == "oss_gone" then store.delete(bucket, key) end
  ngx.status = 200
  ngx.header["ETag"] = '"' .. meta.etag .. '"'
  ngx.header["Content-MD5"] = meta.content_md5
  ngx.header["Content-Length"] = 0
  return ngx.exit(ngx.OK)
end

function ops.GET(_, bucket, key, _, _, _, query)
  local meta, data = store.get(bucket, key)
  if not meta then return fail("no_such_key", { { "Key", key } }) end
  ngx.status = 200
  object_headers(meta, query)
  ngx.print(data)
  return ngx.exit(ngx.OK)
end

function ops.HEAD(_, bucket, key, _, _, _, query)
  local meta = store.head(bucket, key)
  if not meta then return fail("no_such_key", { { "Key", key } }) end
  ngx.status = 200
  object_headers(meta, query)
  return ngx.exit(ngx.OK)
end

function ops.DELETE(_, bucket, key)
  store.delete(bucket, key)
  ngx.status = 204
  return ngx.exit(ngx.OK)
end

--- The named location nginx goes to when a body is over --oss-max-body.
function M.too_large()
  ngx.ctx.host_id = host_name(ngx.var.http_host)
  return fail("too_large")
end

function M.handle()
  local ctx = ngx.ctx
  local o = state.oss()
  request_id(ctx)
  local method = ngx.req.get_method()
  local headers = ngx.req.get_headers(0)
  local raw_path, raw_query = ngx.var.request_uri:match("^([^?]*)%??(.*)$")
  local name = host_name(first(headers.host))
  ctx.host_id = name
  local bucket, key = address(name, v4.decode(raw_path))
  ctx.bucket, ctx.key = bucket, key

  local body = ""
  if method ~= "GET" and method ~= "HEAD" and method ~= "DELETE" then body = body_of.read() end
  ctx.body_bytes = #body

  -- The service itself (ListBuckets) is not served.
  if not bucket then return fail("not_implemented") end
  if not o.buckets[bucket] then return fail("no_such_bucket", { { "BucketName", bucket } }) end

  local query = v4.parse_query(raw_query)
  local who, err = v4.check({ method = method, bucket = bucket, key = key, query = query, headers = headers,
    body = body }, o.keys, o.region, ngx.now())
  if not who then
    if err then
      ctx.key_id = err.key_id
      return fail(err.name, err.fields, err.detail)
    end
    ctx.auth = "anonymous"
    return fail("access_denied_acl")
  end
  ctx.key_id, ctx.auth = who.key_id, who.auth

  -- Bucket operations (ListObjects, ...) and sub-resources are not served.
  if key == nil or key == "" then return fail("not_implemented") end
  for _, kv in ipairs(query) do
    if SUBRESOURCES[kv[1]] then return fail("not_implemented") end
  end
  if #key > 1023 or key:find("^[/\\]") then return fail("invalid_object_name") end
  local op = ops[method]
  if not op then
    if method == "POST" then return fail("not_implemented") end
    return fail("method_not_allowed")
  end

  local fault = faults.pick_oss(method, bucket, who.key_id)
  ctx.fault = fault and fault.mode
  if fault and fault.mode == "oss_error" then
    local status, message = oss_errors.by_code(fault.code)
    return send_error(fault.status or status, fault.code, fault.message or message or
      "Injected by a fault rule of the emulator.")
  end
  if fault and fault.mode == "oss_slow" then ngx.sleep(fault.ms / 1000) end
  return op(o, bucket, key, headers, body, fault, query)
end

--- log_by_lua: the ledger's counts and the OSS request log.
function M.log()
  local ctx = ngx.ctx
  local status = ngx.status
  local method = ngx.req.get_method()
  local by_vendor = state.is_own_fetch(ngx.var.http_x_aliocr_emulator_fetch)
  state.count_oss(method, status >= 200 and status <= 299, by_vendor)
  local o = state.oss()
  local headers = ngx.req.get_headers(0, true)
  for k in pairs(headers) do
    if k:lower() == "x-oss-security-token" then headers[k] = "REDACTED" end
  end
  store.log({
    time = ngx.req.start_time(),
    request_id = ctx.oss_request_id,
    method = method,
    uri = secrets.redact(ngx.var.request_uri),
    host = ctx.host_id,
    bucket = ctx.bucket,
    key = ctx.key,
    auth = ctx.auth,
    key_id = ctx.key_id,
    status = status,
    code = ctx.oss_code,
    fault = ctx.fault,
    by_vendor = by_vendor,
    body_bytes = ctx.body_bytes,
    headers = headers,
    scheme = ngx.var.scheme,
  }, o.log_max)
end

return M
