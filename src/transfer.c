/*
 * One transfer of the libcurl engine (engine.c): a job, its easy handle set
 * up once with the configuration's constant options and kept for the next
 * call with its buffers, libcurl's callbacks (which only append to C
 * buffers: no Lua, nothing that can raise), the request of each call
 * (request.c) and the response of each transfer (response.c).
 *
 * libcurl floor: see engine.h.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine.h"

#define BUFFER_KEEP ((size_t)256 * 1024)  /* a kept job keeps buffers up to this size */

#if LIBCURL_VERSION_NUM >= 0x075000 /* 7.80.0 */
#define HAVE_PREREQ 1
#endif

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    job *j = ud;
    size_t bytes = size * n;
    if ((int64_t)(j->body.len + bytes) > j->max_bytes) {
        j->too_large = 1;      /* abandon the body rather than buffer it */
        return 0;
    }
    return aliocr_buffer_append(&j->body, p, bytes) == 0 ? bytes : 0;
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
            j->too_large_declared = length > j->max_bytes;
        else
            j->too_large_declared = 0;
    }
    if (aliocr_buffer_append(&j->head, p, bytes) != 0)
        return 0;
    /* At the end of the headers (all of them kept, X-Ca-Request-Id too), an
     * answer too large by its own account is abandoned before its body. */
    if (j->too_large_declared && (bytes == 2 || bytes == 1) && (p[0] == '\r' || p[0] == '\n')) {
        j->too_large = 1;
        return 0;
    }
    return bytes;
}

#ifdef HAVE_PREREQ
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

#endif

/* Whether any of the request may have gone out: libcurl began it (on_prereq
 * ran: after the connect, a proxy's CONNECT tunnel included) and wrote some
 * of it, or began it twice. The bytes of a CONNECT to a proxy alone never
 * reach the gateway. Without on_prereq: whether libcurl wrote any of it. */
int aliocr_job_sent(const job *j)
{
    curl_off_t size = 0;
#ifdef HAVE_PREREQ
    if (j->requests > 1)
        return 1;
    if (j->requests == 0)
        return 0;
#endif
    curl_easy_getinfo(j->easy, CURLINFO_REQUEST_SIZE, &size);
    return size > 0;
}

void aliocr_job_destroy(job *j)
{
    engine *e = j->engine;
    if (j->upload)
        (void)fclose(j->upload); /* read only: nothing to lose */
    if (j->easy)
        curl_easy_cleanup(j->easy);
    /* The engine closed while this job was out of its lists: the share
     * handle waited for its last user (see engine_close). */
    if (e && e->closed)
        aliocr_share_free(e);
    curl_slist_free_all(j->own_headers);
    aliocr_buffer_free(&j->body, 0);
    aliocr_buffer_free(&j->head, 0);
    aliocr_request_free(&j->req);
    free(j);
}

/* The share handle's locks: one per kind of data, as libcurl asks (its
 * handles are made and cleaned up on the caller's thread while the worker
 * drives others). */
