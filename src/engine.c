/*
 * aliocr.Engine: HTTP transfers on one libcurl multi handle.
 *
 * Every call of a client runs on its engine: `perform` (one call, blocking),
 * and `add` + `run` (many at once, or without blocking). The multi handle
 * owns the connection cache, so connections are kept alive and reused across
 * calls. libcurl's callbacks only append to C buffers; Lua is touched only by
 * the engine's methods, after a transfer is complete (the JSON body is
 * decoded then, by lua-cjson).
 */
#define _POSIX_C_SOURCE 200809L

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "aliocr.h"

#define IDLE_MAX 64               /* easy handles kept for reuse */
#define PROFILE_MAX 8             /* prepared calls per engine */
#define DEFAULT_MAX_BYTES (16 * 1024 * 1024)
#define BUFFER_KEEP ((size_t)256 * 1024) /* a prepared call keeps buffers up to this size */

typedef struct buffer {
    char *data;
    size_t len, cap;
} buffer;

struct engine;

typedef struct job {
    struct job *next;
    struct engine *engine;
    CURL *easy;
    lua_Integer id;
    buffer body, head;
    struct curl_slist *headers;
    char errbuf[CURL_ERROR_SIZE];
    curl_off_t max_bytes;
    int too_large;
    int too_large_declared;    /* a Content-Length over max_bytes was seen */
    int requests;              /* requests libcurl began for this transfer */
    int resend_refused;        /* a resend after the request went out was stopped */
    int decode;
    int lean;                  /* the response has only what the client reads */
    struct profile *profile;   /* the prepared call this job belongs to, or NULL */
    CURLcode result;
} job;

/* A prepared call (see engine:profile): an easy handle with every constant
 * option set once, and the job it runs as, reused call after call. */
typedef struct profile {
    CURL *easy;
    struct curl_slist *headers;
    char *url;
    int post, busy;
    int orphan;                /* the engine closed while the call was under way */
    buffer form;               /* url=<image>&..., the body or the query */
    buffer get_url;            /* GET: the interface URL with the query */
    job job;
} profile;

typedef struct engine {
    CURLM *multi;
    job *active;               /* transfers under way */
    job *done, *done_tail;     /* finished, in the order they finished */
    CURL *idle[IDLE_MAX];
    int nidle;
    lua_Integer next_id;
    int decode_ref;            /* registry: the decode function of our cjson instance */
    profile *profiles[PROFILE_MAX];
    int nprofiles;
    long idle_s;               /* a connection idle longer is not reused */
    int closed;
} engine;

/* Buffers ------------------------------------------------------------------ */

static int buffer_append(buffer *b, const char *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        char *d;
        while (cap < b->len + n + 1)
            cap *= 2;
        d = realloc(b->data, cap);
        if (!d)
            return -1;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

static void buffer_free(buffer *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* libcurl callbacks: no Lua, nothing that can raise ------------------------- */

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    job *j = ud;
    size_t bytes = size * n;
    if ((curl_off_t)(j->body.len + bytes) > j->max_bytes) {
        j->too_large = 1;      /* abandon the body rather than buffer it */
        return 0;
    }
    return buffer_append(&j->body, p, bytes) == 0 ? bytes : 0;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    job *j = ud;
    size_t bytes = size * n;
    static const char cl[] = "content-length:";
    if (bytes > sizeof cl - 1 && strncasecmp(p, cl, sizeof cl - 1) == 0) {
        /* Read as libcurl reads it; the last one counts, as for libcurl. */
        int64_t length = 0;
        if (aliocr_content_length(p + sizeof cl - 1, bytes - (sizeof cl - 1), &length) > 0)
            j->too_large_declared = length > (int64_t)j->max_bytes;
        else
            j->too_large_declared = 0;
    }
    if (buffer_append(&j->head, p, bytes) != 0)
        return 0;
    /* At the end of the headers (all of them kept, X-Ca-Request-Id too), an
     * answer too large by its own account is abandoned before its body. */
    if (j->too_large_declared && (bytes == 2 || bytes == 1) && (p[0] == '\r' || p[0] == '\n')) {
        j->too_large = 1;
        return 0;
    }
    return bytes;
}

/* Called by libcurl right before it sends a request on a connection. A
 * second request in one transfer is libcurl's own resend: a kept-alive
 * connection died before any byte of the answer, and libcurl sends the
 * request again on a new one. Once any of the request went out, the gateway
 * may have received it and billed it, so the resend is refused: the transfer
 * ends with no answer, billing unknown. A resend of a request of which
 * nothing went out (the connection was found dead while writing its first
 * byte) goes ahead. */
static int on_prereq(void *ud, char *primary_ip, char *local_ip, int primary_port, int local_port)
{
    job *j = ud;
    curl_off_t sent = 0;
    (void)primary_ip;
    (void)local_ip;
    (void)primary_port;
    (void)local_port;
    if (j->requests++ == 0)
        return CURL_PREREQFUNC_OK;
    curl_easy_getinfo(j->easy, CURLINFO_REQUEST_SIZE, &sent);
    if (sent > 0) {
        j->resend_refused = 1;
        return CURL_PREREQFUNC_ABORT;
    }
    return CURL_PREREQFUNC_OK;
}

/* Whether any of the request may have gone out: libcurl began it (on_prereq
 * ran: after the connect, a proxy's CONNECT tunnel included) and wrote some
 * of it, or began it twice. The bytes of a CONNECT to a proxy alone never
 * reach the gateway. */
static int job_sent(const job *j)
{
    curl_off_t size = 0;
    if (j->requests > 1)
        return 1;
    if (j->requests == 0)
        return 0;
    curl_easy_getinfo(j->easy, CURLINFO_REQUEST_SIZE, &size);
    return size > 0;
}

/* Engine ---------------------------------------------------------------------- */

static engine *check_engine(lua_State *L, int i)
{
    engine *e = luaL_checkudata(L, i, ALIOCR_ENGINE);
    if (e->closed)
        luaL_error(L, "attempt to use a closed aliocr engine");
    return e;
}

static CURL *take_easy(engine *e)
{
    if (e->nidle > 0)
        return e->idle[--e->nidle];
    return curl_easy_init();
}

static void job_free(engine *e, job *j)
{
    if (j->profile) {
        /* A prepared call's job: its handle and buffers stay for the next. */
        j->profile->busy = 0;
        return;
    }
    if (j->easy) {
        if (!e->closed && e->nidle < IDLE_MAX) {
            curl_easy_reset(j->easy);
            e->idle[e->nidle++] = j->easy;
        } else {
            curl_easy_cleanup(j->easy);
        }
    }
    curl_slist_free_all(j->headers);
    buffer_free(&j->body);
    buffer_free(&j->head);
    free(j);
}

static void unlink_job(job **list, job *j)
{
    for (; *list; list = &(*list)->next) {
        if (*list == j) {
            *list = j->next;
            j->next = NULL;
            return;
        }
    }
}

static void unlink_done(engine *e, job *j)
{
    job *prev = NULL, *k;
    for (k = e->done; k; prev = k, k = k->next) {
        if (k == j) {
            if (prev)
                prev->next = j->next;
            else
                e->done = j->next;
            if (e->done_tail == j)
                e->done_tail = prev;
            j->next = NULL;
            return;
        }
    }
}

/* Moves finished transfers from the active list to the done list. */
static void harvest(engine *e)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(e->multi, &left)) != NULL) {
        job *j = NULL;
        CURL *easy = msg->easy_handle;
        CURLcode result = msg->data.result;
        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&j);
        curl_multi_remove_handle(e->multi, easy); /* its connection goes back to the cache */
        if (!j)
            continue;
        j->result = result;
        unlink_job(&e->active, j);
        if (e->done_tail)
            e->done_tail->next = j;
        else
            e->done = j;
        e->done_tail = j;
    }
}

