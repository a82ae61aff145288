-- The fault matrix: every misbehaviour the emulator offers (each fault
-- mode, each gateway error in both error styles, the gateway's own checks,
-- a refused connection), through each face of the client (a single call, a
-- batch, submit/poll) and each transport (libcurl, and nginx's sockets
-- inside nginx, where there is no submit/poll). For every cell: each call's
-- kind, status, billed, retryable, code and attempts as the gateway
-- reference says; every call accounted for exactly once (results, progress,
-- callbacks, stats); and the client's stats equal to the emulator's ledger.
--
-- Each cell starts with a call of the other interface (the fault rules are
-- for interface one only), so that the faulted calls go out on connections
-- used before, where libcurl would resend a request on its own.
local cjson = require("cjson")
local aliocr = require("aliocr")
local emulator = require("helpers.emulator")
local faults = require("helpers.faults")
local nginx = require("helpers.nginx")
local outcome = require("helpers.outcome")
local util = require("helpers.util")

local eventually, slow = util.eventually, util.slow

local BATCH = 3 -- images in a batch, and jobs submitted
-- The warm-up call's options: a row's short timeout is for the faulted calls.
local WARM = { timeout = slow(10) }

local function via_json(v) return cjson.decode(cjson.encode(v)) end

--- Asserts that outcome `o` (helpers.outcome, through JSON) is what `want` says.
local function check(o, want, label)
  if want.ok then
    assert.is_table(o.result, label .. ": an error instead of a result: " .. cjson.encode(o.error))
    assert.equal(1, o.result.ok, label)
    assert.equal(200, o.result.status, label)
    assert.is_true(o.result.billed, label)
    assert.equal(1, o.result.attempts, label)
    assert.is_true(o.result.request_id, label)
    return
  end
  local e = o.error
  assert.is_table(e, label .. ": a result instead of an error")
  local got = cjson.encode(e)
  assert.equal(want.kind, e.kind, label .. ": " .. got)
  assert.equal(want.status, e.status, label .. ": " .. got)
  assert.equal(want.billed, e.billed, label .. ": " .. got)
  assert.equal(want.retryable, e.retryable, label .. ": " .. got)
  assert.equal(want.attempts, e.attempts, label .. ": " .. got)
  assert.equal(0, e.ok, label)
  assert.is_true(e.is_error, label)
  assert.is_truthy(e.msg, label)
  if type(want.code) == "table" then
    local found = false
    for _, c in ipairs(want.code) do found = found or c == e.code end
    assert.is_true(found, label .. ": code " .. tostring(e.code))
  else
    assert.equal(want.code, e.code, label .. ": " .. got)
  end
end

