-- The gateway's AppKey/AppSecret signature, for specs: the string-to-sign
-- written from the reference (../shared/reference/aliyun-gateway.md 2.2-2.6),
-- independently of the emulator's verifier, and the HMAC and MD5 computed by
-- the openssl command line.
local sh = require("helpers.sh")

local M = {}

--- The reference's self-computed vectors (aliyun-gateway.md 2.7): a fixed
-- test AppKey and secret, the strings-to-sign of a POST and a GET, and
-- their signatures. Fixed test secrets only.
M.VECTORS = {
  key = "203753385", secret = "test-secret",
  nonce = "c9f15cbf-f4ac-4a6c-b54d-f51abf4b5b44", timestamp = "1525872629832",
  post = "POST\napplication/json; charset=utf-8\n\napplication/x-www-form-urlencoded; charset=utf-8\n" ..
    "Wed, 09 May 2018 13:30:29 GMT+00:00\nx-ca-key:203753385\n" ..
    "x-ca-nonce:c9f15cbf-f4ac-4a6c-b54d-f51abf4b5b44\nx-ca-signature-method:HmacSHA256\n" ..
    "x-ca-timestamp:1525872629832\n/http2test/test?param1=test&password=123456789&username=xiaoming",
  post_sha256 = "Q8LZfTTkKR9U1tchKMNBhwcGk7gVc9LBfVfFDkPOPdc=",
  post_sha1 = "VFBIc177oanJ8ve1s/EqaCUFpn0=",
  get = "GET\napplication/json\n\n\n\nX-Ca-Key:203753385\nX-Ca-Timestamp:1525872629832\n/ocrservice/advanced",
  get_sha256 = "KX+7lekdMo4p9/EXfGsU7UvekWk6kzxS3mi4f0ZLqFc=",
}

local q = sh.q

local function hex(s) return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end)) end

local function openssl(args, input)
  local path = os.tmpname()
  sh.write_all(path, input)
  local out = sh.capture("openssl " .. args .. " -binary " .. q(path) .. " | openssl base64 -A")
  os.remove(path)
  return out
end

--- Base64(HMAC(secret, text)) for "HmacSHA256" or "HmacSHA1".
function M.hmac(method, secret, text)
  local digest = ({ HmacSHA256 = "sha256", HmacSHA1 = "sha1" })[method]
  assert(digest, "unknown signature method " .. tostring(method))
  return openssl("dgst -" .. digest .. " -mac HMAC -macopt hexkey:" .. hex(secret), text)
end

--- Base64(MD5(body)), as Content-MD5 carries it.
function M.md5(body) return openssl("dgst -md5", body) end

--- The string-to-sign. `r` has method, accept, content_md5, content_type,
-- date (each may be nil), headers = { { name, value }, ... } (the signed
-- ones), path, and params = { { key, value }, ... } (query and form merged).
function M.string_to_sign(r)
  local out = { r.method:upper(), r.accept or "", r.content_md5 or "", r.content_type or "", r.date or "" }
  local s = table.concat(out, "\n") .. "\n"
  local hs = {}
  for _, h in ipairs(r.headers or {}) do hs[#hs + 1] = h end
  table.sort(hs, function(a, b) return a[1] < b[1] end)
  for _, h in ipairs(hs) do s = s .. h[1] .. ":" .. h[2] .. "\n" end
  local seen, keys = {}, {}
  for _, kv in ipairs(r.params or {}) do
    if seen[kv[1]] == nil then
      seen[kv[1]] = kv[2]
      keys[#keys + 1] = kv[1]
    end
  end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do
    parts[#parts + 1] = (seen[k] == "" and k) or (k .. "=" .. seen[k])
  end
  return s .. r.path .. (#parts > 0 and ("?" .. table.concat(parts, "&")) or "")
end

local nonce_n = 0
--- A fresh nonce (unique within this process run).
function M.nonce()
  nonce_n = nonce_n + 1
  local f = assert(io.open("/proc/sys/kernel/random/uuid", "r"))
  local u = f:read("*l")
  f:close()
  return u .. "-" .. nonce_n
end

--- Headers for a signed request. `o`: key, secret, method (HTTP), path,
-- params (list of pairs), signature_method (default HmacSHA256),
-- accept (default application/json), content_type, content_md5, date,
-- timestamp (ms, default now), nonce (default fresh; false for none),
-- extra = { { name, value }, ... } more X-Ca-* headers to sign.
-- Returns a list of "Name: value" lines and the string-to-sign.
function M.headers(o)
  local sig_method = o.signature_method or "HmacSHA256"
  local signed = {
    { "X-Ca-Key", o.key },
    { "X-Ca-Signature-Method", sig_method },
    { "X-Ca-Timestamp", tostring(o.timestamp or math.floor(os.time() * 1000)) },
  }
  local nonce = o.nonce
  if nonce == nil then nonce = M.nonce() end
  if nonce then signed[#signed + 1] = { "X-Ca-Nonce", nonce } end
  for _, h in ipairs(o.extra or {}) do signed[#signed + 1] = h end
  local accept = o.accept or "application/json"
  local sts = M.string_to_sign({
    method = o.method, accept = accept, content_md5 = o.content_md5,
    content_type = o.content_type, date = o.date, headers = signed,
    path = o.path, params = o.params,
  })
  local lines, names = {}, {}
  for _, h in ipairs(signed) do
    lines[#lines + 1] = h[1] .. ": " .. h[2]
    names[#names + 1] = h[1]
  end
  lines[#lines + 1] = "Accept: " .. accept
  if o.content_type then lines[#lines + 1] = "Content-Type: " .. o.content_type end
  if o.content_md5 then lines[#lines + 1] = "Content-MD5: " .. o.content_md5 end
  if o.date then lines[#lines + 1] = "Date: " .. o.date end
  lines[#lines + 1] = "X-Ca-Signature-Headers: " .. table.concat(names, ",")
  lines[#lines + 1] = "X-Ca-Signature: " .. (o.signature or M.hmac(sig_method, o.secret, sts))
  return lines, sts
end

return M
