-- What the benchmark scripts share: shell quoting, this process's resident
-- size and open descriptors, an emulator on free ports (canned answers, no
-- image downloads, no request log, an HTTPS listener with its test CA) that
-- stops when asked, the CA bundle its HTTPS clients trust, the fault rule
-- that makes it close every connection of one AppCode, and its count of
-- connections.
local M = {}

function M.q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function read_file(path)
  local f = assert(io.open(path))
  local s = f:read("a")
  f:close()
  return s
end

--- This process's resident size, in kB.
function M.rss_kb() return tonumber(read_file("/proc/self/status"):match("VmRSS:%s*(%d+)")) end

--- This process's open file descriptors (counted by `ls` on its /proc entry).
function M.open_fds()
  local pid = read_file("/proc/self/stat"):match("^%d+")
  local p = assert(io.popen("ls /proc/" .. pid .. "/fd"))
  local n = 0
  for _ in p:lines() do n = n + 1 end
  p:close()
  return n
end

--- A request to the control endpoint of `emu` (what start_emulator
-- returned): `value` is sent as JSON; returns the decoded answer.
function M.control(emu, method, path, value)
  local cjson, http, ltn12 = require("cjson"), require("socket.http"), require("ltn12")
  local body = value and cjson.encode(value) or ""
  local out = {}
  local _, status = http.request({ url = emu.control .. path, method = method, sink = ltn12.sink.table(out),
    headers = { ["content-type"] = "application/json", ["content-length"] = tostring(#body) },
    source = ltn12.source.string(body) })
  assert(status == 200, method .. " " .. path .. ": HTTP " .. tostring(status))
  return cjson.decode(table.concat(out))
end

--- The AppKey and AppSecret the emulator accepts for the signed contender.
M.APP_KEY, M.APP_SECRET = "bench-key", "bench-secret"

--- A second AppCode the emulator accepts: close_every_connection() makes
-- the emulator close the connection after each answer to it, and to it
-- only, so that a client using it opens a new connection for every call
-- while clients with the first AppCode keep theirs.
M.CLOSE_APPCODE = "bench-close"

--- The system CA store that Debian's libcurl and OpenSSL read.
M.SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"

--- Starts bin/aliocr-emulator from the tree at `root`, accepting `appcode`,
-- CLOSE_APPCODE and the AppKey above (from the environment, out of the
-- process list), with an HTTPS listener; returns what it printed
-- (endpoint, advanced, https, ca-file, control, images, ...) with a stop()
-- function.
function M.start_emulator(root, appcode)
  local cmd = "echo $$; ALIOCR_EMULATOR_APPCODES=" .. appcode .. "," .. M.CLOSE_APPCODE ..
    " ALIOCR_EMULATOR_APP_KEYS=" .. M.APP_KEY .. ":" .. M.APP_SECRET .. " exec " ..
    M.q(root .. "/bin/aliocr-emulator") .. " --port 0 --https-port 0 --backend canned --no-fetch --log-max 0 2>&1"
  local p = assert(io.popen("sh -c " .. M.q(cmd), "r"))
  local pid = p:read("l")
  local info = {}
  for line in p:lines() do
    if line == "ready" then info.ready = true break end
    local k, v = line:match("^(%S+) (%S+)$")
    if k then info[k] = v end
  end
  info.stop = function()
    os.execute("kill -TERM " .. pid .. " 2>/dev/null")
    p:close()
  end
  if not info.ready then
    info.stop()
    error("the emulator did not start", 2)
  end
  info.ca_file = info["ca-file"]
  info.advanced_https = info.https .. "/ocr/advanced"
  info.port_https = tonumber(info.https:match(":(%d+)$"))
  return info
end

--- Writes to `path` the system CA store with the emulator's test CA after
-- it, in one file: what a client is given as `ca_file` to trust the system
-- store plus the emulator. Returns `path`.
function M.write_ca_bundle(emu, path)
  local f = assert(io.open(path, "w"))
  f:write(read_file(M.SYSTEM_CA), "\n", read_file(emu.ca_file))
  f:close()
  return path
end

--- The emulator's count of TCP connections that carried an API request
-- ({ http, https, accepted }), once it has settled: it counts a connection
-- in the log phase of its first request, just after the answer went out,
-- so it is read until it stays the same for 50 ms.
function M.connections(emu)
  local cjson = require("cjson")
  local last = cjson.encode(M.control(emu, "GET", "/connections"))
  for _ = 1, 100 do
    require("socket").sleep(0.05)
    local now = cjson.encode(M.control(emu, "GET", "/connections"))
    if now == last then break end
    last = now
  end
  return cjson.decode(last)
end

--- Makes the emulator close the connection after every answer to
-- CLOSE_APPCODE (a fault rule for that credential only): the answer is the
-- emulator's own canned one for `image` (fetched here over HTTP with
-- `appcode`), sent with "Connection: close" as raw bytes, after which the
-- emulator closes the connection. The client parses the same answer as on
-- a kept connection; only the connection is new each time.
function M.close_every_connection(emu, appcode, image)
  local http, ltn12 = require("socket.http"), require("ltn12")
  local form = "url=" .. image:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end)
  local out = {}
  local _, status, headers = http.request({ url = emu.advanced, method = "POST", sink = ltn12.sink.table(out),
    source = ltn12.source.string(form), headers = { authorization = "APPCODE " .. appcode,
      ["content-type"] = "application/x-www-form-urlencoded", ["content-length"] = tostring(#form) } })
  assert(status == 200, "the emulator's canned answer: HTTP " .. tostring(status))
  local body = table.concat(out)
  local head = "HTTP/1.1 200 OK\r\nContent-Type: " .. headers["content-type"] .. "\r\nContent-Length: " .. #body ..
    "\r\nX-Ca-Request-Id: " .. headers["x-ca-request-id"] .. "\r\nConnection: close\r\n\r\n"
  M.control(emu, "POST", "/faults", { mode = "raw", status = 200, data = head .. body, after = "close",
    credential = M.CLOSE_APPCODE })
end

--- The floor of a TLS connection's client CPU: `openssl s_time` against
-- the emulator's HTTPS listener for a second, trusting its CA; `how` is
-- "-new" (a full handshake per connection, then close) or, for one session
-- resumed on each connection, "-reuse -www /" (TLS 1.3 sends the session
-- ticket after the handshake, and s_time reads it only when it reads an
-- answer: without -www, -reuse makes full handshakes). s_time prints its
-- user CPU ("connections/user sec"); the shell's `time` gives its user and
-- system CPU, which is what os.clock() counts for aliocr. Returns { cpu_ms
-- (user + system), user_ms, connections }, per connection.
function M.s_time(emu, how)
  local p = assert(io.popen("bash -c " .. M.q("TIMEFORMAT='rusage %3U %3S'; time openssl s_time -connect 127.0.0.1:" ..
    emu.port_https .. " " .. how .. " -time 1 -CAfile " .. M.q(emu.ca_file)) .. " 2>&1"))
  local out = p:read("a")
  p:close()
  local n, user = out:match("(%d+) connections in ([%d.]+)s; [%d.]+ connections/user sec")
  local ru, rs = out:match("rusage ([%d.]+) ([%d.]+)")
  assert(n and ru and tonumber(n) > 0, "openssl s_time: " .. out)
  n = tonumber(n)
  return { user_ms = tonumber(user) * 1000 / n, cpu_ms = (tonumber(ru) + tonumber(rs)) * 1000 / n, connections = n }
end

return M
