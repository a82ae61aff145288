-- One contender of the sequential benchmark, in a process of its own: makes
-- CALLS calls of interface one, one after the other, on one client, and
-- prints "calls N seconds S", and "rss <calls> <kB>" at each call count of
-- RSS_AT (a comma-separated list) and at the end.
--
--   ALIOCR_APPCODE=<code> lua5.4 bench/seq.lua aliocr|aliocr_signed|luasocket <interface URL> <image URL> CALLS
--     [RSS_AT]
--
-- aliocr: require("aliocr"), client:recognize. aliocr_signed: the same with
-- signature auth (the AppKey of bench/common.lua): a fresh nonce, timestamp
-- and HMAC every call, on the same call path. luasocket: what a user would
-- write with Debian's lua-socket and lua-cjson instead: socket.http.request
-- with a form body, then cjson.decode (socket.http closes the connection
-- after each call). BENCH_CA_FILE: the aliocr contenders' ca_file (for an
-- https interface URL).
local root = arg[0]:match("^(.*)/bench/[^/]*$") or "."
package.path = root .. "/lua/?.lua;" .. package.path
package.cpath = root .. "/build/?.so;" .. package.cpath
package.path = root .. "/bench/?.lua;" .. package.path

local who, url, image, calls, rss_at = arg[1], arg[2], arg[3], tonumber(arg[4]), arg[5]
assert(who and url and image and calls, "usage: seq.lua aliocr|aliocr_signed|luasocket URL IMAGE CALLS [RSS_AT]")
local appcode = assert(os.getenv("ALIOCR_APPCODE"), "ALIOCR_APPCODE is not set")

local clock = require("aliocr.core").monotonic

local marks = {}
for n in (rss_at or ""):gmatch("%d+") do marks[tonumber(n)] = true end
local rss_kb = require("common").rss_kb

local call
if who == "aliocr" or who == "aliocr_signed" then
  local common = require("common")
  local opts = who == "aliocr" and { appcode = appcode } or { app_key = common.APP_KEY, app_secret = common.APP_SECRET }
  opts.urls, opts.retries = { advanced = url }, 0
  local ca_file = os.getenv("BENCH_CA_FILE")
  if ca_file and ca_file ~= "" then opts.ca_file = ca_file end
  local client = require("aliocr").new(opts)
  call = function()
    local res, err = client:recognize(image)
    if not res then error(tostring(err)) end
  end
elseif who == "luasocket" then
  local http = require("socket.http")
  local ltn12 = require("ltn12")
  local cjson = require("cjson")
  local form = "url=" .. image:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end)
  local headers = {
    ["authorization"] = "APPCODE " .. appcode,
    ["accept"] = "application/json",
    ["content-type"] = "application/x-www-form-urlencoded; charset=UTF-8",
    ["content-length"] = tostring(#form),
  }
  call = function()
    local out = {}
    local ok, status = http.request({
      url = url, method = "POST", headers = headers,
      source = ltn12.source.string(form), sink = ltn12.sink.table(out),
    })
    if not ok or status ~= 200 then error("HTTP " .. tostring(status)) end
    local body = cjson.decode(table.concat(out))
    if body.ok ~= 1 then error("ok is not 1") end
  end
else
  error("unknown contender " .. tostring(who))
end

local start = clock()
for i = 1, calls do
  call()
  if marks[i] then print(string.format("rss %d %d", i, rss_kb())) end
end
local seconds = clock() - start
collectgarbage()
print(string.format("calls %d seconds %.6f", calls, seconds))
print(string.format("rss end %d", rss_kb()))
