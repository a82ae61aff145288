/*
 * aliocr.core.http_reader: a strict reader of one HTTP/1.x response, for the
 * nginx transport (lua/aliocr/resty.lua), which reads its socket in large
 * pieces and feeds them here. One parser with one set of limits, so that
 * whatever a server sends, the memory a response takes is bounded (the head
 * by HEAD_MAX, the body by the caller's cap) and the outcome is the one
 * libcurl gives for the same bytes, named with libcurl's error names.
 *
 * What it takes (RFC 9112, and libcurl where RFC 9112 leaves a choice):
 * - a status line "HTTP/<d>.<d> <3 digits>[ <reason>]"; interim 1xx answers
 *   (but 101) are skipped;
 * - lines ended by CRLF or a bare LF; header lines "name: value" with a
 *   token name (a line without a colon fails; one with a blank before the
 *   colon is ignored, as libcurl does), obs-fold continuation lines joined
 *   with a space;
 * - the body framed by Transfer-Encoding: chunked (any other transfer
 *   coding fails: aliocr asks for none), else by Content-Length (as
 *   libcurl reads it, see content_length), else by the end of the
 *   connection; none for 204, 304 and 1xx;
 * - chunks: 1 to 16 hex digits, anything up to the LF ignored (extensions),
 *   the data, then CRLF or LF; trailers are read and dropped.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "aliocr.h"

#define ALIOCR_HTTP_READER "aliocr.HttpReader"

/* libcurl's limits: one header line at most 100 KiB (CURL_MAX_HTTP_HEADER),
 * all the header lines of a response at most 300 KiB. */
#define LINE_MAX_BYTES ((size_t)100 * 1024)
#define HEAD_MAX ((size_t)300 * 1024)
/* At most 16 hex digits in a chunk size (a 64-bit number). */
#define CHUNK_DIGITS_MAX 16

enum {
    S_STATUS,      /* the status line */
    S_HEADERS,     /* header lines, up to the empty line */
    S_BODY_LENGTH, /* a body of content_length bytes */
    S_BODY_CLOSE,  /* a body up to the end of the connection */
    S_CHUNK_SIZE,  /* hex digits of a chunk size */
    S_CHUNK_EXT,   /* what follows them, up to the LF */
    S_CHUNK_DATA,  /* chunk_left bytes of data */
    S_CHUNK_CR,    /* the CR (or LF) after the data */
    S_CHUNK_LF,    /* the LF after that CR */
    S_TRAILERS,    /* trailer lines, up to the empty line */
    S_DONE,
    S_FAILED
};

typedef struct reader {
    int state;
    int head_only;        /* the answer to a CONNECT: no body */
    int got_any;          /* any byte arrived */
    int status;           /* of the final answer, once its status line came */
    int minor;            /* HTTP/1.<minor> */
    int head_done;
    int keep;             /* Connection: keep-alive */
    int close;            /* Connection: close */
    int chunked;
    int te;               /* a transfer coding other than chunked (or identity) */
    int has_length;
    int excess;           /* bytes after the end of the answer */
    int ignored;          /* the last header line was ignored */
    int64_t length;       /* Content-Length */
    uint64_t chunk_left;
    int digits;
    size_t head_bytes;    /* of this answer's head (and trailers) so far */
    size_t max_body;
    /* The line being read. */
    char *line;
    size_t line_len, line_cap;
    /* The final answer's header lines, each "name: value\n", names as sent. */
    char *head;
    size_t head_len, head_cap;
    /* The body. */
    char *body;
    size_t body_len, body_cap;
    const char *code;     /* libcurl's name of the failure */
    const char *why;
} reader;

static reader *check_reader(lua_State *L)
{
    return (reader *)luaL_checkudata(L, 1, ALIOCR_HTTP_READER);
}

/* Appends n bytes to a growing buffer; 0 when memory runs out. */
static int grow_append(char **buf, size_t *len, size_t *cap, const char *p, size_t n)
{
    if (*len + n > *cap) {
        size_t want = *cap ? *cap : 256;
        char *nb;
        while (want < *len + n)
            want *= 2;
        nb = (char *)realloc(*buf, want);
        if (!nb)
            return 0;
        *buf = nb;
        *cap = want;
    }
    memcpy(*buf + *len, p, n);
    *len += n;
    return 1;
}

