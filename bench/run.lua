-- `make bench`: every benchmark against the emulator's canned backend on
-- loopback, each figure the median of interleaved rounds, as ratios
-- measured in this one run. Prints a table, and writes it with the raw
-- figures and two charts to build/bench/ (results.md, results.json,
-- sequential.png, batch.png).
--
--   lua5.4 bench/run.lua            (BENCH_ROUNDS=n to change the rounds, 5;
--                                    BENCH_REPLOT=1 redraws from results.json)
--
-- Needs what scripts/bootstrap installs with `bench`: wrk, gnuplot-nox.
local root = arg[0]:match("^(.*)/bench/[^/]*$") or "."
package.path = root .. "/lua/?.lua;" .. package.path
package.cpath = root .. "/build/?.so;" .. package.cpath
package.path = root .. "/bench/?.lua;" .. package.path

local cjson = require("cjson")
local common = require("common")
local socket = require("socket")
local http = require("socket.http")

local OUT = root .. "/build/bench"
local ROUNDS = tonumber(os.getenv("BENCH_ROUNDS") or "5")
local APPCODE = "bench-appcode"
local LIMIT = root .. "/build/bench/limit"
-- The CA file of the HTTPS contenders: the system store with the
-- emulator's test CA (bench/common.lua, write_ca_bundle).
local CA_BUNDLE = OUT .. "/ca-bundle.pem"

local q = common.q

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local ok = p:close()
  if not ok then error("failed: " .. cmd .. "\n" .. out, 2) end
  return out
end

local function say(...) io.stderr:write(...) io.stderr:write("\n") end

local function median(t)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  local n = #s
  if n % 2 == 1 then return s[(n + 1) / 2] end
  return (s[n / 2] + s[n / 2 + 1]) / 2
end

local ENV = "ALIOCR_APPCODE=" .. APPCODE .. " "

-- The emulator ------------------------------------------------------------------

local function start_emulator() return common.start_emulator(root, APPCODE) end

local function settings(emu, t) common.control(emu, "POST", "/settings", t) end

local function ledger(emu) return common.control(emu, "GET", "/ledger").total end

-- The contenders -------------------------------------------------------------------

local function parse_calls(out)
  local calls, seconds = out:match("calls (%d+) seconds ([%d.]+)")
  assert(calls, out)
  return tonumber(calls), tonumber(seconds)
end

local function rate_of(out)
  local calls, seconds = parse_calls(out)
  return calls / seconds
end

-- The command of a sequential contender (without its environment, ENV and
-- seq_env). The _https contenders are the same programs with the emulator's
-- HTTPS listener, trusting CA_BUNDLE.
local function seq_cmd(who, emu, calls, rss_at)
  local https = who:match("_https$")
  local url = https and emu.advanced_https or emu.advanced
  who = who:gsub("_https$", "")
  if who == "limit" then
    return q(LIMIT) .. " " .. q(url) .. " " .. q(emu.image) .. " " .. calls
  end
  return "lua5.4 " .. q(root .. "/bench/seq.lua") .. " " .. who .. " " .. q(url) .. " " ..
    q(emu.image) .. " " .. calls .. (rss_at and (" " .. rss_at) or "")
end

-- The environment a sequential contender needs besides ENV.
local function seq_env(who)
  return who:match("_https$") and ("BENCH_CA_FILE=" .. q(CA_BUNDLE) .. " ") or ""
end

local function wrk(url, connections, seconds, script)
  local out = sh(ENV .. "BENCH_IMAGE=" .. q(script and script.image or "") .. " wrk -t1 -c" .. connections ..
    " -d" .. seconds .. "s" .. (script and (" -s " .. q(root .. "/bench/post.lua")) or "") .. " " .. q(url))
  local rps = out:match("Requests/sec:%s*([%d.]+)")
  assert(rps, out)
  local non2xx = out:match("Non%-2xx or 3xx responses: (%d+)")
  assert(not non2xx, "wrk got errors:\n" .. out)
  return tonumber(rps)
end

-- Benchmarks ---------------------------------------------------------------------

local results = { rounds = ROUNDS, machine = {} }

local function machine()
  local m = results.machine
  m.cpu = (sh("grep -m1 'model name' /proc/cpuinfo"):match(":%s*(.-)%s*$")) or "?"
  m.cpus = tonumber((sh("nproc"):match("%d+")))
  m.kernel = sh("uname -r"):match("%S+")
  m.curl = require("aliocr").versions().curl
  m.lua = "Lua 5.4 (" .. sh("lua5.4 -v"):match("Lua ([%d.]+)") .. ")"
