--- The client: configuration, one call of either interface with retries,
-- accounting, and its lifetime.
-- @module aliocr.client
local core = require("aliocr.core")
local errors = require("aliocr.errors")
local result = require("aliocr.result")
local signing = require("aliocr.signing")

local Client = {}
Client.__index = Client
Client.__name = "aliocr.Client"

local getenv, random, floor = os.getenv, math.random, math.floor

local ACCEPT = "application/json"
local FORM = "application/x-www-form-urlencoded; charset=UTF-8"
local PATHS = { advanced = "/ocr/advanced", handwriting = "/ocr/handwriting" }
local API_OF = { recognize = "advanced", handwriting = "handwriting" }

local OPTIONS = {
  appcode = "string", app_key = "string", app_secret = "string", signature_method = "string",
  urls = "table", endpoint = "string", timeout = "number", connect_timeout = "number",
  retries = "number", retry_unknown = "boolean", retry_delay = "number", retry_max_delay = "number",
  proxy = "string", ca_file = "string", tls_verify = "boolean", max_response_bytes = "number",
  user_agent = "string", concurrency = "number", transport = "string", json_max_depth = "number",
  method = "string",
}

local CALL_OPTIONS = { show = true, params = true, timeout = true, method = true, retries = true }

-- Misuse raises, pointing at the caller's line: the first stack frame that
-- is not this file.
local own_source = debug.getinfo(1, "S").source
local function fail(msg)
  local level = 2
  while true do
    local info = debug.getinfo(level, "S")
    if not info or info.source ~= own_source then break end
    level = level + 1
  end
  error("aliocr: " .. msg, level)
end

local function http_url(url, what)
  if type(url) ~= "string" or url == "" then fail(what .. " must be a non-empty string") end
  local scheme = url:match("^(%a[%w+.-]*)://[^/?#]")
  if not scheme or (scheme:lower() ~= "http" and scheme:lower() ~= "https") then
    fail(what .. " must be an http:// or https:// URL, got '" .. url .. "'")
  end
  if url:find("[%c ]") then fail(what .. " must not contain spaces or control characters") end
  return url
end

local function positive(v, what, allow_zero)
  if v ~= nil and (type(v) ~= "number" or v ~= v or v < 0 or (v == 0 and not allow_zero)) then
    fail(what .. " must be a " .. (allow_zero and "non-negative" or "positive") .. " number")
  end
  return v
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

local function header_safe(s, what)
  if s ~= nil and s:find("[\r\n%z]") then fail(what .. " must not contain CR, LF or NUL characters") end
  return s
end

