-- The connections a batch opens, in a process of its own: on a fresh client
-- (the default concurrency), client:batch of CALLS calls of interface one
-- with the batch's own concurrency CONCURRENCY, then a second batch the same
-- on the same client. Prints "first N second M": the TCP connections the
-- emulator accepted during each (its control endpoint's GET /connections,
-- for the interface URL's scheme). With latency added by the emulator
-- (bench/run.lua sets 20 ms), CONCURRENCY calls are in flight at once, so a
-- batch needs CONCURRENCY connections, and a second one none if the client
-- kept them.
--
--   ALIOCR_APPCODE=<code> lua5.4 bench/conns.lua <interface URL> <image URL> <ca_file or -> <control URL>
--     CALLS CONCURRENCY
--
-- BENCH_TREE=<checkout> loads aliocr from another tree (bench/compare.lua).
local root = arg[0]:match("^(.*)/bench/[^/]*$") or "."
local tree = os.getenv("BENCH_TREE") or root
package.path = tree .. "/lua/?.lua;" .. package.path
package.cpath = tree .. "/build/?.so;" .. package.cpath
package.path = root .. "/bench/?.lua;" .. package.path
local common = require("common")

local url, image, ca_file, control = arg[1], arg[2], arg[3], arg[4]
local calls, concurrency = tonumber(arg[5]), tonumber(arg[6])
assert(url and image and ca_file and control and calls and concurrency,
  "usage: conns.lua URL IMAGE CA_FILE|- CONTROL_URL CALLS CONCURRENCY")
local scheme = assert(url:match("^(https?)://"), "the interface URL is not http(s)")
local emu = { control = control }

local client = require("aliocr").new({ appcode = assert(os.getenv("ALIOCR_APPCODE"), "ALIOCR_APPCODE is not set"),
  urls = { advanced = url }, retries = 0, ca_file = ca_file ~= "-" and ca_file or nil })
local urls = {}
for i = 1, calls do urls[i] = image .. "?n=" .. i end

local function opened()
  local before = common.connections(emu)[scheme]
  local _, summary = client:batch("recognize", urls, { concurrency = concurrency })
  if summary.ok ~= calls then error(string.format("%d of %d calls failed", summary.failed, calls)) end
  return common.connections(emu)[scheme] - before
end

local first = opened()
local second = opened()
print(string.format("first %d second %d", first, second))
client:close()
