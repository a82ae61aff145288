-- The OSS V4 signer of the core (src/oss.c, core.oss_signer): published
-- test vectors, the canonical request's rules one by one (through
-- signer:explain), the signing key's chain recomputed with openssl's HMAC,
-- misuse, and that the AccessKey secret and the STS token never show in an
-- error, a tostring or explain. The official SDK's own answers for many more
-- inputs are in spec/integration/oss_sdk_spec.lua.
--
-- Vectors: OSS's documentation pages on V4 signatures ("在Header中包含V4签名
-- (推荐)", https://help.aliyun.com/zh/oss/developer-reference/recommend-to-use-signature-version-4,
-- and "在URL中包含V4签名(推荐)",
-- https://help.aliyun.com/zh/oss/developer-reference/add-signatures-to-urls)
-- show the formats and sample values but no worked example that can be
-- recomputed: their AccessKey IDs and secrets are masked ("LTAI****",
-- "yourAccessKeySecret"). The worked vectors below are Aliyun's own, from
-- the unit tests of its official SDKs, which agree on them:
--   - Go, github.com/aliyun/alibabacloud-oss-go-sdk-v2, oss/signer/signer_test.go:
--     TestV4AuthHeader, TestV4AuthHeaderToken, TestV4AuthQuery, TestV4AuthQueryToken;
--   - Python, github.com/aliyun/alibabacloud-oss-python-sdk-v2,
--     tests/unit/signer/test_v4.py: test_auth_header, test_auth_header_with_token,
--     test_auth_query, test_auth_query_with_token.
-- Their inputs: AccessKey "ak", secret "sk" (token "token"), region
-- cn-hangzhou, bucket "bucket", object "1234+-/123/1.txt", the query
-- param1=value1, +param1=value3, |param1=value4 and the bare +param2,
-- |param2, param2, and the headers x-oss-head1, abc, ZAbc, XYZ and
-- content-type.
local core = require("aliocr.core")
local sh = require("helpers.sh")

local AK, SK = "ak", "sk"
local VECTOR_KEY = "1234+-/123/1.txt"
local VECTOR_QUERY = { param1 = "value1", ["+param1"] = "value3", ["|param1"] = "value4",
                       ["+param2"] = "", ["|param2"] = "", param2 = "" }
local function vector_headers(content_type)
  return { ["x-oss-head1"] = "value", abc = "value", ZAbc = "value", XYZ = "value", ["content-type"] = content_type }
end

-- Secrets of these specs (fixed test values), distinctive enough to be
-- searched for in any text.
local SECRET = "Sec+ret/Only=Test-4f8e2c"
local TOKEN = "CAIStoken+Only/For=Tests-9d1a"

local function signer(fields)
  local t = { access_key_id = "LTAI5tTestKeyId", access_key_secret = SECRET, region = "cn-hangzhou" }
  for k, v in pairs(fields or {}) do t[k] = v end
  return core.oss_signer(t)
end

local function lines(s)
  local t = {}
  for line in (s .. "\n"):gmatch("([^\n]*)\n") do t[#t + 1] = line end
  return t
end

--- The error a call raises (it must raise).
local function raised(f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  return tostring(err)
end

local function no_secret(s)
  assert.is_nil(s:find(SECRET, 1, true), "the secret shows")
  assert.is_nil(s:find(TOKEN, 1, true), "the token shows")
  assert.is_nil(s:find("aliyun_v4Sec", 1, true), "the signing key's seed shows")
end

-- openssl as an independent HMAC-SHA256 and SHA-256 (hex in, hex out).
local function hex(s) return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end)) end
local function openssl(args, input)
  local path = os.tmpname()
  sh.write_all(path, input)
  local out = sh.capture("openssl dgst -sha256 " .. args .. " " .. sh.q(path))
  os.remove(path)
  return (assert(out:match("= *(%x+)%s*$"), "openssl: " .. out))
end
local function hmac_hex(key_hex, text) return openssl("-mac HMAC -macopt hexkey:" .. key_hex, text) end

