/*
 * libFuzzer harness: what the core does with a server's answer. The input is
 * a made-up answer: a status, how the attempt ended, the header block as a
 * transport hands it over, and the body. It goes through the core's
 * response builder (aliocr_push_response in src/response.c, the transport
 * contract both transports return: headers, body, JSON decoded with the Lua
 * layer's decoder, whole numbers made integers) and then the Lua layer's
 * classification and result building (aliocr.errors.classify,
 * aliocr.result.build, tostring of an error). A crash, a sanitizer report
 * or a Lua error anywhere is a finding.
 *
 * Input: byte 0-1 status (big-endian, mod 1000); byte 2 flags (1 decode,
 * 4 transfer failed, 8 too large, 16 request sent, 32 the resend refused,
 * 64 the body's start as the failure's words); byte 3-4 the header block's
 * length; then the header block, then the body.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/aliocr.h"

#include "harness.h"

static lua_State *L;
static int check_ref, decode_ref;

static const char check_lua[] =
    "local errors = require('aliocr.errors')\n"
    "local result = require('aliocr.result')\n"
    "return function(r)\n"
    "  local err = errors.classify(r)\n"
    "  if err then\n"
    "    assert(type(err.kind) == 'string' and type(tostring(err)) == 'string')\n"
    "    assert(err.billed == true or err.billed == false or err.billed == nil)\n"
    "    -- A refused resend: sent, no answer, so billing is unknown.\n"
    "    if r.error == 'GOT_NOTHING' and r.sent and r.status == 0 then assert(err.billed == nil) end\n"
    "    return\n"
    "  end\n"
    "  local res = result.build(r.json, r)\n"
    "  assert(type(res.text) == 'string' and type(res.lines) == 'table' and res.billed == true)\n"
    "end\n";

static const char decoder_lua[] =
    "local cjson = require('cjson').new()\n"
    "cjson.decode_max_depth(64)\n"
    "cjson.decode_invalid_numbers(false)\n"
    "return cjson.decode\n";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    L = harness_state();
    check_ref = harness_function(L, check_lua);
    decode_ref = harness_function(L, decoder_lua);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    aliocr_answer a;
    char words[256];
    size_t head_len;
    int flags;
    if (size < 5)
        return 0;
    memset(&a, 0, sizeof a);
    a.status = ((long)data[0] << 8 | data[1]) % 1000;
    flags = data[2];
    head_len = (size_t)data[3] << 8 | data[4];
    data += 5;
    size -= 5;
    if (head_len > size)
        head_len = size;
    a.head = (const char *)data;
    a.head_len = head_len;
    a.body = (const char *)data + head_len;
    a.body_len = size - head_len;
    a.sent = (flags & 16) != 0;
    a.too_large = (flags & 8) != 0;
    if (flags & 64) {
        size_t n = a.body_len < sizeof words - 1 ? a.body_len : sizeof words - 1;
        memcpy(words, a.body, n);
        words[n] = '\0';
        a.message = words;
    }
    if (flags & 4)
        a.error = "RECV_ERROR";
    if (flags & 32) {
        /* No answer came (so nothing was too large either). */
        a.resend_refused = 1;
        a.too_large = 0;
        a.error = NULL;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, check_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, decode_ref);
    aliocr_push_response(L, (flags & 1) ? lua_gettop(L) : 0, &a);
    lua_remove(L, -2);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        fprintf(stderr, "Lua error on an answer: %s\n", lua_tostring(L, -1));
        abort();
    }
    lua_settop(L, 0);
    return 0;
}
