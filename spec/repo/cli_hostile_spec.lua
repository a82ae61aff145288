-- bin/aliocr in hostile conditions (the findings of issue 14 about the
-- command line tool): SIGINT during a run (finding 2), a stdout it cannot
-- write (6), a quota refusal with images still queued (7), and input errors:
-- a directory or a closed stdin as the list of URLs, where a bad URL came
-- from, and the advice when no interface URL is configured (15).
local cjson = require("cjson")
local socket = require("socket")
local cli = require("helpers.cli")
local emulator = require("helpers.emulator")
local sh = require("helpers.sh")
local util = require("helpers.util")
local unpack = table.unpack or unpack -- Lua 5.1 and LuaJIT have only the global

local q, read_all = sh.q, sh.read_all
local env_for, json_lines = cli.env_for, cli.json_lines

local USAGE = "\nTry 'aliocr %-%-help'%.\n$"

--- Asserts that `err` shows no Lua error: no traceback, no "interrupted!"
-- of Lua's own SIGINT handler, no "lua5.4:" prefix.
local function assert_no_lua_error(err)
  assert.falsy(err:find("traceback", 1, true), err)
  assert.falsy(err:find("interrupted!", 1, true), err)
  assert.falsy(err:find("lua5.4:", 1, true), err)
end

