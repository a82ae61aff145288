/*
 * Internal declarations shared by the files of aliocr.core. Nothing here is
 * exported: the only symbol the shared object exports is luaopen_aliocr_core.
 */
#ifndef ALIOCR_H
#define ALIOCR_H

#include <stddef.h>
#include <stdint.h>

#include "compat.h"

#define ALIOCR_VERSION "0.1.0"

#define ALIOCR_ENGINE "aliocr.Engine"
#define ALIOCR_CREDENTIALS "aliocr.Credentials"

/* The credentials of a client; the secrets never leave C. */
typedef struct aliocr_credentials {
    int mode;           /* ALIOCR_APPCODE or ALIOCR_SIGNATURE; 0 once closed */
    char *appcode;
    char *app_key;
    char *app_secret;
    int sha1;           /* HmacSHA1 instead of HmacSHA256 */
} aliocr_credentials;

enum { ALIOCR_APPCODE = 1, ALIOCR_SIGNATURE = 2 };

/* Makes metatable `name` (meta-methods `meta`, methods `methods` as its
 * __index, locked) and sets module field `ctor_name` to `ctor`; the module
 * table is on top of the stack. */
void aliocr_new_class(lua_State *L, const char *name, const luaL_Reg *meta, const luaL_Reg *methods,
                      const char *ctor_name, lua_CFunction ctor);

/* Registration of each part, called by luaopen_aliocr_core with the module
 * table on top of the stack. */
void aliocr_engine_open(lua_State *L);
void aliocr_credentials_open(lua_State *L);
void aliocr_http_open(lua_State *L);

/* The credentials at stack index i (raises if it is something else or closed). */
aliocr_credentials *aliocr_check_credentials(lua_State *L, int i);

/* Standard Base64 of n bytes, with padding, into out (at least 4*((n+2)/3)+1). */
void aliocr_base64(const unsigned char *in, size_t n, char *out);

/* A Content-Length value as libcurl reads it (optional blanks and a plus
 * sign, then decimal digits; what follows them is ignored): 1 and *out set,
 * 0 when it is too large for 63 bits (libcurl then ignores the header), -1
 * when it has no digits (libcurl: a weird server reply). In http.c. */
int aliocr_content_length(const char *v, size_t n, int64_t *out);

/* Whether a SIGINT arrived since core.catch_interrupts (never, without it). */
int aliocr_interrupted(void);

/* Seconds on the monotonic clock. */
double aliocr_monotonic(void);

/* A string that must not contain CR, LF or NUL (it goes into a header). */
const char *aliocr_check_header_safe(lua_State *L, int i, const char *what, size_t *len);

#endif
