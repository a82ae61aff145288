-- The client's calls end to end against the emulator (the request signing
-- vectors are spec/unit/request_spec.lua's): results of both interfaces over POST and
-- GET, both auth modes, image URLs and extra parameters that must arrive
-- byte for byte, configuration from options and the environment with its
-- precedence, and misuse that must raise at once, at the caller's line,
-- without sending anything.
local emulator = require("helpers.emulator")
local sh = require("helpers.sh")
local sign = require("helpers.sign")
local cjson = require("cjson")
local aliocr = require("aliocr")
local util = require("helpers.util")
local slow = util.slow
local header, NOTHING_LEFT = util.header, util.NOTHING_LEFT

local SPEC_SRC = debug.getinfo(1, "S").short_src

-- What the emulator's canned backend answers (the API guide's examples).
local SEED_TEXT = "冰心散文精选自从太平洋舟中，银花世界之夜以后，再不曾见有团圆*****到了酣畅处，自己觉得是个羽"
local SEED_WORDS = { "冰心散文精选", "*****", "在草地上，和着最柔媚的琴声跳舞。到了酣畅处，自己觉得是个羽" }
local HANDWRITING = {
  { words = "拇指云软件", position = { top = 41, left = 65, width = 236, height = 78 } },
  { words = "作品著作权", position = { top = 141, left = 68, width = 258, height = 76 } },
  { words = "聚合版权服务专家", position = { top = 231, left = 59, width = 417, height = 90 } },
  { words = "400-181-0600", position = { top = 331, left = 76, width = 310, height = 86 } },
}

local UUID_V4 = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"
local REQUEST_ID = "^%x+%-%x+%-%x+%-%x+%-%x+$"
local FORM = "application/x-www-form-urlencoded; charset=UTF-8"
local SIGNED_NAMES = { "X-Ca-Key", "X-Ca-Nonce", "X-Ca-Signature-Method", "X-Ca-Timestamp" }

--- A copy of `t` with the fields of `extra` added.
local function with(t, extra)
  local out = {}
  for k, v in pairs(t or {}) do out[k] = v end
  for k, v in pairs(extra or {}) do out[k] = v end
  return out
end


