/*
 * The parser of aliocr.core.http_reader (http.c): a strict reader of one
 * HTTP/1.x response, for the
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

#include "http.h"

/* libcurl's limits: one header line at most 100 KiB (CURL_MAX_HTTP_HEADER),
 * all the header lines of a response at most 300 KiB. */
#define LINE_MAX_BYTES ((size_t)100 * 1024)
#define HEAD_MAX ((size_t)300 * 1024)
/* At most 16 hex digits in a chunk size (a 64-bit number). */
#define CHUNK_DIGITS_MAX 16

static int fail(aliocr_http *r, const char *code, const char *why)
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
static void each_token(aliocr_http *r, const char *v, size_t n, void (*each)(aliocr_http *, const char *, size_t))
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

static void connection_token(aliocr_http *r, const char *t, size_t n)
{
    if (word_is(t, n, "close"))
        r->close = 1;
    else if (word_is(t, n, "keep-alive"))
        r->keep = 1;
}

/* Transfer-Encoding: the framing is chunked when chunked comes last. */
static void coding_token(aliocr_http *r, const char *t, size_t n)
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
static int content_length(aliocr_http *r, const char *v, size_t n)
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
static int header_line(aliocr_http *r, const char *p, size_t n)
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
    if (0 != aliocr_buffer_append(&r->head, p, i) ||
        0 != aliocr_buffer_append(&r->head, ":", 1) ||
        0 != aliocr_buffer_append(&r->head, p + vs, ve - vs) ||
        0 != aliocr_buffer_append(&r->head, "\n", 1))
        return fail(r, "OUT_OF_MEMORY", "out of memory");
    return 0;
}

/* A status line "HTTP/<d>.<d> <ddd>[ reason]". */
static int status_line(aliocr_http *r, const char *p, size_t n)
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
static int end_of_head(aliocr_http *r)
{
    if (r->status < 200 && r->status != 101) {
        /* An interim answer: the final one follows. */
        r->status = 0;
        r->head.len = 0;
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
static int head_line(aliocr_http *r, const char *p, size_t n)
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
        if (r->head.len == 0)
            return fail(r, "WEIRD_SERVER_REPLY", "a continuation line before any header");
        while (i < n && (p[i] == ' ' || p[i] == '\t'))
            i++;
        r->head.len--; /* its "\n" */
        if (0 != aliocr_buffer_append(&r->head, " ", 1) ||
            0 != aliocr_buffer_append(&r->head, p + i, n - i) ||
            0 != aliocr_buffer_append(&r->head, "\n", 1))
            return fail(r, "OUT_OF_MEMORY", "out of memory");
        return 0;
    }
    return header_line(r, p, n);
}

/* Reads head bytes from p (n of them) up to the end of a line; returns the
 * bytes used, or -1 on a failure. */
static long feed_line(aliocr_http *r, const char *p, size_t n)
{
    const char *lf = (const char *)memchr(p, '\n', n);
    size_t take = lf ? (size_t)(lf - p) + 1 : n;
    size_t limit = r->state == S_TRAILERS ? LINE_MAX_BYTES : HEAD_MAX;
    if (r->line.len + take > LINE_MAX_BYTES || r->head_bytes + take > limit)
        return fail(r, "OUT_OF_MEMORY", r->line.len + take > LINE_MAX_BYTES ?
                    "a header line longer than 100 KiB" : "response headers larger than 300 KiB");
    r->head_bytes += take;
    if (0 != aliocr_buffer_append(&r->line, p, take))
        return fail(r, "OUT_OF_MEMORY", "out of memory");
    if (lf) {
        size_t len = r->line.len - 1;
        if (len > 0 && r->line.data[len - 1] == '\r')
            len--;
        r->line.len = 0;
        if (memchr(r->line.data, '\r', len) || memchr(r->line.data, '\0', len))
            return fail(r, r->state == S_TRAILERS ? "RECV_ERROR" : "WEIRD_SERVER_REPLY",
                        "a CR or NUL inside a header line");
        if (head_line(r, r->line.data, len) < 0)
            return -1;
    }
    return (long)take;
}

static int body_append(aliocr_http *r, const char *p, size_t n)
{
    if (r->body.len + n > r->max_body)
        return fail(r, "too_large", "the answer is larger than max_response_bytes");
    if (0 != aliocr_buffer_append(&r->body, p, n))
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

int aliocr_http_feed(aliocr_http *r, const char *p, size_t n)
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
            uint64_t left = (uint64_t)r->length - r->body.len;
            size_t take = n < left ? n : (size_t)left;
            if (r->body.cap == 0 && r->length <= 65536) {
                /* A small body of known size: one allocation (a larger one
                 * grows as its bytes come, so that a server cannot make
                 * the reader reserve what it never sends). */
                r->body.data = (char *)malloc((size_t)r->length + 1);
                if (!r->body.data)
                    return fail(r, "OUT_OF_MEMORY", "out of memory");
                r->body.cap = (size_t)r->length + 1;
            }
            if (body_append(r, p, take) < 0)
                return -1;
            used = (long)take;
            if (r->body.len == (size_t)r->length)
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
            } else if (r->chunk_left > r->max_body - r->body.len) {
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


void aliocr_http_init(aliocr_http *r, size_t max_body, int head_only)
{
    memset(r, 0, sizeof *r);
    r->max_body = max_body;
    r->head_only = head_only;
    r->state = S_STATUS;
}

void aliocr_http_eof(aliocr_http *r)
{
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
}

/* RFC 9112, 9.3: framed by a length or by chunks, nothing after it,
 * HTTP/1.1 without `Connection: close` or HTTP/1.0 with
 * `Connection: keep-alive`, and no Transfer-Encoding next to a
 * Content-Length (RFC 9112, 6.3). */
int aliocr_http_keepalive(const aliocr_http *r)
{
    return r->state == S_DONE && !r->excess && !r->close && !(r->chunked && r->has_length) &&
           (r->minor >= 1 || r->keep);
}

void aliocr_http_free(aliocr_http *r)
{
    aliocr_buffer_free(&r->line, 0);
    aliocr_buffer_free(&r->head, 0);
    aliocr_buffer_free(&r->body, 0);
    r->state = S_FAILED;
    r->code = "RECV_ERROR";
    r->why = "the reader was freed";
}
