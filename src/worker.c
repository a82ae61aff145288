/*
 * The libcurl engine's worker thread, and its readiness descriptor.
 *
 * The worker drives the jobs added with `add` (engine.c): it takes the wheel
 * (drive.c) while there are transfers, makes passes over them, and waits on
 * their sockets in between; it gives the wheel up when a caller wants it
 * (a blocking `perform`, a `cancel`) or when nothing is left, and then
 * sleeps until a job is added. It never touches Lua. It is started at the
 * first `add` (an engine used only for blocking calls has no thread), with
 * every signal blocked (they go to the host's threads), a stack of
 * WORKER_STACK bytes and, on Linux, a nice value WORKER_NICE above the
 * thread that started it (so that under load the host's own threads, a frame
 * loop, come first); and stopped by `close` (and __gc), which waits for it,
 * or at exit() (stop_all_at_exit) when the host ends without closing Lua.
 *
 * The readiness descriptor (`engine:fd()`): the read end of a pipe that
 * holds one byte while finished jobs wait to be taken by `run`, or while the
 * alarm (`engine:alarm(s)`) has fired, and none otherwise; so a host with an
 * event loop can sleep until there is something for it to do.
 */
#define _GNU_SOURCE /* dladdr, RTLD_NODELETE */

#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"

void aliocr_ready_update(engine *e)
{
    int want = e->done != NULL || e->alarm_fired;
    if (e->ready[1] < 0 || want == e->signalled)
        return;
    if (want) {
        /* The pipe is empty (nothing signalled): this write cannot block. */
        e->signalled = write(e->ready[1], "!", 1) == 1;
    } else {
        char b[8];
        while (read(e->ready[0], b, sizeof b) > 0)
            ;
        e->signalled = 0;
    }
}

void aliocr_wake(engine *e)
{
    if (e->driver == DRIVER_WORKER) {
#ifdef HAVE_WAKEUP
        if (!e->woken) {
            e->woken = 1;
            curl_multi_wakeup(e->multi);
        }
#endif
    } else {
        pthread_cond_broadcast(&e->cv);
    }
}

/* Fires the alarm if its time has come (under mu). */
static void check_alarm(engine *e, double now)
{
    if (e->alarm_at > 0 && now >= e->alarm_at) {
        e->alarm_at = 0;
        e->alarm_fired = 1;
        aliocr_ready_update(e);
    }
}

void aliocr_timedwait(engine *e, double seconds)
{
    struct timespec ts;
    if (seconds < 0)
        seconds = 0;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* cv's clock (engine_new) */
    ts.tv_sec += (time_t)seconds;
    ts.tv_nsec += (long)((seconds - (double)(time_t)seconds) * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&e->cv, &e->mu, &ts);
}

/* Waits on cv until it is signalled, or until the alarm (under mu). */
static void park(engine *e, double now)
{
    if (e->alarm_at > 0)
        aliocr_timedwait(e, e->alarm_at - now);
    else
        pthread_cond_wait(&e->cv, &e->mu);
}

