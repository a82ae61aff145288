/*
 * The libcurl transport's types, shared by engine.c (the engine: its multi
 * handle, its lists, its methods) and transfer.c (one transfer: its easy
 * handle, libcurl's callbacks, its request and its response).
 */
#ifndef ALIOCR_ENGINE_H
#define ALIOCR_ENGINE_H

#include <curl/curl.h>

#include "aliocr.h"

#define IDLE_MAX 64                       /* jobs kept for reuse, each with its easy handle */

struct engine;

typedef struct job {
    struct job *next;
    struct engine *engine;
    CURL *easy;
    lua_Integer id;
    aliocr_buffer body, head;
    aliocr_request req;
    struct curl_slist *own_headers;    /* signature mode: this request's header list */
    char errbuf[CURL_ERROR_SIZE];
    int too_large;
    int too_large_declared;    /* a Content-Length over max_bytes was seen */
    int requests;              /* requests libcurl began for this transfer */
    int resend_refused;        /* a resend after the request went out was stopped */
    CURLcode result;
    /* What the easy handle was last given, not to give it again. */
    const char *set_url;       /* an interface URL (a GET's URL is always set) */
    struct curl_slist *set_headers;
    long set_timeout_ms;
} job;

typedef struct engine {
    CURLM *multi;
    aliocr_config *config;     /* kept alive by config_ref */
    int config_ref, decode_ref; /* registry: the configuration, the JSON decoder */
    job *active;               /* transfers under way */
    job *done, *done_tail;     /* finished, in the order they finished */
    job *idle[IDLE_MAX];       /* jobs for the next calls */
    int nidle;
    lua_Integer next_id;
    struct curl_slist *fixed[2]; /* AppCode mode: the header list of a GET, of a POST */
    long idle_s;               /* a connection idle longer is not reused */
    int closed;
} engine;

/* A new job, its easy handle set up with the configuration's constant
 * options; NULL when out of memory. */
job *aliocr_job_new(engine *e);
/* Sets up job j for the call: its request built, the options that vary set.
 * 0, or -1 when out of memory. */
int aliocr_job_prepare(engine *e, job *j, const aliocr_call *call, long timeout_ms);
/* A job done with: kept for the next call (unless the engine is closed or
 * keeps enough), or freed. */
void aliocr_job_recycle(engine *e, job *j);
void aliocr_job_destroy(job *j);
/* Whether any of the job's request may have gone out. */
int aliocr_job_sent(const job *j);
/* Pushes the response table of a finished job (see response.c), decoding
 * with the decoder at stack index `decode`. */
void aliocr_job_push_response(lua_State *L, int decode, job *j);

#endif