static int is_done(const engine *e, const job *target)
{
    const job *k;
    if (!target)
        return e->done != NULL;
    for (k = e->done; k; k = k->next)
        if (k == target)
            return 1;
    return 0;
}

/* Drives transfers: one pass when wait_ms is 0; otherwise, unless `target`
 * (or, with no target, any transfer) has finished, waits up to wait_ms for
 * activity on the sockets and makes another pass. */
static CURLMcode drive(engine *e, int wait_ms, job *target)
{
    int running = 0;
    CURLMcode mc = curl_multi_perform(e->multi, &running);
    harvest(e);
    if (mc == CURLM_OK && wait_ms > 0 && running > 0 && !is_done(e, target)) {
        mc = curl_multi_poll(e->multi, NULL, 0, wait_ms, NULL);
        if (mc == CURLM_OK)
            mc = curl_multi_perform(e->multi, &running);
        harvest(e);
    }
    return mc;
}

/* Raises for a failure of the multi handle itself (out of memory, a broken
 * handle): driving it again would fail again, so no loop may go on. */
static int multi_failed(lua_State *L, CURLMcode mc)
{
    return luaL_error(L, "libcurl's multi interface failed: %s", curl_multi_strerror(mc));
}

/* Drives until job j has finished and takes it off the engine's lists:
 * CURLM_OK, or the multi handle's failure (j is taken off then too,
 * unfinished). */
static CURLMcode finish_job(engine *e, job *j)
{
    while (!is_done(e, j)) {
        CURLMcode mc = drive(e, 1000, j);
        if (mc != CURLM_OK) {
            if (!is_done(e, j)) {
                curl_multi_remove_handle(e->multi, j->easy);
                unlink_job(&e->active, j);
            } else {
                unlink_done(e, j);
            }
            return mc;
        }
    }
    unlink_done(e, j);
    return CURLM_OK;
}

/* Gives the detached jobs `list` (linked by next) back to the engine, ahead
 * of the finished ones it holds, for the next run; frees them when the
 * engine was closed meanwhile. */
static void give_back(engine *e, job *list)
{
    job *tail = list;
    if (!list)
        return;
    if (e->closed) {
        while (list) {
            job *next = list->next;
            job_free(e, list);
            list = next;
        }
        return;
    }
    while (tail->next)
        tail = tail->next;
    tail->next = e->done;
    if (!e->done_tail)
        e->done_tail = tail;
    e->done = list;
}

static const char *curl_code_name(CURLcode c)
{
    switch (c) {
    case CURLE_OK: return "OK";
    case CURLE_UNSUPPORTED_PROTOCOL: return "UNSUPPORTED_PROTOCOL";
    case CURLE_URL_MALFORMAT: return "URL_MALFORMAT";
    case CURLE_COULDNT_RESOLVE_PROXY: return "COULDNT_RESOLVE_PROXY";
    case CURLE_COULDNT_RESOLVE_HOST: return "COULDNT_RESOLVE_HOST";
    case CURLE_COULDNT_CONNECT: return "COULDNT_CONNECT";
    case CURLE_WEIRD_SERVER_REPLY: return "WEIRD_SERVER_REPLY";
    case CURLE_HTTP2: return "HTTP2";
    case CURLE_PARTIAL_FILE: return "PARTIAL_FILE";
    case CURLE_WRITE_ERROR: return "WRITE_ERROR";
    case CURLE_OUT_OF_MEMORY: return "OUT_OF_MEMORY";
    case CURLE_OPERATION_TIMEDOUT: return "OPERATION_TIMEDOUT";
    case CURLE_SSL_CONNECT_ERROR: return "SSL_CONNECT_ERROR";
    case CURLE_GOT_NOTHING: return "GOT_NOTHING";
    case CURLE_SEND_ERROR: return "SEND_ERROR";
    case CURLE_RECV_ERROR: return "RECV_ERROR";
    case CURLE_SSL_CERTPROBLEM: return "SSL_CERTPROBLEM";
    case CURLE_SSL_CIPHER: return "SSL_CIPHER";
    case CURLE_PEER_FAILED_VERIFICATION: return "PEER_FAILED_VERIFICATION";
    case CURLE_SSL_CACERT_BADFILE: return "SSL_CACERT_BADFILE";
    case CURLE_FILESIZE_EXCEEDED: return "FILESIZE_EXCEEDED";
    case CURLE_BAD_CONTENT_ENCODING: return "BAD_CONTENT_ENCODING";
    case CURLE_HTTP2_STREAM: return "HTTP2_STREAM";
    case CURLE_HTTP3: return "HTTP3";
    case CURLE_ABORTED_BY_CALLBACK: return "ABORTED_BY_CALLBACK";
    default: return NULL;
    }
}

