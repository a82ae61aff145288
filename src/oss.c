/*
 * aliocr.OSSSigner: Aliyun OSS signatures, version 4 (OSS4-HMAC-SHA256),
 * for the uploads of local images: the Authorization header of a request
 * (signer:headers) and the query of a presigned URL (signer:presign), with
 * signer:explain to show the canonical request and the string to sign. The
 * AccessKey secret is held in C memory (as the "aliyun_v4" .. secret that
 * the signing key's chain starts from) and wiped on close, like the
 * gateway's secret in config.c; the STS security token is wiped too, though
 * it leaves C in every request it signs (a header, or the URL's query).
 *
 * The algorithm, as OSS's documentation describes it (在Header中包含V4签名,
 * 在URL中包含V4签名) and its SDKs implement it:
 *   canonical request = method "\n" canonical URI "\n" canonical query "\n"
 *       canonical headers "\n" additional headers "\n" "UNSIGNED-PAYLOAD"
 *   - the URI is "/" bucket "/" key, percent-encoded except RFC 3986's
 *     unreserved characters and "/" ("/" bucket "/" without a key);
 *   - the query's names and values percent-encoded (unreserved kept), the
 *     pairs sorted by encoded name, "name=value" or a bare "name" for an
 *     empty value, joined with "&";
 *   - the headers signed are Content-Type, Content-MD5 and every x-oss-*
 *     one: "name:value\n" each, the name lower-cased, the value without its
 *     leading and trailing blanks, sorted by name. No additional header is
 *     signed (the additional headers line is empty): Host is not signed;
 *   string to sign = "OSS4-HMAC-SHA256\n" date "\n" scope "\n"
 *       hex(SHA-256(canonical request)), the scope being
 *       yyyymmdd "/" region "/oss/aliyun_v4_request";
 *   signing key = HMAC-SHA256 chained from "aliyun_v4" .. secret over
 *       yyyymmdd, region, "oss", "aliyun_v4_request";
 *   signature = hex(HMAC-SHA256(signing key, string to sign)).
 * A header signature signs x-oss-date, x-oss-content-sha256 and
 * x-oss-security-token as headers; a presigned URL signs
 * x-oss-signature-version, x-oss-credential, x-oss-date, x-oss-expires and
 * x-oss-security-token as query parameters instead.
 *
 * Every method reads its arguments first (misuse raises then, before any C
 * memory is taken), builds in C memory without calling Lua, and pushes the
 * results in a protected call: no error leaves memory behind.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "aliocr.h"

#define ALGORITHM "OSS4-HMAC-SHA256"
#define UNSIGNED "UNSIGNED-PAYLOAD"
#define REDACTED "<security-token>"
#define MAX_EXPIRES 604800L       /* 7 days: OSS's limit for a V4 presigned URL */
#define MAX_WHEN 253402300799.0   /* 9999-12-31T23:59:59Z */

typedef struct oss_signer {
    int open;
    char *id;                    /* the AccessKey ID (not a secret: it is sent) */
    char *key;                   /* secret: "aliyun_v4" .. the AccessKey secret */
    size_t key_len;
    char *token;                 /* secret: the STS security token, or NULL */
    size_t token_len;
    char *region;
} oss_signer;

/* Headers and query parameters as the arguments give them (the strings are
 * the Lua tables'), then encoded or lower-cased in the build (in its own
 * buffer; the pointers are set once it stops growing). */
typedef struct pair {
    const char *k, *v;
    size_t kn, vn;
    int bare;                    /* a query parameter with no value */
    int is_num;                  /* a query value given as a whole number */
    lua_Number num;
    int secret;                  /* the security token: redacted by explain */
    int own;                     /* one of the signer's own pairs: its rank, from 1 */
    size_t ko, kl, vo, vl;       /* offsets and lengths of the built name and value */
} pair;

/* A request to sign, as read from the arguments. */
typedef struct oss_req {
    const char *method;
    const char *bucket, *key;    /* key: NULL for a bucket-level request */
    size_t bucket_len, key_len;
    pair *headers;               /* the signed ones only */
    int nheaders;
    pair *query;
    int nquery;
    time_t when;
    long expires;                /* a presigned URL's; 0: a header signature */
} oss_req;

enum { OK = 0, E_MEMORY, E_CRYPTO, E_DUPLICATE };
enum { OUT_HEADERS = 1, OUT_PRESIGN, OUT_EXPLAIN };

