-- The HTTP response reader of the nginx transport (aliocr.core.http_reader,
-- src/http.c) on hand-made answers, without a server: what it takes, what
-- it refuses and with which libcurl name, its limits, and that the answer
-- gives the same outcome whatever pieces it arrives in. The same bytes go
-- through nginx and libcurl in spec/integration/nginx_spec.lua's table.
local core = require("aliocr.core")

-- Feeds `data` in pieces of `piece` bytes (all at once by default), then
-- the end of the connection when `eof`; returns what the reader says.
local function read(data, opts)
  opts = opts or {}
  local r = core.http_reader(opts.cap or 1000, opts.head_only)
  local piece = opts.piece or #data + 1
  local st, name, why = "more", nil, nil
  for i = 1, #data, piece do
    st, name, why = r:feed(data:sub(i, i + piece - 1))
    if not st then break end
  end
  if st == "more" and opts.eof then st, name, why = r:eof() end
  local status, headers = r:head()
  local out = { state = st, name = name, why = why, status = status, headers = headers, body = r:body(),
    keepalive = r:keepalive(), got_any = r:got_any() }
  r:free()
  return out
end

local OK = "HTTP/1.1 200 OK\r\n"

describe("the HTTP reader of the nginx transport", function()
  it("reads a status, headers (lower-cased, repeated ones joined) and a body of a Content-Length", function()
    local out = read(OK .. "Content-Length: 5\r\nX-Ca-Request-Id: a\r\nx-ca-request-id: b\r\n\r\nhello")
    assert.equal("done", out.state)
    assert.equal(200, out.status)
    assert.equal("a, b", out.headers["x-ca-request-id"])
    assert.equal("5", out.headers["content-length"])
    assert.equal("hello", out.body)
    assert.is_true(out.keepalive)
  end)

  it("gives the same outcome whatever pieces the bytes come in", function()
    local answers = {
      OK .. "Content-Length: 5\r\n\r\nhello",
      OK .. "Transfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\n",
      "HTTP/1.1 100 Continue\r\n\r\n" .. OK .. "Content-Length: 2\r\n\r\nok",
      "HTTP/1.0 200 OK\nX-F: a\n  b\n\nto the close",
      OK .. "Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX",
    }
    for _, a in ipairs(answers) do
      local whole = read(a, { eof = true })
      for piece = 1, 7 do
        assert.same(whole, read(a, { piece = piece, eof = true }), "pieces of " .. piece .. " of " .. a)
      end
    end
  end)

  it("reads chunks (extensions skipped, trailers dropped) and a body up to the close", function()
    local out = read(OK .. "Transfer-Encoding: chunked\r\n\r\n5;name=v\r\nhello\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n")
    assert.equal("done", out.state)
    assert.equal("helloabc", out.body)
    assert.is_nil(out.headers["x-t"])
    out = read("HTTP/1.1 200 OK\r\n\r\nto the close", { eof = true })
    assert.equal("done", out.state)
    assert.equal("to the close", out.body)
    assert.is_false(out.keepalive)
  end)

  it("takes bare LF line ends, obs-fold, no reason phrase, and skips 1xx answers", function()
    local out = read("HTTP/1.1 100 Continue\n\nHTTP/1.1 200\nX-F: a\n \tb\nContent-Length: 2\n\nok")
    assert.equal("done", out.state)
    assert.equal(200, out.status)
    assert.equal("a b", out.headers["x-f"])
    assert.equal("ok", out.body)
  end)

  it("reads Content-Length as libcurl does", function()
    assert.equal("hello", read(OK .. "Content-Length: +5\r\n\r\nhello").body)
    assert.equal("", read(OK .. "Content-Length: 0x5\r\n\r\nhello").body) -- the digits before the x
    assert.equal("hel", read(OK .. "Content-Length: 5\r\nContent-Length: 3\r\n\r\nhello").body) -- the last
    assert.same({ nil, "WEIRD_SERVER_REPLY" }, { read(OK .. "Content-Length: -1\r\n\r\nhello").state,
      read(OK .. "Content-Length: -1\r\n\r\nhello").name })
    assert.equal("WEIRD_SERVER_REPLY", read(OK .. "Content-Length: \r\n\r\n").name)
    -- Too large for 63 bits: ignored, the body ends at the close.
    local out = read(OK .. "Content-Length: 99999999999999999999\r\n\r\nab", { eof = true })
    assert.equal("ab", out.body)
    assert.is_false(out.keepalive)
  end)

  it("refuses a status line that is not HTTP/1.0 or 1.1 with a three-digit code", function()
    for _, line in ipairs({ "HTTP/1.1 2000 OK", "HTTP/1.1 20 OK", "HTTP/1.2 200 OK", "HTTP/2 200", "ICY 200 OK" }) do
      local out = read(line .. "\r\nContent-Length: 0\r\n\r\n")
      assert.equal("UNSUPPORTED_PROTOCOL", out.name, line)
      assert.is_nil(out.status, line)
    end
  end)

  it("refuses broken framing with libcurl's names, keeping the status that arrived", function()
    local cases = {
      { OK .. "Garbage\r\n\r\n", "WEIRD_SERVER_REPLY" },
      { OK .. "Transfer-Encoding: chunked\r\n\r\nzz\r\n", "RECV_ERROR" },
      { OK .. "Transfer-Encoding: chunked\r\n\r\n" .. string.rep("1", 17) .. "\r\n", "RECV_ERROR" },
      { OK .. "Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", "RECV_ERROR" },
      { OK .. "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", "BAD_CONTENT_ENCODING" },
      { OK .. "X: a\rb\r\n\r\n", "WEIRD_SERVER_REPLY" },
    }
    for _, c in ipairs(cases) do
      local out = read(c[1])
      assert.is_nil(out.state, c[1])
      assert.equal(c[2], out.name, c[1])
      assert.equal(200, out.status, c[1])
    end
  end)

  it("takes what libcurl takes: 200OK, CRs before a chunk's LF; refuses codes under 100, 2^63 chunks", function()
    assert.equal("ok", read("HTTP/1.1 200OK\r\nContent-Length: 2\r\n\r\nok").body)
    assert.equal("ok", read("HTTP/1.1 200\tOK\r\nContent-Length: 2\r\n\r\nok").body)
    assert.equal("UNSUPPORTED_PROTOCOL", read("HTTP/1.1 099 X\r\n\r\n" .. OK .. "Content-Length: 0\r\n\r\n").name)
    assert.equal("UNSUPPORTED_PROTOCOL", read("HTTP/1.1 000 X\r\n\r\n").name)
    assert.equal("ab", read(OK .. "Transfer-Encoding: chunked\r\n\r\n2\r\nab\r\r\r\n0\r\n\r\n").body)
    assert.equal("RECV_ERROR", read(OK .. "Transfer-Encoding: chunked\r\n\r\n8000000000000000\r\n").name)
    assert.equal("RECV_ERROR", read(OK .. "Transfer-Encoding: chunked\r\n\r\n0\r\nX: a\rb\r\n\r\n").name)
    -- A folded line continues the header before it, or nothing if that one
    -- was ignored.
    local out = read(OK .. "X-A : 1\r\n folded\r\nX-B: 1\r\n y\r\nContent-Length: 2\r\n\r\nok")
    assert.equal("ok", out.body)
    assert.equal("1 y", out.headers["x-b"])
  end)

  it("ignores a header with a blank before its colon, as libcurl does", function()
    local out = read(OK .. "Content-Length : 99\r\nContent-Length: 2\r\n\r\nok")
    assert.equal("done", out.state)
    assert.equal("ok", out.body)
  end)

  it("bounds the head: a line at most 100 KiB, all the lines 300 KiB", function()
    local out = read(OK .. "X-Long: " .. string.rep("a", 200 * 1024), { piece = 4096 })
    assert.equal("OUT_OF_MEMORY", out.name)
    local lines = {}
    for i = 1, 40 do lines[i] = "X-" .. i .. ": " .. string.rep("v", 9000) end
    out = read(OK .. table.concat(lines, "\r\n") .. "\r\n\r\n")
    assert.equal("OUT_OF_MEMORY", out.name)
    lines = {}
    for i = 1, 250 do lines[i] = "X-" .. i .. ": v" end
    out = read(OK .. table.concat(lines, "\r\n") .. "\r\nContent-Length: 2\r\n\r\nok")
    assert.equal("ok", out.body)
  end)

  it("bounds the body by its cap, by Content-Length, chunks or close", function()
    assert.equal("too_large", read(OK .. "Content-Length: 11\r\n\r\n", { cap = 10 }).name)
    assert.equal("too_large", read(OK .. "Transfer-Encoding: chunked\r\n\r\nb\r\n", { cap = 10 }).name)
    local out = read(OK .. "\r\n" .. string.rep("x", 11), { cap = 10 })
    assert.equal("too_large", out.name)
    assert.is_true(#out.body <= 10)
    assert.equal("done", read(OK .. "Content-Length: 10\r\n\r\n" .. string.rep("x", 10), { cap = 10 }).state)
  end)

  it("says what an early close means: nothing, a cut head, a cut body", function()
    assert.equal("GOT_NOTHING", read("", { eof = true }).name)
    assert.is_false(read("", { eof = true }).got_any)
    assert.equal("RECV_ERROR", read(OK .. "X-A: 1\r\n", { eof = true }).name)
    local out = read(OK .. "Content-Length: 5\r\n\r\nhel", { eof = true })
    assert.equal("PARTIAL_FILE", out.name)
    assert.equal("hel", out.body)
  end)

  it("keeps a connection only when RFC 9112 lets it carry another request", function()
    assert.is_false(read("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok").keepalive)
    assert.is_true(read("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok").keepalive)
    assert.is_false(read(OK .. "Connection: close\r\nContent-Length: 2\r\n\r\nok").keepalive)
    assert.is_false(read(OK .. "Content-Length: 2\r\n\r\nokEXTRA").keepalive)
    assert.is_false(read(OK .. "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n").keepalive)
    assert.is_true(read("HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n").keepalive)
  end)

  it("reads only the head of the answer to a CONNECT", function()
    local out = read("HTTP/1.1 200 Connection established\r\n\r\n", { cap = 0, head_only = true })
    assert.equal("done", out.state)
    assert.equal(200, out.status)
  end)

  it("refuses a bad cap", function()
    assert.has_error(function() core.http_reader(-1) end)
    assert.has_error(function() core.http_reader("x") end)
  end)
end)
