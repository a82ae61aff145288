-- The handlers of the model-based test of the nginx transport
-- (spec/integration/model_nginx_spec.lua, spec/helpers/model_nginx.lua), run inside the
-- test nginx (LuaJIT, nginx's Lua module, one worker). Each request plays one
-- operation of a sequence on a client of this worker: the shared one (a
-- module-level client used by every request, made again after a close) or a
-- client of its own. Everything a call did is written down here, in the
-- worker, before and after it, so that a call cut off (its light thread
-- killed, ngx.exit, a downstream abort, an error in the handler) shows as
-- started and never ended; /model/report hands the record over.
local aliocr = require("aliocr")
local nginx_json = require("helpers.nginx_json")

local M = {}

local body_json, say = nginx_json.body, nginx_json.say

-- The worker's record of the current sequence.
local S

local function fresh(shared_opts)
  S = { clients = {}, calls = {}, batches = {}, raw = {}, active = 0, shared = nil, shared_opts = shared_opts,
    killed = {} }
end
fresh(nil)

local function raw(what, e)
  S.raw[#S.raw + 1] = what .. ": " .. tostring(e)
end

-- A new client on the record: `role` "shared" or "request".
local function new_client(role, opts)
  local ok, c = pcall(aliocr.new, opts)
  if not ok then
    raw("aliocr.new", c)
    return nil
  end
  local rec = { id = #S.clients + 1, role = role, cred = opts.appcode, obj = c, closed = false }
  S.clients[#S.clients + 1] = rec
  return rec
end

local function client_of(op)
  if op.t == "s" then
    if not S.shared or S.shared.closed then S.shared = new_client("shared", S.shared_opts) end
    return S.shared
  end
  return new_client("request", op.co)
end

local function closed_error(e)
  return type(e) == "string" and e:find("aliocr: attempt to use a closed client", 1, true) ~= nil
end

local function close(rec, via)
  if rec.closed then return end
  rec.closed, rec.closed_by = true, via -- before: a call started from now on is refused
  local ok, e = pcall(rec.obj.close, rec.obj)
  if not ok then raw("close (" .. via .. ")", e) end
end

-- What a result or an error says, for the record; and whether it is one.
local function shape(v, where)
  if type(v) ~= "table" then
    raw(where, "neither a result nor an error: " .. tostring(v))
    return { bad = true }
  end
  local out = { billed = v.billed == nil and "unknown" or v.billed, attempts = v.attempts, status = v.status,
    rid = v.request_id, kind = v.kind, unknown_attempts = v.unknown_attempts }
  if aliocr.is_error(v) then
    out.err = true
    if type(v.attempts) ~= "number" then raw(where, "an error without attempts: " .. tostring(v)) end
  else
    if v.billed ~= true then raw(where, "a result not billed") end
    if type(v.attempts) ~= "number" then raw(where, "a result without attempts") end
  end
  return out
end

local run_acts

-- One blocking call on `rec`, recorded before (started) and after.
local function call(rec, kind, url, opts, where)
  local entry = { c = rec.id, url = url, st = "started", where = where }
  if rec.closed then entry.closed_before = true end
  S.calls[#S.calls + 1] = entry
  local ok, res, err = pcall(rec.obj[kind], rec.obj, url, opts)
  if not ok then
    if entry.closed_before and closed_error(res) then
      entry.st = "refused"
    else
      entry.st = "raised"
      raw(kind .. " (" .. where .. ")", res)
    end
    return
  end
  if (res == nil) == (err == nil) then
    raw(kind .. " (" .. where .. ")", "returned " .. tostring(res) .. ", " .. tostring(err))
  elseif res ~= nil and aliocr.is_error(res) then
    raw(kind .. " (" .. where .. ")", "returned an error as its result")
  elseif err ~= nil and not aliocr.is_error(err) then
    raw(kind .. " (" .. where .. ")", "returned err " .. tostring(err))
  end
  local o = shape(res or err, kind .. " (" .. where .. ")")
  for k, v in pairs(o) do entry[k] = v end
  entry.st = res and "result" or "error"
end

-- The user's own raised values: a string or a table, each its own.
local raise_n = 0
local function user_value(how)
  raise_n = raise_n + 1
  local text = "model raise " .. raise_n
  if how == "table" then return { model_raise = raise_n }, text end
  return text, text
end

-- A batch on `rec`: op.urls, op.conc, op.prog (actions of on_progress at a
-- count done), recorded before and after.
local function batch(rec, op, where)
  local b = { c = rec.id, urls = op.urls, st = "started", progress = 0, where = where }
  if rec.closed then b.closed_before = true end
  S.batches[#S.batches + 1] = b
  local prog = {}
  for _, p in ipairs(op.prog or {}) do prog[p.at] = p.acts end
  local raised -- the value on_progress raised
  local opts = {}
  for k, v in pairs(op.o or {}) do opts[k] = v end
  opts.concurrency = op.conc
  opts.on_progress = function(done, total)
    b.progress = b.progress + 1
    if done ~= b.progress or total ~= #op.urls then
      raw("on_progress (" .. where .. ")", "on_progress(" .. tostring(done) .. ", " .. tostring(total) ..
        ") as call " .. b.progress .. " of " .. #op.urls)
    end
    local acts = prog[done]
    if acts then
      local how = run_acts(acts, rec, where .. ", on_progress " .. done)
      if how then
        local value, text = user_value(how)
        raised, b.raised = value, text
        error(value, 0)
      end
    end
  end
  local ok, results, summary = pcall(rec.obj.batch, rec.obj, op.kind, op.urls, opts)
  if not ok then
    if raised ~= nil and results == raised then
      b.st = "user"
    elseif b.closed_before and closed_error(results) then
      b.st = "refused"
    else
      b.st = "raised"
      raw("batch (" .. where .. ")", results)
    end
    return
  end
  b.st = "returned"
  if raised ~= nil then raw("batch (" .. where .. ")", "returned although on_progress raised " .. b.raised) end
  if type(results) ~= "table" then
    raw("batch (" .. where .. ")", "returned " .. tostring(results))
    return
  end
  if #results ~= #op.urls then raw("batch (" .. where .. ")", #results .. " results for " .. #op.urls .. " URLs") end
  b.results = {}
  for i = 1, #op.urls do b.results[i] = shape(results[i], "batch image " .. i .. " (" .. where .. ")") end
  if type(summary) ~= "table" or summary.total ~= #op.urls then
    raw("batch (" .. where .. ")", "a summary that does not match")
  end
end

-- The actions of on_progress; returns how to raise at the end, if so.
function run_acts(acts, rec, where)
  local how
  for _, a in ipairs(acts) do
    local name = a[1]
    if name == "raise" then how = a.how
    elseif name == "sleep" then ngx.sleep(a.ms / 1000)
    elseif name == "call" then call(rec, a.kind, a.url, nil, where)
    elseif name == "close" then close(rec, where)
    elseif name == "exit" then return ngx.exit(200)
    end
  end
  return how
end

-- The work of an op on client `rec`: a call or a batch.
local function work(rec, op, where)
  if op.w == "batch" then batch(rec, op, where) else call(rec, op.kind, op.url, op.o, where) end
end

local function spawn(f, ...)
  local th, e = ngx.thread.spawn(f, ...)
  if not th then raw("ngx.thread.spawn", e) end
  return th
end

-- Operations --------------------------------------------------------------

local OPS = {}

-- A call or a batch, waited for (also the work of a downstream abort: the
-- test's client hangs up while it runs).
function OPS.work(op)
  local rec = client_of(op)
  if rec then work(rec, op, op.where) end
end

-- Calls or batches in light threads, some killed after `delay` ms.
function OPS.kill(op)
  local threads = {}
  for i, w in ipairs(op.works) do
    local rec = client_of(w)
    if rec then threads[i] = spawn(work, rec, w, op.where .. " thread " .. i) end
  end
  if op.delay > 0 then ngx.sleep(op.delay / 1000) end
  for i, th in pairs(threads) do
    if op.kill[i] then
      ngx.update_time()
      S.killed[op.where .. " thread " .. i] = ngx.now()
      local ok, e = ngx.thread.kill(th)
      -- A thread that ended already cannot be killed: "already waited or killed" or "already terminated".
      if not ok and not tostring(e):find("already", 1, true) then raw("ngx.thread.kill", e) end
    end
  end
  for i, th in pairs(threads) do
    if not op.kill[i] then ngx.thread.wait(th) end
  end
end

-- ngx.exit from the handler while a call or a batch runs in a light thread.
function OPS.exit(op)
  local rec = client_of(op)
  if not rec then return end
  spawn(work, rec, op, op.where)
  if op.delay > 0 then ngx.sleep(op.delay / 1000) end
  return ngx.exit(200)
end

-- error() in the handler while a call or a batch runs in a light thread.
function OPS.throw(op)
  local rec = client_of(op)
  if not rec then return end
  spawn(work, rec, op, op.where)
  if op.delay > 0 then ngx.sleep(op.delay / 1000) end
  local _, text = user_value("string")
  S.thrown = (S.thrown or 0) + 1
  error(text .. " (thrown by the handler)", 0)
end

-- client:close() from another light thread while a call or a batch runs.
function OPS.closeother(op)
  local rec = client_of(op)
  if not rec then return end
  local th = spawn(work, rec, op, op.where)
  if op.delay > 0 then ngx.sleep(op.delay / 1000) end
  close(rec, "another light thread")
  if th then
    local ok, e = ngx.thread.wait(th)
    if not ok then raw("the light thread of a call closed from another", e) end
  end
end

-- Handlers -----------------------------------------------------------------

--- POST /model/op { op }: plays one op; answers { ok = true } when it ran to
-- its end.
function M.op()
  S.active = S.active + 1
  ngx.ctx.model_active = true
  local op = body_json()
  local f = OPS[op.op]
  if not f then
    say({ error = "no such op: " .. tostring(op.op) }, 400)
    return
  end
  f(op)
  say({ ok = true })
end

--- log_by_lua of /model/op: the request is over (whatever cut it off).
function M.log()
  if ngx.ctx.model_active then S.active = S.active - 1 end
end

local function rss_kb()
  local f = io.open("/proc/self/status", "r")
  if not f then return nil end
  local text = f:read("*a")
  f:close()
  return tonumber(text:match("VmRSS:%s*(%d+)"))
end

--- GET /model/rss: this worker's pid and resident size (KB).
function M.rss()
  say({ pid = ngx.worker.pid(), rss_kb = rss_kb() })
end

--- POST /model/reset { shared = options of the shared client }: a new
-- sequence (the clients of the last one closed and forgotten).
function M.reset()
  local c = body_json()
  for _, rec in ipairs(S.clients) do pcall(rec.obj.close, rec.obj) end
  fresh(c.shared)
  collectgarbage()
  collectgarbage()
  say({ pid = ngx.worker.pid(), rss_kb = rss_kb() })
end

--- POST /model/report: once no op is under way (at most 5 s), every client
-- closed, the record: each client's stats, the calls, the batches, the raw
-- errors.
function M.report()
  local deadline = ngx.now() + 5
  while S.active > 0 and ngx.now() < deadline do
    ngx.sleep(0.02)
    ngx.update_time()
  end
  local clients = {}
  for i, rec in ipairs(S.clients) do
    if not rec.closed then close(rec, "the end") end
    local ok, s = pcall(rec.obj.stats, rec.obj)
    if not ok then
      raw("stats() after close", s)
      s = nil
    end
    clients[i] = { id = rec.id, role = rec.role, cred = rec.cred, stats = s, closed_by = rec.closed_by }
  end
  collectgarbage()
  say({ clients = clients, calls = S.calls, batches = S.batches, raw = S.raw, active = S.active,
    pid = ngx.worker.pid(), rss_kb = rss_kb(), thrown = S.thrown or 0, killed = S.killed })
end

return M