/* Pushes the headers of the last response in the header buffer as a table of
 * lower-cased names; a repeated header's values are joined with ", ". With
 * `only_ca`, only the gateway's X-Ca-* headers. */
static void push_headers(lua_State *L, const buffer *b, int only_ca)
{
    const char *p, *end, *first, *s;
    lua_newtable(L);
    if (!b->data || b->len == 0)
        return;
    p = b->data;
    end = p + b->len;
    first = p;
    /* The last status line: interim (1xx) and proxy answers come before it. */
    for (s = p; s < end; s++) {
        if ((s == p || s[-1] == '\n') && end - s >= 5 && memcmp(s, "HTTP/", 5) == 0)
            first = s;
    }
    for (s = first; s < end;) {
        const char *eol = memchr(s, '\n', (size_t)(end - s));
        const char *line_end = eol ? eol : end;
        const char *colon = memchr(s, ':', (size_t)(line_end - s));
        /* A header line (not a status line: those are checked within the
         * line, which may be shorter than "HTTP/" at the buffer's end). */
        if (colon && colon > s && !(line_end - s >= 5 && memcmp(s, "HTTP/", 5) == 0)) {
            const char *v = colon + 1, *ve = line_end;
            char name[256];
            size_t nlen = (size_t)(colon - s);
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            if (only_ca && (nlen < 5 || strncasecmp(s, "x-ca-", 5) != 0)) {
                s = eol ? eol + 1 : end;
                continue;
            }
            if (nlen < sizeof name) {
                size_t i;
                for (i = 0; i < nlen; i++) {
                    unsigned char c = (unsigned char)s[i];
                    name[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
                }
                lua_pushlstring(L, name, nlen);
                lua_pushvalue(L, -1);
                lua_rawget(L, -3);
                if (lua_isnil(L, -1)) {
                    lua_pop(L, 1);
                    lua_pushlstring(L, v, (size_t)(ve - v));
                } else {
                    lua_pushliteral(L, ", ");
                    lua_pushlstring(L, v, (size_t)(ve - v));
                    lua_concat(L, 3);
                }
                lua_rawset(L, -3);
            }
        }
        s = eol ? eol + 1 : end;
    }
}

#if LUA_VERSION_NUM >= 503
/* lua-cjson decodes every JSON number as a float on Lua 5.3+, so 41 would
 * print as 41.0: whole numbers of the table at idx (and of the tables in it)
 * become integers, as result.normalize does in Lua. The depth is bounded by
 * json_max_depth. */
static void to_integers(lua_State *L, int idx);

/* Element i of the array at idx, on top of the stack: converted; popped. */
static void to_integer_at(lua_State *L, int idx, lua_Integer i)
{
    int t = lua_type(L, -1);
    if (t == LUA_TTABLE) {
        to_integers(L, lua_gettop(L));
    } else if (t == LUA_TNUMBER && !lua_isinteger(L, -1)) {
        lua_Number n = lua_tonumber(L, -1);
        lua_Integer v;
        if (lua_numbertointeger(n, &v) && (lua_Number)v == n) {
            lua_pushinteger(L, v);
            lua_rawseti(L, idx, i);
        }
    }
    lua_pop(L, 1);
}

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
        int t = lua_type(L, -1);
        if (t == LUA_TTABLE) {
            to_integers(L, lua_gettop(L));
        } else if (t == LUA_TNUMBER && !lua_isinteger(L, -1)) {
            lua_Number x = lua_tonumber(L, -1);
            lua_Integer v;
            if (lua_numbertointeger(x, &v) && (lua_Number)v == x) {
                lua_pushvalue(L, -2);
                lua_pushinteger(L, v);
                lua_rawset(L, idx);  /* an existing field: allowed while traversing */
            }
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

/* Decodes a JSON text with the lua-cjson decode function at stack index
 * `decode` (the engine's instance, put on the stack by the method, so that
 * closing the engine meanwhile cannot take it away): pushes the value (whole
 * numbers as integers) and returns 1, or pushes the parse error and returns
 * 0. Any other error (an interrupt, a finalizer's error, memory) is raised
 * again: it is not something the answer said. */
static int decode_json(lua_State *L, int decode, const char *p, size_t n)
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

/* Pushes the response table of a job from what arrived (its header and body
 * buffers, how the transfer ended) and what libcurl measured. Needs no
 * libcurl handle: the fuzzing harness (fuzz/) calls it with made-up answers. */
static void push_answer(lua_State *L, int decode, const job *j, long status, int sent, long connects, double total)
{
    lua_createtable(L, 0, 14);
    lua_pushinteger(L, j->id);
    lua_setfield(L, -2, "id");
    lua_pushinteger(L, status);
    lua_setfield(L, -2, "status");
    lua_pushboolean(L, sent);
    lua_setfield(L, -2, "sent");
    lua_pushinteger(L, connects);
    lua_setfield(L, -2, "connects");
    lua_pushnumber(L, total);
    lua_setfield(L, -2, "elapsed");
    push_headers(L, &j->head, j->lean);
    lua_setfield(L, -2, "headers");
    /* A lean response has the body only when it is not decoded JSON. */
    if (!j->lean || j->result != CURLE_OK || !j->decode || j->body.len == 0) {
        lua_pushlstring(L, j->body.data ? j->body.data : "", j->body.len);
        lua_setfield(L, -2, "body");
    }
    lua_pushboolean(L, j->too_large);
    lua_setfield(L, -2, "too_large");
    if (j->result != CURLE_OK && j->resend_refused) {
        /* See on_prereq: the answer never came, and libcurl's resend was
         * stopped. The error buffer has the first attempt's failure, if
         * libcurl worded one. */
        static const char aborted[] = "operation aborted by pre-request callback";
        int why = j->errbuf[0] && strncmp(j->errbuf, aborted, sizeof aborted - 1) != 0;
        lua_pushinteger(L, j->result);
        lua_setfield(L, -2, "curl_code");
        lua_pushliteral(L, "GOT_NOTHING");
        lua_setfield(L, -2, "curl_name");
        lua_pushfstring(L, "the kept-alive connection closed before any byte of the answer%s%s%s; "
                        "the request was not sent again, since the gateway may have received it",
                        why ? " (" : "", why ? j->errbuf : "", why ? ")" : "");
        lua_setfield(L, -2, "curl_error");
    } else if (j->result != CURLE_OK) {
        lua_pushinteger(L, j->result);
        lua_setfield(L, -2, "curl_code");
        const char *name = curl_code_name(j->result);
        if (name)
            lua_pushstring(L, name);
        else
            lua_pushfstring(L, "CURLE_%d", (int)j->result);
        lua_setfield(L, -2, "curl_name");
        lua_pushstring(L, j->errbuf[0] ? j->errbuf : curl_easy_strerror(j->result));
        lua_setfield(L, -2, "curl_error");
    } else if (j->decode && j->body.len > 0) {
        /* JSON to tables, by lua-cjson, now that the transfer is over. */
        if (decode_json(L, decode, j->body.data, j->body.len)) {
            lua_setfield(L, -2, "json");
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, "integers");  /* already what result.normalize makes */
        } else {
            lua_setfield(L, -2, "json_error");
            if (j->lean) {
                lua_pushlstring(L, j->body.data, j->body.len);
                lua_setfield(L, -2, "body");
            }
        }
    }
}

/* Pushes the response of a finished job (a table; see the README). */
static void push_response(lua_State *L, int decode, job *j)
{
    long status = 0, connects = 0;
    double total = 0;

    curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(j->easy, CURLINFO_NUM_CONNECTS, &connects);
    curl_easy_getinfo(j->easy, CURLINFO_TOTAL_TIME, &total);
    push_answer(L, decode, j, status, job_sent(j), connects, total);
}

/* Building a response runs Lua: every allocation may run a finalizer, which
 * may cancel jobs, close the engine or start another call on it, and an
 * interrupt or a finalizer's error may be raised in the decode. So a job is
 * taken off the engine's lists before its response is built (nothing Lua
 * runs can reach it or free it), the decode function is kept on the stack,
 * and the building is a protected call: on an error the caller still owns
 * the job and decides (put it back, or free it) before raising again. */
static int build_protected(lua_State *L)
{
    push_response(L, 2, lua_touserdata(L, 1));
    return 1;
}

/* Pushes what building needs, before any job is taken off the lists (on
 * Lua 5.1 pushing a C function allocates, and so may raise): the protected
 * builder, then the engine's decode function. Returns the builder's index. */
static int push_builder(lua_State *L, const engine *e)
{
    lua_pushcfunction(L, build_protected);
    lua_rawgeti(L, LUA_REGISTRYINDEX, e->decode_ref);
    return lua_gettop(L) - 1;
}

/* Builds the response of the detached job j with the builder pushed at
 * stack index b: returns 0 with the response pushed, or the error status
 * with the error pushed. Nothing here can raise outside the protected call. */
static int build(lua_State *L, int b, job *j)
{
    lua_pushvalue(L, b);
    lua_pushlightuserdata(L, j);
    lua_pushvalue(L, b + 1);
    return lua_pcall(L, 2, 1, 0);
}

/* Request options ----------------------------------------------------------------- */

typedef struct request {
    const char *url, *body, *ca_file, *proxy, *user_agent;
    size_t body_len;
    int post, verify, decode;
    long timeout_ms, connect_timeout_ms;
    curl_off_t max_bytes;
    aliocr_credentials *cred;
} request;

static const char *opt_string(lua_State *L, int t, const char *name)
{
    const char *s = NULL;
    lua_pushstring(L, name);
    lua_rawget(L, t); /* no metamethod: the table holds what it gives */
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "request field '%s' must be a string", name);
        s = lua_tostring(L, -1);
    }
    lua_pop(L, 1); /* the request table keeps the string alive */
    return s;
}

