--- The options of a client and of its calls: their names, types and
-- defaults, and their checks (the one validator: misuse raises here, with
-- the `aliocr:` prefix, at the caller's line). The core only guards its own
-- invariants.
-- @module aliocr.options
-- @local
local core = require("aliocr.core")
local url_check = require("aliocr.url")

local M = {}

local getenv, floor = os.getenv, math.floor

--- The interfaces: their paths under an endpoint, and the call kind of each.
M.PATHS = { advanced = "/ocr/advanced", handwriting = "/ocr/handwriting" }
M.API_OF = { recognize = "advanced", handwriting = "handwriting" }

--- The defaults of aliocr.new's options (the API reference lists them).
M.DEFAULTS = {
  timeout = 10, connect_timeout = 3, retries = 2, retry_delay = 0.2, retry_max_delay = 5,
  max_response_bytes = 16 * 1024 * 1024, json_max_depth = 64, concurrency = 8, idle_timeout = 10,
  method = "POST", max_image_bytes = 10 * 1024 * 1024,
}

--- The defaults of the `oss` option's fields.
M.OSS_DEFAULTS = { prefix = "aliocr/", expires = 300 }

--- aliocr.new's options and their types.
local OPTIONS = {
  appcode = "string", app_key = "string", app_secret = "string", signature_method = "string",
  urls = "table", endpoint = "string", timeout = "number", connect_timeout = "number",
  retries = "number", retry_unknown = "boolean", retry_delay = "number", retry_max_delay = "number",
  proxy = "string", ca_file = "string", tls_verify = "boolean", max_response_bytes = "number",
  user_agent = "string", concurrency = "number", transport = "string", json_max_depth = "number",
  method = "string", idle_timeout = "number", oss = "table", uploader = "function", max_image_bytes = "number",
  budget = "table", rate_limit = "table",
}

--- The fields of the `rate_limit` option and their types.
local RATE_OPTIONS = { qps = "number", adaptive = "boolean", dict = "string", key = "string" }

--- The fields of the `budget` option and their types.
local BUDGET_OPTIONS = { limit = "number", period = "number", dict = "string", key = "string" }

--- The fields of the `oss` option and their types.
local OSS_OPTIONS = {
  endpoint = "string", region = "string", bucket = "string", prefix = "string", access_key_id = "string",
  access_key_secret = "string", security_token = "string", expires = "number", keep = "boolean",
  path_style = "boolean",
}

local CALL_OPTIONS = { show = true, params = true, timeout = true, method = true, retries = true }

M.OPTIONS, M.CALL_OPTIONS = OPTIONS, CALL_OPTIONS

--- The options of a batch that are not call options.
M.BATCH_OPTIONS = { concurrency = true, on_progress = true }

-- Misuse raises, pointing at the caller's line: the first stack frame that
-- is not one of the client's files (nor Lua 5.1's stand-in for frames a
-- tail call replaced).
local own = {}

--- Registers the file of the caller as one of the client's own: `fail`
-- points past its frames.
function M.own()
  own[debug.getinfo(2, "S").source] = true
end
M.own()

local function ours(info) return own[info.source] or info.what == "tail" end

--- Raises "aliocr: <msg>" at the caller's line (see above).
local function fail(msg)
  local level = 2
  while true do
    local info = debug.getinfo(level, "S")
    if not info then break end
    if not ours(info) then
      -- The pcall of Client:_op is ours too.
      local above = info.what == "C" and debug.getinfo(level + 1, "S")
      if not (above and own[above.source]) then break end
    end
    level = level + 1
  end
  error("aliocr: " .. msg, level)
end

M.fail = fail

-- The scheme check of every URL; the rest is aliocr.url's.
local function http_url(url, what)
  if type(url) ~= "string" or url == "" then fail(what .. " must be a non-empty string") end
  local scheme = url:match("^%s*(%a[%w+.-]*)://[^/?#]")
  if not scheme or (scheme:lower() ~= "http" and scheme:lower() ~= "https") then
    fail(what .. " must be an http:// or https:// URL, got '" .. url:gsub("%c", "?") .. "'")
  end
  return url
end

-- The longest image URL a call sends (after percent-encoding): far over
-- any real one, far under what would fail inside libcurl.
local MAX_IMAGE_URL = 65536