static int fail(reader *r, const char *code, const char *why)
{
    r->state = S_FAILED;
    r->code = code;
    r->why = why;
    return -1;
}

static int is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int lower(int c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

/* Whether [p, p+n) equals the lower-case word w, ignoring case. */
static int word_is(const char *p, size_t n, const char *w)
{
    size_t i;
    if (strlen(w) != n)
        return 0;
    for (i = 0; i < n; i++)
        if (lower((unsigned char)p[i]) != w[i])
            return 0;
    return 1;
}

/* Calls each(r, token, length) for each element of a comma-separated list. */
static void each_token(reader *r, const char *v, size_t n, void (*each)(reader *, const char *, size_t))
{
    size_t i = 0;
    while (i < n) {
        size_t s, e;
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        s = i;
        while (i < n && v[i] != ',')
            i++;
        e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e > s)
            each(r, v + s, e - s);
    }
}

static void connection_token(reader *r, const char *t, size_t n)
{
    if (word_is(t, n, "close"))
        r->close = 1;
    else if (word_is(t, n, "keep-alive"))
        r->keep = 1;
}

/* Transfer-Encoding: the framing is chunked when chunked comes last. */
static void coding_token(reader *r, const char *t, size_t n)
{
    size_t i = 0;
    while (i < n && t[i] != ';' && t[i] != ' ' && t[i] != '\t')
        i++;
    if (word_is(t, i, "chunked")) {
        r->chunked = 1;
    } else if (!word_is(t, i, "identity")) {
        r->te = 1;
    }
}

int aliocr_content_length(const char *v, size_t n, int64_t *out)
{
    size_t i = 0;
    int64_t x = 0;
    int digits = 0;
    while (i < n && (v[i] == ' ' || v[i] == '\t'))
        i++;
    if (i < n && v[i] == '+')
        i++;
    while (i < n && v[i] >= '0' && v[i] <= '9') {
        if (x > (INT64_MAX - (v[i] - '0')) / 10)
            return 0;
        x = x * 10 + (v[i] - '0');
        digits++;
        i++;
    }
    if (digits == 0)
        return -1;
    *out = x;
    return 1;
}

/* A Content-Length header of the final answer (see aliocr_content_length);
 * a repeated one replaces the value before it. */
static int content_length(reader *r, const char *v, size_t n)
{
    int64_t x = 0;
    int got = aliocr_content_length(v, n, &x);
    if (got < 0)
        return fail(r, "WEIRD_SERVER_REPLY", "an invalid Content-Length");
    if (got == 0) {
        /* Too large for 63 bits: ignored, the body ends at the close. */
        r->has_length = 0;
        r->close = 1;
        return 0;
    }
    r->has_length = 1;
    r->length = x;
    return 0;
}

/* Takes a complete header line (without its line end) of the final answer. */
static int header_line(reader *r, const char *p, size_t n)
{
    size_t i = 0, vs, ve;
    if (!memchr(p, ':', n))
        return fail(r, "WEIRD_SERVER_REPLY", "a header line without a colon");
    while (i < n && is_tchar((unsigned char)p[i]))
        i++;
    if (i == 0 || p[i] != ':') {
        r->ignored = 1; /* not "name:" (a blank before the colon): ignored, as libcurl does */
        return 0;
    }
    r->ignored = 0;
    vs = i + 1;
    while (vs < n && (p[vs] == ' ' || p[vs] == '\t'))
        vs++;
    ve = n;
    while (ve > vs && (p[ve - 1] == ' ' || p[ve - 1] == '\t'))
        ve--;
    if (word_is(p, i, "content-length")) {
        if (content_length(r, p + vs, ve - vs) < 0)
            return -1;
    } else if (word_is(p, i, "transfer-encoding")) {
        each_token(r, p + vs, ve - vs, coding_token);
    } else if (word_is(p, i, "connection")) {
        each_token(r, p + vs, ve - vs, connection_token);
    }
    if (!grow_append(&r->head, &r->head_len, &r->head_cap, p, i) ||
        !grow_append(&r->head, &r->head_len, &r->head_cap, ":", 1) ||
        !grow_append(&r->head, &r->head_len, &r->head_cap, p + vs, ve - vs) ||
        !grow_append(&r->head, &r->head_len, &r->head_cap, "\n", 1))
        return fail(r, "OUT_OF_MEMORY", "out of memory");
    return 0;
}

