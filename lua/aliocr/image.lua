--- A call's image: an http(s) URL that the service downloads (a string, or
-- `{ url = ... }`), or a local image that goes through storage first (OSS
-- or the client's uploader): `{ file = path }` or `{ bytes = data }`, either
-- with an optional `name` (what the uploader is told; the file's own name
-- by default). A local image is checked before anything is sent: it must be
-- readable, not empty, at most `max_image_bytes`, and a PNG, JPEG, BMP, GIF
-- or WebP by its first bytes. A file is not read into Lua: its first bytes
-- and its size are, and the libcurl transport streams it.
-- @module aliocr.image
-- @local
local core = require("aliocr.core")
local errors = require("aliocr.errors")
local options = require("aliocr.options")

options.own()
local fail = options.fail

local M = {}

--- The default of max_image_bytes: the API guide's cap on an image.
M.MAX_BYTES = 10 * 1024 * 1024

-- A BMP's info header sizes (its versions).
local BMP_INFO = { [12] = true, [40] = true, [52] = true, [56] = true, [64] = true, [108] = true, [124] = true }

-- Each type by its first bytes: content type and file name extension.
local function sniff(head, size)
  if head:sub(1, 8) == "\137PNG\r\n\26\n" then return "image/png", "png" end
  if head:sub(1, 3) == "\255\216\255" then return "image/jpeg", "jpg" end
  if head:sub(1, 6) == "GIF87a" or head:sub(1, 6) == "GIF89a" then return "image/gif", "gif" end
  if head:sub(1, 4) == "RIFF" and head:sub(9, 12) == "WEBP" then return "image/webp", "webp" end
  -- A BMP: a 14-byte file header, then an info header whose size (a
  -- little-endian 32-bit word) is one of the known ones.
  if head:sub(1, 2) == "BM" and size >= 26 then
    local b1, b2, b3, b4 = head:byte(15, 18)
    local dib = b1 and (b1 + 256 * (b2 + 256 * (b3 + 256 * b4)))
    if dib and BMP_INFO[dib] then return "image/bmp", "bmp" end
  end
  return nil
end

local FIELDS = { url = true, file = true, bytes = true, name = true }

local image_error = errors.image

--- An error of kind "image" (see aliocr.errors).
M.error = image_error

--- Whether `v` is a local image (a table with `file` or `bytes`); raises
-- on a malformed image table.
function M.is_local(v)
  if type(v) ~= "table" then return false end
  for k in pairs(v) do
    if not FIELDS[k] then fail("unknown image field '" .. tostring(k) .. "' (url, file, bytes, name)") end
  end
  local n = (v.url ~= nil and 1 or 0) + (v.file ~= nil and 1 or 0) + (v.bytes ~= nil and 1 or 0)
  if n ~= 1 then fail("an image table needs exactly one of url, file and bytes") end
  if v.url ~= nil then
    if v.name ~= nil then fail("an image URL takes no name") end
    return false
  end
  if v.file ~= nil and (type(v.file) ~= "string" or v.file == "" or v.file:find("%z")) then
    fail("image file must be a non-empty path without NUL")
  end
  if v.bytes ~= nil and type(v.bytes) ~= "string" then fail("image bytes must be a string") end
  if v.name ~= nil and (type(v.name) ~= "string" or v.name == "" or v.name:find("%c")) then
    fail("image name must be a non-empty string without control characters")
  end
  return true
end

--- What to describe a local image by in messages: its name or its path.
function M.label(v)
  if v.name then return v.name end
  if v.file then return v.file end
  return "the image bytes"
end

--- Reads and checks a local image (see is_local): returns what storage
-- needs, `{ file = path | bytes = data, size, type, ext, name }`, or nil
-- and an error of kind "image" (not billed: nothing was sent).
function M.load(v, max_bytes)
  local label = M.label(v)
  local head, size
  if v.bytes then
    head, size = v.bytes:sub(1, 18), #v.bytes
  else
    -- Not opened unless it is a regular file: opening a FIFO waits for a writer.
    local kind, why = core.stat(v.file)
    if not kind then return nil, image_error("UNREADABLE", "cannot open the image file: " .. tostring(why)) end
    if kind ~= "file" then
      return nil, image_error("UNREADABLE", "the image file " .. label .. " is a " .. kind .. ", not a regular file")
    end
    local f
    f, why = io.open(v.file, "rb")
    if not f then return nil, image_error("UNREADABLE", "cannot open the image file: " .. tostring(why)) end
    local first, err = f:read(18)
    size = f:seek("end")
    f:close()
    if err or not size then
      return nil, image_error("UNREADABLE", "cannot read the image file " .. label .. ": " .. tostring(err))
    end
    head = first or ""
  end
  if size == 0 then return nil, image_error("EMPTY", label .. " is empty") end
  if size > max_bytes then
    return nil, image_error("TOO_LARGE", string.format("%s is %d bytes, over max_image_bytes (%d)", label, size,
      max_bytes))
  end
  local ctype, ext = sniff(head, size)
  if not ctype then
    return nil, image_error("NOT_AN_IMAGE", label .. " is not a PNG, JPEG, BMP, GIF or WebP image")
  end
  local name = v.name or (v.file and v.file:match("([^/]+)$")) or ("image." .. ext)
  return { file = v.file, bytes = v.bytes, size = size, type = ctype, ext = ext, name = name }
end

--- The error of an upload whose file the engine could not open when it
-- sent it (gone since it was checked): `message` is the engine's ("cannot
-- open the file to send: ...").
function M.unsendable(message)
  return image_error("UNREADABLE", "cannot read the image file: " ..
    tostring(message):gsub("^.-cannot open the file to send: ", ""))
end

--- A loaded image's bytes (a file's read whole: for an uploader function,
-- which takes bytes), or nil and an error of kind "image".
function M.bytes(img)
  if img.bytes then return img.bytes end
  local f, why = io.open(img.file, "rb")
  if not f then return nil, image_error("UNREADABLE", "cannot open the image file: " .. tostring(why)) end
  local data = f:read(img.size + 1)
  f:close()
  if not data or #data ~= img.size then
    return nil, image_error("CHANGED", "the image file " .. img.name .. " changed while it was being read")
  end
  return data
end

return M
