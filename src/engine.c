/*
 * aliocr.Engine: the libcurl transport. A client's calls run as transfers on
 * one libcurl multi handle: `perform` (one call, blocking, driven on the
 * caller's thread), and `add` + `run` (many at once, or without blocking:
 * driven by the engine's worker thread, worker.c; `run` takes the finished
 * ones). The multi handle owns the connection cache and the CA store, and a
 * share handle the TLS sessions, so that connections, the store and
 * sessions are kept and reused across calls. engine.h says which thread
 * touches what.
 *
 * An engine serves one aliocr.Config (config.c): every easy handle gets the
 * configuration's constant options once, when it is made, and is kept for
 * the next call with its buffers (a pool of jobs), so that a call sets only
 * what varies: the URL, the form, the header list, the timeout. The request
 * is built in C (request.c) and the response table too (response.c).
 * libcurl's callbacks only append to C buffers; Lua runs only in the
 * engine's methods, on the caller's thread, after a transfer is complete,
 * and never while the wheel or the engine's mutex is held.
 *
 * After fork(), the child's copy of an engine belongs to the parent (its
 * connections, its worker thread, which the child does not have): every
 * method refuses it, and closing it frees nothing that the parent uses.
 *
 * libcurl floor: 7.58.0, with the fallbacks engine.h lists.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"

/* Methods' helpers ------------------------------------------------------------ */

static engine *check_engine(lua_State *L, int i)
{
    engine *e = luaL_checkudata(L, i, ALIOCR_ENGINE);
    if (e->closed)
        luaL_error(L, "attempt to use a closed aliocr engine");
    if (e->pid != getpid())
        luaL_error(L, "this aliocr client was made in process %d, before a fork(): "
                      "make a new client in this process", (int)e->pid);
    return e;
}

/* Raises if the worker found the multi handle broken (see multi_failed). */
static void check_failed(lua_State *L, engine *e)
{
    CURLMcode mc;
    pthread_mutex_lock(&e->mu);
    mc = e->failed;
    pthread_mutex_unlock(&e->mu);
    if (mc != CURLM_OK)
        luaL_error(L, "libcurl's multi interface failed: %s", curl_multi_strerror(mc));
}

/* Raises for a failure of the multi handle itself (out of memory, a broken
 * handle): driving it again would fail again, so no loop may go on. */
static int multi_failed(lua_State *L, CURLMcode mc)
{
    return luaL_error(L, "libcurl's multi interface failed: %s", curl_multi_strerror(mc));
}

/* Building a response runs Lua: every allocation may run a finalizer, which
 * may cancel jobs, close the engine or start another call on it, and an
 * interrupt or a finalizer's error may be raised in the decode. So a job is
 * taken off the engine's lists before its response is built (nothing Lua
 * runs can reach it or free it), the decode function is kept on the stack,
 * and the building is a protected call: on an error the caller still owns
 * the job and decides (put it back, or free it) before raising again. */
static int build_protected(lua_State *L)
{
    int into = lua_gettop(L) == 4; /* run's list and index (see build_into) */
    aliocr_job_push_response(L, 2, lua_touserdata(L, 1));
    if (into) {
        lua_rawseti(L, 3, (lua_Integer)lua_tointeger(L, 4));
        return 0;
    }
    return 1;
}

/* Pushes what building needs, before any job is taken off the lists (on
 * Lua 5.1 pushing a C function allocates, and so may raise): the protected
 * builder, then the engine's decode function. Returns the builder's index. */
static int push_builder(lua_State *L, const engine *e)
{
    lua_pushcfunction(L, build_protected);
    lua_rawgeti(L, LUA_REGISTRYINDEX, e->decode_ref);
    return lua_gettop(L) - 1;
}

/* Builds the response of the detached job j with the builder pushed at
 * stack index b: returns 0 with the response pushed, or the error status
 * with the error pushed. Nothing here can raise outside the protected call. */