describe("the published vectors (Aliyun's official SDKs' unit tests)", function()
  it("signs the header vector (Go TestV4AuthHeader, Python test_auth_header)", function()
    local s = core.oss_signer({ access_key_id = AK, access_key_secret = SK, region = "cn-hangzhou" })
    local h = s:headers("PUT", "bucket", VECTOR_KEY, vector_headers("text/plain"), VECTOR_QUERY, 1702743657)
    assert.equal("OSS4-HMAC-SHA256 Credential=ak/20231216/cn-hangzhou/oss/aliyun_v4_request," ..
      "Signature=e21d18daa82167720f9b1047ae7e7f1ce7cb77a31e8203a7d5f4624fa0284afe", h.authorization)
    assert.equal("20231216T162057Z", h["x-oss-date"])
    assert.equal("UNSIGNED-PAYLOAD", h["x-oss-content-sha256"])
    assert.is_nil(h["x-oss-security-token"])
  end)

  it("signs the header vector with a token (Go TestV4AuthHeaderToken, Python test_auth_header_with_token)",
    function()
      local s = core.oss_signer({ access_key_id = AK, access_key_secret = SK, security_token = "token",
                                  region = "cn-hangzhou" })
      local h = s:headers("PUT", "bucket", VECTOR_KEY, vector_headers("text/plain"), VECTOR_QUERY, 1702784856)
      assert.equal("OSS4-HMAC-SHA256 Credential=ak/20231217/cn-hangzhou/oss/aliyun_v4_request," ..
        "Signature=b94a3f999cf85bcdc00d332fbd3734ba03e48382c36fa4d5af5df817395bd9ea", h.authorization)
      assert.equal("token", h["x-oss-security-token"])
    end)

  local function query_of(q)
    local t = {}
    for k, v in q:gmatch("([^&=]+)=([^&]*)") do t[k] = v end
    return t
  end

  it("presigns the query vector (Go TestV4AuthQuery, Python test_auth_query)", function()
    local s = core.oss_signer({ access_key_id = AK, access_key_secret = SK, region = "cn-hangzhou" })
    local q = s:presign("PUT", "bucket", VECTOR_KEY, 599, 1702781677, VECTOR_QUERY,
      vector_headers("application/octet-stream"))
    local t = query_of(q)
    assert.equal("OSS4-HMAC-SHA256", t["x-oss-signature-version"])
    assert.equal("599", t["x-oss-expires"])
    assert.equal("ak%2F20231217%2Fcn-hangzhou%2Foss%2Faliyun_v4_request", t["x-oss-credential"])
    assert.equal("20231217T025437Z", t["x-oss-date"])
    assert.equal("a39966c61718be0d5b14e668088b3fa07601033f6518ac7b523100014269c0fe", t["x-oss-signature"])
    assert.is_nil(t["x-oss-additional-headers"])
    assert.is_nil(t["x-oss-security-token"])
  end)

  it("presigns the query vector with a token (Go TestV4AuthQueryToken, Python test_auth_query_with_token)",
    function()
      local s = core.oss_signer({ access_key_id = AK, access_key_secret = SK, security_token = "token",
                                  region = "cn-hangzhou" })
      local q = s:presign("PUT", "bucket", VECTOR_KEY, 599, 1702785388, VECTOR_QUERY,
        vector_headers("application/octet-stream"))
      local t = query_of(q)
      assert.equal("20231217T035628Z", t["x-oss-date"])
      assert.equal("599", t["x-oss-expires"])
      assert.equal("token", t["x-oss-security-token"])
      assert.equal("3817ac9d206cd6dfc90f1c09c00be45005602e55898f26f5ddb06d7892e1f8b5", t["x-oss-signature"])
    end)

  it("explain gives the vector's signature and a canonical request in the documented shape", function()
    local s = core.oss_signer({ access_key_id = AK, access_key_secret = SK, region = "cn-hangzhou" })
    local cr, sts, sig = s:explain("PUT", "bucket", VECTOR_KEY, vector_headers("text/plain"), VECTOR_QUERY,
      1702743657)
    assert.equal("e21d18daa82167720f9b1047ae7e7f1ce7cb77a31e8203a7d5f4624fa0284afe", sig)
    -- sorted by encoded name: %2B... before %7C... before p...; bare names have no "="
    assert.same({ "PUT", "/bucket/1234%2B-/123/1.txt",
      "%2Bparam1=value3&%2Bparam2&%7Cparam1=value4&%7Cparam2&param1=value1&param2",
      "content-type:text/plain", "x-oss-content-sha256:UNSIGNED-PAYLOAD", "x-oss-date:20231216T162057Z",
      "x-oss-head1:value", "", "", "UNSIGNED-PAYLOAD" }, lines(cr))
    local l = lines(sts)
    assert.same({ "OSS4-HMAC-SHA256", "20231216T162057Z", "20231216/cn-hangzhou/oss/aliyun_v4_request" },
      { l[1], l[2], l[3] })
    assert.equal(4, #l)
    assert.equal(openssl("", cr), l[4])
  end)
end)

describe("the signing key and the signature", function()
  it("are the documented HMAC-SHA256 chain from \"aliyun_v4\" .. secret (checked with openssl)", function()
    for _, case in ipairs({ { "cn-hangzhou", 1764547200, nil }, { "ap-southeast-1", 1767225599, 60 },
                            { "us-west-1", 0, 604800 } }) do
      local s = signer({ region = case[1] })
      local _, sts, sig = s:explain("GET", "bucket", "a b/ç.png", nil, { acl = true }, case[2], case[3])
      local day = sts:match("^OSS4%-HMAC%-SHA256\n(%d%d%d%d%d%d%d%d)T%d%d%d%d%d%dZ\n")
      assert.truthy(day, sts)
      local k = hmac_hex(hex("aliyun_v4" .. SECRET), day)
      k = hmac_hex(k, case[1])
      k = hmac_hex(k, "oss")
      k = hmac_hex(k, "aliyun_v4_request")
      assert.equal(hmac_hex(k, sts), sig)
      s:close()
    end
  end)

  it("the string to sign hashes the canonical request (SHA-256, checked with openssl)", function()
    local s = signer()
    local cr, sts = s:explain("PUT", "my-bucket", "x/y z.png", { ["Content-Type"] = "image/png" }, nil, 1764547200)
    assert.equal(openssl("", cr), lines(sts)[4])
    cr, sts = s:explain("GET", "my-bucket", "x/y z.png", nil, { ["response-content-type"] = "image/png" },
      1764547200, 300)
    assert.equal(openssl("", cr), lines(sts)[4])
  end)

  it("formats the date as yyyymmddThhmmssZ in UTC, and the scope with its day", function()
    local s = signer()
    for when, date in pairs({ [0] = "19700101T000000Z", [1767225599] = "20251231T235959Z",
                              [1767225600] = "20260101T000000Z", [951782400] = "20000229T000000Z" }) do
      local h = s:headers("GET", "bucket", "k", nil, nil, when)
      assert.equal(date, h["x-oss-date"])
      assert.truthy(h.authorization:find("/" .. date:sub(1, 8) .. "/cn-hangzhou/oss/aliyun_v4_request,", 1, true))
    end
  end)

  it("takes the time now when none is given", function()
    local s = signer()
    local before = os.time()
    local date = s:headers("GET", "bucket", "k")["x-oss-date"]
    local after = os.time()
    local ok = false
    for t = before - 1, after + 1 do
      if os.date("!%Y%m%dT%H%M%SZ", t) == date then ok = true end
    end
    assert.is_true(ok, date)
  end)
end)

describe("the canonical request", function()
  local s = signer()
  local function cr(method, bucket, key, headers, query, expires)
    return lines((s:explain(method, bucket, key, headers, query, 1764547200, expires)))
  end

  it("encodes the object name (spaces, UTF-8, +, ~, /, reserved characters) and keeps its slashes", function()
    assert.equal("/b-1/a%20b/%C3%A7/%E4%B8%AD%E6%96%87.png", cr("GET", "b-1", "a b/ç/中文.png")[2])
    assert.equal("/b-1/1%2B1%3D2~x_y-z.txt", cr("GET", "b-1", "1+1=2~x_y-z.txt")[2])
    assert.equal("/b-1/dir//double/trailing/", cr("GET", "b-1", "dir//double/trailing/")[2])
    assert.equal("/b-1/%21%2A%27%28%29%3B%3A%40%26%24%2C%3F%23%5B%5D%25", cr("GET", "b-1", "!*'();:@&$,?#[]%")[2])
    assert.equal("/b-1/%F0%9F%98%80%20.png", cr("GET", "b-1", "😀 .png")[2])
  end)

  it("is \"/bucket/\" for a bucket-level request", function()
    assert.equal("/my-bucket/", cr("GET", "my-bucket", nil, nil, { uploads = "" })[2])
    assert.equal("uploads", cr("GET", "my-bucket", nil, nil, { uploads = "" })[3])
  end)

  it("sorts the query by encoded name (not by raw name) and encodes names and values", function()
    -- raw order would put "a.b" first; encoded, "a%2Fb" comes first ("%" < ".")
    assert.equal("a%2Fb=2&a.b=1", cr("GET", "bkt", "k", nil, { ["a.b"] = "1", ["a/b"] = "2" })[3])
    assert.equal("%E4%B8%AD=%20%2B%2F&Z=1&a=2", cr("GET", "bkt", "k", nil, { Z = "1", a = "2", ["中"] = " +/" })[3])
  end)

  it("writes a bare name for \"\" and true, and whole numbers as integers", function()
    assert.equal("acl&partNumber=3&uploadId=x&uploads", cr("POST", "bkt", "k", nil,
      { uploads = true, acl = "", partNumber = 3, uploadId = "x" })[3])
  end)

  it("signs content-type, content-md5 and x-oss-* headers: lower-cased, trimmed, sorted", function()
    local l = cr("PUT", "bkt", "k", {
      ["Content-Type"] = "  image/png \t", ["CONTENT-MD5"] = "1B2M2Y8AsgTpgAmY7PhCfg==",
      ["X-OSS-Meta-Author"] = " Alice  B. ", ["x-oss-object-acl"] = "private",
      ["Content-Length"] = "12", Host = "bkt.oss-cn-hangzhou.aliyuncs.com", ["Cache-Control"] = "no-cache",
      ["x-ossfake"] = "not signed",
    })
    assert.same({ "PUT", "/bkt/k", "", "content-md5:1B2M2Y8AsgTpgAmY7PhCfg==", "content-type:image/png",
      "x-oss-content-sha256:UNSIGNED-PAYLOAD", "x-oss-date:20251201T000000Z", "x-oss-meta-author:Alice  B.",
      "x-oss-object-acl:private", "", "", "UNSIGNED-PAYLOAD" }, l)
  end)

  it("of a presigned URL signs its own parameters in the query and no x-oss-date header", function()
    local l = cr("GET", "bkt", "k", nil, { ["response-content-type"] = "image/png" }, 300)
    assert.same({ "GET", "/bkt/k",
      "response-content-type=image%2Fpng&x-oss-credential=LTAI5tTestKeyId%2F20251201%2Fcn-hangzhou%2Foss%2F" ..
      "aliyun_v4_request&x-oss-date=20251201T000000Z&x-oss-expires=300&x-oss-signature-version=OSS4-HMAC-SHA256",
      "", "", "UNSIGNED-PAYLOAD" }, l)
  end)
end)

describe("signer:headers and signer:presign", function()
  it("headers returns exactly authorization, x-oss-date, x-oss-content-sha256 (and the token)", function()
    local s = signer()
    local h = s:headers("DELETE", "bkt", "k")
    local names = {}
    for k in pairs(h) do names[#names + 1] = k end
    table.sort(names)
    assert.same({ "authorization", "x-oss-content-sha256", "x-oss-date" }, names)
    assert.truthy(h.authorization:match("^OSS4%-HMAC%-SHA256 Credential=LTAI5tTestKeyId/%d+/cn%-hangzhou/oss/" ..
      "aliyun_v4_request,Signature=" .. string.rep("%x", 64) .. "$"))
    s = signer({ security_token = TOKEN })
    h = s:headers("DELETE", "bkt", "k")
    assert.equal(TOKEN, h["x-oss-security-token"])
  end)

  it("each method, time, key and token changes the signature", function()
    local s, t = signer(), signer({ security_token = TOKEN })
    local seen = {}
    local function add(sig)
      assert.is_nil(seen[sig])
      seen[sig] = true
    end
    for _, m in ipairs({ "PUT", "GET", "DELETE", "HEAD", "POST" }) do
      add(s:headers(m, "bkt", "k", nil, nil, 1764547200).authorization)
    end
    add(s:headers("GET", "bkt", "k", nil, nil, 1764547201).authorization)
    add(s:headers("GET", "bkt", "k2", nil, nil, 1764547200).authorization)
    add(s:headers("GET", "bkt", nil, nil, nil, 1764547200).authorization)
    add(t:headers("GET", "bkt", "k", nil, nil, 1764547200).authorization)
    add(s:headers("GET", "bkt", "k", { ["x-oss-meta-a"] = "1" }, nil, 1764547200).authorization)
    add(s:headers("GET", "bkt", "k", nil, { acl = true }, 1764547200).authorization)
  end)

  it("presign writes the caller's pairs, the signature's, the token, and x-oss-signature last", function()
    local s = signer({ security_token = TOKEN })
    local q = s:presign("GET", "bkt", "a b.png", 600, 1764547200, { ["response-content-type"] = "image/png",
                                                                   uploads = true })
    local names = {}
    for k in q:gmatch("([^&=]+)=") do names[#names + 1] = k end
    assert.same({ "response-content-type", "uploads", "x-oss-credential", "x-oss-date", "x-oss-expires",
                  "x-oss-signature-version", "x-oss-security-token", "x-oss-signature" }, names)
    assert.truthy(q:find("&x-oss-security-token=CAIStoken%2BOnly%2FFor%3DTests-9d1a&", 1, true))
    assert.truthy(q:find("&x-oss-expires=600&", 1, true))
    assert.truthy(q:match("&x%-oss%-signature=" .. string.rep("%x", 64) .. "$"))
    local _, _, sig = s:explain("GET", "bkt", "a b.png", nil, { ["response-content-type"] = "image/png",
                                                                 uploads = true }, 1764547200, 600)
    assert.equal(sig, q:match("x%-oss%-signature=(%x+)$"))
  end)

  it("presign accepts 1 to 604800 seconds", function()
    local s = signer()
    assert.truthy(s:presign("GET", "bkt", "k", 1, 1764547200):find("x-oss-expires=1&", 1, true))
    assert.truthy(s:presign("GET", "bkt", "k", 604800, 1764547200):find("x-oss-expires=604800&", 1, true))
    for _, bad in ipairs({ 0, -1, 604801, 1.5, "60", false }) do
      assert.truthy(raised(s.presign, s, "GET", "bkt", "k", bad):find("expiry", 1, true))
    end
    assert.truthy(raised(s.presign, s, "GET", "bkt", "k"):find("expiry", 1, true))
  end)
end)

describe("misuse", function()
  local function ctor_error(fields)
    local t = { access_key_id = "id", access_key_secret = SECRET, region = "cn-hangzhou", security_token = TOKEN }
    for k, v in pairs(fields) do
      if v == "nil" then t[k] = nil else t[k] = v end
    end
    local msg = raised(core.oss_signer, t)
    no_secret(msg)
    return msg
  end

  it("the constructor raises on missing, non-string, empty or CR/LF/NUL fields, naming none of the values",
    function()
      for _, name in ipairs({ "access_key_id", "access_key_secret", "region" }) do
        assert.truthy(ctor_error({ [name] = "nil" }):find(name, 1, true))
        assert.truthy(ctor_error({ [name] = 42 }):find(name, 1, true))
        assert.truthy(ctor_error({ [name] = "" }):find(name, 1, true))
      end
      for _, name in ipairs({ "access_key_id", "access_key_secret", "region", "security_token" }) do
        for _, bad in ipairs({ "\r", "\n", "\0" }) do
          local v = (name == "access_key_secret" and SECRET or name == "security_token" and TOKEN or "x") .. bad
          assert.truthy(ctor_error({ [name] = v }):find(name, 1, true))
          assert.truthy(ctor_error({ [name] = bad .. v }):find(name, 1, true))
        end
      end
      assert.truthy(ctor_error({ security_token = {} }):find("security_token", 1, true))
      assert.truthy(ctor_error({ access_key_id = "a/b" }):find("access_key_id", 1, true))
      assert.truthy(ctor_error({ region = "cn/hangzhou" }):find("region", 1, true))
      no_secret(raised(core.oss_signer, nil))
      no_secret(raised(core.oss_signer, SECRET))
    end)

  it("an empty security token is no token", function()
    local s = signer({ security_token = "" })
    assert.is_nil(s:headers("GET", "bkt", "k")["x-oss-security-token"])
  end)

  it("the methods raise on bad arguments, naming no secret", function()
    local s = signer({ security_token = TOKEN })
    local function err(f, ...)
      local msg = raised(f, s, ...)
      no_secret(msg)
      return msg
    end
    assert.truthy(err(s.headers, "get", "bkt", "k"):find("method", 1, true))
    assert.truthy(err(s.headers, "PATCH", "bkt", "k"):find("method", 1, true))
    assert.truthy(err(s.headers, nil, "bkt", "k"):find("method", 1, true))
    for _, b in ipairs({ "Bucket", "ab", string.rep("a", 64), "-ab", "ab-", "a_b", "a.b", "a/b", "" }) do
      assert.truthy(err(s.headers, "GET", b, "k"):find("bucket", 1, true), b)
    end
    assert.truthy(err(s.headers, "GET", nil, "k"):find("bucket", 1, true))
    for _, k in ipairs({ "", "/abs", "\\abs" }) do
      assert.truthy(err(s.headers, "GET", "bkt", k):find("object name", 1, true))
    end
    assert.truthy(err(s.headers, "GET", "bkt", 42):find("object name", 1, true))
    assert.truthy(err(s.headers, "GET", "bkt", "k", "x"):find("headers", 1, true))
    assert.truthy(err(s.headers, "GET", "bkt", "k", { [1] = "x" }):find("headers", 1, true))
    assert.truthy(err(s.headers, "GET", "bkt", "k", { ["x-oss-meta-a"] = 1 }):find("headers", 1, true))
    assert.truthy(err(s.headers, "GET", "bkt", "k", { ["x-oss-meta-a"] = "a\r\nb" }):find("CR", 1, true))
    assert.truthy(err(s.headers, "GET", "bkt", "k", { ["x-oss-meta-a"] = TOKEN .. "\0" }):find("NUL", 1, true))
    assert.truthy(err(s.headers, "GET", "bkt", "k", { ["x-oss-meta\na"] = "v" }):find("name", 1, true))
    assert.truthy(err(s.headers, "GET", "bkt", "k", { ["bad name"] = "v" }):find("name", 1, true))
    assert.truthy(err(s.headers, "GET", "bkt", "k", { [""] = "v" }):find("name", 1, true))
    for _, own in ipairs({ "X-OSS-Date", "x-oss-content-sha256", "X-Oss-Security-Token", "Authorization" }) do
      assert.truthy(err(s.headers, "GET", "bkt", "k", { [own] = TOKEN }):find(own:lower(), 1, true))
    end
    assert.truthy(err(s.headers, "GET", "bkt", "k", { ["Content-Type"] = "a", ["content-type"] = "b" })
      :find("twice", 1, true))
    assert.truthy(err(s.headers, "GET", "bkt", "k", nil, "acl"):find("query", 1, true))
    for _, v in ipairs({ false, 1.5, {}, print }) do
      assert.truthy(err(s.headers, "GET", "bkt", "k", nil, { acl = v }):find("query", 1, true))
    end
    assert.truthy(err(s.headers, "GET", "bkt", "k", nil, { [1] = "x" }):find("query", 1, true))
    assert.truthy(err(s.headers, "GET", "bkt", "k", nil, { [""] = "x" }):find("query", 1, true))
    for _, own in ipairs({ "x-oss-signature", "x-oss-credential", "x-oss-date", "x-oss-expires",
                           "x-oss-signature-version", "x-oss-security-token", "X-OSS-Additional-Headers" }) do
      assert.truthy(err(s.presign, "GET", "bkt", "k", 60, nil, { [own] = "x" }):find(own:lower(), 1, true))
    end
    for _, w in ipairs({ -1, 1.5, "1764547200", 1e300, 0 / 0, true }) do
      assert.truthy(err(s.headers, "GET", "bkt", "k", nil, nil, w):find("time", 1, true))
    end
    assert.truthy(err(s.explain, "GET", "bkt", "k", nil, nil, nil, 0):find("expiry", 1, true))
    assert.truthy(err(s.presign, "GET", "bkt", "k", 60, nil, nil, { ["X-OSS-Date"] = "x" }):find("x-oss-date", 1,
      true))
  end)

  it("the methods check their receiver", function()
    local s = signer()
    assert.truthy(raised(s.headers, {}, "GET", "bkt", "k"):find("aliocr.OSSSigner", 1, true))
    assert.truthy(raised(s.presign, "GET", "GET", "bkt", "k", 60):find("aliocr.OSSSigner", 1, true))
  end)
end)

describe("the secrets", function()
  it("never show in tostring, explain or an error", function()
    local s = signer({ security_token = TOKEN })
    assert.equal("aliocr.OSSSigner (cn-hangzhou)", tostring(s))
    no_secret(tostring(s))
    for _, expires in ipairs({ false, 60 }) do
      local cr, sts, sig = s:explain("PUT", "bkt", "k", { ["Content-Type"] = "image/png" }, { acl = true },
        1764547200, expires or nil)
      no_secret(cr .. sts .. sig)
      assert.truthy(cr:find("<security-token>", 1, true), "the token's place is shown")
    end
    -- the secret is in no output at all; the token only where OSS needs it
    local h = s:headers("PUT", "bkt", "k", nil, nil, 1764547200)
    assert.is_nil((h.authorization .. h["x-oss-date"]):find(SECRET, 1, true))
    local q = s:presign("GET", "bkt", "k", 60, 1764547200)
    assert.is_nil(q:find(SECRET, 1, true))
    assert.is_nil(q:find((SECRET:gsub("[^%w]", function(c) return ("%%%02X"):format(c:byte()) end)), 1, true))
  end)

  it("explain's redacted canonical request hashes to its string to sign once the token is put back", function()
    local s = signer({ security_token = TOKEN })
    local cr, sts = s:explain("GET", "bkt", "k", nil, nil, 1764547200)
    assert.equal(openssl("", (cr:gsub("<security%-token>", TOKEN))), lines(sts)[4])
    cr, sts = s:explain("GET", "bkt", "k", nil, nil, 1764547200, 60)
    assert.equal(openssl("", (cr:gsub("<security%-token>", "CAIStoken%%2BOnly%%2FFor%%3DTests-9d1a"))),
      lines(sts)[4])
  end)
end)

describe("close", function()
  it("is safe twice, and a closed signer raises on use and says so in tostring", function()
    local s = signer({ security_token = TOKEN })
    assert.is_true(s:close())
    assert.is_true(s:close())
    assert.equal("aliocr.OSSSigner (closed)", tostring(s))
    for _, call in ipairs({
      function() return s:headers("GET", "bkt", "k") end,
      function() return s:presign("GET", "bkt", "k", 60) end,
      function() return s:explain("GET", "bkt", "k") end,
    }) do
      local msg = raised(call)
      assert.truthy(msg:find("closed", 1, true), msg)
      no_secret(msg)
    end
  end)

  it("a finalizer that closes the signer while the arguments are read makes the call raise, not crash", function()
    for _ = 1, 20 do
      local s = signer({ security_token = TOKEN })
      local mt = { __gc = function() s:close() end }
      -- garbage with finalizers, so that the signer's own allocations run them
      for _ = 1, 200 do setmetatable({}, mt) end
      if newproxy then -- Lua 5.1 and LuaJIT: tables have no __gc
        for _ = 1, 200 do
          local p = newproxy(true)
          getmetatable(p).__gc = mt.__gc
        end
      end
      local headers = {}
      for i = 1, 50 do headers["x-oss-meta-" .. i] = string.rep("v", i) end
      local ok, err = pcall(s.headers, s, "GET", "bkt", "k", headers)
      if not ok then assert.truthy(tostring(err):find("closed", 1, true), tostring(err)) end
      collectgarbage()
    end
  end)

  it("__gc wipes a signer nobody closed; __close closes it (Lua 5.4)", function()
    for _ = 1, 100 do signer({ security_token = TOKEN }) end
    collectgarbage()
    collectgarbage()
    if _VERSION == "Lua 5.4" then
      local chunk = assert(load([[
        local core, fields = ...
        local kept
        do
          local s <close> = core.oss_signer(fields)
          kept = s
        end
        return tostring(kept)
      ]]))
      assert.equal("aliocr.OSSSigner (closed)", chunk(core, { access_key_id = "id", access_key_secret = SECRET,
                                                              region = "cn-hangzhou" }))
    end
  end)
end)
