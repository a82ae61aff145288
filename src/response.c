/*
 * The response table: what a transport returns for one attempt, the same
 * for the libcurl engine and the nginx transport (the transport contract;
 * lua/aliocr/errors.lua and lua/aliocr/result.lua read only this):
 *
 *   status     integer: the final answer's HTTP status; 0 when no status
 *              line arrived
 *   headers    table: the answer's X-Ca-* headers (the gateway's) and its
 *              Retry-After, names lower-cased, repeated ones joined with
 *              ", "; a storage
 *              request's (an OSS PUT...) has all of its answer's headers
 *   sent       boolean: some of the request may have reached the gateway
 *              (false: nothing of it did, so nothing can be billed)
 *   too_large  boolean: the answer was abandoned, larger than max_bytes
 *   error      the transport failure's name (libcurl's CURLcode names
 *              without CURLE_, e.g. "OPERATION_TIMEDOUT"), nil when the
 *              answer arrived whole
 *   message    the failure's words (with error)
 *   json       the decoded body, when it is JSON (whole numbers integers);
 *              never for a storage request, whose body is XML
 *   json_error why the body is not JSON (with body)
 *   body       string: the body, when json is absent
 *   id         integer: the engine's transfer id (engine:add's); absent
 *              from perform inside nginx
 *
 * A resend the transport refused (a kept-alive connection died before any
 * byte of the answer, after the request went out) is error GOT_NOTHING,
 * worded here.
 */
#include <string.h>
#include <strings.h>

#include "aliocr.h"

void aliocr_push_headers(lua_State *L, const char *p, size_t n, int only_ca)
{
    const char *end, *first, *s;
    lua_newtable(L);
    if (!p || n == 0)
        return; /* no header line at all (and no pointer arithmetic on NULL) */
    end = p + n;
    first = p;
    /* The last status line: interim (1xx) and proxy answers come before it. */
    for (s = p; s < end; s++) {
        if ((s == p || s[-1] == '\n') && end - s >= 5 && memcmp(s, "HTTP/", 5) == 0)
            first = s;
    }
    for (s = first; s < end;) {
        const char *eol = memchr(s, '\n', (size_t)(end - s));
        const char *line_end = eol ? eol : end;
        const char *colon = memchr(s, ':', (size_t)(line_end - s));
        /* A header line (not a status line: those are checked within the
         * line, which may be shorter than "HTTP/" at the buffer's end). */
        if (colon && colon > s && !(line_end - s >= 5 && memcmp(s, "HTTP/", 5) == 0)) {
            const char *v = colon + 1, *ve = line_end;
            size_t nlen = (size_t)(colon - s);
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            if (!only_ca || (nlen >= 5 && strncasecmp(s, "x-ca-", 5) == 0) ||
                (nlen == 11 && strncasecmp(s, "retry-after", 11) == 0)) {
                size_t i;
                luaL_Buffer b;
                luaL_buffinit(L, &b);
                for (i = 0; i < nlen; i++) {
                    unsigned char c = (unsigned char)s[i];
                    luaL_addchar(&b, (char)(c >= 'A' && c <= 'Z' ? c + 32 : c));
                }
                luaL_pushresult(&b);
                lua_pushvalue(L, -1);
                lua_rawget(L, -3);
                if (lua_isnil(L, -1)) {
                    lua_pop(L, 1);
                    lua_pushlstring(L, v, (size_t)(ve - v));
                } else {
                    lua_pushliteral(L, ", ");
                    lua_pushlstring(L, v, (size_t)(ve - v));
                    lua_concat(L, 3);
                }
                lua_rawset(L, -3);
            }
        }
        s = eol ? eol + 1 : end;
    }
}

static void push_body(lua_State *L, const aliocr_answer *a)
{
    lua_pushlstring(L, a->body ? a->body : "", a->body ? a->body_len : 0);
    lua_setfield(L, -2, "body");
}

void aliocr_push_response(lua_State *L, int decode, const aliocr_answer *a)
{
    lua_createtable(L, 0, 8);
    if (a->id > 0) {
        lua_pushinteger(L, (lua_Integer)a->id);
        lua_setfield(L, -2, "id");
    }
    lua_pushinteger(L, a->status);
    lua_setfield(L, -2, "status");
    lua_pushboolean(L, a->sent);
    lua_setfield(L, -2, "sent");
    lua_pushboolean(L, a->too_large);
    lua_setfield(L, -2, "too_large");
    aliocr_push_headers(L, a->head, a->head ? a->head_len : 0, !a->all_headers);
    lua_setfield(L, -2, "headers");
    if (a->resend_refused) {
        const char *why = a->message && a->message[0] ? a->message : NULL;
        lua_pushliteral(L, "GOT_NOTHING");
        lua_setfield(L, -2, "error");
        lua_pushfstring(L, "the kept-alive connection closed before any byte of the answer%s%s%s; "
                        "the request was not sent again, since the gateway may have received it",
                        why ? " (" : "", why ? why : "", why ? ")" : "");
        lua_setfield(L, -2, "message");
        push_body(L, a);
    } else if (a->error) {
        lua_pushstring(L, a->error);
        lua_setfield(L, -2, "error");
        lua_pushstring(L, a->message ? a->message : a->error);
        lua_setfield(L, -2, "message");
        push_body(L, a);
    } else if (!a->too_large && decode && a->body && a->body_len > 0) {
        /* JSON to tables, now that the answer is whole. */
        if (aliocr_decode_json(L, decode, a->body, a->body_len)) {
            lua_setfield(L, -2, "json");
        } else {
            lua_setfield(L, -2, "json_error");
            push_body(L, a);
        }
    } else {
        push_body(L, a);
    }
}
