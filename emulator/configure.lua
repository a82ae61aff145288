-- Reads the options of bin/aliocr-emulator, picks the ports, makes the test
-- certificates when HTTPS is asked for, and writes nginx's configuration and
-- the emulator's settings into the scratch directory the launcher made.
-- Runs under lua5.4 with lua-argparse and LuaSocket; the launcher runs nginx.
local argparse = require("argparse")
local socket = require("socket")

local here = arg[0]:match("^(.*)/[^/]*$") or "."

local parser = argparse("aliocr-emulator",
  "A local stand-in for the Aliyun marketplace gateway and the OCR vendor behind it.\n" ..
  "Runs Debian's nginx with its Lua module in the foreground on loopback, prints the\n" ..
  "addresses it serves, and stops cleanly on SIGINT or SIGTERM, leaving nothing behind.")
parser:epilog([[
Credentials may also come from the environment, which keeps secrets out of the
process list: ALIOCR_EMULATOR_APPCODES (comma-separated codes) and
ALIOCR_EMULATOR_APP_KEYS (comma-separated KEY:SECRET pairs).

What it prints, one "name value" line each, then "ready":
  endpoint     the API base URL (ALIOCR_ENDPOINT for the client)
  advanced     interface one's URL        handwriting  interface two's URL
  https        the HTTPS base URL         ca-file      the test CA to verify it with
  control      the control endpoint       images       sample images served on loopback

Interface one answers `data` as one string when `show` is absent, empty or 0,
and as an array of {words} when `show` is 1. See README.md for the control
endpoint and the fault modes.]])
parser:option("--host", "Loopback address to listen on.", "127.0.0.1")
parser:option("--port", "HTTP port of the API; 0 picks a free port.", "8080")
parser:option("--https-port", "Also serve the API over HTTPS on this port; 0 picks a free port.")
parser:option("--tls-dir", "Keep the test CA and the server certificate in this directory\n" ..
  "(made when missing) instead of the scratch directory.")
parser:flag("--http2", "Offer HTTP/2 (by ALPN) on the HTTPS listener.")
parser:option("--control-port", "Port of the control endpoint; 0 picks a free port.", "0")
parser:option("--appcode", "Accept this AppCode (repeatable).")
  :count("*"):argname("<code>")
parser:option("--app-key", "Accept this AppKey, signed with this AppSecret (repeatable).")
  :count("*"):argname("<key:secret>")
parser:option("--quota", "Billed calls allowed per credential (default: no limit).")
parser:option("--rate", "Requests per second allowed per credential (default: no limit).")
parser:option("--latency-ms", "Latency added before every answer.", "0")
parser:option("--backend-timeout-ms", "The gateway's backend timeout: an answer that would\n" ..
  "take this long or longer gives 504 Async Service.", "30000")
parser:option("--backend", "OCR backend: tesseract (reads the image with Tesseract; the default)\n" ..
  "or canned (the API guide's example answers, whatever the image; the default\n" ..
  "with --no-fetch).")
  :choices({ "canned", "tesseract" })
parser:option("--lang", "Tesseract's languages for the tesseract backend.", "chi_sim+eng")
parser:flag("--no-fetch", "Do not download image URLs; any well-formed URL gets an answer.")
parser:option("--errors", "Gateway error style: classic (X-Ca-Error-Message only) or vpc\n" ..
  "(adds X-Ca-Error-Code).", "classic"):choices({ "classic", "vpc" })
parser:option("--path", "Serve interface API (advanced or handwriting) at PATH (repeatable).")
  :count("*"):argname("<api=path>")
parser:option("--workers", "nginx worker processes.", "1")
parser:option("--max-body", "Largest request body accepted, in bytes.", tostring(8 * 1024 * 1024))
parser:option("--log-max", "Requests kept in the request log; 0 keeps none (for benchmarks).", "10000")
parser:option("--images", "Directory served at /images/ on the API port.")
parser:flag("--verbose", "Send nginx's error log to stderr.")
parser:option("--scratch"):hidden(true)

local args = parser:parse()

local function fail(msg)
  io.stderr:write("aliocr-emulator: ", msg, "\n")
  os.exit(2)
end

local function int_option(name, value, lo, hi)
  local n = tonumber(value)
  if not n or n ~= math.floor(n) or n < lo or (hi and n > hi) then
    fail(string.format("--%s must be an integer%s, got '%s'", name,
      hi and string.format(" from %d to %d", lo, hi) or string.format(" >= %d", lo), value))
  end
  return math.tointeger(n)
