/*
 * libFuzzer harness: the request builder and the signer's inputs. The input
 * is split at NUL bytes into an AppKey, an AppSecret, a path and parameter
 * keys and values. They go through the C credentials (checks, HMAC-SHA256 or
 * HMAC-SHA1 by OpenSSL), the Lua string-to-sign and form encoding
 * (aliocr.signing), and the C form encoder of the prepared calls
 * (append_escaped). Misuse raising a Lua error is expected (a credential
 * with CR or LF, say); a crash, a sanitizer report, a signature of the wrong
 * size or an encoding with a reserved byte left is a finding.
 */
#include "../src/engine.c"

#include <stdint.h>

#include "harness.h"

static lua_State *L;
static int check_ref;

static const char check_lua[] =
    "local core = require('aliocr.core')\n"
    "local signing = require('aliocr.signing')\n"
    "return function(sha1, key, secret, path, ...)\n"
    "  local ok, cred = pcall(core.credentials, { app_key = key, app_secret = secret,\n"
    "    signature_method = sha1 and 'HmacSHA1' or 'HmacSHA256' })\n"
    "  if not ok then return end\n"
    "  local params, n = {}, select('#', ...)\n"
    "  for i = 1, n, 2 do params[#params + 1] = { (select(i, ...)), (select(i + 1, ...)) or '' } end\n"
    "  local sts = signing.string_to_sign({ method = 'POST', accept = 'application/json',\n"
    "    content_type = 'application/x-www-form-urlencoded; charset=UTF-8',\n"
    "    headers = { { 'X-Ca-Key', key }, { 'X-Ca-Nonce', core.uuid() } }, path = '/' .. path, params = params })\n"
    "  local sig = cred:sign(sts)\n"
    "  assert(#sig == (sha1 and 28 or 44), 'a signature of the wrong size')\n"
    "  local form = signing.form(params)\n"
    "  assert(not form:find('[^%w%-%._~%%=&]'), 'a reserved byte left in the form')\n"
    "  assert(tostring(cred) == 'aliocr.Credentials (AppKey ' .. key .. ', secret redacted)',\n"
    "    'tostring of the credentials is not the redacted form')\n"
    "  cred:close()\n"
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
    buffer enc = { NULL, 0, 0 };
    size_t i, start = 0;
    int nargs = 1;
    if (size < 1)
        return 0;
    /* The C form encoder: only unreserved bytes and %XX come out. */
    if (append_escaped(&enc, (const char *)data, size) != 0)
        abort();
    for (i = 0; i < enc.len; i++) {
        unsigned char c = (unsigned char)enc.data[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '.' || c == '_' || c == '~' || c == '%';
        if (!ok)
            abort();
    }
    buffer_free(&enc);

    lua_rawgeti(L, LUA_REGISTRYINDEX, check_ref);
    lua_pushboolean(L, data[0] & 1);
    data++;
    size--;
    for (i = 0; i <= size && nargs < 40; i++) {
        if (i == size || data[i] == 0) {
            lua_pushlstring(L, (const char *)data + start, i - start);
            nargs++;
            start = i + 1;
        }
    }
    while (nargs < 4) {        /* key, secret and path at least */
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
