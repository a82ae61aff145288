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

void aliocr_buffer_free(aliocr_buffer *b, int wipe)
{
    if (b->data && wipe)
        OPENSSL_cleanse(b->data, b->cap);
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
