-- The outcome of a call as plain data, the same under any Lua runtime and
-- inside nginx: what the two transports (libcurl, nginx's sockets) must
-- agree on. Transport messages are worded by each transport: only their
-- presence is kept.
local M = {}

--- A call's result or error, and the client's stats, as a JSON-ready table
-- (unknown billing is the string "unknown").
function M.of(res, err, stats)
  local out = { stats = stats }
  if res then
    out.result = {
      ok = res.ok, msg = res.msg, text = res.text, lines = res.lines, data = res.data, status = res.status,
      billed = res.billed, attempts = res.attempts, request_id = res.request_id ~= nil,
    }
  else
    local worded = err.kind == "timeout" or err.kind == "transport"
    out.error = {
      kind = err.kind, ok = err.ok, msg = worded and type(err.msg) == "string" or err.msg,
      status = err.status, billed = err.billed == nil and "unknown" or err.billed, code = err.code,
      retryable = err.retryable, attempts = err.attempts, request_id = err.request_id ~= nil,
      is_error = getmetatable(err) ~= nil,
    }
  end
  return out
end

return M