end

if not args.scratch then fail("run me through bin/aliocr-emulator") end
local scratch = args.scratch

-- Options ------------------------------------------------------------------

if not (args.host:match("^127%.%d+%.%d+%.%d+$") or args.host == "::1" or args.host == "localhost") then
  fail("--host must be a loopback address (127.x.x.x, ::1 or localhost): the emulator stays on this machine")
end
local host = args.host == "localhost" and "127.0.0.1" or args.host
local url_host = host:find(":", 1, true) and ("[" .. host .. "]") or host

local appcodes, app_keys = {}, {}
local function add_appcode(code)
  if code == "" or code:find("[%s%c]") then fail("an AppCode cannot be empty or hold spaces") end
  appcodes[code] = true
end
local function add_app_key(pair)
  local key, secret = pair:match("^([^:]+):(.+)$")
  if not key or key:find("[%s%c,]") or secret:find("[%c]") then
    fail("--app-key takes KEY:SECRET (no spaces or commas in KEY)")
  end
  app_keys[key] = secret
end
for _, c in ipairs(args.appcode) do add_appcode(c) end
for _, p in ipairs(args.app_key) do add_app_key(p) end
for c in (os.getenv("ALIOCR_EMULATOR_APPCODES") or ""):gmatch("[^,]+") do add_appcode(c) end
for p in (os.getenv("ALIOCR_EMULATOR_APP_KEYS") or ""):gmatch("[^,]+") do add_app_key(p) end
if next(appcodes) == nil and next(app_keys) == nil then
  fail("no credentials: give at least one --appcode or --app-key")
end

local paths = { advanced = "/ocr/advanced", handwriting = "/ocr/handwriting" }
for _, p in ipairs(args.path) do
  local api, path = p:match("^(%w+)=(/[%w%-%._~/]*)$")
  if not api or not paths[api] then
    fail("--path takes advanced=/path or handwriting=/path, got '" .. p .. "'")
  end
  paths[api] = path
end
if paths.advanced == paths.handwriting then fail("the two interfaces need different paths") end
if paths.advanced:find("^/images/") or paths.handwriting:find("^/images/") then
  fail("/images/ is where the sample images are served")
end

local settings = {
  appcodes = appcodes,
  app_keys = app_keys,
  paths = paths,
  quota = args.quota and int_option("quota", args.quota, 0) or nil,
  rate = args.rate and int_option("rate", args.rate, 0) or 0,
  latency_ms = int_option("latency-ms", args.latency_ms, 0),
  backend_timeout_ms = int_option("backend-timeout-ms", args.backend_timeout_ms, 1),
  backend = args.backend or (args.no_fetch and "canned" or "tesseract"),
  fetch = not args.no_fetch,
  errors = args.errors,
  max_body = int_option("max-body", args.max_body, 1),
  log_max = int_option("log-max", args.log_max, 0),
}
local workers = int_option("workers", args.workers, 1, 64)

-- Tesseract: found on PATH with every language --lang names. The backend
-- can then also be switched on at run time (POST /settings).
local function tesseract_probe(lang)
  local p = io.popen("command -v tesseract 2>/dev/null")
  local command = p:read("*l")
  p:close()
  if not command or command == "" then
    return nil, "tesseract is not installed: install Debian's tesseract-ocr (scripts/bootstrap does)"
  end
  p = io.popen("tesseract --list-langs 2>/dev/null")
  local have = {}
  for l in p:lines() do have[l] = true end
  p:close()
  for l in lang:gmatch("[^+]+") do
    if not have[l] then
      return nil, "Tesseract has no '" .. l .. "' data: install tesseract-ocr-" ..
        l:gsub("_", "-"):lower() .. " (scripts/bootstrap installs chi-sim and eng)"
    end
  end
  return command
end
if not args.lang:match("^[%w_]+[%w_+]*$") then fail("--lang takes names like chi_sim+eng") end
local tesseract, no_tesseract = tesseract_probe(args.lang)
if settings.backend == "tesseract" then
  if not tesseract then fail(no_tesseract .. (args.backend and "" or "; or use --backend canned")) end
  if args.no_fetch then fail("--no-fetch leaves the tesseract backend nothing to read: use --backend canned") end
end
-- One image at a time per CPU.
local function cpus()
  local p = io.popen("nproc 2>/dev/null")
  local n = tonumber(p and p:read("*l") or "")
  if p then p:close() end
  return math.max(1, math.min(n or 1, 16))