static void *worker_main(void *arg)
{
    engine *e = arg;
    int driving = 0;
#ifdef __linux__
    /* Under load, the host's threads (a frame loop) come first: on Linux a
     * thread has a nice value of its own (elsewhere this call would change
     * the whole process's: not made). */
    errno = 0;
    {
        int nice_now = getpriority(PRIO_PROCESS, 0);
        if (errno == 0)
            (void)setpriority(PRIO_PROCESS, 0, nice_now + WORKER_NICE);
    }
#endif
    pthread_mutex_lock(&e->mu);
    for (;;) {
        double now = aliocr_monotonic();
        int wait_ms;
        CURLMcode mc;
        check_alarm(e, now);
        if (e->stop || e->waiting > 0 || e->failed != CURLM_OK || (!e->incoming && e->nactive == 0)) {
            if (driving) {
                e->driver = DRIVER_NONE;
                driving = 0;
                pthread_cond_broadcast(&e->cv);
            }
            if (e->stop)
                break;
            park(e, now);
            continue;
        }
        if (!driving) {
            if (e->driver != DRIVER_NONE) {
                park(e, now);
                continue;
            }
            e->driver = DRIVER_WORKER;
            driving = 1;
        }
        pthread_mutex_unlock(&e->mu);
        mc = aliocr_pass(e);
        pthread_mutex_lock(&e->mu);
        if (mc != CURLM_OK) {
            e->failed = mc;
            pthread_cond_broadcast(&e->cv);
            continue;
        }
        if (e->stop || e->waiting > 0 || e->incoming || e->nactive == 0)
            continue;
        wait_ms = 1000;
        if (e->alarm_at > 0) {
            double left = (e->alarm_at - now) * 1000 + 1;
            wait_ms = left < 1 ? 1 : left < wait_ms ? (int)left : wait_ms;
        }
#ifndef HAVE_WAKEUP
        if (wait_ms > WAKE_SLICE_MS)
            wait_ms = WAKE_SLICE_MS;
#endif
        e->woken = 0;
        pthread_mutex_unlock(&e->mu);
        mc = aliocr_wait_for_activity(e->multi, wait_ms);
        pthread_mutex_lock(&e->mu);
        if (mc != CURLM_OK) {
            e->failed = mc;
            pthread_cond_broadcast(&e->cv);
        }
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

/* The engines whose worker runs, for the exit handler (see below). */
static pthread_mutex_t all_mu = PTHREAD_MUTEX_INITIALIZER;
static engine *all_engines;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;

static void stop_and_join(engine *e)
{
    pthread_mutex_lock(&e->mu);
    e->stop = 1;
    aliocr_wake(e);
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->worker, NULL);
    e->worker_started = 0;
}

/* At exit() (a host that ends without closing its Lua state: os.exit
 * without close, say), the workers still running are stopped before the
 * exit handlers of OpenSSL (registered before this one, by curl_global_init,
 * so run after it) free what the workers may be using. Never Lua here. */
static void stop_all_at_exit(void)
{
    for (;;) {
        engine *e, **p;
        pthread_mutex_lock(&all_mu);
        for (p = &all_engines; (e = *p) != NULL; p = &e->next_engine)
            if (e->pid == getpid())
                break;
        if (e)
            *p = e->next_engine;
        pthread_mutex_unlock(&all_mu);
        if (!e)
            return;
        stop_and_join(e);
    }
}

/* The handler must outlive a dlclose of this module (Lua unloads C modules
 * at lua_close; some runtimes, the sanitizers', keep atexit handlers past
 * it): the module pins itself in memory first, and without that no handler
 * is registered. */
static const char anchor; /* an address inside this module, for dladdr */

static void register_exit(void)
{
    Dl_info info;
    if (dladdr(&anchor, &info) && info.dli_fname &&
        dlopen(info.dli_fname, RTLD_NOW | RTLD_NODELETE) != NULL)
        (void)atexit(stop_all_at_exit);
}

void aliocr_worker_init(void)
{
    pthread_once(&exit_once, register_exit);
}

int aliocr_worker_start(engine *e)
{
    pthread_attr_t attr;
    sigset_t all, old;
    int rc;
    if (e->worker_started)
        return 0;
    if ((rc = pthread_attr_init(&attr)) != 0)
        return rc;
    pthread_attr_setstacksize(&attr, WORKER_STACK);
    /* The thread inherits this mask: signals are for the host's threads. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&e->worker, &attr, worker_main, e);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc == 0) {
        e->worker_started = 1;
        pthread_mutex_lock(&all_mu);
        e->next_engine = all_engines;
        all_engines = e;
        pthread_mutex_unlock(&all_mu);
    }
    return rc;
}

void aliocr_worker_stop(engine *e)
{
    engine **p;
    int listed = 0;
    pthread_mutex_lock(&all_mu);
    for (p = &all_engines; *p; p = &(*p)->next_engine) {
        if (*p == e) {
            *p = e->next_engine;
            listed = 1;
            break;
        }
    }
    pthread_mutex_unlock(&all_mu);
    if (listed && e->worker_started)
        stop_and_join(e);
}