/* A number field: finite and within what a long and curl_off_t hold. */
static lua_Number opt_number(lua_State *L, int t, const char *name, lua_Number def)
{
    lua_Number n = def;
    lua_pushstring(L, name);
    lua_rawget(L, t); /* no metamethod: the table holds what it gives */
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TNUMBER)
            luaL_error(L, "request field '%s' must be a number", name);
        n = lua_tonumber(L, -1);
        if (!(n > -2147483647.0 && n < 2147483647.0) && !(strcmp(name, "max_bytes") == 0 && n >= 0 && n < 9.0e15))
            luaL_error(L, "request field '%s' is out of range", name);
    }
    lua_pop(L, 1);
    return n;
}

static int opt_bool(lua_State *L, int t, const char *name, int def)
{
    int b = def;
    lua_pushstring(L, name);
    lua_rawget(L, t); /* no metamethod: the table holds what it gives */
    if (!lua_isnil(L, -1))
        b = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return b;
}

/* Reads and checks the request table at index t; raises on misuse, before
 * anything is allocated. */
static void read_request(lua_State *L, int t, request *r)
{
    const char *method;
    luaL_checktype(L, t, LUA_TTABLE);
    memset(r, 0, sizeof *r);
    r->url = opt_string(L, t, "url");
    if (!r->url) {
        luaL_error(L, "request needs a url");
        return; /* not reached: luaL_error does not return */
    }
    if (strncasecmp(r->url, "http://", 7) != 0 && strncasecmp(r->url, "https://", 8) != 0)
        luaL_error(L, "request url must be http:// or https://");
    method = opt_string(L, t, "method");
    if (!method || strcmp(method, "POST") == 0)
        r->post = 1;
    else if (strcmp(method, "GET") != 0)
        luaL_error(L, "request method must be \"GET\" or \"POST\"");
    lua_pushliteral(L, "body");
    lua_rawget(L, t);
    if (!lua_isnil(L, -1))
        r->body = luaL_checklstring(L, -1, &r->body_len);
    lua_pop(L, 1);
    r->ca_file = opt_string(L, t, "ca_file");
    r->proxy = opt_string(L, t, "proxy");
    r->user_agent = opt_string(L, t, "user_agent");
    r->verify = opt_bool(L, t, "verify", 1);
    r->decode = opt_bool(L, t, "decode", 1);
    r->timeout_ms = (long)opt_number(L, t, "timeout_ms", 0);
    r->connect_timeout_ms = (long)opt_number(L, t, "connect_timeout_ms", 0);
    r->max_bytes = (curl_off_t)opt_number(L, t, "max_bytes", DEFAULT_MAX_BYTES);
    if (r->timeout_ms < 0 || r->connect_timeout_ms < 0 || r->max_bytes < 0)
        luaL_error(L, "request timeouts and max_bytes must not be negative");
    lua_pushliteral(L, "credentials");
    lua_rawget(L, t);
    if (!lua_isnil(L, -1))
        r->cred = aliocr_check_credentials(L, -1);
    lua_pop(L, 1);
    lua_pushliteral(L, "headers");
    lua_rawget(L, t);
    if (!lua_isnil(L, -1)) {
        int i, n;
        luaL_checktype(L, -1, LUA_TTABLE);
        n = (int)lua_rawlen(L, -1);
        for (i = 1; i <= n; i++) {
            lua_rawgeti(L, -1, i);
            if (lua_type(L, -1) != LUA_TSTRING)
                luaL_error(L, "request headers must be strings");
            aliocr_check_header_safe(L, -1, "a request header", NULL);
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
}

/* The header list of a request: its headers, the AppCode (in AppCode mode),
 * and "Expect:" (no 100-continue round trip). NULL when out of memory. */
static struct curl_slist *build_headers(lua_State *L, int t, const request *r)
{
    struct curl_slist *list = NULL, *next;
    int i, n;
    lua_pushliteral(L, "headers");
    lua_rawget(L, t);
    n = lua_istable(L, -1) ? (int)lua_rawlen(L, -1) : 0;
    for (i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        next = curl_slist_append(list, lua_tostring(L, -1));
        lua_pop(L, 1);
        if (!next)
            goto fail;
        list = next;
    }
    lua_pop(L, 1);
    if (r->cred && r->cred->mode == ALIOCR_APPCODE) {
        static const char prefix[] = "Authorization: APPCODE ";
        size_t len = sizeof prefix + strlen(r->cred->appcode);
        char *line = malloc(len);
        if (!line)
            goto fail_popped;
        memcpy(line, prefix, sizeof prefix - 1);
        memcpy(line + sizeof prefix - 1, r->cred->appcode, len - (sizeof prefix - 1)); /* with its NUL */
        next = curl_slist_append(list, line); /* copies */
        memset(line, 0, len);
        free(line);
        if (!next)
            goto fail_popped;
        list = next;
    }
    next = curl_slist_append(list, "Expect:");
    if (!next)
        goto fail_popped;
    return next;
fail:
    lua_pop(L, 1);
fail_popped:
    curl_slist_free_all(list);
    return NULL;
}

static int setup_easy(job *j, const request *r)
{
    CURL *c = j->easy;
    CURLcode rc = CURLE_OK;
#define SET(opt, val) do { if (rc == CURLE_OK) rc = curl_easy_setopt(c, opt, val); } while (0)
    SET(CURLOPT_URL, r->url);
    SET(CURLOPT_PRIVATE, (char *)j);
    SET(CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
    SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
    SET(CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_MAXAGE_CONN, j->engine->idle_s);
    SET(CURLOPT_TIMEOUT_MS, r->timeout_ms);
    SET(CURLOPT_CONNECTTIMEOUT_MS, r->connect_timeout_ms);
    SET(CURLOPT_SSL_VERIFYPEER, r->verify ? 1L : 0L);
    SET(CURLOPT_SSL_VERIFYHOST, r->verify ? 2L : 0L);
    if (r->ca_file)
        SET(CURLOPT_CAINFO, r->ca_file);
    if (r->proxy)
        SET(CURLOPT_PROXY, r->proxy);
    if (r->user_agent)
        SET(CURLOPT_USERAGENT, r->user_agent);
    SET(CURLOPT_HTTPHEADER, j->headers);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, (void *)j);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, (void *)j);
    SET(CURLOPT_ERRORBUFFER, j->errbuf);
    SET(CURLOPT_PREREQFUNCTION, on_prereq);
    SET(CURLOPT_PREREQDATA, (void *)j);
    if (r->post) {
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
        SET(CURLOPT_COPYPOSTFIELDS, r->body ? r->body : "");
    } else {
        SET(CURLOPT_HTTPGET, 1L);
    }
#undef SET
    return rc == CURLE_OK ? 0 : -1;
}

/* Starts the transfer of the request at index t; returns its job. Raises on
 * misuse, and on out-of-memory after freeing what it allocated. */
static job *start(lua_State *L, engine *e, int t)
{
    request r;
    job *j;
    read_request(L, t, &r);
    if (e->closed)
        luaL_error(L, "attempt to use a closed aliocr engine");
    j = calloc(1, sizeof *j);
    if (!j) {
        luaL_error(L, "out of memory");
        return NULL; /* not reached: luaL_error does not return */
    }
    j->engine = e;
    j->max_bytes = r.max_bytes;
    j->decode = r.decode;
    j->easy = take_easy(e);
    j->headers = j->easy ? build_headers(L, t, &r) : NULL;
    if (!j->easy || !j->headers || setup_easy(j, &r) != 0 ||
        curl_multi_add_handle(e->multi, j->easy) != CURLM_OK) {
        job_free(e, j);
        luaL_error(L, "could not set up the transfer (out of memory?)");
        return NULL; /* not reached */
    }
    j->id = ++e->next_id;
    j->next = e->active;
    e->active = j;
    return j;
}

/***
 * Starts a request without waiting for it; returns its id.
 * @function add
 */
static int engine_add(lua_State *L)
{
    engine *e = check_engine(L, 1);
    job *j = start(L, e, 2);
    lua_pushinteger(L, j->id);
    return 1;
}

/***
 * Makes one request and waits for its answer; returns the response table.
 * Other transfers under way progress meanwhile, and their responses wait
 * for `run`.
 * @function perform
 */
static int engine_perform(lua_State *L)
{
    engine *e = check_engine(L, 1);
    int b = push_builder(L, e);
    job *j = start(L, e, 2);
    int status;
    CURLMcode mc = finish_job(e, j);
    if (mc != CURLM_OK) {
        job_free(e, j);
        return multi_failed(L, mc);
    }
    status = build(L, b, j);
    job_free(e, j);
    if (status != 0)
        return lua_error(L);
    return 1;
}

/* Prepared calls ------------------------------------------------------------------- */

static void profile_free(profile *p)
{
    struct curl_slist *h;
    if (!p)
        return;
    if (p->easy)
        curl_easy_cleanup(p->easy);
    /* The header list holds the AppCode: wipe it before it is freed. */
    for (h = p->headers; h; h = h->next)
        if (h->data)
            memset(h->data, 0, strlen(h->data));
    curl_slist_free_all(p->headers);
    free(p->url);
    buffer_free(&p->form);
    buffer_free(&p->get_url);
    buffer_free(&p->job.body);
    buffer_free(&p->job.head);
    free(p);
}

/***
 * Prepares calls that differ only in their image URL: `req` is a request
 * table (see `perform`) without a body; returns the id to give `call`.
 * @function profile
 */
static int engine_profile(lua_State *L)
{
    engine *e = check_engine(L, 1);
    request r;
    profile *p;
    size_t url_len;
    read_request(L, 2, &r);
    if (e->nprofiles >= PROFILE_MAX)
        return luaL_error(L, "too many prepared calls on one engine");
    p = calloc(1, sizeof *p);
    if (!p)
        return luaL_error(L, "out of memory");
    url_len = strlen(r.url) + 1;
    p->url = malloc(url_len);
    p->easy = curl_easy_init();
    p->headers = build_headers(L, 2, &r);
    if (!p->url || !p->easy || !p->headers) {
        profile_free(p);
        return luaL_error(L, "could not prepare the call (out of memory?)");
    }
    memcpy(p->url, r.url, url_len);
    p->post = r.post;
    p->job.engine = e;
    p->job.easy = p->easy;
    p->job.headers = NULL;        /* the profile owns the header list */
    p->job.max_bytes = r.max_bytes;
    p->job.decode = r.decode;
    p->job.lean = 1;
    p->job.profile = p;
    r.body = NULL;
    r.body_len = 0;
    {
        job *j = &p->job;
        j->headers = p->headers;
        if (setup_easy(j, &r) != 0) {
            j->headers = NULL;
            profile_free(p);
            return luaL_error(L, "could not prepare the call (out of memory?)");
        }
        j->headers = NULL;
    }
    e->profiles[e->nprofiles] = p;
    lua_pushinteger(L, ++e->nprofiles);
    return 1;
}

/* Appends `s` percent-encoded, all but RFC 3986's unreserved characters. */
static int append_escaped(buffer *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t i;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            if (buffer_append(b, (const char *)&c, 1) != 0)
                return -1;
        } else {
            char esc[3];
            esc[0] = '%';
            esc[1] = hex[c >> 4];
            esc[2] = hex[c & 15];
            if (buffer_append(b, esc, 3) != 0)
                return -1;
        }
    }
    return 0;
}