/* A status line "HTTP/<d>.<d> <ddd>[ reason]". */
static int status_line(reader *r, const char *p, size_t n)
{
    int code;
    if (n < 5 || memcmp(p, "HTTP/", 5) != 0)
        return fail(r, "UNSUPPORTED_PROTOCOL", "the answer is not HTTP (HTTP/0.9 is not allowed)");
    if (n < 9 || p[5] != '1' || p[6] != '.' || (p[7] != '0' && p[7] != '1') || p[8] != ' ')
        return fail(r, "UNSUPPORTED_PROTOCOL", "an HTTP version other than 1.0 and 1.1 in the answer");
    if (n < 12 || p[9] < '0' || p[9] > '9' || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9' ||
        (n > 12 && p[12] >= '0' && p[12] <= '9'))
        return fail(r, "UNSUPPORTED_PROTOCOL", "a status code that is not three digits");
    code = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    if (code < 100)
        return fail(r, "UNSUPPORTED_PROTOCOL", "a status code under 100");
    r->minor = p[7] - '0';
    r->status = code;
    return 0;
}

/* The head is complete: decide how the body is framed. */
static int end_of_head(reader *r)
{
    if (r->status < 200 && r->status != 101) {
        /* An interim answer: the final one follows. */
        r->status = 0;
        r->head_len = 0;
        r->keep = r->close = r->chunked = r->te = r->has_length = r->ignored = 0;
        r->state = S_STATUS;
        return 0;
    }
    r->head_done = 1;
    if (r->head_only || r->status == 204 || r->status == 304 || r->status == 101) {
        r->state = S_DONE;
    } else if (r->te) {
        return fail(r, "BAD_CONTENT_ENCODING", "a transfer coding other than chunked, which was not asked for");
    } else if (r->chunked) {
        r->state = S_CHUNK_SIZE;
        r->digits = 0;
        r->chunk_left = 0;
    } else if (r->has_length) {
        if ((uint64_t)r->length > r->max_body)
            return fail(r, "too_large", "the answer is larger than max_response_bytes");
        r->state = r->length == 0 ? S_DONE : S_BODY_LENGTH;
    } else {
        r->state = S_BODY_CLOSE;
    }
    return 0;
}

/* Takes a complete line of the head (status, header or trailer line). */
static int head_line(reader *r, const char *p, size_t n)
{
    if (r->state == S_STATUS) {
        if (status_line(r, p, n) < 0)
            return -1;
        r->state = S_HEADERS;
        return 0;
    }
    if (n == 0) {
        if (r->state == S_TRAILERS) {
            r->state = S_DONE;
            return 0;
        }
        return end_of_head(r);
    }
    if (r->state == S_TRAILERS)
        return 0;
    if (p[0] == ' ' || p[0] == '\t') {
        /* obs-fold: a continuation of the previous header line. */
        size_t i = 0;
        if (r->ignored)
            return 0; /* the continuation of a header that was ignored */
        if (r->head_len == 0)
            return fail(r, "WEIRD_SERVER_REPLY", "a continuation line before any header");
        while (i < n && (p[i] == ' ' || p[i] == '\t'))
            i++;
        r->head_len--; /* its "\n" */
        if (!grow_append(&r->head, &r->head_len, &r->head_cap, " ", 1) ||
            !grow_append(&r->head, &r->head_len, &r->head_cap, p + i, n - i) ||
            !grow_append(&r->head, &r->head_len, &r->head_cap, "\n", 1))
            return fail(r, "OUT_OF_MEMORY", "out of memory");
        return 0;
    }
    return header_line(r, p, n);
}

