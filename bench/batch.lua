-- The batch benchmark, in a process of its own: client:batch of CALLS calls
-- of interface one at CONCURRENCY; prints "calls N seconds S billed B".
--
--   ALIOCR_APPCODE=<code> lua5.4 bench/batch.lua <interface URL> <image URL> CALLS CONCURRENCY
local root = arg[0]:match("^(.*)/bench/[^/]*$") or "."
package.path = root .. "/lua/?.lua;" .. package.path
package.cpath = root .. "/build/?.so;" .. package.cpath

local url, image, calls, concurrency = arg[1], arg[2], tonumber(arg[3]), tonumber(arg[4])
assert(url and image and calls and concurrency, "usage: batch.lua URL IMAGE CALLS CONCURRENCY")
local aliocr = require("aliocr")
local clock = require("aliocr.core").monotonic

local client = aliocr.new({ appcode = assert(os.getenv("ALIOCR_APPCODE")), urls = { advanced = url },
  retries = 0, concurrency = concurrency })
local urls = {}
-- Distinct image URLs, as a real batch has.
for i = 1, calls do urls[i] = image .. "?n=" .. i end
local start = clock()
local _, summary = client:batch("recognize", urls)
local seconds = clock() - start
if summary.ok ~= calls then error(string.format("%d of %d calls failed", summary.failed, calls)) end
print(string.format("calls %d seconds %.6f billed %d", calls, seconds, summary.billed))
client:close()