static int build(lua_State *L, int b, job *j)
{
    lua_pushvalue(L, b);
    lua_pushlightuserdata(L, j);
    lua_pushvalue(L, b + 1);
    return lua_pcall(L, 2, 1, 0);
}

/* The same, the response put at index n of the table at stack index list
 * inside the protected call (inserting may allocate, and so raise):
 * nothing is pushed on success. */
static int build_into(lua_State *L, int b, job *j, int list, int n)
{
    lua_pushvalue(L, b);
    lua_pushlightuserdata(L, j);
    lua_pushvalue(L, b + 1);
    lua_pushvalue(L, list);
    lua_pushinteger(L, n);
    return lua_pcall(L, 4, 0, 0);
}

/* Prepares the job of the call whose arguments are at stack index i..i+4
 * (interface, image URL, parameters, method, timeout in ms); the job is the
 * caller's until it is put on a list. Raises on misuse, and on
 * out-of-memory after freeing what it allocated. */
/* The string field `name` of the table at index t, pushed (it stays on the
 * stack while the job is prepared), or NULL when absent; raises if it is
 * not a string. */
static const char *string_field(lua_State *L, int t, const char *name, size_t *len)
{
    lua_getfield(L, t, name);
    if (lua_isnil(L, -1))
        return NULL;
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "the request's %s must be a string", name);
    return lua_tolstring(L, -1, len);
}

#define RAW_HEADERS_MAX 32

/* A storage request's job: the table at stack index t, with `method` (PUT,
 * GET, HEAD, DELETE, POST), `url`, `headers` (an array of header lines),
 * and for a PUT `body` (a string) or `file` (a path) with `size` (the bytes
 * to send from it); the timeout at t + 1. The table's values stay on the
 * stack. Raises on misuse and when the file cannot be opened. */
static job *prepare_raw(lua_State *L, engine *e, int t)
{
    static const char *const methods[] = {"PUT", "GET", "HEAD", "DELETE", "POST", NULL};
    lua_Integer timeout_ms = luaL_checkinteger(L, t + 1);
    const char *method, *url, *body, *file, *lines[RAW_HEADERS_MAX];
    size_t body_len = 0, url_len = 0;
    lua_Integer size = 0;
    int n = 0, k, rc;
    job *j;
    if (timeout_ms < 1 || timeout_ms > 2147483647) {
        luaL_error(L, "the timeout must be from 1 to 2147483647 ms");
        return NULL; /* not reached */
    }
    /* The fields and every header line stay on the stack. */
    luaL_checkstack(L, RAW_HEADERS_MAX + 12, "too many header lines");
    method = string_field(L, t, "method", NULL);
    for (k = 0; method && methods[k] && strcmp(methods[k], method) != 0; k++)
        ;
    if (!method || !methods[k]) {
        luaL_error(L, "the request's method must be PUT, GET, HEAD, DELETE or POST");
        return NULL; /* not reached */
    }
    url = string_field(L, t, "url", &url_len);
    if (!url || strlen(url) != url_len) {
        luaL_error(L, "the request needs a url (a string without NUL)");
        return NULL; /* not reached */
    }
    body = string_field(L, t, "body", &body_len);
    file = string_field(L, t, "file", NULL);
    lua_getfield(L, t, "size");
    if (file) {
        if (lua_type(L, -1) != LUA_TNUMBER || (size = lua_tointeger(L, -1)) < 0) {
            luaL_error(L, "a request with a file needs its size (bytes to send, an integer)");
            return NULL; /* not reached */
        }
    }
    lua_getfield(L, t, "headers");
    if (!lua_isnil(L, -1)) {
        int h = lua_gettop(L);
        luaL_checktype(L, h, LUA_TTABLE);
        for (n = 0;; n++) {
            size_t len;
            lua_rawgeti(L, h, n + 1);
            if (lua_isnil(L, -1))
                break;
            if (n >= RAW_HEADERS_MAX) {
                luaL_error(L, "a request has at most %d header lines", RAW_HEADERS_MAX);
                return NULL; /* not reached */
            }
            if (lua_type(L, -1) != LUA_TSTRING) {
                luaL_error(L, "the request's header lines must be strings");
                return NULL; /* not reached */
            }
            lines[n] = lua_tolstring(L, -1, &len);
            if (strlen(lines[n]) != len || strpbrk(lines[n], "\r\n")) {
                luaL_error(L, "a header line must not hold CR, LF or NUL");
                return NULL; /* not reached */
            }
        }
    }
    if ((file || body) && strcmp(method, "PUT") != 0) {
        luaL_error(L, "only a PUT has a body");
        return NULL; /* not reached */
    }
    /* Checked after every allocation above (a finalizer may have closed it). */
    if (e->closed) {
        luaL_error(L, "attempt to use a closed aliocr engine");
        return NULL; /* not reached */
    }
    if (!(j = aliocr_job_new(e))) {
        luaL_error(L, "could not set up the transfer (out of memory?)");
        return NULL; /* not reached */
    }
    rc = aliocr_job_prepare_raw(e, j, method, url, lines, n, body, body_len, file, (int64_t)size,
                                (long)timeout_ms);
    if (rc != 0) {
        int err = errno;
        aliocr_job_destroy(j);
        if (rc == -2) {
            luaL_error(L, "cannot open the file to send: %s", strerror(err));
            return NULL; /* not reached */
        }
        luaL_error(L, "could not set up the transfer (out of memory?)");
    }
    j->id = ++e->next_id;
    return j;
}

