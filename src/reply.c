/*
** reply.c: the JSON bridge and the mapping of an answer (status,
** headers, body) or a transport failure into a result or an `err`.
**
** JSON goes through a private lua-cjson instance, so the user's own
** cjson settings are never touched.  Debian's cjson 2.1.0 decodes
** every number as a float and encodes with 14 significant digits; the
** two walks below make up for both: integral values come back as
** integers, and a value cjson would send inexactly is refused.
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "campaign.h"

#define MAX_DEPTH 1000   /* as cjson's own limit */
#define MAX_MESSAGE 400  /* bytes of a server's message kept in an err */
/* Kept until the secrets are out: longer than any token, so that the
** cut at MAX_MESSAGE can never leave part of one behind. */
#define RAW_MESSAGE (MAX_MESSAGE + 8192)
#define MAX_CODE 64      /* bytes of an error code kept */

/* ---------------------------------------------------------------- */
/* numbers */

#if LUA_VERSION_NUM >= 503
/* 2^53: beyond it a double no longer holds every integer. */
#define EXACT_LIMIT 9007199254740992.0

/* Turns integral floats in the table at the top into integers. */
static void integerize(lua_State *L, int depth) {
  luaL_checkstack(L, 3, "JSON nested too deep");
  lua_pushnil(L);
  while (lua_next(L, -2) != 0) {
    int t = lua_type(L, -1);
    if (t == LUA_TNUMBER && !lua_isinteger(L, -1)) {
      double d = lua_tonumber(L, -1);
      if (d == floor(d) && fabs(d) < EXACT_LIMIT) {
        lua_pushvalue(L, -2);
        lua_pushinteger(L, (lua_Integer)d);
        lua_rawset(L, -5);
      }
    }
    else if (t == LUA_TTABLE && depth < MAX_DEPTH)
      integerize(L, depth + 1);
    lua_pop(L, 1);
  }
}
#endif

/*
** Would cjson (14 significant digits) write this number so that it
** reads back as the same value?
*/
static int exact_number(lua_State *L, int idx) {
  char text[64];
  double d = lua_tonumber(L, idx);

  if (isnan(d) || isinf(d))
    return 0;
  snprintf(text, sizeof text, "%.14g", d);
  if (strtod(text, NULL) != d)
    return 0;
#if LUA_VERSION_NUM >= 503
  if (lua_isinteger(L, idx)) {
    lua_Integer i = lua_tointeger(L, idx);
    if (fabs(d) >= EXACT_LIMIT || (lua_Integer)d != i)
      return 0;
  }
#endif
  return 1;
}

/*
** Pushes the number at idx as text, all its digits: Lua's own tostring
** keeps 14, which can show the very number refused as one that fits.
*/
static const char *full_number(lua_State *L, int idx) {
  char text[64];

#if LUA_VERSION_NUM >= 503
  if (lua_isinteger(L, idx))
    return luaL_tolstring(L, idx, NULL);
#endif
  snprintf(text, sizeof text, "%.17g", (double)lua_tonumber(L, idx));
  lua_pushstring(L, text);
  return lua_tostring(L, -1);
}

/*
** Checks every number in the value at idx; raises on the first that
** cannot be sent exactly, naming the key it is under.
*/
static void check_numbers(lua_State *L, int idx, const char *what,
                          int depth) {
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) != LUA_TTABLE)
    return;
  if (depth > MAX_DEPTH)
    luaL_error(L, "%s (tables nested too deep)", what);
  luaL_checkstack(L, 4, "tables nested too deep");
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    if (lua_type(L, -1) == LUA_TNUMBER && !exact_number(L, -1)) {
      const char *key = luaL_tolstring(L, -2, NULL);
      luaL_error(L, "%s (the number %s under key '%s' cannot be sent "
                 "exactly as JSON: at most 14 significant digits, no NaN "
                 "or infinity)", what, full_number(L, -2), key);
    }
    check_numbers(L, -1, what, depth + 1);
    lua_pop(L, 1);
  }
}

/* ---------------------------------------------------------------- */
/* the cjson bridge */

