-- The response table, the transport contract both transports return
-- (src/response.c), built from hand-made answers: through the nginx
-- transport's HTTP reader (reader:response) and core.transport_failure, the
-- same C builder the libcurl engine uses. No server.
local core = require("aliocr.core")
local decode = require("cjson").new().decode

local FIELDS = { status = true, headers = true, sent = true, too_large = true, error = true, message = true,
                 json = true, json_error = true, body = true }

local function read(raw, cap)
  local r = core.http_reader(cap or 1000)
  local state, name, msg = r:feed(raw)
  if state == "more" then state, name, msg = r:eof() end
  return r, state, name, msg
end

local function only_contract(t)
  for k in pairs(t) do assert.truthy(FIELDS[k], "field " .. tostring(k)) end
end

describe("the response table", function()
  it("a JSON answer: json (whole numbers integers), no body, only the X-Ca-* headers", function()
    local body = '{"ok":1.0,"data":"x"}'
    local r = read("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Ca-Request-Id: R1\r\n" ..
      "x-ca-extra: a\r\nX-CA-EXTRA: b\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body)
    local t = r:response(decode, true)
    only_contract(t)
    assert.same({ status = 200, sent = true, too_large = false, headers = { ["x-ca-request-id"] = "R1",
      ["x-ca-extra"] = "a, b" }, json = { ok = 1, data = "x" } }, t)
    if math.type then assert.equal("integer", math.type(t.json.ok)) end
  end)

  it("a body that is not JSON: json_error and the body", function()
    local t = read("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 6\r\n\r\n<html>"):response(decode, true)
    only_contract(t)
    assert.same({ 502, "<html>" }, { t.status, t.body })
    assert.matches("at character", t.json_error)
    assert.is_nil(t.json)
  end)

  it("an empty body: body \"\", nothing decoded", function()
    local r = read("HTTP/1.1 403 Forbidden\r\nX-Ca-Error-Code: A403IP\r\nContent-Length: 0\r\n\r\n")
    local t = r:response(decode, true)
    assert.same({ status = 403, sent = true, too_large = false, headers = { ["x-ca-error-code"] = "A403IP" },
      body = "" }, t)
  end)

  it("an answer over the cap: too_large, no error; the status and headers kept", function()
    local r, state, name = read("HTTP/1.1 200 OK\r\nX-Ca-Request-Id: R2\r\nContent-Length: 50\r\n\r\n" ..
      string.rep("x", 50), 10)
    assert.same({ nil, "too_large" }, { state, name })
    local t = r:response(decode, true)
    assert.same({ 200, true, "R2" }, { t.status, t.too_large, t.headers["x-ca-request-id"] })
    assert.is_nil(t.error)
    assert.is_nil(t.json)
  end)

  it("a failure after the status line: error and message, the status kept, headers once complete", function()
    local r, _, name, msg = read("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    assert.equal("PARTIAL_FILE", name)
    local t = r:response(decode, true, name, msg)
    only_contract(t)
    assert.same({ 200, "PARTIAL_FILE", msg, "abc" }, { t.status, t.error, t.message, t.body })
    r = read("HTTP/1.1 200 OK\r\nX-Ca-Request-Id: R3\r\n")
    t = r:response(decode, true, "RECV_ERROR", "cut in the head")
    assert.same({ 200, {} }, { t.status, t.headers })
  end)

  it("an answer with no header line at all (a fuzzer's find: no pointer arithmetic on NULL)", function()
    local r = read("HTTP/1.1 204 No Content\r\n\r\n")
    local status, headers = r:head()
    assert.same({ 204, {} }, { status, headers })
    assert.same({ status = 204, sent = true, too_large = false, headers = {}, body = "" }, r:response(decode, true))
  end)

  it("a refused resend: GOT_NOTHING, worded once for both transports", function()
    local r = core.http_reader(100)
    local t = r:response(decode, true, nil, nil, true)
    assert.same({ 0, true, "GOT_NOTHING" }, { t.status, t.sent, t.error })
    assert.equal("the kept-alive connection closed before any byte of the answer; the request was not sent again, " ..
      "since the gateway may have received it", t.message)
  end)

  it("no answer at all: core.transport_failure", function()
    local t = core.transport_failure("COULDNT_CONNECT", "connection refused", false)
    assert.same({ status = 0, sent = false, too_large = false, headers = {}, error = "COULDNT_CONNECT",
      message = "connection refused", body = "" }, t)
    assert.is_true(core.transport_failure("SEND_ERROR", "broken pipe", true).sent)
  end)
end)
