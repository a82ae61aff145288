/*
 * The libcurl transport's types, shared by engine.c (its Lua methods),
 * drive.c (the multi handle's driving, and who may drive it), worker.c (the
 * worker thread and the readiness descriptor) and transfer.c (one transfer:
 * its easy handle, libcurl's callbacks, its request and its response).
 *
 * Threads. An engine has one multi handle, driven by one thread at a time:
 * whoever holds the wheel (drive.c). Jobs added with `add` are driven by
 * the engine's worker thread (worker.c), started at the first `add`, so
 * that name lookups, connects, TLS handshakes and transfers never run on the
 * caller's thread; `run` only takes finished jobs. A blocking `perform`
 * takes the wheel itself and drives on the caller's thread (no hand-over to
 * pay per call); `cancel` takes it for the moment of taking a transfer out.
 * The worker never touches Lua, and no Lua runs while the wheel or the mutex
 * is held. What each thread may touch:
 * - under the mutex `mu`: the lists `incoming` and `done`, the counts, the
 *   flags, the alarm, the readiness pipe's state;
 * - with the wheel: the multi handle, the list `active`, the easy handles of
 *   the jobs on it (libcurl's callbacks run there);
 * - the caller's thread only: the pool of idle jobs, the jobs it took off
 *   `done` or `incoming` (their easy handles are out of the multi handle),
 *   the Lua references.
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
 * - curl_multi_poll (7.66.0) and curl_multi_wakeup (7.68.0): without them
 *   the worker waits in slices of WAKE_SLICE_MS, so that it sees a new job
 *   or a caller waiting for the wheel that late at the most.
 * - CURLINFO_CAINFO (7.84.0) tells whether libcurl has a CA bundle built in;
 *   CURLOPT_CA_CACHE_TIMEOUT (7.87.0) keeps the store read from it. Without
 *   them, libcurl's own CA settings apply (a CA path is read again for every
 *   connection).
 * Only the libcurl of Debian 12 (7.88.1) is tested.
 */
#ifndef ALIOCR_ENGINE_H
#define ALIOCR_ENGINE_H

#include <pthread.h>
#include <stdio.h>
#include <sys/types.h>

#include <curl/curl.h>

#include "aliocr.h"

#define IDLE_MAX 64                       /* jobs kept for reuse, each with its easy handle */
#define WAKE_SLICE_MS 10                  /* without curl_multi_wakeup: see above */
#define WORKER_STACK ((size_t)512 * 1024) /* the worker thread's stack */
#define WORKER_NICE 10                    /* the worker's nice value, above its starter's (Linux) */

#if LIBCURL_VERSION_NUM >= 0x074400 /* 7.68.0 */
#define HAVE_WAKEUP 1
#endif

enum { DRIVER_NONE, DRIVER_WORKER, DRIVER_CALLER };

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
    int64_t max_bytes;         /* the configuration's, copied: the worker reads it */
    int blocking;              /* perform's: not counted, not put on done */
    int finished;              /* perform's: its transfer has ended */
    int too_large;
    int too_large_declared;    /* a Content-Length over max_bytes was seen */
    int requests;              /* requests libcurl began for this transfer */
    int resend_refused;        /* a resend after the request went out was stopped */
    CURLcode result;
    /* A storage request (engine:send/add with a table: an OSS PUT, GET,
     * DELETE...), not a gateway call: its own method, URL and header lines,
     * its body from `form` or streamed from `upload`; all of its answer's
     * headers kept, its body never decoded. Never kept for reuse. */
    int raw;
    FILE *upload;              /* a PUT's file, read by on_read */
    int64_t upload_left;       /* bytes of the body still to send */
    size_t upload_at;          /* how far into form the body was sent */
    /* What the easy handle was last given, not to give it again. */
    const char *set_url;       /* an interface URL (a GET's URL is always set) */
    struct curl_slist *set_headers;
    long set_timeout_ms;
} job;

