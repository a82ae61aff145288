/*
 * Internal declarations shared by the files of aliocr.core, one concept per
 * file:
 *   core.c        the module: clocks, UUIDs, interrupts, registration
 *   buffer.c      growable byte buffers
 *   config.c      aliocr.Config: a client's constant configuration and its
 *                 credentials (the secrets are kept and wiped here)
 *   request.c     a call's request: form encoding, headers, signature
 *   json.c        JSON decoding with the Lua layer's decoder
 *   response.c    the response table both transports return
 *   engine.c      aliocr.Engine: the libcurl transport's methods (engine.h:
 *                 its types, and the libcurl floor)
 *   drive.c       its multi handle driven, and its lists of transfers
 *   transfer.c    one transfer of it: an easy handle, libcurl's callbacks
 *   http_parser.c the nginx transport's HTTP reader (http.h: its type)
 *   http.c        aliocr.HttpReader: its Lua binding
 *   oss.c         aliocr.OSSSigner: Aliyun OSS V4 signatures (OSS4-HMAC-SHA256)
 *                 for uploads, presigned URLs and deletes (its AccessKey
 *                 secret and STS token are kept and wiped there)
 * Nothing here is exported: the only symbol the shared object exports is
 * luaopen_aliocr_core.
 */
#ifndef ALIOCR_H
#define ALIOCR_H

#include <stddef.h>
#include <stdint.h>

#include "compat.h"

#define ALIOCR_VERSION "0.1.0"

#define ALIOCR_ENGINE "aliocr.Engine"
#define ALIOCR_CONFIG "aliocr.Config"
#define ALIOCR_OSS_SIGNER "aliocr.OSSSigner"

/* Buffers (buffer.c) ----------------------------------------------------- */

/* A growable byte buffer, always NUL-terminated once it holds anything. */
typedef struct aliocr_buffer {
    char *data;
    size_t len, cap;
} aliocr_buffer;

/* Appends n bytes: 0, or -1 when out of memory (the buffer is unchanged). */
int aliocr_buffer_append(aliocr_buffer *b, const char *p, size_t n);
/* Appends a NUL-terminated string. */
int aliocr_buffer_puts(aliocr_buffer *b, const char *s);
/* Appends n bytes percent-encoded: all but RFC 3986's unreserved characters
 * (and "/" with keep_slash) as %XX, upper-case hex. The one encoder of the
 * gateway's form, OSS's canonical URI and query, and an object's URL. */
int aliocr_buffer_escape(aliocr_buffer *b, const char *s, size_t n, int keep_slash);
/* Frees the bytes, wiping them first when `wipe` (they held a secret). */
void aliocr_buffer_free(aliocr_buffer *b, int wipe);

/* The configuration (config.c) ------------------------------------------- */

enum { ALIOCR_APPCODE = 1, ALIOCR_SIGNATURE = 2 };
enum { ALIOCR_ADVANCED = 0, ALIOCR_HANDWRITING = 1, ALIOCR_APIS = 2 };

/* What a client's requests share, made once when the client is made (see
 * config.c for the fields' Lua names). */
typedef struct aliocr_config {
    int mode;                    /* ALIOCR_APPCODE or ALIOCR_SIGNATURE; 0 once closed */
    char *appcode;               /* secrets: wiped on close */
    char *app_key;
    char *app_secret;
    int sha1;                    /* HmacSHA1 instead of HmacSHA256 */
    char *url[ALIOCR_APIS];      /* the interfaces' URLs, or NULL */
    const char *path[ALIOCR_APIS]; /* each one's path, within url (signed) */
    int post;                    /* the default method is POST */
    long timeout_ms, connect_timeout_ms;
    int64_t max_bytes;
    char *ca_file, *proxy, *user_agent;
    int verify;
} aliocr_config;

/* The configuration at stack index i (raises if it is something else or closed). */
aliocr_config *aliocr_check_config(lua_State *L, int i);

/* Base64(HMAC(app_secret, msg)) with the signature method into out (at
 * least 4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1 bytes): 0, or -1 if the HMAC
 * failed. */
int aliocr_sign(const aliocr_config *c, const char *msg, size_t n, char *out);

/* A call's request (request.c) -------------------------------------------- */

#define ALIOCR_HEADERS_MAX 8

/* The request of one attempt: what a transport sends, whichever it is. */
typedef struct aliocr_request {
    int post;
    const char *to;              /* the URL to send to: the interface's, or url.data (a GET's) */
    aliocr_buffer form;          /* url=<image>&k=v...: the body, or the query of a GET */
    aliocr_buffer url;           /* a GET's URL, with the form as its query */
    aliocr_buffer headers;       /* the header lines, each NUL-terminated */
    int nheaders;
    size_t header_at[ALIOCR_HEADERS_MAX]; /* where each line starts in headers */
    aliocr_buffer to_sign;       /* the string-to-sign (signature mode) */
} aliocr_request;

