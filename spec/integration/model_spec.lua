-- The model-based test: random sequences of operations on one or more
-- clients of one emulator (submit, cancel, poll, wait, batches whose
-- on_progress re-enters, raises or yields, blocking calls, close, garbage
-- collection and finalizers that cancel or close, faults and settings on the
-- emulator between steps), each checked against a model of what every job,
-- call and batch must end as and against the emulator's request log and
-- ledger (spec/helpers/model.lua says which invariants).
--
-- Seeded and reproducible from the environment:
--   MODEL_SEED     the run's seed (default: from the clock); sequence i's seed
--                  derives from it, the first one is the seed itself
--   MODEL_OPS      operations in all (default 12000; 600 under valgrind)
--   MODEL_SEQS     sequences (default 40; 3 under valgrind)
--   MODEL_REPLAY   a file (as a failure prints) to play instead
--   MODEL_SKIP     op or action names not to make, comma-separated (gcobj,
--                  cobatch, yield, raise, progress.wait, cb.close, ...)
--   MODEL_SHRINK   seconds to spend shrinking failures (default 15; 0: none)
--   MODEL_WATCHDOG seconds an operation may take before it counts as hung (20)
--   MODEL_TRACE=1  print every op as it runs (to find the op of a crash; the
--                  printing changes when the collector runs finalizers)
--   MODEL_PROFILE=1 time per op kind; MODEL_AGGRESSIVE_GC the share of
--                  sequences run with a busier collector (0.3)
-- `make model` runs 60,000 operations under AddressSanitizer (and then
-- spec/integration/model_nginx_spec.lua, the same for the nginx transport).
local aliocr = require("aliocr")
local emulator = require("helpers.emulator")
local faults = require("helpers.faults")
local model = require("helpers.model")
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
  io.stdout:write("# model: ", line, "\n")
  io.stdout:flush()
end

local RUNTIME = (rawget(_G, "jit") and jit.version or _VERSION) ..
  (os.getenv("ASAN") == "1" and " (ASan+UBSan core)" or "") .. (util.VALGRIND and " (valgrind)" or "")

