/*
 * aliocr.core: the C core of aliocr.
 *
 * luaopen_aliocr_core builds the module table: the configuration of a client
 * (config.c, its requests built by request.c), the engine (engine.c: calls
 * on a libcurl multi handle), the HTTP response reader of the nginx
 * transport (http.c), JSON decoding (json.c), the OSS V4 signer (oss.c),
 * and a few helpers the Lua layer and the command line tool need from C:
 * clocks, sleep, nonces, MD5, isatty, and catching SIGINT. See aliocr.h for the map of the files.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "aliocr.h"

#if defined(__GNUC__)
#define ALIOCR_EXPORT __attribute__((visibility("default")))
#else
#define ALIOCR_EXPORT
#endif

static int curl_ready = 0;

/* Set by the SIGINT handler that catch_interrupts installs; never reset. */
static volatile sig_atomic_t interrupted = 0;

void aliocr_base64(const unsigned char *in, size_t n, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

void aliocr_new_class(lua_State *L, const char *name, const luaL_Reg *meta, const luaL_Reg *methods,
                      const char *ctor_name, lua_CFunction ctor)
{
    luaL_newmetatable(L, name);
    luaL_setfuncs(L, meta, 0);
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushliteral(L, "locked");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
    lua_pushcfunction(L, ctor);
    lua_setfield(L, -2, ctor_name);
}

double aliocr_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

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

/***
 * Seconds on the monotonic clock (for elapsed times).
 * @function monotonic
 */
static int core_monotonic(lua_State *L)
{
    lua_pushnumber(L, aliocr_monotonic());
    return 1;
}

/***
 * Milliseconds since the epoch (for X-Ca-Timestamp).
 * @function now_ms
 */
double aliocr_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long ms = ts.tv_nsec / 1000000;
    return (double)ts.tv_sec * 1000 + (double)ms;
}

static int core_now_ms(lua_State *L)
{
#if LUA_VERSION_NUM >= 503
    lua_pushinteger(L, (lua_Integer)aliocr_now_ms());
#else
    lua_pushnumber(L, aliocr_now_ms());
#endif
    return 1;
}

/***
 * Sleeps for `seconds` (blocking: for retry back-off outside nginx).
 * @function sleep
 */
static int core_sleep(lua_State *L)
{
    lua_Number s = luaL_checknumber(L, 1);
    struct timespec ts;
    if (s <= 0)
        return 0;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (lua_Number)ts.tv_sec) * 1e9);
    /* A SIGINT caught by catch_interrupts ends the sleep: the caller is to
     * stop, not to wait for a retry. */
    while (!interrupted && nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    return 0;
}

int aliocr_interrupted(void)
{
    return interrupted != 0;
}

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

/***
 * Catches SIGINT from now on (for the command line tool): the signal only
 * sets a flag that `interrupted` reads, so that the caller stops where it
 * chooses. Without SA_RESTART, a system call it interrupts (libcurl's poll,
 * a read, `sleep`) returns early. Calling it again changes nothing.
 * @function catch_interrupts
 */
static int core_catch_interrupts(lua_State *L)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    if (sigaction(SIGINT, &sa, NULL) != 0)
        return luaL_error(L, "sigaction: %s", strerror(errno));
    return 0;
}

/***
 * Whether a SIGINT arrived since `catch_interrupts`.
 * @function interrupted
 */
static int core_interrupted(lua_State *L)
{
    lua_pushboolean(L, interrupted != 0);
    return 1;
}

/***
 * A random (version 4) UUID, from OpenSSL's RAND_bytes: the X-Ca-Nonce.
 * @function uuid
 */
int aliocr_uuid(char out[37])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];
    int i, k = 0;
    if (RAND_bytes(b, sizeof b) != 1)
        return -1;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    for (i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[k++] = '-';
        out[k++] = hex[b[i] >> 4];
        out[k++] = hex[b[i] & 15];
    }
    out[k] = '\0';
    return 0;
}

static int core_uuid(lua_State *L)
{
    char out[37];
    if (aliocr_uuid(out) != 0)
        return luaL_error(L, "RAND_bytes failed");
    lua_pushstring(L, out);
    return 1;
}

/***
 * What a path names, without opening it (opening a FIFO would wait for a
 * writer): `kind` ("file", "directory", "fifo", "socket", "character
 * device", "block device" or "other") and its size in bytes; or nil and
 * why not.
 * @function stat
 */