--- Asserts that `stats` account for the warm-up call and `outcomes` exactly
-- once each, and equal the emulator's ledger.
local function check_accounts(emu, row, stats, outcomes, label)
  -- The warm-up call: faulted the same way when the fault is global.
  local records = { row.global and { attempts = row.want.attempts, billed = row.want.billed, kind = row.want.kind }
    or { attempts = 1, billed = true } }
  for _, o in ipairs(outcomes) do
    local r = o.result or o.error
    records[#records + 1] = { attempts = r.attempts, billed = r.billed, kind = o.error and o.error.kind }
  end
  local want = { requests = #records, billed = 0, not_billed = 0, unknown = 0, attempts = 0, errors = {} }
  for _, r in ipairs(records) do
    want.attempts = want.attempts + r.attempts
    if r.billed == true then want.billed = want.billed + 1
    elseif r.billed == false then want.not_billed = want.not_billed + 1
    else want.unknown = want.unknown + 1 end
    if r.kind then want.errors[r.kind] = (want.errors[r.kind] or 0) + 1 end
  end
  local got = { requests = stats.requests, billed = stats.billed, not_billed = stats.not_billed,
    unknown = stats.unknown, attempts = stats.attempts, errors = stats.errors }
  assert.same(want, via_json(got), label .. ": stats")

  -- The request log and the ledger, once every request has reached them (a
  -- stalled one is logged when the emulator is done with it). A request
  -- with an unknown AppCode is logged but charged to no one.
  local expected = row.refused and 0 or stats.attempts
  local log = eventually(function()
    local l = emu:requests()
    if #l >= expected then return l end
  end, slow(10)) or emu:requests()
  assert.equal(expected, #log, label .. ": requests in the emulator's log")
  local ledger = emu:ledger()
  assert.equal(row.unknown_credential and 0 or expected, ledger.total.requests, label .. ": requests in the ledger")
  if stats.unknown == 0 then
    assert.equal(stats.billed, ledger.total.billed, label .. ": billed in the ledger")
  else
    -- Billing the client could not know: the server's count lies between.
    assert.is_true(ledger.total.billed >= stats.billed and ledger.total.billed <= stats.billed + stats.unknown,
      label .. ": ledger billed " .. ledger.total.billed .. ", client " .. cjson.encode(stats))
  end
  assert.equal(ledger.total.requests - ledger.total.billed, ledger.total.not_billed, label)
end

describe("the fault matrix", function()
  local emu, ngx_

  setup(function()
    emu = emulator.start({ "--port", "0", "--https-port", "0", "--appcode", "demo" })
    ngx_ = nginx.start(nginx.test_config(emu.ca_file), { ALIOCR_APPCODE = "demo", ALIOCR_ENDPOINT = emu.endpoint })
  end)

  teardown(function()
    if ngx_ then assert.same({}, ngx_:stop()) end
    util.stop_clean(emu)
  end)

  -- The emulator set up for `row`; the client options and the image URLs.
  local function prepare(row)
    faults.arrange(emu, row)
    local opts = { appcode = "demo", endpoint = emu.endpoint, retries = 1, retry_delay = 0.01,
      timeout = row.timeout or slow(10) }
    if row.refused then opts.endpoint = "http://127.0.0.1:" .. util.closed_port() end
    for k, v in pairs(row.client or {}) do opts[k] = v end
    local urls = {}
    for i = 1, BATCH do urls[i] = emu.image .. "?n=" .. i end
    return opts, urls
  end

  for _, row in ipairs(faults.rows()) do
    describe(row[1], function()
      it("a single call (libcurl)", function()
        local opts, urls = prepare(row)
        local c = aliocr.new(opts)
        c:handwriting(urls[1], WARM)
        local o = via_json(outcome.of(c:recognize(urls[1])))
        check(o, row.want, "call")
        check_accounts(emu, row, c:stats(), { o }, "call")
        c:close()
      end)

      it("a batch (libcurl)", function()
        local opts, urls = prepare(row)
        local c = aliocr.new(opts)
        c:handwriting(urls[1], WARM)
        local progress = {}
        local results, summary = c:batch("recognize", urls, { concurrency = BATCH,
          on_progress = function(done, total) progress[#progress + 1] = done .. "/" .. total end })
        assert.same({ "1/3", "2/3", "3/3" }, progress)
        assert.equal(BATCH, #results)
        local outcomes, ok, billed = {}, 0, 0
        for i, r in ipairs(results) do
          if aliocr.is_error(r) then outcomes[i] = via_json(outcome.of(nil, r)) else
            outcomes[i] = via_json(outcome.of(r))
            ok = ok + 1
          end
          if r.billed then billed = billed + 1 end
          check(outcomes[i], row.want, "batch image " .. i)
        end
        assert.same({ BATCH, ok, BATCH - ok, billed },
          { summary.total, summary.ok, summary.failed, summary.billed })
        check_accounts(emu, row, c:stats(), outcomes, "batch")
        c:close()
      end)

      it("submit and poll (libcurl)", function()
        local opts, urls = prepare(row)
        local c = aliocr.new(opts)
        c:handwriting(urls[1], WARM)
        local calls, jobs = {}, {}
        for i = 1, BATCH do
          calls[i] = 0
          jobs[i] = c:submit("recognize", urls[i], nil, function(res, err)
            calls[i] = calls[i] + 1
            jobs[i].seen = { res = res, err = err }
          end)
        end
        local rounds = 0
        while c:poll(0.05) > 0 do
          rounds = rounds + 1
          assert.is_true(rounds < slow(400), "the jobs never finished")
        end
        assert.equal(0, c:pending())
        local outcomes = {}
        for i, job in ipairs(jobs) do
          assert.equal(1, calls[i], "job " .. i .. "'s callback ran " .. calls[i] .. " times")
          assert.equal("done", job.state)
          assert.equal(job.result, job.seen.res)
          assert.equal(job.error, job.seen.err)
          outcomes[i] = via_json(outcome.of(job.result, job.error))
          check(outcomes[i], row.want, "job " .. i)
          assert.equal((job.result or job.error).attempts, job.attempts)
        end
        -- Nothing is left to run: another poll finds nothing.
        assert.equal(0, c:poll(0))
        for i = 1, BATCH do assert.equal(1, calls[i]) end
        check_accounts(emu, row, c:stats(), outcomes, "jobs")
        c:close()
      end)

      it("a single call inside nginx", function()
        local opts, urls = prepare(row)
        local out = ngx_:post("/case", { client = opts, kind = "recognize", url = urls[1],
          warm = "handwriting", warm_opts = WARM })
        assert.equal("resty", out.transport)
        check(out, row.want, "call inside nginx (" .. tostring(out.message) .. ")")
        check_accounts(emu, row, out.stats, { out }, "call inside nginx")
      end)

      it("a batch inside nginx", function()
        local opts, urls = prepare(row)
        local out = ngx_:post("/batch", { client = opts, kind = "recognize", urls = urls, concurrency = BATCH,
          warm = "handwriting", warm_opts = WARM })
        assert.equal(BATCH, out.progress)
        assert.equal(BATCH, #out.outcomes)
        local ok, billed = 0, 0
        for i, o in ipairs(out.outcomes) do
          check(o, row.want, "batch image " .. i .. " inside nginx")
          if o.result then ok = ok + 1 end
          if (o.result or o.error).billed == true then billed = billed + 1 end
        end
        assert.same({ BATCH, ok, BATCH - ok, billed },
          { out.summary.total, out.summary.ok, out.summary.failed, out.summary.billed })
        check_accounts(emu, row, out.stats, out.outcomes, "batch inside nginx")
      end)
    end)
  end
end)
