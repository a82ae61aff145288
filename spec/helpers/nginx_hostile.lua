-- Test handlers of spec/integration/nginx_hostile_spec.lua, run inside the client-side
-- nginx (LuaJIT, nginx's Lua module): calls cut off in every way nginx can
-- cut a light thread off, on one client per worker shared by every request
-- (the common production setup, and the one whose stats must stay right).
local aliocr = require("aliocr")
local cjson = require("cjson")
local nginx_json = require("helpers.nginx_json")
local outcome = require("helpers.outcome")

local M = {}

local body_json, say = nginx_json.body, nginx_json.say

-- The worker's shared client, made by /h/reset.
local shared

local function options(extra)
  local o = { appcode = "demo", endpoint = os.getenv("ALIOCR_ENDPOINT"), retry_delay = 0.01 }
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

local function arg(name) return ngx.var["arg_" .. name] and ngx.unescape_uri(ngx.var["arg_" .. name]) end
local function number_arg(name, default) return tonumber(arg(name)) or default end

-- n image URLs, each its own (so that the emulator logs them apart).
local function urls(n)
  local list, image = {}, arg("url")
  for i = 1, n do list[i] = image .. "?n=" .. i end
  return list
end

--- POST /h/reset { client options }: a new shared client (the old one closed).
function M.reset()
  if shared then shared:close() end
  shared = aliocr.new(options(body_json()))
  say({ ok = true })
end

--- GET /h/stats: the shared client's stats.
function M.stats() say(shared:stats()) end

--- GET /h/call?url=: one call on the shared client; answers its outcome.
-- Its location has lua_check_client_abort on: a client that hangs up cuts
-- the call off.
function M.call()
  local res, err = shared:recognize(arg("url"))
  say(outcome.of(res, err))
end

--- GET /h/kill_call?url=&pause=: a light thread makes a call; the handler
-- kills it after `pause` seconds.
function M.kill_call()
  local th = ngx.thread.spawn(function() return shared:recognize(arg("url")) end)
  ngx.sleep(number_arg("pause", 0.2))
  local ok, err = ngx.thread.kill(th)
  say({ killed = ok and true or false, error = err })
end

--- GET /h/exit_call?url=&pause=: a light thread makes a call; the handler
-- ends the request with ngx.exit after `pause` seconds.
function M.exit_call()
  ngx.thread.spawn(function() return shared:recognize(arg("url")) end)
  ngx.sleep(number_arg("pause", 0.2))
  ngx.say("exited")
  return ngx.exit(ngx.HTTP_OK)
end

local function batch(n, concurrency, on_progress)
  return shared:batch("recognize", urls(n), { concurrency = concurrency, on_progress = on_progress })
end

--- GET /h/exit_batch?url=&n=&c=&pause=: a light thread runs a batch; the
-- handler ends the request with ngx.exit after `pause` seconds.
function M.exit_batch()
  ngx.thread.spawn(batch, number_arg("n", 10), number_arg("c", 2))
  ngx.sleep(number_arg("pause", 0.2))
  ngx.say("exited")
  return ngx.exit(ngx.HTTP_OK)
end

--- GET /h/progress_exit?url=&n=&c=&at=: a batch whose on_progress calls
-- ngx.exit when `at` images are done.
function M.progress_exit()
  local at = number_arg("at", 1)
  batch(number_arg("n", 10), number_arg("c", 2), function(done)
    if done == at then
      ngx.say("exited at ", done)
      return ngx.exit(ngx.HTTP_OK)
    end
  end)
  say({ error = "on_progress did not end the request" })
end

--- GET /h/error_batch?url=&n=&c=&pause=: a light thread runs a batch; the
-- handler raises after `pause` seconds (nginx answers 500).
function M.error_batch()
  ngx.thread.spawn(batch, number_arg("n", 10), number_arg("c", 2))
  ngx.sleep(number_arg("pause", 0.2))
  error("the handler failed on purpose")
end

--- GET /h/kill_batch?url=&n=&c=&pause=: a light thread runs a batch; the
-- handler kills that thread after `pause` seconds (the batch's own threads
-- live on: nginx finishes the request once they are done).
function M.kill_batch()
  local th = ngx.thread.spawn(batch, number_arg("n", 10), number_arg("c", 2))
  ngx.sleep(number_arg("pause", 0.2))
  local ok, err = ngx.thread.kill(th)
  say({ killed = ok and true or false, error = err })
end

--- POST /h/close_retry { client, url, pause, tls }: a light thread makes a
-- call on a client of its own; another closes that client after `pause`
-- seconds (0: as soon as the call yields). Answers the call's outcome and
-- the client's stats after it.
function M.close_retry()
  local c = body_json()
  local client = aliocr.new(options(c.client))
  local caller = ngx.thread.spawn(function() return client:recognize(c.url) end)
  local closer = ngx.thread.spawn(function()
    ngx.sleep(c.pause or 0)
    client:close()
  end)
  local ok, res, err = ngx.thread.wait(caller)
  ngx.thread.wait(closer)
  if not ok then
    say({ raised = tostring(res), stats = client:stats() })
    return
  end
  say(outcome.of(res, err, client:stats()))
end

--- GET /h/timer_batch?url=&n=&c=: a timer runs a batch of `n` images at
-- concurrency `c` on the shared client; when it ends it logs the stats (a
-- line "aliocr-stats <json>") and the outcomes' kinds ("aliocr-kinds ...").
function M.timer_batch()
  local n, c, list = number_arg("n", 16), number_arg("c", 2), urls(number_arg("n", 16))
  local ok, err = ngx.timer.at(0, function()
    local results = shared:batch("recognize", list, { concurrency = c })
    local kinds = {}
    for i = 1, n do kinds[i] = aliocr.is_error(results[i]) and results[i].kind or "ok" end
    ngx.log(ngx.WARN, "aliocr-stats ", cjson.encode(shared:stats()))
    ngx.log(ngx.WARN, "aliocr-kinds ", table.concat(kinds, ","))
  end)
  say({ started = ok and true or false, error = err })
end

return M
