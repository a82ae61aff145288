--- A call and its retries: the plan of a call (its checked options), one
-- blocking call with its attempts and back-off, what an attempt's response
-- means (aliocr.errors, aliocr.result), and the accounting of every call in
-- stats(). Methods of the client (lua/aliocr/client.lua).
-- @module aliocr.client.call
-- @local
local core = require("aliocr.core")
local errors = require("aliocr.errors")
local options = require("aliocr.options")
local result = require("aliocr.result")
local url_check = require("aliocr.url")

options.own()
local fail, whole, positive, ms = options.fail, options.whole, options.positive, options.ms
local API_OF, CALL_OPTIONS, MAX_IMAGE_URL = options.API_OF, options.CALL_OPTIONS, options.MAX_IMAGE_URL
local random, monotonic, min = math.random, core.monotonic, math.min

return function(Client)

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
    api = api, method = method,
    retries = whole(opts.retries or self._retries, "retries", 0, 1e3),
    timeout_ms = ms(positive(opts.timeout, "timeout") or self._timeout),
    extra = options.call_params(opts),
  }
end

-- Checks a call's image URL (raises on misuse, before anything is sent) and
-- returns it as it is sent.
function Client:_image(image_url)
  if type(image_url) ~= "string" then
    fail("the image URL must be a string, got " .. type(image_url))
  end
  -- Sent as a WHATWG URL parser writes it (a space as %20, ...): the last
  -- one checked is kept, so that a loop over one URL checks it once.
  local sent = image_url
  if image_url ~= self._checked_url then
    options.http_url(image_url, "the image URL")
    local why
    sent, why = url_check.image(image_url)
    if not sent then fail("the image URL " .. why) end
    if #sent > MAX_IMAGE_URL then
      fail("the image URL is too long (" .. #sent .. " bytes; at most " .. MAX_IMAGE_URL .. ")")
    end
    if sent == image_url then self._checked_url = image_url end
  end
  return sent
end

-- What an attempt's response means: the result; or the error and whether
-- to try again (after a back-off). A final outcome is accounted here.
-- `prior` is the number of the call's earlier attempts whose billing is
-- unknown; `again` comes with whether this attempt's billing is unknown.
function Client:_outcome(call, response, attempts, started, prior)
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
  local refused = self._via.check_place()
  if refused then fail(refused) end
end

-- Why a call or a batch is to start nothing more: the client was closed,
-- the host is exiting (nginx's worker got a QUIT or a HUP: nothing new
-- should go out, and the worker waits for what runs), or the batch of light
-- threads was stopped (`stop()`, see resty.run_threads, says why); nil if
-- not.
function Client:_halted(stop)
  if self._closed then return "the client was closed" end
  local exiting = self._via.exiting()
  if exiting then return exiting end
  local why = stop and stop()
  if why then return "the batch stopped: " .. why end
  return nil
end

-- Waits between attempts; inside nginx without blocking its worker, and
-- no longer than until the call is to stop (see _halted).
function Client:_pause(seconds, stop)
  local via = self._via
  if not via.light_threads then return via.sleep(seconds) end
  local deadline = monotonic() + seconds
  while not self:_halted(stop) do
    local left = deadline - monotonic()
    if left < 0.001 then return end -- nginx sleeps whole milliseconds
    via.sleep(min(left, 0.1))
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

-- One blocking call (with its retries); inside nginx it yields instead.
function Client:_call(kind, image_url, opts, stop)
  local started, attempts, unknown = monotonic(), 0, 0
  local call = opts == nil and self:_default_plan(kind) or self:_plan(kind, opts)
  local image = self:_image(image_url)
  self:_check_place()
  -- Jobs submitted before go out along with this call.
  if self._via.supports_jobs and (self._nqueued > 0 or next(self._retrying)) then self:_pump() end
  -- Inside nginx: what the call counts as until its answer settles it (see
  -- _provisional).
  local counts = self._via.light_threads and { counted = false, unknown = 0 } or nil
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
    self._stats.attempts = self._stats.attempts + 1
    local response
    if counts then
      local sent = false
      local function on_send()
        if sent then return end
        sent = true
        self:_provisional(counts, unknown + 1)
      end
      local ok, r = pcall(self._engine.perform, self._engine, call.api, image, call.extra, call.method,
        call.timeout_ms, on_send)
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
      response = self._engine:perform(call.api, image, call.extra, call.method, call.timeout_ms)
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


end
