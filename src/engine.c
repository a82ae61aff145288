/*
 * aliocr.Engine: the libcurl transport. A client's calls run as transfers on
 * one libcurl multi handle: `perform` (one call, blocking), and `add` + `run`
 * (many at once, or without blocking). The multi handle owns the connection
 * cache, so connections are kept alive and reused across calls.
 *
 * An engine serves one aliocr.Config (config.c): every easy handle gets the
 * configuration's constant options once, when it is made, and is kept for
 * the next call with its buffers (a pool of jobs), so that a call sets only
 * what varies: the URL, the form, the header list, the timeout. The request
 * is built in C (request.c) and the response table too (response.c).
 * libcurl's callbacks only append to C buffers; Lua runs only in the
 * engine's methods, after a transfer is complete.
 *
 * libcurl floor: 7.58.0. Newer options are used when built against a libcurl
 * that has them, with these fallbacks otherwise:
 * - CURLOPT_PREREQFUNCTION (7.80.0) refuses libcurl's own resend of a
 *   request that went out on a kept-alive connection that then died (the
 *   gateway may have billed it). Without it, connections are not reused
 *   (CURLOPT_FORBID_REUSE), so that there is never such a resend.
 * - CURLOPT_MAXAGE_CONN (7.65.0), the client's idle_timeout: without it
 *   libcurl's own limit applies (118 s).
 * - curl_multi_poll (7.66.0): curl_multi_wait otherwise, with a sleep when
 *   libcurl has no socket to wait on (the engine is never woken up from
 *   another thread, so nothing else differs).
 * Only the libcurl of Debian 12 (7.88.1) is tested.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"

static CURLMcode wait_for_activity(CURLM *multi, int wait_ms)
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

/* Lists ------------------------------------------------------------------------ */

static engine *check_engine(lua_State *L, int i)
{
    engine *e = luaL_checkudata(L, i, ALIOCR_ENGINE);
    if (e->closed)
        luaL_error(L, "attempt to use a closed aliocr engine");
    return e;
}

static void unlink_job(job **list, job *j)
{
    for (; *list; list = &(*list)->next) {
        if (*list == j) {
            *list = j->next;
            j->next = NULL;
            return;
        }
    }
}

static void unlink_done(engine *e, job *j)
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
static void harvest(engine *e)
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
        unlink_job(&e->active, j);
        if (e->done_tail)
            e->done_tail->next = j;
        else
            e->done = j;
        e->done_tail = j;
    }
}

static int is_done(const engine *e, const job *target)
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
static CURLMcode drive(engine *e, int wait_ms, job *target)
{
    int running = 0;
    CURLMcode mc = curl_multi_perform(e->multi, &running);
    harvest(e);
    if (mc == CURLM_OK && wait_ms > 0 && running > 0 && !is_done(e, target)) {
        mc = wait_for_activity(e->multi, wait_ms);
        if (mc == CURLM_OK)
            mc = curl_multi_perform(e->multi, &running);
        harvest(e);
    }
    return mc;
}

/* Raises for a failure of the multi handle itself (out of memory, a broken
 * handle): driving it again would fail again, so no loop may go on. */
static int multi_failed(lua_State *L, CURLMcode mc)
{
    return luaL_error(L, "libcurl's multi interface failed: %s", curl_multi_strerror(mc));
}

/* Drives until job j has finished and takes it off the engine's lists:
 * CURLM_OK, or the multi handle's failure (j is taken off then too,
 * unfinished). */
static CURLMcode finish_job(engine *e, job *j)
{
    while (!is_done(e, j)) {
        CURLMcode mc = drive(e, 1000, j);
        if (mc != CURLM_OK) {
            if (!is_done(e, j)) {
                curl_multi_remove_handle(e->multi, j->easy);
                unlink_job(&e->active, j);
            } else {
                unlink_done(e, j);
            }
            return mc;
        }
    }
    unlink_done(e, j);
    return CURLM_OK;
}

/* Gives the detached jobs `list` (linked by next) back to the engine, ahead
 * of the finished ones it holds, for the next run; frees them when the
 * engine was closed meanwhile. */
static void give_back(engine *e, job *list)
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

/* Building a response runs Lua: every allocation may run a finalizer, which
 * may cancel jobs, close the engine or start another call on it, and an
 * interrupt or a finalizer's error may be raised in the decode. So a job is
 * taken off the engine's lists before its response is built (nothing Lua
 * runs can reach it or free it), the decode function is kept on the stack,
 * and the building is a protected call: on an error the caller still owns
 * the job and decides (put it back, or free it) before raising again. */
