-- The client's error objects against the emulator: every row of the README's
-- kinds table (kind, status, billed, retryable, code, ok/msg, request_id as
-- the emulator logged it, attempts, elapsed, tostring), in the classic and
-- the VPC error styles; retries (fail N times then succeed, never after a
-- billed answer, a fresh nonce and signature every attempt, the per-call
-- override, back-off); and billing that equals the emulator's ledger.
-- Secrets under every fault: spec/integration/security_spec.lua.
local emulator = require("helpers.emulator")
local socket = require("socket")
local aliocr = require("aliocr")
local util = require("helpers.util")
local slow = util.slow
local eventually, closed_port, header, NOTHING_LEFT = util.eventually, util.closed_port, util.header, util.NOTHING_LEFT

--- A client of emulator `emu`: APPCODE demo unless `o` says otherwise.
local function client_of(emu, o)
  local opts = { endpoint = emu.endpoint, retry_delay = 0.01 }
  for k, v in pairs(o or {}) do opts[k] = v end
  if not opts.appcode and not opts.app_key then opts.appcode = "demo" end
  return aliocr.new(opts)
end

local UUID = "^%x+%-%x+%-%x+%-%x+%-%x+$"

local function log_of(emu, n) return emu:log_of(n) end



local function statuses(log)
  local out = {}
  for i, e in ipairs(log) do out[i] = tonumber(e.status) or e.status end
  return out
end

