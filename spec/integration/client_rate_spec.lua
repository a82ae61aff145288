-- Rate limiting (the `rate_limit` option, lua/aliocr/limiter.lua) against the
-- emulator: a fixed qps spaces the attempts the emulator sees (blocking
-- calls, jobs, batches, retries), an adaptive limiter slows down after the
-- emulator's rate limit throttles and is throttled less than a client
-- without one, a Retry-After holds the next attempt, and a job waiting for
-- a token can be cancelled, or its client closed, with nothing sent and the
-- ledger equal to stats(). Lower bounds on time only (a slow machine cannot
-- make them fail); speed is bench/rate.lua's.
local aliocr = require("aliocr")
local core = require("aliocr.core")
local emulator = require("helpers.emulator")
local util = require("helpers.util")

describe("rate limiting", function()
  local emu

  setup(function() emu = emulator.start({ "--port", "0", "--appcode", "demo" }) end)
  teardown(function() util.stop_clean(emu) end)
  before_each(function()
    emu:reset()
  end)

  local function client(rate_limit, extra)
    local o = { appcode = "demo", endpoint = emu.endpoint, rate_limit = rate_limit, retry_delay = 0 }
    for k, v in pairs(extra or {}) do o[k] = v end
    return aliocr.new(o)
  end

  local function arrivals() return emu:arrivals() end

  local assert_spaced = util.assert_paced

  local function assert_ledger_is_stats(c)
    local total = emu:settled_ledger().total
    local s = c:stats()
    assert.same({ total.billed, total.requests }, { s.billed, s.attempts })
  end

  it("qps spaces blocking calls, and stats count what waited", function()
    local c = client({ qps = 8 })
    for _ = 1, 6 do assert(c:recognize(emu.image)) end
    assert_spaced(arrivals(), 8, 6)
    -- (A call that takes longer than 1/8 s finds its token there.)
    local s = c:stats()
    assert.is_true(s.rate_limit.delayed >= 1 and s.rate_limit.delayed <= 5, tostring(s.rate_limit.delayed))
    assert.is_true(s.rate_limit.waited > 0 and s.rate_limit.waited <= 5 / 8 + 0.05, tostring(s.rate_limit.waited))
    assert.equal(8, s.rate_limit.rate)
    assert_ledger_is_stats(c)
    c:close()
  end)

  it("qps spaces jobs and a batch, whatever the concurrency", function()
    local c = client({ qps = 10 }, { concurrency = 8 })
    local done = 0
    for _ = 1, 8 do c:submit("recognize", emu.image, nil, function(res) if res then done = done + 1 end end) end
    c:wait()
    assert.equal(8, done)
    local _, summary = c:batch("recognize", { emu.image, emu.image, emu.image, emu.image }, { concurrency = 4 })
    assert.equal(4, summary.ok)
    assert_spaced(arrivals(), 10, 12)
    assert.is_true(c:stats().rate_limit.delayed >= 10)
    assert_ledger_is_stats(c)
    c:close()
  end)

  it("qps spaces retries too", function()
    emu:fault({ mode = "gateway", status = 503, message = "Service Unavailable", times = 3 })
    local c = client({ qps = 5 }, { retries = 3 })
    local res = assert(c:recognize(emu.image))
    assert.equal(4, res.attempts)
    assert_spaced(arrivals(), 5, 4)
    c:close()
  end)

  it("adaptive: after the emulator throttles, the client slows down and is throttled less than without", function()
    emu:settings({ rate = 5 })
    local function run(rate_limit)
      emu:reset()
      emu:settings({ rate = 5 })
      core.sleep(1.05) -- a fresh window
      local c = client(rate_limit, { retries = 10, retry_delay = 0.05, retry_max_delay = 0.2 })
      local urls = {}
      for i = 1, 30 do urls[i] = emu.image .. "?" .. i end
      local _, summary = c:batch("recognize", urls, { concurrency = 10 })
      local total = emu:settled_ledger().total
      local s = c:stats()
      c:close()
      return summary, total.requests - total.billed, s
    end
    local plain_summary, plain_throttled = run(nil)
    local summary, throttled, s = run({ adaptive = true })
    assert.equal(30, summary.ok)
    assert.is_true(plain_summary.ok <= 30)
    assert.is_true(throttled < plain_throttled, throttled .. " throttled, " .. plain_throttled .. " without")
    assert.equal(throttled, s.rate_limit.throttled)
    assert.is_true(s.rate_limit.decreases >= 1)
    assert.is_true(s.rate_limit.rate < 10, tostring(s.rate_limit.rate))
  end)

  it("a Retry-After holds the retry for as long as it says, and is on the error", function()
    emu:fault({ mode = "gateway", error = "throttled_app", retry_after = 1, times = 1 })
    local c = client({ qps = 100 }, { retries = 1 })
    local res = assert(c:recognize(emu.image))
    assert.equal(2, res.attempts)
    local t = arrivals()
    assert.is_true(t[2] - t[1] >= 0.98, ("%.3f s apart"):format(t[2] - t[1]))
    c:close()
    -- Without a limiter the back-off honours it too; the last error carries it.
    emu:reset()
    emu:fault({ mode = "gateway", error = "throttled_app", retry_after = 1, times = 2 })
    local plain = client(nil, { retries = 1 })
    local _, err = plain:recognize(emu.image)
    assert.same({ "throttled", 1, 2 }, { err.kind, err.retry_after, err.attempts })
    t = arrivals()
    assert.is_true(t[2] - t[1] >= 0.98, ("%.3f s apart"):format(t[2] - t[1]))
    plain:close()
  end)

  it("a Retry-After on a 503 holds the client's next call too, with a limiter", function()
    emu:fault({ mode = "gateway", status = 503, message = "Service Unavailable", retry_after = 2, times = 1 })
    local c = client({ qps = 100 }, { retries = 0 })
    local _, err = c:recognize(emu.image)
    assert.same({ "gateway", 503, 2 }, { err.kind, err.status, err.retry_after })
    assert(c:recognize(emu.image))
    local t = arrivals()
    assert.is_true(t[2] - t[1] >= 1.98, ("%.3f s apart"):format(t[2] - t[1]))
    assert_ledger_is_stats(c)
    c:close()
  end)

  it("a call the budget refuses does not wait for a token first, nor take one", function()
    local c = client({ qps = 1 }, { budget = { limit = 1 } })
    assert(c:recognize(emu.image))
    -- The budget is spent: the next calls and jobs are refused at once, and
    -- none of them counts as an attempt that waited.
    local _, err = c:recognize(emu.image)
    assert.equal("budget", err.kind)
    local jobs = {}
    for i = 1, 3 do jobs[i] = c:submit("recognize", emu.image) end
    c:wait()
    for i = 1, 3 do assert.equal("budget", jobs[i].error.kind) end
    local s = c:stats()
    assert.same({ delayed = 0, waited = 0 }, { delayed = s.rate_limit.delayed, waited = s.rate_limit.waited })
    assert.same({ 5, 1, 4, 4 }, { s.requests, s.attempts, s.budget.refused, s.errors.budget })
    assert_ledger_is_stats(c)
    c:close()
  end)

  it("a job waiting for its token: cancel sends nothing, close sends nothing, the ledger is stats()", function()
    local c = client({ qps = 2 }, { concurrency = 4 })
    local jobs = {}
    for i = 1, 4 do jobs[i] = c:submit("recognize", emu.image) end
    c:poll(0)
    -- One went at once; the others wait for tokens.
    assert.is_true(jobs[2]:cancel())
    c:wait()
    assert.same({ "done", "cancelled", "done", "done" },
      { jobs[1].state, jobs[2].state, jobs[3].state, jobs[4].state })
    assert.equal(false, jobs[2].error.billed)
    assert_ledger_is_stats(c)
    c:close()
    -- Close with the first job done and the others waiting (5 s apart).
    emu:reset()
    c = client({ qps = 0.2 }, { concurrency = 4 })
    for i = 1, 4 do jobs[i] = c:submit("recognize", emu.image) end
    while jobs[1].state ~= "done" do c:poll(0.05) end
    c:close()
    for i = 2, 4 do
      assert.equal("cancelled", jobs[i].state)
      assert.equal(false, jobs[i].error.billed)
    end
    local total = emu:settled_ledger().total
    assert.equal(1, total.requests)
    assert.equal(c:stats().attempts, total.requests)
  end)

  it("a callback that closes the client while others wait for tokens ends them, unsent", function()
    local c = client({ qps = 1 })
    local states = {}
    local jobs = {}
    jobs[1] = c:submit("recognize", emu.image, nil, function() c:close() end)
    for i = 2, 5 do jobs[i] = c:submit("recognize", emu.image) end
    c:wait()
    for i = 1, 5 do states[i] = jobs[i].state end
    assert.same({ "done", "cancelled", "cancelled", "cancelled", "cancelled" }, states)
    assert.equal(1, emu:settled_ledger().total.requests)
  end)
end)