static job *prepare(lua_State *L, engine *e, int i)
{
    aliocr_call call;
    if (lua_istable(L, i))
        return prepare_raw(L, e, i);
    lua_Integer timeout_ms = luaL_checkinteger(L, i + 4);
    job *j;
    if (timeout_ms < 1 || timeout_ms > 2147483647)
        luaL_error(L, "the timeout must be from 1 to 2147483647 ms");
    if (e->config->mode == 0)
        luaL_error(L, "attempt to use a closed aliocr configuration");
    /* call_read takes strings as they are, without converting: no
     * allocation of Lua's, so no finalizer runs between the check above
     * and the build below. */
    aliocr_call_read(L, i, e->config, &call);
    if (e->closed) {
        aliocr_call_free(&call);
        luaL_error(L, "attempt to use a closed aliocr engine");
    }
    j = e->nidle > 0 ? e->idle[--e->nidle] : aliocr_job_new(e);
    if (!j || aliocr_job_prepare(e, j, &call, (long)timeout_ms) != 0) {
        aliocr_call_free(&call);
        if (j)
            aliocr_job_recycle(e, j);
        luaL_error(L, "could not set up the transfer (out of memory?)");
        return NULL; /* not reached */
    }
    aliocr_call_free(&call);
    j->id = ++e->next_id;
    return j;
}

/* Methods ---------------------------------------------------------------------- */

/***
 * Starts a call without waiting for it: `engine:add(interface, image_url,
 * params, method, timeout_ms)` (interface "advanced" or "handwriting";
 * params nil or a flat list key, value, ... of strings; method nil for the
 * configuration's); returns its id. `engine:add(request, timeout_ms)`
 * starts a storage request instead: a table with `method`, `url`,
 * `headers` (an array of header lines, signed already) and, for a PUT,
 * `body` (a string) or `file` and `size` (streamed from the file); its
 * response has every header of the answer and its body undecoded.
 * @function add
 */
static int engine_add(lua_State *L)
{
    engine *e = check_engine(L, 1);
    job *j;
    int rc;
    check_failed(L, e);
    if ((rc = aliocr_worker_start(e)) != 0)
        return luaL_error(L, "could not start the engine's worker thread: %s", strerror(rc));
    j = prepare(L, e, 2);
    pthread_mutex_lock(&e->mu);
    j->next = NULL;
    if (e->incoming_tail)
        e->incoming_tail->next = j;
    else
        e->incoming = j;
    e->incoming_tail = j;
    e->nrunning++;
    aliocr_wake(e);
    pthread_mutex_unlock(&e->mu);
    lua_pushinteger(L, j->id);
    return 1;
}

