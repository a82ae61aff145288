-- Shell and file helpers shared by the specs and their helpers.
local M = {}

--- Quotes a string for sh.
function M.q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

--- Runs a command; returns its stdout.
function M.capture(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("*a")
  p:close()
  return out
end

--- Runs a command; returns its stdout and stderr together, and its exit status.
function M.run(cmd)
  local out = M.capture(cmd .. " 2>&1; echo \"exit:$?\"")
  local status = tonumber(out:match("exit:(%d+)\n?$"))
  return (out:gsub("exit:%d+\n?$", "")), status
end

--- A new empty directory (under $TMPDIR); the caller removes it.
function M.tmpdir() return (M.capture("mktemp -d"):gsub("%s+$", "")) end

--- The whole content of a file, or "" when it cannot be read.
function M.read_all(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

function M.write_all(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

return M
