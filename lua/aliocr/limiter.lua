--- Client-side rate limiting (the `rate_limit` option): a token bucket in
-- front of every attempt sent to the service, with a fixed rate (`qps`), an
-- adaptive one (`adaptive`), or both (the adaptive rate never above `qps`).
--
-- The adaptive rate follows the idea of the AWS SDKs' "adaptive" retry mode,
-- for a gateway that lets an app make so many calls per second. It starts
-- at START calls per second (or at `qps`) and doubles every second while
-- calls pass, as TCP's slow start does. A throttle (403 `Throttled by ...
-- Flow Control`) starts a *wave*: the answers to what was sent before it,
-- and whatever else is throttled within a second (the gateway's window),
-- belong to it and lower the rate once:
--
-- * the first wave sets the rate to BETA of the client's share so far
--   (halfway between what passed in the last second and what it sent) and
--   holds every attempt for a second (the window it filled is full);
-- * a later one sets it to BETA of the lower of the rate and what was sent
--   in the last second.
--
-- Between waves the rate climbs back along a cubic curve, as TCP's CUBIC
-- does: quickly at first, flat around its plateau (PLATEAU of the rate the
-- wave was throttled at: just under it), then probing above it ever
-- faster; and at least by A calls per second every second, the same for
-- every client whatever its rate, which evens out clients that got unequal
-- shares. So clients that share one app's limit (processes, nginx workers,
-- machines) converge on it without talking to each other, and are seldom
-- throttled once there. A `Retry-After` in an answer that may be retried (a
-- throttle, a 503) holds every attempt for as long as it says.
--
-- Inside nginx the state can live in a `lua_shared_dict` (`dict`, under
-- `key`): the workers of the machine then act as one client, each change
-- made under a lock of the dict's own. What stats() counts (attempts
-- delayed, seconds waited, throttles seen) stays the client's own.
--
-- An attempt that finds no token waits for one: a blocking call sleeps (in
-- nginx, yields), a job starts later, queued jobs stay queued.
-- @module aliocr.limiter
-- @local
local M = {}

local Limiter = {}
Limiter.__index = Limiter

-- The multiplicative decrease; a wave's plateau, as a share of the rate it
-- was throttled at; the cubic's scale (calls per second, per second cubed);
-- the additive climb every client makes at least, whatever its rate (calls
-- per second, per second: what evens out clients that started unequal);
-- the rate before the first wave, without qps; the lowest rate; the
-- gateway's window (seconds). (Tuned with bench/rate.lua: see
-- docs/performance.md.)
local BETA, PLATEAU, C, A, START, MIN_RATE, WINDOW = 0.85, 0.95, 0.002, 0.02, 2, 0.5, 1
-- The bucket holds one token at most: attempts are paced, never sent in a
-- burst after a pause.
local BURST = 1
-- The counts of the last WINDOW are kept in SLOTS slots of WINDOW / SLOTS.
local SLOTS = 10
-- The longest hold (seconds): a Retry-After is at most an hour (see
-- aliocr.errors).
local MAX_HOLD = 3600
M.BETA, M.PLATEAU, M.START, M.WINDOW = BETA, PLATEAU, START, WINDOW

local min, max, floor = math.min, math.max, math.floor

-- The state of a limiter (what a shared dict holds): the rate in force,
-- its tokens and when they were counted (false: never), no attempt before
-- `hold`; the last wave (when, its plateau, the seconds to climb back to
-- it), the waves so far, when the rate last grew before the first wave;
-- and the attempts sent and the answers passed in the slots of the last
-- WINDOW (slot numbers and counts).
local FIELDS = { "rate", "tokens", "stamp", "hold", "wave", "plateau", "k", "grown", "waves", "r0" }
local function fresh(settings)
  local st = { rate = settings.qps or START, tokens = BURST, stamp = false, hold = 0, wave = false, plateau = false,
    k = 0, grown = false, waves = 0, r0 = false, sent = {}, passed = {} }
  for i = 1, 2 * SLOTS do st.sent[i], st.passed[i] = 0, 0 end
  return st
end

-- The state as a string of numbers ("-" for false), and back.
local function encode(st)
  local out = {}
  for i, f in ipairs(FIELDS) do
    local v = st[f]
    out[i] = v and string.format("%.17g", v) or "-"
  end
  for i = 1, 2 * SLOTS do
    out[#out + 1] = string.format("%.17g", st.sent[i])
    out[#out + 1] = string.format("%.17g", st.passed[i])
  end
  return table.concat(out, " ")
end

-- Whether `v` is a number, not NaN nor infinite; or false, when `can_be_false`.
local function finite(v, can_be_false)
  if v == false then return can_be_false == true end
  return type(v) == "number" and v == v and v > -math.huge and v < math.huge
end

-- Whether the state `st`, read from a dict at `now`, is one this module
-- wrote: a foreign or corrupted value (no numbers, a rate of 0, a hold or a
-- stamp far in the future) would raise, or make every attempt wait for
-- ever. (The times may be a little ahead of `now`: another worker's, read
-- while this one waited for the lock.)
local SKEW = 60
local function sane(st, now)
  local ok = finite(st.rate) and st.rate > 0 and finite(st.tokens) and st.tokens >= 0 and st.tokens <= BURST
    and finite(st.hold) and finite(st.k) and st.k >= 0 and finite(st.waves) and st.waves >= 0
    and finite(st.plateau, true) and (not st.plateau or st.plateau > 0) and finite(st.r0, true)
  for _, f in ipairs({ "stamp", "wave", "grown" }) do
    ok = ok and finite(st[f], true) and (not st[f] or st[f] <= now + SKEW)
  end
  ok = ok and st.hold <= now + MAX_HOLD + SKEW
  for i = 1, 2 * SLOTS do
    ok = ok and finite(st.sent[i]) and finite(st.passed[i])
    if i > SLOTS then ok = ok and st.sent[i] >= 0 and st.passed[i] >= 0 end
  end
  return ok
end

local function decode(text, settings, now)
  if type(text) ~= "string" then return fresh(settings) end
  local st, i = { sent = {}, passed = {} }, 0
  for word in text:gmatch("%S+") do
    i = i + 1
    local v = word ~= "-" and tonumber(word) or false
    if i <= #FIELDS then
      st[FIELDS[i]] = v
    else
      local j = i - #FIELDS
      local list = j % 2 == 1 and st.sent or st.passed
      list[floor((j + 1) / 2)] = v or 0
    end
  end
  if i ~= #FIELDS + 4 * SLOTS or not sane(st, now) then return fresh(settings) end
  return st
end

-- Counts one event at `now` in the slots `q` (slot numbers in 1..SLOTS,
-- their counts in SLOTS+1..2*SLOTS).
local function push(q, now)
  local slot = floor(now * SLOTS / WINDOW)
  local i = slot % SLOTS + 1
  if q[i] ~= slot then q[i], q[SLOTS + i] = slot, 0 end
  q[SLOTS + i] = q[SLOTS + i] + 1
end

-- The events of `q` within the last WINDOW (the slot of `now` and those
-- before it).
local function count(q, now)
  local slot = floor(now * SLOTS / WINDOW)
  local n = 0
  for i = 1, SLOTS do
    if q[i] > slot - SLOTS and q[i] <= slot then n = n + q[SLOTS + i] end
  end
  return n
end

-- The tokens earned until `now` at the rate in force.
local function refill(st, now)
  if st.stamp then st.tokens = min(BURST, st.tokens + max(0, now - st.stamp) * st.rate) end
  st.stamp = now
end

-- Sets the rate in force at `now` (within MIN_RATE and qps).
local function set_rate(self, st, rate, now)
  refill(st, now)
  if self.qps then rate = min(rate, self.qps) end
  st.rate = max(rate, MIN_RATE)
end

-- The seconds until an attempt may go (0: now).
local function wait_of(_, st, now)
  if st.hold > now then return st.hold - now end
  refill(st, now)
  -- (A token due now, give or take the rounding of the times.)
  if st.tokens >= 1 - 1e-9 then return 0 end
  return (1 - st.tokens) / st.rate
end

-- Lowers the rate at `now` after a throttle at `base` calls per second: to
-- BETA of it, to climb back to its plateau in k seconds.
local function drop(self, st, base, now)
  base = max(base, MIN_RATE)
  st.plateau = base * PLATEAU
  set_rate(self, st, base * BETA, now)
  st.k = (max(st.plateau - base * BETA, 0) / C) ^ (1 / 3)
end

-- A wave begins at `now`.
local function new_wave(self, st, now)
  st.waves = st.waves + 1
  local first = not st.wave
  st.wave = now
  if first then
    -- The client's share so far: halfway between what passed in the last
    -- second (luck decides which of many clients' calls fill a window) and
    -- what it sent (the same for clients that started together). The
    -- wave's answers still coming in refine it; the window is full.
    st.r0 = min(st.rate, count(st.sent, now))
    drop(self, st, (count(st.passed, now) + st.r0) / 2, now)
    st.hold = max(st.hold, now + WINDOW)
  else
    drop(self, st, min(st.rate, count(st.sent, now)), now)
  end
  st.tokens = 0
end

-- What Limiter:answer does to the state.
local function learn(self, st, now, throttled, sent_at, retry_after)
  -- (A Retry-After comes on any answer that may be retried: a throttle, a 503.)
  if retry_after then st.hold = max(st.hold, now + min(retry_after, MAX_HOLD)) end
  if not throttled then push(st.passed, now) end
  if not self.adaptive then return end
  local wave = st.wave
  if wave and st.waves == 1 and sent_at < wave then
    -- An answer of the first wave.
    return drop(self, st, (count(st.passed, now) + (st.r0 or 0)) / 2, now)
  end
  if throttled then
    if not wave or (sent_at >= wave and now - wave >= WINDOW) then new_wave(self, st, now) end
    return
  end
  -- Climbing, never far above what is sent (a client held back by its
  -- concurrency, or idle, does not earn a rate it never used).
  local ceiling = max(st.plateau or st.rate, 2 * count(st.sent, now))
  if not wave then
    local dt = now - (st.grown or now)
    st.grown = now
    set_rate(self, st, min(st.rate * 2 ^ dt, ceiling), now)
  elseif sent_at >= wave then
    -- The cubic, and at least the additive climb from where it dropped.
    local t = now - wave - st.k
    local additive = st.plateau / PLATEAU * BETA + A * (now - wave)
    set_rate(self, st, min(max(st.plateau + C * t * t * t, additive), ceiling), now)
  end
end

--- The limiter of the settings `s` (options.rate_limit's): `qps` (or nil),
-- `adaptive` (boolean), and inside nginx `dict` (the shared dict itself)
-- with `key`, and `sleep` (ngx.sleep) to wait for the dict's lock.
function M.new(s)
  local self = setmetatable({
    qps = s.qps, adaptive = s.adaptive,
    dict = s.dict, key = s.key, sleep = s.sleep, settings = s,
    n_delayed = 0, n_waited = 0, n_throttled = 0,
  }, Limiter)
  if not self.dict then self.st = fresh(s) end
  return self
end

-- Runs f(self, st, now, ...) on the state: the limiter's own, or the shared
-- dict's under its lock (taken with dict:add, which only one worker can
-- win; it expires by itself should a worker die holding it). Clients that
-- share a key with other settings: the bucket's rate is never above the
-- qps of any client that uses it.
local function with_state(self, f, now, ...)
  if not self.dict then return f(self, self.st, now, ...) end
  local dict, lock = self.dict, self.key .. ":lock"
  -- (Given up after 0.1 s, when the lock has expired anyway.)
  local locked = dict:add(lock, true, 0.1)
  for _ = 1, 100 do
    if locked then break end
    self.sleep(0.001)
    locked = dict:add(lock, true, 0.1)
  end
  local ok, a = pcall(function(...)
    local st = decode(dict:get(self.key), self.settings, now)
    if self.qps and st.rate > self.qps then set_rate(self, st, self.qps, now) end
    local r = f(self, st, now, ...)
    dict:set(self.key, encode(st))
    return r
  end, ...)
  if locked then dict:delete(lock) end
  if not ok then error(a, 0) end
  return a
end

-- With a shared dict, the seconds until this client's own qps lets it send
-- again (the dict's bucket may fill faster, at another client's rate).
local function own_pace(self, now)
  if not (self.dict and self.qps and self.last) then return 0 end
  return max(0, self.last + 1 / self.qps - now)
end

--- The seconds an attempt would wait for a token at `now` (monotonic
-- seconds; the same clock in every process of the machine); 0 when it
-- may go at once. Takes nothing.
function Limiter:ready(now)
  local own = own_pace(self, now)
  if own > 0 then return own end
  return with_state(self, wait_of, now)
end

--- Takes a token for an attempt at `now`: 0 when it may go at once (it is
-- counted as sent then), else the seconds to wait before asking again.
local function take(self, st, now)
  local wait = wait_of(self, st, now)
  if wait > 0 then return wait end
  st.tokens = max(0, st.tokens - 1)
  push(st.sent, now)
  return 0
end
function Limiter:take(now)
  local own = own_pace(self, now)
  if own > 0 then return own end
  local wait = with_state(self, take, now)
  if wait <= 0 then self.last = now end
  return wait
end

--- Counts an attempt that waited `seconds` for its token.
function Limiter:delayed(seconds)
  self.n_delayed = self.n_delayed + 1
  self.n_waited = self.n_waited + seconds
end

--- Learns from an answer at `now` to an attempt sent at `sent_at`: whether
-- it was throttled, and the seconds of its Retry-After (or nil).
function Limiter:answer(now, throttled, sent_at, retry_after)
  if throttled then self.n_throttled = self.n_throttled + 1 end
  with_state(self, learn, now, throttled, sent_at, retry_after)
end

--- What stats() shows (see Client:stats): the rate in force, the attempts
-- this client delayed and the seconds they waited, the throttled answers
-- it saw, and the rate's decreases (the machine's, with a dict).
function Limiter:stats()
  local st = self.dict and decode(self.dict:get(self.key), self.settings, math.huge) or self.st
  return { rate = st.rate, delayed = self.n_delayed, waited = self.n_waited, throttled = self.n_throttled,
           decreases = st.waves }
end

return M
