-- HMAC, SHA-256 and MD5 from OpenSSL's libcrypto, through LuaJIT's FFI.
-- Debian's nginx links libcrypto, so its symbols are already in the process;
-- if they are not visible globally, the library is loaded by name. The
-- gateway's signatures use hmac_base64 and md5_base64; the OSS endpoint's V4
-- signatures use hmac_sha256, sha256_hex and md5_hex.
local ffi = require("ffi")

ffi.cdef[[
typedef struct evp_md_st EVP_MD;
const EVP_MD *EVP_sha1(void);
const EVP_MD *EVP_sha256(void);
const EVP_MD *EVP_md5(void);
unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len,
                    const void *d, size_t n,
                    unsigned char *md, unsigned int *md_len);
int EVP_Digest(const void *data, size_t count, unsigned char *md,
               unsigned int *size, const EVP_MD *type, void *impl);
]]

local lib = ffi.C
if not pcall(function() return lib.HMAC end) then
  lib = ffi.load("libcrypto.so.3")
end

local M = {}

local out = ffi.new("unsigned char[64]")
local outlen = ffi.new("unsigned int[1]")

local digests = {
  HmacSHA256 = lib.EVP_sha256(),
  HmacSHA1 = lib.EVP_sha1(),
}

--- Base64 of HMAC(secret, msg) for a gateway signature method name, or nil
-- for a method the gateway does not support.
function M.hmac_base64(method, secret, msg)
  local md = digests[method]
  if not md then return nil end
  if lib.HMAC(md, secret, #secret, msg, #msg, out, outlen) == nil then
    error("HMAC failed")
  end
  return ngx.encode_base64(ffi.string(out, outlen[0]))
end

local function digest(md, data, what)
  if lib.EVP_Digest(data, #data, out, outlen, md, nil) ~= 1 then error(what .. " failed") end
  return ffi.string(out, outlen[0])
end

--- Lower-case hexadecimal of the bytes `s`.
function M.hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

--- Base64 of MD5(data), as Content-MD5 carries it.
function M.md5_base64(data)
  return ngx.encode_base64(digest(lib.EVP_md5(), data, "MD5"))
end

--- MD5(data) in lower-case hexadecimal.
function M.md5_hex(data)
  return M.hex(digest(lib.EVP_md5(), data, "MD5"))
end

--- SHA-256(data) in lower-case hexadecimal.
function M.sha256_hex(data)
  return M.hex(digest(lib.EVP_sha256(), data, "SHA-256"))
end

--- HMAC-SHA256(key, msg): the 32 raw bytes.
function M.hmac_sha256(key, msg)
  if lib.HMAC(lib.EVP_sha256(), key, #key, msg, #msg, out, outlen) == nil then
    error("HMAC failed")
  end
  return ffi.string(out, outlen[0])
end

return M