-- A number option: positive (or >= 0 with allow_zero) and at most `limit`
-- (default: a million, which bounds seconds to about 11 days).
local function positive(v, what, allow_zero, limit)
  limit = limit or 1e6
  if v ~= nil and (type(v) ~= "number" or v ~= v or v < 0 or (v == 0 and not allow_zero)) then
    fail(what .. " must be a " .. (allow_zero and "non-negative" or "positive") .. " number")
  end
  if v ~= nil and v > limit then fail(what .. " must be at most " .. string.format("%.0f", limit)) end
  return v
end

-- A whole number option from `lo` to `hi`.
local function whole(v, what, lo, hi)
  if type(v) ~= "number" or v ~= floor(v) or v < lo then
    fail(what .. " must be a whole number >= " .. string.format("%.0f", lo))
  end
  if v > hi then fail(what .. " must be at most " .. string.format("%.0f", hi)) end
  return v
end

-- Raises unless every field of the option table `o` (the option `what`) is
-- one of `types` (field = type name) and of its type; `names` lists them
-- for the message.
local function fields(o, types, what, names)
  for k, v in pairs(o) do
    local want = types[k]
    if not want then
      fail("unknown " .. what .. " option '" .. tostring(k) .. "'" .. (names and (" (" .. names .. ")") or ""))
    end
    if type(v) ~= want then fail(what .. "." .. k .. " must be a " .. want) end
  end
end

-- A parameter value as sent: whole numbers without a ".0" (Lua 5.3+ would
-- write 1.0 for a float).
local function param_string(v)
  if type(v) == "number" and v == floor(v) and v > -2^53 and v < 2^53 then
    return string.format("%.0f", v)
  end
  return tostring(v)
end

-- Milliseconds for libcurl, at least 1 (0 would mean "no limit").
local function ms(seconds) return math.max(1, math.ceil(seconds * 1000)) end

local function check_proxy(p)
  local ok, why = url_check.proxy(p)
  if not ok then fail("proxy " .. why .. " (libcurl takes http://, https://, socks4://, socks4a://, socks5:// " ..
    "or socks5h:// with a host and a port)") end
  return p
end

-- The JSON decoder of a client: lua-cjson's, an instance of its own with
-- the depth limit and no NaN or Infinity. Both transports decode with it
-- (and the core makes whole numbers integers: src/json.c).
local function json_decoder(depth)
  local cjson = require("cjson").new()
  cjson.decode_max_depth(depth)
  cjson.decode_invalid_numbers(false)
  return cjson.decode
end

local function header_safe(s, what)
  if s ~= nil and s:find("[\r\n%z]") then fail(what .. " must not contain CR, LF or NUL characters") end
  return s
end

M.http_url, M.positive, M.whole, M.ms, M.header_safe = http_url, positive, whole, ms, header_safe
M.json_decoder, M.MAX_IMAGE_URL = json_decoder, MAX_IMAGE_URL

-- The first of these environment variables that is set and not empty.
local function env(...)
  for i = 1, select("#", ...) do
    local v = getenv((select(i, ...)))
    if v ~= nil and v ~= "" then return v end
  end
  return nil
end