/*
** Decodes s; pushes the value and returns 1, or returns 0 (nothing
** pushed) when s is not JSON.  A quiet call: the error it catches is
** cjson's complaint, or no memory, which goes on up.
*/
int cmp_decode(lua_State *L, const char *s, size_t len) {
  int status;

  cmp_pushmodstate(L, "decode");
  lua_pushlstring(L, s, len);
  status = cmp_quiet_call(L, 1, 1);
  if (status == LUA_ERRRUN) {
    lua_pop(L, 1);
    return 0;
  }
  if (status != LUA_OK)
    lua_error(L);
#if LUA_VERSION_NUM >= 503
  if (lua_type(L, -1) == LUA_TTABLE)
    integerize(L, 1);
  else if (lua_type(L, -1) == LUA_TNUMBER) {
    double d = lua_tonumber(L, -1);
    if (d == floor(d) && fabs(d) < EXACT_LIMIT) {
      lua_pop(L, 1);
      lua_pushinteger(L, (lua_Integer)d);
    }
  }
#endif
  return 1;
}

/*
** Replaces the table at idx by its JSON text; raises on what JSON
** cannot carry, with `what` ("bad argument #n to 'f'") first.
*/
void cmp_encode(lua_State *L, int idx, const char *what) {
  int status;

  idx = lua_absindex(L, idx);
  check_numbers(L, idx, what, 0);
  cmp_pushmodstate(L, "encode");
  lua_pushvalue(L, idx);
  status = cmp_quiet_call(L, 1, 1);
  if (status == LUA_ERRRUN) {
    const char *msg = lua_tostring(L, -1);
    luaL_error(L, "%s (%s)", what, msg ? msg : "cannot be sent as JSON");
  }
  if (status != LUA_OK)
    lua_error(L);
  lua_replace(L, idx);
}

/* ---------------------------------------------------------------- */
/* errors */

/*
** "campaign: <kind> [status] [code][: message]".  Each piece is made a
** string before it goes into the buffer: the buffer may only grow while
** nothing of ours sits above it on the stack.
*/
static int err_tostring(lua_State *L) {
  static const char *const fields[] = { "kind", "status", "code",
                                        "message" };
  static const char *const before[] = { "campaign: ", " ", " ", ": " };
  int i;

  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  for (i = 0; i < 4; i++) {
    if (lua_getfield(L, 1, fields[i]) == LUA_TNIL) {
      lua_pop(L, 1);
      continue;
    }
    lua_pushstring(L, before[i]);
    luaL_tolstring(L, -2, NULL);
    lua_remove(L, -3);
  }
  lua_concat(L, lua_gettop(L) - 1);
  return 1;
}

