/*
 * The libcurl engine's driving (engine.c has its Lua methods): its multi
 * handle driven and waited on, and its two lists, the transfers under way
 * and those finished but not collected. No Lua here.
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
            return;
        }
    }
}

/* Moves finished transfers from the active list to the done list. */
void aliocr_harvest(engine *e)
{
    CURLMsg *msg;
    int left;
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
        if (e->done_tail)
            e->done_tail->next = j;
        else
            e->done = j;
        e->done_tail = j;
    }
}

int aliocr_is_done(const engine *e, const job *target)
{
    const job *k;
    if (!target)
        return e->done != NULL;
    for (k = e->done; k; k = k->next)
        if (k == target)
            return 1;
    return 0;
}

/* Drives transfers: one pass when wait_ms is 0; otherwise, unless `target`
 * (or, with no target, any transfer) has finished, waits up to wait_ms for
 * activity on the sockets and makes another pass. */
CURLMcode aliocr_drive(engine *e, int wait_ms, job *target)
{
    int running = 0;
    CURLMcode mc = curl_multi_perform(e->multi, &running);
    aliocr_harvest(e);
    if (mc == CURLM_OK && wait_ms > 0 && running > 0 && !aliocr_is_done(e, target)) {
        mc = aliocr_wait_for_activity(e->multi, wait_ms);
        if (mc == CURLM_OK)
            mc = curl_multi_perform(e->multi, &running);
        aliocr_harvest(e);
    }
    return mc;
}

/* Drives until job j has finished and takes it off the engine's lists:
 * CURLM_OK, or the multi handle's failure (j is taken off then too,
 * unfinished). */
CURLMcode aliocr_finish_job(engine *e, job *j)
{
    while (!aliocr_is_done(e, j)) {
        CURLMcode mc = aliocr_drive(e, 1000, j);
        if (mc != CURLM_OK) {
            if (!aliocr_is_done(e, j)) {
                curl_multi_remove_handle(e->multi, j->easy);
                aliocr_unlink_job(&e->active, j);
            } else {
                aliocr_unlink_done(e, j);
            }
            return mc;
        }
    }
    aliocr_unlink_done(e, j);
    return CURLM_OK;
}

/* Gives the detached jobs `list` (linked by next) back to the engine, ahead
 * of the finished ones it holds, for the next run; frees them when the
 * engine was closed meanwhile. */
void aliocr_give_back(engine *e, job *list)
{
    job *tail = list;
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
    while (tail->next)
        tail = tail->next;
    tail->next = e->done;
    if (!e->done_tail)
        e->done_tail = tail;
    e->done = list;
}

