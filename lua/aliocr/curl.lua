--- The libcurl transport: calls on the C engine (src/engine.c), outside
-- nginx. A transport is a module with these fields, which the client reads
-- instead of asking which transport it has (the nginx one is
-- lua/aliocr/resty.lua):
--
-- - `name`: `"curl"` or `"resty"`;
-- - `light_threads`: calls run in light threads that interleave and can be
--   cut off at any yield (so the client counts a call from its first send,
--   and a batch runs as threads); false here;
-- - `supports_jobs`: submit, poll and wait are available;
-- - `unsupported(settings)`: why it cannot take a client's settings, or nil;
-- - `engine(config, settings)`: the engine of a client, whose `perform(
--   interface, image_url, params, method, timeout_ms)` returns the
--   response table of the transport contract (src/response.c), as `add`,
--   `run` and `cancel` do for jobs;
-- - `check_place()`: why no call can be made here and now, or nil;
-- - `exiting()`: why nothing new is to start (the host shuts down), or nil;
-- - `sleep(seconds)`: a pause between attempts;
-- - `later(seconds, fn)`: runs `fn()` then, where nothing else drives the
--   client (nginx's timers); absent here, where the jobs' drive does.
-- @module aliocr.curl
-- @local
local core = require("aliocr.core")
local resty = require("aliocr.resty")

local M = { name = "curl", light_threads = false, supports_jobs = true }

function M.unsupported() return nil end

--- The C engine: a connection cache for the client's concurrency and one
-- blocking call (a batch raises it to its own, see client/batch.lua).
function M.engine(config, s)
  return core.engine(config, {
    decode = s.decode, max_connections = s.concurrency + 1, idle_timeout = s.idle_timeout,
  })
end

-- Whether this process runs nginx's Lua module: it cannot change.
local in_nginx

function M.check_place()
  if in_nginx == nil then in_nginx = resty.available() end
  if in_nginx then
    return "the curl transport would block nginx's worker: inside nginx use transport \"resty\" (the default there)"
  end
  return nil
end

function M.exiting() return nil end

--- Blocks (a SIGINT caught by core.catch_interrupts ends it early).
M.sleep = core.sleep

return M
