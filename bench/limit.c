/*
 * The limit for any libcurl client: the same calls as aliocr's, on the wire
 * and in libcurl (POST of url=<image> as a form, APPCODE auth, the same
 * headers and options, the headers and the body kept in memory, since a
 * client needs X-Ca-Request-Id and the JSON), made by C with one reused easy
 * handle and nothing else: no Lua, no JSON decoding, no result.
 *
 *   ALIOCR_APPCODE=<code> [BENCH_CA_FILE=<file>] limit <interface URL> <image URL> <calls>
 *
 * BENCH_CA_FILE: the CA file for an https URL (CURLOPT_CAINFO), as aliocr's
 * ca_file.
 *
 * Prints "calls <n> seconds <s>" and exits 0 when every answer was a 200.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

typedef struct {
    char *data;
    size_t len, cap;
} buffer;

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    buffer *b = ud;
    size_t bytes = size * n;
    if (b->len + bytes > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        char *d;
        while (cap < b->len + bytes)
            cap *= 2;
        d = realloc(b->data, cap);
        if (!d)
            return 0;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, bytes);
    b->len += bytes;
    return bytes;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    return on_body(p, size, n, ud);
}

/* As aliocr's engine: refuse libcurl's resend of a request that already went
 * out (one call, one request on the wire). */
typedef struct {
    CURL *easy;
    long requests;
} transfer;

static int on_prereq(void *ud, char *primary_ip, char *local_ip, int primary_port, int local_port)
{
    transfer *t = ud;
    curl_off_t sent = 0;
    (void)primary_ip;
    (void)local_ip;
    (void)primary_port;
    (void)local_port;
    if (t->requests++ == 0)
        return CURL_PREREQFUNC_OK;
    curl_easy_getinfo(t->easy, CURLINFO_REQUEST_SIZE, &sent);
    return sent > 0 ? CURL_PREREQFUNC_ABORT : CURL_PREREQFUNC_OK;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    const char *appcode = getenv("ALIOCR_APPCODE");
    const char *ca_file = getenv("BENCH_CA_FILE");
    struct curl_slist *headers = NULL;
    char auth[512], *escaped, *form;
    buffer body = { NULL, 0, 0 }, head = { NULL, 0, 0 };
    char ua[64];
    long calls, i, status = 0;
    double start;
    CURL *easy;
    transfer t;

    if (argc != 4 || !appcode || (calls = atol(argv[3])) <= 0) {
        fprintf(stderr, "usage: ALIOCR_APPCODE=<code> limit <interface URL> <image URL> <calls>\n");
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    easy = curl_easy_init();
    escaped = curl_easy_escape(easy, argv[2], 0);
    form = malloc(strlen(escaped) + 5);
    if (!easy || !escaped || !form)
        return 1;
    strcpy(form, "url=");
    strcat(form, escaped);
    snprintf(auth, sizeof auth, "Authorization: APPCODE %s", appcode);
    headers = curl_slist_append(headers, auth);
    headers = curl_slist_append(headers, "Accept: application/json");
    headers = curl_slist_append(headers, "Content-Type: application/x-www-form-urlencoded; charset=UTF-8");
    headers = curl_slist_append(headers, "Expect:");
    snprintf(ua, sizeof ua, "aliocr/0.1.0 libcurl/%s", curl_version_info(CURLVERSION_NOW)->version);

    curl_easy_setopt(easy, CURLOPT_URL, argv[1]);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, form);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, &head);
    curl_easy_setopt(easy, CURLOPT_USERAGENT, ua);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
    curl_easy_setopt(easy, CURLOPT_MAXAGE_CONN, 10L);
    if (ca_file && *ca_file)
        curl_easy_setopt(easy, CURLOPT_CAINFO, ca_file);
    t.easy = easy;
    curl_easy_setopt(easy, CURLOPT_PREREQFUNCTION, on_prereq);
    curl_easy_setopt(easy, CURLOPT_PREREQDATA, (void *)&t);

    start = now();
    for (i = 0; i < calls; i++) {
        CURLcode rc;
        body.len = head.len = 0;
        t.requests = 0;
        rc = curl_easy_perform(easy);
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
        if (rc != CURLE_OK || status != 200) {
            fprintf(stderr, "limit: call %ld: %s, HTTP %ld\n", i + 1, curl_easy_strerror(rc), status);
            return 1;
        }
    }
    printf("calls %ld seconds %.6f\n", calls, now() - start);

    curl_slist_free_all(headers);
    curl_free(escaped);
    free(form);
    free(body.data);
    free(head.data);
    curl_easy_cleanup(easy);
    curl_global_cleanup();
    return 0;
}
