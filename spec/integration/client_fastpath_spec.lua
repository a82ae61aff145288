-- One call path: a blocking call with no options, with options, in either
-- auth mode, with jobs pending or not, goes the same way (the request built
-- in C from the client's configuration, src/request.c, on a kept job of the
-- engine): the same request on the wire, the same results and errors,
-- billing, retries and statistics, one shared connection. And the engine's
-- response holds only the transport contract's fields (src/response.c).
local aliocr = require("aliocr")
local core = require("aliocr.core")
local emulator = require("helpers.emulator")
local util = require("helpers.util")

local function header(entry, name) return util.header(entry, name) end

-- A result or error without what differs from call to call.
local function stable(v)
  local t = {}
  for k, x in pairs(v) do
    if k ~= "request_id" and k ~= "elapsed" then t[k] = x end
  end
  return t
end

describe("one call path", function()
  local emu

  setup(function()
    emu = emulator.start({ "--port", "0", "--appcode", "demo", "--app-key", "k1:s1" })
  end)
  teardown(function() util.stop_clean(emu) end)
  before_each(function() emu:reset() end)

  it("send the same request as the general path, and give the same result", function()
    local client = aliocr.new({ appcode = "demo", endpoint = emu.endpoint, retries = 0 })
    local image = emu.image .. "?a=1&b=%20x"
    for _, kind in ipairs({ "recognize", "handwriting" }) do
      local fast = assert(client[kind](client, image))          -- no options
      local general = assert(client[kind](client, image, {}))   -- options
      assert.same(stable(general), stable(fast))
    end
    local log = emu:requests()
    assert.equal(4, #log)
    for i = 1, 3, 2 do
      local a, b = log[i], log[i + 1]
      assert.equal(b.body, a.body)
      assert.equal(b.uri, a.uri)
      for _, h in ipairs({ "Authorization", "Accept", "Content-Type", "User-Agent", "Expect" }) do
        assert.equal(header(b, h), header(a, h))
      end
    end
    assert.equal("url=" .. image:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end),
      log[1].body)
    -- One connection for all.
    assert.equal(1, emu:connections().accepted)
    assert.same({ requests = 4, attempts = 4, billed = 4, not_billed = 0, unknown = 0, errors = {} }, client:stats())
    client:close()
  end)

  it("send GET queries the same way", function()
    local client = aliocr.new({ appcode = "demo", endpoint = emu.endpoint, retries = 0, method = "GET" })
    assert(client:recognize(emu.image))
    assert(client:recognize(emu.image, {}))
    local log = emu:requests()
    assert.equal("GET", log[1].method)
    assert.equal(log[2].uri, log[1].uri)
    assert.equal("", log[1].body)
    client:close()
  end)

  it("give the same errors, and retry the same way after the first attempt", function()
    local client = aliocr.new({ appcode = "demo", endpoint = emu.endpoint, retries = 2, retry_delay = 0.001 })
    -- A 666: not retried.
    local _, fast = client:recognize(emu.images .. "missing.png")
    local _, general = client:recognize(emu.images .. "missing.png", {})
    assert.same(stable(general), stable(fast))
    assert.equal("api", fast.kind)
    -- Two 503s, then an answer: three attempts, one bill.
    emu:fault({ mode = "service_unavailable", times = 2 })
    local res = assert(client:recognize(emu.image))
    assert.equal(3, res.attempts)
    emu:fault({ mode = "service_unavailable", times = 2 })
    assert.equal(3, assert(client:recognize(emu.image, {})).attempts)
    -- Not JSON, billed: a protocol error that keeps the body's account.
    emu:fault({ mode = "not_json", times = 2 })
    local _, e1 = client:recognize(emu.image)
    local _, e2 = client:recognize(emu.image, {})
    assert.same(stable(e2), stable(e1))
    assert.equal("BAD_JSON", e1.code)
    assert.is_true(e1.billed)
    -- A header-only gateway error.
    local bad = aliocr.new({ appcode = "nope", endpoint = emu.endpoint, retries = 0 })
    local _, a1 = bad:recognize(emu.image)
    local _, a2 = bad:recognize(emu.image, {})
    assert.same(stable(a2), stable(a1))
    assert.equal("auth", a1.kind)
    local ledger = emu:ledger().credentials.demo
    local st = client:stats()
    assert.equal(ledger.billed, st.billed)
    assert.equal(ledger.requests, st.attempts)
    client:close()
    bad:close()
  end)

  it("signature mode, options and pending jobs change nothing but what they must", function()
    local signed = aliocr.new({ app_key = "k1", app_secret = "s1", endpoint = emu.endpoint, retries = 0 })
    assert(signed:recognize(emu.image))
    assert(signed:recognize(emu.image, {}))
    signed:close()
    local client = aliocr.new({ appcode = "demo", endpoint = emu.endpoint, retries = 0 })
    assert(client:recognize(emu.image, { show = 1 }))
    local done
    client:submit("recognize", emu.image, nil, function(r) done = r end)
    assert(client:recognize(emu.image))         -- the job goes out along with this call
    client:wait()
    assert.equal(1, done.ok)
    assert(client:recognize(emu.image))
    client:close()
    local log = emu:requests()
    assert.equal(6, #log)
    assert.equal("signature", log[1].auth)
    assert.equal(log[1].body, log[2].body)
    assert.equal(log[4].body, log[6].body)
    assert.equal(log[4].body .. "&show=1", log[3].body)
    for i = 3, 6 do assert.equal(header(log[4], "Authorization"), header(log[i], "Authorization")) end
  end)

  it("misuse raises the same messages", function()
    local client = aliocr.new({ appcode = "demo", endpoint = emu.endpoint })
    for _, bad in ipairs({ 42, "", "ftp://x/y.png", "http://x/a\tb.png", "http:///nohost", "http://x:0/" }) do
      local ok1, e1 = pcall(client.recognize, client, bad)
      local ok2, e2 = pcall(client.recognize, client, bad, {})
      assert.is_false(ok1)
      assert.is_false(ok2)
      assert.equal(tostring(e2):gsub("^.-:%d+: ", ""), (tostring(e1):gsub("^.-:%d+: ", "")))
    end
    client:close()
  end)

  it("on the engine: only the contract's fields, and the body only when it is not JSON", function()
    local config = core.config({ appcode = "demo", urls = { advanced = emu.advanced }, connect_timeout_ms = 3000,
      max_bytes = 1e6 })
    local e = core.engine(config, { decode = require("cjson").new().decode, max_connections = 4, idle_timeout = 10 })
    local r = e:perform("advanced", emu.image, nil, nil, 10000)
    local fields = { id = true, status = true, sent = true, too_large = true, headers = true, json = true }
    for k in pairs(r) do assert.truthy(fields[k], k) end
    assert.equal(200, r.status)
    assert.is_table(r.json)
    assert.is_nil(r.body)
    assert.truthy(r.headers["x-ca-request-id"])
    for name in pairs(r.headers) do assert.truthy(name:find("^x%-ca%-"), name) end
    emu:fault({ mode = "not_json", body = "<html>", times = 1 })
    r = e:perform("advanced", emu.image, nil, nil, 10000)
    assert.equal("<html>", r.body)
    assert.truthy(r.json_error)
    -- More parameters after the URL.
    r = e:perform("advanced", emu.image, { "show", "1" }, "POST", 10000)
    assert.equal("url=" .. emu.image:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end)
      .. "&show=1", emu:requests()[#emu:requests()].body)
    assert.is_table(r.json.data)
    assert.error_matches(function() e:perform("handwriting", emu.image, nil, nil, 10000) end,
      "no URL for interface 'handwriting'")
    e:close()
    assert.has_error(function() e:perform("advanced", emu.image, nil, nil, 10000) end)
    config:close()
  end)
end)