/* Reads head bytes from p (n of them) up to the end of a line; returns the
 * bytes used, or -1 on a failure. */
static long feed_line(reader *r, const char *p, size_t n)
{
    const char *lf = (const char *)memchr(p, '\n', n);
    size_t take = lf ? (size_t)(lf - p) + 1 : n;
    size_t limit = r->state == S_TRAILERS ? LINE_MAX_BYTES : HEAD_MAX;
    if (r->line_len + take > LINE_MAX_BYTES || r->head_bytes + take > limit)
        return fail(r, "OUT_OF_MEMORY", r->line_len + take > LINE_MAX_BYTES ?
                    "a header line longer than 100 KiB" : "response headers larger than 300 KiB");
    r->head_bytes += take;
    if (!grow_append(&r->line, &r->line_len, &r->line_cap, p, take))
        return fail(r, "OUT_OF_MEMORY", "out of memory");
    if (lf) {
        size_t len = r->line_len - 1;
        if (len > 0 && r->line[len - 1] == '\r')
            len--;
        r->line_len = 0;
        if (memchr(r->line, '\r', len) || memchr(r->line, '\0', len))
            return fail(r, r->state == S_TRAILERS ? "RECV_ERROR" : "WEIRD_SERVER_REPLY",
                        "a CR or NUL inside a header line");
        if (head_line(r, r->line, len) < 0)
            return -1;
    }
    return (long)take;
}

