-- A tiny DNS server for specs (run by helpers.dns as its own lua5.4
-- process): on a free UDP port of 127.0.0.1 it answers A queries for the
-- names it is given and never answers anything else, as a resolver that
-- hangs does. Usage:
--   lua5.4 spec/helpers/dns_server.lua DIR name=ipv4 ...
-- It writes the port it listens on to DIR/port, and one line per query to
-- DIR/queries: "<name> <qtype> answered|silent". It runs until killed.
local socket = require("socket")

local dir = assert(arg[1], "usage: dns_server.lua DIR name=ipv4 ...")
local names = {}
for i = 2, #arg do
  local name, ip = arg[i]:match("^([^=]+)=(%d+%.%d+%.%d+%.%d+)$")
  assert(name, "not name=ipv4: " .. arg[i])
  names[name:lower()] = ip
end

local udp = assert(socket.udp())
assert(udp:setsockname("127.0.0.1", 0))
udp:settimeout(nil)
local _, port = udp:getsockname()

local function write(path, text, mode)
  local f = assert(io.open(path, mode or "wb"))
  f:write(text)
  f:close()
end

local log = assert(io.open(dir .. "/queries", "ab"))
log:setvbuf("line")
-- The port file last, once everything is ready: helpers.dns waits for it.
write(dir .. "/port.tmp", tostring(port) .. "\n")
os.rename(dir .. "/port.tmp", dir .. "/port")

-- The question of a query: its name (lower-cased, dotted), type, and where
-- the question section ends; nil for a packet that is not one query.
local function question(packet)
  if #packet < 12 then return nil end
  local flags, qdcount = string.unpack(">I2I2", packet, 3)
  if flags & 0x8000 ~= 0 or qdcount ~= 1 then return nil end
  local labels, pos = {}, 13
  while true do
    local len = packet:byte(pos)
    if not len or len >= 64 then return nil end
    pos = pos + 1
    if len == 0 then break end
    labels[#labels + 1] = packet:sub(pos, pos + len - 1)
    pos = pos + len
  end
  if #packet < pos + 3 then return nil end
  local qtype = string.unpack(">I2", packet, pos)
  return table.concat(labels, "."):lower(), qtype, pos + 4
end

local function answer(packet, qend, ip, qtype)
  local id, flags = string.unpack(">I2I2", packet, 1)
  local records = ""
  local count = 0
  if qtype == 1 then
    local a, b, c, d = ip:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
    -- A pointer to the question's name, type A, class IN, TTL 60 s, 4 bytes.
    records = string.pack(">I2I2I2I4I2BBBB", 0xC00C, 1, 1, 60, 4,
      tonumber(a), tonumber(b), tonumber(c), tonumber(d))
    count = 1
  end
  -- QR, the query's opcode and RD, AA, RA; NOERROR (no record of another type).
  local rflags = 0x8000 | (flags & 0x7900) | 0x0400 | 0x0080
  return string.pack(">I2I2I2I2I2I2", id, rflags, 1, count, 0, 0) .. packet:sub(13, qend - 1) .. records
end

while true do
  local packet, ip, from_port = udp:receivefrom()
  if packet then
    local name, qtype, qend = question(packet)
    if name then
      local addr = names[name]
      log:write(string.format("%s %d %s\n", name, qtype, addr and "answered" or "silent"))
      if addr then udp:sendto(answer(packet, qend, addr, qtype), ip, from_port) end
    end
  end
end
