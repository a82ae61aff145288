/*
 * libFuzzer harness: the request builder (src/request.c) on any input. The
 * input is split at NUL bytes into an AppKey (or, with flag 2, an AppCode),
 * an AppSecret, a path, an image URL and parameter keys and values. They go
 * through core.config (its guards: a credential with CR or LF is refused,
 * which is expected) and config:request (the form encoding, the header
 * lines, the string-to-sign and the HMAC by OpenSSL). A crash, a sanitizer
 * report, a signature of the wrong size, a form with a reserved byte left, a
 * header line with CR or LF, or a secret in tostring is a finding.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "../src/aliocr.h"

#include "harness.h"

static lua_State *L;
static int check_ref;

static const char check_lua[] =
    "local core = require('aliocr.core')\n"
    "return function(flags, key, secret, path, image, ...)\n"
    "  local sha1, appcode, get = flags % 2 == 1, flags % 4 >= 2, flags % 8 >= 4\n"
    "  local ok, config = pcall(core.config, {\n"
    "    appcode = appcode and key or nil, app_key = not appcode and key or nil,\n"
    "    app_secret = not appcode and secret or nil, signature_method = sha1 and 'HmacSHA1' or 'HmacSHA256',\n"
    "    urls = { advanced = 'http://h/' .. path }, connect_timeout_ms = 1000, max_bytes = 1000 })\n"
    "  if not ok then return end\n"
    "  local params = { ... }\n"
    "  if #params % 2 == 1 then params[#params + 1] = '' end\n"
    "  local url, headers, body, sts = config:request('advanced', image, params, get and 'GET' or 'POST')\n"
    "  local form = get and url:match('%?([^?]*)$') or body\n"
    "  assert(form and not form:find('[^%w%-%._~%%=&]'), 'a reserved byte left in the form')\n"
    "  for _, h in ipairs(headers) do assert(not h:find('[\\r\\n]'), 'CR or LF in a header line') end\n"
    "  if appcode then\n"
    "    assert(headers[#headers] == 'Authorization: APPCODE ' .. key, 'the Authorization line')\n"
    "    assert(tostring(config) == 'aliocr.Config (AppCode, redacted)', 'tostring is not the redacted form')\n"
    "  else\n"
    "    local sig = headers[#headers]:match('^X%-Ca%-Signature: (.*)$')\n"
    "    assert(sig and #sig == (sha1 and 28 or 44), 'a signature of the wrong size')\n"
    "    assert(type(sts) == 'string', 'no string-to-sign')\n"
    "    assert(tostring(config) == 'aliocr.Config (AppKey ' .. key .. ', secret redacted)',\n"
    "      'tostring of the configuration is not the redacted form')\n"
    "  end\n"
    "  config:close()\n"
    "end\n";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    L = harness_state();
    check_ref = harness_function(L, check_lua);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t i, start = 0;
    int nargs = 1;
    if (size < 1)
        return 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, check_ref);
    lua_pushinteger(L, data[0] & 7);
    data++;
    size--;
    for (i = 0; i <= size && nargs < 40; i++) {
        if (i == size || data[i] == 0) {
            lua_pushlstring(L, (const char *)data + start, i - start);
            nargs++;
            start = i + 1;
        }
    }
    while (nargs < 5) {        /* key, secret, path and image at least */
        lua_pushliteral(L, "k");
        nargs++;
    }
    if (lua_pcall(L, nargs, 0, 0) != LUA_OK) {
        fprintf(stderr, "Lua error: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_settop(L, 0);
    lua_gc(L, LUA_GCSTEP, 0);
    return 0;
}
