-- A request's body, as the gateway and the OSS endpoint read it.
local M = {}

--- The whole body, also when nginx kept it in a file (a body over
-- client_body_buffer_size); "" when there is none.
function M.read()
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if body then return body end
  local path = ngx.req.get_body_file()
  if not path then return "" end
  local f = io.open(path, "rb")
  if not f then return "" end
  body = f:read("*a")
  f:close()
  return body
end

return M