/***
 * Makes one call or storage request and waits for its answer (arguments as
 * for `add`); returns
 * the response table. Other transfers under way progress meanwhile, and
 * their responses wait for `run`.
 * @function perform
 */
static int engine_perform(lua_State *L)
{
    engine *e = check_engine(L, 1);
    int b, status;
    job *j;
    CURLMcode mc;
    lua_settop(L, 6);
    b = push_builder(L, e);
    if (e->closed) /* pushing may have run a finalizer */
        return luaL_error(L, "attempt to use a closed aliocr engine");
    j = prepare(L, e, 2);
    aliocr_take_wheel(e);
    mc = aliocr_finish_job(e, j);
    aliocr_give_wheel(e);
    if (mc != CURLM_OK) {
        aliocr_job_recycle(e, j);
        return multi_failed(L, mc);
    }
    status = build(L, b, j);
    aliocr_job_recycle(e, j);
    if (status != 0)
        return lua_error(L);
    return 1;
}

/***
 * Drives the transfers under way for at most `timeout` seconds (0: a single
 * pass that never blocks); returns an array of the responses of the
 * transfers that finished, and the number still under way. When building a
 * response raised (an interrupt, a finalizer's error, memory), also returns
 * that error third: the responses built before it are in the array, and the
 * rest wait for the next run.
 * @function run
 */
static int engine_run(lua_State *L)
{
    engine *e = check_engine(L, 1);
    lua_Number timeout = luaL_optnumber(L, 2, 0);
    double deadline = aliocr_monotonic() + (timeout > 0 ? timeout : 0);
    int n = 0, pending, b = push_builder(L, e), list_idx;
    job *j, *taken;
    CURLMcode failed;
    lua_newtable(L); /* allocations before any job is taken (see build) */
    list_idx = lua_gettop(L);
    if (e->closed) /* by a finalizer those allocations ran */
        return luaL_error(L, "attempt to use a closed aliocr engine");
    pthread_mutex_lock(&e->mu);
    /* A caught SIGINT (see core.catch_interrupts) ends the wait. */
    while (e->failed == CURLM_OK && !e->done && e->nrunning > 0 && !aliocr_interrupted()) {
        double left = deadline - aliocr_monotonic();
        if (left <= 0)
            break;
        aliocr_timedwait(e, left > 0.1 ? 0.1 : left);
    }
    failed = e->failed;
    /* The finished jobs are ours from here on (see build). */
    taken = e->done;
    e->done = e->done_tail = NULL;
    e->ndone = 0;
    e->alarm_fired = 0; /* the host has come */
    aliocr_ready_update(e);
    pending = e->nrunning;
    pthread_mutex_unlock(&e->mu);
    if (failed != CURLM_OK && !taken)
        return multi_failed(L, failed);
    while ((j = taken) != NULL) {
        taken = j->next;
        j->next = NULL;
        if (build_into(L, b, j, list_idx, n + 1) != 0) {
            /* This job and the rest wait for the next run; what was built
             * is returned with the error, so that nothing is lost. */
            j->next = taken;
            aliocr_give_back(e, j);
            lua_pushvalue(L, list_idx);
            lua_pushinteger(L, pending);
            lua_pushvalue(L, -3);
            return 3;
        }
        n++;
        aliocr_job_recycle(e, j);
    }
    lua_pushinteger(L, pending);
    return 2;
}

/***
 * Abandons a transfer under way: true if there was one with that id, and
 * whether any of its request went out (then its billing is unknown). A transfer that finished but was not collected
 * yet is not abandoned: its response is returned instead (the answer is in,
 * billed or not). False for an id the engine does not hold (unknown,
 * collected, or its response being built right now), and always in a child
 * process (after fork()), where the engine holds nothing of its own.
 * @function cancel
 */
