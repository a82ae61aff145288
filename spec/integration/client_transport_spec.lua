-- The client's transport, against the emulator: kept-alive connections,
-- TLS, timeouts, size and depth limits, redirects, proxies, and the lifetime
-- of clients, engines and credentials (close, garbage collection, <close>).
-- Everything talks to loopback only.
local emulator = require("helpers.emulator")
local aliocr = require("aliocr")
local core = require("aliocr.core")
local socket = require("socket")
local util = require("helpers.util")
local slow = util.slow
local closed_port = util.closed_port

local now = core.monotonic

--- Seconds `f` took, and what it returned (two values).
local function timed(f)
  local t = now()
  local a, b = f()
  return now() - t, a, b
end

local function stopped_clean(emu)
  assert.same({ processes = {}, files = {} }, emu:stop())
end

--- The pid of this Lua process (io.open does not fork, so /proc/self is us).
local function own_pid()
  local f = assert(io.open("/proc/self/stat", "r"))
  local pid = f:read("*n")
  f:close()
  return pid
end

--- Open file descriptors of this process.
local function open_fds()
  local p = assert(io.popen("ls -A /proc/" .. own_pid() .. "/fd"))
  local n = 0
  for _ in p:lines() do n = n + 1 end
  p:close()
  return n
end

--- A field of /proc/self/status in kB (VmRSS, VmHWM, ...).
local function proc_status_kb(name)
  local f = assert(io.open("/proc/self/status", "r"))
  local text = f:read("*a")
  f:close()
  return tonumber(text:match(name .. ":%s*(%d+)"))
end


local function set_of(list)
  local set = {}
  for _, v in ipairs(list) do set[v] = true end
  return set
end

