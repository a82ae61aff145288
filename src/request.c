/*
 * The request of one attempt, for both transports: the form (url=<image>
 * and the call's parameters, percent-encoded), the URL, and the header
 * lines: Accept, the Content-Type of a POST, and the AppCode's Authorization
 * line or the gateway's signature headers (X-Ca-*, signed with HMAC over the
 * string-to-sign of reference sections 2.2-2.4). The libcurl engine uses it
 * in C; the nginx transport gets it through config:request.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aliocr.h"

static const char ACCEPT[] = "application/json";
static const char FORM[] = "application/x-www-form-urlencoded; charset=UTF-8";

/* The parameters of a call as (key, value) pairs: "url" first. */
typedef struct param {
    const char *k, *v;
    size_t kn, vn;
    int pos;                     /* in the call's order */
} param;

/* By key (bytes), then by position: the first of a repeated key first. */
static int key_cmp(const param *x, const param *y)
{
    size_t n = x->kn < y->kn ? x->kn : y->kn;
    int d = memcmp(x->k, y->k, n);
    if (d)
        return d;
    return x->kn < y->kn ? -1 : x->kn > y->kn;
}

static int param_cmp(const void *a, const void *b)
{
    const param *x = a, *y = b;
    int d = key_cmp(x, y);
    return d ? d : (x->pos > y->pos) - (x->pos < y->pos);
}

/* Starts a header line "name: value" (value may be NULL: appended after). */
static int header_begin(aliocr_request *r, const char *name, const char *value)
{
    if (r->nheaders >= ALIOCR_HEADERS_MAX)
        return -1;
    r->header_at[r->nheaders++] = r->headers.len;
    if (aliocr_buffer_puts(&r->headers, name) != 0 || aliocr_buffer_append(&r->headers, ": ", 2) != 0)
        return -1;
    return value ? aliocr_buffer_puts(&r->headers, value) : 0;
}

static int header_end(aliocr_request *r)
{
    return aliocr_buffer_append(&r->headers, "", 1); /* its NUL, kept in len */
}

static int header(aliocr_request *r, const char *name, const char *value)
{
    return header_begin(r, name, value) != 0 || header_end(r) != 0 ? -1 : 0;
}

/* The signature headers, and the string-to-sign: the method, Accept,
 * Content-MD5 (none), Content-Type, Date (none), the signed headers sorted
 * by name ("name:value\n"), then the path with the parameters sorted by key,
 * raw (not encoded), the first value of a repeated key, a bare key for an
 * empty value. */
static int sign(const aliocr_config *c, const aliocr_call *call, aliocr_request *r, const param *ps, int np)
{
    char nonce[37], stamp[32], signature[4 * ((64 + 2) / 3) + 1];
    const char *names[4] = {"X-Ca-Key", "X-Ca-Nonce", "X-Ca-Signature-Method", "X-Ca-Timestamp"};
    const char *values[4];
    aliocr_buffer *s = &r->to_sign;
    param *sorted;
    int i, rc = 0;
    if (call->nonce) {
        values[1] = call->nonce;
    } else {
        if (aliocr_uuid(nonce) != 0)
            return -1;
        values[1] = nonce;
    }
    if (call->timestamp) {
        values[3] = call->timestamp;
    } else {
        if (snprintf(stamp, sizeof stamp, "%.0f", aliocr_now_ms()) < 0)
            return -1;
        values[3] = stamp;
    }
    values[0] = c->app_key;
    values[2] = c->sha1 ? "HmacSHA1" : "HmacSHA256";
    s->len = 0;
    rc |= aliocr_buffer_puts(s, r->post ? "POST\n" : "GET\n");
    rc |= aliocr_buffer_puts(s, ACCEPT);
    rc |= aliocr_buffer_puts(s, "\n\n");
    if (r->post)
        rc |= aliocr_buffer_puts(s, FORM);
    rc |= aliocr_buffer_puts(s, "\n\n");
    for (i = 0; i < 4; i++) { /* the names are in order already */
        rc |= aliocr_buffer_puts(s, names[i]);
        rc |= aliocr_buffer_append(s, ":", 1);
        rc |= aliocr_buffer_puts(s, values[i]);
        rc |= aliocr_buffer_append(s, "\n", 1);
    }
    rc |= aliocr_buffer_puts(s, c->path[call->api]);
    sorted = malloc(sizeof *sorted * (size_t)np);
    if (rc || !sorted) {
        free(sorted);
        return -1;
    }
    memcpy(sorted, ps, sizeof *sorted * (size_t)np);
    qsort(sorted, (size_t)np, sizeof *sorted, param_cmp); /* "url" is never empty: np >= 1 */
    for (i = 0; i < np; i++) {
        if (i > 0 && key_cmp(&sorted[i], &sorted[i - 1]) == 0)
            continue; /* a repeated key: its first value only */
        rc |= aliocr_buffer_append(s, i == 0 ? "?" : "&", 1);
        rc |= aliocr_buffer_append(s, sorted[i].k, sorted[i].kn);
        if (sorted[i].vn > 0) {
            rc |= aliocr_buffer_append(s, "=", 1);
            rc |= aliocr_buffer_append(s, sorted[i].v, sorted[i].vn);
        }
    }
    free(sorted);
    if (rc || aliocr_sign(c, s->data, s->len, signature) != 0)
        return -1;
    for (i = 0; i < 4; i++)
        if (header(r, names[i], values[i]) != 0)
            return -1;
    if (header(r, "X-Ca-Signature-Headers", "X-Ca-Key,X-Ca-Nonce,X-Ca-Signature-Method,X-Ca-Timestamp") != 0 ||
        header(r, "X-Ca-Signature", signature) != 0)
        return -1;
    return 0;
}

