-- The emulator's gateway authentication (reference sections 1-3): APPCODE,
-- the AppKey/AppSecret signature checked against the reference's test
-- vectors and against live calls, the timestamp window, nonce replay,
-- Content-MD5, the error table in both styles, and that no gateway error is
-- ever billed. The signatures come from spec/helpers/sign.lua, which is
-- written from the reference independently of the emulator's verifier.
local emulator = require("helpers.emulator")
local http = require("helpers.http")
local sign = require("helpers.sign")
local util = require("helpers.util")

-- The reference's self-computed vectors (2.7). Fixed test secrets only.
local V = sign.VECTORS
local KEY, SECRET, NONCE, TS_2018 = V.key, V.secret, V.nonce, V.timestamp
local V_POST, V_POST_SHA256, V_POST_SHA1, V_GET, V_GET_SHA256 = V.post, V.post_sha256, V.post_sha1, V.get,
  V.get_sha256

local APPCODE = "good-code"
local FORM = "application/x-www-form-urlencoded; charset=UTF-8"
local JSON = "application/json; charset=UTF-8"
local MINUTE = 60 * 1000
local NOTHING_LEFT = { processes = {}, files = {} }

local function now_ms() return math.floor(os.time() * 1000) end

--- `s` with the plain text `old` replaced by `new` (all occurrences).
local function replace(s, old, new)
  local out, i = {}, 1
  while true do
    local a, b = s:find(old, i, true)
    if not a then break end
    out[#out + 1] = s:sub(i, a - 1) .. new
    i = b + 1
  end
  return table.concat(out) .. s:sub(i)
end

--- What the gateway puts in X-Ca-Error-Message for a signature mismatch:
-- its own string-to-sign with every newline written as "#".
local function echo(sts)
  return "Invalid Signature, Server StringToSign:" .. sts:gsub("\n", "#")
end

--- The path part of a URL.
local function path_of(url) return (url:match("^%a+://[^/]+([^?]*)")) end

--- Removes the header lines whose name is `name` (any case).
local function without(lines, name)
  local out = {}
  for _, l in ipairs(lines) do
    if l:match("^([^:]+):"):lower() ~= name:lower() then out[#out + 1] = l end
  end
  return out
end

--- A signed call through sign.headers. `o` holds: url (default the emulator's
-- advanced URL), query (a raw query string appended to the URL, without "?")
-- and query_params (the pairs it holds, for signing), method (default POST,
-- GET when o.get), params (list of pairs sent url-encoded by curl as the form
-- body, or as the query with get), signed_params (what to sign, default
-- params followed by query_params, or the other way for a GET), body (a raw body instead of
-- params), content_type (default the form type for a POST without body), drop
-- (header names to remove after signing), add (header lines to add after
-- signing), and the options of sign.headers.
local function signed(emu, o)
  local url = o.url or emu.advanced
  local method = o.method or (o.get and "GET" or "POST")
  local content_type = o.content_type
  if content_type == nil and method == "POST" and not o.body then content_type = FORM end
  local to_sign = o.signed_params
  if not to_sign then
    -- The first value of a key is signed: for a POST the form body's pairs
    -- come first (a key in both is signed with the body's value, as the
    -- emulator and Aliyun's signers take it), for a GET the query's as sent.
    local first, second = o.params, o.query_params
    if method == "GET" then first, second = o.query_params, o.params end
    to_sign = {}
    for _, kv in ipairs(first or {}) do to_sign[#to_sign + 1] = kv end
    for _, kv in ipairs(second or {}) do to_sign[#to_sign + 1] = kv end
  end
  local lines, sts = sign.headers({
    key = o.key or KEY, secret = o.secret or SECRET, method = method, path = path_of(url),
    params = to_sign, signature_method = o.signature_method, accept = o.accept,
    content_type = content_type, content_md5 = o.content_md5, date = o.date,
    timestamp = o.timestamp, nonce = o.nonce, extra = o.extra, signature = o.signature,
  })
  for _, name in ipairs(o.drop or {}) do lines = without(lines, name) end
  for _, line in ipairs(o.add or {}) do lines[#lines + 1] = line end
  local res = http.request({
    url = url .. (o.query and ("?" .. o.query) or ""), method = method, headers = lines,
    form = o.params, get = method == "GET", body = o.body, timeout = 15,
  })
  return res, sts
end

--- Header lines for a request signed by hand (for what sign.headers cannot
-- express). `o.signed` lists { name, value, wire_name }: `name` is signed and
-- listed in X-Ca-Signature-Headers, `wire_name` (default `name`) is the name
-- the header is sent under. `o.listed` replaces the X-Ca-Signature-Headers
-- value. Also: method, path, params, accept, content_type, content_md5, date
-- (each signed, and sent when given), secret, signature_method (the HMAC used;
-- no X-Ca-Signature-Method is added), and signature (sent instead of the
-- computed one).
local function by_hand(o)
  local signed_headers, lines, listed = {}, {}, {}
  for _, h in ipairs(o.signed or {}) do
    signed_headers[#signed_headers + 1] = { h[1], h[2] }
    lines[#lines + 1] = (h[3] or h[1]) .. ": " .. h[2]
    listed[#listed + 1] = h[1]
  end
  local sts = sign.string_to_sign({
    method = o.method, accept = o.accept, content_md5 = o.content_md5,
    content_type = o.content_type, date = o.date, headers = signed_headers,
    path = o.path, params = o.params,
  })
  if o.accept then lines[#lines + 1] = "Accept: " .. o.accept end
  if o.content_type then lines[#lines + 1] = "Content-Type: " .. o.content_type end
  if o.content_md5 then lines[#lines + 1] = "Content-MD5: " .. o.content_md5 end
  if o.date then lines[#lines + 1] = "Date: " .. o.date end
  lines[#lines + 1] = "X-Ca-Signature-Headers: " .. (o.listed or table.concat(listed, ","))
  lines[#lines + 1] = "X-Ca-Signature: " ..
    (o.signature or sign.hmac(o.signature_method or "HmacSHA256", o.secret or SECRET, sts))
  return lines, sts
end

--- Asserts a gateway error: status, exact X-Ca-Error-Message, empty body,
-- no X-Ca-Error-Code (classic style), and an X-Ca-Request-Id.
local function assert_classic(res, status, message)
  assert.equal(status, res.status)
  assert.equal(message, res.headers["x-ca-error-message"])
  assert.is_nil(res.headers["x-ca-error-code"])
  assert.equal("", res.body)
  assert.truthy(res.headers["x-ca-request-id"], "X-Ca-Request-Id on every answer")
end

--- Asserts a success with the seed's shape for interface `api`.
local function assert_seed(res, api)
  assert.equal(200, res.status, "status " .. res.status .. ", message " ..
    tostring(res.headers["x-ca-error-message"]))
  assert.is_nil(res.headers["x-ca-error-message"])
  assert.is_nil(res.headers["x-ca-error-code"])
  local body = http.json(res)
  assert.equal(1, body.ok)
  assert.equal("查询成功", body.msg)
  if api == "handwriting" then
    assert.is_table(body.data)
    assert.truthy(#body.data > 0)
    for _, line in ipairs(body.data) do
      assert.is_string(line.words)
      assert.is_number(line.position.top)
      assert.is_number(line.position.left)
      assert.is_number(line.position.width)
      assert.is_number(line.position.height)
    end
  else
    assert.is_string(body.data)
    assert.truthy(#body.data > 0)
  end
end

--- Asserts the vendor's own failure (666, not billed) after the gateway let
-- the request through: no gateway error header.
local function assert_vendor_666(res, msg)
  assert.equal(666, res.status, "status " .. res.status .. ", message " ..
    tostring(res.headers["x-ca-error-message"]))
  assert.is_nil(res.headers["x-ca-error-message"])
  assert.is_nil(res.headers["x-ca-error-code"])
  local body = http.json(res)
  assert.equal(0, body.ok)
  if msg then assert.equal(msg, body.msg) end
end

--- Starts an emulator for a describe block: returns a table whose `emu` is
-- set in setup, stopped in teardown (a no-op when a test stopped it already),
-- and reset before each test.
local function with_emulator(options)
  local box = {}
  setup(function() box.emu = emulator.start(options) end)
  teardown(function() if box.emu then box.emu:stop() end end)
  before_each(function() box.emu:reset() end)
  return box
end

--- The last test of a describe block: stopping leaves nothing behind.
local function it_stops_cleanly(box)
  it("stops leaving no process and no file behind", function()
    assert.same(NOTHING_LEFT, box.emu:stop())
  end)
end

-- 1 ---------------------------------------------------------------------------

-- The emulator runs inside nginx (LuaJIT): its specs run once per make test.
if not util.nginx_only_here() then
  describe("the spec signer against the reference's vectors (2.7)", function() pending(util.NGINX_ONLY) end)
  return
end

describe("the spec signer against the reference's vectors (2.7)", function()
  it("computes HmacSHA256 of the worked example's string", function()
    assert.equal(V_POST_SHA256, sign.hmac("HmacSHA256", SECRET, V_POST))
  end)

  it("computes HmacSHA1 of the worked example's string", function()
    assert.equal(V_POST_SHA1, sign.hmac("HmacSHA1", SECRET, V_POST))
  end)

  it("computes HmacSHA256 of the GET string", function()
    assert.equal(V_GET_SHA256, sign.hmac("HmacSHA256", SECRET, V_GET))
  end)

  it("gives a different signature for another secret", function()
    assert.not_equal(V_POST_SHA256, sign.hmac("HmacSHA256", "test-secret ", V_POST))
  end)

  it("rebuilds the worked example's string from its parts", function()
    local sts = sign.string_to_sign({
      method = "post",
      accept = "application/json; charset=utf-8",
      content_type = "application/x-www-form-urlencoded; charset=utf-8",
      date = "Wed, 09 May 2018 13:30:29 GMT+00:00",
      -- In the order of the published x-ca-signature-headers: sorting is the signer's job.
      headers = {
        { "x-ca-timestamp", TS_2018 }, { "x-ca-key", KEY },
        { "x-ca-nonce", NONCE }, { "x-ca-signature-method", "HmacSHA256" },
      },
      path = "/http2test/test",
      -- The query first, then the form body in the order it was sent.
      params = { { "param1", "test" }, { "username", "xiaoming" }, { "password", "123456789" } },
    })
    assert.equal(V_POST, sts)
  end)

  it("rebuilds the GET string from its parts (empty lines kept, no '?' without parameters)", function()
    local sts = sign.string_to_sign({
      method = "GET", accept = "application/json",
      headers = { { "X-Ca-Timestamp", TS_2018 }, { "X-Ca-Key", KEY } },
      path = "/ocrservice/advanced",
    })
    assert.equal(V_GET, sts)
  end)

  it("signs an empty value as a bare key, a repeated key with its first value, values raw", function()
    local sts = sign.string_to_sign({
      method = "POST", path = "/p",
      params = { { "b", "x y&z=%41" }, { "a", "" }, { "b", "second" }, { "c", "0" } },
    })
    assert.equal("POST\n\n\n\n\n/p?a&b=x y&z=%41&c=0", sts)
  end)

  it("computes Content-MD5 as base64 of the MD5 digest", function()
    assert.equal("1B2M2Y8AsgTpgAmY7PhCfg==", sign.md5(""))
    assert.equal("XUFAKrxLKna5cZ2REBfFkg==", sign.md5("hello"))
  end)
end)

-- 2 ---------------------------------------------------------------------------

describe("the emulator's verifier against the reference's vectors", function()
  local box = with_emulator({
    "--port", "0", "--app-key", KEY .. ":" .. SECRET,
    "--path", "advanced=/http2test/test", "--path", "handwriting=/ocrservice/advanced",
  })

  -- The worked example (2.7), header names in the example's lower case.
  local function worked_example(emu, signature, timestamp, nonce)
    local ts, n = timestamp or TS_2018, nonce or NONCE
    local lines = {
      "accept: application/json; charset=utf-8",
      "content-type: application/x-www-form-urlencoded; charset=utf-8",
      "x-ca-timestamp: " .. ts,
      "date: Wed, 09 May 2018 13:30:29 GMT+00:00",
      "x-ca-nonce: " .. n,
      "x-ca-key: " .. KEY,
      "x-ca-signature-method: HmacSHA256",
      "x-ca-signature-headers: x-ca-timestamp,x-ca-key,x-ca-nonce,x-ca-signature-method",
      "x-ca-signature: " .. signature,
    }
    return http.request({
      url = emu.endpoint .. "/http2test/test?param1=test", method = "POST", headers = lines,
      body = "username=xiaoming&password=123456789", timeout = 15,
    })
  end

  local function get_vector(emu, signature, timestamp)
    return http.request({
      url = emu.endpoint .. "/ocrservice/advanced", method = "GET", timeout = 15,
      headers = {
        "X-Ca-Key: " .. KEY,
        "X-Ca-Timestamp: " .. (timestamp or TS_2018),
        "Accept: application/json",
        "X-Ca-Signature-Headers: X-Ca-Key,X-Ca-Timestamp",
        "X-Ca-Signature: " .. signature,
      },
    })
  end

  it("accepts the worked example's signature, then refuses its 2018 timestamp", function()
    local res = worked_example(box.emu, V_POST_SHA256)
    assert_classic(res, 400, "Timestamp Expired")
  end)

  it("answers a wrong signature on the worked example with its own string-to-sign", function()
    local res = worked_example(box.emu, "xfX+bZxY2yl7EB/qdoDy9v/uscw3Nnj1pgoU+Bm6xdM=")
    assert_classic(res, 400, echo(V_POST))
    assert.equal("Invalid Signature, Server StringToSign:POST#application/json; charset=utf-8##" ..
      "application/x-www-form-urlencoded; charset=utf-8#Wed, 09 May 2018 13:30:29 GMT+00:00#" ..
      "x-ca-key:203753385#x-ca-nonce:c9f15cbf-f4ac-4a6c-b54d-f51abf4b5b44#" ..
      "x-ca-signature-method:HmacSHA256#x-ca-timestamp:1525872629832#" ..
      "/http2test/test?param1=test&password=123456789&username=xiaoming",
      res.headers["x-ca-error-message"])
  end)

  it("does not take the HmacSHA1 digest when the signed method says HmacSHA256", function()
    local res = worked_example(box.emu, V_POST_SHA1)
    assert_classic(res, 400, echo(V_POST))
  end)

  it("accepts the GET vector's signature, then refuses its 2018 timestamp", function()
    local res = get_vector(box.emu, V_GET_SHA256)
    assert_classic(res, 400, "Timestamp Expired")
  end)

  it("answers a wrong signature on the GET vector with its own string-to-sign", function()
    local res = get_vector(box.emu, V_POST_SHA256)
    assert_classic(res, 400, echo(V_GET))
    assert.equal("Invalid Signature, Server StringToSign:GET#application/json####" ..
      "X-Ca-Key:203753385#X-Ca-Timestamp:1525872629832#/ocrservice/advanced",
      res.headers["x-ca-error-message"])
  end)

  it("lets the worked example through when signed now: the vendor answers 666 (no url)", function()
    local ts, nonce = tostring(now_ms()), sign.nonce()
    local sts = replace(replace(V_POST, TS_2018, ts), NONCE, nonce)
    assert.not_equal(V_POST, sts)
    local s = sign.hmac("HmacSHA256", SECRET, sts)
    assert_vendor_666(worked_example(box.emu, s, ts, nonce), "url参数不能为空")
  end)

  it("lets the GET vector through when signed now: the vendor answers 666 (no url)", function()
    local ts = tostring(now_ms())
    local s = sign.hmac("HmacSHA256", SECRET, replace(V_GET, TS_2018, ts))
    assert_vendor_666(get_vector(box.emu, s, ts), "url参数不能为空")
  end)

  it("bills none of these calls", function()
    worked_example(box.emu, V_POST_SHA256)
    get_vector(box.emu, V_GET_SHA256)
    local c = box.emu:ledger().credentials[KEY]
    assert.equal(0, c.billed)
  end)

  it_stops_cleanly(box)
end)

-- 3 ---------------------------------------------------------------------------

describe("live signed calls with a current timestamp", function()
  local box = with_emulator({ "--port", "0", "--app-key", KEY .. ":" .. SECRET })

  it("succeed with HmacSHA256, the default (POST form)", function()
    local res = signed(box.emu, { params = { { "url", box.emu.image } } })
    assert_seed(res, "advanced")
    assert.truthy(res.headers["x-ca-request-id"])
  end)

  it("succeed with HmacSHA256 when X-Ca-Signature-Method is not sent", function()
    local emu = box.emu
    local params = { { "url", emu.image } }
    local lines, sts = by_hand({
      method = "POST", path = path_of(emu.advanced), params = params,
      accept = "application/json", content_type = FORM,
      signed = { { "X-Ca-Key", KEY }, { "X-Ca-Timestamp", tostring(now_ms()) }, { "X-Ca-Nonce", sign.nonce() } },
    })
    assert.falsy(sts:find("signature%-method"))
    local res = http.request({ url = emu.advanced, method = "POST", headers = lines, form = params })
    assert_seed(res, "advanced")
  end)

  it("succeed with HmacSHA1", function()
    local res = signed(box.emu, { params = { { "url", box.emu.image } }, signature_method = "HmacSHA1" })
    assert_seed(res, "advanced")
  end)

  it("refuse an HmacSHA1 digest sent as HmacSHA256, and the other way round", function()
    local emu = box.emu
    local params = { { "url", emu.image } }
    for _, pair in ipairs({ { "HmacSHA256", "HmacSHA1" }, { "HmacSHA1", "HmacSHA256" } }) do
      local lines, sts = by_hand({
        method = "POST", path = path_of(emu.advanced), params = params,
        accept = "application/json", content_type = FORM, signature_method = pair[2],
        signed = { { "X-Ca-Key", KEY }, { "X-Ca-Signature-Method", pair[1] },
                   { "X-Ca-Timestamp", tostring(now_ms()) }, { "X-Ca-Nonce", sign.nonce() } },
      })
      local res = http.request({ url = emu.advanced, method = "POST", headers = lines, form = params })
      assert_classic(res, 400, echo(sts))
    end
  end)

  it("succeed as a GET with the parameters in the query (interface two)", function()
    local res = signed(box.emu, { url = box.emu.handwriting, get = true, params = { { "url", box.emu.image } } })
    assert_seed(res, "handwriting")
    local log = box.emu:requests()
    assert.equal("GET", log[#log].method)
    assert.equal("signature", log[#log].auth)
  end)

  it("sign parameter values raw, not URL-encoded: spaces, &, =, %, +, Chinese", function()
    local params = {
      { "url", box.emu.image },
      { "note", "a b&c=d" },
      { "pct", "100% %41 %2B" },
      { "plus", "1+1" },
      { "zh", "冰心 散文" },
      { "备注", "中文键" },
    }
    local res, sts = signed(box.emu, { params = params })
    assert_seed(res, "advanced")
    assert.truthy(sts:find("note=a b&c=d&pct=100% %41 %2B&plus=1+1&url=", 1, true), sts)
    assert.truthy(sts:find("&zh=冰心 散文&备注=中文键", 1, true), sts)
    -- The same values signed URL-encoded are refused, and the server's string shows them raw.
    local encoded = {}
    for i, kv in ipairs(params) do
      encoded[i] = { kv[1], (kv[2]:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end)) }
    end
    local bad
    bad, sts = signed(box.emu, { params = params, signed_params = encoded })
    assert.equal(400, bad.status)
    local message = bad.headers["x-ca-error-message"]
    assert.truthy(message:find("^Invalid Signature, Server StringToSign:"), message)
    assert.truthy(message:find("note=a b&c=d&pct=100% %41 %2B&plus=1+1&url=", 1, true), message)
    assert.falsy(message:find("note=a%20b", 1, true), message)
    assert.not_equal(echo(sts), message)
  end)

  it("sign the query and the form together, sorted by key; falsy-looking values kept", function()
    local emu = box.emu
    local query_params = { { "zeta", "0" }, { "alpha", "false" } }
    local res, sts = signed(emu, {
      query = "zeta=0&alpha=false", query_params = query_params,
      params = { { "url", emu.image }, { "mid", "m" } },
    })
    assert_seed(res, "advanced")
    assert.equal("/ocr/advanced?alpha=false&mid=m&url=" .. emu.image .. "&zeta=0", sts:match("[^\n]*$"))
  end)

  it("sign an empty-valued parameter as a bare key (form 'k=' and query 'k')", function()
    local emu = box.emu
    local res, sts = signed(emu, {
      query = "flag", query_params = { { "flag", "" } },
      params = { { "url", emu.image }, { "empty", "" } },
    })
    assert_seed(res, "advanced")
    assert.equal("/ocr/advanced?empty&flag&url=" .. emu.image, sts:match("[^\n]*$"))
    -- Signed as "empty=" instead, it is refused; the server's string has the bare key.
    local bad = signed(emu, {
      params = { { "url", emu.image }, { "empty", "" } },
      signed_params = { { "url", emu.image }, { "empty=", "" } },
    })
    assert.equal(400, bad.status)
    assert.truthy(bad.headers["x-ca-error-message"]:find("#/ocr/advanced?empty&url=", 1, true),
      bad.headers["x-ca-error-message"])
  end)

  it("sign a repeated key with its first value", function()
    local emu = box.emu
    local params = { { "url", emu.image }, { "tag", "first" }, { "tag", "second" } }
    local res, sts = signed(emu, { params = params })
    assert_seed(res, "advanced")
    assert.truthy(sts:find("?tag=first&url=", 1, true), sts)
    -- Signed with the second value, it is refused.
    local bad = signed(emu, { params = params,
      signed_params = { { "url", emu.image }, { "tag", "second" } } })
    assert.equal(400, bad.status)
    assert.truthy(bad.headers["x-ca-error-message"]:find("?tag=first&url=", 1, true))
  end)

  it("finding 19: a key in both the query and the form body is signed and used with the body's value", function()
    local emu = box.emu
    -- The query's url names an image that does not exist: had it been used,
    -- the vendor would answer 666.
    local query_url = emu.images .. "missing.png"
    local query_params = { { "url", query_url }, { "dup", "fromquery" } }
    local body_params = { { "url", emu.image }, { "dup", "fromform" } }
    -- The same request each time, signed over `to_sign`'s values.
    local function both(to_sign)
      return signed(emu, {
        query = "url=" .. query_url .. "&dup=fromquery", query_params = query_params,
        params = body_params, signed_params = to_sign,
      })
    end
    -- Signed over the body's values, as Aliyun's signers (Java, Python, Node) sign them: accepted.
    local res, sts = both(body_params)
    assert_seed(res, "advanced")
    assert.equal("/ocr/advanced?dup=fromform&url=" .. emu.image, sts:match("[^\n]*$"))
    local log = emu:requests()
    assert.equal(1, #log)
    assert.equal("/ocr/advanced?url=" .. query_url .. "&dup=fromquery", log[1].uri)
    -- The body's url is the one the vendor used (and logged).
    assert.same({ url = emu.image, dup = "fromform" }, log[1].params)
    assert.same({ 200, true, KEY }, { log[1].status, log[1].billed, log[1].credential })

    -- Signed over the query's values: refused, and the server's string has the body's.
    local bad, bad_sts = both(query_params)
    assert.equal(400, bad.status)
    local message = bad.headers["x-ca-error-message"]
    assert.truthy(message:find("#/ocr/advanced?dup=fromform&url=" .. emu.image, 1, true), message)
    assert.not_equal(echo(bad_sts), message)
    assert.equal(2, #emu:requests())
    assert.same({ 400, false }, { emu:requests(1)[1].status, emu:requests(1)[1].billed })
  end)

  it("finding 19: show in both the query and the form body is read from the body", function()
    local emu = box.emu
    -- show=1 makes data an array of {words}; the query's show=2 would be a 666.
    local res = signed(emu, {
      query = "show=2", query_params = { { "show", "2" } },
      params = { { "url", emu.image }, { "show", "1" } },
      signed_params = { { "url", emu.image }, { "show", "1" } },
    })
    assert.equal(200, res.status, tostring(res.headers["x-ca-error-message"]) .. " " .. res.body)
    assert.is_table(http.json(res).data)
    assert.same({ url = emu.image, show = "1" }, emu:requests()[1].params)
  end)

  it("sign the header names as listed in X-Ca-Signature-Headers, in mixed case", function()
    local emu = box.emu
    local params = { { "url", emu.image } }
    -- Listed (and signed) as X-CA-KEY, x-ca-timestamp, X-ca-Nonce; sent as X-Ca-Key,
    -- X-Ca-Timestamp, x-ca-nonce; plus a custom header in mixed case.
    local lines, sts = by_hand({
      method = "POST", path = path_of(emu.advanced), params = params,
      accept = "application/json", content_type = FORM,
      signed = {
        { "X-CA-KEY", KEY, "X-Ca-Key" },
        { "x-ca-timestamp", tostring(now_ms()), "X-Ca-Timestamp" },
        { "X-ca-Nonce", sign.nonce(), "x-ca-nonce" },
        { "X-Custom-Thing", "Value With Case" },
      },
    })
    assert.truthy(sts:find("\nX-CA-KEY:" .. KEY .. "\nX-Custom-Thing:Value With Case\nX-ca-Nonce:", 1, true), sts)
    local res = http.request({ url = emu.advanced, method = "POST", headers = lines, form = params })
    assert_seed(res, "advanced")
    -- The same headers signed with lower-cased names are refused, and the
    -- server's string shows the names as they were listed.
    lines = by_hand({
      method = "POST", path = path_of(emu.advanced), params = params,
      accept = "application/json", content_type = FORM,
      signed = { { "X-CA-KEY", KEY }, { "x-ca-timestamp", tostring(now_ms()) } },
      listed = "X-CA-KEY,x-ca-timestamp",
      signature = sign.hmac("HmacSHA256", SECRET, sign.string_to_sign({
        method = "POST", accept = "application/json", content_type = FORM,
        headers = { { "x-ca-key", KEY }, { "x-ca-timestamp", "0" } }, path = path_of(emu.advanced),
        params = params })),
    })
    local bad = http.request({ url = emu.advanced, method = "POST", headers = lines, form = params })
    assert.equal(400, bad.status)
    assert.truthy(bad.headers["x-ca-error-message"]:find("#X-CA-KEY:" .. KEY .. "#x-ca-timestamp:", 1, true),
      bad.headers["x-ca-error-message"])
  end)

  it("sign a mixed-case X-Ca-* header given as an extra one", function()
    local res, sts = signed(box.emu, { params = { { "url", box.emu.image } }, extra = { { "x-CA-Stage", "RELEASE" } } })
    assert_seed(res, "advanced")
    assert.truthy(sts:find("\nx-CA-Stage:RELEASE\n", 1, true), sts)
  end)

  it("never put Accept, Content-Type, Date or Content-MD5 into the Headers block", function()
    local emu = box.emu
    local params = { { "url", emu.image } }
    local lines = by_hand({
      method = "POST", path = path_of(emu.advanced), params = params,
      accept = "application/json", content_type = FORM, date = "Wed, 09 May 2018 13:30:29 GMT",
      signed = { { "X-Ca-Key", KEY }, { "X-Ca-Timestamp", tostring(now_ms()) } },
      listed = "Accept,X-Ca-Key,content-type,X-Ca-Timestamp,Date,Content-MD5,X-Ca-Signature",
    })
    local res = http.request({ url = emu.advanced, method = "POST", headers = lines, form = params })
    assert_seed(res, "advanced")
  end)

  it("succeed inside the window: 14 minutes old and 14 minutes ahead", function()
    for _, skew in ipairs({ -14 * MINUTE, 14 * MINUTE }) do
      local res = signed(box.emu, { params = { { "url", box.emu.image } }, timestamp = now_ms() + skew })
      assert_seed(res, "advanced")
    end
  end)

  it("are billed to the app key, once each", function()
    for _ = 1, 3 do assert_seed(signed(box.emu, { params = { { "url", box.emu.image } } }), "advanced") end
    local c = box.emu:ledger().credentials[KEY]
    assert.same({ 3, 3, 0 }, { c.requests, c.billed, c.not_billed })
  end)

  it_stops_cleanly(box)
end)

-- 4 ---------------------------------------------------------------------------

describe("signature errors", function()
  local box = with_emulator({ "--port", "0", "--app-key", KEY .. ":" .. SECRET, "--app-key", "other-key:other-secret" })

  local function ok_params() return { { "url", box.emu.image } } end

  it("unknown X-Ca-Key: 400 Invalid AppKey", function()
    local res = signed(box.emu, { key = "nobody", params = ok_params() })
    assert_classic(res, 400, "Invalid AppKey")
  end)

  it("no X-Ca-Signature, or an empty one: 404 Empty Signature", function()
    local res = signed(box.emu, { params = ok_params(), drop = { "X-Ca-Signature" } })
    assert_classic(res, 404, "Empty Signature")
    -- "Name;" is curl's way to send a header with an empty value.
    res = signed(box.emu, { params = ok_params(), drop = { "X-Ca-Signature" }, add = { "X-Ca-Signature;" } })
    assert_classic(res, 404, "Empty Signature")
  end)

  it("an unsupported X-Ca-Signature-Method: 400", function()
    for _, m in ipairs({ "HmacMD5", "hmacsha256", "HmacSHA512" }) do
      local res = signed(box.emu, { params = ok_params(), signature_method = m,
        signature = sign.hmac("HmacSHA256", SECRET, "x") })
      assert_classic(res, 400, "Invalid Signature Method")
    end
  end)

  it("a wrong secret: Invalid Signature with the server's string, equal to the client's", function()
    local res, sts = signed(box.emu, { params = ok_params(), secret = "not-the-secret" })
    assert_classic(res, 400, echo(sts))
    -- Another key's secret is wrong too.
    res, sts = signed(box.emu, { params = ok_params(), secret = "other-secret" })
    assert_classic(res, 400, echo(sts))
  end)

  it("a tampered parameter: Invalid Signature whose string shows what was received", function()
    local res = signed(box.emu, { params = { { "url", box.emu.image .. "?x" } },
      signed_params = ok_params() })
    assert.equal(400, res.status)
    assert.truthy(res.headers["x-ca-error-message"]:find("url=" .. box.emu.image .. "?x", 1, true))
  end)

  it("a timestamp 16 minutes old or 16 minutes ahead: Timestamp Expired", function()
    for _, skew in ipairs({ -16 * MINUTE, 16 * MINUTE }) do
      local res = signed(box.emu, { params = ok_params(), timestamp = now_ms() + skew })
      assert_classic(res, 400, "Timestamp Expired")
    end
  end)

  it("a timestamp in seconds, not milliseconds: Timestamp Expired", function()
    local res = signed(box.emu, { params = ok_params(), timestamp = os.time() })
    assert_classic(res, 400, "Timestamp Expired")
  end)

  it("a non-numeric timestamp: Invalid Timestamp", function()
    for _, ts in ipairs({ "abc", "1525872629832x", "-1525872629832", "1.5e12",
                          "Wed, 09 May 2018 13:30:29 GMT" }) do
      local res = signed(box.emu, { params = ok_params(), timestamp = ts })
      assert_classic(res, 400, "Invalid Timestamp")
    end
  end)

  it("the same nonce twice: the second is 400 Nonce Used", function()
    local nonce = sign.nonce()
    assert_seed(signed(box.emu, { params = ok_params(), nonce = nonce }), "advanced")
    local res = signed(box.emu, { params = ok_params(), nonce = nonce })
    assert_classic(res, 400, "Nonce Used")
    -- Also on the other interface and as a GET: the nonce belongs to the key.
    res = signed(box.emu, { url = box.emu.handwriting, get = true, params = ok_params(), nonce = nonce })
    assert_classic(res, 400, "Nonce Used")
  end)

  it("a refused signature does not burn the nonce", function()
    local nonce = sign.nonce()
    local res = signed(box.emu, { params = ok_params(), nonce = nonce, secret = "wrong" })
    assert.equal(400, res.status)
    assert.truthy(res.headers["x-ca-error-message"]:find("^Invalid Signature, Server StringToSign:"))
    assert_seed(signed(box.emu, { params = ok_params(), nonce = nonce }), "advanced")
    assert_classic(signed(box.emu, { params = ok_params(), nonce = nonce }), 400, "Nonce Used")
  end)

  it("an expired timestamp does not burn the nonce either", function()
    local nonce = sign.nonce()
    local res = signed(box.emu, { params = ok_params(), nonce = nonce, timestamp = now_ms() - 20 * MINUTE })
    assert_classic(res, 400, "Timestamp Expired")
    assert_seed(signed(box.emu, { params = ok_params(), nonce = nonce }), "advanced")
  end)

  it("a nonce used by a call the vendor refused (666) is still used", function()
    local nonce = sign.nonce()
    assert_vendor_666(signed(box.emu, { params = { { "show", "1" } }, nonce = nonce }), "url参数不能为空")
    assert_classic(signed(box.emu, { params = ok_params(), nonce = nonce }), 400, "Nonce Used")
  end)

  it("a reset forgets the nonces", function()
    local nonce = sign.nonce()
    assert_seed(signed(box.emu, { params = ok_params(), nonce = nonce }), "advanced")
    box.emu:reset()
    assert_seed(signed(box.emu, { params = ok_params(), nonce = nonce }), "advanced")
  end)

  it("a JSON body with a correct Content-MD5 passes the gateway: the vendor answers 666", function()
    local body = '{"img":"aGVsbG8=","prob":false}'
    local res, sts = signed(box.emu, { body = body, content_type = JSON, content_md5 = sign.md5(body) })
    assert_vendor_666(res, "url参数不能为空")
    assert.truthy(sts:find("\n" .. sign.md5(body) .. "\n" .. JSON .. "\n", 1, true), sts)
  end)

  it("a JSON body with a wrong Content-MD5: 400 Invalid Content-MD5", function()
    local body = '{"img":"aGVsbG8=","prob":false}'
    local res = signed(box.emu, { body = body, content_type = JSON, content_md5 = sign.md5(body .. " ") })
    assert_classic(res, 400, "Invalid Content-MD5")
    -- A Content-MD5 with an empty body is refused too (reference 2.5).
    res = signed(box.emu, { body = "", content_type = JSON, content_md5 = sign.md5("x") })
    assert_classic(res, 400, "Invalid Content-MD5")
  end)

  it("a JSON body without Content-MD5 passes; a correct Content-MD5 left unsigned is refused", function()
    local body = '{"img":"aGVsbG8="}'
    assert_vendor_666(signed(box.emu, { body = body, content_type = JSON }), "url参数不能为空")
    local res, sts = signed(box.emu, { body = body, content_type = JSON,
      add = { "Content-MD5: " .. sign.md5(body) } })
    local server = replace(sts, "\n\n" .. JSON, "\n" .. sign.md5(body) .. "\n" .. JSON)
    assert.not_equal(sts, server)
    assert_classic(res, 400, echo(server))
  end)

  it("bills none of its gateway errors", function()
    signed(box.emu, { params = ok_params(), secret = "wrong" })
    signed(box.emu, { params = ok_params(), timestamp = "abc" })
    signed(box.emu, { params = ok_params(), drop = { "X-Ca-Signature" } })
    local ledger = box.emu:ledger()
    assert.equal(0, ledger.total.billed)
    local log = box.emu:requests()
    assert.equal(3, #log)
    for _, entry in ipairs(log) do
      assert.truthy(entry.status >= 400, entry.status)
      assert.is_false(entry.billed)
    end
  end)

  it_stops_cleanly(box)
end)

-- 5 ---------------------------------------------------------------------------

describe("APPCODE authentication", function()
  local box = with_emulator({ "--port", "0", "--appcode", APPCODE, "--app-key", KEY .. ":" .. SECRET })

  it("a good code: 200 on both interfaces", function()
    assert_seed(box.emu:call("advanced", { appcode = APPCODE }), "advanced")
    assert_seed(box.emu:call("handwriting", { appcode = APPCODE }), "handwriting")
  end)

  it("a good code in a lower-case header name: 200", function()
    local res = http.request({ url = box.emu.advanced, headers = { "authorization: APPCODE " .. APPCODE },
      form = { { "url", box.emu.image } } })
    assert_seed(res, "advanced")
  end)

  it("an unknown code: 400 Invalid AppCode `not exists`", function()
    local res = box.emu:call("advanced", { appcode = "not-a-code" })
    assert_classic(res, 400, "Invalid AppCode `not exists`")
  end)

  it("a code of another case is unknown", function()
    local res = box.emu:call("advanced", { appcode = APPCODE:upper() })
    assert_classic(res, 400, "Invalid AppCode `not exists`")
  end)

  it("'Authorization: APPCODE' with no code: 400 Invalid AppCode", function()
    local res = http.request({ url = box.emu.advanced, headers = { "Authorization: APPCODE" },
      form = { { "url", box.emu.image } } })
    assert.equal(400, res.status)
    assert.truthy((res.headers["x-ca-error-message"] or ""):find("^Invalid AppCode"),
      res.headers["x-ca-error-message"])
    assert.is_nil(res.headers["x-ca-error-code"])
  end)

  it("another Authorization scheme: 400 Invalid AppCode", function()
    local res = http.request({ url = box.emu.advanced, headers = { "Authorization: Bearer " .. APPCODE },
      form = { { "url", box.emu.image } } })
    assert_classic(res, 400, "Invalid AppCode `not exists`")
  end)

  it("no credentials at all: 400 Need authorization", function()
    local res = http.request({ url = box.emu.advanced, form = { { "url", box.emu.image } } })
    assert_classic(res, 400, "Need authorization")
  end)

  it("classic errors carry no X-Ca-Error-Code", function()
    local res = signed(box.emu, { key = "nobody", params = { { "url", box.emu.image } } })
    assert_classic(res, 400, "Invalid AppKey")
  end)

  it_stops_cleanly(box)
end)

describe("gateway errors in --errors vpc style", function()
  local box = with_emulator({ "--port", "0", "--errors", "vpc", "--appcode", APPCODE,
    "--app-key", KEY .. ":" .. SECRET })

  local function assert_vpc(res, code)
    local got = res.headers["x-ca-error-code"]
    assert.truthy(got, "an X-Ca-Error-Code")
    assert.matches("^%u%d%d%d%u[%u%d]$", got)
    if code then assert.equal(code, got) end
    assert.equal(tonumber(got:sub(2, 4)), res.status)
    assert.truthy(res.headers["x-ca-error-message"], "an X-Ca-Error-Message too")
    assert.equal("", res.body)
    return got
  end

  it("a good code or a good signature: 200 without X-Ca-Error-Code", function()
    assert_seed(box.emu:call("advanced", { appcode = APPCODE }), "advanced")
    assert_seed(signed(box.emu, { params = { { "url", box.emu.image } } }), "advanced")
  end)

  it("an unknown AppCode: A401AC, status 401", function()
    local res = box.emu:call("advanced", { appcode = "not-a-code" })
    assert_vpc(res, "A401AC")
    assert.equal(401, res.status)
    assert.truthy(res.headers["x-ca-error-message"]:find("^Invalid AppCode"))
  end)

  it("'Authorization: APPCODE' with no code: A401AC", function()
    local res = http.request({ url = box.emu.advanced, headers = { "Authorization: APPCODE" },
      form = { { "url", box.emu.image } } })
    assert_vpc(res, "A401AC")
  end)

  it("no credentials: A400MA, status 400, Need authorization", function()
    local res = http.request({ url = box.emu.advanced, form = { { "url", box.emu.image } } })
    assert_vpc(res, "A400MA")
    assert.equal(400, res.status)
    assert.truthy(res.headers["x-ca-error-message"]:find("^Need authorization"))
  end)

  it("an unknown AppKey: A400IK, status 400", function()
    local res = signed(box.emu, { key = "nobody", params = { { "url", box.emu.image } } })
    assert_vpc(res, "A400IK")
    assert.equal(400, res.status)
  end)

  it("a wrong signature: A403IS, status 403, with the server's string", function()
    local res, sts = signed(box.emu, { params = { { "url", box.emu.image } }, secret = "wrong" })
    assert_vpc(res, "A403IS")
    assert.equal(403, res.status)
    assert.equal(echo(sts), res.headers["x-ca-error-message"])
  end)

  it("the other signature errors: a code whose characters 2-4 are the status", function()
    local image = { { "url", box.emu.image } }
    local nonce = sign.nonce()
    assert_seed(signed(box.emu, { params = image, nonce = nonce }), "advanced")
    local body = '{"img":"aGVsbG8="}'
    local cases = {
      signed(box.emu, { params = image, drop = { "X-Ca-Signature" } }),
      signed(box.emu, { params = image, signature_method = "HmacMD5", signature = "x" }),
      signed(box.emu, { params = image, timestamp = now_ms() - 16 * MINUTE }),
      signed(box.emu, { params = image, timestamp = "abc" }),
      signed(box.emu, { params = image, nonce = nonce }),
      (signed(box.emu, { body = body, content_type = JSON, content_md5 = sign.md5("other") })),
    }
    local codes = {}
    for i, res in ipairs(cases) do codes[i] = assert_vpc(res) end
    assert.equal("I400NC", codes[5])
    assert.equal("I400I5", codes[6])
  end)

  it_stops_cleanly(box)
end)

-- 6 ---------------------------------------------------------------------------

describe("billing: gateway errors are never billed", function()
  local OTHER = "other-code"
  local box = with_emulator({ "--port", "0", "--appcode", APPCODE, "--appcode", OTHER,
    "--app-key", KEY .. ":" .. SECRET })

  it("bills only 2xx, per credential, app key and app code apart", function()
    local emu = box.emu
    local image = { { "url", emu.image } }
    local statuses = {}
    local function note(res) statuses[#statuses + 1] = res.status return res end

    -- The app code: two billed calls, one vendor failure (666).
    assert_seed(note(emu:call("advanced", { appcode = APPCODE })), "advanced")
    assert_seed(note(emu:call("handwriting", { appcode = APPCODE })), "handwriting")
    assert_vendor_666(note(emu:call("advanced", { appcode = APPCODE, form = { { "show", "1" } } })))
    -- Gateway errors that name no valid credential.
    assert.equal(400, note(emu:call("advanced", { appcode = "not-a-code" })).status)
    assert.equal(400, note(http.request({ url = emu.advanced, form = image })).status)
    assert.equal(400, note(signed(emu, { key = "nobody", params = image })).status)

    -- The app key: one billed call, one vendor failure, then gateway errors.
    local nonce = sign.nonce()
    assert_seed(note(signed(emu, { params = image, nonce = nonce })), "advanced")
    assert_vendor_666(note(signed(emu, { params = { { "show", "0" } } })))
    assert.equal(400, note(signed(emu, { params = image, nonce = nonce })).status)          -- Nonce Used
    assert.equal(400, note(signed(emu, { params = image, secret = "wrong" })).status)       -- Invalid Signature
    assert.equal(400, note(signed(emu, { params = image, timestamp = 1 })).status)          -- Timestamp Expired
    assert.equal(404, note(signed(emu, { params = image, drop = { "X-Ca-Signature" } })).status)
    assert.equal(400, note(signed(emu, { params = image, content_type = JSON, body = "{}",
      content_md5 = sign.md5("{ }") })).status)                                              -- Invalid Content-MD5

    local ledger = emu:ledger()
    local code, key, other = ledger.credentials[APPCODE], ledger.credentials[KEY], ledger.credentials[OTHER]
    assert.same({ requests = 3, billed = 2, not_billed = 1 },
      { requests = code.requests, billed = code.billed, not_billed = code.not_billed })
    -- Requests refused for their signature, timestamp, nonce or MD5 named a
    -- known key: they count as its requests, not billed.
    assert.same({ requests = 7, billed = 1, not_billed = 6 },
      { requests = key.requests, billed = key.billed, not_billed = key.not_billed })
    assert.same({ 0, 0 }, { other.requests, other.billed })
    assert.is_nil(ledger.credentials["not-a-code"])
    assert.is_nil(ledger.credentials["nobody"])
    assert.equal(3, ledger.total.billed)
    assert.equal(10, ledger.total.requests)

    -- The request log: every request is there, and billed exactly when 2xx.
    local log = emu:requests()
    assert.equal(#statuses, #log)
    local billed = 0
    for i, entry in ipairs(log) do
      assert.equal(statuses[i], entry.status)
      assert.equal(entry.status >= 200 and entry.status <= 299, entry.billed)
      if entry.billed then billed = billed + 1 end
    end
    assert.equal(3, billed)
  end)

  it("a quota refusal (403, after authentication) counts as a request, not billed", function()
    local emu = box.emu
    local _, status = emu:settings({ quotas = { [OTHER] = 1, [KEY] = 1 } })
    assert.equal(200, status)
    assert_seed(emu:call("advanced", { appcode = OTHER }), "advanced")
    assert_classic(emu:call("advanced", { appcode = OTHER }), 403, "Quota Exhausted")
    assert_seed(signed(emu, { params = { { "url", emu.image } } }), "advanced")
    assert_classic(signed(emu, { params = { { "url", emu.image } } }), 403, "Quota Exhausted")
    local ledger = emu:ledger()
    for _, c in ipairs({ OTHER, KEY }) do
      local l = ledger.credentials[c]
      assert.same({ 2, 1, 1, 0 }, { l.requests, l.billed, l.not_billed, l.quota_remaining })
    end
    assert.equal(0, ledger.credentials[APPCODE].billed)
  end)

  it("after a reset the ledger is empty", function()
    local ledger = box.emu:ledger()
    assert.same({ requests = 0, billed = 0, not_billed = 0 }, ledger.total)
  end)

  it_stops_cleanly(box)
end)
