-- The model-based test of the nginx transport (spec/integration/model_nginx_spec.lua):
-- a seeded generator of random operation sequences, a runner that plays
-- them against a test nginx (one worker; the handlers of
-- spec/helpers/model_nginx_case.lua) and the emulator, with random faults
-- between steps, and the invariants checked after every sequence. The
-- generator's numbers, the seeds of sequences and the printing of a
-- sequence as a replay file are those of spec/helpers/model.lua.
--
-- The operations (each one request to nginx, or a change to the emulator):
--   work        a blocking call (recognize or handwriting, with options) or
--               a batch (concurrency; on_progress that raises a string or a
--               table, sleeps, makes a call, closes the client, ngx.exit),
--               on the worker's shared client or on a client of the request
--   kill        calls or batches in light threads, some killed
--               (ngx.thread.kill) after a random delay
--   exit        ngx.exit from the handler while a call or a batch runs
--   throw       error() in the handler while a call or a batch runs
--   closeother  client:close() from another light thread mid-call
--   abort       a call or a batch whose HTTP client (this test) hangs up
--               mid-call (lua_check_client_abort on)
--   par         two to four of those at once (separate requests)
--   fault, clear, settings   the emulator's fault rules and settings
-- A cut-off op may first add a latency fault (`lat`), so that the cut finds
-- calls in flight.
--
-- The invariants, once the emulator's log and ledger have settled:
--   * every call gave a result or an aliocr error object, a batch its
--     results or the user's own raised value (never a raw Lua error; a call
--     on a closed client raises "attempt to use a closed client");
--   * stats() of every client: requests == billed + not_billed + unknown,
--     and requests equals the calls made on it (each counted once): exactly
--     for calls and batches that returned or raised; for one cut off, at
--     least those whose request reached the emulator (or that finished) and
--     at most all;
--   * by credential (m1: the shared clients, m2: the clients of requests):
--     the ledger's billed lies within [billed, billed + unknown] of the
--     stats, its requests equal the request log's, and the log holds no
--     more requests than stats().attempts (and no fewer than those, less
--     the ones that may never have gone out);
--   * a result's request id is that of a request for its image URL that the
--     emulator answered with 2xx (no answer of another call);
--   * nginx's error log has no Lua error other than the user's own raised
--     values (socket errors, which nginx logs itself, aside), no alert, no
--     crash; the worker keeps its pid and its RSS stays bounded.
local cjson = require("cjson")
local socket = require("socket")
local http = require("helpers.http")
local model = require("helpers.model")

local M = {}

local now = socket.gettime

-- Seconds an op's request may take before it counts as hung.
local ANSWER_TIMEOUT = 10

M.rng, M.sequence_seed, M.literal, M.format = model.rng, model.sequence_seed, model.literal, model.format

-- The generator ------------------------------------------------------------

local KINDS = { "recognize", "handwriting" }

local TOP = {
  { "call", 18 }, { "batch", 10 }, { "kill", 9 }, { "exit", 6 }, { "throw", 3 }, { "abort", 7 },
  { "closeother", 6 }, { "par", 5 }, { "fault", 9 }, { "clear", 3 }, { "settings", 3 },
}
local CUT = { kill = true, exit = true, throw = true, abort = true, closeother = true }

local function gen_url(r) return r.chance(0.1) and "invalid" or "ok" end

local function gen_call_opts(r)
  if r.chance(0.65) then return nil end
  local k = r.int(1, 5)
  if k == 1 then return { timeout = r.pick({ 0.2, 0.3, 0.5 }) } end
  if k == 2 then return { retries = r.int(0, 2) } end
  if k == 3 then return { show = 1 } end
  if k == 4 then return { params = { model = "x" } } end
  return { method = "GET" }
end

