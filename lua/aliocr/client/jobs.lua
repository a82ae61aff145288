--- Jobs: calls run without blocking (submit, poll, wait, Job:cancel), on
-- the engine's transfers; a batch's images are jobs too (see
-- lua/aliocr/client/batch.lua). Methods of the client
-- (lua/aliocr/client.lua) and the Job class.
-- @module aliocr.client.jobs
-- @local
local core = require("aliocr.core")
local errors = require("aliocr.errors")
local options = require("aliocr.options")

options.own()
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
  return setmetatable({
    -- `call` names the method the job calls; `kind` is its old name, kept.
    _client = self, _plan = self:_plan(kind, opts), call = kind, kind = kind, image_url = image_url,
    _image = self:_image(image_url),
    callback = callback, attempts = 0, state = "queued", _started = monotonic(), _unknown = 0,
    _owner = owner,
  }, Job)
end

-- Starts an attempt of a job (taken off the queue or the retry set).
function Client:_start(job)
  job.state = "starting"
  self._starting = job
  local call = job._plan
  self._starting = nil
  if job.state ~= "starting" or self._closed then
    -- Cancelled meanwhile (from a finalizer), or the client closed.
    if job.state == "starting" then job:_cancel() end
    return
  end
  job._id = self._engine:add(call.api, job._image, call.extra, call.method, call.timeout_ms)
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
  local res, err, again, unknown = self:_outcome(job._plan, response, job.attempts, job._started, job._unknown)
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
