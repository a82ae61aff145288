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
"图片文字识别" API; inside nginx (OpenResty, Debian's libnginx-mod-http-lua)
it uses nginx's non-blocking sockets instead. Comes with a local gateway
emulator for offline testing (bin/aliocr-emulator, in the source tree).]],
  license = "MIT",
}

-- lua-cjson for the module and the command line tool, argparse for the
-- command line tool (bin/aliocr, which runs the module aliocr.cli).
dependencies = { "lua >= 5.1", "lua-cjson", "argparse" }

-- libcurl (7.58.0 or newer: the options newer than that are used only when
-- the libcurl built against has them, see docs/development.md) for HTTP,
-- OpenSSL's libcrypto for the request signatures (the gateway's and OSS's).
-- Found by their libraries: Debian keeps curl/curl.h in a multiarch
-- directory that the compiler searches but LuaRocks' header check does not.
external_dependencies = {
  CURL = { library = "curl" },
  OPENSSL = { library = "crypto" },
}

build = {
  type = "builtin",
  modules = {
    ["aliocr.core"] = {
      sources = { "src/core.c", "src/buffer.c", "src/config.c", "src/request.c", "src/json.c", "src/response.c",
                  "src/engine.c", "src/drive.c", "src/worker.c", "src/transfer.c", "src/http.c", "src/http_parser.c",
                  "src/oss.c" },
      libraries = { "curl", "crypto", "pthread", "dl" },
      incdirs = { "$(CURL_INCDIR)", "$(OPENSSL_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)", "$(OPENSSL_LIBDIR)" },
    },
    ["aliocr"] = "lua/aliocr.lua",
    ["aliocr.budget"] = "lua/aliocr/budget.lua",
    ["aliocr.limiter"] = "lua/aliocr/limiter.lua",
    ["aliocr.cli"] = "lua/aliocr/cli.lua",
    ["aliocr.cli.codes"] = "lua/aliocr/cli/codes.lua",
    ["aliocr.cli.inputs"] = "lua/aliocr/cli/inputs.lua",
    ["aliocr.cli.options"] = "lua/aliocr/cli/options.lua",
    ["aliocr.cli.output"] = "lua/aliocr/cli/output.lua",
    ["aliocr.cli.progress"] = "lua/aliocr/cli/progress.lua",
    ["aliocr.cli.run"] = "lua/aliocr/cli/run.lua",
    ["aliocr.client"] = "lua/aliocr/client.lua",
    ["aliocr.client.batch"] = "lua/aliocr/client/batch.lua",
    ["aliocr.client.call"] = "lua/aliocr/client/call.lua",
    ["aliocr.client.jobs"] = "lua/aliocr/client/jobs.lua",
    ["aliocr.curl"] = "lua/aliocr/curl.lua",
    ["aliocr.errors"] = "lua/aliocr/errors.lua",
    ["aliocr.image"] = "lua/aliocr/image.lua",
    ["aliocr.journal"] = "lua/aliocr/journal.lua",
    ["aliocr.oss"] = "lua/aliocr/oss.lua",
    ["aliocr.options"] = "lua/aliocr/options.lua",
    ["aliocr.resty"] = "lua/aliocr/resty.lua",
    ["aliocr.result"] = "lua/aliocr/result.lua",
    ["aliocr.url"] = "lua/aliocr/url.lua",
  },
  install = {
    bin = { aliocr = "bin/aliocr" },
  },
  copy_directories = { "examples" },
}

test_dependencies = { "busted" }
test = { type = "busted" }
