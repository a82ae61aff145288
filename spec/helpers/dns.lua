-- Starts and stops spec/helpers/dns_server.lua for specs: a DNS server of
-- their own on a free loopback UDP port (a lua5.4 process), which answers
-- A queries for the names it is given and never answers any other name (a
-- resolver that hangs). stop() leaves no process and no file behind.
local socket = require("socket")
local sh = require("helpers.sh")

local M = {}

local q, capture, read_all = sh.q, sh.capture, sh.read_all

M.script = capture("pwd"):gsub("%s+$", "") .. "/spec/helpers/dns_server.lua"

local Dns = {}
Dns.__index = Dns

local function alive(pid)
  local state = read_all("/proc/" .. pid .. "/stat"):match("^%d+ %b() (%a)")
  return state ~= nil and state ~= "Z"
end

--- Starts a server answering `names` ({ ["emulator.test"] = "127.0.0.1" }).
-- Returns it: `port`, `address` ("127.0.0.1:port", for nginx's resolver
-- directive). Raises if it does not start.
function M.start(names)
  local dir = sh.tmpdir()
  local argv = {}
  for name, ip in pairs(names or {}) do argv[#argv + 1] = q(name .. "=" .. ip) end
  os.execute(string.format("lua5.4 %s %s %s >%s 2>&1 </dev/null & echo $! >%s",
    q(M.script), q(dir), table.concat(argv, " "), q(dir .. "/out"), q(dir .. "/pid")))
  local self = setmetatable({ dir = dir, pid = read_all(dir .. "/pid"):match("%d+") }, Dns)
  local deadline = socket.gettime() + 10
  while not read_all(dir .. "/port"):match("%d+") do
    if not (self.pid and alive(self.pid)) or socket.gettime() > deadline then
      local out = read_all(dir .. "/out")
      self:stop()
      error("the DNS server did not start:\n" .. out, 2)
    end
    socket.sleep(0.02)
  end
  self.port = tonumber(read_all(dir .. "/port"):match("%d+"))
  self.address = "127.0.0.1:" .. self.port
  return self
end

--- The queries received so far: a list of { name, qtype, answered }.
function Dns:queries()
  local list = {}
  for name, qtype, how in read_all(self.dir .. "/queries"):gmatch("(%S+) (%d+) (%a+)\n") do
    list[#list + 1] = { name = name, qtype = tonumber(qtype), answered = how == "answered" }
  end
  return list
end

--- How many queries for `name` arrived.
function Dns:asked(name)
  local n = 0
  for _, e in ipairs(self:queries()) do if e.name == name then n = n + 1 end end
  return n
end

--- Stops the server and removes its files. Returns the processes still
-- alive after that (none, normally).
function Dns:stop()
  if self.stopped then return self.left end
  self.stopped = true
  local left = {}
  if self.pid then
    os.execute("kill -TERM " .. self.pid .. " 2>/dev/null")
    local deadline = socket.gettime() + 5
    while alive(self.pid) and socket.gettime() < deadline do socket.sleep(0.02) end
    if alive(self.pid) then
      os.execute("kill -KILL " .. self.pid .. " 2>/dev/null")
      left[1] = self.pid
    end
  end
  os.execute("rm -rf " .. q(self.dir))
  self.left = left
  return left
end

return M