/* What a build made, for the protected push. */
typedef struct oss_out {
    int kind;
    aliocr_buffer enc;           /* the built names and values */
    aliocr_buffer canonical;     /* the canonical request (redacted for explain) */
    aliocr_buffer to_sign;
    aliocr_buffer result;        /* the Authorization value, or the presigned query */
    const char *token;           /* within enc (the signer may be closed meanwhile) */
    size_t token_len;
    char date[17];               /* yyyymmddThhmmssZ */
    char signature[65];
} oss_out;

static void wipe_free(char **p, size_t n)
{
    if (*p) {
        OPENSSL_cleanse(*p, n);
        free(*p);
        *p = NULL;
    }
}

static void signer_free(oss_signer *s)
{
    wipe_free(&s->key, s->key_len);
    wipe_free(&s->token, s->token_len);
    free(s->id);
    free(s->region);
    s->id = s->region = NULL;
    s->key_len = s->token_len = 0;
    s->open = 0;
}

static oss_signer *check_signer(lua_State *L)
{
    oss_signer *s = luaL_checkudata(L, 1, ALIOCR_OSS_SIGNER);
    if (!s->open)
        luaL_error(L, "attempt to use a closed aliocr OSS signer");
    return s;
}

static void hex_of(const unsigned char *d, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    size_t i;
    for (i = 0; i < n; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[2 * n] = '\0';
}

/* The arguments ----------------------------------------------------------- */

static int has_crlf_nul(const char *s, size_t n)
{
    return memchr(s, '\0', n) || memchr(s, '\r', n) || memchr(s, '\n', n);
}

static const char *string_at(lua_State *L, int i, const char *what, int optional, size_t *n)
{
    if (optional && lua_isnoneornil(L, i))
        return NULL;
    if (lua_type(L, i) != LUA_TSTRING)
        luaL_error(L, "OSS signer: %s must be a string", what);
    return lua_tolstring(L, i, n);
}

/* The lower-cased name n bytes long equals `lower` (NUL-terminated). */
static int name_is(const char *name, size_t n, const char *lower)
{
    return strlen(lower) == n && strncasecmp(name, lower, n) == 0;
}

static int signed_header(const char *name, size_t n)
{
    return name_is(name, n, "content-type") || name_is(name, n, "content-md5") ||
           (n >= 6 && strncasecmp(name, "x-oss-", 6) == 0);
}

/* The headers the signer sets itself, which a caller must not give. */
static const char *const SIGNER_HEADERS[] = {"authorization", "x-oss-date", "x-oss-content-sha256",
                                             "x-oss-security-token", NULL};
/* The query parameters a presigned URL's signature sets. */
static const char *const SIGNER_QUERY[] = {"x-oss-signature-version", "x-oss-credential", "x-oss-date",
                                           "x-oss-expires", "x-oss-signature", "x-oss-security-token",
                                           "x-oss-additional-headers", NULL};

static const char *reserved(const char *name, size_t n, const char *const *names)
{
    int i;
    for (i = 0; names[i]; i++)
        if (name_is(name, n, names[i]))
            return names[i];
    return NULL;
}

/* Reads the table of headers at index t (nil: none): the signed ones, into
 * an array owned by a userdata left on the stack. Raises on misuse. */
static void read_headers(lua_State *L, int t, oss_req *r)
{
    int pass, n = 0;
    r->headers = NULL;
    r->nheaders = 0;
    if (lua_isnoneornil(L, t)) {
        lua_pushnil(L); /* the slot the array would take */
        return;
    }
    if (!lua_istable(L, t))
        luaL_error(L, "OSS signer: the headers must be a table (or nil)");
    for (pass = 0; pass < 2; pass++) {
        int i = 0;
        lua_pushnil(L);
        while (lua_next(L, t) != 0) {
            size_t kn, vn;
            const char *k, *v;
            if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
                luaL_error(L, "OSS signer: headers must be name = value strings");
            k = lua_tolstring(L, -2, &kn);
            v = lua_tolstring(L, -1, &vn);
            if (pass == 0) {
                const char *own;
                if (kn == 0 || has_crlf_nul(k, kn) || memchr(k, ':', kn) || memchr(k, ' ', kn) ||
                    memchr(k, '\t', kn))
                    luaL_error(L, "OSS signer: a header name must be a non-empty token");
                if (has_crlf_nul(v, vn))
                    luaL_error(L, "OSS signer: a header value must not contain CR, LF or NUL");
                own = reserved(k, kn, SIGNER_HEADERS);
                if (own)
                    luaL_error(L, "OSS signer: the header '%s' is the signer's to set", own);
                if (signed_header(k, kn))
                    n++;
            } else if (signed_header(k, kn) && i < n) {
                pair *p = &r->headers[i++];
                /* the value without its leading and trailing blanks */
                while (vn > 0 && (*v == ' ' || *v == '\t')) {
                    v++;
                    vn--;
                }
                while (vn > 0 && (v[vn - 1] == ' ' || v[vn - 1] == '\t'))
                    vn--;
                p->k = k;
                p->kn = kn;
                p->v = v;
                p->vn = vn;
            }
            lua_pop(L, 1);
        }
        if (pass == 0) {
            r->headers = lua_newuserdata(L, sizeof(pair) * (size_t)(n > 0 ? n : 1));
            memset(r->headers, 0, sizeof(pair) * (size_t)(n > 0 ? n : 1));
        } else {
            r->nheaders = i;
        }
    }
}

/* Reads the table of query parameters at index t (nil: none): name = value,
 * the value a string ("" for a bare name), a whole number, or true (a bare
 * name). `presign`: the presigned URL's own names are refused. */
static void read_query(lua_State *L, int t, int presign, oss_req *r)
{
    int pass, n = 0;
    r->query = NULL;
    r->nquery = 0;
    if (lua_isnoneornil(L, t)) {
        lua_pushnil(L);
        return;
    }
    if (!lua_istable(L, t))
        luaL_error(L, "OSS signer: the query must be a table (or nil)");
    for (pass = 0; pass < 2; pass++) {
        int i = 0;
        lua_pushnil(L);
        while (lua_next(L, t) != 0) {
            size_t kn;
            const char *k;
            int vt = lua_type(L, -1);
            if (lua_type(L, -2) != LUA_TSTRING)
                luaL_error(L, "OSS signer: query parameter names must be strings");
            k = lua_tolstring(L, -2, &kn);
            if (pass == 0) {
                const char *own;
                if (kn == 0)
                    luaL_error(L, "OSS signer: a query parameter name must not be empty");
                if (vt == LUA_TNUMBER) {
                    lua_Number x = lua_tonumber(L, -1);
                    if (!(x >= -9.0e15 && x <= 9.0e15) || x != (lua_Number)(long long)x)
                        luaL_error(L, "OSS signer: a numeric query value must be a whole number");
                } else if (vt != LUA_TSTRING && !(vt == LUA_TBOOLEAN && lua_toboolean(L, -1))) {
                    luaL_error(L, "OSS signer: a query value must be a string, a whole number or true");
                }
                own = presign ? reserved(k, kn, SIGNER_QUERY) : NULL;
                if (own)
                    luaL_error(L, "OSS signer: the query parameter '%s' is the signer's to set", own);
                n++;
            } else if (i < n) {
                pair *p = &r->query[i++];
                p->k = k;
                p->kn = kn;
                if (vt == LUA_TSTRING) {
                    p->v = lua_tolstring(L, -1, &p->vn);
                    p->bare = p->vn == 0;
                } else if (vt == LUA_TNUMBER) {
                    p->is_num = 1;
                    p->num = lua_tonumber(L, -1);
                } else {
                    p->bare = 1;
                }
            }
            lua_pop(L, 1);
        }
        if (pass == 0) {
            r->query = lua_newuserdata(L, sizeof(pair) * (size_t)(n > 0 ? n : 1));
            memset(r->query, 0, sizeof(pair) * (size_t)(n > 0 ? n : 1));
        } else {
            r->nquery = i;
        }
    }
}

static time_t read_when(lua_State *L, int i)
{
    lua_Number w;
    if (lua_isnoneornil(L, i))
        return time(NULL);
    if (lua_type(L, i) != LUA_TNUMBER)
        luaL_error(L, "OSS signer: the time must be a number of seconds (or nil: now)");
    w = lua_tonumber(L, i);
    if (!(w >= 0 && w <= MAX_WHEN) || w != (lua_Number)(long long)w ||
        (sizeof(time_t) < 8 && w > 2147483647.0))
        luaL_error(L, "OSS signer: the time must be whole seconds since 1970, before 10000");
    return (time_t)w;
}

/* OSS's bucket names: 3 to 63 lower-case letters, digits and hyphens, a
 * letter or a digit first and last. */
static int bucket_ok(const char *b, size_t n)
{
    size_t i;
    if (n < 3 || n > 63 || b[0] == '-' || b[n - 1] == '-')
        return 0;
    for (i = 0; i < n; i++)
        if (!((b[i] >= 'a' && b[i] <= 'z') || (b[i] >= '0' && b[i] <= '9') || b[i] == '-'))
            return 0;
    return 1;
}

/* Reads method, bucket and key at m, m+1, m+2; the headers at h and the
 * query at q (0: none), the time at w and the expiry at e (0: a header
 * signature). Leaves two userdata (or nils) on the stack. */
static void read_request(lua_State *L, int m, int h, int q, int w, int e, oss_req *r)
{
    static const char *const methods[] = {"PUT", "GET", "DELETE", "HEAD", "POST", NULL};
    int i;
    memset(r, 0, sizeof *r);
    r->method = string_at(L, m, "the method", 0, NULL);
    for (i = 0; methods[i] && strcmp(methods[i], r->method) != 0; i++)
        ;
    if (!methods[i])
        luaL_error(L, "OSS signer: the method must be \"PUT\", \"GET\", \"DELETE\", \"HEAD\" or \"POST\"");
    r->bucket = string_at(L, m + 1, "the bucket", 0, &r->bucket_len);
    if (!bucket_ok(r->bucket, r->bucket_len))
        luaL_error(L, "OSS signer: a bucket name is 3 to 63 lower-case letters, digits and hyphens");
    r->key = string_at(L, m + 2, "the object name", 1, &r->key_len);
    if (r->key && (r->key_len == 0 || r->key[0] == '/' || r->key[0] == '\\'))
        luaL_error(L, "OSS signer: an object name must not be empty nor start with '/' or '\\'");
    if (e) {
        lua_Number x;
        if (lua_type(L, e) != LUA_TNUMBER)
            luaL_error(L, "OSS signer: the expiry must be a number of seconds");
        x = lua_tonumber(L, e);
        if (!(x >= 1 && x <= (lua_Number)MAX_EXPIRES) || x != (lua_Number)(long)x)
            luaL_error(L, "OSS signer: the expiry must be whole seconds from 1 to 604800");
        r->expires = (long)x;
    }
    r->when = read_when(L, w);
    if (h)
        read_headers(L, h, r);
    else
        lua_pushnil(L);
    if (q)
        read_query(L, q, e != 0, r);
    else
        lua_pushnil(L);
}

/* The build (no Lua here) ------------------------------------------------- */

static int by_name(const void *a, const void *b)
{
    const pair *x = a, *y = b;
    size_t n = x->kn < y->kn ? x->kn : y->kn;
    int d = memcmp(x->k, y->k, n);
    if (d)
        return d;
    return (x->kn > y->kn) - (x->kn < y->kn);
}

/* Appends the built name of p to enc: encoded (a query parameter's) or
 * lower-cased (a header's). */
static int put_name(aliocr_buffer *enc, pair *p, int query)
{
    p->ko = enc->len;
    if (query) {
        if (aliocr_buffer_escape(enc, p->k, p->kn, 0) != 0)
            return -1;
    } else {
        size_t i;
        if (aliocr_buffer_append(enc, p->k, p->kn) != 0)
            return -1;
        for (i = p->ko; i < enc->len; i++)
            if (enc->data[i] >= 'A' && enc->data[i] <= 'Z')
                enc->data[i] = (char)(enc->data[i] - 'A' + 'a');
    }
    p->kl = enc->len - p->ko;
    return 0;
}

/* Appends the built value of p: encoded (a query parameter's) or as it is. */
static int put_value(aliocr_buffer *enc, pair *p, int query)
{
    int rc;
    p->vo = enc->len;
    if (p->is_num) {
        char num[32];
        int len = snprintf(num, sizeof num, "%lld", (long long)p->num);
        rc = len < 0 || len >= (int)sizeof num ? -1 : aliocr_buffer_append(enc, num, (size_t)len);
    } else if (query) {
        rc = aliocr_buffer_escape(enc, p->v ? p->v : "", p->v ? p->vn : 0, 0);
    } else {
        rc = aliocr_buffer_append(enc, p->v, p->vn);
    }
    p->vl = enc->len - p->vo;
    return rc;
}

/* Points each pair at its built name and value (enc no longer grows) and
 * sorts them by name. */
static void settle(const aliocr_buffer *enc, pair *ps, int n)
{
    int i;
    for (i = 0; i < n; i++) {
        ps[i].k = enc->data + ps[i].ko;
        ps[i].kn = ps[i].kl;
        ps[i].v = enc->data + ps[i].vo;
        ps[i].vn = ps[i].vl;
    }
    qsort(ps, (size_t)n, sizeof *ps, by_name);
}

static int hmac(const unsigned char *key, size_t kn, const char *msg, size_t n, unsigned char out[32])
{
    unsigned int len = 0;
    return HMAC(EVP_sha256(), key, (int)kn, (const unsigned char *)msg, n, out, &len) && len == 32 ? 0 : -1;
}

/* The signature of to_sign with the signing key of day and region. */
static int signature(const oss_signer *s, const char *day, const aliocr_buffer *to_sign, char out[65])
{
    unsigned char k[32], d[32];
    int rc = hmac((const unsigned char *)s->key, s->key_len, day, 8, k) != 0 ||
             hmac(k, 32, s->region, strlen(s->region), d) != 0 || hmac(d, 32, "oss", 3, k) != 0 ||
             hmac(k, 32, "aliyun_v4_request", 17, d) != 0 || hmac(d, 32, to_sign->data, to_sign->len, k) != 0;
    if (!rc)
        hex_of(k, 32, out);
    OPENSSL_cleanse(k, sizeof k);
    OPENSSL_cleanse(d, sizeof d);
    return rc ? -1 : 0;
}

/* Appends the canonical request; `redact`: the security token replaced. */
static int canonical(const oss_req *r, const pair *query, int nq, const pair *headers, int nh, int redact,
                     aliocr_buffer *c)
{
    int i, rc = 0;
    rc |= aliocr_buffer_puts(c, r->method);
    rc |= aliocr_buffer_append(c, "\n/", 2);
    rc |= aliocr_buffer_escape(c, r->bucket, r->bucket_len, 1);
    rc |= aliocr_buffer_append(c, "/", 1);
    if (r->key)
        rc |= aliocr_buffer_escape(c, r->key, r->key_len, 1);
    rc |= aliocr_buffer_append(c, "\n", 1);
    for (i = 0; i < nq; i++) {
        if (i > 0)
            rc |= aliocr_buffer_append(c, "&", 1);
        rc |= aliocr_buffer_append(c, query[i].k, query[i].kn);
        if (!query[i].bare) {
            rc |= aliocr_buffer_append(c, "=", 1);
            if (redact && query[i].secret)
                rc |= aliocr_buffer_puts(c, REDACTED);
            else
                rc |= aliocr_buffer_append(c, query[i].v, query[i].vn);
        }
    }
    rc |= aliocr_buffer_append(c, "\n", 1);
    for (i = 0; i < nh; i++) {
        rc |= aliocr_buffer_append(c, headers[i].k, headers[i].kn);
        rc |= aliocr_buffer_append(c, ":", 1);
        if (redact && headers[i].secret)
            rc |= aliocr_buffer_puts(c, REDACTED);
        else
            rc |= aliocr_buffer_append(c, headers[i].v, headers[i].vn);
        rc |= aliocr_buffer_append(c, "\n", 1);
    }
    rc |= aliocr_buffer_append(c, "\n\n" UNSIGNED, 2 + strlen(UNSIGNED));
    return rc ? -1 : 0;
}

/* The signer's own pairs: at most 5 (presigned) or 3 (headers). */
#define OWN_MAX 5

/* Sets the signer's own pairs into own[]: query parameters (presigned) or
 * headers, in the order a presigned URL writes them; returns how many. */
static int own_pairs(const oss_signer *s, const oss_req *r, const oss_out *o, const char *credential,
                     const char *expires, pair *own)
{
    static const char *const query[] = {"x-oss-credential", "x-oss-date", "x-oss-expires",
                                        "x-oss-signature-version"};
    const char *values[4];
    int i, n = 0;
    values[0] = credential;
    values[1] = o->date;
    values[2] = expires;
    values[3] = ALGORITHM;
    memset(own, 0, sizeof *own * OWN_MAX);
    if (r->expires) {
        for (i = 0; i < 4; i++) {
            own[n].k = query[i];
            own[n++].v = values[i];
        }
    } else {
        own[n].k = "x-oss-content-sha256";
        own[n++].v = UNSIGNED;
        own[n].k = "x-oss-date";
        own[n++].v = o->date;
    }
    if (s->token) {
        own[n].k = "x-oss-security-token";
        own[n].v = s->token;
        own[n++].secret = 1;
    }
    for (i = 0; i < n; i++) {
        own[i].kn = strlen(own[i].k);
        own[i].vn = own[i].secret ? s->token_len : strlen(own[i].v);
        own[i].own = i + 1;
    }
    return n;
}

static int build(const oss_signer *s, const oss_req *r, oss_out *o)
{
    struct tm tm;
    char day[9], expires[24], scope[128], digest_hex[65];
    unsigned char digest[32];
    unsigned int dlen = 0;
    pair own[OWN_MAX], *items = NULL, *query, *headers;
    int nown, nq, nh, n, i, j, rc = 0, status = E_MEMORY;
    aliocr_buffer credential = {NULL, 0, 0};
    if (!gmtime_r(&r->when, &tm) || strftime(o->date, sizeof o->date, "%Y%m%dT%H%M%SZ", &tm) != 16)
        return E_CRYPTO;
    memcpy(day, o->date, 8);
    day[8] = '\0';
    if (snprintf(scope, sizeof scope, "%s/%s/oss/aliyun_v4_request", day, s->region) >= (int)sizeof scope ||
        snprintf(expires, sizeof expires, "%ld", r->expires) < 0)
        return E_CRYPTO; /* not reached: the region is checked to be short */
    if (aliocr_buffer_puts(&credential, s->id) != 0 || aliocr_buffer_append(&credential, "/", 1) != 0 ||
        aliocr_buffer_puts(&credential, scope) != 0)
        goto done;
    nown = own_pairs(s, r, o, credential.data, expires, own);
    /* Copies of the pairs: the query's first (encoded), then the headers'
     * (lower-cased); the signer's own among the query (presigned) or the
     * headers. */
    nq = r->nquery + (r->expires ? nown : 0);
    nh = r->nheaders + (r->expires ? 0 : nown);
    n = nq + nh;
    items = malloc(sizeof *items * (size_t)(n > 0 ? n : 1));
    if (!items)
        goto done;
    query = items;
    headers = items + nq;
    if (r->nquery)
        memcpy(query, r->query, sizeof *items * (size_t)r->nquery);
    if (r->nheaders)
        memcpy(headers, r->headers, sizeof *items * (size_t)r->nheaders);
    memcpy(r->expires ? query + r->nquery : headers + r->nheaders, own, sizeof *items * (size_t)nown);
    for (i = 0; i < n && rc == 0; i++)
        rc |= put_name(&o->enc, &items[i], i < nq) | put_value(&o->enc, &items[i], i < nq);
    if (rc)
        goto done;
    settle(&o->enc, query, nq);
    settle(&o->enc, headers, nh);
    for (i = 0; i < nh; i++) {
        if (headers[i].secret) {
            o->token = headers[i].v;
            o->token_len = headers[i].vn;
        }
        if (i > 0 && headers[i].kn == headers[i - 1].kn &&
            memcmp(headers[i].k, headers[i - 1].k, headers[i].kn) == 0) {
            status = E_DUPLICATE;
            goto done;
        }
    }
    /* The canonical request, its hash, the string to sign, the signature. */
    if (canonical(r, query, nq, headers, nh, 0, &o->canonical) != 0)
        goto done;
    status = E_CRYPTO;
    if (EVP_Digest(o->canonical.data, o->canonical.len, digest, &dlen, EVP_sha256(), NULL) != 1 || dlen != 32)
        goto done;
    hex_of(digest, 32, digest_hex);
    status = E_MEMORY;
    rc |= aliocr_buffer_puts(&o->to_sign, ALGORITHM "\n");
    rc |= aliocr_buffer_puts(&o->to_sign, o->date);
    rc |= aliocr_buffer_append(&o->to_sign, "\n", 1);
    rc |= aliocr_buffer_puts(&o->to_sign, scope);
    rc |= aliocr_buffer_append(&o->to_sign, "\n", 1);
    rc |= aliocr_buffer_puts(&o->to_sign, digest_hex);
    if (rc)
        goto done;
    if (signature(s, day, &o->to_sign, o->signature) != 0) {
        status = E_CRYPTO;
        goto done;
    }
    if (o->kind == OUT_EXPLAIN && s->token) {
        o->canonical.len = 0;
        if (canonical(r, query, nq, headers, nh, 1, &o->canonical) != 0)
            goto done;
    }
    if (o->kind == OUT_HEADERS) {
        rc |= aliocr_buffer_puts(&o->result, ALGORITHM " Credential=");
        rc |= aliocr_buffer_append(&o->result, credential.data, credential.len);
        rc |= aliocr_buffer_puts(&o->result, ",Signature=");
        rc |= aliocr_buffer_puts(&o->result, o->signature);
    } else if (o->kind == OUT_PRESIGN) {
        /* The caller's pairs (sorted), then the signature's in their order,
         * as ali-oss writes them, the signature last. A bare name is
         * written "name=" (OSS's SDKs do; OSS reads it as a bare name). */
        int pass;
        for (pass = 0; pass <= nown; pass++) {
            for (j = 0; j < nq; j++) {
                const pair *p = &query[j];
                if (p->own != pass)
                    continue;
                if (o->result.len > 0)
                    rc |= aliocr_buffer_append(&o->result, "&", 1);
                rc |= aliocr_buffer_append(&o->result, p->k, p->kn);
                rc |= aliocr_buffer_append(&o->result, "=", 1);
                rc |= aliocr_buffer_append(&o->result, p->v, p->vn);
            }
        }
        rc |= aliocr_buffer_puts(&o->result, "&x-oss-signature=");
        rc |= aliocr_buffer_puts(&o->result, o->signature);
    }
    status = rc ? E_MEMORY : OK;
done:
    aliocr_buffer_free(&credential, 0);
    free(items);
    return status;
}

static void out_free(oss_out *o)
{
    aliocr_buffer_free(&o->enc, 1); /* it held the security token */
    aliocr_buffer_free(&o->canonical, 1);
    aliocr_buffer_free(&o->to_sign, 0);
    aliocr_buffer_free(&o->result, 1);
}

/* Pushes what the build made (run protected: the buffers must be freed). */
static int push_out(lua_State *L)
{
    const oss_out *o = lua_touserdata(L, 1);
    if (o->kind == OUT_HEADERS) {
        lua_createtable(L, 0, 4);
        lua_pushlstring(L, o->result.data, o->result.len);
        lua_setfield(L, -2, "authorization");
        lua_pushstring(L, o->date);
        lua_setfield(L, -2, "x-oss-date");
        lua_pushliteral(L, UNSIGNED);
        lua_setfield(L, -2, "x-oss-content-sha256");
        if (o->token) {
            lua_pushlstring(L, o->token, o->token_len);
            lua_setfield(L, -2, "x-oss-security-token");
        }
        return 1;
    }
    if (o->kind == OUT_PRESIGN) {
        lua_pushlstring(L, o->result.data, o->result.len);
        return 1;
    }
    lua_pushlstring(L, o->canonical.data, o->canonical.len);
    lua_pushlstring(L, o->to_sign.data, o->to_sign.len);
    lua_pushstring(L, o->signature);
    return 3;
}

/* Reads a request (the stack is set to `top` slots first), signs it and
 * pushes the `kind` of result. */
static int sign_and_push(lua_State *L, int top, int kind, int m, int h, int q, int w, int e)
{
    oss_signer *s = check_signer(L);
    oss_req r;
    oss_out o;
    int status, nres = kind == OUT_EXPLAIN ? 3 : 1;
    lua_settop(L, top);
    lua_pushcfunction(L, push_out); /* before anything is allocated in C */
    read_request(L, m, h, q, w, e, &r);
    if (!s->open) /* closed by a finalizer that reading the arguments ran */
        return luaL_error(L, "attempt to use a closed aliocr OSS signer");
    memset(&o, 0, sizeof o);
    o.kind = kind;
    status = build(s, &r, &o);
    if (status != OK) {
        out_free(&o);
        if (status == E_DUPLICATE)
            return luaL_error(L, "OSS signer: a header is given twice (names are case-insensitive)");
        return luaL_error(L, status == E_MEMORY ? "OSS signer: out of memory" : "OSS signer: SHA-256 failed");
    }
    lua_pushvalue(L, top + 1);
    lua_pushlightuserdata(L, &o);
    status = lua_pcall(L, 1, nres, 0);
    out_free(&o);
    if (status != 0)
        return lua_error(L);
    return nres;
}

/* The methods --------------------------------------------------------------- */

/* signer:headers(method, bucket, key, headers, query, when) -> table */
static int signer_headers(lua_State *L)
{
    return sign_and_push(L, 7, OUT_HEADERS, 2, 5, 6, 7, 0);
}

/* signer:presign(method, bucket, key, expires, when, query[, headers]) -> string */
static int signer_presign(lua_State *L)
{
    return sign_and_push(L, 8, OUT_PRESIGN, 2, 8, 7, 6, 5);
}

/* signer:explain(method, bucket, key, headers, query, when, presign_expires)
 * -> canonical request, string to sign, signature */
static int signer_explain(lua_State *L)
{
    int e;
    lua_settop(L, 8);
    e = lua_isnil(L, 8) ? 0 : 8;
    return sign_and_push(L, 8, OUT_EXPLAIN, 2, 5, 6, 7, e);
}

/* A copy of the string field `name` of the table at 1 into *out (its length
 * in *len, if given); nil leaves *out NULL when `optional`. Raises on misuse,
 * never with the value. */
static void copy_field(lua_State *L, const char *name, int optional, const char *prefix, char **out,
                       size_t *len)
{
    size_t n, pn = prefix ? strlen(prefix) : 0;
    const char *v;
    lua_getfield(L, 1, name);
    if (lua_isnil(L, -1) && optional) {
        lua_pop(L, 1);
        return;
    }
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "OSS signer: the field '%s' must be a string", name);
    v = lua_tolstring(L, -1, &n);
    if (n == 0 && !optional)
        luaL_error(L, "OSS signer: the field '%s' must not be empty", name);
    if (has_crlf_nul(v, n))
        luaL_error(L, "OSS signer: the field '%s' must not contain CR, LF or NUL", name);
    if (n > 0) {
        char *p = malloc(pn + n + 1);
        size_t i;
        if (!p) {
            luaL_error(L, "OSS signer: out of memory");
            return; /* not reached: luaL_error does not return */
        }
        memcpy(p + pn, v, n + 1); /* with its NUL */
        for (i = 0; i < pn; i++)
            p[i] = prefix[i];
        *out = p;
        if (len)
            *len = pn + n;
    }
    lua_pop(L, 1);
}

