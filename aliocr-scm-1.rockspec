rockspec_format = "3.0"
package = "aliocr"
version = "scm-1"

source = {
  url = "git+https://example.invalid/aliocr.git",
  branch = "main",
}

description = {
  summary = "Read text out of images with the Aliyun marketplace OCR API",
  detailed = [[
A C core (libcurl) under a thin Lua layer for the Aliyun marketplace
"图片文字识别" API, with a local gateway emulator for offline testing.]],
}

dependencies = { "lua >= 5.1", "lua-cjson" }

external_dependencies = {
  CURL = { header = "curl/curl.h" },
}

build = {
  type = "builtin",
  modules = {
    ["aliocr.core"] = {
      sources = { "src/core.c", "src/engine.c", "src/credentials.c" },
      libraries = { "curl", "crypto" },
      incdirs = { "$(CURL_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)" },
    },
    ["aliocr"] = "lua/aliocr.lua",
    ["aliocr.client"] = "lua/aliocr/client.lua",
    ["aliocr.errors"] = "lua/aliocr/errors.lua",
    ["aliocr.result"] = "lua/aliocr/result.lua",
    ["aliocr.signing"] = "lua/aliocr/signing.lua",
  },
  copy_directories = { "examples" },
}

test_dependencies = { "busted" }
test = { type = "busted" }
