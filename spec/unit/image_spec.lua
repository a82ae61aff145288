-- Local images (lua/aliocr/image.lua): the shapes a call takes, what is
-- misuse (raises) and what is a runtime failure (an error of kind "image",
-- not billed), the types told by their first bytes, the size cap; and
-- storage's answers classified (errors.classify_storage) on hand-made
-- responses with OSS's XML error bodies. No server.
local errors = require("aliocr.errors")
local image = require("aliocr.image")
local sh = require("helpers.sh")

-- The first bytes of each type, and a tail to make them files of some size.
local HEADS = {
  ["image/png"] = "\137PNG\r\n\26\n\0\0\0\13IHDR",
  ["image/jpeg"] = "\255\216\255\224\0\16JFIF\0",
  ["image/gif"] = "GIF89a\1\0\1\0",
  ["image/webp"] = "RIFF\36\0\0\0WEBPVP8 ",
  -- "BM", the file size, two reserved words, the data offset, then a
  -- 40-byte info header's size.
  ["image/bmp"] = "BM" .. ("\0"):rep(12) .. "\40\0\0\0" .. ("\0"):rep(16),
}

describe("aliocr.image", function()
  local dir
  setup(function() dir = sh.tmpdir() end)
  teardown(function() os.execute("rm -rf " .. sh.q(dir)) end)

  local function file(name, content)
    local path = dir .. "/" .. name
    sh.write_all(path, content)
    return path
  end

  it("tells a URL (a string or { url }) from a local image ({ file } or { bytes })", function()
    assert.is_false(image.is_local("https://example.com/a.png"))
    assert.is_false(image.is_local({ url = "https://example.com/a.png" }))
    assert.is_true(image.is_local({ file = "a.png" }))
    assert.is_true(image.is_local({ bytes = "x", name = "shot.png" }))
  end)

  it("raises on a malformed image table, naming what to fix", function()
    local cases = {
      { {}, "exactly one of url, file and bytes" },
      { { file = "a", bytes = "b" }, "exactly one" },
      { { url = "u", file = "a" }, "exactly one" },
      { { file = "a", path = "b" }, "unknown image field 'path'" },
      { { file = 1 }, "image file must be a non%-empty path" },
      { { file = "" }, "image file must be a non%-empty path" },
      { { file = "a\0b" }, "without NUL" },
      { { bytes = 1 }, "image bytes must be a string" },
      { { bytes = "x", name = "" }, "image name must be a non%-empty string" },
      { { bytes = "x", name = "a\nb" }, "without control characters" },
      { { url = "u", name = "n" }, "an image URL takes no name" },
    }
    for _, case in ipairs(cases) do
      local ok, e = pcall(image.is_local, case[1])
      assert.is_false(ok)
      assert.matches(case[2], e)
    end
  end)

  it("sniffs PNG, JPEG, GIF, WebP and BMP from the first bytes, of a file or of bytes", function()
    local EXT = { ["image/png"] = "png", ["image/jpeg"] = "jpg", ["image/gif"] = "gif", ["image/webp"] = "webp",
      ["image/bmp"] = "bmp" }
    for ctype, head in pairs(HEADS) do
      local data = head .. ("z"):rep(100)
      local from_file = assert(image.load({ file = file("x-" .. EXT[ctype], data) }, image.MAX_BYTES))
      assert.same({ ctype, EXT[ctype], #data, "x-" .. EXT[ctype] },
        { from_file.type, from_file.ext, from_file.size, from_file.name })
      assert.is_nil(from_file.bytes) -- a file is not read into Lua
      local from_bytes = assert(image.load({ bytes = data }, image.MAX_BYTES))
      assert.same({ ctype, #data, "image." .. EXT[ctype], data },
        { from_bytes.type, from_bytes.size, from_bytes.name, from_bytes.bytes })
    end
  end)

  it("a missing, unreadable, empty, too large or non-image file is an error of kind image, not billed", function()
    local png = HEADS["image/png"] .. ("z"):rep(100)
    local fifo = dir .. "/pipe.png"
    os.execute("mkfifo " .. sh.q(fifo))
    local cases = {
      { { file = dir .. "/missing.png" }, "UNREADABLE", "cannot open the image file" },
      { { file = dir }, "UNREADABLE", "is a directory, not a regular file" },
      { { file = "/dev/null" }, "UNREADABLE", "is a character device, not a regular file" },
      -- Not opened: opening a FIFO would wait for a writer.
      { { file = fifo }, "UNREADABLE", "is a fifo, not a regular file" },
      { { bytes = "BMW is a car maker, and this text is long enough for a header" }, "NOT_AN_IMAGE", "not a PNG" },
      { { file = file("empty.png", "") }, "EMPTY", "is empty" },
      { { bytes = "" }, "EMPTY", "the image bytes is empty" },
      { { file = file("text.png", "hello, not an image at all") }, "NOT_AN_IMAGE", "is not a PNG, JPEG" },
      { { bytes = "BM" }, "NOT_AN_IMAGE", "not a PNG" }, -- too short for a BMP
      { { file = file("big.png", png) }, "TOO_LARGE", "over max_image_bytes %(100%)", 100 },
    }
    for _, case in ipairs(cases) do
      local img, err = image.load(case[1], case[4] or image.MAX_BYTES)
      assert.is_nil(img)
      assert.is_true(errors.is_error(err))
      assert.same({ "image", false, false, case[2], "aliocr" },
        { err.kind, err.billed, err.retryable, err.code, err.code_source })
      assert.matches(case[3], err.msg)
    end
  end)

  it("the size cap counts bytes: exactly max_image_bytes passes", function()
    local data = HEADS["image/gif"] .. ("z"):rep(90)
    assert.truthy(image.load({ bytes = data }, #data))
    assert.is_nil(image.load({ bytes = data }, #data - 1))
  end)

  it("bytes() reads a file whole for an uploader, and tells a file that changed since", function()
    local data = HEADS["image/png"] .. ("q"):rep(5000)
    local path = file("whole.png", data)
    local img = assert(image.load({ file = path }, image.MAX_BYTES))
    assert.equal(data, image.bytes(img))
    sh.write_all(path, data .. "more")
    local none, err = image.bytes(img)
    assert.is_nil(none)
    assert.same({ "image", "CHANGED" }, { err.kind, err.code })
  end)
end)

describe("errors.classify_storage", function()
  local function response(t)
    local r = { status = 200, headers = {}, sent = true, too_large = false, body = "" }
    for k, v in pairs(t) do r[k] = v end
    return r
  end

  local function oss_error(code, message)
    return '<?xml version="1.0" encoding="UTF-8"?>\n<Error>\n  <Code>' .. code .. '</Code>\n  <Message>' ..
      message .. '</Message>\n  <RequestId>5C3D8D2A0ACA54D87B43****</RequestId>\n  <HostId>b.oss</HostId>\n</Error>'
  end

  it("2xx is no error (a PUT's 200, a DELETE's 204)", function()
    assert.is_nil(errors.classify_storage(response({ status = 200 }), "upload"))
    assert.is_nil(errors.classify_storage(response({ status = 204 }), "delete"))
  end)

  it("OSS's refusals are told apart by their code, with OSS's request id; never billed", function()
    for _, case in ipairs({
      { 403, "SignatureDoesNotMatch", "The request signature we calculated does not match", false },
      { 403, "RequestTimeTooSkewed", "The difference between the request time and the current time is too large.",
        false },
      { 403, "AccessDenied", "Request has expired.", false },
      { 404, "NoSuchBucket", "The specified bucket does not exist.", false },
      { 503, "ServiceUnavailable", "Please reduce your request rate.", true },
    }) do
      local err = errors.classify_storage(response({ status = case[1], body = oss_error(case[2], case[3]),
        headers = { ["x-oss-request-id"] = "64F0A1B2C3D4E5F601234567" } }), "upload")
      assert.same({ "storage", false, case[1], case[2], "oss", "64F0A1B2C3D4E5F601234567", case[4], "upload" },
        { err.kind, err.billed, err.status, err.code, err.code_source, err.request_id, err.retryable, err.action })
      assert.equal("upload refused by OSS: " .. case[3], err.msg)
      assert.matches("aliocr storage error: upload refused by OSS", tostring(err))
    end
  end)

  it("without x-oss-request-id, the body's RequestId; without a body, the status", function()
    local err = errors.classify_storage(response({ status = 403, body = oss_error("AccessDenied", "a &amp; b") }),
      "delete")
    assert.same({ "5C3D8D2A0ACA54D87B43****", "delete refused by OSS: a & b" }, { err.request_id, err.msg })
    local bare = errors.classify_storage(response({ status = 502 }), "upload")
    assert.same({ nil, "upload refused by OSS: HTTP 502", true }, { bare.code, bare.msg, bare.retryable })
  end)

  it("a transport failure: retried unless permanent; an upload that went out may have stored its object", function()
    local sent = errors.classify_storage(response({ status = 0, error = "OPERATION_TIMEDOUT", message = "slow" }),
      "upload")
    assert.same({ "storage", false, true, "OPERATION_TIMEDOUT", "transport", true },
      { sent.kind, sent.billed, sent.retryable, sent.code, sent.code_source, sent._maybe_stored })
    local unsent = errors.classify_storage(response({ status = 0, sent = false, error = "COULDNT_CONNECT",
      message = "refused" }), "upload")
    assert.is_nil(unsent._maybe_stored)
    local tls = errors.classify_storage(response({ status = 0, sent = false, error = "PEER_FAILED_VERIFICATION",
      message = "bad cert" }), "delete")
    assert.is_false(tls.retryable)
  end)
end)
