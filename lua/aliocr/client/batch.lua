--- batch: many images at once, `concurrency` at a time: as jobs of the
-- engine (libcurl) or as light threads (inside nginx). A method of the
-- client (lua/aliocr/client.lua).
-- @module aliocr.client.batch
-- @local
local core = require("aliocr.core")
local errors = require("aliocr.errors")
local options = require("aliocr.options")
local resty = require("aliocr.resty")

options.own()
local monotonic = core.monotonic

return function(Client)

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
      if on_progress and not stopped() and not self._closed then on_progress(done, total) end
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
  -- The connection cache keeps what the batch opens, for its next images
  -- and the next batch.
  if not self._closed then self._engine:connections(limit + 1) end
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
  -- The batch's drives took the submitted jobs' answers in too: the
  -- descriptor tells the host so.
  if self._fd and not self._closed then self:_arm() end
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
        -- A job removing its image has its call's outcome already.
        local job = jobs[i]
        batch.results[i] = job and (job.result or job.error) or
          errors.cancelled("not sent: the client was closed during the batch", false, 0)
      end
    end
  end
  return batch.results, summarize(batch.results, total, started)
end



end
