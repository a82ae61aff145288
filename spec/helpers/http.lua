-- A plain HTTP client for specs: the curl command line, one process a call
-- (and, for the emulator's control endpoint and the specs' own handlers, a
-- plain exchange in this process).
-- It reports what a real client sees, failures included: curl's exit code
-- tells a reset (56) from a truncated body (18), an empty reply (52) or a
-- timeout (28), and the headers that arrived before a failure are kept.
local cjson = require("cjson")
local socket = require("socket")
local sh = require("helpers.sh")

local M = {}

local q, read_all, write_all = sh.q, sh.read_all, sh.write_all

local function tmpfile() return os.tmpname() end

-- A whole number from JSON as an integer where the runtime has them (lua-cjson
-- decodes 200 as 200.0 on Lua 5.3+, which prints as "200.0").
local function int(v)
  v = tonumber(v)
  if v and math.tointeger then return math.tointeger(v) or v end
  return v
end

--- Parses a header dump (curl -D): the last response's status, a table of
-- lower-cased names (a repeated header keeps its last value), and the list of
-- { name, value } in the order and case they came.
local function parse_headers(text)
  local blocks, current = {}, nil
  for line in text:gmatch("([^\r\n]*)\r?\n") do
    if line:find("^HTTP/") then
      current = { status_line = line, list = {} }
      blocks[#blocks + 1] = current
    elseif current and line ~= "" then
      local name, value = line:match("^([^:]+):%s*(.-)%s*$")
      if name then current.list[#current.list + 1] = { name, value } end
    end
  end
  local last = blocks[#blocks] or { list = {} }
  local map = {}
  for _, h in ipairs(last.list) do map[h[1]:lower()] = h[2] end
  return map, last.list, last.status_line
end

--- Makes one request. Options:
--   url (required); method (default GET, or POST when there is a body or form)
--   headers: { "Name: value", ... } or { Name = value }
--   form: { { name, value }, ... } sent url-encoded by curl as the body, or
--         as the query string with get = true
--   body: a raw body; content_type
--   timeout, connect_timeout (seconds); cacert (a CA file); http2; insecure
--   args: extra curl arguments
-- Returns { status, headers, header_list, status_line, body, exit, error,
--           connects, http_version, size }.
function M.request(o)
  local argv = { "curl", "-sS", "--globoff" }
  local bodyfile, hdrfile, infile = tmpfile(), tmpfile(), nil
  argv[#argv + 1] = "-o " .. q(bodyfile)
  argv[#argv + 1] = "-D " .. q(hdrfile)
  argv[#argv + 1] = "-w " .. q("%{json}")
  if o.method then argv[#argv + 1] = "-X " .. q(o.method) end
  if o.timeout then argv[#argv + 1] = "-m " .. q(o.timeout) end
  if o.connect_timeout then argv[#argv + 1] = "--connect-timeout " .. q(o.connect_timeout) end
  if o.cacert then argv[#argv + 1] = "--cacert " .. q(o.cacert) end
  if o.insecure then argv[#argv + 1] = "-k" end
  if o.http2 then argv[#argv + 1] = "--http2" else argv[#argv + 1] = "--http1.1" end
  local headers = o.headers or {}
  for k, v in pairs(headers) do
    local line = type(k) == "number" and v or (k .. ": " .. v)
    argv[#argv + 1] = "-H " .. q(line)
  end
  if o.content_type then argv[#argv + 1] = "-H " .. q("Content-Type: " .. o.content_type) end
  if o.form then
    if o.get then argv[#argv + 1] = "-G" end
    for _, kv in ipairs(o.form) do
      argv[#argv + 1] = "--data-urlencode " .. q(kv[1] .. "=" .. kv[2])
    end
  end
  if o.body then
    infile = tmpfile()
    write_all(infile, o.body)
    argv[#argv + 1] = "--data-binary @" .. q(infile)
  end
  for _, a in ipairs(o.args or {}) do argv[#argv + 1] = q(a) end
  argv[#argv + 1] = q(o.url)

  local p = assert(io.popen(table.concat(argv, " ") .. " 2>/dev/null", "r"))
  local out = p:read("*a")
  p:close()
  local info = cjson.decode(out ~= "" and out or "{}")
  local map, list, status_line = parse_headers(read_all(hdrfile))
  local res = {
    status = int(info.http_code) or 0,
    headers = map,
    header_list = list,
    status_line = status_line,
    body = read_all(bodyfile),
    exit = int(info.exitcode) or -1,
    error = info.errormsg ~= cjson.null and info.errormsg or nil,
    connects = info.num_connects,
    http_version = info.http_version,
    size = info.size_download,
  }
  os.remove(bodyfile)
  os.remove(hdrfile)
  if infile then os.remove(infile) end
  return res
end

--- Decodes a JSON body (raises on bad JSON, which is what specs want).
function M.json(res) return cjson.decode(res.body) end

--- One HTTP/1.0 exchange in this process (luasocket; no curl process), for
-- the emulator's control endpoint and the specs' nginx handlers, which
-- answer and close: `url` is http://host:port/path; `body`, when given, is
-- sent as `content_type` (default JSON). Returns the status and the body;
-- raises when the server cannot be reached or does not answer in `timeout`
-- seconds (default 30).
function M.exchange(url, method, body, content_type, timeout)
  local host, port, path = url:match("^http://([^/:]+):(%d+)(/.*)$")
  assert(host, "not an http://host:port/path URL: " .. url)
  local c = socket.tcp()
  c:settimeout(timeout or 30)
  local ok, err = c:connect(host, tonumber(port))
  if not ok then
    c:close()
    error("cannot reach " .. url .. ": " .. tostring(err), 2)
  end
  local lines = { method .. " " .. path .. " HTTP/1.0", "Host: " .. host .. ":" .. port }
  if body then
    lines[#lines + 1] = "Content-Type: " .. (content_type or "application/json")
    lines[#lines + 1] = "Content-Length: " .. #body
  end
  lines[#lines + 1] = ""
  lines[#lines + 1] = body or ""
  local sent, serr = c:send(table.concat(lines, "\r\n"))
  local data, rerr = nil, serr
  if sent then data, rerr = c:receive("*a") end
  c:close()
  local head, rest = (data or ""):match("^(.-)\r\n\r\n(.*)$")
  local status = head and tonumber(head:match("^HTTP/%d%.%d (%d+)"))
  if not status then error(url .. " gave no answer: " .. tostring(rerr), 2) end
  return status, rest
end

--- A control-endpoint call: returns the decoded JSON and the status.
function M.control(emu, method, path, value)
  local status, body = M.exchange(emu.control .. path, method, value ~= nil and cjson.encode(value) or nil)
  return cjson.decode(body), status
end

M.null = cjson.null

return M