--- The image URLs of the emulator's request log, sorted.
local function logged(emu)
  local list = {}
  for _, e in ipairs(emu:requests()) do list[#list + 1] = e.params.url end
  table.sort(list)
  return list
end

--- Asserts that the emulator was sent every image in `answered`, and no
-- other than those and the ones in `in_flight` (which may or may not have
-- reached it). The emulator logs a request once its answer is over, even
-- when the client went away, `latency` seconds after it came: wait that
-- long after the tool ended before reading the log.
local function assert_sent(emu, answered, in_flight, ended, latency)
  local deadline = ended + latency + 1
  while socket.gettime() < deadline do socket.sleep(0.05) end
  local allowed = {}
  for _, u in ipairs(answered) do allowed[u] = true end
  for _, u in ipairs(in_flight) do allowed[u] = true end
  local log = logged(emu)
  local seen = {}
  for _, u in ipairs(log) do
    assert.truthy(allowed[u], "sent although neither answered nor in flight: " .. u)
    assert.falsy(seen[u], "sent twice: " .. u)
    seen[u] = true
  end
  for _, u in ipairs(answered) do assert.truthy(seen[u], "answered but not in the log: " .. u) end
  assert.equal(#log, emu:settled_ledger().total.requests)
end

--- The counts of the tool's last stderr line after SIGINT.
local function interrupt_summary(err)
  local a, b, f, n = err:match("aliocr: interrupted: (%d+) answered %((%d+) billed%), (%d+) cancelled in flight " ..
    "%(billing unknown%), (%d+) not sent\n$")
  assert.truthy(a, "no summary line at the end of: " .. err)
  return { answered = tonumber(a), billed = tonumber(b), in_flight = tonumber(f), not_sent = tonumber(n) }
end

--- The JSON lines of an interrupted run, by fate: answered (a result, or
-- an error the gateway gave), in flight, not sent. Checks each line.
local function fates(lines, urls)
  local answered, in_flight, not_sent = {}, {}, {}
  for i, v in ipairs(lines) do
    assert.equal(urls[i], v.url, "input order")
    if v.result or v.error.kind ~= "cancelled" then
      answered[#answered + 1] = v.url
    elseif v.error.billed == cjson.null then
      assert.truthy(v.error.attempts >= 1, cjson.encode(v))
      assert.matches("interrupted", v.error.msg)
      in_flight[#in_flight + 1] = v.url
    else
      assert.is_false(v.error.billed, cjson.encode(v))
      assert.equal(0, v.error.attempts)
      assert.is_false(v.error.retryable)
      not_sent[#not_sent + 1] = v.url
    end
  end
  return answered, in_flight, not_sent
end

describe("aliocr command line, hostile conditions", function()
  local emu, scratch
  setup(function()
    scratch = sh.tmpdir()
    emu = emulator.start({ "--port", "0", "--appcode", "demo" })
  end)
  teardown(function()
    util.stop_clean(emu)
    local left = sh.capture("ls -A " .. q(scratch))
    os.execute("rm -rf " .. q(scratch))
    assert.equal("", left, "the specs' own scratch files were removed")
  end)
  before_each(function() emu:reset() end)

  local function images(n)
    local list = {}
    for i = 1, n do list[i] = emu.image .. "?n=" .. i end
    return list
  end

  local function run(args, o) return cli.run(scratch, env_for(emu), args, o) end

  describe("SIGINT", function()
    it("finding 2: mid-run, it stops sending, prints the results it had, reports the calls in flight (billed " ..
      "null) and those never sent (billed false) as cancelled, sums up on stderr and exits 130", function()
      emu:settings({ latency_ms = 300 })
      local urls = images(20)
      local p = cli.spawn(scratch, env_for(emu), { "-o", "json", "-c", "2", unpack(urls) })
      finally(function() p:wait(1) end)
      -- Some results printed: the run is under way.
      local started = p:until_(function(t) return select(2, t:output():gsub("\n", "")) >= 4 end, 20)
      assert.truthy(started, "no results printed: " .. p:errors())
      p:signal("INT")
      local r = p:wait()
      assert.equal(130, r.status, r.err)
      assert_no_lua_error(r.err)
      local lines = json_lines(r.out)
      assert.equal(20, #lines, "every image has its line")
      local answered, in_flight, not_sent = fates(lines, urls)
      assert.truthy(#answered >= 4, "the results printed before the signal are kept")
      assert.truthy(#in_flight <= 2, "at most -c 2 in flight")
      assert.truthy(#not_sent >= 1, "it stopped before the end")
      assert.equal(20, #answered + #in_flight + #not_sent)
      -- stderr: the summary line only (json mode, no progress bar).
      local s = interrupt_summary(r.err)
      assert.equal(1, select(2, r.err:gsub("\n", "")), r.err)
      assert.same({ #answered, #answered, #in_flight, #not_sent }, { s.answered, s.billed, s.in_flight, s.not_sent })
      -- Nothing was sent after the signal but what was in flight.
      assert_sent(emu, answered, in_flight, r.ended, 0.3)
    end)

    it("finding 2: before any answer, it cancels the calls in flight at once, prints no result, reports every " ..
      "image on stderr (text mode) and exits 130", function()
      -- Answers 3 s late; the signal comes as soon as both requests of -c 2
      -- have their connection.
      emu:settings({ latency_ms = 3000 })
      local urls = images(6)
      local p = cli.spawn(scratch, env_for(emu), { "-c", "2", unpack(urls) })
      finally(function() p:wait(1) end)
      local connected = p:until_(function() return cli.connections_to(emu) >= 2 end, 10)
      assert.truthy(connected, "the tool never connected: " .. p:errors())
      p:signal("INT")
      local r = p:wait()
      assert.equal(130, r.status, r.err)
      assert_no_lua_error(r.err)
      assert.equal("", r.out, "no result had arrived")
      -- One line per image, in input order, then the summary.
      local lines = {}
      for line in r.err:gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
      assert.equal(7, #lines, r.err)
      local in_flight, not_sent = {}, {}
      for i = 1, 6 do
        local prefix = "aliocr: " .. urls[i] .. ": aliocr cancelled error: "
        assert.equal(prefix, lines[i]:sub(1, #prefix), lines[i])
        if lines[i]:find("billing unknown", 1, true) then
          in_flight[#in_flight + 1] = urls[i]
        else
          assert.truthy(lines[i]:find("(not billed, 0 attempts)", 1, true), lines[i])
          not_sent[#not_sent + 1] = urls[i]
        end
      end
      assert.same({ urls[1], urls[2] }, in_flight)
      assert.same({ urls[3], urls[4], urls[5], urls[6] }, not_sent)
      local s = interrupt_summary(r.err)
      assert.same({ 0, 0, 2, 4 }, { s.answered, s.billed, s.in_flight, s.not_sent })
      assert_sent(emu, {}, in_flight, r.ended, 3)
    end)

    it("finding 2: the jobs waiting for a retry are cancelled too, not billed, and never retried", function()
      -- Every answer a 503 (not billed, retried): the jobs spend their time
      -- waiting for their next attempt.
      emu:fault({ mode = "service_unavailable" })
      local urls = images(4)
      local p = cli.spawn(scratch, env_for(emu), { "-o", "json", "-c", "2", "--retries", "50", unpack(urls) })
      finally(function() p:wait(1) end)
      assert.truthy(util.eventually(function() return #emu:requests() >= 6 end, 10), "no retries: " .. p:errors())
      p:signal("INT")
      local r = p:wait()
      assert.equal(130, r.status, r.err)
      assert_no_lua_error(r.err)
      local lines = json_lines(r.out)
      assert.equal(4, #lines)
      local retrying, sent_least, sent_most = 0, 0, 0
      for i, v in ipairs(lines) do
        assert.equal(urls[i], v.url)
        assert.equal("cancelled", v.error.kind, cjson.encode(v))
        if v.error.billed == false and v.error.attempts > 0 then
          retrying = retrying + 1
          assert.matches("^not retried: interrupted", v.error.msg)
          sent_least, sent_most = sent_least + v.error.attempts, sent_most + v.error.attempts
        elseif v.error.billed == cjson.null then
          -- In flight: its last attempt may not have reached the emulator.
          sent_least, sent_most = sent_least + v.error.attempts - 1, sent_most + v.error.attempts
        else
          assert.is_false(v.error.billed)
          assert.equal(0, v.error.attempts)
        end
      end
      assert.truthy(retrying >= 1, "some were waiting for a retry: " .. r.out)
      local s = interrupt_summary(r.err)
      assert.equal(0, s.answered)
      -- No attempt after the signal: the log holds the attempts reported.
      local deadline = r.ended + 1
      while socket.gettime() < deadline do socket.sleep(0.05) end
      local log = emu:requests()
      assert.truthy(#log >= sent_least and #log <= sent_most,
        #log .. " requests logged, " .. sent_least .. " to " .. sent_most .. " reported")
      for _, e in ipairs(log) do assert.equal(503, e.status) end
      assert.equal(0, emu:settled_ledger().total.billed)
    end)

    it("finding 2: core.catch_interrupts makes SIGINT set core.interrupted() and end core.sleep early", function()
      -- In a lua5.4 of its own, which sends itself SIGINT 0.3 s into a 10 s sleep.
      local script = [[
        package.cpath = ROOT .. "/build/?.so;" .. package.cpath
        local core = require("aliocr.core")
        assert(core.interrupted() == false)
        core.catch_interrupts()
        core.catch_interrupts() -- twice is once
        local f = assert(io.open("/proc/self/stat"))
        local pid = f:read("*a"):match("^%d+")
        f:close()
        os.execute("(sleep 0.3; kill -INT " .. pid .. ") >/dev/null 2>&1 &")
        local t = core.monotonic()
        core.sleep(10)
        local slept = core.monotonic() - t
        t = core.monotonic()
        core.sleep(10) -- at once, now that a SIGINT came
        io.write(tostring(core.interrupted()), string.format(" %.3f %.3f\n", slept, core.monotonic() - t))
      ]]
      local out, status = sh.run("lua5.4 -e " .. q("ROOT = " .. string.format("%q", emulator.root) .. "\n" .. script))
      assert.equal(0, status, out)
      local flag, slept, again = out:match("^(%a+) ([%d.]+) ([%d.]+)\n$")
      assert.equal("true", flag, out)
      assert.truthy(tonumber(slept) < 5, "the sleep went on after the signal: " .. out)
      assert.truthy(tonumber(again) < 1, out)
    end)

    it("finding 2: while the URLs are read from stdin, it exits 130 and sends nothing", function()
      local p = cli.spawn(scratch, env_for(emu), {}, { stdin_fifo = true })
      finally(function() p:wait(1) end)
      -- Waiting in a read of the pipe (which never ends).
      local function reading()
        return read_all("/proc/" .. p.pid .. "/wchan"):find("pipe_read", 1, true) ~= nil
      end
      assert.truthy(p:until_(reading, 10), "the tool is not reading stdin")
      p:signal("INT")
      local r = p:wait()
      assert.equal(130, r.status, r.err)
      assert_no_lua_error(r.err)
      assert.equal("", r.out)
      assert.equal("aliocr: interrupted: nothing was sent\n", r.err)
      assert.same({}, emu:requests())
    end)
  end)

  describe("a stdout it cannot write", function()
    it("finding 6: on /dev/full, it stops sending, says what was lost and exits 1", function()
      local urls = images(5)
      for _, format in ipairs({ "text", "json" }) do
        emu:reset()
        local r = run({ "-o", format, "-c", "1", unpack(urls) }, { stdout = ">/dev/full" })
        assert.equal(1, r.status, format .. ": " .. r.err)
        assert_no_lua_error(r.err)
        assert.equal("aliocr: cannot write to stdout: No space left on device: 1 answered but not written " ..
          "(1 billed), 0 cancelled in flight (billing unknown), 4 not sent\n", r.err, format)
        -- The first answer could not be written: nothing more was sent.
        assert.same({ urls[1] }, logged(emu), format)
        assert.equal(1, emu:settled_ledger().total.billed, format)
      end
      -- tsv writes its header first: nothing is sent at all.
      emu:reset()
      local r = run({ "-o", "tsv", unpack(urls) }, { stdout = ">/dev/full" })
      assert.equal(1, r.status, r.err)
      assert.equal("aliocr: cannot write to stdout: No space left on device: nothing was sent\n", r.err)
      assert.same({}, emu:requests())
    end)

    it("finding 6: with stdout closed, it sends nothing and exits 1", function()
      for _, format in ipairs({ "text", "json", "tsv" }) do
        local r = run({ "-o", format, unpack(images(3)) }, { stdout = ">&-" })
        assert.equal(1, r.status, format .. ": " .. r.err)
        assert.equal("aliocr: cannot write to stdout: Bad file descriptor: nothing was sent\n", r.err, format)
      end
      -- Nor with --file, whose descriptor would have taken stdout's place.
      local file = scratch .. "/closed-stdout.urls"
      sh.write_all(file, table.concat(images(2), "\n") .. "\n")
      local r = run({ "-f", file }, { stdout = ">&-" })
      os.remove(file)
      assert.equal(1, r.status, r.err)
      assert.matches("^aliocr: cannot write to stdout: Bad file descriptor", r.err)
      assert.same({}, emu:requests())
    end)
  end)

  describe("a quota refusal", function()
    it("finding 7: once the quota is refused, no queued image is sent, one at a time", function()
      emu:settings({ quota = 3 })
      local urls = images(10)
      local r = run({ "-o", "json", "-c", "1", unpack(urls) })
      assert.equal(3, r.status, r.err)
      -- Three answered, the fourth refused, and not one request after it.
      assert.same({ urls[1], urls[2], urls[3], urls[4] }, logged(emu))
      local lines = json_lines(r.out)
      assert.equal(10, #lines)
      for i = 1, 3 do assert.is_table(lines[i].result) end
      assert.equal("quota", lines[4].error.kind)
      for i = 5, 10 do
        assert.equal("cancelled", lines[i].error.kind)
        assert.is_false(lines[i].error.billed)
        assert.equal(0, lines[i].error.attempts)
      end
    end)

    it("finding 7: once the quota is refused, only the calls already in flight finish (-c 2)", function()
      emu:settings({ quota = 0 })
      local urls = images(10)
      local r = run({ "-o", "json", "-c", "2", unpack(urls) })
      assert.equal(3, r.status, r.err)
      -- The two sent at once are refused; nothing is sent after the first refusal.
      assert.same({ urls[1], urls[2] }, logged(emu))
      local lines = json_lines(r.out)
      assert.equal("quota", lines[1].error.kind)
      assert.equal("quota", lines[2].error.kind)
      for i = 3, 10 do assert.equal("cancelled", lines[i].error.kind) end
      assert.equal(0, emu:settled_ledger().total.billed)
    end)
  end)

  describe("input errors", function()
    it("finding 15: a directory as --file is a usage error (exit 2, one line, no traceback)", function()
      local r = run({ "-f", "/etc" })
      assert.equal(2, r.status)
      assert.equal("", r.out)
      assert.matches("^aliocr: cannot read %-%-file: /etc: Is a directory" .. USAGE, r.err)
      assert_no_lua_error(r.err)
      assert.same({}, emu:requests())
    end)

    it("finding 15: a closed stdin is a usage error, read for want of arguments or with -f -", function()
      for _, args in ipairs({ {}, { "-f", "-" }, { "-o", "json", "--file", "-" } }) do
        local what = table.concat(args, " ")
        local r = run(args, { stdin_redirect = "<&-" })
        assert.equal(2, r.status, what .. ": " .. r.err)
        assert.equal("", r.out, what)
        assert.matches("^aliocr: cannot read stdin: Bad file descriptor" .. USAGE, r.err)
        assert_no_lua_error(r.err)
      end
      -- With URLs as arguments stdin is not read: a closed one does no harm.
      local r = run({ emu.image }, { stdin_redirect = "<&-" })
      assert.equal(0, r.status, r.err)
      assert.same({ emu.image }, logged(emu))
    end)

    it("finding 15: a bad URL is named by where it came from: argument N, FILE:LINE, stdin:LINE", function()
      local good, bad = emu.image, "ftp://127.0.0.1/x.png"
      local said = ": the image URL must be an http:// or https:// URL, got '" .. bad .. "'"
      local r = run({ good, good .. "?n=2", bad, good })
      assert.equal(2, r.status)
      assert.equal("aliocr: argument 3" .. said .. "\nTry 'aliocr --help'.\n", r.err)
      -- Lines counted as in the file: comments, blank lines and a last line
      -- without a newline included.
      local text = "# images\n\n" .. good .. "\n   # indented comment\n  \n" .. bad .. "\r\n" .. good
      local file = scratch .. "/bad.urls"
      sh.write_all(file, text)
      r = run({ "-f", file, good }) -- arguments come first, but keep their own count
      assert.equal(2, r.status)
      assert.equal("aliocr: " .. file .. ":6" .. said .. "\nTry 'aliocr --help'.\n", r.err)
      sh.write_all(file, text:gsub("\r\n", "\n") .. "\n" .. bad .. "\n")
      r = run({ "-f", file })
      os.remove(file)
      assert.equal("aliocr: " .. file .. ":6" .. said .. "\nTry 'aliocr --help'.\n", r.err, "the first one")
      for _, args in ipairs({ {}, { "-f", "-" } }) do
        r = run(args, { stdin = text })
        assert.equal(2, r.status)
        assert.equal("aliocr: stdin:6" .. said .. "\nTry 'aliocr --help'.\n", r.err)
      end
      assert.same({}, emu:requests())
    end)

    it("finding 15: with no interface URL, the advice names the tool's own options and variables", function()
      local env = env_for(emu, { ALIOCR_ENDPOINT = false })
      local r = cli.run(scratch, env, { emu.image })
      assert.equal(2, r.status)
      assert.equal("", r.out)
      assert.equal("aliocr: no URL for interface 'advanced': give --endpoint or --advanced-url, or set " ..
        "ALIOCR_ENDPOINT or ALIOCR_ADVANCED_URL\nTry 'aliocr --help'.\n", r.err)
      r = cli.run(scratch, env, { "--handwriting", emu.image })
      assert.equal(2, r.status)
      assert.equal("aliocr: no URL for interface 'handwriting': give --endpoint or --handwriting-url, or set " ..
        "ALIOCR_ENDPOINT or ALIOCR_HANDWRITING_URL\nTry 'aliocr --help'.\n", r.err)
      -- An empty variable is no URL either; the other interface's URL does not count.
      r = cli.run(scratch, env_for(emu, { ALIOCR_ENDPOINT = "", ALIOCR_ADVANCED_URL = emu.advanced }),
        { "--handwriting", emu.image })
      assert.equal(2, r.status)
      assert.matches("^aliocr: no URL for interface 'handwriting'", r.err)
      for _, lua_name in ipairs({ "urls.", "aliocr.new", "endpoint in" }) do
        assert.falsy(r.err:find(lua_name, 1, true), r.err)
      end
      assert.same({}, emu:requests())
    end)
  end)
end)
