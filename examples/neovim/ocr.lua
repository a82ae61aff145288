-- aliocr in a Neovim plugin: 20 images read over HTTPS into a buffer,
-- without blocking the editor. The network work runs on aliocr's worker
-- thread; the client's descriptor, client:fd(), becomes readable when
-- finished calls wait, and a vim.loop poll handle on it runs client:poll(0),
-- which only hands them over and runs their callbacks. The handle stops once
-- nothing is pending.
--
-- From the top of the repository, after `make`, against the emulator
-- (bin/aliocr-emulator --port 8080 --https-port 8443 --appcode demo prints
-- its ca-file):
--
--   ALIOCR_APPCODE=demo ALIOCR_ENDPOINT=https://127.0.0.1:8443 ALIOCR_CA_FILE=CA_FILE \
--     ALIOCR_IMAGE=http://127.0.0.1:8080/images/sample.png nvim -c 'luafile examples/neovim/ocr.lua'
--
-- Optional: ALIOCR_CONCURRENCY and ALIOCR_IDLE_TIMEOUT (client options);
-- ALIOCR_PAUSE=S reads the 20 images once more S seconds after the first
-- round is in; ALIOCR_HOST_REPORT=FILE reads them unattended, writes what
-- was measured there as JSON (with how late a 10 ms timer ran meanwhile)
-- and quits Neovim once every answer is in. Without it, :AliocrRead reads
-- them. docs/hosts.md says how a plugin ships aliocr and lua-cjson in its
-- own directory.

-- Where aliocr is: this repository's tree (Neovim runs LuaJIT: build/jit
-- holds its core). lua-cjson is Neovim's own, vim.json.
package.path = "lua/?.lua;" .. package.path
package.cpath = "build/jit/?.so;" .. package.cpath
package.preload.cjson = package.preload.cjson or function() return vim.json end

local aliocr = require("aliocr")
local uv, api = vim.loop, vim.api

local CALLS = 20
local getenv, max = os.getenv, math.max
local image = assert(getenv("ALIOCR_IMAGE"), "set ALIOCR_IMAGE to an image's URL")
local pause = tonumber(getenv("ALIOCR_PAUSE") or "")
local report_file = getenv("ALIOCR_HOST_REPORT")

local worst_poll = 0           -- seconds, for the report
local worst_poll_charged = 0   -- seconds, for the report (see thread_clock)
local texts, errors = {}, {}   -- every answer, for the report

--- For the report only: the calling thread's CPU time (seconds) and its
-- count of voluntary context switches, through LuaJIT's ffi (Linux). A
-- poll(0) that never waited (no voluntary switch) but took longer than its
-- CPU time was descheduled, which the machine charges, not aliocr; one that
-- waited (a lock, I/O) is charged its wall time.
local thread_clock
if report_file then
  local ffi = require("ffi")
  ffi.cdef([[
    struct aliocr_timespec { long sec; long nsec; };
    struct aliocr_rusage { long utime[2], stime[2]; long rest[12]; long nvcsw, nivcsw; };
    int clock_gettime(int clock, struct aliocr_timespec *ts);
    int getrusage(int who, struct aliocr_rusage *usage);
  ]])
  local ts, ru = ffi.new("struct aliocr_timespec"), ffi.new("struct aliocr_rusage")
  local CLOCK_THREAD_CPUTIME_ID, RUSAGE_THREAD = 3, 1
  thread_clock = function()
    ffi.C.clock_gettime(CLOCK_THREAD_CPUTIME_ID, ts)
    ffi.C.getrusage(RUSAGE_THREAD, ru)
    return tonumber(ts.sec) + tonumber(ts.nsec) / 1e9, tonumber(ru.nvcsw)
  end
end

--- Runs client:poll(0) from Neovim's event loop whenever the client has
-- work, until nothing is pending; then done(). The poll handle's callback
-- runs in a fast event, where the editor's API is off limits: callbacks
-- that edit buffers go through vim.schedule (see read_images). Where client:fd()
-- is not available, a 10 ms timer polls instead.
local function drive(client, done)
  local fd = client.fd and client:fd()
  local handle
  local function step()
    local t = uv.hrtime()
    local cpu, waits = 0, 0
    if thread_clock then cpu, waits = thread_clock() end
    local left = client:poll(0)
    local wall = (uv.hrtime() - t) / 1e9
    worst_poll = max(worst_poll, wall)
    if thread_clock then
      local cpu2, waits2 = thread_clock()
      worst_poll_charged = max(worst_poll_charged, waits2 > waits and wall or cpu2 - cpu)
    end
    if left == 0 then
      handle:stop()
      handle:close()
      done()
    end
  end
  if fd then
    handle = uv.new_poll(fd)
    handle:start("r", step)
  else
    handle = uv.new_timer()
    handle:start(10, 10, step)
  end
  return fd ~= nil
