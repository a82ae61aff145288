-- The emulator's API listener as a client sees it: both interfaces with
-- their parameters in a form body or a query, the answers of the API guide
-- (seed 000_b1127ca30e73907d.txt), the vendor's 666 failures and what is
-- billed, --no-fetch, image URLs with awkward characters, X-Ca-Request-Id on
-- every response, the gateway's request-shape errors in classic and VPC style,
-- and interfaces served at custom paths.
local cjson = require("cjson")
local socket = require("socket")
local emulator = require("helpers.emulator")
local http = require("helpers.http")
local util = require("helpers.util")
local closed_port, stop_clean = util.closed_port, util.stop_clean

-- The API guide's example answers, copied from the guide (not from the
-- emulator's canned backend, so that a drift between the two shows).
local OK_MSG = "查询成功"
local SEED_TEXT = "冰心散文精选自从太平洋舟中，银花世界之夜以后，再不曾见有团圆*****到了酣畅处，自己觉得是个羽"
local SEED_WORDS = {
  { words = "冰心散文精选" },
  { words = "*****" },
  { words = "在草地上，和着最柔媚的琴声跳舞。到了酣畅处，自己觉得是个羽" },
}
local SEED_LINES = {
  { position = { top = 41, left = 65, width = 236, height = 78 }, words = "拇指云软件" },
  { position = { top = 141, left = 68, width = 258, height = 76 }, words = "作品著作权" },
  { position = { top = 231, left = 59, width = 417, height = 90 }, words = "聚合版权服务专家" },
  { position = { top = 331, left = 76, width = 310, height = 86 }, words = "400-181-0600" },
}

-- An uppercase UUID: 8-4-4-4-12 hex digits.
local HEX = "[0-9A-F]"
local UUID = "^" .. HEX:rep(8) .. "%-" .. HEX:rep(4) .. "%-" .. HEX:rep(4) .. "%-" .. HEX:rep(4) ..
  "%-" .. HEX:rep(12) .. "$"

local APIS = { "advanced", "handwriting" }
local TRANSPORTS = {
  { name = "POST form body", get = false },
  { name = "GET query", get = true },
}

local MAX_BODY = 4096

-- Helpers ----------------------------------------------------------------------

