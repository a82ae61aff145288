-- Issue 19 inside nginx: calls cut off mid-flight (items 2, 7, 14), on one
-- client per worker shared by every request (spec/helpers/nginx_hostile.lua),
-- against the emulator, whose ledger says what the gateway billed. A call
-- cut off cannot be told apart from one whose answer was lost: it must stay
-- counted, as a cancelled call of unknown billing, so that the ledger lies
-- within [billed, billed + unknown].
local cjson = require("cjson")
local socket = require("socket")
local emulator = require("helpers.emulator")
local http = require("helpers.http")
local nginx = require("helpers.nginx")
local util = require("helpers.util")
local sh = require("helpers.sh")

local HANDLERS = { "reset", "stats", "call", "kill_call", "exit_call", "exit_batch", "progress_exit",
  "error_batch", "kill_batch", "close_retry", "timer_batch" }

local function locations()
  local out = {}
  for _, name in ipairs(HANDLERS) do
    out[#out + 1] = string.format("    location = /h/%s {%s content_by_lua_block { " ..
      "require(\"helpers.nginx_hostile\").%s() } }", name,
      name == "call" and " lua_check_client_abort on;" or "", name)
  end
  return table.concat(out, "\n")
end

local function urlencode(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

if not util.nginx_only_here() then
  describe("inside nginx, calls cut off (issue 19)", function() pending(util.NGINX_ONLY) end)
  return
end

describe("inside nginx, calls cut off (issue 19)", function()
  local emu, ngx_

  setup(function()
    emu = emulator.start({ "--port", "0", "--https-port", "0", "--appcode", "demo" })
    ngx_ = nginx.start(nginx.test_config(emu.ca_file, locations()), { ALIOCR_ENDPOINT = emu.endpoint })
  end)

  teardown(function()
    if ngx_ and os.getenv("H2_LOG") then sh.write_all(os.getenv("H2_LOG"), ngx_:log()) end
    if ngx_ then assert.same({}, ngx_:stop()) end
    util.stop_clean(emu)
  end)

  local function get(server, path, timeout)
    return http.exchange(server.url .. path, "GET", nil, nil, timeout or 30)
  end

  local function stats(server)
    local status, body = get(server or ngx_, "/h/stats")
    assert.equal(200, status, body)
    return cjson.decode(body)
  end

  -- The shared client's stats once `check(stats)` holds (at most 10 s).
  local function stats_when(check, server)
    local s
    util.eventually(function()
      s = stats(server)
      return check(s)
    end, 10)
    return s
  end

  local function reset(client)
    emu:reset()
    ngx_:post("/h/reset", client or {})
  end

  -- The ledger against the stats: the gateway's count lies within
  -- [billed, billed + unknown], and every call that reached it is counted.
  local function agrees(s, ledger, calls)
    local why = "stats " .. cjson.encode(s) .. "; ledger " .. cjson.encode(ledger.total)
    assert.is_true(ledger.total.billed >= s.billed, why)
    assert.is_true(ledger.total.billed <= s.billed + s.unknown, why)
    assert.equal(calls or ledger.total.requests, s.requests, why)
  end

  local function query(n, c, pause)
    return "?url=" .. urlencode(emu.image) .. "&n=" .. n .. "&c=" .. c .. "&pause=" .. pause
  end

  -- Opens a request to /h/call on a connection of its own and leaves it.
  local function open_call()
    local conn = assert(socket.tcp())
    conn:settimeout(10)
    assert(conn:connect("127.0.0.1", ngx_.port))
    assert(conn:send("GET /h/call?url=" .. urlencode(emu.image) .. " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    return conn
  end

  describe("item 2: a call cut off stays counted", function()
    it("item 2: a call under way counts as cancelled with billing unknown until its answer settles it, " ..
       "also across a retry", function()
      reset()
      emu:settings({ latency_ms = 800 })
      emu:fault({ mode = "service_unavailable", times = 1 })
      local conn = open_call()
      local seen = stats_when(function(s) return s.attempts == 2 and s.unknown == 1 end)
      -- The second attempt, under way: one call, cancelled, billing unknown.
      assert.same({ requests = 1, attempts = 2, billed = 0, not_billed = 0, unknown = 1,
        errors = { cancelled = 1 } }, seen)
      local answer = conn:receive("*a")
      conn:close()
      assert.matches('"billed":true', answer, 1, true)
      local s = stats()
      assert.same({ requests = 1, attempts = 2, billed = 1, not_billed = 0, unknown = 0, errors = {} }, s)
      agrees(s, emu:settled_ledger(), 1)
    end)

    it("item 2: 10 downstream hang-ups one after the other (lua_check_client_abort on)", function()
      reset()
      emu:settings({ latency_ms = 1000 })
      for i = 1, 10 do
        local conn = open_call()
        stats_when(function(s) return s.requests == i end)
        conn:close()
      end
      util.eventually(function() return emu:ledger().total.requests == 10 end, 10)
      local ledger = emu:settled_ledger()
      local s = stats()
      assert.equal(10, ledger.total.billed)
      assert.same({ requests = 10, attempts = 10, billed = 0, not_billed = 0, unknown = 10,
        errors = { cancelled = 10 } }, s)
      agrees(s, ledger)
    end)

    it("item 2: 200 concurrent downstream hang-ups", function()
      reset()
      emu:settings({ latency_ms = 2000 })
      local conns = {}
      for i = 1, 200 do conns[i] = open_call() end
      local seen = stats_when(function(s) return s.requests == 200 end)
      assert.equal(200, seen.unknown)
      for _, conn in ipairs(conns) do conn:close() end
      util.eventually(function() return emu:ledger().total.requests == 200 end, 15)
      local ledger = emu:settled_ledger()
      local s = stats()
      assert.equal(200, ledger.total.billed)
      assert.same({ requests = 200, attempts = 200, billed = 0, not_billed = 0, unknown = 200,
        errors = { cancelled = 200 } }, s)
      agrees(s, ledger)
    end)

    it("item 2: ngx.thread.kill of the light thread making a call", function()
      reset()
      emu:settings({ latency_ms = 500 })
      local status, body = get(ngx_, "/h/kill_call?url=" .. urlencode(emu.image) .. "&pause=0.2")
      assert.equal(200, status, body)
      assert.is_true(cjson.decode(body).killed, body)
      util.eventually(function() return emu:ledger().total.requests == 1 end)
      local s, ledger = stats(), emu:settled_ledger()
      assert.equal(1, ledger.total.billed)
      assert.same({ requests = 1, attempts = 1, billed = 0, not_billed = 0, unknown = 1,
        errors = { cancelled = 1 } }, s)
      agrees(s, ledger)
    end)

    it("item 2: a retry killed under way keeps the unknown billing of every attempt that went out", function()
      -- The first attempt times out (billing unknown, retried with
      -- retry_unknown); the second is under way when its thread is killed.
      reset({ retry_unknown = true, timeout = 0.3, retries = 1 })
      emu:settings({ latency_ms = 600 })
      emu:fault({ mode = "stall_headers", ms = 1000, times = 1 })
      local status, body = get(ngx_, "/h/kill_call?url=" .. urlencode(emu.image) .. "&pause=0.6")
      assert.equal(200, status, body)
      assert.is_true(cjson.decode(body).killed, body)
      util.eventually(function() return emu:ledger().total.requests == 2 end)
      local s, ledger = stats(), emu:settled_ledger()
      assert.equal(2, ledger.total.billed)
      assert.same({ requests = 1, attempts = 2, billed = 0, not_billed = 0, unknown = 2,
        errors = { cancelled = 1 } }, s)
      agrees(s, ledger, 1)
    end)

    it("item 2: ngx.exit while a light thread makes a call", function()
      reset()
      emu:settings({ latency_ms = 500 })
      local status, body = get(ngx_, "/h/exit_call?url=" .. urlencode(emu.image) .. "&pause=0.2")
      assert.equal(200, status, body)
      util.eventually(function() return emu:ledger().total.requests == 1 end)
      local s, ledger = stats(), emu:settled_ledger()
      assert.equal(1, ledger.total.billed)
      assert.same({ requests = 1, attempts = 1, billed = 0, not_billed = 0, unknown = 1,
        errors = { cancelled = 1 } }, s)
      agrees(s, ledger)
    end)

    it("item 2: ngx.exit while a light thread runs a batch", function()
      reset()
      emu:settings({ latency_ms = 400 })
      -- 10 images, 2 at a time: 4 finished and 2 under way at 1 s.
      local status, body = get(ngx_, "/h/exit_batch" .. query(10, 2, 1))
      assert.equal(200, status, body)
      util.eventually(function() return emu:ledger().total.requests >= 6 end)
      local ledger, s = emu:settled_ledger(), stats()
      assert.is_true(ledger.total.requests >= 4 and ledger.total.requests < 10, cjson.encode(ledger.total))
      -- Every image that went out is a call: those cut off are cancelled.
      assert.equal(2, s.unknown, cjson.encode(s))
      assert.equal(2, s.errors.cancelled, cjson.encode(s))
      assert.equal(ledger.total.requests - 2, s.billed)
      agrees(s, ledger)
    end)

    it("item 2: ngx.exit inside on_progress", function()
      reset()
      emu:settings({ latency_ms = 300 })
      local status, body = get(ngx_, "/h/progress_exit" .. query(10, 3, 0) .. "&at=1")
      assert.equal(200, status, body)
      assert.matches("exited at 1", body, 1, true)
      util.eventually(function() return emu:ledger().total.requests >= 3 end)
      local ledger, s = emu:settled_ledger(), stats()
      -- The first done, the two beside it cut off.
      assert.equal(3, ledger.total.requests, cjson.encode(ledger.total))
      assert.same({ requests = 3, attempts = 3, billed = 1, not_billed = 0, unknown = 2,
        errors = { cancelled = 2 } }, s)
      agrees(s, ledger)
    end)

    it("item 2: error() in the handler while a batch runs in a light thread", function()
      reset()
      emu:settings({ latency_ms = 400 })
      local status = get(ngx_, "/h/error_batch" .. query(10, 2, 1))
      assert.equal(500, status)
      util.eventually(function() return emu:ledger().total.requests >= 6 end)
      local ledger, s = emu:settled_ledger(), stats()
      assert.is_true(ledger.total.requests >= 4 and ledger.total.requests < 10, cjson.encode(ledger.total))
      assert.equal(2, s.unknown, cjson.encode(s))
      assert.equal(2, s.errors.cancelled, cjson.encode(s))
      assert.equal(ledger.total.requests - 2, s.billed)
      agrees(s, ledger)
    end)
  end)

  describe("item 7: a batch stops starting images", function()
    it("item 7: when the light thread that called batch is killed: cancelled and counted, not sent", function()
      reset()
      emu:settings({ latency_ms = 500 })
      local status, body = get(ngx_, "/h/kill_batch" .. query(10, 2, 0.2))
      assert.equal(200, status, body)
      assert.is_true(cjson.decode(body).killed, body)
      local s = stats_when(function(x) return x.requests == 10 end)
      local ledger = emu:settled_ledger()
      -- The two under way finish (their threads live on); the rest is not sent.
      assert.equal(2, ledger.total.requests, cjson.encode(ledger.total))
      assert.same({ requests = 10, attempts = 2, billed = 2, not_billed = 8, unknown = 0,
        errors = { cancelled = 8 } }, s)
      agrees(s, ledger, 10)
    end)

    it("item 7: nginx gets QUIT while a timer runs a batch: few go out after it, the worker exits, " ..
       "the stats equal the ledger", function()
      emu:reset()
      emu:settings({ latency_ms = 1000 })
      local own = nginx.start(nginx.test_config(emu.ca_file, locations()), { ALIOCR_ENDPOINT = emu.endpoint })
      local log
      finally(function()
        own:stop()
        if log then print("# " .. (log:match("aliocr%-stats [^\n]*") or "no stats line")) end
      end)
      local status, body = http.exchange(own.url .. "/h/reset", "POST", "{}", "application/json", 10)
      assert.equal(200, status, body)
      status, body = get(own, "/h/timer_batch" .. query(16, 2, 0))
      assert.equal(200, status, body)
      assert.is_true(cjson.decode(body).started, body)
      -- Two images done, two under way.
      stats_when(function(s) return s.billed >= 2 end, own)
      local quit = socket.gettime()
      os.execute("kill -QUIT " .. own.pid)
      local gone = util.eventually(function()
        local r = os.execute("kill -0 " .. own.pid .. " 2>/dev/null")
        return not (r == true or r == 0)
      end, 20)
      local took = socket.gettime() - quit
      log = own:log()
      assert.is_truthy(gone, "nginx still runs " .. took .. " s after QUIT")
      -- What was under way at the QUIT finishes (1 s of latency); 12 more
      -- images one after the other would take 6 s.
      assert.is_true(took < util.slow(4.5), "nginx took " .. took .. " s to stop after QUIT")
      local line = log:match("aliocr%-stats ([^\n]*)")
      assert.is_truthy(line, log)
      local s = cjson.decode(line:match("^(%b{})"))
      local ledger = emu:settled_ledger()
      local after = 0
      for _, e in ipairs(emu:requests()) do
        if e.time > quit then after = after + 1 end
      end
      assert.is_true(after <= 1, after .. " requests went out after the QUIT")
      assert.equal(16, s.requests)
      assert.equal(ledger.total.requests, s.attempts)
      assert.equal(ledger.total.billed, s.billed)
      assert.equal(0, s.unknown)
      assert.equal(16 - s.billed, s.errors.cancelled)
      assert.equal(16 - s.billed, s.not_billed)
      assert.is_true(s.billed <= 6, cjson.encode(s))
      assert.matches("cancelled", log:match("aliocr%-kinds ([^\n]*)"), 1, true)
    end)
  end)

  describe("item 14: close while a call is under way", function()
    local function close_case(c)
      local status, body = http.exchange(ngx_.url .. "/h/close_retry", "POST", cjson.encode(c),
        "application/json", 30)
      assert.equal(200, status, body)
      return cjson.decode(body)
    end

    it("item 14: closed while the first attempt is under way and a retry is due: cancelled, not billed", function()
      emu:reset()
      -- The other light thread closes the client as soon as the call waits
      -- for its answer: a 503, which would be retried.
      emu:fault({ mode = "service_unavailable", times = 1 })
      local out = close_case({ url = emu.image, pause = 0, client = { retry_delay = 1 } })
      assert.is_nil(out.raised, out.raised)
      assert.equal("cancelled", out.error.kind, cjson.encode(out))
      assert.is_false(out.error.billed)
      assert.same({ requests = 1, attempts = 1, billed = 0, not_billed = 1, unknown = 0,
        errors = { cancelled = 1 } }, out.stats)
      agrees(out.stats, emu:settled_ledger(), 1)
    end)

    it("item 14: closed during the back-off of a retry: cancelled at once, not billed", function()
      emu:reset()
      emu:fault({ mode = "service_unavailable" })
      local started = socket.gettime()
      local out = close_case({ url = emu.image, pause = 0.3, client = { retry_delay = 30, retry_max_delay = 30,
        retries = 1 } })
      local took = socket.gettime() - started
      assert.is_nil(out.raised, out.raised)
      assert.equal("cancelled", out.error.kind, cjson.encode(out))
      assert.is_false(out.error.billed)
      assert.equal(1, out.error.attempts)
      assert.same({ requests = 1, attempts = 1, billed = 0, not_billed = 1, unknown = 0,
        errors = { cancelled = 1 } }, out.stats)
      agrees(out.stats, emu:settled_ledger())
      -- A back-off that went on after the close would hold the handler for
      -- up to 30 s.
      assert.is_true(took < 10, "the call took " .. took .. " s")
    end)

    it("item 14: closed while the TLS handshake of its first attempt is under way", function()
      emu:reset()
      local out = close_case({ url = emu.image, pause = 0, client = { endpoint = emu.https, tls_verify = false } })
      assert.is_nil(out.raised, out.raised)
      local s = out.stats
      if out.error then
        assert.equal("cancelled", out.error.kind, cjson.encode(out))
      else
        assert.is_true(out.result.billed)
      end
      agrees(s, emu:settled_ledger(), 1)
    end)
  end)
end)
