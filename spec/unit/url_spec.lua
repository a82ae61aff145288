-- lua/aliocr/url.lua, no server needed: url.image against the WHATWG URL
-- Standard's serialisation (https://url.spec.whatwg.org/) for every byte in
-- each part, escapes, UTF-8, hosts, ports and what it refuses; url.endpoint
-- and url.proxy, the checks of the client's own URLs and of its proxy.
-- The expected values are written out here, not derived from the module.
local url = require("aliocr.url")

--- Asserts that f(input) is refused: nil and a reason (a non-empty string
-- without the caller's "aliocr:" prefix) that matches `pattern` (plain
-- text) when given.
local function refused(f, input, pattern)
  local ok, got, why = pcall(f, input)
  assert.is_true(ok, "raised for " .. tostring(input) .. ": " .. tostring(got))
  assert.is_nil(got, "accepted " .. tostring(input) .. " as " .. tostring(got))
  assert.equal("string", type(why), tostring(input))
  assert.truthy(#why > 0 and not why:find("aliocr", 1, true), why)
  if pattern then
    assert.truthy(why:find(pattern, 1, true), "reason for " .. tostring(input) .. ": '" .. why .. "'")
  end
  return why
end

local function image(s)
  local got, why = url.image(s)
  assert.equal("string", type(got), "refused " .. s .. ": " .. tostring(why))
  return got
end

-- Byte classes of the standard (written out, not taken from the module):
-- what each part percent-encodes among the printable ASCII bytes; every byte
-- 0x80-0xFF is encoded in all three, 0x00-0x1F and 0x7F are refused.
local PATH_ENCODED = { [" "] = true, ['"'] = true, ["<"] = true, [">"] = true, ["^"] = true, ["`"] = true,
  ["{"] = true, ["}"] = true }
local QUERY_ENCODED = { [" "] = true, ['"'] = true, ["<"] = true, [">"] = true, ["'"] = true }
local FRAGMENT_ENCODED = { [" "] = true, ['"'] = true, ["<"] = true, [">"] = true, ["`"] = true }

local function pct(c) return string.format("%%%02X", c:byte()) end

describe("url.image", function()
  it("finding 16: an image URL with a space is percent-encoded, not refused (https://host/my photo.png)", function()
    assert.equal("https://host/my%20photo.png", image("https://host/my photo.png"))
    assert.equal("https://oss.example.com/bucket/2024%20Q1/scan%20(1).jpg?v=1%202",
      image("https://oss.example.com/bucket/2024 Q1/scan (1).jpg?v=1 2"))
    -- Already encoded: the same, not encoded twice.
    assert.equal("https://host/my%20photo.png", image("https://host/my%20photo.png"))
  end)

  it("encodes each printable byte of the path as the path percent-encode set says", function()
    for b = 0x20, 0x7E do
      local c = string.char(b)
      if c ~= "?" and c ~= "#" then
        local want
        if c == "\\" then want = "/" -- a special URL's path reads \ as /
        elseif PATH_ENCODED[c] then want = pct(c)
        else want = c end
        assert.equal("https://h/a" .. want .. "b", image("https://h/a" .. c .. "b"), "byte " .. b)
      end
    end
  end)

  it("encodes each printable byte of the query as the special-query set says, and ? and \\ are kept there", function()
    for b = 0x20, 0x7E do
      local c = string.char(b)
      if c ~= "#" then
        local want = QUERY_ENCODED[c] and pct(c) or c
        assert.equal("https://h/p?a" .. want .. "b", image("https://h/p?a" .. c .. "b"), "byte " .. b)
      end
    end
  end)

  it("encodes each printable byte of the fragment as the fragment set says; # and ? are kept there", function()
    for b = 0x20, 0x7E do
      local c = string.char(b)
      local want = FRAGMENT_ENCODED[c] and pct(c) or c
      assert.equal("https://h/p#a" .. want .. "b", image("https://h/p#a" .. c .. "b"), "byte " .. b)
    end
  end)

  it("encodes every byte 0x80-0xFF in the path, the query and the fragment", function()
    for b = 0x80, 0xFF do
      local c, e = string.char(b), string.format("%%%02X", b)
      assert.equal("https://h/a" .. e .. "?q" .. e .. "#f" .. e, image("https://h/a" .. c .. "?q" .. c .. "#f" .. c))
    end
  end)

  it("encodes non-ASCII UTF-8 as its bytes, upper-case hex; the host keeps its bytes (no IDNA)", function()
    assert.equal("https://h/%C3%A9t%C3%A9/%E4%B8%AD%E6%96%87.png?q=%E5%9B%BE#%F0%9F%98%80",
      image("https://h/été/中文.png?q=图#😀"))
    assert.equal("https://例子.测试/x", image("https://例子.测试/x"))
    -- Bytes that are not UTF-8 are encoded as they are, not replaced.
    assert.equal("https://h/%FF%FE", image("https://h/\255\254"))
  end)

  it("refuses a control character (0x00-0x1F, 0x7F) anywhere", function()
    for _, b in ipairs({ 0, 1, 9, 10, 13, 27, 31, 127 }) do
      local c = string.char(b)
      for _, s in ipairs({ "https://h/a" .. c, "https://h/p?q" .. c, "https://h/p#" .. c, "https://h" .. c .. "/",
                           c .. "https://h/", "https://h/" .. c }) do
        refused(url.image, s, "control character")
      end
    end
  end)

  it("keeps existing escapes and a lone % as they are", function()
    assert.equal("https://h/%20%2f%2F%zz%4%%41%", image("https://h/%20%2f%2F%zz%4%%41%"))
    assert.equal("https://h/p?a=%26%3D&b=%&c=%G1#%25%2", image("https://h/p?a=%26%3D&b=%&c=%G1#%25%2"))
    -- An escape is never decoded: %3F stays, and does not start a query.
    assert.equal("https://h/a%3Fb%23c", image("https://h/a%3Fb%23c"))
  end)

  it("encodes spaces in the query and the fragment", function()
    assert.equal("https://h/p?q=a%20b&r=%20#frag%20ment%20x", image("https://h/p?q=a b&r= #frag ment x"))
    -- A space at the very end is one of the URL's ends, removed as WHATWG does.
    assert.equal("https://h/p?q=%20#f", image("https://h/p?q= #f "))
    assert.equal("https://h/?a%20b", image("https://h?a b"))
    assert.equal("https://h/#a%20b", image("https://h#a b"))
  end)

  it("lower-cases the scheme and keeps the host as written", function()
    assert.equal("http://Host/", image("HTTP://Host/"))
    assert.equal("https://Oss.Example.COM/A.PNG", image("HtTpS://Oss.Example.COM/A.PNG"))
  end)

  it("removes spaces at the ends", function()
    assert.equal("https://h/a%20b", image("  https://h/a b   "))
    refused(url.image, "   ", "empty")
  end)

  it("writes the path as WHATWG does: / for none, \\ as /, . and .. segments removed", function()
    assert.equal("https://h/", image("https://h"))
    assert.equal("https://h/?q", image("https://h?q"))
    assert.equal("https://h/a/b?c\\d#e\\f", image("https://h\\a\\b?c\\d#e\\f"))
    assert.equal("http://h/x", image("http:\\\\h\\x"))
    assert.equal("https://h/b/d", image("https://h/a/../b/./c/%2e%2E/d"))
    assert.equal("https://h/a/", image("https://h/a/b/.."))
    assert.equal("https://h/a/b/", image("https://h/a/b/."))
    assert.equal("https://h/", image("https://h/../.."))
    assert.equal("https://h/b", image("https://h/a/.%2e/b"))
    assert.equal("https://h/.hidden/..x/x.", image("https://h/.hidden/..x/x."))
    assert.equal("https://h/p?a/../b", image("https://h/p?a/../b"))
  end)

  it("keeps ? and # markers with nothing after them", function()
    assert.equal("https://h/p?", image("https://h/p?"))
    assert.equal("https://h/p#", image("https://h/p#"))
    assert.equal("https://h/p?#", image("https://h/p?#"))
  end)

  it("accepts IPv6 literal hosts, as written", function()
    assert.equal("http://[::1]:8080/x", image("http://[::1]:8080/x"))
    assert.equal("http://[::1]/x", image("http://[::1]:80/x"))
    assert.equal("https://[2001:DB8::1]/a%20b", image("https://[2001:DB8::1]/a b"))
    assert.equal("http://[1:2:3:4:5:6:7:8]/", image("http://[1:2:3:4:5:6:7:8]"))
    assert.equal("http://[1:2:3:4:5:6:7::]/", image("http://[1:2:3:4:5:6:7::]/"))
    assert.equal("http://[::ffff:192.0.2.1]/", image("http://[::ffff:192.0.2.1]/"))
    assert.equal("http://[::]/", image("http://[::]/"))
    for _, bad in ipairs({ "http://[::1/x", "http://[]/", "http://[1:2:3:4:5:6:7:8:9]/", "http://[1::2::3]/",
                           "http://[12345::]/", "http://[::1%25eth0]/", "http://[g::1]/", "http://[::1]x/",
                           "http://[1:2:3:4:5:6:7:8::]/", "http://[::1.2.3.4:5]/", "http://[::256.1.1.1]/",
                           "http://[:1::]/", "http://[1:::2]/" }) do
      refused(url.image, bad)
    end
  end)

  it("accepts ports 1-65535 (without leading zeros, the default one dropped) and refuses 0, 65536, 99999", function()
    assert.equal("http://h:65535/", image("http://h:65535/"))
    assert.equal("http://h:1/", image("http://h:1/"))
    assert.equal("http://h:8080/a", image("http://h:08080/a"))
    assert.equal("http://h/", image("http://h:80/"))
    assert.equal("https://h/", image("https://h:443"))
    assert.equal("https://h:80/", image("https://h:80/"))
    assert.equal("http://h:443/", image("http://h:443/"))
    refused(url.image, "http://h:0/", "1-65535")
    refused(url.image, "http://h:00/", "1-65535")
    refused(url.image, "http://h:65536/", "1-65535")
    refused(url.image, "http://h:99999/", "1-65535")
    refused(url.image, "http://h:123456789012345678901234567890/", "1-65535")
    refused(url.image, "http://h:/x", "empty port")
    refused(url.image, "http://h:8a/", "not a number")
    refused(url.image, "http://h:-1/", "not a number")
    refused(url.image, "http://h:+80/", "not a number")
    refused(url.image, "http://h:80:80/", "not a number")
    refused(url.image, "http://[::1]:0/", "1-65535")
  end)

  it("refuses no host, an empty host and what is not http:// or https://", function()
    refused(url.image, "http://", "no host")
    refused(url.image, "https:///x", "no host")
    refused(url.image, "http://:8080/x", "no host")
    refused(url.image, "http://?q", "no host")
    refused(url.image, "http:/x", "'//'")
    refused(url.image, "http:x", "'//'")
    refused(url.image, "https:", "'//'")
    refused(url.image, "ftp://h/x", "ftp:")
    refused(url.image, "file:///etc/passwd", "file:")
    refused(url.image, "data:image/png;base64,AAAA", "data:")
    refused(url.image, "javascript:alert(1)", "javascript:")
    refused(url.image, "//h/x", "absolute")
    refused(url.image, "h/x.png", "absolute")
    refused(url.image, "/tmp/x.png", "absolute")
    refused(url.image, "", "empty")
  end)

  it("refuses a host with a character WHATWG forbids, and a numeric host that is not a dotted quad", function()
    for _, c in ipairs({ " ", "%", "<", ">", "[", "]", "^", "|" }) do
      refused(url.image, "http://a" .. c .. "b/x")
    end
    assert.equal("http://192.0.2.1/", image("http://192.0.2.1"))
    assert.equal("http://0.0.0.0/", image("http://0.0.0.0/"))
    assert.equal("http://h1.example/", image("http://h1.example/"))
    assert.equal("http://1.example/", image("http://1.example/"))
    assert.equal("http://host.example./x", image("http://host.example./x"))
    for _, bad in ipairs({ "http://192.0.2.256/", "http://127.1/", "http://0x7f.0.0.1/", "http://010.0.0.1/",
                           "http://2130706433/", "http://a.0x1/", "http://1.2.3.4.5/" }) do
      refused(url.image, bad, "dotted-quad")
    end
  end)

  it("keeps a user name and password, encoded as WHATWG writes them", function()
    assert.equal("https://user:secret@h/x.png", image("https://user:secret@h/x.png"))
    assert.equal("https://user@h/x.png", image("https://user@h/x.png"))
    assert.equal("https://user@h/x.png", image("https://user:@h/x.png"))
    assert.equal("https://h/x.png", image("https://@h/x.png"))
    assert.equal("http://a%40b:c%20d@h/x", image("http://a@b:c d@h/x"))
    -- A bad host after a user name: the reason never names the password.
    local why = refused(url.image, "https://user:secret@h ost/x.png")
    assert.falsy(why:find("secret", 1, true), why)
    -- An @ after the host is the path's.
    assert.equal("https://h/@x?a@b#c@d", image("https://h/@x?a@b#c@d"))
  end)

  it("returns nil and a reason for any value, never raises", function()
    for _, v in ipairs({ 1, true, {}, print }) do refused(url.image, v, "must be a string") end
    refused(url.image, nil, "must be a string")
  end)

  it("returns a URL that it gives back unchanged (idempotent)", function()
    for _, s in ipairs({ "https://host/my photo.png", "HTTP://H:080/a/../b c?d e'#f`g", "https://h\\x é",
                         "https://h/a^b{c}?^{}#^{}", "http://[::1]:8080/x y" }) do
      local once = image(s)
      assert.equal(once, image(once), s)
    end
  end)
end)

describe("every function of aliocr.url", function()
  it("answers 3000 random strings without raising; an image URL it gives is ASCII and stable", function()
    -- A fixed Park-Miller sequence (exact in doubles and in integers): the
    -- same strings on every runtime.
    local seed = 12345
    local function rand(n)
      seed = (seed * 16807) % 2147483647
      return seed % n
    end
    local pieces = { "https://", "http://", "HTTP://", "socks5h://", "ftp://", "[", "]", "::", ":", "@", "/", "\\",
      "?", "#", "%", "%2e", "..", ".", " ", "h", "127.0.0.1", "8080", "65536", "é", "\0", "\n", "\127", "\255" }
    local starts = { "https://h", "http://127.0.0.1:8080", "HTTP://h/", "http://[::1]", "socks5h://h:1080",
      "h:3128", "http://u:p@h:1", "" }
    for _ = 1, 3000 do
      local parts = { starts[rand(#starts) + 1] }
      for i = 2, rand(12) + 1 do
        parts[i] = rand(3) == 0 and string.char(rand(256)) or pieces[rand(#pieces) + 1]
      end
      local s = table.concat(parts)
      for _, name in ipairs({ "image", "endpoint", "proxy" }) do
        local ok, got, why = pcall(url[name], s)
        assert.is_true(ok, name .. " raised for " .. string.format("%q", s) .. ": " .. tostring(got))
        assert.truthy(type(got) == "string" or (got == nil and type(why) == "string"), name)
        if name == "image" and got then
          -- The host is kept as written (no IDNA); all after it is ASCII.
          assert.falsy(got:match("^https?://[^/]*(.*)$"):find("[^\33-\126]"), string.format("%q gave %q", s, got))
          assert.equal(got, url.image(got), string.format("%q", s))
        end
      end
    end
  end)
end)

describe("url.endpoint", function()
  it("finding 13: refuses an endpoint port outside 1-65535 (99999), which every call would fail and retry", function()
    refused(url.endpoint, "http://127.0.0.1:99999", "1-65535")
    refused(url.endpoint, "https://h:65536/", "1-65535")
    refused(url.endpoint, "https://h:0/", "1-65535")
    refused(url.endpoint, "https://h:/", "empty port")
    refused(url.endpoint, "https://h:http/", "not a number")
    assert.equal("https://h:65535", url.endpoint("https://h:65535"))
    assert.equal("http://127.0.0.1:1/ocr", url.endpoint("http://127.0.0.1:1/ocr"))
  end)

  it("accepts http(s) with a host, any path, and returns the URL as given", function()
    for _, s in ipairs({ "https://gjbsb.market.alicloudapi.com", "https://gjbsb.market.alicloudapi.com/",
                         "http://127.0.0.1:8080/ocr/advanced", "HTTP://Host:08080/A", "http://[::1]:8080/x",
                         "https://h/a%20b/c;d=e" }) do
      assert.equal(s, url.endpoint(s))
    end
  end)

  it("refuses spaces, control characters, non-ASCII bytes, a query, a fragment and a user name", function()
    refused(url.endpoint, "http://h/a b", "space")
    refused(url.endpoint, " http://h/", "space")
    refused(url.endpoint, "http://h/\n", "control character")
    refused(url.endpoint, "http://h/\0", "control character")
    refused(url.endpoint, "http://h/\127", "control character")
    refused(url.endpoint, "http://h/é", "not ASCII")
    refused(url.endpoint, "http://h/ocr?x=1", "query or fragment")
    refused(url.endpoint, "http://h/ocr?", "query or fragment")
    refused(url.endpoint, "http://h/ocr#top", "query or fragment")
    local why = refused(url.endpoint, "https://user:secret@h/", "user name or password")
    assert.falsy(why:find("secret", 1, true))
  end)

  it("refuses another scheme, no host and a malformed host", function()
    refused(url.endpoint, "ftp://h/", "http:// or https://")
    refused(url.endpoint, "h:8080", "http:// or https://")
    refused(url.endpoint, "http:/h", "http:// or https://")
    refused(url.endpoint, "http://", "no host")
    refused(url.endpoint, "http:///x", "no host")
    refused(url.endpoint, "http://:80/", "no host")
    refused(url.endpoint, "http://[::1/", "IPv6")
    refused(url.endpoint, "http://[zz]/", "IPv6")
    refused(url.endpoint, "http://127.1/", "dotted-quad")
    refused(url.endpoint, "http://a\\b/", "host")
    refused(url.endpoint, "", "empty")
    for _, v in ipairs({ 8080, false, {} }) do refused(url.endpoint, v, "must be a string") end
  end)
end)

describe("url.proxy", function()
  it("finding 13: refuses an ftp:// proxy and garbage such as ':::' at once, with a reason", function()
    refused(url.proxy, "ftp://proxy:21", "http, https, socks4, socks4a, socks5 or socks5h")
    refused(url.proxy, ":::", "no host")
    refused(url.proxy, "gopher://p:70", "not gopher://")
  end)

  it("accepts every scheme libcurl takes, in any case, and host:port without one", function()
    for _, s in ipairs({ "http://proxy:3128", "https://proxy:443", "socks4://p:1080", "socks4a://p:1080",
                         "socks5://p:1080", "socks5h://p:1080", "HTTP://Proxy:3128/", "http://proxy",
                         "proxy.corp:3128", "127.0.0.1:8080", "[::1]:3128", "http://[::1]:3128",
                         "http://user:p%40ss@proxy:3128", "user:pw@proxy:3128" }) do
      assert.equal(s, url.proxy(s))
    end
  end)

  it("refuses a bare host without a scheme (libcurl would use port 1080), a bad port, a path or query", function()
    refused(url.proxy, "proxy.corp", "host:port")
    refused(url.proxy, "http://p:0", "1-65535")
    refused(url.proxy, "http://p:65536", "1-65535")
    refused(url.proxy, "p:99999", "1-65535")
    refused(url.proxy, "p:", "empty port")
    refused(url.proxy, "p:abc", "not a number")
    refused(url.proxy, "http://p:3128/path", "path")
    refused(url.proxy, "http://p:3128/?x", "query or fragment")
    refused(url.proxy, "http://p:3128#x", "query or fragment")
    refused(url.proxy, "http:/p:3128", "'//'")
    refused(url.proxy, "http://", "no host")
    refused(url.proxy, "http://user@:3128", "no host")
    refused(url.proxy, "http://p :3128", "space")
    refused(url.proxy, "http://p:3128\r\n", "control character")
    refused(url.proxy, "", "empty")
    for _, v in ipairs({ 3128, true, {} }) do refused(url.proxy, v, "must be a string") end
  end)

  it("never names the user name or password in a reason", function()
    for _, s in ipairs({ "ftp://user:secret@p:21", "http://user:secret@p:99999", "http://user:secret@p:3128/x",
                         "user:secret@p", "http://user:secret@[::zz]:1" }) do
      local why = refused(url.proxy, s)
      assert.falsy(why:find("secret", 1, true), why)
    end
  end)
end)
