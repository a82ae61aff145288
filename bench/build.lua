-- Result building: from the body of an answer to the result a caller gets,
-- for a handwriting answer of LINES lines. aliocr's path after a transfer
-- (the core's decode: the client's lua-cjson decoder, then whole numbers
-- made integers, as both transports decode; then
-- errors.classify and result.build, as client.lua does) against
-- cjson.decode alone. Rounds interleaved; prints
-- the median seconds of each: "aliocr S cjson S".
--
--   lua5.4 bench/build.lua [LINES] [ROUNDS]
local root = arg[0]:match("^(.*)/bench/[^/]*$") or "."
package.path = root .. "/lua/?.lua;" .. package.path
package.cpath = root .. "/build/?.so;" .. package.cpath

local lines, rounds = tonumber(arg[1] or "5000"), tonumber(arg[2] or "15")
local cjson = require("cjson")
local result = require("aliocr.result")
local errors = require("aliocr.errors")
local core = require("aliocr.core")
local clock = core.monotonic
local decoder = require("cjson").new()
decoder.decode_max_depth(64)
decoder.decode_invalid_numbers(false)
local decode = decoder.decode

local items = {}
for i = 1, lines do
  items[i] = string.format('{"position":{"top":%d,"left":%d,"width":%d,"height":%d},"words":"第%d行 line %d"}',
    40 * i, 12 + i % 7, 300 + i % 50, 36, i, i)
end
local body = '{"ok":1,"msg":"查询成功","data":[' .. table.concat(items, ",") .. ']}'
local headers = { ["x-ca-request-id"] = "5C8A1B2E-0000-4000-8000-000000000000", ["content-type"] = "application/json" }

local function aliocr_path()
  local response = { status = 200, headers = headers, json = core.decode_json(decode, body) }
  assert(errors.classify(response) == nil)
  local res = result.build(response.json, response)
  assert(#res.lines == lines)
  return res
end
local function cjson_only()
  local t = cjson.decode(body)
  assert(#t.data == lines)
  return t
end

local function time(f)
  collectgarbage()
  local start = clock()
  f()
  return clock() - start
end
local function median(t)
  table.sort(t)
  local n = #t
  if n % 2 == 1 then return t[(n + 1) / 2] end
  return (t[n / 2] + t[n / 2 + 1]) / 2
end

aliocr_path() cjson_only() -- warm up
local a, c = {}, {}
for r = 1, rounds do
  a[r] = time(aliocr_path)
  c[r] = time(cjson_only)
end
print(string.format("aliocr %.6f cjson %.6f bytes %d", median(a), median(c), #body))
