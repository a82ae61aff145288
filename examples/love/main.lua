-- aliocr in a LÖVE game: 20 images read over HTTPS, all started in one
-- frame, their text drawn as it arrives. love.update calls client:poll(0)
-- once a frame: the network work runs on aliocr's worker thread, and poll(0)
-- only hands over the finished calls and runs their callbacks, so that no
-- frame waits for the network.
--
-- From the top of the repository, after `make`, against the emulator
-- (bin/aliocr-emulator --port 8080 --https-port 8443 --appcode demo prints
-- its ca-file):
--
--   ALIOCR_APPCODE=demo ALIOCR_ENDPOINT=https://127.0.0.1:8443 ALIOCR_CA_FILE=CA_FILE \
--     ALIOCR_IMAGE=http://127.0.0.1:8080/images/sample.png love examples/love
--
-- Optional: ALIOCR_CONCURRENCY and ALIOCR_IDLE_TIMEOUT (client options);
-- ALIOCR_PAUSE=S reads the 20 images once more S seconds after the first
-- round is in; ALIOCR_HOST_REPORT=FILE writes what was measured there as
-- JSON and quits once every answer is in. Drawing the Chinese text needs a
-- font with its glyphs (love.graphics.newFont). docs/hosts.md says how a
-- game ships aliocr and lua-cjson in its own directory.

-- Where aliocr and lua-cjson are: this repository's tree and Debian's
-- lua-cjson for Lua 5.1 (LÖVE runs LuaJIT: build/jit holds its core).
package.path = "lua/?.lua;" .. package.path
package.cpath = "build/jit/?.so;/usr/lib/x86_64-linux-gnu/lua/5.1/?.so;" .. package.cpath

local getenv, max, getTime = os.getenv, math.max, love.timer.getTime
local report_file = getenv("ALIOCR_HOST_REPORT")
if report_file then
  -- Unattended: an error ends the game at once, instead of LÖVE's error screen.
  function love.errorhandler(msg) io.stderr:write(debug.traceback(tostring(msg), 2), "\n") end
end

local aliocr = require("aliocr")

local CALLS = 20        -- images read in one frame
local FRAME = 1 / 60    -- the frame budget, 60 frames a second
local FIRST_FRAME = 30  -- the frame that starts the first round (the window settles first)

local image = getenv("ALIOCR_IMAGE")
local pause = tonumber(getenv("ALIOCR_PAUSE") or "")

local client
local shown = {}                 -- the lines love.draw shows
local texts, errors = {}, {}     -- every answer, for the report
local rounds, round_over = 0, nil -- rounds started; when the last one was all in
local frames, worst_frame, worst_poll = 0, 0, 0
local worst_idle_frame = 0 -- before the first round: the machine's own jitter
local next_frame

local function show(line)
  -- Measuring (a report to write), the text is drawn with its non-ASCII
  -- letters as "?": LÖVE's font rasterizes each new glyph the first time it
  -- is drawn (about 3 ms for a line of new Chinese characters), which is the
  -- game's drawing, not aliocr's. A game warms its font on a loading screen.
  -- (love.load warms the ASCII glyphs.)
  if report_file then line = line:gsub("[\128-\255]+", "?") end
  table.insert(shown, 1, line)
  shown[40] = nil
end

-- Starts CALLS calls now; nothing waits for them.
local function read_images()
  rounds = rounds + 1
  round_over = nil
  for i = 1, CALLS do
    client:submit("recognize", image .. "?n=" .. i, nil, function(res, err)
      if res then
        texts[#texts + 1] = res.text
        show(string.format("%d.%d  %s", rounds, i, res.text))
      else
        errors[#errors + 1] = tostring(err)
        show(string.format("%d.%d  %s", rounds, i, tostring(err)))
      end
    end)
  end
end

local function write_report()
  local json = require("cjson").encode({
    host = "love", frames = frames - FIRST_FRAME, rounds = rounds, texts = texts, errors = errors,
    worst_poll_ms = worst_poll * 1000, worst_frame_ms = worst_frame * 1000,
    worst_idle_frame_ms = worst_idle_frame * 1000, frame_budget_ms = FRAME * 1000, stats = client:stats(),
  })
  local f = assert(io.open(report_file, "w"))
  f:write(json, "\n")
  f:close()
end

function love.load()
  assert(image, "set ALIOCR_IMAGE to an image's URL")
  -- The font's ASCII glyphs rasterized now, not in the frames that follow.
  local ascii = {}
  for b = 32, 126 do ascii[#ascii + 1] = string.char(b) end
  love.graphics.print(table.concat(ascii), 0, 0)
  client = aliocr.new({
    ca_file = getenv("ALIOCR_CA_FILE"),
    concurrency = tonumber(getenv("ALIOCR_CONCURRENCY") or ""),
    idle_timeout = tonumber(getenv("ALIOCR_IDLE_TIMEOUT") or ""),
  })
end

function love.update(dt)
  frames = frames + 1
  -- dt is the time since the last frame began: measured while calls are
  -- under way (and just after), not in the idle pause between rounds.
  if frames > FIRST_FRAME and (not round_over or getTime() - round_over < 0.1) then
    worst_frame = max(worst_frame, dt)
  end
  if frames > FIRST_FRAME / 2 and frames <= FIRST_FRAME then worst_idle_frame = max(worst_idle_frame, dt) end
  if frames == FIRST_FRAME then read_images() end
  if round_over and pause and rounds < 2 and getTime() - round_over >= pause then read_images() end

  local t = getTime()
  client:poll(0) -- the callbacks of finished calls run here
  worst_poll = max(worst_poll, getTime() - t)

  if rounds > 0 and not round_over and client:pending() == 0 then
    round_over = getTime()
    show(string.format("round %d in: %d texts, %d errors", rounds, #texts, #errors))
    if report_file and (rounds == 2 or not pause) then
      write_report()
      love.event.quit()
    end
  end
end

function love.draw()
  love.graphics.print(string.format("frame %d   worst frame %.1f ms   worst poll(0) %.3f ms   pending %d",
    frames, worst_frame * 1000, worst_poll * 1000, client:pending()), 10, 10)
  for i, line in ipairs(shown) do love.graphics.print(line, 10, 20 + 14 * i) end
end

-- LÖVE's main loop, with a frame cap of 60 frames a second after each
-- present, as vsync gives on a display (Xvfb has none): sleep, then spin out
-- the last millisecond, which love.timer.sleep cannot split.
function love.run()
  love.load(love.arg.parseGameArguments(arg), arg)
  love.timer.step()
  return function()
    love.event.pump()
    for name, a, b, c, d, e, f in love.event.poll() do
      if name == "quit" and not love.quit() then return a or 0 end
      love.handlers[name](a, b, c, d, e, f)
    end
    love.update(love.timer.step())
    love.graphics.origin()
    love.graphics.clear(love.graphics.getBackgroundColor())
    love.draw()
    love.graphics.present()
    local now = getTime()
    next_frame = max((next_frame or now) + FRAME, now)
    love.timer.sleep(next_frame - now - 0.001)
    while getTime() < next_frame do end
  end
end

function love.quit()
  if client then client:close() end
end
