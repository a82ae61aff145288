-- The smallest useful aliocr script: read the text of one image.
--
--   ALIOCR_APPCODE=<code> ALIOCR_ENDPOINT=http://127.0.0.1:8080 \
--     lua5.4 examples/basic.lua https://example.com/image.png
--
-- Credentials and the interface URLs come from the environment
-- (ALIOCR_APPCODE, or ALIOCR_APP_KEY and ALIOCR_APP_SECRET; ALIOCR_ENDPOINT or
-- ALIOCR_ADVANCED_URL). Against the local emulator, start it first (see
-- emulator/README.md) and point ALIOCR_ENDPOINT at it; `make demo` runs
-- examples/demo.lua, not this script.
local aliocr = require("aliocr")

local image = arg[1]
if not image then
  io.stderr:write("usage: lua5.4 examples/basic.lua <image-url>\n")
  os.exit(2)
end

local client = aliocr.new()
local res, err = client:recognize(image)
client:close()
if not res then
  io.stderr:write(tostring(err), "\n")
  os.exit(1)
end
print(res.text)