/***
 * An OSS V4 signer: `core.oss_signer{ access_key_id = s, access_key_secret
 * = s, security_token = s|nil, region = s }` (the region as in the scope:
 * "cn-hangzhou", without "oss-"). An empty security token is none.
 * @function oss_signer
 */
static int signer_new(lua_State *L)
{
    oss_signer *s;
    luaL_checktype(L, 1, LUA_TTABLE);
    s = lua_newuserdata(L, sizeof *s);
    memset(s, 0, sizeof *s);
    luaL_setmetatable(L, ALIOCR_OSS_SIGNER); /* from here on, __gc frees what was copied */
    copy_field(L, "access_key_id", 0, NULL, &s->id, NULL);
    if (strchr(s->id, '/') || strchr(s->id, ','))
        return luaL_error(L, "OSS signer: the field 'access_key_id' must not contain '/' or ','");
    copy_field(L, "access_key_secret", 0, "aliyun_v4", &s->key, &s->key_len);
    copy_field(L, "security_token", 1, NULL, &s->token, &s->token_len);
    copy_field(L, "region", 0, NULL, &s->region, NULL);
    if (strlen(s->region) > 64 || strchr(s->region, '/'))
        return luaL_error(L, "OSS signer: the field 'region' must be a region ID such as \"cn-hangzhou\"");
    s->open = 1;
    return 1;
}

/* close, __gc and __close: wipes the secret and the token; idempotent; true. */
static int signer_close(lua_State *L)
{
    signer_free(luaL_checkudata(L, 1, ALIOCR_OSS_SIGNER));
    lua_pushboolean(L, 1);
    return 1;
}

static int signer_tostring(lua_State *L)
{
    oss_signer *s = luaL_checkudata(L, 1, ALIOCR_OSS_SIGNER);
    if (s->open)
        lua_pushfstring(L, "aliocr.OSSSigner (%s)", s->region);
    else
        lua_pushliteral(L, "aliocr.OSSSigner (closed)");
    return 1;
}

static const luaL_Reg signer_meta[] = {
    {"__gc", signer_close},
    {"__close", signer_close},
    {"__tostring", signer_tostring},
    {NULL, NULL}
};

static const luaL_Reg signer_methods[] = {
    {"headers", signer_headers},
    {"presign", signer_presign},
    {"explain", signer_explain},
    {"close", signer_close},
    {NULL, NULL}
};

void aliocr_oss_open(lua_State *L)
{
    aliocr_new_class(L, ALIOCR_OSS_SIGNER, signer_meta, signer_methods, "oss_signer", signer_new);
}