static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *ud)
{
    engine *e = ud;
    (void)h;
    (void)access;
    if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
        pthread_mutex_lock(&e->share_mu[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *ud)
{
    engine *e = ud;
    (void)h;
    if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
        pthread_mutex_unlock(&e->share_mu[data]);
}

CURLSH *aliocr_share_new(engine *e)
{
    CURLSH *sh;
    int k;
    for (k = 0; k < CURL_LOCK_DATA_LAST; k++)
        if (pthread_mutex_init(&e->share_mu[k], NULL) != 0)
            break;
    if (k < CURL_LOCK_DATA_LAST || !(sh = curl_share_init())) {
        while (k-- > 0)
            pthread_mutex_destroy(&e->share_mu[k]);
        return NULL;
    }
    curl_share_setopt(sh, CURLSHOPT_LOCKFUNC, share_lock);
    curl_share_setopt(sh, CURLSHOPT_UNLOCKFUNC, share_unlock);
    curl_share_setopt(sh, CURLSHOPT_USERDATA, (void *)e);
    curl_share_setopt(sh, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    return sh;
}

void aliocr_share_free(engine *e)
{
    int k;
    if (!e->share || curl_share_cleanup(e->share) != CURLSHE_OK)
        return; /* still in use: by a job a method holds (engine_close) */
    e->share = NULL;
    for (k = 0; k < CURL_LOCK_DATA_LAST; k++)
        pthread_mutex_destroy(&e->share_mu[k]);
}

/* Without buffers grown large by one huge answer. */
void aliocr_job_recycle(engine *e, job *j)
{
    curl_slist_free_all(j->own_headers);
    j->own_headers = NULL;
    if (j->raw) { /* its easy handle has a method and a body of its own */
        aliocr_job_destroy(j);
        return;
    }
#ifndef HAVE_PREREQ
    /* Without on_prereq, whether a job's request went out is told by
     * CURLINFO_REQUEST_SIZE alone, which a kept handle carries over from its
     * last transfer until libcurl starts the next: no job is kept. */
    aliocr_job_destroy(j);
    return;
#endif
    if (e->closed || e->nidle >= IDLE_MAX) {
        aliocr_job_destroy(j);
        return;
    }
    if (j->body.cap > BUFFER_KEEP)
        aliocr_buffer_free(&j->body, 0);
    if (j->head.cap > BUFFER_KEEP)
        aliocr_buffer_free(&j->head, 0);
    j->next = NULL;
    e->idle[e->nidle++] = j;
}

/* The CA store from one file, read once and kept by the multi handle (its
 * CA cache, 24 hours): without a CA path, which libcurl reads again for
 * every connection (Debian's libcurl has both built in). The path is kept
 * when there is no file to read instead (no ca_file, and no bundle built
 * into libcurl), and with a libcurl that has no CA cache. */
static void set_ca_store(CURL *h, const aliocr_config *c, CURLcode *rc)
{
#if LIBCURL_VERSION_NUM >= 0x075700 /* 7.87.0: CURLOPT_CA_CACHE_TIMEOUT; CURLINFO_CAINFO is 7.84.0 */
    char *bundle = NULL;
    if (*rc != CURLE_OK)
        return;
    if (!c->ca_file && (curl_easy_getinfo(h, CURLINFO_CAINFO, &bundle) != CURLE_OK || !bundle))
        return;
    *rc = curl_easy_setopt(h, CURLOPT_CAPATH, (char *)NULL);
#else
    (void)h;
    (void)c;
    (void)rc;
#endif
}

job *aliocr_job_new(engine *e)
{
    const aliocr_config *c = e->config;
    CURLcode rc = CURLE_OK;
    job *j = calloc(1, sizeof *j);
    CURL *h = j ? curl_easy_init() : NULL;
    if (!h) {
        free(j);
        return NULL;
    }
    j->engine = e;
    j->easy = h;
#define SET(opt, val) do { if (rc == CURLE_OK) rc = curl_easy_setopt(h, opt, val); } while (0)
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
#if LIBCURL_VERSION_NUM >= 0x075700 /* 7.87.0 */
    /* A transfer ended while its name is being looked up (a timeout, a
     * cancel) does not wait for the resolver's thread to finish: the
     * worker's pass, and whoever waits for the wheel, would. */
    SET(CURLOPT_QUICK_EXIT, 1L);
#endif
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
#if LIBCURL_VERSION_NUM >= 0x074100
    /* libcurl counts a connection's idle time in whole seconds, and reuses
     * it while that count is not over the limit: one idle 1.9 s is "1" and
     * would be reused under a limit of 1. So the limit is one less: a
     * connection idle idle_timeout seconds or longer is not used again. */
    SET(CURLOPT_MAXAGE_CONN, e->idle_s - 1);
#endif
    SET(CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
    SET(CURLOPT_SSL_VERIFYPEER, c->verify ? 1L : 0L);
    SET(CURLOPT_SSL_VERIFYHOST, c->verify ? 2L : 0L);
    if (c->ca_file)
        SET(CURLOPT_CAINFO, c->ca_file);
    if (c->verify)
        set_ca_store(h, c, &rc);
    if (e->share)
        SET(CURLOPT_SHARE, e->share);
    if (c->proxy)
        SET(CURLOPT_PROXY, c->proxy);
    if (c->user_agent)
        SET(CURLOPT_USERAGENT, c->user_agent);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, (void *)j);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, (void *)j);
    SET(CURLOPT_ERRORBUFFER, j->errbuf);
#ifdef HAVE_PREREQ
    SET(CURLOPT_PREREQFUNCTION, on_prereq);
    SET(CURLOPT_PREREQDATA, (void *)j);
#else
    SET(CURLOPT_FORBID_REUSE, 1L);
#endif
#undef SET
    if (rc != CURLE_OK) {
        aliocr_job_destroy(j);
        return NULL;
    }
    return j;
}

/* The header list of a built request, with "Expect:" (no 100-continue
 * round trip); NULL when out of memory. */
static struct curl_slist *header_list(const aliocr_request *r)
{
    struct curl_slist *list = NULL, *next;
    int i;
    for (i = 0; i <= r->nheaders; i++) {
        next = curl_slist_append(list, i < r->nheaders ? aliocr_request_header(r, i) : "Expect:");
        if (!next) {
            curl_slist_free_all(list);
            return NULL;
        }
        list = next;
    }
    return list;
}

int aliocr_job_prepare(engine *e, job *j, const aliocr_call *call, long timeout_ms)
{
    struct curl_slist *headers;
    CURLcode rc = CURLE_OK;
    aliocr_call c = *call;
    /* AppCode mode: the same lines for every call of a method, made once. */
    c.no_headers = e->config->mode == ALIOCR_APPCODE && e->fixed[c.post] != NULL;
    if (aliocr_request_build(e->config, &c, &j->req) != 0)
        return -1;
    if (e->config->mode == ALIOCR_APPCODE) {
        if (!e->fixed[j->req.post] && !(e->fixed[j->req.post] = header_list(&j->req)))
            return -1;
        headers = e->fixed[j->req.post];
    } else {
        if (!(j->own_headers = header_list(&j->req)))
            return -1;
        headers = j->own_headers;
    }
    j->max_bytes = e->config->max_bytes;
    j->body.len = j->head.len = 0;
    j->too_large = j->too_large_declared = 0;
    j->requests = j->resend_refused = 0;
    j->errbuf[0] = '\0';
    j->result = CURLE_OK;
#define SET(opt, val) do { if (rc == CURLE_OK) rc = curl_easy_setopt(j->easy, opt, val); } while (0)
    /* What is as the last call left it is not set again (libcurl copies a
     * URL it is given: an interface URL is compared by its pointer, which
     * the configuration keeps). */
    if (!j->req.post || j->set_url != j->req.to) {
        SET(CURLOPT_URL, j->req.to);
        j->set_url = j->req.post && rc == CURLE_OK ? j->req.to : NULL;
    }
    if (j->set_headers != headers) {
        SET(CURLOPT_HTTPHEADER, headers);
        j->set_headers = rc == CURLE_OK ? headers : NULL;
    }
    if (j->set_timeout_ms != timeout_ms) {
        SET(CURLOPT_TIMEOUT_MS, timeout_ms);
        j->set_timeout_ms = rc == CURLE_OK ? timeout_ms : 0;
    }
    if (j->req.post) {
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)j->req.form.len);
        SET(CURLOPT_POSTFIELDS, j->req.form.data); /* the job keeps it until the transfer ends */
    } else {
        SET(CURLOPT_HTTPGET, 1L);
    }
#undef SET
    return rc == CURLE_OK ? 0 : -1;
}

