--- The client: made by `aliocr.new`, it calls the two interfaces, one image
-- at a time (`recognize`, `handwriting`), many at once (`batch`), or without
-- ever blocking (`submit`, `poll`, `wait`), and counts what was billed.
--
-- Every call returns a @{aliocr.Result} or `nil` and an @{aliocr.Error};
-- misuse (a wrong type, an unknown option, a URL that is not http(s))
-- raises instead, with a message that says what to fix, pointing at the
-- caller's line.
-- @module aliocr.client
local core = require("aliocr.core")
local errors = require("aliocr.errors")
local resty = require("aliocr.resty")
local result = require("aliocr.result")
local signing = require("aliocr.signing")
local url_check = require("aliocr.url")

local Client = {}
Client.__index = Client
Client.__name = "aliocr.Client"

local getenv, random, floor = os.getenv, math.random, math.floor
local monotonic, interrupted, huge, min, max = core.monotonic, core.interrupted, math.huge, math.min, math.max

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
  method = "string", idle_timeout = "number",
}

local CALL_OPTIONS = { show = true, params = true, timeout = true, method = true, retries = true }

-- Misuse raises, pointing at the caller's line: the first stack frame that
-- is not this file (nor Lua 5.1's stand-in for frames a tail call replaced).
local own_source = debug.getinfo(1, "S").source
local function ours(info) return info.source == own_source or info.what == "tail" end
local function fail(msg)
  local level = 2
  while true do
    local info = debug.getinfo(level, "S")
    if not info then break end
    if not ours(info) then
      -- The pcall of Client:_op is ours too.
      local above = info.what == "C" and debug.getinfo(level + 1, "S")
      if not (above and above.source == own_source) then break end
    end
    level = level + 1
  end
  error("aliocr: " .. msg, level)
end

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

local function header_safe(s, what)
  if s ~= nil and s:find("[\r\n%z]") then fail(what .. " must not contain CR, LF or NUL characters") end
  return s
end

--- A new client: see @{aliocr.new}, which is this function.
-- @local
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
      local good, why = url_check.endpoint(u)
      if not good then fail("the URL of interface '" .. api .. "' " .. why) end
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
  -- Inside nginx the calls go over its own sockets ("resty"); elsewhere,
  -- over libcurl ("curl").
  local transport = opts.transport or (resty.available() and "resty" or "curl")
  if transport ~= "curl" and transport ~= "resty" then
    fail("transport must be \"curl\" or \"resty\", got '" .. transport .. "'")
  end
  if transport == "resty" and not resty.available() then
    fail("transport \"resty\" works only inside nginx's Lua module (OpenResty, libnginx-mod-http-lua)")
  end
  if opts.retries ~= nil then whole(opts.retries, "retries", 0, 1e3) end

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
    _max_bytes = opts.max_response_bytes and whole(opts.max_response_bytes, "max_response_bytes", 1, 2^40)
      or 16 * 1024 * 1024,
    _json_max_depth = opts.json_max_depth and whole(opts.json_max_depth, "json_max_depth", 1, 1000) or 64,
    _ca_file = opts.ca_file,
    _verify = opts.tls_verify ~= false,
    _proxy = header_safe(opts.proxy, "proxy") and check_proxy(opts.proxy),
    _user_agent = header_safe(opts.user_agent, "user_agent") or
      ("aliocr/" .. core.versions().aliocr .. " libcurl/" .. core.versions().curl),
    _concurrency = opts.concurrency and whole(opts.concurrency, "concurrency", 1, 1e4) or 8,
    _idle_timeout = opts.idle_timeout and whole(opts.idle_timeout, "idle_timeout", 1, 86400) or 10,
    _stats = { requests = 0, attempts = 0, billed = 0, not_billed = 0, unknown = 0, errors = {} },
    -- Jobs (see "Jobs" below): the queue of submitted jobs waiting for a
    -- slot (an array read from _qhead; a cancelled job stays in it, skipped,
    -- so that cancelling is O(1)) and how many of them are still queued;
    -- the attempts under way, by engine id (jobs of submit and of batch);
    -- the submitted ones among them (they count against concurrency); the
    -- jobs waiting for a retry (a set); the finished submitted jobs whose
    -- callback has not run (an array read from _fhead); submitted jobs not
    -- finished; outcomes so far (to see that something finished).
    _queue = {}, _qhead = 1, _qtail = 0, _nqueued = 0, _running = {}, _active = 0, _retrying = {},
    _finished = {}, _fhead = 1, _ftail = 0, _pending = 0, _outcomes = 0,
    -- Responses the engine handed over that are not handled yet (an error
    -- while handling one leaves the rest for the next drive), and the job
    -- whose attempt is being started.
    _unhandled = {}, _uhead = 1, _utail = 0, _starting = nil,
    -- The plans of calls with no options, and the engine's prepared calls
    -- for them (by kind).
    _plans = {}, _profiles = {},
  }, Client)
  if cred:mode() == "signature" then self._app_key = cred:app_key() end
  self._transport = transport
  self._resty = transport == "resty"
  -- Prepared calls: libcurl, outside nginx (where the curl transport raises).
  self._fast = transport == "curl" and not resty.available()
  if transport == "resty" then
    local why = resty.unsupported({ urls = urls, proxy = self._proxy, verify = self._verify })
    if why then fail(why) end
    self._engine = resty.engine({ json_max_depth = self._json_max_depth, pool_size = math.max(30, self._concurrency),
      idle_timeout = self._idle_timeout })
  else
    self._engine = core.engine({
      json_max_depth = self._json_max_depth,
      max_connections = math.max(16, 2 * self._concurrency),
      idle_timeout = self._idle_timeout,
    })
  end
  return self
