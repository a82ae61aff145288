--- A call and its retries: the plan of a call (its checked options), one
-- blocking call with its attempts and back-off, what an attempt's response
-- means (aliocr.errors, aliocr.result), and the accounting of every call in
-- stats(). Methods of the client (lua/aliocr/client.lua).
-- @module aliocr.client.call
-- @local
local core = require("aliocr.core")
local errors = require("aliocr.errors")
local image_check = require("aliocr.image")
local options = require("aliocr.options")
local result = require("aliocr.result")
local url_check = require("aliocr.url")

options.own()
local fail, whole, positive, ms = options.fail, options.whole, options.positive, options.ms
local API_OF, CALL_OPTIONS, MAX_IMAGE_URL = options.API_OF, options.CALL_OPTIONS, options.MAX_IMAGE_URL
local random, monotonic, min = math.random, core.monotonic, math.min

return function(Client)

-- The delay before retry number n: exponential back-off with full jitter,
-- and no less than the Retry-After of the error `err` (if given) says.
function Client:_backoff(n, err)
  local cap = math.min(self._retry_max_delay, self._retry_delay * 2 ^ (n - 1))
  return math.max(random() * cap, err and err.retry_after or 0)
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

-- Checks a call's image (raises on misuse, before anything is sent) and
-- returns it as it is sent: an image URL as a string; a local image (see
-- aliocr.image) as its table, read when the call starts.
function Client:_image(image_url)
  if type(image_url) == "table" then
    if image_check.is_local(image_url) then
      if not self._store and not self._uploader then
        fail("a local image needs storage: set oss (or ALIOCR_OSS_BUCKET and the rest) or uploader in aliocr.new")
      end
      return image_url
    end
    image_url = image_url.url
  end
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
-- The rate limiter learns from it: `sent_at` is when the attempt went out.
function Client:_outcome(call, response, attempts, started, prior, sent_at)
  local err = errors.classify(response)
  if self._limiter then
    local throttled = err ~= nil and err.kind == "throttled"
    if throttled or not err or err.billed ~= nil then
      -- (A transport failure says nothing of the gateway's limit.)
      self._limiter:answer(monotonic(), throttled, sent_at, err and err.retry_after)
    end
  end
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

-- Storage: local images -------------------------------------------------------

-- Runs the client's uploader (user code) on a loaded image: returns the
-- image's URL and its clean-up (or nil), or nil and an error.
function Client:_run_uploader(img)
  local bytes, err = image_check.bytes(img)
  if not bytes then return nil, err end
  local ok, url, cleanup = self:_pcall_user(self._uploader, bytes, img.name, img.type)
  if not ok then return nil, errors.uploader("the uploader raised: " .. tostring(url), "upload") end
  if url == nil then return nil, errors.uploader(cleanup or "the uploader returned nil", "upload") end
  if cleanup ~= nil and type(cleanup) ~= "function" then
    return nil, errors.uploader("the uploader's clean-up must be a function, got " .. type(cleanup), "upload")
  end
  -- The URL goes through the checks of a caller's image URL; one that fails
  -- them is the uploader's failure (its clean-up still runs).
  local sent, why
  if type(url) ~= "string" or not url:match("^[Hh][Tt][Tt][Pp][Ss]?://[^/?#]") then
    why = "returned " .. type(url) .. ", not an http(s) URL"
  else
    sent, why = url_check.image(url)
    if not sent then
      why = "returned an image URL that " .. why
    elseif #sent > MAX_IMAGE_URL then
      sent, why = nil, "returned an image URL over " .. MAX_IMAGE_URL .. " bytes"
    end
  end
  if not sent then
    if cleanup then self:_unstore({ retries = 0 }, { cleanup = cleanup }) end
    return nil, errors.uploader("the uploader " .. why, "upload")
  end
  return sent, cleanup
end

-- Sends a storage request with the call's timeout and retries (an upload
-- or a delete is idempotent, and the service is not called): nil when it
-- succeeded, else the error; and whether an attempt may have reached OSS
-- without an answer (an upload's may then be stored: see Client:_insure).
function Client:_storage_request(call, req, action, stop)
  local attempts, maybe_stored = 0, nil
  while true do
    -- A delete still goes out while a close is put off (from a finalizer:
    -- the engine is open until the operation ends).
    if self._engine_closed or (self._closed and action ~= "delete") then
      return errors.cancelled("not sent: the client was closed", false, attempts)
    end
    attempts = attempts + 1
    local ok, r = pcall(self._engine.perform, self._engine, req, call.timeout_ms)
    if not ok then
      if self._engine_closed then
        return errors.cancelled("the client was closed during the " .. action, false, attempts)
      end
      -- The file could not be opened (gone since it was checked, say).
      if action == "upload" and tostring(r):find("cannot open the file to send", 1, true) then
        return image_check.unsendable(r)
      end
      error(r, 0)
    end
    local err = errors.classify_storage(r, action)
    if not err then return nil, maybe_stored end
    maybe_stored = maybe_stored or err._maybe_stored
    if not (err.retryable and attempts <= call.retries) then
      err.attempts = attempts
      return err, maybe_stored
    end
    self:_pause(self:_backoff(attempts), stop)
  end
end

-- Stores a local image for a call: returns `{ url = the URL the service
-- downloads, key = OSS's object name | cleanup = the uploader's }`, or nil
-- and an error (kind "image" or "storage").
function Client:_store_image(call, v, stop)
  local img, err = image_check.load(v, self._max_image_bytes)
  if not img then return nil, err end
  if self._uploader then
    local url, cleanup = self:_run_uploader(img)
    if not url then return nil, cleanup end
    self._stats.uploads = self._stats.uploads + 1
    return { url = url, cleanup = cleanup }
  end
  local store = self._store
  local key = store:name(img)
  local maybe_stored
  -- Until its delete, close can find the object (in _live).
  self._live[key] = true
  err, maybe_stored = self:_storage_request(call, store:put(img, key), "upload", stop)
  -- An attempt that timed out may still be stored (see Client:_insure).
  if maybe_stored then self:_insure(key, call) end
  if err then
    self._live[key] = nil
    return nil, err
  end
  self._stats.uploads = self._stats.uploads + 1
  return { url = store:url(key), key = key }
end

-- Removes what _store_image stored (unless oss.keep): nil, or the error
-- of the delete (or of the uploader's clean-up).
function Client:_unstore(call, stored, stop)
  local err
  if stored.cleanup then
    local ok, e = self:_pcall_user(stored.cleanup)
    if not ok then err = errors.uploader("the uploader's clean-up raised: " .. tostring(e), "delete") end
  elseif stored.key and not self._store.keep then
    err = self:_storage_request(call, self._store:delete(stored.key), "delete", stop)
    if not err then self._live[stored.key] = nil end
  else
    if stored.key then self._live[stored.key] = nil end
    return nil
  end
  if not err then self._stats.deletes = self._stats.deletes + 1 end
  return err
end

-- A blocking call with a local image: stored, called, removed. An image
-- that cannot be read or stored ends the call (counted as one that failed,
-- not billed) before the service is called.
function Client:_call_local(call, v, started, stop)
  -- A call the budget would refuse stores nothing.
  if self._budget and not self._budget:available() then return nil, self:_budget_refusal(0, 0, started) end
  local stored, err = self:_store_image(call, v, stop)
  if not stored then
    err.elapsed = monotonic() - started
    self:_account(false, 0, err.kind)
    return nil, err
  end
  -- The image is removed whatever happens, also when the call raises (an
  -- interrupt, a finalizer's error).
  local ok, res
  ok, res, err = pcall(self._attempts, self, call, stored.url, started, stop, stored)
  if not ok then
    pcall(self._unstore, self, call, stored, stop)
    error(res, 0)
  end
  local out = res or err
  if stored.key and self._store.keep then out.object = stored.key end
  out.cleanup_error = self:_unstore(call, stored, stop)
  return res, err
end

-- The error of a call the budget refused (see aliocr.budget), accounted:
-- `unknown` is the number of its earlier attempts whose billing is unknown.
function Client:_budget_refusal(unknown, attempts, started)
  local billed -- nil: an earlier attempt's billing is unknown
  if unknown == 0 then billed = false end
  local err = errors.budget(self._budget, billed, attempts)
  err.elapsed = monotonic() - started
  self:_account(err.billed, unknown, "budget")
  return err
end

-- One blocking call (with its retries); inside nginx it yields instead.
function Client:_call(kind, image_url, opts, stop)
  local started = monotonic()
  local call = opts == nil and self:_default_plan(kind) or self:_plan(kind, opts)
  local image = self:_image(image_url)
  self:_check_place()
  -- Jobs submitted before go out along with this call.
  if self._via.supports_jobs and (self._nqueued > 0 or next(self._retrying)) then self:_pump() end
  -- Orphans that are due go out too (a client that only makes blocking calls has no drive).
  if self._orphans[1] and self._via.supports_jobs and self:_next_orphan() <= started then self:_reap() end
  if type(image) == "table" then return self:_call_local(call, image, started, stop) end
  return self:_attempts(call, image, started, stop)
end

-- Waits for the rate limiter's token (see aliocr.limiter); returns why the
-- call is to stop instead (see _halted), or nil once it has the token.
function Client:_wait_token(stop)
  local first
  while true do
    local now = monotonic()
    local wait = self._limiter:take(now)
    if wait <= 0 then
      if first then self._limiter:delayed(now - first) end
      return nil
    end
    first = first or now
    self:_pause(wait, stop)
    local why = self:_halted(stop)
    if why then return why end
  end
end

-- The attempts of a blocking call to the service, for the image URL `image`
-- (of the local image `stored` in OSS, if given: see _store_image).
function Client:_attempts(call, image, started, stop, stored)
  local attempts, unknown = 0, 0
  -- Inside nginx: what the call counts as until its answer settles it (see
  -- _provisional).
  local counts = self._via.light_threads and { counted = false, unknown = 0 } or nil
  -- The call ends before its next attempt, for the reason `why`.
  local function cancelled(why)
    if counts then self:_provisional(counts, nil) end
    local billed -- nil: an earlier attempt's billing is unknown
    if unknown == 0 then billed = false end
    local err = errors.cancelled((attempts > 0 and "not retried: " or "not sent: ") .. why, billed, attempts)
    self:_account(err.billed, unknown, "cancelled")
    return nil, err
  end
  while true do
    -- Closed between attempts (by another light thread, or a finalizer
    -- during the back-off); inside nginx also no retry once the worker is
    -- exiting or the batch stopped.
    local why = self._closed and "the client was closed" or (attempts > 0 and self:_halted(stop))
    if why then return cancelled(why) end
    -- An attempt the budget would refuse waits for no token (nor takes one).
    if self._limiter and self._budget and not self._budget:available() then
      if counts then self:_provisional(counts, nil) end
      return nil, self:_budget_refusal(unknown, attempts, started)
    end
    -- The rate limit: a token for this attempt, waited for; meanwhile the
    -- client may close, or the host or the batch stop the call.
    why = self._limiter and self:_wait_token(stop)
    if why then return cancelled(why) end
    -- The budget: a unit for this attempt, or the call ends unsent.
    local reservation
    if self._budget then
      reservation = self._budget:reserve()
      if not reservation then
        if counts then self:_provisional(counts, nil) end
        return nil, self:_budget_refusal(unknown, attempts, started)
      end
    end
    -- A stored image's presigned URL is made for each attempt: the one made
    -- after its upload may have expired during a wait for a token, a
    -- Retry-After or a back-off.
    if stored and stored.key then image = self._store:url(stored.key) end
    local sent_at = monotonic()
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
        if reservation then
          local billed -- sent: unknown
          if not sent then billed = false end
          self._budget:settle(reservation, billed)
        end
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
    elseif reservation then
      local ok, r = pcall(self._engine.perform, self._engine, call.api, image, call.extra, call.method,
        call.timeout_ms)
      if not ok then
        -- Nothing of it can have gone out unless the engine says so: a
        -- raise here (an interrupt, misuse) counts as unknown to be safe.
        self._budget:settle(reservation, nil)
        error(r, 0)
      end
      response = r
    else
      response = self._engine:perform(call.api, image, call.extra, call.method, call.timeout_ms)
    end
    if reservation then self._budget:settle(reservation, errors.billing(response)) end
    local res, err, again, u = self:_outcome(call, response, attempts, started, unknown, sent_at)
    if not again then
      if counts then self:_provisional(counts, nil) end -- replaced by the outcome accounted above
      return res, err
    end
    if u then unknown = unknown + 1 end
    -- Between attempts, a call that went out counts as cancelled, with the
    -- attempts of unknown billing so far.
    if counts and counts.counted then self:_provisional(counts, unknown) end
    self:_pause(self:_backoff(attempts, err), stop)
  end
end


end
