-- The API listener: the gateway's checks in order, then the vendor's answer.
--
--   1. body size                       413 Request body too Large
--   2. path, then method               Invalid Url / Invalid HttpMethod
--   3. content type                    Unsupported Multipart
--   4. credentials and signature       see auth.lua
--   5. rate limit per credential       403 Throttled by APP Flow Control
--   6. quota per credential            403 Quota Exhausted
--   7. a fault rule, if one matches    see faults.lua
--   8. added latency, backend timeout  504 Async Service
--   9. the vendor                      200, or 666 {"ok":0,"msg":...}
--
-- The log phase settles the bill (2xx is billed, nothing else is), counts
-- connections and writes the request log.
local auth = require("aliocr_emu.auth")
local body_of = require("aliocr_emu.body")
local secrets = require("aliocr_emu.secrets")
local faults = require("aliocr_emu.faults")
local reply = require("aliocr_emu.reply")
local state = require("aliocr_emu.state")
local vendor = require("aliocr_emu.vendor")

local M = {}

local LOG_BODY_MAX = 65536

local random = math.random
local function uuid()
  return string.format("%04X%04X-%04X-4%03X-%04X-%04X%04X%04X",
    random(0, 0xffff), random(0, 0xffff), random(0, 0xffff), random(0, 0xfff),
    random(0x8000, 0xbfff), random(0, 0xffff), random(0, 0xffff), random(0, 0xffff))
end

function M.init_worker()
  math.randomseed(ngx.now() * 1000 + ngx.worker.pid())
end

--- The request's X-Ca-Request-Id (made on first use).
local function request_id(ctx)
  if not ctx.request_id then ctx.request_id = uuid() end
  return ctx.request_id
end

--- header_filter_by_lua: X-Ca-Request-Id on every response of the API
-- listener, nginx's own error pages included.
function M.header_filter()
  ngx.header["X-Ca-Request-Id"] = request_id(ngx.ctx)
end

local function form_params(headers, body)
  local ct = headers["content-type"]
  if type(ct) == "table" then ct = ct[1] end
  if body == "" or not ct or not ct:lower():find("^%s*application/x%-www%-form%-urlencoded") then
    return {}
  end
  return ngx.decode_args(body, 0)
end

-- The query and form parameters merged: a key in both keeps the form body's
-- value, as Aliyun's official signers build PathAndParameters (reference
-- 2.4, sources S4, S5, S7): the Java demo's SignUtil.buildResource adds a
-- query key only `if (formParamMap.get(key) == null)`, the Python demo's
-- signature_composer._build_resource only `if query_array[0] not in body`,
-- and the Node SDK's lib/client.js buildUrl does
-- `Object.assign(parsedUrl.query, data)`, the body over the query. The
-- signature is checked over these, and the vendor reads these (`url`,
-- `show`), so what was signed is what is used.
local function merged(query, form)
  local params = {}
  for k, v in pairs(form) do params[k] = v end
  for k, v in pairs(query) do if params[k] == nil then params[k] = v end end
  return params
end

--- The named location nginx goes to when a body is over --max-body.
function M.body_too_large()
  ngx.ctx.api_request = true
  return reply.gateway_error("body_too_large", state.settings().errors)
end

