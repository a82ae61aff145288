-- Issue 19 inside nginx, from a review: connects that are cut off or never
-- answered. A light thread killed while aliocr connects to a name must
-- leave nothing running (nginx ends a request only when all its light
-- threads have ended), and a proxy that never answers CONNECT is a timeout,
-- as with libcurl.
local cjson = require("cjson")
local aliocr = require("aliocr")
local emulator = require("helpers.emulator")
local nginx = require("helpers.nginx")
local outcome = require("helpers.outcome")
local socket = require("socket")
local util = require("helpers.util")

local function via_json(v) return cjson.decode(cjson.encode(v)) end

if not util.nginx_only_here() then
  describe("inside nginx, connects cut off", function() pending(util.NGINX_ONLY) end)
  return
end

describe("inside nginx, connects cut off", function()
  local emu, ngx_, silent

  setup(function()
    emu = emulator.start({ "--port", "0", "--https-port", "0", "--appcode", "demo" })
    -- A DNS server that never answers.
    silent = assert(socket.udp())
    assert(silent:setsockname("127.0.0.1", 0))
    local _, dns_port = silent:getsockname()
    ngx_ = nginx.start(nginx.test_config(emu.ca_file, [[
      location = /connect { content_by_lua_block { require("helpers.nginx_connect").run() } }
      location = /connect_silent {
        resolver 127.0.0.1:]] .. dns_port .. [[ ipv6=off;
        resolver_timeout 8s;
        content_by_lua_block { require("helpers.nginx_connect").run() }
      }
    ]]), { ALIOCR_APPCODE = "demo", ALIOCR_ENDPOINT = emu.endpoint })
  end)

  teardown(function()
    if silent then silent:close() end
    if ngx_ then assert.same({}, ngx_:stop()) end
    util.stop_clean(emu)
  end)

  it("item 6: a light thread killed while it connects to a name leaves nothing running", function()
    local client = { appcode = "demo", endpoint = "http://silent.invalid:" .. util.closed_port(),
      connect_timeout = 4, timeout = 6, retries = 0 }
    local t0 = socket.gettime()
    local out = ngx_:post("/connect_silent", { op = "kill", client = client, after = 0.3 }, 30)
    local took = socket.gettime() - t0
    assert.is_true(out.killed, cjson.encode(out))
    -- The handler answered 0.3 s after it started; its request ends only
    -- when every light thread of it ended.
    assert.is_true(took < 2, "the request ended " .. string.format("%.1f", took) ..
      " s after it started (the handler returned after 0.3 s)")
  end)

  it("item 6: control: a plain cosocket connect killed the same way ends the request at once", function()
    local t0 = socket.gettime()
    local out = ngx_:post("/connect_silent", { op = "kill_plain", after = 0.3 }, 30)
    local took = socket.gettime() - t0
    assert.is_true(out.killed)
    assert.is_true(took < 2, "the request ended " .. string.format("%.1f", took) .. " s after it started")
  end)

  it("item 8: a proxy that never answers CONNECT: the same outcome as libcurl", function()
    local mute = assert(socket.bind("127.0.0.1", 0)) -- accepts (backlog), never answers
    finally(function() mute:close() end)
    local _, port = mute:getsockname()
    local client = { appcode = "demo", endpoint = "https://127.0.0.1:" .. util.closed_port(), tls_verify = false,
      proxy = "http://u:pw@127.0.0.1:" .. port, connect_timeout = 1, timeout = 3, retries = 0 }
    local url = emu.images .. "sample.png"
    local inside = ngx_:post("/connect", { op = "case", client = client, url = url }, 30)
    local c = aliocr.new(client)
    local res, err = c:recognize(url)
    local outside = via_json(outcome.of(res, err, c:stats()))
    c:close()
    local message = inside.message
    inside.message = nil
    assert.same(outside, inside, "inside nginx: " .. tostring(message) .. "; libcurl: " .. tostring(err and err.msg))
  end)
end)