describe("the model-based test", function()
  local emu

  setup(function()
    emu = emulator.start({ "--port", "0", "--appcode", "m1", "--appcode", "m2", "--appcode", "m3",
      "--appcode", "m4", "--no-fetch", os.getenv("MODEL_TRACE") == "1" and "--verbose" or nil })
  end)

  teardown(function()
    if os.getenv("MODEL_TRACE") == "1" and emu then
      for line in emu:output():gmatch("[^\n]+") do
        if not line:find("%[notice%]") then say("emulator: " .. line) end
      end
    end
    util.stop_clean(emu)
  end)

  it("random operation sequences keep every invariant of the model", function()
    local seqs = math.max(1, math.floor(env_number("MODEL_SEQS", util.VALGRIND and 3 or 40)))
    local total_ops = math.floor(env_number("MODEL_OPS", util.VALGRIND and 600 or 12000))
    local per_seq = math.max(1, math.ceil(total_ops / seqs))
    local run_seed = math.floor(env_number("MODEL_SEED", (os.time() * 1000 + math.floor(socket.gettime() * 1000))
      % 2147483647))
    local shrink_budget = env_number("MODEL_SHRINK", 15)
    local skip = {}
    for name in (os.getenv("MODEL_SKIP") or ""):gmatch("[^,%s]+") do skip[name] = true end
    if not model.can_yield_across_pcall() then skip.yield = true end -- PUC Lua 5.1
    local env = {
      aliocr = aliocr, emu = emu, slow = util.slow, trace = os.getenv("MODEL_TRACE") == "1",
      watchdog = util.slow(env_number("MODEL_WATCHDOG", 20)),
    }
    if os.getenv("MODEL_PROFILE") == "1" then env.profile = {} end
    local cfg = { rows = faults.rows(), skip = skip, aggressive_gc = tonumber(os.getenv("MODEL_AGGRESSIVE_GC") or "") }

    -- The count hook of the watchdog does not fire in LuaJIT's compiled code.
    if rawget(_G, "jit") then
      jit.off()
      finally(function() jit.on() end)
    end

    local plan = {}
    local replay = os.getenv("MODEL_REPLAY")
    if replay and replay ~= "" then
      local chunk = assert(loadfile(replay))
      plan[1] = chunk()
      seqs = 1
    end
    local started = socket.gettime()
    local ops, nested, callbacks, finalizers, requests = 0, 0, 0, 0, 0
    local found, order = {}, {} -- by signature: the first failing sequence and how many failed so
    local seeds, cover = {}, {}
    for i = 1, seqs do
      local seq = plan[i]
      if not seq then
        local seed = model.sequence_seed(run_seed, i)
        seq = model.generate(seed, per_seq, cfg)
      end
      seeds[#seeds + 1] = model.literal(seq.seed)
      say(string.format("sequence %d/%d seed %s, %d ops", i, seqs, model.literal(seq.seed), #seq.ops) ..
        (env.profile and string.format(" (heap %.0f KB)", collectgarbage("count")) or ""))
      local rep = model.run(seq, env)
      ops, nested, callbacks = ops + rep.ops, nested + rep.nested, callbacks + rep.callbacks
      finalizers, requests = finalizers + rep.finalizers, requests + rep.requests
      for _, f in ipairs(rep.failures) do
        local entry = found[f.sig]
        if not entry then
          entry = { sig = f.sig, msg = f.msg, op = f.op, seq = seq, count = 0 }
          found[f.sig] = entry
          order[#order + 1] = entry
        end
        entry.count = entry.count + 1
      end
      for _, m in ipairs(rep.misuse) do say("  misuse raised inside callbacks: " .. m) end
      for k, v in pairs(rep.cover) do cover[k] = (cover[k] or 0) + v end
    end
    local elapsed = socket.gettime() - started
    say(string.format("%d sequences, %d operations (%d nested in callbacks and on_progress, %d callbacks run, " ..
      "%d finalizers, %d requests), run seed %d (sequence seeds %s), %.1f s, %s", seqs, ops, nested, callbacks,
      finalizers, requests, run_seed, #seeds <= 6 and table.concat(seeds, " ") or
      (table.concat(seeds, " ", 1, 3) .. " ... " .. seeds[#seeds]), elapsed, RUNTIME))

    local kinds = {}
    for k, v in pairs(cover) do kinds[#kinds + 1] = k .. " " .. v end
    table.sort(kinds)
    say("coverage: " .. table.concat(kinds, ", "))
    if env.profile then
      local names = {}
      for name in pairs(env.profile) do names[#names + 1] = name end
      table.sort(names, function(a, b) return env.profile[a].t > env.profile[b].t end)
      for _, name in ipairs(names) do
        local p = env.profile[name]
        say(string.format("  %-9s %6d ops %8.2f s, %d over 50 ms", name, p.n, p.t, p.slow or 0))
      end
    end
    if #order == 0 then return end
    -- Each distinct failure: where it showed first, shrunk while time allows.
    local lines = {}
    for k, entry in ipairs(order) do
      local seq, runs = entry.seq, 0
      local budget = shrink_budget / #order
      if budget >= 1 then
        local env2 = {}
        for key, v in pairs(env) do env2[key] = v end
        env2.watchdog = math.min(env.watchdog, util.slow(5))
        seq, runs = model.shrink(entry.seq, env2, entry.sig, budget)
      end
      local head = string.format("failure %d/%d: %s (in %d sequence%s)", k, #order, entry.sig, entry.count,
        entry.count == 1 and "" or "s")
      say(head)
      say("  " .. entry.msg)
      say(string.format("  seed %s, op %d; replay: MODEL_SEED=%s MODEL_SEQS=1 MODEL_OPS=%d " ..
        "spec/run spec/integration/model_spec.lua", model.literal(entry.seq.seed), entry.op,
        model.literal(entry.seq.seed), #entry.seq.ops))
      say(string.format("  %s (save as a file for MODEL_REPLAY=file; MODEL_TRACE=1 changes the collector's " ..
        "timing):", runs > 0 and string.format("shrunk to %d ops in %d runs", #seq.ops, runs) or
        string.format("its %d ops (not shrunk)", #seq.ops)))
      for line in model.format(seq):gmatch("[^\n]+") do say("    " .. line) end
      lines[#lines + 1] = head .. ": " .. entry.msg .. " (seed " .. model.literal(entry.seq.seed) .. ")"
    end
    error(#order .. " distinct failures:\n" .. table.concat(lines, "\n"), 0)
  end)
end)
