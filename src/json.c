/*
 * JSON answers to Lua tables, with the decoder the Lua layer hands over (a
 * lua-cjson instance with its depth limit and no NaN or Infinity, made once
 * by lua/aliocr/options.lua): the core never calls `require` itself, so a
 * host that sandboxes it still works. On Lua 5.3+ lua-cjson decodes every
 * number as a float, so 41 would print as 41.0: whole numbers become
 * integers here, for both transports.
 */
#include <string.h>

#include "aliocr.h"

#if LUA_VERSION_NUM >= 503
static void to_integers(lua_State *L, int idx);

/* Whether the value on top of the stack is a float with a whole value (*v). */
static int whole_float(lua_State *L, lua_Integer *v)
{
    lua_Number n;
    if (lua_type(L, -1) != LUA_TNUMBER || lua_isinteger(L, -1))
        return 0;
    n = lua_tonumber(L, -1);
    return lua_numbertointeger(n, v) && (lua_Number)*v == n;
}

/* Element i of the array at idx, on top of the stack: converted; popped. */
static void to_integer_at(lua_State *L, int idx, lua_Integer i)
{
    lua_Integer v;
    if (lua_type(L, -1) == LUA_TTABLE) {
        to_integers(L, lua_gettop(L));
    } else if (whole_float(L, &v)) {
        lua_pushinteger(L, v);
        lua_rawseti(L, idx, i);
    }
    lua_pop(L, 1);
}

/* The whole numbers of the table at idx, and of the tables in it (as deep
 * as the decoder's depth limit let them be). */
static void to_integers(lua_State *L, int idx)
{
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    luaL_checkstack(L, 4, "JSON too deep");
    /* A JSON array: its elements in order, without lua_next. */
    if (n > 0) {
        lua_Integer i;
        for (i = 1; i <= n; i++) {
            lua_rawgeti(L, idx, i);
            to_integer_at(L, idx, i);
        }
        return;
    }
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_Integer v;
        if (lua_type(L, -1) == LUA_TTABLE) {
            to_integers(L, lua_gettop(L));
        } else if (whole_float(L, &v)) {
            lua_pushvalue(L, -2);
            lua_pushinteger(L, v);
            lua_rawset(L, idx);  /* an existing field: allowed while traversing */
        }
        lua_pop(L, 1);
    }
}
#endif

/* Whether the error on top of the stack is one of lua-cjson's parse errors
 * ("... at character N", or the UTF-16/32 refusal) rather than anything else
 * that can interrupt a decode: an interrupt (lua.c's SIGINT hook), an error
 * raised by a finalizer, memory. */
static int is_parse_error(lua_State *L)
{
    size_t n;
    const char *s, *at, *d;
    if (lua_type(L, -1) != LUA_TSTRING)
        return 0;
    s = lua_tolstring(L, -1, &n);
    if (strstr(s, "does not support UTF-16 or UTF-32"))
        return 1;
    at = NULL;
    for (d = strstr(s, " at character "); d; d = strstr(d + 1, " at character "))
        at = d;
    if (!at)
        return 0;
    d = at + sizeof " at character " - 1;
    if (d >= s + n)
        return 0;
    for (; d < s + n; d++)
        if (*d < '0' || *d > '9')
            return 0;
    return 1;
}

int aliocr_decode_json(lua_State *L, int decode, const char *p, size_t n)
{
    int status;
    lua_pushvalue(L, decode);
    lua_pushlstring(L, p, n);
    status = lua_pcall(L, 1, 1, 0);
    if (status != 0) {
        if (status != LUA_ERRRUN || !is_parse_error(L))
            lua_error(L);
        return 0;
    }
#if LUA_VERSION_NUM >= 503
    if (lua_istable(L, -1))
        to_integers(L, lua_gettop(L));
#endif
    return 1;
}

/***
 * Decodes a JSON text as answers are decoded: `core.decode_json(decode,
 * text)` with a lua-cjson decode function; the value (whole numbers as
 * integers on Lua 5.3+), or nil and the parse error.
 * @function decode_json
 */
static int core_decode_json(lua_State *L)
{
    size_t n;
    const char *p;
    luaL_checktype(L, 1, LUA_TFUNCTION);
    p = luaL_checklstring(L, 2, &n);
    if (aliocr_decode_json(L, 1, p, n))
        return 1;
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
}

void aliocr_json_open(lua_State *L)
{
    lua_pushcfunction(L, core_decode_json);
    lua_setfield(L, -2, "decode_json");
}
