/*
 * aliocr.Credentials: an AppCode, or an AppKey with its AppSecret, held in C
 * memory so that no Lua table, error or log line can show the secret. It
 * signs strings (HMAC with OpenSSL's libcrypto) and hands the AppCode only to
 * the engine, which puts it in the Authorization header.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "aliocr.h"

static char *copy_string(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static void free_secret(char **p)
{
    if (*p) {
        OPENSSL_cleanse(*p, strlen(*p));
        free(*p);
        *p = NULL;
    }
}

const char *aliocr_check_header_safe(lua_State *L, int i, const char *what, size_t *len)
{
    size_t n;
    const char *s = luaL_checklstring(L, i, &n);
    if (strcspn(s, "\r\n") != n || memchr(s, '\0', n))
        luaL_error(L, "%s must not contain CR, LF or NUL characters", what);
    if (len)
        *len = n;
    return s;
}

aliocr_credentials *aliocr_check_credentials(lua_State *L, int i)
{
    aliocr_credentials *c = luaL_checkudata(L, i, ALIOCR_CREDENTIALS);
    if (c->mode == 0)
        luaL_error(L, "attempt to use closed aliocr credentials");
    return c;
}

/* Reads the string field `name` of the options table at index 1 (nil: NULL). */
static const char *opt_field(lua_State *L, const char *name, const char *what, size_t *len)
{
    const char *s = NULL;
    lua_getfield(L, 1, name);
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "%s must be a string", what);
        s = aliocr_check_header_safe(L, -1, what, len);
        if (*len == 0)
            luaL_error(L, "%s must not be empty", what);
    }
    lua_pop(L, 1); /* the string stays alive: the options table holds it */
    return s;
}

/***
 * Makes credentials: `{ appcode = ... }` or `{ app_key = ..., app_secret = ...,
 * signature_method = "HmacSHA256" | "HmacSHA1" }`.
 * @function credentials
 */
static int credentials_new(lua_State *L)
{
    size_t ncode = 0, nkey = 0, nsecret = 0;
    const char *code, *key, *secret, *method = "HmacSHA256";
    aliocr_credentials *c;

    luaL_checktype(L, 1, LUA_TTABLE);
    code = opt_field(L, "appcode", "appcode", &ncode);
    key = opt_field(L, "app_key", "app_key", &nkey);
    secret = opt_field(L, "app_secret", "app_secret", &nsecret);
    lua_getfield(L, 1, "signature_method");
    if (!lua_isnil(L, -1))
        method = luaL_checkstring(L, -1);
    lua_pop(L, 1);
    if (strcmp(method, "HmacSHA256") != 0 && strcmp(method, "HmacSHA1") != 0)
        return luaL_error(L, "signature_method must be \"HmacSHA256\" or \"HmacSHA1\"");
    if (!code && !key && !secret)
        return luaL_error(L, "no credentials: give appcode, or app_key and app_secret");
    if (!code && (!key || !secret))
        return luaL_error(L, "signature auth needs both app_key and app_secret");

    c = lua_newuserdata(L, sizeof *c);
    memset(c, 0, sizeof *c);
    luaL_setmetatable(L, ALIOCR_CREDENTIALS);
    if (code) {
        c->appcode = copy_string(code, ncode);
        if (!c->appcode)
            return luaL_error(L, "out of memory");
        c->mode = ALIOCR_APPCODE;
    } else {
        c->app_key = copy_string(key, nkey);
        c->app_secret = copy_string(secret, nsecret);
        if (!c->app_key || !c->app_secret)
            return luaL_error(L, "out of memory");
        c->sha1 = strcmp(method, "HmacSHA1") == 0;
        c->mode = ALIOCR_SIGNATURE;
    }
    return 1;
}

/***
 * "appcode" or "signature".
 * @function mode
 */
static int credentials_mode(lua_State *L)
{
    aliocr_credentials *c = aliocr_check_credentials(L, 1);
    lua_pushstring(L, c->mode == ALIOCR_APPCODE ? "appcode" : "signature");
    return 1;
}

