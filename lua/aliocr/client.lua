--- The client: made by `aliocr.new`, it calls the two interfaces, one image
-- at a time (`recognize`, `handwriting`), many at once (`batch`), or without
-- ever blocking (`submit`, `poll`, `wait`), and counts what was billed.
--
-- Every call returns a @{aliocr.Result} or `nil` and an @{aliocr.Error};
-- misuse (a wrong type, an unknown option, a URL that is not http(s))
-- raises instead, with a message that says what to fix, pointing at the
-- caller's line.
-- @module aliocr.client
local core = require("aliocr.core")
local reserve_stack = core.reserve_stack
local curl = require("aliocr.curl")
local budget = require("aliocr.budget")
local limiter = require("aliocr.limiter")
local options = require("aliocr.options")
local oss = require("aliocr.oss")
local resty = require("aliocr.resty")

options.own()
local fail, whole, BATCH_OPTIONS = options.fail, options.whole, options.BATCH_OPTIONS

local Client = {}
Client.__index = Client
Client.__name = "aliocr.Client"

--- A new client: see @{aliocr.new}, which is this function.
-- @local
function Client.new(opts)
  local s = options.client(opts, resty.available())
  local via = s.transport == "resty" and resty or curl
  local why = via.unsupported(s)
  if why then fail(why) end
  local self = setmetatable({
    _urls = s.urls,
    _method = s.method,
    _timeout = s.timeout,
    _retries = s.retries,
    _retry_unknown = s.retry_unknown,
    _retry_delay = s.retry_delay,
    _retry_max_delay = s.retry_max_delay,
    _concurrency = s.concurrency,
    _stats = { requests = 0, attempts = 0, billed = 0, not_billed = 0, unknown = 0, errors = {}, uploads = 0,
      deletes = 0 },
    -- Jobs (see "Jobs" below): the queue of submitted jobs waiting for a
    -- slot (an array read from _qhead; a cancelled job stays in it, skipped,
    -- so that cancelling is O(1)) and how many of them are still queued;
    -- the attempts under way, by engine id (jobs of submit and of batch);
    -- the submitted ones among them (they count against concurrency); the
    -- jobs waiting for a retry (a set); the finished submitted jobs whose
    -- callback has not run (an array read from _fhead); submitted jobs not
    -- finished; outcomes so far (to see that something finished).
    _queue = {}, _qhead = 1, _qtail = 0, _nqueued = 0, _running = {}, _active = 0, _retrying = {},
    _finished = {}, _fhead = 1, _ftail = 0, _pending = 0, _outcomes = 0,
    -- Responses the engine handed over that are not handled yet (an error
    -- while handling one leaves the rest for the next drive), and the job
    -- whose attempt is being started.
    _unhandled = {}, _uhead = 1, _utail = 0, _starting = nil,
    -- Objects of cancelled jobs to remove (see Client:_orphan), and the
    -- deletes of them under way (key by engine id).
    _orphans = {}, _cleanups = {},
    -- The objects of blocking calls, stored and not deleted yet (a set of keys).
    _live = {},
    -- The plans of calls with no options (by kind).
    _plans = {},
  }, Client)
  -- The transport's module: its properties and functions say how it runs
  -- (see lua/aliocr/curl.lua; `_via.name` is "curl" or "resty").
  self._via = via
  -- What every request of the client shares, handed to the core once (it
  -- takes the fields it needs from the settings): both transports build
  -- each request from it (src/request.c).
  self._config = core.config(s)
  s.appcode, s.app_key, s.app_secret = nil, nil, nil
  s.decode = options.json_decoder(s.json_max_depth)
  self._engine = via.engine(self._config, s)
  -- Local images: stored in OSS (its credentials go into the C signer), or
  -- by the caller's uploader.
  self._max_image_bytes, self._uploader = s.max_image_bytes, s.uploader
  if s.oss then self._store = oss.new(s.oss) end
  s.oss = nil
  if s.budget then self._budget = budget.new(s.budget) end
  if s.rate_limit then
    s.rate_limit.sleep = via.sleep -- (inside nginx, to wait for a shared dict's lock)
    self._limiter = limiter.new(s.rate_limit)
  end
  return self
end

function Client:__tostring()
  if self._closed then return "aliocr.Client (closed)" end
  return "aliocr.Client (" .. tostring(self._config) .. ")"
end

local function check_open(self)
  if getmetatable(self) ~= Client then fail("call client methods with ':'") end
  if self._closed then fail("attempt to use a closed client") end
end

-- One operation of a client (a call, poll, wait, batch) runs as a protected
-- call with _in_op set. A finalizer (__gc) can run at any allocation, in the
-- middle of the client's own code: while _in_op is set, a close from one is
-- put off to the end of the operation (cancel is safe at any time), and any
-- other use of the client from one raises. User code (callbacks,
-- on_progress) runs with _in_op cleared, so that it may do anything.
local function finish(self, ok, ...)
  self._in_op = false
  if self._close_pending then
    local closed, e = pcall(self._close_now, self)
    if not closed and ok then error(e, 0) end
  end
  if not ok then error((...), 0) end
  return ...
end

function Client:_op(f, ...)
  if self._via.light_threads then return f(self, ...) end -- they interleave: no such guard
  if self._in_op then
    fail("a client was used from a finalizer (__gc) in the middle of one of its own calls; " ..
      "only job:cancel() and client:close() may be called there")
  end
  self._in_op = true
  return finish(self, pcall(f, self, ...))
end

local function restore(self, saved, ...)
  self._in_op = saved
  return ...
end

-- Runs user code `f(...)` (an uploader, its clean-up) from inside an
-- operation, with _in_op cleared so that it may use the client: pcall's
-- results.
function Client:_pcall_user(f, ...)
  local saved = self._in_op
  self._in_op = false
  return restore(self, saved, pcall(f, ...))
end

-- Runs a callback `f(...)` as _pcall_user does, raising its error; not once
-- the client is closed. The stack is grown first: the call could otherwise
-- grow it, run a finalizer there that closes the client, and so call f
-- after the check (see core.reserve_stack).
function Client:_user(f, ...)
  reserve_stack()
  if self._closed then return end
  local ok, e = self:_pcall_user(f, ...)
  if not ok then error(e, 0) end
end

--- A client.
-- @type Client

--- Reads an image with interface one (文字识别高精版, "advanced": the
-- interface at `urls.advanced`), waiting for the answer; inside nginx the
-- call yields to nginx instead of blocking. Failures that were not billed
-- and may pass are tried again (`retries`, with back-off: see
-- @{aliocr.Error}).
--
-- The image URL is sent as a WHATWG URL parser (a browser, curl) writes it:
-- a space and bytes outside the URL code points are percent-encoded,
-- existing `%XX` kept (`aliocr.url`). A non-string or non-http(s) image
-- URL, one with a control character, a bad host or port, one over 64 KiB
-- once encoded, or no URL configured for the interface, raises.
--
-- A local image is `{ file = path }` or `{ bytes = data }` (either with an
-- optional `name`, which an uploader is told); `{ url = ... }` is a URL.
-- It is checked before anything is sent (readable, not empty, at most
-- `max_image_bytes`, a PNG, JPEG, BMP, GIF or WebP: else an error of kind
-- `image`), stored (in OSS, the `oss` option, or by the `uploader`: else
-- an error of kind `storage`; neither is billed, and the service is not
-- called), read by the service through its URL (OSS: a V4 presigned URL
-- valid `oss.expires` seconds), and removed after the call whatever its
-- outcome (unless `oss.keep`); a failed removal is the result's (or
-- error's) `cleanup_error`. A file is streamed to OSS from disk, not read
-- into Lua (inside nginx it is read whole: nginx's sockets take strings).
-- A local image with neither `oss` nor `uploader` raises.
-- @tparam string|table image_url the image's http(s) URL, which the service
--   downloads; or a local image
-- @tparam[opt] table opts the call's options (each defaults to the
--   client's setting, where it has one):
-- @tparam[opt] string|number opts.show the API's display mode: absent, empty
--   or 0 gives `data` as one string, 1 as an array of `{words}` lines (a
--   whole number is sent without a `.0`)
-- @tparam[opt] table opts.params more parameters, `{ name = string|number|boolean }`
--   (not `url`, nor `show` when `opts.show` is given), sent sorted by name
-- @tparam[opt] number opts.timeout seconds for one attempt (the client's
--   `timeout`); in (0, 1000000]
-- @tparam[opt] string opts.method `"POST"` or `"GET"` (the client's `method`)
-- @tparam[opt] int opts.retries further attempts (the client's `retries`);
--   in [0, 1000]
-- @treturn[1] aliocr.Result the result
-- @return[2] nil
-- @treturn[2] aliocr.Error what went wrong, and whether it was billed
-- @raise on misuse, or when no URL is configured for the interface
-- @usage local res, err = client:recognize("https://example.com/a.png", { show = 1 })
function Client:recognize(image_url, opts)
  check_open(self)
  return self:_op(self._call, "recognize", image_url, opts)
end

--- Reads an image with interface two (手写体识别, "handwriting": the
-- interface at `urls.handwriting`), which gives each line's position too
-- (`res.lines[i].position`). Otherwise as @{Client:recognize}.
-- @tparam string|table image_url the image's http(s) URL, or a local image
-- @tparam[opt] table opts the call's options, as for @{Client:recognize}
-- @treturn[1] aliocr.Result the result
-- @return[2] nil
-- @treturn[2] aliocr.Error what went wrong, and whether it was billed
-- @raise on misuse
function Client:handwriting(image_url, opts)
  check_open(self)
  return self:_op(self._call, "handwriting", image_url, opts)
end

--- Calls, attempts and outcomes so far (a copy); also after `close`.
--
-- Inside nginx (transport `"resty"`) a call is counted when its first
-- request goes out, not when it ends: nginx can cut a light thread off at
-- any time (the client hangs up under `lua_check_client_abort on`,
-- `ngx.exit`, `ngx.thread.kill`, an error in the handler) and no code of the
-- call runs after that, while the gateway may bill what it received. So
-- until its answer settles it, a call counts as a `cancelled` call (in
-- `errors.cancelled`) whose attempt under way has billing unknown (in
-- `unknown`); between retries, as a cancelled call with the unknown attempts
-- so far (`not_billed` if none). Its answer replaces these provisional counts
-- by its real outcome, at once (no other light thread sees the two mixed); a
-- call cut off keeps them, as @{Job:cancel} counts a job cancelled under way.
-- So a client shared by many requests always has the gateway's count within
-- `[billed, billed + unknown]`. A batch's images that were never sent (the
-- batch stopped: on_progress raised, the client was closed, nginx's worker
-- is exiting, the light thread that called batch was killed) count as
-- cancelled calls, not billed; those of a batch cut off with its every
-- thread (ngx.exit, an error in the handler) are not counted, and none of
-- them was sent. The curl transport counts a call when it ends (a job
-- cancelled or a batch stopped counts at once).
-- @treturn aliocr.Stats the counts
function Client:stats()
  if getmetatable(self) ~= Client then fail("call client methods with ':'") end
  local s = self._stats
  local copy = { requests = s.requests, attempts = s.attempts, billed = s.billed,
                 not_billed = s.not_billed, unknown = s.unknown, errors = {} }
  if self._store or self._uploader then copy.uploads, copy.deletes = s.uploads, s.deletes end
  if self._budget then copy.budget = self._budget:stats() end
  if self._limiter then copy.rate_limit = self._limiter:stats() end
  for k, v in pairs(s.errors) do copy.errors[k] = v end
  return copy
end

--- Cancels the jobs still pending, frees the client's connections and wipes
-- its credentials; safe to call twice. The local images of the jobs it
-- cancels (and of any cancelled before) are removed first: the OSS deletes
-- go out at once and close waits for them up to the client's `timeout` (and
-- first, after an upload that was cut off, until OSS may have stored it:
-- twice the timeout at most), and an uploader's clean-ups run. A client
-- collected without `close` does not remove them. No callback runs after close (a job
-- whose answer was in keeps it in `job.result` or `job.error`). A closed
-- client raises on use (`stats` and `pending` still answer); a
-- client collected without `close` frees everything too. Called from a
-- finalizer (`__gc`) that ran in the middle of one of the client's own calls,
-- it returns at once and the rest is done when that call returns: nothing
-- new starts in between. On Lua 5.4 a client
-- can be a to-be-closed variable (`local client <close> = aliocr.new{...}`).
function Client:close()
  if getmetatable(self) ~= Client then fail("call client methods with ':'") end
  if self._closed then
    -- A close put off by an operation that never ended (a callback of it
    -- yielded for good, say) is done by the next one.
    if self._close_pending and not self._in_op then return self:_close_now() end
    return true
  end
  -- Nothing starts from here on.
  self._closed = true
  -- From a finalizer in the middle of an operation, the rest is done at
  -- its end (see _op): the client's code may be between two steps of a job
  -- there (taken off one list, not yet on the next), where no cancel could
  -- find it, and it still uses the engine and the credentials.
  if self._in_op then
    self._close_pending = true
    return true
  end
  return self:_close_now()
end

-- The rest of close: jobs still pending are cancelled (and accounted as
-- such), then the engine, the credentials and the store are closed.
function Client:_close_now()
  self._close_pending = nil
  -- Each job's cancel on its own: one that raises (an interrupt, a
  -- finalizer's error) leaves none of the others pending.
  local ok, e = true, nil
  local listed, jobs = pcall(self._jobs, self)
  if not listed then ok, e = false, jobs; jobs = {} end
  for _, job in ipairs(jobs) do
    local cancelled, err = pcall(job._cancel, job)
    if not cancelled and ok then ok, e = false, err end
  end
  if self._store or self._uploader then pcall(self._remove_orphans, self) end
  self._engine_closed = true
  self._engine:close()
  self._config:close()
  if self._store then self._store:close() end
  if not ok then error(e, 0) end
  return true
end

Client.__close = Client.close

--- Jobs from `submit` not finished yet (queued, under way, or waiting for
-- a retry); a batch's images are not counted. 0 once the client is closed.
-- @treturn int how many
function Client:pending()
  if getmetatable(self) ~= Client then fail("call client methods with ':'") end
  if self._closed then return 0 end
  return self._pending
end

--- Starts a call without waiting, for loops that must never block (a game's
-- frame loop, a tool's event loop). Nothing is sent until the next `poll`,
-- `wait` or blocking call; at most the client's `concurrency` transfers are
-- under way at once; the others wait their turn. Once started, a job's
-- transfer runs on the client's worker thread (name lookup, connect, TLS,
-- request and answer), never in `poll`, which only takes the finished ones
-- and runs their callbacks; a job's `timeout` counts from the `poll` that
-- started it. Blocking calls and jobs share the client's connections; a
-- blocking call made while jobs are pending leaves their callbacks to the
-- next `poll`. Not inside nginx (use `batch` there).
-- @string kind the method the job calls: `"recognize"` or `"handwriting"`
--   (it becomes @{Job.call})
-- @tparam string|table image_url the image's http(s) URL, or a local image
--   (see @{Client:recognize})
-- @tparam[opt] table opts the call's options, as for @{Client:recognize}
-- @tparam[opt] function callback `callback(res, err, job)`, run once from
--   `poll` or `wait` (never from inside libcurl) when the call is over; an
--   error it raises is raised from that `poll` or `wait`, as it is
-- @treturn Job the job
-- @raise on misuse, like the calls
-- @usage client:submit("recognize", url, nil, function(res, err) print(res and res.text or err) end)
-- -- in the frame loop:
-- client:poll(0)
function Client:submit(kind, image_url, opts, callback)
  check_open(self)
  self:_check_jobs_place("submit, poll and wait")
  if callback ~= nil and type(callback) ~= "function" then fail("the callback must be a function") end
  local job = self:_new_job(kind, image_url, opts, callback, nil)
  self._pending = self._pending + 1
  if self._closed then
    -- Closed meanwhile (by a finalizer): the job is cancelled at once.
    job.state = "starting"
    job:_cancel()
    return job
  end
  -- Started by the next poll, wait or blocking call: adding a transfer does
  -- no I/O anyway, and a caller can still cancel all before anything is sent.
  self._qtail = self._qtail + 1
  self._queue[self._qtail] = job
  self._nqueued = self._nqueued + 1
  if self._fd then self:_arm() end
  return job
end

--- A file descriptor for hosts with their own event loop (libuv's
-- `uv.new_poll`, Neovim's `vim.loop`, cqueues, a game loop's `select`): it
-- is readable whenever `poll(0)` has something to do (a finished call to
-- hand over, a callback to run, a job to start, a retry whose time has
-- come), so the host can sleep until then instead of polling every tick.
-- Watch it for reading and call `poll(0)` when it is readable; `poll`
-- empties it. Do not read from it or close it: it is the client's, valid
-- until `close`. Not inside nginx (there, calls are light threads).
-- @treturn[1] integer the descriptor
-- @treturn[2] nil
-- @treturn[2] string why there is none
function Client:fd()
  check_open(self)
  if not self._via.supports_jobs then
    return nil, "no readiness descriptor inside nginx: calls there run in light threads"
  end
  if not self._fd then
    self._fd = self._engine:fd()
    self:_arm()
  end
  return self._fd
end

--- Drives the jobs: at most `timeout` seconds, returning as soon as a job
-- finishes, and runs the callbacks of finished jobs. An error a callback
-- raises is raised from `poll` as it is (tables too); the callbacks of the
-- other finished jobs then run at the next `poll` or `wait`. A callback may
-- call anything, `close` included (then `poll` returns 0).
-- @number[opt=0] timeout seconds to wait at most; 0 makes one pass over the
--   sockets and never blocks
-- @treturn int the jobs still pending (as @{Client:pending})
function Client:poll(timeout)
  check_open(self)
  self:_check_jobs_place("submit, poll and wait")
  if timeout == nil then timeout = 0 end
  if type(timeout) ~= "number" or timeout < 0 or timeout ~= timeout then
    fail("poll takes a timeout in seconds >= 0")
  end
  self:_op(self._drive, timeout)
  return self:pending()
end

--- Blocks until no submitted job is pending, running their callbacks. An
-- error a callback raises is raised from `wait` as it is (the other jobs
-- stay pending: call `wait` again to go on).
function Client:wait()
  check_open(self)
  self:_check_jobs_place("submit, poll and wait")
  self:_op(self._wait)
end

--- Reads every image of a list, `concurrency` at a time, and waits for all.
-- Each image is retried on its own under the client's policy, with its own
-- timeout per attempt (counted from when it starts), and a failure of one
-- never disturbs the others. If `on_progress` raises, the images not
-- finished are cancelled (those never sent count as cancelled calls, not
-- billed) and the error is raised again. `on_progress` may use the client
-- (poll, wait, a blocking call, another batch, close: then the images not
-- finished are cancelled and their slots hold errors of kind `cancelled`).
-- Inside nginx the images run as light threads; they start no image, retry
-- or back-off once nginx's worker is exiting (QUIT, HUP) or the light
-- thread that called batch was killed, and those never sent are cancelled
-- calls, not billed (see @{Client:stats}).
-- @string kind the method each image is read with: `"recognize"` or
--   `"handwriting"`
-- @tparam {string|table,...} urls the images: http(s) URLs, or local images
--   (see @{Client:recognize}), mixed as you like
-- @tparam[opt] table opts the batch's options, and any call option (`show`,
--   `params`, `timeout`, `method`, `retries`) for every image:
-- @tparam[opt] int opts.concurrency images at once (the client's `concurrency`;
--   may be higher; the client's setting is not changed)
-- @tparam[opt] function opts.on_progress `on_progress(done, total)`, called
--   after each image
-- @treturn {aliocr.Result|aliocr.Error,...} one per URL, in the order of `urls`
-- @treturn aliocr.Summary the counts
-- @raise on misuse (a URL that is not a string or not http(s), a bad
--   option), before anything is sent
function Client:batch(kind, urls, opts)
  check_open(self)
  if type(urls) ~= "table" then fail("batch takes a list of image URLs") end
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then fail("the options of a batch must be a table") end
  local call_opts = {}
  for k, v in pairs(opts) do
    if not BATCH_OPTIONS[k] then call_opts[k] = v end
  end
  local limit = whole(opts.concurrency or self._concurrency, "concurrency", 1, 1e4)
  local on_progress = opts.on_progress
  if on_progress ~= nil and type(on_progress) ~= "function" then fail("on_progress must be a function") end
  local total = #urls
  -- Misuse raises before anything is sent, whatever the list holds.
  self:_plan(kind, call_opts)
  for i = 1, total do self:_image(urls[i]) end

  self:_check_place()
  if self._via.light_threads then return self:_batch_threads(kind, urls, call_opts, limit, on_progress) end
  return self:_op(self._batch_jobs, kind, urls, call_opts, limit, on_progress)
end

-- The documentation of jobs (lua/aliocr/client/jobs.lua).

--- A job: one call started by @{Client:submit}. Its callback runs once,
-- from `poll` or `wait`, never from inside libcurl, with `(res, err, job)`.
-- A callback may use the client for anything (poll, wait, a blocking call,
-- cancel, close: then the `poll` or `wait` that ran it returns normally).
-- `job:cancel()` and `client:close()` may be called from a `__gc`
-- metamethod at any time (a close in the middle of a call of that client
-- takes effect when the call returns); any other use of a client from a
-- finalizer that runs inside one of its calls raises.
-- @type Job

--- The method the job calls: `"recognize"` or `"handwriting"` (the `kind`
-- given to `submit`).
-- @field call

--- Deprecated: the same as @{Job.call}, kept for older code. (Named `call`
-- now so that a job's fields do not share the name `kind` with
-- @{aliocr.Error}'s `kind`, the error category.)
-- @field kind

--- The image's URL.
-- @field image_url

--- `"queued"`, `"running"`, `"retrying"`, `"done"` or `"cancelled"`.
-- @field state

--- The @{aliocr.Result} once done (nil on failure).
-- @field result

--- The @{aliocr.Error} once done (nil on success).
-- @field error

--- HTTP requests sent for it so far.
-- @field attempts

--- The function given to `submit`, or nil.
-- @field callback

--- Cancels a job that has not finished: it will not be sent (or not again),
-- its callback will not run, and it counts as a call in `stats()` with
-- `errors.cancelled`: billing `unknown` if it was under way (the request may
-- have reached the gateway), `not_billed` if it was queued or waiting for a
-- retry (`unknown` if an earlier attempt's billing was). A job whose answer
-- has already arrived (a blocking call drove it) cannot be cancelled: false,
-- and its callback runs at the next `poll` with the real outcome.
-- Cancelling never starts another job (the next `poll` does). The job's
-- `error` is then one of kind `cancelled`, with its billing.
-- @function Job:cancel
-- @treturn boolean true if it was cancelled, false if it had finished

-- The parts of the client, one concept each: a call and its retries, the
-- jobs (submit, poll, wait, cancel), and batch.
require("aliocr.client.call")(Client)
require("aliocr.client.jobs")(Client)
require("aliocr.client.batch")(Client)

return Client
