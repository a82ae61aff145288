-- The emulator's OSS endpoint (--oss-port): PutObject, GetObject,
-- HeadObject and DeleteObject signed with V4 signatures, in the
-- Authorization header and in signed URLs, every refusal OSS documents for
-- them (with its XML body and headers), objects kept and listed, faults, the
-- ledger, the vendor downloading a signed URL; then Aliyun's own SDK,
-- ali-oss from npm, as a client that the emulator must accept.
--
-- The raw requests are signed on the specs' side (helpers/oss_sign.lua,
-- written apart from the emulator's verifier and checked against ali-oss).
local cjson = require("cjson")
local socket = require("socket")
local cer = require("helpers.cer")
local emulator = require("helpers.emulator")
local http = require("helpers.http")
local npm = require("helpers.npm")
local sign = require("helpers.oss_sign")
local sh = require("helpers.sh")
local util = require("helpers.util")

-- The emulator runs inside nginx (LuaJIT): its specs run once per make test.
if not util.nginx_only_here() then
  describe("the emulator's OSS endpoint", function() pending(util.NGINX_ONLY) end)
  return
end

local KEY, STS = emulator.OSS_KEY, emulator.OSS_STS
local PNG = sh.read_all("emulator/images/sample.png")

--- The text of the first <tag> of an XML body, unescaped.
local function xml(body, tag)
  local v = (body or ""):match("<" .. tag .. ">(.-)</" .. tag .. ">")
  if not v then return nil end
  return (v:gsub("&lt;", "<"):gsub("&gt;", ">"):gsub("&quot;", '"'):gsub("&apos;", "'"):gsub("&amp;", "&"))
end

