-- bin/aliocr with local image files (arguments without "://"), through the
-- emulator's OSS, configured by the environment only: files and URLs mixed
-- in one run; a missing file, a non-image and an upload OSS refuses are
-- errors of their own (kinds image and storage) that reach neither OSS nor
-- the service; no OSS configured is a usage error before anything is sent;
-- the AccessKey secret and the STS token never appear in what it prints.
local cjson = require("cjson")
local cli = require("helpers.cli")
local emulator = require("helpers.emulator")
local sh = require("helpers.sh")
local util = require("helpers.util")

local SEED_TEXT = "冰心散文精选自从太平洋舟中，银花世界之夜以后，再不曾见有团圆*****到了酣畅处，自己觉得是个羽"
local PNG = sh.read_all("emulator/images/sample.png")
local KEY, STS = emulator.OSS_KEY, emulator.OSS_STS

describe("bin/aliocr with local files", function()
  local emu, dir

  setup(function()
    dir = sh.tmpdir()
    emu = emulator.start_oss()
  end)
  teardown(function()
    util.stop_clean(emu)
    os.execute("rm -rf " .. sh.q(dir))
  end)
  before_each(function() emu:reset() end)

  local function env(extra)
    local e = cli.env_for(emu, { ALIOCR_OSS_ENDPOINT = emu.oss, ALIOCR_OSS_REGION = emu.oss_region,
      ALIOCR_OSS_BUCKET = "aliocr", ALIBABA_CLOUD_ACCESS_KEY_ID = STS.id,
      ALIBABA_CLOUD_ACCESS_KEY_SECRET = STS.secret, ALIBABA_CLOUD_SECURITY_TOKEN = STS.token })
    for k, v in pairs(extra or {}) do e[k] = v end
    return e
  end

  local function no_secret(text)
    for _, secret in ipairs({ KEY.secret, STS.secret, STS.token }) do
      assert.is_nil(text:find(secret, 1, true), "a secret in: " .. text)
    end
  end

  it("files and URLs mixed: each answer in input order, named as given; the bucket empty after", function()
    local a, b = dir .. "/a.png", dir .. "/b b.png"
    sh.write_all(a, PNG)
    sh.write_all(b, PNG)
    local r = cli.run(dir, env(), { "-o", "json", a, emu.image, b })
    assert.equal(0, r.status, r.err)
    local lines = {}
    for line in r.out:gmatch("[^\n]+") do lines[#lines + 1] = cjson.decode(line) end
    assert.same({ a, emu.image, b }, { lines[1].url, lines[2].url, lines[3].url })
    for i = 1, 3 do assert.equal(SEED_TEXT, lines[i].result.text) end
    assert.same({}, emu:oss_objects("aliocr"))
    assert.same({ 2, 2 }, { emu:oss_ledger().puts.accepted, emu:oss_ledger().deletes.accepted })
    no_secret(r.out .. r.err)
  end)

  it("a missing file, a non-image and a refused upload: errors of their own, nothing sent for them", function()
    local text = dir .. "/notes.png"
    sh.write_all(text, "not an image")
    local r = cli.run(dir, env(), { "-o", "json", dir .. "/missing.png", text })
    assert.equal(1, r.status, r.err)
    local kinds = {}
    for line in r.out:gmatch("[^\n]+") do kinds[#kinds + 1] = cjson.decode(line).error.kind end
    assert.same({ "image", "image" }, kinds)
    assert.equal(0, #emu:oss_requests())
    -- A wrong STS token: OSS refuses the upload, and the service is not called.
    local good = dir .. "/good.png"
    sh.write_all(good, PNG)
    r = cli.run(dir, env({ ALIBABA_CLOUD_SECURITY_TOKEN = "forged-token" }), { good })
    assert.equal(1, r.status)
    assert.matches("aliocr storage error: upload refused by OSS", r.err)
    assert.equal(0, emu:settled_ledger().total.requests)
    no_secret(r.out .. r.err)
  end)

  it("a file without OSS configured: a usage error naming the variables, before anything is sent", function()
    local a = dir .. "/c.png"
    sh.write_all(a, PNG)
    local r = cli.run(dir, cli.env_for(emu), { emu.image, a })
    assert.equal(2, r.status)
    assert.matches("^aliocr: argument 2: " .. a:gsub("%p", "%%%0") .. " is a local file: reading it needs OSS " ..
      "storage: set ALIOCR_OSS_ENDPOINT, ALIOCR_OSS_BUCKET", r.err)
    assert.equal("", r.out)
    assert.equal(0, emu:settled_ledger().total.requests)
  end)
end)