static int engine_cancel(lua_State *L)
{
    engine *e = luaL_checkudata(L, 1, ALIOCR_ENGINE);
    lua_Integer id = luaL_checkinteger(L, 2);
    int b, sent = 0, found = 0;
    job *j;
    if (!e->closed && e->pid != getpid()) {
        /* A fork's copy holds no transfer of this process: nothing to
         * cancel (so that closing the client in the child works). */
        lua_pushboolean(L, 0);
        return 1;
    }
    check_engine(L, 1);
    b = push_builder(L, e);
    if (e->closed) { /* by a finalizer pushing ran: it holds nothing now */
        lua_pushboolean(L, 0);
        return 1;
    }
    pthread_mutex_lock(&e->mu);
    if ((j = aliocr_find_job(e->incoming, id)) != NULL) {
        /* Not on the multi handle yet: nothing was sent. */
        job *prev = NULL, *k;
        for (k = e->incoming; k != j; k = k->next)
            prev = k;
        aliocr_unlink_job(&e->incoming, j);
        if (e->incoming_tail == j)
            e->incoming_tail = prev;
        e->nrunning--;
        found = 1;
    }
    pthread_mutex_unlock(&e->mu);
    if (!found) {
        /* On the multi handle, maybe: taken out with the wheel. */
        aliocr_take_wheel(e);
        if ((j = aliocr_find_job(e->active, id)) != NULL) {
            sent = aliocr_job_sent(j);
            curl_multi_remove_handle(e->multi, j->easy);
            aliocr_unlink_job(&e->active, j);
            found = 1;
            pthread_mutex_lock(&e->mu);
            e->nactive--;
            e->nrunning--;
            pthread_mutex_unlock(&e->mu);
        }
        aliocr_give_wheel(e);
    }
    if (found) {
        aliocr_job_recycle(e, j);
        lua_pushboolean(L, 1);
        lua_pushboolean(L, sent);
        return 2;
    }
    pthread_mutex_lock(&e->mu);
    if ((j = aliocr_find_job(e->done, id)) != NULL) {
        aliocr_unlink_done(e, j);
        aliocr_ready_update(e);
    }
    pthread_mutex_unlock(&e->mu);
    if (j) {
        /* Too late: the answer is in. It is handed over, not dropped. */
        if (build(L, b, j) != 0) {
            aliocr_give_back(e, j);
            return lua_error(L);
        }
        aliocr_job_recycle(e, j);
        return 1;
    }
    lua_pushboolean(L, 0);
    return 1;
}

/***
 * The number of transfers under way or finished but not collected.
 * @function pending
 */
static int engine_pending(lua_State *L)
{
    engine *e = check_engine(L, 1);
    int n;
    pthread_mutex_lock(&e->mu);
    n = e->nrunning + e->ndone;
    pthread_mutex_unlock(&e->mu);
    lua_pushinteger(L, n);
    return 1;
}

/***
 * The readiness descriptor: an integer file descriptor that is readable
 * while finished transfers wait for `run`, or the alarm has fired. The
 * caller must not read from it or close it; `run` empties it, and `close`
 * closes it.
 * @function fd
 */
static int engine_fd(lua_State *L)
{
    engine *e = check_engine(L, 1);
    int fds[2], made = 0;
    pthread_mutex_lock(&e->mu);
    if (e->ready[0] < 0) {
        if (pipe(fds) == 0) {
            int k;
            for (k = 0; k < 2; k++) {
                fcntl(fds[k], F_SETFL, fcntl(fds[k], F_GETFL) | O_NONBLOCK);
                fcntl(fds[k], F_SETFD, FD_CLOEXEC);
            }
            e->ready[0] = fds[0];
            e->ready[1] = fds[1];
            e->signalled = 0;
            aliocr_ready_update(e);
            made = 1;
        }
    } else {
        made = 1;
    }
    fds[0] = e->ready[0];
    pthread_mutex_unlock(&e->mu);
    if (!made)
        return luaL_error(L, "could not make the readiness descriptor: %s", strerror(errno));
    lua_pushinteger(L, fds[0]);
    return 1;
}