/***
 * One call of a prepared profile: `url=<image_url>` (and `extra`, already
 * encoded parameters, after a `&`) as the form body, or the query of a GET;
 * waits for the answer and returns the response table, with only what the
 * client reads: `status`, `sent`, `connects`, `too_large`, the `headers` of
 * the gateway (X-Ca-*), `json` or `json_error`, `body` when it is not
 * decoded JSON, and the `curl_*` fields of a failure. Returns nothing when
 * the profile is in use (the caller then makes a plain request).
 * @function call
 */
static int engine_call(lua_State *L)
{
    engine *e = check_engine(L, 1);
    lua_Integer id = luaL_checkinteger(L, 2);
    size_t n, extra_len = 0;
    const char *image = luaL_checklstring(L, 3, &n);
    const char *extra = luaL_optlstring(L, 4, NULL, &extra_len);
    profile *p;
    job *j;
    CURLcode rc;
    CURLMcode mc;
    int status, b = push_builder(L, e);
    if (e->closed) /* the arguments' conversion may have run a finalizer */
        return luaL_error(L, "attempt to use a closed aliocr engine");
    if (id < 1 || id > e->nprofiles)
        return luaL_error(L, "no prepared call %d", (int)id);
    p = e->profiles[id - 1];
    if (p->busy)
        return 0;
    p->form.len = 0;
    if (buffer_append(&p->form, "url=", 4) != 0 || append_escaped(&p->form, image, n) != 0 ||
        (extra && (buffer_append(&p->form, "&", 1) != 0 || buffer_append(&p->form, extra, extra_len) != 0)))
        return luaL_error(L, "out of memory");
    if (p->post) {
        rc = curl_easy_setopt(p->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)p->form.len);
        if (rc == CURLE_OK)
            rc = curl_easy_setopt(p->easy, CURLOPT_POSTFIELDS, p->form.data);
    } else {
        p->get_url.len = 0;
        if (buffer_append(&p->get_url, p->url, strlen(p->url)) != 0 || buffer_append(&p->get_url, "?", 1) != 0 ||
            buffer_append(&p->get_url, p->form.data, p->form.len) != 0)
            return luaL_error(L, "out of memory");
        rc = curl_easy_setopt(p->easy, CURLOPT_URL, p->get_url.data);
    }
    if (rc != CURLE_OK)
        return luaL_error(L, "could not set up the transfer (out of memory?)");
    j = &p->job;
    j->body.len = j->head.len = 0;
    j->too_large = j->too_large_declared = 0;
    j->requests = j->resend_refused = 0;
    j->errbuf[0] = '\0';
    j->result = CURLE_OK;
    if (curl_multi_add_handle(e->multi, p->easy) != CURLM_OK)
        return luaL_error(L, "could not set up the transfer (out of memory?)");
    p->busy = 1;
    j->id = ++e->next_id;
    j->next = e->active;
    e->active = j;
    mc = finish_job(e, j);
    if (mc != CURLM_OK) {
        p->busy = 0;
        return multi_failed(L, mc);
    }
    status = build(L, b, j);
    p->busy = 0;
    if (p->orphan) {
        profile_free(p); /* the engine was closed while the answer was built */
    } else {
        /* One huge answer must not keep its buffers until close. */
        if (j->body.cap > BUFFER_KEEP)
            buffer_free(&j->body);
        if (j->head.cap > BUFFER_KEEP)
            buffer_free(&j->head);
    }
    if (status != 0)
        return lua_error(L);
    return 1;
}

