--- aliocr: read text out of images with the Aliyun marketplace OCR API.
--
-- This module is at its start: it loads the C core and reports versions.
-- The client (`aliocr.new`, `client:recognize`, ...) is built next; see
-- README.md for what works today.
-- @module aliocr
local core = require("aliocr.core")

local M = {
  _VERSION = core._VERSION,
}

--- The versions of aliocr and of the libcurl and TLS library it runs with.
-- @treturn table `{ aliocr = ..., curl = ..., ssl = ... }`
function M.versions()
  return core.versions()
end

return M
