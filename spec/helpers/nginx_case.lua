-- Test handlers that run inside the client-side nginx of spec/integration/nginx_spec.lua
-- (LuaJIT, nginx's Lua module), where aliocr picks nginx's sockets.
local aliocr = require("aliocr")
local nginx_json = require("helpers.nginx_json")
local outcome = require("helpers.outcome")

local M = {}

local body_json, say = nginx_json.body, nginx_json.say

--- POST /case { client = options, kind, url, opts, warm, warm_opts, pause }:
-- one call on a new client (after a call of the kind `warm`, when given, and
-- `pause` seconds, so that the call goes out on a connection used before);
-- answers the outcome (helpers.outcome) and the transport used.
function M.case()
  local c = body_json()
  local client = aliocr.new(c.client)
  if c.warm then client[c.warm](client, c.url, c.warm_opts) end
  if c.pause then ngx.sleep(c.pause) end
  local res, err = client[c.kind](client, c.url, c.opts)
  local out = outcome.of(res, err, client:stats())
  out.transport = client._via.name
  out.message = err and err.msg -- worded by the transport: shown, not compared
  client:close()
  say(out)
end

--- POST /batch { client, kind, urls, concurrency, raise_at, warm,
-- warm_opts }: a batch (after a call of the kind `warm` of the first image,
-- when given); answers the outcomes in order, the summary, the stats and the
-- progress count. With raise_at, on_progress raises when that many are
-- done: the answer has the error instead of outcomes.
function M.batch()
  local c = body_json()
  local client = aliocr.new(c.client)
  if c.warm then client[c.warm](client, c.urls[1], c.warm_opts) end
  local progress = 0
  local ok, results, summary = pcall(client.batch, client, c.kind, c.urls, {
    concurrency = c.concurrency,
    on_progress = function(done, total)
      progress = progress + 1
      assert(done == progress and total == #c.urls)
      if done == c.raise_at then error("stop at " .. done, 0) end
    end,
  })
  if not ok then
    say({ error = tostring(results), stats = client:stats(), progress = progress })
    client:close()
    return
  end
  local outcomes = {}
  for i, r in ipairs(results) do
    if aliocr.is_error(r) then outcomes[i] = outcome.of(nil, r) else outcomes[i] = outcome.of(r) end
  end
  say({ outcomes = outcomes, summary = summary, stats = client:stats(), progress = progress })
  client:close()
end

--- POST /oss_batch { files, concurrency }: a batch of local files through
-- OSS (the client from the environment: ALIOCR_OSS_* and the AccessKey);
-- answers the texts (or errors' messages), the summary and the stats.
function M.oss_batch()
  local c = body_json()
  local client = aliocr.new({})
  local images = {}
  for i, f in ipairs(c.files) do images[i] = { file = f } end
  local results, summary = client:batch("recognize", images, { concurrency = c.concurrency })
  local texts = {}
  for i, r in ipairs(results) do texts[i] = aliocr.is_error(r) and tostring(r) or r.text end
  say({ texts = texts, summary = summary, stats = client:stats() })
  client:close()
end

--- POST /oss_case { client, image }: one recognize of a local image on a
-- new client; answers what spec/integration/nginx_oss_spec.lua compares
-- with the libcurl transport's.
function M.oss_case()
  local c = body_json()
  local client = aliocr.new(c.client)
  local res, err = client:recognize(c.image)
  local stats = client:stats()
  local o = res or err
  say({
    ok = res ~= nil, text = res and res.text, kind = err and err.kind, code = err and err.code,
    status = o.status, billed = o.billed == nil and "unknown" or o.billed, action = err and err.action,
    retryable = err and err.retryable, attempts = o.attempts,
    stats = { requests = stats.requests, billed = stats.billed, not_billed = stats.not_billed,
      uploads = stats.uploads, deletes = stats.deletes, errors = stats.errors },
  })
  client:close()
end

--- GET /budget_case?url=...: one recognize on the worker's client, whose
-- budget lives in the shared dict aliocr_budget (limit 50 for the machine);
-- answers the outcome's kind, billing and the worker's pid.
local budget_client
function M.budget_case()
  if not budget_client then
    budget_client = aliocr.new({ appcode = "demo", endpoint = os.getenv("ALIOCR_ENDPOINT"), retries = 0,
      budget = { limit = 50, dict = "aliocr_budget" } })
  end
  local res, err = budget_client:recognize(ngx.unescape_uri(ngx.var.arg_url))
  local o = res or err
  local s = budget_client:stats()
  say({ kind = err and err.kind or "ok", billed = o.billed == nil and "unknown" or o.billed, pid = ngx.worker.pid(),
    refused = s.budget.refused, requests = s.requests, errors_budget = s.errors.budget or 0 })
end

--- GET /rate_case?url=...&qps=N[&adaptive=1]: one recognize on the
-- worker's client, whose rate limiter lives in the shared dict aliocr_rate
-- (the machine's); answers the outcome's kind, the attempts, the worker's
-- pid and its limiter's stats.
local rate_clients = {}
function M.rate_case()
  local qps, adaptive = tonumber(ngx.var.arg_qps), ngx.var.arg_adaptive == "1"
  local name = tostring(qps) .. tostring(adaptive)
  if not rate_clients[name] then
    rate_clients[name] = aliocr.new({ appcode = "demo", endpoint = os.getenv("ALIOCR_ENDPOINT"), retries = 20,
      retry_delay = 0.05, retry_max_delay = 0.2,
      rate_limit = { qps = qps, adaptive = adaptive, dict = "aliocr_rate", key = name } })
  end
  local client = rate_clients[name]
  local res, err = client:recognize(ngx.unescape_uri(ngx.var.arg_url))
  local o = res or err
  local r = client:stats().rate_limit
  say({ kind = err and err.kind or "ok", attempts = o.attempts, pid = ngx.worker.pid(), delayed = r.delayed,
    throttled = r.throttled, decreases = r.decreases })
end

--- POST /misuse { client, call = "call" | "batch" | "submit" | "poll" | "wait" }: what a call
-- that cannot work inside nginx raises.
function M.misuse()
  local c = body_json()
  local ok, e = pcall(function()
    local client = aliocr.new(c.client)
    if c.call == "submit" then client:submit("recognize", c.url) end
    if c.call == "poll" then client:poll(0) end
    if c.call == "wait" then client:wait() end
    if c.call == "call" then client:recognize(c.url) end
    if c.call == "batch" then client:batch("recognize", { c.url }) end
  end)
  say({ ok = ok, error = tostring(e) })
end

--- In a header filter, where nginx allows no socket: the error of a call
-- goes into the X-Aliocr-Error header.
function M.header_filter()
  local client = aliocr.new({ appcode = "demo", endpoint = ngx.unescape_uri(ngx.var.arg_endpoint) })
  local ok, e = pcall(client.recognize, client, ngx.unescape_uri(ngx.var.arg_url))
  ngx.header["X-Aliocr-Error"] = ok and "none" or tostring(e)
  client:close()
end

return M
