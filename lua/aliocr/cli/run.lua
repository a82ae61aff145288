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

-- What the journal holds for an image handed to the client, until its outcome.
local SENT = errors.new({ kind = "sent", msg = "sent: no outcome was journaled (the tool stopped)", billed = nil,
                          retryable = false })

-- What a journal entry (aliocr.journal's) stands for: a result, or an error,
-- as the client would have given it.
-- A whole number read back from JSON, as the client gave it (an integer on
-- Lua 5.3+: decoders give floats).
local function whole(v)
  if type(v) == "number" and math.tointeger then return math.tointeger(v) or v end
  return v
end

local function from_entry(e)
  if e.outcome == "result" then
    return { text = e.text or "", lines = e.lines or {}, status = whole(e.status), billed = e.billed,
             request_id = e.request_id, attempts = whole(e.attempts) }
  end
  return errors.new({ kind = e.kind or "unknown", msg = e.msg, status = whole(e.status), billed = e.billed,
                      code = e.code, request_id = e.request_id, retryable = e.retryable, attempts = whole(e.attempts) })
end

-- The journal entry of image `url`'s outcome `v` (a result or an error) on `interface`.
local function to_entry(url, interface, v)
  if aliocr.is_error(v) then
    return { image = url, interface = interface, outcome = "error", billed = v.billed, kind = v.kind, msg = v.msg,
             status = v.status, code = v.code, request_id = v.request_id, retryable = v.retryable == true,
             attempts = v.attempts }
  end
  local lines = {}
  for n, l in ipairs(v.lines or {}) do lines[n] = { words = l.words, position = l.position } end
  return { image = url, interface = interface, outcome = "result", billed = v.billed, kind = "result",
           request_id = v.request_id, text = v.text, lines = lines, status = v.status, attempts = v.attempts }
end

--- Reads the images `urls` (as given: what the output names them by) with
-- `client` (which it closes) and prints them; `images[i]` is what the
-- client is given for `urls[i]` (the URL, or `{ file = path }`). `o`:
-- kind ("recognize" or "handwriting"), call_opts (each call's options),
-- concurrency, printer (aliocr.cli.output's), bar
-- (aliocr.cli.progress'), sys (aliocr.cli's: stderr, interrupted); with a
-- journal (aliocr.journal's, which it closes): interface ("advanced" or
-- "handwriting"), retry_unknown. Each answer is journaled as it comes (before
-- it is printed), and each call cancelled in flight as billing unknown; an
-- image the journal has done is not sent (its journaled outcome is printed),
-- nor one whose billing is unknown unless retry_unknown. Returns the exit
-- status.
function M.run(client, urls, images, o)
  local kind, call_opts, concurrency, printer, bar, sys = o.kind, o.call_opts, o.concurrency, o.printer, o.bar, o.sys
  local stderr = sys.stderr
  local journal, interface = o.journal, o.interface

  local ok, err = printer:start()
  if not ok then
    client:close()
    if journal then journal:close() end
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
  -- skipped[i]: image i's outcome came from the journal (it is not sent).
  local skipped, skipped_count, journal_error = {}, 0, nil

  local function record(i, value)
    results[i] = value
    done = done + 1
    if aliocr.is_error(value) then failed = failed + 1 end
  end

  if journal then
    local unknown = {}
    for i, url in ipairs(urls) do
      local state = journal:state(url, interface)
      if state == "done" or (state == "unknown" and not o.retry_unknown) then
        skipped[i] = true
        skipped_count = skipped_count + 1
        record(i, from_entry(journal:entry(url, interface)))
        if state == "unknown" then unknown[#unknown + 1] = url end
      end
    end
    if #unknown > 0 then
      stderr:write(string.format("aliocr: journal %s: %d image%s whose billing is unknown, not sent again " ..
        "(--retry-unknown sends them):\n", journal.path, #unknown, #unknown == 1 and "" or "s"))
      for _, url in ipairs(unknown) do stderr:write("  ", url, "\n") end
      stderr:flush()
    end
  end

  local stop

  -- Journals image i's outcome `v` (an error of kind "cancelled" or
  -- "budget" not billed stands for no outcome: a rerun sends the image).
  -- After a failed write, nothing more is sent and the calls under way are
  -- cancelled. True when written.
  local function journal_outcome(i, v)
    if not journal or journal_error then return end
    local written, why = journal:append(to_entry(urls[i], interface, v))
    if not written then
      journal_error = why
      if not stopped then stop("the journal could not be written", true) end
    end
    return written
  end

  -- Stops sending, because of `why`: every image not handed to the client,
  -- and every job queued or waiting for a retry (none of whose attempts was
  -- billed), is cancelled: not billed. With `and_in_flight`, the calls under way
  -- are cancelled too: their billing is unknown (the request may have reached
  -- the gateway); without, they finish (they may already be billed). A job
  -- whose answer has arrived cannot be cancelled: its callback runs at the
  -- next poll.
  stop = function(why, and_in_flight)
    stopped = true
    for i = next_submit, #urls do
      if not skipped[i] then
        record(i, cancelled("not sent: " .. why, false, 0))
        not_sent = not_sent + 1
      end
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
        journal_outcome(i, results[i])
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
        journal_outcome(i, results[i])
      end
    end
  end

  local function on_answer(i, res, e)
    jobs[i] = nil
    answer[i] = true
    record(i, res or e)
    answered = answered + 1
    if (res or e).billed == true then answered_billed = answered_billed + 1 end
    journal_outcome(i, res or e)
    -- After the gateway refused the credentials or the quota, the images not
    -- sent yet are not sent: they would be refused too. (Those under way
    -- finish: they may already be billed.)
    if e and (e.kind == "auth" or e.kind == "quota") and not account_trouble then
      account_trouble = true
      if not stopped then stop("the gateway refused the credentials or the quota") end
    end
    -- After --max-billed was reached, nothing more is handed over (a local
    -- file would be uploaded for nothing).
    if e and e.kind == "budget" and not stopped then stop("--max-billed was reached") end
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
      -- Journaled before it is handed over: if the tool is killed, the
      -- image's billing is unknown, not absent (a rerun would pay again).
      -- After a failed write, stop has recorded this image and the rest.
      if not skipped[i] and journal and not journal_outcome(i, SENT) then return end
      next_submit = i + 1
      if not skipped[i] then
        jobs[i] = client:submit(kind, images[i], call_opts, function(res, e) on_answer(i, res, e) end)
        busy = busy + 1
      end
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
  local limited = client:stats().rate_limit
  client:close()
  if limited then
    stderr:write(string.format("aliocr: rate limit: %d attempt%s waited %.1f s in all for a token, %d throttled " ..
      "answer%s, %.1f calls/s at the end\n", limited.delayed, limited.delayed == 1 and "" or "s", limited.waited,
      limited.throttled, limited.throttled == 1 and "" or "s", limited.rate))
  end

  if journal then
    local c = journal:counts()
    journal:close()
    if journal_error then
      stderr:write(string.format("aliocr: cannot write to the journal %s: %s: nothing more was sent\n", journal.path,
        journal_error))
    end
    stderr:write(string.format("aliocr: journal %s: this run billed %d (%d answered, %d cancelled in flight, " ..
      "%d from the journal); the journal holds %d done (%d billed), %d billing unknown\n", journal.path,
      answered_billed, answered, in_flight, skipped_count, c.done, c.billed, c.unknown))
  end

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
  if write_error or journal_error then return codes.FAILED end
  if account_trouble then return codes.ACCOUNT end
  return failed > 0 and codes.FAILED or codes.OK
end

return M
