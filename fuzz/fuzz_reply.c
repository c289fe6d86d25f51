/*
** fuzz_reply.c: libFuzzer harness for the code that turns an answer
** (status, Retry-After, transport result, body) into a result or an
** `err`: cmp_reply, then cmp_finish for the shapes that read into the
** decoded answer, and cmp_scrub_err on every err.
**
** Input: 5 header bytes, then the body.
**   [0..1] status - 100, big-endian (0xffff: no status at all)
**   [2]    Retry-After in quarter seconds, 0xff: none
**   [3]    transport result: < 0x80 CURLE_OK, else one of `codes` below
**   [4]    bit 0: the body passed the size cap
**          bit 1: the body starts with header lines, up to an empty
**                 line, fed to the header callback (Retry-After then
**                 comes from them, not from [2])
**
** Each input runs through every shape.  Besides the sanitizers, the
** harness aborts when an err breaks the README's contract: a kind that
** is not one of the documented ones, a message that is not a string of
** at most 400 bytes (plus "...") or that holds a control character or
** the client's token or API key, a code that holds either, a retryable
** that is not a boolean; and a Retry-After read from headers that is
** neither absent (-1) nor a finite number of seconds from 0.
**
**   make fuzz [FUZZ_SECONDS=60]
*/
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#include "../src/campaign.h"

int luaopen_campaign(lua_State *L);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TOKEN "fuzz-token-0123456789"
#define API_KEY "fuzz-api-key-0123456789"

static lua_State *L;
static Client *client;

static const CURLcode codes[] = {
  CURLE_COULDNT_CONNECT, CURLE_OPERATION_TIMEDOUT, CURLE_PARTIAL_FILE,
  CURLE_FILESIZE_EXCEEDED, CURLE_BAD_CONTENT_ENCODING,
  CURLE_WEIRD_SERVER_REPLY, CURLE_PEER_FAILED_VERIFICATION,
  CURLE_GOT_NOTHING, CURLE_RECV_ERROR, CURLE_SEND_ERROR,
  CURLE_SSL_CONNECT_ERROR, CURLE_WRITE_ERROR, CURLE_ABORTED_BY_CALLBACK,
  CURLE_UNSUPPORTED_PROTOCOL, CURLE_TOO_MANY_REDIRECTS, (CURLcode)99
};

static void setup(void) {
  L = luaL_newstate();
  luaL_openlibs(L);
  luaL_requiref(L, "campaign", luaopen_campaign, 1);
  lua_getfield(L, -1, "new");
  lua_createtable(L, 0, 4);
  lua_pushliteral(L, "acme");
  lua_setfield(L, -2, "org");
  lua_pushliteral(L, API_KEY);
  lua_setfield(L, -2, "api_key");
  lua_pushliteral(L, TOKEN);
  lua_setfield(L, -2, "access_token");
  lua_pushliteral(L, "http://127.0.0.1:9");
  lua_setfield(L, -2, "base_url");
  lua_call(L, 1, 1);
  client = luaL_checkudata(L, -1, CLIENT_MT);
  lua_setfield(L, LUA_REGISTRYINDEX, "fuzz.client");
  lua_settop(L, 0);
}

