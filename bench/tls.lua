-- One run of the new-connection benchmark, in a process of its own: on one
-- client, a first call, then CALLS calls, each a blocking client:recognize
-- ("blocking") or a client:submit followed by client:wait ("submit").
-- Prints "first S calls N seconds S failed F": the CPU time of this process
-- (os.clock(), every thread of it, the engine's own included) spent in the
-- first call and in the CALLS calls after it.
--
--   ALIOCR_APPCODE=<code> lua5.4 bench/tls.lua blocking|submit <interface URL> <image URL> <ca_file or -> CALLS
--     [fail]
--
-- Whether a call opens a connection is the emulator's doing: for
-- bench/common.lua's CLOSE_APPCODE it closes the connection after every
-- answer (with "Connection: close"), so each call opens a new one, over
-- HTTPS a TLS handshake; for another AppCode the client keeps its one
-- connection. The difference of the two, per call, is what a new
-- connection costs the client. bench/run.lua checks on the emulator's count
-- of connections that each call had one of its own.
--
-- "-" for the CA file: the client's default, the system CA store. "fail":
-- every call is to fail the certificate check, as it does with the system
-- store against the emulator, whose test CA the store does not hold; each
-- attempt is then a TLS handshake up to that check, without a request.
--
-- BENCH_TREE=<checkout> loads aliocr from another tree (bench/compare.lua).
local root = arg[0]:match("^(.*)/bench/[^/]*$") or "."
local tree = os.getenv("BENCH_TREE") or root
package.path = tree .. "/lua/?.lua;" .. package.path
package.cpath = tree .. "/build/?.so;" .. package.cpath

local face, url, image, ca_file, calls, fail = arg[1], arg[2], arg[3], arg[4], tonumber(arg[5]), arg[6] == "fail"
assert((face == "blocking" or face == "submit") and url and image and ca_file and calls,
  "usage: tls.lua blocking|submit URL IMAGE CA_FILE|- CALLS [fail]")
local client = require("aliocr").new({ appcode = assert(os.getenv("ALIOCR_APPCODE"), "ALIOCR_APPCODE is not set"),
  urls = { advanced = url }, retries = 0, ca_file = ca_file ~= "-" and ca_file or nil })

local failed = 0
local function check(res, err)
  if fail then
    -- libcurl names a failed certificate check PEER_FAILED_VERIFICATION
    -- (SSL_CACERT before 7.62).
    if res or err.kind ~= "transport" or not (err.code == "PEER_FAILED_VERIFICATION" or err.code == "SSL_CACERT") then
      error("expected a failed certificate check, got " .. (res and "a result" or tostring(err)))
    end
    failed = failed + 1
  elseif not res then
    error(tostring(err))
  end
end

local call
if face == "blocking" then
  call = function() check(client:recognize(image)) end
else
  call = function()
    client:submit("recognize", image, nil, check)
    client:wait()
  end
end

local start = os.clock()
call()
local first = os.clock() - start
start = os.clock()
for _ = 1, calls do call() end
local seconds = os.clock() - start
print(string.format("first %.6f calls %d seconds %.6f failed %d", first, calls, seconds, failed))
client:close()