static int body_append(reader *r, const char *p, size_t n)
{
    if (r->body_len + n > r->max_body)
        return fail(r, "too_large", "the answer is larger than max_response_bytes");
    if (!grow_append(&r->body, &r->body_len, &r->body_cap, p, n))
        return fail(r, "OUT_OF_MEMORY", "out of memory");
    return 0;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = lower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Feeds n bytes; returns 0, or -1 once failed. */
static int feed(reader *r, const char *p, size_t n)
{
    if (n > 0)
        r->got_any = 1;
    while (n > 0) {
        long used = 0;
        switch (r->state) {
        case S_STATUS:
        case S_HEADERS:
        case S_TRAILERS:
            used = feed_line(r, p, n);
            if (used < 0)
                return -1;
            break;
        case S_BODY_LENGTH: {
            uint64_t left = (uint64_t)r->length - r->body_len;
            size_t take = n < left ? n : (size_t)left;
            if (r->body_cap == 0 && r->length <= 65536) {
                /* A small body of known size: one allocation (a larger one
                 * grows as its bytes come, so that a server cannot make
                 * the reader reserve what it never sends). */
                r->body = (char *)malloc((size_t)r->length);
                if (!r->body)
                    return fail(r, "OUT_OF_MEMORY", "out of memory");
                r->body_cap = (size_t)r->length;
            }
            if (body_append(r, p, take) < 0)
                return -1;
            used = (long)take;
            if (r->body_len == (size_t)r->length)
                r->state = S_DONE;
            break;
        }
        case S_BODY_CLOSE:
            if (body_append(r, p, n) < 0)
                return -1;
            used = (long)n;
            break;
        case S_CHUNK_SIZE: {
            int v = hexval((unsigned char)*p);
            if (v >= 0) {
                if (++r->digits > CHUNK_DIGITS_MAX || (r->chunk_left >> 59) != 0)
                    return fail(r, "RECV_ERROR", "a chunk size of more than 63 bits");
                r->chunk_left = r->chunk_left * 16 + (uint64_t)v;
            } else if (r->digits == 0) {
                return fail(r, "RECV_ERROR", "a chunk without a hex size");
            } else {
                r->state = S_CHUNK_EXT;
                continue;
            }
            used = 1;
            break;
        }
        case S_CHUNK_EXT: {
            const char *lf = (const char *)memchr(p, '\n', n);
            if (!lf) {
                used = (long)n;
                break;
            }
            used = (long)(lf - p) + 1;
            if (r->chunk_left == 0) {
                r->state = S_TRAILERS;
                r->head_bytes = 0;
            } else if (r->chunk_left > r->max_body - r->body_len) {
                return fail(r, "too_large", "the answer is larger than max_response_bytes");
            } else {
                r->state = S_CHUNK_DATA;
            }
            break;
        }
        case S_CHUNK_DATA: {
            size_t take = n < r->chunk_left ? n : (size_t)r->chunk_left;
            if (body_append(r, p, take) < 0)
                return -1;
            r->chunk_left -= take;
            used = (long)take;
            if (r->chunk_left == 0)
                r->state = S_CHUNK_CR;
            break;
        }
        case S_CHUNK_CR:
            if (*p == '\n') {
                r->state = S_CHUNK_SIZE;
                r->digits = 0;
            } else if (*p == '\r') {
                r->state = S_CHUNK_LF;
            } else {
                return fail(r, "RECV_ERROR", "a chunk not followed by CRLF");
            }
            used = 1;
            break;
        case S_CHUNK_LF:
            if (*p == '\r') { /* more CRs before the LF: libcurl takes them */
                used = 1;
                break;
            }
            if (*p != '\n')
                return fail(r, "RECV_ERROR", "a chunk not followed by CRLF");
            r->state = S_CHUNK_SIZE;
            r->digits = 0;
            used = 1;
            break;
        case S_DONE:
            r->excess = 1;
            return 0;
        default:
            return -1;
        }
        p += used;
        n -= (size_t)used;
    }
    return 0;
}

/* Pushes the outcome of a feed or of the end: "more", "done", or nil, the
 * libcurl name ("too_large" for a body over the cap) and why. */
static int push_state(lua_State *L, reader *r)
{
    if (r->state == S_FAILED) {
        lua_pushnil(L);
        lua_pushstring(L, r->code);
        lua_pushstring(L, r->why);
        return 3;
    }
    if (r->state == S_DONE)
        lua_pushliteral(L, "done");
    else
        lua_pushliteral(L, "more");
    return 1;
}

/***
 * A reader of one HTTP/1.x response.
 * @function http_reader
 * @int max_body the largest body taken (a larger one fails as "too_large")
 * @bool[opt] head_only the answer to a CONNECT: the head only
 * @treturn HttpReader the reader
 */
static int http_reader_new(lua_State *L)
{
    lua_Number max = luaL_checknumber(L, 1);
    int head_only = lua_toboolean(L, 2);
    reader *r;
    if (!(max >= 0) || max > 1099511627776.0)
        return luaL_argerror(L, 1, "max_body must be from 0 to 2^40");
    r = (reader *)lua_newuserdata(L, sizeof(reader));
    memset(r, 0, sizeof(*r));
    r->max_body = max > (lua_Number)SIZE_MAX ? SIZE_MAX : (size_t)max;
    r->head_only = head_only;
    r->state = S_STATUS;
    luaL_setmetatable(L, ALIOCR_HTTP_READER);
    return 1;
}

/***
 * Takes the next bytes of the answer.
 * @function HttpReader:feed
 * @string data the bytes
 * @treturn[1] string `"more"` (more bytes are needed) or `"done"`
 * @treturn[2] nil
 * @treturn[2] string libcurl's name of the failure, or `"too_large"`
 * @treturn[2] string why
 */
static int reader_feed(lua_State *L)
{
    reader *r = check_reader(L);
    size_t n;
    const char *p = luaL_checklstring(L, 2, &n);
    if (r->state != S_FAILED)
        feed(r, p, n);
    return push_state(L, r);
}

/***
 * The connection closed: the end of a body read up to it, or a failure.
 * @function HttpReader:eof
 * @treturn[1] string `"done"`
 * @treturn[2] nil
 * @treturn[2] string `GOT_NOTHING` (not a byte came), `PARTIAL_FILE` (the body
 *   was cut short) or `RECV_ERROR` (the head was)
 * @treturn[2] string why
 */
static int reader_eof(lua_State *L)
{
    reader *r = check_reader(L);
    if (r->state == S_BODY_CLOSE) {
        r->state = S_DONE;
        r->close = 1;
    } else if (r->state != S_DONE && r->state != S_FAILED) {
        if (!r->got_any)
            fail(r, "GOT_NOTHING", "empty reply from server");
        else if (r->head_done)
            fail(r, "PARTIAL_FILE", "the answer was cut short");
        else
            fail(r, "RECV_ERROR", "the connection closed in the middle of the head");
    }
    return push_state(L, r);
}

/***
 * The answer's status, once its status line arrived (before that: nil), and
 * its headers, once they all did (before that: an empty table). Header
 * names are lower-cased; repeated ones are joined with ", ".
 * @function HttpReader:head
 * @treturn int the status
 * @treturn table the headers
 */
static int reader_head(lua_State *L)
{
    reader *r = check_reader(L);
    size_t i = 0;
    if (r->status == 0) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushinteger(L, r->status);
    lua_newtable(L);
    if (!r->head_done)
        return 2;
    while (i < r->head_len) {
        const char *line = r->head + i;
        const char *end = (const char *)memchr(line, '\n', r->head_len - i);
        const char *colon = (const char *)memchr(line, ':', (size_t)(end - line));
        size_t k, nlen = (size_t)(colon - line);
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        for (k = 0; k < nlen; k++)
            luaL_addchar(&b, (char)lower((unsigned char)line[k]));
        luaL_pushresult(&b);                 /* name */
        lua_pushvalue(L, -1);
        lua_rawget(L, -3);                   /* the value so far */
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            lua_pushlstring(L, colon + 1, (size_t)(end - colon - 1));
        } else {
            lua_pushliteral(L, ", ");
            lua_pushlstring(L, colon + 1, (size_t)(end - colon - 1));
            lua_concat(L, 3);
        }
        lua_rawset(L, -3);
        i = (size_t)(end - r->head) + 1;
    }
    return 2;
}