static int build_protected(lua_State *L)
{
    aliocr_job_push_response(L, 2, lua_touserdata(L, 1));
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

/* Starts the transfer of the call whose arguments are at stack index
 * i..i+4 (interface, image URL, parameters, method, timeout in ms); returns
 * its job. Raises on misuse, and on out-of-memory after freeing what it
 * allocated. */
static job *start(lua_State *L, engine *e, int i)
{
    aliocr_call call;
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
    if (!j || aliocr_job_prepare(e, j, &call, (long)timeout_ms) != 0 ||
        curl_multi_add_handle(e->multi, j->easy) != CURLM_OK) {
        aliocr_call_free(&call);
        if (j)
            aliocr_job_recycle(e, j);
        luaL_error(L, "could not set up the transfer (out of memory?)");
        return NULL; /* not reached */
    }
    aliocr_call_free(&call);
    j->id = ++e->next_id;
    j->next = e->active;
    e->active = j;
    return j;
}

/* Methods ---------------------------------------------------------------------- */

/***
 * Starts a call without waiting for it: `engine:add(interface, image_url,
 * params, method, timeout_ms)` (interface "advanced" or "handwriting";
 * params nil or a flat list key, value, ... of strings; method nil for the
 * configuration's); returns its id.
 * @function add
 */
static int engine_add(lua_State *L)
{
    engine *e = check_engine(L, 1);
    job *j = start(L, e, 2);
    lua_pushinteger(L, j->id);
    return 1;
}

/***
 * Makes one call and waits for its answer (arguments as for `add`); returns
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
    j = start(L, e, 2);
    mc = finish_job(e, j);
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
    int n = 0, pending = 0, b = push_builder(L, e), list_idx;
    job *j, *taken;
    CURLMcode mc;
    lua_newtable(L); /* allocations before any job is taken (see build) */
    list_idx = lua_gettop(L);
    mc = drive(e, 0, NULL);
    /* A caught SIGINT (see core.catch_interrupts) ends the wait. */
    while (mc == CURLM_OK && !e->done && e->active && !aliocr_interrupted()) {
        double left = deadline - aliocr_monotonic();
        if (left <= 0)
            break;
        mc = drive(e, left > 0.1 ? 100 : (int)(left * 1000) + 1, NULL);
    }
    if (mc != CURLM_OK)
        return multi_failed(L, mc);
    /* The finished jobs are ours from here on (see build). */
    taken = e->done;
    e->done = e->done_tail = NULL;
    while ((j = taken) != NULL) {
        taken = j->next;
        j->next = NULL;
        if (build(L, b, j) != 0) {
            /* This job and the rest wait for the next run; what was built
             * is returned with the error, so that nothing is lost. */
            j->next = taken;
            give_back(e, j);
            for (j = e->active; j; j = j->next)
                pending++;
            lua_pushvalue(L, list_idx);
            lua_pushinteger(L, pending);
            lua_pushvalue(L, -3);
            return 3;
        }
        lua_rawseti(L, list_idx, ++n);
        aliocr_job_recycle(e, j);
    }
    for (j = e->active; j; j = j->next)
        pending++;
    lua_pushinteger(L, pending);
    return 2;
}

/***
 * Abandons a transfer under way: true if there was one with that id, and
 * whether any of its request went out (then its billing is unknown). A transfer that finished but was not collected
 * yet is not abandoned: its response is returned instead (the answer is in,
 * billed or not). False for an id the engine does not hold (unknown,
 * collected, or its response being built right now).
 * @function cancel
 */
static int engine_cancel(lua_State *L)
{
    engine *e = check_engine(L, 1);
    lua_Integer id = luaL_checkinteger(L, 2);
    int b = push_builder(L, e);
    job *j;
    for (j = e->active; j; j = j->next) {
        if (j->id == id) {
            int sent = aliocr_job_sent(j);
            curl_multi_remove_handle(e->multi, j->easy);
            unlink_job(&e->active, j);
            aliocr_job_recycle(e, j);
            lua_pushboolean(L, 1);
            lua_pushboolean(L, sent);
            return 2;
        }
    }
    for (j = e->done; j; j = j->next) {
        if (j->id == id) {
            /* Too late: the answer is in. It is handed over, not dropped. */
            unlink_done(e, j);
            if (build(L, b, j) != 0) {
                give_back(e, j);
                return lua_error(L);
            }
            aliocr_job_recycle(e, j);
            return 1;
        }
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
    int n = 0;
    job *j;
    for (j = e->active; j; j = j->next)
        n++;
    for (j = e->done; j; j = j->next)
        n++;
    lua_pushinteger(L, n);
    return 1;
}

/* close, __gc and __close: frees everything; idempotent; returns true. */
static int engine_close(lua_State *L)
{
    engine *e = luaL_checkudata(L, 1, ALIOCR_ENGINE);
    job *j;
    lua_pushboolean(L, 1);
    if (e->closed)
        return 1;
    e->closed = 1;
    while ((j = e->active) != NULL) {
        e->active = j->next;
        if (e->multi)
            curl_multi_remove_handle(e->multi, j->easy);
        aliocr_job_destroy(j);
    }
    while ((j = e->done) != NULL) {
        e->done = j->next;
        aliocr_job_destroy(j);
    }
    e->done_tail = NULL;
    while (e->nidle > 0)
        aliocr_job_destroy(e->idle[--e->nidle]);
    if (e->multi) {
        curl_multi_cleanup(e->multi);
        e->multi = NULL;
    }
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
    }
    luaL_unref(L, LUA_REGISTRYINDEX, e->decode_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, e->config_ref);
    e->decode_ref = e->config_ref = LUA_NOREF;
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
    e->idle_s = (long)idle;
    luaL_setmetatable(L, ALIOCR_ENGINE);
    e->multi = curl_multi_init();
    if (!e->multi)
        return luaL_error(L, "curl_multi_init failed");
    curl_multi_setopt(e->multi, CURLMOPT_MAXCONNECTS, (long)conns);
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
    {"close", engine_close},
    {NULL, NULL}
};

void aliocr_engine_open(lua_State *L)
{
    aliocr_new_class(L, ALIOCR_ENGINE, engine_meta, engine_methods, "engine", engine_new);
}