--- Checks `res, err` as an error of the fields in `want`:
--   kind, status, billed (true/false/nil), retryable, code, msg or msg_match,
--   ok (default 0), attempts (default 1), request_id: "logged" (equals the
--   last request of `log`), or nil (none arrived).
local function check_error(res, err, want, log)
  assert.is_nil(res)
  assert.is_true(aliocr.is_error(err), "not an aliocr error: " .. tostring(err))
  assert.equal(want.kind, err.kind)
  assert.equal(want.status, err.status)
  if want.billed == nil then assert.is_nil(err.billed) else assert.equal(want.billed, err.billed) end
  assert.equal(want.retryable, err.retryable)
  if want.code == nil then assert.is_nil(err.code) else assert.equal(want.code, err.code) end
  assert.equal(want.ok or 0, err.ok)
  assert.is_string(err.msg)
  if want.msg then assert.equal(want.msg, err.msg) end
  if want.msg_match then assert.matches(want.msg_match, err.msg) end
  assert.equal(want.attempts or 1, err.attempts)
  assert.is_number(err.elapsed)
  assert.is_true(err.elapsed > 0)
  if want.request_id == "logged" then
    assert.is_string(err.request_id)
    assert.matches(UUID, err.request_id)
    assert.is_truthy(log and #log > 0, "no request was logged")
    assert.equal(log[#log].request_id, err.request_id)
  else
    assert.is_nil(err.request_id)
  end
  -- One line that names the kind and the billing.
  local line = tostring(err)
  assert.is_nil(line:find("\n", 1, true))
  assert.equal("aliocr " .. want.kind .. " error: ", line:sub(1, #("aliocr " .. want.kind .. " error: ")))
  if want.billed == true then
    assert.is_truthy(line:find("[(,] ?billed[,)]"), line)
    assert.is_nil(line:find("not billed", 1, true))
  elseif want.billed == false then
    assert.is_truthy(line:find("not billed", 1, true), line)
  else
    assert.is_truthy(line:find("billing unknown", 1, true), line)
  end
  local attempts = want.attempts or 1
  assert.is_truthy(line:find(attempts .. (attempts == 1 and " attempt)" or " attempts)"), 1, true), line)
  if err.status then assert.is_truthy(line:find("HTTP " .. err.status, 1, true), line) end
end

local function credential(emu, name)
  return emu:ledger().credentials[name] or {}
end

describe("aliocr client errors (classic gateway)", function()
  local emu

  setup(function()
    emu = emulator.start({
      "--port", "0", "--appcode", "demo", "--app-key", "key1:sec1",
    })
  end)

  teardown(function()
    assert.same(NOTHING_LEFT, emu:stop())
  end)

  before_each(function() emu:reset() end)

  local function client(o) return client_of(emu, o) end

  describe("auth", function()
    it("a bad AppCode: 400 Invalid AppCode, not billed, not retried", function()
      local c = client({ appcode = "nope" })
      local res, err = c:recognize(emu.image)
      local log = emu:requests()
      assert.equal(1, #log)
      check_error(res, err, {
        kind = "auth", status = 400, billed = false, retryable = false,
        msg = "Invalid AppCode `not exists`", request_id = "logged",
      }, log)
      assert.equal(0, emu:ledger().total.billed)
      c:close()
    end)

    it("a wrong AppSecret in signature mode: 400 Invalid Signature, counted for the key, not billed", function()
      local c = client({ app_key = "key1", app_secret = "not-the-secret" })
      local res, err = c:recognize(emu.image)
      local log = emu:requests()
      assert.equal(1, #log)
      check_error(res, err, {
        kind = "auth", status = 400, billed = false, retryable = false,
        msg_match = "^Invalid Signature, Server StringToSign:POST#", request_id = "logged",
      }, log)
      local k = credential(emu, "key1")
      assert.equal(1, k.requests)
      assert.equal(0, k.billed)
      assert.equal(1, k.not_billed)
      c:close()
    end)

    it("an unknown AppKey: 400 Invalid AppKey", function()
      local c = client({ app_key = "key-unknown", app_secret = "whatever" })
      local res, err = c:handwriting(emu.image)
      local log = emu:requests()
      assert.equal(1, #log)
      check_error(res, err, {
        kind = "auth", status = 400, billed = false, retryable = false,
        msg = "Invalid AppKey", request_id = "logged",
      }, log)
      c:close()
    end)

    it("Unauthorized (the unauthorized fault): 403, not retried", function()
      emu:fault({ mode = "unauthorized" })
      local c = client()
      local res, err = c:recognize(emu.image)
      local log = emu:requests()
      assert.equal(1, #log)
      check_error(res, err, {
        kind = "auth", status = 403, billed = false, retryable = false,
        msg = "Unauthorized", request_id = "logged",
      }, log)
      c:close()
    end)
  end)

  describe("quota", function()
    it("the quota used up (settings quota = 1): 403 Quota Exhausted, not billed, not retried", function()
      emu:settings({ quota = 1 })
      local c = client()
      local res = assert(c:recognize(emu.image))
      assert.equal(1, res.attempts)
      local res2, err = c:recognize(emu.image)
      local log = emu:requests()
      assert.equal(2, #log)
      check_error(res2, err, {
        kind = "quota", status = 403, billed = false, retryable = false,
        msg = "Quota Exhausted", request_id = "logged",
      }, log)
      local d = credential(emu, "demo")
      assert.equal(1, d.billed)
      assert.equal(1, d.not_billed)
      assert.equal(0, d.quota_remaining)
      c:close()
    end)

    it("the quota_exhausted, quota_expired and user_arrears faults", function()
      local c = client()
      for _, case in ipairs({
        { "quota_exhausted", "Quota Exhausted" }, { "quota_expired", "Quota Expired" },
        { "user_arrears", "User Arrears" },
      }) do
        emu:reset()
        emu:fault({ mode = case[1] })
        local res, err = c:recognize(emu.image)
        local log = emu:requests()
        assert.equal(1, #log)
        check_error(res, err, {
          kind = "quota", status = 403, billed = false, retryable = false,
          msg = case[2], request_id = "logged",
        }, log)
      end
      c:close()
    end)
  end)

  describe("throttled", function()
    it("throttled_app once: retried, then the answer", function()
      emu:fault({ mode = "throttled_app", times = 1 })
      local c = client()
      local res = assert(c:recognize(emu.image))
      assert.equal(2, res.attempts)
      local log = emu:requests()
      assert.same({ 403, 200 }, statuses(log))
      assert.equal(log[2].request_id, res.request_id)
      local d = credential(emu, "demo")
      assert.equal(1, d.billed)
      assert.equal(1, d.not_billed)
      c:close()
    end)

    it("throttled_app with retries = 0: the error, retryable", function()
      emu:fault({ mode = "throttled_app" })
      local c = client({ retries = 0 })
      local res, err = c:recognize(emu.image)
      local log = emu:requests()
      assert.equal(1, #log)
      check_error(res, err, {
        kind = "throttled", status = 403, billed = false, retryable = true,
        msg = "Throttled by APP Flow Control", request_id = "logged",
      }, log)
      c:close()
    end)

    it("throttled_user every time: retried retries times, then the error", function()
      emu:fault({ mode = "throttled_user" })
      local c = client({ retries = 2 })
      local res, err = c:recognize(emu.image)
      local log = emu:requests()
      assert.equal(3, #log)
      check_error(res, err, {
        kind = "throttled", status = 403, billed = false, retryable = true, attempts = 3,
        msg = "Throttled by USER Flow Control", request_id = "logged",
      }, log)
      c:close()
    end)

    it("throttled_domain (a daily cap): not retryable, not retried", function()
      emu:fault({ mode = "throttled_domain" })
      local c = client({ retries = 2 })
      local res, err = c:recognize(emu.image)
      local log = emu:requests()
      assert.equal(1, #log)
      check_error(res, err, {
        kind = "throttled", status = 403, billed = false, retryable = false,
        msg = "Throttled by DOMAIN Flow Control", request_id = "logged",
      }, log)
      c:close()
    end)
  end)

  describe("gateway", function()
    it("5xx (internal_error, service_unavailable, async_service): retryable and retried", function()
      local c = client({ retries = 2 })
      for _, case in ipairs({
        { "internal_error", 500, "Internal Error" }, { "service_unavailable", 503, "Service Unavailable" },
        { "async_service", 504, "Async Service" },
      }) do
        emu:reset()
        emu:fault({ mode = case[1] })
        local res, err = c:recognize(emu.image)
        local log = emu:requests()
        assert.same({ case[2], case[2], case[2] }, statuses(log))
        check_error(res, err, {
          kind = "gateway", status = case[2], billed = false, retryable = true, attempts = 3,
          msg = case[3], request_id = "logged",
        }, log)
        assert.equal(0, credential(emu, "demo").billed)
      end
      c:close()
    end)

    it("Invalid Url (a wrong path in urls): 400, not retried", function()
      local c = client({ urls = { advanced = emu.endpoint .. "/ocrservice/nope" } })
      local res, err = c:recognize(emu.image)
      local log = emu:requests()
      assert.equal(1, #log)
      assert.equal("/ocrservice/nope", log[1].path)
      check_error(res, err, {
        kind = "gateway", status = 400, billed = false, retryable = false,
        msg = "Invalid Url", request_id = "logged",
      }, log)
      assert.equal(0, emu:ledger().total.requests)
      c:close()
    end)

    it("Nonce Used: retryable (a new nonce is used), and retried", function()
      emu:fault({ mode = "nonce_used" })
      local c = client({ app_key = "key1", app_secret = "sec1", retries = 1 })
      local res, err = c:recognize(emu.image)
      local log = emu:requests()
      assert.equal(2, #log)
      check_error(res, err, {
        kind = "gateway", status = 400, billed = false, retryable = true, attempts = 2,
        msg = "Nonce Used", request_id = "logged",
      }, log)
      emu:reset()
      emu:fault({ mode = "nonce_used", times = 1 })
      res = assert(c:recognize(emu.image))
      assert.equal(2, res.attempts)
      c:close()
    end)

    it("Timestamp Expired: 400, not retryable", function()
      emu:fault({ mode = "timestamp_expired" })
      local c = client({ app_key = "key1", app_secret = "sec1" })
      local res, err = c:recognize(emu.image)
      local log = emu:requests()
      assert.equal(1, #log)
      check_error(res, err, {
        kind = "gateway", status = 400, billed = false, retryable = false,
        msg = "Timestamp Expired", request_id = "logged",
      }, log)
      c:close()
    end)

    it("in the VPC style set by POST /settings: the code is kept and classifies the same", function()
      emu:settings({ errors = "vpc" })
      local c = client({ retries = 0 })
      emu:fault({ mode = "quota_exhausted", times = 1 })
      local res, err = c:recognize(emu.image)
      local log = emu:requests()
      check_error(res, err, {
        kind = "quota", status = 403, billed = false, retryable = false, code = "B403MQ",
        msg = "Api Market Subscription quota exhausted", request_id = "logged",
      }, log)
      emu:fault({ mode = "internal_error", times = 1 })
      res, err = c:recognize(emu.image)
      log = emu:requests()
      check_error(res, err, {
        kind = "gateway", status = 500, billed = false, retryable = true, code = "X500ER",
        msg = "Internal Error", request_id = "logged",
      }, log)
      c:close()
    end)
  end)

  describe("api", function()
    it("HTTP 666 for a missing image and for a file that is not an image: not billed, not retried", function()
      local c = client({ retries = 2 })
      local res, err = c:recognize(emu.images .. "missing.png")
      local log = emu:requests()
      assert.equal(1, #log)
      check_error(res, err, {
        kind = "api", status = 666, billed = false, retryable = false,
        msg = "图片下载失败：HTTP status 404", request_id = "logged",
      }, log)
      res, err = c:handwriting(emu.images .. "not-an-image.txt")
      log = emu:requests()
      assert.equal(2, #log)
      check_error(res, err, {
        kind = "api", status = 666, billed = false, retryable = false,
        msg = "图片格式错误，仅支持jpg、png、bmp、gif", request_id = "logged",
      }, log)
      assert.equal(0, credential(emu, "demo").billed)
      c:close()
    end)
  end)

  describe("protocol", function()
    it("a 200 body that is not JSON: BAD_JSON, billed, not retried", function()
      emu:fault({ mode = "not_json" })
      local c = client({ retries = 2 })
      local res, err = c:recognize(emu.image)
      local log = emu:requests()
      assert.equal(1, #log)
      check_error(res, err, {
        kind = "protocol", status = 200, billed = true, retryable = false, code = "BAD_JSON",
        msg_match = "^the answer is not JSON", request_id = "logged",
      }, log)
      assert.equal(1, credential(emu, "demo").billed)
      c:close()
    end)

    it("a 200 with ok 0: billed, ok and msg from the body", function()
      emu:fault({ mode = "ok0", msg = "识别失败了" })
      local c = client()
      local res, err = c:recognize(emu.image)
      local log = emu:requests()
      assert.equal(1, #log)
      check_error(res, err, {
        kind = "protocol", status = 200, billed = true, retryable = false, ok = 0,
        msg = "识别失败了", request_id = "logged",
      }, log)
      c:close()
    end)

    it("a 200 with JSON that is not an object", function()
      emu:fault({ mode = "respond", status = 200, body = '"just a string"' })
      local c = client()
      local res, err = c:recognize(emu.image)
      check_error(res, err, {
        kind = "protocol", status = 200, billed = true, retryable = false, code = "BAD_JSON",
        msg = "the answer is not a JSON object", request_id = "logged",
      }, emu:requests())
      c:close()
    end)

    it("an answer over max_response_bytes, streamed (chunked): RESPONSE_TOO_LARGE, billed", function()
      emu:fault({ mode = "huge", bytes = 100000, chunked = true })
      local c = client({ max_response_bytes = 1000 })
      local res, err = c:recognize(emu.image)
      local log = emu:requests()
      assert.equal(1, #log)
      check_error(res, err, {
        kind = "protocol", status = 200, billed = true, retryable = false, code = "RESPONSE_TOO_LARGE",
        request_id = "logged",
      }, log)
      assert.equal(1, credential(emu, "demo").billed)
      c:close()
    end)

    -- The emulator sends X-Ca-Request-Id after Content-Length: the core must
    -- keep reading the headers before it abandons the body.
    it("an answer over max_response_bytes by its Content-Length: RESPONSE_TOO_LARGE, billed, request id kept",
      function()
        emu:fault({ mode = "huge", bytes = 100000 })
        local c = client({ max_response_bytes = 1000 })
        local res, err = c:recognize(emu.image)
        local log = emu:requests()
        assert.equal(1, #log)
        assert.is_true(aliocr.is_error(err))
        assert.equal("RESPONSE_TOO_LARGE", err.code)
        assert.is_true(err.billed)
        check_error(res, err, {
          kind = "protocol", status = 200, billed = true, retryable = false, code = "RESPONSE_TOO_LARGE",
          request_id = "logged",
        }, log)
        c:close()
      end)

    it("JSON deeper than json_max_depth: refused, billed", function()
      local deep = '{"ok":1,"msg":"x","data":' .. string.rep("[", 10) .. '"w"' .. string.rep("]", 10) .. "}"
      emu:fault({ mode = "respond", status = 200, body = deep })
      local c = client({ json_max_depth = 5 })
      local res, err = c:recognize(emu.image)
      local log = emu:requests()
      assert.equal(1, #log)
      check_error(res, err, {
        kind = "protocol", status = 200, billed = true, retryable = false, code = "JSON_TOO_DEEP",
        msg_match = "json_max_depth", request_id = "logged",
      }, log)
      -- The same body within the default depth is a result.
      local c2 = client()
      local ok = assert(c2:recognize(emu.image))
      assert.equal(1, ok.ok)
      c:close()
      c2:close()
    end)

    it("an empty 200 body: billed", function()
      emu:fault({ mode = "respond", status = 200, body = "" })
      local c = client()
      local res, err = c:recognize(emu.image)
      local log = emu:requests()
      assert.equal(1, #log)
      check_error(res, err, {
        kind = "protocol", status = 200, billed = true, retryable = false, code = "BAD_JSON",
        msg = "the answer is empty", request_id = "logged",
      }, log)
      c:close()
    end)
  end)

  describe("http", function()
    it("an HTML 502 with no gateway header: retryable, retried", function()
      emu:fault({ mode = "html" })
      local c = client({ retries = 2 })
      local res, err = c:recognize(emu.image)
      local log = emu:requests()
      assert.same({ 502, 502, 502 }, statuses(log))
      check_error(res, err, {
        kind = "http", status = 502, billed = false, retryable = true, attempts = 3,
        msg = "HTTP 502", request_id = "logged",
      }, log)
      emu:reset()
      emu:fault({ mode = "respond", status = 429, body = "slow down", content_type = "text/plain", times = 1 })
      res = assert(c:recognize(emu.image))
      assert.equal(2, res.attempts)
      c:close()
    end)

    it("a 302 with a Location is not followed", function()
      emu:fault({ mode = "respond", status = 302, body = "", headers = { Location = emu.handwriting } })
      local c = client({ retries = 2 })
      local res, err = c:recognize(emu.image)
      local log = emu:requests()
      assert.equal(1, #log)
      assert.equal("advanced", log[1].api)
      check_error(res, err, {
        kind = "http", status = 302, billed = false, retryable = false,
        msg = "HTTP 302", request_id = "logged",
      }, log)
      c:close()
    end)

    it("a 418 is not retried", function()
      emu:fault({ mode = "respond", status = 418, body = "I'm a teapot", content_type = "text/plain" })
      local c = client({ retries = 2 })
      local res, err = c:recognize(emu.image)
      local log = emu:requests()
      assert.equal(1, #log)
      check_error(res, err, {
        kind = "http", status = 418, billed = false, retryable = false,
        msg = "HTTP 418", request_id = "logged",
      }, log)
      c:close()
    end)
  end)

  describe("timeout", function()
    it("no headers in time: billing unknown, not retried by default", function()
      emu:fault({ mode = "stall_headers", ms = 600, ["then"] = "close" })
      local c = client({ timeout = 0.2, retries = 2 })
      local res, err = c:recognize(emu.image)
      check_error(res, err, {
        kind = "timeout", status = nil, billed = nil, retryable = false, code = "OPERATION_TIMEDOUT",
        request_id = nil,
      })
      assert.is_true(err.elapsed >= 0.19)
      local log = log_of(emu, 1)
      socket.sleep(0.2)
      assert.equal(1, #emu:requests())
      assert.equal("stall_headers", log[1].fault)
      c:close()
    end)

    it("no headers in time with retry_unknown = true: retried", function()
      emu:fault({ mode = "stall_headers", ms = 500, ["then"] = "close" })
      local c = client({ timeout = 0.15, retries = 1, retry_unknown = true })
      local res, err = c:recognize(emu.image)
      check_error(res, err, {
        kind = "timeout", status = nil, billed = nil, retryable = true, attempts = 2,
        code = "OPERATION_TIMEDOUT", request_id = nil,
      })
      assert.equal(2, #log_of(emu, 2))
      c:close()
    end)

    it("the status arrived, the body stalled: billed, not retried even with retry_unknown", function()
      emu:fault({ mode = "stall_body", ms = 600 })
      local c = client({ timeout = 0.2, retries = 2, retry_unknown = true })
      local res, err = c:recognize(emu.image)
      local log = log_of(emu, 1)
      assert.equal(1, #log)
      check_error(res, err, {
        kind = "timeout", status = 200, billed = true, retryable = false, code = "OPERATION_TIMEDOUT",
        request_id = "logged",
      }, log)
      assert.is_true(log[1].billed)
      c:close()
    end)
  end)

  describe("transport", function()
    it("connection refused: not billed, retried retries times", function()
      local c = client({ endpoint = "http://127.0.0.1:" .. closed_port(), retries = 2 })
      local res, err = c:recognize(emu.image)
      check_error(res, err, {
        kind = "transport", status = nil, billed = false, retryable = true, attempts = 3,
        code = "COULDNT_CONNECT", request_id = nil,
      })
      local s = c:stats()
      assert.equal(1, s.requests)
      assert.equal(3, s.attempts)
      assert.equal(1, s.not_billed)
      c:close()
    end)

    it("a reset before the headers, on a fresh client: billing unknown, not retried", function()
      emu:fault({ mode = "reset_before_headers" })
      local c = client({ retries = 2 })
      local res, err = c:recognize(emu.image)
      local log = emu:requests()
      assert.equal(1, #log)
      check_error(res, err, {
        kind = "transport", status = nil, billed = nil, retryable = false, code = "RECV_ERROR",
        request_id = nil,
      })
      c:close()
    end)

    -- libcurl would send the request again by itself on a new connection;
    -- the gateway may have received the first, so the engine refuses that.
    for _, case in ipairs({
      { "a reset before the headers", { mode = "reset_before_headers", times = 1 }, 444 },
      { "a close after holding the request", { mode = "stall_headers", ms = 50, ["then"] = "close", times = 1 }, 444 },
    }) do
      it(case[1] .. " on a reused connection: not sent again, billing unknown, not retried", function()
        local c = client({ retries = 2 })
        assert(c:recognize(emu.image))
        emu:fault(case[2])
        local res, err = c:recognize(emu.image)
        local log = emu:requests()
        check_error(res, err, {
          kind = "transport", status = nil, billed = nil, retryable = false, attempts = 1, code = "GOT_NOTHING",
          request_id = nil,
        })
        assert.matches("not sent again", err.msg, 1, true)
        assert.same({ 200, case[3] }, statuses(log))
        local s = c:stats()
        assert.equal(#log, s.attempts)
        assert.equal(1, s.billed)
        assert.equal(1, s.unknown)
        assert.equal(1, credential(emu, "demo").billed)
        c:close()
      end)
    end

    it("the same with retry_unknown: sent again as a counted attempt, with a new nonce", function()
      local c = client({ app_key = "key1", app_secret = "sec1", retries = 1,
        retry_unknown = true })
      assert(c:recognize(emu.image))
      emu:fault({ mode = "reset_before_headers", times = 1 })
      local res = assert(c:recognize(emu.image))
      assert.equal(2, res.attempts)
      local log = emu:requests()
      assert.same({ 200, 444, 200 }, statuses(log))
      assert.are_not.equal(util.header(log[2], "X-Ca-Nonce"), util.header(log[3], "X-Ca-Nonce"))
      assert.equal(3, c:stats().attempts)
      assert.equal(2, c:stats().billed)
      c:close()
    end)

    it("a reset after the headers: billed, not retried even with retry_unknown", function()
      emu:fault({ mode = "reset_after_headers" })
      local c = client({ retries = 2, retry_unknown = true })
      local res, err = c:recognize(emu.image)
      local log = emu:requests()
      assert.equal(1, #log)
      check_error(res, err, {
        kind = "transport", status = 200, billed = true, retryable = false, code = "RECV_ERROR",
        request_id = "logged",
      }, log)
      assert.equal(1, credential(emu, "demo").billed)
      c:close()
    end)

    it("a cut-short body: billed, not retried", function()
      emu:fault({ mode = "truncate" })
      local c = client({ retries = 2, retry_unknown = true })
      local res, err = c:handwriting(emu.image)
      local log = emu:requests()
      assert.equal(1, #log)
      check_error(res, err, {
        kind = "transport", status = 200, billed = true, retryable = false, code = "PARTIAL_FILE",
        request_id = "logged",
      }, log)
      c:close()
    end)
  end)

  describe("retries", function()
    it("fail twice, then succeed: attempts 3, one bill", function()
      emu:fault({ mode = "service_unavailable", times = 2 })
      local c = client()
      local res = assert(c:recognize(emu.image))
      assert.equal(3, res.attempts)
      assert.is_true(res.elapsed > 0)
      local log = emu:requests()
      assert.same({ 503, 503, 200 }, statuses(log))
      assert.equal(log[3].request_id, res.request_id)
      local d = credential(emu, "demo")
      assert.same({ 3, 1, 2 }, { d.requests, d.billed, d.not_billed })
      local s = c:stats()
      assert.same({ 1, 3, 1, 0, 0 }, { s.requests, s.attempts, s.billed, s.not_billed, s.unknown })
      c:close()
    end)

    it("never after a billed answer", function()
      local c = client({ retries = 5, retry_unknown = true })
      for _, mode in ipairs({ "ok0", "not_json", "reset_after_headers", "truncate" }) do
        emu:reset()
        emu:fault({ mode = mode })
        local res, err = c:recognize(emu.image)
        assert.is_nil(res)
        assert.is_true(err.billed, mode)
        assert.equal(1, err.attempts, mode)
        assert.equal(1, #emu:requests(), mode)
        local d = credential(emu, "demo")
        assert.same({ 1, 1 }, { d.requests, d.billed }, mode)
      end
      c:close()
    end)

    it("a fresh nonce and signature on every attempt in signature mode", function()
      emu:fault({ mode = "service_unavailable", times = 2 })
      local c = client({ app_key = "key1", app_secret = "sec1" })
      local res = assert(c:recognize(emu.image))
      assert.equal(3, res.attempts)
      local log = emu:requests()
      -- 503 comes from a fault, which applies only past the signature check.
      assert.same({ 503, 503, 200 }, statuses(log))
      local nonces, sigs = {}, {}
      for _, e in ipairs(log) do
        assert.equal("key1", e.credential)
        local nonce, sig = header(e, "X-Ca-Nonce"), header(e, "X-Ca-Signature")
        assert.is_string(nonce)
        assert.is_string(sig)
        assert.is_nil(nonces[nonce], "nonce used twice: " .. nonce)
        assert.is_nil(sigs[sig], "signature used twice: " .. sig)
        nonces[nonce], sigs[sig] = true, true
      end
      local k = credential(emu, "key1")
      assert.same({ 3, 1, 2 }, { k.requests, k.billed, k.not_billed })
      c:close()
    end)

    it("the call's retries override the client's", function()
      emu:fault({ mode = "service_unavailable" })
      local c = client({ retries = 0 })
      local _, err = c:recognize(emu.image, { retries = 2 })
      assert.equal(3, err.attempts)
      assert.equal(3, #emu:requests())
      c:close()
      emu:reset()
      emu:fault({ mode = "service_unavailable" })
      c = client({ retries = 3 })
      _, err = c:recognize(emu.image, { retries = 0 })
      assert.equal(1, err.attempts)
      assert.equal(1, #emu:requests())
      _, err = c:recognize(emu.image)
      assert.equal(4, err.attempts)
      assert.equal(5, #emu:requests())
      c:close()
    end)

    -- The client draws its jitter from math.random: a known seed gives known
    -- waits, up to retry_delay * 2^(n-1) for retry n (full jitter).
    local function seed_with_high_draws()
      for seed = 1, 100000 do
        math.randomseed(seed)
        local r1, r2 = math.random(), math.random()
        if r1 > 0.7 and r2 > 0.85 then return seed, r1, r2 end
      end
      error("no seed found")
    end

    it("back-off grows: retry n waits up to retry_delay * 2^(n-1)", function()
      emu:fault({ mode = "service_unavailable" })
      local c = client({ retry_delay = 0.1, retries = 2 })
      local seed, r1, r2 = seed_with_high_draws()
      local slept = r1 * 0.1 + r2 * 0.2 -- > 0.2: more than two waits capped at retry_delay
      math.randomseed(seed)
      local _, err = c:recognize(emu.image)
      math.randomseed(os.time())
      assert.equal(3, err.attempts)
      assert.is_true(err.elapsed >= slept, ("elapsed %.3f < %.3f"):format(err.elapsed, slept))
      assert.is_true(err.elapsed < slow(slept + 0.25), ("elapsed %.3f"):format(err.elapsed))
      assert.is_true(err.elapsed < slow(0.1 + 0.2 + 0.25))
      c:close()
    end)

    it("back-off is capped by retry_max_delay", function()
      emu:fault({ mode = "service_unavailable" })
      local c = client({ retry_delay = 0.1, retry_max_delay = 0.05, retries = 2 })
      local seed, r1, r2 = seed_with_high_draws()
      math.randomseed(seed)
      local _, err = c:recognize(emu.image)
      math.randomseed(os.time())
      assert.equal(3, err.attempts)
      local slept = (r1 + r2) * 0.05
      assert.is_true(err.elapsed >= slept)
      assert.is_true(err.elapsed < slow(0.19), ("elapsed %.3f"):format(err.elapsed))
      c:close()
    end)
  end)

  describe("billing", function()
    it("stats() after a mixed sequence equals the ledger", function()
      local c = client({ retries = 1 })
      local outcomes = {}
      local function call(fault, url, opts, api)
        if fault then emu:fault(fault) end
        local res, err = c[api or "recognize"](c, url or emu.image, opts)
        outcomes[#outcomes + 1] = res and "ok" or err.kind
      end
      call(nil)                                                        -- billed, 1 attempt
      call(nil, emu.images .. "missing.png")                           -- api, not billed
      call({ mode = "ok0", times = 1 })                                -- protocol, billed
      call({ mode = "service_unavailable", times = 1 })                -- ok after 2 attempts
      call({ mode = "internal_error", times = 2 })                     -- gateway, 2 attempts
      call({ mode = "stall_headers", ms = 500, ["then"] = "close", times = 1 }, nil, { timeout = 0.15 })
      call({ mode = "not_json", times = 1 })                           -- protocol, billed
      call({ mode = "html", times = 1 }, nil, { retries = 0 })         -- http, not billed
      call({ mode = "reset_after_headers", times = 1 })                -- transport, billed
      call(nil, nil, nil, "handwriting")                               -- billed
      call({ mode = "quota_exhausted", times = 1 })                    -- quota, not billed
      assert.same({ "ok", "api", "protocol", "ok", "gateway", "timeout", "protocol", "http",
                    "transport", "ok", "quota" }, outcomes)
      local s = c:stats()
      assert.equal(11, s.requests)
      assert.equal(13, s.attempts)
      assert.equal(6, s.billed)
      assert.equal(4, s.not_billed)
      assert.equal(1, s.unknown)
      assert.same({ api = 1, protocol = 2, gateway = 1, timeout = 1, http = 1, transport = 1, quota = 1 },
        s.errors)
      -- The stalled request is settled when its stall is over.
      local d = eventually(function()
        local x = credential(emu, "demo")
        if x.requests == 13 then return x end
      end) or credential(emu, "demo")
      assert.equal(13, d.requests)
      assert.equal(s.billed, d.billed)
      assert.equal(s.attempts - s.billed, d.not_billed)
      assert.equal(13, #emu:requests())
      c:close()
    end)
  end)
end)

describe("aliocr client errors (VPC gateway, --errors vpc --quota 1)", function()
  local emu

  setup(function()
    emu = emulator.start({
      "--port", "0", "--errors", "vpc", "--quota", "1", "--appcode", "demo", "--app-key", "key1:sec1",
    })
  end)

  teardown(function()
    assert.same(NOTHING_LEFT, emu:stop())
  end)

  before_each(function() emu:reset() end)

  local function client(o) return client_of(emu, o) end

  --- One call with fault `fault` (if any) by a client of options `o`;
  -- checks the error against `want` and the request log.
  local function expect(fault, o, want, url)
    if fault then emu:fault(fault) end
    local c = client(o)
    local res, err = c:recognize(url or emu.image)
    local log = emu:requests()
    assert.equal(want.attempts or 1, #log)
    check_error(res, err, want, log)
    c:close()
    return err
  end

  it("A401AC: a bad AppCode is auth", function()
    expect(nil, { appcode = "nope" }, {
      kind = "auth", status = 401, billed = false, retryable = false, code = "A401AC",
      msg = "Invalid AppCode `not exists`", request_id = "logged",
    })
  end)

  it("A403IS and A400IK: a wrong AppSecret and an unknown AppKey are auth", function()
    expect(nil, { app_key = "key1", app_secret = "wrong" }, {
      kind = "auth", status = 403, billed = false, retryable = false, code = "A403IS",
      msg_match = "^Invalid Signature", request_id = "logged",
    })
    emu:reset()
    expect(nil, { app_key = "nokey", app_secret = "wrong" }, {
      kind = "auth", status = 400, billed = false, retryable = false, code = "A400IK",
      msg = "Invalid AppKey", request_id = "logged",
    })
  end)

  it("I403AA: Unauthorized is auth", function()
    expect({ mode = "unauthorized" }, nil, {
      kind = "auth", status = 403, billed = false, retryable = false, code = "I403AA",
      msg = "Unauthorized", request_id = "logged",
    })
  end)

  it("B403MQ: the quota of --quota 1 used up is quota", function()
    local c = client()
    assert(c:recognize(emu.image))
    local res, err = c:recognize(emu.image)
    local log = emu:requests()
    assert.equal(2, #log)
    check_error(res, err, {
      kind = "quota", status = 403, billed = false, retryable = false, code = "B403MQ",
      msg = "Api Market Subscription quota exhausted", request_id = "logged",
    }, log)
    assert.equal(1, emu:ledger().credentials.demo.billed)
    c:close()
  end)

  it("T429PA: throttled, retryable; retried then the answer", function()
    expect({ mode = "throttled_app" }, { retries = 0 }, {
      kind = "throttled", status = 429, billed = false, retryable = true, code = "T429PA",
      msg = "Throttled by APP Flow Control", request_id = "logged",
    })
    emu:reset()
    emu:fault({ mode = "throttled_app", times = 1 })
    local c = client()
    local res = assert(c:recognize(emu.image))
    assert.equal(2, res.attempts)
    c:close()
  end)

  -- The VPC code of the daily DOMAIN limit is no more retryable than the
  -- classic message.
  it("T429ID: the DOMAIN limit is throttled and not retryable, as in the classic style", function()
    expect({ mode = "throttled_domain" }, { retries = 2 }, {
      kind = "throttled", status = 429, billed = false, retryable = false, code = "T429ID",
      msg = "Throttled by DOMAIN Flow Control", request_id = "logged",
    })
  end)

  it("X500ER, D503BB, D504TO: gateway, retryable and retried", function()
    for _, case in ipairs({
      { "internal_error", 500, "X500ER", "Internal Error" },
      { "service_unavailable", 503, "D503BB", "Service Busy" },
      { "async_service", 504, "D504TO", "Backend service request timeout" },
    }) do
      emu:reset()
      expect({ mode = case[1] }, { retries = 2 }, {
        kind = "gateway", status = case[2], billed = false, retryable = true, attempts = 3,
        code = case[3], msg = case[4], request_id = "logged",
      })
    end
  end)

  it("I404NF: a wrong path is gateway, not retried", function()
    local c = client({ urls = { advanced = emu.endpoint .. "/ocrservice/nope" }, retries = 2 })
    local res, err = c:recognize(emu.image)
    local log = emu:requests()
    assert.equal(1, #log)
    check_error(res, err, {
      kind = "gateway", status = 404, billed = false, retryable = false, code = "I404NF",
      msg = "API not found with `POST /ocrservice/nope`", request_id = "logged",
    }, log)
    c:close()
  end)

  it("I400NC: Nonce Used is gateway, retryable", function()
    expect({ mode = "nonce_used" }, { app_key = "key1", app_secret = "sec1", retries = 1 }, {
      kind = "gateway", status = 400, billed = false, retryable = true, attempts = 2, code = "I400NC",
      msg = "Nonce Used", request_id = "logged",
    })
  end)

  it("I400HD: Timestamp Expired is gateway, not retryable", function()
    expect({ mode = "timestamp_expired" }, { app_key = "key1", app_secret = "sec1", retries = 2 }, {
      kind = "gateway", status = 400, billed = false, retryable = false, code = "I400HD",
      msg = "Invalid Header `X-Ca-Timestamp` Timestamp Expired", request_id = "logged",
    })
  end)

  it("the vendor's 666 has no gateway code and is api", function()
    expect(nil, nil, {
      kind = "api", status = 666, billed = false, retryable = false,
      msg = "图片下载失败：HTTP status 404", request_id = "logged",
    }, emu.images .. "missing.png")
  end)
end)
