/*
 * aliocr.Config: a client's constant configuration, handed to the core once
 * when the client is made: its credentials (an AppCode, or an AppKey with
 * its AppSecret: held in C memory and wiped on close, so that no Lua table,
 * error or log line can show the secret), its interfaces' URLs, its default
 * method, connect timeout, answer cap, TLS, proxy and user agent. Both
 * transports build every request from it (request.c): the libcurl engine
 * in C, the nginx transport through config:request.
 *
 * The Lua layer checks every option first (lua/aliocr/options.lua) with the
 * messages users read; what is checked here only guards the core's own
 * invariants (a string where one is needed, no CR or LF in a header).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "aliocr.h"

static const char *const API_NAMES[ALIOCR_APIS] = {"advanced", "handwriting"};

static void free_secret(char **p)
{
    if (*p) {
        OPENSSL_cleanse(*p, strlen(*p));
        free(*p);
        *p = NULL;
    }
}

static void config_free(aliocr_config *c)
{
    int i;
    free_secret(&c->appcode);
    free_secret(&c->app_secret);
    free(c->app_key);
    c->app_key = NULL;
    for (i = 0; i < ALIOCR_APIS; i++) {
        free(c->url[i]);
        c->url[i] = NULL;
        c->path[i] = NULL;
    }
    free(c->ca_file);
    free(c->proxy);
    free(c->user_agent);
    c->ca_file = c->proxy = c->user_agent = NULL;
    c->mode = 0;
}

aliocr_config *aliocr_check_config(lua_State *L, int i)
{
    aliocr_config *c = luaL_checkudata(L, i, ALIOCR_CONFIG);
    if (c->mode == 0)
        luaL_error(L, "attempt to use a closed aliocr configuration");
    return c;
}

int aliocr_sign(const aliocr_config *c, const char *msg, size_t n, char *out)
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    if (c->mode != ALIOCR_SIGNATURE ||
        !HMAC(c->sha1 ? EVP_sha1() : EVP_sha256(), c->app_secret, (int)strlen(c->app_secret),
              (const unsigned char *)msg, n, digest, &dlen))
        return -1;
    aliocr_base64(digest, dlen, out);
    return 0;
}

/* A copy of the string field `name` of the table at index t (nil: NULL,
 * and *out untouched). `header`: it goes into a header line. */
static int copy_field(lua_State *L, int t, const char *name, int header, char **out)
{
    size_t n;
    const char *s;
    lua_getfield(L, t, name);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    if (lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "config field '%s' must be a string", name);
    s = lua_tolstring(L, -1, &n);
    if (memchr(s, '\0', n) || (header && strcspn(s, "\r\n") != n))
        return luaL_error(L, "config field '%s' must not contain CR, LF or NUL", name);
    *out = malloc(n + 1);
    if (!*out)
        return luaL_error(L, "out of memory");
    memcpy(*out, s, n + 1);
    lua_pop(L, 1);
    return 1;
}

static lua_Number number_field(lua_State *L, int t, const char *name, lua_Number lo, lua_Number hi)
{
    lua_Number v;
    lua_getfield(L, t, name);
    if (lua_type(L, -1) != LUA_TNUMBER)
        luaL_error(L, "config field '%s' must be a number", name);
    v = lua_tonumber(L, -1);
    if (!(v >= lo && v <= hi))
        luaL_error(L, "config field '%s' is out of range", name);
    lua_pop(L, 1);
    return v;
}

/* Where the path of an http(s) URL starts ("/" when it has none). */
static const char *path_of(const char *url)
{
    const char *p = strstr(url, "://");
    p = p ? strchr(p + 3, '/') : NULL;
    return p ? p : "/";
}

/***
 * A client's configuration: `{ appcode = s } or { app_key = s, app_secret =
 * s, signature_method = "HmacSHA256"|"HmacSHA1" }`, and `urls = { advanced
 * = s, handwriting = s }` (either may be missing), `method = "POST"|"GET"`,
 * `connect_timeout_ms`, `max_bytes`, `verify` (boolean), and optionally
 * `ca_file`, `proxy`, `user_agent`.
 * @function config
 */