/***
 * Decodes a JSON text as the engine decodes answers (its depth limit, whole
 * numbers as integers on Lua 5.3+): the value, or nil and the error.
 * @function decode
 */
static int engine_decode(lua_State *L)
{
    engine *e = check_engine(L, 1);
    size_t n;
    const char *p = luaL_checklstring(L, 2, &n);
    if (decode_json(L, push_builder(L, e) + 1, p, n))
        return 1;
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
}

/***
 * Drives the transfers under way for at most `timeout` seconds (0: a single
 * pass that never blocks); returns an array of the responses of the
 * transfers that finished, and the number still under way. When building a
 * response raised (an interrupt, a finalizer's error, memory), also returns
 * that error third: the responses built before it are in the array, and the
 * rest wait for the next run.
 * @function run
 */
static int engine_run(lua_State *L)
{
    engine *e = check_engine(L, 1);
    lua_Number timeout = luaL_optnumber(L, 2, 0);
    double deadline = aliocr_monotonic() + (timeout > 0 ? timeout : 0);
    int n = 0, pending = 0, b = push_builder(L, e), list_idx;
    job *j, *taken;
    CURLMcode mc;
    lua_newtable(L); /* allocations before any job is taken (see build) */
    list_idx = lua_gettop(L);
    mc = drive(e, 0, NULL);
    /* A caught SIGINT (see core.catch_interrupts) ends the wait. */
    while (mc == CURLM_OK && !e->done && e->active && !aliocr_interrupted()) {
        double left = deadline - aliocr_monotonic();
        if (left <= 0)
            break;
        mc = drive(e, left > 0.1 ? 100 : (int)(left * 1000) + 1, NULL);
    }
    if (mc != CURLM_OK)
        return multi_failed(L, mc);
    /* The finished jobs are ours from here on (see build). */
    taken = e->done;
    e->done = e->done_tail = NULL;
    while ((j = taken) != NULL) {
        taken = j->next;
        j->next = NULL;
        if (build(L, b, j) != 0) {
            /* This job and the rest wait for the next run; what was built
             * is returned with the error, so that nothing is lost. */
            j->next = taken;
            give_back(e, j);
            for (j = e->active; j; j = j->next)
                pending++;
            lua_pushvalue(L, list_idx);
            lua_pushinteger(L, pending);
            lua_pushvalue(L, -3);
            return 3;
        }
        lua_rawseti(L, list_idx, ++n);
        job_free(e, j);
    }
    for (j = e->active; j; j = j->next)
        pending++;
    lua_pushinteger(L, pending);
    return 2;
}

