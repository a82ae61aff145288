-- The request of a call as the core builds it for both transports
-- (src/request.c, through config:request, which the nginx transport uses):
-- the form encoding, the header lines, the string-to-sign and the signature,
-- checked against the reference's vectors (aliyun-gateway.md 2.7) and the
-- independent signer of the specs (spec/helpers/sign.lua: the reference's
-- rules, and openssl's HMAC). No server.
local core = require("aliocr.core")
local sign = require("helpers.sign")

local V = sign.VECTORS
local V_KEY, V_SECRET = V.key, V.secret
local V_POST, V_POST_SHA256, V_POST_SHA1, V_GET, V_GET_SHA256 = V.post, V.post_sha256, V.post_sha1, V.get,
  V.get_sha256
local FORM = "application/x-www-form-urlencoded; charset=UTF-8"
local NONCE, STAMP = V.nonce, V.timestamp

local function config(fields)
  local t = { urls = { advanced = "http://h/ocr/advanced", handwriting = "https://h:8443/hw" },
              connect_timeout_ms = 1000, max_bytes = 1000 }
  for k, v in pairs(fields) do t[k] = v end
  return core.config(t)
end

describe("the reference's vectors", function()
  local function vector_parts(sig_method_header)
    return {
      method = "post",
      accept = "application/json; charset=utf-8",
      content_type = "application/x-www-form-urlencoded; charset=utf-8",
      date = "Wed, 09 May 2018 13:30:29 GMT+00:00",
      -- in no particular order: string_to_sign sorts them
      headers = {
        { "x-ca-timestamp", "1525872629832" },
        { "x-ca-signature-method", sig_method_header or "HmacSHA256" },
        { "x-ca-key", "203753385" },
        { "x-ca-nonce", "c9f15cbf-f4ac-4a6c-b54d-f51abf4b5b44" },
      },
      path = "/http2test/test",
      -- the query and the form body, merged: sorted by string_to_sign
      params = { { "username", "xiaoming" }, { "param1", "test" }, { "password", "123456789" } },
    }
  end

  it("the specs' signer rebuilds the POST and GET vectors from their parts (it judges the core below)", function()
    assert.equal(V_POST, sign.string_to_sign(vector_parts()))
    assert.equal(V_GET, sign.string_to_sign({
      method = "GET", accept = "application/json",
      headers = { { "X-Ca-Timestamp", "1525872629832" }, { "X-Ca-Key", "203753385" } },
      path = "/ocrservice/advanced",
    }))
  end)

  it("config:sign gives the reference's HmacSHA256 and HmacSHA1 vectors", function()
    local c = config({ app_key = V_KEY, app_secret = V_SECRET })
    assert.equal("signature", c:mode())
    assert.equal(V_POST_SHA256, c:sign(V_POST))
    assert.equal(V_GET_SHA256, c:sign(V_GET))
    c:close()
    c = config({ app_key = V_KEY, app_secret = V_SECRET, signature_method = "HmacSHA1" })
    assert.equal(V_POST_SHA1, c:sign(V_POST))
    c:close()
  end)
end)

describe("config:request", function()
  it("POST in AppCode mode: the form as the body, Accept, Content-Type, then the Authorization line", function()
    local c = config({ appcode = "code-1" })
    local url, headers, body, sts = c:request("advanced", "http://img/a b.png", { "show", "1" }, "POST")
    assert.equal("http://h/ocr/advanced", url)
    assert.same({ "Accept: application/json", "Content-Type: " .. FORM, "Authorization: APPCODE code-1" }, headers)
    assert.equal("url=http%3A%2F%2Fimg%2Fa%20b.png&show=1", body)
    assert.is_nil(sts)
    c:close()
  end)

  it("GET: the form as the query, no body and no Content-Type; the configuration's method by default", function()
    local c = config({ appcode = "code-1", method = "GET" })
    local url, headers, body = c:request("handwriting", "x", nil, nil)
    assert.equal("https://h:8443/hw?url=x", url)
    assert.same({ "Accept: application/json", "Authorization: APPCODE code-1" }, headers)
    assert.is_nil(body)
    url, headers, body = c:request("handwriting", "x", nil, "POST")
    assert.equal("https://h:8443/hw", url)
    assert.equal("url=x", body)
    assert.equal(3, #headers)
    c:close()
  end)

  it("percent-encodes every byte but the unreserved characters, in upper-case hex", function()
    local c = config({ appcode = "a" })
    for b = 0, 255 do
      local ch = string.char(b)
      local unreserved = ch:find("^[A-Za-z0-9]$") or ch == "-" or ch == "." or ch == "_" or ch == "~"
      local want = unreserved and ch or string.format("%%%02X", b)
      local _, _, body = c:request("advanced", ch, nil, "POST")
      assert.equal("url=" .. want, body, "byte " .. b)
    end
    local _, _, body = c:request("advanced", "a b+c&d=e%f/g?h#i中", nil, "POST")
    assert.equal("url=a%20b%2Bc%26d%3De%25f%2Fg%3Fh%23i%E4%B8%AD", body)
    _, _, body = c:request("advanced", "AZaz09-._~", nil, "POST")
    assert.equal("url=AZaz09-._~", body)
    c:close()
  end)

  it("joins escaped keys and values in the given order", function()
    local c = config({ appcode = "a" })
    local _, _, body = c:request("advanced", "http://h/a?b=1&c=2", { "a b", "+", "e", "" }, "POST")
    assert.equal("url=http%3A%2F%2Fh%2Fa%3Fb%3D1%26c%3D2&a%20b=%2B&e=", body)
    c:close()
  end)

  it("signs raw values sorted by key, the first of a repeated key, a bare key when empty, 0 and false kept", function()
    local c = config({ app_key = V_KEY, app_secret = V_SECRET, urls = { advanced = "http://h/p" } })
    local _, _, _, sts = c:request("advanced", "x y&%=1",
      { "e", "中文", "d", "false", "c", "0", "b", "", "url", "second" }, "POST", NONCE, STAMP)
    assert.equal("/p?b&c=0&d=false&e=中文&url=x y&%=1", sts:match("\n(/p%?.*)$"))
    local _, _, _, plain = c:request("advanced", "", nil, "GET", NONCE, STAMP)
    assert.equal("/p?url", plain:match("\n(/p.*)$")) -- url is always sent: a bare key when empty
    c:close()
  end)

  for _, method in ipairs({ "HmacSHA256", "HmacSHA1" }) do
    for _, verb in ipairs({ "POST", "GET" }) do
      it(method .. " " .. verb .. ": the headers and signature the specs' signer computes", function()
        local c = config({ app_key = V_KEY, app_secret = V_SECRET, signature_method = method })
        local url, headers, body, sts = c:request("advanced", "http://img/a.png", { "show", "1" }, verb, NONCE, STAMP)
        local want_sts = sign.string_to_sign({
          method = verb, accept = "application/json", content_type = verb == "POST" and FORM or nil,
          headers = { { "X-Ca-Key", V_KEY }, { "X-Ca-Nonce", NONCE }, { "X-Ca-Signature-Method", method },
                      { "X-Ca-Timestamp", STAMP } },
          path = "/ocr/advanced", params = { { "url", "http://img/a.png" }, { "show", "1" } },
        })
        assert.equal(want_sts, sts)
        local want = { "Accept: application/json" }
        if verb == "POST" then want[#want + 1] = "Content-Type: " .. FORM end
        for _, h in ipairs({ "X-Ca-Key: " .. V_KEY, "X-Ca-Nonce: " .. NONCE, "X-Ca-Signature-Method: " .. method,
                             "X-Ca-Timestamp: " .. STAMP,
                             "X-Ca-Signature-Headers: X-Ca-Key,X-Ca-Nonce,X-Ca-Signature-Method,X-Ca-Timestamp",
                             "X-Ca-Signature: " .. sign.hmac(method, V_SECRET, want_sts) }) do
          want[#want + 1] = h
        end
        assert.same(want, headers)
        assert.equal(verb == "POST" and "url=http%3A%2F%2Fimg%2Fa.png&show=1" or nil, body)
        assert.equal(verb == "GET" and "http://h/ocr/advanced?url=http%3A%2F%2Fimg%2Fa.png&show=1"
          or "http://h/ocr/advanced", url)
        c:close()
      end)
    end
  end

  it("a fresh nonce (a version 4 UUID) and the time now in every request by default", function()
    local c = config({ app_key = V_KEY, app_secret = V_SECRET })
    local seen = {}
    for _ = 1, 50 do
      local _, headers = c:request("advanced", "x", nil, "POST")
      local nonce = headers[4]:match("^X%-Ca%-Nonce: (.*)$")
      assert.matches("^%x+%-%x+%-4%x+%-[89ab]%x+%-%x+$", nonce)
      assert.is_nil(seen[nonce])
      seen[nonce] = true
      local stamp = tonumber(headers[6]:match("^X%-Ca%-Timestamp: (%d+)$"))
      assert.truthy(math.abs(stamp - os.time() * 1000) < 5000)
    end
    c:close()
  end)

  it("keeps the secrets out of tostring, refuses use once closed, and guards its invariants", function()
    local c = config({ app_key = V_KEY, app_secret = V_SECRET })
    assert.is_nil(tostring(c):find(V_SECRET, 1, true))
    assert.truthy(tostring(c):find(V_KEY, 1, true))
    c:close()
    c:close()
    assert.matches("closed", tostring(c))
    assert.has_error(function() c:sign("x") end)
    assert.has_error(function() c:request("advanced", "x") end)
    local code = config({ appcode = "secret-appcode" })
    assert.is_nil(tostring(code):find("secret-appcode", 1, true))
    assert.has_error(function() code:sign("x") end)
    assert.error_matches(function() code:request("nope", "x") end, "the interface must be \"advanced\" or")
    assert.error_matches(function() code:request("advanced", "x", { "odd" }) end, "pairs")
    assert.error_matches(function() code:request("advanced", "x", nil, "PUT") end, "GET")
    code:close()
    assert.error_matches(function() config({ appcode = "a\r\nX: y" }) end, "CR, LF")
    assert.error_matches(function() config({ appcode = "a", app_key = "k" }) end, "appcode")
    assert.error_matches(function() config({ appcode = "a", urls = { advanced = "ftp://h/x" } }) end, "http")
    local none = config({ appcode = "a", urls = {} })
    assert.error_matches(function() none:request("advanced", "x") end, "no URL for interface 'advanced'")
    none:close()
  end)
end)

describe("the core's guards (a hostile caller of the core itself)", function()
  it("takes strings only, converting nothing (a conversion allocates, and may run a finalizer mid-call)", function()
    local c = config({ appcode = "a" })
    assert.error_matches(function() c:request(1, "x") end, "the interface must be a string")
    assert.error_matches(function() c:request("advanced", 12345.5) end, "the image URL must be a string")
    assert.error_matches(function() c:request("advanced", "x", nil, 1) end, "the method must be a string")
    assert.error_matches(function() c:request("advanced", "x", { "k", 1 }) end, "call parameters must be strings")
    assert.error_matches(function() c:request("advanced", "x", nil, "POST", 1) end, "the nonce must be a string")
    local engine = core.engine(c, { decode = require("cjson").new().decode, max_connections = 4, idle_timeout = 10 })
    assert.error_matches(function() engine:add("advanced", 12345.5, nil, nil, 1000) end, "must be a string")
    assert.error_matches(function() engine:perform("advanced", "x", { "a", "b" }, "PUT", 1000) end, "GET")
    assert.error_matches(function() engine:perform("advanced", "x", { "a", "b" }, {}, 1000) end, "must be a string")
    assert.equal(0, engine:pending())
    engine:close()
    c:close()
  end)

  it("refuses CR and LF in a test vector's nonce and timestamp (they go into header lines)", function()
    local c = config({ app_key = V_KEY, app_secret = V_SECRET })
    assert.error_matches(function() c:request("advanced", "x", nil, "POST", "n\r\nEvil: 1", "1") end, "CR, LF")
    assert.error_matches(function() c:request("advanced", "x", nil, "POST", "n", "1\n") end, "CR, LF")
    c:close()
  end)

  it("takes an interface URL's scheme in any case, as the Lua layer and libcurl do", function()
    local c = config({ appcode = "a", urls = { advanced = "HTTP://h/ocr/advanced" } })
    local url, _, body = c:request("advanced", "x", nil, "POST")
    assert.same({ "HTTP://h/ocr/advanced", "url=x" }, { url, body })
    c:close()
    local client = require("aliocr").new({ appcode = "a", urls = { advanced = "HTTPS://h/ocr/advanced" } })
    client:close()
  end)
end)

describe("the core's helpers", function()
  local UUID_V4 = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"

  it("md5_base64 of known inputs", function()
    assert.equal("1B2M2Y8AsgTpgAmY7PhCfg==", core.md5_base64(""))
    assert.equal("kAFQmDzST7DWlj99KOF/cg==", core.md5_base64("abc"))
    assert.equal("nhB9nTcrtoJr2B01QqQZ1g==", core.md5_base64("The quick brown fox jumps over the lazy dog"))
    assert.equal("p7rCI5/NyzoGeQPYB3xKBw==", core.md5_base64("中文"))
    assert.equal("cDUPYCe843E/a3ZHMIQwmw==", core.md5_base64("a\0b"))
    assert.equal(sign.md5("url=x&show=1"), core.md5_base64("url=x&show=1"))
  end)

  it("uuid is a version 4 UUID, different on every call", function()
    local seen = {}
    for _ = 1, 200 do
      local u = core.uuid()
      assert.matches(UUID_V4, u)
      assert.is_nil(seen[u], "repeated uuid " .. u)
      seen[u] = true
    end
  end)
end)

describe("core.decode_json", function()
  local decode = require("cjson").new().decode

  it("decodes with the decoder it is given, whole numbers as integers on Lua 5.3+", function()
    local v = core.decode_json(decode, '{"a":1.0,"b":[2,2.5],"c":{"d":3e2}}')
    assert.same({ a = 1, b = { 2, 2.5 }, c = { d = 300 } }, v)
    if math.type then
      assert.equal("integer", math.type(v.a))
      assert.equal("integer", math.type(v.b[1]))
      assert.equal("float", math.type(v.b[2]))
      assert.equal("integer", math.type(v.c.d))
    end
  end)

  it("gives nil and lua-cjson's parse error for a text that is not JSON", function()
    local v, err = core.decode_json(decode, "{nope")
    assert.is_nil(v)
    assert.matches("at character", err)
  end)
end)
