-- The client's jobs on its one engine, against the emulator: client:batch
-- (results in input order, the summary, billing that equals the emulator's
-- ledger and client:stats(), progress, the concurrency bound, retries per
-- job, per-call options, misuse before anything is sent, an on_progress that
-- raises); client:submit/poll/wait/pending (poll(0) never blocks, callbacks
-- run exactly once and only from poll or wait, poll(timeout) returns as soon
-- as a job finishes, callback errors are reported); job:cancel (queued,
-- running, waiting for a retry, finished) with its accounting, and close with
-- jobs pending; blocking calls mixed with jobs.
local emulator = require("helpers.emulator")
local socket = require("socket")
local cjson = require("cjson")
local aliocr = require("aliocr")
local util = require("helpers.util")
local widened = util.slow
local stop_clean = util.stop_clean

-- What the emulator's canned backend answers (the API guide's examples).
local SEED_TEXT = "冰心散文精选自从太平洋舟中，银花世界之夜以后，再不曾见有团圆*****到了酣畅处，自己觉得是个羽"
local SEED_WORDS = { "冰心散文精选", "*****", "在草地上，和着最柔媚的琴声跳舞。到了酣畅处，自己觉得是个羽" }
local MISSING_MSG = "图片下载失败：HTTP status 404"

local now = socket.gettime

--- The value of a logged parameter (the first of a repeated one).
local function param(entry, name)
  local v = (entry.params or {})[name]
  if type(v) == "table" then v = v[1] end
  return v
end

--- The request log grouped by the image URL sent, each group in log order.
local function by_url(log)
  local out = {}
  for _, e in ipairs(log) do
    local u = param(e, "url")
    out[u] = out[u] or {}
    table.insert(out[u], e)
  end
  return out
end

local function log_of(emu, n) return emu:log_of(n) end

