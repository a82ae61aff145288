-- Local images through the client's uploader (any storage): a file or bytes
-- in, text out, and the clean-up after the call whatever its outcome, in
-- blocking calls, submit and batch; an image that cannot be read or stored
-- never reaches the service (the emulator's ledger says so); stats count
-- uploads and deletes and equal the ledger. The uploader here is a real
-- one: it writes the bytes into the directory the emulator serves at
-- /images/, which the emulator's vendor side downloads from.
local aliocr = require("aliocr")
local emulator = require("helpers.emulator")
local sh = require("helpers.sh")
local util = require("helpers.util")

local SEED_TEXT = "冰心散文精选自从太平洋舟中，银花世界之夜以后，再不曾见有团圆*****到了酣畅处，自己觉得是个羽"
local PNG = sh.read_all("emulator/images/sample.png")

describe("local images through an uploader", function()
  local emu, dir, served, files

  setup(function()
    dir = sh.tmpdir()
    served = dir .. "/served"
    files = dir .. "/files"
    os.execute("mkdir -p " .. sh.q(served) .. " " .. sh.q(files))
    sh.write_all(served .. "/sample.png", PNG) -- emu.image, for calls by URL
    emu = emulator.start({ "--port", "0", "--appcode", "demo", "--images", served })
  end)
  teardown(function()
    util.stop_clean(emu)
    os.execute("rm -rf " .. sh.q(dir))
  end)
  before_each(function() emu:reset() end)

  local function served_files()
    local list = {}
    for name in sh.capture("ls " .. sh.q(served)):gmatch("[^\n]+") do
      if name ~= "sample.png" then list[#list + 1] = name end
    end
    return list
  end

  -- An uploader that stores under `served` and a log of what it was given.
  local function uploader(log)
    local n = 0
    return function(bytes, name, ctype)
      n = n + 1
      local stored = "up-" .. n .. "-" .. name:gsub("[^%w.]", "_")
      sh.write_all(served .. "/" .. stored, bytes)
      log[#log + 1] = { size = #bytes, name = name, type = ctype, same = bytes == PNG }
      return emu.images .. stored, function()
        log.cleaned = (log.cleaned or 0) + 1
        os.remove(served .. "/" .. stored)
      end
    end
  end

  local function client(log, extra)
    local o = { appcode = "demo", endpoint = emu.endpoint, uploader = uploader(log), retry_delay = 0 }
    for k, v in pairs(extra or {}) do o[k] = v end
    return aliocr.new(o)
  end

  local function ledger() return emu:settled_ledger().total end

  it("a file and bytes, through both interfaces: the real answer, the image cleaned up after", function()
    local log = {}
    local c = client(log)
    local path = files .. "/shot one.png"
    sh.write_all(path, PNG)
    local res = assert(c:recognize({ file = path }))
    assert.equal(SEED_TEXT, res.text)
    local hw = assert(c:handwriting({ bytes = PNG, name = "screen.png" }))
    assert.equal(4, #hw.lines)
    assert.same({ { size = #PNG, name = "shot one.png", type = "image/png", same = true },
      { size = #PNG, name = "screen.png", type = "image/png", same = true }, cleaned = 2 }, log)
    assert.same({}, served_files())
    local s = c:stats()
    assert.same({ 2, 2, 2, 2 }, { s.requests, s.billed, s.uploads, s.deletes })
    assert.same({ requests = 2, billed = 2 }, { requests = ledger().requests, billed = ledger().billed })
    c:close()
  end)

  it("an image that cannot be read is an error of kind image and nothing is sent", function()
    local log = {}
    local c = client(log)
    sh.write_all(files .. "/empty.png", "")
    sh.write_all(files .. "/notes.png", "just some text")
    for _, case in ipairs({
      { { file = files .. "/missing.png" }, "UNREADABLE" },
      { { file = files .. "/empty.png" }, "EMPTY" },
      { { file = files .. "/notes.png" }, "NOT_AN_IMAGE" },
      { { bytes = PNG }, "TOO_LARGE", { max_image_bytes = #PNG - 1 } },
    }) do
      local cc = case[3] and client(log, case[3]) or c
      local res, err = cc:recognize(case[1])
      assert.is_nil(res)
      assert.same({ "image", false, case[2] }, { err.kind, err.billed, err.code })
      if cc ~= c then cc:close() end
    end
    assert.same({}, log) -- the uploader was never called
    assert.equal(0, ledger().requests)
    local s = c:stats()
    assert.same({ 3, 0, 3, 0, 0 }, { s.requests, s.billed, s.not_billed, s.uploads, s.errors.image and 0 or -1 })
    assert.equal(3, s.errors.image)
    c:close()
  end)

  it("an uploader that fails (nil and a message, a raise, a bad URL) means no call: a storage error", function()
    local c0 = aliocr.new({ appcode = "demo", endpoint = emu.endpoint })
    local ok, e = pcall(c0.recognize, c0, { bytes = PNG })
    assert.is_false(ok)
    assert.matches("a local image needs storage", e)
    c0:close()
    for _, case in ipairs({
      { function() return nil, "disk full" end, "upload failed: disk full" },
      { function() error({ code = 7 }) end, "upload failed: the uploader raised: table" },
      { function() error("boom", 0) end, "upload failed: the uploader raised: boom" },
      { function() return "ftp://x/y" end, "not an http%(s%) URL" },
      { function() return 42 end, "returned number" },
      { function() return emu.image, "not a function" end, "clean%-up must be a function" },
    }) do
      local c = aliocr.new({ appcode = "demo", endpoint = emu.endpoint, uploader = case[1] })
      local res, err = c:recognize({ bytes = PNG })
      assert.is_nil(res)
      assert.same({ "storage", false, "UPLOADER" }, { err.kind, err.billed, err.code })
      assert.matches(case[2], err.msg)
      assert.same({ 1, 1, 1, 0 }, { c:stats().requests, c:stats().not_billed, c:stats().errors.storage,
        c:stats().uploads })
      c:close()
    end
    assert.equal(0, ledger().requests)
  end)

  it("an uploader that gives no clean-up: blocking calls, jobs and batches all finish", function()
    local c = aliocr.new({ appcode = "demo", endpoint = emu.endpoint, uploader = function() return emu.image end })
    assert.equal(SEED_TEXT, assert(c:recognize({ bytes = PNG })).text)
    local got
    c:submit("recognize", { bytes = PNG }, nil, function(res) got = res end)
    c:wait()
    assert.equal(SEED_TEXT, got.text)
    local results = c:batch("recognize", { { bytes = PNG }, { bytes = PNG } })
    assert.same({ SEED_TEXT, SEED_TEXT }, { results[1].text, results[2].text })
    assert.same({ 0, 4, 4, 0 }, { c:pending(), c:stats().billed, c:stats().uploads, c:stats().deletes })
    c:close()
  end)

  it("an uploader's URL gets a caller's checks; one that fails them is a storage error, cleaned up", function()
    for _, url in ipairs({ emu.image .. "\r\nX: y", emu.image .. "?" .. ("a"):rep(70000) }) do
      local cleaned = 0
      local c = aliocr.new({ appcode = "demo", endpoint = emu.endpoint,
        uploader = function() return url, function() cleaned = cleaned + 1 end end })
      local none, err = c:recognize({ bytes = PNG })
      assert.is_nil(none)
      assert.same({ "storage", "UPLOADER", 1 }, { err.kind, err.code, cleaned })
      c:close()
    end
    assert.equal(0, emu:settled_ledger().total.requests)
  end)

  it("an uploader that cancels its own job, or closes the client: its clean-up still runs", function()
    local log = {}
    local c
    local job
    c = aliocr.new({ appcode = "demo", endpoint = emu.endpoint, uploader = function(bytes, name, ctype)
      local url, cleanup = uploader(log)(bytes, name, ctype)
      job:cancel()
      return url, cleanup
    end })
    job = c:submit("recognize", { bytes = PNG })
    c:wait()
    assert.same({ "cancelled", 1 }, { job.state, log.cleaned })
    c:close()
    log = {}
    c = aliocr.new({ appcode = "demo", endpoint = emu.endpoint, uploader = function(bytes, name, ctype)
      local url, cleanup = uploader(log)(bytes, name, ctype)
      c:close()
      return url, cleanup
    end })
    c:submit("recognize", { bytes = PNG })
    c:poll(0)
    assert.equal(1, log.cleaned)
    assert.same({}, served_files())
  end)

  it("a clean-up that closes the client runs once, and counts one delete", function()
    -- Found by review: close found the job still holding what it stored and
    -- ran its clean-up again, from inside the first.
    local cleaned, c = 0, nil
    c = aliocr.new({ appcode = "demo", endpoint = emu.endpoint, uploader = function()
      return emu.image, function()
        cleaned = cleaned + 1
        c:close()
      end
    end })
    local job = c:submit("recognize", { bytes = PNG })
    c:wait()
    assert.same({ 1, "done", SEED_TEXT }, { cleaned, job.state, job.result and job.result.text })
    assert.same({ 1, 1 }, { c:stats().uploads, c:stats().deletes })
  end)

  it("the clean-up runs whatever the call's outcome; one that raises is the result's cleanup_error", function()
    local cleaned = 0
    local c = aliocr.new({ appcode = "wrong", endpoint = emu.endpoint, retries = 0,
      uploader = function() return emu.image, function() cleaned = cleaned + 1 end end })
    local res, err = c:recognize({ bytes = PNG })
    assert.is_nil(res)
    assert.equal("auth", err.kind)
    assert.equal(1, cleaned)
    c:close()
    c = aliocr.new({ appcode = "demo", endpoint = emu.endpoint,
      uploader = function() return emu.image, function() error("cannot remove", 0) end end })
    res = assert(c:recognize({ bytes = PNG }))
    assert.equal(SEED_TEXT, res.text)
    assert.same({ "storage", "delete", "delete failed: the uploader's clean-up raised: cannot remove" },
      { res.cleanup_error.kind, res.cleanup_error.action, res.cleanup_error.msg })
    assert.same({ 1, 0 }, { c:stats().uploads, c:stats().deletes })
    c:close()
  end)

  it("submit and poll: local images and URLs mixed, each cleaned up before its callback runs", function()
    local log = {}
    local c = client(log)
    local got = {}
    for i = 1, 6 do
      local image = i % 3 == 0 and emu.image or { bytes = PNG, name = "s" .. i .. ".png" }
      c:submit("recognize", image, nil, function(res, err)
        got[#got + 1] = { i = i, text = res and res.text, err = err, left = #served_files() }
      end)
    end
    c:wait()
    assert.equal(6, #got)
    for _, g in ipairs(got) do assert.equal(SEED_TEXT, g.text, tostring(g.err)) end
    assert.same({}, served_files())
    assert.same({ 4, 4 }, { #log, log.cleaned })
    local s = c:stats()
    assert.same({ 6, 6, 4, 4 }, { s.requests, s.billed, s.uploads, s.deletes })
    assert.equal(6, ledger().requests)
    c:close()
  end)

  it("a batch of 50 local files at concurrency 10: every answer, every image removed, stats = ledger", function()
    local log = {}
    local c = client(log)
    local images = {}
    for i = 1, 50 do
      local path = files .. "/b" .. i .. ".png"
      sh.write_all(path, PNG)
      images[i] = { file = path }
    end
    images[25] = { file = files .. "/none.png" } -- missing: an error in its slot, nothing sent for it
    local results, summary = c:batch("recognize", images, { concurrency = 10 })
    assert.same({ 50, 49, 1, 49 }, { summary.total, summary.ok, summary.failed, summary.billed })
    for i = 1, 50 do
      if i == 25 then assert.equal("image", results[i].kind) else assert.equal(SEED_TEXT, results[i].text) end
    end
    assert.same({}, served_files())
    local s = c:stats()
    assert.same({ 50, 49, 49, 49 }, { s.requests, s.billed, s.uploads, s.deletes })
    assert.same({ requests = 49, billed = 49 }, { requests = ledger().requests, billed = ledger().billed })
    c:close()
  end)

  -- A job whose answer came in while close cancels it goes on to remove its
  -- image, and is counted once (not also as cancelled).
  it("close with jobs in every phase: each image stored is removed, each call counted once", function()
    local log = {}
    local c = client(log)
    local ran = 0
    for i = 1, 6 do
      c:submit("recognize", { bytes = PNG, name = "p" .. i .. ".png" }, nil, function() ran = ran + 1 end)
    end
    -- Some stored and under way, some in their call, maybe some done.
    c:poll(0)
    c:poll(0.01)
    assert.truthy(#log >= 1)
    local before = ran
    c:close()
    assert.equal(before, ran) -- no callback runs once closed
    assert.equal(#log, log.cleaned)
    assert.same({}, served_files())
    local s = c:stats()
    assert.equal(s.uploads, s.deletes)
    assert.equal(6, s.requests)
  end)

  it("a job cancelled after its upload still has its image cleaned up (at the next drive)", function()
    local log = {}
    local c = client(log)
    -- Its call answered late, so that it is still under way when cancelled
    -- (the worker thread may otherwise have its answer already).
    emu:fault({ mode = "latency", ms = 1000, times = 1 })
    local job = c:submit("recognize", { bytes = PNG, name = "c.png" }, nil, function() error("never runs") end)
    -- The first poll loads and uploads it (the uploader runs there) and starts the call.
    c:poll(0)
    assert.equal(1, #log)
    assert.is_true(job:cancel())
    assert.equal("cancelled", job.state)
    c:submit("recognize", emu.image) -- a later drive reaps the orphan
    c:wait()
    assert.equal(1, log.cleaned)
    assert.same({}, served_files())
    c:close()
  end)
end)
