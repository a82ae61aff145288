-- The rate limiter (lua/aliocr/limiter.lua) on a clock of its own: the
-- fixed rate's pacing, the adaptive rate's start, waves and climb, holds
-- (a first wave's, Retry-After's) and what stats() counts. No server: the
-- client's use of it is in spec/integration/client_rate_spec.lua.
local limiter = require("aliocr.limiter")
local options = require("aliocr.options")

-- The clock's step: every loop below asks every STEP seconds, as a greedy
-- sender would (coarse enough for valgrind's runs).
local STEP = 0.005

-- Takes every token that comes between `from` and `to` (seconds), asking
-- every STEP; returns the times granted.
local function greedy(l, from, to)
  local granted = {}
  for i = 0, math.floor((to - from) / STEP) - 1 do
    local t = from + i * STEP
    if l:take(t) == 0 then granted[#granted + 1] = t end
  end
  return granted
end

describe("aliocr.limiter", function()
  describe("a fixed rate (qps)", function()
    it("paces a greedy sender: never more than qps in any second, and no less over ten", function()
      local l = limiter.new({ qps = 5 })
      local granted = greedy(l, 0, 10)
      assert.is_true(#granted >= 49 and #granted <= 51, #granted .. " granted")
      for i = 6, #granted do
        assert.is_true(granted[i] - granted[i - 5] >= 1 - 1e-6, "6 within a second at " .. granted[i])
      end
    end)

    it("says how long to wait, and takes nothing when it says so", function()
      local l = limiter.new({ qps = 4 })
      assert.are.equal(0, l:take(100))
      local wait = l:ready(100)
      assert.is_true(math.abs(wait - 0.25) < 1e-9, tostring(wait))
      assert.is_true(l:take(100.1) > 0)
      assert.are.equal(0, l:take(100.25))
    end)

    it("sends no burst after a pause: one token at most is kept", function()
      local l = limiter.new({ qps = 10 })
      assert.are.equal(0, l:take(0))
      assert.are.equal(0, l:take(60))
      assert.is_true(l:take(60) > 0)
    end)

    it("is not changed by what the gateway answers", function()
      local l = limiter.new({ qps = 3 })
      l:take(0)
      for i = 1, 20 do l:answer(i * 0.01, true, 0) end
      assert.are.equal(3, l:stats().rate)
      assert.are.equal(20, l:stats().throttled)
      assert.are.equal(0, l:stats().decreases)
    end)
  end)

  describe("an adaptive rate", function()
    it("starts at START calls/s and doubles every second while calls pass", function()
      local l = limiter.new({ adaptive = true })
      assert.are.equal(limiter.START, l:stats().rate)
      local t = 0
      while t < 3 do
        if l:take(t) == 0 then l:answer(t + 0.005, false, t) end
        t = t + STEP
      end
      local rate = l:stats().rate
      -- Three seconds of doubling, bounded by twice what was sent.
      assert.is_true(rate > limiter.START * 4 and rate <= limiter.START * 8 + 1e-9, tostring(rate))
    end)

    it("never goes above qps when both are given", function()
      local l = limiter.new({ adaptive = true, qps = 3 })
      assert.are.equal(3, l:stats().rate)
      local t = 0
      while t < 20 do
        if l:take(t) == 0 then l:answer(t + 0.005, false, t) end
        t = t + STEP
      end
      assert.are.equal(3, l:stats().rate)
    end)

    it("a first wave sets the rate to BETA of halfway between what passed and what was sent, then holds", function()
      local l = limiter.new({ adaptive = true })
      -- One attempt taken from the bucket; the answers below stand for more
      -- under way (jobs started before the limiter had a rate).
      assert.are.equal(0, l:take(0.4))
      for i = 1, 6 do l:answer(0.5 + i * 0.001, false, 0.4) end
      l:answer(0.51, true, 0.4)
      assert.are.equal(1, l:stats().decreases)
      -- Answers of the same wave refine it: 8 passed in all, 1 sent.
      l:answer(0.52, false, 0.4)
      l:answer(0.53, false, 0.4)
      l:answer(0.54, true, 0.4)
      assert.are.equal(1, l:stats().decreases)
      local want = limiter.BETA * (8 + 1) / 2
      assert.is_true(math.abs(l:stats().rate - want) < 1e-9, l:stats().rate .. " for " .. want)
      assert.is_true(l:ready(1.4) > 0, "held within the window")
      assert.are.equal(0, l:ready(1.52))
    end)

    it("a later wave lowers the rate once, by BETA of the lower of the rate and what was sent", function()
      local l = limiter.new({ adaptive = true, qps = 10 })
      local t = 0
      -- A second of calls at the rate, then the first throttle.
      while t < 2 do
        if l:take(t) == 0 then l:answer(t + 0.005, false, t) end
        t = t + STEP
      end
      l:answer(t, true, t - 0.005)
      local after_first = l:stats().rate
      assert.is_true(after_first < 10)
      -- Climb for a while, then a second throttle: one decrease.
      t = t + 1.5
      local t_end = t + 5
      while t < t_end do
        if l:take(t) == 0 then l:answer(t + 0.005, false, t) end
        t = t + STEP
      end
      local before = l:stats().rate
      l:answer(t, true, t - 0.005)
      local after = l:stats().rate
      assert.are.equal(2, l:stats().decreases)
      assert.is_true(after <= before * limiter.BETA + 1e-9, before .. " -> " .. after)
      -- More throttles within the window: no further decrease.
      l:answer(t + 0.2, true, t + 0.1)
      l:answer(t + 0.5, true, t + 0.4)
      assert.are.equal(2, l:stats().decreases)
      assert.are.equal(after, l:stats().rate)
      -- Then it climbs back while calls pass, above what it was lowered to.
      local t2 = t + 10
      t = t + 1
      while t < t2 do
        if l:take(t) == 0 then l:answer(t + 0.005, false, t) end
        t = t + STEP
      end
      assert.is_true(l:stats().rate > after, after .. " -> " .. l:stats().rate)
    end)

    it("does not climb far above what is sent (a client held back elsewhere)", function()
      local l = limiter.new({ adaptive = true })
      local t = 0
      -- One call a second, for a minute: passes every time.
      for _ = 1, 60 do
        assert.are.equal(0, l:take(t))
        l:answer(t + 0.01, false, t)
        t = t + 1
      end
      assert.is_true(l:stats().rate <= 2 * limiter.START + 1e-9, tostring(l:stats().rate))
    end)
  end)

  describe("Retry-After", function()
    it("holds every attempt for as long as it says, adaptive or not", function()
      for _, s in ipairs({ { qps = 100 }, { adaptive = true } }) do
        local l = limiter.new(s)
        assert.are.equal(0, l:take(0))
        l:answer(0.01, true, 0, 3)
        assert.is_true(l:ready(2.9) > 0)
        assert.is_true(l:take(2.99) > 0)
        assert.is_true(l:ready(3.02) == 0 or l:ready(3.02) < 1, tostring(l:ready(3.02)))
      end
    end)

    it("holds them after an answer that was not a throttle too (a 503)", function()
      for _, s in ipairs({ { qps = 100 }, { adaptive = true } }) do
        local l = limiter.new(s)
        assert.are.equal(0, l:take(0))
        l:answer(0.01, false, 0, 3)
        assert.is_true(l:ready(2.9) > 0)
        assert.is_true(l:take(2.99) > 0)
        assert.are.equal(0, l:take(3.1))
      end
    end)
  end)

  describe("stats", function()
    it("counts the attempts delayed and the seconds they waited", function()
      local l = limiter.new({ qps = 1 })
      l:delayed(0.5)
      l:delayed(0.25)
      local s = l:stats()
      assert.are.equal(2, s.delayed)
      assert.are.equal(0.75, s.waited)
    end)
  end)

  describe("in a shared dict", function()
    -- A stand-in for a lua_shared_dict (add, get, set, delete), so that the
    -- limiter's state goes through its text form as it does inside nginx.
    local function dict()
      local d = { data = {} }
      function d.add(self, k, v)
        if self.data[k] ~= nil then return false, "exists" end
        self.data[k] = v
        return true
      end
      function d.get(self, k) return self.data[k] end
      function d.set(self, k, v) self.data[k] = v return true end
      function d.delete(self, k) self.data[k] = nil end
      return d
    end
    local function shared(d, s)
      s.dict, s.key, s.sleep = d, "k", function() end
      return limiter.new(s)
    end

    it("starts afresh from a foreign or corrupted value: no error, no endless wait", function()
      local words = 9 + 4 * 10 -- what the state is written as
      local function of(fields)
        local out = {}
        for i = 1, words do out[i] = fields[i] or "0" end
        return table.concat(out, " ")
      end
      for _, value in ipairs({
        ("x "):rep(words),                       -- not numbers
        of({ "0", "1" }),                        -- a rate of 0: every wait infinite
        of({ "-5", "1" }),                       -- a negative rate
        of({ "5", "-1e9" }),                     -- a debt of tokens never repaid
        of({ "5", "1", "1e12" }),                -- counted in the far future
        of({ "5", "1", "-", "1e12" }),           -- held for ever
        of({ "5", "1e300" }),                    -- a burst of tokens
        of({ "5", "1", "-", "0", "-", "-", "1e999" }),
        "garbage", 42,
      }) do
        local d = dict()
        d.data.k = value
        local l = shared(d, { qps = 5 })
        local ok, wait = pcall(l.take, l, 100)
        assert.is_true(ok, tostring(wait))
        assert.are.equal(0, wait, tostring(value):sub(1, 40))
        assert.is_true(l:take(100) > 0, "a second token at once from " .. tostring(value):sub(1, 40))
        assert.is_nil(d.data["k:lock"])
        assert.are.equal(5, l:stats().rate)
      end
    end)

    it("keeps each client to its own qps when clients with other settings share the key", function()
      for _, other in ipairs({ { qps = 100 }, { adaptive = true }, { adaptive = true, qps = 50 } }) do
        for _, first in ipairs({ "other", "slow" }) do
          local d = dict()
          local o, slow
          if first == "other" then
            o, slow = shared(d, other), shared(d, { qps = 2 })
          else
            slow, o = shared(d, { qps = 2 }), shared(d, other)
          end
          -- Both greedy, the other one's calls passing (an adaptive rate climbs).
          -- (Every 20 ms: each step encodes and decodes the dict's state.)
          local granted, t = {}, 0
          while t < 4 do
            if o:take(t) == 0 then o:answer(t + 0.001, false, t) end
            if slow:take(t) == 0 then granted[#granted + 1] = t end
            t = t + 4 * STEP
          end
          assert.is_true(#granted <= 9, #granted .. " granted at qps = 2 beside " .. first)
          for i = 3, #granted do
            assert.is_true(granted[i] - granted[i - 2] >= 1 - 1e-6, "3 within a second at " .. granted[i])
          end
        end
      end
    end)
  end)

  describe("the option", function()
    it("takes qps, adaptive or both, and refuses anything else", function()
      assert.are.same({ qps = 5, adaptive = false, key = "aliocr:rate" }, options.rate_limit({ qps = 5 }))
      assert.are.same({ adaptive = true, key = "aliocr:rate" }, options.rate_limit({ adaptive = true }))
      for _, case in ipairs({
        { {}, "rate_limit needs qps, or adaptive = true" },
        { { adaptive = false }, "rate_limit needs qps, or adaptive = true" },
        { { qps = 0 }, "rate_limit.qps must be a positive number" },
        { { qps = -1 }, "rate_limit.qps must be a positive number" },
        { { qps = 0 / 0 }, "rate_limit.qps must be a positive number" },
        { { qps = "5" }, "rate_limit.qps must be a number" },
        { { adaptive = "yes" }, "rate_limit.adaptive must be a boolean" },
        { { rate = 5 }, "unknown rate_limit option 'rate'" },
        { { qps = 2e6 }, "rate_limit.qps must be at most 1000000" },
        { { qps = 1, dict = "aliocr" }, "rate_limit.dict names a lua_shared_dict: it works only inside nginx" },
        { { qps = 1, key = "k" }, "rate_limit.key names the entry in rate_limit.dict: give dict too" },
      }) do
        local ok, e = pcall(options.rate_limit, case[1], false)
        assert.is_false(ok)
        assert.matches(case[2], e, 1, true)
      end
    end)
  end)
end)
