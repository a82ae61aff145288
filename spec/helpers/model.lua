-- The model-based test (spec/integration/model_spec.lua, make model): a seeded generator
-- of random operation sequences on clients of one emulator, a runner that
-- plays them against the real client while keeping a model of what each
-- job, call and batch must end as, and the invariants checked during and
-- after every sequence. A failing sequence is shrunk (ops dropped while the
-- same failure still shows) and printed as a Lua table that MODEL_REPLAY
-- plays again.
--
-- What the model holds the client to (the intended semantics, issue 14):
--   * every job's callback runs at most once, only from poll, wait or a batch
--     of its own client, with (res, err, job) as the job says, never after
--     job:cancel() returned true for it nor after its client was closed; it
--     runs exactly once unless so (a job whose answer was in when the client
--     was closed ends "done", its callback not run);
--   * job:cancel() returns true for a job not finished, false for one
--     finished (a job whose answer had arrived may give false: it ends
--     "done"), and the state is "cancelled" after a true; close cancels
--     every job not finished; no job is left queued, running or retrying;
--   * errors that callbacks and on_progress raise come out, unchanged (a
--     table keeps its identity, a string gets no traceback), of the poll,
--     wait or batch that ran them, exactly once;
--   * poll returns the pending count only; pending() counts the jobs of
--     submit not finished (not a batch's images); a poll that returns has
--     run the callbacks of the jobs finished before it; a job never starts,
--     finishes or changes state outside poll, wait, a batch or a blocking
--     call (but the job being cancelled); at most `concurrency` jobs of
--     submit run at once, whatever batches (suspended, abandoned) did;
--   * a blocking call gives one (res, err); a batch one result per URL and
--     on_progress(done, total) for done = 1..total (fewer when closed during
--     it), or raises the error raised in it;
--   * a closed client raises "attempt to use a closed client" (stats() stays
--     readable); misuse inside callbacks may raise ("aliocr: ..."), nothing
--     else may;
--   * after each sequence, stats() of each client equal what its jobs, calls
--     and batches ended as (requests, billed, not_billed, unknown, attempts,
--     errors by kind), requests == billed + not_billed + unknown (with
--     retry_unknown, unknown counts attempts: billed + not_billed <=
--     requests <= billed + not_billed + unknown), and, per credential, the
--     emulator's request log holds stats().attempts requests and its ledger
--     (settled) billed == billed, or billed <= ledger <= billed + unknown.
local socket = require("socket")

local M = {}

local now = socket.gettime
local floor = math.floor

local function pack(...) return { n = select("#", ...), ... } end

-- Pseudo-random numbers: Park and Miller's generator (48271), exact in a
-- double and in a 64-bit integer, so that a seed gives the same sequence on
-- every runtime.
local MOD = 2147483647

function M.rng(seed)
  local x = floor(seed) % MOD
  if x == 0 then x = 1 end
  local r = {}
  function r.next()
    x = (x * 48271) % MOD
    return x
  end
  function r.int(lo, hi) return lo + r.next() % (hi - lo + 1) end
  function r.chance(p) return r.next() / MOD < p end
  function r.pick(list) return list[r.int(1, #list)] end
  -- { {name, weight}, ... } -> a name
  function r.weighted(list)
    local total = 0
    for _, w in ipairs(list) do total = total + w[2] end
    local k = r.next() % total
    for _, w in ipairs(list) do
      if k < w[2] then return w[1] end
      k = k - w[2]
    end
    return list[#list][1]
  end
  return r
end

--- The seed of sequence `i` of a run with seed `run_seed`: the first one is
-- the run seed itself, so that MODEL_SEED=<a sequence's seed> MODEL_SEQS=1
-- plays that sequence again.
function M.sequence_seed(run_seed, i)
  if i == 1 then return floor(run_seed) % MOD end
  local r = M.rng(run_seed + i * 7919)
  r.next()
  r.next()
  return r.next()
end

-- Printing ------------------------------------------------------------------

local function num(v)
  if v == floor(v) and v > -2^53 and v < 2^53 then return string.format("%.0f", v) end
  return string.format("%.14g", v)
end

local KEYWORDS = {}
for w in ("and break do else elseif end false for function goto if in local nil not or repeat return then " ..
  "true until while"):gmatch("%a+") do KEYWORDS[w] = true end

--- `v` as a Lua literal (tables of strings, numbers, booleans), keys sorted.
function M.literal(v)
  local t = type(v)
  if t == "string" then return string.format("%q", v) end
  if t == "number" then return num(v) end
  if t ~= "table" then return tostring(v) end
  local parts, n = {}, #v
  for i = 1, n do parts[#parts + 1] = M.literal(v[i]) end
  local keys = {}
  for k in pairs(v) do
    if not (type(k) == "number" and k >= 1 and k <= n and k == floor(k)) then keys[#keys + 1] = k end
  end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(keys) do
    local key = (type(k) == "string" and k:find("^[%a_][%w_]*$") and not KEYWORDS[k]) and k or
      ("[" .. M.literal(k) .. "]")
    parts[#parts + 1] = key .. " = " .. M.literal(v[k])
  end
  return "{ " .. table.concat(parts, ", ") .. " }"
end

--- A sequence as a file MODEL_REPLAY can play: one op a line.
function M.format(seq)
  local lines = { "return {", "  seed = " .. num(seq.seed) .. "," }
  if seq.gc then lines[#lines + 1] = "  gc = " .. M.literal(seq.gc) .. "," end
  lines[#lines + 1] = "  clients = {"
  for _, c in ipairs(seq.clients) do lines[#lines + 1] = "    " .. M.literal(c) .. "," end
  lines[#lines + 1] = "  },"
  lines[#lines + 1] = "  ops = {"
  for i, op in ipairs(seq.ops) do lines[#lines + 1] = "    " .. M.literal(op) .. ", -- " .. i end
  lines[#lines + 1] = "  },"
  lines[#lines + 1] = "}"
  return table.concat(lines, "\n")
end

-- The generator ------------------------------------------------------------

-- Top-level operations and their weights: mostly cheap ones (submit, poll,
-- cancel), a few slow ones (stalls, waits, batches).
local TOP = {
  { "submit", 26 }, { "poll0", 14 }, { "pollt", 5 }, { "cancel", 12 }, { "wait", 3 },
  { "batch", 3 }, { "cobatch", 2 }, { "resume", 2 }, { "abandon", 1 },
  { "call", 4 }, { "collect", 2 }, { "step", 1 }, { "gcobj", 3 }, { "gcburst", 2 },
  { "fault", 5 }, { "clear", 2 }, { "settings", 2 }, { "check", 2 },
  { "close", 1 }, { "new", 2 },
}

-- What a callback or an on_progress does besides being counted.
local ACTS = {
  { "poll0", 5 }, { "pollt", 2 }, { "otherpoll", 2 }, { "wait", 2 }, { "cancel", 5 }, { "cancelself", 2 },
  { "call", 3 }, { "batch", 2 }, { "close", 1 }, { "submit", 3 }, { "gc", 2 }, { "pending", 2 },
}

local STATES = { "queued", "running", "retrying", "done", "cancelled", "any" }
local KINDS = { "recognize", "handwriting" }

local function gen_url(r) return r.chance(0.12) and "invalid" or "ok" end

-- Options of one call: mostly none; some with a short timeout, retries,
-- show, params or GET.
local function gen_call_opts(r)
  if r.chance(0.7) then return nil end
  local o = {}
  local k = r.int(1, 5)
  if k == 1 then o.timeout = r.pick({ 0.2, 0.3, 0.5 })
  elseif k == 2 then o.retries = r.int(0, 2)
  elseif k == 3 then o.show = 1
  elseif k == 4 then o.params = { model = "x" }
  else o.method = "GET" end
  return o
end

local gen_acts

local function gen_batch(r, depth, ctx, skip)
  local n = r.int(1, 4)
  local urls = {}
  for i = 1, n do urls[i] = gen_url(r) end
  local b = { kind = r.pick(KINDS), urls = urls, conc = r.int(1, 4), o = gen_call_opts(r) }
  if r.chance(0.75) then
    b.prog = {}
    for at = 1, n do
      if r.chance(0.35) then
        b.prog[#b.prog + 1] = { at = at, acts = gen_acts(r, depth + 1, ctx, skip) }
      end
    end
  end
  return b
end

local function gen_act(r, name, depth, skip)
  if name == "poll0" then return { "poll", t = 0 } end
  if name == "pollt" then return { "poll", t = 0.01 } end
  if name == "otherpoll" then return { "poll", t = 0, c = r.int(1, 6) } end
  if name == "wait" then return { "wait" } end
  if name == "cancel" then return { "cancel", pick = r.pick(STATES), r = r.next() } end
  if name == "cancelself" then return { "cancelself" } end
  if name == "call" then return { "call", kind = r.pick(KINDS), url = gen_url(r), o = gen_call_opts(r) } end
  if name == "batch" then
    local b = gen_batch(r, depth, "progress", skip)
    b[1] = "batch"
    return b
  end
  if name == "close" then return { "close" } end
  if name == "submit" then
    return { "submit", kind = r.pick(KINDS), url = gen_url(r), o = gen_call_opts(r),
      cb = r.chance(0.7) and gen_acts(r, depth + 1, "cb", skip) or false }
  end
  if name == "gc" then return { "gc" } end
  return { "pending" }
end

-- The actions of a callback (ctx "cb") or of one on_progress call ("progress",
-- or "coprogress" in a batch run in a coroutine, which may also yield).
function gen_acts(r, depth, ctx, skip)
  local acts = {}
  skip = skip or {}
  if depth < 2 and r.chance(0.6) then
    for _ = 1, r.chance(0.7) and 1 or 2 do
      local name = r.weighted(ACTS)
      if not skip[name] and not skip[ctx .. "." .. name] then acts[#acts + 1] = gen_act(r, name, depth, skip) end
    end
  end
  if ctx == "coprogress" and not skip.yield and r.chance(0.5) then acts[#acts + 1] = { "yield" } end
  if r.chance(0.2) and not skip.raise then
    acts[#acts + 1] = { "raise", how = r.pick({ "string", "string1", "table" }) }
  end
  return acts
end

-- Fault rules: every row of spec/helpers/faults.lua that has a rule (each
-- emulator fault mode and gateway error), and stalls, fail-N-times,
-- latency, per interface or credential.
local function gen_fault(r, rows)
  local rule
  local k = r.int(1, 30)
  local function from(row)
    rule = {}
    for key, v in pairs(row.rule) do rule[key] = v end
  end
  local function stall(row) return row.rule.mode == "stall_headers" or row.rule.mode == "stall_body" end
  if k <= 20 then
    -- A row's rule (every fault mode and gateway error), stalls aside.
    local candidates = {}
    for _, row in ipairs(rows) do if row.rule and not stall(row) then candidates[#candidates + 1] = row end end
    from(r.pick(candidates))
  elseif k <= 22 then
    rule = { mode = "latency", ms = r.pick({ 0, 5, 20, 50 }) }
  elseif k == 23 then
    -- A stall (a row's, or one of ours): slow, so rare and used once or twice.
    local candidates = {}
    for _, row in ipairs(rows) do if row.rule and stall(row) then candidates[#candidates + 1] = row end end
    if r.chance(0.5) then from(r.pick(candidates))
    else rule = { mode = "stall_headers", ms = r.pick({ 600, 900 }), ["then"] = r.pick({ "answer", "close" }) } end
  else
    rule = { mode = r.pick({ "service_unavailable", "throttled_api", "internal_error", "reset_before_headers",
      "truncate", "not_json" }) }
  end
  -- Mostly a few uses (fail N times, then succeed); stalls always so, to keep
  -- sequences fast.
  local slow = rule.mode == "stall_headers" or rule.mode == "stall_body"
  if slow or r.chance(0.8) then rule.times = r.int(1, slow and 2 or 4) end
  local scope = r.int(1, 6)
  if scope == 1 then rule.api = "advanced" elseif scope == 2 then rule.api = "handwriting"
  elseif scope == 3 then rule.credential = "m" .. r.int(1, 4) end
  return { "fault", rule = rule }
end

local function gen_settings(r, rows)
  local k = r.int(1, 7)
  local s
  if k == 1 then s = { quota = r.int(0, 6) }
  elseif k == 2 then s = { rate = r.int(1, 20) }
  elseif k == 3 then s = { latency_ms = r.pick({ 0, 0, 5, 20 }) }
  elseif k == 4 then s = { errors = r.pick({ "classic", "vpc" }) }
  elseif k == 5 then
    local list = {}
    for _, row in ipairs(rows) do if row.settings then list[#list + 1] = row.settings end end
    s = {}
    for key, v in pairs(r.pick(list)) do s[key] = v end
  else
    s = { quota = false, rate = 0, latency_ms = 0, backend_timeout_ms = 30000, errors = "classic" }
  end
  return { "settings", s = s }
end

local function gen_client(r)
  local o = {
    appcode = r.chance(0.04) and "nope" or ("m" .. r.int(1, 4)),
    timeout = r.pick({ 0.2, 0.3, 0.4, 0.5 }),
    retries = r.int(0, 2),
    concurrency = r.pick({ 1, 2, 3, 4, 8 }),
  }
  local d = r.pick({ 0, 0.005, 0.02, 0.1 })
  o.retry_delay, o.retry_max_delay = d, d * 2
  if r.chance(0.25) then o.retry_unknown = true end
  if r.chance(0.15) then o.method = "GET" end
  if r.chance(0.05) then o.max_response_bytes = 10000 end
  if r.chance(0.03) then o.json_max_depth = 4 end
  return o
end

local function gen_op(r, name, rows, skip)
  local c = r.int(1, 6)
  if name == "submit" then
    local cb = false
    if r.chance(0.8) then cb = r.chance(0.6) and {} or gen_acts(r, 0, "cb", skip) end
    return { "submit", c = c, kind = r.pick(KINDS), url = gen_url(r), o = gen_call_opts(r), cb = cb }
  end
  if name == "poll0" then return { "poll", c = c, t = 0 } end
  if name == "pollt" then return { "poll", c = c, t = r.pick({ 0.001, 0.01, 0.05 }) } end
  if name == "cancel" then return { "cancel", pick = r.pick(STATES), r = r.next() } end
  if name == "wait" then return { "wait", c = c } end
  if name == "batch" or name == "cobatch" then
    local b = gen_batch(r, 0, name == "cobatch" and "coprogress" or "progress", skip)
    b[1], b.c = name, c
    if name == "cobatch" then
      -- Every progress step of a batch in a coroutine may yield.
      for at = 1, #b.urls do
        if r.chance(0.4) and not skip.yield then
          local found = false
          for _, p in ipairs(b.prog or {}) do if p.at == at then found = true end end
          if not found then
            b.prog = b.prog or {}
            b.prog[#b.prog + 1] = { at = at, acts = { { "yield" } } }
          end
        end
      end
      b.finish = r.chance(0.3)
    end
    return b
  end
  if name == "resume" then return { "resume", r = r.next(), finish = r.chance(0.5) } end
  if name == "abandon" then return { "abandon", r = r.next() } end
  if name == "call" then return { "call", c = c, kind = r.pick(KINDS), url = gen_url(r), o = gen_call_opts(r) } end
  if name == "collect" then return { "collect" } end
  if name == "step" then return { "step" } end
  if name == "gcobj" then
    if r.chance(0.75) then return { "gcobj", what = "cancel", pick = r.pick(STATES), r = r.next() } end
    return { "gcobj", what = "close", c = c }
  end
  if name == "gcburst" then
    -- A finalizer (cancel a job, close a client), and a collection primed
    -- to run it a little after the first allocation of one op that drives
    -- the engine: inside the client's Lua code or its C engine.
    local op = { "gcburst", c = c, drive = r.pick({ "poll", "poll", "call", "wait", "batch" }),
      kind = r.pick(KINDS), url = "ok", extra = r.pick({ 0, 0, 1, 2, 5, 20 }) }
    if r.chance(0.75) then
      op.what, op.pick, op.r = "cancel", r.pick({ "running", "running", "queued", "retrying", "any" }), r.next()
    else
      op.what, op.other = "close", r.chance(0.2) and r.int(1, 6) or nil
    end
    return op
  end
  if name == "fault" then return gen_fault(r, rows) end
  if name == "clear" then return { "clear" } end
  if name == "settings" then return gen_settings(r, rows) end
  if name == "check" then return { "check", c = c } end
  if name == "close" then return { "close", c = c } end
  return { "new", o = gen_client(r) }
end

--- A sequence of `nops` operations from `seed`. `cfg.rows`: the fault rows
-- (spec/helpers/faults.lua); `cfg.skip`: a set of op and action names not to
-- make ("gcobj", "yield", "progress.wait", ...).
function M.generate(seed, nops, cfg)
  local r = M.rng(seed)
  local skip = cfg.skip or {}
  local seq = { seed = seed, clients = {}, ops = {} }
  for i = 1, r.int(1, 3) do seq.clients[i] = gen_client(r) end
  if r.chance(cfg.aggressive_gc or 0.3) then seq.gc = "aggressive" end
  local guard = 0
  while #seq.ops < nops and guard < nops * 100 do
    guard = guard + 1
    local name = r.weighted(TOP)
    if not skip[name] then seq.ops[#seq.ops + 1] = gen_op(r, name, cfg.rows, skip) end
  end
  return seq
end

-- The runner ----------------------------------------------------------------

--- For MODEL_TRACE: what a client holds inside (its private fields), to
-- tell why a count is off. Never used by a check.
function M.insides(c)
  local ok, text = pcall(function()
    local out = {}
    local function count(t)
      local n = 0
      for _ in pairs(t or {}) do n = n + 1 end
      return n
    end
    for _, k in ipairs({ "_pending", "_nqueued", "_active", "_qhead", "_qtail", "_fhead", "_ftail", "_in_op",
      "_close_pending", "_closed" }) do
      out[#out + 1] = k .. "=" .. tostring(rawget(c, k))
    end
    out[#out + 1] = "running=" .. count(rawget(c, "_running"))
    out[#out + 1] = "retrying=" .. count(rawget(c, "_retrying"))
    local states = {}
    for _, j in pairs(rawget(c, "_running") or {}) do states[#states + 1] = "r:" .. tostring(j.state) end
    for j in pairs(rawget(c, "_retrying") or {}) do states[#states + 1] = "t:" .. tostring(j.state) end
    return " {" .. table.concat(out, " ") .. " " .. table.concat(states, ",") .. "}"
  end)
  return ok and text or ""
end

local WATCHDOG = setmetatable({}, { __tostring = function() return "model watchdog: an operation hung" end })
M.WATCHDOG = WATCHDOG

local ACTIVE = { queued = true, starting = true, running = true, retrying = true }
-- Operations that may run callbacks and give their errors.
local DRIVERS = { poll = true, wait = true, batch = true, close = true }

-- The watchdog: a count hook that raises WATCHDOG (again and again, so that
-- it gets out of any pcall of the client) once the deadline has passed.
local deadline = math.huge
local function hook()
  if now() > deadline then error(WATCHDOG, 0) end
end
-- Each call of a Lua hook is a point where the collector may run (the
-- debug library pushes the event's name), at whatever instruction the count
-- ends on: a finalizer there is something no program without a hook meets.
-- The watchdog needs few of them.
local HOOK_COUNT = 200000

local function arm_hook(co)
  if co then debug.sethook(co, hook, "", HOOK_COUNT) else debug.sethook(hook, "", HOOK_COUNT) end
end

--- True when a coroutine can yield across pcall (not PUC Lua 5.1): only
-- then may on_progress yield out of a batch.
function M.can_yield_across_pcall()
  local co = coroutine.create(function() return pcall(coroutine.yield, 1) end)
  local ok, v = coroutine.resume(co)
  return ok and v == 1 and coroutine.status(co) == "suspended"
end

-- An object whose finalizer calls `fn`: a table with __gc on 5.2+, a
-- newproxy on 5.1 and LuaJIT.
-- Whether a finalizer runs inside the watchdog's hook (see HOOK_COUNT):
-- there it acts at an arbitrary instruction of the client's code, which no
-- program without a hook meets, so it does nothing (Lua 5.2+ name the frame
-- that called the hook "hook"; LuaJIT and 5.1 do not, and act anyway).
local function in_hook()
  for level = 2, 8 do
    local info = debug.getinfo(level, "n")
    if not info then return false end
    if info.namewhat == "hook" then return true end
  end
  return false
end

local function finalized(fn)
  if _VERSION == "Lua 5.1" then
    local p = newproxy(true) -- luacheck: ignore 113
    getmetatable(p).__gc = fn
    return p
  end
  return setmetatable({}, { __gc = fn })
end

-- A collection primed to end, and run its finalizers, a little after the
-- next allocation, that is inside the client's code (the Lua layer or the C
-- engine): a full collection marks a cycle's start, the steps of one cycle
-- are counted, `make()` makes the garbage with a finalizer, and all but the
-- last `extra` + 1 steps of the next cycle are made. On Lua 5.4 the steps are
-- small (a step every 64 bytes allocated; gc_restore puts the usual size
-- back), and generational mode is left for it.
local gc_mode, gc_primed
local function gc_prime(make, extra)
  if _VERSION == "Lua 5.4" then gc_mode = collectgarbage("incremental", 0, 0, 6) end
  gc_primed = true
  collectgarbage("collect")
  local n = 0
  repeat n = n + 1 until collectgarbage("step", 0) or n > 1000000
  make()
  for _ = 1, n - 1 - math.min(extra, n - 1) do
    if collectgarbage("step", 0) then break end
  end
end
local function gc_restore()
  if not gc_primed then return end
  gc_primed = nil
  if _VERSION == "Lua 5.4" then collectgarbage("incremental", 0, 0, 13) end
  if gc_mode == "generational" then collectgarbage("generational") end
  gc_mode = nil
end

local function copy(t)
  if type(t) ~= "table" then return t end
  local out = {}
  for k, v in pairs(t) do out[k] = copy(v) end
  return out
end

-- A message as a failure's signature: numbers of the model's own errors
-- and addresses taken out.
local function normalize(e)
  local s = tostring(e)
  s = s:match("^[^\n]*") or s
  s = s:gsub("model error %d+ from [^\n]*", "model error N"):gsub("0x%x+", "0x?")
  return s
end

local function describe_op(op)
  local o = copy(op)
  if o.cb and type(o.cb) == "table" and #o.cb == 0 then o.cb = "record" end
  return M.literal(o)
end

--- Plays sequence `seq` against the emulator `env.emu` with the module
-- `env.aliocr`. Options: env.watchdog (seconds per top-level op),
-- env.trace (print each op), env.stop_on (a failure signature: stop as soon
-- as it shows, for shrinking). Returns a report: failures ({ sig, msg, op }),
-- sigs (a set), ops, nested (actions inside callbacks and on_progress),
-- callbacks, finalizers.
function M.run(seq, env)
  local aliocr, emu = env.aliocr, env.emu
  local slow = env.slow or function(s) return s end
  local R = {
    clients = {}, jobs = {}, frames = {}, nextframe = 0, entries = {}, by_value = {}, by_text = {},
    failures = {}, sigs = {}, suspended = {}, notes = {}, deferred = {}, epoch = 0, nested = 0, callbacks = 0,
    finalizers = 0,
    url_n = 0, raise_n = 0, misuse = {}, opindex = 0, stalls = false,
  }
  local report = { failures = R.failures, sigs = R.sigs, seq = seq }

  local cover = {}
  local function count(what) cover[what] = (cover[what] or 0) + 1 end
  report.cover = cover

  local function fail(sig, msg)
    if R.sigs[sig] then
      R.sigs[sig] = R.sigs[sig] + 1
      return
    end
    R.sigs[sig] = 1
    R.failures[#R.failures + 1] = { sig = sig, msg = msg or sig, op = R.opindex }
    if env.trace then print("#   FAIL " .. sig .. ": " .. tostring(msg)) end
  end

  -- What happened to a job, for the failures about it.
  local function note(jrec, what)
    local h = jrec.hist
    if #h < 12 then h[#h + 1] = "op " .. R.opindex .. ": " .. what end
  end
  local function history(jrec) return " [" .. table.concat(jrec.hist, "; ") .. "]" end

  -- Client `c` (1..6) of an op: 1 to 4 pick among the open clients (if any),
  -- 5 and 6 among all (closed ones too).
  local function client_of(c)
    if #R.clients == 0 then return nil end
    if c <= 4 then
      local open = {}
      for _, crec in ipairs(R.clients) do if not crec.closed then open[#open + 1] = crec end end
      if #open > 0 then return open[(c - 1) % #open + 1] end
    end
    return R.clients[(c - 1) % #R.clients + 1]
  end

  local function url_of(kind)
    R.url_n = R.url_n + 1
    if kind == "invalid" then return "http://img" .. R.url_n .. ".invalid/x.png" end
    return emu.image .. "?m=" .. R.url_n
  end

  -- Frames: the operations under way, innermost last.
  function R.frames_op()
    local f = R.frames[#R.frames]
    return f and f.op or "the model"
  end
  local function push(op, crec)
    R.nextframe = R.nextframe + 1
    local f = { id = R.nextframe, op = op, c = crec }
    R.frames[#R.frames + 1] = f
    return f
  end
  local function pop(f)
    for i = #R.frames, 1, -1 do
      local g = R.frames[i]
      R.frames[i] = nil
      if g == f then return end
    end
  end

  -- Errors raised by callbacks and on_progress: registered with the frames
  -- under way, so that the one that gives it can be checked.
  local function raise(how, where)
    R.raise_n = R.raise_n + 1
    local text = "model error " .. R.raise_n .. " from " .. where
    local entry = { how = how, text = text, frames = {}, where = where, op = R.opindex }
    for _, f in ipairs(R.frames) do entry.frames[f.id] = true end
    R.entries[#R.entries + 1] = entry
    if how == "table" then
      local value = { model_error = R.raise_n, where = where }
      entry.value = value
      R.by_value[value] = entry
      error(value, 0)
    end
    entry.value = text
    R.by_text[text] = entry
    if how == "string1" then error(text) end -- with the position of this line
    error(text, 0)
  end

  -- The entry an error value is, and whether it is one of ours altered.
  local function lookup(e)
    if type(e) == "table" then return R.by_value[e] end
    if type(e) ~= "string" then return nil end
    local entry = R.by_text[e]
    if entry and entry.how == "string" then return entry end
    local text = e:match("^[^\n]-:%d+: (model error %d+ from [^\n]*)$")
    entry = text and R.by_text[text]
    if entry and entry.how == "string1" then return entry end
    if e:find("model error %d+ from") then return nil, true end
    return nil
  end

  -- Classifies an error raised by a client operation run in frame `f`:
  -- "raised" (a callback's, from a driver), "closed" (the client is
  -- closed), "misuse" (reentrant misuse), or a failure.
  local function catch(e, f, crec, nested)
    if e == WATCHDOG then error(e, 0) end
    local entry, altered = lookup(e)
    if entry then
      if entry.caught then
        fail("callback-error-raised-twice", entry.where .. ": raised again by " .. f.op .. " after " .. entry.caught)
      elseif not entry.frames[f.id] then
        fail("callback-error-from-elsewhere", entry.where .. " (op " .. entry.op .. ") raised by a later " .. f.op ..
          " (op " .. R.opindex .. ")")
      elseif not DRIVERS[f.op] then
        fail("callback-error-from-" .. f.op, entry.where .. " raised by " .. f.op)
      end
      entry.caught = f.op
      count("error out of " .. f.op)
      return "raised"
    end
    if altered then
      fail("callback-error-altered", f.op .. " raised a callback's error changed: " .. normalize(e))
      return "bad"
    end
    if type(e) == "string" and e:find("aliocr: attempt to use a closed client", 1, true) then
      if crec and crec.closed then
        count("closed client raised")
        return "closed"
      end
      fail("closed-error-on-open-client", f.op .. ": " .. normalize(e))
      return "bad"
    end
    if nested and type(e) == "string" and e:find("aliocr: ", 1, true) then
      local k = f.op .. ": " .. normalize(e)
      R.misuse[k] = (R.misuse[k] or 0) + 1
      return "misuse"
    end
    local where = crec and crec.closed and " (client closed)" or ""
    fail("error-from-" .. f.op .. where .. ": " .. normalize(e), f.op .. " raised " .. tostring(e))
    return "bad"
  end

  -- Runs a client operation in a frame; returns true and the packed
  -- results, or false and the class of its error.
  local function invoke(op, crec, fn, ...)
    local f = push(op, crec)
    local nested = #R.frames > 1
    local prime = R.prime
    if prime then
      R.prime = nil
      gc_prime(prime.make, prime.extra)
    end
    local out = pack(pcall(fn, ...))
    pop(f)
    if out[1] then return true, out end
    return false, catch(out[2], f, crec, nested), out[2]
  end

  -- The jobs of `crec` not finished, as their states say.
  local function model_pending(crec)
    local n = 0
    for _, j in ipairs(crec.jobs) do if ACTIVE[j.obj.state] then n = n + 1 end end
    return n
  end

  local function check_pending(crec, where)
    if crec.closed then return end
    local epoch = R.epoch
    local ok, n = pcall(crec.obj.pending, crec.obj)
    if not ok then
      if n == WATCHDOG then error(n, 0) end
      if not crec.closed then fail("pending-raised", where .. ": " .. normalize(n)) end
      return
    end
    local want = model_pending(crec)
    if n ~= want and epoch == R.epoch then
      local states = {}
      for _, j in ipairs(crec.jobs) do states[j.obj.state] = (states[j.obj.state] or 0) + 1 end
      fail("pending-mismatch", where .. ", client " .. crec.id .. ": pending() " .. tostring(n) ..
        ", jobs of submit not finished " .. want .. " " .. M.literal(states) ..
        (crec.batches_started > 0 and " (the client ran batches)" or "") .. (env.trace and M.insides(crec.obj) or ""))
    end
  end

  -- Every call is billed, not billed or of unknown billing; with
  -- retry_unknown, stats().unknown counts the attempts of unknown billing (a
  -- call can have several, and be billed too).
  local function check_partition(crec, s, where)
    local parts = s.billed + s.not_billed
    if crec.o.retry_unknown then
      if s.requests < parts or s.requests > parts + s.unknown then
        fail("stats-partition", "client " .. crec.id .. " (retry_unknown), " .. where .. ": not billed + " ..
          "not_billed <= requests <= billed + not_billed + unknown: " .. M.literal(copy(s)))
      end
    elseif s.requests ~= parts + s.unknown then
      fail("stats-partition", "client " .. crec.id .. ", " .. where .. ": requests ~= billed + not_billed + " ..
        "unknown: " ..
        M.literal(copy(s)))
    end
  end

  local function check_outcome(v, where)
    if type(v) ~= "table" then
      fail("bad-outcome", where .. ": " .. tostring(v))
      return { attempts = 0 }
    end
    if aliocr.is_error(v) then
      if v.billed ~= true and v.billed ~= false and v.billed ~= nil then fail("bad-billed", where) end
      if type(v.attempts) ~= "number" then fail("error-without-attempts", where .. ": " .. tostring(v)) end
      return { billed = v.billed, attempts = v.attempts or 0, kind = v.kind, prior = v.unknown_attempts or 0,
        value = v }
    end
    if v.billed ~= true then fail("result-not-billed", where) end
    if type(v.attempts) ~= "number" then fail("result-without-attempts", where) end
    return { billed = true, attempts = v.attempts or 0, prior = v.unknown_attempts or 0, value = v }
  end

  local exec_acts, do_submit, do_batch, do_close, do_cancel

  -- A job's callback: counted and checked, then its actions.
  local function callback_of(jrec, acts, depth)
    return function(res, err, job)
      -- Read before anything allocates (a finalizer could run and close).
      local closed_at_entry = jrec.c.closed
      R.callbacks = R.callbacks + 1
      jrec.ran = jrec.ran + 1
      local f = R.frames[#R.frames]
      note(jrec, "callback ran from " .. (f and f.op or "top"))
      local label = "job " .. jrec.n
      if jrec.ran > 1 then fail("callback-ran-twice", label .. "'s callback ran " .. jrec.ran .. " times") end
      if jrec.cancel_true then
        fail("callback-after-cancel", label .. "'s callback ran after cancel() gave true" .. history(jrec))
      end
      if closed_at_entry then
        fail("callback-after-close", label .. "'s callback ran after its client was closed (" ..
          tostring(jrec.c.closed_by) .. ")" .. history(jrec))
      end
      if job ~= jrec.obj then fail("callback-job-argument", label .. ": the third argument is not the job") end
      if type(job) == "table" then
        if job.state ~= "done" then
          fail("callback-state", label .. "'s callback ran in state " .. tostring(job.state))
        end
        if res ~= job.result or err ~= job.error then
          fail("callback-arguments", label .. ": (res, err) are not job.result, job.error")
        end
      end
      if (res == nil) == (err == nil) then fail("callback-res-err", label .. ": res and err both or neither") end
      if err ~= nil and not aliocr.is_error(err) then fail("callback-err-type", label .. ": err is not an Error") end
      if not f or not DRIVERS[f.op] or f.c ~= jrec.c then
        fail("callback-outside-driver", label .. "'s callback ran from " .. (f and (f.op .. " of client " ..
          (f.c and f.c.id or "?")) or "the top level") .. ", not from poll, wait or a batch of client " .. jrec.c.id)
      end
      local raise_how
      local cf = push("cb", jrec.c)
      local ok, e = pcall(function()
        check_pending(jrec.c, "in " .. label .. "'s callback")
        raise_how = exec_acts(acts, jrec.c, depth, jrec)
      end)
      pop(cf)
      if not ok then
        if e == WATCHDOG then error(e, 0) end
        fail("model-error", "in " .. label .. "'s callback: " .. tostring(e))
      end
      if raise_how then raise(raise_how, label .. "'s callback") end
    end
  end

  local function check_poll(crec, t, out, t0, epoch, runs)
    local elapsed = now() - t0
    if out.n - 1 ~= 1 then
      if type(out[3]) == "table" then
        fail("poll-returns-callback-errors", "poll returned the callbacks' errors as a second value: " ..
          normalize(out[3][1]))
      else
        fail("poll-returns-" .. (out.n - 1) .. "-values", "poll returned " .. (out.n - 1) .. " values")
      end
    end
    if crec.closed then return end
    local want = model_pending(crec)
    if out[2] ~= want and R.epoch == epoch then
      fail("poll-count", "poll(" .. t .. ") returned " .. tostring(out[2]) .. ", jobs of submit not finished " ..
        want .. (crec.batches_started > 0 and " (the client ran batches)" or ""))
    end
    if R.callbacks == runs and R.epoch == epoch and elapsed > t + slow(0.3) then
      fail("poll-blocked", "poll(" .. t .. ") took " .. string.format("%.2f", elapsed) .. " s")
    end
  end

  local function do_poll(crec, t)
    local t0, epoch, runs = now(), R.epoch, R.callbacks
    local waiting = {}
    for _, j in ipairs(crec.jobs) do
      if j.cb and j.ran == 0 and j.obj.state == "done" then waiting[#waiting + 1] = j end
    end
    local ok, out = invoke("poll", crec, crec.obj.poll, crec.obj, t)
    if ok then
      check_poll(crec, t, out, t0, epoch, runs)
      -- A poll that returns has run the callbacks of the jobs finished before.
      for _, j in ipairs(waiting) do
        if j.ran == 0 and not crec.closed then
          fail("poll-left-callback", "poll(" .. t .. ") returned and job " .. j.n .. ", done before it, has not had " ..
            "its callback run" .. history(j))
          break
        end
      end
    end
  end

  local function do_wait(crec)
    local ok, out = invoke("wait", crec, crec.obj.wait, crec.obj)
    if not ok then return out end
    for i = 2, out.n do
      if type(out[i]) == "table" then
        fail("wait-returns-callback-errors", "wait returned the callbacks' errors: " .. normalize(out[i][1]))
      end
    end
    if crec.closed then return "closed" end
    for _, j in ipairs(crec.jobs) do
      local st = j.obj.state
      if ACTIVE[st] then
        fail("wait-left-pending", "wait returned with job " .. j.n .. " " .. st)
        break
      end
      if st == "done" and j.cb and j.ran == 0 then
        fail("wait-left-undelivered", "wait returned before job " .. j.n .. "'s callback ran")
        break
      end
    end
    return "ok"
  end

  local function do_call(crec, kind, url_kind, opts)
    local closed_before = crec.closed
    local url = url_of(url_kind)
    local ok, out, e = invoke(kind, crec, crec.obj[kind], crec.obj, url, copy(opts))
    if not ok then
      if out ~= "closed" or not closed_before then crec.uncertain = crec.uncertain or ("a call raised " ..
        normalize(e)) end
      return
    end
    if crec.closed ~= closed_before then crec.uncertain = crec.uncertain or "closed during a call" end
    local res, err = out[2], out[3]
    if (res == nil) == (err == nil) then
      fail("call-res-err", kind .. " returned " .. tostring(res) .. ", " .. tostring(err))
      crec.uncertain = crec.uncertain or "a call without an outcome"
      return
    end
    if res ~= nil and aliocr.is_error(res) then fail("call-result-is-error", kind) end
    if err ~= nil and not aliocr.is_error(err) then
      fail("call-error-type", kind .. " returned err " .. tostring(err))
    end
    local o = check_outcome(res or err, kind)
    o.url, o.what = url, "a " .. kind .. " of client " .. crec.id
    crec.outcomes[#crec.outcomes + 1] = o
  end

  function do_cancel(jrec, via)
    local job = jrec.obj
    jrec.touched = R.opindex -- its own state may change (an answer that was in)
    local epoch = R.epoch
    local pre = job.state
    local f = push("cancel", jrec.c)
    local out = pack(pcall(job.cancel, job))
    pop(f)
    if not out[1] then
      catch(out[2], f, jrec.c, #R.frames > 0)
      return
    end
    local got, post = out[2], job.state
    count("cancel " .. pre .. (got and "" or " false"))
    note(jrec, "cancel (" .. via .. ") " .. pre .. " -> " .. tostring(got) .. ", " .. tostring(post))
    local stable = epoch == R.epoch
    if type(got) ~= "boolean" then fail("cancel-return", "cancel returned " .. tostring(got)) end
    local label = "job " .. jrec.n .. " (" .. via .. ")"
    if got == true then
      if jrec.cancel_true then fail("cancel-true-twice", label .. ": cancel() gave true twice") end
      jrec.cancel_true, jrec.cancel_pre = true, pre
      if not stable then jrec.c.uncertain = jrec.c.uncertain or "a finalizer ran during a cancel" end
      if post ~= "cancelled" then fail("cancel-true-state", label .. ": true, then state " .. tostring(post)) end
      if stable and not ACTIVE[pre] then fail("cancel-true-on-" .. pre, label .. ": true for a job " .. pre) end
      if jrec.ran > 0 then fail("cancel-true-after-callback", label .. ": true after its callback ran") end
    else
      if stable and (pre == "queued" or pre == "retrying") then
        fail("cancel-false-on-" .. pre, label .. ": false for a job " .. pre)
      end
      if stable and post == "cancelled" and pre ~= "cancelled" then
        fail("cancel-false-but-cancelled", label .. ": false, and now cancelled")
      end
    end
    return got
  end

  function do_close(crec, via)
    local snapshot = {}
    for _, j in ipairs(crec.jobs) do snapshot[j] = j.obj.state end
    local epoch = R.epoch
    local f = push("close", crec)
    local out = pack(pcall(crec.obj.close, crec.obj))
    pop(f)
    if not out[1] then
      catch(out[2], f, crec, #R.frames > 0)
      crec.uncertain = crec.uncertain or "close raised"
      return
    end
    if out[2] ~= true then fail("close-return", "close returned " .. tostring(out[2])) end
    if crec.closed then
      -- A finalizer closed it again during this close (and saw the jobs
      -- this close had cancelled already): the jobs active before are this
      -- close's.
      for _, j in ipairs(crec.jobs) do
        if ACTIVE[snapshot[j]] and not j.close_pre then j.close_pre = snapshot[j] end
      end
      return
    end
    count("close from " .. via)
    crec.closed, crec.closed_by = true, via
    if epoch ~= R.epoch then crec.uncertain = crec.uncertain or "a finalizer ran during close" end
    for _, j in ipairs(crec.jobs) do
      local pre, st = snapshot[j], j.obj.state
      if pre ~= "done" and pre ~= "cancelled" or st ~= pre then
        note(j, "client closed (" .. via .. ") " .. tostring(pre) .. " -> " .. tostring(st))
      end
      if pre == nil then
        crec.uncertain = crec.uncertain or "a job made during close"
      elseif ACTIVE[pre] then
        j.close_pre = pre
        if st == "done" and j.cb and j.ran == 0 then j.undelivered_at_close = true end
      elseif pre == "done" and j.cb and j.ran == 0 then
        j.undelivered_at_close = true
      end
      if ACTIVE[st] then
        if via == "a finalizer" then
          -- Put off to the end of the client's operation under way: checked
          -- after the top-level op.
          R.deferred[#R.deferred + 1] = crec
        else
          fail("job-" .. st .. "-after-close", "job " .. j.n .. " still " .. st .. " after close (" .. via .. ")")
        end
      end
    end
  end

  function do_submit(crec, sp, depth)
    local jrec = { n = #R.jobs + 1, c = crec, ran = 0, cb = sp.cb ~= false, depth = depth, kind = sp.kind, hist = {} }
    note(jrec, "submitted to client " .. crec.id .. (depth > 0 and " from a callback" or ""))
    local cb = sp.cb and callback_of(jrec, sp.cb, depth + 1) or nil
    local url = url_of(sp.url)
    local closed_before = crec.closed
    local ok, out = invoke("submit", crec, crec.obj.submit, crec.obj, sp.kind, url, copy(sp.o), cb)
    if not ok then return end
    local job = out[2]
    if type(job) ~= "table" then
      fail("submit-return", "submit returned " .. tostring(job))
      return
    end
    jrec.obj = job
    R.jobs[#R.jobs + 1] = jrec
    crec.jobs[#crec.jobs + 1] = jrec
    if crec.closed and not closed_before then
      -- Closed (by a finalizer) before the job was in the model's lists: the
      -- close found it queued.
      jrec.close_pre = "queued"
      note(jrec, "client closed during submit, job " .. tostring(job.state))
    end
    if job.call ~= sp.kind or job.kind ~= sp.kind or job.image_url ~= url then
      fail("job-fields", "job.call, job.kind or job.image_url wrong")
    end
    if job.state ~= "queued" and not crec.closed then fail("submit-state", "a new job is " .. tostring(job.state)) end
    return jrec
  end

  function do_batch(crec, sp, depth)
    local urls = {}
    for i, u in ipairs(sp.urls) do urls[i] = url_of(u) end
    local prog = {}
    for _, p in ipairs(sp.prog or {}) do prog[p.at] = p.acts end
    local progress = {}
    local opts = copy(sp.o) or {}
    opts.concurrency = sp.conc
    local label = "a batch (op " .. R.opindex .. ")"
    opts.on_progress = function(done, total)
      progress[#progress + 1] = done
      if total ~= #urls then fail("progress-total", label .. ": total " .. tostring(total) .. " for " .. #urls) end
      if done ~= #progress then
        fail("progress-order", label .. ": on_progress(" .. tostring(done) .. ") as call " .. #progress)
      end
      local acts = prog[done]
      if not acts then return end
      local raise_how
      local pf = push("progress", crec)
      local ok, e = pcall(function()
        check_pending(crec, "in on_progress")
        raise_how = exec_acts(acts, crec, depth, nil)
      end)
      pop(pf)
      if not ok then
        if e == WATCHDOG then error(e, 0) end
        fail("model-error", "in on_progress: " .. tostring(e))
      end
      if raise_how then raise(raise_how, label .. "'s on_progress(" .. done .. ")") end
    end
    crec.batches_started = crec.batches_started + 1
    local closed_before = crec.closed
    local ok, out = invoke("batch", crec, crec.obj.batch, crec.obj, sp.kind, urls, opts)
    if not ok then
      if out ~= "closed" or not closed_before then crec.uncertain = crec.uncertain or "a batch raised" end
      return
    end
    local results, summary = out[2], out[3]
    if type(results) ~= "table" then
      fail("batch-results", label .. " returned " .. tostring(results))
      crec.uncertain = crec.uncertain or "a batch without results"
      return
    end
    if #results ~= #urls then fail("batch-result-count", label .. ": " .. #results .. " results for " .. #urls) end
    -- Closed during the batch (from on_progress or a finalizer): the images
    -- not finished are cancelled, with no progress for them.
    local closed_during = crec.closed ~= closed_before
    if #progress ~= #urls and not (closed_during and #progress < #urls) then
      fail("batch-progress-count", label .. ": on_progress ran " .. #progress .. " times for " .. #urls)
    end
    local okn = 0
    for i = 1, #urls do
      local o = check_outcome(results[i], label .. " image " .. i)
      o.url, o.what = urls[i], label .. " image " .. i .. " (client " .. crec.id .. ")"
      crec.outcomes[#crec.outcomes + 1] = o
      if results[i] ~= nil and not aliocr.is_error(results[i]) then okn = okn + 1 end
    end
    if type(summary) ~= "table" or summary.total ~= #urls or summary.ok ~= okn or summary.failed ~= #urls - okn then
      fail("batch-summary", label .. ": a summary that does not match its results")
    end

  end

  -- A job to cancel: one in state `pick` if any (any client), else any.
  local function pick_job(pick, r)
    local list = {}
    if pick ~= "any" then
      for _, j in ipairs(R.jobs) do if j.obj.state == pick then list[#list + 1] = j end end
    end
    if #list == 0 then list = R.jobs end
    if #list == 0 then return nil end
    return list[r % #list + 1]
  end

  -- The actions of a callback or an on_progress on client `crec`; returns
  -- how to raise at the end, if so.
  function exec_acts(acts, crec, depth, jrec)
    local raise_how
    for _, a in ipairs(acts or {}) do
      local name = a[1]
      R.nested = R.nested + 1
      if name == "poll" then
        local target = a.c and client_of(a.c) or crec
        do_poll(target, a.t)
      elseif name == "wait" then do_wait(crec)
      elseif name == "cancel" then
        local j = pick_job(a.pick, a.r)
        if j then do_cancel(j, "from a callback") end
      elseif name == "cancelself" then
        if jrec then
          local got = do_cancel(jrec, "from its own callback")
          if got == true then fail("cancel-self-true", "a job's cancel() from its own callback gave true") end
        end
      elseif name == "call" then do_call(crec, a.kind, a.url, a.o)
      elseif name == "batch" then do_batch(crec, a, depth + 1)
      elseif name == "close" then do_close(crec, "a callback")
      elseif name == "submit" then do_submit(crec, a, depth + 1)
      elseif name == "gc" then collectgarbage()
      elseif name == "pending" then check_pending(crec, "pending() in a callback")
      elseif name == "yield" then
        count("yield")
        coroutine.yield()
      elseif name == "raise" then raise_how = a.how
      end
    end
    return raise_how
  end

  -- Coroutines: a batch run in one, resumed from the top level. The frames
  -- under way inside it are kept aside while it is suspended.
  local function resume(rec)
    local base = #R.frames
    for _, f in ipairs(rec.saved) do R.frames[#R.frames + 1] = f end
    local ok, e = coroutine.resume(rec.co)
    rec.saved = {}
    for i = base + 1, #R.frames do rec.saved[#rec.saved + 1] = R.frames[i] end
    for i = #R.frames, base + 1, -1 do R.frames[i] = nil end
    if not ok then
      if e == WATCHDOG then error(e, 0) end
      fail("model-error", "in a batch's coroutine: " .. tostring(e))
    end
    if coroutine.status(rec.co) == "dead" then
      for i, s in ipairs(R.suspended) do
        if s == rec then table.remove(R.suspended, i) break end
      end
      return true
    end
    return false
  end

  local function new_client(o)
    local opts = { endpoint = emu.endpoint, connect_timeout = 1 }
    for k, v in pairs(o) do opts[k] = v end
    local ok, c = pcall(aliocr.new, opts)
    if not ok then
      fail("new-raised", normalize(c))
      return
    end
    R.clients[#R.clients + 1] = { obj = c, o = o, id = #R.clients + 1, jobs = {}, outcomes = {}, closed = false,
      batches_started = 0, conc = o.concurrency or 8 }
  end

  -- Top-level operations -----------------------------------------------------
  local NON_DRIVERS = { submit = true, cancel = true, check = true, fault = true, clear = true, settings = true,
    new = true, gcobj = true, collect = true, step = true, abandon = true }

  local function exec(op)
    local name = op[1]
    local crec = op.c and client_of(op.c)
    if name == "submit" then if crec then do_submit(crec, op, 0) end
    elseif name == "poll" then if crec then do_poll(crec, op.t) end
    elseif name == "wait" then if crec then do_wait(crec) end
    elseif name == "cancel" then
      local j = pick_job(op.pick, op.r)
      if j then do_cancel(j, "top level") end
    elseif name == "batch" then if crec then do_batch(crec, op, 0) end
    elseif name == "cobatch" then
      if crec then
        local rec = { saved = {} }
        rec.co = coroutine.create(function() do_batch(crec, op, 0) end)
        arm_hook(rec.co)
        rec.c = crec
        R.suspended[#R.suspended + 1] = rec
        local dead = resume(rec)
        while op.finish and not dead do dead = resume(rec) end
      end
    elseif name == "resume" then
      if #R.suspended > 0 then
        local rec = R.suspended[op.r % #R.suspended + 1]
        local dead = resume(rec)
        while op.finish and not dead do dead = resume(rec) end
      end
    elseif name == "abandon" then
      if #R.suspended > 0 then
        local rec = table.remove(R.suspended, op.r % #R.suspended + 1)
        count("batch abandoned")
        rec.c.uncertain = rec.c.uncertain or "a batch abandoned in a coroutine"
      end
    elseif name == "call" then if crec then do_call(crec, op.kind, op.url, op.o) end
    elseif name == "collect" then collectgarbage()
    elseif name == "step" then collectgarbage("step")
    elseif name == "gcobj" or name == "gcburst" then
      local action
      if op.what == "cancel" then
        local j = pick_job(op.pick, op.r)
        if j then action = function() do_cancel(j, "a finalizer") end end
      elseif crec then
        local target = op.other and client_of(op.other) or crec
        action = function() do_close(target, "a finalizer") end
      end
      local burst = name == "gcburst" and action and crec
      local function make()
        finalized(function()
          if R.dead then return end
          if in_hook() then
            count("finalizer skipped: it ran inside the watchdog's hook")
            return
          end
          R.finalizers = R.finalizers + 1
          if burst then count("finalizer of a burst in " .. R.frames_op()) end
          R.epoch = R.epoch + 1
          local ok, e = pcall(action)
          R.epoch = R.epoch + 1
          if not ok and e ~= WATCHDOG then fail("model-error", "in a finalizer: " .. tostring(e)) end
        end)
      end
      if burst then
        -- Primed right before the client's function is called (see invoke).
        R.prime = { make = make, extra = op.extra or 0 }
        if op.drive == "poll" then do_poll(crec, 0.01)
        elseif op.drive == "call" then do_call(crec, op.kind, op.url, nil)
        elseif op.drive == "wait" then do_wait(crec)
        else do_batch(crec, { kind = op.kind, urls = { "ok", "ok", "ok" }, conc = 3 }, 0) end
        gc_restore()
      elseif action then
        make()
      end
    elseif name == "fault" then
      if op.rule.mode == "stall_headers" or op.rule.mode == "stall_body" then R.stalls = true end
      local _, status = emu:fault(op.rule)
      if status ~= 200 then fail("model-error", "the emulator refused fault " .. M.literal(op.rule)) end
    elseif name == "clear" then emu:ctl("DELETE", "/faults")
    elseif name == "settings" then
      local _, status = emu:settings(op.s)
      if status ~= 200 then fail("model-error", "the emulator refused settings " .. M.literal(op.s)) end
    elseif name == "check" then
      if crec then
        check_pending(crec, "pending()")
        local ok, s = pcall(crec.obj.stats, crec.obj)
        if ok and type(s) == "table" then
          check_partition(crec, s, "stats() at op " .. R.opindex)
        elseif ok then
          fail("stats-type", "stats() returned " .. tostring(s))
        elseif not crec.closed then
          fail("stats-raised", normalize(s))
        end
      end
    elseif name == "close" then if crec then do_close(crec, "top level") end
    elseif name == "new" then new_client(op.o)
    end
  end

  -- After each top-level op: closes put off are done, pending() and the
  -- concurrency bound hold, and nothing changed outside the drivers.
  local function settle_deferred(name)
    for _, crec in ipairs(R.deferred) do
      for _, j in ipairs(crec.jobs) do
        local st = j.obj.state
        -- Finished after the close was asked for, before it took effect: as
        -- a job finished before close, its callback never runs.
        if j.close_pre and st == "done" and j.cb and j.ran == 0 then j.undelivered_at_close = true end
        if ACTIVE[st] then
          fail("job-" .. st .. "-after-close", "job " .. j.n .. " still " .. st .. " after a close from a finalizer," ..
            " at the end of the op (" .. name .. ")")
        end
      end
    end
    R.deferred = {}
  end

  local function after_op(name, before, epoch, target)
    settle_deferred(name)
    for _, crec in ipairs(R.clients) do
      if not crec.closed then
        check_pending(crec, "after " .. name)
        local running = 0
        for _, j in ipairs(crec.jobs) do if j.obj.state == "running" then running = running + 1 end end
        if running > crec.conc then
          fail("concurrency-exceeded", running .. " jobs of submit running on a client of concurrency " .. crec.conc ..
            " after " .. name .. (#R.suspended > 0 and " (a batch suspended in a coroutine)" or "") ..
            (crec.batches_started > 0 and " (the client ran batches)" or ""))
        end
      end
    end
    -- The jobs' histories: the ends seen at this op's end (for the messages).
    for _, j in ipairs(R.jobs) do
      local st = j.obj.state
      if st ~= j.seen then
        if (st == "cancelled" or st == "done") and j.seen ~= nil then
          note(j, "now " .. st .. " (after " .. name .. " of client " .. (target or "?") .. ")")
        end
        j.seen = st
      end
    end
    -- Outside poll, wait, batches and blocking calls nothing starts or ends.
    if before and epoch == R.epoch then
      for j, st in pairs(before) do
        local now_st = j.obj.state
        if now_st ~= st and j.touched ~= R.opindex and not j.c.closed then
          fail("state-changed-by-" .. name, "job " .. j.n .. " went from " .. st .. " to " .. now_st .. " in " ..
            name .. history(j))
        end
      end
    end
  end

  -- The run ----------------------------------------------------------------
  emu:reset()
  -- Aggressive collection, so that finalizers run in the middle of the
  -- client's own code: Lua 5.4's generational mode (frequent minor
  -- collections, which run the finalizers of young objects), else a short
  -- pause. (A pause of 100 or less makes the collector run without a break,
  -- which the sanitizers' allocator turns into minutes.)
  local saved_pause, saved_mul, saved_mode
  if seq.gc == "aggressive" then
    if _VERSION == "Lua 5.4" then
      saved_mode = collectgarbage("generational", 5, 50)
    else
      saved_pause = collectgarbage("setpause", 110)
      saved_mul = collectgarbage("setstepmul", 400)
    end
  end
  arm_hook()
  for _, o in ipairs(seq.clients) do new_client(o) end
  local aborted
  for i, op in ipairs(seq.ops) do
    R.opindex = i
    if env.trace then print("# op " .. i .. ": " .. describe_op(op)) end
    local name = op[1]
    local before
    if NON_DRIVERS[name] then
      before = {}
      for _, j in ipairs(R.jobs) do if ACTIVE[j.obj.state] then before[j] = j.obj.state end end
    end
    local epoch = R.epoch
    local t0 = now()
    deadline = t0 + env.watchdog
    local ok, e = pcall(exec, op)
    R.prime = nil
    gc_restore()
    if env.profile then
      local p = env.profile[name] or { n = 0, t = 0 }
      env.profile[name] = p
      local dt = now() - t0
      p.n, p.t = p.n + 1, p.t + dt
      if dt > 0.05 then
        p.slow = (p.slow or 0) + 1
        if env.trace then print(string.format("#   slow op %d: %.3f s", i, dt)) end
      end
    end
    if ok then ok, e = pcall(after_op, name, before, epoch, op.c and client_of(op.c) and client_of(op.c).id) end
    deadline = math.huge
    R.frames = {}
    if not ok then
      if e == WATCHDOG then
        fail("hang", "op " .. i .. " " .. describe_op(op) .. " still ran after " .. env.watchdog .. " s")
      else
        fail("model-error", "op " .. i .. ": " .. tostring(e))
      end
      aborted = true
      break
    end
    if env.stop_on and R.sigs[env.stop_on] then aborted = true break end
  end
  R.opindex = #seq.ops + 1
  report.ops = aborted and R.opindex - 1 or #seq.ops

  -- The end: every client waited for (its callbacks' errors taken) and
  -- closed; batches left in coroutines are abandoned.
  for _, rec in ipairs(R.suspended) do rec.c.uncertain = rec.c.uncertain or "a batch left in a coroutine" end
  R.suspended = {}
  deadline = now() + env.watchdog * 2
  local final_ok, final_e = pcall(function()
    for _, crec in ipairs(R.clients) do
      if not aborted then
        for _ = 1, 50 do
          if crec.closed then break end
          local how = do_wait(crec)
          if how ~= "raised" then break end
        end
        check_pending(crec, "after the last wait")
      end
      if not crec.closed then do_close(crec, "the end") end
    end
    collectgarbage()
    collectgarbage()
    settle_deferred("the end")
  end)
  deadline = math.huge
  if not final_ok then
    fail(final_e == WATCHDOG and "hang" or "model-error",
      "at the end (wait, close): " .. tostring(final_e))
    aborted = true
  end
  R.dead = true
  debug.sethook()
  if saved_mode then collectgarbage(saved_mode) end
  if saved_pause then
    collectgarbage("setpause", saved_pause)
    collectgarbage("setstepmul", saved_mul)
  end

  -- Stats, after close.
  local stats = {}
  for _, crec in ipairs(R.clients) do
    local ok, s = pcall(crec.obj.stats, crec.obj)
    if not ok then
      fail("stats-after-close-raises", "stats() on a closed client raised " .. normalize(s))
      s = crec.obj._stats -- the counts themselves, to check the rest
    end
    stats[crec] = s
  end

  if env.trace then
    for _, j in ipairs(R.jobs) do
      print("#   job " .. j.n .. " " .. tostring(j.obj.state) .. " attempts " .. tostring(j.obj.attempts) .. " " ..
        tostring(j.obj.result or j.obj.error) .. history(j))
    end
  end
  if not aborted then
    -- Jobs: final, and their callbacks as their cancels say.
    for _, j in ipairs(R.jobs) do
      local st, label = j.obj.state, "job " .. j.n
      if st ~= "done" and st ~= "cancelled" then
        fail("job-not-final", label .. " ended " .. tostring(st) .. history(j))
      end
      if j.cancel_true then
        if st ~= "cancelled" then
          fail("cancelled-job-state", label .. ": cancel() gave true, state " .. st .. history(j))
        end
      elseif st == "cancelled" then
        if not j.close_pre and not j.c.uncertain then
          fail("cancelled-without-cancel", label .. " ended cancelled, and neither cancel() nor close did it" ..
            history(j))
        end
        if j.ran > 0 then
          fail("callback-of-cancelled-job", label .. ": cancelled after its callback ran" .. history(j))
        end
      elseif st == "done" then
        local v = j.obj.result or j.obj.error
        if v == nil or (j.obj.result and j.obj.error) then fail("done-outcome", label .. ": done with no outcome")
        elseif v.attempts ~= j.obj.attempts then
          fail("job-attempts", label .. ": job.attempts " .. tostring(j.obj.attempts) .. ", outcome " ..
            tostring(v.attempts))
        end
        if j.cb and j.ran == 0 and j.undelivered_at_close then
          -- Its answer was in when the client was closed: done (and billed,
          -- its outcome in job.result or job.error), and, as close says, no
          -- callback runs after close.
          count("done, callback not run: closed")
        elseif j.cb and j.ran ~= 1 then
          fail("callback-ran-" .. j.ran .. "-times", label .. "'s callback ran " .. j.ran .. " times" .. history(j))
        end
      end
    end
    -- Every error raised by a callback or on_progress came out once.
    for _, entry in ipairs(R.entries) do
      if not entry.caught then
        fail("callback-error-not-raised", "the error of " .. entry.where .. " (op " .. entry.op ..
          ", a " .. entry.how .. ") never came out of poll, wait or a batch")
      end
    end
    -- stats() of each client as its jobs, calls and batches ended.
    for _, crec in ipairs(R.clients) do
      local s = stats[crec]
      if type(s) ~= "table" then
        fail("stats-missing", "client " .. crec.id)
      else
        check_partition(crec, s, "after close")
        if not crec.uncertain then
          local want = { requests = 0, billed = 0, not_billed = 0, attempts = 0, errors = {} }
          local lo, hi = 0, 0 -- unknown
          local maybe = 0 -- not billed, or unknown
          R.notes[crec] = {}
          local function add(o, cancelled, what)
            if o.billed ~= true then
              table.insert(R.notes[crec], (what or "a call") .. ": " .. tostring(o.kind) .. " billed " ..
                tostring(o.billed) .. " attempts " .. tostring(o.attempts) .. " prior " .. tostring(o.prior))
            end
            want.requests = want.requests + 1
            want.attempts = want.attempts + (o.attempts or 0)
            local prior = o.prior or 0
            if o.billed == true then
              want.billed = want.billed + 1
              lo, hi = lo + prior, hi + prior
            elseif o.billed == false then
              want.not_billed = want.not_billed + 1
            elseif o.maybe then
              maybe = maybe + 1
            elseif prior > 0 then
              -- The last attempt's billing unknown too, or not billed.
              lo, hi = lo + prior, hi + prior + 1
            elseif o.kind == "cancelled" and crec.o.retry_unknown then
              lo, hi = lo + 1, hi + math.max(1, o.attempts or 0)
            else
              lo, hi = lo + 1, hi + 1
            end
            local kind = cancelled and "cancelled" or o.kind
            if kind then want.errors[kind] = (want.errors[kind] or 0) + 1 end
          end
          for _, j in ipairs(crec.jobs) do
            local job = j.obj
            if job.state == "done" then
              local o = check_outcome(job.result or job.error, "job " .. j.n)
              o.attempts = job.attempts
              add(o, false, "job " .. j.n)
            elseif job.state == "cancelled" then
              if job.error ~= nil then
                -- Its error says how it was billed.
                local o = check_outcome(job.error, "job " .. j.n)
                if o.kind ~= "cancelled" then fail("cancelled-job-error", "job " .. j.n .. ": error of kind " ..
                  tostring(o.kind)) end
                local pre = j.cancel_true and j.cancel_pre or j.close_pre
                if (pre == "queued" or pre == "retrying") and not crec.o.retry_unknown and o.billed ~= false then
                  fail("cancelled-error-billed", "job " .. j.n .. " cancelled while " .. pre .. " (never sent, or " ..
                    "every attempt answered unbilled): job.error.billed is " .. tostring(o.billed) .. ", not false")
                end
                o.attempts = job.attempts
                if o.billed == nil and o.prior == 0 and not crec.o.retry_unknown then
                  -- Not sent, or in flight: stats() say which (not billed, or
                  -- unknown); the error's billing is checked above.
                  if pre == "queued" or pre == "retrying" then o.billed = false else o.maybe = true end
                end
                add(o, true, "job " .. j.n .. " (cancelled, pre " .. tostring(j.cancel_pre or j.close_pre) .. ")")
              else
                local pre = j.cancel_true and j.cancel_pre or j.close_pre
                local billed = false
                if pre == "running" then billed = nil end
                add({ billed = billed, attempts = job.attempts, kind = "cancelled" }, true,
                  "job " .. j.n .. " (cancelled, no error, pre " .. tostring(pre) .. ")")
              end
            end
          end
          for _, o in ipairs(crec.outcomes) do add(o) end
          local detail = " (" .. M.literal({ got = copy(s), want = want, unknown = { lo, hi }, maybe = maybe }) ..
            "; " ..
            table.concat(R.notes[crec] or {}, "; ") .. ")"
          for _, k in ipairs({ "requests", "billed", "not_billed", "attempts" }) do
            local within = k == "not_billed" and s[k] >= want[k] and s[k] <= want[k] + maybe
            if s[k] ~= want[k] and not within then
              fail("stats-" .. k, "client " .. crec.id .. ": stats()." .. k .. " " .. tostring(s[k]) ..
                ", its calls " ..
                want[k] .. detail)
            end
          end
          if s.unknown < lo or s.unknown > hi + maybe then
            fail("stats-unknown", "client " .. crec.id .. ": stats().unknown " .. tostring(s.unknown) ..
              ", its calls " .. (lo == hi and lo or (lo .. " to " .. hi)) .. detail)
          end
          local kinds = {}
          for k in pairs(want.errors) do kinds[k] = true end
          for k in pairs(s.errors or {}) do kinds[k] = true end
          for k in pairs(kinds) do
            if (s.errors[k] or 0) ~= (want.errors[k] or 0) then
              fail("stats-errors-" .. k, "client " .. crec.id .. ": stats().errors." .. k .. " " ..
                tostring(s.errors[k]) .. ", its calls " .. tostring(want.errors[k]))
            end
          end
        end
      end
    end
  end

  -- The emulator: its request log and its ledger against the stats, by
  -- credential, once every request has reached them.
  local groups, total = {}, 0
  for _, crec in ipairs(R.clients) do
    local s = stats[crec]
    local cred = crec.o.appcode == "nope" and "?" or crec.o.appcode
    local g = groups[cred] or { attempts = 0, billed = 0, unknown = 0, clients = {} }
    groups[cred] = g
    if type(s) == "table" then
      g.attempts = g.attempts + s.attempts
      g.billed = g.billed + s.billed
      g.unknown = g.unknown + s.unknown
      total = total + s.attempts
    end
    g.clients[#g.clients + 1] = crec.id
    -- Failures that may have sent nothing at all (a timeout or transport
    -- error, not billed, no status: e.g. a job's timeout ran out while its
    -- client was not polled, before its request went out): each is an
    -- attempt the emulator's log may lack.
    g.unsent = g.unsent or 0
    -- So may every earlier attempt of a retried call (retried: not billed),
    -- and those of a call cancelled with nothing billed.
    local function maybe_unsent(e)
      if type(e) ~= "table" then return end
      local n = e.attempts or 0
      if aliocr.is_error(e) and e.billed == false and (e.kind == "cancelled" or
          ((e.kind == "timeout" or e.kind == "transport") and e.status == nil)) then
        g.unsent = g.unsent + n
      elseif n > 1 then
        g.unsent = g.unsent + n - 1
      end
    end
    for _, o in ipairs(crec.outcomes) do maybe_unsent(o.value) end
    for _, j in ipairs(crec.jobs) do maybe_unsent(j.obj.error or j.obj.result) end
  end
  local t_emu = now()
  -- Until the log holds every attempt; or, when it holds fewer, until it
  -- has not grown for a while (a stalled request is logged when the
  -- emulator is done with it: up to a second).
  local log, since = {}, 0
  local last_change, quiet = now(), slow(R.stalls and 1.2 or 0.3)
  repeat
    local got = emu:requests(since) or {}
    for _, e in ipairs(got) do
      log[#log + 1] = e
      since = math.max(since, math.floor(e.seq))
    end
    if #got > 0 then last_change = now() end
    if #log >= total then break end
    socket.sleep(0.03)
  until now() - last_change > quiet
  local t_settle = now()
  local ledger = emu:settled_ledger()
  if env.profile then
    local p = env.profile["(log wait)"] or { n = 0, t = 0 }
    env.profile["(log wait)"] = p
    p.n, p.t = p.n + 1, p.t + t_settle - t_emu
    p = env.profile["(settle)"] or { n = 0, t = 0 }
    env.profile["(settle)"] = p
    p.n, p.t = p.n + 1, p.t + now() - t_settle
  end
  for _, e in ipairs(emu:requests(since) or {}) do log[#log + 1] = e end
  if not aborted then
    local logged = {}
    for _, e in ipairs(log) do
      local cred = e.credential or "?"
      logged[cred] = (logged[cred] or 0) + 1
    end
    -- The outcomes whose last request the log does not have (to tell which).
    -- The calls whose attempts the log does not all have (each image URL is
    -- a call's own), to tell which.
    local function missing()
      local by_url, out = {}, {}
      for _, e in ipairs(log) do
        local u = e.params and e.params.url
        if type(u) == "table" then u = u[1] end
        if u then by_url[u] = (by_url[u] or 0) + 1 end
      end
      local function look(url, attempts, v, what)
        local n = by_url[url] or 0
        if n ~= attempts and #out < 4 then
          out[#out + 1] = what .. ": " .. tostring(attempts) .. " attempts, " .. n .. " logged (" .. tostring(v) .. ")"
        end
      end
      for _, j in ipairs(R.jobs) do
        look(j.obj.image_url, j.obj.attempts, j.obj.result and "ok" or j.obj.error, "job " .. j.n .. history(j))
      end
      for _, crec in ipairs(R.clients) do
        for _, o in ipairs(crec.outcomes) do
          if o.url then look(o.url, o.attempts, o.kind or "ok", o.what) end
        end
      end
      return #out > 0 and (" (" .. table.concat(out, "; ") .. ")") or ""
    end
    for cred, g in pairs(groups) do
      local n = logged[cred] or 0
      local who = "credential " .. cred .. " (clients " .. table.concat(g.clients, ", ") .. ")"
      if n > g.attempts or n < g.attempts - g.unsent then
        fail(n > g.attempts and "log-more-than-attempts" or "log-fewer-than-attempts",
          who .. ": " .. n .. " requests in the emulator's log, stats().attempts " .. g.attempts .. missing())
      end
      local L = cred ~= "?" and ledger.credentials[cred]
      if L then
        if L.requests ~= n then
          fail("ledger-requests", who .. ": ledger requests " .. L.requests .. ", log " .. n)
        end
        if g.unknown == 0 and L.billed ~= g.billed then
          fail("ledger-billed", who .. ": ledger billed " .. L.billed .. ", stats().billed " .. g.billed)
        elseif g.unknown > 0 and (L.billed < g.billed or L.billed > g.billed + g.unknown) then
          fail("ledger-billed-bounds", who .. ": ledger billed " .. L.billed .. ", stats() billed " .. g.billed ..
            " + unknown " .. g.unknown)
        end
      elseif cred == "?" and g.billed ~= 0 then
        fail("billed-unknown-credential", who .. ": billed " .. g.billed)
      end
    end
  end

  local m = {}
  for k, v in pairs(R.misuse) do m[#m + 1] = v .. "x " .. k end
  table.sort(m)
  report.misuse = m
  report.nested, report.callbacks, report.finalizers = R.nested, R.callbacks, R.finalizers
  report.requests = total
  return report
end

-- Shrinking -------------------------------------------------------------------

--- Drops ops of `seq` (halves, then quarters, ... then one at a time) while
-- a run still fails with `sig`, for at most `seconds`. Returns the smallest
-- sequence found and the number of runs.
function M.shrink(seq, env, sig, seconds)
  local stop = now() + seconds
  local best, runs = seq, 0
  local chunk = floor(#best.ops / 2)
  local env2 = {}
  for k, v in pairs(env) do env2[k] = v end
  env2.stop_on, env2.trace = sig, false
  while chunk >= 1 and now() < stop do
    local i = 1
    while i <= #best.ops and now() < stop do
      local cand = { seed = best.seed, clients = best.clients, gc = best.gc, ops = {} }
      for k, op in ipairs(best.ops) do
        if k < i or k >= i + chunk then cand.ops[#cand.ops + 1] = op end
      end
      runs = runs + 1
      local rep = M.run(cand, env2)
      if rep.sigs[sig] then best = cand else i = i + chunk end
    end
    chunk = floor(chunk / 2)
  end
  return best, runs
end

return M
