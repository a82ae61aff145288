-- The options of bin/aliocr-emulator: the parser (its --help), and the
-- checks that turn them into the emulator's settings (the table nginx's
-- workers read at start, aliocr_emu.state).
local argparse = require("argparse")

local M = {}

local function new_parser()
  local parser = argparse("aliocr-emulator",
    "A local stand-in for the Aliyun marketplace gateway and the OCR vendor behind it.\n" ..
    "Runs Debian's nginx with its Lua module in the foreground on loopback, prints the\n" ..
    "addresses it serves, and stops cleanly on SIGINT or SIGTERM, leaving nothing behind.")
  parser:epilog([[
Credentials may also come from the environment, which keeps secrets out of the
process list: ALIOCR_EMULATOR_APPCODES (comma-separated codes),
ALIOCR_EMULATOR_APP_KEYS (comma-separated KEY:SECRET pairs), and for the OSS
endpoint ALIOCR_EMULATOR_OSS_KEYS (comma-separated ID:SECRET pairs) and
ALIOCR_EMULATOR_OSS_STS (comma-separated ID:SECRET:TOKEN triples).

What it prints, one "name value" line each, then "ready":
  endpoint     the API base URL (ALIOCR_ENDPOINT for the client)
  advanced     interface one's URL        handwriting  interface two's URL
  https        the HTTPS base URL         ca-file      the test CA to verify it with
  control      the control endpoint       images       sample images served on loopback
  oss          the OSS endpoint (objects at oss/BUCKET/KEY), with --oss-port
  oss-https    the OSS endpoint over HTTPS, with --oss-https-port
  oss-region   the OSS endpoint's region  oss-buckets  its buckets, comma-separated

The OSS endpoint serves PutObject, GetObject, HeadObject and DeleteObject in
private buckets, signed with V4 signatures (OSS4-HMAC-SHA256) in the
Authorization header or in a signed URL.

Interface one answers `data` as one string when `show` is absent, empty or 0,
and as an array of {words} when `show` is 1. See emulator/README.md for the
control endpoint and the fault modes.]])
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
  parser:option("--oss-port", "Also serve an OSS endpoint (Aliyun Object Storage with V4 signatures)\n" ..
    "on this port; 0 picks a free port."):argname("<port>")
  parser:option("--oss-https-port", "Also serve the OSS endpoint over HTTPS (the test CA's certificate)\n" ..
    "on this port; 0 picks a free port."):argname("<port>")
  parser:option("--oss-region", "The OSS endpoint's region, as signatures name it.", "cn-hangzhou")
    :argname("<region>")
  parser:option("--oss-bucket", "A bucket of the OSS endpoint (repeatable; default: one bucket, aliocr).")
    :count("*"):argname("<name>")
  parser:option("--oss-key", "Accept this OSS AccessKey ID with its secret (repeatable).")
    :count("*"):argname("<id:secret>")
  parser:option("--oss-sts", "Accept this STS AccessKey ID with its secret; its requests must carry\n" ..
    "this x-oss-security-token (repeatable).")
    :count("*"):argname("<id:secret:token>")
  parser:option("--oss-max-body", "Largest object a PUT may upload to the OSS endpoint, in bytes.",
    tostring(64 * 1024 * 1024)):argname("<bytes>")
  parser:option("--workers", "nginx worker processes.", "1")
  parser:option("--max-body", "Largest request body accepted, in bytes.", tostring(8 * 1024 * 1024))
  parser:option("--log-max", "Requests kept in the request log; 0 keeps none (for benchmarks).", "10000")
  parser:option("--images", "Directory served at /images/ on the API port.")
  parser:flag("--verbose", "Send nginx's error log to stderr.")
  parser:option("--scratch"):hidden(true)
  return parser
end

--- The options of the command line `argv`. --help prints the help and
-- exits 0; a usage error prints argparse's message and exits 1.
function M.parse(argv)
  return new_parser():parse(argv)
end

-- Raised by `integer` and `settings`, caught by `settings`: the message.
local Usage = {}

local function usage(msg) error(setmetatable({ msg = msg }, Usage), 0) end

--- The integer option `name` from `value`, from `lo` (to `hi`): the integer,
-- or nil and the usage message.
function M.integer(name, value, lo, hi)
  local n = tonumber(value)
  if not n or n ~= math.floor(n) or n < lo or (hi and n > hi) then
    return nil, string.format("--%s must be an integer%s, got '%s'", name,
      hi and string.format(" from %d to %d", lo, hi) or string.format(" >= %d", lo), value)
  end
  return math.tointeger(n)
end

local function integer(...)
  local n, msg = M.integer(...)
  if not n then usage(msg) end
  return n
end

