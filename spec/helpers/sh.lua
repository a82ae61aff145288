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

--- Whether process `pid` runs (not gone, not a zombie).
function M.alive(pid)
  local state = M.read_all("/proc/" .. pid .. "/stat"):match("^%d+ %b() (%a)")
  return state ~= nil and state ~= "Z"
end

--- Starts `lua5.4 script dir args...` in the background (`env`: a prefix of
-- VAR=value words, kept off its command line's arguments), in a new
-- scratch directory `dir`, where the script writes its port to `dir/port`;
-- its output goes to `dir/out`. Waits up to 10 s for the port. Returns the
-- process { dir, pid, port }, or nil and what it wrote (stopped and
-- removed).
function M.start_server(script, args, env)
  local socket = require("socket")
  local dir = M.tmpdir()
  os.execute(string.format("%s lua5.4 %s %s %s >%s 2>&1 </dev/null & echo $! >%s", env or "", M.q(script),
    M.q(dir), args or "", M.q(dir .. "/out"), M.q(dir .. "/pid")))
  local p = { dir = dir, pid = M.read_all(dir .. "/pid"):match("%d+") }
  local deadline = socket.gettime() + 10
  while not M.read_all(dir .. "/port"):match("%d+") do
    if not (p.pid and M.alive(p.pid)) or socket.gettime() > deadline then
      local out = M.read_all(dir .. "/out")
      M.stop_server(p)
      return nil, out
    end
    socket.sleep(0.02)
  end
  p.port = tonumber(M.read_all(dir .. "/port"):match("%d+"))
  return p
end

--- Stops a process of start_server (TERM, then KILL after 5 s) and removes
-- its directory. Returns the processes still alive after TERM (none,
-- normally).
function M.stop_server(p)
  local socket = require("socket")
  local left = {}
  if p.pid then
    os.execute("kill -TERM " .. p.pid .. " 2>/dev/null")
    local deadline = socket.gettime() + 5
    while M.alive(p.pid) and socket.gettime() < deadline do socket.sleep(0.02) end
    if M.alive(p.pid) then
      os.execute("kill -KILL " .. p.pid .. " 2>/dev/null")
      left[1] = p.pid
    end
  end
  os.execute("rm -rf " .. M.q(p.dir))
  return left
end

return M