/* A storage request's body: from its file, or from the bytes in form. No
 * more than the size declared is sent; a file that ends sooner ends the
 * transfer (libcurl: READ_ERROR... as it words it). */
static size_t on_read(char *p, size_t size, size_t n, void *ud)
{
    job *j = ud;
    size_t want = size * n, got;
    if ((int64_t)want > j->upload_left)
        want = (size_t)j->upload_left;
    if (want == 0)
        return 0;
    if (j->upload) {
        got = fread(p, 1, want, j->upload);
        if (got == 0)
            return CURL_READFUNC_ABORT; /* shorter than it was when checked */
    } else {
        memcpy(p, j->req.form.data + j->upload_at, want);
        j->upload_at += want;
        got = want;
    }
    j->upload_left -= (int64_t)got;
    return got;
}

int aliocr_job_prepare_raw(engine *e, job *j, const char *method, const char *url,
                           const char *const *headers, int nheaders, const char *body, size_t body_len,
                           const char *file, int64_t size, long timeout_ms)
{
    struct curl_slist *list = NULL, *next;
    CURLcode rc = CURLE_OK;
    int i, put = strcmp(method, "PUT") == 0;
    j->raw = 1;
    for (i = 0; i <= nheaders; i++) {
        next = curl_slist_append(list, i < nheaders ? headers[i] : "Expect:");
        if (!next) {
            curl_slist_free_all(list);
            return -1;
        }
        list = next;
    }
    j->own_headers = list;
    j->max_bytes = e->config->max_bytes;
    j->body.len = j->head.len = 0;
    j->errbuf[0] = '\0';
    j->result = CURLE_OK;
    j->upload_left = 0;
    j->upload_at = 0;
    if (file) {
        if (!(j->upload = fopen(file, "rb")))
            return -2;
        j->upload_left = size;
    } else if (body) {
        j->req.form.len = 0;
        if (body_len > 0 && aliocr_buffer_append(&j->req.form, body, body_len) != 0)
            return -1;
        j->upload_left = (int64_t)body_len;
    }
#define SET(opt, val) do { if (rc == CURLE_OK) rc = curl_easy_setopt(j->easy, opt, val); } while (0)
    SET(CURLOPT_URL, url);
    /* The path as signed: no dot segment removed. */
    SET(CURLOPT_PATH_AS_IS, 1L);
    SET(CURLOPT_HTTPHEADER, list);
    SET(CURLOPT_TIMEOUT_MS, timeout_ms);
    if (put) {
        SET(CURLOPT_UPLOAD, 1L);
        SET(CURLOPT_READFUNCTION, on_read);
        SET(CURLOPT_READDATA, (void *)j);
        SET(CURLOPT_INFILESIZE_LARGE, (curl_off_t)j->upload_left);
    } else if (strcmp(method, "HEAD") == 0) {
        SET(CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "GET") == 0) {
        SET(CURLOPT_HTTPGET, 1L);
    } else {
        SET(CURLOPT_CUSTOMREQUEST, method);
    }
#undef SET
    return rc == CURLE_OK ? 0 : -1;
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
#if LIBCURL_VERSION_NUM >= 0x074400 /* 7.68.0 */
    case CURLE_HTTP3: return "HTTP3";
#endif
    case CURLE_ABORTED_BY_CALLBACK: return "ABORTED_BY_CALLBACK";
    case CURLE_READ_ERROR: return "READ_ERROR";
    case CURLE_UPLOAD_FAILED: return "UPLOAD_FAILED";
    default: return NULL;
    }
}


