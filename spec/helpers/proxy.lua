-- Starts and stops spec/helpers/proxy_server.lua for specs: an HTTP proxy
-- (absolute-form requests and CONNECT) on a free loopback port, a lua5.4
-- process, optionally requiring Basic credentials. stop() leaves no process
-- and no file behind.
local socket = require("socket")
local sh = require("helpers.sh")

local M = {}

local q, capture, read_all = sh.q, sh.capture, sh.read_all

M.script = capture("pwd"):gsub("%s+$", "") .. "/spec/helpers/proxy_server.lua"

local Proxy = {}
Proxy.__index = Proxy

local function alive(pid)
  local state = read_all("/proc/" .. pid .. "/stat"):match("^%d+ %b() (%a)")
  return state ~= nil and state ~= "Z"
end

--- Starts a proxy; `o.auth` ("user:password"), when given, is required of
-- every request (through the environment: never on a command line).
-- Returns it: `port`, `address` ("127.0.0.1:port").
function M.start(o)
  o = o or {}
  local dir = sh.tmpdir()
  os.execute(string.format("%s lua5.4 %s %s >%s 2>&1 </dev/null & echo $! >%s",
    o.auth and ("PROXY_AUTH=" .. q(o.auth)) or "", q(M.script), q(dir), q(dir .. "/out"), q(dir .. "/pid")))
  local self = setmetatable({ dir = dir, pid = read_all(dir .. "/pid"):match("%d+") }, Proxy)
  local deadline = socket.gettime() + 10
  while not read_all(dir .. "/port"):match("%d+") do
    if not (self.pid and alive(self.pid)) or socket.gettime() > deadline then
      local out = read_all(dir .. "/out")
      self:stop()
      error("the proxy did not start:\n" .. out, 2)
    end
    socket.sleep(0.02)
  end
  self.port = tonumber(read_all(dir .. "/port"):match("%d+"))
  self.address = "127.0.0.1:" .. self.port
  return self
end

--- The requests it received so far: a list of { connection, method,
-- target, auth } (auth: "ok", "wrong", "missing", "given" or "none").
function Proxy:log()
  local list = {}
  for id, method, target, how in read_all(self.dir .. "/log"):gmatch("(%d+) (%S+) (%S+) (%S+)\n") do
    list[#list + 1] = { connection = tonumber(id), method = method, target = target, auth = how }
  end
  return list
end

--- What it wrote to stderr (its own failures).
function Proxy:output() return read_all(self.dir .. "/out") end

--- Stops the proxy and removes its files; returns the processes still
-- alive after that (none, normally).
function Proxy:stop()
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