end

function Client:__tostring()
  if self._closed then return "aliocr.Client (closed)" end
  return "aliocr.Client (" .. tostring(self._cred) .. ")"
end

local function check_open(self)
  if getmetatable(self) ~= Client then fail("call client methods with ':'") end
  if self._closed then fail("attempt to use a closed client") end
end

-- One operation of a client (a call, poll, wait, batch) runs as a protected
-- call with _in_op set. A finalizer (__gc) can run at any allocation, in the
-- middle of the client's own code: while _in_op is set, a close from one is
-- put off to the end of the operation (cancel is safe at any time), and any
-- other use of the client from one raises. User code (callbacks,
-- on_progress) runs with _in_op cleared, so that it may do anything.
local function finish(self, ok, ...)
  self._in_op = false
  if self._close_pending then self:_close_now() end
  if not ok then error((...), 0) end
  return ...
end

function Client:_op(f, ...)
  if self._resty then return f(self, ...) end -- nginx's light threads interleave: no such guard
  if self._in_op then
    fail("a client was used from a finalizer (__gc) in the middle of one of its own calls; " ..
      "only job:cancel() and client:close() may be called there")
  end
  self._in_op = true
  return finish(self, pcall(f, self, ...))
end

-- Runs user code `f(...)` from inside an operation, with _in_op cleared.
function Client:_user(f, ...)
  local saved = self._in_op
  self._in_op = false
  local ok, e = pcall(f, ...)
  self._in_op = saved
  if not ok then error(e, 0) end
end

-- The parameters of a call but `url`, as a list of { key, value }.
local function call_params(opts)
  local params = {}
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

-- Accounts the end of a call: `billed` is true when its last answer was
-- billed, `unknown` the number of its attempts whose billing is unknown (a
-- timeout or cut-off after the request went out: more than one only with
-- retry_unknown), `kind` the error's kind (nil for a success). stats().billed
-- counts billed answers and stats().unknown such attempts, so that the
-- gateway's count lies between billed and billed + unknown; not_billed
-- counts the calls that cost nothing for sure.
local function tally(s, sign, billed, unknown, kind)
  s.requests = s.requests + sign
  if billed == true then s.billed = s.billed + sign elseif unknown == 0 then s.not_billed = s.not_billed + sign end
  s.unknown = s.unknown + sign * unknown
  if kind then
    local n = (s.errors[kind] or 0) + sign
    if n == 0 then n = nil end
    s.errors[kind] = n
  end
end

function Client:_account(billed, unknown, kind)
  tally(self._stats, 1, billed, unknown, kind)
  self._outcomes = self._outcomes + 1
end

-- Inside nginx a call's light thread can be cut off at any yield (the
-- client hangs up, ngx.exit, ngx.thread.kill, an error in the handler) and
-- no code of the call runs again: so from the moment its first request goes
-- out until its answer settles it, a call counts as what it would be if cut
-- off there: a cancelled call with `unknown` attempts of unknown billing (the
-- one under way and the earlier ones whose billing is unknown). `p` holds
-- what is counted so far; `unknown` nil takes it back (before the real
-- outcome is accounted, with no yield in between).
function Client:_provisional(p, unknown)
  local s = self._stats
  if p.counted then tally(s, -1, false, p.unknown, "cancelled") end
  p.counted, p.unknown = unknown ~= nil, unknown
  if unknown then tally(s, 1, false, unknown, "cancelled") end
end

-- Accounts `n` calls cancelled before they were ever sent.
function Client:_count_cancelled(n)
  for _ = 1, n do self:_account(false, 0, "cancelled") end
end

-- Checks a call's kind and options and makes its plan, for any image URL:
-- raises on misuse.
function Client:_plan(kind, opts)
  local api = API_OF[kind]
  if not api then fail("kind must be \"recognize\" or \"handwriting\", got " .. tostring(kind)) end
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
  return {
    url = url, method = method,
    retries = whole(opts.retries or self._retries, "retries", 0, 1e3),
    timeout = positive(opts.timeout, "timeout") or self._timeout,
    extra = call_params(opts),
  }
end

