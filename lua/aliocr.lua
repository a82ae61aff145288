--- aliocr: read text out of images with the Aliyun marketplace OCR API.
--
--     local aliocr = require("aliocr")
--     local client = aliocr.new{ appcode = "...", endpoint = "http://127.0.0.1:8080" }
--     local res, err = client:recognize("https://example.com/a.png")
--     if res then print(res.text) else print(err) end
--
-- See README.md for the options, the result and error fields, and billing.
-- @module aliocr
local core = require("aliocr.core")
local cjson = require("cjson")
local Client = require("aliocr.client")
local errors = require("aliocr.errors")

local M = {
  _VERSION = core._VERSION,
  --- JSON null, as it stands in `data` (lua-cjson's null).
  null = cjson.null,
}

--- A new client (see README.md for the options). Raises on misuse.
M.new = Client.new

--- True when `v` is an aliocr error object.
M.is_error = errors.is_error

--- The versions of aliocr and of the libcurl and TLS library it runs with.
-- @treturn table `{ aliocr = ..., curl = ..., ssl = ... }`
function M.versions()
  return core.versions()
end

return M
