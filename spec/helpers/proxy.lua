-- Starts and stops spec/helpers/proxy_server.lua for specs: an HTTP proxy
-- (absolute-form requests and CONNECT) on a free loopback port, a lua5.4
-- process, optionally requiring Basic credentials. stop() leaves no process
-- and no file behind.
local sh = require("helpers.sh")

local M = {}

local q, capture, read_all = sh.q, sh.capture, sh.read_all

M.script = capture("pwd"):gsub("%s+$", "") .. "/spec/helpers/proxy_server.lua"

local Proxy = {}
Proxy.__index = Proxy


--- Starts a proxy; `o.auth` ("user:password"), when given, is required of
-- every request (through the environment: never on a command line).
-- Returns it: `port`, `address` ("127.0.0.1:port").
function M.start(o)
  o = o or {}
  local p, out = sh.start_server(M.script, nil, o.auth and ("PROXY_AUTH=" .. q(o.auth)) or nil)
  if not p then error("the proxy did not start:\n" .. out, 2) end
  p.address = "127.0.0.1:" .. p.port
  return setmetatable(p, Proxy)
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
  if not self.stopped then self.stopped, self.left = true, sh.stop_server(self) end
  return self.left
end

return M
