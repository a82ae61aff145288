-- Real OCR, offline: the emulator's tesseract backend reads the sample
-- images of examples/images/ (served from a folder of our own, as a user
-- would serve theirs), and require("aliocr") gets their text and line boxes.
-- Checks the character error rate against each image's true text (at most
-- 5% on the clean samples, 10% on the rotated and noisy one) and every
-- line's box against the truth (each edge within 10 px), with both
-- interfaces and every `data` shape; then the backend's failures (not an
-- image, a broken image, an empty one, a URL off loopback, too slow), that it
-- never blocks the emulator, and switching backends at run time.
local cjson = require("cjson")
local socket = require("socket")
local aliocr = require("aliocr")
local cer = require("helpers.cer")
local emulator = require("helpers.emulator")
local http = require("helpers.http")
local sh = require("helpers.sh")
local util = require("helpers.util")

local SAMPLES = "examples/images"
local MAX_CER_CLEAN, MAX_CER_NOISY, MAX_BOX_PX = 0.05, 0.10, 10

local truth = cjson.decode(sh.read_all(SAMPLES .. "/truth.json"))
local names = {}
for name in pairs(truth) do names[#names + 1] = name end
table.sort(names)

local function words_of(lines)
  local out = {}
  for i, l in ipairs(lines) do out[i] = l.words end
  return out
end

-- The edges of a {top, left, width, height} box.
local function edges(p)
  return { left = p.left, top = p.top, right = p.left + p.width, bottom = p.top + p.height }
end

-- The backend runs inside the emulator (nginx, LuaJIT), and Tesseract is the
-- heaviest thing the specs start: this spec runs once per make test. The
-- client's side of every data shape runs on every runtime in
-- client_calls_spec, against the canned backend.
if not util.nginx_only_here() then
  describe("recognition with the emulator's tesseract backend", function() pending(util.NGINX_ONLY) end)
  return
end

describe("recognition with the emulator's tesseract backend", function()
  local emu, dir, client, images

  setup(function()
    -- A folder of images of our own: the samples, and a few that must fail.
    dir = sh.tmpdir()
    assert(os.execute("cp " .. sh.q(SAMPLES) .. "/*.png " .. sh.q(dir) .. "/"))
    local png = sh.read_all(SAMPLES .. "/en-printed.png")
    local function put(name, bytes)
      local f = assert(io.open(dir .. "/" .. name, "wb"))
      f:write(bytes)
      f:close()
    end
    put("broken.png", png:sub(1, 300))                -- a PNG cut short: not decodable
    put("notes.txt", "not an image\n")
    put("blank.png", sh.read_all("spec/fixtures/blank.png"))  -- white, no text
    emu = emulator.start({ "--port", "0", "--appcode", "demo", "--backend", "tesseract", "--images", dir })
    images = emu.images
    client = aliocr.new({ appcode = "demo", endpoint = emu.endpoint, retries = 0, timeout = 60 })
  end)

  teardown(function()
    if client then client:close() end
    util.stop_clean(emu)
    if dir then os.execute("rm -rf " .. sh.q(dir)) end
  end)

  for _, name in ipairs(names) do
    local t = truth[name]
    local max_cer = t.clean and MAX_CER_CLEAN or MAX_CER_NOISY
    local want = words_of(t.lines)

    it(name .. ": interface two gives every line, its text within the error rate, its box within "
      .. MAX_BOX_PX .. " px", function()
      local res = assert(client:handwriting(images .. name .. ".png"))
      assert.equal(1, res.ok)
      local rate, edits = cer.rate(res.text, table.concat(want, "\n"))
      print(string.format("# recognition: %s, interface two: CER %.1f%% (%d edits)", name, rate * 100, edits))
      assert.is_true(rate <= max_cer, string.format("CER %.3f over %.2f: read %q", rate, max_cer, res.text))
      assert.equal(#t.lines, #res.lines, "lines read: " .. cjson.encode(words_of(res.lines)))
      for i, line in ipairs(res.lines) do
        assert.is_table(line.position, "line " .. i .. " has no position")
        local got, exp = edges(line.position), edges(t.lines[i].position)
        for _, e in ipairs({ "left", "top", "right", "bottom" }) do
          assert.is_true(math.abs(got[e] - exp[e]) <= MAX_BOX_PX, string.format(
            "line %d's %s edge is at %d, the truth at %d", i, e, got[e], exp[e]))
        end
        for _, f in ipairs({ "top", "left", "width", "height" }) do
          assert.equal("integer", util.number_type(line.position[f]))
        end
      end
      -- The raw answer has the API guide's shape: {position, words} per line.
      assert.is_table(res.data[1].position)
      assert.is_string(res.data[1].words)
    end)

    it(name .. ": interface one gives the text as one string, or as {words} lines with show=1", function()
      local res = assert(client:recognize(images .. name .. ".png"))
      assert.is_string(res.data)
      -- One string, the lines joined without a separator, as in the guide.
      assert.is_nil(res.data:find("\n", 1, true))
      local rate = cer.rate(res.data, table.concat(want))
      assert.is_true(rate <= max_cer, string.format("CER %.3f over %.2f: read %q", rate, max_cer, res.data))

      local shown = assert(client:recognize(images .. name .. ".png", { show = 1 }))
      assert.is_table(shown.data)
      assert.equal(#t.lines, #shown.lines)
      for i, item in ipairs(shown.data) do
        assert.same({ "words" }, (function()
          local keys = {}
          for k in pairs(item) do keys[#keys + 1] = k end
          return keys
        end)())
        assert.is_true(cer.rate(item.words, want[i]) <= max_cer + 0.1, "line " .. i .. ": " .. item.words)
      end
      -- The same reading, whatever the shape.
      assert.equal(res.data, table.concat(words_of(shown.lines)))
    end)
  end

  it("a batch of every sample, with progress, in input order", function()
    local urls, seen = {}, {}
    for i, name in ipairs(names) do urls[i] = images .. name .. ".png" end
    local results, summary = client:batch("handwriting", urls, {
      concurrency = 2,
      on_progress = function(done, total) seen[#seen + 1] = { done, total } end,
    })
    assert.equal(#names, summary.ok)
    assert.equal(#names, #seen)
    assert.same({ #names, #names }, seen[#seen])
    for i, name in ipairs(names) do
      assert.equal(1, results[i].ok)
      local rate = cer.rate(results[i].text, table.concat(words_of(truth[name].lines), "\n"))
      assert.is_true(rate <= (truth[name].clean and MAX_CER_CLEAN or MAX_CER_NOISY), name)
    end
  end)

  it("an empty image is read as no text at all, and billed like any answer", function()
    local before = emu:ledger().total.billed
    local res = assert(client:handwriting(images .. "blank.png"))
    assert.equal(1, res.ok)
    assert.equal("", res.text)
    assert.same({}, res.lines)
    local one = assert(client:recognize(images .. "blank.png"))
    assert.equal("", one.data)
    assert.equal(before + 2, emu:ledger().total.billed)
  end)

  it("a file that is not an image, a broken PNG and a missing file are refused with 666, not billed", function()
    local before = emu:ledger().total
    local cases = {
      { "notes.txt", "图片格式错误" },
      { "broken.png", "图片解码失败" },
      { "missing.png", "图片下载失败" },
    }
    for _, c in ipairs(cases) do
      local res, err = client:handwriting(images .. c[1])
      assert.is_nil(res)
      assert.equal("api", err.kind)
      assert.equal(666, err.status)
      assert.equal(0, err.ok)
      assert.is_false(err.billed)
      assert.truthy(err.msg:find(c[2], 1, true), c[1] .. ": " .. err.msg)
    end
    local after = emu:ledger().total
    assert.equal(before.billed, after.billed)
    assert.equal(before.requests + #cases, after.requests)
  end)

  it("fetches only from loopback: any other host gets 666 and nothing is fetched", function()
    local log_before = #emu:requests()
    local res, err = client:recognize("http://192.0.2.1/receipt.png")
    assert.is_nil(res)
    assert.equal(666, err.status)
    assert.truthy(err.msg:find("loopback", 1, true), err.msg)
    assert.is_false(err.billed)
    assert.equal(log_before + 1, #emu:requests())
  end)

  it("an image that takes longer than the gateway's backend timeout gets 504 Async Service, not billed", function()
    emu:settings({ backend_timeout_ms = 30 })
    local res, err = client:handwriting(images .. "zh-printed.png")
    emu:settings({ backend_timeout_ms = 30000 })
    assert.is_nil(res)
    assert.equal(504, err.status)
    assert.equal("Async Service", err.msg)
    assert.is_false(err.billed)
    -- Tesseract was stopped: the next call is read in full.
    assert.equal(1, assert(client:handwriting(images .. "en-printed.png")).ok)
  end)

  it("reads images off the event loop: the emulator answers other requests meanwhile", function()
    -- How long one image takes to read, alone.
    local t0 = socket.gettime()
    assert(client:handwriting(images .. "zh-printed.png"))
    local one = socket.gettime() - t0
    -- Eight images under way; while they are being read, the control
    -- endpoint and the image folder answer, each far sooner than one image
    -- is read (a backend that blocked nginx would hold them that long).
    local done = 0
    for i = 1, 8 do
      client:submit("handwriting", images .. names[(i - 1) % #names + 1] .. ".png", nil,
        function() done = done + 1 end)
    end
    client:poll(0.05)
    local answered, worst, took_all = 0, 0, {}
    while done < 8 do
      local t = socket.gettime()
      local health = http.request({ url = emu.control .. "/health", timeout = 5 })
      local img = http.request({ url = images .. "en-printed.png", timeout = 5 })
      local took = socket.gettime() - t
      client:poll(0)
      if done < 8 then
        assert.equal(200, health.status)
        assert.equal(200, img.status)
        answered = answered + 1
        worst = math.max(worst, took)
        took_all[#took_all + 1] = took
      end
    end
    client:wait()
    table.sort(took_all)
    local median = took_all[math.ceil(#took_all / 2)] or math.huge
    print(string.format("# recognition: one image %.0f ms; while 8 were read, %d answers, the median %.0f ms, " ..
      "the slowest %.0f ms", one * 1000, answered, median * 1000, worst * 1000))
    assert.is_true(answered >= 3, "answers while busy: " .. answered)
    -- A backend that blocked nginx would hold most answers until an image
    -- is read; on a loaded machine (CI runs four runtimes at once) one
    -- answer now and then is slow anyway, so the median is what is held.
    assert.is_true(median < one / 2, string.format("the median answer took %.3f s while one image takes %.3f s",
      median, one))
  end)

  it("switches between the canned and the tesseract backend at run time", function()
    assert.equal("tesseract", emu:settings().backend)
    assert(emu:settings({ backend = "canned" }))
    local canned = assert(client:handwriting(images .. "en-printed.png"))
    assert.equal("拇指云软件", canned.lines[1].words)
    assert(emu:settings({ backend = "tesseract" }))
    local real = assert(client:handwriting(images .. "en-printed.png"))
    assert.equal("The quick brown fox jumps over", real.lines[1].words)
    local _, status = emu:settings({ backend = "abbyy" })
    assert.equal(400, status)
  end)
end)

describe("the sample images", function()
  it("each has its true text beside it (NAME.txt), the same as truth.json's lines", function()
    local pngs = sh.capture("ls " .. SAMPLES .. "/*.png")
    local count = 0
    for png in pngs:gmatch("[^\n]+") do
      local name = png:match("([^/]+)%.png$")
      assert.is_table(truth[name], name .. " has no truth")
      local want = table.concat(words_of(truth[name].lines), "\n") .. "\n"
      assert.equal(want, sh.read_all(SAMPLES .. "/" .. name .. ".txt"))
      count = count + 1
    end
    assert.equal(#names, count)
    assert.is_true(count >= 4)
  end)
end)

describe("the tesseract backend's launch checks", function()
  it("refuses --no-fetch, which would leave it nothing to read, and a bad --lang", function()
    local out, status = sh.run(sh.q(emulator.bin) .. " --port 0 --appcode demo --backend tesseract --no-fetch")
    assert.equal(2, status)
    assert.truthy(out:find("--no-fetch", 1, true), out)
    out, status = sh.run(sh.q(emulator.bin) .. " --port 0 --appcode demo --backend tesseract --lang klingon")
    assert.equal(2, status)
    assert.truthy(out:find("no 'klingon' data", 1, true), out)
    assert.truthy(out:find("tesseract-ocr-klingon", 1, true), out)
  end)
end)
