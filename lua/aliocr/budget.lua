--- Budgets: a cap on the calls a client may have billed (`limit`), for its
-- whole life or per `period` seconds (windows of wall-clock time, the same
-- for every process). Each attempt that may be billed takes one unit before
-- it is sent (a reservation); its answer settles it: billed, the unit is
-- spent; not billed, it is given back; unknown (sent, and no status came
-- back), it stays spent, since the gateway may have billed it. An attempt
-- that finds no unit left is not sent. Inside nginx the units can live in a
-- `lua_shared_dict` (`dict`), where the reservation is one atomic `incr`, so
-- that every worker of the machine shares one budget. The dict must be the
-- budget's own: nginx evicts keys from a full dict, and a counter evicted
-- would start again at 0. A period's windows are calendar windows (aligned
-- to the epoch), not sliding ones: up to twice the limit can be spent
-- around the edge of two windows.
-- @module aliocr.budget
-- @local
local core = require("aliocr.core")

local M = {}

local Budget = {}
Budget.__index = Budget

--- The budget of settings `s` (options.budget's): `limit`, `period`, and
-- `dict` (the shared dict itself) with `key`.
function M.new(s)
  return setmetatable({ limit = s.limit, period = s.period, dict = s.dict, key = s.key, used = 0, window = nil,
    refused = 0 }, Budget)
end

-- The window an attempt falls in now (0 without a period).
local function window_now(self)
  if not self.period then return 0 end
  return math.floor(core.now_ms() / 1000 / self.period)
end

-- The shared dict's key of window w.
local function dict_key(self, w) return self.key .. ":" .. w end

--- Takes a unit for an attempt: a reservation to settle, or false when
-- none is left (counted as refused).
function Budget:reserve()
  local w = window_now(self)
  if self.dict then
    -- Kept for two periods (a window's units must outlive it a little), or for ever.
    local ttl = self.period and math.ceil(2 * self.period) or 0
    local n = self.dict:incr(dict_key(self, w), 1, 0, ttl)
    if not n then
      -- The dict is full or broken: nothing can be counted, so nothing is sent.
      self.refused = self.refused + 1
      return false
    end
    if n > self.limit then
      self.dict:incr(dict_key(self, w), -1)
      self.refused = self.refused + 1
      return false
    end
    return { window = w }
  end
  if self.window ~= w then self.window, self.used = w, 0 end
  if self.used >= self.limit then
    self.refused = self.refused + 1
    return false
  end
  self.used = self.used + 1
  return { window = w }
end

--- Whether a unit is left now (without taking it; counted as refused when
-- not): a local image is not uploaded for a call the budget would refuse.
function Budget:available()
  local w = window_now(self)
  local left
  if self.dict then
    left = (self.dict:get(dict_key(self, w)) or 0) < self.limit
  elseif self.window ~= w then
    left = self.limit > 0
  else
    left = self.used < self.limit
  end
  if not left then self.refused = self.refused + 1 end
  return left
end

--- Settles reservation `r` by the attempt's billing (true, false, nil for
-- unknown): only an attempt that was not billed gives its unit back.
function Budget:settle(r, billed)
  if not r or r.settled then return end
  r.settled = true
  if billed ~= false then return end
  if self.dict then
    -- Without an initial value: a key that expired (its window is over) or
    -- was evicted is not made again at -1.
    self.dict:incr(dict_key(self, r.window), -1)
  elseif self.window == r.window then
    self.used = self.used - 1
  end
end

--- What stats() shows: the limit, the units spent in the current window
-- (the machine's, with a shared dict) and the attempts refused by this
-- client.
function Budget:stats()
  local used = self.used
  local w = window_now(self)
  if self.dict then
    used = self.dict:get(dict_key(self, w)) or 0
  elseif self.window ~= w then
    used = 0
  end
  return { limit = self.limit, period = self.period, used = used, refused = self.refused }
end

return M