--- Checks the `oss` option (and the environment, which gives what it does
-- not): the settings of the client's OSS storage, or nil when neither
-- names a bucket. The region defaults to the one in an Aliyun endpoint's
-- name (oss-cn-hangzhou.aliyuncs.com); path-style addressing
-- (endpoint/bucket/key) to an endpoint whose host is an IP address or
-- localhost.
function M.oss(o)
  if o ~= nil then
    fields(o, OSS_OPTIONS, "oss")
  else
    if not env("ALIOCR_OSS_BUCKET", "OSS_BUCKET") then return nil end
    o = {}
  end
  local endpoint = o.endpoint or env("ALIOCR_OSS_ENDPOINT", "OSS_ENDPOINT")
  if not endpoint then fail("OSS needs an endpoint: set oss.endpoint, or ALIOCR_OSS_ENDPOINT") end
  if not endpoint:find("://", 1, true) then endpoint = "https://" .. endpoint end
  http_url(endpoint, "oss.endpoint")
  endpoint = endpoint:gsub("/+$", "")
  local good, why = url_check.endpoint(endpoint .. "/")
  if not good or endpoint:find("[?#]") or endpoint:match("^%a+://[^/]+(/.*)$") then
    fail("oss.endpoint must be a scheme and a host (and a port), got '" .. endpoint:gsub("%c", "?") .. "'" ..
      (why and (": " .. why) or ""))
  end
  local host = endpoint:match("^%a+://([^/:%[]+)") or endpoint:match("^%a+://%[([^%]]+)%]")
  local region = o.region or env("ALIOCR_OSS_REGION", "OSS_REGION") or
    (host and host:match("^oss%-([%w%-]-)%-internal%.aliyuncs%.com$")) or
    (host and host:match("^oss%-([%w%-]+)%.aliyuncs%.com$"))
  if not region then
    fail("OSS needs a region (cn-hangzhou...): set oss.region, or ALIOCR_OSS_REGION")
  end
  if not region:match("^[%w%-]+$") then fail("oss.region must be letters, digits and '-'") end
  local bucket = o.bucket or env("ALIOCR_OSS_BUCKET", "OSS_BUCKET")
  if not bucket then fail("OSS needs a bucket: set oss.bucket, or ALIOCR_OSS_BUCKET") end
  -- OSS's own rule: 3 to 63 lower-case letters, digits and hyphens, not at an end.
  if #bucket < 3 or #bucket > 63 or not bucket:match("^[a-z0-9][a-z0-9%-]*[a-z0-9]$") then
    fail("oss.bucket must be 3 to 63 lower-case letters, digits and '-' (not first or last)")
  end
  local prefix = o.prefix or env("ALIOCR_OSS_PREFIX") or M.OSS_DEFAULTS.prefix
  if prefix:find("%c") or prefix:sub(1, 1) == "/" or #prefix > 512 then
    fail("oss.prefix must not start with '/' or hold control characters, and is at most 512 bytes")
  end
  -- A "." or ".." segment would be removed from the path by an HTTP
  -- library or proxy, and the signature would no longer match.
  if ("/" .. prefix .. "/"):find("/%.%.?/") then fail("oss.prefix must not have a '.' or '..' segment") end
  local id = o.access_key_id or env("ALIBABA_CLOUD_ACCESS_KEY_ID", "OSS_ACCESS_KEY_ID")
  local secret = o.access_key_secret or env("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "OSS_ACCESS_KEY_SECRET")
  local token = o.security_token
  if token == nil and o.access_key_id == nil then
    token = env("ALIBABA_CLOUD_SECURITY_TOKEN", "OSS_SESSION_TOKEN", "ALIBABA_CLOUD_STS_TOKEN")
  end
  if not id or not secret then
    fail("OSS needs an AccessKey: set oss.access_key_id and oss.access_key_secret, or " ..
      "ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET")
  end
  for _, kv in ipairs({ { "access_key_id", id }, { "access_key_secret", secret }, { "security_token", token } }) do
    if kv[2] == "" then fail("oss." .. kv[1] .. " must not be empty") end
    header_safe(kv[2], "oss." .. kv[1])
  end
  local expires = o.expires or M.OSS_DEFAULTS.expires
  whole(expires, "oss.expires", 1, 604800)
  local path_style = o.path_style
  if path_style == nil then
    path_style = host ~= nil and (host == "localhost" or host:match("^[%d.]+$") ~= nil
      or host:find(":", 1, true) ~= nil)
  end
  return {
    endpoint = endpoint, region = region, bucket = bucket, prefix = prefix, access_key_id = id,
    access_key_secret = secret, security_token = token, expires = expires, keep = o.keep == true,
    path_style = path_style,
  }
end

--- Checks the `budget` option: the settings of the client's budget (see
-- aliocr.budget), the shared dict itself in `dict`. `in_nginx`: whether
-- nginx's Lua module runs this (a shared dict needs it).
function M.budget(o, in_nginx)
  fields(o, BUDGET_OPTIONS, "budget", "limit, period, dict, key")
  if o.limit == nil then fail("budget.limit is needed: the most calls that may be billed") end
  whole(o.limit, "budget.limit", 0, 2^53)
  positive(o.period, "budget.period", false, 1e9)
  return { limit = o.limit, period = o.period, dict = M.shared_dict(o, "budget", in_nginx),
    key = o.key or "aliocr:budget" }
end

