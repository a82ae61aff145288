-- How a response table (the transport contract, src/response.c) becomes an
-- error or a result, on hand-made responses: errors.classify's every branch
-- (kind, billing, retryability, code and the namespace of the code) and
-- result.build's shapes. No server.
local errors = require("aliocr.errors")
local result = require("aliocr.result")
local cjson = require("cjson")

local function response(t)
  local r = { status = 200, headers = {}, sent = true, too_large = false }
  for k, v in pairs(t) do r[k] = v end
  return r
end

describe("errors.classify", function()
  it("a whole JSON answer with ok = 1 is no error", function()
    assert.is_nil(errors.classify(response({ json = { ok = 1, msg = "m", data = "x" } })))
  end)

  it("a transport failure: billing unknown once sent, false when nothing was; retried only when not sent", function()
    local sent = errors.classify(response({ status = 0, error = "RECV_ERROR", message = "reset" }))
    assert.same({ "transport", nil, false, "RECV_ERROR", "transport", "reset" },
      { sent.kind, sent.billed, sent.retryable, sent.code, sent.code_source, sent.msg })
    local unsent = errors.classify(response({ status = 0, sent = false, error = "COULDNT_CONNECT",
      message = "refused" }))
    assert.same({ "transport", false, true }, { unsent.kind, unsent.billed, unsent.retryable })
    local timeout = errors.classify(response({ status = 0, error = "OPERATION_TIMEDOUT", message = "slow" }))
    assert.same({ "timeout", nil, false }, { timeout.kind, timeout.billed, timeout.retryable })
    -- A status line arrived: billed exactly when 2xx.
    local cut = errors.classify(response({ status = 200, error = "PARTIAL_FILE", message = "cut short" }))
    assert.same({ "transport", true, false }, { cut.kind, cut.billed, cut.retryable })
    local cut503 = errors.classify(response({ status = 503, error = "PARTIAL_FILE", message = "cut short" }))
    assert.same({ false, true }, { cut503.billed, cut503.retryable })
  end)

  it("never retries what a new attempt cannot mend", function()
    for _, code in ipairs({ "PEER_FAILED_VERIFICATION", "SSL_CACERT_BADFILE", "UNSUPPORTED_PROTOCOL",
                            "OUT_OF_MEMORY" }) do
      local e = errors.classify(response({ status = 0, sent = false, error = code, message = "x" }))
      assert.is_false(e.retryable, code)
    end
    local tls = errors.classify(response({ status = 0, sent = false, error = "SSL_CONNECT_ERROR",
      message = "error:0A00010B:SSL routines::wrong version number" }))
    assert.is_false(tls.retryable)
  end)

  it("the gateway's error code: its letter is the kind; code_source is gateway", function()
    local cases = {
      { "A403IP", 403, "auth", false }, { "B403QE", 403, "quota", false }, { "T429TL", 429, "throttled", true },
      { "T429ID", 429, "throttled", false }, { "I400NC", 400, "gateway", true }, { "X500ED", 500, "gateway", false },
      { "S503SU", 503, "gateway", true }, { "I403AA", 403, "auth", false },
    }
    for _, c in ipairs(cases) do
      local e = errors.classify(response({ status = c[2], headers = { ["x-ca-error-code"] = c[1] }, body = "" }))
      assert.same({ c[3], c[4], false, c[1], "gateway" },
        { e.kind, e.retryable, e.billed, e.code, e.code_source }, c[1])
    end
  end)

  it("a classic gateway message by its prefix, with no code", function()
    local cases = {
      { "Invalid AppCode `x`", "auth", false }, { "Quota Exhausted", "quota", false },
      { "Throttled by APP Flow Control", "throttled", true },
      { "Throttled by DOMAIN Flow Control", "throttled", false },
      { "Nonce Used", "gateway", true },
    }
    for _, c in ipairs(cases) do
      local e = errors.classify(response({ status = 403, headers = { ["x-ca-error-message"] = c[1] }, body = "" }))
      assert.same({ c[2], c[3], c[1] }, { e.kind, e.retryable, e.msg }, c[1])
      assert.is_nil(e.code)
      assert.is_nil(e.code_source)
    end
  end)

  it("the vendor's 666: an api error, not billed, its msg from the body", function()
    local e = errors.classify(response({ status = 666, json = { ok = 0, msg = "图片下载失败" } }))
    assert.same({ "api", false, false, "图片下载失败", 0 }, { e.kind, e.billed, e.retryable, e.msg, e.ok })
  end)

  it("a 2xx that is not usable: protocol errors, billed, with aliocr's codes", function()
    local bad = errors.classify(response({ json_error = "Expected value but found invalid token at character 1",
      body = "<html>" }))
    assert.same({ "protocol", true, "BAD_JSON", "aliocr" }, { bad.kind, bad.billed, bad.code, bad.code_source })
    local deep = errors.classify(response({ json_error = "Found too many nested data structures (65) at character 65",
      body = "[[[" }))
    assert.same({ "JSON_TOO_DEEP", "aliocr" }, { deep.code, deep.code_source })
    local empty = errors.classify(response({ body = "" }))
    assert.same({ "BAD_JSON", "the answer is empty" }, { empty.code, empty.msg })
    local not_ok = errors.classify(response({ json = { ok = 0, msg = "nope" } }))
    assert.same({ "protocol", true, "nope" }, { not_ok.kind, not_ok.billed, not_ok.msg })
    assert.is_nil(not_ok.code)
    local big = errors.classify(response({ too_large = true, body = "" }))
    assert.same({ "protocol", true, "RESPONSE_TOO_LARGE", "aliocr" },
      { big.kind, big.billed, big.code, big.code_source })
  end)

  it("an answer too large that is not 2xx: classified by its status and headers", function()
    local e = errors.classify(response({ status = 503, too_large = true, body = "" }))
    assert.same({ "http", false, true, "RESPONSE_TOO_LARGE", "aliocr" },
      { e.kind, e.billed, e.retryable, e.code, e.code_source })
    local g = errors.classify(response({ status = 403, too_large = true,
      headers = { ["x-ca-error-code"] = "A403IP" } }))
    assert.same({ "auth", "A403IP", "gateway" }, { g.kind, g.code, g.code_source })
  end)

  it("other statuses: http errors, retried for 429 and 5xx", function()
    for status, retry in pairs({ [429] = true, [500] = true, [502] = true, [503] = true, [504] = true,
                                 [400] = false, [404] = false, [301] = false }) do
      local e = errors.classify(response({ status = status, body = "" }))
      assert.same({ "http", false, retry }, { e.kind, e.billed, e.retryable }, tostring(status))
    end
  end)

  it("cancelled calls, and tostring as one line with no secret in it", function()
    local e = errors.cancelled("not sent: the client was closed", false, 0)
    assert.same({ "cancelled", false, false }, { e.kind, e.billed, e.retryable })
    assert.is_true(errors.is_error(e))
    assert.equal("aliocr cancelled error: not sent: the client was closed (not billed, 0 attempts)", tostring(e))
    local g = errors.classify(response({ status = 403, headers = { ["x-ca-error-code"] = "A403IP",
      ["x-ca-request-id"] = "R1" }, body = "" }))
    assert.equal("aliocr auth error: A403IP (HTTP 403, code A403IP, not billed, request R1)", tostring(g))
  end)
end)