function M.handle()
  local ctx = ngx.ctx
  local s = state.settings()
  ctx.api_request = true
  request_id(ctx)

  local method = ngx.req.get_method()
  local body = ""
  if method ~= "GET" and method ~= "HEAD" then body = body_of.read() end
  ctx.body = body

  local path = ngx.var.uri
  local api = s.api_by_path[path]
  ctx.api = api
  if not api then return reply.gateway_error("invalid_url", s.errors, method .. " " .. path) end
  if method ~= "GET" and method ~= "POST" then
    return reply.gateway_error("invalid_method", s.errors, method)
  end
  local headers = ngx.req.get_headers(0)
  local ct = headers["content-type"]
  if type(ct) == "string" and ct:lower():find("^%s*multipart/") then
    return reply.gateway_error("unsupported_multipart", s.errors)
  end

  local params = merged(ngx.req.get_uri_args(0), form_params(headers, body))
  ctx.params = params
  local cred, how, detail, known = auth.check({
    method = method, path = path, headers = headers, params = params, body = body,
  })
  if not cred then
    -- A known AppKey with a bad signature, timestamp or nonce: a request of
    -- that credential, refused (and so not billed).
    if known then ctx.credential, ctx.settle = known, true end
    return reply.gateway_error(how, s.errors, detail)
  end
  ctx.credential, ctx.auth, ctx.settle = cred, how, true

  if not state.within_rate(cred, s.rate) then
    if (s.rate_retry_after or 0) > 0 then ngx.header["Retry-After"] = tostring(s.rate_retry_after) end
    return reply.gateway_error("throttled_app", s.errors)
  end
  if not state.reserve_quota(cred, state.quota_for(s, cred)) then
    return reply.gateway_error("quota_exhausted", s.errors)
  end
  ctx.reserved = true

  local budget_ms = s.backend_timeout_ms
  -- The vendor's answer; a backend that runs out of the gateway's backend
  -- timeout (the tesseract backend on a slow image) gets 504 Async Service.
  local function answer()
    local status, json = vendor.answer(api, params, s, budget_ms)
    if not status then return reply.gateway_error("async_service", s.errors) end
    return status, json
  end
  -- The answer after the added latency (the launch's or the settings', plus
  -- a latency fault's `extra_ms`); at or over the backend timeout the gateway
  -- gives up with 504 Async Service.
  local function go(extra_ms)
    local wait = s.latency_ms + (extra_ms or 0)
    if wait > 0 and wait >= s.backend_timeout_ms then
      ngx.sleep(s.backend_timeout_ms / 1000)
      return reply.gateway_error("async_service", s.errors)
    end
    if wait > 0 then ngx.sleep(wait / 1000) end
    budget_ms = s.backend_timeout_ms - wait
    local status, json = answer()
    return reply.send(status, json, reply.JSON)
  end

  local fault = faults.pick(api, cred)
  ctx.fault = fault and fault.mode
  if fault then return faults.run(fault, answer, go, s) end
  return go()
end

--- log_by_lua: billing, connection count and the request log.
function M.log()
  local ctx = ngx.ctx
  local status = ngx.status
  local billed = ctx.settle and status >= 200 and status <= 299 or false
  if ctx.settle then state.settle(ctx.credential, ctx.reserved, billed) end
  -- Only the clients' API requests are logged and counted: not /images/, and
  -- not the backend's own image downloads (whatever URL they were given).
  if not ctx.api_request or state.is_own_fetch(ngx.var.http_x_aliocr_emulator_fetch) then return end
  state.count_connection(ngx.var.connection, ngx.var.https == "on" and "https" or "http")
  if not state.logging() then return end
  local body = ctx.body or ""
  state.log_request({
    time = ngx.req.start_time(),
    request_id = ctx.request_id,
    method = ngx.req.get_method(),
    uri = secrets.redact(ngx.var.request_uri),
    path = ngx.var.uri,
    api = ctx.api,
    scheme = ngx.var.scheme,
    http_version = ngx.req.http_version(),
    headers = ngx.req.get_headers(0, true),
    body = secrets.redact(#body > LOG_BODY_MAX and body:sub(1, LOG_BODY_MAX) or body),
    body_bytes = #body,
    params = secrets.redact_values(ctx.params),
    credential = ctx.credential,
    auth = ctx.auth,
    fault = ctx.fault,
    status = status,
    billed = billed,
    connection = tonumber(ngx.var.connection),
    connection_requests = tonumber(ngx.var.connection_requests),
    -- Over HTTPS: whether the client resumed an earlier TLS session.
    tls_resumed = ngx.var.https == "on" and ngx.var.ssl_session_reused == "r" or nil,
  })
end

return M