/***
 * Abandons a transfer under way: true if there was one with that id, and
 * whether any of its request went out (then its billing is unknown). A transfer that finished but was not collected
 * yet is not abandoned: its response is returned instead (the answer is in,
 * billed or not). False for an id the engine does not hold (unknown,
 * collected, or its response being built right now).
 * @function cancel
 */
static int engine_cancel(lua_State *L)
{
    engine *e = check_engine(L, 1);
    lua_Integer id = luaL_checkinteger(L, 2);
    int b = push_builder(L, e);
    job *j;
    for (j = e->active; j; j = j->next) {
        if (j->id == id) {
            int sent = job_sent(j);
            curl_multi_remove_handle(e->multi, j->easy);
            unlink_job(&e->active, j);
            job_free(e, j);
            lua_pushboolean(L, 1);
            lua_pushboolean(L, sent);
            return 2;
        }
    }
    for (j = e->done; j; j = j->next) {
        if (j->id == id) {
            /* Too late: the answer is in. It is handed over, not dropped. */
            unlink_done(e, j);
            if (build(L, b, j) != 0) {
                give_back(e, j);
                return lua_error(L);
            }
            job_free(e, j);
            return 1;
        }
    }
    lua_pushboolean(L, 0);
    return 1;
}

/***
 * The number of transfers under way or finished but not collected.
 * @function pending
 */