/* What varies from call to call: the interface, the image URL, further
 * parameters (already strings, in order) and the method; the nonce and the
 * timestamp of a signature (NULL: a fresh one, the time now). */
typedef struct aliocr_call {
    int api;
    const char *image;
    size_t image_len;
    int nextra;
    const char **extra;          /* key, value, key, value, ... */
    const size_t *extra_len;
    int post;
    const char *nonce, *timestamp;
    int no_headers;              /* the caller has the header lines already (AppCode mode) */
} aliocr_call;

/* Builds the request of a call into r (whose buffers are reused): 0, or -1
 * when out of memory or the HMAC failed. AppCode mode puts the
 * Authorization line last; with call->no_headers it makes no header line
 * (they are the same for every call of a method there). */
int aliocr_request_build(const aliocr_config *c, const aliocr_call *call, aliocr_request *r);
/* Header line i of a built request. */
const char *aliocr_request_header(const aliocr_request *r, int i);
void aliocr_request_free(aliocr_request *r);
/* Reads a call's arguments at stack index i..i+3 (interface, image URL,
 * parameters, method); the strings stay owned by the stack. Raises on
 * misuse (the Lua layer checks them first: these are guards). The extra
 * arrays are allocated (free them with aliocr_call_free). */
void aliocr_call_read(lua_State *L, int i, const aliocr_config *c, aliocr_call *call);
void aliocr_call_free(aliocr_call *call);

/* JSON (json.c) ------------------------------------------------------------ */

/* Decodes a JSON text with the decoder at stack index `decode` (the Lua
 * layer's lua-cjson decode): pushes the value, whole numbers as integers on
 * Lua 5.3+, and returns 1; or pushes the parse error and returns 0. Any
 * other error (an interrupt, a finalizer's, memory) is raised again. */
int aliocr_decode_json(lua_State *L, int decode, const char *p, size_t n);

/* Responses (response.c) -------------------------------------------------- */

/* How an attempt ended, as either transport saw it. */
typedef struct aliocr_answer {
    int64_t id;                  /* the engine's transfer id; 0: none */
    long status;                 /* of the final answer; 0: no status line */
    int sent;                    /* some of the request may have reached the server */
    int too_large;               /* abandoned: larger than max_bytes */
    int resend_refused;          /* a kept-alive connection died; not sent again */
    int all_headers;             /* every header, not only the gateway's (a storage request's) */
    const char *head;            /* the header lines (status lines among them) */
    size_t head_len;
    const char *body;
    size_t body_len;
    const char *error;           /* the transport failure's name, NULL if none */
    const char *message;         /* its words */
} aliocr_answer;

/* Pushes the response table of an answer (the transport contract, see
 * response.c), decoding a JSON body with the decoder at stack index
 * `decode`. May raise (memory, an interrupt or a finalizer's error in the
 * decode): call it protected when something must be undone. */
void aliocr_push_response(lua_State *L, int decode, const aliocr_answer *a);
/* Pushes the table of header lines [p, p+n): lower-cased names, repeated
 * ones joined with ", ", those of the last status line only; with
 * `only_ca`, only the gateway's X-Ca-* ones and Retry-After. */
void aliocr_push_headers(lua_State *L, const char *p, size_t n, int only_ca);

/* The rest ----------------------------------------------------------------- */

/* Makes metatable `name` (meta-methods `meta`, methods `methods` as its
 * __index, locked) and sets module field `ctor_name` to `ctor`; the module
 * table is on top of the stack. */
void aliocr_new_class(lua_State *L, const char *name, const luaL_Reg *meta, const luaL_Reg *methods,
                      const char *ctor_name, lua_CFunction ctor);

/* Registration of each part, called by luaopen_aliocr_core with the module
 * table on top of the stack. */
void aliocr_engine_open(lua_State *L);
void aliocr_config_open(lua_State *L);
void aliocr_http_open(lua_State *L);
void aliocr_json_open(lua_State *L);
void aliocr_oss_open(lua_State *L);

/* Standard Base64 of n bytes, with padding, into out (at least 4*((n+2)/3)+1). */
void aliocr_base64(const unsigned char *in, size_t n, char *out);

/* A random (version 4) UUID, 36 characters and a NUL: 0, or -1. */
int aliocr_uuid(char out[37]);

/* Milliseconds since the epoch. */
double aliocr_now_ms(void);

/* A Content-Length value as libcurl reads it (optional blanks and a plus
 * sign, then decimal digits; what follows them is ignored): 1 and *out set,
 * 0 when it is too large for 63 bits (libcurl then ignores the header), -1
 * when it has no digits (libcurl: a weird server reply). In http.c. */
int aliocr_content_length(const char *v, size_t n, int64_t *out);

/* Whether a SIGINT arrived since core.catch_interrupts (never, without it). */
int aliocr_interrupted(void);

/* Seconds on the monotonic clock. */
double aliocr_monotonic(void);

#endif