void cmp_open_errors(lua_State *L) {
  if (luaL_newmetatable(L, ERROR_MT)) {
    lua_pushcfunction(L, err_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
}

static void push_message(lua_State *L, const char *s, size_t len);

/*
** Every err is made here.  Its code and message may come from a server
** (a gateway's code, a token endpoint's description): both are made
** printable here, so no err ever carries a line break or an escape
** sequence into a log.
*/
void cmp_pusherror(lua_State *L, const char *kind, long status,
                   const char *code, const char *message, int retryable) {
  lua_createtable(L, 0, 6);
  lua_pushstring(L, kind);
  lua_setfield(L, -2, "kind");
  if (status > 0) {
    lua_pushinteger(L, status);
    lua_setfield(L, -2, "status");
  }
  if (code) {
    push_message(L, code, strlen(code));
    lua_setfield(L, -2, "code");
  }
  push_message(L, message, strlen(message));
  lua_setfield(L, -2, "message");
  lua_pushboolean(L, retryable);
  lua_setfield(L, -2, "retryable");
  luaL_setmetatable(L, ERROR_MT);
}

/* Replaces every occurrence of secret in field of the table at idx. */
static void scrub_field(lua_State *L, int idx, const char *field,
                        const char *secret) {
  if (lua_getfield(L, idx, field) == LUA_TSTRING &&
      strstr(lua_tostring(L, -1), secret) != NULL) {
    luaL_gsub(L, lua_tostring(L, -1), secret, "***");
    lua_setfield(L, idx, field);
  }
  lua_pop(L, 1);
}

/* Cuts a string field of the err at idx at max bytes. */
static void cut_field(lua_State *L, int idx, const char *field,
                      size_t max) {
  size_t len;
  const char *m;

  if (lua_getfield(L, idx, field) == LUA_TSTRING) {
    m = lua_tolstring(L, -1, &len);
    if (len > max) {
      lua_pushlstring(L, m, max);
      lua_pushliteral(L, "...");
      lua_concat(L, 2);
      lua_setfield(L, idx, field);
    }
  }
  lua_pop(L, 1);
}

/*
** Takes every secret of the client out of the err at idx, as it is and
** form-encoded (a server may echo a header or the token form), then
** cuts the message short.  Every err goes through here before the
** caller sees it.
*/
void cmp_scrub_err(lua_State *L, const Client *c, int idx) {
  const char *secrets[4];
  int i;

  idx = lua_absindex(L, idx);
  secrets[0] = c->token;
  secrets[1] = c->api_key;
  secrets[2] = c->secret;
  secrets[3] = c->old_token;
  for (i = 0; i < 4; i++) {
    luaL_Buffer b;
    if (secrets[i] == NULL || strlen(secrets[i]) < 4)
      continue;
    scrub_field(L, idx, "message", secrets[i]);
    scrub_field(L, idx, "code", secrets[i]);

    /* form-encoded in Lua's own memory: nothing to free if it raises */
    luaL_buffinit(L, &b);
    cmp_add_escaped(&b, secrets[i], strlen(secrets[i]));
    luaL_pushresult(&b);
    if (strcmp(lua_tostring(L, -1), secrets[i]) != 0) {
      scrub_field(L, idx, "message", lua_tostring(L, -1));
      scrub_field(L, idx, "code", lua_tostring(L, -1));
    }
    lua_pop(L, 1);
  }
  cut_field(L, idx, "message", MAX_MESSAGE);
  cut_field(L, idx, "code", MAX_CODE);
}

/* libcurl's name for its error, without the CURLE_ prefix. */
static const char *curl_code_name(CURLcode rc) {
  switch (rc) {
    case CURLE_COULDNT_RESOLVE_PROXY: return "COULDNT_RESOLVE_PROXY";
    case CURLE_COULDNT_RESOLVE_HOST: return "COULDNT_RESOLVE_HOST";
    case CURLE_COULDNT_CONNECT: return "COULDNT_CONNECT";
    case CURLE_OPERATION_TIMEDOUT: return "OPERATION_TIMEDOUT";
    case CURLE_GOT_NOTHING: return "GOT_NOTHING";
    case CURLE_SEND_ERROR: return "SEND_ERROR";
    case CURLE_RECV_ERROR: return "RECV_ERROR";
    case CURLE_PARTIAL_FILE: return "PARTIAL_FILE";
    case CURLE_WRITE_ERROR: return "WRITE_ERROR";
    case CURLE_FILESIZE_EXCEEDED: return "FILESIZE_EXCEEDED";
    case CURLE_BAD_CONTENT_ENCODING: return "BAD_CONTENT_ENCODING";
    case CURLE_WEIRD_SERVER_REPLY: return "WEIRD_SERVER_REPLY";
    case CURLE_PEER_FAILED_VERIFICATION: return "PEER_FAILED_VERIFICATION";
    case CURLE_SSL_CONNECT_ERROR: return "SSL_CONNECT_ERROR";
    case CURLE_SSL_CACERT_BADFILE: return "SSL_CACERT_BADFILE";
    case CURLE_UNSUPPORTED_PROTOCOL: return "UNSUPPORTED_PROTOCOL";
    case CURLE_URL_MALFORMAT: return "URL_MALFORMAT";
    case CURLE_OUT_OF_MEMORY: return "OUT_OF_MEMORY";
    case CURLE_TOO_MANY_REDIRECTS: return "TOO_MANY_REDIRECTS";
    case CURLE_HTTP2: return "HTTP2";
    default: return "CURL_ERROR";
  }
}

/* A failure that a later try may not meet. */
static int transient(CURLcode rc) {
  return rc == CURLE_COULDNT_CONNECT || rc == CURLE_OPERATION_TIMEDOUT ||
         rc == CURLE_GOT_NOTHING || rc == CURLE_SEND_ERROR ||
         rc == CURLE_RECV_ERROR || rc == CURLE_PARTIAL_FILE;
}

static void push_transport_error(lua_State *L, const Reply *r) {
  if (r->over || r->rc == CURLE_FILESIZE_EXCEEDED) {
    cmp_pusherror(L, "protocol", r->status, "FILESIZE_EXCEEDED",
                  "the answer is larger than max_body", 0);
    return;
  }
  if (r->rc == CURLE_BAD_CONTENT_ENCODING ||
      r->rc == CURLE_WEIRD_SERVER_REPLY) {
    cmp_pusherror(L, "protocol", r->status, curl_code_name(r->rc),
                  curl_easy_strerror(r->rc), 0);
    return;
  }
  cmp_pusherror(L, "network", r->status > 0 ? r->status : 0,
                curl_code_name(r->rc), curl_easy_strerror(r->rc),
                transient(r->rc));
}

/* A Campaign id such as "RST-360011" at the start of a message. */
static size_t campaign_id(const char *m) {
  size_t i = 0, digits = 0;
  while (m[i] >= 'A' && m[i] <= 'Z')
    i++;
  if (i < 2 || i > 6 || m[i] != '-')
    return 0;
  i++;
  while (m[i] >= '0' && m[i] <= '9')
    i++, digits++;
  return digits >= 3 ? i : 0;
}

/*
** The length of the UTF-8 control at s: a C1 control (U+0080 to U+009F,
** the 8-bit CSI among them) or U+2028/U+2029, which some terminals and
** log viewers take as line breaks; 0 for anything else.
*/
static size_t utf8_control(const char *s, size_t len) {
  const unsigned char *u = (const unsigned char *)s;
  if (len >= 2 && u[0] == 0xC2 && u[1] >= 0x80 && u[1] <= 0x9F)
    return 2;
  if (len >= 3 && u[0] == 0xE2 && u[1] == 0x80 &&
      (u[2] == 0xA8 || u[2] == 0xA9))
    return 3;
  return 0;
}

/*
** Pushes a printable copy of at most RAW_MESSAGE bytes of s; the cut to
** MAX_MESSAGE comes once the secrets are out (cmp_scrub_err).
*/
static void push_message(lua_State *L, const char *s, size_t len) {
  luaL_Buffer b;
  size_t i;

  while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r' ||
                     s[len - 1] == ' '))
    len--;
  luaL_buffinit(L, &b);
  for (i = 0; i < len && i < RAW_MESSAGE; i++) {
    unsigned char ch = (unsigned char)s[i];
    size_t n = utf8_control(s + i, len - i);
    if (n > 0) {   /* a C1 control or a line separator, in UTF-8 */
      luaL_addchar(&b, ' ');
      i += n - 1;
    }
    else
      luaL_addchar(&b, ch < 32 || ch == 127 ? ' ' : (char)ch);
  }
  if (len > RAW_MESSAGE)
    luaL_addstring(&b, "...");
  luaL_pushresult(&b);
}