/* Pushes the response table of a finished job (see response.c). */
void aliocr_job_push_response(lua_State *L, int decode, job *j)
{
    static const char aborted[] = "operation aborted by pre-request callback";
    aliocr_answer a;
    long status = 0;
    char name[32];
    memset(&a, 0, sizeof a);
    curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &status);
    a.id = j->id;
    a.status = status;
    a.sent = aliocr_job_sent(j);
    a.too_large = j->too_large;
    a.head = j->head.data;
    a.head_len = j->head.len;
    a.body = j->body.data;
    a.body_len = j->body.len;
    a.all_headers = j->raw;
    if (j->result != CURLE_OK && j->resend_refused) {
        /* See on_prereq: the error buffer has the first attempt's failure,
         * if libcurl worded one. */
        a.resend_refused = 1;
        if (strncmp(j->errbuf, aborted, sizeof aborted - 1) != 0)
            a.message = j->errbuf;
    } else if (j->result != CURLE_OK && !j->too_large) {
        a.error = curl_code_name(j->result);
        if (!a.error)
            a.error = snprintf(name, sizeof name, "CURLE_%d", (int)j->result) > 0 ? name : "CURLE_UNKNOWN";
        a.message = j->errbuf[0] ? j->errbuf : curl_easy_strerror(j->result);
    }
    aliocr_push_response(L, j->raw ? 0 : decode, &a);
}

