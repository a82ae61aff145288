-- Starts and stops bin/aliocr-emulator for specs: on free ports, with a
-- scratch TMPDIR of its own, so that a spec can check that nothing (no
-- process, no file) is left behind after it stops.
local socket = require("socket")
local http = require("helpers.http")
local sh = require("helpers.sh")

local M = {}

local q, capture, read_all = sh.q, sh.capture, sh.read_all

M.root = capture("pwd"):gsub("%s+$", "")
M.bin = M.root .. "/bin/aliocr-emulator"

-- A process is alive while /proc has it in a state other than zombie (a
-- zombie is dead, only not reaped yet by its new parent).
local function alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "r")
  if not f then return false end
  local stat = f:read("*a") or ""
  f:close()
  local state = stat:match("^%d+ %b() (%a)")
  return state ~= nil and state ~= "Z"
end
M.alive = alive

local function pids(cmd)
  local list = {}
  for pid in capture(cmd .. " 2>/dev/null"):gmatch("%d+") do list[#list + 1] = pid end
  return list
end

local Emulator = {}
Emulator.__index = Emulator

--- Starts an emulator with the given options (a list of strings) and waits
-- until it prints "ready". `env` is an optional table of environment
-- variables for it. Raises with the emulator's output if it does not start.
-- The specs expect the API guide's example answers: unless the options name
-- a backend, the canned one is used (the emulator's default is tesseract).
-- `nice` (optional) runs it at that nice value: a stand-in for a server on
-- another machine, which takes no CPU from the host under test.
function M.start(options, env, nice)
  local tmp = sh.tmpdir()
  local out, pidfile = tmp .. ".out", tmp .. ".pid"
  local argv, backend = {}, false
  for _, o in ipairs(options or {}) do
    argv[#argv + 1] = q(o)
    if o == "--backend" then backend = true end
  end
  if not backend then argv[#argv + 1] = "--backend canned" end
  local envs = { "TMPDIR=" .. q(tmp) }
  for k, v in pairs(env or {}) do envs[#envs + 1] = k .. "=" .. q(v) end
  -- A job started with & has SIGINT ignored; undo that, as a terminal would
  -- run it, so that the specs can stop it with SIGINT too.
  os.execute(string.format("env --default-signal=INT %s %s%s %s >%s 2>&1 </dev/null & echo $! >%s",
    table.concat(envs, " "), nice and ("nice -n " .. math.floor(nice) .. " ") or "", q(M.bin),
    table.concat(argv, " "), q(out), q(pidfile)))
  local pid = read_all(pidfile):match("%d+")
  os.remove(pidfile)
  local self = setmetatable({ pid = pid, tmp = tmp, out = out, info = {} }, Emulator)
  local deadline = socket.gettime() + 30
  while true do
    local text = read_all(out)
    if text:find("\nready\n") then
      for name, value in text:gmatch("([%w%-]+) ([^\n]+)\n") do self.info[name] = value end
      break
    end
    if not alive(pid) or socket.gettime() > deadline then
      self:stop()
      error("the emulator did not start:\n" .. text, 2)
    end
    socket.sleep(0.05)
  end
  self.endpoint = self.info.endpoint
  self.advanced = self.info.advanced
  self.handwriting = self.info.handwriting
  self.https = self.info.https
  self.ca_file = self.info["ca-file"]
  self.control = self.info.control
  self.images = self.info.images
  self.image = self.images .. "sample.png"
  -- The OSS endpoint, with --oss-port.
  self.oss = self.info.oss
  self.oss_https = self.info["oss-https"]
  self.oss_region = self.info["oss-region"]
  self.oss_buckets = {}
  for b in (self.info["oss-buckets"] or ""):gmatch("[^,]+") do self.oss_buckets[#self.oss_buckets + 1] = b end
  self.oss_bucket = self.oss_buckets[1]
  self.scratch = capture("ls -d " .. q(tmp) .. "/aliocr-emulator.* 2>/dev/null"):gsub("%s+$", "")
  -- "con[f]": the pattern must not match the shell that runs pgrep.
  local master = pids("pgrep -f " .. q(self.scratch .. "/nginx.con[f]"))
  self.nginx = {}
  for _, p in ipairs(master) do
    self.nginx[#self.nginx + 1] = p
    for _, w in ipairs(pids("pgrep -P " .. p)) do self.nginx[#self.nginx + 1] = w end
  end
  return self
end

--- The OSS credentials the specs use (fixed test values, never real
-- ones): a plain AccessKey and an STS one with its security token.
M.OSS_KEY = { id = "LTAIemulatorSpecKey", secret = "spec-oss-secret-1" }
M.OSS_STS = { id = "STS.emulatorSpecKey", secret = "spec-oss-secret-2", token = "spec-sts-token-1" }

--- Starts an emulator with its OSS endpoint on a free port and the specs'
-- OSS credentials (M.OSS_KEY, M.OSS_STS), passed in the environment so that
-- they stay out of the process list. `options` are more options (an API
-- port, an AppCode "demo" and --oss-port 0 are added unless they are given);
-- `env` more environment.
function M.start_oss(options, env, nice)
  local argv, given = {}, {}
  for _, o in ipairs(options or {}) do
    argv[#argv + 1] = o
    given[o] = true
  end
  if not given["--port"] then table.insert(argv, 1, "0") table.insert(argv, 1, "--port") end
  if not given["--appcode"] and not given["--app-key"] then
    argv[#argv + 1] = "--appcode"
    argv[#argv + 1] = "demo"
  end
  if not given["--oss-port"] then
    argv[#argv + 1] = "--oss-port"
    argv[#argv + 1] = "0"
  end
  local e = {
    ALIOCR_EMULATOR_OSS_KEYS = M.OSS_KEY.id .. ":" .. M.OSS_KEY.secret,
    ALIOCR_EMULATOR_OSS_STS = M.OSS_STS.id .. ":" .. M.OSS_STS.secret .. ":" .. M.OSS_STS.token,
  }
  for k, v in pairs(env or {}) do e[k] = v end
  return M.start(argv, e, nice)
end

--- What the emulator printed so far.
function Emulator:output() return read_all(self.out) end

--- Stops the emulator with a signal (default TERM) and waits until it is
-- gone. Returns what is left behind: { processes = {...}, files = {...} }.
function Emulator:stop(signal)
  if self.stopped then return self.left end
  self.stopped = true
  if self.pid and alive(self.pid) then
    os.execute("kill -" .. (signal or "TERM") .. " " .. self.pid .. " 2>/dev/null")
    local deadline = socket.gettime() + 15
    while alive(self.pid) and socket.gettime() < deadline do socket.sleep(0.02) end
  end
  local left = { processes = {}, files = {} }
  for _, p in ipairs(self.nginx or {}) do
    if alive(p) then left.processes[#left.processes + 1] = p end
  end
  if self.pid and alive(self.pid) then left.processes[#left.processes + 1] = self.pid end
  for f in capture("ls -A " .. q(self.tmp) .. " 2>/dev/null"):gmatch("[^\n]+") do
    left.files[#left.files + 1] = f
  end
  -- Do not leave anything behind ourselves either, whatever the outcome.
  for _, p in ipairs(left.processes) do os.execute("kill -KILL " .. p .. " 2>/dev/null") end
  os.execute("rm -rf " .. q(self.tmp) .. " " .. q(self.out))
  self.left = left
  return left
end

--- Calls the control endpoint: returns the decoded JSON and the status.
function Emulator:ctl(method, path, value) return http.control(self, method, path, value) end

function Emulator:reset() return self:ctl("POST", "/reset") end
function Emulator:fault(rule) return self:ctl("POST", "/faults", rule) end
function Emulator:ledger() return (self:ctl("GET", "/ledger")) end
function Emulator:requests(since) return (self:ctl("GET", "/requests" .. (since and ("?since=" .. since) or ""))) end
--- The request log once it holds at least `n` entries (a request is logged
-- when it is over: a stalled one when its stall is), else after 5 s the log
-- as it is.
function Emulator:log_of(n)
  local deadline = socket.gettime() + 5
  while true do
    local log = self:requests()
    if #log >= n or socket.gettime() > deadline then return log end
    socket.sleep(0.05)
  end
end
--- The ledger once the emulator has settled every answer (it bills in
-- nginx's log phase, after the answer went out): read until it stops
-- changing for 0.1 s (at most 5 s).
function Emulator:settled_ledger()
  local cjson = require("cjson")
  local last = cjson.encode(self:ledger())
  for _ = 1, 50 do
    socket.sleep(0.1)
    local now = cjson.encode(self:ledger())
    if now == last then break end
    last = now
  end
  return cjson.decode(last)
end
function Emulator:connections() return (self:ctl("GET", "/connections")) end
--- The times the logged API requests arrived at, in order.
function Emulator:arrivals()
  local t = {}
  for _, e in ipairs(self:requests()) do t[#t + 1] = e.time end
  table.sort(t)
  return t
end
function Emulator:settings(changes)
  if changes then return self:ctl("POST", "/settings", changes) end
  return self:ctl("GET", "/settings")
end

--- The objects of an OSS bucket (default: the first), sorted by key: a
-- list of { key, size, etag, content_type, last_modified }.
function Emulator:oss_objects(bucket)
  local list = self:ctl("GET", "/oss/objects?bucket=" .. (bucket or self.oss_bucket))
  return list
end
--- The OSS request log (entries after `since`).
function Emulator:oss_requests(since)
  return (self:ctl("GET", "/oss/requests" .. (since and ("?since=" .. since) or "")))
end
--- The ledger's OSS counts once they stop changing (the log phase counts a
-- request after its answer went out): { puts, gets, heads, deletes, others },
-- each { accepted, refused, by_vendor }.
function Emulator:oss_ledger() return self:settled_ledger().oss end

--- A call to an interface with APPCODE auth: `api` is "advanced" or
-- "handwriting"; `o` may hold appcode, form (default: url of the sample
-- image), get, headers, timeout.
function Emulator:call(api, o)
  o = o or {}
  local headers = { "Authorization: APPCODE " .. (o.appcode or "demo") }
  for _, h in ipairs(o.headers or {}) do headers[#headers + 1] = h end
  return http.request({
    url = o.url or self[api], headers = headers, get = o.get,
    form = o.form or { { "url", self.image } }, timeout = o.timeout or 10,
    method = o.method,
  })
end

return M