describe("result.build", function()
  local function build(body) return result.build(body, { status = 200, headers = { ["x-ca-request-id"] = "R" } }) end

  it("data as one string: one line per newline, a CR before it dropped", function()
    local res = build({ ok = 1, msg = "m", data = "a\r\nb\nc" })
    assert.same({ { words = "a" }, { words = "b" }, { words = "c" } }, res.lines)
    assert.equal("a\r\nb\nc", res.text)
    assert.same({ 200, true, "R", 1 }, { res.status, res.billed, res.request_id, res.ok })
  end)

  it("data as {words} lines and as {position, words} lines; nulls and other elements skipped", function()
    local res = build({ ok = 1, data = { { words = "x" }, cjson.null, 3, { words = 7, position = { top = 1 } } } })
    assert.same({ { words = "x" }, { words = "7", position = { top = 1 } } }, res.lines)
    assert.equal("x\n7", res.text)
    local p = { top = 1, left = 2, width = 3, height = 4 }
    local line = { words = "w", position = p }
    res = build({ ok = 1, data = { line } })
    assert.equal(line, res.lines[1]) -- the element itself, not a copy
  end)

  it("the guide's `result` when `data` is missing or null", function()
    assert.equal("r", build({ ok = 1, data = cjson.null, result = "r" }).text)
    assert.equal("", build({ ok = 1 }).text)
  end)
end)