end

local function sequential(emu)
  say("sequential calls, one client (", ROUNDS, " rounds)")
  -- Calls per run: about a second and a half each, from a short first run.
  local n = {}
  local order = { "limit", "aliocr", "aliocr_signed", "luasocket", "limit_https", "aliocr_https" }
  for _, who in ipairs(order) do
    local rate = rate_of(sh(ENV .. seq_env(who) .. seq_cmd(who, emu, 300)))
    n[who] = math.max(500, math.floor(rate * 1.5))
  end
  order[#order + 1] = "wrk"
  local rates = {}
  for _, who in ipairs(order) do rates[who] = {} end
  for r = 1, ROUNDS do
    for k = 0, #order - 1 do
      local who = order[(r + k - 1) % #order + 1]   -- each round in another order
      if who == "wrk" then
        rates.wrk[r] = wrk(emu.advanced, 1, 2, { image = emu.image })
      else
        rates[who][r] = rate_of(sh(ENV .. seq_env(who) .. seq_cmd(who, emu, n[who])))
      end
    end
  end
  local s = {}
  for who, list in pairs(rates) do s[who] = { median = median(list), runs = list } end
  results.sequential = s
end

local function batch(emu)
  say("batch: 2000 calls, 20 ms added latency")
  settings(emu, { latency_ms = 20 })
  local points = {}
  for _, c in ipairs({ 10, 25, 50, 100 }) do points[#points + 1] = { concurrency = c, runs = {} } end
  local rounds = math.max(3, math.floor(ROUNDS / 2 + 0.5))
  for _ = 1, rounds do
    for _, pt in ipairs(points) do
      local before = ledger(emu).billed
      local _, seconds = parse_calls(sh(ENV .. "lua5.4 " .. q(root .. "/bench/batch.lua") .. " " ..
        q(emu.advanced) .. " " .. q(emu.image) .. " 2000 " .. pt.concurrency))
      assert(ledger(emu).billed - before == 2000, "the ledger does not show 2000 billed calls")
      pt.runs[#pt.runs + 1] = seconds
    end
  end
  settings(emu, { latency_ms = 0 })
  for _, pt in ipairs(points) do
    pt.median = median(pt.runs)
    pt.ideal = 2000 / pt.concurrency * 0.020
  end
  results.batch = points
end

-- What a new connection costs the client, over HTTPS against the floor
-- (openssl s_time on the same listener), and what a batch opens.
--
-- A new connection per call: the emulator closes the connection after each
-- answer to common.CLOSE_APPCODE (a fault rule for that credential only:
-- the same canned answer, with "Connection: close"), so a client with that
-- AppCode connects for every call, and nothing else about the call changes.
-- What one connection costs is then the CPU of a call on a new connection
-- less that of a call on a kept one (the same program with the first
-- AppCode). The other ways to get a new connection per call add costs or
-- hide the one measured: a fresh client per call pays its creation (and
-- with it a new CA store and connection cache each time, so nothing would be
-- "after the first"), and idle_timeout (1 s at least) with a pause would
-- make each connection cost a second of waiting and a cold cache.
--
-- The floor: `openssl s_time -new` against the same listener
-- (common.s_time), user + system CPU on both sides (os.clock() counts
-- both); `s_time -reuse`, the floor for a client that resumes sessions, is
-- kept for the note under the table.
local function new_connections(emu)
  say("new TLS connections: client CPU against openssl s_time (", ROUNDS, " rounds)")
  common.close_every_connection(emu, APPCODE, emu.image)
  -- One run of bench/tls.lua; checks on the emulator's count that each
  -- call had a connection of its own (new) or all of them one (kept).
  local function run(face, new, calls, ca, fail)
    local before = common.connections(emu).https
    local out = sh("ALIOCR_APPCODE=" .. (new and common.CLOSE_APPCODE or APPCODE) .. " lua5.4 " ..
      q(root .. "/bench/tls.lua") .. " " .. face .. " " .. q(emu.advanced_https) .. " " .. q(emu.image) .. " " ..
      q(ca or CA_BUNDLE) .. " " .. calls .. (fail and " fail" or ""))
    local first, n, seconds, failed = out:match("first ([%d.]+) calls (%d+) seconds ([%d.]+) failed (%d+)")
    assert(first, out)
    local opened = common.connections(emu).https - before
    if fail then
      assert(tonumber(failed) == calls + 1, out)
    else
      local want = new and calls + 1 or 1
      assert(opened == want, string.format("%s: %d connections for %d calls, not %d", face, opened, calls + 1, want))
    end
    return { first_ms = tonumber(first) * 1000, call_ms = tonumber(seconds) * 1000 / tonumber(n) }
  end
  -- Calls per run: about half a second of CPU each, from a short first run.
  local n = {}
  for _, face in ipairs({ "blocking", "submit" }) do
    n[face] = math.max(25, math.min(1000, math.floor(500 / run(face, true, 10).call_ms)))
  end
  n.fail = math.max(10, math.min(1000, math.floor(500 / run("blocking", false, 5, "-", true).call_ms)))
  local KEPT = 2000
  local order = { "s_time_new", "s_time_reuse", "blocking_new", "blocking_kept", "submit_new", "submit_kept",
    "system_store" }
  local runs = {}
  for _, k in ipairs(order) do runs[k] = {} end
  for r = 1, ROUNDS do
    for k = 0, #order - 1 do
      local what = order[(r + k - 1) % #order + 1]   -- each round in another order
      local face, kind = what:match("^(%a+)_(%a+)$")
      local m
      if what == "s_time_new" then m = common.s_time(emu, "-new")
      elseif what == "s_time_reuse" then m = common.s_time(emu, "-reuse -www /")
      elseif what == "system_store" then m = run("blocking", false, n.fail, "-", true)
      else m = run(face, kind == "new", kind == "new" and n[face] or KEPT) end
      runs[what][r] = m
    end
  end
  local function med(list, field)
    local v = {}
    for i, m in ipairs(list) do v[i] = m[field] end
    return median(v)
  end
  local t = { calls = n, kept_calls = KEPT, runs = runs }
  for _, how in ipairs({ "new", "reuse" }) do
    local list = runs["s_time_" .. how]
    t["s_time_" .. how] = { cpu_ms = med(list, "cpu_ms"), user_ms = med(list, "user_ms") }
  end
  for _, face in ipairs({ "blocking", "submit" }) do
    local new, kept = runs[face .. "_new"], runs[face .. "_kept"]
    t[face] = { first_ms = med(new, "first_ms"), new_call_ms = med(new, "call_ms"),
      kept_call_ms = med(kept, "call_ms") }
    t[face].connection_ms = t[face].new_call_ms - t[face].kept_call_ms
  end
  t.system_store = { first_ms = med(runs.system_store, "first_ms"), attempt_ms = med(runs.system_store, "call_ms") }
  common.control(emu, "DELETE", "/faults")
  results.tls = t
end

-- The connections a batch of 100 at concurrency 50 opens on a fresh client
-- (of the default concurrency), then a second batch on the same client
-- (bench/conns.lua), over HTTP and over HTTPS. With 20 ms added latency
-- the 50 calls of a batch's start are in flight together.
local function batch_connections(emu)
  say("connections opened by a batch of 100 at concurrency 50, then a second batch")
  settings(emu, { latency_ms = 20 })
  local c = {}
  for _, scheme in ipairs({ "http", "https" }) do
    local out = sh(ENV .. "lua5.4 " .. q(root .. "/bench/conns.lua") .. " " ..
      q(scheme == "https" and emu.advanced_https or emu.advanced) .. " " .. q(emu.image) .. " " ..
      q(scheme == "https" and CA_BUNDLE or "-") .. " " .. q(emu.control) .. " 100 50")
    local first, second = out:match("first (%d+) second (%d+)")
    assert(first, out)
    c[scheme] = { first = tonumber(first), second = tonumber(second) }
  end
  settings(emu, { latency_ms = 0 })
  results.connections = c
end

local function building()
  say("result building: 5000-line handwriting answer")
  local out = sh("lua5.4 " .. q(root .. "/bench/build.lua") .. " 5000 " .. (ROUNDS * 3))
  local a, c, bytes = out:match("aliocr ([%d.]+) cjson ([%d.]+) bytes (%d+)")
  assert(a, out)
  results.building = { aliocr = tonumber(a), cjson = tonumber(c), bytes = tonumber(bytes) }
end

local function memory(emu)
  say("memory: 100,000 calls")
  local out = sh(ENV .. seq_cmd("aliocr", emu, 100000, "1000,10000"))
  local at1k, at10k = out:match("rss 1000 (%d+)"), out:match("rss 10000 (%d+)")
  local at_end = out:match("rss end (%d+)")
  assert(at1k and at_end, out)
  results.memory = { rss_1k_kb = tonumber(at1k), rss_10k_kb = tonumber(at10k), rss_100k_kb = tonumber(at_end) }
end

local function instructions(emu)
  say("instructions per call (callgrind)")
  local function collected(cmd)
    local out = sh(ENV .. "valgrind --tool=callgrind --callgrind-out-file=/dev/null " .. cmd)
    local n = out:match("Collected : (%d+)")
    assert(n, out)
    return tonumber(n)
  end
  local per = {}
  for _, who in ipairs({ "limit", "aliocr", "aliocr_signed" }) do
    -- The difference of two runs: start-up costs cancel out.
    local small, big = 200, 1200
    local a = collected(seq_cmd(who, emu, small))
    local b = collected(seq_cmd(who, emu, big))
    per[who] = (b - a) / (big - small)
  end
  results.instructions = per
end

local function nginx_handler(emu)
  say("inside nginx: handler requests per second")
  local prefix = sh("mktemp -d"):match("%S+")
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  local f = assert(io.open(root .. "/bench/nginx.conf"))
  local conf = f:read("a"):gsub("@ROOT@", root):gsub("@PREFIX@", prefix):gsub("@PORT@", port)
  f:close()
  f = assert(io.open(prefix .. "/nginx.conf", "w"))
  f:write(conf)
  f:close()
  local pid = sh(ENV .. "BENCH_ADVANCED=" .. q(emu.advanced) .. " BENCH_IMAGE=" .. q(emu.image) ..
    " nginx -p " .. q(prefix .. "/") .. " -c " .. q(prefix .. "/nginx.conf") .. " -e " .. q(prefix .. "/error.log") ..
    " >/dev/null 2>&1 </dev/null & echo $!"):match("%d+")
  local base = "http://127.0.0.1:" .. port
  local up
  for _ = 1, 100 do
    local body, status = http.request(base .. "/direct")
    if body and status == 200 then up = true break end
    socket.sleep(0.05)
  end
  local ok, err = pcall(function()
    assert(up, "nginx did not start")
    local body, status = http.request(base .. "/ocr")
    assert(status == 200, "the handler failed: " .. tostring(body))
    local rps = { ocr = {}, direct = {} }
    for r = 1, math.max(3, ROUNDS) do
      for _, which in ipairs(r % 2 == 1 and { "ocr", "direct" } or { "direct", "ocr" }) do
        rps[which][#rps[which] + 1] = wrk(base .. "/" .. which, 16, 2)
      end
    end
    results.nginx = { ocr = median(rps.ocr), direct = median(rps.direct), runs = rps }
  end)
  os.execute("kill -TERM " .. pid .. " 2>/dev/null; while kill -0 " .. pid .. " 2>/dev/null; do sleep 0.05; done")
  os.execute("rm -rf " .. q(prefix))
  assert(ok, err)
end

-- The table --------------------------------------------------------------------------

local function table_rows()
  local s, r = results.sequential, {}
  local function row(name, aliocr, peer, ratio, target, holds)
    r[#r + 1] = { name, aliocr, peer, ratio, target, holds == nil and "" or (holds and "yes" or "**no**") }
  end
  local lim = s.limit.median
  row("sequential calls/s vs the C libcurl limit", string.format("%.0f", s.aliocr.median),
    string.format("%.0f", lim), string.format("%.3f", s.aliocr.median / lim), ">= 0.97", s.aliocr.median / lim >= 0.97)
  row("sequential calls/s, signature auth vs AppCode", string.format("%.0f", s.aliocr_signed.median),
    string.format("%.0f", s.aliocr.median), string.format("%.3f", s.aliocr_signed.median / s.aliocr.median), "", nil)
  row("sequential calls/s vs LuaSocket + lua-cjson", string.format("%.0f", s.aliocr.median),
    string.format("%.0f", s.luasocket.median), string.format("%.2f", s.aliocr.median / s.luasocket.median), "", nil)
  row("sequential calls/s vs wrk, 1 connection (the server's limit)", string.format("%.0f", s.aliocr.median),
    string.format("%.0f", s.wrk.median), string.format("%.3f", s.aliocr.median / s.wrk.median), "", nil)
  row("sequential calls/s over HTTPS vs the C libcurl limit over HTTPS", string.format("%.0f", s.aliocr_https.median),
    string.format("%.0f", s.limit_https.median), string.format("%.3f", s.aliocr_https.median / s.limit_https.median),
    "", nil)
  row("sequential calls/s, HTTPS vs HTTP", string.format("%.0f", s.aliocr_https.median),
    string.format("%.0f", s.aliocr.median), string.format("%.3f", s.aliocr_https.median / s.aliocr.median), "", nil)
  for _, pt in ipairs(results.batch) do
    if pt.concurrency == 50 then
      local ratio = pt.median / pt.ideal
      row("batch of 2000, 20 ms latency, concurrency 50: seconds vs ideal", string.format("%.3f", pt.median),
        string.format("%.3f", pt.ideal), string.format("%.3f", ratio), "<= 1.10", ratio <= 1.10)
    end
  end
  local t = results.tls
  local floor = t.s_time_new.cpu_ms
  for _, face in ipairs({ "blocking", "submit" }) do
    local ratio = t[face].connection_ms / floor
    row("new TLS connection after the first, " .. (face == "blocking" and "blocking calls" or "submit + wait") ..
      ": client CPU ms vs openssl s_time -new", string.format("%.3f", t[face].connection_ms),
      string.format("%.3f", floor), string.format("%.2f", ratio), "<= 1.5", ratio <= 1.5)
  end
  row("first TLS connection (the CA store loaded), blocking call: client CPU ms", string.format("%.2f",
    t.blocking.first_ms), "", "", "", nil)
  row("system CA store default, a handshake failing the check of the test CA: client CPU ms vs s_time -new",
    string.format("%.3f", t.system_store.attempt_ms), string.format("%.3f", floor),
    string.format("%.2f", t.system_store.attempt_ms / floor), "", nil)
  for _, scheme in ipairs({ "http", "https" }) do
    local c = results.connections[scheme]
    row("connections opened by a batch of 100 at concurrency 50 on a fresh client, then a second batch: " ..
      scheme:upper(), string.format("%d, %d", c.first, c.second), "", "", "50, 0", c.first == 50 and c.second == 0)
  end
  local b = results.building
  row("result building, 5000-line handwriting answer: ms vs cjson.decode",
    string.format("%.2f", b.aliocr * 1000), string.format("%.2f", b.cjson * 1000),
    string.format("%.2f", b.aliocr / b.cjson), "<= 1.5", b.aliocr / b.cjson <= 1.5)
  local m = results.memory
  local growth = (m.rss_100k_kb - m.rss_1k_kb) / 1024
  row("resident size growth, 1,000 to 100,000 calls: MiB", string.format("%.2f", growth),
    string.format("%.1f -> %.1f", m.rss_1k_kb / 1024, m.rss_100k_kb / 1024), "", "< 2 MiB", growth < 2)
  local i = results.instructions
  row("instructions per call (callgrind) vs the C limit", string.format("%.0f", i.aliocr),
    string.format("%.0f", i.limit), string.format("%.2f", i.aliocr / i.limit), "<= 1.15", i.aliocr / i.limit <= 1.15)
  row("instructions per call (callgrind), signature auth vs AppCode", string.format("%.0f", i.aliocr_signed),
    string.format("%.0f", i.aliocr), string.format("%.2f", i.aliocr_signed / i.aliocr), "", nil)
  local n = results.nginx
  row("inside nginx: handler req/s with an aliocr call vs none", string.format("%.0f", n.ocr),
    string.format("%.0f", n.direct), string.format("%.2f", n.ocr / n.direct), "", nil)
  return r
end

local function markdown(rows)
  local out = { "| benchmark | aliocr | peer | ratio | target | holds |", "|---|---|---|---|---|---|" }
  for _, r in ipairs(rows) do out[#out + 1] = "| " .. table.concat(r, " | ") .. " |" end
  local m = results.machine
  out[#out + 1] = ""
  out[#out + 1] = string.format("Medians of %d interleaved rounds; %s, %d CPUs, Linux %s, %s, %s.",
    results.rounds, m.cpu, m.cpus, m.kernel, m.lua, "libcurl " .. m.curl)
  local t = results.tls
  out[#out + 1] = ""
  out[#out + 1] = string.format("Client CPU per TLS connection, user + system (user only): openssl s_time " ..
    "-new %.3f ms (%.3f), one session resumed (-reuse -www /) %.3f ms (%.3f). aliocr: a call on a new " ..
    "connection %.3f ms, on a kept one %.3f ms (blocking calls; submit + wait: %.3f and %.3f); %d, %d and %d " ..
    "new connections a run (blocking, submit, system store); the CA file is the system store with the " ..
    "emulator's CA.", t.s_time_new.cpu_ms, t.s_time_new.user_ms, t.s_time_reuse.cpu_ms, t.s_time_reuse.user_ms,
    t.blocking.new_call_ms, t.blocking.kept_call_ms, t.submit.new_call_ms, t.submit.kept_call_ms,
    t.calls.blocking, t.calls.submit, t.calls.fail)
  return table.concat(out, "\n") .. "\n"
end

local function charts()
  local s = results.sequential
  local f = assert(io.open(OUT .. "/sequential.dat", "w"))
  for _, who in ipairs({ "limit", "aliocr", "aliocr_signed", "luasocket", "limit_https", "aliocr_https", "wrk" }) do
    local label = ({ limit = "C libcurl limit", aliocr = "aliocr", aliocr_signed = "aliocr,\\nsignature auth",
      luasocket = "LuaSocket\\n+ lua-cjson",
      wrk = "wrk\\n(the server's limit)", limit_https = "C libcurl limit,\\nHTTPS",
      aliocr_https = "aliocr,\\nHTTPS" })[who]
    f:write(string.format("\"%s\" %.1f\n", label, s[who].median))
  end
  f:close()
  f = assert(io.open(OUT .. "/batch.dat", "w"))
  for _, pt in ipairs(results.batch) do
    f:write(string.format("%d %.4f %.4f\n", pt.concurrency, pt.median, pt.ideal))
  end
  f:close()
  f = assert(io.open(OUT .. "/charts.gp", "w"))
  f:write(string.format([[
set terminal pngcairo size 1040,480 font "DejaVu Sans,11"
set output "%s/sequential.png"
set bmargin 5
set offsets 0, 0, graph 0.08, 0
set title "Sequential calls per second, one client, loopback"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9 relative
set yrange [0:*]
set ylabel "calls per second"
set grid ytics
unset key
plot "%s/sequential.dat" using 2:xtic(1) linecolor rgb "#3b75af"

set output "%s/batch.png"
set bmargin 4
set offsets 0, 0, 0, 0
set title "Batch of 2000 calls with 20 ms latency: wall time"
set style data linespoints
set logscale xy
set xrange [8:125]
set xlabel "concurrency"
set ylabel "seconds"
set xtics ("10" 10, "25" 25, "50" 50, "100" 100)
set key top right
plot "%s/batch.dat" using 1:2 title "aliocr batch" linewidth 2 pointtype 7, \
     "%s/batch.dat" using 1:3 title "ideal (calls / concurrency x 20 ms)" dashtype 2 linewidth 2
]], OUT, OUT, OUT, OUT, OUT))
  f:close()
  sh("gnuplot " .. q(OUT .. "/charts.gp"))
end

-- Main --------------------------------------------------------------------------------

sh("mkdir -p " .. q(OUT))
-- BENCH_REPLOT=1: the table and the charts again from build/bench/results.json.
if os.getenv("BENCH_REPLOT") == "1" then
  local f = assert(io.open(OUT .. "/results.json"))
  results = cjson.decode(f:read("a"))
  f:close()
  local md = markdown(table_rows())
  f = assert(io.open(OUT .. "/results.md", "w"))
  f:write(md)
  f:close()
  charts()
  io.write(md)
  os.exit(0)
end
machine()
local emu = start_emulator()
emu.image = emu.images .. "sample.png"
local ok, err = pcall(function()
  common.write_ca_bundle(emu, CA_BUNDLE)
  -- Each benchmark's wall time, in results.json and on stderr.
  results.seconds = {}
  local sections = { { "sequential", sequential }, { "batch", batch }, { "new_connections", new_connections },
    { "batch_connections", batch_connections }, { "building", building }, { "memory", memory },
    { "instructions", instructions }, { "nginx", nginx_handler } }
  for _, s in ipairs(sections) do
    local start = socket.gettime()
    s[2](emu)
    results.seconds[s[1]] = socket.gettime() - start
    say(string.format("  %.0f s", results.seconds[s[1]]))
  end
end)
emu.stop()
if not ok then
  io.stderr:write("bench: ", tostring(err), "\n")
  os.exit(1)
end

local rows = table_rows()
local md = markdown(rows)
local f = assert(io.open(OUT .. "/results.md", "w"))
f:write(md)
f:close()
f = assert(io.open(OUT .. "/results.json", "w"))
f:write(cjson.encode(results))
f:close()
charts()
io.write(md)
io.write("\nwritten: build/bench/results.md, results.json, sequential.png, batch.png\n")
