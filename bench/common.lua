-- What the benchmark scripts share: shell quoting, this process's resident
-- size and open descriptors, and an emulator on free ports (canned answers,
-- no image downloads, no request log) that stops when asked.
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

--- Starts bin/aliocr-emulator from the tree at `root`, accepting `appcode`
-- and the AppKey above (from the environment, out of the process list);
-- returns what it printed (endpoint, advanced, control, images, ...) with a
-- stop() function.
function M.start_emulator(root, appcode)
  local cmd = "echo $$; ALIOCR_EMULATOR_APPCODES=" .. appcode .. " ALIOCR_EMULATOR_APP_KEYS=" ..
    M.APP_KEY .. ":" .. M.APP_SECRET .. " exec " .. M.q(root .. "/bin/aliocr-emulator") ..
    " --port 0 --backend canned --no-fetch --log-max 0 2>&1"
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
  return info
end

return M
