-- Local images inside nginx: the example handler (examples/openresty) takes
-- an image POSTed as the request body and reads it through OSS over nginx's
-- own sockets (the emulator's OSS endpoint): stored with a V4-signed PUT,
-- read by the service through a presigned URL, deleted after. A body kept
-- in memory and one nginx spooled to a temporary file; a body that is not
-- an image (400, nothing sent); an upload OSS refuses (502, kind storage,
-- and the service is never called); a batch of files in a handler.
local cjson = require("cjson")
local emulator = require("helpers.emulator")
local http = require("helpers.http")
local nginx = require("helpers.nginx")
local sh = require("helpers.sh")
local util = require("helpers.util")

local SEED_TEXT = "冰心散文精选自从太平洋舟中，银花世界之夜以后，再不曾见有团圆*****到了酣畅处，自己觉得是个羽"
local PNG = sh.read_all("emulator/images/sample.png")
local KEY = emulator.OSS_KEY

if not util.nginx_only_here() then
  describe("local images inside nginx", function() pending(util.NGINX_ONLY) end)
  return
end

describe("local images inside nginx", function()
  local emu, web

  local function env(secret)
    return {
      ALIOCR_APPCODE = "demo", ALIOCR_ENDPOINT = emu.endpoint, ALIOCR_OSS_ENDPOINT = emu.oss,
      ALIOCR_OSS_REGION = emu.oss_region, ALIOCR_OSS_BUCKET = "aliocr", ALIBABA_CLOUD_ACCESS_KEY_ID = KEY.id,
      ALIBABA_CLOUD_ACCESS_KEY_SECRET = secret or KEY.secret,
    }
  end

  setup(function()
    emu = emulator.start_oss({ "--https-port", "0" })
    web = nginx.start(nginx.test_config(emu.ca_file, [[
    location = /oss_batch { content_by_lua_block { require("helpers.nginx_case").oss_batch() } }
    location = /oss_case { content_by_lua_block { require("helpers.nginx_case").oss_case() } }]]), env())
  end)
  teardown(function()
    if web then assert.same({}, web:stop()) end
    util.stop_clean(emu)
  end)
  before_each(function() emu:reset() end)

  local function post(body, query, target)
    local status, text = http.exchange((target or web).url .. "/ocr" .. (query or ""), "POST", body, "image/png", 20)
    local ok, json = pcall(cjson.decode, text)
    return status, ok and json or { raw = text }
  end

  it("an image POSTed as the body: its text; the object deleted; the service called once", function()
    local status, answer = post(PNG)
    assert.equal(200, status, cjson.encode(answer))
    assert.equal(SEED_TEXT, answer.text)
    status, answer = post(PNG, "?kind=handwriting")
    assert.equal(200, status, cjson.encode(answer))
    assert.equal(4, #answer.lines)
    assert.same({}, emu:oss_objects("aliocr"))
    local l = emu:oss_ledger()
    assert.same({ 2, 2, 2 }, { l.puts.accepted, l.deletes.accepted, l.gets.by_vendor })
    assert.same({ requests = 2, billed = 2 },
      { requests = emu:settled_ledger().total.requests, billed = emu:settled_ledger().total.billed })
  end)

  it("a body over client_body_buffer_size (spooled to a file by nginx) too", function()
    -- The PNG with 1.5 MB of padding after its end: still a PNG by its
    -- first bytes, and over nginx's buffer (16k by default).
    local big = PNG .. ("\0"):rep(1500 * 1000)
    local status, answer = post(big)
    assert.equal(200, status, cjson.encode(answer))
    assert.equal(SEED_TEXT, answer.text)
    local objects = {}
    for _, r in ipairs(emu:oss_requests()) do
      if r.method == "PUT" and r.status == 200 then objects[#objects + 1] = r end
    end
    assert.equal(1, #objects)
    assert.same({}, emu:oss_objects("aliocr"))
  end)

  it("a body that is not an image: 400 with kind image, and nothing is sent", function()
    for _, body in ipairs({ "hello, this is text", "" }) do
      local status, answer = post(body)
      assert.equal(400, status, cjson.encode(answer))
      if body ~= "" then assert.equal("image", answer.kind) end
    end
    assert.equal(0, #emu:oss_requests())
    assert.equal(0, emu:settled_ledger().total.requests)
  end)

  it("an upload OSS refuses: 502 with kind storage and OSS's code; the service is never called", function()
    local wrong = nginx.start(nginx.test_config(emu.ca_file), env("not-the-secret"))
    local status, answer = post(PNG, nil, wrong)
    local leftovers = wrong:stop()
    assert.same({}, leftovers)
    assert.equal(502, status, cjson.encode(answer))
    assert.same({ "storage", false }, { answer.kind, answer.billed })
    assert.matches("SignatureDoesNotMatch", answer.error)
    assert.is_nil(answer.error:find(KEY.secret, 1, true))
    assert.equal(0, emu:settled_ledger().total.requests)
  end)

  -- Each case through both transports: the same outcome (kind, code,
  -- status, billing, attempts), the same stats, and the same effect on the
  -- emulator (calls to the service, objects left).
  it("every image and storage error: the same outcome through nginx's sockets as through libcurl", function()
    local aliocr = require("aliocr")
    local dir = sh.tmpdir()
    finally(function() os.execute("rm -rf " .. sh.q(dir)) end)
    local function file(name, content)
      sh.write_all(dir .. "/" .. name, content)
      return dir .. "/" .. name
    end
    local png, empty, text = file("ok.png", PNG), file("empty.png", ""), file("text.png", "plain text")
    local function oss(extra)
      local o = { endpoint = emu.oss, region = emu.oss_region, bucket = "aliocr", access_key_id = KEY.id,
        access_key_secret = KEY.secret }
      for k, v in pairs(extra or {}) do o[k] = v end
      return o
    end
    local STS = emulator.OSS_STS
    local cases = {
      { "a missing file", { file = dir .. "/none.png" } },
      { "an empty file", { file = empty } },
      { "not an image", { file = text } },
      { "over max_image_bytes", { file = png }, { max_image_bytes = 100 } },
      { "a wrong secret", { file = png }, nil, { access_key_secret = "wrong" } },
      { "a forged STS token", { file = png }, nil,
        { access_key_id = STS.id, access_key_secret = STS.secret, security_token = "forged" } },
      { "no such bucket", { file = png }, nil, { bucket = "no-such-bucket" } },
      { "a skewed clock", { file = png }, nil, nil, { mode = "oss_error", code = "RequestTimeTooSkewed" } },
      { "access denied", { file = png }, nil, nil, { mode = "oss_error", code = "AccessDenied" } },
      { "a 5xx, then an upload that passes", { file = png }, nil, nil,
        { mode = "oss_error", code = "InternalError", times = 1 } },
      { "a slow upload past the timeout", { file = png }, { timeout = 0.5, retries = 0 }, nil,
        { mode = "oss_slow", ms = 800 } },
      { "the object gone before the vendor's download", { file = png }, { retries = 0 }, nil,
        { mode = "oss_gone", times = 1 } },
    }
    local function summary(res, err, stats)
      local o = res or err
      return {
        ok = res ~= nil, text = res and res.text, kind = err and err.kind, code = err and err.code,
        status = o.status, billed = o.billed == nil and "unknown" or o.billed, action = err and err.action,
        retryable = err and err.retryable, attempts = o.attempts,
        stats = { requests = stats.requests, billed = stats.billed, not_billed = stats.not_billed,
          uploads = stats.uploads, deletes = stats.deletes, errors = stats.errors },
      }
    end
    for _, case in ipairs(cases) do
      local name, image, opts, oss_opts, fault = case[1], case[2], case[3] or {}, case[4], case[5]
      local got = {}
      for _, via in ipairs({ "curl", "nginx" }) do
        emu:reset()
        if fault then emu:fault(fault) end
        local o = { appcode = "demo", endpoint = emu.endpoint, oss = oss(oss_opts), retry_delay = 0 }
        for k, v in pairs(opts) do o[k] = v end
        if via == "curl" then
          local c = aliocr.new(o)
          local res, err = c:recognize(image)
          got[via] = summary(res, err, c:stats())
          c:close()
        else
          local out = web:post("/oss_case", { client = o, image = image }, 30)
          got[via] = out
        end
        -- What reached the service and what is left in the bucket, in a moment.
        util.eventually(function() return #emu:oss_objects("aliocr") == 0 end, 3)
        got[via].service_calls = emu:settled_ledger().total.requests
        got[via].objects_left = #emu:oss_objects("aliocr")
      end
      assert.same(got.curl, got.nginx, name)
      assert.equal(0, got.curl.objects_left, name)
      if not got.curl.ok and (got.curl.kind == "image" or got.curl.kind == "storage") then
        assert.equal(0, got.curl.service_calls, name .. ": a call after a failed upload")
      end
    end
  end)

  it("a batch of local files in a handler (light threads): every answer, an empty bucket", function()
    local dir = sh.tmpdir()
    finally(function() os.execute("rm -rf " .. sh.q(dir)) end)
    local files = {}
    for i = 1, 12 do
      files[i] = dir .. "/f" .. i .. ".png"
      sh.write_all(files[i], PNG)
    end
    local out = web:post("/oss_batch", { files = files, concurrency = 4 }, 60)
    assert.same({ 12, 12, 0 }, { out.summary.total, out.summary.ok, out.summary.failed })
    for i = 1, 12 do assert.equal(SEED_TEXT, out.texts[i]) end
    assert.same({ 12, 12 }, { out.stats.uploads, out.stats.deletes })
    assert.same({}, emu:oss_objects("aliocr"))
    assert.equal(12, emu:settled_ledger().total.requests)
  end)
end)