--- A new client; raises with a message that says what to fix on misuse.
function Client.new(opts)
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
  local ok, cred = pcall(core.credentials, {
    appcode = appcode, app_key = key, app_secret = secret, signature_method = opts.signature_method,
  })
  if not ok then fail(tostring(cred):gsub("^.-: ", "")) end

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
  for api, path in pairs(PATHS) do
    local u = opts.urls and opts.urls[api]
    if u == nil and opts.endpoint then u = endpoint .. path end
    if u == nil and env_urls[api] and env_urls[api] ~= "" then u = env_urls[api] end
    if u == nil and endpoint then u = endpoint .. path end
    if u ~= nil then
      u = http_url(u, "the URL of interface '" .. api .. "'")
      if u:find("[?#]") then fail("the URL of interface '" .. api .. "' must not have a query or fragment") end
      urls[api] = u
    end
  end
  if opts.urls then
    for k in pairs(opts.urls) do
      if not PATHS[k] then fail("urls has an unknown interface '" .. tostring(k) .. "' (advanced, handwriting)") end
    end
  end

  local method = opts.method or "POST"
  if method ~= "GET" and method ~= "POST" then fail("method must be \"GET\" or \"POST\"") end
  if opts.transport and opts.transport ~= "curl" then
    fail("transport '" .. opts.transport .. "' is not available; use \"curl\"")
  end
  if opts.retries ~= nil and (opts.retries < 0 or opts.retries ~= floor(opts.retries)) then
    fail("retries must be a whole number >= 0")
  end

  local self = setmetatable({
    _cred = cred,
    _urls = urls,
    _method = method,
    _timeout = positive(opts.timeout, "timeout") or 10,
    _connect_timeout = positive(opts.connect_timeout, "connect_timeout") or 3,
    _retries = opts.retries or 2,
    _retry_unknown = opts.retry_unknown == true,
    _retry_delay = positive(opts.retry_delay, "retry_delay", true) or 0.2,
    _retry_max_delay = positive(opts.retry_max_delay, "retry_max_delay", true) or 5,
    _max_bytes = positive(opts.max_response_bytes, "max_response_bytes") or 16 * 1024 * 1024,
    _ca_file = opts.ca_file,
    _verify = opts.tls_verify ~= false,
    _proxy = header_safe(opts.proxy, "proxy"),
    _user_agent = header_safe(opts.user_agent, "user_agent") or
      ("aliocr/" .. core.versions().aliocr .. " libcurl/" .. core.versions().curl),
    _concurrency = positive(opts.concurrency, "concurrency") or 8,
    _stats = { requests = 0, attempts = 0, billed = 0, not_billed = 0, unknown = 0, errors = {} },
  }, Client)
  if cred:mode() == "signature" then self._app_key = cred:app_key() end
  self._engine = core.engine({
    json_max_depth = opts.json_max_depth or 64,
    max_connections = math.max(16, 2 * self._concurrency),
  })
  return self
end

function Client:__tostring()
  if not self._cred then return "aliocr.Client (closed)" end
  return "aliocr.Client (" .. tostring(self._cred) .. ")"
end

local function check_open(self)
  if getmetatable(self) ~= Client then fail("call client methods with ':'") end
  if not self._engine then fail("attempt to use a closed client") end
end

