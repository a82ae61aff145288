-- The emulator's HTTPS listener: a certificate from a test CA it makes, so
-- that clients can be tested with TLS verification on; HTTP/2 on request.
local emulator = require("helpers.emulator")
local http = require("helpers.http")
local cjson = require("cjson")
local util = require("helpers.util")

local function call(emu, base, o)
  o = o or {}
  return http.request({
    url = base .. "/ocr/handwriting",
    headers = { "Authorization: APPCODE demo" },
    form = { { "url", emu.image } },
    cacert = o.cacert, http2 = o.http2, timeout = 10,
  })
end

-- The emulator runs inside nginx (LuaJIT): its specs run once per make test.
if not util.nginx_only_here() then
  describe("emulator over HTTPS", function() pending(util.NGINX_ONLY) end)
  return
end

describe("emulator over HTTPS", function()
  local emu

  setup(function()
    emu = emulator.start({ "--port", "0", "--https-port", "0", "--appcode", "demo" })
  end)

  teardown(function()
    local left = emu:stop()
    assert.same({ processes = {}, files = {} }, left)
  end)

  before_each(function() emu:reset() end)

  it("answers with verification on when the client trusts the test CA", function()
    local res = call(emu, emu.https, { cacert = emu.ca_file })
    assert.equal(0, res.exit)
    assert.equal(200, res.status)
    local body = cjson.decode(res.body)
    assert.equal(1, body.ok)
    assert.equal("拇指云软件", body.data[1].words)
    assert.matches("^%x+%-%x+%-%x+%-%x+%-%x+$", res.headers["x-ca-request-id"])
  end)

  it("is refused by a verifying client that does not trust the test CA", function()
    local res = call(emu, emu.https)
    assert.equal(60, res.exit) -- CURLE_PEER_FAILED_VERIFICATION
    assert.equal(0, res.status)
    assert.equal(0, emu:ledger().total.requests)
  end)

  it("has a certificate valid for localhost as well as 127.0.0.1", function()
    local base = emu.https:gsub("127%.0%.0%.1", "localhost")
    local res = call(emu, base, { cacert = emu.ca_file })
    assert.equal(200, res.status)
  end)

  it("is not a certificate authority for other names", function()
    local port = emu.https:match(":(%d+)$")
    local res = http.request({
      url = "https://aliocr.test:" .. port .. "/ocr/advanced", cacert = emu.ca_file, timeout = 10,
      args = { "--resolve", "aliocr.test:" .. port .. ":127.0.0.1" },
    })
    assert.equal(60, res.exit)
  end)

  it("counts HTTPS connections apart from plain ones, and bills 2xx alike", function()
    call(emu, emu.https, { cacert = emu.ca_file })
    call(emu, emu.endpoint)
    local c = emu:connections()
    assert.equal(1, c.https)
    assert.equal(1, c.http)
    assert.equal(2, emu:ledger().credentials.demo.billed)
    local log = emu:requests()
    assert.equal("https", log[1].scheme)
    assert.equal("http", log[2].scheme)
  end)

  it("speaks HTTP/1.1 only, unless --http2 is given", function()
    local res = call(emu, emu.https, { cacert = emu.ca_file, http2 = true })
    assert.equal(200, res.status)
    assert.equal("1.1", res.http_version)
  end)
end)

describe("emulator with --http2", function()
  local emu

  setup(function()
    emu = emulator.start({ "--port", "0", "--https-port", "0", "--http2", "--appcode", "demo" })
  end)

  teardown(function()
    assert.same({ processes = {}, files = {} }, emu:stop())
  end)

  it("negotiates HTTP/2 and sends lower-case header names", function()
    local res = call(emu, emu.https, { cacert = emu.ca_file, http2 = true })
    assert.equal(200, res.status)
    assert.equal("2", res.http_version)
    local names = {}
    for _, h in ipairs(res.header_list) do names[#names + 1] = h[1] end
    assert.truthy(#names > 0)
    for _, name in ipairs(names) do assert.equal(name:lower(), name) end
    assert.truthy(res.headers["x-ca-request-id"])
  end)

  it("sends gateway errors in headers over HTTP/2 too", function()
    local res = http.request({
      url = emu.https .. "/ocr/advanced", cacert = emu.ca_file, http2 = true,
      headers = { "Authorization: APPCODE wrong" }, form = { { "url", emu.image } },
    })
    assert.equal(400, res.status)
    assert.equal("Invalid AppCode `not exists`", res.headers["x-ca-error-message"])
  end)
end)
