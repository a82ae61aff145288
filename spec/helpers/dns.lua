-- Starts and stops spec/helpers/dns_server.lua for specs: a DNS server of
-- their own on a free loopback UDP port (a lua5.4 process), which answers
-- A queries for the names it is given and never answers any other name (a
-- resolver that hangs). stop() leaves no process and no file behind.
local sh = require("helpers.sh")

local M = {}

local q, capture, read_all = sh.q, sh.capture, sh.read_all

M.script = capture("pwd"):gsub("%s+$", "") .. "/spec/helpers/dns_server.lua"

local Dns = {}
Dns.__index = Dns


--- Starts a server answering `names` ({ ["emulator.test"] = "127.0.0.1" }).
-- Returns it: `port`, `address` ("127.0.0.1:port", for nginx's resolver
-- directive). Raises if it does not start.
function M.start(names)
  local argv = {}
  for name, ip in pairs(names or {}) do argv[#argv + 1] = q(name .. "=" .. ip) end
  local p, out = sh.start_server(M.script, table.concat(argv, " "))
  if not p then error("the DNS server did not start:\n" .. out, 2) end
  p.address = "127.0.0.1:" .. p.port
  return setmetatable(p, Dns)
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
  if not self.stopped then self.stopped, self.left = true, sh.stop_server(self) end
  return self.left
end

return M
