-- Runs bin/aliocr as a child process in an environment of its own (env -i:
-- the developer's variables cannot leak in), to completion or in the
-- background (to send it a signal while it runs). Every file goes into a
-- scratch directory the caller gives and removes.
local cjson = require("cjson")
local socket = require("socket")
local emulator = require("helpers.emulator")
local sh = require("helpers.sh")

local M = {}

local q, read_all, write_all = sh.q, sh.read_all, sh.write_all

M.TOOL = emulator.root .. "/bin/aliocr"
local PATH = os.getenv("PATH") or "/usr/local/bin:/usr/bin:/bin"

--- The environment for an emulator: APPCODE demo and its endpoint, with
-- `extra` on top (false removes a variable).
function M.env_for(emu, extra)
  local env = { ALIOCR_APPCODE = "demo", ALIOCR_ENDPOINT = emu.endpoint }
  for k, v in pairs(extra or {}) do env[k] = v end
  return env
end

--- The shell command that runs bin/aliocr with `args` (a list of strings)
-- in exactly the environment `env` (a table; false drops a name) plus PATH.
function M.command(env, args)
  local parts = { "env", "-i", "PATH=" .. q(PATH) }
  local names = {}
  for k, v in pairs(env) do
    if v then names[#names + 1] = k end
  end
  table.sort(names)
  for _, k in ipairs(names) do parts[#parts + 1] = k .. "=" .. q(env[k]) end
  parts[#parts + 1] = q(M.TOOL)
  for _, a in ipairs(args) do parts[#parts + 1] = q(a) end
  return table.concat(parts, " ")
end

local serial = 0
local function scratch_file(dir, suffix)
  serial = serial + 1
  return dir .. "/cli." .. serial .. suffix
end

--- Runs the tool to completion in `dir`. `o.stdin` is a string fed to it
-- (default: /dev/null); `o.stdout` and `o.stdin_redirect` replace the
-- redirections of stdout and stdin with raw shell text (">/dev/full",
-- ">&-", "<&-"). Returns { out, err, status }.
function M.run(dir, env, args, o)
  o = o or {}
  local out, err = scratch_file(dir, ".out"), scratch_file(dir, ".err")
  local input = "<" .. q("/dev/null")
  local infile
  if o.stdin then
    infile = scratch_file(dir, ".in")
    write_all(infile, o.stdin)
    input = "<" .. q(infile)
  end
  if o.stdin_redirect then input = o.stdin_redirect end
  local output = o.stdout or (">" .. q(out))
  -- `timeout`: a tool that hangs fails its test (status 124) instead of the run.
  local status = sh.capture(string.format("timeout -k 5 60 %s %s %s 2>%s; echo $?", M.command(env, args), input,
    output, q(err)))
  local r = { out = read_all(out), err = read_all(err), status = tonumber(status:match("%d+")) }
  os.remove(out)
  os.remove(err)
  if infile then os.remove(infile) end
  return r
end

local Process = {}
Process.__index = Process

--- Starts the tool in the background in `dir`, with SIGINT at its default
-- (a background job would ignore it) as a terminal would run it. `o.stdin`
-- is a string fed to it, or `o.stdin_fifo` true for a named pipe that never
-- ends (stdin opened read-write: a reader waits for ever). Returns a
-- process: pid, :output(), :errors(), :signal(name), :until_(check),
-- :wait(seconds).
function M.spawn(dir, env, args, o)
  o = o or {}
  local self = setmetatable({
    out = scratch_file(dir, ".out"), err = scratch_file(dir, ".err"), pidfile = scratch_file(dir, ".pid"),
    statusfile = scratch_file(dir, ".status"), files = {},
  }, Process)
  local input = "/dev/null"
  if o.stdin then
    input = scratch_file(dir, ".in")
    write_all(input, o.stdin)
    self.files[#self.files + 1] = input
  elseif o.stdin_fifo then
    input = scratch_file(dir, ".fifo")
    assert(os.execute("mkfifo " .. q(input)))
    self.files[#self.files + 1] = input
    self.fifo = input
  end
  -- The inner shell writes its pid and becomes env, then the tool (exec):
  -- the pid is the tool's. The outer one writes the exit status when done.
  local inner = "echo $$ >" .. q(self.pidfile) .. "; exec env --default-signal=INT " .. M.command(env, args)
  local redirect_in = "<" .. q(input)
  -- Read-write: opening it does not wait for a writer, and it never ends.
  if self.fifo then redirect_in = "<>" .. q(input) end
  os.execute(string.format("(sh -c %s %s >%s 2>%s; echo $? >%s.tmp; mv %s.tmp %s) >/dev/null 2>&1 &",
    q(inner), redirect_in, q(self.out), q(self.err), q(self.statusfile), q(self.statusfile), q(self.statusfile)))
  local deadline = socket.gettime() + 10
  while not read_all(self.pidfile):match("%d+") do
    assert(socket.gettime() < deadline, "the tool did not start")
    socket.sleep(0.01)
  end
  self.pid = read_all(self.pidfile):match("%d+")
  return self
end

--- What the tool wrote to stdout so far.
function Process:output() return read_all(self.out) end

--- What the tool wrote to stderr so far.
function Process:errors() return read_all(self.err) end

--- Sends a signal (a name: "INT") to the tool.
function Process:signal(name)
  assert(emulator.alive(self.pid), "the tool is not running")
  os.execute("kill -" .. name .. " " .. self.pid)
end

--- Waits until `check(self)` is true (at most `seconds`); false if it never was.
function Process:until_(check, seconds)
  local deadline = socket.gettime() + (seconds or 10)
  while not check(self) do
    if socket.gettime() > deadline or read_all(self.statusfile) ~= "" then return check(self) end
    socket.sleep(0.01)
  end
  return true
end

--- Waits for the tool to end (at most `seconds`, default 20: then it is
-- killed) and removes its files. Returns { out, err, status, ended } where
-- `ended` is the time it was seen to end; again the same once done (a spec
-- calls it in `finally` too, so that a failed assertion leaves nothing).
function Process:wait(seconds)
  if self.result then return self.result end
  local deadline = socket.gettime() + (seconds or 20)
  while read_all(self.statusfile) == "" and socket.gettime() < deadline do socket.sleep(0.01) end
  local killed = false
  if read_all(self.statusfile) == "" then
    killed = true
    os.execute("kill -KILL " .. self.pid .. " 2>/dev/null")
    while read_all(self.statusfile) == "" do socket.sleep(0.01) end
  end
  local r = { out = read_all(self.out), err = read_all(self.err), ended = socket.gettime(),
              status = tonumber(read_all(self.statusfile):match("%d+")) }
  if killed then r.status = "killed: it did not end in time" end
  for _, f in ipairs({ self.out, self.err, self.pidfile, self.statusfile }) do os.remove(f) end
  for _, f in ipairs(self.files) do os.remove(f) end
  self.result = r
  return r
end

--- The JSON lines of an output, decoded.
function M.json_lines(out)
  local list = {}
  for line in out:gmatch("([^\n]*)\n") do list[#list + 1] = cjson.decode(line) end
  return list
end

--- TCP connections established to the emulator's API port (from any
-- process: the specs' tools), from /proc/net/tcp.
function M.connections_to(emu)
  local port = tonumber(emu.endpoint:match(":(%d+)$"))
  local n = 0
  for line in read_all("/proc/net/tcp"):gmatch("[^\n]+") do
    local rem, st = line:match("^%s*%d+: %x+:%x+ %x+:(%x+) (%x%x)")
    if rem and tonumber(rem, 16) == port and st == "01" then n = n + 1 end
  end
  return n
end

return M
