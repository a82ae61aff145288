--- aliocr: read text out of images with the Aliyun marketplace OCR API
-- ("图片文字识别": interface one, high precision; interface two, handwriting,
-- with line positions).
--
--     local aliocr = require("aliocr")
--     local client = aliocr.new{ appcode = "...", endpoint = "http://127.0.0.1:8080" }
--     local res, err = client:recognize("https://example.com/a.png")
--     if res then print(res.text) else print(err, err.billed) end
--     client:close()
--
-- The methods of a client are in @{aliocr.client}. README.md has the same
-- reference with more examples, the emulator and the command line tool.
-- @module aliocr
local core = require("aliocr.core")
local cjson = require("cjson")
local Client = require("aliocr.client")
local errors = require("aliocr.errors")

local M = {
  --- The version of aliocr, e.g. `"aliocr 0.1.0"`.
  _VERSION = core._VERSION,
  --- JSON null, as it stands in `data` (lua-cjson's null).
  null = cjson.null,
}

--- Makes a client. Options left out fall back to the environment:
-- credentials come either all from the options or all from the environment
-- (`ALIOCR_APPCODE`, else `ALIOCR_APP_KEY` with `ALIOCR_APP_SECRET`). For
-- each interface, `urls` wins over `endpoint`, which wins over
-- `ALIOCR_ADVANCED_URL` / `ALIOCR_HANDWRITING_URL`, which win over
-- `ALIOCR_ENDPOINT`. The credentials are copied into C memory: no Lua table,
-- error or `tostring` shows them.
-- @function new
-- @tparam[opt] table opts the options:
-- @string[opt] opts.appcode APPCODE auth (`Authorization: APPCODE <code>`)
-- @string[opt] opts.app_key AppKey signature auth, with `app_secret`
-- @string[opt] opts.app_secret the AppKey's secret
-- @string[opt="HmacSHA256"] opts.signature_method or `"HmacSHA1"`
-- @tparam[opt] table opts.urls each interface's full URL:
--   `{ advanced = "https://...", handwriting = "https://..." }`
-- @string[opt] opts.endpoint a base URL to which `/ocr/advanced` and
--   `/ocr/handwriting` (the emulator's paths) are added
-- @number[opt=10] opts.timeout seconds for one attempt, all included
-- @number[opt=3] opts.connect_timeout seconds to connect
-- @int[opt=2] opts.retries further attempts after a failure that was not
--   billed and may pass
-- @bool[opt=false] opts.retry_unknown also retry when billing is unknown (a
--   timeout or a reset after the request went out): may bill twice
-- @number[opt=0.2] opts.retry_delay back-off: attempt n waits a random time up
--   to `min(retry_max_delay, retry_delay * 2^(n-1))` seconds
-- @number[opt=5] opts.retry_max_delay the longest back-off
-- @bool[opt=true] opts.tls_verify `false` turns certificate verification off
--   (tests only)
-- @string[opt] opts.ca_file a CA bundle to verify the server with (the
--   system's by default; not used inside nginx)
-- @string[opt] opts.proxy a proxy URL (libcurl's environment by default)
-- @int[opt=16 MiB] opts.max_response_bytes a larger answer is abandoned, not
--   buffered
-- @int[opt=64] opts.json_max_depth deeper JSON is refused
-- @string[opt] opts.user_agent the User-Agent (`aliocr/<v> libcurl/<v>`)
-- @string[opt="POST"] opts.method `"GET"` sends the parameters as a query
-- @int[opt=8] opts.concurrency transfers at once for `submit` and `batch`
-- @int[opt=10] opts.idle_timeout seconds a kept-alive connection may have
--   been idle and still be used again (a longer-idle one is closed and a new
--   one made), so that a call does not go out on a connection the server is
--   closing
-- @string[opt] opts.transport `"curl"` (libcurl, the default outside nginx)
--   or `"resty"` (nginx's non-blocking sockets, the default inside nginx)
-- @treturn aliocr.client.Client the client
-- @raise on a wrong type, an unknown option, no credentials, a URL that is
--   not http(s)
M.new = Client.new

--- True when `v` is an aliocr error object.
-- @param v any value
-- @treturn boolean
-- @function is_error
M.is_error = errors.is_error

--- The versions of aliocr and of the libcurl and TLS library it runs with.
-- @treturn table `{ aliocr = ..., curl = ..., ssl = ... }`
function M.versions()
  return core.versions()
end

--- What a successful call returns (`ok` is 1 and the status 2xx).
-- @table Result
-- @field ok 1, as the API sent it
-- @field msg the API's message (e.g. "查询成功")
-- @field text all the text, lines joined with `"\n"` (for a string `data`,
--   the string itself)
-- @field lines `{ words = "...", position = { top, left, width, height } }`
--   each; `position` is nil where the API gave none; a string `data` gives
--   one line per newline-separated part; JSON nulls are skipped; an element
--   of `data` that already has this shape is used as it is (not a copy)
-- @field data the `data` field (or `result`) as the API sent it; JSON null
--   is `aliocr.null`
-- @field status the HTTP status (2xx)
-- @field billed `true`: the gateway bills every 2xx answer
-- @field request_id `X-Ca-Request-Id`
-- @field attempts HTTP requests made for the call
-- @field elapsed seconds spent, back-off included

--- What a failed call returns after `nil`: an error object (its
-- `tostring` is one line, e.g. `aliocr quota error: Quota Exhausted (HTTP
-- 403, not billed, request 7AD0..., 1 attempt)`).
--
-- Kinds: `auth` (bad or missing credentials, bad signature), `quota`
-- (Quota Exhausted and the like), `throttled` (flow control), `gateway`
-- (any other gateway error), `api` (the vendor refused the call: HTTP 666),
-- `protocol` (a 2xx answer that is unusable: billed), `http` (any other
-- status), `timeout` and `transport` (DNS, connect, TLS, reset, cut short).
-- @table Error
-- @field kind what happened (above)
-- @field ok from the body when it had one, else 0
-- @field msg from the body, the gateway's header, or the transport
-- @field status the HTTP status; nil when none arrived
-- @field billed `true`, `false`, or nil when unknown (sent, and no status
--   came back)
-- @field code `X-Ca-Error-Code`, or the transport's code
--   (`COULDNT_CONNECT`, `OPERATION_TIMEDOUT`, ...), `RESPONSE_TOO_LARGE`,
--   `BAD_JSON`, `JSON_TOO_DEEP`
-- @field request_id `X-Ca-Request-Id`, when there was one
-- @field retryable a new attempt may pass and cannot be billed twice
-- @field attempts HTTP requests made for the call
-- @field elapsed seconds spent, back-off included

--- What `client:stats()` returns: calls counted when they end (a batch image
-- or a job is one call).
-- @table Stats
-- @field requests calls made
-- @field attempts HTTP requests sent
-- @field billed calls billed (what the gateway bills)
-- @field not_billed calls not billed
-- @field unknown calls whose billing is unknown
-- @field errors `{ [kind] = n }`: failed calls by kind, and `cancelled`
--   for jobs cancelled

--- What `client:batch` returns after the results.
-- @table Summary
-- @field total images in the list
-- @field ok images read
-- @field failed images that failed
-- @field billed calls billed
-- @field elapsed seconds the batch took

return M
