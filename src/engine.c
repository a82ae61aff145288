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
 * libcurl floor: 7.58.0, with the fallbacks engine.h lists.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdlib.h>
#include <string.h>

#include "engine.h"

/* Methods' helpers ------------------------------------------------------------ */

static engine *check_engine(lua_State *L, int i)
{
    engine *e = luaL_checkudata(L, i, ALIOCR_ENGINE);
    if (e->closed)
        luaL_error(L, "attempt to use a closed aliocr engine");
    return e;
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
    mc = aliocr_finish_job(e, j);
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
    mc = aliocr_drive(e, 0, NULL);
    /* A caught SIGINT (see core.catch_interrupts) ends the wait. */
    while (mc == CURLM_OK && !e->done && e->active && !aliocr_interrupted()) {
        double left = deadline - aliocr_monotonic();
        if (left <= 0)
            break;
        mc = aliocr_drive(e, left > 0.1 ? 100 : (int)(left * 1000) + 1, NULL);
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
            aliocr_give_back(e, j);
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
            aliocr_unlink_job(&e->active, j);
            aliocr_job_recycle(e, j);
            lua_pushboolean(L, 1);
            lua_pushboolean(L, sent);
            return 2;
        }
    }
    for (j = e->done; j; j = j->next) {
        if (j->id == id) {
            /* Too late: the answer is in. It is handed over, not dropped. */
            aliocr_unlink_done(e, j);
            if (build(L, b, j) != 0) {
                aliocr_give_back(e, j);
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