--- The answer of one request to the OSS endpoint of `emu`, signed in its
-- Authorization header (helpers/oss_sign.lua's sign, with the spec key and
-- the emulator's bucket and region unless `o` says otherwise), or with no
-- signature at all (`o.anonymous`), or to a given URL (`o.url`). `o.body`
-- is sent as it is; curl's own Content-Type is removed unless `o.headers`
-- has one.
local function call(emu, o)
  local s = { url = o.url, headers = {} }
  if not o.url then
    local so = {
      method = o.method, base = o.base or emu.oss, bucket = o.bucket or emu.oss_bucket, key = o.key,
      query = o.query, headers = o.headers, id = KEY.id, secret = KEY.secret, region = emu.oss_region,
    }
    for _, k in ipairs({ "id", "secret", "token", "region", "time", "additional", "payload",
                         "credential_date", "signature" }) do
      if o[k] ~= nil then so[k] = o[k] end
    end
    s = sign.sign(so)
    if o.anonymous then
      s.headers = {}
      for _, h in ipairs(o.headers or {}) do s.headers[#s.headers + 1] = h[1] .. ": " .. h[2] end
    end
  end
  local headers = {}
  for _, h in ipairs(s.headers) do headers[#headers + 1] = h end
  for _, h in ipairs(o.send or {}) do headers[#headers + 1] = h end
  local typed = false
  for _, h in ipairs(headers) do if h:lower():find("^content%-type:") then typed = true end end
  if o.body and not typed then headers[#headers + 1] = "Content-Type:" end
  local method, args = o.method, o.args or {}
  if method == "HEAD" then
    method = nil
    args = { "-I" }
  end
  local res = http.request({ url = s.url, method = method, headers = headers, body = o.body, args = args,
    timeout = o.timeout or 20, cacert = o.cacert })
  -- curl -I writes the headers where the body would go: a HEAD has none.
  if o.method == "HEAD" then res.body = "" end
  res.signed = s
  return res
end

local function put(emu, key, body, o)
  o = o or {}
  o.method, o.key, o.body = "PUT", key, body
  return call(emu, o)
end

--- A signed URL of the emulator's OSS endpoint (helpers/oss_sign.lua's
-- presign, with the spec key unless `o` says otherwise).
local function presign(emu, o)
  local po = { method = "GET", base = emu.oss, bucket = emu.oss_bucket, id = KEY.id, secret = KEY.secret,
               region = emu.oss_region, expires = 300 }
  for k, v in pairs(o) do po[k] = v end
  return sign.presign(po)
end

--- Asserts that `res` is OSS error `code` with `status`: the XML body (not
-- for HEAD), Content-Type application/xml, the request ID of the header in
-- the body. Returns the body.
local function assert_error(res, status, code, head)
  assert.equal(status, res.status, res.body)
  assert.equal("application/xml", res.headers["content-type"])
  local body = res.body
  if head then
    body = assert(require("mime").unb64(res.headers["x-oss-err"] or ""), "no x-oss-err")
  end
  assert.equal(code, xml(body, "Code"), body)
  assert.is_string(xml(body, "Message"))
  assert.equal(res.headers["x-oss-request-id"], xml(body, "RequestId"))
  assert.is_string(xml(body, "HostId"))
  assert.truthy(body:find('^<%?xml version="1.0" encoding="UTF%-8"%?>\n<Error>\n'), body)
  return body
end

local function keys_of(list)
  local out = {}
  for i, o in ipairs(list) do out[i] = o.key end
  return out
end

describe("the emulator's OSS endpoint", function()
  local emu

  setup(function() emu = emulator.start_oss({ "--workers", "2" }) end)
  teardown(function() util.stop_clean(emu) end)
  before_each(function() emu:reset() end)

  it("prints its address, region and buckets, and keeps the secrets out of its command line", function()
    assert.matches("^http://127%.0%.0%.1:%d+$", emu.oss)
    assert.equal("cn-hangzhou", emu.oss_region)
    assert.same({ "aliocr" }, emu.oss_buckets)
    local cmdline = sh.read_all("/proc/" .. emu.pid .. "/cmdline")
    assert.falsy(cmdline:find(KEY.secret, 1, true))
    assert.falsy(emu:output():find(KEY.secret, 1, true))
    assert.falsy(emu:output():find(STS.token, 1, true))
  end)

  it("keeps an object: PUT, then GET, HEAD and the control endpoint's list; DELETE removes it", function()
    local _, md5hex = sign.md5(PNG)
    local res = put(emu, "shots/a b+c.png", PNG, { headers = { { "Content-Type", "image/png" } } })
    assert.equal(200, res.status, res.body)
    local etag = '"' .. md5hex:upper() .. '"'
    assert.equal(etag, res.headers.etag)
    assert.equal("", res.body)

    res = call(emu, { method = "GET", key = "shots/a b+c.png" })
    assert.equal(200, res.status)
    assert.equal(PNG, res.body)
    assert.equal("image/png", res.headers["content-type"])
    assert.equal(tostring(#PNG), res.headers["content-length"])
    assert.equal(etag, res.headers.etag)
    assert.matches("^%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT$", res.headers["last-modified"])

    res = call(emu, { method = "HEAD", key = "shots/a b+c.png" })
    assert.equal(200, res.status)
    assert.equal(tostring(#PNG), res.headers["content-length"])
    assert.equal(etag, res.headers.etag)
    assert.equal("image/png", res.headers["content-type"])

    local list = emu:oss_objects()
    assert.equal(1, #list)
    assert.equal("shots/a b+c.png", list[1].key)
    assert.equal(#PNG, list[1].size)
    assert.equal(md5hex:upper(), list[1].etag)

    res = call(emu, { method = "DELETE", key = "shots/a b+c.png" })
    assert.equal(204, res.status)
    assert.same({}, emu:oss_objects())
    assert_error(call(emu, { method = "GET", key = "shots/a b+c.png" }), 404, "NoSuchKey")
    assert_error(call(emu, { method = "HEAD", key = "shots/a b+c.png" }), 404, "NoSuchKey", true)
    -- A DELETE of a key that is not there is a 204 too, as OSS answers.
    assert.equal(204, call(emu, { method = "DELETE", key = "shots/a b+c.png" }).status)
  end)

  it("answers NoSuchKey with the key, and replaces an object PUT again", function()
    local body = assert_error(call(emu, { method = "GET", key = "nothing/here.png" }), 404, "NoSuchKey")
    assert.equal("nothing/here.png", xml(body, "Key"))
    assert.equal(200, put(emu, "k.txt", "one", { headers = { { "Content-Type", "text/plain" } } }).status)
    assert.equal(200, put(emu, "k.txt", "second").status)
    local res = call(emu, { method = "GET", key = "k.txt" })
    assert.equal("second", res.body)
    -- Without a Content-Type, the extension's (or application/octet-stream).
    assert.equal("text/plain", res.headers["content-type"])
    assert.equal(200, put(emu, "blob", "x").status)
    assert.equal("application/octet-stream", call(emu, { method = "GET", key = "blob" }).headers["content-type"])
    assert.same({ "blob", "k.txt" }, keys_of(emu:oss_objects()))
  end)

  it("gives every answer x-oss-request-id, Server: AliyunOSS and Date; the XML's RequestId is the header's", function()
    local ids = {}
    local answers = {
      put(emu, "id.txt", "x"),
      call(emu, { method = "GET", key = "id.txt" }),
      call(emu, { method = "GET", key = "id.txt", anonymous = true }),
      call(emu, { method = "GET", key = "id.txt", bucket = "no-such-bucket" }),
      call(emu, { method = "DELETE", key = "id.txt" }),
    }
    for i, res in ipairs(answers) do
      local id = res.headers["x-oss-request-id"]
      assert.matches("^%x+$", id, "answer " .. i)
      assert.equal(24, #id)
      assert.is_nil(ids[id], "request IDs are unique")
      ids[id] = true
      assert.equal("AliyunOSS", res.headers.server)
      assert.matches("GMT$", res.headers.date)
    end
    assert.equal(answers[3].headers["x-oss-request-id"], xml(answers[3].body, "RequestId"))
  end)

  it("checks Content-MD5: a wrong one is 400 InvalidDigest and nothing is stored", function()
    local b64 = sign.md5(PNG)
    assert.equal(200, put(emu, "md5.png", PNG, { headers = { { "Content-MD5", b64 } } }).status)
    local wrong = sign.md5("other bytes")
    assert_error(put(emu, "md5-bad.png", PNG, { headers = { { "Content-MD5", wrong } } }), 400, "InvalidDigest")
    assert.same({ "md5.png" }, keys_of(emu:oss_objects()))
  end)

  it("refuses an anonymous request (private bucket) and names a bucket that does not exist", function()
    local res = call(emu, { method = "PUT", key = "anon.txt", body = "x", anonymous = true })
    assert_error(res, 403, "AccessDenied")
    res = call(emu, { method = "GET", key = "anon.txt", anonymous = true })
    assert_error(res, 403, "AccessDenied")
    local body = assert_error(put(emu, "x.txt", "x", { bucket = "other-bucket" }), 404, "NoSuchBucket")
    assert.equal("other-bucket", xml(body, "BucketName"))
    assert.same({}, emu:oss_objects())
  end)

  it("refuses an unknown AccessKey ID with InvalidAccessKeyId", function()
    local body = assert_error(put(emu, "x.txt", "x", { id = "LTAInobody" }), 403, "InvalidAccessKeyId")
    assert.equal("LTAInobody", xml(body, "OSSAccessKeyId"))
  end)

  it("refuses a wrong signature with SignatureDoesNotMatch, its StringToSign and CanonicalRequest OSS's", function()
    local res = put(emu, "sig.txt", "hello", { secret = "not-the-secret",
      headers = { { "Content-Type", "text/plain" }, { "x-oss-meta-note", " spaced  " } } })
    local body = assert_error(res, 403, "SignatureDoesNotMatch")
    -- The server's strings are the ones the specs' signer made on its own.
    assert.equal(res.signed.string_to_sign, xml(body, "StringToSign"))
    assert.equal(res.signed.canonical_request, xml(body, "CanonicalRequest"))
    assert.equal(KEY.id, xml(body, "OSSAccessKeyId"))
    assert.matches("^%x+$", xml(body, "SignatureProvided"))
    local bytes = xml(body, "StringToSignBytes")
    assert.equal("4F 53 53 34 ", bytes:sub(1, 12)) -- "OSS4"
    assert.equal("0002-00000201", xml(body, "EC"))
    assert.equal("0002-00000201", res.headers["x-oss-ec"])
    assert.same({}, emu:oss_objects())
    -- The canonical request the specs' signer made has OSS's shape.
    local lines = {}
    for l in (res.signed.canonical_request .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = l end
    assert.matches("^x%-oss%-date:%d%d%d%d%d%d%d%dT%d%d%d%d%d%dZ$", lines[6])
    lines[6] = "x-oss-date"
    assert.same({ "PUT", "/aliocr/sig.txt", "", "content-type:text/plain", "x-oss-content-sha256:UNSIGNED-PAYLOAD",
      "x-oss-date", "x-oss-meta-note:spaced", "", "", "UNSIGNED-PAYLOAD" }, lines)
  end)

  it("signs what it should: the method, the key, the query, the signed headers", function()
    -- Signed for one key, sent to another: the canonical URI differs.
    local s = sign.sign({ method = "PUT", base = emu.oss, bucket = emu.oss_bucket, key = "a.txt", id = KEY.id,
      secret = KEY.secret, region = emu.oss_region })
    local headers = {}
    for _, h in ipairs(s.headers) do headers[#headers + 1] = h end
    headers[#headers + 1] = "Content-Type:"
    local res = http.request({ url = emu.oss .. "/aliocr/b.txt", method = "PUT", headers = headers, body = "x" })
    assert_error(res, 403, "SignatureDoesNotMatch")
    -- An x-oss-* header added after signing.
    local late = { "x-oss-meta-late: 1" }
    for _, h in ipairs(headers) do late[#late + 1] = h end
    res = http.request({ url = s.url, method = "PUT", body = "x", headers = late })
    assert_error(res, 403, "SignatureDoesNotMatch")
    -- The same headers as signed: accepted.
    res = http.request({ url = s.url, method = "PUT", headers = headers, body = "x" })
    assert.equal(200, res.status, res.body)
    -- A query parameter is signed: sorted, encoded, a bare name for an empty value.
    res = call(emu, { method = "GET", key = "a.txt", query = { { "response-cache-control", "no cache" },
      { "a-param", "" }, { "Z", "/+?" } } })
    assert.equal(200, res.status, res.body)
    assert.equal("x", res.body)
    -- GetObject's response-* parameters set the answer's headers.
    assert.equal("no cache", res.headers["cache-control"])
  end)

  it("signs the additional headers it is told to (AdditionalHeaders)", function()
    local o = { headers = { { "Content-Disposition", "attachment" } }, additional = { "content-disposition" } }
    local res = put(emu, "add.txt", "x", o)
    assert.equal(200, res.status, res.body)
    assert.truthy(res.signed.authorization:find(",AdditionalHeaders=content-disposition,", 1, true))
    assert.truthy(res.signed.canonical_request:find("\ncontent-disposition:attachment\n", 1, true))
    -- Signed with one value, sent with another.
    local s = res.signed
    local headers = {}
    for _, h in ipairs(s.headers) do
      headers[#headers + 1] = h:find("^Content%-Disposition") and "Content-Disposition: inline" or h
    end
    headers[#headers + 1] = "Content-Type:"
    res = http.request({ url = s.url, method = "PUT", headers = headers, body = "x" })
    assert_error(res, 403, "SignatureDoesNotMatch")
    -- An empty AdditionalHeaders is refused.
    s = sign.sign({ method = "GET", base = emu.oss, bucket = emu.oss_bucket, key = "add.txt", id = KEY.id,
      secret = KEY.secret, region = emu.oss_region })
    local authz = s.headers[#s.headers]:gsub(",Signature=", ",AdditionalHeaders=,Signature=")
    s.headers[#s.headers] = authz
    local body = assert_error(http.request({ url = s.url, headers = s.headers }), 400, "InvalidArgument")
    assert.equal("0002-00000209", xml(body, "EC"))
  end)

  it("allows 15 minutes of clock skew, and refuses more with RequestTimeTooSkewed", function()
    assert.equal(200, put(emu, "t.txt", "x", { time = os.time() - 14 * 60 }).status)
    assert.equal(200, put(emu, "t.txt", "x", { time = os.time() + 14 * 60 }).status)
    for _, t in ipairs({ os.time() - 16 * 60, os.time() + 16 * 60 }) do
      local body = assert_error(put(emu, "t.txt", "x", { time = t }), 403, "RequestTimeTooSkewed")
      assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", xml(body, "RequestTime"))
      assert.is_string(xml(body, "ServerTime"))
      assert.equal("900000", xml(body, "MaxAllowedSkewMilliseconds"))
    end
  end)

  it("refuses a credential whose date or region is not the request's, or that is malformed", function()
    local yesterday = sign.datetime(os.time() - 86400):sub(1, 8)
    local body = assert_error(put(emu, "c.txt", "x", { credential_date = yesterday }), 400, "InvalidArgument")
    assert.truthy(xml(body, "Message"):find("date", 1, true))
    body = assert_error(put(emu, "c.txt", "x", { region = "cn-beijing" }), 400, "InvalidArgument")
    assert.truthy(xml(body, "Message"):find("cn-hangzhou", 1, true))
    -- Not a V4 Authorization header.
    local s = sign.sign({ method = "GET", base = emu.oss, bucket = emu.oss_bucket, key = "c.txt", id = KEY.id,
      secret = KEY.secret, region = emu.oss_region })
    for _, bad in ipairs({ "OSS4-HMAC-SHA256 Credential=" .. KEY.id .. "/20240101/cn-hangzhou/oss/aliyun_v4_request",
                           "OSS4-HMAC-SHA256 Credential=" .. KEY.id ..
                             "/cn-hangzhou/oss/aliyun_v4_request,Signature=00",
                           "OSS4-HMAC-SHA256 Credential=a/b/c/d/e,Signature=00,Extra=1",
                           "AWS4-HMAC-SHA256 Credential=x" }) do
      local headers = {}
      for i = 1, #s.headers - 1 do headers[i] = s.headers[i] end
      headers[#headers + 1] = "Authorization: " .. bad
      assert_error(http.request({ url = s.url, headers = headers }), 400, "InvalidArgument")
    end
    -- A V1 signature ("OSS id:signature"): this emulator takes V4 only.
    assert_error(http.request({ url = s.url, headers = { "Authorization: OSS " .. KEY.id .. ":c2lnbmF0dXJl" } }),
      403, "AccessDenied")
  end)

  it("wants x-oss-content-sha256: UNSIGNED-PAYLOAD, or the body's SHA-256", function()
    assert_error(put(emu, "h.txt", "body", { payload = false }), 400, "InvalidArgument")
    assert.equal(200, put(emu, "h.txt", "body", { payload = sign.sha256("body") }).status)
    assert_error(put(emu, "h.txt", "other", { payload = sign.sha256("body") }), 400, "InvalidArgument")
    assert.equal("body", call(emu, { method = "GET", key = "h.txt" }).body)
  end)

  it("takes an STS key with its security token only", function()
    local sts = { id = STS.id, secret = STS.secret, token = STS.token }
    assert.equal(200, put(emu, "sts.txt", "x", sts).status)
    assert.equal("x", call(emu, { method = "GET", key = "sts.txt", id = STS.id, secret = STS.secret,
      token = STS.token }).body)
    -- Without its token.
    local body = assert_error(put(emu, "sts.txt", "x", { id = STS.id, secret = STS.secret }), 403,
      "InvalidAccessKeyId")
    assert.equal(STS.id, xml(body, "OSSAccessKeyId"))
    -- With another token.
    assert_error(put(emu, "sts.txt", "x", { id = STS.id, secret = STS.secret, token = STS.token .. "x" }), 403,
      "InvalidSecurityToken")
    -- A plain key with a token: OSS takes it for an STS key it does not know.
    assert_error(put(emu, "sts.txt", "x", { token = STS.token }), 403, "InvalidAccessKeyId")
    -- The token never reaches the request log.
    for _, e in ipairs(emu:oss_requests()) do
      assert.falsy(cjson.encode(e):find(STS.token, 1, true), "the log holds the token")
    end
  end)

  describe("signed URLs", function()
    it("serve a GET until they expire", function()
      assert.equal(200, put(emu, "u/shot.png", PNG, { headers = { { "Content-Type", "image/png" } } }).status)
      local url = presign(emu, { key = "u/shot.png", expires = 60 })
      assert.matches("^" .. emu.oss:gsub("%p", "%%%0") .. "/aliocr/u/shot%.png%?", url)
      local res = http.request({ url = url })
      assert.equal(200, res.status, res.body)
      assert.equal(PNG, res.body)
      assert.equal("image/png", res.headers["content-type"])
      -- Signed two minutes ago for one minute: expired.
      url = presign(emu, { key = "u/shot.png", expires = 60, time = os.time() - 120 })
      local body = assert_error(http.request({ url = url }), 403, "AccessDenied")
      assert.equal("Request has expired.", xml(body, "Message"))
      assert.is_string(xml(body, "Expires"))
      assert.is_string(xml(body, "ServerTime"))
      -- Signed for a time more than 15 minutes ahead: not valid yet.
      url = presign(emu, { key = "u/shot.png", expires = 3600, time = os.time() + 20 * 60 })
      assert_error(http.request({ url = url }), 403, "AccessDenied")
      -- Up to 15 minutes ahead is fine.
      url = presign(emu, { key = "u/shot.png", expires = 60, time = os.time() + 10 * 60 })
      assert.equal(200, http.request({ url = url }).status)
    end)

    it("last from 1 second to 7 days (604800 s)", function()
      assert.equal(200, put(emu, "e.txt", "x").status)
      assert.equal(200, http.request({ url = presign(emu, { key = "e.txt", expires = 604800 }) }).status)
      -- (Dated 2 s ahead, which the skew allows: a second boundary between
      -- signing and the GET does not expire it.)
      local soon = presign(emu, { key = "e.txt", expires = 1, time = os.time() + 2 })
      assert.equal(200, http.request({ url = soon }).status)
      for _, bad in ipairs({ 0, 604801, "soon" }) do
        local body = assert_error(http.request({ url = presign(emu, { key = "e.txt", expires = bad }) }), 400,
          "InvalidArgument")
        assert.equal("0002-00000232", xml(body, "EC"))
      end
    end)

    it("are refused when tampered with, for another key, or with a wrong token", function()
      assert.equal(200, put(emu, "t/a.txt", "a").status)
      assert.equal(200, put(emu, "t/b.txt", "b").status)
      local url = presign(emu, { key = "t/a.txt" })
      local other = url:gsub("/t/a%.txt%?", "/t/b.txt?")
      local body = assert_error(http.request({ url = other }), 403, "SignatureDoesNotMatch")
      assert.truthy(xml(body, "CanonicalRequest"):find("^GET\n/aliocr/t/b%.txt\n"))
      assert_error(http.request({ url = url:gsub("x%-oss%-expires=300", "x-oss-expires=301") }), 403,
        "SignatureDoesNotMatch")
      assert_error(http.request({ url = url .. "&extra=1" }), 403, "SignatureDoesNotMatch")
      assert_error(http.request({ url = presign(emu, { key = "t/a.txt", secret = "wrong" }) }), 403,
        "SignatureDoesNotMatch")
      -- An STS key signs with its token in the URL.
      url = presign(emu, { key = "t/a.txt", id = STS.id, secret = STS.secret, token = STS.token })
      assert.equal("a", http.request({ url = url }).body)
      assert_error(http.request({ url = presign(emu, { key = "t/a.txt", id = STS.id, secret = STS.secret,
        token = "forged" }) }), 403, "InvalidSecurityToken")
      assert_error(http.request({ url = presign(emu, { key = "t/a.txt", id = STS.id, secret = STS.secret }) }),
        403, "InvalidAccessKeyId")
      -- Missing parts.
      url = presign(emu, { key = "t/a.txt" })
      assert_error(http.request({ url = url:gsub("&x%-oss%-signature=%x+", "") }), 400, "InvalidArgument")
      assert_error(http.request({ url = url:gsub("x%-oss%-expires=300&", "") }), 400, "InvalidArgument")
    end)

    it("can sign a PUT, a HEAD and a DELETE too", function()
      local res = http.request({ url = presign(emu, { method = "PUT", key = "p.txt" }), method = "PUT", body = "put",
        headers = { "Content-Type:" } })
      assert.equal(200, res.status, res.body)
      res = http.request({ url = presign(emu, { method = "HEAD", key = "p.txt" }), args = { "-I" } })
      assert.equal(200, res.status)
      assert.equal("3", res.headers["content-length"])
      -- A URL signed for GET does not DELETE.
      assert_error(http.request({ url = presign(emu, { key = "p.txt" }), method = "DELETE" }), 403,
        "SignatureDoesNotMatch")
      assert.equal(204, http.request({ url = presign(emu, { method = "DELETE", key = "p.txt" }),
        method = "DELETE" }).status)
      assert.same({}, emu:oss_objects())
    end)
  end)

  it("takes virtual-hosted requests: Host BUCKET.oss-REGION.aliyuncs.com, path /KEY", function()
    local s = sign.sign({ method = "PUT", base = emu.oss, bucket = emu.oss_bucket, key = "v/h.txt", id = KEY.id,
      secret = KEY.secret, region = emu.oss_region, headers = { { "Content-Type", "text/plain" } } })
    local headers = { "Host: aliocr.oss-cn-hangzhou.aliyuncs.com" }
    for _, h in ipairs(s.headers) do headers[#headers + 1] = h end
    local res = http.request({ url = emu.oss .. "/v/h.txt", method = "PUT", headers = headers, body = "vh" })
    assert.equal(200, res.status, res.body)
    assert.same({ "v/h.txt" }, keys_of(emu:oss_objects()))
    -- A bucket that is not there, by its Host.
    headers[1] = "Host: nope.oss-cn-hangzhou.aliyuncs.com"
    local body = assert_error(http.request({ url = emu.oss .. "/v/h.txt", headers = headers }), 404, "NoSuchBucket")
    assert.equal("nope.oss-cn-hangzhou.aliyuncs.com", xml(body, "HostId"))
  end)

  it("does not serve other operations: 501 NotImplemented", function()
    assert_error(call(emu, { method = "GET", key = "" }), 501, "NotImplemented")       -- ListObjects
    assert_error(call(emu, { method = "GET", key = "x.txt", query = { { "acl", "" } } }), 501, "NotImplemented")
    local res = http.request({ url = emu.oss .. "/" })
    assert_error(res, 501, "NotImplemented")
  end)

  it("keeps a 10 MiB object whole", function()
    -- Bytes of every value.
    local f = assert(io.open("/dev/urandom", "rb"))
    local big = f:read(10 * 1024 * 1024)
    f:close()
    assert.equal(10 * 1024 * 1024, #big)
    local _, md5hex = sign.md5(big)
    local res = put(emu, "big.bin", big, { headers = { { "Content-Type", "application/octet-stream" } } })
    assert.equal(200, res.status, res.body)
    assert.equal('"' .. md5hex:upper() .. '"', res.headers.etag)
    res = call(emu, { method = "GET", key = "big.bin" })
    assert.equal(#big, #res.body)
    assert.is_true(res.body == big, "the bytes came back as they went")
  end)

  it("takes an upload in chunked transfer encoding, and one with Expect: 100-continue", function()
    local body = string.rep(PNG, 100)
    local res = put(emu, "chunked.png", body, { send = { "Transfer-Encoding: chunked" } })
    assert.equal(200, res.status, res.body)
    res = put(emu, "expect.png", body, { send = { "Expect: 100-continue" } })
    assert.equal(200, res.status, res.body)
    assert.equal(body, call(emu, { method = "GET", key = "chunked.png" }).body)
    assert.equal(body, call(emu, { method = "GET", key = "expect.png" }).body)
    local chunked = 0
    for _, e in ipairs(emu:oss_requests()) do
      if e.method == "PUT" then assert.equal(#body, e.body_bytes) end
      if e.key == "chunked.png" and util.header(e, "transfer-encoding") == "chunked" then chunked = chunked + 1 end
    end
    assert.equal(1, chunked, "the upload went chunked")
  end)

  it("keeps every object whatever worker took the request, and forgets them all on reset", function()
    for i = 1, 12 do
      assert.equal(200, put(emu, string.format("w/%02d.txt", i), "n" .. i).status)
    end
    for i = 1, 12 do
      assert.equal("n" .. i, call(emu, { method = "GET", key = string.format("w/%02d.txt", i) }).body)
    end
    assert.equal(12, #emu:oss_objects())
    local files = sh.capture("ls " .. sh.q(emu.scratch .. "/oss/aliocr"))
    assert.equal(12, select(2, files:gsub("%.obj\n", "")))
    emu:reset()
    assert.same({}, emu:oss_objects())
    assert.equal("", sh.capture("ls " .. sh.q(emu.scratch .. "/oss/aliocr")))
    assert_error(call(emu, { method = "GET", key = "w/01.txt" }), 404, "NoSuchKey")
  end)

  it("counts OSS requests in the ledger: accepted and refused, per operation", function()
    put(emu, "l.txt", "x")
    put(emu, "l.txt", "x", { secret = "wrong" })
    call(emu, { method = "GET", key = "l.txt" })
    call(emu, { method = "GET", key = "missing" })
    call(emu, { method = "HEAD", key = "l.txt" })
    call(emu, { method = "DELETE", key = "l.txt" })
    call(emu, { method = "DELETE", key = "l.txt" })
    local l = emu:oss_ledger()
    assert.same({ accepted = 1, refused = 1, by_vendor = 0 }, l.puts)
    assert.same({ accepted = 1, refused = 1, by_vendor = 0 }, l.gets)
    assert.same({ accepted = 1, refused = 0, by_vendor = 0 }, l.heads)
    assert.same({ accepted = 2, refused = 0, by_vendor = 0 }, l.deletes)
    -- The request log has each, with its auth, key and code.
    local log = emu:oss_requests()
    assert.equal(7, #log)
    assert.equal("PUT", log[2].method)
    assert.equal("SignatureDoesNotMatch", log[2].code)
    assert.equal(KEY.id, log[2].key_id)
    assert.equal("header", log[1].auth)
    assert.equal("l.txt", log[1].key)
    emu:reset()
    assert.same({ accepted = 0, refused = 0, by_vendor = 0 }, emu:oss_ledger().puts)
    assert.same({}, emu:oss_requests())
  end)

  describe("faults", function()
    after_each(function() emu:ctl("DELETE", "/faults") end)

    it("oss_error: the next N uploads are refused with that OSS error, then they succeed", function()
      local _, status = emu:fault({ mode = "oss_error", code = "AccessDenied", times = 2 })
      assert.equal(200, status)
      for _ = 1, 2 do
        local body = assert_error(put(emu, "f.txt", "x"), 403, "AccessDenied")
        assert.is_string(xml(body, "Message"))
      end
      assert.equal(200, put(emu, "f.txt", "x").status)
      -- Other operations are not touched by a PUT rule.
      emu:fault({ mode = "oss_error", code = "InternalError" })
      assert.equal(200, call(emu, { method = "GET", key = "f.txt" }).status)
      assert_error(put(emu, "f.txt", "x"), 500, "InternalError")
      emu:ctl("DELETE", "/faults")
      -- Any code, with a status and message given; on GET.
      emu:fault({ mode = "oss_error", code = "SlowDown", status = 503, message = "Please slow down.",
        method = "GET", times = 1 })
      local body = assert_error(call(emu, { method = "GET", key = "f.txt" }), 503, "SlowDown")
      assert.equal("Please slow down.", xml(body, "Message"))
      assert.equal(200, call(emu, { method = "GET", key = "f.txt" }).status)
      local l = emu:oss_ledger()
      assert.equal(3, l.puts.refused)
      assert.equal(1, l.gets.refused)
    end)

    it("oss_error needs a code the emulator knows, or a status; OSS rules take no api", function()
      local res, status = emu:fault({ mode = "oss_error", code = "Weird" })
      assert.equal(400, status)
      assert.truthy(res.error:find("give a status", 1, true))
      res, status = emu:fault({ mode = "oss_slow", ms = 10, api = "advanced" })
      assert.equal(400, status)
      assert.truthy(res.error:find("no api", 1, true))
      res, status = emu:fault({ mode = "oss_gone", method = "GET" })
      assert.equal(400, status)
      assert.is_string(res.error)
    end)

    it("oss_slow: an upload answered late", function()
      emu:fault({ mode = "oss_slow", ms = 700, times = 1 })
      local t0 = socket.gettime()
      assert.equal(200, put(emu, "slow.txt", "x").status)
      assert.is_true(socket.gettime() - t0 >= 0.65)
      t0 = socket.gettime()
      assert.equal(200, put(emu, "slow.txt", "x").status)
      assert.is_true(socket.gettime() - t0 < 0.6)
      -- A client that gives up first sees a timeout (the emulator stores
      -- the object all the same, when its delay is over).
      emu:fault({ mode = "oss_slow", ms = 2000, times = 1 })
      local res = put(emu, "slow2.txt", "x", { timeout = 1 })
      assert.equal(28, res.exit)
      assert.truthy(util.eventually(function() return #emu:oss_objects() == 2 end))
    end)

    it("oss_gone: the PUT succeeds, the object is gone for the GET that follows", function()
      emu:fault({ mode = "oss_gone", times = 1 })
      assert.equal(200, put(emu, "gone.png", PNG).status)
      assert_error(http.request({ url = presign(emu, { key = "gone.png" }) }), 404, "NoSuchKey")
      assert.same({}, emu:oss_objects())
      assert.equal(200, put(emu, "kept.png", PNG).status)
      assert.same({ "kept.png" }, keys_of(emu:oss_objects()))
    end)

    it("keeps OSS rules and the gateway's apart", function()
      emu:fault({ mode = "service_unavailable" })      -- a gateway rule for every API call
      assert.equal(200, put(emu, "apart.txt", "x").status)
      assert.equal(503, emu:call("advanced").status)
      emu:ctl("DELETE", "/faults")
      emu:fault({ mode = "oss_error", code = "AccessDenied" })
      assert.equal(200, emu:call("advanced").status)
    end)
  end)

  describe("the vendor", function()
    it("downloads a signed URL from the OSS endpoint, its query intact", function()
      assert.equal(200, put(emu, "ocr/shot.png", PNG, { headers = { { "Content-Type", "image/png" } } }).status)
      local url = presign(emu, { key = "ocr/shot.png", id = STS.id, secret = STS.secret, token = STS.token })
      local res = emu:call("advanced", { form = { { "url", url } } })
      assert.equal(200, res.status, res.body)
      assert.equal(1, http.json(res).ok)
      local log = emu:oss_requests()
      local fetched = log[#log]
      assert.is_true(fetched.by_vendor)
      assert.equal(200, fetched.status)
      assert.equal("url", fetched.auth)
      -- What the vendor asked for is the URL's path and query, byte for byte
      -- (the token is redacted in the log).
      local path_query = url:match("^https?://[^/]+(/.*)$")
      assert.equal((path_query:gsub("x%-oss%-security%-token=[^&]*", "x-oss-security-token=REDACTED")), fetched.uri)
      assert.equal(1, emu:oss_ledger().gets.by_vendor)
    end)

    it("fails the call (666, not billed) when the object is gone or the URL expired", function()
      emu:fault({ mode = "oss_gone", times = 1 })
      assert.equal(200, put(emu, "ocr/gone.png", PNG).status)
      local res = emu:call("advanced", { form = { { "url", presign(emu, { key = "ocr/gone.png" }) } } })
      assert.equal(666, res.status)
      assert.truthy(http.json(res).msg:find("404", 1, true))
      assert.equal(200, put(emu, "ocr/old.png", PNG).status)
      res = emu:call("advanced", { form = { { "url", presign(emu, { key = "ocr/old.png", expires = 1,
        time = os.time() - 60 }) } } })
      assert.equal(666, res.status)
      assert.truthy(http.json(res).msg:find("403", 1, true))
      assert.equal(0, emu:settled_ledger().total.billed)
    end)
  end)
end)

describe("the emulator's OSS options", function()
  local run = sh.run

  it("are documented by --help", function()
    local out, status = run(emulator.bin .. " --help")
    assert.equal(0, status)
    for _, opt in ipairs({ "--oss-port", "--oss-https-port", "--oss-region", "--oss-bucket", "--oss-key",
                           "--oss-sts", "--oss-max-body", "ALIOCR_EMULATOR_OSS_KEYS", "ALIOCR_EMULATOR_OSS_STS",
                           "oss-region" }) do
      assert.truthy(out:find(opt, 1, true), "help lacks " .. opt)
    end
  end)

  it("are refused without --oss-port, without a credential, or malformed; nothing is left behind", function()
    local tmp = sh.tmpdir()
    local base = "TMPDIR=" .. sh.q(tmp) .. " " .. emulator.bin .. " --port 0 --appcode demo "
    for _, case in ipairs({
      { "--oss-key a:b", "the OSS options need --oss-port" },
      { "--oss-port 0", "no OSS credentials" },
      { "--oss-port 0 --oss-key a:b --oss-bucket Bad_Name", "is not a bucket name" },
      { "--oss-port 0 --oss-key a:b --oss-region 'cn hangzhou'", "--oss-region takes a region ID" },
      { "--oss-port 0 --oss-key nosecret", "--oss-key takes ID:SECRET" },
      { "--oss-port 0 --oss-sts a:b", "--oss-sts takes ID:SECRET:TOKEN" },
      { "--oss-port 0 --oss-key a:b --oss-max-body none", "--oss-max-body must be an integer" },
    }) do
      local out, status = run(base .. case[1])
      assert.equal(2, status, case[1] .. ": " .. out)
      assert.truthy(out:find(case[2], 1, true), case[1] .. ": " .. out)
    end
    assert.equal("", sh.capture("ls -A " .. sh.q(tmp)))
    os.execute("rm -rf " .. sh.q(tmp))
  end)

  it("set the region, the buckets, the keys, the body limit, and an HTTPS listener", function()
    local emu = emulator.start({ "--port", "0", "--appcode", "demo", "--oss-port", "0", "--oss-https-port", "0",
      "--oss-region", "cn-beijing", "--oss-bucket", "first-bucket", "--oss-bucket", "second-bucket",
      "--oss-key", "LTAIcmdline:cmdline-secret", "--oss-max-body", "1000" },
      { ALIOCR_EMULATOR_OSS_STS = "STS.env:env-secret:env-token" })
    finally(function() util.stop_clean(emu) end)
    assert.equal("cn-beijing", emu.oss_region)
    assert.same({ "first-bucket", "second-bucket" }, emu.oss_buckets)
    assert.matches("^https://127%.0%.0%.1:%d+$", emu.oss_https)
    assert.is_string(emu.ca_file)
    local function o(extra)
      local t = { method = "PUT", key = "k.txt", body = "data", id = "LTAIcmdline", secret = "cmdline-secret",
                  bucket = "second-bucket" }
      for k, v in pairs(extra or {}) do t[k] = v end
      return t
    end
    assert.equal(200, call(emu, o()).status)
    assert.equal(200, call(emu, o({ bucket = "first-bucket", id = "STS.env", secret = "env-secret",
      token = "env-token" })).status)
    assert.equal(1, #emu:oss_objects("first-bucket"))
    assert.equal(1, #emu:oss_objects("second-bucket"))
    assert_error(call(emu, o({ region = "cn-hangzhou" })), 400, "InvalidArgument")
    assert_error(call(emu, o({ bucket = "aliocr" })), 404, "NoSuchBucket")
    -- Over HTTPS, with the test CA.
    local res = call(emu, o({ base = emu.oss_https, method = "GET", body = false, cacert = emu.ca_file }))
    assert.equal(200, res.status, res.error)
    assert.equal("data", res.body)
    -- Over --oss-max-body: OSS's EntityTooLarge.
    assert_error(call(emu, o({ body = string.rep("x", 1001) })), 400, "EntityTooLarge")
    assert.equal(200, call(emu, o({ body = string.rep("x", 1000) })).status)
  end)
end)

describe("the emulator's OSS endpoint with the tesseract backend", function()
  local have = sh.capture("tesseract --list-langs 2>/dev/null"):find("\neng\n")
  if not have then
    it("reads an uploaded image through its signed URL", function()
      pending("tesseract with its eng data is not installed (scripts/bootstrap installs it)")
    end)
    return
  end

  it("reads an uploaded image through its signed URL: the real text, not a canned one", function()
    local emu = emulator.start_oss({ "--backend", "tesseract", "--lang", "eng" })
    finally(function() util.stop_clean(emu) end)
    local png = sh.read_all("examples/images/en-printed.png")
    local truth = sh.read_all("examples/images/en-printed.txt")
    local res = put(emu, "ocr/en-printed.png", png, { headers = { { "Content-Type", "image/png" } } })
    assert.equal(200, res.status, res.body)
    local url = presign(emu, { key = "ocr/en-printed.png", expires = 120 })
    res = emu:call("handwriting", { form = { { "url", url } }, timeout = 60 })
    assert.equal(200, res.status, res.body)
    local lines = {}
    for i, line in ipairs(http.json(res).data) do lines[i] = line.words end
    local rate = cer.rate(table.concat(lines, "\n"), truth)
    assert.is_true(rate <= 0.05, string.format("CER %.3f: read %q", rate, table.concat(lines, "\n")))
    assert.equal(1, emu:oss_ledger().gets.by_vendor)
  end)
end)

-- Aliyun's OSS SDK for Node.js as a client of the emulator. The script
-- reads its settings (credentials included) on stdin, so that no secret is
-- on a command line, and prints one JSON line of results.
local SDK_SCRIPT = [[
const OSS = require('ali-oss');
const fs = require('fs');
const signUtils = require('ali-oss/lib/common/signUtils');
const input = JSON.parse(fs.readFileSync(0, 'utf8'));
const out = {};
function client(extra) {
  return new OSS(Object.assign({
    endpoint: input.endpoint, region: input.region, bucket: input.bucket,
    accessKeyId: input.key.id, accessKeySecret: input.key.secret, authorizationV4: true, timeout: 20000,
  }, extra || {}));
}
function failure(e) { return { code: e.code, status: e.status, requestId: e.requestId, name: e.name }; }
(async () => {
  const step = input.step;
  if (step === 'upload') {
    const png = fs.readFileSync(input.image);
    const c = client();
    const put = await c.put('sdk/shot.png', png);
    out.put = { status: put.res.status, etag: put.res.headers.etag, requestId: put.res.headers['x-oss-request-id'] };
    const got = await c.get('sdk/shot.png');
    out.get = { status: got.res.status, same: Buffer.compare(got.content, png) === 0,
                type: got.res.headers['content-type'] };
    const head = await c.head('sdk/shot.png');
    out.head = { status: head.status, length: head.res.headers['content-length'] };
    // Path style (sldEnable): http://127.0.0.1:PORT/BUCKET/KEY?...
    out.url_path = await client({ sldEnable: true }).signatureUrlV4('GET', 300, {}, 'sdk/shot.png');
    // Virtual-hosted: http://BUCKET.oss-REGION.aliyuncs.com:PORT/KEY?... (only signed here, never sent by node).
    out.url_host = await client({ endpoint: input.host_endpoint }).signatureUrlV4('GET', 300, {}, 'sdk/shot.png');
    const sts = client({ accessKeyId: input.sts.id, accessKeySecret: input.sts.secret, stsToken: input.sts.token,
                         refreshSTSTokenInterval: 0 });
    const sput = await sts.put('sdk/sts.txt', Buffer.from('from an STS key'));
    out.sts_put = { status: sput.res.status };
    const sget = await sts.get('sdk/sts.txt');
    out.sts_get = { status: sget.res.status, body: sget.content.toString() };
    out.sts_url = await client({ accessKeyId: input.sts.id, accessKeySecret: input.sts.secret,
      stsToken: input.sts.token, sldEnable: true }).signatureUrlV4('GET', 300, {}, 'sdk/sts.txt');
    try { await client({ accessKeySecret: 'not-the-secret' }).put('sdk/bad.txt', Buffer.from('x'));
          out.bad = 'accepted'; }
    catch (e) { out.bad = failure(e); }
    try { await client({ accessKeyId: input.sts.id, accessKeySecret: input.sts.secret, stsToken: 'forged',
                         refreshSTSTokenInterval: 0 }).put('sdk/bad.txt', Buffer.from('x'));
          out.forged = 'accepted'; }
    catch (e) { out.forged = failure(e); }
  } else if (step === 'delete') {
    const c = client();
    out.delete = (await c.delete('sdk/shot.png')).res.status;
    out.delete_sts = (await client({ accessKeyId: input.sts.id, accessKeySecret: input.sts.secret,
      stsToken: input.sts.token, refreshSTSTokenInterval: 0 }).delete('sdk/sts.txt')).res.status;
    try { await c.get('sdk/shot.png'); out.after = 'found'; } catch (e) { out.after = failure(e); }
    try { await c.head('sdk/shot.png'); out.head_after = 'found'; } catch (e) { out.head_after = failure(e); }
  } else if (step === 'sign') {
    // ali-oss's own V4 functions for the inputs the spec gives.
    const r = input.request;
    out.authorization = signUtils.authorizationV4(input.key.id, input.key.secret, input.region, r.method,
      { headers: r.headers, queries: r.queries }, input.bucket, r.key, r.additional);
    const q = Object.assign({}, r.url_queries);
    const canonical = signUtils.getCanonicalRequest('GET', { headers: {}, queries: q }, input.bucket, r.key, []);
    const sts = signUtils.getStringToSign(input.region, r.headers['x-oss-date'], canonical);
    out.url_signature = signUtils.getSignatureV4(input.key.secret, r.headers['x-oss-date'].slice(0, 8),
      input.region, sts);
  }
  console.log(JSON.stringify(out));
})().catch(e => { console.log(JSON.stringify({ error: String(e && e.stack || e), code: e && e.code })); });
]]

describe("ali-oss (Aliyun's OSS SDK, from npm) against the emulator's OSS endpoint", function()
  local dir, why = npm.install()
  if not dir then
    it("puts, gets, heads, signs URLs and deletes", function() pending("ali-oss: " .. tostring(why)) end)
    return
  end

  local emu
  setup(function() emu = emulator.start_oss() end)
  teardown(function() util.stop_clean(emu) end)

  local function sdk(step, extra)
    local input = {
      step = step, endpoint = emu.oss, region = emu.oss_region, bucket = emu.oss_bucket, key = KEY, sts = STS,
      image = emulator.root .. "/emulator/images/sample.png",
      host_endpoint = "http://oss-" .. emu.oss_region .. ".aliyuncs.com:" .. emu.oss:match(":(%d+)$"),
    }
    for k, v in pairs(extra or {}) do input[k] = v end
    local out, status = npm.node(SDK_SCRIPT, cjson.encode(input))
    assert.equal(0, status, out)
    -- ali-oss may warn on stderr first (about refreshing STS tokens): the
    -- results are the last line.
    local last = out:match("([^\n]+)\n?$")
    local ok, res = pcall(cjson.decode, last or "")
    assert.is_true(ok, out)
    assert.is_nil(res.error, res.error)
    assert.falsy(out:find(KEY.secret, 1, true), "a secret in the SDK's output")
    return res
  end

  it("puts, gets and heads an object, signs URLs that curl and the vendor fetch, and deletes it", function()
    emu:reset()
    local _, md5hex = sign.md5(PNG)
    local r = sdk("upload")
    assert.equal(200, r.put.status)
    assert.equal('"' .. md5hex:upper() .. '"', r.put.etag)
    assert.matches("^%x+$", r.put.requestId)
    assert.equal(200, r.get.status)
    assert.is_true(r.get.same)
    assert.equal("image/png", r.get.type)
    assert.equal(200, r.head.status)
    assert.equal(tostring(#PNG), r.head.length)
    assert.same({ "sdk/shot.png", "sdk/sts.txt" }, keys_of(emu:oss_objects()))

    -- ali-oss's V4 signed URLs, path style and virtual-hosted.
    assert.matches("^" .. emu.oss:gsub("%p", "%%%0") .. "/aliocr/sdk/shot%.png%?.*x%-oss%-signature=%x+", r.url_path)
    local res = http.request({ url = r.url_path })
    assert.equal(200, res.status, res.body)
    assert.equal(PNG, res.body)
    local port = emu.oss:match(":(%d+)$")
    assert.matches("^http://aliocr%.oss%-cn%-hangzhou%.aliyuncs%.com:" .. port .. "/sdk/shot%.png%?", r.url_host)
    res = http.request({ url = r.url_host,
      args = { "--resolve", "aliocr.oss-cn-hangzhou.aliyuncs.com:" .. port .. ":127.0.0.1" } })
    assert.equal(200, res.status, res.body)
    assert.equal(PNG, res.body)
    -- The vendor downloads the SDK's URL.
    res = emu:call("advanced", { form = { { "url", r.url_path } } })
    assert.equal(200, res.status, res.body)
    assert.equal(1, emu:oss_ledger().gets.by_vendor)

    -- An STS client, its token in the header and in its signed URL.
    assert.equal(200, r.sts_put.status)
    assert.same({ status = 200, body = "from an STS key" }, r.sts_get)
    assert.truthy(r.sts_url:find("x-oss-security-token=", 1, true))
    assert.equal("from an STS key", http.request({ url = r.sts_url }).body)

    -- A wrong secret, a forged token: refused as OSS refuses them.
    assert.equal("SignatureDoesNotMatch", r.bad.code)
    assert.equal(403, r.bad.status)
    assert.matches("^%x+$", r.bad.requestId)
    assert.equal("InvalidSecurityToken", r.forged.code)
    assert.equal(403, r.forged.status)

    local d = sdk("delete")
    assert.equal(204, d.delete)
    assert.equal(204, d.delete_sts)
    assert.equal("NoSuchKey", d.after.code)
    assert.equal(404, d.after.status)
    assert.equal("NoSuchKey", d.head_after.code)
    assert.same({}, emu:oss_objects())
    local l = emu:oss_ledger()
    assert.equal(2, l.puts.accepted)
    assert.equal(2, l.puts.refused)
    assert.equal(2, l.deletes.accepted)
  end)

  it("computes the same V4 signatures as the specs' signer, and the emulator takes them", function()
    emu:reset()
    local now = os.time()
    local dt = sign.datetime(now)
    local headers = {
      ["Content-Type"] = "text/plain", ["x-oss-date"] = dt, ["x-oss-content-sha256"] = "UNSIGNED-PAYLOAD",
      ["x-oss-meta-author"] = "spec", ["Content-Disposition"] = "inline",
    }
    local queries = { ["response-content-type"] = "text/plain", ["a b"] = "c/d" }
    local url_queries = { ["x-oss-credential"] = KEY.id .. "/" .. dt:sub(1, 8) .. "/cn-hangzhou/oss/aliyun_v4_request",
      ["x-oss-date"] = dt, ["x-oss-expires"] = "300", ["x-oss-signature-version"] = "OSS4-HMAC-SHA256" }
    local r = sdk("sign", { request = { method = "PUT", key = "same/x y.txt", headers = headers, queries = queries,
      additional = { "content-disposition" }, url_queries = url_queries } })

    local mine = sign.sign({ method = "PUT", base = emu.oss, bucket = emu.oss_bucket, key = "same/x y.txt",
      id = KEY.id, secret = KEY.secret, region = emu.oss_region, time = now, additional = { "content-disposition" },
      headers = { { "Content-Type", "text/plain" }, { "x-oss-meta-author", "spec" },
                  { "Content-Disposition", "inline" } },
      query = { { "response-content-type", "text/plain" }, { "a b", "c/d" } } })
    assert.equal(r.authorization, mine.authorization)
    local res = http.request({ url = mine.url, method = "PUT", headers = mine.headers, body = "same" })
    assert.equal(200, res.status, res.body)

    local url = presign(emu, { key = "same/x y.txt", time = now, expires = 300 })
    assert.equal(r.url_signature, url:match("x%-oss%-signature=(%x+)"))
    res = http.request({ url = url })
    assert.equal(200, res.status, res.body)
    assert.equal("same", res.body)
  end)
end)
