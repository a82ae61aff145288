-- The emulator's misbehaviour on demand and its accounting: every fault mode
-- as a client sees it (status, headers, body, curl's exit code: 56 reset, 18
-- partial body, 28 timeout, 52 empty reply) and as the ledger bills it (a 2xx
-- status sent is billed, anything else is not); fault rules with uses and
-- matching; the control endpoint's validation; quota, rate limit, added
-- latency and the backend timeout; the request log, the connection counter
-- and POST /reset.
local emulator = require("helpers.emulator")
local http = require("helpers.http")
local cjson = require("cjson")
local socket = require("socket")


local q = require("helpers.sh").q
local util = require("helpers.util")
local unpack = table.unpack or unpack -- Lua 5.1 and LuaJIT have only the global
local eventually, stop_clean = util.eventually, util.stop_clean

--- Percent-encodes everything but the unreserved characters, as
-- curl --data-urlencode does.
local function urlencode(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

local function sh(cmd) return require("helpers.sh").capture(cmd .. " 2>/dev/null") end


--- Runs `f` and returns its result and the seconds it took.
local function timed(f)
  local t0 = socket.gettime()
  local res = f()
  return res, socket.gettime() - t0
end


--- The ledger once at least `n` authenticated calls are settled. The bill is
-- settled in nginx's log phase, after the response went out, and a stalled
-- call only after its stall: wait for it rather than race it.
local function ledger_after(emu, n)
  return eventually(function()
    local l = emu:ledger()
    if l.total.requests >= n then return l end
  end) or emu:ledger()
end

--- What the ledger holds for credential `cred` (default "demo") once `n`
-- calls are settled: { requests, billed, not_billed }.
local function account(emu, n, cred)
  local c = ledger_after(emu, n).credentials[cred or "demo"]
  return { requests = c.requests, billed = c.billed, not_billed = c.not_billed }
end

local function bill(requests, billed)
  return { requests = requests, billed = billed, not_billed = requests - billed }
end

--- One curl process that POSTs the sample image to each of `urls` in turn
-- (over one connection when it can). Returns, per transfer, { status,
-- connects (new connections it made), message (X-Ca-Error-Message) }.
local function curl_sequence(emu, urls, appcode)
  local argv = {
    "curl -s --http1.1 -m 10",
    "-H " .. q("Authorization: APPCODE " .. (appcode or "demo")),
    "--data-urlencode " .. q("url=" .. emu.image),
    "-w " .. q("%{http_code} %{num_connects} %header{x-ca-error-message}\\n"),
  }
  for _, u in ipairs(urls) do argv[#argv + 1] = "-o /dev/null " .. q(u) end
  local out = {}
  for line in sh(table.concat(argv, " ")):gmatch("[^\n]+") do
    local status, connects, message = line:match("^(%d+) (%d+) ?(.-)%s*$")
    out[#out + 1] = { status = tonumber(status), connects = tonumber(connects), message = message }
  end
  return out
end

local function statuses(list)
  local out = {}
  for i, r in ipairs(list) do out[i] = r.status end
  return out
end

--- `n` curl processes started at once (a shell `&` loop), each POSTing to
-- interface one. Returns a count of "status message" lines.
local function curl_parallel(emu, n, appcode)
  local one = table.concat({
    "curl -s --http1.1 -m 20 -o /dev/null",
    "-H " .. q("Authorization: APPCODE " .. (appcode or "demo")),
    "--data-urlencode " .. q("url=" .. emu.image),
    "-w " .. q("%{http_code} %header{x-ca-error-message}\\n"),
    q(emu.advanced),
  }, " ")
  local cmd = {}
  for _ = 1, n do cmd[#cmd + 1] = one .. " &" end
  cmd[#cmd + 1] = "wait"
  local counts = {}
  for line in sh(table.concat(cmd, " ")):gmatch("[^\n]+") do
    line = line:gsub("%s+$", "")
    counts[line] = (counts[line] or 0) + 1
  end
  return counts
end

--- Waits for the start of a wall-clock second (the rate limit's window) and
-- returns that second.
local function start_of_second()
  local now = socket.gettime()
  local frac = now - math.floor(now)
  if frac > 0.05 then socket.sleep(1 - frac + 0.02) end
  return math.floor(socket.gettime())
end

local function faults_of(emu)
  return (emu:ctl("GET", "/faults"))
end

-- Fault modes ------------------------------------------------------------------

-- The emulator runs inside nginx (LuaJIT): its specs run once per make test.
if not util.nginx_only_here() then
  describe("emulator fault modes", function() pending(util.NGINX_ONLY) end)
  return
end

describe("emulator fault modes", function()
  local emu
  local normal = {}

  setup(function()
    emu = emulator.start({ "--port", "0", "--appcode", "demo", "--appcode", "other" })
    for _, api in ipairs({ "advanced", "handwriting" }) do
      local res = emu:call(api)
      assert.equal(200, res.status)
      normal[api] = res.body
    end
    assert.equal(1, cjson.decode(normal.advanced).ok)
  end)

  teardown(function() stop_clean(emu) end)

  before_each(function() emu:reset() end)

  it("latency: the normal answer, after at least ms", function()
    local _, plain = timed(function() return emu:call("advanced") end)
    assert.truthy(plain < 0.6, "without the fault a call took " .. plain .. " s")
    emu:fault({ mode = "latency", ms = 600 })
    local res, took = timed(function() return emu:call("advanced") end)
    assert.equal(200, res.status)
    assert.equal(normal.advanced, res.body)
    assert.truthy(took >= 0.6, "took " .. took .. " s")
    assert.same(bill(2, 2), account(emu, 2))
  end)

  it("stall_headers: a client with a short timeout gets no status (curl 28); the answer is billed after the stall",
    function()
      emu:fault({ mode = "stall_headers", ms = 1500 })
      local res, took = timed(function() return emu:call("advanced", { timeout = 0.4 }) end)
      assert.equal(28, res.exit)
      assert.equal(0, res.status)
      assert.same({}, res.headers)
      assert.equal("", res.body)
      assert.truthy(took < 1.2, "the client gave up after " .. took .. " s")
      -- Nothing is settled while the gateway still stalls ...
      assert.equal(0, emu:ledger().total.requests)
      -- ... and when the stall ends it answers 200 to a client that is gone:
      -- billed, although the client never saw it.
      assert.same(bill(1, 1), account(emu, 1))
      local log = emu:requests()
      assert.equal(1, #log)
      assert.equal(200, log[1].status)
      assert.equal("stall_headers", log[1].fault)
    end)

  it("stall_headers: a patient client gets the full answer after the stall, billed", function()
    emu:fault({ mode = "stall_headers", ms = 500, ["then"] = "answer" })
    local res, took = timed(function() return emu:call("handwriting", { timeout = 5 }) end)
    assert.equal(0, res.exit)
    assert.equal(200, res.status)
    assert.equal(normal.handwriting, res.body)
    assert.truthy(took >= 0.5, "took " .. took .. " s")
    assert.same(bill(1, 1), account(emu, 1))
  end)

  it("stall_headers then=close: the connection closes with no reply at all (curl 52), unbilled", function()
    emu:fault({ mode = "stall_headers", ms = 600, ["then"] = "close" })
    local res, took = timed(function() return emu:call("advanced", { timeout = 5 }) end)
    assert.equal(52, res.exit)
    assert.equal(0, res.status)
    assert.equal("", res.body)
    assert.truthy(took >= 0.6, "closed after " .. took .. " s")
    assert.same(bill(1, 0), account(emu, 1))
  end)

  it("stall_body: headers, half the body, then the rest after the stall; billed", function()
    emu:fault({ mode = "stall_body", ms = 600 })
    local res, took = timed(function() return emu:call("advanced", { timeout = 5 }) end)
    assert.equal(0, res.exit)
    assert.equal(200, res.status)
    assert.equal(tostring(#normal.advanced), res.headers["content-length"])
    assert.equal(normal.advanced, res.body)
    assert.truthy(took >= 0.6, "took " .. took .. " s")
    assert.same(bill(1, 1), account(emu, 1))
  end)

  it("stall_body: a client with a short timeout gets status 200 and a partial body (curl 28); billed", function()
    emu:fault({ mode = "stall_body", ms = 1500 })
    local res, took = timed(function() return emu:call("advanced", { timeout = 0.4 }) end)
    assert.equal(28, res.exit)
    assert.equal(200, res.status)
    assert.equal(tostring(#normal.advanced), res.headers["content-length"])
    local half = math.floor(#normal.advanced / 2)
    assert.equal(normal.advanced:sub(1, half), res.body)
    assert.truthy(took < 1.2, "the client gave up after " .. took .. " s")
    assert.equal(0, emu:ledger().total.requests)
    assert.same(bill(1, 1), account(emu, 1))
  end)

  it("truncate: Content-Length promises more than arrives (curl 18); billed", function()
    emu:fault({ { mode = "truncate", times = 1 }, { mode = "truncate", bytes = 10, times = 1 } })
    local res = emu:call("advanced")
    assert.equal(18, res.exit)
    assert.equal(200, res.status)
    assert.equal(tostring(#normal.advanced), res.headers["content-length"])
    assert.equal(normal.advanced:sub(1, math.floor(#normal.advanced / 2)), res.body)
    res = emu:call("handwriting")
    assert.equal(18, res.exit)
    assert.equal(200, res.status)
    assert.equal(tostring(#normal.handwriting), res.headers["content-length"])
    assert.equal(normal.handwriting:sub(1, 10), res.body)
    assert.same(bill(2, 2), account(emu, 2))
  end)

  it("reset_before_headers: the connection is reset (curl 56), no status; not billed", function()
    emu:fault({ mode = "reset_before_headers" })
    local res = emu:call("advanced")
    assert.equal(56, res.exit)
    assert.equal(0, res.status)
    assert.same({}, res.headers)
    assert.matches("[Rr]eset", res.error)
    assert.same(bill(1, 0), account(emu, 1))
  end)

  it("reset_after_headers: status 200 and the headers arrive, then a reset (curl 56); billed", function()
    emu:fault({ mode = "reset_after_headers" })
    local res = emu:call("advanced")
    assert.equal(56, res.exit)
    assert.equal(200, res.status)
    assert.equal(tostring(#normal.advanced), res.headers["content-length"])
    assert.truthy(res.headers["x-ca-request-id"])
    assert.equal("", res.body)
    assert.matches("[Rr]eset", res.error)
    assert.same(bill(1, 1), account(emu, 1))
  end)

  it("not_json: 200 with a body that is not JSON; billed (so is another 2xx status)", function()
    emu:fault({ { mode = "not_json", times = 1 }, { mode = "not_json", status = 203, body = "<ok/>", times = 1 } })
    local res = emu:call("advanced")
    assert.equal(0, res.exit)
    assert.equal(200, res.status)
    assert.matches("^text/plain", res.headers["content-type"])
    assert.truthy(#res.body > 0)
    assert.is_false((pcall(cjson.decode, res.body)))
    res = emu:call("advanced")
    assert.equal(203, res.status)
    assert.equal("<ok/>", res.body)
    assert.same(bill(2, 2), account(emu, 2))
  end)

  it("html: a 502 text/html page; not billed", function()
    emu:fault({ mode = "html" })
    local res = emu:call("advanced")
    assert.equal(0, res.exit)
    assert.equal(502, res.status)
    assert.matches("^text/html", res.headers["content-type"])
    assert.matches("<html>", res.body, 1, true)
    assert.matches("502 Bad Gateway", res.body, 1, true)
    assert.is_nil(res.headers["x-ca-error-message"])
    assert.same(bill(1, 0), account(emu, 1))
  end)

  for _, case in ipairs({
    { "internal_error", 500, "Internal Error", "X500ER", "Internal Error" },
    { "service_unavailable", 503, "Service Unavailable", "D503BB", "Service Busy" },
    { "async_service", 504, "Async Service", "D504TO", "Backend service request timeout" },
  }) do
    local mode, status, message, code, vpc_message = unpack(case)
    it(mode .. ": " .. status .. " with X-Ca-Error-Message " .. message .. " and an empty body; not billed", function()
      emu:fault({ mode = mode })
      local res = emu:call("advanced")
      assert.equal(0, res.exit)
      assert.equal(status, res.status)
      assert.equal(message, res.headers["x-ca-error-message"])
      assert.is_nil(res.headers["x-ca-error-code"])
      assert.truthy(res.headers["x-ca-request-id"])
      assert.equal("0", res.headers["content-length"])
      assert.equal("", res.body)
      -- In the VPC style: the six-character code, whose digits are the status.
      emu:settings({ errors = "vpc" })
      res = emu:call("handwriting")
      assert.equal(status, res.status)
      assert.equal(code, res.headers["x-ca-error-code"])
      assert.equal(vpc_message, res.headers["x-ca-error-message"])
      assert.equal("", res.body)
      assert.same(bill(2, 0), account(emu, 2))
    end)
  end

  it("huge: a 20 MB body arrives complete, with its Content-Length; billed", function()
    local bytes = 20 * 1024 * 1024
    emu:fault({ mode = "huge", bytes = bytes })
    local res = emu:call("advanced", { timeout = 30 })
    assert.equal(0, res.exit)
    assert.equal(200, res.status)
    assert.equal(tostring(bytes), res.headers["content-length"])
    assert.is_nil(res.headers["transfer-encoding"])
    assert.equal(bytes, #res.body)
    local value = cjson.decode(res.body)
    assert.equal(1, value.ok)
    assert.truthy(#value.data > bytes - 64)
    assert.same(bill(1, 1), account(emu, 1))
  end)

  it("huge chunked=true: the body comes chunked, without Content-Length; billed", function()
    local bytes = 3 * 1024 * 1024 + 7
    emu:fault({ mode = "huge", bytes = bytes, chunked = true })
    local res = emu:call("advanced", { timeout = 30 })
    assert.equal(0, res.exit)
    assert.equal(200, res.status)
    assert.is_nil(res.headers["content-length"])
    assert.equal("chunked", res.headers["transfer-encoding"])
    assert.equal(bytes, #res.body)
    assert.equal(1, cjson.decode(res.body).ok)
    assert.same(bill(1, 1), account(emu, 1))
  end)

  it("chunked: Transfer-Encoding chunked, the body is the normal answer; billed", function()
    emu:fault({ mode = "chunked", pieces = 7 })
    for _, api in ipairs({ "advanced", "handwriting" }) do
      local res = emu:call(api)
      assert.equal(0, res.exit)
      assert.equal(200, res.status)
      assert.equal("chunked", res.headers["transfer-encoding"])
      assert.is_nil(res.headers["content-length"])
      assert.equal(normal[api], res.body)
    end
    assert.same(bill(2, 2), account(emu, 2))
  end)

  it("ok0: 200 with {\"ok\":0,...}; billed, whatever the body says", function()
    emu:fault({ { mode = "ok0", times = 1 }, { mode = "ok0", msg = "图片模糊", times = 1 } })
    local res = emu:call("advanced")
    assert.equal(200, res.status)
    assert.same({ ok = 0, msg = "识别失败" }, http.json(res))
    res = emu:call("handwriting")
    assert.equal(200, res.status)
    assert.same({ ok = 0, msg = "图片模糊" }, http.json(res))
    assert.same(bill(2, 2), account(emu, 2))
  end)

  it("vendor_error: 666 with {\"ok\":0,\"msg\":...}; not billed", function()
    emu:fault({ { mode = "vendor_error", times = 1 }, { mode = "vendor_error", msg = "余额不足", times = 1 } })
    local res = emu:call("advanced")
    assert.equal(666, res.status)
    assert.same({ ok = 0, msg = "接口权限有误" }, http.json(res))
    assert.is_nil(res.headers["x-ca-error-message"])
    res = emu:call("advanced")
    assert.equal(666, res.status)
    assert.same({ ok = 0, msg = "余额不足" }, http.json(res))
    assert.same(bill(2, 0), account(emu, 2))
  end)

  it("gateway error=<name>: that gateway error, in the error style in force; not billed", function()
    emu:fault({ mode = "gateway", error = "quota_expired" })
    local res = emu:call("advanced")
    assert.equal(403, res.status)
    assert.equal("Quota Expired", res.headers["x-ca-error-message"])
    assert.is_nil(res.headers["x-ca-error-code"])
    assert.equal("", res.body)
    local _, status = emu:settings({ errors = "vpc" })
    assert.equal(200, status)
    res = emu:call("advanced")
    assert.equal(403, res.status)
    assert.equal("B403ME", res.headers["x-ca-error-code"])
    assert.equal("Api Market Subscription expired", res.headers["x-ca-error-message"])
    assert.same(bill(2, 0), account(emu, 2))
  end)

  it("gateway with status, message and code: exactly those; billed only when the status is 2xx", function()
    emu:fault({
      { mode = "gateway", status = 429, message = "Throttled by API Flow Control", code = "T429SR", times = 1 },
      { mode = "gateway", status = 500, message = "Failed To Invoke Backend Service", times = 1 },
      { mode = "gateway", status = 200, message = "odd but 2xx", times = 1 },
    })
    local res = emu:call("advanced")
    assert.equal(429, res.status)
    assert.equal("Throttled by API Flow Control", res.headers["x-ca-error-message"])
    assert.equal("T429SR", res.headers["x-ca-error-code"])
    assert.equal("", res.body)
    res = emu:call("advanced")
    assert.equal(500, res.status)
    assert.equal("Failed To Invoke Backend Service", res.headers["x-ca-error-message"])
    assert.is_nil(res.headers["x-ca-error-code"])
    res = emu:call("advanced")
    assert.equal(200, res.status)
    assert.equal("odd but 2xx", res.headers["x-ca-error-message"])
    assert.same(bill(3, 1), account(emu, 3))
  end)

  it("respond: any status, body and headers; billed exactly when 2xx", function()
    emu:fault({
      { mode = "respond", status = 201, body = "created", content_type = "text/plain",
        headers = { ["X-Emu-Test"] = "yes" }, times = 1 },
      { mode = "respond", status = 302, headers = { Location = "http://127.0.0.1:1/elsewhere" }, times = 1 },
      { mode = "respond", status = 418, body = '{"tea":true}', times = 1 },
    })
    local res = emu:call("advanced")
    assert.equal(201, res.status)
    assert.equal("created", res.body)
    assert.equal("text/plain", res.headers["content-type"])
    assert.equal("yes", res.headers["x-emu-test"])
    res = emu:call("advanced")
    assert.equal(302, res.status)
    assert.equal("http://127.0.0.1:1/elsewhere", res.headers["location"])
    assert.equal("", res.body)
    res = emu:call("advanced")
    assert.equal(418, res.status)
    assert.matches("^application/json", res.headers["content-type"])
    assert.same({ tea = true }, http.json(res))
    assert.same(bill(3, 1), account(emu, 3))
    local log = emu:requests()
    assert.same({ true, false, false }, { log[1].billed, log[2].billed, log[3].billed })
    assert.same({ 201, 302, 418 }, { log[1].status, log[2].status, log[3].status })
  end)

  -- raw: the bytes of the rule, exactly, over the request's own socket.

  --- POSTs the sample image to interface one over a plain socket and reads
  -- until the server closes, fails or `timeout` (default 5) passes:
  -- returns the bytes read, the error that ended the read (nil when the
  -- server closed the connection cleanly) and the seconds it took. With
  -- `keep`, the socket is returned open (the caller closes it).
  local function raw_exchange(timeout, keep, get)
    local host, port, path = emu.advanced:match("^http://([^/:]+):(%d+)(/.*)$")
    local c = socket.tcp()
    c:settimeout(timeout or 5)
    assert(c:connect(host, tonumber(port)))
    local form = "url=" .. urlencode(emu.image)
    local request = get
      and table.concat({ "GET " .. path .. "?" .. form .. " HTTP/1.1", "Host: " .. host,
        "Authorization: APPCODE demo", "", "" }, "\r\n")
      or table.concat({ "POST " .. path .. " HTTP/1.1", "Host: " .. host, "Authorization: APPCODE demo",
        "Content-Type: application/x-www-form-urlencoded", "Content-Length: " .. #form, "", form }, "\r\n")
    local t0 = socket.gettime()
    assert(c:send(request))
    local data, err, partial = c:receive("*a")
    local took = socket.gettime() - t0
    if keep then return data or partial, err, took, c end
    c:close()
    return data or partial, err, took
  end

  it("raw: exactly the bytes of data, then the connection closes; billed by the rule's status, 2xx or not",
    function()
      local wire = "HTTP/1.1 200 OK\r\nContent-Length: -1\r\nContent-Length: 7\r\n\r\nnot {}\n"
      emu:fault({ { mode = "raw", status = 200, data = wire, times = 1 },
        { mode = "raw", status = 502, data = wire, times = 1 } })
      local got, err = raw_exchange()
      assert.is_nil(err)
      assert.equal(wire, got)
      -- Nothing of data is parsed: the ledger bills the status of the rule.
      got, err = raw_exchange()
      assert.is_nil(err)
      assert.equal(wire, got)
      assert.same(bill(2, 1), account(emu, 2))
      local log = emu:requests()
      assert.same({ 200, 502 }, { log[1].status, log[2].status })
      assert.same({ "raw", "raw" }, { log[1].fault, log[2].fault })
    end)

  it("raw: also for a GET, which has no body to read first", function()
    emu:fault({ mode = "raw", status = 201, data = "HTTP/1.1 201 Created\r\n\r\n" })
    local got, err = raw_exchange(5, false, true)
    assert.is_nil(err)
    assert.equal("HTTP/1.1 201 Created\r\n\r\n", got)
    assert.same(bill(1, 1), account(emu, 1))
  end)

  it("raw: fill streams bytes copies of byte, then pieces come one at a time, gap_ms apart", function()
    emu:fault({ mode = "raw", status = 200, data = "HEAD:", fill = { bytes = 3 * 65536 + 5, byte = "z" },
      pieces = { "<1>", "<2>", "<3>" }, gap_ms = 300 })
    local got, err, took = raw_exchange()
    assert.is_nil(err)
    assert.equal("HEAD:" .. string.rep("z", 3 * 65536 + 5) .. "<1><2><3>", got)
    assert.truthy(took >= 0.9, "three pieces 300 ms apart came in " .. took .. " s")
    -- fill without byte: "A"s.
    emu:reset()
    emu:fault({ mode = "raw", status = 200, fill = { bytes = 10 } })
    got = raw_exchange()
    assert.equal("AAAAAAAAAA", got)
    assert.same(bill(1, 1), account(emu, 1))
  end)

  it("raw after=reset: what was sent, then a TCP reset; billed by the status, also when nothing was sent",
    function()
      emu:fault({ { mode = "raw", status = 200, data = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc",
        after = "reset", times = 1 }, { mode = "raw", status = 200, after = "reset", times = 1 } })
      local res = emu:call("advanced")
      assert.equal(56, res.exit)
      assert.equal(200, res.status)
      assert.equal("abc", res.body)
      assert.matches("[Rr]eset", res.error)
      res = emu:call("advanced")
      assert.equal(56, res.exit)
      assert.equal(0, res.status)
      assert.matches("[Rr]eset", res.error)
      assert.same(bill(2, 2), account(emu, 2))
    end)

  it("raw after=close: a body shorter than its Content-Length ends at a clean close (curl 18)", function()
    emu:fault({ mode = "raw", status = 200, data = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc",
      after = "close" })
    local res = emu:call("advanced")
    assert.equal(18, res.exit)
    assert.equal("abc", res.body)
    assert.same(bill(1, 1), account(emu, 1))
  end)

  it("raw after=hold: the connection stays open for hold_ms, then closes; billed when it closes", function()
    emu:fault({ mode = "raw", status = 200, data = "HTTP/1.1 200 OK\r\n", after = "hold", hold_ms = 700 })
    local got, err, took = raw_exchange()
    assert.is_nil(err)
    assert.equal("HTTP/1.1 200 OK\r\n", got)
    assert.truthy(took >= 0.7, "closed after " .. took .. " s")
    assert.same(bill(1, 1), account(emu, 1))
  end)

  it("raw after=hold: what the client sends meanwhile is dropped; the hold ends when the client closes",
    function()
      emu:fault({ mode = "raw", status = 200, data = "HTTP/1.1 200 OK\r\n", after = "hold", hold_ms = 60000 })
      local got, err, _, c = raw_exchange(0.5, true)
      assert.equal("timeout", err)
      assert.equal("HTTP/1.1 200 OK\r\n", got)
      assert.truthy(c:send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
      c:settimeout(0.5)
      local _, again, partial = c:receive("*a")
      assert.equal("timeout", again)
      assert.equal("", partial)
      -- Nothing is settled while the connection is held ...
      assert.equal(0, emu:ledger().total.requests)
      c:close()
      -- ... and the client's close ends the hold, long before hold_ms.
      assert.truthy(eventually(function() return emu:ledger().total.requests == 1 end, 10),
        "the hold did not end when the client closed")
      assert.same(bill(1, 1), account(emu, 1))
    end)

  it("raw: a client that goes away ends the answer there, settled by the status", function()
    emu:fault({ mode = "raw", status = 200, data = "HTTP/1.1 200 OK\r\n", fill = { bytes = 2 ^ 32 } })
    local _, _, _, c = raw_exchange(0.3, true)
    c:close()
    assert.truthy(eventually(function() return emu:ledger().total.requests == 1 end, 15),
      "the emulator went on writing to a client that was gone")
    assert.same(bill(1, 1), account(emu, 1))
  end)
end)

-- Fault rules ------------------------------------------------------------------

describe("emulator fault rules", function()
  local emu

  setup(function()
    emu = emulator.start({ "--port", "0", "--appcode", "demo", "--appcode", "other" })
  end)

  teardown(function() stop_clean(emu) end)

  before_each(function() emu:reset() end)

  it("fail 3 times, then succeed: three 503s, then 200; GET /faults shows hits 3 and left 0", function()
    local added, status = emu:fault({ mode = "service_unavailable", times = 3 })
    assert.equal(200, status)
    assert.same({ ids = { 1 } }, added)
    local before = faults_of(emu)
    assert.equal(1, #before)
    assert.same({ 0, 3 }, { before[1].hits, before[1].left })
    for i = 1, 3 do
      local res = emu:call("advanced")
      assert.equal(503, res.status, "call " .. i)
      assert.equal("Service Unavailable", res.headers["x-ca-error-message"])
    end
    local res = emu:call("advanced")
    assert.equal(200, res.status)
    assert.equal(1, http.json(res).ok)
    local after = faults_of(emu)
    assert.equal(1, #after)
    assert.equal("service_unavailable", after[1].mode)
    assert.equal(3, after[1].times)
    assert.same({ 3, 0 }, { after[1].hits, after[1].left })
    assert.same(bill(4, 1), account(emu, 4))
  end)

  it("a rule with api= only hits calls to that interface", function()
    emu:fault({ mode = "internal_error", api = "handwriting" })
    assert.equal(200, emu:call("advanced").status)
    assert.equal(500, emu:call("handwriting").status)
    assert.equal(200, emu:call("advanced").status)
    assert.equal(1, faults_of(emu)[1].hits)
  end)

  it("a rule with credential= only hits calls with that credential", function()
    emu:fault({ mode = "vendor_error", credential = "other" })
    assert.equal(200, emu:call("advanced").status)
    assert.equal(666, emu:call("advanced", { appcode = "other" }).status)
    assert.equal(200, emu:call("handwriting").status)
    assert.same(bill(2, 2), account(emu, 3, "demo"))
    assert.same(bill(1, 0), account(emu, 3, "other"))
  end)

  it("the first matching rule with uses left wins", function()
    local added = emu:fault({
      { mode = "internal_error", api = "handwriting", times = 1 },
      { mode = "service_unavailable", times = 1 },
      { mode = "html", times = 1 },
    })
    assert.same({ ids = { 1, 2, 3 } }, added)
    assert.equal(503, emu:call("advanced").status)    -- rule 1 does not match; rule 2
    assert.equal(502, emu:call("advanced").status)    -- rule 2 spent; rule 3
    assert.equal(500, emu:call("handwriting").status) -- rule 1
    assert.equal(200, emu:call("handwriting").status) -- all spent
    local list = faults_of(emu)
    assert.same({ 1, 1, 1 }, { list[1].hits, list[2].hits, list[3].hits })
    assert.same({ 0, 0, 0 }, { list[1].left, list[2].left, list[3].left })
  end)

  it("a rule without times applies until DELETE /faults clears it", function()
    emu:fault({ mode = "ok0" })
    for _ = 1, 3 do assert.equal(0, http.json(emu:call("advanced")).ok) end
    local list = faults_of(emu)
    assert.equal(3, list[1].hits)
    assert.is_nil(list[1].left)
    local out, status = emu:ctl("DELETE", "/faults")
    assert.equal(200, status)
    assert.same({ ok = true }, out)
    assert.same({}, faults_of(emu))
    local res = emu:call("advanced")
    assert.equal(200, res.status)
    assert.equal(1, http.json(res).ok)
  end)

  it("a rule only takes calls that passed the gateway's checks", function()
    emu:fault({ mode = "internal_error", times = 1 })
    local res = emu:call("advanced", { appcode = "nobody" })
    assert.equal(400, res.status)
    assert.matches("^Invalid AppCode", res.headers["x-ca-error-message"])
    assert.same({ 0, 1 }, { faults_of(emu)[1].hits, faults_of(emu)[1].left })
    assert.equal(500, emu:call("advanced").status)
  end)
end)

-- The control endpoint -----------------------------------------------------------

describe("emulator control endpoint", function()
  local emu

  setup(function()
    emu = emulator.start({ "--port", "0", "--appcode", "demo" })
  end)

  teardown(function() stop_clean(emu) end)

  before_each(function() emu:reset() end)

  it("refuses bad fault rules with 400 and a message, adding none of them", function()
    local bad = {
      { { mode = "sideways" }, "unknown fault mode 'sideways'" },
      { { times = 3 }, "fault 1: a fault needs a mode" },
      { {}, "no fault given" },
      { { mode = "internal_error", times = 0 }, "times must be an integer >= 1" },
      { { mode = "internal_error", times = 1.5 }, "times must be an integer >= 1" },
      { { mode = "internal_error", times = "3" }, "times must be an integer >= 1" },
      { { mode = "internal_error", api = "ocr" }, "api must be" },
      { { mode = "internal_error", credential = 7 }, "credential must be a string" },
      { { mode = "latency" }, "latency needs ms" },
      { { mode = "latency", ms = -1 }, "latency needs ms" },
      { { mode = "stall_headers", ms = "soon" }, "ms must be an integer" },
      { { mode = "stall_headers", ["then"] = "later" }, "then must be" },
      { { mode = "stall_body", ms = 0.5 }, "ms must be an integer" },
      { { mode = "truncate", bytes = -1 }, "bytes must be an integer" },
      { { mode = "huge", bytes = "big" }, "bytes must be an integer" },
      { { mode = "huge", bytes = 10 }, "bytes must be an integer >= " },
      { { mode = "huge", chunked = "yes" }, "chunked must be true or false" },
      { { mode = "respond", status = 200, content_type = true }, "content_type must be a string" },
      { { mode = "respond", status = 200, headers = { X = { 1 } } }, "headers must map names to strings" },
      { { mode = "chunked", pieces = 0 }, "pieces must be" },
      { { mode = "not_json", status = 500 }, "status must be 2xx" },
      { { mode = "ok0", msg = 1 }, "msg must be a string" },
      { { mode = "vendor_error", msg = false }, "msg must be a string" },
      { { mode = "gateway" }, "gateway needs error" },
      { { mode = "gateway", status = 400 }, "gateway needs error" },
      { { mode = "gateway", error = "no_such_error" }, "unknown gateway error 'no_such_error'" },
      { { mode = "gateway", status = 400, message = "x", code = 5 }, "code must be a string" },
      { { mode = "respond" }, "respond needs a status" },
      { { mode = "respond", status = 200, body = 5 }, "body must be a string" },
      { { mode = "respond", status = 200, headers = "X: y" }, "headers must be an object" },
      { { mode = "raw" }, "raw needs a status" },
      { { mode = "raw", status = 1000 }, "raw needs a status" },
      { { mode = "raw", status = 200, data = 5 }, "data must be a string" },
      { { mode = "raw", status = 200, fill = 5 }, "fill must be an object" },
      { { mode = "raw", status = 200, fill = {} }, "fill.bytes must be an integer" },
      { { mode = "raw", status = 200, fill = { bytes = 0 } }, "fill.bytes must be an integer" },
      { { mode = "raw", status = 200, fill = { bytes = 2 ^ 32 + 1 } }, "fill.bytes must be an integer" },
      { { mode = "raw", status = 200, fill = { bytes = 1, byte = "AB" } }, "fill.byte must be a string of one byte" },
      { { mode = "raw", status = 200, pieces = "abc" }, "pieces must be an array of strings" },
      { { mode = "raw", status = 200, pieces = { "a", 1 } }, "pieces must be an array of strings" },
      { { mode = "raw", status = 200, pieces = { x = "a" } }, "pieces must be an array of strings" },
      { { mode = "raw", status = 200, gap_ms = -1 }, "gap_ms must be an integer" },
      { { mode = "raw", status = 200, after = "linger" }, "after must be" },
      { { mode = "raw", status = 200, hold_ms = 10 }, "hold_ms goes with after = \"hold\"" },
      { { mode = "raw", status = 200, after = "hold", hold_ms = 0.5 }, "hold_ms must be an integer" },
      { { { mode = "ok0" }, { mode = "bogus" } }, "fault 2: unknown fault mode 'bogus'" },
    }
    for _, case in ipairs(bad) do
      local out, status = emu:fault(case[1])
      local what = cjson.encode(case[1])
      assert.equal(400, status, what)
      assert.is_string(out.error, what)
      assert.truthy(out.error:find(case[2], 1, true), what .. " gave: " .. tostring(out.error))
    end
    assert.same({}, faults_of(emu))
    assert.equal(200, emu:call("advanced").status)
  end)

  it("refuses a missing or malformed JSON body with 400", function()
    local out, status = emu:ctl("POST", "/faults")
    assert.equal(400, status)
    assert.equal("a JSON body is required", out.error)
    local res = http.request({ url = emu.control .. "/faults", body = "{mode=", content_type = "application/json" })
    assert.equal(400, res.status)
    assert.matches("^bad JSON", http.json(res).error)
    res = http.request({ url = emu.control .. "/settings", body = "[1,", content_type = "application/json" })
    assert.equal(400, res.status)
    assert.matches("^bad JSON", http.json(res).error)
  end)

  it("refuses unknown settings and bad values with 400, changing nothing", function()
    local before = emu:settings()
    for _, case in ipairs({
      { { colour = "red" }, "unknown setting 'colour'" },
      { { rate = -1 }, "bad value for setting 'rate'" },
      { { latency_ms = 1.5 }, "bad value for setting 'latency_ms'" },
      { { quota = "10" }, "bad value for setting 'quota'" },
      { { quotas = { demo = -2 } }, "bad value for setting 'quotas'" },
      { { errors = "modern" }, "bad value for setting 'errors'" },
      { { fetch = "yes" }, "bad value for setting 'fetch'" },
      { { backend_timeout_ms = 0 }, "bad value for setting 'backend_timeout_ms'" },
      { { latency_ms = 10, max_body = 5 }, "setting 'max_body'" },
    }) do
      local out, status = emu:settings(case[1])
      assert.equal(400, status, cjson.encode(case[1]))
      assert.truthy(out.error:find(case[2], 1, true), out.error)
    end
    assert.same(before, emu:settings())
  end)

  it("refuses a bad ?since= with 400", function()
    local out, status = emu:ctl("GET", "/requests?since=abc")
    assert.equal(400, status)
    assert.equal("since must be a number", out.error)
    out, status = emu:ctl("GET", "/requests?since=-1")
    assert.equal(400, status)
    assert.equal("since must be a number", out.error)
  end)

  it("answers an unknown route, or a known path with the wrong method, with 404", function()
    for _, route in ipairs({ { "GET", "/nope" }, { "DELETE", "/ledger" }, { "GET", "/reset" },
                             { "PUT", "/faults" }, { "GET", "/faults/1" } }) do
      local out, status = emu:ctl(route[1], route[2])
      assert.equal(404, status, route[1] .. " " .. route[2])
      assert.equal("no such control route", out.error)
    end
  end)

  it("is not reachable through the API listener", function()
    local res = http.request({ url = emu.endpoint .. "/faults", method = "POST",
      body = '{"mode":"internal_error"}', content_type = "application/json" })
    assert.equal(400, res.status)
    assert.equal("Invalid Url", res.headers["x-ca-error-message"])
    assert.same({}, faults_of(emu))
  end)
end)

-- Quota --------------------------------------------------------------------------

describe("emulator quota", function()
  local emu

  setup(function()
    emu = emulator.start({ "--port", "0", "--appcode", "demo", "--appcode", "other", "--quota", "3" })
  end)

  teardown(function() stop_clean(emu) end)

  before_each(function() emu:reset() end)

  it("--quota N: N billed calls, then 403 Quota Exhausted, not billed", function()
    assert.equal(3, emu:settings().quota)
    local ledger = emu:ledger()
    assert.same({ 3, 3 }, { ledger.credentials.demo.quota, ledger.credentials.demo.quota_remaining })
    for i = 1, 3 do assert.equal(200, emu:call(i % 2 == 0 and "handwriting" or "advanced").status) end
    for _ = 1, 2 do
      local res = emu:call("advanced")
      assert.equal(403, res.status)
      assert.equal("Quota Exhausted", res.headers["x-ca-error-message"])
      assert.equal("", res.body)
    end
    ledger = ledger_after(emu, 5)
    local demo = ledger.credentials.demo
    assert.same({ 5, 3, 2, 3, 0 }, { demo.requests, demo.billed, demo.not_billed, demo.quota, demo.quota_remaining })
    -- The other credential has a quota of its own.
    assert.equal(200, emu:call("advanced", { appcode = "other" }).status)
    local other = ledger_after(emu, 6).credentials.other
    assert.same({ 1, 1, 2 }, { other.requests, other.billed, other.quota_remaining })
  end)

  it("failed calls (666, 5xx) use no quota", function()
    emu:fault({
      { mode = "vendor_error", times = 2 },
      { mode = "service_unavailable", times = 1 },
      { mode = "internal_error", times = 1 },
    })
    assert.same({ 666, 666, 503, 500 }, {
      emu:call("advanced").status, emu:call("advanced").status,
      emu:call("advanced").status, emu:call("advanced").status,
    })
    local demo = ledger_after(emu, 4).credentials.demo
    assert.same({ 4, 0, 3 }, { demo.requests, demo.billed, demo.quota_remaining })
    for _ = 1, 3 do assert.equal(200, emu:call("advanced").status) end
    assert.equal(403, emu:call("advanced").status)
    demo = ledger_after(emu, 8).credentials.demo
    assert.same({ 8, 3, 0 }, { demo.requests, demo.billed, demo.quota_remaining })
  end)

  it("an exhausted quota comes before any fault rule", function()
    emu:settings({ quota = 0 })
    emu:fault({ mode = "internal_error", times = 1 })
    local res = emu:call("advanced")
    assert.equal(403, res.status)
    assert.equal("Quota Exhausted", res.headers["x-ca-error-message"])
    assert.same({ 0, 1 }, { faults_of(emu)[1].hits, faults_of(emu)[1].left })
  end)

  it("POST /settings quota and quotas: one quota for all, or one per credential", function()
    local _, status = emu:settings({ quota = 2, quotas = { demo = 1 } })
    assert.equal(200, status)
    local ledger = emu:ledger()
    assert.same({ 1, 1 }, { ledger.credentials.demo.quota, ledger.credentials.demo.quota_remaining })
    assert.same({ 2, 2 }, { ledger.credentials.other.quota, ledger.credentials.other.quota_remaining })
    assert.equal(200, emu:call("advanced").status)
    assert.equal(403, emu:call("advanced").status)
    assert.equal(200, emu:call("advanced", { appcode = "other" }).status)
    ledger = ledger_after(emu, 3)
    assert.same({ 1, 0 }, { ledger.credentials.demo.billed, ledger.credentials.demo.quota_remaining })
    assert.same({ 1, 1 }, { ledger.credentials.other.billed, ledger.credentials.other.quota_remaining })
    assert.equal(200, emu:call("advanced", { appcode = "other" }).status)
    assert.equal(403, emu:call("advanced", { appcode = "other" }).status)
    -- false: no quota for that credential.
    emu:settings({ quotas = { demo = false } })
    for _ = 1, 4 do assert.equal(200, emu:call("advanced").status) end
    ledger = ledger_after(emu, 9)
    assert.equal(http.null, ledger.credentials.demo.quota)
    assert.equal(http.null, ledger.credentials.demo.quota_remaining)
    assert.equal(5, ledger.credentials.demo.billed)
    assert.same({ 2, 0 }, { ledger.credentials.other.billed, ledger.credentials.other.quota_remaining })
  end)

  it("concurrent calls never overspend it: 20 at once with quota 5 bill exactly 5", function()
    -- The added latency keeps every call in flight at the same time.
    emu:settings({ quota = 5, latency_ms = 300 })
    local counts = curl_parallel(emu, 20)
    assert.same({ ["200"] = 5, ["403 Quota Exhausted"] = 15 }, counts)
    local demo = ledger_after(emu, 20).credentials.demo
    assert.same({ 20, 5, 15, 0 }, { demo.requests, demo.billed, demo.not_billed, demo.quota_remaining })
  end)

  it("concurrent calls that fail give their reservation back", function()
    emu:settings({ quota = 5, latency_ms = 300 })
    emu:fault({ mode = "vendor_error", times = 5 })
    local counts = curl_parallel(emu, 10)
    -- The first five to get a reservation take the rule and fail (666, unbilled).
    -- How many of the others are billed depends on the interleaving (a call that
    -- comes while the failing ones still hold the quota is refused); in every
    -- case the failed calls hand their quota back, so it all stays usable.
    assert.equal(5, counts["666"])
    assert.equal(5, (counts["200"] or 0) + (counts["403 Quota Exhausted"] or 0))
    local demo = ledger_after(emu, 10).credentials.demo
    assert.equal(counts["200"] or 0, demo.billed)
    assert.truthy(demo.billed <= 5)
    assert.equal(5 - demo.billed, demo.quota_remaining)
    for _ = 1, demo.quota_remaining do assert.equal(200, emu:call("advanced").status) end
    assert.equal(403, emu:call("advanced").status)
    assert.equal(5, ledger_after(emu, 10 + 5 - demo.billed + 1).credentials.demo.billed)
  end)
end)

-- Rate limit ---------------------------------------------------------------------

describe("emulator rate limit", function()
  local emu

  setup(function()
    emu = emulator.start({ "--port", "0", "--appcode", "demo", "--appcode", "other", "--rate", "3" })
  end)

  teardown(function() stop_clean(emu) end)

  before_each(function() emu:reset() end)

  it("--rate N: more than N requests in one second from one credential get 403 Throttled, not billed", function()
    assert.equal(3, emu:settings().rate)
    local second = start_of_second()
    local demo = curl_sequence(emu, { emu.advanced, emu.advanced, emu.handwriting, emu.advanced, emu.handwriting,
                                      emu.advanced })
    local other = curl_sequence(emu, { emu.advanced, emu.advanced, emu.advanced }, "other")
    assert.equal(second, math.floor(socket.gettime()), "the burst did not fit in one second")
    assert.same({ 200, 200, 200, 403, 403, 403 }, statuses(demo))
    for i = 4, 6 do assert.equal("Throttled by APP Flow Control", demo[i].message) end
    -- Another credential is not affected.
    assert.same({ 200, 200, 200 }, statuses(other))
    local ledger = ledger_after(emu, 9)
    assert.same(bill(6, 3), account(emu, 9, "demo"))
    assert.same(bill(3, 3), account(emu, 9, "other"))
    assert.equal(9, ledger.total.requests)
    -- The next second allows N more.
    socket.sleep(second + 1.05 - socket.gettime())
    assert.equal(200, emu:call("advanced").status)
  end)

  it("throttled requests use no quota", function()
    emu:settings({ quota = 4 })
    local second = start_of_second()
    local demo = curl_sequence(emu, { emu.advanced, emu.advanced, emu.advanced, emu.advanced, emu.advanced })
    assert.equal(second, math.floor(socket.gettime()), "the burst did not fit in one second")
    assert.same({ 200, 200, 200, 403, 403 }, statuses(demo))
    assert.equal(1, ledger_after(emu, 5).credentials.demo.quota_remaining)
  end)

  it("POST /settings rate changes the limit; 0 means none", function()
    emu:settings({ rate = 0 })
    local list = curl_sequence(emu, { emu.advanced, emu.advanced, emu.advanced, emu.advanced, emu.advanced,
                                      emu.advanced, emu.advanced, emu.advanced })
    assert.same({ 200, 200, 200, 200, 200, 200, 200, 200 }, statuses(list))
    emu:settings({ rate = 1 })
    local second = start_of_second()
    list = curl_sequence(emu, { emu.advanced, emu.advanced })
    assert.equal(second, math.floor(socket.gettime()), "the burst did not fit in one second")
    assert.same({ 200, 403 }, statuses(list))
  end)
end)

-- Added latency and the backend timeout -----------------------------------------------

describe("emulator added latency and backend timeout", function()
  local emu

  setup(function()
    emu = emulator.start({ "--port", "0", "--appcode", "demo", "--latency-ms", "300",
                           "--backend-timeout-ms", "1000" })
  end)

  teardown(function() stop_clean(emu) end)

  before_each(function() emu:reset() end)

  it("--latency-ms delays every answer", function()
    local s = emu:settings()
    assert.same({ 300, 1000 }, { s.latency_ms, s.backend_timeout_ms })
    local res, took = timed(function() return emu:call("advanced") end)
    assert.equal(200, res.status)
    assert.truthy(took >= 0.3, "took " .. took .. " s")
    assert.same(bill(1, 1), account(emu, 1))
  end)

  it("POST /settings latency_ms changes it at run time, and POST /reset restores it", function()
    local _, status = emu:settings({ latency_ms = 700 })
    assert.equal(200, status)
    local res, took = timed(function() return emu:call("advanced") end)
    assert.equal(200, res.status)
    assert.truthy(took >= 0.7, "took " .. took .. " s")
    emu:settings({ latency_ms = 0 })
    res, took = timed(function() return emu:call("advanced") end)
    assert.equal(200, res.status)
    assert.truthy(took < 0.3, "took " .. took .. " s")
    emu:reset()
    assert.equal(300, emu:settings().latency_ms)
    res, took = timed(function() return emu:call("advanced") end)
    assert.equal(200, res.status)
    assert.truthy(took >= 0.3, "took " .. took .. " s")
  end)

  it("latency >= backend_timeout_ms: 504 Async Service after about backend_timeout_ms, not billed", function()
    emu:settings({ latency_ms = 5000, backend_timeout_ms = 600 })
    local res, took = timed(function() return emu:call("advanced") end)
    assert.equal(504, res.status)
    assert.equal("Async Service", res.headers["x-ca-error-message"])
    assert.equal("", res.body)
    assert.truthy(took >= 0.6 and took < 2.5, "took " .. took .. " s")
    -- Equal is enough.
    emu:settings({ latency_ms = 600 })
    res, took = timed(function() return emu:call("handwriting") end)
    assert.equal(504, res.status)
    assert.equal("Async Service", res.headers["x-ca-error-message"])
    assert.truthy(took >= 0.6 and took < 2.5, "took " .. took .. " s")
    -- Just under it answers.
    emu:settings({ latency_ms = 550 })
    res = emu:call("advanced")
    assert.equal(200, res.status)
    assert.same(bill(3, 1), account(emu, 3))
  end)

  it("a latency fault is backend latency too: with the added latency it meets the backend timeout", function()
    emu:settings({ backend_timeout_ms = 600 })
    emu:fault({ mode = "latency", ms = 400, times = 1 }) -- 300 + 400 >= 600
    local res, took = timed(function() return emu:call("advanced") end)
    assert.equal(504, res.status)
    assert.equal("Async Service", res.headers["x-ca-error-message"])
    assert.truthy(took >= 0.6 and took < 2.5, "took " .. took .. " s")
    emu:fault({ mode = "latency", ms = 200, times = 1 }) -- 300 + 200 < 600
    res, took = timed(function() return emu:call("advanced") end)
    assert.equal(200, res.status)
    assert.truthy(took >= 0.5, "took " .. took .. " s")
    assert.same(bill(2, 1), account(emu, 2))
  end)
end)

-- Request log, connection counter, reset -----------------------------------------------

describe("emulator request log, connection counter and reset", function()
  local emu, launch

  setup(function()
    emu = emulator.start({ "--port", "0", "--appcode", "demo", "--appcode", "other" })
    launch = emu:settings()
  end)

  teardown(function() stop_clean(emu) end)

  before_each(function() emu:reset() end)

  it("GET /requests records method, path, headers and body as sent, params, status, billing and credential",
    function()
      local body = "url=" .. urlencode(emu.image) .. "&show=1&extra=a%20b"
      local first = http.request({
        url = emu.advanced .. "?q=1&show=0", body = body,
        content_type = "application/x-www-form-urlencoded; charset=UTF-8",
        headers = { "Authorization: APPCODE demo", "X-Mixed-Case: Some Value" },
      })
      assert.equal(200, first.status)
      local second = emu:call("handwriting", { appcode = "other", get = true })
      assert.equal(200, second.status)
      local third = emu:call("advanced", { appcode = "nobody" })
      assert.equal(400, third.status)
      emu:fault({ mode = "vendor_error", times = 1 })
      assert.equal(666, emu:call("advanced").status)

      local log = emu:requests()
      assert.equal(4, #log)
      assert.same({ 1, 2, 3, 4 }, { log[1].seq, log[2].seq, log[3].seq, log[4].seq })

      local e = log[1]
      assert.equal("POST", e.method)
      assert.equal("/ocr/advanced", e.path)
      assert.equal("/ocr/advanced?q=1&show=0", e.uri)
      assert.equal("advanced", e.api)
      assert.equal("Some Value", e.headers["X-Mixed-Case"])  -- the name as sent
      assert.equal("APPCODE demo", e.headers["Authorization"])
      assert.equal("application/x-www-form-urlencoded; charset=UTF-8", e.headers["Content-Type"])
      assert.equal(body, e.body)
      assert.equal(#body, e.body_bytes)
      -- A key in both keeps the form body's value, the one Aliyun's signers sign (issue 14, finding 19).
      assert.same({ url = emu.image, show = "1", extra = "a b", q = "1" }, e.params)
      assert.same({ 200, true, "demo", "appcode" }, { e.status, e.billed, e.credential, e.auth })
      assert.equal(first.headers["x-ca-request-id"], e.request_id)
      assert.is_nil(e.fault)

      e = log[2]
      assert.same({ "GET", "/ocr/handwriting", "handwriting", "" }, { e.method, e.path, e.api, e.body })
      assert.same({ url = emu.image }, e.params)
      assert.same({ 200, true, "other" }, { e.status, e.billed, e.credential })
      assert.equal(second.headers["x-ca-request-id"], e.request_id)

      e = log[3]
      assert.same({ 400, false }, { e.status, e.billed })
      assert.is_nil(e.credential)
      assert.equal("APPCODE nobody", e.headers["Authorization"])

      e = log[4]
      assert.same({ 666, false, "demo", "vendor_error" }, { e.status, e.billed, e.credential, e.fault })
    end)

  it("GET /requests?since=N gives the entries after seq N only", function()
    for _ = 1, 4 do assert.equal(200, emu:call("advanced").status) end
    local later = emu:requests(2)
    assert.equal(2, #later)
    assert.same({ 3, 4 }, { later[1].seq, later[2].seq })
    assert.same({}, emu:requests(4))
    assert.same({}, emu:requests(100))
    assert.equal(4, #emu:requests(0))
  end)

  it("GET /connections: several requests in one curl run share one connection", function()
    assert.same({ accepted = 0, http = 0, https = 0 }, emu:connections())
    local list = curl_sequence(emu, { emu.advanced, emu.handwriting, emu.advanced })
    assert.same({ 200, 200, 200 }, statuses(list))
    assert.same({ 1, 0, 0 }, { list[1].connects, list[2].connects, list[3].connects })
    assert.same({ accepted = 1, http = 1, https = 0 }, emu:connections())
    local log = emu:requests()
    assert.equal(log[1].connection, log[2].connection)
    assert.equal(log[1].connection, log[3].connection)
    assert.same({ 1, 2, 3 }, { log[1].connection_requests, log[2].connection_requests, log[3].connection_requests })
  end)

  it("GET /connections: separate curl runs make one each; the emulator's own image fetches do not count", function()
    for i = 1, 3 do
      local res = emu:call(i == 2 and "handwriting" or "advanced")
      assert.equal(200, res.status)
      assert.equal(1, res.connects)
    end
    -- The emulator did fetch the image: a missing one is a vendor error.
    local res = emu:call("advanced", { form = { { "url", emu.images .. "missing.png" } } })
    assert.equal(666, res.status)
    assert.matches("图片下载失败", http.json(res).msg, 1, true)
    assert.same({ accepted = 4, http = 4, https = 0 }, emu:connections())
    for _, e in ipairs(emu:requests()) do assert.matches("^/ocr/", e.path) end
  end)

  it("GET /connections counts a connection at its first API request, not at its first request", function()
    -- A GET of the sample image, then (--next, same connection) an API call.
    local w = " -w " .. q("%{http_code} %{num_connects}\\n")
    local out = sh("curl -s --http1.1 -m 10 -o /dev/null" .. w .. " " .. q(emu.image) ..
      " --next -o /dev/null" .. w .. " -H " .. q("Authorization: APPCODE demo") ..
      " --data-urlencode " .. q("url=" .. emu.image) .. " " .. q(emu.advanced))
    assert.equal("200 1\n200 0\n", out)
    assert.same({ accepted = 1, http = 1, https = 0 }, emu:connections())
    assert.equal(1, #emu:requests())
  end)

  it("an image URL that points back at the API listener: the emulator's own download is not a client's", function()
    local res = emu:call("advanced", { form = { { "url", emu.advanced } } })
    assert.equal(666, res.status) -- the download got a gateway error, not an image
    assert.same({ accepted = 1, http = 1, https = 0 }, emu:connections())
    local log = emu:requests()
    assert.equal(1, #log)
    assert.equal("POST", log[1].method)
    assert.equal(emu.advanced, log[1].params.url)
  end)

  it("POST /reset forgets the ledger, log, counters and faults, and restores the launch settings", function()
    assert.equal(200, emu:call("advanced").status)
    assert.equal(200, emu:call("handwriting", { appcode = "other" }).status)
    emu:fault({ mode = "internal_error", times = 5 })
    assert.equal(500, emu:call("advanced").status)
    local _, status = emu:settings({ latency_ms = 20, backend_timeout_ms = 5000, rate = 50, quota = 9,
                                     quotas = { demo = 2 }, errors = "vpc", fetch = false })
    assert.equal(200, status)
    assert.are_not.same(launch, emu:settings())
    assert.equal(3, ledger_after(emu, 3).total.requests)

    local out
    out, status = emu:reset()
    assert.equal(200, status)
    assert.same({ ok = true }, out)

    local ledger = emu:ledger()
    assert.same({ requests = 0, billed = 0, not_billed = 0 }, ledger.total)
    for _, cred in ipairs({ "demo", "other" }) do
      assert.same({ requests = 0, billed = 0, not_billed = 0, quota = http.null, quota_remaining = http.null },
        ledger.credentials[cred])
    end
    assert.same({}, emu:requests())
    assert.same({ accepted = 0, http = 0, https = 0 }, emu:connections())
    assert.same({}, faults_of(emu))
    assert.same(launch, emu:settings())
    -- And it starts over: no fault, a new log from seq 1, new fault ids from 1.
    assert.equal(200, emu:call("advanced").status)
    assert.equal(1, emu:requests()[1].seq)
    assert.same({ ids = { 1 } }, emu:fault({ mode = "ok0" }))
  end)
end)

describe("emulator request log size", function()
  it("--log-max N keeps the last N requests; 0 keeps none, and the ledger still counts", function()
    local emu
    finally(function() if emu then emu:stop() end end) -- a no-op after stop_clean
    emu = emulator.start({ "--port", "0", "--appcode", "demo", "--log-max", "3" })
    for _ = 1, 5 do assert.equal(200, emu:call("advanced").status) end
    local log = emu:requests()
    assert.same({ 3, 4, 5 }, { log[1].seq, log[2].seq, log[3].seq })
    assert.equal(3, #log)
    assert.equal(5, emu:ledger().total.billed)
    stop_clean(emu)

    emu = emulator.start({ "--port", "0", "--appcode", "demo", "--log-max", "0" })
    for _ = 1, 2 do assert.equal(200, emu:call("handwriting").status) end
    assert.same({}, emu:requests())
    assert.equal(2, ledger_after(emu, 2).total.billed)
    assert.equal(2, emu:connections().accepted)
    stop_clean(emu)
  end)
end)