--- The largest number of requests of `entries` (each known to take at least
-- `min_seconds`) that began within `window` seconds of one another: all of
-- them were under way at once when `window` < `min_seconds`.
local function max_started_together(entries, window)
  local times = {}
  for _, e in ipairs(entries) do times[#times + 1] = e.time end
  table.sort(times)
  local best, j = 0, 1
  for i = 1, #times do
    while times[i] - times[j] > window do j = j + 1 end
    best = math.max(best, i - j + 1)
  end
  return best
end

--- Checks that stats() accounts for every call once.
local function check_accounting(s)
  assert.equal(s.requests, s.billed + s.not_billed + s.unknown,
    "billed + not_billed + unknown ~= requests: " .. cjson.encode(s))
  local errs = 0
  for _, n in pairs(s.errors) do errs = errs + n end
  assert.is_true(errs <= s.requests)
end

local function new_emulator(latency_ms)
  return emulator.start({ "--port", "0", "--appcode", "demo", "--latency-ms", tostring(latency_ms) })
end

--- A client of `emu` (APPCODE demo, short back-off) with options `o`.
local function client_of(emu, o)
  local opts = { appcode = "demo", endpoint = emu.endpoint, retry_delay = 0.01 }
  for k, v in pairs(o or {}) do opts[k] = v end
  return aliocr.new(opts)
end

--- `n` distinct URLs of the sample image (a distinct query each).
local function images(emu, n, tag)
  local urls = {}
  for i = 1, n do urls[i] = emu.image .. "?" .. (tag or "i") .. "=" .. i end
  return urls
end

describe("client:batch", function()
  local emu
  local LATENCY = 0.15

  setup(function() emu = new_emulator(LATENCY * 1000) end)
  teardown(function() stop_clean(emu) end)
  before_each(function() emu:reset() end)

  -- One batch of 500 images with mixed outcomes, checked from several sides.
  describe("500 images with mixed outcomes", function()
    local N = 500
    local urls, progress, results, summary, log, groups, ledger, stats, pending = {}, {}, nil, nil, nil, nil, nil,
      nil, nil

    setup(function()
      emu:reset()
      emu:settings({ latency_ms = 20 })
      -- First matching rule with uses left: the first 40 requests to arrive get
      -- 503, the next 15 a billed ok 0, the next 25 a throttled 403.
      emu:fault({
        { mode = "service_unavailable", times = 40 },
        { mode = "ok0", times = 15, msg = "识别失败" },
        { mode = "throttled_app", times = 25 },
      })
      for i = 1, N do
        if i % 7 == 0 then
          urls[i] = emu.images .. "missing.png?i=" .. i
        else
          urls[i] = emu.image .. "?i=" .. i
        end
      end
      local c = client_of(emu, { concurrency = 16, retries = 2 })
      results, summary = c:batch("recognize", urls, {
        concurrency = 12,
        on_progress = function(done, total) progress[#progress + 1] = { done, total } end,
      })
      log = emu:requests()
      groups = by_url(log)
      ledger, stats, pending = emu:ledger(), c:stats(), c:pending()
      c:close()
    end)

    -- What the emulator's log says each image's outcome must be: its last
    -- answer decides.
    local function expected()
      local want = { ok = 0, failed = 0, billed = 0, kinds = {} }
      for i = 1, N do
        local entries = groups[urls[i]]
        local last = entries[#entries]
        if last.status == 200 and last.fault == nil then
          want.ok, want.billed = want.ok + 1, want.billed + 1
        else
          want.failed = want.failed + 1
          local kind = (last.status == 200 and "protocol") or (last.status == 666 and "api") or
            (last.status == 503 and "gateway") or "throttled"
          want.kinds[kind] = (want.kinds[kind] or 0) + 1
          if last.status == 200 then want.billed = want.billed + 1 end
        end
      end
      return want
    end

    it("runs on_progress exactly total times, done going 1..total", function()
      assert.equal(N, #progress)
      for k = 1, N do
        assert.same({ k, N }, progress[k])
      end
    end)

    it("gives results[i] as the outcome of urls[i], retrying only retryable unbilled answers", function()
      -- results[i] is the outcome of urls[i]: its attempts are the requests the
      -- emulator logged with that URL, the last of which it answers.
      assert.equal(N, #results)
      local attempts, clean_ok, clean_missing = 0, 0, 0
      for i = 1, N do
        local r, entries = results[i], groups[urls[i]]
        assert.is_table(r, "no result for " .. i)
        assert.is_table(entries, "no request logged for " .. urls[i])
        local last = entries[#entries]
        assert.equal(#entries, r.attempts, "attempts of " .. i)
        assert.equal(last.request_id, r.request_id, "request id of " .. i)
        attempts = attempts + #entries
        for k = 1, #entries - 1 do
          -- Only a retryable, unbilled answer is tried again.
          assert.is_truthy(entries[k].status == 503 or entries[k].status == 403, "retried after " .. entries[k].status)
        end
        local faulted = false
        for _, e in ipairs(entries) do faulted = faulted or e.fault ~= nil end
        local missing = i % 7 == 0
        if last.status == 200 and last.fault == nil then
          assert.is_false(aliocr.is_error(r), "an error for " .. i .. ": " .. tostring(r))
          assert.is_false(missing, "a result for the missing image " .. i)
          assert.equal(SEED_TEXT, r.text)
          assert.is_true(r.billed)
        else
          assert.is_true(aliocr.is_error(r), "a result for " .. i)
          if last.status == 200 then
            assert.equal("ok0", last.fault)
            assert.equal("protocol", r.kind)
            assert.equal("识别失败", r.msg)
            assert.is_true(r.billed)
          elseif last.status == 666 then
            assert.is_true(missing, "a 666 for the image " .. i)
            assert.equal("api", r.kind)
            assert.equal(MISSING_MSG, r.msg)
            assert.is_false(r.billed)
          else
            -- 503 or 403 every time: the retries are used up.
            assert.equal(3, #entries)
            assert.equal(last.status == 503 and "gateway" or "throttled", r.kind)
            assert.is_false(r.billed)
          end
        end
        -- A failure of one job never disturbs the others: an image no fault
        -- touched has exactly its own outcome, at the first attempt.
        if not faulted then
          assert.equal(1, #entries)
          if missing then
            assert.equal("api", r.kind)
            clean_missing = clean_missing + 1
          else
            assert.is_false(aliocr.is_error(r))
            clean_ok = clean_ok + 1
          end
        end
      end
      assert.equal(#log, attempts)            -- no request the results do not account for
      assert.is_true(clean_ok > 300)
      assert.is_true(clean_missing > 40)
      -- Every fault use is a logged request; an ok 0 is never retried.
      local by_fault = {}
      for _, e in ipairs(log) do
        if e.fault then by_fault[e.fault] = (by_fault[e.fault] or 0) + 1 end
      end
      assert.same({ service_unavailable = 40, ok0 = 15, throttled_app = 25 }, by_fault)
      local want = expected()
      assert.equal(15, want.kinds.protocol)
      assert.is_true(want.kinds.api >= 55)
    end)

    it("sums the outcomes up in the summary, exactly", function()
      local want = expected()
      assert.equal(N, summary.total)
      assert.equal(want.ok, summary.ok)
      assert.equal(want.failed, summary.failed)
      assert.equal(N, summary.ok + summary.failed)
      assert.equal(want.billed, summary.billed)
      assert.equal(want.ok + 15, summary.billed)
      assert.is_number(summary.elapsed)
    end)

    it("agrees on billing with the emulator's ledger and the client's stats", function()
      local want = expected()
      local billed_logged = 0
      for _, e in ipairs(log) do if e.billed then billed_logged = billed_logged + 1 end end
      assert.equal(summary.billed, billed_logged)
      assert.equal(summary.billed, ledger.total.billed)
      local s = stats
      assert.equal(summary.billed, s.billed)
      assert.equal(N, s.requests)
      assert.equal(#log, s.attempts)
      assert.equal(want.failed - 15, s.not_billed)
      assert.equal(0, s.unknown)
      check_accounting(s)
      assert.same(want.kinds, s.errors)
      assert.equal(0, pending)
    end)

    it("keeps to its concurrency: at most 12 under way at once, and several", function()
      -- The bound held throughout: requests with no fault went through the
      -- latency and lasted at least 20 ms, so those that began within 15 ms of
      -- one another were under way together.
      local slow = {}
      for _, e in ipairs(log) do
        if e.fault == nil then slow[#slow + 1] = e end
      end
      local together = max_started_together(slow, 0.015)
      assert.is_true(together <= 12, together .. " requests under way at once")
      -- Inside valgrind the client starts requests far more slowly, so fewer
      -- begin within 15 ms of one another; some must still overlap.
      local least = util.VALGRIND and 3 or 8
      assert.is_true(together >= least, "only " .. together .. " requests under way at once")
    end)
  end)

  it("concurrency bounds the transfers under way (latency-bound elapsed, connections, overlap)", function()
    local n, limit = 24, 4
    local c = client_of(emu) -- the client's own concurrency: 8
    local t0 = now()
    local results, summary = c:batch("recognize", images(emu, n), { concurrency = limit })
    local took = now() - t0
    local rounds = math.ceil(n / limit)
    assert.equal(n, summary.ok)
    for i = 1, n do assert.equal(1, results[i].attempts) end
    -- Never more than `limit` at once: at least `rounds` latencies; and that
    -- many at once: not much more.
    assert.is_true(summary.elapsed >= rounds * LATENCY - 0.01, "elapsed " .. summary.elapsed)
    assert.is_true(summary.elapsed < (rounds + 2) * LATENCY, "elapsed " .. summary.elapsed)
    assert.is_true(summary.elapsed <= took)
    local log = emu:requests()
    assert.equal(n, #log)
    assert.equal(limit, max_started_together(log, LATENCY * 0.8))
    assert.is_true(emu:connections().accepted <= limit)
    c:close()

    -- concurrency = 1: one after the other.
    emu:reset()
    c = client_of(emu)
    results, summary = c:batch("handwriting", images(emu, 4), { concurrency = 1 })
    assert.equal(4, summary.ok)
    assert.is_true(summary.elapsed >= 4 * LATENCY - 0.01)
    assert.equal(1, max_started_together(emu:requests(), LATENCY * 0.8))
    assert.equal(4, #results[1].lines)
    assert.is_table(results[1].lines[1].position)
    c:close()
  end)

  it("a batch's concurrency above the client's default is honoured", function()
    local n, limit = 32, 16
    local c = client_of(emu) -- the client's own concurrency: 8
    local _, summary = c:batch("recognize", images(emu, n), { concurrency = limit })
    c:close()
    assert.equal(n, summary.ok)
    assert.equal(limit, max_started_together(emu:requests(), LATENCY * 0.8))
    assert.is_true(summary.elapsed < widened(3 * LATENCY),
      "elapsed " .. summary.elapsed .. " for 2 rounds of " .. LATENCY)
  end)

  it("retries follow the client's policy per job, and per-call options pass through", function()
    emu:settings({ latency_ms = 0 })
    emu:fault({ mode = "service_unavailable", times = 2 })
    local c = client_of(emu)
    local urls = images(emu, 3)
    local results, summary = c:batch("recognize", urls, { concurrency = 1, show = 1 })
    assert.same({ total = 3, ok = 3, failed = 0, billed = 3 },
      { total = summary.total, ok = summary.ok, failed = summary.failed, billed = summary.billed })
    assert.same({ 3, 1, 1 }, { results[1].attempts, results[2].attempts, results[3].attempts })
    for i = 1, 3 do
      -- show = 1: an array of words, one line each.
      assert.equal(#SEED_WORDS, #results[i].lines)
      for k, w in ipairs(SEED_WORDS) do assert.equal(w, results[i].lines[k].words) end
    end
    local log = emu:requests()
    assert.equal(5, #log)
    for _, e in ipairs(log) do assert.equal("1", param(e, "show")) end
    local g = by_url(log)
    assert.same({ 503, 503, 200 }, { g[urls[1]][1].status, g[urls[1]][2].status, g[urls[1]][3].status })
    local s = c:stats()
    assert.same({ 3, 5, 3 }, { s.requests, s.attempts, s.billed })

    -- A per-call retries = 1: the first job gives up after 2 attempts, the
    -- others are not disturbed.
    emu:reset()
    emu:settings({ latency_ms = 0 })
    emu:fault({ mode = "service_unavailable", times = 2 })
    results, summary = c:batch("recognize", urls, { concurrency = 1, retries = 1 })
    assert.is_true(aliocr.is_error(results[1]))
    assert.equal("gateway", results[1].kind)
    assert.equal(503, results[1].status)
    assert.equal(2, results[1].attempts)
    assert.equal(SEED_TEXT, results[2].text)
    assert.equal(SEED_TEXT, results[3].text)
    assert.same({ 3, 2, 1, 2 }, { summary.total, summary.ok, summary.failed, summary.billed })
    c:close()
  end)

  it("a transfer that times out does not disturb the others under way", function()
    emu:settings({ latency_ms = 0 })
    emu:fault({ mode = "stall_headers", times = 1, ms = 1500, ["then"] = "close" })
    local c = client_of(emu)
    local urls = images(emu, 10)
    local results, summary = c:batch("recognize", urls, { concurrency = 10, timeout = 0.4 })
    assert.equal(10, summary.total)
    assert.equal(9, summary.ok)
    assert.equal(1, summary.failed)
    assert.equal(9, summary.billed)
    assert.is_true(summary.elapsed < widened(1.2))
    local timed_out
    for i = 1, 10 do
      if aliocr.is_error(results[i]) then
        timed_out = i
        assert.equal("timeout", results[i].kind)
        assert.is_nil(results[i].billed)
      else
        assert.equal(SEED_TEXT, results[i].text)
      end
    end
    local s = c:stats()
    assert.same({ 10, 9, 0, 1 }, { s.requests, s.billed, s.not_billed, s.unknown })
    -- The stalled request is logged once its stall is over: it was the one
    -- that timed out.
    local log = log_of(emu, 10)
    assert.equal("stall_headers", by_url(log)[urls[timed_out]][1].fault)
    c:close()
  end)

  it("misuse raises before anything is sent", function()
    local c = client_of(emu)
    local good = images(emu, 3)
    local ok, e = pcall(c.batch, c, "recognize", { good[1], good[2], 42 })
    assert.is_false(ok)
    assert.matches("image URL must be a string", e)
    ok, e = pcall(c.batch, c, "recognize", { good[1], "ftp://x/y.png" })
    assert.is_false(ok)
    assert.matches("http", e)
    ok, e = pcall(c.batch, c, "ocr", good)
    assert.is_false(ok)
    assert.matches("kind", e)
    ok, e = pcall(c.batch, c, "recognize", good, { concurrency = 0 })
    assert.is_false(ok)
    assert.matches("concurrency", e)
    ok, e = pcall(c.batch, c, "recognize", good, { concurrency = 2.5 })
    assert.is_false(ok)
    assert.matches("concurrency", e)
    ok, e = pcall(c.batch, c, "recognize", good, { on_progress = "print" })
    assert.is_false(ok)
    assert.matches("on_progress", e)
    ok, e = pcall(c.batch, c, "recognize", good[1])
    assert.is_false(ok)
    assert.matches("list", e)
    ok, e = pcall(c.batch, c, "recognize", good, { shwo = 1 })
    assert.is_false(ok)
    assert.matches("shwo", e)
    socket.sleep(LATENCY + 0.1)
    assert.same({}, emu:requests())
    assert.equal(0, c:pending())
    assert.equal(0, c:stats().requests)
    assert.equal(0, c:stats().attempts)
    c:close()
  end)

  it("a wrong kind raises even with an empty list", function()
    local c = client_of(emu)
    local ok, e = pcall(c.batch, c, "ocr", {})
    c:close()
    assert.is_false(ok, "batch(\"ocr\", {}) did not raise")
    assert.matches("kind", e)
  end)

  it("an empty list: no results, a zero summary, no progress, nothing sent", function()
    local c = client_of(emu)
    local called = 0
    local results, summary = c:batch("handwriting", {}, { on_progress = function() called = called + 1 end })
    assert.same({}, results)
    assert.equal(0, summary.total)
    assert.equal(0, summary.ok)
    assert.equal(0, summary.failed)
    assert.equal(0, summary.billed)
    assert.equal(0, called)
    assert.same({}, emu:requests())
    assert.equal(0, c:stats().requests)
    c:close()
  end)

  it("an on_progress that raises cancels the rest and re-raises", function()
    -- The first request to arrive is answered after 0.1 s (the others are
    -- sent meanwhile, also on a slow machine), the others after 0.4 s.
    emu:settings({ latency_ms = 0 })
    emu:fault({ { mode = "latency", ms = 100, times = 1 }, { mode = "latency", ms = 400 } })
    local c = client_of(emu)
    local urls = images(emu, 20)
    local calls = 0
    local boom = { "stop the batch" }
    local t = now()
    local ok, e = pcall(c.batch, c, "recognize", urls, {
      concurrency = 4,
      on_progress = function(done)
        calls = calls + 1
        if done == 1 then error(boom) end
      end,
    })
    assert.is_false(ok)
    assert.is_true(rawequal(boom, e), "not the error on_progress raised: " .. tostring(e))
    assert.is_true(now() - t < 0.3, "the batch went on after on_progress raised")
    assert.equal(1, calls)
    assert.equal(0, c:pending())
    -- One call done and billed; the three under way cancelled (billing
    -- unknown); the 16 never sent are calls too, cancelled and not billed.
    local s = c:stats()
    check_accounting(s)
    assert.same({ 4, 1, 3 }, { s.attempts, s.billed, s.unknown })
    assert.equal(20, s.requests)
    assert.equal(16, s.not_billed)
    assert.equal(19, s.errors.cancelled)
    -- Nothing more is sent, and no callback is left to run.
    socket.sleep(0.6)
    local n = #emu:requests()
    assert.is_true(n <= 4, n .. " requests sent")
    assert.equal(0, (c:poll(0)))
    assert.equal(1, calls)
    -- The client still works.
    emu:reset()
    local results, summary = c:batch("recognize", { urls[20] })
    assert.equal(1, summary.ok)
    assert.equal(SEED_TEXT, results[1].text)
    c:close()
  end)
end)

describe("client:submit, poll, wait", function()
  local emu
  local LATENCY = 0.3

  setup(function() emu = new_emulator(LATENCY * 1000) end)
  teardown(function() stop_clean(emu) end)
  before_each(function() emu:reset() end)

  it("20 jobs: poll(0) never blocks, each callback runs once, from poll only, pending counts down", function()
    local c = client_of(emu, { concurrency = 20 })
    local urls = images(emu, 20)
    local jobs, calls, order = {}, {}, {}
    for i = 1, 20 do
      jobs[i] = c:submit("recognize", urls[i], nil, function(res, err, job)
        calls[i] = (calls[i] or 0) + 1
        order[#order + 1] = { i = i, res = res, err = err, job = job }
      end)
      assert.equal("queued", jobs[i].state)
    end
    assert.equal(20, c:pending())
    -- submit neither runs a callback nor sends anything.
    socket.sleep(LATENCY + 0.1)
    assert.same({}, calls)
    assert.same({}, emu:requests())

    local worst, polls, pendings = 0, 0, {}
    local t0 = now()
    while true do
      local t = now()
      local pending, errs = c:poll(0)
      worst = math.max(worst, now() - t)
      polls = polls + 1
      assert.is_nil(errs)
      pendings[#pendings + 1] = pending
      assert.equal(pending, c:pending())
      if pending == 0 or now() - t0 > 10 then break end
      socket.sleep(0.005)
    end
    local took = now() - t0
    assert.is_true(worst < widened(0.05), "the slowest poll(0) took " .. worst .. " s")
    assert.equal(20, pendings[1])
    for k = 2, #pendings do assert.is_true(pendings[k] <= pendings[k - 1]) end
    assert.equal(0, pendings[#pendings])
    assert.is_true(polls > 10)
    -- All at once (concurrency 20): about one latency, not 20.
    assert.is_true(took >= LATENCY - 0.02 and took < widened(3 * LATENCY), "took " .. took)
    for i = 1, 20 do assert.equal(1, calls[i], "callback " .. i) end
    assert.equal(20, #order)
    for _, o in ipairs(order) do
      assert.is_true(rawequal(jobs[o.i], o.job))
      assert.is_nil(o.err)
      assert.equal(SEED_TEXT, o.res.text)
      assert.equal("done", o.job.state)
      assert.is_true(rawequal(o.res, o.job.result))
      assert.equal(1, o.res.attempts)
    end
    -- Each job's result is its own request's answer.
    local g = by_url(emu:requests())
    for i = 1, 20 do assert.equal(g[urls[i]][1].request_id, jobs[i].result.request_id) end
    -- Nothing runs twice.
    assert.equal(0, (c:poll(0)))
    assert.is_nil(c:wait())
    for i = 1, 20 do assert.equal(1, calls[i]) end
    local s = c:stats()
    assert.same({ 20, 20, 20 }, { s.requests, s.attempts, s.billed })
    c:close()
  end)

  it("poll(timeout) returns as soon as a job finishes, and not before", function()
    local c = client_of(emu)
    local done = {}
    -- The first request to arrive takes 0.7 s more.
    emu:fault({ mode = "latency", ms = 700, times = 1 })
    local slow = c:submit("recognize", images(emu, 1, "slow")[1], nil, function() done[#done + 1] = "slow" end)
    assert.equal(1, (c:poll(0.05))) -- sent first: it takes the fault
    c:submit("handwriting", images(emu, 1, "fast")[1], nil, function() done[#done + 1] = "fast" end)
    local t = now()
    local pending = c:poll(5)
    local took = now() - t
    assert.equal(1, pending)
    assert.same({ "fast" }, done)
    assert.is_true(took >= LATENCY - 0.05 and took < LATENCY + 0.3, "poll(5) took " .. took)
    -- A poll that times out first: about its timeout, the job still pending.
    t = now()
    assert.equal(1, (c:poll(0.1)))
    took = now() - t
    assert.is_true(took >= 0.09 and took < widened(0.3), "poll(0.1) took " .. took)
    assert.equal("running", slow.state)
    assert.equal(0, (c:poll(5)))
    assert.same({ "fast", "slow" }, done)
    c:close()
  end)

  it("wait() blocks until every job is done and returns nil when no callback raised", function()
    local c = client_of(emu, { concurrency = 4 })
    local ran, results = 0, {}
    local urls = images(emu, 10)
    urls[5] = emu.images .. "missing.png?i=5"
    for i = 1, 10 do
      c:submit("recognize", urls[i], nil, function(res, err, job)
        ran = ran + 1
        results[i] = { res = res, err = err, job = job }
      end)
    end
    local t = now()
    assert.is_nil(c:wait())
    local took = now() - t
    assert.equal(10, ran)
    assert.equal(0, c:pending())
    -- 10 jobs, 4 at a time: 3 latencies.
    assert.is_true(took >= 3 * LATENCY - 0.02 and took < widened(5 * LATENCY), "wait took " .. took)
    for i = 1, 10 do
      local r = results[i]
      if i == 5 then
        assert.is_nil(r.res)
        assert.is_true(aliocr.is_error(r.err))
        assert.equal("api", r.err.kind)
        assert.is_true(rawequal(r.err, r.job.error))
      else
        assert.is_nil(r.err)
        assert.equal(SEED_TEXT, r.res.text)
      end
      assert.equal("done", r.job.state)
    end
    assert.equal(10, #emu:requests())
    local s = c:stats()
    assert.same({ 10, 9, 1, 0, 1 }, { s.requests, s.billed, s.not_billed, s.unknown, s.errors.api })
    -- With nothing pending, wait returns at once.
    t = now()
    assert.is_nil(c:wait())
    assert.is_true(now() - t < 0.05)
    c:close()
  end)

  -- Issue 14, finding 12: errors never pass silently.
  it("a callback that raises: poll raises that error (a table keeps its identity); the others still run", function()
    local c = client_of(emu)
    local ran = {}
    local boom = { "boom from callback 3" }
    for i = 1, 5 do
      c:submit("recognize", images(emu, 5)[i], nil, function()
        ran[#ran + 1] = i
        if i == 3 then error(boom) end
      end)
    end
    local reported = {}
    local deadline = now() + 5
    while now() < deadline do
      local ok, pending = pcall(c.poll, c, 0.05)
      if not ok then
        reported[#reported + 1] = pending
      elseif pending == 0 then
        break
      end
    end
    assert.equal(0, c:pending())
    c:wait() -- callbacks left over from the poll that raised
    table.sort(ran)
    assert.same({ 1, 2, 3, 4, 5 }, ran)
    assert.equal(1, #reported)
    assert.equal(boom, reported[1])
    assert.equal(0, (c:poll(0)))
    assert.equal(5, c:stats().billed)
    c:close()
  end)

  it("wait() raises a callback's error as it is; wait again goes on with the others", function()
    local c = client_of(emu)
    local ran = 0
    for i = 1, 4 do
      c:submit("handwriting", images(emu, 4)[i], nil, function()
        ran = ran + 1
        if i % 2 == 0 then error("callback " .. i .. " failed", 0) end
      end)
    end
    local raised = {}
    for _ = 1, 4 do
      local ok, e = pcall(c.wait, c)
      if ok then break end
      raised[#raised + 1] = e
    end
    assert.equal(4, ran)
    assert.equal(0, c:pending())
    table.sort(raised)
    assert.same({ "callback 2 failed", "callback 4 failed" }, raised)
    assert.is_nil(c:wait())
    c:close()
  end)

  it("misuse of submit and poll raises, and queues nothing", function()
    local c = client_of(emu)
    local url = emu.image
    assert.has_error(function() c:submit("ocr", url) end)
    assert.has_error(function() c:submit("recognize", 42) end)
    assert.has_error(function() c:submit("recognize", "file:///etc/passwd") end)
    assert.has_error(function() c:submit("recognize", url, nil, "not a function") end)
    assert.has_error(function() c:submit("recognize", url, { nope = 1 }) end)
    assert.has_error(function() c:poll(-1) end)
    assert.has_error(function() c:poll("soon") end)
    assert.equal(0, c:pending())
    assert.equal(0, (c:poll(0)))
    assert.same({}, emu:requests())
    assert.equal(0, c:stats().requests)
    -- A job without a callback: fine, its result is on the job.
    local job = c:submit("recognize", url)
    assert.is_nil(c:wait())
    assert.equal("done", job.state)
    assert.equal(SEED_TEXT, job.result.text)
    c:close()
  end)
end)

describe("job:cancel", function()
  local emu
  local LATENCY = 0.3

  setup(function() emu = new_emulator(LATENCY * 1000) end)
  teardown(function() stop_clean(emu) end)
  before_each(function() emu:reset() end)

  it("a queued job and a running one: true once, no callback, accounted once", function()
    local c = client_of(emu, { concurrency = 2 })
    local urls = images(emu, 4)
    local ran, jobs = {}, {}
    for i = 1, 4 do
      jobs[i] = c:submit("recognize", urls[i], nil, function() ran[#ran + 1] = i end)
    end
    -- Jobs 1 and 2 go out (and reach the emulator); 3 and 4 wait for a slot.
    assert.equal(4, (c:poll(0.1)))
    assert.same({ "running", "running", "queued", "queued" },
      { jobs[1].state, jobs[2].state, jobs[3].state, jobs[4].state })

    assert.is_true(jobs[4]:cancel())
    assert.equal("cancelled", jobs[4].state)
    assert.is_false(jobs[4]:cancel())
    assert.equal(3, c:pending())

    assert.is_true(jobs[1]:cancel())
    assert.equal("cancelled", jobs[1].state)
    assert.is_false(jobs[1]:cancel())
    -- Its slot goes to job 3 at the next poll, not from inside cancel
    -- (issue 14, finding 4).
    assert.equal("queued", jobs[3].state)
    assert.equal(2, c:pending())
    c:poll(0)
    assert.equal("running", jobs[3].state)

    assert.is_nil(c:wait())
    table.sort(ran)
    assert.same({ 2, 3 }, ran)
    assert.equal("done", jobs[2].state)
    assert.is_false(jobs[2]:cancel())
    assert.equal("done", jobs[2].state)
    assert.is_false(jobs[1]:cancel())
    assert.is_nil(jobs[1].result)
    assert.is_nil(jobs[4].result)

    local s = c:stats()
    assert.equal(4, s.requests)
    assert.equal(3, s.attempts) -- job 4 was never sent
    assert.equal(2, s.billed)
    assert.equal(1, s.not_billed) -- the queued one
    assert.equal(1, s.unknown)    -- the running one: it may have been billed
    assert.equal(2, s.errors.cancelled)
    check_accounting(s)
    -- The cancelled running request did reach the emulator; the queued one never.
    local g = by_url(log_of(emu, 3))
    assert.is_table(g[urls[1]])
    assert.is_nil(g[urls[4]])
    socket.sleep(LATENCY)
    assert.is_nil(by_url(emu:requests())[urls[4]])
    c:close()
  end)

  it("a job waiting for a retry: true once, not sent again, no callback, not billed", function()
    emu:fault({ mode = "service_unavailable", times = 1 })
    local c = client_of(emu, { retry_delay = 1000, retry_max_delay = 1000 })
    local ran = 0
    local job = c:submit("recognize", emu.image, nil, function() ran = ran + 1 end)
    local deadline = now() + 3
    while job.state ~= "retrying" and now() < deadline do c:poll(0.05) end
    assert.equal("retrying", job.state)
    assert.equal(1, job.attempts)
    assert.equal(1, c:pending())
    assert.is_true(job:cancel())
    assert.equal("cancelled", job.state)
    assert.is_false(job:cancel())
    assert.equal(0, c:pending())
    assert.equal(0, (c:poll(0)))
    assert.is_nil(c:wait())
    assert.equal(0, ran)
    local s = c:stats()
    assert.same({ 1, 1, 0, 1, 0, 1 }, { s.requests, s.attempts, s.billed, s.not_billed, s.unknown, s.errors.cancelled })
    check_accounting(s)
    local log = emu:requests()
    assert.equal(1, #log)
    assert.equal(503, log[1].status)
    assert.equal(0, emu:ledger().total.billed)
    c:close()
  end)

  it("a finished job: false, and its callback ran once", function()
    local c = client_of(emu)
    local ran = 0
    local job = c:submit("handwriting", emu.image, nil, function() ran = ran + 1 end)
    assert.is_nil(c:wait())
    assert.is_false(job:cancel())
    assert.equal("done", job.state)
    assert.equal(1, ran)
    local s = c:stats()
    assert.same({ 1, 1, 0 }, { s.requests, s.billed, s.errors.cancelled or 0 })
    c:close()
  end)

  it("close() with jobs pending cancels them: no callback runs, each is accounted once", function()
    local c = client_of(emu, { concurrency = 2 })
    local urls = images(emu, 5)
    local ran, jobs, spies = 0, {}, {}
    for i = 1, 5 do
      jobs[i] = c:submit("recognize", urls[i], nil, function() ran = ran + 1 end)
      spies[i] = spy.on(jobs[i], "_cancel")
    end
    assert.equal(5, (c:poll(0.1)))
    local before = c:stats()
    assert.same({ 0, 2 }, { before.requests, before.attempts })
    assert.is_true(c:close())
    assert.is_true(c:close())
    for i = 1, 5 do
      assert.spy(spies[i]).was.called(1)
      assert.spy(spies[i]).was.returned_with(true)
      assert.equal("cancelled", jobs[i].state)
      assert.is_false(jobs[i]:cancel())
    end
    local stats_table = c:stats() -- readable after close
    assert.equal(5, stats_table.requests)
    assert.equal(2, stats_table.unknown)
    assert.equal(3, stats_table.not_billed)
    assert.equal(0, stats_table.billed)
    assert.equal(5, stats_table.errors.cancelled)
    socket.sleep(LATENCY + 0.2)
    assert.equal(0, ran)
    -- The queued ones were never sent.
    local g = by_url(emu:requests())
    for i = 3, 5 do assert.is_nil(g[urls[i]]) end
    assert.has_error(function() c:poll(0) end)
    assert.has_error(function() c:wait() end)
    assert.equal(0, c:pending())
  end)
end)

describe("jobs and blocking calls together", function()
  local emu
  local LATENCY = 0.3

  setup(function() emu = new_emulator(LATENCY * 1000) end)
  teardown(function() stop_clean(emu) end)
  before_each(function() emu:reset() end)

  it("a blocking recognize while jobs are under way: it works, their callbacks run at the next poll", function()
    local c = client_of(emu)
    local ran = {}
    local urls = images(emu, 3)
    for i = 1, 3 do
      c:submit(i == 2 and "handwriting" or "recognize", urls[i], nil, function(res, err)
        ran[#ran + 1] = { i = i, res = res, err = err }
      end)
    end
    assert.equal(3, (c:poll(0.05)))
    local t = now()
    local res, err = c:recognize(emu.image .. "?blocking", { show = 1 })
    local took = now() - t
    assert.is_nil(err)
    assert.equal(#SEED_WORDS, #res.lines)
    assert.is_true(took >= LATENCY - 0.02 and took < widened(2 * LATENCY), "recognize took " .. took)
    -- Callbacks run only from poll or wait, never from a blocking call.
    assert.same({}, ran)
    -- The jobs' transfers were driven meanwhile: the next poll(0) runs them all.
    t = now()
    local pending, errs = c:poll(0)
    assert.is_true(now() - t < 0.05)
    assert.equal(0, pending)
    assert.is_nil(errs)
    assert.equal(3, #ran)
    for _, r in ipairs(ran) do
      assert.is_nil(r.err)
      if r.i == 2 then assert.is_table(r.res.lines[1].position) else assert.equal(SEED_TEXT, r.res.text) end
    end
    local s = c:stats()
    assert.same({ 4, 4, 4 }, { s.requests, s.attempts, s.billed })
    assert.equal(4, emu:ledger().total.billed)
    c:close()
  end)

  it("a blocking call starts the jobs submitted before it", function()
    local c = client_of(emu)
    local ran = 0
    for i = 1, 3 do c:submit("recognize", images(emu, 3)[i], nil, function() ran = ran + 1 end) end
    assert(c:recognize(emu.image))
    local returned = now()
    c:wait()
    c:close()
    assert.equal(3, ran)
    -- Their requests went out with the blocking call's, before it returned
    -- (their answers are taken by the worker thread, and handed over by the
    -- next poll). The emulator logs a request's start time once answered.
    local log = emu:requests()
    assert.equal(4, #log)
    for i = 1, 4 do assert.is_true(log[i].time <= returned, "request " .. i .. " began after the blocking call") end
  end)

  it("a closed client raises on submit, poll, wait and batch; pending() is 0 and stats() readable", function()
    local c = client_of(emu)
    c:close()
    assert.has_error(function() c:submit("recognize", emu.image, nil, function() end) end)
    assert.has_error(function() c:poll(0) end)
    assert.has_error(function() c:wait() end)
    assert.equal(0, c:pending())
    assert.equal(0, c:stats().requests)
    assert.has_error(function() c:batch("recognize", { emu.image }) end)
    local ok, e = pcall(c.submit, c, "recognize", emu.image)
    assert.is_false(ok)
    assert.matches("closed", e)
    assert.same({}, emu:requests())
  end)
end)