/***
 * The body so far (all of it once done).
 * @function HttpReader:body
 * @treturn string the body
 */
static int reader_body(lua_State *L)
{
    reader *r = check_reader(L);
    lua_pushlstring(L, r->body ? r->body : "", r->body_len);
    return 1;
}

/***
 * Whether any byte of the answer arrived.
 * @function HttpReader:got_any
 * @treturn boolean
 */
static int reader_got_any(lua_State *L)
{
    lua_pushboolean(L, check_reader(L)->got_any);
    return 1;
}

/***
 * Whether the connection may carry another request once the answer is done
 * (RFC 9112, 9.3): framed by a length or by chunks, nothing after it,
 * HTTP/1.1 without `Connection: close` or HTTP/1.0 with
 * `Connection: keep-alive`, and no Transfer-Encoding next to a
 * Content-Length (RFC 9112, 6.3).
 * @function HttpReader:keepalive
 * @treturn boolean
 */
static int reader_keepalive(lua_State *L)
{
    reader *r = check_reader(L);
    int ok = r->state == S_DONE && !r->excess && !r->close && !(r->chunked && r->has_length) &&
             (r->minor >= 1 || r->keep);
    lua_pushboolean(L, ok);
    return 1;
}

static int reader_gc(lua_State *L)
{
    reader *r = check_reader(L);
    free(r->line);
    free(r->head);
    free(r->body);
    r->line = r->head = r->body = NULL;
    r->line_cap = r->head_cap = r->body_cap = 0;
    r->line_len = r->head_len = r->body_len = 0;
    r->state = S_FAILED;
    r->code = "RECV_ERROR";
    r->why = "the reader was freed";
    return 0;
}

void aliocr_http_open(lua_State *L)
{
    static const luaL_Reg meta[] = {{"__gc", reader_gc}, {NULL, NULL}};
    static const luaL_Reg methods[] = {
        {"feed", reader_feed}, {"eof", reader_eof}, {"head", reader_head}, {"body", reader_body},
        {"got_any", reader_got_any}, {"keepalive", reader_keepalive}, {"free", reader_gc}, {NULL, NULL}};
    aliocr_new_class(L, ALIOCR_HTTP_READER, meta, methods, "http_reader", http_reader_new);
}
