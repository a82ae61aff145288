/*
 * libFuzzer harness: the HTTP response reader of the nginx transport
 * (src/http.c). The first input byte picks a piece size and a body cap; the
 * rest is a server's answer, fed to one reader whole and to another in
 * pieces of that size (all of it, also after the answer is done: bytes
 * after it make the connection one not to keep), each then told the
 * connection closed. A crash, a
 * sanitizer report, a body over the cap, or two readers that disagree (on
 * the outcome, the status, the headers or the body) is a finding.
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
    "local function read(data, piece, cap)\n"
    "  local r = core.http_reader(cap)\n"
    "  local st, name = 'more', nil\n"
    "  for i = 1, #data, piece do\n"
    "    st, name = r:feed(data:sub(i, i + piece - 1))\n"
    "    if not st then break end\n"
    "  end\n"
    "  if st == 'more' then st, name = r:eof() end\n"
    "  local status, headers = r:head()\n"
    "  local body = r:body()\n"
    "  assert(#body <= cap, 'a body over the cap')\n"
    "  local keys = {}\n"
    "  for k, v in pairs(headers or {}) do\n"
    "    assert(k == k:lower(), 'a header name not lower-cased')\n"
    "    keys[#keys + 1] = k .. '=' .. v\n"
    "  end\n"
    "  table.sort(keys)\n"
    "  local out = table.concat({ tostring(st), tostring(name), tostring(status), table.concat(keys, '\\n'),\n"
    "    st == 'done' and body or '', tostring(st == 'done' and r:keepalive()) }, '\\0')\n"
    "  r:free()\n"
    "  return out\n"
    "end\n"
    "return function(data, piece, cap)\n"
    "  local whole, pieces = read(data, #data + 1, cap), read(data, piece, cap)\n"
    "  assert(whole == pieces, 'fed whole and in pieces of ' .. piece .. ', the reader disagrees')\n"
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
    if (size < 1)
        return 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, check_ref);
    lua_pushlstring(L, (const char *)data + 1, size - 1);
    lua_pushinteger(L, 1 + (data[0] & 15));
    lua_pushinteger(L, (data[0] >> 4) * 64);
    if (lua_pcall(L, 3, 0, 0) != LUA_OK) {
        fprintf(stderr, "%s\n", lua_tostring(L, -1));
        abort();
    }
    return 0;
}
