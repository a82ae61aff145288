-- The main job in one script (`make demo` runs it): reads the sample images
-- of examples/images/ with both interfaces, then as a batch with progress,
-- prints their text and line positions, shows what an error object looks
-- like (with its `billed` field), reads a local file and bytes in memory
-- through the emulator's OSS (and shows the bucket empty after), and what
-- was billed.
--
-- With no account it starts the local emulator with its Tesseract backend
-- (real OCR, offline) and stops it at the end:
--   lua5.4 examples/demo.lua
-- With credentials and the interface URLs in the environment it calls them
-- instead; the service fetches the images itself, so give public URLs:
--   ALIOCR_APPCODE=<code> ALIOCR_ADVANCED_URL=<url> ALIOCR_HANDWRITING_URL=<url> \
--     lua5.4 examples/demo.lua https://example.com/a.png https://example.com/b.jpg
-- (ALIOCR_ENDPOINT may stand for both URLs; ALIOCR_APP_KEY and
-- ALIOCR_APP_SECRET for the AppCode.) Each successful call is billed.

local root = (arg and arg[0] or ""):match("^(.*)/examples/[^/]*$") or "."

-- From a source tree, use its module and the core built for this runtime.
local f = io.open(root .. "/lua/aliocr.lua", "r")
if f then
  f:close()
  local build = jit and "build/jit" or ({ ["Lua 5.1"] = "build/5.1", ["Lua 5.3"] = "build/5.3" })[_VERSION] or "build"
  package.path = root .. "/lua/?.lua;" .. package.path
  package.cpath = root .. "/" .. build .. "/?.so;" .. package.cpath
end
local aliocr = require("aliocr")

local function env(name)
  local v = os.getenv(name)
  if v == "" then return nil end
  return v
end

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function say(...) io.write(...) io.write("\n") io.stdout:flush() end

-- The emulator ------------------------------------------------------------------

local DEMO_CODE = "demo-appcode"
-- The local images' client has a code of its own (its calls are its own
-- in the ledger), and an OSS AccessKey the emulator's OSS endpoint takes.
local OSS_CODE, OSS_KEY, OSS_SECRET = "demo-oss-appcode", "LTAIdemoKey", "demo-oss-secret"