--- The lua_shared_dict that option `o` (budget or rate_limit, `what`)
-- names in `o.dict`, or nil; `o.key` only with it. `in_nginx`: whether
-- nginx's Lua module runs this.
function M.shared_dict(o, what, in_nginx)
  if o.dict == nil then
    if o.key ~= nil then fail(what .. ".key names the entry in " .. what .. ".dict: give dict too") end
    return nil
  end
  if not in_nginx then fail(what .. ".dict names a lua_shared_dict: it works only inside nginx") end
  local nginx = rawget(_G, "ngx")
  local dict = nginx and nginx.shared and nginx.shared[o.dict]
  if not dict then fail(what .. ".dict: nginx has no lua_shared_dict '" .. o.dict .. "'") end
  return dict
end

--- Checks the `rate_limit` option: the settings of the client's limiter
-- (see aliocr.limiter): a fixed rate `qps`, `adaptive`, or both; inside
-- nginx, the shared dict itself in `dict`.
function M.rate_limit(o, in_nginx)
  fields(o, RATE_OPTIONS, "rate_limit", "qps, adaptive, dict, key")
  positive(o.qps, "rate_limit.qps", false, 1e6)
  if o.qps == nil and not o.adaptive then fail("rate_limit needs qps, or adaptive = true (or both)") end
  return { qps = o.qps, adaptive = o.adaptive == true, dict = M.shared_dict(o, "rate_limit", in_nginx),
    key = o.key or "aliocr:rate" }
end