-- Checks a call and makes its plan: raises on misuse, before anything is
-- sent. `kind` is "recognize" or "handwriting"; `plan` is the plan of the
-- kind and options, when the caller made it already.
function Client:_prepare(kind, image_url, opts, plan)
  if not API_OF[kind] then fail("kind must be \"recognize\" or \"handwriting\", got " .. tostring(kind)) end
  if type(image_url) ~= "string" then
    fail("the image URL must be a string, got " .. type(image_url))
  end
  -- Sent as a WHATWG URL parser writes it (a space as %20, ...): the last
  -- one checked is kept, so that a loop over one URL checks it once.
  local sent = image_url
  if image_url ~= self._checked_url then
    http_url(image_url, "the image URL")
    local why
    sent, why = url_check.image(image_url)
    if not sent then fail("the image URL " .. why) end
    if #sent > MAX_IMAGE_URL then
      fail("the image URL is too long (" .. #sent .. " bytes; at most " .. MAX_IMAGE_URL .. ")")
    end
    if sent == image_url then self._checked_url = image_url end
  end
  plan = plan or self:_plan(kind, opts)
  local params = { { "url", sent } }
  for _, kv in ipairs(plan.extra) do params[#params + 1] = kv end
  return { url = plan.url, method = plan.method, retries = plan.retries, timeout = plan.timeout, params = params }
end

-- What an attempt's response means: the result; or the error and whether
-- to try again (after a back-off). A final outcome is accounted here.
-- `prior` is the number of the call's earlier attempts whose billing is
-- unknown; `again` comes with whether this attempt's billing is unknown.
function Client:_outcome(call, response, attempts, started, prior)
  if not response.integers then result.normalize(response.json) end
  local err = errors.classify(response)
  if not err then
    local res = result.build(response.json, response)
    res.attempts, res.elapsed = attempts, monotonic() - started
    if prior > 0 then res.unknown_attempts = prior end
    self:_account(true, prior)
    return res
  end
  local unknown = err.billed == nil
  if unknown and (err.kind == "timeout" or err.kind == "transport") then
    -- Sent, and no answer: a retry could be billed a second time.
    err.retryable = self._retry_unknown
  end
  if err.retryable and attempts <= call.retries then return nil, err, true, unknown end
  err.attempts, err.elapsed = attempts, monotonic() - started
  if prior > 0 then
    -- An earlier attempt may have been billed: this call's billing is not
    -- known to be false.
    err.unknown_attempts = prior
    if err.billed == false then err.billed = nil end
  end
  self:_account(err.billed, prior + (unknown and 1 or 0), err.kind)
  return nil, err
end

-- Raises when this transport cannot make a call here: libcurl would block
-- nginx's worker; nginx's sockets are not allowed in every phase.
function Client:_check_place()
  if self._transport == "resty" then
    local refused = resty.check_phase()
    if refused then fail(refused) end
  elseif resty.available() then
    fail("the curl transport would block nginx's worker: inside nginx use transport \"resty\" " ..
      "(the default there)")
  end
end

-- Why a call or a batch of the resty transport is to start nothing more:
-- the client was closed, nginx's worker is exiting (a QUIT or a HUP:
-- nothing new should go out, and the worker waits for what runs), or the
-- batch was stopped (`stop()`, see resty.run_threads, says why); nil if not.
function Client:_halted(stop)
  if self._closed then return "the client was closed" end
  if self._resty then
    if resty.exiting() then return "nginx's worker is exiting" end
    local why = stop and stop()
    if why then return "the batch stopped: " .. why end
  end
  return nil
end

-- Waits between attempts; inside nginx without blocking its worker, and
-- no longer than until the call is to stop (see _halted).
function Client:_pause(seconds, stop)
  if self._transport ~= "resty" then return core.sleep(seconds) end
  local deadline = monotonic() + seconds
  while not self:_halted(stop) do
    local left = deadline - monotonic()
    if left < 0.001 then return end -- nginx sleeps whole milliseconds
    resty.sleep(min(left, 0.1))
  end
end

-- The plan of a call with no options (made once per kind).
function Client:_default_plan(kind)
  local plan = self._plans[kind]
  if not plan then
    plan = self:_plan(kind, nil)
    self._plans[kind] = plan
  end
  return plan
end

-- The prepared call of the C engine for a plan with no options: the request
-- built once (URL, headers, AppCode, timeouts, TLS), so that a call passes
-- only its image URL. False when it cannot be used (signature auth signs
-- every request anew).
function Client:_profile(kind, plan)
  local id = self._profiles[kind]
  if id == nil then
    id = false
    if not self._app_key then
      local req = self:_request(plan.url, {}, plan.method, plan.timeout)
      req.url, req.body = plan.url, nil
      id = self._engine:profile(req)
    end
    self._profiles[kind] = id
  end
  return id
end

-- An image URL that goes out as it is: checked already (see _prepare).
function Client:_plain_image_url(u)
  if type(u) ~= "string" then return false end
  if u ~= self._checked_url then
    if url_check.image(u) ~= u or #u > MAX_IMAGE_URL then return false end
    self._checked_url = u
  end
  return true
end

-- One blocking call (with its retries); inside nginx it yields instead.
-- A call with no options, from a client with no jobs, takes a prepared call
-- for its first attempt (the common case, and the fast one); everything else
-- and every further attempt take the general path, with the same results.
function Client:_call(kind, image_url, opts, stop)
  local started, attempts, unknown, plan = monotonic(), 0, 0, nil
  if opts == nil and self._fast and next(self._running) == nil and self._nqueued == 0 and next(self._retrying) == nil
      and self:_plain_image_url(image_url) and API_OF[kind] then
    plan = self:_default_plan(kind)
    local id = self:_profile(kind, plan)
    local response = id and not self._closed and self._engine:call(id, image_url)
    if response then
      attempts = 1
      self._stats.attempts = self._stats.attempts + 1
      local res, err, again, u = self:_outcome(plan, response, 1, started, 0)
      if not again then return res, err end
      if u then unknown = unknown + 1 end
      self:_pause(self:_backoff(1))
    end
  end
  local call = self:_prepare(kind, image_url, opts, plan)
  self:_check_place()
  if not self._resty then self:_pump() end -- jobs submitted before go out along with this call
  -- Inside nginx: what the call counts as until its answer settles it (see
  -- _provisional).
  local counts = self._resty and { counted = false, unknown = 0 } or nil
  while true do
    -- Closed between attempts (by another light thread, or a finalizer
    -- during the back-off); inside nginx also no retry once the worker is
    -- exiting or the batch stopped.
    local why = self._closed and "the client was closed" or (attempts > 0 and self:_halted(stop))
    if why then
      if counts then self:_provisional(counts, nil) end
      local billed -- nil: an earlier attempt's billing is unknown
      if unknown == 0 then billed = false end
      local err = errors.cancelled((attempts > 0 and "not retried: " or "not sent: ") .. why, billed, attempts)
      self:_account(err.billed, unknown, "cancelled")
      return nil, err
    end
    attempts = attempts + 1
    local req = self:_request(call.url, call.params, call.method, call.timeout)
    self._stats.attempts = self._stats.attempts + 1
    local response
    if counts then
      local sent = false
      local function on_send()
        if sent then return end
        sent = true
        self:_provisional(counts, unknown + 1)
      end
      local ok, r = pcall(self._engine.perform, self._engine, req, on_send)
      if not ok then
        -- Closed meanwhile by another light thread (the engine and the
        -- credentials are gone): cancelled, billing unknown if the request
        -- went out. Otherwise the error is raised again, and the call stays
        -- counted as it was (cancelled, as if cut off there).
        if not self._closed then error(r, 0) end
        if sent then unknown = unknown + 1 end
        self:_provisional(counts, nil)
        local billed
        if unknown == 0 then billed = false end
        local err = errors.cancelled("the client was closed while the call was under way", billed, attempts)
        self:_account(err.billed, unknown, "cancelled")
        return nil, err
      end
      response = r
    else
      response = self._engine:perform(req)
    end
    local res, err, again, u = self:_outcome(call, response, attempts, started, unknown)
    if not again then
      if counts then self:_provisional(counts, nil) end -- replaced by the outcome accounted above
      return res, err
    end
    if u then unknown = unknown + 1 end
    -- Between attempts, a call that went out counts as cancelled, with the
    -- attempts of unknown billing so far.
    if counts and counts.counted then self:_provisional(counts, unknown) end
    self:_pause(self:_backoff(attempts), stop)
  end
end

--- A client.
-- @type Client

--- Reads an image with interface one (文字识别高精版), waiting for the answer;
-- inside nginx the call yields to nginx instead of blocking. Failures that
-- were not billed and may pass are tried again (`retries`, with back-off).
-- @string image_url the image's http(s) URL, which the service downloads
-- @tparam[opt] table opts the call's options:
-- @tparam[opt] string|number opts.show the API's display mode: absent, empty
--   or 0 gives `data` as one string, 1 as an array of `{words}` lines (a
--   whole number is sent without a `.0`)
-- @tparam[opt] table opts.params more parameters, `{ name = string|number|boolean }`
-- @tparam[opt] number opts.timeout seconds for one attempt (the client's `timeout`)
-- @tparam[opt] string opts.method `"POST"` or `"GET"` (the client's `method`)
-- @tparam[opt] int opts.retries further attempts (the client's `retries`)
-- @treturn[1] aliocr.Result the result
-- @return[2] nil
-- @treturn[2] aliocr.Error what went wrong, and whether it was billed
-- @raise on misuse, or when no URL is configured for the interface
-- @usage local res, err = client:recognize("https://example.com/a.png", { show = 1 })
function Client:recognize(image_url, opts)
  check_open(self)
  return self:_op(self._call, "recognize", image_url, opts)
end

--- Reads an image with interface two (手写体识别), which gives each line's
-- position too (`res.lines[i].position`). Otherwise as @{Client:recognize}.
-- @string image_url the image's http(s) URL
-- @tparam[opt] table opts the call's options, as for @{Client:recognize}
-- @treturn[1] aliocr.Result the result
-- @return[2] nil
-- @treturn[2] aliocr.Error what went wrong, and whether it was billed
-- @raise on misuse
function Client:handwriting(image_url, opts)
  check_open(self)
  return self:_op(self._call, "handwriting", image_url, opts)
end

--- Calls, attempts and outcomes so far (a copy); also after `close`.
--
-- Inside nginx (transport `"resty"`) a call is counted when its first
-- request goes out, not when it ends: nginx can cut a light thread off at
-- any time (the client hangs up under `lua_check_client_abort on`,
-- `ngx.exit`, `ngx.thread.kill`, an error in the handler) and no code of the
-- call runs after that, while the gateway may bill what it received. So
-- until its answer settles it, a call counts as a `cancelled` call (in
-- `errors.cancelled`) whose attempt under way has billing unknown (in
-- `unknown`); between retries, as a cancelled call with the unknown attempts
-- so far (`not_billed` if none). Its answer replaces these provisional counts
-- by its real outcome, at once (no other light thread sees the two mixed); a
-- call cut off keeps them, as @{Job:cancel} counts a job cancelled under way.
-- So a client shared by many requests always has the gateway's count within
-- `[billed, billed + unknown]`. A batch's images that were never sent (the
-- batch stopped: on_progress raised, the client was closed, nginx's worker
-- is exiting, the light thread that called batch was killed) count as
-- cancelled calls, not billed; those of a batch cut off with its every
-- thread (ngx.exit, an error in the handler) are not counted, and none of
-- them was sent. The curl transport counts a call when it ends (a job
-- cancelled or a batch stopped counts at once).
-- @treturn aliocr.Stats the counts
function Client:stats()
  if getmetatable(self) ~= Client then fail("call client methods with ':'") end
  local s = self._stats
  local copy = { requests = s.requests, attempts = s.attempts, billed = s.billed,
                 not_billed = s.not_billed, unknown = s.unknown, errors = {} }
  for k, v in pairs(s.errors) do copy.errors[k] = v end
  return copy
end

--- Cancels the jobs still pending, frees the client's connections and wipes
-- its credentials; safe to call twice. No callback runs after close (a job
-- whose answer was in keeps it in `job.result` or `job.error`). A closed
-- client raises on use (`stats` and `pending` still answer); a
-- client collected without `close` frees everything too. On Lua 5.4 a client
-- can be a to-be-closed variable (`local client <close> = aliocr.new{...}`).
function Client:close()
  if getmetatable(self) ~= Client then fail("call client methods with ':'") end
  if self._closed then return true end
  -- Jobs still pending are cancelled (and accounted as such); none starts.
  self._closed = true
  local ok, e = pcall(function()
    for _, job in ipairs(self:_jobs()) do job:_cancel() end
  end)
  -- From a finalizer in the middle of an operation, the engine and the
  -- credentials are closed at its end (see _op): it is still using them.
  if self._in_op then
    self._close_pending = true
  else
    self:_close_now()
  end
  if not ok then error(e, 0) end
  return true
end

function Client:_close_now()
  self._close_pending = nil
  self._engine:close()
  self._cred:close()
end

Client.__close = Client.close

-- Jobs: submit, poll, wait, batch ----------------------------------------------
--
-- A job is one call run without blocking: a submitted one (it has a
-- callback, counts in pending() and against the client's concurrency) or an
-- image of a batch (job._owner is the batch; the batch counts its own
-- concurrency, and only the batch's own loop starts its retries, so that a
-- batch left behind in a coroutine sends nothing more). Its states: queued,
-- starting (its request being made), running (an attempt under way),
-- retrying, done, cancelled.

local Job = {}
Job.__index = Job
Job.__name = "aliocr.Job"

-- Cancels a job that has not finished (documented as Job:cancel at the end).
function Job:cancel()
  if getmetatable(self) ~= Job then fail("call job methods with ':' (job:cancel())") end
  return self:_cancel()
end

function Job:_cancel()
  local client, state = self._client, self.state
  local in_flight = false
  if state == "queued" then
    -- A submitted job stays in the queue, skipped; a batch's was never in it.
    if not self._owner then client._nqueued = client._nqueued - 1 end
  elseif state == "running" then
    local r, sent = client._engine:cancel(self._id)
    if not r then return false end -- its answer is being handed over right now
    if r ~= true then
      -- Too late to cancel the attempt: its answer is in. The job takes it
      -- (done: its callback runs at the next poll; or it waits for a retry,
      -- which is what is cancelled then).
      client:_on_response(r)
      if self.state ~= "retrying" then return false end
      client._retrying[self] = nil
    else
      client._running[self._id] = nil
      if not self._owner then client._active = client._active - 1 end
      if sent then
        in_flight = true
      else
        -- Nothing of the request went out: no attempt after all.
        self.attempts = self.attempts - 1
        client._stats.attempts = client._stats.attempts - 1
      end
    end
  elseif state == "retrying" then
    client._retrying[self] = nil
  elseif state ~= "starting" then -- starting: its request is being made (see _start)
    return false
  end
  self.state = "cancelled"
  if not self._owner then client._pending = client._pending - 1 end
  -- In flight, the request may have reached the gateway: billing unknown.
  -- Queued, or between attempts: unknown only if an earlier attempt's was.
  local unknown = self._unknown + (in_flight and 1 or 0)
  local billed -- nil: unknown
  if unknown == 0 then billed = false end
  self.error = errors.cancelled(in_flight and "cancelled while under way: the request may have reached the gateway"
    or (self.attempts > 0 and "cancelled while waiting for a retry" or "cancelled before it was sent"),
    billed, self.attempts)
  client:_account(false, unknown, "cancelled")
  return true
end

function Job:__tostring()
  return "aliocr.Job (" .. self.kind .. ", " .. self.state .. ")"
end

-- Every job not finished yet (of submit and of batches).
function Client:_jobs()
  local list = {}
  for i = self._qhead, self._qtail do
    local j = self._queue[i]
    if j.state == "queued" then list[#list + 1] = j end
  end
  for _, j in pairs(self._running) do list[#list + 1] = j end
  for j in pairs(self._retrying) do list[#list + 1] = j end
  local j = self._starting
  if j and j.state == "starting" then list[#list + 1] = j end
  return list
end

function Client:_new_job(kind, image_url, opts, callback, owner)
  return setmetatable({
    _client = self, _call = self:_prepare(kind, image_url, opts), kind = kind, image_url = image_url,
    callback = callback, attempts = 0, state = "queued", _started = monotonic(), _unknown = 0,
    _owner = owner,
  }, Job)
end

-- Starts an attempt of a job (taken off the queue or the retry set).
function Client:_start(job)
  job.state = "starting"
  self._starting = job
  local call = job._call
  local req = self:_request(call.url, call.params, call.method, call.timeout)
  self._starting = nil
  if job.state ~= "starting" or self._closed then
    -- Cancelled meanwhile (from a finalizer), or the client closed.
    if job.state == "starting" then job:_cancel() end
    return
  end
  job._id = self._engine:add(req)
  job.attempts = job.attempts + 1
  self._stats.attempts = self._stats.attempts + 1
  job.state = "running"
  self._running[job._id] = job
  if not job._owner then self._active = self._active + 1 end
end

-- Starts what may start: retries whose time has come (submitted jobs' while
-- there is a slot; the retries of batch `owner`, if given), then queued
-- jobs, up to `concurrency` transfers at once. Never waits.
function Client:_pump(owner)
  if next(self._retrying) then
    local now = monotonic()
    local due = {}
    for job in pairs(self._retrying) do
      if job._retry_at <= now and (job._owner == nil or job._owner == owner) then due[#due + 1] = job end
    end
    table.sort(due, function(a, b) return a._retry_at < b._retry_at end)
    for _, job in ipairs(due) do
      if self._closed then return end
      if self._retrying[job] and (job._owner or self._active < self._concurrency) then
        self._retrying[job] = nil
        self:_start(job)
      end
    end
  end
  while self._active < self._concurrency and self._nqueued > 0 and not self._closed do
    local i = self._qhead
    local job = self._queue[i]
    self._queue[i], self._qhead = nil, i + 1
    if job.state == "queued" then
      self._nqueued = self._nqueued - 1
      self:_start(job)
    end
  end
end

-- The time of the soonest retry that _pump(owner) may start (math.huge if
-- none): a submitted job's only while there is a slot for it (a finished
-- transfer wakes the drive anyway), so that a due retry waiting for a slot
-- does not make the drive spin. With `any`, every retry _pump(owner) may
-- ever start, slot or not.
function Client:_next_retry(owner, any)
  local soonest = huge
  local slot = any or self._active < self._concurrency
  for job in pairs(self._retrying) do
    if (job._owner == nil and slot) or (job._owner ~= nil and job._owner == owner) then
      soonest = min(soonest, job._retry_at)
    end
  end
  return soonest
end

-- A finished transfer of a job: done, or waiting for a retry.
function Client:_on_response(response)
  local job = self._running[response.id]
  if not job then return end -- cancelled meanwhile, or handled already
  -- The outcome first (it accounts a final one), then the job's state: an
  -- error raised while the outcome is made (an interrupt, a finalizer's
  -- error) leaves the job as it was, and the response for the next drive.
  local res, err, again, unknown = self:_outcome(job._call, response, job.attempts, job._started, job._unknown)
  self._running[response.id] = nil
  if not job._owner then self._active = self._active - 1 end
  if again then
    if unknown then job._unknown = job._unknown + 1 end
    job.state = "retrying"
    job._retry_at = monotonic() + self:_backoff(job.attempts)
    self._retrying[job] = true
    -- Closed meanwhile (by a finalizer, which could not see the job while
    -- it was between lists): no retry will come.
    if self._closed then job:_cancel() end
    return
  end
  job.state, job.result, job.error = "done", res, err
  local owner = job._owner
  if owner then
    owner.results[job._index] = res or err
    owner.outstanding, owner.done = owner.outstanding - 1, owner.done + 1
  else
    self._pending = self._pending - 1
    self._ftail = self._ftail + 1
    self._finished[self._ftail] = job
  end
end

--- Jobs from `submit` not finished yet (queued, under way, or waiting for
-- a retry); a batch's images are not counted. 0 once the client is closed.
-- @treturn int how many
function Client:pending()
  if getmetatable(self) ~= Client then fail("call client methods with ':'") end
  if self._closed then return 0 end
  return self._pending
end

-- Handles the responses the engine handed over (and any left over).
function Client:_handle(responses)
  local q, t = self._unhandled, self._utail
  for i = 1, responses and #responses or 0 do
    t = t + 1
    q[t] = responses[i]
  end
  self._utail = t
  while self._uhead <= self._utail do
    local i = self._uhead
    self:_on_response(q[i])
    q[i], self._uhead = nil, i + 1
  end
end

-- Whether _drive(owner) has anything to wait for.
function Client:_has_work(owner)
  return next(self._running) ~= nil or self._nqueued > 0 or self._uhead <= self._utail
    or self:_next_retry(owner, true) < huge
end

-- Drives the jobs for up to `timeout` seconds, returning as soon as a call
-- ends; then (for poll and wait: no `owner`) runs the callbacks of the
-- finished submitted jobs, one at a time. An error a callback raises is
-- raised from here as it is; the callbacks not run yet run next time.
function Client:_drive(timeout, owner)
  local deadline = monotonic() + timeout
  local outcomes = self._outcomes
  -- A SIGINT caught by core.catch_interrupts (the command line tool) ends
  -- the drive: the caller is to stop, not to start more.
  while not self._closed and not interrupted() do
    if self._uhead <= self._utail then self:_handle(nil) end
    self:_pump(owner)
    if self._closed then break end
    local left = deadline - monotonic()
    if next(self._running) then
      -- Wake up in time for the next retry, if one is due sooner.
      local wait = min(left, self:_next_retry(owner) - monotonic())
      local responses, _, err = self._engine:run(max(wait, 0))
      self:_handle(responses)
      if err ~= nil then error(err, 0) end
    elseif left > 0 then
      local soonest = self:_next_retry(owner)
      if soonest < huge then core.sleep(max(0, min(left, soonest - monotonic()))) end
    end
    -- A call that ended returns at once, before anything else starts: its
    -- callback (or the batch) may want to stop the rest.
    if self._closed or self._outcomes ~= outcomes or self._fhead <= self._ftail then break end
    self:_pump(owner)
    if monotonic() >= deadline or not self:_has_work(owner) then break end
  end
  if owner then return end
  while self._fhead <= self._ftail and not self._closed do
    local i = self._fhead
    local job = self._finished[i]
    self._finished[i], self._fhead = nil, i + 1
    if job.callback then self:_user(job.callback, job.result, job.error, job) end
  end
end

-- Raises unless jobs can be driven here: they drive libcurl, which would
-- block nginx's worker.
function Client:_check_jobs_place(what)
  if self._resty then
    fail(what .. " drive libcurl; inside nginx use batch (light threads), or calls in ngx.thread.spawn")
  end
  self:_check_place()
end

--- Starts a call without waiting, for loops that must never block (a game's
-- frame loop, a tool's event loop). Nothing is sent until the next `poll`,
-- `wait` or blocking call; at most the client's `concurrency` transfers are
-- under way at once. Not inside nginx (use `batch` there).
-- @string kind `"recognize"` or `"handwriting"`
-- @string image_url the image's http(s) URL
-- @tparam[opt] table opts the call's options, as for @{Client:recognize}
-- @tparam[opt] function callback `callback(res, err, job)`, run once from
--   `poll` or `wait` (never from inside libcurl) when the call is over; an
--   error it raises is raised from that `poll` or `wait`, as it is
-- @treturn Job the job
-- @raise on misuse, like the calls
-- @usage client:submit("recognize", url, nil, function(res, err) print(res and res.text or err) end)
-- -- in the frame loop:
-- client:poll(0)
function Client:submit(kind, image_url, opts, callback)
  check_open(self)
  self:_check_jobs_place("submit, poll and wait")
  if callback ~= nil and type(callback) ~= "function" then fail("the callback must be a function") end
  local job = self:_new_job(kind, image_url, opts, callback, nil)
  self._pending = self._pending + 1
  if self._closed then
    -- Closed meanwhile (by a finalizer): the job is cancelled at once.
    job.state = "starting"
    job:_cancel()
    return job
  end
  -- Started by the next poll, wait or blocking call: adding a transfer does
  -- no I/O anyway, and a caller can still cancel all before anything is sent.
  self._qtail = self._qtail + 1
  self._queue[self._qtail] = job
  self._nqueued = self._nqueued + 1
  return job
end

--- Drives the jobs: at most `timeout` seconds, returning as soon as a job
-- finishes, and runs the callbacks of finished jobs. An error a callback
-- raises is raised from `poll` as it is (tables too); the callbacks of the
-- other finished jobs then run at the next `poll` or `wait`. A callback may
-- call anything, `close` included (then `poll` returns 0).
-- @number[opt=0] timeout seconds to wait at most; 0 makes one pass over the
--   sockets and never blocks
-- @treturn int the jobs still pending (as @{Client:pending})
function Client:poll(timeout)
  check_open(self)
  self:_check_jobs_place("submit, poll and wait")
  if timeout == nil then timeout = 0 end
  if type(timeout) ~= "number" or timeout < 0 or timeout ~= timeout then
    fail("poll takes a timeout in seconds >= 0")
  end
  self:_op(self._drive, timeout)
  return self:pending()
end

--- Blocks until no submitted job is pending, running their callbacks. An
-- error a callback raises is raised from `wait` as it is (the other jobs
-- stay pending: call `wait` again to go on).
function Client:wait()
  check_open(self)
  self:_check_jobs_place("submit, poll and wait")
  self:_op(self._wait)
end

function Client:_wait()
  while not self._closed and (self._pending > 0 or self._fhead <= self._ftail) do
    -- Nothing that could ever finish (an interrupt caught in the middle of
    -- the client's own code can leave a count behind): do not spin.
    if self._fhead > self._ftail and not self:_has_work(nil) then break end
    self:_drive(1)
  end
end

local BATCH_OPTIONS = { concurrency = true, on_progress = true }

local function summarize(results, total, started)
  local summary = { total = total, ok = 0, failed = 0, billed = 0, elapsed = monotonic() - started }
  for i = 1, total do
    local r = results[i]
    if errors.is_error(r) then summary.failed = summary.failed + 1 else summary.ok = summary.ok + 1 end
    if r.billed == true then summary.billed = summary.billed + 1 end
  end
  return summary
end

-- batch inside nginx: `limit` light threads, each taking the next image.
-- They take no more once the batch is to stop (see _halted: the client
-- closed, the worker exiting, on_progress raised, or the light thread that
-- called batch killed, whose threads go on without it): the first to see it
-- takes every image not started, as a cancelled call that was not sent.
function Client:_batch_threads(kind, urls, call_opts, limit, on_progress)
  local total, started = #urls, monotonic()
  local results, done, next_i = {}, 0, 1
  local function drop(why)
    if next_i > total then return end
    for i = next_i, total do results[i] = errors.cancelled("not sent: " .. why, false, 0) end
    self:_count_cancelled(total - next_i + 1)
    next_i = total + 1
  end
  local ok, err = resty.run_threads(math.min(limit, total), function(_, stopped)
    while next_i <= total do
      local why = self:_halted(stopped)
      if why then return drop(why) end
      local i = next_i
      next_i = i + 1
      local res, e = self:_call(kind, urls[i], call_opts, stopped)
      results[i] = res or e
      done = done + 1
      if on_progress and not stopped() then on_progress(done, total) end
    end
  end)
  -- The calls under way when on_progress raised were finished (with no
  -- more progress reported); the images never started are cancelled calls,
  -- not billed.
  drop(ok and "the batch stopped" or "the batch stopped: on_progress raised an error")
  if not ok then error(err, 0) end
  return results, summarize(results, total, started)
end

-- batch with libcurl: the images as jobs of this batch (see Jobs above).
function Client:_batch_jobs(kind, urls, call_opts, limit, on_progress)
  local total, started = #urls, monotonic()
  local batch = { results = {}, outstanding = 0, done = 0 }
  local jobs, next_i, reported = {}, 1, 0
  local ok, e = pcall(function()
    while reported < total and not self._closed do
      while batch.outstanding < limit and next_i <= total and not self._closed do
        local job = self:_new_job(kind, urls[next_i], call_opts, nil, batch)
        job._index, jobs[next_i] = next_i, job
        next_i, batch.outstanding = next_i + 1, batch.outstanding + 1
        self:_start(job)
      end
      if reported == batch.done and not self._closed then self:_drive(1, batch) end
      -- Progress for every image that ended, also those that ended while
      -- on_progress ran (it may poll, wait or run another batch).
      while reported < batch.done and not self._closed do
        reported = reported + 1
        if on_progress then self:_user(on_progress, reported, total) end
      end
    end
  end)
  if not ok or self._closed then
    -- Cancelled: the images under way (billing unknown) and waiting for a
    -- retry; those never started are cancelled calls, not billed.
    for i = 1, next_i - 1 do
      local job = jobs[i]
      if job.state ~= "done" and job.state ~= "cancelled" then job:_cancel() end
    end
    self:_count_cancelled(total - next_i + 1)
    if not ok then error(e, 0) end
    -- Closed from on_progress: every image still gets its slot.
    for i = 1, total do
      if batch.results[i] == nil then
        batch.results[i] = jobs[i] and jobs[i].error or
          errors.cancelled("not sent: the client was closed during the batch", false, 0)
      end
    end
  end
  return batch.results, summarize(batch.results, total, started)
end

--- Reads every image of a list, `concurrency` at a time, and waits for all.
-- Each image is retried on its own under the client's policy, with its own
-- timeout per attempt (counted from when it starts), and a failure of one
-- never disturbs the others. If `on_progress` raises, the images not
-- finished are cancelled (those never sent count as cancelled calls, not
-- billed) and the error is raised again. `on_progress` may use the client
-- (poll, wait, a blocking call, another batch, close: then the images not
-- finished are cancelled and their slots hold errors of kind `cancelled`).
-- Inside nginx the images run as light threads; they start no image, retry
-- or back-off once nginx's worker is exiting (QUIT, HUP) or the light
-- thread that called batch was killed, and those never sent are cancelled
-- calls, not billed (see @{Client:stats}).
-- @string kind `"recognize"` or `"handwriting"`
-- @tparam {string,...} urls the images' http(s) URLs
-- @tparam[opt] table opts the batch's options, and any call option (`show`,
--   `params`, `timeout`, `method`, `retries`) for every image:
-- @tparam[opt] int opts.concurrency images at once (the client's `concurrency`;
--   may be higher; the client's setting is not changed)
-- @tparam[opt] function opts.on_progress `on_progress(done, total)`, called
--   after each image
-- @treturn {aliocr.Result|aliocr.Error,...} one per URL, in the order of `urls`
-- @treturn aliocr.Summary the counts
-- @raise on misuse (a URL that is not a string or not http(s), a bad
--   option), before anything is sent
function Client:batch(kind, urls, opts)
  check_open(self)
  if type(urls) ~= "table" then fail("batch takes a list of image URLs") end
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then fail("the options of a batch must be a table") end
  local call_opts = {}
  for k, v in pairs(opts) do
    if not BATCH_OPTIONS[k] then call_opts[k] = v end
  end
  local limit = whole(opts.concurrency or self._concurrency, "concurrency", 1, 1e4)
  local on_progress = opts.on_progress
  if on_progress ~= nil and type(on_progress) ~= "function" then fail("on_progress must be a function") end
  local total = #urls
  -- Misuse raises before anything is sent, whatever the list holds.
  local plan = self:_plan(kind, call_opts)
  for i = 1, total do self:_prepare(kind, urls[i], call_opts, plan) end

  self:_check_place()
  if self._resty then return self:_batch_threads(kind, urls, call_opts, limit, on_progress) end
  return self:_op(self._batch_jobs, kind, urls, call_opts, limit, on_progress)
end

-- The documentation of jobs, whose methods are above among the client's.

--- A job: one call started by @{Client:submit}.
-- @type Job

--- `"recognize"` or `"handwriting"`.
-- @field kind

--- The image's URL.
-- @field image_url

--- `"queued"`, `"running"`, `"retrying"`, `"done"` or `"cancelled"`.
-- @field state

--- The @{aliocr.Result} once done (nil on failure).
-- @field result

--- The @{aliocr.Error} once done (nil on success).
-- @field error

--- HTTP requests sent for it so far.
-- @field attempts

--- The function given to `submit`, or nil.
-- @field callback

--- Cancels a job that has not finished: it will not be sent (or not again),
-- its callback will not run, and it counts as a call in `stats()` with
-- `errors.cancelled`: billing `unknown` if it was under way (the request may
-- have reached the gateway), `not_billed` if it was queued or waiting for a
-- retry.
-- @function Job:cancel
-- @treturn boolean true if it was cancelled, false if it had finished

return Client
