-- Misbehaviour on demand. Tests add rules through the control endpoint; each
-- API request that gets past the gateway's checks (credentials, quota, rate
-- limit) takes the first rule that matches it and still has uses left.
--
-- A rule: { mode = "...", times = N (optional: N uses, then the rule is spent;
-- without it the rule applies until the faults are cleared), api = "advanced"
-- or "handwriting" (optional), credential = "..." (optional), and the
-- mode's own parameters }. "Fail N times, then succeed" is any failing mode
-- with times = N.
local errors = require("aliocr_emu.errors")
local reply = require("aliocr_emu.reply")
local state = require("aliocr_emu.state")

local M = {}

local function int(v, lo, hi)
  return type(v) == "number" and v == math.floor(v) and v >= lo and v <= (hi or 2^53)
end

local HTML = [[<html>
<head><title>502 Bad Gateway</title></head>
<body>
<center><h1>502 Bad Gateway</h1></center>
<hr><center>Tengine</center>
</body>
</html>
]]

-- Each mode: a check of its parameters (returns an error message or nil) and
-- what it does. `answer()` produces the normal answer (status, body); `go`
-- continues with it normally.
M.modes = {
  latency = {
    check = function(r) if not int(r.ms, 0) then return "latency needs ms >= 0" end end,
    -- Backend latency: counts against the backend timeout, like --latency-ms.
    run = function(r, _, go) return go(r.ms) end,
  },
  stall_headers = {
    check = function(r)
      if r.ms ~= nil and not int(r.ms, 0) then return "ms must be an integer >= 0" end
      if r["then"] ~= nil and r["then"] ~= "answer" and r["then"] ~= "close" then
        return "then must be \"answer\" or \"close\""
      end
    end,
    run = function(r, _, go)
      ngx.sleep((r.ms or 60000) / 1000)
      if r["then"] == "close" then return ngx.exit(444) end
      return go()
    end,
  },
  stall_body = {
    check = function(r) if r.ms ~= nil and not int(r.ms, 0) then return "ms must be an integer >= 0" end end,
    run = function(r, answer)
      local status, body = answer()
      local half = math.floor(#body / 2)
      return reply.partial(status, body, reply.JSON, half, function()
        ngx.sleep((r.ms or 60000) / 1000)
        ngx.print(body:sub(half + 1))
        return ngx.exit(ngx.OK)
      end)
    end,
  },
  truncate = {
    check = function(r) if r.bytes ~= nil and not int(r.bytes, 0) then return "bytes must be an integer >= 0" end end,
    run = function(r, answer)
      local status, body = answer()
      local sent = math.min(r.bytes or math.floor(#body / 2), math.max(#body - 1, 0))
      return reply.partial(status, body, reply.JSON, sent, function() return ngx.exit(444) end)
    end,
  },
  reset_before_headers = {
    run = function() return reply.reset() end,
  },
  reset_after_headers = {
    run = function(_, answer)
      local status, body = answer()
      return reply.partial(status, body, reply.JSON, 0, reply.reset)
    end,
  },
  not_json = {
    check = function(r)
      if r.status ~= nil and not int(r.status, 200, 299) then return "status must be 2xx" end
      if r.body ~= nil and type(r.body) ~= "string" then return "body must be a string" end
    end,
    run = function(r)
      return reply.send(r.status or 200, r.body or "upstream answered garbage\n", "text/plain; charset=UTF-8")
    end,
  },
  html = {
    check = function(r) if r.status ~= nil and not int(r.status, 100, 999) then return "bad status" end end,
    run = function(r) return reply.send(r.status or 502, HTML, "text/html") end,
  },
  ok0 = {
    check = function(r) if r.msg ~= nil and type(r.msg) ~= "string" then return "msg must be a string" end end,
    run = function(r)
      local cjson = require("cjson.safe")
      return reply.send(200, '{"ok":0,"msg":' .. cjson.encode(r.msg or "识别失败") .. '}', reply.JSON)
    end,
  },
  vendor_error = {
    check = function(r) if r.msg ~= nil and type(r.msg) ~= "string" then return "msg must be a string" end end,
    run = function(r)
      local status, body = require("aliocr_emu.vendor").fail(r.msg or "接口权限有误")
      return reply.send(status, body, reply.JSON)
    end,
  },
  chunked = {
    check = function(r)
      if r.pieces ~= nil and not int(r.pieces, 1, 10000) then return "pieces must be 1..10000" end
    end,
    run = function(r, answer)
      local status, body = answer()
      return reply.chunked(status, body, reply.JSON, r.pieces or 4)
    end,
  },
  huge = {
    check = function(r)
      if r.bytes ~= nil and not int(r.bytes, reply.HUGE_MIN) then
        return "bytes must be an integer >= " .. reply.HUGE_MIN
      end
      if r.chunked ~= nil and type(r.chunked) ~= "boolean" then return "chunked must be true or false" end
    end,
    run = function(r) return reply.huge(r.bytes or 64 * 1024 * 1024, r.chunked) end,
  },
  gateway = {
    check = function(r)
      if r.error ~= nil then
        if not errors.lookup(r.error, "classic") then return "unknown gateway error '" .. tostring(r.error) .. "'" end
      elseif not (int(r.status, 100, 999) and type(r.message) == "string") then
        return "gateway needs error = <name>, or status and message"
      elseif r.code ~= nil and type(r.code) ~= "string" then
        return "code must be a string"
      end
      if r.retry_after ~= nil and not int(r.retry_after, 0, 86400) then return "retry_after must be seconds" end
    end,
    run = function(r, _, _, s)
      if r.retry_after then ngx.header["Retry-After"] = tostring(r.retry_after) end
      if r.error then return reply.gateway_error(r.error, s.errors) end
      return reply.custom_gateway_error(r.status, r.message, r.code)
    end,
  },
  respond = {
    check = function(r)
      if not int(r.status, 100, 999) then return "respond needs a status" end
      if r.body ~= nil and type(r.body) ~= "string" then return "body must be a string" end
      if r.content_type ~= nil and type(r.content_type) ~= "string" then return "content_type must be a string" end
      if r.headers ~= nil then
        if type(r.headers) ~= "table" then return "headers must be an object" end
        for k, v in pairs(r.headers) do
          if type(k) ~= "string" or (type(v) ~= "string" and type(v) ~= "number") then
            return "headers must map names to strings"
          end
        end
      end
    end,
    run = function(r)
      return reply.send(r.status, r.body or "", r.content_type or reply.JSON, r.headers)
    end,
  },
  -- Exactly the bytes a misbehaving gateway would send (reply.raw): status
  -- (what the ledger records and bills: 2xx or not), data, fill = { bytes,
  -- byte }, pieces with gap_ms, after = "close" | "reset" | "hold" with
  -- hold_ms. HTTP/1.x only (HTTP/2 has no raw socket).
  raw = {
    check = function(r)
      if not int(r.status, 100, 999) then return "raw needs a status (100..999: what the ledger records)" end
      if r.data ~= nil and type(r.data) ~= "string" then return "data must be a string" end
      if r.fill ~= nil then
        if type(r.fill) ~= "table" then return "fill must be an object" end
        if not int(r.fill.bytes, 1, 2^32) then return "fill.bytes must be an integer 1..2^32" end
        if r.fill.byte ~= nil and (type(r.fill.byte) ~= "string" or #r.fill.byte ~= 1) then
          return "fill.byte must be a string of one byte"
        end
      end
      if r.pieces ~= nil then
        if type(r.pieces) ~= "table" then return "pieces must be an array of strings" end
        local n = 0
        for _ in pairs(r.pieces) do n = n + 1 end
        if n > 100000 then return "pieces: at most 100000" end
        for i = 1, n do
          if type(r.pieces[i]) ~= "string" then return "pieces must be an array of strings" end
        end
      end
      if r.gap_ms ~= nil and not int(r.gap_ms, 0, 600000) then return "gap_ms must be an integer 0..600000" end
      local after = r.after
      if after ~= nil and after ~= "close" and after ~= "reset" and after ~= "hold" then
        return "after must be \"close\", \"reset\" or \"hold\""
      end
      if r.hold_ms ~= nil then
        if after ~= "hold" then return "hold_ms goes with after = \"hold\"" end
        if not int(r.hold_ms, 0, 600000) then return "hold_ms must be an integer 0..600000" end
      end
    end,
    run = function(r) return reply.raw(r) end,
  },
}

-- The OSS endpoint's faults (oss.lua runs them): they apply to OSS requests
-- that passed its checks (bucket, signature), never to the gateway's, and
-- take `method` (PUT by default: uploads), `bucket` and `credential` (an
-- AccessKey ID) to match. oss_error answers an OSS error instead of the
-- operation (`code`, and `status` unless the emulator knows that code;
-- `message`); oss_slow waits `ms` before the operation; oss_gone lets a PUT
-- succeed and removes its object at once, so that a later GET (the
-- vendor's download of the signed URL) gets NoSuchKey.
local OSS_METHODS = { PUT = true, GET = true, HEAD = true, DELETE = true }
local function oss_check(extra)
  return function(r)
    if r.api ~= nil then return "an OSS fault takes no api (it applies to the OSS endpoint)" end
    if r.method ~= nil and not OSS_METHODS[r.method] then return "method must be PUT, GET, HEAD or DELETE" end
    if r.bucket ~= nil and type(r.bucket) ~= "string" then return "bucket must be a string" end
    return extra and extra(r) or nil
  end
end
M.modes.oss_error = {
  oss = true,
  check = oss_check(function(r)
    if type(r.code) ~= "string" or not r.code:find("^%w+$") then return "oss_error needs a code (e.g. AccessDenied)" end
    if r.status ~= nil and not int(r.status, 300, 599) then return "status must be 300..599" end
    if r.status == nil and not require("aliocr_emu.oss_errors").by_code(r.code) then
      return "the emulator does not know the status of " .. r.code .. ": give a status"
    end
    if r.message ~= nil and type(r.message) ~= "string" then return "message must be a string" end
  end),
}
M.modes.oss_slow = {
  oss = true,
  check = oss_check(function(r) if not int(r.ms, 0, 600000) then return "oss_slow needs ms (0..600000)" end end),
}
M.modes.oss_gone = {
  oss = true,
  check = oss_check(function(r)
    if r.method ~= nil and r.method ~= "PUT" then return "oss_gone applies to PUT only" end
  end),
}

-- Every gateway error is also a mode of its own: {"mode":"internal_error"}.
for _, name in ipairs(errors.names) do
  M.modes[name] = { run = function(_, _, _, s) return reply.gateway_error(name, s.errors) end }
end

--- Checks a rule from the control endpoint; returns an error message or nil.
function M.check(r)
  if type(r) ~= "table" then return "a fault is a JSON object" end
  if r.mode == nil then return "a fault needs a mode" end
  local mode = M.modes[r.mode]
  if not mode then return "unknown fault mode '" .. tostring(r.mode) .. "'" end
  if r.times ~= nil and not int(r.times, 1) then return "times must be an integer >= 1" end
  if r.api ~= nil and r.api ~= "advanced" and r.api ~= "handwriting" then
    return "api must be \"advanced\" or \"handwriting\""
  end
  if r.credential ~= nil and type(r.credential) ~= "string" then return "credential must be a string" end
  return mode.check and mode.check(r) or nil
end

--- The fault for this API request, if any (taking one of its uses).
function M.pick(api, cred)
  for _, r in ipairs(state.faults()) do
    if not M.modes[r.mode].oss and (r.api == nil or r.api == api) and (r.credential == nil or r.credential == cred)
        and state.take_fault(r) then
      return r
    end
  end
  return nil
end

--- The fault for this OSS request (`method`, `bucket`, AccessKey `key_id`),
-- if any (taking one of its uses).
function M.pick_oss(method, bucket, key_id)
  for _, r in ipairs(state.faults()) do
    if M.modes[r.mode].oss and (r.method or "PUT") == method and (r.bucket == nil or r.bucket == bucket)
        and (r.credential == nil or r.credential == key_id) and state.take_fault(r) then
      return r
    end
  end
  return nil
end

--- Runs fault `r`. `answer()` gives the normal answer; `go()` sends it.
function M.run(r, answer, go, s)
  return M.modes[r.mode].run(r, answer, go, s)
end

return M
