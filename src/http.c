/*
 * aliocr.core.http_reader: the Lua binding of the nginx transport's HTTP
 * reader (the parser is http_parser.c, which says what it takes). The nginx
 * transport (lua/aliocr/resty.lua) reads its socket in large pieces and
 * feeds them here; reader:response builds the transport contract's response
 * table (response.c).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

#define ALIOCR_HTTP_READER "aliocr.HttpReader"

typedef aliocr_http reader;

static reader *check_reader(lua_State *L)
{
    return (reader *)luaL_checkudata(L, 1, ALIOCR_HTTP_READER);
}

/* Pushes the outcome of a feed or of the end: "more", "done", or nil, the
 * libcurl name ("too_large" for a body over the cap) and why. */
static int push_state(lua_State *L, reader *r)
{
    if (r->state == S_FAILED) {
        lua_pushnil(L);
        lua_pushstring(L, r->code);
        lua_pushstring(L, r->why);
        return 3;
    }
    if (r->state == S_DONE)
        lua_pushliteral(L, "done");
    else
        lua_pushliteral(L, "more");
    return 1;
}

/***
 * A reader of one HTTP/1.x response.
 * @function http_reader
 * @int max_body the largest body taken (a larger one fails as "too_large")
 * @bool[opt] head_only the answer to a CONNECT: the head only
 * @treturn HttpReader the reader
 */
static int http_reader_new(lua_State *L)
{
    lua_Number max = luaL_checknumber(L, 1);
    int head_only = lua_toboolean(L, 2);
    reader *r;
    if (!(max >= 0) || max > 1099511627776.0)
        return luaL_argerror(L, 1, "max_body must be from 0 to 2^40");
    r = (reader *)lua_newuserdata(L, sizeof(reader));
    aliocr_http_init(r, max > (lua_Number)SIZE_MAX ? SIZE_MAX : (size_t)max, head_only);
    luaL_setmetatable(L, ALIOCR_HTTP_READER);
    return 1;
}

/***
 * Takes the next bytes of the answer.
 * @function HttpReader:feed
 * @string data the bytes
 * @treturn[1] string `"more"` (more bytes are needed) or `"done"`
 * @treturn[2] nil
 * @treturn[2] string libcurl's name of the failure, or `"too_large"`
 * @treturn[2] string why
 */
static int reader_feed(lua_State *L)
{
    reader *r = check_reader(L);
    size_t n;
    const char *p = luaL_checklstring(L, 2, &n);
    if (r->state != S_FAILED)
        aliocr_http_feed(r, p, n);
    return push_state(L, r);
}

/***
 * The connection closed: the end of a body read up to it, or a failure.
 * @function HttpReader:eof
 * @treturn[1] string `"done"`
 * @treturn[2] nil
 * @treturn[2] string `GOT_NOTHING` (not a byte came), `PARTIAL_FILE` (the body
 *   was cut short) or `RECV_ERROR` (the head was)
 * @treturn[2] string why
 */
static int reader_eof(lua_State *L)
{
    reader *r = check_reader(L);
    aliocr_http_eof(r);
    return push_state(L, r);
}

/***
 * The answer's status, once its status line arrived (before that: nil), and
 * its headers, once they all did (before that: an empty table). Header
 * names are lower-cased; repeated ones are joined with ", ".
 * @function HttpReader:head
 * @treturn int the status
 * @treturn table the headers
 */
static int reader_head(lua_State *L)
{
    reader *r = check_reader(L);
    if (r->status == 0) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushinteger(L, r->status);
    if (r->head_done)
        aliocr_push_headers(L, r->head.data, r->head.len, 0);
    else
        lua_newtable(L);
    return 2;
}

/***
 * The body so far (all of it once done).
 * @function HttpReader:body
 * @treturn string the body
 */
static int reader_body(lua_State *L)
{
    reader *r = check_reader(L);
    lua_pushlstring(L, r->body.data ? r->body.data : "", r->body.len);
    return 1;
}

/***
 * Whether any byte of the answer arrived.
 * @function HttpReader:got_any
 * @treturn boolean
 */
static int reader_got_any(lua_State *L)
{
    lua_pushboolean(L, check_reader(L)->got_any);
    return 1;
}

/***
 * Whether the connection may carry another request once the answer is done
 * (RFC 9112, 9.3): framed by a length or by chunks, nothing after it,
 * HTTP/1.1 without `Connection: close` or HTTP/1.0 with
 * `Connection: keep-alive`, and no Transfer-Encoding next to a
 * Content-Length (RFC 9112, 6.3).
 * @function HttpReader:keepalive
 * @treturn boolean
 */
static int reader_keepalive(lua_State *L)
{
    lua_pushboolean(L, aliocr_http_keepalive(check_reader(L)));
    return 1;
}

/***
 * The response table of the attempt (the transport contract: see
 * response.c), from what the reader holds: its status, the X-Ca-* headers
 * once complete, the body decoded with `decode` when it is JSON, and
 * too_large when the body went over the cap.
 * @function HttpReader:response
 * @func decode the Lua layer's JSON decoder
 * @bool sent whether any of the request may have reached the server
 * @string[opt] error the transport failure's name (libcurl's)
 * @string[opt] message its words
 * @bool[opt] resend_refused a kept-alive connection died before any byte of
 *   the answer, and the request was not sent again
 * @bool[opt] raw a storage request's answer: every header, the body not
 *   decoded
 */
static int reader_response(lua_State *L)
{
    reader *r = check_reader(L);
    aliocr_answer a;
    memset(&a, 0, sizeof a);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    a.status = r->status;
    a.sent = lua_toboolean(L, 3);
    a.error = luaL_optstring(L, 4, NULL);
    a.message = luaL_optstring(L, 5, NULL);
    a.resend_refused = lua_toboolean(L, 6);
    a.too_large = r->state == S_FAILED && r->code && strcmp(r->code, "too_large") == 0;
    if (a.too_large)
        a.error = NULL;
    if (r->head_done) {
        a.head = r->head.data;
        a.head_len = r->head.len;
    }
    a.body = r->body.data;
    a.body_len = r->body.len;
    a.all_headers = lua_toboolean(L, 7);
    aliocr_push_response(L, a.all_headers ? 0 : 2, &a);
    return 1;
}

/***
 * The response table of an attempt that got no answer at all (the
 * transport contract: see response.c).
 * @function transport_failure
 * @string error the failure's name (libcurl's)
 * @string message its words
 * @bool sent whether any of the request may have reached the server
 */
static int core_transport_failure(lua_State *L)
{
    aliocr_answer a;
    memset(&a, 0, sizeof a);
    a.error = luaL_checkstring(L, 1);
    a.message = luaL_checkstring(L, 2);
    a.sent = lua_toboolean(L, 3);
    aliocr_push_response(L, 0, &a);
    return 1;
}

static int reader_gc(lua_State *L)
{
    aliocr_http_free(check_reader(L));
    return 0;
}

void aliocr_http_open(lua_State *L)
{
    static const luaL_Reg meta[] = {{"__gc", reader_gc}, {NULL, NULL}};
    static const luaL_Reg methods[] = {
        {"feed", reader_feed}, {"eof", reader_eof}, {"head", reader_head}, {"body", reader_body},
        {"got_any", reader_got_any}, {"keepalive", reader_keepalive}, {"response", reader_response},
        {"free", reader_gc}, {NULL, NULL}};
    aliocr_new_class(L, ALIOCR_HTTP_READER, meta, methods, "http_reader", http_reader_new);
    lua_pushcfunction(L, core_transport_failure);
    lua_setfield(L, -2, "transport_failure");
}