/*
** Reads the message and code out of an error body: the gateway's
** {"error_code", "message"}, the {"code", "message"} of a bad URI,
** Campaign's message that starts with its own id, a bare JSON
** string, or text that is not JSON at all.  Pushes message and code
** (code may be nil).
*/
static void read_error_body(lua_State *L, const Reply *r) {
  int top = lua_gettop(L);

  if (r->len > 0 && cmp_decode(L, r->body, r->len)) {
    int v = lua_gettop(L);
    if (lua_type(L, v) == LUA_TTABLE) {
      const char *fields[] = { "message", "error_description", "error",
                               "detail", "title", NULL };
      int i;
      lua_pushnil(L);
      for (i = 0; fields[i] != NULL; i++) {
        if (lua_getfield(L, v, fields[i]) == LUA_TSTRING)
          break;
        lua_pop(L, 1);
      }
      if (fields[i] == NULL)
        lua_pushliteral(L, "");
      lua_remove(L, -2);
      /* the gateway's own code wins over anything in the message */
      if (lua_getfield(L, v, "error_code") == LUA_TNUMBER)
        lua_pushstring(L, lua_tostring(L, -1)), lua_remove(L, -2);
      else if (lua_type(L, -1) != LUA_TSTRING)
        lua_pop(L, 1), lua_pushnil(L);
    }
    else if (lua_type(L, v) == LUA_TSTRING) {
      lua_pushvalue(L, v);
      lua_pushnil(L);
    }
    else {
      lua_pushliteral(L, "");
      lua_pushnil(L);
    }
    lua_remove(L, v);
  }
  else {
    push_message(L, r->body ? r->body : "", r->len);
    lua_pushnil(L);
  }

  /* keep the message printable and short */
  {
    size_t len;
    const char *m = lua_tolstring(L, -2, &len);
    push_message(L, m, len);
    lua_replace(L, -3);
  }

  /* no gateway code: take a Campaign id from the message's start */
  if (lua_isnil(L, -1)) {
    const char *m = lua_tostring(L, -2);
    size_t n = campaign_id(m);
    if (n > 0) {
      lua_pop(L, 1);
      lua_pushlstring(L, m, n);
    }
  }
  lua_settop(L, top + 2);
}

