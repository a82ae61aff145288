--- Jobs: calls run without blocking (submit, poll, wait, Job:cancel), on
-- the engine's transfers; a batch's images are jobs too (see
-- lua/aliocr/client/batch.lua). Methods of the client
-- (lua/aliocr/client.lua) and the Job class.
-- @module aliocr.client.jobs
-- @local
local core = require("aliocr.core")
local errors = require("aliocr.errors")
local image_check = require("aliocr.image")
local options = require("aliocr.options")

options.own()
-- LuaJIT: the functions of this file run inside a host's frame (poll(0)),
-- where compiling a trace of them cost LÖVE up to 4.6 ms of one poll(0),
-- against at most 0.7 ms interpreted; they are glue around the C engine,
-- and run interpreted (docs/hosts.md).
if jit then jit.off(true, true) end -- luacheck: ignore 113
local fail = options.fail
local monotonic, interrupted, huge, min, max = core.monotonic, core.interrupted, math.huge, math.min, math.max

return function(Client)

-- Jobs: submit, poll, wait, batch ----------------------------------------------
--
-- A job is one call run without blocking: a submitted one (it has a
-- callback, counts in pending() and against the client's concurrency) or an
-- image of a batch (job._owner is the batch; the batch counts its own
-- concurrency, and only the batch's own loop starts its retries, so that a
-- batch left behind in a coroutine sends nothing more). Its states: queued,
-- starting (its request being made), running (an attempt under way),
-- retrying, done, cancelled.
--
-- A job with a local image (job._local) goes through phases (job._phase):
-- "load" (the image read and checked, and given to the uploader if the
-- client has one), "upload" (the PUT to OSS), "call" (the service's
-- attempts, as any job's), "delete" (the object removed, or the uploader's
-- clean-up run). Between phases a job waits in the retry set, due at once,
-- so that the next phase starts as a retry would (when there is a slot); a
-- storage request that may pass again waits there with a back-off. The call
-- is accounted when its outcome is known; the job is done once its image is
-- removed. An object that a cancelled job may have stored is removed by a
-- delete of its own (an orphan, started by the next drive).

local Job = {}
Job.__index = Job
Job.__name = "aliocr.Job"

-- Cancels a job that has not finished (documented as Job:cancel at the end).
function Job:cancel()
  if getmetatable(self) ~= Job then fail("call job methods with ':' (job:cancel())") end
  local r = self:_cancel()
  -- A slot freed, or an answer taken in: poll may have work now.
  local client = self._client
  if client._fd and not client._closed then client:_arm() end
  return r
end

function Job:_cancel()
  local client, state = self._client, self.state
  local in_flight = false
  local storage = self._phase ~= nil and self._phase ~= "call"
  -- Removing its image: the call's outcome is in.
  if self._phase == "delete" then return false end
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
      -- (Waiting to remove its image: the call's outcome is in.)
      if self.state ~= "retrying" or self._phase == "delete" then return false end
      client._retrying[self] = nil
    else
      client._running[self._id] = nil
      if not self._owner then client._active = client._active - 1 end
      if self._reservation then
        local billed -- sent: unknown, the unit stays spent
        if not sent then billed = false end
        client._budget:settle(self._reservation, billed)
        self._reservation = nil
      end
      if storage then
        -- An upload that may have reached OSS: its object is removed later.
        if sent then self._maybe_stored = true end
      elseif sent then
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
  -- What it stored, or may have stored, goes.
  if self._stored then
    client:_orphan(self._stored.key, self._stored.cleanup)
  elseif self._maybe_stored then
    client:_insure(self._key, self._plan)
  end
  return true
end

-- Removes an object a cancelled job stored (or runs its uploader's
-- clean-up): put off to the next drive, since a cancel may come from a
-- finalizer. Once the client's engine is closed, a clean-up runs at once
-- and an object can no longer be deleted.
function Client:_orphan(key, cleanup, delay, insurance)
  if key == nil and cleanup == nil then return end
  local o = { key = key, cleanup = cleanup, at = monotonic() + (delay or 0), insurance = insurance }
  if self._engine_closed then
    if cleanup then self:_unstore({ retries = 0 }, o) end
    return
  end
  self._orphans[#self._orphans + 1] = o
  -- Where there is no drive (inside nginx: no jobs), a timer of the
  -- transport's removes it when it is due.
  if self._via.later then self._via.later(delay or 0, function() self:_reap_here() end) end
end

-- Takes the next orphan that is due off the list (the rest stay in it, for
-- close to find, while a clean-up runs user code), or nil.
function Client:_next_due(now)
  local list = self._orphans
  for i = 1, #list do
    if list[i].at <= now then return table.remove(list, i) end
  end
  return nil
end

-- Removes the orphans that are due, one after the other, in this light
-- thread (the nginx transport's timer: see _orphan).
function Client:_reap_here()
  local now = monotonic()
  while not self._closed and self._store do
    local o = self:_next_due(now)
    if not o then return end
    local err = self:_storage_request({ retries = 0, timeout_ms = math.ceil(self._timeout * 1000) },
      self._store:delete(o.key), "delete")
    if not err and not o.insurance then self._stats.deletes = self._stats.deletes + 1 end
  end
end

-- An upload attempt that timed out or was cut off after it went out may
-- still be stored by OSS, once it has the whole body, even after the
-- client gave up on it (and after a later attempt and the call's own
-- delete). So object `key` is deleted once more, twice the PUT's timeout
-- later: an insurance delete, not counted in stats (its object, if it
-- exists, was never counted as an upload, or was counted as deleted).
function Client:_insure(key, plan)
  self:_orphan(key, nil, 2 * plan.timeout_ms / 1000, true)
end

-- When the soonest orphan is due (math.huge if none).
function Client:_next_orphan()
  local soonest = huge
  for _, o in ipairs(self._orphans) do soonest = min(soonest, o.at) end
  return soonest
end

-- Starts the removals _orphan put off that are due: OSS deletes as
-- transfers of their own (see _on_response), clean-ups run at once.
function Client:_reap()
  local now = monotonic()
  while not self._closed do
    local o = self:_next_due(now)
    if not o then return end
    if o.cleanup then
      self:_unstore({ retries = 0 }, o)
    elseif not self._store.keep then
      local ok, id = pcall(self._engine.add, self._engine, self._store:delete(o.key), math.ceil(self._timeout * 1000))
      if ok then self._cleanups[id] = o end
    end
  end
end

-- Counts a delete's answer: a removal that succeeded, unless it was an
-- insurance delete (see _insure).
function Client:_count_delete(o, response)
  if not o.insurance and not errors.classify_storage(response, "delete") then
    self._stats.deletes = self._stats.deletes + 1
  end
end

-- At close (the engine still open): removes every local image still stored
-- or possibly stored: the orphans (once the insurance deletes are due,
-- twice the timeout at most), the images of the jobs removing theirs (close
-- does not cancel those), and the blocking calls' under way; waits for the
-- deletes under way rather than sending them again; runs the uploader's
-- clean-ups. Waits up to the client's timeout for OSS's answers.
function Client:_remove_orphans()
  -- Jobs whose call had ended: their delete under way is waited for, or
  -- made now.
  local waiting, n = {}, 0
  for id, o in pairs(self._cleanups) do waiting[id], n = o, n + 1 end
  for _, job in ipairs(self:_jobs()) do
    if job._phase == "delete" and job._stored then
      if job.state == "running" and job._id then
        waiting[job._id], n = { key = job._stored.key }, n + 1
      else
        self._orphans[#self._orphans + 1] = { key = job._stored.key, cleanup = job._stored.cleanup, at = 0 }
      end
    end
  end
  for key in pairs(self._live) do self._orphans[#self._orphans + 1] = { key = key, at = 0 } end
  self._live, self._cleanups = {}, {}
  local list = {}
  while self._orphans[1] do
    local o = table.remove(self._orphans, 1)
    if o.cleanup then self:_unstore({ retries = 0 }, o) elseif o.key then list[#list + 1] = o end
  end
  if (not list[1] and n == 0) or not self._store or self._store.keep then return end
  local latest = 0
  for _, o in ipairs(list) do latest = math.max(latest, o.at or 0) end
  local wait = math.min(latest - monotonic(), 2 * self._timeout)
  if wait > 0 then self._via.sleep(wait) end
  local ms = math.ceil(self._timeout * 1000)
  if not self._via.supports_jobs then
    -- Inside nginx: one after the other, in this light thread.
    for _, o in ipairs(list) do
      local ok, r = pcall(self._engine.perform, self._engine, self._store:delete(o.key), ms)
      if ok then self:_count_delete(o, r) end
    end
    return
  end
  for _, o in ipairs(list) do
    local ok, id = pcall(self._engine.add, self._engine, self._store:delete(o.key), ms)
    if ok then waiting[id], n = o, n + 1 end
  end
  local deadline = monotonic() + self._timeout
  while n > 0 and monotonic() < deadline do
    local responses = self._engine:run(math.max(0, deadline - monotonic()))
    for _, r in ipairs(responses) do
      -- (Another transfer's answer, a job's that close cancelled: nothing waits for it.)
      local o = waiting[r.id]
      if o then
        waiting[r.id], n = nil, n - 1
        self:_count_delete(o, r)
      end
    end
  end
end

function Job:__tostring()
  return "aliocr.Job (" .. self.call .. ", " .. self.state .. ")"
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
  local plan, image = self:_plan(kind, opts), self:_image(image_url)
  local is_local = type(image) == "table"
  return setmetatable({
    -- `call` names the method the job calls; `kind` is its old name, kept.
    _client = self, _plan = plan, call = kind, kind = kind, image_url = image_url,
    _image = not is_local and image or nil, _local = is_local and image or nil, _phase = is_local and "load" or nil,
    _sattempts = 0,
    callback = callback, attempts = 0, state = "queued", _started = monotonic(), _unknown = 0,
    _owner = owner,
    -- When its attempt went out, and since when it waits for the rate
    -- limiter's token (false: it does not): made here, so that setting them
    -- in _start allocates nothing (and runs no finalizer) there.
    _sent_at = 0, _ready = false,
  }, Job)
end

-- Ends a job with its outcome (accounted already): its callback runs at the
-- next poll, or its batch takes it.
function Client:_done(job, res, err)
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

-- Puts a job in the retry set, due after `delay` seconds.
function Client:_later(job, delay)
  job.state = "retrying"
  job._retry_at = monotonic() + delay
  self._retrying[job] = true
  -- Closed meanwhile (by a finalizer, which could not see the job while
  -- it was between lists): no retry will come.
  if self._closed then job:_cancel() end
end

-- Ends a job with a local image before the service was called: the image
-- could not be read or stored (`err`, not billed), counted as a failed call.
function Client:_failed_local(job, err)
  err.elapsed = monotonic() - job._started
  self:_account(false, 0, err.kind)
  self:_done(job, nil, err)
end

-- Starts the storage phase of a job with a local image (see Jobs above):
-- true when it was started or the job ended; false when the job goes on to
-- its call at once (an uploader stored the image). Any allocation may run a
-- finalizer that cancels the job or closes the client: the job's state is
-- looked at again after each (see gone), and what was made for it undone.
function Client:_start_storage(job)
  local function gone() return job.state ~= "starting" or self._closed end
  if job._phase == "load" and self._budget and not self._budget:available() then
    -- A call the budget would refuse stores nothing.
    self:_failed_local(job, errors.budget(self._budget, false, 0))
    return true
  end
  if job._phase == "load" then
    local img, err = image_check.load(job._local, self._max_image_bytes)
    if gone() then return true end -- (cancel accounted it)
    if not img then
      self:_failed_local(job, err)
      return true
    end
    job._img = img
    if self._uploader then
      local url, cleanup = self:_run_uploader(img)
      if url then self._stats.uploads = self._stats.uploads + 1 end
      if gone() then
        -- Cancelled, or the client closed, by the uploader or a finalizer:
        -- what it stored goes at once.
        if url and cleanup then self:_unstore(job._plan, { cleanup = cleanup }) end
        return true
      end
      if not url then
        self:_failed_local(job, cleanup)
        return true
      end
      job._stored = { url = url, cleanup = cleanup }
      job._image, job._phase = url, "call"
      return false
    end
    job._key, job._phase = self._store:name(img), "upload"
  end
  local req
  if job._phase == "upload" then
    req = self._store:put(job._img, job._key)
  else -- delete
    if job._stored.cleanup then
      -- Taken off the job first: a close while the clean-up runs (from
      -- it, or from a finalizer) must not find it and run it again.
      local stored, out = job._stored, job.result or job.error
      job._stored = nil
      out.cleanup_error = self:_unstore(job._plan, stored)
      self:_done(job, job.result, job.error)
      return true
    end
    req = self._store:delete(job._stored.key)
  end
  if gone() then
    -- (A job removing its image is not cancelled: close removes it.)
    if job._phase == "delete" then self:_orphan(job._stored.key) end
    return true
  end
  local ok, id = pcall(self._engine.add, self._engine, req, job._plan.timeout_ms)
  if not ok then
    if job._phase == "upload" and not self._closed then
      -- The file could not be opened (gone since it was checked).
      self:_failed_local(job, image_check.unsendable(id))
      return true
    end
    error(id, 0)
  end
  if gone() then
    -- Cancelled while its transfer was being added: taken back.
    local r, sent = self._engine:cancel(id)
    if job._phase == "upload" and (sent or (r and r ~= true)) then self:_insure(job._key, job._plan) end
    if job._phase == "delete" then self:_orphan(job._stored.key) end
    return true
  end
  job._id, job.state = id, "running"
  job._sattempts = job._sattempts + 1
  self._running[id] = job
  if not job._owner then self._active = self._active + 1 end
  return true
end

-- A storage request of a job ended (see Jobs above).
function Client:_on_storage_response(job, response)
  local action = job._phase == "upload" and "upload" or "delete"
  local err = errors.classify_storage(response, action)
  self._running[response.id] = nil
  if not job._owner then self._active = self._active - 1 end
  if err and err._maybe_stored then job._maybe_stored = true end
  if err and err.retryable and job._sattempts <= job._plan.retries then
    return self:_later(job, self:_backoff(job._sattempts))
  end
  local attempts = job._sattempts
  job._sattempts = 0
  if action == "upload" then
    if err then
      err.attempts = attempts
      if job._maybe_stored then self:_insure(job._key, job._plan) end
      return self:_failed_local(job, err)
    end
    -- An attempt before this one may still be stored after the call's delete.
    if job._maybe_stored then self:_insure(job._key, job._plan) end
    self._stats.uploads = self._stats.uploads + 1
    job._stored = { key = job._key, url = self._store:url(job._key) }
    job._image, job._phase = job._stored.url, "call"
    return self:_later(job, 0)
  end
  if not err then self._stats.deletes = self._stats.deletes + 1 end
  local out = job.result or job.error
  out.cleanup_error = err
  job._stored, job._image = nil, nil
  self:_done(job, job.result, job.error)
end

-- Starts an attempt of a job (taken off the queue or the retry set). The
-- job is `_starting` throughout (close cancels it, and a finalizer may):
-- what was made for it is taken back when it was cancelled meanwhile.
local start
function Client:_start(job)
  local ok, e = pcall(start, self, job)
  if not ok then
    -- An error escaped (an interrupt, a closed engine) with the job still
    -- starting: it is cancelled, not left where no close could see it.
    if self._starting == job then self._starting = nil end
    if job.state == "starting" then pcall(job._cancel, job) end
    error(e, 0)
  end
end

function start(self, job)
  job.state = "starting"
  self._starting = job
  local call = job._plan
  if job.state ~= "starting" or self._closed then
    -- Cancelled meanwhile (from a finalizer), or the client closed.
    self._starting = nil
    if job.state == "starting" then job:_cancel() end
    return
  end
  if job._phase and job._phase ~= "call" then
    local ok, handled = pcall(self._start_storage, self, job)
    if not ok then
      self._starting = nil
      error(handled, 0)
    end
    if handled then
      self._starting = nil
      -- Stopped by a close put off to the end of the operation (see
      -- Client:close), which will not find it: cancelled here.
      if job.state == "starting" and self._closed then job:_cancel() end
      return
    end
    if job.state ~= "starting" or self._closed then
      self._starting = nil
      if job.state == "starting" then job:_cancel() end
      return
    end
  end
  -- The rate limit: without a token now, the job starts later (as a retry
  -- does); the time it waited is counted once it has one.
  local now = monotonic()
  if self._limiter and self._budget and not self._budget:available() then
    -- An attempt the budget would refuse waits for no token (nor takes one).
    self._starting = nil
    return self:_ended(job, nil, self:_budget_refusal(job._unknown, job.attempts, job._started))
  end
  if self._limiter then
    local wait = self._limiter:take(now)
    if wait > 0 then
      job._ready = job._ready or now
      self._starting = nil
      -- (A finalizer run by the allocation above may have cancelled it.)
      if job.state ~= "starting" or self._closed then
        if job.state == "starting" then job:_cancel() end
        return
      end
      return self:_later(job, wait)
    end
    if job._ready then self._limiter:delayed(now - job._ready) end
    job._ready = false
  end
  -- The budget: a unit for this attempt, or the job ends unsent.
  local reservation
  if self._budget then
    reservation = self._budget:reserve()
    if not reservation then
      self._starting = nil
      return self:_ended(job, nil, self:_budget_refusal(job._unknown, job.attempts, job._started))
    end
  end
  -- A stored image's presigned URL is made for each attempt: the one made
  -- after its upload may have expired while the job waited for a token, a
  -- Retry-After or a back-off. (A finalizer run meanwhile is seen below.)
  if job._stored and job._stored.key then job._image = self._store:url(job._stored.key) end
  job._sent_at = now
  local ok, id = pcall(self._engine.add, self._engine, call.api, job._image, call.extra, call.method, call.timeout_ms)
  self._starting = nil
  -- (A close put off to the end of the operation meanwhile lets the job go
  -- on to running: its end cancels it as such, with what was sent known.)
  if not ok and job.state == "starting" and self._closed then job:_cancel() end
  if not ok or job.state ~= "starting" then
    -- Not sent (the add failed, or the job was cancelled meanwhile).
    if reservation then self._budget:settle(reservation, false) end
  end
  if not ok then
    if job.state ~= "starting" then error(id, 0) end -- cancelled meanwhile: not queued again
    -- Nothing was sent (the worker thread could not start, say): the job
    -- waits again, a submitted one at the head of the queue, and the error
    -- goes to the caller.
    job.state = "queued"
    if not job._owner then
      self._qhead = self._qhead - 1
      self._queue[self._qhead] = job
      self._nqueued = self._nqueued + 1
    end
    error(id, 0)
  end
  if job.state ~= "starting" then
    -- Cancelled while its transfer was being added (by a finalizer, or by
    -- close from one): cancel counted it as never sent, and the transfer is
    -- taken back before anything of it can go out (no I/O ran since).
    self._engine:cancel(id)
    return
  end
  job._id, job._reservation = id, reservation
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
    -- No token for it yet: the queue waits (see _next_retry), its head
    -- counted as delayed from now.
    if self._limiter and self._limiter:ready(monotonic()) > 0 then
      if job.state == "queued" then job._ready = job._ready or monotonic() end
      break
    end
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
  local soonest = self._orphans[1] and self:_next_orphan() or huge
  local slot = any or self._active < self._concurrency
  if self._limiter and slot and self._nqueued > 0 then
    -- Queued jobs wait for the rate limiter's next token.
    local now = monotonic()
    soonest = min(soonest, now + self._limiter:ready(now))
  end
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
  if not job then
    -- An orphan's delete (see _reap), or a job cancelled meanwhile, or one
    -- handled already.
    local o = self._cleanups[response.id]
    if o then
      self._cleanups[response.id] = nil
      self:_count_delete(o, response)
    end
    return
  end
  if job._phase and job._phase ~= "call" then return self:_on_storage_response(job, response) end
  if job._reservation then
    self._budget:settle(job._reservation, errors.billing(response))
    job._reservation = nil
  end
  -- The outcome first (it accounts a final one), then the job's state: an
  -- error raised while the outcome is made (an interrupt, a finalizer's
  -- error) leaves the job as it was, and the response for the next drive.
  local res, err, again, unknown = self:_outcome(job._plan, response, job.attempts, job._started, job._unknown,
    job._sent_at)
  self._running[response.id] = nil
  if not job._owner then self._active = self._active - 1 end
  if again then
    if unknown then job._unknown = job._unknown + 1 end
    return self:_later(job, self:_backoff(job.attempts, err))
  end
  self:_ended(job, res, err)
end

-- A job's call has its outcome (accounted already): it is done, or goes on
-- to remove its image first.
function Client:_ended(job, res, err)
  if job._stored and (job._stored.cleanup or (job._stored.key and not self._store.keep)) then
    -- The outcome is in (and accounted); the image goes next.
    job.result, job.error, job._phase = res, err, "delete"
    return self:_later(job, 0)
  end
  if job._stored and job._stored.key then (res or err).object = job._stored.key end
  -- The presigned URL (with an STS token in it) is not kept on the job.
  if job._stored then job._image, job._stored = nil, nil end
  self:_done(job, res, err)
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
  return next(self._running) ~= nil or next(self._cleanups) ~= nil or self._nqueued > 0 or self._uhead <= self._utail
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
    if self._orphans[1] and self:_next_orphan() <= monotonic() then self:_reap() end
    if self._uhead <= self._utail then self:_handle(nil) end
    self:_pump(owner)
    if self._closed then break end
    local left = deadline - monotonic()
    if next(self._running) or next(self._cleanups) then
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
  -- The descriptor stays ready while callbacks are left (one may raise).
  if self._fd then self:_arm() end
  while self._fhead <= self._ftail and not self._closed do
    local i = self._fhead
    local job = self._finished[i]
    self._finished[i], self._fhead = nil, i + 1
    if job.callback then self:_user(job.callback, job.result, job.error, job) end
  end
  if self._fd and not self._closed then self:_arm() end
end

-- With the readiness descriptor in use (Client:fd): makes it ready when
-- poll has something to do that no transfer's end will announce: callbacks
-- left to run, a job waiting to start with a slot free, the next retry.
function Client:_arm()
  local engine = self._engine
  if self._fhead <= self._ftail or self._uhead <= self._utail
    or (self._nqueued > 0 and self._active < self._concurrency
        and not (self._limiter and self._limiter:ready(monotonic()) > 0)) then
    engine:alarm(0)
    return
  end
  local soonest = self:_next_retry(nil)
  if soonest < huge then engine:alarm(max(0, soonest - monotonic())) else engine:alarm(nil) end
end

-- Raises unless jobs can be driven here: they drive libcurl, which would
-- block nginx's worker.
function Client:_check_jobs_place(what)
  if not self._via.supports_jobs then
    fail(what .. " drive libcurl; inside nginx use batch (light threads), or calls in ngx.thread.spawn")
  end
  self:_check_place()
end




function Client:_wait()
  while not self._closed and (self._pending > 0 or self._fhead <= self._ftail) do
    -- Nothing that could ever finish (an interrupt caught in the middle of
    -- the client's own code can leave a count behind): do not spin.
    if self._fhead > self._ftail and not self:_has_work(nil) then break end
    self:_drive(1)
  end
end

return Job
end