-- Options of a client (the endpoint is added when it runs).
function M.gen_client(r, appcode)
  local d = r.pick({ 0, 0.005, 0.02, 0.1 })
  local o = {
    appcode = appcode,
    timeout = r.pick({ 0.3, 0.4, 0.5, 0.8 }),
    retries = r.int(0, 2),
    concurrency = r.pick({ 1, 2, 3, 4, 8 }),
    retry_delay = d, retry_max_delay = d * 2,
    connect_timeout = 1,
  }
  if r.chance(0.15) then o.method = "GET" end
  if r.chance(0.05) then o.max_response_bytes = 10000 end
  return o
end

local function gen_prog_acts(r, ctx)
  local acts = {}
  local k = r.int(1, 12)
  if k <= 3 then acts[#acts + 1] = { "sleep", ms = r.pick({ 0, 5, 20, 60 }) }
  elseif k <= 5 then acts[#acts + 1] = { "call", kind = r.pick(KINDS), url = gen_url(r) }
  elseif k == 6 then acts[#acts + 1] = { "close" }
  elseif k == 7 and ctx ~= "nested" then acts[#acts + 1] = { "exit" }
  end
  if r.chance(0.25) then acts[#acts + 1] = { "raise", how = r.pick({ "string", "table" }) } end
  return acts
end

-- The work of an op: a call, or a batch (w = "batch").
local function gen_work(r, target)
  local t = target or (r.chance(0.6) and "s" or "r")
  local w = { t = t, kind = r.pick(KINDS) }
  if t == "r" then w.co = M.gen_client(r, "m2") end
  if r.chance(0.35) then
    w.w = "batch"
    local n = r.int(1, 5)
    w.urls = {}
    for i = 1, n do w.urls[i] = gen_url(r) end
    w.conc = r.int(1, 4)
    w.o = gen_call_opts(r)
    if r.chance(0.7) then
      w.prog = {}
      for at = 1, n do
        if r.chance(0.35) then w.prog[#w.prog + 1] = { at = at, acts = gen_prog_acts(r) } end
      end
    end
  else
    w.w = "call"
    w.url = gen_url(r)
    w.o = gen_call_opts(r)
  end
  return w
end

local function delay(r) return r.pick({ 0, 1, 5, 20, 50, 100, 200, 400 }) end

local function gen_fault(r, rows)
  local rule
  local k = r.int(1, 30)
  local function from(row)
    rule = {}
    for key, v in pairs(row.rule) do rule[key] = v end
  end
  local function stall(row) return row.rule.mode == "stall_headers" or row.rule.mode == "stall_body" end
  if k <= 18 then
    local candidates = {}
    for _, row in ipairs(rows) do if row.rule and not stall(row) then candidates[#candidates + 1] = row end end
    from(r.pick(candidates))
  elseif k <= 22 then
    rule = { mode = "latency", ms = r.pick({ 5, 20, 50, 150 }) }
  elseif k <= 24 then
    rule = { mode = r.pick({ "stall_headers", "stall_body" }), ms = r.pick({ 300, 600, 900 }) }
    if rule.mode == "stall_headers" then rule["then"] = r.pick({ "answer", "close" }) end
  else
    rule = { mode = r.pick({ "service_unavailable", "throttled_api", "internal_error", "reset_before_headers",
      "reset_after_headers", "truncate", "not_json" }) }
  end
  local slow = rule.mode == "stall_headers" or rule.mode == "stall_body"
  if slow or r.chance(0.8) then rule.times = r.int(1, slow and 2 or 4) end
  local scope = r.int(1, 6)
  if scope == 1 then rule.api = "advanced" elseif scope == 2 then rule.api = "handwriting"
  elseif scope == 3 then rule.credential = "m" .. r.int(1, 2) end
  return { "fault", rule = rule }
end

local function gen_settings(r, rows)
  local k = r.int(1, 6)
  local s
  if k == 1 then s = { quota = r.int(0, 8) }
  elseif k == 2 then s = { rate = r.int(2, 20) }
  elseif k == 3 then s = { latency_ms = r.pick({ 0, 5, 20, 50 }) }
  elseif k == 4 then
    local list = {}
    for _, row in ipairs(rows) do if row.settings then list[#list + 1] = row.settings end end
    s = {}
    for key, v in pairs(r.pick(list)) do s[key] = v end
  else
    s = { quota = false, rate = 0, latency_ms = 0, backend_timeout_ms = 30000, errors = "classic" }
  end
  return { "settings", s = s }
end

local function gen_op(r, name, rows, depth, skip)
  if name == "fault" then return gen_fault(r, rows) end
  if name == "clear" then return { "clear" } end
  if name == "settings" then return gen_settings(r, rows) end
  if name == "par" then
    local op = { "par", ops = {} }
    for i = 1, r.int(2, 4) do
      op.ops[i] = gen_op(r, r.weighted({ { "call", 3 }, { "batch", 2 }, { "kill", 2 }, { "exit", 1 },
        { "abort", 2 }, { "closeother", 1 } }), rows, depth + 1, skip)
    end
    return op
  end
  local op
  if name == "call" or name == "batch" or name == "abort" then
    op = gen_work(r)
    if name == "call" and op.w == "batch" then op.w, op.urls, op.conc, op.prog, op.url = "call", nil, nil, nil, "ok" end
    if name == "batch" and op.w ~= "batch" then
      op.w, op.url, op.urls, op.conc = "batch", nil, { gen_url(r), gen_url(r), gen_url(r) }, r.int(1, 3)
    end
    op[1] = "work"
    if name == "abort" then op.abort = delay(r) + 1 end
  elseif name == "kill" then
    op = { "kill", works = {}, kill = {}, delay = delay(r) }
    for i = 1, r.int(1, 3) do
      op.works[i] = gen_work(r)
      op.kill[i] = r.chance(0.7)
      -- MODEL_SKIP=killbatch: no batch in a thread that may be killed.
      if skip.killbatch and op.kill[i] and op.works[i].w == "batch" then op.kill[i] = false end
    end
  else -- exit, throw, closeother
    op = gen_work(r)
    op[1] = name
    op.delay = delay(r)
  end
  if (CUT[name] or op.abort) and r.chance(0.5) then
    op.lat = { ms = r.pick({ 50, 100, 200, 400 }), times = r.int(1, 4) }
  end
  return op
end

--- A sequence of `nops` operations from `seed` (cfg.rows: the fault rows of
-- spec/helpers/faults.lua; cfg.skip: a set of op names not to make).
function M.generate(seed, nops, cfg)
  local r = M.rng(seed)
  local skip = cfg.skip or {}
  local seq = { seed = seed, nginx = true, clients = { M.gen_client(r, "m1") }, ops = {} }
  local guard = 0
  while #seq.ops < nops and guard < nops * 100 do
    guard = guard + 1
    local name = r.weighted(TOP)
    if not skip[name] then seq.ops[#seq.ops + 1] = gen_op(r, name, cfg.rows, 0, skip) end
  end
  return seq
end

-- The runner ----------------------------------------------------------------

local function copy(t)
  if type(t) ~= "table" then return t end
  local out = {}
  for k, v in pairs(t) do out[k] = copy(v) end
  return out
end

-- A message as a failure's signature: numbers and addresses out.
local function normalize(s)
  s = tostring(s):match("^[^\n]*") or tostring(s)
  return (s:gsub("0x%x+", "0x?"):gsub("model raise %d+", "model raise N"):gsub("op %d+", "op N")
    :gsub("thread %d+", "thread N"):gsub("on_progress %d+", "on_progress N"):gsub("%d+%.%d+", "N"))
end

-- An HTTP/1.0 request to nginx as one string.
local function request_text(ngx_, path, body)
  return "POST " .. path .. " HTTP/1.0\r\nHost: 127.0.0.1:" .. ngx_.port .. "\r\nContent-Type: application/json\r\n" ..
    "Content-Length: " .. #body .. "\r\n\r\n" .. body
end

local function open(ngx_, path, body)
  local c = socket.tcp()
  c:settimeout(ANSWER_TIMEOUT)
  local ok, err = c:connect("127.0.0.1", ngx_.port)
  if not ok then
    c:close()
    return nil, "cannot reach nginx: " .. tostring(err)
  end
  c:send(request_text(ngx_, path, body))
  return c
end

-- Reads an answer; returns the status and the body (status 0 when none).
local function answer(c)
  local data, err, partial = c:receive("*a")
  c:close()
  if not data then return 0, "no answer: " .. tostring(err) .. " " .. tostring(partial) end
  local head, rest = (data or ""):match("^(.-)\r\n\r\n(.*)$")
  return head and tonumber(head:match("^HTTP/%d%.%d (%d+)")) or 0, rest or ""
end

-- Errors that nginx logs itself about a socket (the emulator's resets,
-- timeouts): not Lua errors.
local function NETWORK(line)
  for _, p in ipairs({ "lua tcp socket", "lua ssl", "recv() failed", "send() failed", "connect() failed",
    "writev() failed", "readv() failed", "SSL_" }) do
    if line:find(p, 1, true) then return true end
  end
  return false
end

--- Plays `seq`: env.emu (the emulator), env.nginx (the test nginx), env.rows,
-- env.trace, env.rss (a table: pid, base, peak, samples, kept across runs).
-- Returns a report: failures ({ sig, msg, op }), sigs (a set), ops,
-- requests, cover (counts by op kind).
function M.run(seq, env)
  local emu, ngx_ = env.emu, env.nginx
  local failures, sigs, cover = {}, {}, {}
  local report = { failures = failures, sigs = sigs, cover = cover, seq = seq, ops = 0, requests = 0 }
  local opindex = 0
  local function fail(sig, msg)
    if sigs[sig] then
      sigs[sig] = sigs[sig] + 1
      return
    end
    sigs[sig] = 1
    failures[#failures + 1] = { sig = sig, msg = msg or sig, op = opindex }
    if env.trace then print("#   FAIL " .. sig .. ": " .. tostring(msg)) end
  end
  local function count(k) cover[k] = (cover[k] or 0) + 1 end

  local url_n = 0
  local function url_of(kind)
    url_n = url_n + 1
    if kind == "invalid" then return "http://img" .. url_n .. ".invalid/x.png" end
    return emu.image .. "?n=" .. url_n
  end
  -- The op as sent: image URLs of their own, where it comes from.
  local function concrete(op, where)
    local o = copy(op)
    o.where = where
    -- JSON has no table with both an array part and fields: the op's name goes in `op`.
    o.op, o[1] = o[1], nil
    if o.url then o.url = url_of(o.url) end
    if o.urls then for i, u in ipairs(o.urls) do o.urls[i] = url_of(u) end end
    for _, p in ipairs(o.prog or {}) do
      for _, a in ipairs(p.acts) do if a.url then a.url = url_of(a.url) end end
    end
    if o.co then o.co.endpoint = emu.endpoint end
    for i, w in ipairs(o.works or {}) do o.works[i] = concrete(w, where) end
    return o
  end

  local rss = env.rss
  local function sample(what)
    local status, body = http.exchange(ngx_.url .. "/model/rss", "GET", nil, nil, 10)
    if status ~= 200 then
      fail("rss-unreadable", what .. ": /model/rss answered " .. status)
      return
    end
    local s = cjson.decode(body)
    if rss.pid and s.pid ~= rss.pid then
      fail("worker-replaced", what .. ": the worker's pid went from " .. rss.pid .. " to " .. tostring(s.pid) ..
        " (it died)")
    end
    rss.pid = s.pid
    rss.base = rss.base or s.rss_kb
    if s.rss_kb and s.rss_kb > (rss.peak or 0) then rss.peak, rss.peak_at = s.rss_kb, what end
    rss.samples = (rss.samples or 0) + 1
  end

  local function start(op, where)
    local o = concrete(op, where)
    if op.lat then
      emu:fault({ mode = "latency", ms = op.lat.ms, times = op.lat.times })
    end
    local path = o.abort and "/model/abortable" or "/model/op"
    local c, err = open(ngx_, path, cjson.encode(o))
    if not c then fail("nginx-unreachable", err) end
    count(op[1] == "work" and (o.abort and "abort " or "") .. o.w or op[1])
    return { c = c, op = op }
  end
  -- What an op's answer must be: 200 { ok = true } for those that run to
  -- their end; ngx.exit gives 200 with no body, error() a 500.
  local function finish(h, where)
    if not h.c then return end
    local op = h.op
    if op.abort then
      h.c:close()
      return
    end
    local status, body = answer(h.c)
    local name = op[1]
    if name == "exit" then
      if status ~= 200 then fail("exit-status", where .. ": ngx.exit(200) gave " .. status) end
    elseif name == "throw" then
      -- An ngx.exit from its batch's on_progress may end the request first.
      local exits = false
      for _, p in ipairs(op.prog or {}) do
        for _, act in ipairs(p.acts or {}) do exits = exits or act[1] == "exit" end
      end
      if status ~= 500 and not (exits and status == 200) then
        fail("throw-status", where .. ": error() in the handler gave " .. status)
      end
    else
      -- ngx.exit from on_progress ends the request early, with 200 too.
      local ok_body = body:find('"ok":true', 1, true)
      if status == 0 then
        fail("op-hung", where .. " (" .. name .. "): no answer in " .. ANSWER_TIMEOUT .. " s: " .. body)
      elseif status ~= 200 or not (ok_body or body == "") then
        fail("handler-failed", where .. ": " .. status .. " " .. body:sub(1, 300))
      end
    end
  end

  local function exec(op, i)
    local name = op[1]
    local where = "op " .. i
    if name == "fault" then
      local _, status = emu:fault(op.rule)
      if status ~= 200 then fail("model-error", "the emulator refused fault " .. M.literal(op.rule)) end
      count("fault")
    elseif name == "clear" then emu:ctl("DELETE", "/faults")
    elseif name == "settings" then
      local _, status = emu:settings(op.s)
      if status ~= 200 then fail("model-error", "the emulator refused settings " .. M.literal(op.s)) end
    elseif name == "par" then
      count("par")
      local hs = {}
      for k, sub in ipairs(op.ops) do hs[k] = start(sub, where .. "." .. k) end
      -- The hang-ups at their times, then the answers (kept by the kernel).
      local order = {}
      for k, sub in ipairs(op.ops) do if sub.abort then order[#order + 1] = k end end
      table.sort(order, function(a, b) return op.ops[a].abort < op.ops[b].abort end)
      local t0, waited = now(), 0
      for _, k in ipairs(order) do
        local d = op.ops[k].abort / 1000 - waited
        if d > 0 then socket.sleep(d) end
        waited = now() - t0
        finish(hs[k], where .. "." .. k)
      end
      for k, sub in ipairs(op.ops) do if not sub.abort then finish(hs[k], where .. "." .. k) end end
    else
      local h = start(op, where)
      if op.abort then socket.sleep(op.abort / 1000) end
      finish(h, where)
    end
  end

  -- The run ------------------------------------------------------------------
  emu:reset()
  local log_from = #ngx_:log()
  local shared = copy(seq.clients[1])
  shared.endpoint = emu.endpoint
  local status = http.exchange(ngx_.url .. "/model/reset", "POST", cjson.encode({ shared = shared }), nil, 30)
  if status ~= 200 then fail("model-error", "/model/reset answered " .. status) end
  sample("the start")
  local t_ops = now()
  for i, op in ipairs(seq.ops) do
    opindex = i
    if env.trace then print("# op " .. i .. ": " .. M.literal(op)) end
    local t_op = now()
    local ok, e = pcall(exec, op, i)
    if env.trace then print(string.format("#   (%.3f s)", now() - t_op)) end
    if not ok then fail("model-error", "op " .. i .. ": " .. tostring(e)) end
    sample("after op " .. i)
    report.ops = i
    if env.watchdog and now() - t_ops > env.watchdog then
      fail("hang", "the sequence ran over " .. env.watchdog .. " s (op " .. i .. ")")
      break
    end
  end
  opindex = #seq.ops + 1

  local rstatus, rbody = http.exchange(ngx_.url .. "/model/report", "POST", "{}", nil, 30)
  if rstatus ~= 200 then
    fail("model-error", "/model/report answered " .. rstatus .. ": " .. rbody:sub(1, 300))
    return report
  end
  -- Whole numbers as integers where the runtime has them (cjson gives 19.0 on 5.3+).
  local function ints(v)
    if type(v) == "table" then
      for k, x in pairs(v) do v[k] = ints(x) end
    elseif type(v) == "number" and math.tointeger then
      return math.tointeger(v) or v
    end
    return v
  end
  local rep = ints(cjson.decode(rbody))
  if rep.active ~= 0 and not sigs["op-hung"] then
    fail("ops-still-running", rep.active .. " ops still under way 5 s after the last")
  end
  sample("the end")

  -- The emulator's log, until it holds every attempt or stops growing.
  local total = 0
  for _, c in ipairs(rep.clients) do if type(c.stats) == "table" then total = total + c.stats.attempts end end
  report.requests = total
  local log, since = {}, 0
  local last_change = now()
  repeat
    local got = emu:requests(since) or {}
    for _, e in ipairs(got) do
      log[#log + 1] = e
      since = math.max(since, math.floor(e.seq))
    end
    if #got > 0 then last_change = now() end
    if #log >= total then break end
    socket.sleep(0.03)
  until now() - last_change > 1.2
  local ledger = emu:settled_ledger()
  for _, e in ipairs(emu:requests(since) or {}) do log[#log + 1] = e end

  -- Raw errors, and nginx's error log.
  for _, e in ipairs(rep.raw) do fail("raw-error: " .. normalize(e), e) end
  local text = ngx_:log():sub(log_from + 1)
  for line in text:gmatch("[^\n]+") do
    if env.trace then print("#   nginx: " .. line) end
    local level = line:match("^%S+ %S+ %[(%a+)%]")
    if level == "alert" or level == "crit" or level == "emerg" then
      fail("nginx-" .. level .. ": " .. normalize(line:gsub("^.-%] ", "")), line)
    elseif level == "error" then
      local lua_error = line:find("lua entry thread aborted", 1, true) or line:find("lua user thread aborted", 1, true)
        or line:find("runtime error", 1, true) or line:find("failed to run", 1, true) or
        line:find("lua coroutine", 1, true)
      if lua_error and not line:find("model raise %d+ %(thrown by the handler%)") then
        fail("nginx-lua-error: " .. normalize((line:gsub("^.-%] %d+#%d+: %*?%d* ?", ""))), line)
      elseif not lua_error and not NETWORK(line) then
        fail("nginx-error: " .. normalize((line:gsub("^.-%] %d+#%d+: %*?%d* ?", ""))), line)
      end
    end
  end

  -- The log by image URL (each call has its own).
  local by_url = {}
  for _, e in ipairs(log) do
    local u = e.params and e.params.url
    if type(u) == "table" then u = u[1] end
    if u then
      by_url[u] = by_url[u] or {}
      table.insert(by_url[u], e)
    end
  end

  -- Calls made on each client: exactly, or within bounds for those cut off.
  local want = {}
  for _, c in ipairs(rep.clients) do want[c.id] = { lo = 0, hi = 0, cut = 0, cut_attempts = 0, notes = {} } end
  local function note(w, s) if #w.notes < 6 then w.notes[#w.notes + 1] = s end end
  local function result_check(o, url, what)
    if o.err or o.bad or not o.rid then return end
    for _, e in ipairs(by_url[url] or {}) do
      if e.request_id == o.rid and e.status >= 200 and e.status <= 299 then return end
    end
    fail("result-not-its-answer", what .. ": request id " .. tostring(o.rid) .. " is not of a 2xx answer to " .. url)
  end
  for _, call in ipairs(rep.calls) do
    local w = want[call.c]
    if env.trace then print("#   call " .. M.literal(call) .. (by_url[call.url] and " (logged)" or "")) end
    if call.st == "result" or call.st == "error" then
      w.lo, w.hi = w.lo + 1, w.hi + 1
      result_check(call, call.url, "a call (" .. call.where .. ")")
      count("call " .. call.st)
    elseif call.st == "started" then
      local reached = by_url[call.url] ~= nil
      w.hi, w.cut = w.hi + 1, w.cut + 1
      w.cut_attempts = w.cut_attempts + 3
      if reached then
        w.lo = w.lo + 1
        note(w, "a call cut off (" .. call.where .. ") whose request reached the emulator")
      end
      count(reached and "call cut after sending" or "call cut")
    elseif call.st == "raised" then
      w.hi = w.hi + 1 -- a raw error: failed already; counted or not
      w.lo = w.lo + ((by_url[call.url] ~= nil) and 1 or 0)
    else
      count("call refused (closed)")
    end
  end
  for _, b in ipairs(rep.batches) do
    local w = want[b.c]
    local n = #b.urls
    if b.st == "returned" or b.st == "user" then
      w.lo, w.hi = w.lo + n, w.hi + n
      for i, o in ipairs(b.results or {}) do result_check(o, b.urls[i], "a batch image (" .. b.where .. ")") end
      count("batch " .. b.st)
    elseif b.st == "started" or b.st == "raised" then
      local killed = rep.killed[b.where]
      if killed then
        -- Item 7: a batch whose light thread is killed starts nothing more.
        local late = 0
        for _, u in ipairs(b.urls) do
          for _, e in ipairs(by_url[u] or {}) do if e.time > killed + 0.05 then late = late + 1 end end
        end
        if late > 0 then
          fail("batch-sends-after-kill", "a batch (" .. b.where .. ") sent " .. late .. " requests after its light " ..
            "thread was killed")
        end
      end
      local reached = 0
      for _, u in ipairs(b.urls) do if by_url[u] then reached = reached + 1 end end
      local lo = math.max(reached, b.progress)
      w.lo, w.hi = w.lo + lo, w.hi + n
      if b.st == "started" then
        w.cut, w.cut_attempts = w.cut + n, w.cut_attempts + 3 * n
        if lo > 0 then note(w, "a batch cut off (" .. b.where .. "): " .. lo .. " of its " .. n .. " images sent") end
        count("batch cut")
      end
    else
      count("batch refused (closed)")
    end
  end

  local groups = {}
  for _, c in ipairs(rep.clients) do
    local s, w = c.stats, want[c.id]
    local label = "client " .. c.id .. " (" .. c.role .. ")"
    if type(s) ~= "table" then
      fail("stats-missing", label)
    else
      if s.requests ~= s.billed + s.not_billed + s.unknown then
        fail("stats-partition", label .. ": requests ~= billed + not_billed + unknown: " .. M.literal(s))
      end
      if env.trace then
        print("#   " .. label .. ": stats " .. M.literal(s) .. ", calls made " .. w.lo .. " to " .. w.hi)
      end
      local detail = " (stats " .. M.literal(s) .. "; " .. w.cut .. " calls cut off" ..
        (#w.notes > 0 and ("; " .. table.concat(w.notes, "; ")) or "") .. ")"
      if s.requests < w.lo then
        fail("requests-uncounted", label .. ": stats().requests " .. s.requests .. ", calls made at least " ..
          w.lo .. detail)
      elseif s.requests > w.hi then
        fail("requests-overcounted", label .. ": stats().requests " .. s.requests .. ", calls made at most " ..
          w.hi .. detail)
      end
      local g = groups[c.cred] or { attempts = 0, billed = 0, unknown = 0, unsent = 0, clients = {} }
      groups[c.cred] = g
      g.attempts, g.billed, g.unknown = g.attempts + s.attempts, g.billed + s.billed, g.unknown + s.unknown
      g.unsent = g.unsent + w.cut_attempts
      g.clients[#g.clients + 1] = c.id
    end
  end
  -- Attempts that may not have gone out: the model's rule (a failure with
  -- no status, not billed, or cancelled; the earlier attempts of a retried
  -- call).
  local cred_of = {}
  for _, c in ipairs(rep.clients) do cred_of[c.id] = c.cred end
  local function maybe_unsent(o, cid)
    local g = groups[cred_of[cid]]
    if not g or type(o) ~= "table" then return end
    local n = o.attempts or 0
    if o.err and o.billed == false and (o.kind == "cancelled" or
        ((o.kind == "timeout" or o.kind == "transport") and o.status == nil)) then
      g.unsent = g.unsent + n
    elseif n > 1 then
      g.unsent = g.unsent + n - 1
    end
  end
  for _, call in ipairs(rep.calls) do maybe_unsent(call, call.c) end
  for _, b in ipairs(rep.batches) do
    for _, o in ipairs(b.results or {}) do maybe_unsent(o, b.c) end
    local g = groups[cred_of[b.c]]
    if g and (b.st == "user" or b.st == "raised") then g.unsent = g.unsent + 3 * #b.urls end
  end

  local logged = {}
  for _, e in ipairs(log) do
    local cred = e.credential or "?"
    logged[cred] = (logged[cred] or 0) + 1
  end
  for cred, g in pairs(groups) do
    local n = logged[cred] or 0
    local who = "credential " .. cred .. " (clients " .. table.concat(g.clients, ", ") .. ")"
    if n > g.attempts then
      fail("log-more-than-attempts", who .. ": " .. n .. " requests in the emulator's log, stats().attempts " ..
        g.attempts)
    elseif n < g.attempts - g.unsent then
      fail("log-fewer-than-attempts", who .. ": " .. n .. " requests in the emulator's log, stats().attempts " ..
        g.attempts .. " (at most " .. g.unsent .. " may not have gone out)")
    end
    local L = ledger.credentials[cred]
    if L then
      if L.requests ~= n then fail("ledger-requests", who .. ": ledger requests " .. L.requests .. ", log " .. n) end
      if L.billed < g.billed then
        fail("ledger-billed-under", who .. ": ledger billed " .. L.billed .. ", stats() billed " .. g.billed ..
          " + unknown " .. g.unknown)
      elseif L.billed > g.billed + g.unknown then
        fail("ledger-billed-over", who .. ": ledger billed " .. L.billed .. ", stats() billed " .. g.billed ..
          " + unknown " .. g.unknown .. " (billed calls the stats do not account)")
      end
    end
  end
  cover["handler error()"] = (cover["handler error()"] or 0) + rep.thrown
  return report
end

-- Shrinking -------------------------------------------------------------------

--- Drops ops of `seq` (halves, quarters, ... one at a time) while a run
-- still fails with `sig`, for at most `seconds`. Returns the smallest
-- sequence found and the number of runs. (model.shrink does the same for
-- the libcurl model, with its own runner.)
function M.shrink(seq, env, sig, seconds)
  local stop = now() + seconds
  local best, runs = seq, 0
  local chunk = math.floor(#best.ops / 2)
  local env2 = {}
  for k, v in pairs(env) do env2[k] = v end
  env2.trace = false
  env2.rss = {} -- shrinking runs say nothing about the worker's memory
  while chunk >= 1 and now() < stop do
    local i = 1
    while i <= #best.ops and now() < stop do
      local cand = { seed = best.seed, nginx = true, clients = best.clients, ops = {} }
      for k, op in ipairs(best.ops) do
        if k < i or k >= i + chunk then cand.ops[#cand.ops + 1] = op end
      end
      runs = runs + 1
      local rep = M.run(cand, env2)
      if rep.sigs[sig] then best = cand else i = i + chunk end
    end
    chunk = math.floor(chunk / 2)
  end
  return best, runs
end

return M