/***
 * Sets the alarm: `engine:alarm(seconds)` makes the readiness descriptor
 * readable that many seconds from now (0 or less: now) until the next
 * `run`; `engine:alarm(nil)` unsets it.
 * @function alarm
 */
static int engine_alarm(lua_State *L)
{
    engine *e = check_engine(L, 1);
    int none = lua_isnoneornil(L, 2), rc = 0;
    lua_Number s = none ? 0 : luaL_checknumber(L, 2);
    if (!none && s > 0 && (rc = aliocr_worker_start(e)) != 0)
        return luaL_error(L, "could not start the engine's worker thread: %s", strerror(rc));
    pthread_mutex_lock(&e->mu);
    e->alarm_at = 0;
    e->alarm_fired = 0;
    if (!none) {
        if (s > 0)
            e->alarm_at = aliocr_monotonic() + (s < 1e9 ? s : 1e9);
        else
            e->alarm_fired = 1;
    }
    aliocr_ready_update(e);
    aliocr_wake(e);
    pthread_mutex_unlock(&e->mu);
    return 0;
}

/***
 * Makes the connection cache keep at least n connections (a batch's
 * concurrency, say): `engine:connections(n)`; it never shrinks.
 * @function connections
 */
static int engine_connections(lua_State *L)
{
    engine *e = check_engine(L, 1);
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_argcheck(L, n >= 1 && n <= 1000000, 2, "out of range");
    pthread_mutex_lock(&e->mu);
    if (n > e->maxconnects)
        e->maxconnects = (long)n;
    pthread_mutex_unlock(&e->mu);
    return 0;
}

/* Frees a job list (linked by next) of a closed engine. */
static void destroy_list(job *list)
{
    while (list) {
        job *next = list->next;
        aliocr_job_destroy(list);
        list = next;
    }
}

/* close, __gc and __close: frees everything; idempotent; returns true. */
static int engine_close(lua_State *L)
{
    engine *e = luaL_checkudata(L, 1, ALIOCR_ENGINE);
    lua_pushboolean(L, 1);
    if (e->closed)
        return 1;
    e->closed = 1;
    luaL_unref(L, LUA_REGISTRYINDEX, e->decode_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, e->config_ref);
    e->decode_ref = e->config_ref = LUA_NOREF;
    if (e->pid != getpid()) {
        /* A copy made by fork(): its connections are the parent's (closing
         * them here would end the parent's TLS sessions), its worker and
         * its mutex's state too. Left as they are. */
        return 1;
    }
    aliocr_worker_stop(e);
    /* From here on, this thread is the only one. */
    while (e->active) {
        job *j = e->active;
        e->active = j->next;
        curl_multi_remove_handle(e->multi, j->easy);
        aliocr_job_destroy(j);
    }
    destroy_list(e->incoming);
    destroy_list(e->done);
    e->incoming = e->incoming_tail = e->done = e->done_tail = NULL;
    e->nrunning = e->ndone = e->nactive = 0;
    while (e->nidle > 0)
        aliocr_job_destroy(e->idle[--e->nidle]);
    if (e->multi) {
        curl_multi_cleanup(e->multi);
        e->multi = NULL;
    }
    /* Unless a job a method still holds (one whose response is being built
     * when a finalizer closed the engine) uses it: then the last job's
     * destruction frees it (aliocr_job_destroy). */
    aliocr_share_free(e);
    /* The lists hold the AppCode: wiped before they are freed. */
    {
        int k;
        for (k = 0; k < 2; k++) {
            struct curl_slist *h;
            for (h = e->fixed[k]; h; h = h->next)
                if (h->data)
                    memset(h->data, 0, strlen(h->data));
            curl_slist_free_all(e->fixed[k]);
            e->fixed[k] = NULL;
        }
        for (k = 0; k < 2; k++) {
            if (e->ready[k] >= 0)
                close(e->ready[k]);
            e->ready[k] = -1;
        }
    }
    if (e->mutex_made) {
        pthread_cond_destroy(&e->cv);
        pthread_mutex_destroy(&e->mu);
        e->mutex_made = 0;
    }
    return 1;
}