static int core_stat(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    struct stat st;
    const char *kind;
    if (stat(path, &st) != 0) {
        int err = errno;
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s", path, strerror(err));
        return 2;
    }
    if (S_ISREG(st.st_mode)) kind = "file";
    else if (S_ISDIR(st.st_mode)) kind = "directory";
    else if (S_ISFIFO(st.st_mode)) kind = "fifo";
    else if (S_ISSOCK(st.st_mode)) kind = "socket";
    else if (S_ISCHR(st.st_mode)) kind = "character device";
    else if (S_ISBLK(st.st_mode)) kind = "block device";
    else kind = "other";
    lua_pushstring(L, kind);
    lua_pushnumber(L, (lua_Number)st.st_size);
    return 2;
}

/***
 * A string percent-encoded as every request of aliocr encodes (all but RFC
 * 3986's unreserved characters; "/" kept with `keep_slash`): an OSS
 * object's name in its URL, as the V4 signer encodes it in the canonical
 * URI.
 * @function escape
 */
static int core_escape(lua_State *L)
{
    size_t n, len;
    const char *s = luaL_checklstring(L, 1, &n);
    int keep_slash = lua_toboolean(L, 2);
    aliocr_buffer b = {NULL, 0, 0};
    char *out;
    if (n > ((size_t)-1 - 1) / 3)
        return luaL_error(L, "string too long");
    /* Lua's memory first (it may raise): no C memory is held when it does. */
    out = lua_newuserdata(L, 3 * n + 1);
    if (aliocr_buffer_escape(&b, s, n, keep_slash) != 0) {
        aliocr_buffer_free(&b, 0);
        return luaL_error(L, "out of memory");
    }
    len = b.len;
    if (len)
        memcpy(out, b.data, len);
    aliocr_buffer_free(&b, 0);
    lua_pushlstring(L, out, len);
    return 1;
}

/***
 * Base64(MD5(data)), as the Content-MD5 header carries it.
 * @function md5_base64
 */
static int core_md5_base64(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    char out[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
    if (EVP_Digest(s, n, digest, &dlen, EVP_md5(), NULL) != 1)
        return luaL_error(L, "MD5 failed");
    aliocr_base64(digest, dlen, out);
    lua_pushstring(L, out);
    return 1;
}

/***
 * Whether a file descriptor (0, 1, 2) is a terminal (for the command line
 * tool's progress bar).
 * @function isatty
 */
static int core_isatty(lua_State *L)
{
    lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)) == 1);
    return 1;
}

/***
 * Grows the Lua stack, so that a call right after, through a few small
 * frames to a function of the largest frame Lua allows, needs no growth. Lua 5.3 and 5.4 may run the
 * collector, and so a finalizer, when a call grows the stack: a client
 * looks at its state after this and then calls user code, with nothing in
 * between that could run one. Never raises (the call itself then would).
 * @function reserve_stack
 */
static int core_reserve_stack(lua_State *L)
{
    (void)lua_checkstack(L, 512);
    return 0;
}

static const luaL_Reg core_funcs[] = {
    {"reserve_stack", core_reserve_stack},
    {"isatty", core_isatty},
    {"catch_interrupts", core_catch_interrupts},
    {"interrupted", core_interrupted},
    {"versions", core_versions},
    {"monotonic", core_monotonic},
    {"now_ms", core_now_ms},
    {"sleep", core_sleep},
    {"uuid", core_uuid},
    {"escape", core_escape},
    {"stat", core_stat},
    {"md5_base64", core_md5_base64},
    {NULL, NULL}
};

ALIOCR_EXPORT int luaopen_aliocr_core(lua_State *L)
{
    /* curl_global_init is process-wide: once, and never undone from Lua. */
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return luaL_error(L, "aliocr.core: curl_global_init failed");
        curl_ready = 1;
    }
    luaL_newlib(L, core_funcs);
    aliocr_engine_open(L);
    aliocr_config_open(L);
    aliocr_json_open(L);
    aliocr_http_open(L);
    aliocr_oss_open(L);
    lua_pushstring(L, "aliocr " ALIOCR_VERSION);
    lua_setfield(L, -2, "_VERSION");
    return 1;
}
