-- aliocr inside nginx (Debian's nginx with libnginx-mod-http-lua, LuaJIT):
-- calls go over nginx's own sockets without blocking the worker, with the
-- same results, errors and billing as the libcurl transport. The nginx here
-- runs examples/openresty/nginx.conf (with its ports and paths swapped for
-- this checkout's) and the example handler, plus the test handlers of
-- spec/helpers/nginx_case.lua.
local cjson = require("cjson")
local socket = require("socket")
local aliocr = require("aliocr")
local dns = require("helpers.dns")
local emulator = require("helpers.emulator")
local http = require("helpers.http")
local nginx = require("helpers.nginx")
local outcome = require("helpers.outcome")
local sh = require("helpers.sh")
local util = require("helpers.util")

local q, read_all, write_all = sh.q, sh.read_all, sh.write_all

local LATENCY_MS = 200
local BURST = 50

-- A value as it comes out of JSON (the libcurl side goes through it too, so
-- that both sides are compared in the same form).
local function via_json(v) return cjson.decode(cjson.encode(v)) end

local function urlencode(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

describe("inside nginx", function()
  local emu, ngx_, names

  setup(function()
    emu = emulator.start({ "--port", "0", "--https-port", "0", "--appcode", "demo", "--app-key", "key1:secret1" })
    -- HTTPS goes to the emulator by name (nginx verifies DNS names only),
    -- which nginx looks up through a DNS server of the spec's own.
    names = dns.start({ localhost = "127.0.0.1" })
    ngx_ = nginx.start(nginx.test_config(emu.ca_file, "resolver " .. names.address .. " ipv6=off;"),
      { ALIOCR_APPCODE = "demo", ALIOCR_ENDPOINT = emu.endpoint })
  end)

  teardown(function()
    if ngx_ then assert.same({}, ngx_:stop()) end
    if names then names:stop() end
    util.stop_clean(emu)
  end)

  before_each(function() emu:reset() end)

  describe("the example handler under a burst", function()
    it(BURST .. " concurrent requests with " .. LATENCY_MS .. " ms upstream latency all succeed, " ..
       "without blocking the worker", function()
      emu:settings({ latency_ms = LATENCY_MS })
      local dir = sh.tmpdir()
      finally(function() os.execute("rm -rf " .. q(dir)) end)
      local args = {}
      for i = 1, BURST do
        args[#args + 1] = string.format("-o %s/out%d %s", q(dir), i,
          q(ngx_.url .. "/ocr?url=" .. urlencode(emu.image .. "?n=" .. i)))
      end
      -- A loop of requests to the trivial location runs through the burst;
      -- each prints when it ended and how long it took.
      write_all(dir .. "/burst.sh", table.concat({
        "cd " .. q(dir),
        "( while [ ! -e stop ]; do curl -s -o /dev/null -w \"$(date +%s.%N) %{time_total}\\n\" " ..
          q(ngx_.url .. "/ping") .. " >>pings; done ) &",
        "pinger=$!",
        "sleep 0.3",
        "date +%s.%N >start",
        "curl -s --parallel --parallel-immediate --parallel-max " .. BURST .. " -w '%{http_code}\\n' " ..
          table.concat(args, " ") .. " >codes",
        "date +%s.%N >end",
        "sleep 0.2",
        "touch stop",
        "wait $pinger",
      }, "\n") .. "\n")
      os.execute("sh " .. q(dir .. "/burst.sh"))

      local started, ended = tonumber(read_all(dir .. "/start")), tonumber(read_all(dir .. "/end"))
      local wall = ended - started
      local codes = {}
      for code in read_all(dir .. "/codes"):gmatch("%d+") do codes[#codes + 1] = code end
      assert.equal(BURST, #codes)
      for i = 1, BURST do
        local body = read_all(dir .. "/out" .. i)
        local res = cjson.decode(body)
        assert.equal(1, res.ok, body)
        assert.is_true(res.billed)
        assert.is_string(res.text)
        assert.is_truthy(#res.text > 0)
      end
      assert.equal(BURST, emu:settled_ledger().total.billed)

      -- The trivial location during the burst (its pings that ended inside).
      local worst, during = 0, 0
      for at, took in read_all(dir .. "/pings"):gmatch("(%S+) (%S+)\n") do
        at, took = tonumber(at), tonumber(took)
        if at >= started and at - took <= ended then
          during = during + 1
          if took > worst then worst = took end
        end
      end
      print(string.format("# nginx burst: %d requests, %d ms upstream latency each: %.3f s wall " ..
        "(blocking calls would take %.1f s); /ping during the burst: %d answers, worst %.1f ms",
        BURST, LATENCY_MS, wall, BURST * LATENCY_MS / 1000, during, worst * 1000))
      -- Blocking calls would take BURST x latency, one after the other.
      assert.is_true(wall < BURST * LATENCY_MS / 1000 / 2, "the burst took " .. wall .. " s")
      assert.is_true(during >= 1, "no /ping answered during the burst")
      -- A worker blocked by one call would hold /ping for a whole latency.
      assert.is_true(worst < LATENCY_MS / 1000, "worst /ping latency " .. worst .. " s")
    end)

    it("answers a failed call with its kind and billing, and misuse with 400", function()
      local r = http.request({ url = ngx_.url .. "/ocr?url=" .. urlencode(emu.images .. "missing.png") })
      assert.equal(502, r.status)
      local e = cjson.decode(r.body)
      assert.equal("api", e.kind)
      assert.is_false(e.billed)
      assert.equal(666, e.status)
      r = http.request({ url = ngx_.url .. "/ocr?url=ftp%3A%2F%2Fexample.com%2Fa.png" })
      assert.equal(400, r.status)
      assert.matches("http:// or https://", cjson.decode(r.body).error, 1, true)
      assert.equal(0, emu:ledger().total.billed)
    end)

    -- Whether `s` is valid UTF-8 (RFC 3629): each valid sequence becomes
    -- ".", so that no two bytes join; then no byte over 127 may be left.
    local function valid_utf8(s)
      for _, seq in ipairs({ "[\194-\223][\128-\191]", "\224[\160-\191][\128-\191]",
          "[\225-\236\238\239][\128-\191][\128-\191]", "\237[\128-\159][\128-\191]",
          "\240[\144-\191][\128-\191][\128-\191]", "[\241-\243][\128-\191][\128-\191][\128-\191]",
          "\244[\128-\143][\128-\191][\128-\191]" }) do
        s = s:gsub(seq, ".")
      end
      return not s:find("[\128-\255]")
    end

    local function ocr(query) return http.request({ url = ngx_.url .. "/ocr?" .. query, timeout = 30 }) end

    it("item 15: a repeated or valueless argument gets a 400 that says so, and nothing is sent", function()
      local img = urlencode(emu.image)
      for _, case in ipairs({
        { "url=" .. img .. "&url=" .. img, "give url once (percent-encode the image URL" },
        { "url", "url needs a value: ?url=..." },
        { "url=" .. img .. "&show", "show needs a value: ?show=..." },
        { "url=" .. img .. "&show=", "show needs a value: ?show=..." },
        { "url=" .. img .. "&show=1&show=0", "give show once" },
        { "url=" .. img .. "&kind=handwriting&kind=recognize", "give kind once" },
        { "url=" .. img .. "&kind", "kind needs a value: ?kind=..." },
      }) do
        local r = ocr(case[1])
        assert.equal(400, r.status, case[1])
        assert.equal(case[2], cjson.decode(r.body).error:sub(1, #case[2]), case[1])
      end
      assert.equal(0, emu:ledger().total.requests)
    end)

    it("item 15: bytes that are not UTF-8, from the URL or from the upstream, are escaped as \\xNN", function()
      -- From the URL, in the message of a 400.
      local r = ocr("url=ftp%3A%2F%2Fx%2F%FF%C0%AF%ED%A0%80%E4%B8%AD")
      assert.equal(400, r.status)
      assert.is_true(valid_utf8(r.body), r.body)
      assert.equal("application/json; charset=utf-8", r.headers["content-type"])
      assert.matches("got 'ftp://x/\\xFF\\xC0\\xAF\\xED\\xA0\\x80\228\184\173'", cjson.decode(r.body).error, 1, true)
      -- From the upstream: a vendor's message (502) and a recognised text (200).
      emu:fault({ mode = "respond", status = 666, body = '{"ok":0,"msg":"bad \255\192\128 byte"}', times = 1 })
      r = ocr("url=" .. urlencode(emu.image))
      assert.equal(502, r.status)
      assert.is_true(valid_utf8(r.body), r.body)
      assert.equal("bad \\xFF\\xC0\\x80 byte", cjson.decode(r.body).msg)
      emu:fault({ mode = "respond", status = 200, body = '{"ok":1,"msg":"ok","data":"\230\150\135\254 x"}', times = 1 })
      r = ocr("url=" .. urlencode(emu.image))
      assert.equal(200, r.status, r.body)
      assert.is_true(valid_utf8(r.body), r.body)
      assert.equal("\230\150\135\\xFE x", cjson.decode(r.body).text)
    end)

    it("item 15: a failed call is logged once, at warn, with the gateway's request id, and no [error] line " ..
       "(the upstream failed, not the server)", function()
      for _, case in ipairs({
        { fault = { mode = "vendor_error" }, kind = "api", id = true },
        { fault = { mode = "gateway", error = "quota_exhausted" }, kind = "quota", id = true },
        { fault = { mode = "html" }, kind = "http", id = true }, -- retried: 3 attempts, one line
        { fault = { mode = "not_json" }, kind = "protocol", id = true },
        { fault = { mode = "truncate" }, kind = "transport", id = true },
        -- ngx_lua logs a socket timeout as [error] unless lua_socket_log_errors is off.
        -- The emulator answers (and bills) 2 s after the client gave up: it
        -- is waited for, so that the answer does not land in a later test.
        { fault = { mode = "stall_headers", ms = 12000 }, kind = "timeout", id = false, linger = 2.5 },
      }) do
        emu:reset()
        emu:fault(case.fault)
        local before = #ngx_:log()
        local r = ocr("url=" .. urlencode(emu.image))
        assert.equal(502, r.status, r.body)
        local e = cjson.decode(r.body)
        assert.equal(case.kind, e.kind)
        local log = ngx_:log():sub(before + 1)
        local lines = {}
        for line in log:gmatch("[^\n]+") do lines[#lines + 1] = line end
        assert.equal(1, #lines, case.kind .. ":\n" .. log)
        assert.matches("[warn]", lines[1], 1, true)
        local id = case.id and e.request_id or "none"
        assert.is_string(id, case.kind .. ": no request id")
        assert.matches("aliocr recognize failed, request id " .. id .. ": aliocr " .. case.kind .. " error: ",
          lines[1], 1, true)
        assert.is_nil(log:find("demo", 1, true), "the appcode is in the log")
        if case.linger then socket.sleep(case.linger) end
      end
    end)
  end)

  describe("the same outcome as libcurl", function()
    -- Each case: the client's options (endpoint, appcode, retry_delay
    -- filled in), the kind, the image, the call options, a fault rule (for
    -- the case's interface only). Unless `cold`, a call of the other
    -- interface goes first, so that the case's call goes out on a
    -- connection used before on both sides (nginx keeps one pool for all the
    -- clients of a worker). `linger`: seconds the emulator goes on after
    -- the client gave up, before its ledger is read. `warm_fault`: a fault
    -- rule for the warm call (one use) instead. `within`: seconds both
    -- sides' call must have ended in (a check of the attempt's deadline).
    --
    -- The rows of issue 19 send exactly the bytes of a misbehaving gateway
    -- (the emulator's raw mode; the ledger bills the rule's status, 200).
    -- What libcurl 7.88 does is the expected outcome on both sides; the
    -- comments say what that is.
    local BODY = '{"ok":1,"msg":"查询成功","data":"hello"}'
    local CT, CL = "Content-Type: application/json; charset=UTF-8", "Content-Length: " .. #BODY
    local CHUNKED = "Transfer-Encoding: chunked"
    local function head(status_line, headers, eol)
      eol = eol or "\r\n"
      return status_line .. eol .. table.concat(headers, eol) .. (#headers > 0 and eol or "") .. eol
    end
    local function raw(data, more)
      local rule = { mode = "raw", status = 200, data = data }
      for k, v in pairs(more or {}) do rule[k] = v end
      return rule
    end
    local function chunk(s) return string.format("%x\r\n%s\r\n", #s, s) end
    local function raw_cases()
      local many = { CT, CL }
      for i = 1, 250 do many[#many + 1] = "X-Header-" .. i .. ": value " .. i end
      local trickle, kept = {}, #BODY - 12
      for i = kept + 1, #BODY do trickle[#trickle + 1] = BODY:sub(i, i) end
      local MB4 = 4 * 1024 * 1024
      return {
        -- libcurl: transport WEIRD_SERVER_REPLY, 200, billed.
        { "item 3: Content-Length: -1 on a 200: an error object, billed",
          fault = raw(head("HTTP/1.1 200 OK", { CT, "Content-Length: -1" }) .. BODY) },
        -- libcurl: the result.
        { "item 4: a valid 200 with 250 header lines", fault = raw(head("HTTP/1.1 200 OK", many) .. BODY) },
        -- libcurl: both calls succeed (it closes the connection of an
        -- HTTP/1.0 answer without keep-alive).
        { "item 9: HTTP/1.0 without keep-alive, the server keeps the connection: the next call works",
          warm_fault = raw(head("HTTP/1.0 200 OK", { CT, CL }) .. BODY, { after = "hold", hold_ms = 1500 }),
          linger = 1.6 },
        { "item 9: HTTP/1.0 without keep-alive, the server closes the connection: the next call works",
          warm_fault = raw(head("HTTP/1.0 200 OK", { CT, CL }) .. BODY) },
        { "item 9: HTTP/1.0 without Content-Length: the body ends at the close",
          fault = raw(head("HTTP/1.0 200 OK", { CT }) .. BODY) },
        -- libcurl: the result, at once.
        { "item 10: two identical Content-Length headers: no stall", client = { timeout = 1 },
          fault = raw(head("HTTP/1.1 200 OK", { CT, CL, CL }) .. BODY, { after = "hold", hold_ms = 1500 }),
          linger = 1.6 },
        -- libcurl reads "0x2c" as 0: protocol BAD_JSON (an empty answer), billed.
        { "item 11: Content-Length in hex (0x..)",
          fault = raw(head("HTTP/1.1 200 OK", { CT, string.format("Content-Length: 0x%x", #BODY) }) .. BODY) },
        -- libcurl: the result.
        { "item 11: Content-Length with a plus sign",
          fault = raw(head("HTTP/1.1 200 OK", { CT, "Content-Length: +" .. #BODY }) .. BODY) },
        -- libcurl: transport UNSUPPORTED_PROTOCOL, no status, billing unknown.
        { "item 11: HTTP/1.1 2000", fault = raw(head("HTTP/1.1 2000 OK", { CT, CL }) .. BODY) },
        { "item 11: a two-digit status", fault = raw(head("HTTP/1.1 20 OK", { CT, CL }) .. BODY) },
        { "item 11: HTTP/1.2", fault = raw(head("HTTP/1.2 200 OK", { CT, CL }) .. BODY) },
        -- libcurl: the result.
        { "item 11: a status line without a reason phrase", fault = raw(head("HTTP/1.1 200", { CT, CL }) .. BODY) },
        { "item 11: a status line with an empty reason phrase",
          fault = raw(head("HTTP/1.1 200 ", { CT, CL }) .. BODY) },
        -- libcurl: transport RECV_ERROR, 200, billed.
        { "item 11: a chunk followed by XX instead of CRLF",
          fault = raw(head("HTTP/1.1 200 OK", { CT, CHUNKED }) .. string.format("%x\r\n", #BODY) .. BODY ..
            "XX0\r\n\r\n") },
        -- libcurl: the result.
        { "item 11: bare LF line endings", fault = raw(head("HTTP/1.1 200 OK", { CT, CL }, "\n") .. BODY) },
        { "item 11: an obs-fold header line",
          fault = raw(head("HTTP/1.1 200 OK", { CT, "X-Folded: a", " b", CL }) .. BODY) },
        -- libcurl: transport WEIRD_SERVER_REPLY, 200, billed.
        { "item 11: a header line without a colon",
          fault = raw(head("HTTP/1.1 200 OK", { CT, "Garbage", CL }) .. BODY) },
        -- libcurl: the result.
        { "item 11: whitespace before the colon",
          fault = raw(head("HTTP/1.1 200 OK", { CT, "Content-Length : " .. #BODY }) .. BODY) },
        -- libcurl: transport RECV_ERROR, 200, billed.
        { "item 11: a bad chunk size", fault = raw(head("HTTP/1.1 200 OK", { CT, CHUNKED }) ..
          "zz\r\n" .. BODY .. "\r\n0\r\n\r\n") },
        { "item 11: an overlong chunk size", fault = raw(head("HTTP/1.1 200 OK", { CT, CHUNKED }) ..
          string.format("%020x\r\n", #BODY) .. BODY .. "\r\n0\r\n\r\n") },
        { "item 11: a negative chunk size", fault = raw(head("HTTP/1.1 200 OK", { CT, CHUNKED }) ..
          string.format("-%x\r\n", #BODY) .. BODY .. "\r\n0\r\n\r\n") },
        -- libcurl: the result.
        { "item 11: chunk extensions", fault = raw(head("HTTP/1.1 200 OK", { CT, CHUNKED }) ..
          string.format("%x;name=value;q=\"a b\"\r\n", #BODY) .. BODY .. "\r\n0;last\r\n\r\n") },
        { "item 11: a chunked trailer", fault = raw(head("HTTP/1.1 200 OK", { CT, CHUNKED }) ..
          chunk(BODY) .. "0\r\nX-Trailer: 1\r\n\r\n") },
        -- libcurl: transport BAD_CONTENT_ENCODING (CURLE 61), 200, billed.
        { "item 11: Transfer-Encoding: gzip, chunked", fault = raw(head("HTTP/1.1 200 OK",
          { CT, "Transfer-Encoding: gzip, chunked" }) .. chunk(BODY) .. "0\r\n\r\n") },
        -- libcurl: the result (chunked wins).
        { "item 11: both Content-Length and Transfer-Encoding",
          fault = raw(head("HTTP/1.1 200 OK", { CT, "Content-Length: 5", CHUNKED }) .. chunk(BODY) .. "0\r\n\r\n") },
        -- libcurl takes the last one: protocol BAD_JSON, billed.
        { "item 11: differing duplicate Content-Length",
          fault = raw(head("HTTP/1.1 200 OK", { CT, CL, "Content-Length: 5" }) .. BODY) },
        -- libcurl: the result.
        { "item 11: 100 Continue before the 200",
          fault = raw(head("HTTP/1.1 100 Continue", {}) .. head("HTTP/1.1 200 OK", { CT, CL }) .. BODY) },
        { "item 11: a body longer than its Content-Length",
          fault = raw(head("HTTP/1.1 200 OK", { CT, CL }) .. BODY .. "garbage") },
        -- libcurl caps a header at 100 KB: transport OUT_OF_MEMORY, 200, billed.
        { "item 1: a header line that never ends (4 MB without LF)",
          fault = raw("HTTP/1.1 200 OK\r\n" .. CT .. "\r\nX-Long: ", { fill = { bytes = MB4 } }) },
        -- libcurl: transport RECV_ERROR (too long hexadecimal number), 200, billed.
        { "item 1: an endless chunk-size line (4 MB of hex digits)",
          fault = raw(head("HTTP/1.1 200 OK", { CT, CHUNKED }), { fill = { bytes = MB4, byte = "1" } }) },
        -- libcurl skips an extension up to its LF: transport PARTIAL_FILE at the close, 200, billed.
        { "item 1: an endless chunk extension (4 MB)",
          fault = raw(head("HTTP/1.1 200 OK", { CT, CHUNKED }) .. "1;x=", { fill = { bytes = MB4 } }) },
        -- From a review: more bytes where a reader could part from libcurl
        -- (libcurl's outcome is each one's expected one).
        { "item 11: HTTP/1.1 200OK (no blank before the reason)",
          fault = raw(head("HTTP/1.1 200OK", { CT, CL }) .. BODY) },
        { "item 11: a tab after the status code", fault = raw(head("HTTP/1.1 200\tOK", { CT, CL }) .. BODY) },
        { "item 11: a status 099 before the 200", fault =
          raw(head("HTTP/1.1 099 X", {}) .. head("HTTP/1.1 200 OK", { CT, CL }) .. BODY) },
        { "item 11: a status 000 before the 200", fault =
          raw(head("HTTP/1.1 000 X", {}) .. head("HTTP/1.1 200 OK", { CT, CL }) .. BODY) },
        { "item 11: CR CR LF after a chunk", fault = raw(head("HTTP/1.1 200 OK", { CT, CHUNKED }) ..
          string.format("%x\r\n", #BODY) .. BODY .. "\r\r\n0\r\n\r\n") },
        { "item 1: a chunk size of 2^63 (16 hex digits)", fault = raw(head("HTTP/1.1 200 OK", { CT, CHUNKED }) ..
          "8000000000000000\r\n" .. BODY .. "\r\n0\r\n\r\n") },
        { "item 1: Content-Length 2^64 (overflow), body to the close", fault =
          raw(head("HTTP/1.1 200 OK", { CT, "Content-Length: 18446744073709551616" }) .. BODY) },
        { "item 1: Content-Length 44 then an overflowing one", fault =
          raw(head("HTTP/1.1 200 OK", { CT, CL, "Content-Length: 99999999999999999999" }) .. BODY) },
        { "item 11: Content-Length: 1e9 (libcurl reads 1)", fault =
          raw(head("HTTP/1.1 200 OK", { CT, "Content-Length: 1e9" }) .. BODY) },
        { "item 11: a trailer with a bare CR", fault = raw(head("HTTP/1.1 200 OK", { CT, CHUNKED }) ..
          chunk(BODY) .. "0\r\nX-T: a\rb\r\n\r\n") },
        { "item 11: a NUL in a header value", fault = raw(head("HTTP/1.1 200 OK", { CT, "X-N: a\0b", CL }) .. BODY) },
        { "item 11: no final CRLF after the last chunk", fault = raw(head("HTTP/1.1 200 OK", { CT, CHUNKED }) ..
          chunk(BODY) .. "0\r\n") },
        { "item 11: Transfer-Encoding: identity with a length", fault =
          raw(head("HTTP/1.1 200 OK", { CT, "Transfer-Encoding: identity", CL }) .. BODY) },
        { "item 11: a folded line after an ignored one", fault =
          raw(head("HTTP/1.1 200 OK", { "X-A : 1", " folded", CT, CL }) .. BODY) },
        { "item 11: a folded line first", fault = raw(head("HTTP/1.1 200 OK", { " folded", CT, CL }) .. BODY) },
        { "item 11: a header line with only blanks", fault = raw(head("HTTP/1.1 200 OK", { CT, "   ", CL }) .. BODY) },
        { "item 11: Content-Length with a tab and trailing junk", fault =
          raw(head("HTTP/1.1 200 OK", { CT, "Content-Length:\t" .. #BODY .. "junk" }) .. BODY) },
        { "item 11: an empty Content-Length", fault = raw(head("HTTP/1.1 200 OK", { CT, "Content-Length:" }) .. BODY) },
        { "item 11: Transfer-Encoding: chunked, chunked", fault =
          raw(head("HTTP/1.1 200 OK", { CT, "Transfer-Encoding: chunked, chunked" }) .. chunk(BODY) .. "0\r\n\r\n") },
        { "item 11: chunk size with a blank before CRLF", fault = raw(head("HTTP/1.1 200 OK", { CT, CHUNKED }) ..
          string.format("%x \r\n", #BODY) .. BODY .. "\r\n0\r\n\r\n") },
        { "item 11: HTTP/1.1 with leading blank status",
          fault = raw(" " .. head("HTTP/1.1 200 OK", { CT, CL }) .. BODY) },
        -- libcurl: timeout OPERATION_TIMEDOUT at 2 s, 200, billed.
        { "item 5: a body trickled one byte per 0.5 s: the attempt ends by its deadline", client = { timeout = 2 },
          fault = raw(head("HTTP/1.1 200 OK", { CT, CL }) .. BODY:sub(1, kept), { pieces = trickle, gap_ms = 500 }),
          within = 3.5, linger = 1.5 },
      }
    end
    local function cases()
      local refused = "http://127.0.0.1:" .. util.closed_port()
      return {
        { "interface one, data as a string" },
        { "interface one, show=1: data as {words}", opts = { show = 1 } },
        { "interface two: lines with positions", kind = "handwriting" },
        { "GET with a query", client = { method = "GET" }, kind = "handwriting" },
        { "tricky parameters arrive intact", opts = { params = { note = "a b&c=d%e 图" } } },
        { "signature auth, HmacSHA256", client = { appcode = false, app_key = "key1", app_secret = "secret1" } },
        { "signature auth, HmacSHA1", client = { appcode = false, app_key = "key1", app_secret = "secret1",
          signature_method = "HmacSHA1" }, kind = "handwriting" },
        { "a wrong AppSecret: auth", client = { appcode = false, app_key = "key1", app_secret = "wrong" } },
        { "a wrong AppCode: auth", client = { appcode = "nope" } },
        { "666 for an image that is not there: api", image = "missing.png" },
        { "quota exhausted", fault = { mode = "quota_exhausted" } },
        { "throttled once, retried", fault = { mode = "throttled_app", times = 1 } },
        { "500 twice, retries exhausted", fault = { mode = "internal_error" }, client = { retries = 1 } },
        { "503 twice, then the answer", fault = { mode = "service_unavailable", times = 2 } },
        { "504 Async Service", fault = { mode = "async_service" }, client = { retries = 0 } },
        { "200 with a body that is not JSON: protocol, billed", fault = { mode = "not_json" } },
        { "200 with ok 0: protocol, billed", fault = { mode = "ok0", msg = "识别失败" } },
        { "an HTML error page", fault = { mode = "html" } },
        { "a redirect is not followed", fault = { mode = "respond", status = 302, body = "",
          headers = { Location = "http://127.0.0.1:1/elsewhere" } } },
        { "a huge body over the cap", fault = { mode = "huge", bytes = 100000 },
          client = { max_response_bytes = 10000 } },
        { "a huge chunked body over the cap", fault = { mode = "huge", bytes = 100000, chunked = true },
          client = { max_response_bytes = 10000 } },
        { "a huge chunked body under the cap", fault = { mode = "huge", bytes = 100000, chunked = true } },
        { "a body nested too deep", client = { json_max_depth = 4 }, fault = { mode = "respond", status = 200,
          body = '{"ok":1,"msg":"x","data":[[[[[["deep"]]]]]]}' } },
        { "no answer in time: timeout, billing unknown", fault = { mode = "stall_headers", ms = 1000 },
          client = { timeout = 0.3 }, linger = 1 },
        { "a stall in the body: timeout, billed", fault = { mode = "stall_body", ms = 1000 },
          client = { timeout = 0.3 }, linger = 1 },
        { "reset before the headers: billing unknown", fault = { mode = "reset_before_headers" } },
        { "reset after the headers: billed", fault = { mode = "reset_after_headers" } },
        { "a truncated body: billed", fault = { mode = "truncate" } },
        { "connection refused: not billed, retried", client = { endpoint = refused, retries = 1 }, cold = true },
        { "HTTPS with the test CA trusted", https = true },
        -- Inside nginx, the location trusts Debian's CAs only.
        -- Loading Debian's CA store takes seconds inside valgrind: longer
        -- than the default connect timeout, which covers the handshake.
        { "HTTPS without the test CA: verification fails", https = true, untrusted = true,
          client = { ca_file = "/etc/ssl/certs/ca-certificates.crt", connect_timeout = util.slow(3) } },
      }
    end

    local all = cases()
    for _, case in ipairs(raw_cases()) do all[#all + 1] = case end
    for _, case in ipairs(all) do
      it(case[1], function()
        local kind = case.kind or "recognize"
        local warm = not case.cold and (kind == "recognize" and "handwriting" or "recognize") or nil
        local function prepare()
          emu:reset()
          if case.fault then
            local rule = { api = kind == "recognize" and "advanced" or "handwriting" }
            for k, v in pairs(case.fault) do rule[k] = v end
            emu:fault(rule)
          end
          if case.warm_fault then
            local rule = { api = warm == "recognize" and "advanced" or "handwriting", times = 1 }
            for k, v in pairs(case.warm_fault) do rule[k] = v end
            emu:fault(rule)
          end
        end
        local function ledger()
          if case.linger then socket.sleep(case.linger) end
          return emu:settled_ledger()
        end
        local function in_time(side, took)
          if case.within then
            assert.is_true(took < case.within, side .. ": the call ended after " .. took .. " s")
          end
        end
        local endpoint = emu.endpoint
        if case.https then endpoint = emu.https:gsub("127%.0%.0%.1", "localhost") end
        local client = { appcode = "demo", endpoint = endpoint, retry_delay = 0.01 }
        for k, v in pairs(case.client or {}) do
          if v == false then client[k] = nil else client[k] = v end
        end
        local url = emu.images .. (case.image or "sample.png")

        prepare()
        local inside_started = socket.gettime()
        local inside = ngx_:post(case.untrusted and "/case_untrusted" or "/case",
          { client = client, kind = kind, url = url, opts = case.opts, warm = warm }, 60)
        -- The warm call and the client's making count in too: an upper bound.
        local inside_took = socket.gettime() - inside_started
        local inside_ledger = ledger()
        assert.equal("resty", inside.transport)
        local message = inside.message
        inside.transport, inside.message = nil, nil
        -- Item 14: worded by the transport, never with an internal path.
        assert.is_nil(tostring(message):find("%.lua:%d"), message)
        -- The gateway's string-to-sign names each attempt's own nonce and time.
        local function unstamp(o)
          if o.error and type(o.error.msg) == "string" then
            o.error.msg = o.error.msg:gsub("X%-Ca%-Nonce:[^#]*", "X-Ca-Nonce:*")
              :gsub("X%-Ca%-Timestamp:%d+", "X-Ca-Timestamp:*")
          end
          return o
        end
        unstamp(inside)

        prepare()
        local curl_client = {}
        for k, v in pairs(client) do curl_client[k] = v end
        if case.https and not case.untrusted then curl_client.ca_file = emu.ca_file end
        local c = aliocr.new(curl_client)
        if warm then c[warm](c, url) end
        local outside_started = socket.gettime()
        local res, err = c[kind](c, url, case.opts)
        local outside_took = socket.gettime() - outside_started
        local outside = unstamp(via_json(outcome.of(res, err, c:stats())))
        c:close()
        -- Settled before any assertion, so that nothing of this case is
        -- still under way when the next one starts.
        local outside_ledger = ledger()

        in_time("libcurl", outside_took)
        in_time("inside nginx", inside_took)

        assert.same(outside, inside,
          "inside nginx: " .. tostring(message) .. "; libcurl: " .. tostring(err and err.msg))
        assert.same(outside_ledger, inside_ledger)
      end)
    end
  end)

  describe("concurrency and connections", function()
    it("runs a batch as light threads, at most `concurrency` at once, in input order", function()
      emu:settings({ latency_ms = LATENCY_MS })
      local urls = {}
      for i = 1, 20 do urls[i] = emu.images .. (i == 7 and "missing.png" or ("sample.png?n=" .. i)) end
      local started = socket.gettime()
      local out = ngx_:post("/batch", { client = { appcode = "demo", endpoint = emu.endpoint },
        kind = "handwriting", urls = urls, concurrency = 5 })
      local took = socket.gettime() - started
      assert.equal(20, #out.outcomes)
      for i, o in ipairs(out.outcomes) do
        if i == 7 then assert.equal("api", o.error.kind) else assert.equal(1, o.result.ok) end
      end
      assert.same({ total = 20, ok = 19, failed = 1, billed = 19 }, {
        total = out.summary.total, ok = out.summary.ok, failed = out.summary.failed, billed = out.summary.billed })
      assert.equal(20, out.progress)
      assert.equal(20, out.stats.requests)
      local log = {}
      for _, e in ipairs(emu:requests()) do log[#log + 1] = e.status .. " " .. tostring(e.params and e.params.url) end
      assert.equal(19, emu:settled_ledger().total.billed, table.concat(log, "\n"))
      -- 20 calls, 5 at a time: 4 rounds of the latency; one at a time, 20.
      assert.is_true(took >= 4 * LATENCY_MS / 1000, "the batch took " .. took .. " s")
      assert.is_true(took < 10 * LATENCY_MS / 1000, "the batch took " .. took .. " s")
      local conns = emu:connections()
      assert.is_true(conns.http >= 1 and conns.http <= 5, cjson.encode(conns))
    end)

    it("an on_progress that raises stops the batch: the calls under way finish, the rest are cancelled", function()
      emu:settings({ latency_ms = 100 })
      local urls = {}
      for i = 1, 12 do urls[i] = emu.image .. "?n=" .. i end
      local out = ngx_:post("/batch", { client = { appcode = "demo", endpoint = emu.endpoint },
        kind = "recognize", urls = urls, concurrency = 3, raise_at = 4 })
      assert.equal("stop at 4", out.error)
      local s, ledger = out.stats, emu:settled_ledger()
      -- Every image is one call: finished (billed, as the ledger says) or
      -- cancelled before it was sent.
      assert.equal(12, s.requests)
      assert.equal(ledger.total.requests, s.attempts)
      assert.equal(ledger.total.billed, s.billed)
      assert.equal(0, s.unknown)
      assert.equal(12 - s.billed, s.not_billed)
      assert.equal(12 - s.billed, s.errors.cancelled)
      -- The two calls under way beside the fourth were finished, no more.
      assert.equal(6, s.billed)
      assert.equal(4, out.progress)
    end)

    it("uses a pooled connection again within idle_timeout, and not after it", function()
      for _, case in ipairs({ { idle = 10, same = true }, { idle = 1, same = false } }) do
        emu:reset()
        local out = ngx_:post("/case", { client = { appcode = "demo", endpoint = emu.endpoint,
          idle_timeout = case.idle }, kind = "recognize", url = emu.image, warm = "handwriting", pause = 1.3 })
        assert.equal(1, out.result.ok)
        assert.equal(1, out.result.attempts)
        local log = emu:requests()
        assert.equal(2, #log)
        assert.equal(case.same, log[1].connection == log[2].connection, "idle_timeout " .. case.idle)
      end
    end)

    it("keeps the connection alive across calls of a client", function()
      local urls = {}
      for i = 1, 30 do urls[i] = emu.image .. "?n=" .. i end
      local out = ngx_:post("/batch", { client = { appcode = "demo", endpoint = emu.endpoint },
        kind = "recognize", urls = urls, concurrency = 1 })
      assert.equal(30, out.summary.ok)
      assert.equal(1, emu:connections().http)
    end)
  end)

  describe("where nginx allows no socket", function()
    it("a call in a header filter raises, naming the phase and the way out", function()
      local r = http.request({ url = ngx_.url .. "/filter?endpoint=" .. urlencode(emu.endpoint) ..
        "&url=" .. urlencode(emu.image) })
      assert.equal(200, r.status)
      local e = r.headers["x-aliocr-error"]
      assert.matches("nginx does not allow sockets in the 'header_filter' phase", e, 1, true)
      assert.matches("ngx.timer.at", e, 1, true)
      assert.equal(0, emu:ledger().total.requests)
    end)

    it("the curl transport (a call, a batch), submit, poll and wait raise inside nginx", function()
      local base = { appcode = "demo", endpoint = emu.endpoint }
      local out = ngx_:post("/misuse", { client = { appcode = "demo", endpoint = emu.endpoint, transport = "curl" },
        call = "call", url = emu.image })
      assert.is_false(out.ok)
      assert.matches("the curl transport would block nginx's worker", out.error, 1, true)
      out = ngx_:post("/misuse", { client = { appcode = "demo", endpoint = emu.endpoint, transport = "curl" },
        call = "batch", url = emu.image })
      assert.is_false(out.ok)
      assert.matches("the curl transport would block nginx's worker", out.error, 1, true)
      out = ngx_:post("/misuse", { client = base, call = "submit", url = emu.image })
      assert.is_false(out.ok)
      assert.matches("inside nginx use batch", out.error, 1, true)
      out = ngx_:post("/misuse", { client = base, call = "poll" })
      assert.is_false(out.ok)
      assert.matches("poll and wait drive libcurl", out.error, 1, true)
      -- Issue 14, finding 17: wait too, and with the curl transport all three.
      out = ngx_:post("/misuse", { client = base, call = "wait" })
      assert.is_false(out.ok)
      assert.matches("poll and wait drive libcurl", out.error, 1, true)
      for _, call in ipairs({ "submit", "poll", "wait" }) do
        out = ngx_:post("/misuse", { client = { appcode = "demo", endpoint = emu.endpoint, transport = "curl" },
          call = call, url = emu.image })
        assert.is_false(out.ok)
        assert.matches("the curl transport would block nginx's worker", out.error, 1, true)
      end
      assert.equal(0, emu:ledger().total.requests)
    end)
  end)
end)
