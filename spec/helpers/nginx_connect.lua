-- Handlers of spec/integration/nginx_connect_spec.lua, inside nginx.
local aliocr = require("aliocr")
local nginx_json = require("helpers.nginx_json")
local outcome = require("helpers.outcome")

local M = {}

function M.run()
  local c = nginx_json.body()
  if c.op == "case" then
    local client = aliocr.new(c.client)
    local res, err = client:recognize(c.url)
    local out = outcome.of(res, err, client:stats())
    out.message = err and err.msg
    client:close()
    return nginx_json.say(out)
  end
  if c.op == "kill_plain" then
    local th = ngx.thread.spawn(function()
      local sock = ngx.socket.tcp()
      sock:settimeouts(4000, 4000, 4000)
      return sock:connect("silent.invalid", 80)
    end)
    ngx.sleep(c.after)
    return nginx_json.say({ killed = ngx.thread.kill(th) ~= nil })
  end
  if c.op == "kill" then
    local client = aliocr.new(c.client)
    local th = ngx.thread.spawn(function() return client:recognize("http://127.0.0.1/a.png") end)
    ngx.sleep(c.after)
    local status = coroutine.status(th)
    local killed, why = ngx.thread.kill(th)
    return nginx_json.say({ killed = killed ~= nil and killed ~= false, why = why, status = status,
      stats = client:stats() })
  end
end

return M
