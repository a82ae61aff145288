-- Small helpers shared by the specs.
local socket = require("socket")
local luassert = require("luassert") -- busted's assert, which helpers do not see as a global

local M = {}

--- What Emulator:stop() returns when nothing was left behind.
M.NOTHING_LEFT = { processes = {}, files = {} }

--- Stops an emulator (if any) and asserts it left nothing behind.
function M.stop_clean(emu)
  if emu then luassert.same(M.NOTHING_LEFT, emu:stop()) end
end

--- Polls `check` until it returns a true value (which it returns) or
-- `seconds` (default 5) pass (then nil).
function M.eventually(check, seconds)
  local deadline = socket.gettime() + (seconds or 5)
  repeat
    local v = check()
    if v then return v end
    socket.sleep(0.05)
  until socket.gettime() > deadline
  return nil
end

--- A port on loopback that nothing listens on.
--- Asserts that the `n` arrival times `t` (sorted) are paced at `qps`: no
-- j-th arrival after an i-th sooner than (j - i) / qps, less `jitter`
-- seconds (the time from a token to the request's arrival varies from one
-- request to the next, most under valgrind; default 0.1). A burst, or a
-- limiter per process where one was to be shared, fails it.
function M.assert_paced(t, qps, n, jitter)
  jitter = jitter or 0.1
  luassert.equal(n, #t)
  for i = 1, #t do
    for j = i + 1, #t do
      luassert(t[j] - t[i] >= (j - i) / qps - jitter,
        ("requests %d and %d arrived %.3f s apart (%d tokens at %g/s take %.3f s)"):format(i, j, t[j] - t[i],
          j - i, qps, (j - i) / qps))
    end
  end
end

function M.closed_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return port
end

--- A header of a logged request, whatever the case of its name (the first
-- value of a repeated one).
function M.header(entry, name)
  for k, v in pairs(entry.headers or {}) do
    if k:lower() == name:lower() then return type(v) == "table" and v[1] or v end
  end
  return nil
end

--- An upper bound on a duration, widened when the specs run inside
-- valgrind (spec/run VALGRIND=1), which makes everything far slower: the
-- bounds check behaviour (not blocking, running at once), not speed.
local SLOWDOWN = os.getenv("VALGRIND") == "1" and 10 or 1
function M.slow(seconds) return seconds * SLOWDOWN end

--- True when the specs run inside valgrind.
M.VALGRIND = SLOWDOWN > 1

--- Whether the specs of code that runs only inside nginx (where it is
-- LuaJIT whatever runs the spec) run here: once per `make test`, under
-- lua5.4 (spec/run's default), not again under the other runtimes, valgrind
-- or ASan, which would trace only the spec's own process.
function M.nginx_only_here()
  local lua = os.getenv("LUA")
  return (lua == nil or lua == "" or lua == "lua5.4") and os.getenv("VALGRIND") ~= "1" and
    os.getenv("ASAN") ~= "1"
end

--- Why such a spec does not run here.
M.NGINX_ONLY = "runs once per make test, under lua5.4: the code it tests runs inside nginx, under LuaJIT"

--- math.type where the runtime has it (Lua 5.3+); before, numbers have no
-- subtype, and a whole number counts as "integer".
function M.number_type(x)
  if math.type then return math.type(x) end
  if type(x) ~= "number" then return nil end
  return x == math.floor(x) and "integer" or "float"
end

return M