static int http_retryable(long status, const char *code, double after) {
  if (status == 429) {
    if (code && (strcmp(code, "429001") == 0 ||
                 strcmp(code, "429002") == 0))
      return 0;
    return after >= 0 || (code && strcmp(code, "429050") == 0);
  }
  return status == 502 || status == 503 || status == 504;
}

static void push_http_error(lua_State *L, const Reply *r) {
  const char *code, *message;
  int top;

  read_error_body(L, r);
  top = lua_gettop(L);
  code = lua_tostring(L, top);
  message = lua_tostring(L, top - 1);
  if (message[0] == '\0')
    message = r->status >= 300 && r->status < 400
              ? "redirect not followed" : "no message";
  cmp_pusherror(L, "http", r->status, code, message,
                http_retryable(r->status, code, r->retry_after));
  if (r->retry_after >= 0) {
    lua_pushnumber(L, r->retry_after);
    lua_setfield(L, -2, "retry_after");
  }
  lua_replace(L, top - 1);
  lua_pop(L, 1);
}

/*
** The one place an answer becomes a result or an `err`.  Pushes one
** value; returns 1 for a result and 0 for an err.  A 2xx with an empty
** body, or any body for SHAPE_TRUE, gives true.
*/
int cmp_reply(lua_State *L, const Reply *r, int shape) {
  if (r->rc != CURLE_OK || r->over) {
    push_transport_error(L, r);
    return 0;
  }
  if (r->status < 200 || r->status >= 300) {
    push_http_error(L, r);
    return 0;
  }
  if (shape == SHAPE_TRUE || r->len == 0) {
    if (r->len == 0 && shape != SHAPE_TRUE && shape != SHAPE_ANY) {
      cmp_pusherror(L, "protocol", r->status, "EMPTY_BODY",
                    "the answer has no body", 0);
      return 0;
    }
    lua_pushboolean(L, 1);
    return 1;
  }
  if (!cmp_decode(L, r->body, r->len)) {
    cmp_pusherror(L, "protocol", r->status, "BAD_JSON",
                  "the answer is not JSON", 0);
    return 0;
  }
  if (shape != SHAPE_ANY && lua_type(L, -1) != LUA_TTABLE) {
    lua_pop(L, 1);
    cmp_pusherror(L, "protocol", r->status, "BAD_JSON",
                  "the answer is not a JSON object", 0);
    return 0;
  }
  return 1;
}