-- Starts bin/aliocr-emulator on free ports with the Tesseract backend,
-- serving examples/images/, with `quota` billed calls allowed; returns what it printed (endpoint, control,
-- images...) and a function that stops it.
local function start_emulator(quota)
  local cmd = "echo $$; ALIOCR_EMULATOR_APPCODES=" .. DEMO_CODE .. "," .. OSS_CODE ..
    " ALIOCR_EMULATOR_OSS_KEYS=" .. OSS_KEY .. ":" .. OSS_SECRET .. " exec " .. q(root .. "/bin/aliocr-emulator") ..
    " --port 0 --oss-port 0 --backend tesseract --quota " .. quota .. " --images " .. q(root .. "/examples/images") ..
    " 2>&1"
  local p = assert(io.popen("sh -c " .. q(cmd), "r"))
  local pid = p:read("*l")
  local info, said = {}, {}
  for line in p:lines() do
    if line == "ready" then info.ready = true break end
    said[#said + 1] = line
    local k, v = line:match("^(%S+) (%S+)$")
    if k then info[k] = v end
  end
  local function stop()
    if pid then os.execute("kill -TERM " .. pid .. " 2>/dev/null") end
    pid = nil
    p:close()
  end
  if not info.ready then
    stop()
    error("the emulator did not start:\n" .. table.concat(said, "\n"), 0)
  end
  return info, stop
end

-- What the emulator billed: its control endpoint's GET /ledger, with curl
-- (the demo needs no HTTP library besides aliocr).
local function ledger(info)
  local p = assert(io.popen("curl -sS " .. q(info.control .. "/ledger")))
  local out = p:read("*a")
  p:close()
  local t = require("cjson").decode(out).credentials[DEMO_CODE]
  return string.format("%d requests, %d billed, %d not billed, quota left %d", t.requests, t.billed, t.not_billed,
    t.quota_remaining)
end

-- The objects left in the emulator's OSS bucket (its control endpoint).
local function objects_left(info)
  local p = assert(io.popen("curl -sS " .. q(info.control .. "/oss/objects?bucket=aliocr")))
  local out = p:read("*a")
  p:close()
  return #require("cjson").decode(out)
end

-- Local images: a file, and bytes in memory, through the emulator's OSS
-- (uploaded with a V4 signature, read by the service through a presigned
-- URL, deleted after the call).
local function local_images(info, names)
  local client = aliocr.new({
    appcode = OSS_CODE, endpoint = info.endpoint,
    oss = { endpoint = info.oss, region = info["oss-region"], bucket = "aliocr",
            access_key_id = OSS_KEY, access_key_secret = OSS_SECRET },
  })
  local path = root .. "/examples/images/" .. names[1]
  local res, err = client:recognize({ file = path })
  say("-- a file: ", names[1])
  say(res and res.text or tostring(err))
  local image = assert(io.open(root .. "/examples/images/" .. names[#names], "rb"))
  local bytes = image:read("*a")
  image:close()
  res, err = client:handwriting({ bytes = bytes, name = names[#names] })
  say("-- bytes in memory: ", names[#names], " (", #bytes, " bytes)")
  if res then
    for _, line in ipairs(res.lines) do say("  ", line.words) end
  else
    say(tostring(err))
  end
  local st = client:stats()
  say(string.format("  %d uploads, %d deletes; objects left in the bucket: %d", st.uploads, st.deletes,
    objects_left(info)))
  client:close()
end

-- The demo ---------------------------------------------------------------------

local function position(p)
  if not p then return "(no position)" end
  return string.format("(left %d, top %d, %dx%d)", p.left or -1, p.top or -1, p.width or -1, p.height or -1)
end

local function list_samples()
  local names = {}
  local p = assert(io.popen("ls " .. q(root .. "/examples/images")))
  for name in p:lines() do
    if name:find("%.png$") then names[#names + 1] = name end
  end
  p:close()
  table.sort(names)
  return names
end

local function main(stop_holder)
  local real = (env("ALIOCR_APPCODE") or (env("ALIOCR_APP_KEY") and env("ALIOCR_APP_SECRET"))) and
    (env("ALIOCR_ENDPOINT") or (env("ALIOCR_ADVANCED_URL") and env("ALIOCR_HANDWRITING_URL")))
  local client, info, quota
  local urls, labels = {}, {}

  if real then
    if #arg == 0 then
      error("with credentials and interface URLs set, give the URLs of images the service can fetch:\n" ..
        "  lua5.4 examples/demo.lua https://example.com/a.png ...", 0)
    end
    for i, u in ipairs(arg) do urls[i], labels[i] = u, u end
    client = aliocr.new() -- everything from the environment
    say("== aliocr demo: calling the service named by the environment (each success is billed)")
  else
    local names = list_samples()
    -- A quota of exactly the successful calls below: the last call is refused.
    quota = 3 * #names
    local stop
    info, stop = start_emulator(quota)
    stop_holder.stop = stop
    for i, name in ipairs(names) do urls[i], labels[i] = info.images .. name, name end
    client = aliocr.new({ appcode = DEMO_CODE, endpoint = info.endpoint })
    say("== aliocr demo: the local emulator at ", info.endpoint, " reads the images with Tesseract")
  end

  say("\n== interface one (client:recognize): the text of each image")
  for i, url in ipairs(urls) do
    local res, err = client:recognize(url)
    say("-- ", labels[i])
    say(res and res.text or tostring(err))
  end

  say("\n== interface two (client:handwriting): each line with its position")
  for i, url in ipairs(urls) do
    local res, err = client:handwriting(url)
    say("-- ", labels[i])
    if res then
      for _, line in ipairs(res.lines) do say("  ", position(line.position), " ", line.words) end
    else
      say(tostring(err))
    end
  end

  say("\n== what failures look like: error objects say whether the call was billed")
  local _, err = client:recognize((info and info.images or "https://example.invalid/") .. "no-such-image.png")
  say("an image that is not there: ", tostring(err))
  say(string.format("  kind=%s status=%s ok=%s billed=%s retryable=%s", err.kind, tostring(err.status),
    tostring(err.ok), tostring(err.billed), tostring(err.retryable)))
  say("\n== a batch (client:batch), 2 at a time, with progress")
  local results, summary = client:batch("recognize", urls, {
    concurrency = 2,
    show = 1,
    on_progress = function(done, total) say(string.format("  progress %d/%d", done, total)) end,
  })
  for i, r in ipairs(results) do
    if aliocr.is_error(r) then
      say(string.format("  %d. %s: %s", i, labels[i], tostring(r)))
    else
      say(string.format("  %d. %s: %d lines, first: %s", i, labels[i], #r.lines, r.lines[1] and r.lines[1].words or ""))
    end
  end
  say(string.format("  %d images: %d read, %d failed, %d billed, %.2f s", summary.total, summary.ok, summary.failed,
    summary.billed, summary.elapsed))

  if info then
    say("\n== local images (a file, and bytes in memory) through the emulator's OSS")
    local_images(info, list_samples())
    -- The emulator allowed this code `quota` billed calls, all used now.
    say("\n== the emulator allowed ", quota, " billed calls, all used now: one more")
    local _, quota_err = client:recognize(urls[1])
    say(tostring(quota_err))
    say(string.format("  kind=%s status=%s billed=%s retryable=%s", quota_err.kind, tostring(quota_err.status),
      tostring(quota_err.billed), tostring(quota_err.retryable)))
  end

  local st = client:stats()
  say(string.format("\n== this client: %d requests, %d billed, %d not billed, %d unknown",
    st.requests, st.billed, st.not_billed, st.unknown))
  if info then say("== the emulator's ledger: ", ledger(info)) end
  client:close()
end

local holder = {}
local ok, err = pcall(main, holder)
if holder.stop then holder.stop() end
if not ok then
  io.stderr:write("demo: ", tostring(err), "\n")
  os.exit(1)
end