typedef struct engine {
    CURLM *multi;
    CURLSH *share;             /* TLS sessions, shared by the easy handles */
    pthread_mutex_t share_mu[CURL_LOCK_DATA_LAST]; /* its locks (transfer.c) */
    aliocr_config *config;     /* kept alive by config_ref */
    int config_ref, decode_ref; /* registry: the configuration, the JSON decoder */
    pid_t pid;                 /* the process that made the engine (see fork) */
    /* The wheel's (see above). */
    job *active;               /* transfers on the multi handle */
    int nactive;               /* of them, not perform's: changed under mu */
    /* Under mu. */
    pthread_mutex_t mu;
    pthread_cond_t cv;         /* any change: broadcast */
    job *incoming, *incoming_tail; /* added, not on the multi handle yet */
    job *done, *done_tail;     /* finished, in the order they finished */
    int nrunning;              /* added and not finished: incoming + on the multi handle */
    int ndone;
    int driver;                /* who holds the wheel: DRIVER_* */
    int waiting;               /* callers waiting for the wheel */
    int woken;                 /* the worker's poll was woken since it began */
    int stop;                  /* the worker is to end */
    CURLMcode failed;          /* the multi handle failed in the worker */
    long maxconnects, set_maxconnects; /* the connection cache's size: wanted, set */
    double alarm_at;           /* monotonic seconds: the descriptor is ready then (0: none) */
    int alarm_fired;
    int ready[2];              /* the readiness pipe (-1: none made) */
    int signalled;             /* a byte is in it */
    /* The caller's thread's. */
    pthread_t worker;
    int worker_started;
    struct engine *next_engine; /* the list of running workers (worker.c) */
    int mutex_made;
    job *idle[IDLE_MAX];       /* jobs for the next calls */
    int nidle;
    lua_Integer next_id;
    struct curl_slist *fixed[2]; /* AppCode mode: the header list of a GET, of a POST */
    long idle_s;               /* a connection idle longer is not reused */
    int closed;
} engine;

/* Driving (drive.c). */
/* Waits up to wait_ms for activity on the transfers' sockets (or a wakeup). */
CURLMcode aliocr_wait_for_activity(CURLM *multi, int wait_ms);
/* Takes j off a list linked by next. */
void aliocr_unlink_job(job **list, job *j);
/* Takes j off the list of finished jobs (under mu). */
void aliocr_unlink_done(engine *e, job *j);
/* The job with that id on a list, or NULL. */
job *aliocr_find_job(job *list, lua_Integer id);
/* The caller takes the wheel (waits for the worker to give it up), and
 * gives it back. */
void aliocr_take_wheel(engine *e);
void aliocr_give_wheel(engine *e);
/* With the wheel: puts the incoming jobs on the multi handle, and applies
 * the connection cache's size. */
void aliocr_take_incoming(engine *e);
/* With the wheel: one pass over the transfers, the finished moved to done
 * (perform's marked finished). */
CURLMcode aliocr_pass(engine *e);
/* With the wheel: drives until the blocking job j has finished, and takes
 * it off the multi handle. */
CURLMcode aliocr_finish_job(engine *e, job *j);
/* Gives the detached jobs `list` back to the engine, ahead of the finished
 * ones (frees them when the engine was closed). */
void aliocr_give_back(engine *e, job *list);

/* The worker and the descriptor (worker.c). */
/* Registers the exit handler that stops the workers (once per process;
 * after curl_global_init). */
void aliocr_worker_init(void);
/* Starts the worker thread unless it runs: 0, or an errno. */
int aliocr_worker_start(engine *e);
/* Stops the worker thread and waits for it to end. */
void aliocr_worker_stop(engine *e);
/* Under mu: wakes whoever drives, or is to (a job was added, the wheel is
 * wanted, the alarm moved). */
void aliocr_wake(engine *e);
/* Under mu: waits on cv for at most `seconds` (or a signal). */
void aliocr_timedwait(engine *e, double seconds);
/* Under mu: makes the readiness pipe readable or not, as finished jobs
 * wait or the alarm has fired. */
void aliocr_ready_update(engine *e);

/* Jobs (transfer.c). */
/* A new job, its easy handle set up with the configuration's constant
 * options; NULL when out of memory. */
job *aliocr_job_new(engine *e);
/* Sets up job j for the call: its request built, the options that vary set.
 * 0, or -1 when out of memory. */
int aliocr_job_prepare(engine *e, job *j, const aliocr_call *call, long timeout_ms);
/* A storage request's job (see job.raw): the request table at stack index
 * i (see engine.c), the easy handle set up. 0; -1 when out of memory; -2
 * when the file cannot be opened (errno says why). */
int aliocr_job_prepare_raw(engine *e, job *j, const char *method, const char *url,
                           const char *const *headers, int nheaders, const char *body, size_t body_len,
                           const char *file, int64_t size, long timeout_ms);
/* A job done with: kept for the next call (unless the engine is closed or
 * keeps enough), or freed. */
void aliocr_job_recycle(engine *e, job *j);
void aliocr_job_destroy(job *j);
/* The share handle of engine e (TLS sessions), with its locks; NULL if it
 * could not be made. Freed by aliocr_share_free unless a job still uses it
 * (then the last job's destruction frees it). */
CURLSH *aliocr_share_new(engine *e);
void aliocr_share_free(engine *e);
/* Whether any of the job's request may have gone out. */
int aliocr_job_sent(const job *j);
/* Pushes the response table of a finished job (see response.c), decoding
 * with the decoder at stack index `decode`. */
void aliocr_job_push_response(lua_State *L, int decode, job *j);

#endif
