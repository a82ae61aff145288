/*
 * libFuzzer harness: what the core does with a server's answer. The input is
 * a made-up answer: a status, how the transfer ended, the header block as
 * libcurl hands it over, and the body. It goes through the C engine's
 * response building (headers, body, JSON by lua-cjson, whole numbers made
 * integers) and then the Lua layer's classification and result building
 * (aliocr.errors.classify, aliocr.result.build, tostring of an error). A
 * crash, a sanitizer report or a Lua error anywhere is a finding.
 *
 * Input: byte 0-1 status (big-endian, mod 1000); byte 2 flags (1 decode,
 * 2 lean, 4 transfer failed, 8 too large, 16 request sent, 32 libcurl's
 * resend refused, 64 the body's start as libcurl's error text); byte 3-4
 * the header block's length; then the header block, then the body.
 */
#include "../src/engine.c"

#include <stdint.h>

#include "harness.h"

static lua_State *L;
static engine *E;
static int check_ref;

static const char check_lua[] =
    "local errors = require('aliocr.errors')\n"
    "local result = require('aliocr.result')\n"
    "return function(r)\n"
    "  local err = errors.classify(r)\n"
    "  if err then\n"
    "    assert(type(err.kind) == 'string' and type(tostring(err)) == 'string')\n"
    "    assert(err.billed == true or err.billed == false or err.billed == nil)\n"
    "    -- A refused resend: sent, no answer, so billing is unknown.\n"
    "    if r.curl_name == 'GOT_NOTHING' and r.sent and r.status == 0 then assert(err.billed == nil) end\n"
    "    return\n"
    "  end\n"
    "  if not r.integers then result.normalize(r.json) end\n"
    "  local res = result.build(r.json, r)\n"
    "  assert(type(res.text) == 'string' and type(res.lines) == 'table' and res.billed == true)\n"
    "end\n";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    L = harness_state();
    if (luaL_dostring(L, "return require('aliocr.core').engine()") != LUA_OK) {
        fprintf(stderr, "%s\n", lua_tostring(L, -1));
        abort();
    }
    E = luaL_checkudata(L, -1, ALIOCR_ENGINE);
    luaL_ref(L, LUA_REGISTRYINDEX); /* keeps the engine alive */
    check_ref = harness_function(L, check_lua);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    job j;
    size_t head_len;
    long status;
    int flags;
    if (size < 5)
        return 0;
    status = ((long)data[0] << 8 | data[1]) % 1000;
    flags = data[2];
    head_len = (size_t)data[3] << 8 | data[4];
    data += 5;
    size -= 5;
    if (head_len > size)
        head_len = size;
    memset(&j, 0, sizeof j);
    j.decode = flags & 1;
    j.lean = (flags & 2) != 0;
    j.result = (flags & 4) ? CURLE_RECV_ERROR : CURLE_OK;
    j.too_large = (flags & 8) != 0;
    j.max_bytes = DEFAULT_MAX_BYTES;
    if (flags & 32) {
        /* No answer came (so nothing was too large either). */
        j.result = CURLE_ABORTED_BY_CALLBACK;
        j.resend_refused = 1;
        j.too_large = 0;
    }
    if (flags & 64) {
        size_t n = size - head_len;
        if (n > sizeof j.errbuf - 1)
            n = sizeof j.errbuf - 1;
        memcpy(j.errbuf, data + head_len, n);
        j.errbuf[n] = '\0';
    }
    if (buffer_append(&j.head, (const char *)data, head_len) != 0 ||
        buffer_append(&j.body, (const char *)data + head_len, size - head_len) != 0)
        abort();
    lua_rawgeti(L, LUA_REGISTRYINDEX, E->decode_ref);
    push_answer(L, lua_gettop(L), &j, status, (flags & 16) != 0, 1, 0.0);
    lua_remove(L, -2);
    lua_rawgeti(L, LUA_REGISTRYINDEX, check_ref);
    lua_insert(L, -2);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        fprintf(stderr, "Lua error on an answer: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_settop(L, 0);
    buffer_free(&j.head);
    buffer_free(&j.body);
    return 0;
}
