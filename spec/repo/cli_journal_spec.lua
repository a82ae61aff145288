-- bin/aliocr --journal FILE: each outcome journaled as it happens; a rerun
-- sends nothing the journal has done, lists (and does not resend) what it
-- has as billing unknown unless --retry-unknown; SIGKILL and SIGINT in the
-- middle of a run; a torn last line and a damaged middle one.
local cjson = require("cjson")
local socket = require("socket")
local cli = require("helpers.cli")
local emulator = require("helpers.emulator")
local sh = require("helpers.sh")
local util = require("helpers.util")

local q, read_all, write_all = sh.q, sh.read_all, sh.write_all

-- The journal's entries, decoded (a last line without its newline left out).
local function entries(path)
  local list = {}
  for line in read_all(path):gmatch("([^\n]*)\n") do list[#list + 1] = cjson.decode(line) end
  return list
end

-- The last entry of each image: image -> entry.
local function finals(path)
  local by = {}
  for _, e in ipairs(entries(path)) do by[e.image] = e end
  return by
end

local function final_state(e)
  if e.outcome == "result" or e.billed == true then return "done" end
  if e.billed == cjson.null then return "unknown" end
  return nil
end

local function urls_of(emu, n, tag)
  local list = {}
  for i = 1, n do list[i] = emu.image .. "?" .. (tag or "n") .. "=" .. i end
  return list
end

local function stdin_of(urls) return table.concat(urls, "\n") .. "\n" end

-- The emulator's request log: url -> how many times it was received.
local function received(emu)
  local seen = {}
  for _, e in ipairs(emu:requests()) do seen[e.params.url] = (seen[e.params.url] or 0) + 1 end
  return seen
end

local SUMMARY = "aliocr: journal [^\n]*: this run billed (%d+) %((%d+) answered, (%d+) cancelled in flight, " ..
  "(%d+) from the journal%); the journal holds (%d+) done %((%d+) billed%), (%d+) billing unknown\n"

describe("bin/aliocr --journal", function()
  local emu, dir, n = nil, nil, 0
  local function journal_path()
    n = n + 1
    return dir .. "/journal." .. n .. ".jsonl"
  end

  setup(function()
    dir = sh.tmpdir()
    emu = emulator.start({ "--port", "0", "--appcode", "demo" })
  end)
  teardown(function()
    util.stop_clean(emu)
    os.execute("rm -rf " .. q(dir))
  end)
  before_each(function() emu:reset() end)

  it("what was refused without billing (the quota used up) is sent by the rerun, once", function()
    local j = journal_path()
    local urls = urls_of(emu, 8, "quota")
    emu:settings({ quota = 3 })
    local first = cli.run(dir, cli.env_for(emu), { "-o", "json", "-c", "1", "--journal", j },
      { stdin = stdin_of(urls) })
    assert.equal(3, first.status, first.err) -- the quota: credentials or quota
    assert.equal(3, emu:settled_ledger().total.billed)
    emu:settings({ quota = false })
    local second = cli.run(dir, cli.env_for(emu), { "-o", "json", "-c", "2", "--journal", j },
      { stdin = stdin_of(urls) })
    assert.equal(0, second.status, second.err)
    local ledger = emu:settled_ledger().total
    assert.equal(8, ledger.billed)
    for _, u in ipairs(urls) do assert.equal("result", finals(j)[u].outcome) end
  end)

  it("a rerun sends nothing and prints the same", function()
    local j = journal_path()
    local urls = urls_of(emu, 40)
    local args = { "-o", "json", "-c", "8", "--journal", j }
    local first = cli.run(dir, cli.env_for(emu), args, { stdin = stdin_of(urls) })
    assert.equal(0, first.status, first.err)
    local billed, answered, _, skipped, done, jbilled, unknown = first.err:match(SUMMARY)
    assert.same({ "40", "40", "0", "40", "40", "0" }, { billed, answered, skipped, done, jbilled, unknown },
      first.err)
    assert.equal(40, emu:settled_ledger().total.billed)
    local by = finals(j)
    for _, u in ipairs(urls) do
      assert.equal("result", by[u].outcome)
      assert.equal("advanced", by[u].interface)
      assert.is_true(by[u].billed)
    end
    local second = cli.run(dir, cli.env_for(emu), args, { stdin = stdin_of(urls) })
    assert.equal(0, second.status, second.err)
    assert.same(cli.json_lines(first.out), cli.json_lines(second.out))
    billed, answered, _, skipped, done = second.err:match(SUMMARY)
    assert.same({ "0", "0", "40", "40" }, { billed, answered, skipped, done }, second.err)
    local ledger = emu:settled_ledger()
    assert.equal(40, ledger.total.billed)
    assert.equal(40, ledger.total.requests)
    -- Another interface is another image: sent.
    local hw = cli.run(dir, cli.env_for(emu), { "-o", "json", "--handwriting", "--journal", j, urls[1] })
    assert.equal(0, hw.status, hw.err)
    assert.equal(41, emu:settled_ledger().total.requests)
    assert.equal("handwriting", entries(j)[#entries(j)].interface)
  end)

  it("SIGINT: exits 130 with the summary; the calls in flight are journaled as unknown", function()
    emu:settings({ latency_ms = 300 })
    local j = journal_path()
    local urls = urls_of(emu, 40, "int")
    local p = cli.spawn(dir, cli.env_for(emu), { "-o", "json", "-c", "4", "--journal", j },
      { stdin = stdin_of(urls) })
    finally(function() p:wait(20) end)
    assert.truthy(p:until_(function(t) return select(2, t:output():gsub("\n", "")) >= 4 end, 20))
    socket.sleep(0.1)
    p:signal("INT")
    local r = p:wait(20)
    assert.equal(130, r.status, r.err)
    assert.matches(SUMMARY, r.err)
    assert.matches("\naliocr: interrupted: ", r.err)
    local billed, answered, in_flight = r.err:match(SUMMARY)
    assert.truthy(tonumber(in_flight) > 0, r.err)
    local by, unknown = finals(j), 0
    for _, e in pairs(by) do
      if final_state(e) == "unknown" then unknown = unknown + 1 end
    end
    assert.equal(tonumber(in_flight), unknown)
    local ledger = emu:settled_ledger()
    assert.equal(tonumber(answered), tonumber(billed))
    -- Every request the emulator got is journaled, as a result or as unknown.
    for u in pairs(received(emu)) do assert.truthy(by[u], u) end
    assert.truthy(ledger.total.requests < 40)
  end)

  it("tolerates a torn last line, and refuses a damaged middle line naming it", function()
    local j = journal_path()
    local urls = urls_of(emu, 3, "torn")
    local args = { "-o", "json", "--journal", j }
    for _, u in ipairs(urls) do args[#args + 1] = u end
    assert.equal(0, cli.run(dir, cli.env_for(emu), args).status)
    local text = read_all(j)
    -- Half of the last line (an outcome: the tool journals each image as
    -- sent before it is handed to the client), as if the tool had been
    -- killed while writing it.
    local last_start = text:sub(1, -2):match(".*\n()")
    local last = text:sub(last_start)
    local torn = cjson.decode(last).image
    write_all(j, text:sub(1, last_start - 1) .. last:sub(1, math.floor(#last / 2)))
    local r = cli.run(dir, cli.env_for(emu), args)
    -- The image of the torn line is as it was before: sent, billing unknown.
    assert.equal(1, r.status, r.err)
    assert.truthy(r.err:find("1 image whose billing is unknown, not sent again", 1, true), r.err)
    assert.truthy(r.err:find("\n  " .. torn .. "\n", 1, true), r.err)
    assert.equal(3, emu:settled_ledger().total.requests)
    -- Cut away: the journal is whole lines again, and appends go after them.
    assert.equal(text:sub(1, last_start - 1), read_all(j))
    r = cli.run(dir, cli.env_for(emu), { "-o", "json", "--retry-unknown", "--journal", j, torn })
    assert.equal(0, r.status, r.err)
    assert.equal(4, emu:settled_ledger().total.requests)
    local by = finals(j)
    for _, u in ipairs(urls) do assert.equal("result", by[u].outcome) end
    -- A damaged line that is not the last.
    local lines = {}
    for l in read_all(j):gmatch("[^\n]*\n") do lines[#lines + 1] = l end
    lines[2] = "{ not json\n"
    write_all(j, table.concat(lines))
    r = cli.run(dir, cli.env_for(emu), args)
    assert.equal(2, r.status)
    assert.matches("aliocr: journal " .. j:gsub("%p", "%%%0") .. ":2: not JSON", r.err)
    assert.equal(4, emu:settled_ledger().total.requests, "nothing sent")
    assert.equal(table.concat(lines), read_all(j), "left as it was")
  end)

  it("billing unknown: listed on a rerun and not resent; sent again with --retry-unknown", function()
    local j = journal_path()
    local urls = urls_of(emu, 6, "unknown")
    -- Two requests the emulator receives and answers too late: billed by it,
    -- unknown to the tool.
    emu:fault({ mode = "stall_headers", ms = 1500, ["then"] = "close", times = 2 })
    local args = { "-o", "json", "-c", "1", "--timeout", "0.3", "--retries", "0", "--journal", j }
    local r = cli.run(dir, cli.env_for(emu), args, { stdin = stdin_of(urls) })
    assert.equal(1, r.status, r.err)
    local by = finals(j)
    local unknown = {}
    for _, u in ipairs(urls) do
      if final_state(by[u]) == "unknown" then unknown[#unknown + 1] = u end
    end
    assert.equal(2, #unknown)
    assert.equal("timeout", by[unknown[1]].kind)
    -- The stalled requests are logged (and counted) when their stall ends.
    assert.equal(6, #emu:log_of(6))
    assert.equal(6, emu:settled_ledger().total.requests)
    r = cli.run(dir, cli.env_for(emu), args, { stdin = stdin_of(urls) })
    assert.equal(1, r.status, r.err)
    assert.matches("2 images whose billing is unknown, not sent again", r.err)
    for _, u in ipairs(unknown) do assert.truthy(r.err:find("\n  " .. u .. "\n", 1, true), r.err) end
    assert.equal(6, emu:settled_ledger().total.requests, "nothing resent")
    local _, _, _, _, done, _, nunknown = r.err:match(SUMMARY)
    assert.same({ "4", "2" }, { done, nunknown })
    r = cli.run(dir, cli.env_for(emu), { "-o", "json", "--retry-unknown", "--journal", j },
      { stdin = stdin_of(urls) })
    assert.equal(0, r.status, r.err)
    assert.equal(8, emu:settled_ledger().total.requests)
    local seen = received(emu)
    for _, u in ipairs(unknown) do assert.equal(2, seen[u]) end
    by = finals(j)
    for _, u in ipairs(urls) do assert.equal("result", by[u].outcome) end
    -- --retry-unknown without a journal is a usage error.
    assert.equal(2, cli.run(dir, cli.env_for(emu), { "--retry-unknown", urls[1] }).status)
  end)

  it("2,000 images killed with SIGKILL at a random point, then rerun: each billed once, the journal complete",
    function()
      -- Every answer 100 ms late: the calls go in waves of 16, and between
      -- waves every call under way has reached the emulator.
      emu:settings({ latency_ms = 100 })
      local started = socket.gettime()
      local j = journal_path()
      local urls = urls_of(emu, 2000, "kill")
      local args = { "-o", "json", "-c", "16", "--journal", j }
      math.randomseed(os.time())
      local at = math.random(200, 1600)
      local p = cli.spawn(dir, cli.env_for(emu), args, { stdin = stdin_of(urls) })
      finally(function() p:wait(60) end)
      local reached = p:until_(function() return select(2, read_all(j):gsub("\n", "")) >= at end, 40)
      assert.truthy(reached, "the journal did not reach " .. at .. " lines")
      socket.sleep(0.05)
      p:signal("KILL")
      p:wait(10)
      local before = #entries(j)
      assert.truthy(before >= at and before < 4000, "entries: " .. before)
      -- Rerun until every image is in the journal.
      local runs = 0
      repeat
        runs = runs + 1
        local r = cli.run(dir, cli.env_for(emu), args, { stdin = stdin_of(urls) })
        assert.truthy(r.status == 0 or r.status == 1, r.err)
        local by, count = finals(j), 0
        for _ in pairs(by) do count = count + 1 end
      until count == 2000 or runs == 3
      local by, unknown = finals(j), {}
      local seen = received(emu)
      for _, u in ipairs(urls) do
        assert.truthy(by[u], u)
        if final_state(by[u]) == "unknown" then unknown[#unknown + 1] = u end
        assert.truthy((seen[u] or 0) <= 1, u .. " sent twice")
      end
      -- An image killed in flight is unknown to the journal: the emulator's
      -- request log stands for the bill its user would check. One it never
      -- got is sent again with --retry-unknown; one it got is billed.
      local missing = {}
      for _, u in ipairs(unknown) do
        if not seen[u] then missing[#missing + 1] = u end
      end
      if #missing > 0 then
        local r = cli.run(dir, cli.env_for(emu), { "-o", "json", "--retry-unknown", "--journal", j },
          { stdin = stdin_of(missing) })
        assert.equal(0, r.status, r.err)
      end
      local ledger = emu:settled_ledger()
      seen = received(emu)
      local twice = {}
      for _, u in ipairs(urls) do
        if seen[u] ~= 1 then twice[#twice + 1] = u .. " " .. tostring(seen[u]) .. " " .. cjson.encode(by[u]) end
      end
      assert.same({}, twice, "images not received exactly once")
      assert.equal(2000, ledger.total.billed)
      assert.equal(2000, ledger.total.requests)
      by = finals(j)
      local count, done = 0, 0
      for _, e in pairs(by) do
        count = count + 1
        if final_state(e) == "done" then done = done + 1 end
      end
      assert.equal(2000, count)
      assert.equal(2000 - #unknown + #missing, done)
      print(string.format("# killed at %d journal lines; %d unknown (%d never received); %.1f s", at,
        #unknown, #missing, socket.gettime() - started))
    end)
end)
