-- The engine's worker thread and what comes with it (src/worker.c,
-- src/drive.c): jobs driven off the caller's thread, so that poll(0) never
-- does network work; the readiness descriptor (client:fd()) for hosts with
-- an event loop; HTTPS that pays for TLS once (the CA store read once per
-- engine, TLS sessions resumed, the connection cache as large as the
-- concurrency in use); and fork(), after which the child's copy of a client
-- refuses to be used. Against the emulator's HTTP and HTTPS listeners, with
-- stats() checked against its ledger.
local emulator = require("helpers.emulator")
local socket = require("socket")
local aliocr = require("aliocr")
local util = require("helpers.util")
local widened = util.slow
local stop_clean = util.stop_clean

local now = socket.gettime

--- `n` distinct URLs of the sample image.
local function images(emu, n, tag)
  local urls = {}
  for i = 1, n do urls[i] = emu.image .. "?w=" .. (tag or "") .. i end
  return urls
end

--- Whether descriptor fd is readable within `seconds` (LuaSocket's select
-- takes any object with a getfd method).
local function readable(fd, seconds)
  local r = socket.select({ { getfd = function() return fd end } }, nil, seconds or 0)
  return #r == 1
end

--- stats() against the emulator's ledger for the credential "demo": its
-- requests are the attempts, its billed calls the billed ones.
-- With `base` (a settled ledger read before the client's calls): its
-- growth since then.
local function assert_ledger(emu, c, base)
  local ledger = emu:settled_ledger()
  local s = c:stats()
  local d = ledger.credentials.demo or { billed = 0, requests = 0 }
  local b = base and base.credentials.demo or { billed = 0, requests = 0 }
  assert.equal(d.billed - b.billed, s.billed)
  if d.requests - b.requests ~= s.attempts then
    -- What the emulator saw, to tell why.
    local seen = {}
    for _, e in ipairs(emu:requests()) do
      local k = tostring(e.status) .. (e.fault and (" " .. e.fault) or "")
      seen[k] = (seen[k] or 0) + 1
    end
    local parts = {}
    for k, n in pairs(seen) do parts[#parts + 1] = k .. " x" .. n end
    table.sort(parts)
    assert.equal(d.requests - b.requests, s.attempts, "the emulator's log: " .. table.concat(parts, ", ") ..
      "; stats: " .. require("cjson").encode(s))
  end
end

describe("the worker thread", function()
  local emu
  setup(function()
    emu = emulator.start({ "--port", "0", "--https-port", "0", "--appcode", "demo" })
  end)
  teardown(function() stop_clean(emu) end)
  before_each(function() emu:reset() end)

  local function client_of(o)
    local opts = { appcode = "demo", endpoint = emu.https, ca_file = emu.ca_file, retry_delay = 0.05 }
    for k, v in pairs(o or {}) do opts[k] = v end
    return aliocr.new(opts)
  end

  it("drives jobs without poll: their answers are in when poll comes, and poll(0) only hands them over", function()
    emu:settings({ latency_ms = 100 })
    local c = client_of({ concurrency = 10 })
    local got = {}
    for i, u in ipairs(images(emu, 10)) do
      c:submit("recognize", u, nil, function(res, err) got[i] = res or err end)
    end
    c:poll(0) -- starts them
    socket.sleep(widened(1)) -- no poll meanwhile: the worker drives them
    local t = now()
    c:poll(0)
    local spent = now() - t
    assert.equal(0, c:pending())
    for i = 1, 10 do assert.is_string(got[i].text, "job " .. i) end
    -- Handing over ten answers takes no latency of the emulator's.
    assert.is_true(spent < 0.1, "poll(0) took " .. spent .. " s")
    assert_ledger(emu, c)
    c:close()
  end)

  it("a blocking call on a client with jobs under way shares the one connection cache", function()
    local c = client_of({ concurrency = 4 })
    local n = 0
    for _, u in ipairs(images(emu, 4)) do c:submit("recognize", u, nil, function(res) if res then n = n + 1 end end) end
    c:poll(0)
    assert(c:recognize(emu.image))
    c:wait()
    assert.equal(4, n)
    for _ = 1, 3 do assert(c:recognize(emu.image)) end
    -- The four jobs' connections and the blocking call's: no more.
    assert.is_true(emu:connections().accepted <= 5, "connections: " .. emu:connections().accepted)
    assert_ledger(emu, c)
    c:close()
  end)

  it("cancel takes a transfer out of the worker's hands: under way, its billing unknown; the others go on", function()
    emu:settings({ latency_ms = 2000 })
    local c = client_of({ concurrency = 3 })
    local ran = 0
    local jobs = {}
    for i, u in ipairs(images(emu, 3)) do jobs[i] = c:submit("recognize", u, nil, function() ran = ran + 1 end) end
    c:poll(0)
    -- The emulator logs a request once answered: give them time to be sent.
    socket.sleep(0.5)
    assert.is_true(jobs[2]:cancel())
    assert.equal("cancelled", jobs[2].state)
    assert.is_nil(jobs[2].error.billed)
    c:wait()
    assert.equal(2, ran)
    local s = c:stats()
    assert.equal(3, s.requests)
    c:close()
    -- The cancelled request is answered all the same: not in the next test.
    assert(util.eventually(function() return #emu:requests() == 3 end, widened(5)))
  end)

  it("close while the worker drives transfers ends it: nothing left, every job accounted", function()
    emu:settings({ latency_ms = 2000 })
    local c = client_of({ concurrency = 5 })
    for _, u in ipairs(images(emu, 8)) do c:submit("recognize", u, nil, function() end) end
    c:poll(0)
    socket.sleep(0.5)
    c:close()
    local s = c:stats()
    assert.same({ 8, 5, 5, 8 }, { s.requests, s.attempts, s.unknown, s.errors.cancelled })
    -- The five went out (the emulator answers them after close).
    assert(util.eventually(function() return #emu:requests() == 5 end, widened(5)))
  end)

  describe("client:fd()", function()
    it("is readable only while poll(0) has work: a job to start, then its answer", function()
      emu:settings({ latency_ms = 200 })
      local c = client_of()
      local fd = c:fd()
      assert.is_number(fd)
      assert.equal(fd, c:fd())
      assert.is_false(readable(fd), "nothing to do yet")
      local got
      c:submit("recognize", emu.image, nil, function(res, err) got = res or err end)
      assert.is_true(readable(fd), "a job waits to start")
      c:poll(0)
      assert.is_false(readable(fd), "the job is under way")
      assert.is_true(readable(fd, widened(5)), "its answer came")
      assert.is_nil(got)
      c:poll(0)
      assert.is_string(got.text)
      assert.is_false(readable(fd), "everything handed over")
      assert.equal(0, c:pending())
      c:close()
      assert.has_error(function() c:fd() end, "aliocr: attempt to use a closed client")
    end)

    it("becomes readable when a retry is due, and the retry's answer too", function()
      emu:fault({ mode = "service_unavailable", times = 1 })
      local c = client_of({ retry_delay = 0.3 })
      local fd = c:fd()
      local got
      c:submit("recognize", emu.image, nil, function(res, err) got = res or err end)
      local wakes = 0
      local deadline = now() + widened(10)
      while got == nil and now() < deadline do
        if readable(fd, 1) then wakes = wakes + 1 end
        c:poll(0)
      end
      assert.is_string(got and got.text)
      assert.equal(2, got.attempts)
      -- Start, the first answer (503), the retry's time, its answer; never
      -- more than a few wake-ups (it does not spin).
      assert.is_true(wakes >= 3 and wakes <= 6, "wake-ups: " .. wakes)
      assert_ledger(emu, c)
      c:close()
    end)

    it("stays readable when a callback raised, until the rest have run", function()
      local c = client_of()
      local fd = c:fd()
      local ran = 0
      for i = 1, 2 do
        c:submit("recognize", emu.image .. "?r=" .. i, nil, function()
          ran = ran + 1
          if ran == 1 then error({ boom = true }) end
        end)
      end
      c:poll(0)
      local deadline = now() + widened(5)
      while c:pending() > 0 and now() < deadline do
        assert(readable(fd, 1))
        local ok, e = pcall(c.poll, c, 0)
        if not ok then assert.is_true(e.boom) end
      end
      while ran < 2 and readable(fd, 0) do c:poll(0) end
      assert.equal(2, ran)
      assert.is_false(readable(fd))
      c:close()
    end)

    it("stays readable after a cancel that comes too late (the answer is in) until its callback ran", function()
      local c = client_of()
      local fd = c:fd()
      local ran = false
      local job = c:submit("recognize", emu.image, nil, function() ran = true end)
      c:poll(0)
      assert.is_true(readable(fd, widened(5)), "the answer came")
      assert.is_false(job:cancel()) -- too late: the job takes its answer
      assert.equal("done", job.state)
      assert.is_true(readable(fd), "its callback waits for poll")
      c:poll(0)
      assert.is_true(ran)
      assert.is_false(readable(fd))
      c:close()
    end)

    it("stays readable after a batch that took a submitted job's answer in", function()
      local c = client_of()
      local fd = c:fd()
      local ran = false
      c:submit("recognize", emu.image .. "?s", nil, function() ran = true end)
      c:poll(0)
      assert.is_true(readable(fd, widened(5)))
      emu:settings({ latency_ms = 100 })
      c:batch("recognize", images(emu, 2))
      assert.is_false(ran)
      assert.is_true(readable(fd), "the submitted job's callback waits for poll")
      c:poll(0)
      assert.is_true(ran)
      c:close()
    end)

    it("a callback that submits more makes it readable for the new job", function()
      local c = client_of()
      local fd = c:fd()
      local texts = 0
      c:submit("recognize", emu.image, nil, function(res)
        if res then texts = texts + 1 end
        c:submit("recognize", emu.image .. "?second", nil, function(r) if r then texts = texts + 1 end end)
      end)
      local deadline = now() + widened(5)
      while texts < 2 and now() < deadline do
        if readable(fd, 1) then c:poll(0) end
      end
      assert.equal(2, texts)
      c:close()
    end)
  end)

  describe("HTTPS", function()
    -- With latency enough for the 50 first calls to be under way together,
    -- also on a slow run (valgrind, the sanitizers).
    local function latency() return { latency_ms = math.floor(widened(0.3) * 1000) } end

    it("a batch of 100 at concurrency 50 on a fresh client opens 50 connections, and a second batch none", function()
      emu:settings(latency())
      local base = emu:settled_ledger()
      -- Fifty TLS handshakes at once take longer than the default connect
      -- timeout inside valgrind: a retried attempt would not reach the
      -- emulator, and the stats would count it.
      local c = client_of({ connect_timeout = widened(3), timeout = widened(10) })
      local _, s1 = c:batch("recognize", images(emu, 100, "a"), { concurrency = 50 })
      local after_first = emu:connections()
      local _, s2 = c:batch("recognize", images(emu, 100, "b"), { concurrency = 50 })
      local after_second = emu:connections()
      assert.same({ 100, 100 }, { s1.ok, s2.ok })
      assert.equal(50, after_first.https)
      assert.equal(50, after_second.https)
      assert_ledger(emu, c, base)
      c:close()
    end)

    it("the same over HTTP", function()
      emu:settings(latency())
      local c = client_of({ endpoint = emu.endpoint })
      c:batch("recognize", images(emu, 100, "a"), { concurrency = 50 })
      local first = emu:connections().http
      c:batch("recognize", images(emu, 100, "b"), { concurrency = 50 })
      assert.same({ 50, 50 }, { first, emu:connections().http })
      c:close()
    end)

    it("a new connection resumes the TLS session of an earlier one", function()
      local c = client_of({ idle_timeout = 1 })
      assert(c:recognize(emu.image))
      socket.sleep(1.2) -- the connection is too old to be used again
      assert(c:recognize(emu.image))
      local log = emu:requests()
      assert.equal(2, #log)
      assert.are_not.equal(log[1].connection, log[2].connection)
      assert.is_nil(log[1].tls_resumed)
      assert.is_true(log[2].tls_resumed)
      c:close()
    end)

    it("reads the CA file once: new connections verify with the store already read", function()
      local copy = os.tmpname()
      local src = assert(io.open(emu.ca_file, "rb"))
      local pem = src:read("*a")
      src:close()
      local f = assert(io.open(copy, "wb"))
      f:write(pem)
      f:close()
      local c = client_of({ ca_file = copy, concurrency = 4 })
      assert(c:recognize(emu.image))
      -- The file is gone: a store read again per connection would fail.
      os.remove(copy)
      emu:settings({ latency_ms = 300 }) -- the four at once: three new connections at least
      local results = c:batch("recognize", images(emu, 4), { concurrency = 4 })
      for i = 1, 4 do assert.is_string(results[i].text, tostring(results[i])) end
      assert(util.eventually(function() return emu:connections().https >= 4 end),
        "connections: " .. emu:connections().https)
      c:close()
      -- A new client reads it again, and cannot.
      local c2 = client_of({ ca_file = copy })
      local res, err = c2:recognize(emu.image)
      assert.is_nil(res)
      assert.equal("transport", err.kind)
      c2:close()
    end)
  end)

  it("a process that exits without closing Lua while jobs run ends cleanly (the workers stop first)", function()
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write([[
      local aliocr = require("aliocr")
      local c = aliocr.new({ appcode = "demo", endpoint = arg[1], ca_file = arg[2], concurrency = 50 })
      for i = 1, 50 do c:submit("recognize", arg[3] .. "?x=" .. i, nil, function() end) end
      c:poll(0)
      os.exit(0) -- no lua_close: no __gc, no close
    ]])
    f:close()
    -- The interpreter of this run (with the sanitizers, theirs: the core
    -- loads only where their runtime came first).
    local lua = os.getenv("TSAN") == "1" and "build/tsan/lua" or os.getenv("ASAN") == "1" and "build/asan/lua"
      or os.getenv("LUA") or "lua5.4"
    local cpath = package.cpath:match("^[^;]*")
    local statuses = {}
    for i = 1, 10 do
      local ok, _, code = os.execute(string.format("LUA_PATH='lua/?.lua;;' LUA_CPATH=%q %s %s %s %s %s",
        cpath .. ";;", lua, script, emu.https, emu.ca_file, emu.image .. "?run=" .. i))
      if type(ok) == "number" then code = ok end -- Lua 5.1
      statuses[#statuses + 1] = tostring(code)
    end
    os.remove(script)
    assert.equal(("0 "):rep(10), table.concat(statuses, " ") .. " ")
  end)

  describe("fork()", function()
    local has_posix, unistd = pcall(require, "posix.unistd")
    local wait = has_posix and require("posix.sys.wait")

    it("the child's copy of a client refuses to be used; the parent's goes on", function()
      if not has_posix then
        pending("needs lua-posix (Debian's package has no Lua 5.4 build: runs under 5.1, 5.3, LuaJIT)")
        return
      end
      emu:settings({ latency_ms = 200 })
      local c = client_of({ concurrency = 4 })
      local n = 0
      for _, u in ipairs(images(emu, 4)) do
        c:submit("recognize", u, nil, function(res) if res then n = n + 1 end end)
      end
      c:poll(0) -- the worker runs
      local out = os.tmpname()
      local pid = unistd.fork()
      if pid == 0 then
        -- The child never returns to busted.
        local code = 1
        pcall(function()
          local f = io.open(out, "w")
          local ok, e = pcall(c.poll, c, 0)
          local ok2, e2 = pcall(c.recognize, c, emu.image)
          local ok3, e3 = pcall(c.close, c) -- frees nothing of the parent's
          f:write(tostring(ok), "\n", tostring(e), "\n", tostring(ok2), "\n", tostring(e2), "\n",
            tostring(ok3), " ", tostring(e3), "\n")
          f:close()
          code = 0
        end)
        unistd._exit(code)
      end
      local _, _, status = wait.wait(pid)
      c:wait()
      local f = io.open(out)
      local text = f:read("*a")
      f:close()
      os.remove(out)
      assert.equal(0, status)
      assert.matches("^false\n[^\n]*made in process %d+, before a fork%(%): make a new client in this process\n", text)
      assert.matches("\nfalse\n[^\n]*before a fork[^\n]*\ntrue true\n$", text)
      assert.equal(4, n)
      assert.equal(4, #emu:requests())
      assert_ledger(emu, c)
      c:close()
    end)
  end)
end)
