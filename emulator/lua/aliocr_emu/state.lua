-- The emulator's state. The start-up settings come from the file the launcher
-- generated; everything that changes at run time (settings changed through
-- the control endpoint, faults, the ledger, counters, the request log) lives
-- in shared dictionaries, so that every nginx worker sees the same state.
local cjson = require("cjson.safe")

local M = {}

local shared = ngx.shared
local st = shared.emu_state     -- settings, faults, ledger, counters
local nonces = shared.emu_nonce -- signature nonces, kept for 15 minutes
local log = shared.emu_log      -- the request log (a list of JSON lines)

local base          -- the settings of the launch, read once in init_by_lua
local cache = {}    -- per worker: decoded copies, keyed by version token

-- Settings that the control endpoint may change at run time, with a check.
local function nonneg_int(v)
  return type(v) == "number" and v >= 0 and v == math.floor(v) and v < 2^53
end
local function quota_value(v) return v == false or nonneg_int(v) end
local tunable = {
  latency_ms = nonneg_int,
  backend_timeout_ms = function(v) return nonneg_int(v) and v >= 1 end,
  rate = nonneg_int,
  rate_retry_after = nonneg_int,
  quota = quota_value,
  quotas = function(v)
    if type(v) ~= "table" then return false end
    for k, q in pairs(v) do
      if type(k) ~= "string" or not quota_value(q) then return false end
    end
    return true
  end,
  errors = function(v) return v == "classic" or v == "vpc" end,
  fetch = function(v) return type(v) == "boolean" end,
  -- tesseract only when the launch found it (settings.ocr).
  backend = function(v) return v == "canned" or (v == "tesseract" and base.ocr ~= nil) end,
}