--- The only entry of the emulator's request log (asserts there is one).
local function only_request(emu)
  local log = emu:requests()
  assert.equal(1, #log, "request log: " .. cjson.encode(log))
  return log[1]
end

--- Asserts that `fn` raises the message "aliocr: <message>", positioned at
-- the line of this spec file inside `fn` that made the call.
local function raises(fn, message)
  local ok, err = pcall(fn)
  assert.is_false(ok, "expected an error: " .. message)
  assert.is_string(err)
  local src, line, msg = err:match("^(.-):(%d+): (.*)$")
  assert.equal(SPEC_SRC, src, "the error should point at the spec, got: " .. err)
  local info = debug.getinfo(fn, "S")
  line = tonumber(line)
  assert.truthy(line >= info.linedefined and line <= info.lastlinedefined,
    "the error should point at the line of the call, got: " .. err)
  assert.equal("aliocr: " .. message, msg)
end

--- True when the environment holds any of the variables the client reads.
local ENV_NAMES = { "ALIOCR_APPCODE", "ALIOCR_APP_KEY", "ALIOCR_APP_SECRET", "ALIOCR_ENDPOINT",
                    "ALIOCR_ADVANCED_URL", "ALIOCR_HANDWRITING_URL" }
local function env_has_aliocr()
  for _, n in ipairs(ENV_NAMES) do
    if (os.getenv(n) or "") ~= "" then return true end
  end
  return false
end

--------------------------------------------------------------------------------

--------------------------------------------------------------------------------

describe("results of both interfaces", function()
  local emu
  local post_client, get_client

  setup(function()
    emu = emulator.start({ "--port", "0", "--appcode", "demo" })
    post_client = aliocr.new({ appcode = "demo", endpoint = emu.endpoint, retries = 0 })
    get_client = aliocr.new({ appcode = "demo", endpoint = emu.endpoint, retries = 0, method = "GET" })
  end)

  teardown(function()
    if post_client then post_client:close() end
    if get_client then get_client:close() end
    assert.same(NOTHING_LEFT, emu:stop())
  end)

  before_each(function() emu:reset() end)

  --- Asserts the fields every result has, against the request log.
  local function check_common(res, err, wire_method)
    assert.is_nil(err, err and tostring(err))
    assert.is_table(res)
    assert.equal(1, res.ok)
    assert.equal("integer", util.number_type(res.ok))
    assert.equal("查询成功", res.msg)
    assert.equal(200, res.status)
    assert.is_true(res.billed)
    assert.equal(1, res.attempts)
    assert.equal("number", type(res.elapsed))
    assert.truthy(res.elapsed > 0 and res.elapsed < 10)
    local entry = only_request(emu)
    assert.equal(wire_method, entry.method)
    assert.equal(200, entry.status)
    assert.is_true(entry.billed)
    assert.matches(REQUEST_ID, res.request_id)
    assert.equal(entry.request_id, res.request_id)
    assert.equal(emu.image, entry.params.url)
    if wire_method == "GET" then
      assert.equal("", entry.body)
      assert.is_nil(header(entry, "Content-Type"))
    else
      assert.equal(FORM, header(entry, "Content-Type"))
      assert.equal(entry.path, entry.uri)
    end
    return entry
  end

  local METHODS = {
    { name = "POST (the default)", get = false, call = {}, wire = "POST" },
    { name = "GET (client option method)", get = true, call = {}, wire = "GET" },
    { name = "GET (per-call opts.method on a POST client)", get = false, call = { method = "GET" }, wire = "GET" },
    { name = "POST (per-call opts.method on a GET client)", get = true, call = { method = "POST" }, wire = "POST" },
  }

  for _, m in ipairs(METHODS) do
    local function client() return m.get and get_client or post_client end

    describe("over " .. m.name, function()
      it("interface one without show: the seed string, one line", function()
        local res, err = client():recognize(emu.image, with(m.call))
        local entry = check_common(res, err, m.wire)
        assert.is_nil(entry.params.show)
        assert.equal(SEED_TEXT, res.data)
        assert.equal(SEED_TEXT, res.text)
        assert.same({ { words = SEED_TEXT } }, res.lines)
        assert.is_nil(res.lines[1].position)
      end)

      it("interface one with show=\"1\": three lines, text joined by newlines", function()
        local res, err = client():recognize(emu.image, with(m.call, { show = "1" }))
        local entry = check_common(res, err, m.wire)
        assert.equal("1", entry.params.show)
        assert.same({ { words = SEED_WORDS[1] }, { words = SEED_WORDS[2] }, { words = SEED_WORDS[3] } }, res.data)
        assert.equal(3, #res.lines)
        for i, w in ipairs(SEED_WORDS) do
          assert.equal(w, res.lines[i].words)
          assert.is_nil(res.lines[i].position)
        end
        assert.equal(table.concat(SEED_WORDS, "\n"), res.text)
      end)

      it("interface one with show=1 (a number): sent as \"1\", three lines", function()
        local res, err = client():recognize(emu.image, with(m.call, { show = 1 }))
        local entry = check_common(res, err, m.wire)
        assert.equal("1", entry.params.show)
        assert.equal(3, #res.lines)
        assert.equal(table.concat(SEED_WORDS, "\n"), res.text)
      end)

      it("interface two: four lines with integer positions, text joined", function()
        local res, err = client():handwriting(emu.image, with(m.call))
        local entry = check_common(res, err, m.wire)
        assert.equal("/ocr/handwriting", entry.path)
        assert.same(HANDWRITING, res.data)
        assert.same(HANDWRITING, res.lines)
        for _, line in ipairs(res.lines) do
          for _, f in ipairs({ "top", "left", "width", "height" }) do
            assert.equal("integer", util.number_type(line.position[f]), f .. " of " .. line.words)
          end
        end
        for _, item in ipairs(res.data) do
          assert.equal("integer", util.number_type(item.position.top))
        end
        local words = {}
        for i, l in ipairs(HANDWRITING) do words[i] = l.words end
        assert.equal(table.concat(words, "\n"), res.text)
      end)
    end)
  end

  it("interface one with show=\"0\" gives the string form", function()
    local res, err = post_client:recognize(emu.image, { show = "0" })
    local entry = check_common(res, err, "POST")
    assert.equal("0", entry.params.show)
    assert.equal(SEED_TEXT, res.text)
    assert.equal(1, #res.lines)
  end)

  it("a loopback image URL with a query and a fragment of its own is fetched and sent intact", function()
    local url = emu.image .. "?v=1&w=%2B+x#top"
    for _, c in ipairs({ post_client, get_client }) do
      emu:reset()
      local res, err = c:handwriting(url)
      assert.is_nil(err, err and tostring(err))
      assert.equal(4, #res.lines)
      assert.equal(url, only_request(emu).params.url)
    end
  end)

  it("a per-call timeout under a millisecond still times out", function()
    -- 0.0004 s must not round down to 0 ms, which libcurl takes as "no timeout".
    emu:fault({ mode = "stall_headers", ms = 1500, times = 1 })
    local res, err = post_client:recognize(emu.image, { timeout = 0.0004 })
    assert.is_nil(res, "answered after the stall, billed, instead of timing out")
    assert.equal("timeout", err.kind)
    assert.truthy(err.elapsed < slow(1), "elapsed " .. tostring(err.elapsed))
  end)

  describe("with bodies the emulator is told to send", function()
    local function respond(body)
      emu:fault({ mode = "respond", status = 200, body = body, times = 1 })
    end

    it("skips JSON nulls in data without raising, and keeps them as aliocr.null in data", function()
      respond('{"ok":1,"msg":"x","data":[null,{"words":null,"position":null},' ..
        '{"words":"a","position":{"top":1,"left":null}}]}')
      local res, err = post_client:recognize(emu.image)
      assert.is_nil(err, err and tostring(err))
      assert.equal(1, res.ok)
      assert.equal("x", res.msg)
      assert.equal(aliocr.null, res.data[1])
      assert.equal(aliocr.null, res.data[2].words)
      assert.equal(aliocr.null, res.data[2].position)
      assert.equal(aliocr.null, res.data[3].position.left)
      -- The null element is skipped; the element whose words are null gives
      -- an empty line without a position; a null coordinate is left out.
      assert.equal(2, #res.lines)
      assert.equal("", res.lines[1].words)
      assert.is_nil(res.lines[1].position)
      assert.same({ words = "a", position = { top = 1 } }, res.lines[2])
      assert.equal("integer", util.number_type(res.lines[2].position.top))
      assert.equal("\na", res.text)
      assert.equal(only_request(emu).request_id, res.request_id)
    end)

    it("reads the array under \"result\" when there is no \"data\"", function()
      respond('{"ok":1,"msg":"m","result":[{"words":"甲","position":{"top":1,"left":2,"width":3,"height":4}},' ..
        '{"words":"乙"}]}')
      local res, err = post_client:handwriting(emu.image)
      assert.is_nil(err, err and tostring(err))
      assert.same({ { words = "甲", position = { top = 1, left = 2, width = 3, height = 4 } }, { words = "乙" } },
        res.lines)
      assert.equal("甲\n乙", res.text)
      assert.equal("甲", res.data[1].words)
      assert.equal(2, #res.data)
    end)

    it("gives one line per part of a string data with newlines", function()
      respond('{"ok":1,"msg":"m","data":"one\\ntwo\\r\\nthree"}')
      local res, err = post_client:recognize(emu.image)
      assert.is_nil(err, err and tostring(err))
      assert.equal("one\ntwo\r\nthree", res.data)
      assert.equal("one\ntwo\r\nthree", res.text)
      assert.same({ { words = "one" }, { words = "two" }, { words = "three" } }, res.lines)
    end)

    it("gives text \"\" and no lines for data \"\"", function()
      respond('{"ok":1,"msg":"m","data":""}')
      local res, err = post_client:recognize(emu.image)
      assert.is_nil(err, err and tostring(err))
      assert.equal("", res.data)
      assert.equal("", res.text)
      assert.same({}, res.lines)
    end)

    it("gives text \"\" and no lines when data is missing", function()
      respond('{"ok":1,"msg":"m"}')
      local res, err = post_client:recognize(emu.image)
      assert.is_nil(err, err and tostring(err))
      assert.is_nil(res.data)
      assert.equal("", res.text)
      assert.same({}, res.lines)
      assert.is_true(res.billed)
    end)

    it("gives text \"\" and no lines when data is null", function()
      respond('{"ok":1,"msg":"m","data":null}')
      local res, err = post_client:handwriting(emu.image)
      assert.is_nil(err, err and tostring(err))
      assert.equal(aliocr.null, res.data)
      assert.equal("", res.text)
      assert.same({}, res.lines)
    end)

    it("makes whole numbers integers and keeps others, ok included", function()
      respond('{"ok":1.0,"msg":"m","data":[{"words":7,"position":{"top":1.0,"left":2.5,"width":3e2,"height":4}}]}')
      local res, err = post_client:handwriting(emu.image)
      assert.is_nil(err, err and tostring(err))
      assert.equal("integer", util.number_type(res.ok))
      assert.same({ { words = "7", position = { top = 1, left = 2.5, width = 300, height = 4 } } }, res.lines)
      assert.equal("integer", util.number_type(res.lines[1].position.top))
      assert.equal("float", util.number_type(res.lines[1].position.left))
      assert.equal("integer", util.number_type(res.lines[1].position.width))
    end)
  end)
end)

--------------------------------------------------------------------------------

describe("auth modes", function()
  local emu

  setup(function()
    emu = emulator.start({ "--port", "0", "--appcode", "demo", "--app-key", "k1:s1" })
  end)

  teardown(function()
    assert.same(NOTHING_LEFT, emu:stop())
  end)

  before_each(function() emu:reset() end)

  local function new(opts)
    local c = aliocr.new(with({ endpoint = emu.endpoint, retries = 0 }, opts))
    finally(function() c:close() end)
    return c
  end

  --- Asserts a signed request in the log: the headers, and a signature that
  -- spec/helpers/sign.lua (openssl) computes from the raw parameters.
  local function check_signed(entry, sig_method, raw_params)
    assert.is_nil(header(entry, "Authorization"))
    assert.equal("signature", entry.auth)
    assert.equal("k1", entry.credential)
    assert.equal("k1", header(entry, "X-Ca-Key"))
    assert.equal(sig_method, header(entry, "X-Ca-Signature-Method"))
    assert.matches(UUID_V4, header(entry, "X-Ca-Nonce"))
    local ts = header(entry, "X-Ca-Timestamp")
    assert.matches("^%d+$", ts)
    assert.truthy(math.abs(tonumber(ts) - os.time() * 1000) < 5000, "timestamp " .. ts)
    local names = {}
    for n in header(entry, "X-Ca-Signature-Headers"):gmatch("[^,]+") do names[#names + 1] = n end
    local sorted = with(names)
    table.sort(sorted)
    assert.same(SIGNED_NAMES, sorted)
    local signed = {}
    for _, n in ipairs(names) do signed[#signed + 1] = { n, header(entry, n) } end
    local sts = sign.string_to_sign({
      method = entry.method, accept = header(entry, "Accept"), content_type = header(entry, "Content-Type"),
      headers = signed, path = entry.path, params = raw_params,
    })
    assert.equal(sign.hmac(sig_method, "s1", sts), header(entry, "X-Ca-Signature"))
    assert.equal(200, entry.status)
    assert.is_true(entry.billed)
  end

  it("APPCODE: sends Authorization: APPCODE <code> and no signature headers", function()
    local c = new({ appcode = "demo" })
    local res, err = c:recognize(emu.image)
    assert.is_nil(err, err and tostring(err))
    assert.equal(SEED_TEXT, res.text)
    local entry = only_request(emu)
    assert.equal("APPCODE demo", header(entry, "Authorization"))
    assert.equal("appcode", entry.auth)
    assert.equal("demo", entry.credential)
    for _, n in ipairs({ "X-Ca-Key", "X-Ca-Signature", "X-Ca-Nonce", "X-Ca-Timestamp" }) do
      assert.is_nil(header(entry, n), n)
    end
  end)

  for _, sig_method in ipairs({ "HmacSHA256", "HmacSHA1" }) do
    local explicit = sig_method == "HmacSHA1" and { signature_method = "HmacSHA1" } or {}

    it(sig_method .. ": POST is signed and accepted", function()
      local c = new(with({ app_key = "k1", app_secret = "s1" }, explicit))
      local res, err = c:recognize(emu.image, { show = "1" })
      assert.is_nil(err, err and tostring(err))
      assert.equal(3, #res.lines)
      local entry = only_request(emu)
      assert.equal("POST", entry.method)
      assert.equal(FORM, header(entry, "Content-Type"))
      check_signed(entry, sig_method, { { "url", emu.image }, { "show", "1" } })
    end)

    it(sig_method .. ": GET with extra parameters is signed over the raw values and accepted", function()
      local c = new(with({ app_key = "k1", app_secret = "s1", method = "GET" }, explicit))
      local params = {
        text = "a b&c=d%e", zh = "中文 参数", n = 42, f = 2.5, neg = -7, yes = true, no = false,
        zero = 0, plus = "1+1", empty = "",
      }
      local res, err = c:handwriting(emu.image, { params = params })
      assert.is_nil(err, err and tostring(err))
      assert.equal(4, #res.lines)
      local entry = only_request(emu)
      assert.equal("GET", entry.method)
      local raw = { { "url", emu.image } }
      local want = { url = emu.image }
      for k, v in pairs(params) do
        raw[#raw + 1] = { k, tostring(v) }
        want[k] = tostring(v)
      end
      assert.same(want, entry.params)
      check_signed(entry, sig_method, raw)
    end)
  end

  it("uses a fresh nonce and timestamp on every call", function()
    local c = new({ app_key = "k1", app_secret = "s1" })
    for _ = 1, 3 do
      local _, err = c:recognize(emu.image)
      assert.is_nil(err, err and tostring(err))
    end
    local log = emu:requests()
    assert.equal(3, #log)
    local nonces = {}
    for _, e in ipairs(log) do
      local n = header(e, "X-Ca-Nonce")
      assert.is_nil(nonces[n])
      nonces[n] = true
      assert.equal(200, e.status)
    end
  end)

  it("a wrong secret is refused by the gateway: an auth error, not billed", function()
    local c = new({ app_key = "k1", app_secret = "not-s1" })
    local res, err = c:recognize(emu.image)
    assert.is_nil(res)
    assert.equal("auth", err.kind)
    assert.equal(400, err.status)
    assert.is_false(err.billed)
    assert.matches("^Invalid Signature", err.msg)
    assert.is_nil(tostring(err):find("not-s1", 1, true))
  end)
end)

--------------------------------------------------------------------------------

describe("image URLs and parameters on the wire", function()
  local emu, clients

  setup(function()
    emu = emulator.start({ "--port", "0", "--appcode", "demo", "--app-key", "k1:s1", "--no-fetch" })
    clients = {}
    for _, auth in ipairs({ { appcode = "demo" }, { app_key = "k1", app_secret = "s1" } }) do
      for _, method in ipairs({ "POST", "GET" }) do
        clients[#clients + 1] = {
          name = (auth.appcode and "APPCODE" or "signature") .. " " .. method, method = method,
          client = aliocr.new(with({ endpoint = emu.endpoint, retries = 0, method = method }, auth)),
        }
      end
    end
  end)

  teardown(function()
    for _, c in ipairs(clients or {}) do c.client:close() end
    assert.same(NOTHING_LEFT, emu:stop())
  end)

  before_each(function() emu:reset() end)

  local URLS = {
    { "spaces encoded as %20", "http://127.0.0.1:1/a%20b/c%20d.png" },
    { "a query of its own with & and =", "http://127.0.0.1:1/img.png?x=1&y=a=b&z=" },
    { "% escapes and a literal %25", "http://127.0.0.1:1/100%25/%41%e4%b8%ad.png?p=%2F%3F" },
    { "+ in the path and the query", "http://127.0.0.1:1/c++.png?q=a+b%2Bc&r=+" },
    { "a fragment", "http://127.0.0.1:1/p.png?a=1#frag&x=y?z" },
    -- Bytes outside the URL code points go out percent-encoded, as a WHATWG
    -- URL parser writes them (issue 14, finding 16).
    { "non-ASCII Chinese", "http://localhost:1/图片/文字.png?名称=值&空=%E7%A9%BA",
      "http://localhost:1/%E5%9B%BE%E7%89%87/%E6%96%87%E5%AD%97.png?%E5%90%8D%E7%A7%B0=%E5%80%BC&%E7%A9%BA=%E7%A9%BA" },
    { "spaces as they are copied from a storage console", "https://127.0.0.1:1/my photo (1).png?v=a b",
      "https://127.0.0.1:1/my%20photo%20(1).png?v=a%20b" },
    { "https, userinfo, port and sub-delimiters", "https://u:p@example.com:8443/~a/b;c,d!$'()*@:.jpg?a[]=1&b={x}|^`" },
  }

  for _, u in ipairs(URLS) do
    local name, url, sent = u[1], u[2], u[3] or u[2]
    it("arrive intact: " .. name, function()
      for _, c in ipairs(clients) do
        for _, call in ipairs({ "recognize", "handwriting" }) do
          emu:reset()
          local res, err = c.client[call](c.client, url)
          assert.is_nil(err, c.name .. " " .. call .. ": " .. tostring(err))
          assert.equal(1, res.ok)
          local entry = only_request(emu)
          assert.equal(c.method, entry.method, c.name)
          assert.equal(sent, entry.params.url, c.name .. " " .. call)
          assert.same({ url = sent }, entry.params)
        end
      end
    end)
  end

  it("extra parameters arrive intact, with show, over POST and GET and both auth modes", function()
    local params = {
      q = "a+b c", amp = "x&y", eq = "k=v", pct = "100%", pct2 = "%41%2", zh = "中文 参数",
      n = 42, f = 2.5, big = 1e15, whole = 3.0, t = true, fl = false, zero = 0, hash = "#frag", nl = "a\nb",
      ["a key"] = "v", ["键"] = "值",
    }
    local url = "http://127.0.0.1:1/x.png?own=1&b=%20"
    for _, c in ipairs(clients) do
      emu:reset()
      local res, err = c.client:recognize(url, { show = 1, params = params })
      assert.is_nil(err, c.name .. ": " .. tostring(err))
      assert.equal(3, #res.lines)
      local want = { url = url, show = "1" }
      for k, v in pairs(params) do want[k] = tostring(v) end
      want.big = "1000000000000000" -- a whole number is written out, not as 1e+15
      want.whole = "3"                -- nor as 3.0
      assert.same(want, only_request(emu).params, c.name)
    end
  end)
end)

--------------------------------------------------------------------------------

describe("configuration", function()
  local emu, base, alt
  local ADV, HW = "/ocrservice/advanced", "/ocrservice/shouxie"

  setup(function()
    emu = emulator.start({
      "--port", "0", "--no-fetch", "--path", "advanced=" .. ADV, "--path", "handwriting=" .. HW,
      "--appcode", "demo", "--appcode", "envcode", "--app-key", "k1:s1", "--app-key", "envkey:envsecret",
    })
    base = emu.endpoint
    alt = base:gsub("127%.0%.0%.1", "localhost")
  end)

  teardown(function()
    assert.same(NOTHING_LEFT, emu:stop())
  end)

  before_each(function() emu:reset() end)

  -- A child lua5.4 with only the given environment: aliocr.new(SPEC_OPTS),
  -- then both interfaces; prints what happened as JSON.
  local CHILD = [[
local cjson = require("cjson")
local aliocr = require("aliocr")
local opts = cjson.decode(os.getenv("SPEC_OPTS"))
local out, client = {}, nil
local ok, e = pcall(function() client = aliocr.new(opts) end)
if not ok then
  out.raised = e
else
  for _, api in ipairs({ "recognize", "handwriting" }) do
    local r = {}
    local ok2, e2 = pcall(function()
      local res, err = client[api](client, "http://127.0.0.1:1/x.png")
      r.ok, r.kind, r.status = res and res.ok, err and err.kind, (res or err).status
    end)
    if not ok2 then r.raised = e2 end
    out[api] = r
  end
  client:close()
end
io.write(cjson.encode(out))
]]

  local function child(env, opts)
    local parts = { "cd", sh.q(emulator.root), "&&", "env", "-i", "PATH=" .. sh.q(os.getenv("PATH")),
                    "LUA_PATH='lua/?.lua;;'", "LUA_CPATH='build/?.so;;'",
                    "SPEC_OPTS=" .. sh.q(cjson.encode(opts or {})) }
    for k, v in pairs(env or {}) do parts[#parts + 1] = k .. "=" .. sh.q(v) end
    parts[#parts + 1] = "lua5.4 -e " .. sh.q(CHILD)
    local out, status = sh.run(table.concat(parts, " "))
    assert.equal(0, status, out)
    local ok, decoded = pcall(cjson.decode, out)
    assert.is_true(ok, "child output: " .. out)
    return decoded
  end

  --- The request log as { [api path] = entry } for both calls of a child,
  -- which must both have been sent.
  local function sent()
    local log = emu:requests()
    assert.equal(2, #log, cjson.encode(log))
    return log[1], log[2]
  end

  local good_urls = function() return { advanced = base .. ADV, handwriting = alt .. HW } end

  it("urls on two different hosts and paths: both interfaces answer", function()
    local client = aliocr.new({ appcode = "demo", urls = good_urls(), retries = 0 })
    finally(function() client:close() end)
    local res, err = client:recognize("http://127.0.0.1:1/x.png")
    assert.is_nil(err, err and tostring(err))
    assert.equal(SEED_TEXT, res.text)
    res, err = client:handwriting("http://127.0.0.1:1/x.png", { method = "GET" })
    assert.is_nil(err, err and tostring(err))
    assert.equal(4, #res.lines)
    local a, h = sent()
    assert.equal(ADV, a.path)
    assert.equal(base:match("//(.*)$"), header(a, "Host"))
    assert.equal(HW, h.path)
    assert.equal(alt:match("//(.*)$"), header(h, "Host"))
  end)

  it("signature auth on the other paths and hosts too", function()
    local client = aliocr.new({ app_key = "k1", app_secret = "s1", urls = good_urls(), retries = 0 })
    finally(function() client:close() end)
    local _, err = client:recognize("http://127.0.0.1:1/x.png", { params = { a = "b c" } })
    assert.is_nil(err, err and tostring(err))
    _, err = client:handwriting("http://127.0.0.1:1/x.png", { method = "GET" })
    assert.is_nil(err, err and tostring(err))
    local a, h = sent()
    assert.equal("signature", a.auth)
    assert.equal("signature", h.auth)
  end)

  describe("from the environment (child processes)", function()
    local function both_ok(out)
      assert.is_nil(out.raised, out.raised)
      assert.same({ ok = 1, status = 200 }, out.recognize)
      assert.same({ ok = 1, status = 200 }, out.handwriting)
    end

    it("ALIOCR_APPCODE, ALIOCR_ADVANCED_URL and ALIOCR_HANDWRITING_URL", function()
      local out = child({ ALIOCR_APPCODE = "envcode", ALIOCR_ADVANCED_URL = base .. ADV,
                          ALIOCR_HANDWRITING_URL = alt .. HW })
      both_ok(out)
      local a, h = sent()
      assert.equal("APPCODE envcode", header(a, "Authorization"))
      assert.equal("envcode", h.credential)
      assert.equal(ADV, a.path)
      assert.equal(HW, h.path)
      assert.equal(alt:match("//(.*)$"), header(h, "Host"))
    end)

    it("ALIOCR_APP_KEY and ALIOCR_APP_SECRET: signature auth", function()
      local out = child({ ALIOCR_APP_KEY = "envkey", ALIOCR_APP_SECRET = "envsecret" }, { urls = good_urls() })
      both_ok(out)
      local a, h = sent()
      assert.equal("envkey", header(a, "X-Ca-Key"))
      assert.is_nil(header(a, "Authorization"))
      assert.equal("signature", a.auth)
      assert.equal("envkey", h.credential)
      assert.equal("HmacSHA256", header(h, "X-Ca-Signature-Method"))
    end)

    it("ALIOCR_APP_KEY and ALIOCR_APP_SECRET with signature_method HmacSHA1", function()
      local out = child({ ALIOCR_APP_KEY = "envkey", ALIOCR_APP_SECRET = "envsecret" },
        { urls = good_urls(), signature_method = "HmacSHA1" })
      both_ok(out)
      local a = sent()
      assert.equal("HmacSHA1", header(a, "X-Ca-Signature-Method"))
      assert.equal("envkey", a.credential)
    end)

    it("an explicit appcode wins over ALIOCR_APPCODE and ALIOCR_APP_KEY", function()
      local out = child({ ALIOCR_APPCODE = "envcode", ALIOCR_APP_KEY = "envkey", ALIOCR_APP_SECRET = "envsecret" },
        { appcode = "demo", urls = good_urls() })
      both_ok(out)
      local a, h = sent()
      assert.equal("APPCODE demo", header(a, "Authorization"))
      assert.equal("demo", h.credential)
    end)

    it("an explicit app_key wins over ALIOCR_APPCODE (no 'both' error)", function()
      local out = child({ ALIOCR_APPCODE = "envcode" }, { app_key = "k1", app_secret = "s1", urls = good_urls() })
      both_ok(out)
      local a, h = sent()
      assert.equal("k1", a.credential)
      assert.equal("signature", h.auth)
      assert.is_nil(header(a, "Authorization"))
    end)

    it("ALIOCR_APP_KEY without ALIOCR_APP_SECRET raises", function()
      local out = child({ ALIOCR_APP_KEY = "envkey" }, { urls = good_urls() })
      assert.equal("(command line):5: aliocr: signature auth needs both app_key and app_secret", out.raised)
      assert.same({}, emu:requests())
    end)

    it("no credentials anywhere raises, pointing at the caller", function()
      local out = child({}, { urls = good_urls() })
      assert.matches("^%(command line%):5: aliocr: no credentials: ", out.raised)
      assert.same({}, emu:requests())
    end)

    it("urls wins over endpoint, the environment's URLs and ALIOCR_ENDPOINT", function()
      local out = child({ ALIOCR_APPCODE = "envcode", ALIOCR_ENDPOINT = base .. "/envendpoint",
                          ALIOCR_ADVANCED_URL = base .. "/envurl/adv", ALIOCR_HANDWRITING_URL = base .. "/envurl/hw" },
        { urls = good_urls(), endpoint = base .. "/optendpoint" })
      both_ok(out)
      local a, h = sent()
      assert.equal(ADV, a.path)
      assert.equal(HW, h.path)
    end)

    it("endpoint wins over the environment's URLs and ALIOCR_ENDPOINT", function()
      local out = child({ ALIOCR_APPCODE = "envcode", ALIOCR_ENDPOINT = base .. "/envendpoint",
                          ALIOCR_ADVANCED_URL = base .. "/envurl/adv", ALIOCR_HANDWRITING_URL = base .. "/envurl/hw" },
        { endpoint = base .. "/optendpoint" })
      assert.is_nil(out.raised, out.raised)
      -- Not this emulator's paths: the gateway answers Invalid Url.
      assert.equal("gateway", out.recognize.kind)
      local a, h = sent()
      assert.equal("/optendpoint/ocr/advanced", a.path)
      assert.equal("/optendpoint/ocr/handwriting", h.path)
    end)

    it("the environment's URLs win over ALIOCR_ENDPOINT", function()
      local out = child({ ALIOCR_APPCODE = "envcode", ALIOCR_ENDPOINT = base .. "/envendpoint",
                          ALIOCR_ADVANCED_URL = base .. ADV, ALIOCR_HANDWRITING_URL = alt .. HW })
      both_ok(out)
      local a, h = sent()
      assert.equal(ADV, a.path)
      assert.equal(HW, h.path)
    end)

    it("ALIOCR_ENDPOINT alone gives both interfaces under it", function()
      local out = child({ ALIOCR_APPCODE = "envcode", ALIOCR_ENDPOINT = base .. "/envendpoint/" })
      assert.is_nil(out.raised, out.raised)
      local a, h = sent()
      assert.equal("/envendpoint/ocr/advanced", a.path)
      assert.equal("/envendpoint/ocr/handwriting", h.path)
    end)

    it("per interface: urls for one, endpoint for the other", function()
      local out = child({ ALIOCR_APPCODE = "envcode", ALIOCR_HANDWRITING_URL = alt .. HW },
        { urls = { advanced = base .. ADV }, endpoint = base .. "/optendpoint" })
      assert.same({ ok = 1, status = 200 }, out.recognize)
      local a, h = sent()
      assert.equal(ADV, a.path)
      assert.equal("/optendpoint/ocr/handwriting", h.path)
    end)

    it("per interface: urls for one, the environment's URL for the other", function()
      local out = child({ ALIOCR_APPCODE = "envcode", ALIOCR_HANDWRITING_URL = alt .. HW,
                          ALIOCR_ENDPOINT = base .. "/envendpoint" },
        { urls = { advanced = base .. ADV } })
      both_ok(out)
      local a, h = sent()
      assert.equal(ADV, a.path)
      assert.equal(HW, h.path)
    end)

    it("no URL for the interface called raises at the call, and sends nothing", function()
      local out = child({ ALIOCR_APPCODE = "envcode" }, { urls = { advanced = base .. ADV } })
      assert.same({ ok = 1, status = 200 }, out.recognize)
      assert.equal("(command line):12: aliocr: no URL for interface 'handwriting': set urls.handwriting or " ..
        "endpoint in aliocr.new, or ALIOCR_HANDWRITING_URL or ALIOCR_ENDPOINT", out.handwriting.raised)
      assert.equal(1, #emu:requests())
    end)
  end)
end)

--------------------------------------------------------------------------------

describe("misuse", function()
  local emu, client, closed

  setup(function()
    emu = emulator.start({ "--port", "0", "--appcode", "demo", "--app-key", "k1:s1", "--no-fetch" })
    client = aliocr.new({ appcode = "demo", endpoint = emu.endpoint, retries = 0 })
    closed = aliocr.new({ appcode = "demo", endpoint = emu.endpoint })
    closed:close()
  end)

  teardown(function()
    if client then client:close() end
    assert.same(NOTHING_LEFT, emu:stop())
  end)

  before_each(function() emu:reset() end)

  after_each(function()
    -- Nothing was sent.
    assert.same({}, emu:requests())
    assert.equal(0, emu:ledger().total.requests)
  end)

  local IMG = "http://127.0.0.1:1/x.png"
  local function new(opts) return aliocr.new(with({ endpoint = emu.endpoint }, opts)) end

  describe("aliocr.new", function()
    local CASES = {
      { "options not a table", function() aliocr.new("demo") end, "aliocr.new takes a table of options" },
      { "appcode and app_key", function() new({ appcode = "demo", app_key = "k1", app_secret = "s1" }) end,
        "give appcode, or app_key and app_secret, not both" },
      { "appcode and app_secret", function() new({ appcode = "demo", app_secret = "s1" }) end,
        "give appcode, or app_key and app_secret, not both" },
      { "app_key without app_secret", function() new({ app_key = "k1" }) end,
        "signature auth needs both app_key and app_secret" },
      { "app_secret without app_key", function() new({ app_secret = "s1" }) end,
        "signature auth needs both app_key and app_secret" },
      { "an unknown option (typo)", function() new({ appcode = "demo", timout = 5 }) end,
        "unknown option 'timout'" },
      { "a number for a string option", function() new({ appcode = 42 }) end,
        "option 'appcode' must be a string" },
      { "a string for a number option", function() new({ appcode = "demo", timeout = "5" }) end,
        "option 'timeout' must be a number" },
      { "a string for urls", function() new({ appcode = "demo", urls = emu.advanced }) end,
        "option 'urls' must be a table" },
      { "a string for a boolean option", function() new({ appcode = "demo", tls_verify = "no" }) end,
        "option 'tls_verify' must be a boolean" },
      { "CR in appcode", function() new({ appcode = "de\rmo" }) end,
        "appcode must not contain CR, LF or NUL characters" },
      { "LF in appcode", function() new({ appcode = "demo\n" }) end,
        "appcode must not contain CR, LF or NUL characters" },
      { "LF in app_key", function() new({ app_key = "k\n1", app_secret = "s1" }) end,
        "app_key must not contain CR, LF or NUL characters" },
      { "CR LF in app_secret", function() new({ app_key = "k1", app_secret = "s\r\n1" }) end,
        "app_secret must not contain CR, LF or NUL characters" },
      { "CR LF in user_agent", function() new({ appcode = "demo", user_agent = "ua\r\nX-Evil: 1" }) end,
        "user_agent must not contain CR, LF or NUL characters" },
      { "LF in proxy", function() new({ appcode = "demo", proxy = "http://127.0.0.1:1\n" }) end,
        "proxy must not contain CR, LF or NUL characters" },
      { "a bad signature_method", function()
          new({ app_key = "k1", app_secret = "s1", signature_method = "HmacMD5" })
        end, 'signature_method must be "HmacSHA256" or "HmacSHA1"' },
      { "signature_method in the wrong case", function()
          new({ app_key = "k1", app_secret = "s1", signature_method = "hmacsha256" })
        end, 'signature_method must be "HmacSHA256" or "HmacSHA1"' },
      { "an ftp:// interface URL", function()
          aliocr.new({ appcode = "demo", urls = { advanced = "ftp://127.0.0.1/ocr" } })
        end, "the URL of interface 'advanced' must be an http:// or https:// URL, got 'ftp://127.0.0.1/ocr'" },
      { "an interface URL with a query", function()
          aliocr.new({ appcode = "demo", urls = { advanced = emu.advanced .. "?a=1" } })
        end, "the URL of interface 'advanced' must not have a query or fragment" },
      { "an interface URL with a fragment", function()
          aliocr.new({ appcode = "demo", urls = { handwriting = emu.handwriting .. "#x" } })
        end, "the URL of interface 'handwriting' must not have a query or fragment" },
      { "an unknown interface in urls (typo)", function()
          aliocr.new({ appcode = "demo", urls = { advnced = emu.advanced } })
        end, "urls has an unknown interface 'advnced' (advanced, handwriting)" },
      { "an ftp:// endpoint", function() aliocr.new({ appcode = "demo", endpoint = "ftp://127.0.0.1" }) end,
        "endpoint must be an http:// or https:// URL, got 'ftp://127.0.0.1'" },
      { "an empty endpoint", function() aliocr.new({ appcode = "demo", endpoint = "" }) end,
        "endpoint must be a non-empty string" },
      { "a negative timeout", function() new({ appcode = "demo", timeout = -1 }) end,
        "timeout must be a positive number" },
      { "a zero timeout", function() new({ appcode = "demo", timeout = 0 }) end,
        "timeout must be a positive number" },
      { "retries not a whole number", function() new({ appcode = "demo", retries = 1.5 }) end,
        "retries must be a whole number >= 0" },
      { "negative retries", function() new({ appcode = "demo", retries = -1 }) end,
        "retries must be a whole number >= 0" },
      { "method PUT", function() new({ appcode = "demo", method = "PUT" }) end,
        'method must be "GET" or "POST"' },
      { "an unknown transport", function() new({ appcode = "demo", transport = "libuv" }) end,
        "transport must be \"curl\" or \"resty\", got 'libuv'" },
      { "the resty transport outside nginx", function() new({ appcode = "demo", transport = "resty" }) end,
        "transport \"resty\" works only inside nginx's Lua module (OpenResty, libnginx-mod-http-lua)" },
    }
    for _, c in ipairs(CASES) do
      it("raises on " .. c[1], function() raises(c[2], c[3]) end)
    end

    it("raises on no credentials at all (in this process)", function()
      if env_has_aliocr() then
        pending("ALIOCR_* variables are set here; the child-process spec covers this case")
        return
      end
      raises(function() new({}) end,
        "no credentials: set appcode (or app_key and app_secret), or ALIOCR_APPCODE " ..
        "(or ALIOCR_APP_KEY and ALIOCR_APP_SECRET)")
    end)
  end)

  describe("a call", function()
    local CASES = {
      { "a number for the image URL", function() client:recognize(42) end,
        "the image URL must be a string, got number" },
      { "nil for the image URL", function() client:handwriting(nil) end,
        "the image URL must be a string, got nil" },
      { "a table with a number for the image URL", function() client:recognize({ url = 42 }) end,
        "the image URL must be a string, got number" },
      { "an image table with a field it does not have", function() client:recognize({ path = IMG }) end,
        "unknown image field 'path' (url, file, bytes, name)" },
      { "a local image without storage", function() client:recognize({ file = "x.png" }) end,
        "a local image needs storage: set oss (or ALIOCR_OSS_BUCKET and the rest) or uploader in aliocr.new" },
      { "an empty image URL", function() client:handwriting("") end,
        "the image URL must be a non-empty string" },
      { "an ftp:// image URL", function() client:recognize("ftp://127.0.0.1/x.png") end,
        "the image URL must be an http:// or https:// URL, got 'ftp://127.0.0.1/x.png'" },
      { "an image URL without a scheme", function() client:recognize("127.0.0.1/x.png") end,
        "the image URL must be an http:// or https:// URL, got '127.0.0.1/x.png'" },
      { "an image URL with a control character", function() client:recognize("http://127.0.0.1/a\tb.png") end,
        "the image URL has a control character (0x09 at byte 19)" },
      { "an image URL with a port out of range", function() client:recognize("http://127.0.0.1:99999/a.png") end,
        "the image URL has a port outside 1-65535 (99999)" },
      { "options that are not a table", function() client:recognize(IMG, "1") end,
        "the options of a call must be a table" },
      { "an unknown call option (typo)", function() client:recognize(IMG, { shwo = "1" }) end,
        "unknown call option 'shwo'" },
      { "show as a table", function() client:recognize(IMG, { show = { 1 } }) end,
        "show must be a string or a number" },
      { "show as a boolean", function() client:recognize(IMG, { show = true }) end,
        "show must be a string or a number" },
      { "params not a table", function() client:recognize(IMG, { params = "a=1" }) end,
        "params must be a table" },
      { "params with a non-string key", function() client:recognize(IMG, { params = { "x" } }) end,
        "params keys must be non-empty strings" },
      { "params with an empty key", function() client:recognize(IMG, { params = { [""] = "x" } }) end,
        "params keys must be non-empty strings" },
      { "params with a table value", function() client:recognize(IMG, { params = { a = {} } }) end,
        "params.a must be a string, a number or a boolean" },
      { "params repeating url", function() client:handwriting(IMG, { params = { url = IMG } }) end,
        "params must not repeat 'url'" },
      { "params repeating show", function() client:recognize(IMG, { show = "1", params = { show = "0" } }) end,
        "params must not repeat 'show'" },
      { "a negative timeout", function() client:recognize(IMG, { timeout = -1 }) end,
        "timeout must be a positive number" },
      { "retries not a whole number", function() client:recognize(IMG, { retries = 0.5 }) end,
        "retries must be a whole number >= 0" },
      { "retries as a string", function() client:recognize(IMG, { retries = "2" }) end,
        "retries must be a whole number >= 0" },
      { "method PUT", function() client:handwriting(IMG, { method = "PUT" }) end,
        'method must be "GET" or "POST"' },
      { "a closed client", function() closed:recognize(IMG) end,
        "attempt to use a closed client" },
      { "a method called with '.'", function() client.recognize(IMG) end,
        "call client methods with ':'" },
    }
    for _, c in ipairs(CASES) do
      it("raises on " .. c[1], function() raises(c[2], c[3]) end)
    end

    it("raises on no URL for the interface called (in this process)", function()
      if env_has_aliocr() then
        pending("ALIOCR_* variables are set here; the child-process spec covers this case")
        return
      end
      local only_advanced = aliocr.new({ appcode = "demo", urls = { advanced = emu.advanced } })
      finally(function() only_advanced:close() end)
      raises(function() only_advanced:handwriting(IMG) end,
        "no URL for interface 'handwriting': set urls.handwriting or endpoint in aliocr.new, " ..
        "or ALIOCR_HANDWRITING_URL or ALIOCR_ENDPOINT")
    end)
  end)
end)