end

--- Starts a call for each URL; each answer becomes a line of `buf`.
-- done(fd_used) runs once every answer is in the buffer. The answers that
-- one poll hands over are added to the buffer in one edit, scheduled once
-- (vim.schedule: the poll handle's callback may not edit buffers).
local function read_images(client, urls, buf, done)
  local lines, scheduled = {}, false
  local function flush()
    scheduled = false
    api.nvim_buf_set_lines(buf, -1, -1, false, lines)
    lines = {}
  end
  for i, url in ipairs(urls) do
    client:submit("recognize", url, nil, function(res, err)
      local text = res and res.text or tostring(err)
      table.insert(res and texts or errors, text)
      for _, line in ipairs(vim.split(i .. "  " .. text, "\n", { plain = true })) do lines[#lines + 1] = line end
      if not scheduled then
        scheduled = true
        vim.schedule(flush)
      end
    end)
  end
  local used_fd
  used_fd = drive(client, vim.schedule_wrap(function() done(used_fd) end))
end

-- The plugin: a client, a buffer, and the command :AliocrRead, which reads
-- the 20 images into the buffer.
local client = aliocr.new({
  ca_file = getenv("ALIOCR_CA_FILE"),
  concurrency = tonumber(getenv("ALIOCR_CONCURRENCY") or ""),
  idle_timeout = tonumber(getenv("ALIOCR_IDLE_TIMEOUT") or ""),
})
local buf = api.nvim_create_buf(true, true)
api.nvim_buf_set_name(buf, "aliocr")
api.nvim_set_current_buf(buf)

local function urls()
  local list = {}
  for i = 1, CALLS do list[i] = image .. "?n=" .. i end
  return list
end

api.nvim_create_user_command("AliocrRead", function()
  if client:pending() > 0 then return vim.notify("aliocr: still reading") end
  read_images(client, urls(), buf, function() end)
end, {})
api.nvim_create_autocmd("VimLeavePre", { callback = function() client:close() end })

-- Unattended, with a report to write: the rounds start by themselves once
-- the editor is up, a 10 ms timer measures how late the editor's event loop
-- runs meanwhile (and before, the machine's own lateness), and Neovim quits
-- once the report is written.
if report_file then
  -- What the timer measures is kept per phase: "before" (a second of the
  -- editor alone), "round" (while calls are pending) and, with ALIOCR_PAUSE,
  -- "pause" (nothing pending: the editor alone again).
  local TICK_MS, ticks, last = 10, 0, nil
  local phase = "before"
  local worst = { before = 0, round = 0, pause = 0 }
  local ticker = uv.new_timer()
  ticker:start(TICK_MS, TICK_MS, function()
    local now = uv.hrtime()
    local late = last and (now - last) / 1e6 - TICK_MS or 0
    worst[phase] = max(worst[phase], late)
    if phase == "round" then ticks = ticks + 1 end
    last = now
  end)

  local function finish(used_fd)
    -- At least 20 ticks measured, however soon the answers came.
    if ticks < 20 then return vim.defer_fn(function() finish(used_fd) end, TICK_MS) end
    ticker:stop()
    ticker:close()
    local f = assert(io.open(report_file, "w"))
    f:write(vim.json.encode({
      host = "neovim", ticks = ticks, texts = texts, errors = errors, fd = used_fd,
      worst_poll_ms = worst_poll * 1000, worst_poll_charged_ms = worst_poll_charged * 1000,
      worst_lateness_ms = worst.round,
      worst_idle_lateness_ms = worst.before, worst_pause_lateness_ms = pause and worst.pause or nil,
      tick_ms = TICK_MS, stats = client:stats(), rounds = pause and 2 or 1,
    }), "\n")
    f:close()
    vim.cmd("qall!")
  end

  vim.defer_fn(function()
    phase = "round"
    read_images(client, urls(), buf, function(used_fd)
      if not pause then return finish(used_fd) end
      phase = "pause"
      vim.defer_fn(function()
        phase = "round"
        read_images(client, urls(), buf, finish)
      end, pause * 1000)
    end)
  end, 1000) -- a second of the editor's own lateness first, without calls
end