static void check_err(lua_State *S, int idx) {
  static const char *const kinds[] = { "http", "network", "protocol",
                                       "auth", "usage", NULL };
  const char *kind, *msg;
  size_t len, i;
  int k;

  idx = lua_absindex(S, idx);
  if (lua_type(S, idx) != LUA_TTABLE)
    abort();
  lua_getfield(S, idx, "kind");
  kind = lua_tostring(S, -1);
  if (kind == NULL)
    abort();
  for (k = 0; kinds[k] && strcmp(kinds[k], kind) != 0; k++)
    ;
  if (kinds[k] == NULL)
    abort();
  lua_getfield(S, idx, "message");
  msg = lua_tolstring(S, -1, &len);
  if (lua_type(S, -1) != LUA_TSTRING || len > 403)
    abort();
  for (i = 0; i < len; i++)
    if ((unsigned char)msg[i] < 32 || msg[i] == 127)
      abort();
  if (strstr(msg, TOKEN) || strstr(msg, API_KEY))
    abort();
  lua_getfield(S, idx, "retryable");
  if (lua_type(S, -1) != LUA_TBOOLEAN)
    abort();
  if (lua_getfield(S, idx, "code") == LUA_TSTRING &&
      (strstr(lua_tostring(S, -1), TOKEN) || strstr(lua_tostring(S, -1),
                                                    API_KEY)))
    abort();
  luaL_tolstring(S, idx, NULL);   /* the err's __tostring */
  lua_pop(S, 5);
}

/* Runs one input through every shape; under lua_pcall. */
static int run(lua_State *S) {
  const Reply *r = lua_touserdata(S, 1);
  int shape;

  for (shape = SHAPE_ANY; shape <= SHAPE_PAGE; shape++) {
    int top = lua_gettop(S), acc;
    Slot *s = &client->slots[0];

    lua_newtable(S);
    acc = lua_gettop(S);
    if (cmp_reply(S, r, shape)) {
      int done;
      s->shape = shape;
      s->reply.status = r->status;
      done = cmp_finish(S, client, s, acc);
      s->state = SLOT_FREE;
      if (done == 0) {
        cmp_scrub_err(S, client, -1);
        check_err(S, -1);
      }
    }
    else {
      cmp_scrub_err(S, client, -1);
      check_err(S, -1);
    }
    lua_settop(S, top);
  }
  return 0;
}

/*
** Feeds the header lines at the start of the body to the header
** callback, as libcurl would (one line at a time, CR LF kept); returns
** how many bytes they took, the empty line that ends them included.
*/
static size_t feed_headers(Reply *r, const uint8_t *p, size_t n) {
  size_t at = 0;

  while (at < n) {
    const uint8_t *nl = memchr(p + at, '\n', n - at);
    size_t len = nl ? (size_t)(nl - (p + at)) + 1 : n - at;
    char line[1024];
    int blank = len <= 2 && (p[at] == '\n' || p[at] == '\r');
    if (len < sizeof line) {
      memcpy(line, p + at, len);
      if (cmp_on_header(line, 1, len, r) != len)
        abort();
    }
    at += len;
    if (blank)
      break;
  }
  if (!(r->retry_after == -1 ||
        (r->retry_after >= 0 && isfinite(r->retry_after))))
    abort();
  return at;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  Reply r;
  unsigned st;
  size_t skip = 0;

  if (L == NULL)
    setup();
  if (size < 5)
    return 0;
  memset(&r, 0, sizeof r);
  st = (unsigned)data[0] << 8 | data[1];
  r.status = st == 0xffff ? 0 : 100 + (long)(st % 600);
  r.retry_after = data[2] == 0xff ? -1 : data[2] / 4.0;
  r.rc = data[3] < 0x80 ? CURLE_OK
         : codes[(data[3] - 0x80) % (sizeof codes / sizeof codes[0])];
  r.over = data[4] & 1;
  if (data[4] & 2) {
    r.retry_after = -1;
    skip = feed_headers(&r, data + 5, size - 5);
  }
  r.len = size - 5 - skip;
  r.size = r.len + 1;
  r.max = 8 * 1024 * 1024;
  /* as the write callback leaves it: the bytes, then a NUL */
  r.body = malloc(r.size);
  if (r.body == NULL)
    return 0;
  memcpy(r.body, data + 5 + skip, r.len);
  r.body[r.len] = '\0';

  lua_pushcfunction(L, run);
  lua_pushlightuserdata(L, &r);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK)
    abort();   /* turning an answer into a value must never raise */
  free(r.body);
  lua_settop(L, 0);
  return 0;
}
