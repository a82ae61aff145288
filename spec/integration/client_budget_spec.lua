-- Budgets (the `budget` option, lua/aliocr/budget.lua): a cap on the calls a
-- client may have billed. An attempt takes a unit before it is sent; an
-- answer that was not billed gives it back; an unknown one (a timeout after
-- the request went out) keeps it. A call that finds none left is not sent:
-- an error of kind budget, not billed. Blocking calls, jobs and batches
-- share one budget; the emulator's ledger bills exactly the limit.
local aliocr = require("aliocr")
local emulator = require("helpers.emulator")
local socket = require("socket")
local util = require("helpers.util")

describe("budgets", function()
  local emu

  setup(function() emu = emulator.start({ "--port", "0", "--appcode", "demo" }) end)
  teardown(function() util.stop_clean(emu) end)
  before_each(function() emu:reset() end)

  local function client(limit, extra)
    local o = { appcode = "demo", endpoint = emu.endpoint, budget = { limit = limit }, retry_delay = 0 }
    for k, v in pairs(extra or {}) do o[k] = v end
    return aliocr.new(o)
  end

  local function ledger() return emu:settled_ledger().total end

  it("blocking calls: the limit is billed, the rest refused before they are sent", function()
    local c = client(3)
    local ok, refused = 0, 0
    for _ = 1, 5 do
      local res, err = c:recognize(emu.image)
      if res then ok = ok + 1 else
        assert.same({ "budget", false, "BUDGET_EXCEEDED", "aliocr", false, 0 },
          { err.kind, err.billed, err.code, err.code_source, err.retryable, err.attempts })
        assert.matches("not sent: the budget of 3 billed calls is used up", err.msg)
        refused = refused + 1
      end
    end
    assert.same({ 3, 2 }, { ok, refused })
    assert.same({ requests = 3, billed = 3 }, { requests = ledger().requests, billed = ledger().billed })
    local s = c:stats()
    assert.same({ 5, 3, 2, 2 }, { s.requests, s.billed, s.not_billed, s.errors.budget })
    assert.same({ limit = 3, used = 3, refused = 2 }, { limit = s.budget.limit, used = s.budget.used,
      refused = s.budget.refused })
    c:close()
  end)

  it("an answer that was not billed gives its unit back; a retry takes it again", function()
    local c = client(2)
    -- Two vendor errors (666, not billed), then two successes: all sent.
    for _ = 1, 2 do
      local _, err = c:recognize(emu.images .. "missing.png")
      assert.equal("api", err.kind)
    end
    for _ = 1, 2 do assert(c:recognize(emu.image)) end
    assert.equal("budget", select(2, c:recognize(emu.image)).kind)
    c:close()
    emu:reset()
    -- A 503 (not billed, retried) and its retry under a budget of one.
    emu:fault({ mode = "gateway", status = 503, message = "Service Unavailable", times = 1 })
    c = client(1)
    local res = assert(c:recognize(emu.image))
    assert.equal(2, res.attempts)
    assert.same({ 1, 2 }, { ledger().billed, ledger().requests })
    c:close()
  end)

  it("an attempt whose billing is unknown keeps its unit", function()
    emu:fault({ mode = "latency", ms = 1500, times = 1 })
    local c = client(2, { timeout = 0.5, retries = 0 })
    local _, err = c:recognize(emu.image)
    assert.same({ "timeout", nil }, { err.kind, err.billed })
    assert(c:recognize(emu.image))
    local _, refused = c:recognize(emu.image)
    assert.equal("budget", refused.kind)
    assert.equal(2, c:stats().budget.used)
    c:close()
  end)

  it("jobs, a batch and blocking calls share one budget: the ledger bills exactly the limit", function()
    local c = client(10, { concurrency = 4 })
    local results = {}
    for i = 1, 6 do
      c:submit("recognize", emu.image .. "?s=" .. i, nil, function(res, err) results[#results + 1] = res or err end)
    end
    local batch = c:batch("recognize", { emu.image, emu.image, emu.image, emu.image, emu.image, emu.image },
      { concurrency = 3 })
    for _, r in ipairs(batch) do results[#results + 1] = r end
    for _ = 1, 3 do
      local res, err = c:recognize(emu.image)
      results[#results + 1] = res or err
    end
    c:wait()
    local billed, refused = 0, 0
    for _, r in ipairs(results) do
      if r.billed == true then billed = billed + 1 end
      if aliocr.is_error(r) and r.kind == "budget" then refused = refused + 1 end
    end
    assert.same({ 15, 10, 5 }, { #results, billed, refused })
    assert.same({ requests = 10, billed = 10 }, { requests = ledger().requests, billed = ledger().billed })
    local s = c:stats()
    assert.same({ 15, 10, 5, 5 }, { s.requests, s.billed, s.errors.budget, s.budget.refused })
    c:close()
  end)

  it("a local image is not stored for a call the budget would refuse (blocking and jobs)", function()
    local uploads = 0
    local c = client(1, { uploader = function()
      uploads = uploads + 1
      return emu.image
    end })
    local png = "\137PNG\r\n\26\n" .. ("\0"):rep(64)
    assert(c:recognize({ bytes = png }))
    local _, err = c:recognize({ bytes = png })
    assert.equal("budget", err.kind)
    local got
    c:submit("recognize", { bytes = png }, nil, function(_, e) got = e end)
    c:wait()
    assert.equal("budget", got.kind)
    assert.same({ 1, 1, 2 }, { uploads, c:stats().uploads, c:stats().budget.refused })
    c:close()
  end)

  it("a cancelled job gives its unit back when nothing of it went out", function()
    local c = client(1)
    local job = c:submit("recognize", emu.image)
    assert.is_true(job:cancel()) -- queued: no unit taken
    assert(c:recognize(emu.image))
    assert.equal(1, c:stats().budget.used)
    c:close()
  end)

  it("per period: a new window of wall-clock time has the whole limit again", function()
    local c = aliocr.new({ appcode = "demo", endpoint = emu.endpoint, budget = { limit = 2, period = 1 } })
    -- Start at the beginning of a window, so that three calls fall in it.
    socket.sleep(1 - (socket.gettime() % 1) + 0.01)
    assert(c:recognize(emu.image))
    assert(c:recognize(emu.image))
    assert.equal("budget", select(2, c:recognize(emu.image)).kind)
    socket.sleep(1 - (socket.gettime() % 1) + 0.01)
    assert(c:recognize(emu.image))
    assert.same({ 3, 1 }, { c:stats().billed, c:stats().budget.refused })
    c:close()
  end)

  it("misuse raises: no limit, a bad limit or period, a shared dict outside nginx, an unknown field", function()
    for _, case in ipairs({
      { {}, "budget.limit is needed" },
      { { limit = -1 }, "budget.limit must be a whole number >= 0" },
      { { limit = 1.5 }, "budget.limit must be a whole number >= 0" },
      { { limit = 1, period = 0 }, "budget.period must be a positive number" },
      { { limit = 1, dict = "aliocr" }, "budget.dict names a lua_shared_dict: it works only inside nginx" },
      { { limit = 1, key = "k" }, "budget.key names the entry in budget.dict: give dict too" },
      { { limit = 1, max = 2 }, "unknown budget option 'max'" },
    }) do
      local ok, e = pcall(aliocr.new, { appcode = "demo", endpoint = emu.endpoint, budget = case[1] })
      assert.is_false(ok)
      assert.matches(case[2], e, 1, true)
    end
  end)
end)
