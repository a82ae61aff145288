/*
 * aliocr.core: the C core of aliocr.
 *
 * This is the start of the core: it initialises libcurl once per process and
 * reports the versions it was built with. The HTTP engine, the JSON-to-table
 * conversion and request signing are built on it (see the project's issues).
 */
#include <curl/curl.h>

#include <lua.h>
#include <lauxlib.h>

#define ALIOCR_VERSION "0.1.0"

#if defined(__GNUC__)
#define ALIOCR_EXPORT __attribute__((visibility("default")))
#else
#define ALIOCR_EXPORT
#endif

static int curl_ready = 0;

/***
 * The versions of the libraries the core runs with.
 * @function versions
 * @treturn table `{ aliocr = "0.1.0", curl = "8.x.y", ssl = "OpenSSL/3.x" }`
 */
static int core_versions(lua_State *L)
{
    const curl_version_info_data *info = curl_version_info(CURLVERSION_NOW);
    lua_createtable(L, 0, 3);
    lua_pushstring(L, ALIOCR_VERSION);
    lua_setfield(L, -2, "aliocr");
    lua_pushstring(L, info->version);
    lua_setfield(L, -2, "curl");
    lua_pushstring(L, info->ssl_version ? info->ssl_version : "");
    lua_setfield(L, -2, "ssl");
    return 1;
}

ALIOCR_EXPORT int luaopen_aliocr_core(lua_State *L)
{
    /* curl_global_init is process-wide: once, and never undone from Lua. */
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return luaL_error(L, "aliocr.core: curl_global_init failed");
        curl_ready = 1;
    }
    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, core_versions);
    lua_setfield(L, -2, "versions");
    lua_pushstring(L, "aliocr " ALIOCR_VERSION);
    lua_setfield(L, -2, "_VERSION");
    return 1;
}
