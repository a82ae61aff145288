-- The run of bin/aliocr once its image URLs are checked: the images handed
-- to the client, the results printed in input order, and how the run stops
-- (refused credentials or quota, SIGINT, stdout that cannot be written).
--
-- The tool hands the client at most `concurrency` images that are not
-- waiting for a retry, and only between polls (as batch does). A client
-- given every image at once would start the next one inside poll, as soon as
-- an answer frees its slot, before the answer's callback has run: after a
-- refusal, or once a SIGINT was caught, one more image would be sent. (A
-- retry that falls due in that same pass is still started by the client.)
-- Results are printed in input order as soon as all earlier ones are in.
local aliocr = require("aliocr")
local errors = require("aliocr.errors")
local codes = require("aliocr.cli.codes")

local M = {}

local cancelled = errors.cancelled

--- Reads the images `urls` with `client` (which it closes) and prints
-- them. `o`: kind ("recognize" or "handwriting"), call_opts (each call's
-- options), concurrency, printer (aliocr.cli.output's), bar
-- (aliocr.cli.progress'), sys (aliocr.cli's: stderr, interrupted). Returns
-- the exit status.
function M.run(client, urls, o)
  local kind, call_opts, concurrency, printer, bar, sys = o.kind, o.call_opts, o.concurrency, o.printer, o.bar, o.sys
  local stderr = sys.stderr

  local ok, err = printer:start()
  if not ok then
    client:close()
    stderr:write("aliocr: cannot write to stdout: ", err, ": nothing was sent\n")
    return codes.FAILED
  end

  -- results[i]: image i's result or error once known (false once printed);
  -- jobs[i]: its job while the client has it; answer[i]: true when results[i]
  -- came from the gateway (not cancelled by the tool).
  local results, jobs, answer = {}, {}, {}
  local next_submit, next_print, done, failed = 1, 1, 0, 0
  -- What became of the images: answered (and billed), cancelled in flight, not sent.
  local answered, answered_billed, in_flight, not_sent = 0, 0, 0, 0
  local stopped, account_trouble, interrupted = false, false, false
  local write_error, unwritten, unwritten_billed = nil, 0, 0

  local function record(i, value)
    results[i] = value
    done = done + 1
    if aliocr.is_error(value) then failed = failed + 1 end
  end

  -- Stops sending, because of `why`: every image not handed to the client,
  -- and every job queued or waiting for a retry (none of whose attempts was
  -- billed), is cancelled: not billed. With `and_in_flight`, the calls under way
  -- are cancelled too: their billing is unknown (the request may have reached
  -- the gateway); without, they finish (they may already be billed). A job
  -- whose answer has arrived cannot be cancelled: its callback runs at the
  -- next poll.
  local function stop(why, and_in_flight)
    stopped = true
    for i = next_submit, #urls do
      record(i, cancelled("not sent: " .. why, false, 0))
      not_sent = not_sent + 1
    end
    next_submit = #urls + 1
    -- Those waiting first: cancelling one under way frees a slot, which must
    -- then find nothing to start. A waiting job that another's cancel started
    -- meanwhile was not sent either (nothing was driven in between).
    local waiting, running = {}, {}
    for i, job in pairs(jobs) do
      if job.state == "queued" or job.state == "retrying" then
        waiting[#waiting + 1] = { i, job.attempts }
      elseif job.state == "running" then
        running[#running + 1] = { i, job.attempts }
      end
    end
    for _, w in ipairs(waiting) do
      local i, attempts = w[1], w[2]
      if jobs[i]:cancel() then
        jobs[i] = nil
        record(i, cancelled((attempts > 0 and "not retried: " or "not sent: ") .. why, false, attempts))
        not_sent = not_sent + 1
      end
    end
    if not and_in_flight then return end
    for _, r in ipairs(running) do
      local i, attempts = r[1], r[2]
      if jobs[i] and jobs[i]:cancel() then
        jobs[i] = nil
        record(i, cancelled("cancelled in flight: " .. why .. "; the request may have reached the gateway", nil,
          attempts))
        in_flight = in_flight + 1
      end
    end
  end

  local function on_answer(i, res, e)
    jobs[i] = nil
    answer[i] = true
    record(i, res or e)
    answered = answered + 1
    if (res or e).billed == true then answered_billed = answered_billed + 1 end
    -- After the gateway refused the credentials or the quota, the images not
    -- sent yet are not sent: they would be refused too. (Those under way
    -- finish: they may already be billed.)
    if e and (e.kind == "auth" or e.kind == "quota") and not account_trouble then
      account_trouble = true
      if not stopped then stop("the gateway refused the credentials or the quota") end
    end
  end

  -- Hands the client images, up to `concurrency` of its jobs queued or under way.
  local function top_up()
    if stopped then return end
    local busy = 0
    for _, job in pairs(jobs) do
      if job.state == "queued" or job.state == "running" then busy = busy + 1 end
    end
    while busy < concurrency and next_submit <= #urls do
      local i = next_submit
      next_submit = i + 1
      jobs[i] = client:submit(kind, urls[i], call_opts, function(res, e) on_answer(i, res, e) end)
      busy = busy + 1
    end
  end

  local function poll(seconds)
    -- Errors raised by a callback: returned by poll, or raised from it.
    local _, errs = client:poll(seconds)
    if type(errs) == "table" and errs[1] then error(errs[1], 0) end
  end

  local function check_interrupt()
    if interrupted or not sys.interrupted() then return end
    interrupted = true
    if not stopped then
      stop("interrupted", true)
    end
    poll(0) -- the callbacks of answers that had arrived
  end

  -- Prints the results that are next in input order. After a failed write,
  -- nothing more is printed: the answers left are counted as not written.
  local function print_ready()
    local cleared = false
    while results[next_print] ~= nil do
      local i = next_print
      if not write_error then
        if not cleared then bar:clear() end
        cleared = true
        local written, why = printer:result(urls[i], results[i])
        if not written then
          write_error = why
          if not stopped then
            stop("the results could not be written", true)
          end
        end
      end
      if write_error and answer[i] then
        unwritten = unwritten + 1
        if results[i].billed == true then unwritten_billed = unwritten_billed + 1 end
      end
      results[i] = false -- printed (or lost); keep the slot filled
      next_print = i + 1
    end
  end

  bar:draw(0, 0)
  while next_print <= #urls do
    check_interrupt()
    top_up()
    poll(0.1)
    check_interrupt()
    print_ready()
    if not write_error then bar:draw(done, failed) end
  end
  bar:clear(true)
  client:close()

  local fates = string.format("%d cancelled in flight (billing unknown), %d not sent", in_flight, not_sent)
  if write_error then
    stderr:write(string.format("aliocr: cannot write to stdout: %s: %d answered but not written (%d billed), %s\n",
      write_error, unwritten, unwritten_billed, fates))
  end
  if interrupted then
    stderr:write(string.format("aliocr: interrupted: %d answered (%d billed), %s\n", answered, answered_billed,
      fates))
    return codes.INTERRUPTED
  end
  if write_error then return codes.FAILED end
  if account_trouble then return codes.ACCOUNT end
  return failed > 0 and codes.FAILED or codes.OK
end

return M
