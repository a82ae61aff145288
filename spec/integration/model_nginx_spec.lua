-- The model-based test of the nginx transport (issue 19's acceptance): random
-- sequences of operations on the shared client of a test nginx's worker and
-- on clients of single requests (blocking calls, batches whose on_progress
-- raises, sleeps, calls, closes or exits, light threads killed, ngx.exit and
-- error() mid-call, downstream hang-ups, close from another light thread),
-- with random faults on the emulator between steps, each checked against the
-- emulator's log and ledger, nginx's error log and the worker's RSS
-- (spec/helpers/model_nginx.lua says which invariants).
--
-- Seeded and reproducible from the environment (as spec/integration/model_spec.lua):
--   MODEL_SEED     the run's seed (default: from the clock); sequence i's seed
--                  derives from it, the first one is the seed itself
--   MODEL_OPS      operations in all (default 300 under lua5.4, 40 under the
--                  other runtimes: the nginx side is LuaJIT whatever runs the
--                  spec)
--   MODEL_SEQS     sequences (default 10; 2 under the other runtimes)
--   MODEL_REPLAY   a file (as a failure prints) to play instead
--   MODEL_SKIP     op names not to make, comma-separated (kill, exit, throw,
--                  abort, closeother, par, fault, ...)
--   MODEL_SHRINK   seconds to spend shrinking failures (default 20; 0: none)
--   MODEL_RSS_MB   how far the worker's RSS may grow over its size at the
--                  start (default 64)
--   MODEL_TRACE=1  print every op as it runs
-- At length: MODEL_OPS=5000 MODEL_SEQS=100 spec/run spec/integration/model_nginx_spec.lua
-- (about 10 minutes).
local emulator = require("helpers.emulator")
local faults = require("helpers.faults")
local mn = require("helpers.model_nginx")
local nginx = require("helpers.nginx")
local socket = require("socket")
local util = require("helpers.util")

local function env_number(name, default)
  local v = os.getenv(name)
  if v == nil or v == "" then return default end
  local n = tonumber(v)
  if not n or n < 0 then error(name .. " must be a number >= 0, got '" .. v .. "'") end
  return n
end

local function say(line)
  io.stdout:write("# model (nginx): ", line, "\n")
  io.stdout:flush()
end

local MAIN = _VERSION == "Lua 5.4" and not rawget(_G, "jit")

local function handler(name, extra)
  local call = 'require("helpers.model_nginx_case").'
  return "    location = /model/" .. name .. " {\n" .. (extra or "") ..
    "      content_by_lua_block { " .. call .. (name == "abortable" and "op" or name) .. "() }\n" ..
    ((name == "op" or name == "abortable") and ("      log_by_lua_block { " .. call .. "log() }\n") or "") ..
    "    }\n"
end

local LOCATIONS = "    client_body_buffer_size 1m;\n" .. handler("op") ..
  handler("abortable", "      lua_check_client_abort on;\n") .. handler("rss") .. handler("reset") .. handler("report")

if not util.nginx_only_here() then
  describe("the model-based test of the nginx transport", function() pending(util.NGINX_ONLY) end)
  return
end

describe("the model-based test of the nginx transport", function()
  local emu, ngx_

  setup(function()
    emu = emulator.start({ "--port", "0", "--https-port", "0", "--appcode", "m1", "--appcode", "m2", "--no-fetch" })
    local conf = nginx.test_config(emu.ca_file, LOCATIONS)
    -- MODEL_NGINX_LOG=info (or debug): more of nginx's log in the trace.
    local level = os.getenv("MODEL_NGINX_LOG")
    if level and level ~= "" then
      conf = conf:gsub("error_log logs/error.log warn;", "error_log logs/error.log " .. level .. ";")
    end
    ngx_ = nginx.start(conf, {})
  end)

  teardown(function()
    if ngx_ then assert.same({}, ngx_:stop()) end
    util.stop_clean(emu)
  end)

  it("items 2 and 14 (acceptance): random sequences of calls, batches, kills, ngx.exit, hang-ups and closes " ..
     "inside nginx keep stats equal to the ledger, errors as objects and the worker's RSS bounded", function()
    local seqs = math.max(1, math.floor(env_number("MODEL_SEQS", MAIN and 10 or 2)))
    local total_ops = math.floor(env_number("MODEL_OPS", MAIN and 300 or 40))
    local per_seq = math.max(1, math.ceil(total_ops / seqs))
    local run_seed = math.floor(env_number("MODEL_SEED", (os.time() * 1000 + math.floor(socket.gettime() * 1000))
      % 2147483647))
    local shrink_budget = env_number("MODEL_SHRINK", 20)
    local rss_mb = env_number("MODEL_RSS_MB", 64)
    local skip = {}
    for name in (os.getenv("MODEL_SKIP") or ""):gmatch("[^,%s]+") do skip[name] = true end
    local cfg = { rows = faults.rows(), skip = skip }
    local env = { emu = emu, nginx = ngx_, trace = os.getenv("MODEL_TRACE") == "1", rss = {},
      watchdog = util.slow(120) }

    local plan = {}
    local replay = os.getenv("MODEL_REPLAY")
    if replay and replay ~= "" then
      local seq = assert(loadfile(replay))()
      -- A replay file of the libcurl model (spec/integration/model_spec.lua) is not ours.
      if seq.nginx then
        plan[1] = seq
        seqs = 1
      end
    end
    local started = socket.gettime()
    local ops, requests = 0, 0
    local found, order, seeds, cover = {}, {}, {}, {}
    for i = 1, seqs do
      local seq = plan[i] or mn.generate(mn.sequence_seed(run_seed, i), per_seq, cfg)
      seeds[#seeds + 1] = mn.literal(seq.seed)
      say(string.format("sequence %d/%d seed %s, %d ops", i, seqs, mn.literal(seq.seed), #seq.ops))
      local rep = mn.run(seq, env)
      ops, requests = ops + rep.ops, requests + rep.requests
      for _, f in ipairs(rep.failures) do
        local entry = found[f.sig]
        if not entry then
          entry = { sig = f.sig, msg = f.msg, op = f.op, seq = seq, count = 0 }
          found[f.sig] = entry
          order[#order + 1] = entry
        end
        entry.count = entry.count + 1
      end
      for k, v in pairs(rep.cover) do cover[k] = (cover[k] or 0) + v end
    end
    local elapsed = socket.gettime() - started
    local rss = env.rss
    say(string.format("%d sequences, %d operations, %d requests, run seed %d (sequence seeds %s), %.1f s; " ..
      "worker RSS %s KB at the start, at most %s KB (%s), %d samples", seqs, ops, requests, run_seed,
      #seeds <= 6 and table.concat(seeds, " ") or (table.concat(seeds, " ", 1, 3) .. " ... " .. seeds[#seeds]),
      elapsed, tostring(rss.base), tostring(rss.peak), tostring(rss.peak_at), rss.samples or 0))
    local kinds = {}
    for k, v in pairs(cover) do kinds[#kinds + 1] = k .. " " .. v end
    table.sort(kinds)
    say("coverage: " .. table.concat(kinds, ", "))

    if rss.base and rss.peak and rss.peak > rss.base + rss_mb * 1024 then
      local sig = "worker-rss-unbounded"
      found[sig] = { sig = sig, msg = string.format("the worker's RSS went from %d KB to %d KB (%s), over %d MB more",
        rss.base, rss.peak, rss.peak_at, rss_mb), op = 0, count = 1, noreplay = true }
      order[#order + 1] = found[sig]
    end
    if #order == 0 then return end

    local lines = {}
    for k, entry in ipairs(order) do
      local head = string.format("failure %d/%d: %s (in %d sequence%s)", k, #order, entry.sig, entry.count,
        entry.count == 1 and "" or "s")
      say(head)
      say("  " .. entry.msg)
      if entry.seq then
        local seq, runs = entry.seq, 0
        local budget = shrink_budget / #order
        if budget >= 1 then seq, runs = mn.shrink(entry.seq, env, entry.sig, budget) end
        say(string.format("  seed %s, op %d; replay: MODEL_SEED=%s MODEL_SEQS=1 MODEL_OPS=%d " ..
          "spec/run spec/integration/model_nginx_spec.lua", mn.literal(entry.seq.seed), entry.op,
          mn.literal(entry.seq.seed), #entry.seq.ops))
        say(string.format("  %s (save as a file for MODEL_REPLAY=file):", runs > 0 and
          string.format("shrunk to %d ops in %d runs", #seq.ops, runs) or
          string.format("its %d ops (not shrunk)", #seq.ops)))
        local text = mn.format(seq):gsub("^return {", "return {\n  nginx = true,")
        for line in text:gmatch("[^\n]+") do say("    " .. line) end
        lines[#lines + 1] = head .. ": " .. entry.msg .. " (seed " .. mn.literal(entry.seq.seed) .. ")"
      else
        lines[#lines + 1] = head .. ": " .. entry.msg
      end
    end
    error(#order .. " distinct failures:\n" .. table.concat(lines, "\n"), 0)
  end)
end)