describe("client connections", function()
  local emu

  setup(function()
    emu = emulator.start({ "--port", "0", "--appcode", "demo", "--no-fetch" })
  end)

  teardown(function() stopped_clean(emu) end)

  before_each(function() emu:reset() end)

  it("makes 1,000 sequential calls on one TCP connection", function()
    local client = aliocr.new({ appcode = "demo", endpoint = emu.endpoint })
    finally(function() client:close() end)
    local ok, first_error = 0, nil
    for _ = 1, 1000 do
      local res, err = client:recognize(emu.image)
      if res and res.ok == 1 and res.billed == true then
        ok = ok + 1
      elseif not first_error then
        first_error = tostring(err)
      end
    end
    assert.is_nil(first_error)
    assert.equal(1000, ok)
    local c = emu:connections()
    assert.equal(1, c.accepted)
    assert.equal(1, c.http)
    assert.equal(1000, emu:ledger().credentials.demo.billed)
    local s = client:stats()
    assert.equal(1000, s.requests)
    assert.equal(1000, s.attempts)
    assert.equal(1000, s.billed)
    -- The request log agrees: one connection serial, its 1000th request.
    local log = emu:requests()
    assert.equal(1000, #log)
    local serials, n = {}, 0
    for _, entry in ipairs(log) do
      if not serials[entry.connection] then n = n + 1 end
      serials[entry.connection] = true
    end
    assert.equal(1, n)
    assert.equal(1000, log[1000].connection_requests)
  end)

  it("shares the connection between both interfaces on one host", function()
    local client = aliocr.new({ appcode = "demo", endpoint = emu.endpoint })
    finally(function() client:close() end)
    assert.truthy(client:recognize(emu.image))
    assert.truthy(client:handwriting(emu.image))
    assert.truthy(client:recognize(emu.image, { method = "GET" }))
    assert.equal(1, emu:connections().accepted)
  end)

  it("opens a new connection for a new client, and each client keeps its own", function()
    local a = aliocr.new({ appcode = "demo", endpoint = emu.endpoint })
    local b = aliocr.new({ appcode = "demo", endpoint = emu.endpoint })
    finally(function() a:close(); b:close() end)
    assert.truthy(a:recognize(emu.image))
    assert.equal(1, emu:connections().accepted)
    assert.truthy(b:recognize(emu.image))
    assert.equal(2, emu:connections().accepted)
    assert.truthy(a:recognize(emu.image))
    assert.truthy(b:recognize(emu.image))
    assert.equal(2, emu:connections().accepted)
    local log = emu:requests()
    assert.equal(log[1].connection, log[3].connection)
    assert.equal(log[2].connection, log[4].connection)
    assert.are_not.equal(log[1].connection, log[2].connection)
  end)

  it("reuses the connection after an idle pause", function()
    local client = aliocr.new({ appcode = "demo", endpoint = emu.endpoint })
    finally(function() client:close() end)
    assert.truthy(client:recognize(emu.image))
    socket.sleep(2)
    local res, err = client:recognize(emu.image)
    assert.is_nil(err)
    assert.equal(1, res.attempts)
    assert.equal(1, emu:connections().accepted)
    local log = emu:requests()
    assert.equal(2, #log)
    assert.equal(log[1].connection, log[2].connection)
    assert.equal(2, log[2].connection_requests)
  end)

  it("does not use a connection idle longer than idle_timeout: a new one, and no error", function()
    local client = aliocr.new({ appcode = "demo", endpoint = emu.endpoint, idle_timeout = 1 })
    finally(function() client:close() end)
    assert.truthy(client:recognize(emu.image))
    -- Idle a little over idle_timeout (libcurl counts whole seconds).
    socket.sleep(1.2)
    local res, err = client:recognize(emu.image)
    assert.is_nil(err)
    assert.equal(1, res.attempts)
    assert.equal(2, emu:connections().accepted)
    local log = emu:requests()
    assert.equal(2, #log)
    assert.are_not.equal(log[1].connection, log[2].connection)
    assert.equal(2, client:stats().attempts)
  end)

  it("idle_timeout must be a whole number of seconds, at least 1", function()
    for _, bad in ipairs({ 0, 0.5, -1, "10" }) do
      local ok, e = pcall(aliocr.new, { appcode = "demo", endpoint = emu.endpoint, idle_timeout = bad })
      assert.is_false(ok)
      assert.matches("idle_timeout", tostring(e))
    end
  end)

  it("keeps the connection across non-2xx answers with a body", function()
    local client = aliocr.new({ appcode = "demo", endpoint = emu.endpoint, retries = 0 })
    finally(function() client:close() end)
    emu:fault({ mode = "vendor_error", times = 1 })
    local _, err = client:recognize(emu.image)
    assert.equal("api", err.kind)
    assert.truthy(client:recognize(emu.image))
    assert.equal(1, emu:connections().accepted)
  end)
end)

describe("client over TLS", function()
  local emu, url

  setup(function()
    emu = emulator.start({ "--port", "0", "--https-port", "0", "--appcode", "demo", "--no-fetch" })
    url = emu.https .. "/ocr/advanced"
  end)

  teardown(function() stopped_clean(emu) end)

  before_each(function() emu:reset() end)

  it("succeeds with verification on when ca_file is the emulator's CA, on one connection", function()
    local client = aliocr.new({ appcode = "demo", urls = { advanced = url }, ca_file = emu.ca_file })
    finally(function() client:close() end)
    for _ = 1, 3 do
      local res, err = client:recognize(emu.image)
      assert.is_nil(err)
      assert.equal(1, res.ok)
      assert.is_true(res.billed)
    end
    local c = emu:connections()
    assert.equal(1, c.https)
    assert.equal(1, c.accepted)
    assert.equal("https", emu:requests()[1].scheme)
  end)

  it("refuses the server with the system CAs: transport error, not billed, not retried", function()
    -- (Reading the system's CA bundle takes seconds inside valgrind: a
    -- connect timeout there would be retried.)
    local client = aliocr.new({ appcode = "demo", urls = { advanced = url }, retry_delay = 0,
      connect_timeout = slow(3), timeout = slow(10) })
    finally(function() client:close() end)
    local res, err = client:recognize(emu.image)
    assert.is_nil(res)
    assert.equal("transport", err.kind)
    assert.equal("PEER_FAILED_VERIFICATION", err.code)
    assert.is_false(err.billed)
    assert.is_false(err.retryable)
    assert.is_nil(err.status)
    assert.equal(1, err.attempts)
    assert.same({}, emu:requests())
    assert.equal(0, emu:ledger().total.requests)
    assert.equal(0, emu:connections().accepted)
  end)

  it("succeeds with tls_verify = false (the explicit opt-out)", function()
    local client = aliocr.new({ appcode = "demo", urls = { advanced = url }, tls_verify = false })
    finally(function() client:close() end)
    local res, err = client:recognize(emu.image)
    assert.is_nil(err)
    assert.equal(1, res.ok)
    assert.equal(1, #emu:requests())
  end)

  it("fails, not billed, when ca_file does not exist", function()
    local client = aliocr.new({
      appcode = "demo", urls = { advanced = url }, ca_file = emu.ca_file .. ".missing", retry_delay = 0,
    })
    finally(function() client:close() end)
    local res, err = client:recognize(emu.image)
    assert.is_nil(res)
    assert.equal("transport", err.kind)
    assert.equal("SSL_CACERT_BADFILE", err.code)
    assert.is_false(err.billed)
    assert.is_false(err.retryable)
    assert.equal(1, err.attempts)
    assert.same({}, emu:requests())
  end)
end)

describe("client timeouts", function()
  local emu

  setup(function()
    emu = emulator.start({ "--port", "0", "--appcode", "demo", "--no-fetch" })
  end)

  teardown(function() stopped_clean(emu) end)

  before_each(function() emu:reset() end)

  it("bounds a call whose answer stalls by timeout: kind timeout, billing unknown", function()
    local client = aliocr.new({ appcode = "demo", endpoint = emu.endpoint, timeout = 0.5 })
    finally(function() client:close() end)
    emu:fault({ mode = "stall_headers", ms = 2500, ["then"] = "close" })
    local t, res, err = timed(function() return client:recognize(emu.image) end)
    assert.is_nil(res)
    assert.equal("timeout", err.kind)
    assert.equal("OPERATION_TIMEDOUT", err.code)
    assert.is_nil(err.billed)
    assert.is_nil(err.status)
    assert.is_false(err.retryable)
    assert.equal(1, err.attempts) -- unknown billing: not retried (retry_unknown is off)
    assert.is_true(t >= 0.45, "returned after " .. t .. " s")
    assert.is_true(t < 1.2, "returned after " .. t .. " s")
  end)

  it("lets a call's opts.timeout override the client's, both ways", function()
    local client = aliocr.new({ appcode = "demo", endpoint = emu.endpoint, timeout = 5 })
    local short = aliocr.new({ appcode = "demo", endpoint = emu.endpoint, timeout = 0.3, retries = 0 })
    finally(function() client:close(); short:close() end)
    emu:fault({ mode = "stall_headers", ms = 2500, ["then"] = "close", times = 1 })
    local t, _, err = timed(function() return client:recognize(emu.image, { timeout = 0.3 }) end)
    assert.equal("timeout", err.kind)
    assert.is_true(t >= 0.25 and t < 1, "returned after " .. t .. " s")

    emu:fault({ mode = "latency", ms = 700 })
    local res
    t, res, err = timed(function() return short:recognize(emu.image, { timeout = 3 }) end)
    assert.is_nil(err)
    assert.equal(1, res.ok)
    assert.is_true(t >= 0.65, "returned after " .. t .. " s")
    _, err = short:recognize(emu.image) -- the client's own 0.3 s still applies without the option
    assert.equal("timeout", err.kind)
  end)

  it("treats a timeout under a millisecond as a limit, not as libcurl's 0 (no limit)", function()
    local client = aliocr.new({ appcode = "demo", endpoint = emu.endpoint, timeout = 0.0004, retries = 0 })
    finally(function() client:close() end)
    emu:fault({ mode = "stall_headers", ms = 1500, ["then"] = "close" })
    local t, _, err = timed(function() return client:recognize(emu.image) end)
    assert.equal("timeout", err.kind)
    assert.is_true(t < 0.5, "returned after " .. t .. " s")
  end)

  it("is billed when the time runs out after a 2xx status line arrived", function()
    local client = aliocr.new({ appcode = "demo", endpoint = emu.endpoint, timeout = 0.5 })
    finally(function() client:close() end)
    emu:fault({ mode = "stall_body", ms = 2500 })
    local t, res, err = timed(function() return client:recognize(emu.image) end)
    assert.is_nil(res)
    assert.equal("timeout", err.kind)
    assert.equal(200, err.status)
    assert.is_true(err.billed)
    assert.is_false(err.retryable)
    assert.equal(1, err.attempts)
    assert.is_true(t < 1.2, "returned after " .. t .. " s")
  end)

  it("passes connect_timeout: a connect that is never accepted gives up after it", function()
    -- A listener with a backlog of 0: Linux completes one connection into
    -- its accept queue, then drops the SYNs of the next ones, so a connect
    -- to it hangs until the client gives up.
    local server = assert(socket.tcp())
    assert(server:bind("127.0.0.1", 0))
    assert(server:listen(0))
    local _, port = server:getsockname()
    local fillers = {}
    finally(function()
      for _, f in ipairs(fillers) do f:close() end
      server:close()
    end)
    local first = socket.tcp()
    fillers[1] = first
    first:settimeout(1)
    assert(first:connect("127.0.0.1", port))
    local probe = socket.tcp()
    fillers[2] = probe
    probe:settimeout(0.2)
    local ok, why = probe:connect("127.0.0.1", port)
    assert(not ok and why == "timeout",
      "precondition: the backlog is not exhausted on this kernel (" .. tostring(why) .. ")")

    local client = aliocr.new({
      appcode = "demo", endpoint = "http://127.0.0.1:" .. port, timeout = 5, connect_timeout = 0.5, retries = 0,
    })
    local t, res, err = timed(function() return client:recognize("http://127.0.0.1/a.png") end)
    client:close()
    assert.is_nil(res)
    assert.equal("timeout", err.kind)
    assert.equal("OPERATION_TIMEDOUT", err.code)
    assert.is_false(err.billed) -- nothing was sent
    assert.is_true(t >= 0.45 and t < 1.5, "returned after " .. t .. " s")
  end)

  it("returns at once, not billed, when the connect is refused", function()
    local client = aliocr.new({
      appcode = "demo", endpoint = "http://127.0.0.1:" .. closed_port(), connect_timeout = 3, retries = 0,
    })
    finally(function() client:close() end)
    local t, res, err = timed(function() return client:recognize("http://127.0.0.1/a.png") end)
    assert.is_nil(res)
    assert.equal("transport", err.kind)
    assert.equal("COULDNT_CONNECT", err.code)
    assert.is_false(err.billed)
    assert.is_true(err.retryable)
    assert.is_true(t < 0.5, "returned after " .. t .. " s")
  end)

  it("serves the next call normally after a timed-out one", function()
    local client = aliocr.new({ appcode = "demo", endpoint = emu.endpoint, timeout = 0.4 })
    finally(function() client:close() end)
    emu:fault({ mode = "stall_headers", ms = 2000, ["then"] = "close", times = 1 })
    local _, err = client:recognize(emu.image)
    assert.equal("timeout", err.kind)
    local res, err2 = client:recognize(emu.image)
    assert.is_nil(err2)
    assert.equal(1, res.ok)
  end)
end)

describe("client limits and protocol", function()
  local emu
  local MiB = 1024 * 1024

  setup(function()
    emu = emulator.start({ "--port", "0", "--appcode", "demo", "--no-fetch" })
  end)

  teardown(function() stopped_clean(emu) end)

  before_each(function() emu:reset() end)

  it("abandons a chunked answer one byte over max_response_bytes: protocol, billed", function()
    local client = aliocr.new({ appcode = "demo", endpoint = emu.endpoint, max_response_bytes = MiB })
    finally(function() client:close() end)
    emu:fault({ mode = "huge", bytes = MiB + 1, chunked = true, times = 1 })
    local res, err = client:recognize(emu.image)
    assert.is_nil(res)
    assert.equal("protocol", err.kind)
    assert.equal("RESPONSE_TOO_LARGE", err.code)
    assert.equal(200, err.status)
    assert.is_true(err.billed)
    assert.is_false(err.retryable)
    assert.equal(1, err.attempts)
    assert.truthy(err.request_id)
    -- The client goes on working after it.
    local ok_res, err2 = client:recognize(emu.image)
    assert.is_nil(err2)
    assert.equal(1, ok_res.ok)
  end)

  it("abandons an answer whose Content-Length is one byte over the limit", function()
    local client = aliocr.new({ appcode = "demo", endpoint = emu.endpoint, max_response_bytes = MiB })
    finally(function() client:close() end)
    emu:fault({ mode = "huge", bytes = MiB + 1, times = 1 })
    local _, err = client:recognize(emu.image)
    assert.equal("protocol", err.kind)
    assert.equal("RESPONSE_TOO_LARGE", err.code)
    assert.is_true(err.billed)
    assert.equal(200, err.status)
    assert.truthy(err.request_id) -- the gateway sent one, whatever the header order
  end)

  it("accepts an answer of exactly max_response_bytes, chunked or not", function()
    local client = aliocr.new({ appcode = "demo", endpoint = emu.endpoint, max_response_bytes = MiB })
    finally(function() client:close() end)
    for _, chunked in ipairs({ true, false }) do
      emu:fault({ mode = "huge", bytes = MiB, chunked = chunked, times = 1 })
      local res, err = client:recognize(emu.image)
      assert.is_nil(err)
      assert.equal(1, res.ok)
    end
  end)

  it("does not buffer a 200 MB answer: it returns quickly and memory stays small", function()
    local client = aliocr.new({ appcode = "demo", endpoint = emu.endpoint, max_response_bytes = MiB })
    finally(function() client:close() end)
    collectgarbage("collect")
    local lua_kb, peak_kb = collectgarbage("count"), proc_status_kb("VmHWM")
    for _, chunked in ipairs({ true, false }) do
      emu:fault({ mode = "huge", bytes = 200 * MiB, chunked = chunked, times = 1 })
      local t, res, err = timed(function() return client:recognize(emu.image) end)
      assert.is_nil(res)
      assert.equal("RESPONSE_TOO_LARGE", err.code)
      assert.is_true(err.billed)
      assert.is_true(t < slow(5), "took " .. t .. " s")
    end
    assert.is_true(collectgarbage("count") - lua_kb < 8 * 1024, "the Lua heap grew")
    local grown = proc_status_kb("VmHWM") - peak_kb
    assert.is_true(grown < 64 * 1024, "peak RSS grew by " .. grown .. " kB")
  end)

  it("does not bill an oversized non-2xx answer", function()
    local client = aliocr.new({
      appcode = "demo", endpoint = emu.endpoint, max_response_bytes = 1000, retries = 0,
    })
    finally(function() client:close() end)
    emu:fault({ mode = "respond", status = 502, body = string.rep("x", 5000), content_type = "text/html" })
    local res, err = client:recognize(emu.image)
    assert.is_nil(res)
    assert.equal(502, err.status)
    assert.is_false(err.billed)
    assert.equal("RESPONSE_TOO_LARGE", err.code)
    -- Classified by its status, as any 502 without gateway headers.
    assert.equal("http", err.kind)
    assert.is_true(err.retryable)
  end)

  it("refuses a 2xx body nested deeper than json_max_depth, and decodes one at the limit", function()
    local client = aliocr.new({ appcode = "demo", endpoint = emu.endpoint, json_max_depth = 4 })
    finally(function() client:close() end)
    -- The object is level 1; three arrays in it reach level 4.
    emu:fault({ mode = "respond", status = 200, times = 1,
                body = '{"ok":1,"msg":"m","data":"at the limit","x":[[[1]]]}' })
    local res, err = client:recognize(emu.image)
    assert.is_nil(err)
    assert.equal("at the limit", res.text)
    emu:fault({ mode = "respond", status = 200, times = 1,
                body = '{"ok":1,"msg":"m","data":"too deep","x":[[[[1]]]]}' })
    res, err = client:recognize(emu.image)
    assert.is_nil(res)
    assert.equal("protocol", err.kind)
    assert.equal(200, err.status)
    assert.is_true(err.billed)
    assert.is_false(err.retryable)
  end)

  it("never follows a redirect, even to the emulator's own API URL", function()
    local client = aliocr.new({ appcode = "demo", endpoint = emu.endpoint, retry_delay = 0 })
    finally(function() client:close() end)
    for _, status in ipairs({ 301, 302, 303, 307, 308 }) do
      emu:reset()
      emu:fault({ mode = "respond", status = status, body = "", headers = { Location = emu.advanced } })
      local res, err = client:recognize(emu.image)
      assert.is_nil(res)
      assert.equal("http", err.kind)
      assert.equal(status, err.status)
      assert.is_false(err.billed)
      assert.is_false(err.retryable)
      assert.equal(1, err.attempts)
      assert.equal(1, #emu:requests())
    end
  end)

  it("takes http and https only: image URLs are checked, the core refuses other schemes", function()
    local client = aliocr.new({ appcode = "demo", endpoint = emu.endpoint })
    finally(function() client:close() end)
    local bad_images = { "ftp://127.0.0.1/a.png", "file:///etc/passwd", "gopher://127.0.0.1/a", "127.0.0.1/a.png" }
    for _, bad in ipairs(bad_images) do
      assert.has_error(function() client:recognize(bad) end)
      assert.has_error(function() client:handwriting(bad) end)
    end
    assert.has_error(function() aliocr.new({ appcode = "demo", endpoint = "ftp://127.0.0.1" }) end)
    assert.has_error(function() aliocr.new({ appcode = "demo", urls = { advanced = "file:///x" } }) end)
    for _, bad in ipairs({ "ftp://x", "file:///etc/passwd", "dict://127.0.0.1/" }) do
      local ok, msg = pcall(core.config, { appcode = "demo", urls = { advanced = bad }, connect_timeout_ms = 1000,
        max_bytes = 1000 })
      assert.is_false(ok)
      assert.matches("http", tostring(msg))
    end
    assert.same({}, emu:requests())
  end)
end)

describe("client through a proxy", function()
  local emu

  setup(function()
    emu = emulator.start({ "--port", "0", "--appcode", "demo", "--no-fetch" })
  end)

  teardown(function() stopped_clean(emu) end)

  before_each(function() emu:reset() end)

  it("sends the request to the proxy (nginx serves absolute-form requests as its own)", function()
    local client = aliocr.new({
      appcode = "demo", proxy = emu.endpoint, urls = { advanced = "http://ocr.invalid/ocr/advanced" },
    })
    finally(function() client:close() end)
    local res, err = client:recognize(emu.image)
    assert.is_nil(err)
    assert.equal(1, res.ok)
    local log = emu:requests()
    assert.equal(1, #log)
    assert.equal("/ocr/advanced", log[1].path)
    assert.equal("ocr.invalid", log[1].headers.Host or log[1].headers.host)
    assert.equal(1, emu:ledger().credentials.demo.billed)
  end)

  it("fails at once, not billed, when the proxy's port is closed", function()
    local client = aliocr.new({
      appcode = "demo", proxy = "http://127.0.0.1:" .. closed_port(), retries = 0,
      urls = { advanced = "http://ocr.invalid/ocr/advanced" },
    })
    finally(function() client:close() end)
    local t, res, err = timed(function() return client:recognize(emu.image) end)
    assert.is_nil(res)
    assert.equal("transport", err.kind)
    assert.is_false(err.billed)
    assert.is_nil(err.status)
    assert.is_true(t < slow(1), "took " .. t .. " s")
    assert.same({}, emu:requests())
  end)
end)

describe("client and engine lifetime", function()
  local emu

  setup(function()
    emu = emulator.start({ "--port", "0", "--appcode", "demo", "--appcode", "S3cretCode", "--no-fetch" })
  end)

  teardown(function() stopped_clean(emu) end)

  before_each(function() emu:reset() end)

  it("closes twice, raises 'closed' on any call after (stats still answer), says so in tostring", function()
    local client = aliocr.new({ appcode = "S3cretCode", endpoint = emu.endpoint })
    assert.truthy(client:recognize(emu.image))
    local open = tostring(client)
    assert.matches("^aliocr%.Client", open)
    assert.is_nil(open:find("S3cretCode", 1, true))
    assert.is_true(client:close())
    assert.is_true(client:close())
    assert.matches("closed", tostring(client))
    assert.is_nil(tostring(client):find("S3cretCode", 1, true))
    assert.error_matches(function() client:recognize(emu.image) end, "aliocr: attempt to use a closed client")
    assert.error_matches(function() client:handwriting(emu.image) end, "closed")
    -- stats() stays readable (issue 14, finding 12).
    assert.equal(1, client:stats().billed)
    assert.is_true(client:close())
  end)

  it("frees its sockets on close", function()
    collectgarbage("collect")
    local before = open_fds()
    local clients = {}
    for i = 1, 20 do
      clients[i] = aliocr.new({ appcode = "demo", endpoint = emu.endpoint })
      assert.truthy(clients[i]:recognize(emu.image))
    end
    assert.is_true(open_fds() >= before + 20)
    for _, c in ipairs(clients) do c:close() end
    assert.is_true(open_fds() <= before + 2, "open fds: " .. open_fds() .. ", before: " .. before)
  end)

  it("frees clients that are garbage collected without close", function()
    collectgarbage("collect")
    collectgarbage("collect")
    local before = open_fds()
    collectgarbage("stop") -- so that all 200 are alive at once before the collection
    local ok, err = pcall(function()
      for _ = 1, 200 do
        local client = aliocr.new({ appcode = "demo", endpoint = emu.endpoint })
        local res, e = client:recognize(emu.image)
        assert(res, tostring(e))
      end
    end)
    local during = open_fds()
    collectgarbage("restart")
    assert(ok, err)
    assert.is_true(during >= before + 200, "open fds with 200 live clients: " .. during)
    assert.equal(200, emu:connections().accepted)
    collectgarbage("collect")
    collectgarbage("collect")
    local after = open_fds()
    assert.is_true(after <= before + 2, "open fds: " .. after .. ", before: " .. before)
    -- And the emulator still answers a new client.
    local client = aliocr.new({ appcode = "demo", endpoint = emu.endpoint })
    assert.truthy(client:recognize(emu.image))
    client:close()
  end)

  it("closes a to-be-closed client at the end of its scope, on error too (Lua 5.4)", function()
    if _VERSION ~= "Lua 5.4" then return pending("to-be-closed variables are Lua 5.4 syntax") end
    -- Compiled here, so that the file still parses on 5.1, 5.3 and LuaJIT.
    local run = assert(load([[
      local aliocr, emu = ...
      local kept
      do
        local client <close> = aliocr.new({ appcode = "demo", endpoint = emu.endpoint })
        kept = client
        assert(client:recognize(emu.image))
        assert(not tostring(client):find("closed", 1, true))
      end
      local kept2
      local ok = pcall(function()
        local client <close> = aliocr.new({ appcode = "demo", endpoint = emu.endpoint })
        kept2 = client
        error("boom")
      end)
      assert(not ok)
      return kept, kept2
    ]]))
    local kept, kept2 = run(aliocr, emu)
    assert.matches("closed", tostring(kept))
    assert.error_matches(function() kept:recognize(emu.image) end, "closed")
    assert.matches("closed", tostring(kept2))
  end)

  describe("the C engine", function()
    local cred

    --- The arguments of a call of interface `api` (advanced by default).
    local function request(api)
      return api or "advanced", emu.image, nil, "POST", 10000
    end

    local function new_engine(config)
      return core.engine(config or cred, { decode = require("cjson").new().decode, max_connections = 16,
        idle_timeout = 10 })
    end

    --- Runs the engine until nothing is pending (at most `limit` seconds);
    -- returns the responses.
    local function collect(engine, limit)
      local got, deadline = {}, now() + (limit or 5)
      repeat
        local list, left = engine:run(1)
        for _, r in ipairs(list) do got[#got + 1] = r end
      until left == 0 or now() > deadline
      return got
    end

    before_each(function()
      cred = core.config({ appcode = "demo", urls = { advanced = emu.advanced, handwriting = emu.handwriting },
        connect_timeout_ms = 3000, max_bytes = 1e6 })
      emu:settings({ latency_ms = 500 })
    end)

    after_each(function() cred:close() end)

    it("runs two requests at once; run(0) never blocks; run collects both with their ids", function()
      local engine = new_engine()
      finally(function() engine:close() end)
      local a = engine:add(request())
      local b = engine:add(request())
      assert.is_true(util.number_type(a) == "integer" and util.number_type(b) == "integer")
      assert.are_not.equal(a, b)
      assert.equal(2, engine:pending())
      local started = now()
      for _ = 1, 3 do
        local t, list, left = timed(function() return engine:run(0) end)
        assert.is_true(t < slow(0.05), "run(0) took " .. t .. " s")
        assert.same({}, list)
        assert.equal(2, left)
      end
      local got = {}
      repeat
        local list = engine:run(5)
        for _, r in ipairs(list) do got[#got + 1] = r end
      until #got == 2 or now() - started > 5
      local total = now() - started
      assert.equal(2, #got)
      assert.same({ [a] = true, [b] = true }, set_of({ got[1].id, got[2].id }))
      for _, r in ipairs(got) do
        assert.equal(200, r.status)
        assert.is_true(r.sent)
        assert.equal(1, r.json.ok)
        assert.truthy(r.headers["x-ca-request-id"])
        assert.is_nil(r.error)
      end
      -- Both took 500 ms, side by side rather than one after the other.
      assert.is_true(total >= 0.45 and total < slow(0.95), "both took " .. total .. " s")
      assert.equal(0, engine:pending())
      local list, left = engine:run(0)
      assert.same({}, list)
      assert.equal(0, left)
    end)

    it("cancels a request under way: true once, and it never comes out of run", function()
      local engine = new_engine()
      finally(function() engine:close() end)
      local c = engine:add(request())
      local d = engine:add(request())
      engine:run(0)
      assert.is_true(engine:cancel(c))
      assert.is_false(engine:cancel(c))
      assert.is_false(engine:cancel(9999))
      assert.equal(1, engine:pending())
      local got = collect(engine)
      assert.equal(1, #got)
      assert.equal(d, got[1].id)
      assert.equal(200, got[1].status)
      assert.same({}, (engine:run(0.2)))
      assert.equal(0, engine:pending())
    end)

    it("performs one request while others wait for run", function()
      local engine = new_engine()
      finally(function() engine:close() end)
      local g = engine:add(request())
      local r = engine:perform(request())
      assert.are_not.equal(g, r.id)
      assert.equal(200, r.status)
      local got = collect(engine)
      assert.equal(1, #got)
      assert.equal(g, got[1].id)
    end)

    it("hands over, instead of dropping, a finished transfer that run has not collected yet", function()
      emu:settings({ latency_ms = 0 })
      emu:fault({ mode = "latency", ms = 600, api = "advanced" })
      local engine = new_engine()
      finally(function() engine:close() end)
      local quick = engine:add(request("handwriting"))
      local r = engine:perform(request()) -- 600 ms: the quick one finishes meanwhile
      assert.equal(200, r.status)
      assert.equal(1, engine:pending()) -- finished, not collected
      -- Too late to cancel: its answer (billed) is returned, not dropped
      -- (issue 14, finding 5).
      local handed = engine:cancel(quick)
      assert.is_table(handed)
      assert.equal(quick, handed.id)
      assert.equal(200, handed.status)
      assert.equal(0, engine:pending())
      assert.is_false(engine:cancel(quick))
      local list, left = engine:run(0)
      assert.same({}, list)
      assert.equal(0, left)
    end)

    -- perform() must wait in curl_multi_poll for its own transfer, even when
    -- another one has finished and waits for `run` (it used to spin).
    it("does not spin while waiting in perform when another finished transfer waits for run", function()
      emu:settings({ latency_ms = 0 })
      emu:fault({ mode = "latency", ms = 600, api = "advanced" })
      local engine = new_engine()
      finally(function() engine:close() end)
      local quick = engine:add(request("handwriting"))
      local cpu, wall = os.clock(), now()
      local r = engine:perform(request())
      cpu, wall = os.clock() - cpu, now() - wall
      assert.equal(200, r.status)
      assert.is_true(wall >= 0.55, "perform took " .. wall .. " s")
      assert.is_true(cpu < 0.2, "perform used " .. cpu .. " s of CPU in " .. wall .. " s")
      local got = collect(engine)
      assert.equal(1, #got)
      assert.equal(quick, got[1].id)
    end)

    it("closes twice, raises on use after close, and is collected with transfers under way", function()
      local engine = new_engine()
      engine:add(request())
      engine:close()
      engine:close()
      assert.matches("closed", tostring(engine))
      assert.error_matches(function() engine:pending() end, "closed")
      assert.error_matches(function() engine:run(0) end, "closed")
      assert.error_matches(function() engine:add(request()) end, "closed")
      assert.error_matches(function() engine:perform(request()) end, "closed")
      assert.error_matches(function() engine:cancel(1) end, "closed")
      do
        local dropped = new_engine()
        dropped:add(request())
        dropped:run(0)
      end
      collectgarbage("collect")
      collectgarbage("collect")
      -- A to-be-closed engine (Lua 5.4 syntax, compiled only there).
      if _VERSION == "Lua 5.4" then
        local kept = assert(load("local new_engine = ... local kept do local e <close> = new_engine() kept = e end " ..
          "return kept"))(new_engine)
        assert.matches("closed", tostring(kept))
      end
    end)

    it("closed by its own decoder while it builds a response (run, perform): nothing leaks, nothing crashes", function()
      emu:settings({ latency_ms = 0 })
      local cjson_decode = require("cjson").new().decode
      for _, how in ipairs({ "run", "perform" }) do
        local engine
        engine = core.engine(cred, { max_connections = 4, idle_timeout = 10, decode = function(text)
          engine:close() -- the jobs being built are the method's: freed at its end
          return cjson_decode(text)
        end })
        if how == "run" then
          engine:add(request())
          engine:add(request())
          local got = {}
          local deadline = now() + 5
          while #got == 0 and now() < deadline do
            local list = engine:run(1)
            for _, r in ipairs(list) do got[#got + 1] = r end
          end
          assert.is_true(#got >= 1)
          assert.equal(200, got[1].status)
        else
          local r = engine:perform(request())
          assert.equal(200, r.status)
        end
        assert.matches("closed", tostring(engine))
        assert.error_matches(function() engine:run(0) end, "closed")
      end
    end)

    it("refuses closed credentials", function()
      local own = core.config({ appcode = "demo", urls = { advanced = emu.advanced }, connect_timeout_ms = 3000,
        max_bytes = 1e6 })
      assert.equal("appcode", own:mode())
      local engine = new_engine(own)
      finally(function() engine:close() end)
      own:close()
      own:close()
      assert.matches("closed", tostring(own))
      assert.error_matches(function() own:mode() end, "closed")
      assert.error_matches(function() engine:add(request()) end, "closed")
      assert.equal(0, engine:pending())
    end)
  end)
end)
