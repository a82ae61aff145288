-- Test handlers that run inside the client-side nginx of
-- spec/integration/nginx_net_spec.lua (LuaJIT, nginx's Lua module): name lookups, TLS
-- trust per location, IPv6, proxies.
local aliocr = require("aliocr")
local nginx_json = require("helpers.nginx_json")
local outcome = require("helpers.outcome")

local M = {}

local body_json, say = nginx_json.body, nginx_json.say

--- POST { client = options, kind, url, opts }: one call on a new client;
-- answers its outcome (helpers.outcome), the transport used, the error's
-- msg and its tostring (shown and searched for secrets, not compared), and
-- the seconds the call took.
function M.call()
  local c = body_json()
  local client = aliocr.new(c.client)
  ngx.update_time()
  local started = ngx.now()
  local res, err = client[c.kind or "recognize"](client, c.url, c.opts)
  ngx.update_time()
  local out = outcome.of(res, err, client:stats())
  out.elapsed = ngx.now() - started
  out.transport = client._via.name
  out.message = err and err.msg
  out.text = err and tostring(err)
  client:close()
  say(out)
end

--- POST { client = options }: whether aliocr.new takes them inside nginx;
-- answers { ok, error } (the message aliocr.new raised).
function M.new()
  local c = body_json()
  local ok, client = pcall(aliocr.new, c.client)
  if ok then
    client:close()
    say({ ok = true })
  else
    say({ ok = false, error = tostring(client) })
  end
end

return M