function M.init(path)
  base = assert(dofile(path))
  base.api_by_path = {}
  for api, p in pairs(base.paths) do base.api_by_path[p] = api end
  -- Marks the backend's own image downloads (see fetch.lua), so that they are
  -- never taken for a client's requests. Made in the master, before the
  -- workers fork, so that every worker has the same one.
  math.randomseed(os.time() + math.floor(ngx.now() * 1000) % 1000)
  base.fetch_token = string.format("%08x%08x", math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
end

--- The header value the backend sends with its own image downloads.
function M.fetch_token() return base.fetch_token end

function M.is_own_fetch(value) return value ~= nil and value == base.fetch_token end

-- A version token that never repeats, even after a reset has emptied the
-- dictionaries.
local function bump(name)
  st:set(name .. "_ver", ngx.now() .. ":" .. ngx.worker.pid() .. ":" .. math.random())
end

local function cached(name, build)
  local ver = st:get(name .. "_ver") or "start"
  local c = cache[name]
  if c and c.ver == ver then return c.value end
  local value = build(st:get(name .. "_json"))
  cache[name] = { ver = ver, value = value }
  return value
end

--- The settings in force: the launch's, overlaid with run-time changes.
function M.settings()
  return cached("settings", function(json)
    local over = json and cjson.decode(json) or {}
    local s = setmetatable({}, { __index = base })
    for k, v in pairs(over) do s[k] = v end
    return s
  end)
end

--- Changes run-time settings; returns nil, message on a bad name or value.
function M.update_settings(changes)
  local over = cjson.decode(st:get("settings_json") or "{}") or {}
  for k, v in pairs(changes) do
    local check = tunable[k]
    if not check then return nil, "unknown setting '" .. tostring(k) .. "'" end
    if not check(v) then return nil, "bad value for setting '" .. k .. "'" end
    over[k] = v
  end
  st:set("settings_json", cjson.encode(over))
  bump("settings")
  return true
end

--- The quota (billed calls allowed) of `cred` under settings `s`, or nil
-- for no quota. A per-credential value wins; false means "no quota".
function M.quota_for(s, cred)
  local q = s.quotas and s.quotas[cred]
  if q == nil then q = s.quota end
  return q or nil
end

--- The OSS endpoint's settings of the launch (nil when it is off): region,
-- buckets ({ [name] = true }), keys ({ [id] = { secret, token } }), dir (the
-- objects' files), log_max.
function M.oss() return base.oss end

function M.appcode_known(code) return base.appcodes[code] == true end
function M.app_secret(key) return base.app_keys[key] end

-- Faults -------------------------------------------------------------------

--- The fault rules, in the order they were added.
function M.faults()
  return cached("faults", function(json) return json and cjson.decode(json) or {} end)
end

function M.add_faults(rules)
  local list = cjson.decode(st:get("faults_json") or "[]") or {}
  local ids = {}
  for _, r in ipairs(rules) do
    r.id = st:incr("fault_next_id", 1, 0)
    if r.times then st:set("fault_left:" .. r.id, r.times) end
    list[#list + 1] = r
    ids[#ids + 1] = r.id
  end
  st:set("faults_json", cjson.encode(list))
  bump("faults")
  return ids
end

function M.clear_faults()
  for _, r in ipairs(cjson.decode(st:get("faults_json") or "[]") or {}) do
    st:delete("fault_left:" .. r.id)
    st:delete("fault_hits:" .. r.id)
  end
  st:delete("faults_json")
  bump("faults")
end

--- Takes one use of fault `r`: false once a rule with `times` is used up.
function M.take_fault(r)
  if r.times then
    local left = st:incr("fault_left:" .. r.id, -1, 0)
    if not left or left < 0 then return false end
  end
  st:incr("fault_hits:" .. r.id, 1, 0)
  return true
end

function M.fault_counts(r)
  local left = r.times and math.max(st:get("fault_left:" .. r.id) or 0, 0) or nil
  return st:get("fault_hits:" .. r.id) or 0, left
end

-- Quota, rate limit and nonces -----------------------------------------------

--- Reserves one billed call of `cred`'s quota; false when it is used up.
-- A reservation is kept when the call is billed and given back otherwise
-- (see M.settle), so that concurrent calls can never overspend the quota.
function M.reserve_quota(cred, quota)
  if not quota then return true end
  local used = st:incr("used:" .. cred, 1, 0)
  if used > quota then
    st:incr("used:" .. cred, -1, 0)
    return false
  end
  return true
end

--- Counts one request in the current one-second window of `cred`; false
-- when that goes over `rate` requests per second.
function M.within_rate(cred, rate)
  if not rate or rate == 0 then return true end
  local key = "rate:" .. cred .. ":" .. math.floor(ngx.now())
  local n = st:incr(key, 1, 0, 2)
  return n <= rate
end

--- Remembers a nonce for 15 minutes; false if it was seen already.
function M.fresh_nonce(key, nonce)
  local ok, err = nonces:add(key .. "\0" .. nonce, true, 900)
  return ok or err ~= "exists"
end

-- Ledger and connections -----------------------------------------------------

--- Records the outcome of an authenticated call: billed exactly when the
-- status sent was 2xx. Gives back the quota reservation otherwise.
function M.settle(cred, reserved, billed)
  st:incr("requests:" .. cred, 1, 0)
  if billed then
    st:incr("billed:" .. cred, 1, 0)
  elseif reserved then
    st:incr("used:" .. cred, -1, 0)
  end
end

-- OSS operations counted in the ledger, by method.
local OSS_OPS = { PUT = "puts", GET = "gets", HEAD = "heads", DELETE = "deletes" }

--- Counts one answered OSS request: `method`, whether it was accepted (a 2xx
-- answer) and whether the emulator's own vendor made it (a download of an
-- image URL).
function M.count_oss(method, accepted, by_vendor)
  local op = OSS_OPS[method] or "others"
  st:incr("oss:" .. op .. ":" .. (accepted and "accepted" or "refused"), 1, 0)
  if by_vendor then st:incr("oss:" .. op .. ":by_vendor", 1, 0) end
end

local function oss_ledger()
  local out = {}
  for _, op in ipairs({ "puts", "gets", "heads", "deletes", "others" }) do
    local accepted = st:get("oss:" .. op .. ":accepted") or 0
    local refused = st:get("oss:" .. op .. ":refused") or 0
    out[op] = { accepted = accepted, refused = refused, by_vendor = st:get("oss:" .. op .. ":by_vendor") or 0 }
  end
  return out
end

function M.ledger()
  local s = M.settings()
  local out = { credentials = {}, total = { requests = 0, billed = 0, not_billed = 0 } }
  local creds = {}
  for c in pairs(base.appcodes) do creds[#creds + 1] = c end
  for c in pairs(base.app_keys) do creds[#creds + 1] = c end
  for _, c in ipairs(creds) do
    local requests = st:get("requests:" .. c) or 0
    local billed = st:get("billed:" .. c) or 0
    local quota = M.quota_for(s, c)
    out.credentials[c] = {
      requests = requests, billed = billed, not_billed = requests - billed,
      quota = quota or cjson.null,
      quota_remaining = quota and math.max(quota - (st:get("used:" .. c) or 0), 0) or cjson.null,
    }
    out.total.requests = out.total.requests + requests
    out.total.billed = out.total.billed + billed
  end
  out.total.not_billed = out.total.requests - out.total.billed
  if base.oss then out.oss = oss_ledger() end
  return out
end

--- Counts connection `serial` (nginx's $connection, unique across workers)
-- the first time it carries an API request. The mark outlives any idle
-- keep-alive connection (keepalive_timeout is 75 s).
function M.count_connection(serial, scheme)
  if st:add("connection:" .. serial, true, 3600) then
    st:incr("connections:" .. scheme, 1, 0)
  end
end

function M.connections()
  local http = st:get("connections:http") or 0
  local https = st:get("connections:https") or 0
  return { accepted = http + https, http = http, https = https }
end

-- Request log ----------------------------------------------------------------
-- Entry n is stored under "n"; "first" is the oldest kept, "last" the newest.

function M.logging() return base.log_max > 0 end

function M.log_request(entry)
  local seq = log:incr("last", 1, 0)
  entry.seq = seq
  log:set(tostring(seq), cjson.encode(entry))
  local first = log:get("first") or 1
  while seq - first >= base.log_max do
    log:delete(tostring(first))
    first = log:incr("first", 1, 1)
  end
end

--- The logged requests with a sequence number above `since` (default 0).
function M.requests(since)
  local entries = {}
  local last = log:get("last") or 0
  local from = math.max(log:get("first") or 1, (since or 0) + 1)
  for seq = from, last do
    local line = log:get(tostring(seq))
    if line then entries[#entries + 1] = cjson.decode(line) end
  end
  return entries
end

--- Forgets everything that happened since the launch.
function M.reset()
  st:flush_all()
  nonces:flush_all()
  log:flush_all()
  bump("settings")
  bump("faults")
end

return M