static int engine_pending(lua_State *L)
{
    engine *e = check_engine(L, 1);
    int n = 0;
    job *j;
    for (j = e->active; j; j = j->next)
        n++;
    for (j = e->done; j; j = j->next)
        n++;
    lua_pushinteger(L, n);
    return 1;
}

/* close, __gc and __close: frees everything; idempotent; returns true. */
static int engine_close(lua_State *L)
{
    engine *e = luaL_checkudata(L, 1, ALIOCR_ENGINE);
    job *j;
    lua_pushboolean(L, 1);
    if (e->closed)
        return 1;
    e->closed = 1;
    while ((j = e->active) != NULL) {
        e->active = j->next;
        if (e->multi)
            curl_multi_remove_handle(e->multi, j->easy);
        job_free(e, j);
    }
    while ((j = e->done) != NULL) {
        e->done = j->next;
        job_free(e, j);
    }
    e->done_tail = NULL;
    while (e->nidle > 0)
        curl_easy_cleanup(e->idle[--e->nidle]);
    while (e->nprofiles > 0) {
        profile *p = e->profiles[--e->nprofiles];
        e->profiles[e->nprofiles] = NULL;
        if (p->busy)
            p->orphan = 1; /* its answer is being built: engine_call frees it */
        else
            profile_free(p);
    }
    if (e->multi) {
        curl_multi_cleanup(e->multi);
        e->multi = NULL;
    }
    if (e->decode_ref != LUA_NOREF && e->decode_ref != LUA_REFNIL) {
        luaL_unref(L, LUA_REGISTRYINDEX, e->decode_ref);
        e->decode_ref = LUA_NOREF;
    }
    return 1;
}

static int engine_tostring(lua_State *L)
{
    engine *e = luaL_checkudata(L, 1, ALIOCR_ENGINE);
    lua_pushfstring(L, "aliocr.Engine (%s)", e->closed ? "closed" : "open");
    return 1;
}

/***
 * A new engine: `{ json_max_depth = 64, max_host_connections = 0 (no limit),
 * max_connections = 32, idle_timeout = 10 }` (idle_timeout: the seconds a
 * kept-alive connection may have been idle and still be used again).
 * @function engine
 */
static int engine_new(lua_State *L)
{
    lua_Number depth = 64, host = 0, conns = 32, idle = 10;
    engine *e;
    if (!lua_isnoneornil(L, 1)) {
        luaL_checktype(L, 1, LUA_TTABLE);
        depth = opt_number(L, 1, "json_max_depth", depth);
        host = opt_number(L, 1, "max_host_connections", host);
        conns = opt_number(L, 1, "max_connections", conns);
        idle = opt_number(L, 1, "idle_timeout", idle);
    }
    if (depth < 1 || depth > 1000)
        return luaL_error(L, "json_max_depth must be from 1 to 1000");
    if (host < 0 || conns < 1)
        return luaL_error(L, "max_host_connections must be >= 0 and max_connections >= 1");
    if (idle < 1 || idle > 86400 || idle != (lua_Number)(long)idle)
        return luaL_error(L, "idle_timeout must be a whole number of seconds from 1 to 86400");

    e = lua_newuserdata(L, sizeof *e);
    memset(e, 0, sizeof *e);
    e->decode_ref = LUA_NOREF;
    e->idle_s = (long)idle;
    luaL_setmetatable(L, ALIOCR_ENGINE);
    e->multi = curl_multi_init();
    if (!e->multi)
        return luaL_error(L, "curl_multi_init failed");
    curl_multi_setopt(e->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)host);
    curl_multi_setopt(e->multi, CURLMOPT_MAXCONNECTS, (long)conns);

    /* Our own lua-cjson instance: a depth limit, no NaN or Infinity. */
    lua_getglobal(L, "require");
    lua_pushliteral(L, "cjson");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "new");
    lua_call(L, 0, 1);
    lua_getfield(L, -1, "decode_max_depth");
    lua_pushnumber(L, depth);
    lua_call(L, 1, 0);
    lua_getfield(L, -1, "decode_invalid_numbers");
    lua_pushboolean(L, 0);
    lua_call(L, 1, 0);
    lua_getfield(L, -1, "decode");
    e->decode_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 2); /* the instance and the module */
    return 1;
}

static const luaL_Reg engine_meta[] = {
    {"__gc", engine_close},
    {"__close", engine_close},
    {"__tostring", engine_tostring},
    {NULL, NULL}
};

static const luaL_Reg engine_methods[] = {
    {"add", engine_add},
    {"perform", engine_perform},
    {"profile", engine_profile},
    {"call", engine_call},
    {"decode", engine_decode},
    {"run", engine_run},
    {"cancel", engine_cancel},
    {"pending", engine_pending},
    {"close", engine_close},
    {NULL, NULL}
};

void aliocr_engine_open(lua_State *L)
{
    aliocr_new_class(L, ALIOCR_ENGINE, engine_meta, engine_methods, "engine", engine_new);
}