int aliocr_request_build(const aliocr_config *c, const aliocr_call *call, aliocr_request *r)
{
    param fixed[8], *ps = fixed;
    int nextra = call->extra ? call->nextra : 0;
    int i, np = 1 + nextra, rc = 0;
    const char *url = c->url[call->api];
    r->post = call->post;
    r->form.len = r->url.len = r->headers.len = r->to_sign.len = 0;
    r->nheaders = 0;
    if (np > (int)(sizeof fixed / sizeof fixed[0])) {
        ps = malloc(sizeof *ps * (size_t)np);
        if (!ps)
            return -1;
    }
    ps[0].k = "url";
    ps[0].kn = 3;
    ps[0].v = call->image;
    ps[0].vn = call->image_len;
    ps[0].pos = 0;
    for (i = 0; i < nextra; i++) {
        size_t at = (size_t)2 * (size_t)i;
        ps[i + 1].k = call->extra[at];
        ps[i + 1].kn = call->extra_len[at];
        ps[i + 1].v = call->extra[at + 1];
        ps[i + 1].vn = call->extra_len[at + 1];
        ps[i + 1].pos = i + 1;
    }
    /* The form, in the call's order. */
    for (i = 0; i < np && rc == 0; i++) {
        if (i > 0)
            rc |= aliocr_buffer_append(&r->form, "&", 1);
        rc |= aliocr_buffer_escape(&r->form, ps[i].k, ps[i].kn, 0);
        rc |= aliocr_buffer_append(&r->form, "=", 1);
        rc |= aliocr_buffer_escape(&r->form, ps[i].v, ps[i].vn, 0);
    }
    r->to = url;
    if (!r->post) {
        rc |= aliocr_buffer_puts(&r->url, url);
        rc |= aliocr_buffer_append(&r->url, "?", 1);
        rc |= aliocr_buffer_append(&r->url, r->form.data, r->form.len);
        r->to = r->url.data;
    }
    if (call->no_headers && c->mode == ALIOCR_APPCODE) {
        if (ps != fixed)
            free(ps);
        return rc ? -1 : 0;
    }
    rc |= header(r, "Accept", ACCEPT);
    if (r->post)
        rc |= header(r, "Content-Type", FORM);
    if (rc == 0) {
        if (c->mode == ALIOCR_SIGNATURE) {
            rc = sign(c, call, r, ps, np);
        } else {
            rc = header_begin(r, "Authorization", "APPCODE ");
            rc |= aliocr_buffer_puts(&r->headers, c->appcode);
            rc |= header_end(r);
        }
    }
    if (ps != fixed)
        free(ps);
    return rc ? -1 : 0;
}

const char *aliocr_request_header(const aliocr_request *r, int i)
{
    return r->headers.data + r->header_at[i];
}

void aliocr_request_free(aliocr_request *r)
{
    aliocr_buffer_free(&r->form, 0);
    aliocr_buffer_free(&r->url, 0);
    aliocr_buffer_free(&r->headers, 1); /* the AppCode */
    aliocr_buffer_free(&r->to_sign, 0);
}

/* The string at stack index i, taken as it is: a number is not converted
 * (converting allocates, and an allocation may run a finalizer that closes
 * the configuration in the middle of a call). NULL when absent (nil or
 * none) and `optional`; raises otherwise. */
static const char *string_arg(lua_State *L, int i, const char *what, int optional, size_t *len)
{
    if (optional && lua_isnoneornil(L, i))
        return NULL;
    if (lua_type(L, i) != LUA_TSTRING)
        luaL_error(L, "%s must be a string", what);
    return lua_tolstring(L, i, len);
}

