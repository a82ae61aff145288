/*
 * The HTTP/1.x response reader of the nginx transport: the parser
 * (http_parser.c, no Lua) and its Lua binding (http.c, aliocr.HttpReader).
 */
#ifndef ALIOCR_HTTP_H
#define ALIOCR_HTTP_H

#include <stdint.h>

#include "aliocr.h"

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

typedef struct aliocr_http {
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
    aliocr_buffer line;   /* the line being read */
    aliocr_buffer head;   /* the final answer's header lines, each "name:value\n", names as sent */
    aliocr_buffer body;
    const char *code;     /* libcurl's name of the failure */
    const char *why;
} aliocr_http;


/* A reader of one answer whose body may be up to max_body bytes; with
 * head_only, the answer to a CONNECT (no body). */
void aliocr_http_init(aliocr_http *r, size_t max_body, int head_only);
/* Feeds n bytes; returns 0, or -1 once failed (r->code, r->why say why). */
int aliocr_http_feed(aliocr_http *r, const char *p, size_t n);
/* The connection closed: the end of a body read up to it, or a failure. */
void aliocr_http_eof(aliocr_http *r);
/* Whether the connection may carry another request (see http.c). */
int aliocr_http_keepalive(const aliocr_http *r);
/* Frees the buffers; the reader fails from then on. */
void aliocr_http_free(aliocr_http *r);

#endif