static int config_new(lua_State *L)
{
    aliocr_config *c;
    const char *method;
    int i, have_code, have_key, have_secret;
    luaL_checktype(L, 1, LUA_TTABLE);
    c = lua_newuserdata(L, sizeof *c);
    memset(c, 0, sizeof *c);
    luaL_setmetatable(L, ALIOCR_CONFIG); /* from here on, __gc frees what was copied */
    have_code = copy_field(L, 1, "appcode", 1, &c->appcode);
    have_key = copy_field(L, 1, "app_key", 1, &c->app_key);
    have_secret = copy_field(L, 1, "app_secret", 0, &c->app_secret);
    if (have_code == (have_key || have_secret) || have_key != have_secret)
        return luaL_error(L, "config needs appcode, or app_key and app_secret");
    lua_getfield(L, 1, "signature_method");
    method = lua_isnil(L, -1) ? "HmacSHA256" : luaL_checkstring(L, -1);
    if (strcmp(method, "HmacSHA256") != 0 && strcmp(method, "HmacSHA1") != 0)
        return luaL_error(L, "config field 'signature_method' must be \"HmacSHA256\" or \"HmacSHA1\"");
    c->sha1 = strcmp(method, "HmacSHA1") == 0;
    lua_pop(L, 1);
    lua_getfield(L, 1, "urls");
    luaL_checktype(L, -1, LUA_TTABLE);
    for (i = 0; i < ALIOCR_APIS; i++) {
        if (copy_field(L, lua_gettop(L), API_NAMES[i], 1, &c->url[i])) {
            if (strncasecmp(c->url[i], "http://", 7) != 0 && strncasecmp(c->url[i], "https://", 8) != 0)
                return luaL_error(L, "config urls must be http:// or https:// URLs");
            c->path[i] = path_of(c->url[i]);
        }
    }
    lua_pop(L, 1);
    lua_getfield(L, 1, "method");
    method = luaL_optstring(L, -1, "POST");
    if (strcmp(method, "POST") != 0 && strcmp(method, "GET") != 0)
        return luaL_error(L, "config field 'method' must be \"GET\" or \"POST\"");
    c->post = method[0] == 'P';
    lua_pop(L, 1);
    c->connect_timeout_ms = (long)number_field(L, 1, "connect_timeout_ms", 1, 2147483647.0);
    c->max_bytes = (int64_t)number_field(L, 1, "max_bytes", 1, 9.0e15);
    lua_getfield(L, 1, "verify");
    c->verify = lua_isnil(L, -1) || lua_toboolean(L, -1);
    lua_pop(L, 1);
    copy_field(L, 1, "ca_file", 0, &c->ca_file);
    copy_field(L, 1, "proxy", 1, &c->proxy);
    copy_field(L, 1, "user_agent", 1, &c->user_agent);
    c->mode = have_code ? ALIOCR_APPCODE : ALIOCR_SIGNATURE;
    return 1;
}

/***
 * "appcode" or "signature".
 * @function mode
 */
static int config_mode(lua_State *L)
{
    aliocr_config *c = aliocr_check_config(L, 1);
    lua_pushstring(L, c->mode == ALIOCR_APPCODE ? "appcode" : "signature");
    return 1;
}

/***
 * The AppKey (not a secret: it is sent in X-Ca-Key), or nil in AppCode mode.
 * @function app_key
 */
static int config_app_key(lua_State *L)
{
    aliocr_config *c = aliocr_check_config(L, 1);
    if (c->app_key)
        lua_pushstring(L, c->app_key);
    else
        lua_pushnil(L);
    return 1;
}

/***
 * Base64(HMAC(app_secret, text)) with the signature method (for the
 * reference's test vectors; requests are signed by request.c).
 * @function sign
 */
static int config_sign(lua_State *L)
{
    aliocr_config *c = aliocr_check_config(L, 1);
    size_t n;
    const char *text = luaL_checklstring(L, 2, &n);
    char out[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
    if (c->mode != ALIOCR_SIGNATURE)
        return luaL_error(L, "an AppCode configuration signs nothing");
    if (aliocr_sign(c, text, n, out) != 0)
        return luaL_error(L, "HMAC failed");
    lua_pushstring(L, out);
    return 1;
}

/* close, __gc and __close: wipes and frees everything; idempotent; true. */
static int config_close(lua_State *L)
{
    config_free(luaL_checkudata(L, 1, ALIOCR_CONFIG));
    lua_pushboolean(L, 1);
    return 1;
}

static int config_tostring(lua_State *L)
{
    aliocr_config *c = luaL_checkudata(L, 1, ALIOCR_CONFIG);
    if (c->mode == ALIOCR_APPCODE)
        lua_pushstring(L, "aliocr.Config (AppCode, redacted)");
    else if (c->mode == ALIOCR_SIGNATURE)
        lua_pushfstring(L, "aliocr.Config (AppKey %s, secret redacted)", c->app_key);
    else
        lua_pushstring(L, "aliocr.Config (closed)");
    return 1;
}

int aliocr_config_request(lua_State *L); /* request.c */

static const luaL_Reg config_meta[] = {
    {"__gc", config_close},
    {"__close", config_close},
    {"__tostring", config_tostring},
    {NULL, NULL}
};

static const luaL_Reg config_methods[] = {
    {"mode", config_mode},
    {"app_key", config_app_key},
    {"request", aliocr_config_request},
    {"sign", config_sign},
    {"close", config_close},
    {NULL, NULL}
};

void aliocr_config_open(lua_State *L)
{
    aliocr_new_class(L, ALIOCR_CONFIG, config_meta, config_methods, "config", config_new);
}
