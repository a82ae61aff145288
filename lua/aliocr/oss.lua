--- Local images through Aliyun OSS: each image is put as an object of its
-- own (a PUT signed with OSS's V4 signature, OSS4-HMAC-SHA256), the service
-- is given a V4 presigned GET URL of it, and the object is deleted after
-- the call whatever its outcome (unless `keep`). The signatures are made in
-- C (src/oss.c), which holds the AccessKey secret and the STS token. Object
-- names are the prefix, a random UUID and the type's extension: unique and
-- unguessable. This module only builds the requests: the client sends them
-- over its transport and reads their answers with aliocr.errors.
-- @module aliocr.oss
-- @local
local core = require("aliocr.core")

local M = {}

local Store = {}
Store.__index = Store

-- An object name in a URL's path, encoded as the signer encodes it in the
-- canonical URI ("/" kept).
local function encode_key(key) return core.escape(key, true) end

--- The store of settings `s` (options.oss's): takes the credentials into
-- the C signer and drops them from `s`.
function M.new(s)
  local signer = core.oss_signer({ access_key_id = s.access_key_id, access_key_secret = s.access_key_secret,
    security_token = s.security_token, region = s.region })
  s.access_key_secret, s.security_token = nil, nil
  local scheme, host = s.endpoint:match("^(%a+)://(.+)$")
  return setmetatable({
    signer = signer, bucket = s.bucket, prefix = s.prefix, expires = s.expires, keep = s.keep,
    region = s.region,
    -- The base of an object's URL: path-style, or the bucket's own host.
    base = s.path_style and (s.endpoint .. "/" .. s.bucket .. "/")
      or (scheme .. "://" .. s.bucket .. "." .. host .. "/"),
  }, Store)
end

--- A new object name for a loaded image (see aliocr.image).
function Store:name(img)
  return self.prefix .. core.uuid() .. "." .. img.ext
end

local function header_lines(t)
  local lines = {}
  for k, v in pairs(t) do lines[#lines + 1] = k .. ": " .. v end
  table.sort(lines)
  return lines
end

--- The request that stores a loaded image as object `key`: a file is
-- streamed from disk, bytes sent from memory.
function Store:put(img, key)
  local own = { ["content-type"] = img.type }
  local add = self.signer:headers("PUT", self.bucket, key, own, nil, nil)
  for k, v in pairs(own) do add[k] = v end
  return { method = "PUT", url = self.base .. encode_key(key), headers = header_lines(add), body = img.bytes,
    file = img.file, size = img.file and img.size or nil }
end

--- The presigned GET URL of object `key`, valid `expires` seconds.
function Store:url(key)
  return self.base .. encode_key(key) .. "?" .. self.signer:presign("GET", self.bucket, key, self.expires, nil, nil)
end

--- The request that deletes object `key`.
function Store:delete(key)
  local add = self.signer:headers("DELETE", self.bucket, key, nil, nil, nil)
  return { method = "DELETE", url = self.base .. encode_key(key), headers = header_lines(add) }
end

--- Wipes the credentials.
function Store:close() self.signer:close() end

return M