-- The OSS endpoint's settings (nil when it is off): region, buckets,
-- keys ({ [id] = { secret, token } }), max_body, log_max. The launcher adds
-- dir (where the objects' files go).
local function read_oss(args, getenv, log_max)
  local asked = #args.oss_bucket > 0 or #args.oss_key > 0 or #args.oss_sts > 0 or args.oss_https_port
  if not args.oss_port then
    if asked then usage("the OSS options need --oss-port") end
    return nil
  end
  local region = args.oss_region
  if not region:find("^[a-z0-9][a-z0-9%-]*$") then
    usage("--oss-region takes a region ID such as cn-hangzhou, got '" .. region .. "'")
  end
  local buckets = {}
  for _, b in ipairs(#args.oss_bucket > 0 and args.oss_bucket or { "aliocr" }) do
    if #b < 3 or #b > 63 or not b:find("^[a-z0-9][a-z0-9%-]*[a-z0-9]$") then
      usage("--oss-bucket: '" .. b .. "' is not a bucket name (3 to 63 lower-case letters, digits " ..
        "and hyphens, starting and ending with a letter or a digit)")
    end
    buckets[b] = true
  end
  local keys = {}
  local function id_ok(id) return id and id:find("^[%w%._=%-]+$") end
  local function add_key(pair)
    local id, secret = pair:match("^([^:]+):([^:]+)$")
    if not id_ok(id) or secret:find("[%s%c,]") then
      usage("--oss-key takes ID:SECRET (letters, digits and . _ = - in the ID; no spaces or commas)")
    end
    keys[id] = { secret = secret }
  end
  local function add_sts(triple)
    local id, secret, token = triple:match("^([^:]+):([^:]+):(.+)$")
    if not id_ok(id) or secret:find("[%s%c,]") or token:find("[%s%c,]") then
      usage("--oss-sts takes ID:SECRET:TOKEN (letters, digits and . _ = - in the ID; no spaces or commas)")
    end
    keys[id] = { secret = secret, token = token }
  end
  for _, p in ipairs(args.oss_key) do add_key(p) end
  for _, t in ipairs(args.oss_sts) do add_sts(t) end
  for p in (getenv("ALIOCR_EMULATOR_OSS_KEYS") or ""):gmatch("[^,]+") do add_key(p) end
  for t in (getenv("ALIOCR_EMULATOR_OSS_STS") or ""):gmatch("[^,]+") do add_sts(t) end
  if next(keys) == nil then
    usage("no OSS credentials: give --oss-key ID:SECRET or --oss-sts ID:SECRET:TOKEN " ..
      "(or ALIOCR_EMULATOR_OSS_KEYS, ALIOCR_EMULATOR_OSS_STS)")
  end
  return {
    region = region, buckets = buckets, keys = keys, log_max = log_max,
    max_body = integer("oss-max-body", args.oss_max_body, 1),
  }
end

-- The settings from the options, in the order they are checked.
local function read(args, getenv)
  if not args.scratch then usage("run me through bin/aliocr-emulator") end

  if not (args.host:match("^127%.%d+%.%d+%.%d+$") or args.host == "::1" or args.host == "localhost") then
    usage("--host must be a loopback address (127.x.x.x, ::1 or localhost): the emulator stays on this machine")
  end
  local host = args.host == "localhost" and "127.0.0.1" or args.host

  local appcodes, app_keys = {}, {}
  local function add_appcode(code)
    if code == "" or code:find("[%s%c]") then usage("an AppCode cannot be empty or hold spaces") end
    appcodes[code] = true
  end
  local function add_app_key(pair)
    local key, secret = pair:match("^([^:]+):(.+)$")
    if not key or key:find("[%s%c,]") or secret:find("[%c]") then
      usage("--app-key takes KEY:SECRET (no spaces or commas in KEY)")
    end
    app_keys[key] = secret
  end
  for _, c in ipairs(args.appcode) do add_appcode(c) end
  for _, p in ipairs(args.app_key) do add_app_key(p) end
  for c in (getenv("ALIOCR_EMULATOR_APPCODES") or ""):gmatch("[^,]+") do add_appcode(c) end
  for p in (getenv("ALIOCR_EMULATOR_APP_KEYS") or ""):gmatch("[^,]+") do add_app_key(p) end
  if next(appcodes) == nil and next(app_keys) == nil then
    usage("no credentials: give at least one --appcode or --app-key")
  end

  local paths = { advanced = "/ocr/advanced", handwriting = "/ocr/handwriting" }
  for _, p in ipairs(args.path) do
    local api, path = p:match("^(%w+)=(/[%w%-%._~/]*)$")
    if not api or not paths[api] then
      usage("--path takes advanced=/path or handwriting=/path, got '" .. p .. "'")
    end
    paths[api] = path
  end
  if paths.advanced == paths.handwriting then usage("the two interfaces need different paths") end
  if paths.advanced:find("^/images/") or paths.handwriting:find("^/images/") then
    usage("/images/ is where the sample images are served")
  end

  local settings = {
    appcodes = appcodes,
    app_keys = app_keys,
    paths = paths,
    quota = args.quota and integer("quota", args.quota, 0) or nil,
    rate = args.rate and integer("rate", args.rate, 0) or 0,
    latency_ms = integer("latency-ms", args.latency_ms, 0),
    backend_timeout_ms = integer("backend-timeout-ms", args.backend_timeout_ms, 1),
    backend = args.backend or (args.no_fetch and "canned" or "tesseract"),
    fetch = not args.no_fetch,
    errors = args.errors,
    max_body = integer("max-body", args.max_body, 1),
    log_max = integer("log-max", args.log_max, 0),
  }
  local workers = integer("workers", args.workers, 1, 64)
  local oss = read_oss(args, getenv, settings.log_max)
  settings.oss = oss
  return {
    oss = oss,
    scratch = args.scratch,
    host = host,
    -- An IPv6 address in a URL or a listen directive: in brackets.
    url_host = host:find(":", 1, true) and ("[" .. host .. "]") or host,
    settings = settings,
    workers = workers,
  }
end

--- What the options `args` (parse's) ask for, with the credentials of the
-- environment (`getenv`): { scratch, host, url_host, settings, workers, oss
-- (nil when the OSS endpoint is off) }, or
-- nil and the usage message of the first option found wrong.
function M.settings(args, getenv)
  local ok, conf = pcall(read, args, getenv)
  if ok then return conf end
  if getmetatable(conf) == Usage then return nil, conf.msg end
  error(conf, 0)
end

return M