/***
 * The AppKey (not a secret: it is sent in X-Ca-Key), or nil in AppCode mode.
 * @function app_key
 */
static int credentials_app_key(lua_State *L)
{
    aliocr_credentials *c = aliocr_check_credentials(L, 1);
    if (c->app_key)
        lua_pushstring(L, c->app_key);
    else
        lua_pushnil(L);
    return 1;
}

/***
 * The signature method name: "HmacSHA256" or "HmacSHA1".
 * @function signature_method
 */
static int credentials_signature_method(lua_State *L)
{
    aliocr_credentials *c = aliocr_check_credentials(L, 1);
    lua_pushstring(L, c->sha1 ? "HmacSHA1" : "HmacSHA256");
    return 1;
}

/***
 * The value of the Authorization header in AppCode mode ("APPCODE <code>"),
 * for the transport inside nginx, which writes its requests from Lua; the
 * libcurl engine adds the header in C and never asks for it.
 * @function authorization
 */
static int credentials_authorization(lua_State *L)
{
    aliocr_credentials *c = aliocr_check_credentials(L, 1);
    if (c->mode != ALIOCR_APPCODE)
        return luaL_error(L, "these credentials sign requests: there is no APPCODE header");
    lua_pushfstring(L, "APPCODE %s", c->appcode);
    return 1;
}

/***
 * Base64(HMAC(app_secret, string_to_sign)) with the signature method.
 * @function sign
 */
static int credentials_sign(lua_State *L)
{
    aliocr_credentials *c = aliocr_check_credentials(L, 1);
    size_t n;
    const char *msg = luaL_checklstring(L, 2, &n);
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    char out[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];

    if (c->mode != ALIOCR_SIGNATURE)
        return luaL_error(L, "these credentials are an AppCode: there is nothing to sign");
    if (!HMAC(c->sha1 ? EVP_sha1() : EVP_sha256(), c->app_secret, (int)strlen(c->app_secret),
              (const unsigned char *)msg, n, digest, &dlen))
        return luaL_error(L, "HMAC failed");
    aliocr_base64(digest, dlen, out);
    lua_pushstring(L, out);
    return 1;
}

/* close, __gc and __close: wipes and frees the secrets; idempotent; returns true. */
static int credentials_close(lua_State *L)
{
    aliocr_credentials *c = luaL_checkudata(L, 1, ALIOCR_CREDENTIALS);
    free_secret(&c->appcode);
    free_secret(&c->app_secret);
    free(c->app_key);
    c->app_key = NULL;
    c->mode = 0;
    lua_pushboolean(L, 1);
    return 1;
}

static int credentials_tostring(lua_State *L)
{
    aliocr_credentials *c = luaL_checkudata(L, 1, ALIOCR_CREDENTIALS);
    if (c->mode == ALIOCR_APPCODE)
        lua_pushstring(L, "aliocr.Credentials (AppCode, redacted)");
    else if (c->mode == ALIOCR_SIGNATURE)
        lua_pushfstring(L, "aliocr.Credentials (AppKey %s, secret redacted)", c->app_key);
    else
        lua_pushstring(L, "aliocr.Credentials (closed)");
    return 1;
}

static const luaL_Reg credentials_meta[] = {
    {"__gc", credentials_close},
    {"__close", credentials_close},
    {"__tostring", credentials_tostring},
    {NULL, NULL}
};

static const luaL_Reg credentials_methods[] = {
    {"mode", credentials_mode},
    {"app_key", credentials_app_key},
    {"signature_method", credentials_signature_method},
    {"sign", credentials_sign},
    {"authorization", credentials_authorization},
    {"close", credentials_close},
    {NULL, NULL}
};

void aliocr_credentials_open(lua_State *L)
{
    aliocr_new_class(L, ALIOCR_CREDENTIALS, credentials_meta, credentials_methods,
                     "credentials", credentials_new);
}
