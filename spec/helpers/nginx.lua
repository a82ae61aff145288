-- Runs a client-side nginx (Debian's, with its Lua module) for specs: one
-- worker, on a free loopback port, from a configuration text, in a scratch
-- prefix under $TMPDIR; stop() leaves no process and no file behind.
local cjson = require("cjson")
local socket = require("socket")
local http = require("helpers.http")
local luassert = require("luassert")
local sh = require("helpers.sh")
local util = require("helpers.util")

local M = {}

local q, capture, read_all, write_all = sh.q, sh.capture, sh.read_all, sh.write_all

M.root = capture("pwd"):gsub("%s+$", "")
M.example_conf = M.root .. "/examples/openresty/nginx.conf"

local Nginx = {}
Nginx.__index = Nginx

-- os.execute says true (5.2+) or 0 (5.1) for success.
local function alive(pid)
  if not pid then return false end
  local r = os.execute("kill -0 " .. pid .. " 2>/dev/null")
  return r == true or r == 0
end

--- Starts nginx with `conf`, where "@PORT@" stands for the port it listens
-- on and "@PREFIX@" for its scratch prefix; `env` is a table of environment
-- variables for it. Raises with nginx's log if it does not start.
function M.start(conf, env)
  local last_log = ""
  for _ = 1, 5 do
    local prefix = sh.tmpdir()
    os.execute("mkdir -p " .. q(prefix .. "/logs"))
    local port = util.closed_port()
    local text = conf:gsub("@PORT@", tostring(port)):gsub("@PREFIX@", prefix)
    write_all(prefix .. "/nginx.conf", text)
    local envs = {}
    for k, v in pairs(env or {}) do envs[#envs + 1] = k .. "=" .. q(v) end
    os.execute(string.format("env %s nginx -p %s -c %s -e %s >/dev/null 2>&1 </dev/null & echo $! >%s",
      table.concat(envs, " "), q(prefix .. "/"), q(prefix .. "/nginx.conf"), q(prefix .. "/logs/startup.log"),
      q(prefix .. "/master.pid")))
    local pid = read_all(prefix .. "/master.pid"):match("%d+")
    local self = setmetatable({ pid = pid, prefix = prefix, port = port,
      url = "http://127.0.0.1:" .. port }, Nginx)
    local deadline = socket.gettime() + 10
    while socket.gettime() < deadline do
      local c = socket.tcp()
      c:settimeout(0.2)
      local ok = c:connect("127.0.0.1", port)
      c:close()
      if ok then return self end
      if not alive(pid) then break end
      socket.sleep(0.02)
    end
    last_log = read_all(prefix .. "/logs/error.log") .. read_all(prefix .. "/logs/startup.log")
    self:stop()
    if not last_log:find("Address already in use", 1, true) then break end
  end
  error("nginx did not start:\n" .. last_log, 2)
end

--- nginx's error log so far.
function Nginx:log() return read_all(self.prefix .. "/logs/error.log") end

--- Stops nginx (TERM, then KILL after 10 s) and removes its prefix. Returns
-- the processes still alive after that (none, normally).
function Nginx:stop()
  if self.stopped then return self.left end
  self.stopped = true
  local pids = { self.pid }
  for w in capture("pgrep -P " .. self.pid .. " 2>/dev/null"):gmatch("%d+") do pids[#pids + 1] = w end
  os.execute("kill -TERM " .. self.pid .. " 2>/dev/null")
  local deadline = socket.gettime() + 10
  local left
  repeat
    left = {}
    for _, p in ipairs(pids) do
      local stat = read_all("/proc/" .. p .. "/stat"):match("^%d+ %b() (%a)")
      if stat and stat ~= "Z" then left[#left + 1] = p end
    end
    if #left > 0 then socket.sleep(0.02) end
  until #left == 0 or socket.gettime() > deadline
  for _, p in ipairs(left) do os.execute("kill -KILL " .. p .. " 2>/dev/null") end
  os.execute("rm -rf " .. q(self.prefix))
  self.left = left
  return left
end

--- The configuration of examples/openresty/nginx.conf with this checkout's
-- paths, a free port, `ca_file` as the CAs nginx trusts, and the test
-- locations of helpers.nginx_case (/case, /case_untrusted, /batch,
-- /misuse, /filter), and `extra` (more directives for the server block: a
-- spec's own locations), when given.
function M.test_config(ca_file, extra)
  local text = read_all(M.example_conf)
  local root = M.root
  local function swap(from, to)
    local i, j = text:find(from, 1, true)
    luassert(i, "examples/openresty/nginx.conf no longer has: " .. from)
    text = text:sub(1, i - 1) .. to .. text:sub(j + 1)
  end
  local is_root = capture("id -u"):match("^0") ~= nil
  swap("pid logs/nginx.pid;", "pid logs/nginx.pid;" .. (is_root and "\nuser root;" or ""))
  swap("listen 127.0.0.1:8081;", "listen 127.0.0.1:@PORT@;")
  swap('"/usr/local/share/lua/5.1/?.lua;$prefix/?.lua;;"',
    '"' .. root .. "/lua/?.lua;" .. root .. "/examples/openresty/?.lua;" .. root .. '/spec/?.lua;;"')
  swap('"/usr/local/lib/lua/5.1/?.so;;"', '"' .. root .. '/build/jit/?.so;;"')
  swap("lua_ssl_trusted_certificate /etc/ssl/certs/ca-certificates.crt;",
    "lua_ssl_trusted_certificate " .. ca_file .. ";")
  swap('location = /ping { return 200 "pong\\n"; }', [[location = /ping { return 200 "pong\n"; }

    location = /case { content_by_lua_block { require("helpers.nginx_case").case() } }
    location = /case_untrusted {
      lua_ssl_trusted_certificate /etc/ssl/certs/ca-certificates.crt;
      content_by_lua_block { require("helpers.nginx_case").case() }
    }
    location = /batch { content_by_lua_block { require("helpers.nginx_case").batch() } }
    location = /misuse { content_by_lua_block { require("helpers.nginx_case").misuse() } }
    location = /filter {
      header_filter_by_lua_block { require("helpers.nginx_case").header_filter() }
      return 200 "filtered\n";
    }]] .. (extra and ("\n" .. extra) or ""))
  return text
end

--- The test configuration (see test_config) with `workers` worker
-- processes and a lua_shared_dict of 1 MB named `dict`: what the specs of
-- state shared by the workers (budgets, rate limits) run in.
function M.shared_config(ca_file, extra, workers, dict)
  local text = M.test_config(ca_file, extra)
  local function swap(from, to)
    local i, j = text:find(from, 1, true)
    luassert(i, "the test configuration no longer has: " .. from)
    text = text:sub(1, i - 1) .. to .. text:sub(j + 1)
  end
  swap("worker_processes 1;", "worker_processes " .. workers .. ";")
  swap("lua_socket_log_errors off;", "lua_socket_log_errors off;\n  lua_shared_dict " .. dict .. " 1m;")
  return text
end

--- POSTs `value` as JSON to `path` of this nginx; asserts a 200 and
-- returns the decoded answer.
function Nginx:post(path, value, timeout)
  local status, body = http.exchange(self.url .. path, "POST", cjson.encode(value), "application/json", timeout)
  luassert.equal(200, status, path .. " answered " .. status .. ": " .. body .. "\n" .. self:log())
  return cjson.decode(body)
end

return M
