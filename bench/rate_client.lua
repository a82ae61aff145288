-- One client process of bench/rate.lua: a batch of N image URLs at
-- concurrency CONC against ENDPOINT (the URL of the first interface), with the rate limiter of MODE ("none",
-- "adaptive", or a number: a fixed qps). Prints one JSON line: what the
-- batch got, what it took, and stats().
--
--   lua5.4 bench/rate_client.lua ENDPOINT MODE N CONC   (ALIOCR_APPCODE set)
local root = arg[0]:match("^(.*)/bench/[^/]*$") or "."
package.path = root .. "/lua/?.lua;" .. package.path
package.cpath = root .. "/build/?.so;" .. package.cpath

local aliocr = require("aliocr")
local cjson = require("cjson")
local core = require("aliocr.core")

local endpoint, mode, n, conc = arg[1], arg[2], tonumber(arg[3]), tonumber(arg[4])
local opts = { appcode = assert(os.getenv("ALIOCR_APPCODE")), urls = { advanced = endpoint }, retries = 5 }
if mode == "adaptive" then
  opts.rate_limit = { adaptive = true }
elseif tonumber(mode) then
  opts.rate_limit = { qps = tonumber(mode) }
end
local client = aliocr.new(opts)
local urls = {}
for i = 1, n do urls[i] = "http://127.0.0.1:1/bench-" .. i .. ".png" end
local started = core.monotonic()
local _, summary = client:batch("recognize", urls, { concurrency = conc })
local elapsed = core.monotonic() - started
local s = client:stats()
client:close()
print(cjson.encode({
  ok = summary.ok, failed = summary.failed, elapsed = elapsed, attempts = s.attempts,
  throttled = s.rate_limit and s.rate_limit.throttled or nil,
  delayed = s.rate_limit and s.rate_limit.delayed or 0, waited = s.rate_limit and s.rate_limit.waited or 0,
  decreases = s.rate_limit and s.rate_limit.decreases or nil,
}))