void aliocr_call_read(lua_State *L, int i, const aliocr_config *c, aliocr_call *call)
{
    static const char *const apis[ALIOCR_APIS] = {"advanced", "handwriting"};
    const char *api, *m;
    memset(call, 0, sizeof *call);
    api = string_arg(L, i, "the interface", 0, NULL);
    for (call->api = 0; call->api < ALIOCR_APIS && strcmp(api, apis[call->api]) != 0; call->api++)
        ;
    if (call->api == ALIOCR_APIS) {
        luaL_error(L, "the interface must be \"advanced\" or \"handwriting\"");
        return; /* not reached: luaL_error does not return */
    }
    if (!c->url[call->api]) {
        luaL_error(L, "no URL for interface '%s'", apis[call->api]);
        return; /* not reached */
    }
    call->image = string_arg(L, i + 1, "the image URL", 0, &call->image_len);
    /* The method before the parameters: nothing is allocated yet if it raises. */
    m = string_arg(L, i + 3, "the method", 1, NULL);
    call->post = m ? strcmp(m, "POST") == 0 : c->post;
    if (m && !call->post && strcmp(m, "GET") != 0)
        luaL_error(L, "the method must be \"GET\" or \"POST\"");
    if (!lua_isnoneornil(L, i + 2)) {
        int n;
        luaL_checktype(L, i + 2, LUA_TTABLE);
        n = (int)lua_rawlen(L, i + 2);
        if (n % 2 != 0 || n > 2000)
            luaL_error(L, "call parameters must be key, value pairs (at most 1000)");
        if (n > 0) {
            int k;
            call->extra = calloc((size_t)n, sizeof *call->extra);
            call->extra_len = calloc((size_t)n, sizeof *call->extra_len);
            if (!call->extra || !call->extra_len) {
                aliocr_call_free(call);
                luaL_error(L, "out of memory");
                return; /* not reached: luaL_error does not return */
            }
            for (k = 0; k < n; k++) {
                const char *s;
                lua_rawgeti(L, i + 2, k + 1);
                s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &((size_t *)call->extra_len)[k]) : NULL;
                lua_pop(L, 1); /* the table keeps the string alive */
                if (!s) {
                    aliocr_call_free(call);
                    luaL_error(L, "call parameters must be strings");
                    return; /* not reached */
                }
                call->extra[k] = s;
            }
            call->nextra = n / 2;
        }
    }
}

void aliocr_call_free(aliocr_call *call)
{
    free((void *)call->extra);
    free((void *)call->extra_len);
    call->extra = NULL;
    call->extra_len = NULL;
}

/***
 * The request of one call as the nginx transport sends it: `config:request(
 * interface, image_url, params, method[, nonce, timestamp])` (params: a flat
 * list key, value, ...; nonce and timestamp only for test vectors) returns
 * the URL, the header lines (an array of "Name: value"), the body (nil for
 * a GET) and, in signature mode, the string-to-sign.
 * @function request
 */
/* Pushes the parts of the built request at upvalue-free light userdata 1
 * (run protected: pushing allocates, and the buffers must not leak). */
static int push_request(lua_State *L)
{
    const aliocr_request *r = lua_touserdata(L, 1);
    int i, signed_ = lua_toboolean(L, 2);
    lua_pushstring(L, r->to);
    lua_createtable(L, r->nheaders, 0);
    for (i = 0; i < r->nheaders; i++) {
        lua_pushstring(L, aliocr_request_header(r, i));
        lua_rawseti(L, -2, i + 1);
    }
    if (r->post)
        lua_pushlstring(L, r->form.data, r->form.len);
    else
        lua_pushnil(L);
    if (signed_)
        lua_pushlstring(L, r->to_sign.data, r->to_sign.len);
    else
        lua_pushnil(L);
    return 4;
}

int aliocr_config_request(lua_State *L)
{
    aliocr_config *c = aliocr_check_config(L, 1);
    const char *nonce, *stamp;
    size_t nn = 0, ns = 0;
    aliocr_call call;
    aliocr_request r;
    int rc;
    memset(&r, 0, sizeof r);
    lua_settop(L, 7);
    lua_pushcfunction(L, push_request); /* before anything is allocated (it may raise on 5.1) */
    nonce = string_arg(L, 6, "the nonce", 1, &nn);
    stamp = string_arg(L, 7, "the timestamp", 1, &ns);
    if ((nonce && (strcspn(nonce, "\r\n") != nn || memchr(nonce, '\0', nn))) ||
        (stamp && (strcspn(stamp, "\r\n") != ns || memchr(stamp, '\0', ns))))
        return luaL_error(L, "the nonce and the timestamp must not contain CR, LF or NUL");
    if (c->mode == 0) /* closed by a finalizer that pushing the builder ran */
        return luaL_error(L, "attempt to use a closed aliocr configuration");
    aliocr_call_read(L, 2, c, &call);
    call.nonce = nonce;
    call.timestamp = stamp;
    rc = aliocr_request_build(c, &call, &r);
    aliocr_call_free(&call);
    if (rc != 0) {
        aliocr_request_free(&r);
        return luaL_error(L, "could not build the request (out of memory?)");
    }
    lua_pushlightuserdata(L, &r);
    lua_pushboolean(L, c->mode == ALIOCR_SIGNATURE);
    rc = lua_pcall(L, 2, 4, 0);
    aliocr_request_free(&r);
    if (rc != 0)
        return lua_error(L);
    return 4;
}
