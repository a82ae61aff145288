/*
 * The libcurl transport's types, shared by engine.c (the engine: its multi
 * handle, its lists, its methods) and transfer.c (one transfer: its easy
 * handle, libcurl's callbacks, its request and its response).
 *
 * libcurl floor: 7.58.0. Newer options are used when built against a libcurl
 * that has them, with these fallbacks otherwise:
 * - CURLOPT_PREREQFUNCTION (7.80.0) refuses libcurl's own resend of a
 *   request that went out on a kept-alive connection that then died (the
 *   gateway may have billed it). Without it, connections are not reused
 *   (CURLOPT_FORBID_REUSE), so that there is never such a resend, and no
 *   job is kept (CURLINFO_REQUEST_SIZE alone then tells whether a request
 *   went out, and a kept handle would carry its last transfer's).
 * - CURLOPT_MAXAGE_CONN (7.65.0), the client's idle_timeout: without it
 *   libcurl's own limit applies (118 s).
 * - curl_multi_poll (7.66.0): curl_multi_wait otherwise, with a sleep when
 *   libcurl has no socket to wait on (the engine is never woken up from
 *   another thread, so nothing else differs).
 * Only the libcurl of Debian 12 (7.88.1) is tested.
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

/* Driving (drive.c). */
/* Waits up to wait_ms for activity on the transfers' sockets. */
CURLMcode aliocr_wait_for_activity(CURLM *multi, int wait_ms);
/* Takes j off a list linked by next. */
void aliocr_unlink_job(job **list, job *j);
/* Takes j off the engine's list of finished jobs. */
void aliocr_unlink_done(engine *e, job *j);
/* Moves finished transfers from the active list to the done list. */
void aliocr_harvest(engine *e);
/* Whether `target` (with none: any transfer) has finished. */
int aliocr_is_done(const engine *e, const job *target);
/* One pass over the transfers; with wait_ms, waits for activity unless
 * `target` (or any) has finished, and makes another. */
CURLMcode aliocr_drive(engine *e, int wait_ms, job *target);
/* Drives until j has finished and takes it off the lists. */
CURLMcode aliocr_finish_job(engine *e, job *j);
/* Gives the detached jobs `list` back to the engine, ahead of the finished
 * ones (frees them when the engine was closed). */
void aliocr_give_back(engine *e, job *list);

/* Jobs (transfer.c). */
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
