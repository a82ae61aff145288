-- JSON in and out of the specs' handlers inside nginx (LuaJIT, nginx's Lua
-- module): the request body as a value, and answers as JSON.
local cjson = require("cjson")

local M = {}

--- The request body, decoded ({} when there is none).
function M.body()
  ngx.req.read_body()
  local data = ngx.req.get_body_data()
  return data and cjson.decode(data) or {}
end

--- Answers `t` as JSON, with `status` (200).
function M.say(t, status)
  ngx.status = status or 200
  ngx.header["Content-Type"] = "application/json"
  ngx.say(cjson.encode(t))
end

return M