local function start(options)
  local argv = { "--port", "0", "--appcode", "demo" }
  for _, o in ipairs(options or {}) do argv[#argv + 1] = o end
  return emulator.start(argv)
end


-- Calls interface `api` with `params` ({ {name, value}, ... }) as a form
-- body (a POST, even with no parameter at all) or, with `get`, as a query.
local function ocr(emu, api, params, get)
  return emu:call(api, { form = params, get = get, method = (not get and #params == 0) and "POST" or nil })
end

local function describe_res(res)
  return string.format("status %s, body %q, headers %s", tostring(res.status), tostring(res.body),
    cjson.encode(res.headers or {}))
end

local function decode(res)
  local ok, value = pcall(cjson.decode, res.body)
  assert(ok and type(value) == "table", "the body is not a JSON object: " .. describe_res(res))
  return value
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

-- A vendor answer: JSON, and no gateway error header (the gateway passes the
-- vendor's status through untouched).
local function vendor_answer(res, status)
  assert.equal(status, res.status, describe_res(res))
  assert.matches("^application/json", res.headers["content-type"] or "")
  assert.is_nil(res.headers["x-ca-error-code"], describe_res(res))
  assert.is_nil(res.headers["x-ca-error-message"], describe_res(res))
  assert.matches(UUID, res.headers["x-ca-request-id"] or "")
  local j = decode(res)
  if status == 200 then
    assert.equal(1, j.ok, describe_res(res))
    assert.equal(OK_MSG, j.msg)
  end
  return j
end

local function assert_text(res)
  local j = vendor_answer(res, 200)
  assert.equal(SEED_TEXT, j.data)
  assert.same({ "data", "msg", "ok" }, sorted_keys(j))
end

local function assert_words(res)
  local j = vendor_answer(res, 200)
  assert.same(SEED_WORDS, j.data)
end

local function assert_lines(res)
  local j = vendor_answer(res, 200)
  assert.same(SEED_LINES, j.data)
end

local function assert_success(api, res)
  if api == "handwriting" then return assert_lines(res) end
  return assert_text(res)
end

-- A vendor failure: HTTP 666, {"ok":0,"msg":<non-empty string>} and nothing else.
local function assert_666(res, why)
  local j = vendor_answer(res, 666)
  assert.equal(0, j.ok, why)
  assert.is_string(j.msg, why)
  assert.truthy(#j.msg > 0, "an empty msg for " .. tostring(why))
  assert.same({ "msg", "ok" }, sorted_keys(j))
  return j
end

-- The ledger of credential "demo" (and the total) since the last reset, and
-- the request log agreeing with it entry by entry.
local function assert_billing(emu, billed, not_billed)
  local ledger = emu:ledger()
  local want = { requests = billed + not_billed, billed = billed, not_billed = not_billed }
  local demo = ledger.credentials.demo
  assert.same(want, { requests = demo.requests, billed = demo.billed, not_billed = demo.not_billed })
  assert.same(want, ledger.total)
  local log = emu:requests()
  for _, e in ipairs(log) do
    assert.equal(e.status >= 200 and e.status <= 299, e.billed,
      "request log entry " .. e.seq .. " (status " .. e.status .. ")")
  end
end

-- The request log entry of a response (matched by X-Ca-Request-Id).
local function logged(emu, res)
  local id = res.headers["x-ca-request-id"]
  assert.is_string(id, "no X-Ca-Request-Id: " .. describe_res(res))
  for _, e in ipairs(emu:requests()) do
    if e.request_id == id then return e end
  end
  error("no request log entry with request_id " .. id)
end


-- Sends raw bytes to the API listener and parses the answer (for requests
-- curl will not make).
local function raw(emu, text)
  local host, port = emu.endpoint:match("^http://([^:/]+):(%d+)$")
  local c = assert(socket.connect(host, tonumber(port)))
  c:settimeout(5)
  assert(c:send(text))
  local out, _, partial = c:receive("*a")
  c:close()
  out = out or partial or ""
  local head, body = out:match("^(.-)\r\n\r\n(.*)$")
  head = head or out
  local headers = {}
  for name, value in head:gmatch("\r\n([^:\r\n]+):[ \t]*([^\r\n]*)") do headers[name:lower()] = value end
  return { status = tonumber(head:match("^HTTP/1%.%d (%d%d%d)")), headers = headers, body = body or "" }
end

local function padded_form(url, total)
  local body = "url=" .. url:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end) ..
    "&pad="
  assert(#body <= total)
  return body .. ("a"):rep(total - #body)
end

-- The request-shape gateway errors, one row each: how to provoke it, the
-- classic status and message, the VPC code and a pattern for its message.
local function shape_rows()
  local auth = { "Authorization: APPCODE demo" }
  return {
    { what = "an unknown path",
      send = function(emu) return emu:call("advanced", { url = emu.endpoint .. "/ocr/nope" }) end,
      classic = { 400, "Invalid Url" }, vpc = { "I404NF", "^API not found with `POST /ocr/nope`$" } },
    { what = "an interface path with a trailing slash",
      send = function(emu) return emu:call("handwriting", { url = emu.handwriting .. "/", get = true }) end,
      classic = { 400, "Invalid Url" }, vpc = { "I404NF", "^API not found with `GET /ocr/handwriting/`$" } },
    { what = "PUT",
      send = function(emu) return emu:call("advanced", { method = "PUT" }) end,
      classic = { 400, "Invalid HttpMethod" }, vpc = { "I405UM", "^Unsupported Method `PUT`$" } },
    { what = "DELETE",
      send = function(emu) return emu:call("handwriting", { method = "DELETE" }) end,
      classic = { 400, "Invalid HttpMethod" }, vpc = { "I405UM", "^Unsupported Method `DELETE`$" } },
    { what = "a multipart body",
      send = function(emu)
        return http.request({ url = emu.advanced, headers = auth, args = { "-F", "url=" .. emu.image } })
      end,
      classic = { 400, "Unsupported Multipart" }, vpc = { "I400CT", "^Invalid Content%-Type: `multipart/" } },
    { what = "a body of --max-body + 1 bytes",
      send = function(emu)
        return http.request({ url = emu.advanced, headers = auth, body = padded_form(emu.image, MAX_BODY + 1),
          content_type = "application/x-www-form-urlencoded" })
      end,
      classic = { 413, "Request body too Large" }, vpc = { "I413RL", "^Request body too Large$" } },
    -- nginx itself refuses this by its Content-Length, before the gateway's
    -- code runs: the answer must still be the gateway's 413, not nginx's page.
    { what = "a body well over --max-body",
      send = function(emu)
        return http.request({ url = emu.advanced, headers = auth, body = padded_form(emu.image, 4 * MAX_BODY),
          content_type = "application/x-www-form-urlencoded" })
      end,
      classic = { 413, "Request body too Large" }, vpc = { "I413RL", "^Request body too Large$" } },
    -- A chunked body has no Content-Length to check up front.
    { what = "a chunked body over --max-body",
      send = function(emu)
        return http.request({ url = emu.advanced, headers = { auth[1], "Transfer-Encoding: chunked" },
          body = padded_form(emu.image, MAX_BODY + 1), content_type = "application/x-www-form-urlencoded" })
      end,
      classic = { 413, "Request body too Large" }, vpc = { "I413RL", "^Request body too Large$" } },
  }
end

local function assert_gateway_error(res, style, row)
  local why = row.what .. ": " .. describe_res(res)
  if style == "classic" then
    assert.equal(row.classic[1], res.status, why)
    assert.equal(row.classic[2], res.headers["x-ca-error-message"], why)
    assert.is_nil(res.headers["x-ca-error-code"], why)
  else
    local code = row.vpc[1]
    assert.equal(code, res.headers["x-ca-error-code"], why)
    assert.equal(tonumber(code:sub(2, 4)), res.status, why)
    assert.matches(row.vpc[2], res.headers["x-ca-error-message"] or "", nil, false, why)
  end
  assert.equal("", res.body, why)
  assert.matches(UUID, res.headers["x-ca-request-id"] or "", nil, false, why)
end

-- Tricky image URLs: their own query (with & and = and even "url" and
-- "show"), %, +, encoded and raw spaces, a fragment, Chinese.
local function tricky_urls(base)
  return {
    base .. "/a%20b.png",
    base .. "/img.png?a=1&b=2&url=x&show=2",
    base .. "/p%25q%2Br+s.png?q=%25&plus=1+1=2",
    base .. "/x.png#frag&show=2",
    base .. "/图片/文字识别.png?名字=值&x=中文",
    base .. "/%E5%9B%BE.png?r=%E4%B8%AD&s=%26%3D%23#top",
    -- A raw space makes the URL invalid (RFC 3986): the vendor answers 666,
    -- but the parameter must still reach it intact.
    base .. "/all in one/图 片.png?q=a b&r=1+1#x y",
  }
end

-- Sends each URL with show=1 and checks the vendor saw exactly that url and
-- that show (nothing leaked out of the url into other parameters).
local function check_tricky(emu, urls, get)
  local billed, not_billed = 0, 0
  for _, url in ipairs(urls) do
    local res = ocr(emu, "advanced", { { "url", url }, { "show", "1" } }, get)
    local e = logged(emu, res)
    assert.same({ url = url, show = "1" }, e.params, "parameters seen by the vendor for " .. url)
    assert.equal(get and "GET" or "POST", e.method)
    if url:find(" ", 1, true) then
      assert_666(res, url)
      not_billed = not_billed + 1
    else
      assert_words(res)
      billed = billed + 1
    end
  end
  assert_billing(emu, billed, not_billed)
end

-- The emulator that fetches images -----------------------------------------------

-- The emulator runs inside nginx (LuaJIT): its specs run once per make test.
if not util.nginx_only_here() then
  describe("emulator API", function() pending(util.NGINX_ONLY) end)
  return
end

describe("emulator API", function()
  local emu

  lazy_setup(function()
    emu = start({ "--max-body", tostring(MAX_BODY) })
  end)

  lazy_teardown(function() stop_clean(emu) end)

  before_each(function() emu:reset() end)

  describe("interface one (advanced)", function()
    for _, t in ipairs(TRANSPORTS) do
      it("answers data as the guide's string when show is absent, empty or 0 (" .. t.name .. ")", function()
        assert_text(ocr(emu, "advanced", { { "url", emu.image } }, t.get))
        assert_text(ocr(emu, "advanced", { { "url", emu.image }, { "show", "" } }, t.get))
        assert_text(ocr(emu, "advanced", { { "url", emu.image }, { "show", "0" } }, t.get))
        assert_billing(emu, 3, 0)
      end)

      it("answers data as the guide's array of {words} when show is 1 (" .. t.name .. ")", function()
        assert_words(ocr(emu, "advanced", { { "url", emu.image }, { "show", "1" } }, t.get))
        assert_words(ocr(emu, "advanced", { { "show", "1" }, { "url", emu.image } }, t.get))
        assert_billing(emu, 2, 0)
      end)

      it("answers 666 {ok:0} for any other show value, unbilled (" .. t.name .. ")", function()
        local values = { "2", "-1", "true", "yes", "01", "1.0", " 1", "1 ", "０", "显示" }
        for _, show in ipairs(values) do
          assert_666(ocr(emu, "advanced", { { "url", emu.image }, { "show", show } }, t.get), "show=" .. show)
        end
        assert_billing(emu, 0, #values)
      end)
    end

    it("takes the contract's Content-Type with charset=UTF-8", function()
      local res = http.request({ url = emu.advanced, headers = { "Authorization: APPCODE demo" },
        body = "url=" .. emu.image:gsub(":", "%%3A"):gsub("/", "%%2F") .. "&show=1",
        content_type = "application/x-www-form-urlencoded; charset=UTF-8" })
      assert_words(res)
      assert_billing(emu, 1, 0)
    end)
  end)

  describe("interface two (handwriting)", function()
    for _, t in ipairs(TRANSPORTS) do
      it("answers the guide's four {position, words} lines, whatever show (" .. t.name .. ")", function()
        assert_lines(ocr(emu, "handwriting", { { "url", emu.image } }, t.get))
        for _, show in ipairs({ "", "0", "1" }) do
          assert_lines(ocr(emu, "handwriting", { { "url", emu.image }, { "show", show } }, t.get))
        end
        assert_billing(emu, 4, 0)
      end)
    end

    it("checks show like interface one: other values are 666", function()
      assert_666(ocr(emu, "handwriting", { { "url", emu.image }, { "show", "2" } }, false))
      assert_666(ocr(emu, "handwriting", { { "url", emu.image }, { "show", "x" } }, true))
      assert_billing(emu, 0, 2)
    end)
  end)

  describe("vendor failures", function()
    for _, api in ipairs(APIS) do
      for _, t in ipairs(TRANSPORTS) do
        local label = " (" .. api .. ", " .. t.name .. ")"

        it("666 for a missing or empty url" .. label, function()
          local n = 0
          local function fails(res, why) assert_666(res, why) n = n + 1 end
          fails(ocr(emu, api, {}, t.get), "no parameter at all")
          fails(ocr(emu, api, { { "show", "0" } }, t.get), "show only")
          fails(ocr(emu, api, { { "url", "" } }, t.get), "url=")
          fails(ocr(emu, api, { { "url", "" }, { "show", "1" } }, t.get), "url= with show=1")
          fails(ocr(emu, api, { { "URL", emu.image } }, t.get), "URL (names are case-sensitive)")
          if t.get then
            fails(emu:call(api, { url = emu[api] .. "?url&show=1", get = true, form = {} }), "bare key url")
          else
            fails(http.request({ url = emu[api], headers = { "Authorization: APPCODE demo" }, body = "url&show=1",
              content_type = "application/x-www-form-urlencoded" }), "bare key url")
          end
          assert_billing(emu, 0, n)
        end)

        it("666 for a malformed url" .. label, function()
          local port = emu.endpoint:match(":(%d+)$")
          local bad = {
            "ftp://127.0.0.1:" .. port .. "/images/sample.png",
            "file:///etc/passwd",
            "javascript:alert(1)",
            "127.0.0.1:" .. port .. "/images/sample.png",
            "/images/sample.png",
            "sample.png",
            "http://",
            "http:///images/sample.png",
            "https://:" .. port .. "/images/sample.png",
            "http://127.0.0.1:99999/images/sample.png",
            emu.image .. "?" .. ("x"):rep(1100),
          }
          for _, url in ipairs(bad) do
            assert_666(ocr(emu, api, { { "url", url } }, t.get), url)
          end
          assert_billing(emu, 0, #bad)
        end)

        it("666 for an unreachable image" .. label, function()
          local port = emu.endpoint:match(":(%d+)$")
          local unreachable = {
            "http://127.0.0.1:" .. closed_port() .. "/a.png",
            emu.images .. "no-such-image.png",
            emu.images .. "nested/missing.jpg",
            "http://img.invalid/a.png",
            "https://IMG.EXAMPLE.INVALID/a.png",
            "http://example.com/a.png",
            "https://example.com/images/sample.png",
            -- Hosts off loopback on the port of a real image: the emulator
            -- must not reach them even though this port does serve one.
            "http://example.com:" .. port .. "/images/sample.png",
            "http://10.0.0.1:" .. port .. "/images/sample.png",
          }
          for _, url in ipairs(unreachable) do
            assert_666(ocr(emu, api, { { "url", url } }, t.get), url)
          end
          assert_billing(emu, 0, #unreachable)
        end)

        it("666 for an unusable image" .. label, function()
          assert_666(ocr(emu, api, { { "url", emu.images .. "not-an-image.txt" } }, t.get), "not-an-image.txt")
          assert_666(ocr(emu, api, { { "url", emu.images } }, t.get), "the /images/ directory")
          assert_billing(emu, 0, 2)
        end)
      end
    end

    it("bills every 200 and no 666, however they interleave", function()
      local billed, not_billed = 0, 0
      for i = 1, 12 do
        local api = APIS[i % 2 + 1]
        local get = i % 3 == 0
        if i % 4 == 1 then
          assert_666(ocr(emu, api, { { "url", emu.images .. "missing-" .. i .. ".png" } }, get))
          not_billed = not_billed + 1
        else
          assert_success(api, ocr(emu, api, { { "url", emu.image } }, get))
          billed = billed + 1
        end
      end
      assert_billing(emu, billed, not_billed)
      assert.equal(billed + not_billed, #emu:requests())
    end)
  end)

  describe("image URLs with tricky characters (fetched from loopback)", function()
    for _, t in ipairs(TRANSPORTS) do
      it("are fetched and reach the vendor intact (" .. t.name .. ")", function()
        local port = emu.endpoint:match(":(%d+)$")
        check_tricky(emu, {
          emu.image .. "?x=a%20b&y=中文&z=1+2#frag",
          emu.images .. "%73ample.png",
          emu.image .. "?q=%25&w=a=b&url=http://x/&show=2",
          "HTTP://LOCALHOST:" .. port .. "/images/sample.png?名=值",
          "http://user:p%40ss@127.0.0.1:" .. port .. "/images/sample.png#a&b=c",
        }, t.get)
      end)
    end
  end)

  describe("X-Ca-Request-Id", function()
    it("is on every response of the API listener, an uppercase UUID, distinct each time", function()
      local auth = { "Authorization: APPCODE demo" }
      local responses = {
        { "200 (POST)", ocr(emu, "advanced", { { "url", emu.image } }, false), true },
        { "200 (GET)", ocr(emu, "handwriting", { { "url", emu.image } }, true), true },
        { "666", ocr(emu, "advanced", { { "url", "" } }, false), true },
        { "gateway Invalid Url", emu:call("advanced", { url = emu.endpoint .. "/nope" }), true },
        { "gateway Invalid HttpMethod", emu:call("advanced", { method = "PUT" }), true },
        { "gateway Need authorization", http.request({ url = emu.advanced, form = { { "url", emu.image } } }), true },
        { "gateway Invalid AppCode", emu:call("advanced", { appcode = "wrong" }), true },
        { "/images/ file", http.request({ url = emu.image }), false },
        { "/images/ text file", http.request({ url = emu.images .. "not-an-image.txt" }), false },
        { "nginx 404 under /images/", http.request({ url = emu.images .. "missing.png" }), false },
        { "nginx 405 for POST to /images/", http.request({ url = emu.image, method = "POST", body = "x" }), false },
        { "413 for a body far over the limit", http.request({ url = emu.advanced, headers = auth,
          body = ("a"):rep(4 * MAX_BODY), content_type = "application/x-www-form-urlencoded" }), false },
        { "nginx 400 (a header line without a colon)",
          raw(emu, "GET /ocr/advanced HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n"), false },
        { "nginx 400 (no Host header)", raw(emu, "GET /ocr/advanced HTTP/1.1\r\n\r\n"), false },
        { "nginx 400 (garbage request line)", raw(emu, "GARBAGE\r\n\r\n"), false },
      }
      local seen = {}
      for _, r in ipairs(responses) do
        local what, res, api = r[1], r[2], r[3]
        assert.is_number(res.status, what)
        assert.truthy(res.status >= 200, what .. ": no response")
        local id = res.headers["x-ca-request-id"]
        assert.is_string(id, what .. ": no X-Ca-Request-Id: " .. describe_res(res))
        assert.matches(UUID, id, nil, false, what)
        assert.is_nil(seen[id], what .. ": X-Ca-Request-Id " .. id .. " repeats " .. tostring(seen[id]))
        seen[id] = what
        if api then assert.equal(id, logged(emu, res).request_id, what) end
      end
      -- The nginx-level ones really were nginx's own pages.
      assert.equal(404, responses[10][2].status)
      assert.equal(405, responses[11][2].status)
      assert.equal(413, responses[12][2].status)
      for i = 13, 15 do assert.equal(400, responses[i][2].status) end
    end)
  end)

  describe("gateway errors of the request shape (classic)", function()
    for _, row in ipairs(shape_rows()) do
      it(row.what .. " gives " .. row.classic[1] .. " " .. row.classic[2] .. ", unbilled", function()
        assert_gateway_error(row.send(emu), "classic", row)
        assert_billing(emu, 0, 0)
      end)
    end

    it("accepts a body of exactly --max-body bytes", function()
      local res = http.request({ url = emu.advanced, headers = { "Authorization: APPCODE demo" },
        body = padded_form(emu.image, MAX_BODY), content_type = "application/x-www-form-urlencoded" })
      assert_text(res)
      assert.equal(MAX_BODY, logged(emu, res).body_bytes)
      assert_billing(emu, 1, 0)
    end)

    it("checks size, then path, then method, then content type, all before the credentials", function()
      local function err(res) return res.status .. " " .. tostring(res.headers["x-ca-error-message"]) end
      local noauth = { "X-Nothing: here" }
      -- path before method
      assert.equal("400 Invalid Url", err(http.request({ url = emu.endpoint .. "/nope", method = "DELETE" })))
      -- method before content type
      assert.equal("400 Invalid HttpMethod", err(http.request({ url = emu.advanced, method = "PUT",
        headers = noauth, args = { "-F", "url=x" } })))
      -- content type before credentials
      assert.equal("400 Unsupported Multipart", err(http.request({ url = emu.handwriting,
        headers = { "Authorization: APPCODE wrong" }, args = { "-F", "url=x" } })))
      -- size before path
      assert.equal("413 Request body too Large", err(http.request({ url = emu.endpoint .. "/nope",
        body = padded_form(emu.image, MAX_BODY + 1), content_type = "application/x-www-form-urlencoded" })))
      assert_billing(emu, 0, 0)
    end)
  end)
end)

-- --no-fetch ---------------------------------------------------------------------

describe("emulator API with --no-fetch", function()
  local emu

  lazy_setup(function() emu = start({ "--no-fetch" }) end)
  lazy_teardown(function() stop_clean(emu) end)
  before_each(function() emu:reset() end)

  it("reports fetch = false in its settings", function()
    assert.is_false(emu:settings().fetch)
  end)

  for _, api in ipairs(APIS) do
    for _, t in ipairs(TRANSPORTS) do
      local label = " (" .. api .. ", " .. t.name .. ")"

      it("answers 200 for well-formed URLs to images it does not fetch" .. label, function()
        local urls = {
          emu.images .. "no-such-file.png",
          "http://127.0.0.1:" .. closed_port() .. "/nothing/here.jpg",
          emu.images .. "not-an-image.txt",
          "http://example.com/a.png",
          "https://img.example.org:8443/x/y.bmp?v=2",
        }
        for _, url in ipairs(urls) do
          local res = ocr(emu, api, { { "url", url } }, t.get)
          assert_success(api, res)
          assert.equal(url, logged(emu, res).params.url)
        end
        assert_billing(emu, #urls, 0)
      end)

      it("still answers 666 for .invalid hosts" .. label, function()
        local urls = { "http://img.invalid/a.png", "https://a.b.INVALID:8443/c.jpg?d=e", "http://invalid/x.png" }
        for _, url in ipairs(urls) do assert_666(ocr(emu, api, { { "url", url } }, t.get), url) end
        assert_billing(emu, 0, #urls)
      end)
    end
  end

  it("still answers 666 for a missing, empty or malformed url and a bad show", function()
    assert_666(ocr(emu, "advanced", {}, false), "no url")
    assert_666(ocr(emu, "handwriting", { { "url", "" } }, true), "url=")
    assert_666(ocr(emu, "advanced", { { "url", "ftp://127.0.0.1/a.png" } }, false), "ftp")
    assert_666(ocr(emu, "handwriting", { { "url", "http:///a.png" } }, true), "no host")
    assert_666(ocr(emu, "advanced", { { "url", "http://example.com/a.png" }, { "show", "2" } }, false), "show=2")
    assert_billing(emu, 0, 5)
  end)

  for _, t in ipairs(TRANSPORTS) do
    it("passes image URLs with tricky characters to the vendor intact (" .. t.name .. ")", function()
      local urls = tricky_urls("http://127.0.0.1:" .. closed_port())
      for _, u in ipairs(tricky_urls("https://例子.example.com")) do urls[#urls + 1] = u end
      check_tricky(emu, urls, t.get)
    end)
  end
end)

-- VPC-style errors -------------------------------------------------------------------

describe("emulator API with --errors vpc", function()
  local emu

  lazy_setup(function() emu = start({ "--errors", "vpc", "--max-body", tostring(MAX_BODY) }) end)
  lazy_teardown(function() stop_clean(emu) end)
  before_each(function() emu:reset() end)

  for _, row in ipairs(shape_rows()) do
    it(row.what .. " gives " .. row.vpc[1] .. " with status " .. row.vpc[1]:sub(2, 4) .. ", unbilled", function()
      assert_gateway_error(row.send(emu), "vpc", row)
      assert_billing(emu, 0, 0)
    end)
  end

  it("passes the vendor's 666 and 200 through without X-Ca-Error-Code", function()
    assert_666(ocr(emu, "advanced", { { "url", emu.images .. "missing.png" } }, false))
    assert_666(ocr(emu, "handwriting", { { "url", emu.image }, { "show", "9" } }, true))
    assert_text(ocr(emu, "advanced", { { "url", emu.image } }, true))
    assert_lines(ocr(emu, "handwriting", { { "url", emu.image } }, false))
    assert_billing(emu, 2, 2)
  end)
end)

-- Custom paths ---------------------------------------------------------------------

describe("emulator API with --path", function()
  local emu

  lazy_setup(function()
    emu = start({ "--path", "advanced=/ocrservice/advanced", "--path", "handwriting=/ocrservice/shouxie" })
  end)
  lazy_teardown(function() stop_clean(emu) end)
  before_each(function() emu:reset() end)

  it("prints the custom interface URLs", function()
    assert.matches("^http://127%.0%.0%.1:%d+$", emu.endpoint)
    assert.equal(emu.endpoint .. "/ocrservice/advanced", emu.advanced)
    assert.equal(emu.endpoint .. "/ocrservice/shouxie", emu.handwriting)
    local out = emu:output()
    assert.truthy(out:find("\nadvanced " .. emu.endpoint .. "/ocrservice/advanced\n", 1, true), out)
    assert.truthy(out:find("\nhandwriting " .. emu.endpoint .. "/ocrservice/shouxie\n", 1, true), out)
    assert.same({ advanced = "/ocrservice/advanced", handwriting = "/ocrservice/shouxie" }, emu:settings().paths)
  end)

  for _, t in ipairs(TRANSPORTS) do
    it("serves both interfaces at the custom paths (" .. t.name .. ")", function()
      local res = ocr(emu, "advanced", { { "url", emu.image } }, t.get)
      assert_text(res)
      assert.equal("/ocrservice/advanced", logged(emu, res).path)
      assert_words(ocr(emu, "advanced", { { "url", emu.image }, { "show", "1" } }, t.get))
      res = ocr(emu, "handwriting", { { "url", emu.image } }, t.get)
      assert_lines(res)
      assert.equal("handwriting", logged(emu, res).api)
      assert_666(ocr(emu, "handwriting", { { "url", emu.images .. "missing.png" } }, t.get))
      assert_billing(emu, 3, 1)
    end)
  end

  it("answers Invalid Url at the default paths, unbilled", function()
    for _, path in ipairs({ "/ocr/advanced", "/ocr/handwriting" }) do
      for _, get in ipairs({ false, true }) do
        local res = emu:call("advanced", { url = emu.endpoint .. path, get = get })
        assert.equal(400, res.status, describe_res(res))
        assert.equal("Invalid Url", res.headers["x-ca-error-message"])
        assert.equal("", res.body)
      end
    end
    assert_billing(emu, 0, 0)
  end)
end)
