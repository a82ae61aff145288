-- Handlers for spec/integration/nginx_phases_spec.lua: in each of nginx's phases, every
-- kind of call a user could make (a call and a batch on the resty
-- transport; submit, poll and wait; the same with transport = "curl"), each
-- on a line of its own marked "-- line: <name>", so that the spec can check
-- that an error points at that line.
local aliocr = require("aliocr")
local cjson = require("cjson")

local M = {}

-- What each phase did, by phase (a worker's module lives as long as it does;
-- the init phase's is the master's, which its workers inherit).
M.results = {}

-- What `f` returned, or { raised = the message }.
local function try(f)
  local ok, v = pcall(f)
  if not ok then return { raised = tostring(v) } end
  return v or { returned = true }
end

--- Makes every kind of call in this phase once, and keeps what happened
-- under `key` (a second probe of the same key does nothing).
function M.probe(key, image)
  if M.results[key] then return M.results[key] end
  local out = { phase = ngx.get_phase() }
  M.results[key] = out
  local made, resty_client = pcall(aliocr.new, { retries = 0 })
  if not made then
    out.new = tostring(resty_client)
    return out
  end
  local curl_client = aliocr.new({ transport = "curl", retries = 0 })
  out.call = try(function()
    local res, err = resty_client:recognize(image) -- line: call
    return { ok = res ~= nil, billed = (res or err).billed, error = err and tostring(err) }
  end)
  out.batch = try(function()
    local results, summary = resty_client:batch("recognize", { image, image }) -- line: batch
    return { ok = summary.ok, billed = summary.billed, n = #results }
  end)
  out.submit = try(function()
    resty_client:submit("recognize", image) -- line: submit
  end)
  out.poll = try(function()
    resty_client:poll(0) -- line: poll
  end)
  out.wait = try(function()
    resty_client:wait() -- line: wait
  end)
  out.curl_call = try(function()
    curl_client:recognize(image) -- line: curl_call
  end)
  out.curl_batch = try(function()
    curl_client:batch("recognize", { image }) -- line: curl_batch
  end)
  out.curl_submit = try(function()
    curl_client:submit("recognize", image) -- line: curl_submit
  end)
  out.curl_poll = try(function()
    curl_client:poll(0) -- line: curl_poll
  end)
  out.curl_wait = try(function()
    curl_client:wait() -- line: curl_wait
  end)
  resty_client:close()
  curl_client:close()
  return out
end

--- In an SSL hook: whether aliocr refuses the phase (it should not); then,
-- where nginx can yield in that hook, the probe. nginx needs OpenResty's
-- SSL patches to yield there (ngx_lua's README): Debian's ends the handshake
-- at the first yield, so that only the first record is left.
function M.ssl_probe(key, image)
  if M.results[key] then return end
  M.results[key] = { phase = ngx.get_phase(), refused = require("aliocr.resty").check_place() or false }
  ngx.sleep(0)
  M.results[key] = nil
  M.probe(key, image)
end

--- exit_worker: the probe goes to a file in nginx's prefix (the worker is
-- going away).
function M.exit_worker(image)
  local out = M.probe("exit_worker", image)
  local f = io.open(ngx.config.prefix() .. "exit_worker.json.part", "w")
  f:write(cjson.encode(out))
  f:close()
  os.rename(ngx.config.prefix() .. "exit_worker.json.part", ngx.config.prefix() .. "exit_worker.json")
end

--- A probe in a timer; answers when it is over.
function M.timer(image)
  ngx.timer.at(0, function() M.probe("timer", image) end)
  local deadline = ngx.now() + 20
  while not M.results.timer and ngx.now() < deadline do ngx.sleep(0.02) end
  ngx.say("done")
end

--- Makes TLS connections to each of `socks` (unix socket paths, the
-- servers of this nginx with SSL hooks), two to each (the second resuming
-- the first's session, if any), so that the hooks run; answers how each went.
function M.tls(socks)
  for _, path in ipairs(socks) do
    local session
    for i = 1, 2 do
      local sock = ngx.socket.tcp()
      sock:settimeout(20000)
      local ok, err = sock:connect(path)
      if ok then
        local s
        s, err = sock:sslhandshake(session, "localhost", false)
        if s then session = s end
        sock:close()
      end
      ngx.say(path:match("[^/]*$"), " ", i, ": ", err or "ok")
    end
  end
end

--- GET: what the phases did.
function M.report()
  ngx.header["Content-Type"] = "application/json"
  ngx.say(cjson.encode(M.results))
end

return M
