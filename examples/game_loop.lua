-- A game or tool plugin's frame loop that must never block: 60 frames a
-- second, an OCR job submitted now and then, client:poll(0) once a frame to
-- drive them and run their callbacks. Reports the worst time a frame spent in
-- aliocr (submit + poll), which must stay far below the 16.7 ms of a frame.
--
--   ALIOCR_APPCODE=<code> ALIOCR_ENDPOINT=http://127.0.0.1:8080 \
--     lua5.4 examples/game_loop.lua IMAGE_URL [JOBS]
--
-- Over HTTPS with a CA of your own (the emulator's ca-file, say), name it in
-- ALIOCR_CA_FILE.
local aliocr = require("aliocr")
local clock = require("aliocr.core") -- monotonic() and sleep(): the host's own clock in a real game

local image = arg[1]
local jobs = tonumber(arg[2] or "30")
if not image then
  io.stderr:write("usage: lua5.4 examples/game_loop.lua IMAGE_URL [JOBS]\n")
  os.exit(2)
end

local FRAME = 1 / 60
local client = aliocr.new({ concurrency = 4, ca_file = os.getenv("ALIOCR_CA_FILE") })
local submitted, done, failed, frames, worst = 0, 0, 0, 0, 0

while done < jobs do
  local frame_start = clock.monotonic()

  -- Game logic: every 5th frame, ask for one more image to be read.
  if submitted < jobs and frames % 5 == 0 then
    submitted = submitted + 1
    client:submit("recognize", image, nil, function(res, err)
      done = done + 1
      if not res then
        failed = failed + 1
        io.stderr:write("job failed: ", tostring(err), "\n")
      end
    end)
  end

  -- Drive the network without blocking; callbacks run here (an error one
  -- raises comes out of poll).
  client:poll(0)

  local spent = clock.monotonic() - frame_start
  if spent > worst then worst = spent end
  frames = frames + 1
  clock.sleep(FRAME - spent) -- the rest of the frame: rendering, in a real game
end

client:close()
print(string.format("%d frames, %d jobs (%d failed), worst frame time in aliocr: %.2f ms",
  frames, jobs, failed, worst * 1000))