end
if tesseract then
  settings.ocr = { command = tesseract, lang = args.lang, tmp = scratch .. "/tmp/ocr", threads = cpus() }
end

local function exists(p)
  local f = io.open(p, "rb")
  if f then f:close() return true end
  return false
end

local images = args.images or (here .. "/images")
images = images:gsub("/+$", "")
if not exists(images .. "/.") then fail("--images: no directory " .. images) end
-- nginx reads a relative path from its own prefix (the scratch directory):
-- make it absolute from where we were started.
if images:sub(1, 1) ~= "/" then
  local p = io.popen("realpath -- '" .. images:gsub("'", "'\\''") .. "'")
  images = p:read("*l") or images
  p:close()
end

local modules = os.getenv("ALIOCR_NGINX_MODULES") or "/usr/lib/nginx/modules"
for _, m in ipairs({ "ndk_http_module.so", "ngx_http_lua_module.so" }) do
  if not exists(modules .. "/" .. m) then
    fail(modules .. "/" .. m .. " is missing: install Debian's libnginx-mod-http-lua " ..
      "(scripts/bootstrap does)")
  end
end

-- Ports -----------------------------------------------------------------------

-- Port 0 means any free port: ask the kernel for one. All sockets stay open
-- until every port is chosen, so two listeners never get the same one.
local held, chosen_any = {}, false
local function port_option(name, value)
  local n = int_option(name, value, 0, 65535)
  if n ~= 0 then return n end
  local s = assert(socket.bind(host, 0))
  held[#held + 1] = s
  chosen_any = true
  local _, port = s:getsockname()
  return math.tointeger(tonumber(port))
end
local port = port_option("port", args.port)
local https_port = args.https_port and port_option("https-port", args.https_port) or nil
local control_port = port_option("control-port", args.control_port)
for _, s in ipairs(held) do s:close() end

-- TLS: a test CA and a server certificate it signs -------------------------------

local function shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
local function run(cmd)
  local ok = os.execute(cmd .. " >/dev/null 2>&1")
  if not ok then fail("command failed: " .. cmd) end
end
local function write(path, text, mode)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  if mode then run("chmod " .. mode .. " " .. shell_quote(path)) end
end

local tls
if https_port then
  local dir = args.tls_dir or (scratch .. "/tls")
  run("mkdir -p " .. shell_quote(dir))
  tls = { ca = dir .. "/ca.pem", cert = dir .. "/server.pem", key = dir .. "/server.key" }
  if not (exists(tls.ca) and exists(tls.cert) and exists(tls.key)) then
    local q = function(name) return shell_quote(dir .. "/" .. name) end
    local ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    run("openssl req -x509 " .. ec .. " -keyout " .. q("ca.key") .. " -out " .. q("ca.pem") ..
      " -days 3650 -subj '/CN=aliocr-emulator test CA'" ..
      " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign")
    run("openssl req " .. ec .. " -keyout " .. q("server.key") .. " -out " .. q("server.csr") ..
      " -subj '/CN=localhost'")
    -- DNS:127.0.0.1 too: nginx's own sockets (aliocr inside nginx) check
    -- the name with X509_check_host, which reads no IP entry.
    write(dir .. "/server.ext", "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n" ..
      "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1,DNS:127.0.0.1" ..
      ((host ~= "127.0.0.1" and host ~= "::1") and (",IP:" .. host) or "") .. "\n")
    run("openssl x509 -req -in " .. q("server.csr") .. " -CA " .. q("ca.pem") .. " -CAkey " ..
      q("ca.key") .. " -CAcreateserial -days 825 -sha256 -extfile " .. q("server.ext") ..
      " -out " .. q("server.pem"))
    run("rm -f " .. q("server.csr") .. " " .. q("server.ext") .. " " .. q("ca.srl"))
  end
end

-- Files ---------------------------------------------------------------------------

local function serialize(v, indent)
  indent = indent or ""
  if type(v) == "table" then
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys)
    local out = { "{\n" }
    for _, k in ipairs(keys) do
      out[#out + 1] = string.format("%s  [%q] = %s,\n", indent, k, serialize(v[k], indent .. "  "))
    end
    out[#out + 1] = indent .. "}"
    return table.concat(out)
  elseif type(v) == "string" then
    return string.format("%q", v)
  end
  return tostring(v)
end

local function conf_string(s)
  return '"' .. s:gsub('[\\"]', "\\%0") .. '"'
end

run("mkdir -p " .. shell_quote(scratch .. "/logs") .. " " .. shell_quote(scratch .. "/tmp/ocr"))
write(scratch .. "/settings.lua", "return " .. serialize(settings) .. "\n", "600")

local is_root = io.popen("id -u"):read("*l") == "0"
local listen_https = ""
if tls then
  listen_https = string.format([[
    listen %s:%d ssl%s;
    ssl_certificate %s;
    ssl_certificate_key %s;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:emu_ssl:1m;
]], url_host, https_port, args.http2 and " http2" or "", conf_string(tls.cert), conf_string(tls.key))
end

local conf = string.format([[
# Generated by bin/aliocr-emulator for one run; removed when it stops.
daemon off;
master_process on;
worker_processes %d;
%s
pid %s;
error_log %s %s;
load_module %s;
load_module %s;
# The tesseract backend reads images in these threads, one image per CPU,
# off the event loop; workers see PATH and TESSDATA_PREFIX to run it.
thread_pool aliocr_ocr threads=%d;
env PATH;
env TESSDATA_PREFIX;

events { worker_connections 4096; }

http {
  access_log off;
  server_tokens off;
  client_body_temp_path %s;
  proxy_temp_path %s;
  fastcgi_temp_path %s;
  uwsgi_temp_path %s;
  scgi_temp_path %s;
  default_type application/octet-stream;
  types { image/png png; image/jpeg jpg jpeg; image/bmp bmp; image/gif gif; text/plain txt; }

  # Clients are tested for connection reuse: keep connections for long runs.
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  merge_slashes off;
  client_max_body_size %d;
  client_body_buffer_size %d;
  lua_socket_log_errors off;

  lua_package_path %s;
  lua_shared_dict emu_state 32m;
  lua_shared_dict emu_nonce 32m;
  lua_shared_dict emu_log 128m;
  init_by_lua_block { require("aliocr_emu.state").init([==[%s]==]) }
  init_worker_by_lua_block { require("aliocr_emu.gateway").init_worker() }

  server {
    listen %s:%d;
%s
    header_filter_by_lua_block { require("aliocr_emu.gateway").header_filter() }
    log_by_lua_block { require("aliocr_emu.gateway").log() }

    # nginx refuses a body over client_max_body_size (by Content-Length, or
    # while reading a chunked one); the gateway's own 413 answers instead.
    error_page 413 = @body_too_large;
    location @body_too_large { content_by_lua_block { require("aliocr_emu.gateway").body_too_large() } }

    location /images/ { alias %s; }
    location / { content_by_lua_block { require("aliocr_emu.gateway").handle() } }
  }

  server {
    listen %s:%d;
    location / { content_by_lua_block { require("aliocr_emu.control").handle() } }
  }
}
]],
  workers,
  is_root and "user root;" or "",
  conf_string(scratch .. "/nginx.pid"),
  args.verbose and "stderr" or conf_string(scratch .. "/logs/error.log"),
  args.verbose and "notice" or "warn",
  conf_string(modules .. "/ndk_http_module.so"),
  conf_string(modules .. "/ngx_http_lua_module.so"),
  cpus(),
  conf_string(scratch .. "/tmp/body"), conf_string(scratch .. "/tmp/proxy"),
  conf_string(scratch .. "/tmp/fastcgi"), conf_string(scratch .. "/tmp/uwsgi"),
  conf_string(scratch .. "/tmp/scgi"),
  settings.max_body, math.min(settings.max_body, 64 * 1024 * 1024),
  conf_string(here .. "/lua/?.lua;;"),
  scratch .. "/settings.lua",
  url_host, port, listen_https,
  conf_string(images .. "/"),
  url_host, control_port)
write(scratch .. "/nginx.conf", conf)

local base = "http://" .. url_host .. ":" .. port
local info = {
  "endpoint " .. base,
  "advanced " .. base .. paths.advanced,
  "handwriting " .. base .. paths.handwriting,
}
if tls then
  info[#info + 1] = "https https://" .. url_host .. ":" .. https_port
  info[#info + 1] = "ca-file " .. tls.ca
end
info[#info + 1] = "control http://" .. url_host .. ":" .. control_port
info[#info + 1] = "images " .. base .. "/images/"
write(scratch .. "/info", table.concat(info, "\n") .. "\n")
write(scratch .. "/control-url", "http://" .. url_host .. ":" .. control_port .. "\n")
if chosen_any then write(scratch .. "/ports-chosen", "") end
