--- An nginx handler that reads text out of images with aliocr, without
-- blocking nginx's worker: inside nginx, aliocr talks over nginx's own
-- non-blocking sockets (cosockets), so one worker serves many calls at once.
--
--     location = /ocr { content_by_lua_block { require("ocr").handle() } }
--
-- GET /ocr?url=<image URL>[&kind=handwriting][&show=1], or POST /ocr with the
-- image itself as the body (kind and show in the query as well; aliocr
-- stores it in OSS, configured by ALIOCR_OSS_* and ALIBABA_CLOUD_ACCESS_KEY_*,
-- and deletes it after the call), answers JSON:
-- 200 with { ok, msg, text, lines (when any), billed, request_id, attempts } on
-- success; 400 with { error } for a bad request (each argument at most once,
-- with a value; a body that is not an image: with kind "image"); 502 with
-- { kind, msg, status, billed, retryable, attempts, request_id, error } when
-- the call failed ("billed": null means unknown).
-- Every string in an answer is valid UTF-8: a byte that is not (from the URL,
-- or from the upstream) is written as the text \xNN.
--
-- A failed call is the upstream's failure, not the server's: it is logged
-- once, at the `warn` level, with the gateway's request id (when it sent
-- one) and no credential. `[error]` is left for faults of the server itself.
local aliocr = require("aliocr")
local cjson = require("cjson.safe")

local M = {}

local byte, concat, format = string.byte, table.concat, string.format

-- One client per worker, made at its first request: a module's upvalues live
-- as long as the worker (lua_code_cache on). Credentials and interface URLs
-- come from the environment (ALIOCR_APPCODE, ALIOCR_ENDPOINT, ...), which
-- nginx passes to its workers only for the variables named by `env`.
local client

-- The longest error text written to nginx's log.
local MAX_LOGGED = 1000

-- `s` with every byte that is not part of valid UTF-8 (RFC 3629: no
-- overlong form, no surrogate, nothing past U+10FFFF) written as \xNN.
local function utf8_safe(s)
  local i = s:find("[\128-\255]")
  if not i then return s end
  local out, n, from = {}, #s, 1
  while i do
    local c, len, lo, hi = byte(s, i), 0, 0x80, 0xBF
    if c >= 0xC2 and c <= 0xDF then len = 2
    elseif c >= 0xE0 and c <= 0xEF then len = 3
    elseif c >= 0xF0 and c <= 0xF4 then len = 4 end
    if c == 0xE0 then lo = 0xA0 elseif c == 0xED then hi = 0x9F
    elseif c == 0xF0 then lo = 0x90 elseif c == 0xF4 then hi = 0x8F end
    local ok = len > 0 and i + len - 1 <= n
    for k = 1, len - 1 do
      if not ok then break end
      local b = byte(s, i + k)
      if k == 1 then ok = b >= lo and b <= hi else ok = b >= 0x80 and b <= 0xBF end
    end
    if ok then
      i = i + len
    else
      out[#out + 1] = s:sub(from, i - 1)
      out[#out + 1] = format("\\x%02X", c)
      i = i + 1
      from = i
    end
    i = s:find("[\128-\255]", i)
  end
  out[#out + 1] = s:sub(from)
  return concat(out)
end

-- A copy of `v` with every string made valid UTF-8.
local function clean(v)
  if type(v) == "string" then return utf8_safe(v) end
  if type(v) ~= "table" or v == cjson.null then return v end
  local t = {}
  for k, x in pairs(v) do t[k] = clean(x) end
  return t
end

-- A text for one line of nginx's log: valid UTF-8, control characters
-- written as \xNN (no forged log line), at most MAX_LOGGED bytes.
local function log_safe(s)
  s = utf8_safe(s):gsub("%c", function(c) return format("\\x%02X", byte(c)) end)
  if #s > MAX_LOGGED then s = s:sub(1, MAX_LOGGED) .. "..." end
  return s
end

local function answer(status, t)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json; charset=utf-8"
  ngx.say(cjson.encode(clean(t)))
  return ngx.exit(status)
end

-- JSON has no nil: unknown billing is null.
local function json_billed(b)
  if b == nil then return cjson.null end
  return b
end

-- The value of the query argument `name` (nil when absent), or nil and what
-- is wrong with it: given twice, or without a value (`?show`, `?show=`).
local function argument(args, name, hint)
  local v = args[name]
  if v == nil then return nil end
  if type(v) == "table" then return nil, "give " .. name .. " once" .. (hint or "") end
  if v == true or v == "" then return nil, name .. " needs a value: ?" .. name .. "=..." end
  return v
end

-- The message of what a call raised: misuse says "aliocr: ..." (which goes
-- back to the client without the position in a Lua file, a path of this
-- server); anything else is a fault of this server.
local function misuse(e)
  return type(e) == "string" and e:match("^[^\n]-(aliocr: .*)$") or nil
end

-- The image of a POST: its body, in memory or in nginx's temporary file;
-- or nil and why not.
local function posted_image()
  ngx.req.read_body()
  local data = ngx.req.get_body_data()
  if data then return { bytes = data } end
  local file = ngx.req.get_body_file()
  if file then return { file = file } end
  return nil, "POST the image as the body"
end

function M.handle()
  local args, truncated = ngx.req.get_uri_args(20)
  if truncated == "truncated" then return answer(400, { error = "too many query arguments (at most 20)" }) end
  local url, bad = argument(args, "url", " (percent-encode the image URL: its & as %26, = as %3D)")
  if bad then return answer(400, { error = bad }) end
  if ngx.req.get_method() == "POST" then
    if url then return answer(400, { error = "POST the image as the body, or GET with ?url=, not both" }) end
    url, bad = posted_image()
    if bad then return answer(400, { error = bad }) end
  end
  if not url then return answer(400, { error = "give the image as ?url=<http(s) URL>, or POST it as the body" }) end
  local kind
  kind, bad = argument(args, "kind")
  if bad then return answer(400, { error = bad }) end
  kind = kind or "recognize"
  if kind ~= "recognize" and kind ~= "handwriting" then
    return answer(400, { error = "kind must be recognize or handwriting" })
  end
  local show
  show, bad = argument(args, "show")
  if bad then return answer(400, { error = bad }) end

  if not client then client = aliocr.new({ timeout = 10, retries = 2 }) end
  -- Misuse (say, a URL that is not http/https) raises: a bad request.
  local ok, res, err = pcall(client[kind], client, url, { show = show })
  if not ok then
    local why = misuse(res)
    if why then return answer(400, { error = why }) end
    ngx.log(ngx.ERR, "aliocr ", kind, " raised: ", log_safe(tostring(res)))
    return answer(500, { error = "internal error" })
  end
  if res then
    return answer(200, {
      -- (lua-cjson would write an empty list as {}: no lines, no field)
      ok = res.ok, msg = res.msg, text = res.text, lines = res.lines[1] and res.lines or nil, billed = res.billed,
      request_id = res.request_id, attempts = res.attempts,
    })
  end
  -- A posted body that is not an image (empty, too large, another type).
  if err.kind == "image" then return answer(400, { error = err.msg, kind = err.kind }) end
  -- tostring(err) names the kind, status, billing, attempts and the
  -- gateway's request id, never a credential.
  ngx.log(ngx.WARN, "aliocr ", kind, " failed, request id ", log_safe(err.request_id or "none"), ": ",
    log_safe(tostring(err)))
  return answer(502, {
    kind = err.kind, msg = err.msg, status = err.status, billed = json_billed(err.billed),
    retryable = err.retryable, attempts = err.attempts, request_id = err.request_id, error = tostring(err),
  })
end

return M
