--- An nginx handler that reads text out of images with aliocr, without
-- blocking nginx's worker: inside nginx, aliocr talks over nginx's own
-- non-blocking sockets (cosockets), so one worker serves many calls at once.
--
--     location = /ocr { content_by_lua_block { require("ocr").handle() } }
--
-- GET /ocr?url=<image URL>[&kind=handwriting][&show=1] answers JSON:
-- 200 with { ok, msg, text, lines (when any), billed, request_id, attempts } on
-- success; 400 for a bad request; 502 with { kind, msg, status, billed,
-- retryable, error } when the call failed ("billed": null means unknown).
local aliocr = require("aliocr")
local cjson = require("cjson.safe")

local M = {}

-- One client per worker, made at its first request: a module's upvalues live
-- as long as the worker (lua_code_cache on). Credentials and interface URLs
-- come from the environment (ALIOCR_APPCODE, ALIOCR_ENDPOINT, ...), which
-- nginx passes to its workers only for the variables named by `env`.
local client

local function answer(status, t)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json; charset=utf-8"
  ngx.say(cjson.encode(t))
  return ngx.exit(status)
end

-- JSON has no nil: unknown billing is null.
local function json_billed(b)
  if b == nil then return cjson.null end
  return b
end

function M.handle()
  local args = ngx.req.get_uri_args()
  local url, kind, show = args.url, args.kind or "recognize", args.show
  if type(url) ~= "string" or url == "" then
    return answer(400, { error = "give the image as ?url=<http(s) URL>" })
  end
  if kind ~= "recognize" and kind ~= "handwriting" then
    return answer(400, { error = "kind must be recognize or handwriting" })
  end
  if show ~= nil and type(show) ~= "string" then return answer(400, { error = "give show once" }) end

  if not client then client = aliocr.new({ timeout = 10, retries = 2 }) end
  -- Misuse (say, a URL that is not http/https) raises: a bad request.
  local ok, res, err = pcall(client[kind], client, url, { show = show })
  if not ok then return answer(400, { error = tostring(res) }) end
  if res then
    return answer(200, {
      -- (lua-cjson would write an empty list as {}: no lines, no field)
      ok = res.ok, msg = res.msg, text = res.text, lines = res.lines[1] and res.lines or nil, billed = res.billed,
      request_id = res.request_id, attempts = res.attempts,
    })
  end
  return answer(502, {
    kind = err.kind, msg = err.msg, status = err.status, billed = json_billed(err.billed),
    retryable = err.retryable, attempts = err.attempts, error = tostring(err),
  })
end

return M
