-- Every misbehaviour the emulator offers, as rows for the fault matrix
-- (spec/integration/fault_matrix_spec.lua) and the secrets checks
-- (spec/integration/security_spec.lua): each fault mode, each gateway error in both
-- error styles, the gateway's own checks, a refused connection; with what
-- a call must give under each, as the gateway reference says.
local util = require("helpers.util")

local slow = util.slow

local M = {}

-- What a failed call must be: kind, status, billed (true, false or
-- "unknown"), retryable, code (nil: none; a table: any of those), attempts
-- (the client retries once: a retryable failure that persists makes 2).
function M.failure(kind, status, billed, retryable, code)
  return { kind = kind, status = status, billed = billed, retryable = retryable, code = code,
    attempts = retryable and 2 or 1 }
end
M.OK = { ok = true }
local OK = M.OK

-- The gateway's errors, by their name in the emulator, as the reference
-- (../shared/reference/aliyun-gateway.md, tables 3.1 and 3.2) classes them:
-- the classic style (message only: its prefixes name the auth, quota and
-- throttling errors) and the VPC style (X-Ca-Error-Code, whose first letter
-- is the category: I input, A auth, B billing, T throttling, X and D the
-- gateway and the backend; the status is the code's digits).
local GATEWAY = {
  --  name                    classic             vpc code, status, kind     retryable
  { "invalid_url",            400, "gateway",     "I404NF", 404, "gateway",  false },
  { "invalid_method",         400, "gateway",     "I405UM", 405, "gateway",  false },
  { "need_authorization",     400, "auth",        "A400MA", 400, "auth",     false },
  { "invalid_appcode",        400, "auth",        "A401AC", 401, "auth",     false },
  { "invalid_appkey",         400, "auth",        "A400IK", 400, "auth",     false },
  { "empty_signature",        404, "auth",        "I400MH", 400, "gateway",  false },
  { "invalid_signature",      400, "auth",        "A403IS", 403, "auth",     false },
  { "invalid_sign_method",    400, "auth",        "I400HD", 400, "gateway",  false },
  { "invalid_content_md5",    400, "gateway",     "I400I5", 400, "gateway",  false },
  { "timestamp_expired",      400, "gateway",     "I400HD", 400, "gateway",  false },
  { "invalid_timestamp",      400, "gateway",     "I400HD", 400, "gateway",  false },
  { "nonce_used",             400, "gateway",     "I400NC", 400, "gateway",  true },
  { "unsupported_multipart",  400, "gateway",     "I400CT", 400, "gateway",  false },
  { "body_too_large",         413, "gateway",     "I413RL", 413, "gateway",  false },
  { "unauthorized",           403, "auth",        "I403AA", 403, "auth",     false },
  { "quota_exhausted",        403, "quota",       "B403MQ", 403, "quota",    false },
  { "quota_expired",          403, "quota",       "B403ME", 403, "quota",    false },
  { "user_arrears",           403, "quota",       "B403OD", 403, "quota",    false },
  { "throttled_app",          403, "throttled",   "T429PA", 429, "throttled", true },
  { "throttled_user",         403, "throttled",   "T429PR", 429, "throttled", true },
  { "throttled_api",          403, "throttled",   "T429SR", 429, "throttled", true },
  { "throttled_domain",       403, "throttled",   "T429ID", 429, "throttled", false }, -- a daily cap
  { "throttled_group",        403, "throttled",   "T429GR", 429, "throttled", true },
  { "internal_error",         500, "gateway",     "X500ER", 500, "gateway",  true },
  { "backend_failed",         500, "gateway",     "D504CO", 504, "gateway",  true },
  { "service_unavailable",    503, "gateway",     "D503BB", 503, "gateway",  true },
  { "async_service",          504, "gateway",     "D504TO", 504, "gateway",  true },
}

-- Every row: a name, the fault rule (for interface one), emulator
-- settings, client options, and what each faulted call must give.
-- `global`: the fault hits the first call of the other interface too (the
-- same way). `refused`: nothing reaches the emulator. `timeout`: the
-- client's timeout, when the row stalls.
function M.rows()
  local list = {
    { "no fault", want = OK },
    { "latency under the backend timeout", rule = { mode = "latency", ms = 30 }, want = OK },
    { "latency over the backend timeout: 504", rule = { mode = "latency", ms = 200 },
      settings = { backend_timeout_ms = 100 }, want = M.failure("gateway", 504, false, true) },
    { "no answer in time (the emulator answers later, billed)",
      rule = { mode = "stall_headers", ms = slow(600) }, timeout = slow(0.2),
      want = M.failure("timeout", nil, "unknown", false, "OPERATION_TIMEDOUT") },
    { "the connection closed after holding the request",
      rule = { mode = "stall_headers", ms = 50, ["then"] = "close" },
      want = M.failure("transport", nil, "unknown", false, "GOT_NOTHING") },
    { "a stall in the body", rule = { mode = "stall_body", ms = slow(600) }, timeout = slow(0.2),
      want = M.failure("timeout", 200, true, false, "OPERATION_TIMEDOUT") },
    { "a truncated body", rule = { mode = "truncate" },
      want = M.failure("transport", 200, true, false, "PARTIAL_FILE") },
    -- On a connection used before, the reset comes as no answer at all.
    { "a reset before the headers", rule = { mode = "reset_before_headers" },
      want = M.failure("transport", nil, "unknown", false, { "RECV_ERROR", "GOT_NOTHING" }) },
    { "a reset after the headers", rule = { mode = "reset_after_headers" },
      want = M.failure("transport", 200, true, false, "RECV_ERROR") },
    { "a 2xx body that is not JSON", rule = { mode = "not_json" },
      want = M.failure("protocol", 200, true, false, "BAD_JSON") },
    { "a 203 body that is not JSON", rule = { mode = "not_json", status = 203 },
      want = M.failure("protocol", 203, true, false, "BAD_JSON") },
    { "an HTML error page", rule = { mode = "html" }, want = M.failure("http", 502, false, true) },
    { "an HTML page with 404", rule = { mode = "html", status = 404 }, want = M.failure("http", 404, false, false) },
    { "a gateway error of its own, 418", rule = { mode = "gateway", status = 418, message = "I'm a teapot" },
      want = M.failure("gateway", 418, false, false) },
    { "a gateway error with a code", rule = { mode = "gateway", status = 500, message = "Boom", code = "X500ZZ" },
      want = M.failure("gateway", 500, false, true, "X500ZZ") },
    { "a huge body over the cap", rule = { mode = "huge", bytes = 100000 }, client = { max_response_bytes = 10000 },
      want = M.failure("protocol", 200, true, false, "RESPONSE_TOO_LARGE") },
    { "a huge chunked body over the cap", rule = { mode = "huge", bytes = 100000, chunked = true },
      client = { max_response_bytes = 10000 }, want = M.failure("protocol", 200, true, false, "RESPONSE_TOO_LARGE") },
    { "a huge body under the cap", rule = { mode = "huge", bytes = 100000 }, want = OK },
    { "a chunked answer", rule = { mode = "chunked", pieces = 7 }, want = OK },
    { "200 with ok 0", rule = { mode = "ok0", msg = "识别失败" }, want = M.failure("protocol", 200, true, false) },
    { "the vendor's 666", rule = { mode = "vendor_error" }, want = M.failure("api", 666, false, false) },
    { "a redirect (not followed)", rule = { mode = "respond", status = 302, body = "",
      headers = { Location = "http://127.0.0.1:1/elsewhere" } }, want = M.failure("http", 302, false, false) },
    { "a bare 429", rule = { mode = "respond", status = 429, body = "slow down" },
      want = M.failure("http", 429, false, true) },
    { "an empty 200", rule = { mode = "respond", status = 200, body = "" },
      want = M.failure("protocol", 200, true, false, "BAD_JSON") },
    { "a body nested too deep", rule = { mode = "respond", status = 200,
      body = '{"ok":1,"msg":"x","data":[[[[[["deep"]]]]]]}' }, client = { json_max_depth = 4 },
      want = M.failure("protocol", 200, true, false, "JSON_TOO_DEEP") },
    { "the gateway's quota check", settings = { quota = 0 }, global = true,
      want = M.failure("quota", 403, false, false) },
    { "the gateway's credential check (a wrong AppCode)", client = { appcode = "nope" }, global = true,
      unknown_credential = true,
      want = M.failure("auth", 400, false, false) },
    { "a refused connection", refused = true, global = true,
      want = M.failure("transport", nil, false, true, "COULDNT_CONNECT") },
  }
  for _, g in ipairs(GATEWAY) do
    local name, status, kind, code, vstatus, vkind, retryable = g[1], g[2], g[3], g[4], g[5], g[6], g[7]
    list[#list + 1] = { "gateway error " .. name .. " (classic)", rule = { mode = name },
      want = M.failure(kind, status, false, retryable) }
    list[#list + 1] = { "gateway error " .. name .. " (vpc)", rule = { mode = name }, settings = { errors = "vpc" },
      want = M.failure(vkind, vstatus, false, retryable, code) }
  end
  return list
end

--- Sets emulator `emu` up for `row`: forgets what came before, applies the
-- row's settings and its fault rule (for interface one only).
function M.arrange(emu, row)
  emu:reset()
  if row.settings then emu:settings(row.settings) end
  if row.rule then
    local rule = { api = "advanced" }
    for k, v in pairs(row.rule) do rule[k] = v end
    emu:fault(rule)
  end
end

return M
