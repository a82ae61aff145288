/*
 * What the libFuzzer harnesses share: a Lua state with the source tree's Lua
 * layer on package.path (the harnesses run from the repository's root) and
 * aliocr.core preloaded from the harness's own build, and a checking
 * function made from Lua source.
 */
#ifndef ALIOCR_FUZZ_HARNESS_H
#define ALIOCR_FUZZ_HARNESS_H

#include <lualib.h>

int luaopen_aliocr_core(lua_State *L); /* src/core.c */

static lua_State *harness_state(void)
{
    lua_State *L = luaL_newstate();
    if (!L)
        abort();
    luaL_openlibs(L);
    if (luaL_dostring(L, "package.path = 'lua/?.lua;' .. package.path") != LUA_OK)
        abort();
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, luaopen_aliocr_core);
    lua_setfield(L, -2, "aliocr.core");
    lua_pop(L, 2);
    return L;
}

/* Runs Lua source that returns a function; keeps it in the registry and
 * returns its reference. Aborts (a harness bug) when the source fails. */
static int harness_function(lua_State *L, const char *source)
{
    if (luaL_loadstring(L, source) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
        fprintf(stderr, "%s\n", lua_tostring(L, -1));
        abort();
    }
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

#endif