-- The parameters of a call, as a list of { key, value } with `url` first.
local function call_params(image_url, opts)
  local params = { { "url", image_url } }
  if opts.show ~= nil then
    if type(opts.show) ~= "string" and type(opts.show) ~= "number" then fail("show must be a string or a number") end
    params[#params + 1] = { "show", param_string(opts.show) }
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
    for _, k in ipairs(keys) do params[#params + 1] = { k, param_string(opts.params[k]) } end
  end
  return params
end

-- The engine request of one attempt: a fresh timestamp, nonce and signature
-- every time in signature mode.
function Client:_request(url, params, method, timeout)
  local encoded = signing.form(params)
  local req = {
    url = url, method = method, credentials = self._cred,
    timeout_ms = ms(timeout), connect_timeout_ms = ms(self._connect_timeout),
    max_bytes = self._max_bytes, ca_file = self._ca_file, verify = self._verify,
    proxy = self._proxy, user_agent = self._user_agent,
  }
  local headers = { "Accept: " .. ACCEPT }
  local content_type
  if method == "GET" then
    req.url = url .. "?" .. encoded
  else
    req.body = encoded
    content_type = FORM
    headers[#headers + 1] = "Content-Type: " .. FORM
  end
  if self._app_key then
    local signed = {
      { "X-Ca-Key", self._app_key },
      { "X-Ca-Nonce", core.uuid() },
      { "X-Ca-Signature-Method", self._cred:signature_method() },
      { "X-Ca-Timestamp", string.format("%.0f", core.now_ms()) },
    }
    local sts = signing.string_to_sign({
      method = method, accept = ACCEPT, content_type = content_type, headers = signed,
      path = url:match("^%a[%w+.-]*://[^/]*(/.*)$") or "/", params = params,
    })
    local names = {}
    for i, h in ipairs(signed) do
      headers[#headers + 1] = h[1] .. ": " .. h[2]
      names[i] = h[1]
    end
    headers[#headers + 1] = "X-Ca-Signature-Headers: " .. table.concat(names, ",")
    headers[#headers + 1] = "X-Ca-Signature: " .. self._cred:sign(sts)
  end
  req.headers = headers
  return req
end

-- The delay before retry number n: exponential back-off with full jitter.
function Client:_backoff(n)
  local cap = math.min(self._retry_max_delay, self._retry_delay * 2 ^ (n - 1))
  return random() * cap
end

function Client:_account(res, err)
  local s = self._stats
  s.requests = s.requests + 1
  local billed = res and true or err.billed
  if billed == true then s.billed = s.billed + 1
  elseif billed == false then s.not_billed = s.not_billed + 1
  else s.unknown = s.unknown + 1 end
  if err then s.errors[err.kind] = (s.errors[err.kind] or 0) + 1 end
end

--- One call of an interface: `kind` is "recognize" or "handwriting".
function Client:_call(kind, image_url, opts)
  local api = API_OF[kind]
  if type(image_url) ~= "string" then
    fail("the image URL must be a string, got " .. type(image_url))
  end
  http_url(image_url, "the image URL")
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then fail("the options of a call must be a table") end
  for k in pairs(opts) do
    if not CALL_OPTIONS[k] then fail("unknown call option '" .. tostring(k) .. "'") end
  end
  local url = self._urls[api]
  if not url then
    fail("no URL for interface '" .. api .. "': set urls." .. api .. " or endpoint in aliocr.new, or " ..
      "ALIOCR_" .. api:upper() .. "_URL or ALIOCR_ENDPOINT")
  end
  local method = opts.method or self._method
  if method ~= "GET" and method ~= "POST" then fail("method must be \"GET\" or \"POST\"") end
  local timeout = positive(opts.timeout, "timeout") or self._timeout
  local retries = opts.retries or self._retries
  if type(retries) ~= "number" or retries < 0 or retries ~= floor(retries) then
    fail("retries must be a whole number >= 0")
  end
  local params = call_params(image_url, opts)

  local started = core.monotonic()
  local attempts, s = 0, self._stats
  while true do
    attempts = attempts + 1
    s.attempts = s.attempts + 1
    local response = self._engine:perform(self:_request(url, params, method, timeout))
    result.normalize(response.json)
    local err = errors.classify(response)
    if not err then
      local res = result.build(response.json, response)
      res.attempts, res.elapsed = attempts, core.monotonic() - started
      self:_account(res)
      return res
    end
    if err.billed == nil and (err.kind == "timeout" or err.kind == "transport") then
      -- Sent, and no answer: a retry could be billed a second time.
      err.retryable = self._retry_unknown
    end
    if not (err.retryable and attempts <= retries) then
      err.attempts, err.elapsed = attempts, core.monotonic() - started
      self:_account(nil, err)
      return nil, err
    end
    core.sleep(self:_backoff(attempts))
  end
end

--- Interface one (high precision): `client:recognize(image_url, opts)`.
function Client:recognize(image_url, opts)
  check_open(self)
  return self:_call("recognize", image_url, opts)
end

--- Interface two (handwriting, with line positions).
function Client:handwriting(image_url, opts)
  check_open(self)
  return self:_call("handwriting", image_url, opts)
end

--- Calls, attempts and outcomes so far (a copy).
function Client:stats()
  check_open(self)
  local s = self._stats
  local copy = { requests = s.requests, attempts = s.attempts, billed = s.billed,
                 not_billed = s.not_billed, unknown = s.unknown, errors = {} }
  for k, v in pairs(s.errors) do copy.errors[k] = v end
  return copy
end

--- Frees the client's connections and wipes its credentials; safe to call
-- twice. A closed client raises on use.
function Client:close()
  if getmetatable(self) ~= Client then fail("call client methods with ':'") end
  if self._engine then
    self._engine:close()
    self._cred:close()
    self._engine, self._cred = nil, nil
  end
  return true
end

Client.__close = Client.close

return Client
