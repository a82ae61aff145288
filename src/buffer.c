/*
 * Growable byte buffers: what libcurl's callbacks append to, what requests
 * are built in, what the HTTP reader keeps. No Lua here.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "aliocr.h"

int aliocr_buffer_append(aliocr_buffer *b, const char *p, size_t n)
{
    if (n + 1 > (size_t)-1 - b->len)
        return -1;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        char *d;
        while (cap < b->len + n + 1)
            cap = cap > (size_t)-1 / 2 ? b->len + n + 1 : cap * 2;
        d = realloc(b->data, cap);
        if (!d)
            return -1;
        b->data = d;
        b->cap = cap;
    }
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int aliocr_buffer_puts(aliocr_buffer *b, const char *s)
{
    return aliocr_buffer_append(b, s, strlen(s));
}

int aliocr_buffer_escape(aliocr_buffer *b, const char *s, size_t n, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t i, start = 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[3];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
            c == '.' || c == '_' || c == '~' || (keep_slash && c == '/'))
            continue;
        esc[0] = '%';
        esc[1] = hex[c >> 4];
        esc[2] = hex[c & 15];
        if (aliocr_buffer_append(b, s + start, i - start) != 0 || aliocr_buffer_append(b, esc, 3) != 0)
            return -1;
        start = i + 1;
    }
    return aliocr_buffer_append(b, s + start, n - start);
}

void aliocr_buffer_free(aliocr_buffer *b, int wipe)
{
    if (b->data && wipe)
        OPENSSL_cleanse(b->data, b->cap);
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