--- Checks aliocr.new's options (and the environment, which gives what the
-- options do not); returns the settings of the client, every default
-- filled in, with the fields core.config takes under its names.
-- `in_nginx`: whether nginx's Lua module runs this.
function M.client(opts, in_nginx)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then fail("aliocr.new takes a table of options") end
  for k, v in pairs(opts) do
    local want = OPTIONS[k]
    if not want then fail("unknown option '" .. tostring(k) .. "'") end
    if type(v) ~= want then fail("option '" .. k .. "' must be a " .. want) end
  end

  -- Credentials: the options, else the environment.
  local appcode, key, secret = opts.appcode, opts.app_key, opts.app_secret
  if appcode == nil and key == nil and secret == nil then
    appcode = getenv("ALIOCR_APPCODE")
    if appcode == "" then appcode = nil end
    if appcode == nil then
      key, secret = getenv("ALIOCR_APP_KEY"), getenv("ALIOCR_APP_SECRET")
      if key == "" then key = nil end
      if secret == "" then secret = nil end
    end
  end
  if appcode and (key or secret) then fail("give appcode, or app_key and app_secret, not both") end
  if not appcode and not (key and secret) then
    if key or secret then fail("signature auth needs both app_key and app_secret") end
    fail("no credentials: set appcode (or app_key and app_secret), or ALIOCR_APPCODE " ..
      "(or ALIOCR_APP_KEY and ALIOCR_APP_SECRET)")
  end
  for _, kv in ipairs({ { "appcode", appcode }, { "app_key", key }, { "app_secret", secret } }) do
    if kv[2] == "" then fail(kv[1] .. " must not be empty") end
    header_safe(kv[2], kv[1])
  end
  local signature_method = opts.signature_method
  if signature_method ~= nil and signature_method ~= "HmacSHA256" and signature_method ~= "HmacSHA1" then
    fail('signature_method must be "HmacSHA256" or "HmacSHA1"')
  end

  -- Interface URLs: urls, else endpoint, else the environment.
  local urls = {}
  local endpoint = opts.endpoint
  if endpoint ~= nil then
    http_url(endpoint, "endpoint")
  else
    endpoint = getenv("ALIOCR_ENDPOINT")
    if endpoint == "" then endpoint = nil end
    if endpoint then http_url(endpoint, "ALIOCR_ENDPOINT") end
  end
  if endpoint then endpoint = endpoint:gsub("/+$", "") end
  local env_urls = { advanced = getenv("ALIOCR_ADVANCED_URL"), handwriting = getenv("ALIOCR_HANDWRITING_URL") }
  for api, path in pairs(M.PATHS) do
    local u = opts.urls and opts.urls[api]
    if u == nil and opts.endpoint then u = endpoint .. path end
    if u == nil and env_urls[api] and env_urls[api] ~= "" then u = env_urls[api] end
    if u == nil and endpoint then u = endpoint .. path end
    if u ~= nil then
      u = http_url(u, "the URL of interface '" .. api .. "'")
      if u:find("[?#]") then fail("the URL of interface '" .. api .. "' must not have a query or fragment") end
      local good, why = url_check.endpoint(u)
      if not good then fail("the URL of interface '" .. api .. "' " .. why) end
      urls[api] = u
    end
  end
  if opts.urls then
    for k in pairs(opts.urls) do
      if not M.PATHS[k] then fail("urls has an unknown interface '" .. tostring(k) .. "' (advanced, handwriting)") end
    end
  end

  local method = opts.method or M.DEFAULTS.method
  if method ~= "GET" and method ~= "POST" then fail("method must be \"GET\" or \"POST\"") end
  -- Inside nginx the calls go over its own sockets ("resty"); elsewhere,
  -- over libcurl ("curl").
  local transport = opts.transport or (in_nginx and "resty" or "curl")
  if transport ~= "curl" and transport ~= "resty" then
    fail("transport must be \"curl\" or \"resty\", got '" .. transport .. "'")
  end
  if transport == "resty" and not in_nginx then
    fail("transport \"resty\" works only inside nginx's Lua module (OpenResty, libnginx-mod-http-lua)")
  end
  if opts.retries ~= nil then whole(opts.retries, "retries", 0, 1e3) end
  if opts.oss and opts.uploader then fail("give oss or uploader, not both") end
  local oss = not opts.uploader and M.oss(opts.oss) or nil
  local D = M.DEFAULTS
  return {
    appcode = appcode, app_key = key, app_secret = secret, signature_method = signature_method,
    urls = urls, method = method, transport = transport,
    timeout = positive(opts.timeout, "timeout") or D.timeout,
    connect_timeout_ms = ms(positive(opts.connect_timeout, "connect_timeout") or D.connect_timeout),
    retries = opts.retries or D.retries,
    retry_unknown = opts.retry_unknown == true,
    retry_delay = positive(opts.retry_delay, "retry_delay", true) or D.retry_delay,
    retry_max_delay = positive(opts.retry_max_delay, "retry_max_delay", true) or D.retry_max_delay,
    max_bytes = opts.max_response_bytes and whole(opts.max_response_bytes, "max_response_bytes", 1, 2^40)
      or D.max_response_bytes,
    json_max_depth = opts.json_max_depth and whole(opts.json_max_depth, "json_max_depth", 1, 1000)
      or D.json_max_depth,
    ca_file = opts.ca_file,
    verify = opts.tls_verify ~= false,
    proxy = header_safe(opts.proxy, "proxy") and check_proxy(opts.proxy),
    user_agent = header_safe(opts.user_agent, "user_agent") or
      ("aliocr/" .. core.versions().aliocr .. " libcurl/" .. core.versions().curl),
    concurrency = opts.concurrency and whole(opts.concurrency, "concurrency", 1, 1e4) or D.concurrency,
    idle_timeout = opts.idle_timeout and whole(opts.idle_timeout, "idle_timeout", 1, 86400) or D.idle_timeout,
    oss = oss, uploader = opts.uploader, budget = opts.budget and M.budget(opts.budget, in_nginx) or nil,
    rate_limit = opts.rate_limit and M.rate_limit(opts.rate_limit, in_nginx) or nil,
    max_image_bytes = opts.max_image_bytes and whole(opts.max_image_bytes, "max_image_bytes", 1, 2^40)
      or D.max_image_bytes,
  }
end


-- The parameters of a call but `url`, as a flat list key, value, ... (nil
-- when there are none).
function M.call_params(opts)
  local params = {}
  if opts.show ~= nil then
    if type(opts.show) ~= "string" and type(opts.show) ~= "number" then fail("show must be a string or a number") end
    params[1], params[2] = "show", param_string(opts.show)
  end
  if opts.params ~= nil then
    if type(opts.params) ~= "table" then fail("params must be a table") end
    local keys = {}
    for k, v in pairs(opts.params) do
      if type(k) ~= "string" or k == "" then fail("params keys must be non-empty strings") end
      if k == "url" or (k == "show" and opts.show ~= nil) then fail("params must not repeat '" .. k .. "'") end
      local t = type(v)
      if t ~= "string" and t ~= "number" and t ~= "boolean" then
        fail("params." .. k .. " must be a string, a number or a boolean")
      end
      keys[#keys + 1] = k
    end
    table.sort(keys)
    for _, k in ipairs(keys) do
      params[#params + 1] = k
      params[#params + 1] = param_string(opts.params[k])
    end
  end
  if params[1] == nil then return nil end
  return params
end

return M
