/*
 * The libcurl engine's driving (engine.c has its Lua methods, worker.c its
 * worker thread): the wheel (who may drive the multi handle), the passes
 * over the transfers, and the engine's lists. No Lua here. engine.h says
 * what each thread may touch.
 */
#define _POSIX_C_SOURCE 200809L

#include <time.h>

#include "engine.h"

CURLMcode aliocr_wait_for_activity(CURLM *multi, int wait_ms)
{
#if LIBCURL_VERSION_NUM >= 0x074200
    return curl_multi_poll(multi, NULL, 0, wait_ms, NULL);
#else
    /* curl_multi_wait returns at once when libcurl has no socket to wait on
     * (while it resolves a name, say): then sleep until libcurl's own
     * timeout or wait_ms, so that the callers do not spin. */
    int numfds = 0;
    double started = aliocr_monotonic();
    CURLMcode mc = curl_multi_wait(multi, NULL, 0, wait_ms, &numfds);
    if (mc == CURLM_OK && numfds == 0) {
        long t = -1;
        double left;
        curl_multi_timeout(multi, &t);
        if (t < 0 || t > wait_ms)
            t = wait_ms;
        left = (double)t / 1000 - (aliocr_monotonic() - started);
        if (left > 0) {
            struct timespec ts;
            ts.tv_sec = (time_t)left;
            ts.tv_nsec = (long)((left - (double)ts.tv_sec) * 1e9);
            nanosleep(&ts, NULL);
        }
    }
    return mc;
#endif
}

void aliocr_unlink_job(job **list, job *j)
{
    for (; *list; list = &(*list)->next) {
        if (*list == j) {
            *list = j->next;
            j->next = NULL;
            return;
        }
    }
}

void aliocr_unlink_done(engine *e, job *j)
{
    job *prev = NULL, *k;
    for (k = e->done; k; prev = k, k = k->next) {
        if (k == j) {
            if (prev)
                prev->next = j->next;
            else
                e->done = j->next;
            if (e->done_tail == j)
                e->done_tail = prev;
            j->next = NULL;
            e->ndone--;
            return;
        }
    }
}

job *aliocr_find_job(job *list, lua_Integer id)
{
    for (; list; list = list->next)
        if (list->id == id)
            return list;
    return NULL;
}

/* The wheel ------------------------------------------------------------------ */

void aliocr_take_wheel(engine *e)
{
    pthread_mutex_lock(&e->mu);
    e->waiting++;
    while (e->driver != DRIVER_NONE) {
        aliocr_wake(e); /* the worker gives it up at the end of its pass */
        pthread_cond_wait(&e->cv, &e->mu);
    }
    e->waiting--;
    e->driver = DRIVER_CALLER;
    pthread_mutex_unlock(&e->mu);
}

void aliocr_give_wheel(engine *e)
{
    pthread_mutex_lock(&e->mu);
    e->driver = DRIVER_NONE;
    pthread_cond_broadcast(&e->cv); /* the worker, if there is work for it */
    pthread_mutex_unlock(&e->mu);
}

/* Passes ---------------------------------------------------------------------- */

/* A job that could not go on the multi handle ends at once, as a transfer
 * that failed before it began (nothing sent). */
static void fail_job(job *j, job **failed)
{
    j->result = CURLE_OUT_OF_MEMORY;
    j->next = *failed;
    *failed = j;
}

/* Appends the n finished jobs `list` (in order) to done, and counts
 * `added` more on the multi handle, under mu. */
static void finish(engine *e, job *list, int n, int added)
{
    job *tail = list;
    if (!list && !added)
        return;
    while (tail && tail->next)
        tail = tail->next;
    pthread_mutex_lock(&e->mu);
    e->nactive += added;
    if (list) {
        if (e->done_tail)
            e->done_tail->next = list;
        else
            e->done = list;
        e->done_tail = tail;
    }
    e->ndone += n;
    e->nrunning -= n;
    aliocr_ready_update(e);
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

void aliocr_take_incoming(engine *e)
{
    job *list, *failed = NULL;
    int nfailed = 0, added = 0;
    long conns = 0;
    pthread_mutex_lock(&e->mu);
    list = e->incoming;
    e->incoming = e->incoming_tail = NULL;
    if (e->maxconnects != e->set_maxconnects)
        conns = e->set_maxconnects = e->maxconnects;
    pthread_mutex_unlock(&e->mu);
    if (conns > 0)
        curl_multi_setopt(e->multi, CURLMOPT_MAXCONNECTS, conns);
    while (list) {
        job *j = list;
        list = j->next;
        j->next = NULL;
        if (curl_multi_add_handle(e->multi, j->easy) != CURLM_OK) {
            fail_job(j, &failed);
            nfailed++;
            continue;
        }
        j->next = e->active;
        e->active = j;
        added++;
    }
    finish(e, failed, nfailed, added);
}

/* Moves finished transfers off the multi handle: to done, or (perform's)
 * marked finished. */
static void harvest(engine *e)
{
    CURLMsg *msg;
    int left, n = 0;
    job *list = NULL, *tail = NULL;
    while ((msg = curl_multi_info_read(e->multi, &left)) != NULL) {
        job *j = NULL;
        CURL *easy = msg->easy_handle;
        CURLcode result = msg->data.result;
        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&j);
        curl_multi_remove_handle(e->multi, easy); /* its connection goes back to the cache */
        if (!j)
            continue;
        j->result = result;
        aliocr_unlink_job(&e->active, j);
        if (j->blocking) {
            j->finished = 1;
            continue;
        }
        if (tail)
            tail->next = j;
        else
            list = j;
        tail = j;
        n++;
    }
    finish(e, list, n, -n);
}

CURLMcode aliocr_pass(engine *e)
{
    int running = 0;
    CURLMcode mc;
    aliocr_take_incoming(e);
    mc = curl_multi_perform(e->multi, &running);
    harvest(e);
    return mc;
}

CURLMcode aliocr_finish_job(engine *e, job *j)
{
    CURLMcode mc = CURLM_OK;
    j->blocking = 1;
    j->finished = 0;
    if (curl_multi_add_handle(e->multi, j->easy) != CURLM_OK)
        return CURLM_OUT_OF_MEMORY;
    j->next = e->active;
    e->active = j;
    for (;;) {
        mc = aliocr_pass(e);
        if (mc != CURLM_OK || j->finished)
            break;
        mc = aliocr_wait_for_activity(e->multi, 1000);
        if (mc != CURLM_OK)
            break;
    }
    if (!j->finished) {
        curl_multi_remove_handle(e->multi, j->easy);
        aliocr_unlink_job(&e->active, j);
    }
    j->blocking = 0;
    return mc;
}

/* Gives the detached jobs `list` (linked by next) back to the engine, ahead
 * of the finished ones it holds, for the next run; frees them when the
 * engine was closed meanwhile. */
void aliocr_give_back(engine *e, job *list)
{
    job *tail = list;
    int n = 1;
    if (!list)
        return;
    if (e->closed) {
        while (list) {
            job *next = list->next;
            aliocr_job_recycle(e, list);
            list = next;
        }
        return;
    }
    while (tail->next) {
        tail = tail->next;
        n++;
    }
    pthread_mutex_lock(&e->mu);
    tail->next = e->done;
    if (!e->done_tail)
        e->done_tail = tail;
    e->done = list;
    e->ndone += n;
    aliocr_ready_update(e);
    pthread_mutex_unlock(&e->mu);
}