static int engine_tostring(lua_State *L)
{
    engine *e = luaL_checkudata(L, 1, ALIOCR_ENGINE);
    lua_pushfstring(L, "aliocr.Engine (%s)", e->closed ? "closed" : "open");
    return 1;
}

/***
 * A new engine for a configuration: `core.engine(config, { decode = f,
 * max_connections = n, idle_timeout = s })` (decode: the JSON decoder, a
 * lua-cjson decode function; max_connections: the connections the cache
 * keeps; idle_timeout: the seconds a kept-alive connection may have been
 * idle and still be used again). The Lua layer checks the values.
 * @function engine
 */
static int engine_new(lua_State *L)
{
    lua_Number conns, idle;
    engine *e;
    aliocr_check_config(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_getfield(L, 2, "decode");
    luaL_argcheck(L, lua_isfunction(L, -1), 2, "decode must be a function");
    lua_getfield(L, 2, "max_connections");
    lua_getfield(L, 2, "idle_timeout");
    conns = luaL_checknumber(L, -2);
    idle = luaL_checknumber(L, -1);
    lua_pop(L, 2);
    if (!(conns >= 1 && conns <= 1e6) || !(idle >= 1 && idle <= 86400))
        return luaL_error(L, "max_connections or idle_timeout out of range");

    e = lua_newuserdata(L, sizeof *e);
    memset(e, 0, sizeof *e);
    e->decode_ref = e->config_ref = LUA_NOREF;
    e->ready[0] = e->ready[1] = -1;
    e->idle_s = (long)idle;
    e->pid = getpid();
    e->closed = 1; /* until it is whole: __gc then frees only what was made */
    luaL_setmetatable(L, ALIOCR_ENGINE);
    {
        pthread_condattr_t ca;
        int ok = pthread_condattr_init(&ca) == 0;
        ok = ok && pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0;
        ok = ok && pthread_mutex_init(&e->mu, NULL) == 0;
        if (ok && pthread_cond_init(&e->cv, &ca) != 0) {
            pthread_mutex_destroy(&e->mu);
            ok = 0;
        }
        pthread_condattr_destroy(&ca);
        if (!ok)
            return luaL_error(L, "could not make the engine's mutex");
        e->mutex_made = 1;
    }
    e->closed = 0;
    e->multi = curl_multi_init();
    if (!e->multi)
        return luaL_error(L, "curl_multi_init failed");
    e->maxconnects = e->set_maxconnects = (long)conns;
    curl_multi_setopt(e->multi, CURLMOPT_MAXCONNECTS, (long)conns);
    /* TLS sessions resumed on new connections to the same host. */
    e->share = aliocr_share_new(e);
    lua_pushvalue(L, -2);
    e->decode_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, 1);
    e->config_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    e->config = lua_touserdata(L, 1);
    return 1;
}

static const luaL_Reg engine_meta[] = {
    {"__gc", engine_close},
    {"__close", engine_close},
    {"__tostring", engine_tostring},
    {NULL, NULL}
};

static const luaL_Reg engine_methods[] = {
    {"add", engine_add},
    {"perform", engine_perform},
    {"run", engine_run},
    {"cancel", engine_cancel},
    {"pending", engine_pending},
    {"fd", engine_fd},
    {"alarm", engine_alarm},
    {"connections", engine_connections},
    {"close", engine_close},
    {NULL, NULL}
};

void aliocr_engine_open(lua_State *L)
{
    aliocr_worker_init();
    aliocr_new_class(L, ALIOCR_ENGINE, engine_meta, engine_methods, "engine", engine_new);
}
