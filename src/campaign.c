/*
** campaign.c: the module and the client object: options, life cycle,
** and the state every function shares.
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pthread.h>
#include <arpa/inet.h>
#include <sys/socket.h>

#include "campaign.h"

/* Keys of the module's private values in the registry. */
static const char STATE_KEY = 'S';

#define DEFAULT_BASE "https://mc.adobe.io"
#define DEFAULT_IMS "https://ims-na1.adobelogin.com"
#define DEFAULT_SCOPES "openid,AdobeID,campaign_sdk,read_organizations," \
  "additional_info.projectedProductContext,additional_info.roles," \
  "additional_info.job_function,campaign_config,session"

/* Pushes one of the module's private values: decode, encode, ... */
void cmp_pushmodstate(lua_State *L, const char *name) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &STATE_KEY);
  lua_getfield(L, -1, name);
  lua_remove(L, -2);
}

/* ---------------------------------------------------------------- */
/* the quiet thread */

/*
** Some protected calls catch an error that is an answer: cjson's
** complaint about a body is BAD_JSON, a bad op of a bulk run is that
** op's err.  They run on a thread of the module's own, which no hook
** reaches.  lua5.4 raises Ctrl-C from a hook it sets on the main thread,
** at whatever event comes next: in a protected call made there, the
** interrupt would be caught and taken for the answer.  This way it
** waits until the call is over, and rises on the caller's side.
**
** Calls the function below nargs arguments there, as lua_pcall would,
** and moves back what it left: nres results, or the error (status
** returned).
*/
int cmp_quiet_call(lua_State *L, int nargs, int nres) {
  lua_State *Q;
  int status;

  cmp_pushmodstate(L, "quiet");
  Q = lua_tothread(L, -1);
  lua_pop(L, 1);
  if (Q == L)   /* a quiet call nested in another */
    return lua_pcall(L, nargs, nres, 0);

  luaL_checkstack(L, nres > 1 ? nres : 1, "too many results");
  if (!lua_checkstack(Q, nargs + 1))
    luaL_error(L, "not enough memory");
  lua_xmove(L, Q, nargs + 1);
  status = lua_pcall(Q, nargs, nres, 0);
  lua_xmove(Q, L, lua_gettop(Q));
  return status;
}

Client *cmp_checkclient(lua_State *L, int idx) {
  Client *c = luaL_checkudata(L, idx, CLIENT_MT);
  if (c->closed)
    luaL_error(L, "attempt to use a closed campaign client");
  return c;
}

/* ---------------------------------------------------------------- */
/* life cycle */

void cmp_free_secret(char **p) {
  if (*p) {
    memset(*p, 0, strlen(*p));
    free(*p);
    *p = NULL;
  }
}

/* Releases everything; safe on a client half made, and idempotent. */
static void client_release(Client *c) {
  int i;

  for (i = 0; i < c->nslots; i++)
    cmp_slot_free(c, &c->slots[i]);
  free(c->slots);
  c->slots = NULL;
  c->nslots = 0;
  cmp_slot_free(c, &c->token_slot);
  if (c->multi)
    curl_multi_cleanup(c->multi);
  c->multi = NULL;
  cmp_free_headers(c->headers);
  curl_slist_free_all(c->form_headers);
  c->headers = c->form_headers = NULL;
  cmp_free_secret(&c->token);
  cmp_free_secret(&c->old_token);
  cmp_free_secret(&c->api_key);
  cmp_free_secret(&c->secret);
  free(c->origin), free(c->base), free(c->resource), free(c->field);
  free(c->org), free(c->client_id), free(c->scopes), free(c->ims_url);
  free(c->ca_file), free(c->proxy);
  c->origin = c->base = c->resource = c->field = NULL;
  c->org = c->client_id = c->scopes = c->ims_url = NULL;
  c->ca_file = c->proxy = NULL;
  c->closed = 1;
}

/*
** close, and __close of a <close> variable.  A call's hook, on_result or
** op source may ask to close the client the call runs on: the call
** still needs its handles, so that raises.  (__gc never meets a busy
** client: the call holds it.)
*/
static int client_close(lua_State *L) {
  Client *c = luaL_checkudata(L, 1, CLIENT_MT);
  int busy = c->in_bulk || (c->nslots > 0 && cmp_busy(c));

  if (busy && !c->closed)
    return luaL_error(L, "cannot close a client while a call on it runs");
  client_release(c);
  return 0;
}

static int client_gc(lua_State *L) {
  client_release(luaL_checkudata(L, 1, CLIENT_MT));
  return 0;
}

static int client_tostring(lua_State *L) {
  Client *c = luaL_checkudata(L, 1, CLIENT_MT);
  if (c->closed)
    lua_pushfstring(L, "campaign client (closed): %p", (void *)c);
  else
    lua_pushfstring(L, "campaign client (%s): %p", c->org, (void *)c);
  return 1;
}

/* ---------------------------------------------------------------- */
/* options */

typedef struct Options {
  const char *org, *api_key, *token, *base_url, *resource, *field;
  const char *client_id, *secret, *ims_url, *ca_file, *proxy;
  double timeout, connect_timeout, stall_timeout, max_wait, rate;
  double max_body, retries;
  int scopes;   /* stack index of the scopes value, or 0 */
  int hook;     /* stack index of the hook, or 0 */
} Options;

typedef enum { T_STRING, T_NUMBER, T_INT, T_SCOPES, T_FUNCTION } OptType;

typedef struct Option {
  const char *name;
  OptType type;
  size_t offset;
} Option;

#define OPT(name, type, field) { name, type, offsetof(Options, field) }
static const Option options[] = {
  OPT("org", T_STRING, org),
  OPT("api_key", T_STRING, api_key),
  OPT("access_token", T_STRING, token),
  OPT("base_url", T_STRING, base_url),
  OPT("resource", T_STRING, resource),
  OPT("ccpa_optout_field", T_STRING, field),
  OPT("client_id", T_STRING, client_id),
  OPT("client_secret", T_STRING, secret),
  OPT("ims_url", T_STRING, ims_url),
  OPT("ca_file", T_STRING, ca_file),
  OPT("proxy", T_STRING, proxy),
  OPT("timeout", T_NUMBER, timeout),
  OPT("connect_timeout", T_NUMBER, connect_timeout),
  OPT("stall_timeout", T_NUMBER, stall_timeout),
  OPT("max_retry_wait", T_NUMBER, max_wait),
  OPT("rate_limit", T_NUMBER, rate),
  OPT("max_body", T_INT, max_body),
  OPT("retries", T_INT, retries),
  OPT("scopes", T_SCOPES, scopes),
  OPT("on_request", T_FUNCTION, hook),
  { NULL, T_STRING, 0 }
};
#undef OPT

static int opt_error(lua_State *L, const char *name, const char *msg) {
  return luaL_error(L, "bad option '%s' to 'campaign.new' (%s)", name,
                    msg);
}

/* A string fit for a header line or a URL: no control characters. */
int cmp_clean_string(const char *s, size_t len) {
  size_t i;
  for (i = 0; i < len; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch < 32 || ch == 127)
      return 0;
  }
  return len > 0;
}

static void read_option(lua_State *L, const Option *o, Options *opts) {
  void *p = (char *)opts + o->offset;
  int t = lua_type(L, -1);

  switch (o->type) {
    case T_STRING: {
      size_t len;
      const char *s;
      if (t != LUA_TSTRING)
        opt_error(L, o->name, "a string expected");
      s = lua_tolstring(L, -1, &len);
      if (!cmp_clean_string(s, len))
        opt_error(L, o->name, "empty, or holds a control character");
      *(const char **)p = s;
      break;
    }
    case T_NUMBER:
    case T_INT: {
      double d;
      if (t != LUA_TNUMBER)
        opt_error(L, o->name, "a number expected");
      d = lua_tonumber(L, -1);
      if (!(d >= 0) || d > 1e9)
        opt_error(L, o->name, "a non-negative number expected");
      if (o->type == T_INT && d != (double)(long)d)
        opt_error(L, o->name, "an integer expected");
      *(double *)p = d;
      break;
    }
    case T_SCOPES:
      if (t != LUA_TTABLE && t != LUA_TSTRING)
        opt_error(L, o->name, "an array of strings expected");
      *(int *)p = lua_gettop(L);
      break;
    case T_FUNCTION:
      if (t != LUA_TFUNCTION)
        opt_error(L, o->name, "a function expected");
      *(int *)p = lua_gettop(L);
      break;
  }
}

/*
** Reads the options table at index 1.  The values stay on the stack,
** so the strings the Options point to stay alive.
*/
static void read_options(lua_State *L, Options *opts) {
  luaL_checktype(L, 1, LUA_TTABLE);
  memset(opts, 0, sizeof *opts);
  opts->timeout = 30;
  opts->connect_timeout = 10;
  opts->stall_timeout = 30;
  opts->max_wait = 60;
  opts->max_body = 8 * 1024 * 1024;
  opts->retries = 2;

  lua_pushnil(L);
  while (lua_next(L, 1) != 0) {
    const Option *o;
    luaL_checkstack(L, 4, "too many options");
    const char *key;
    size_t klen;
    if (lua_type(L, -2) != LUA_TSTRING)
      luaL_error(L, "bad argument #1 to 'campaign.new' "
                 "(option names must be strings)");
    key = lua_tolstring(L, -2, &klen);
    for (o = options; o->name != NULL; o++)
      if (strcmp(o->name, key) == 0 && strlen(key) == klen)
        break;
    if (o->name == NULL)
      opt_error(L, key, "unknown option");
    read_option(L, o, opts);
    /* keep the value: leave a copy of the key for lua_next */
    lua_pushvalue(L, -2);
  }
}

/*
** Is the host a loopback address: 127.0.0.0/8, ::1 or "localhost"?  An
** address, not a name that looks like one ("127.example.com").
*/
static int loopback(const char *host) {
  unsigned char a[16];
  char v6[64];
  size_t n = strlen(host);

  if (strcmp(host, "localhost") == 0)
    return 1;
  if (inet_pton(AF_INET, host, a) == 1)
    return a[0] == 127;
  if (n < 3 || n >= sizeof v6 || host[0] != '[' || host[n - 1] != ']')
    return 0;
  memcpy(v6, host + 1, n - 2);
  v6[n - 2] = '\0';
  return inet_pton(AF_INET6, v6, a) == 1 &&
         memcmp(a, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\1", 16) == 0;
}

/* Does the URL have this part (a query, a fragment, a user)? */
static int has_part(CURLU *u, CURLUPart part) {
  char *v = NULL;
  int has = curl_url_get(u, part, &v, 0) == CURLUE_OK;
  curl_free(v);
  return has;
}

/*
** Splits base_url into its origin; refuses what would send the API key
** or a token in clear text to another machine.
*/
static char *parse_base(lua_State *L, const char *opt, const char *url) {
  CURLU *u = curl_url();
  char *scheme = NULL, *host = NULL, *origin = NULL, *path = NULL;
  const char *err = NULL;

  if (u == NULL)
    luaL_error(L, "not enough memory");
  if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
    err = "not a valid URL";
  else if (strcmp(scheme, "https") != 0 && strcmp(scheme, "http") != 0)
    err = "must start with https:// or http://";
  else if (strcmp(scheme, "http") == 0 && !loopback(host))
    err = "plain http:// is allowed only to a loopback address: "
          "credentials would cross the network in clear";
  else if ((curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK &&
            strcmp(path, "/") != 0) || has_part(u, CURLUPART_QUERY) ||
           has_part(u, CURLUPART_FRAGMENT) || has_part(u, CURLUPART_USER))
    err = "must be scheme://host[:port], without path, query, fragment "
          "or user";
  if (err == NULL) {
    /* the origin is the URL without the trailing slash */
    char *full = NULL;
    curl_url_set(u, CURLUPART_PATH, NULL, 0);
    if (curl_url_get(u, CURLUPART_URL, &full, 0) == CURLUE_OK) {
      size_t n = strlen(full);
      while (n > 0 && full[n - 1] == '/')
        n--;
      origin = malloc(n + 1);
      if (origin)
        memcpy(origin, full, n), origin[n] = '\0';
    }
    curl_free(full);
  }
  curl_free(scheme), curl_free(host), curl_free(path);
  curl_url_cleanup(u);
  if (err)
    opt_error(L, opt, err);
  if (origin == NULL)
    luaL_error(L, "not enough memory");
  return origin;
}

/*
** A proxy reads what goes to a plain http:// URL as it is: the API key
** and the token, or the client secret.  With an http:// base_url or
** ims_url, then, the proxy must be on this machine too.  (What goes to
** an https:// URL crosses the proxy in a tunnel it cannot read.)
*/
static void check_proxy(lua_State *L, const Client *c) {
  CURLU *u;
  char *host = NULL;
  int local;

  if (strncmp(c->origin, "http://", 7) != 0 &&
      (c->ims_url == NULL || strncmp(c->ims_url, "http://", 7) != 0))
    return;
  u = curl_url();
  if (u == NULL)
    luaL_error(L, "not enough memory");
  local = curl_url_set(u, CURLUPART_URL, c->proxy, CURLU_GUESS_SCHEME |
                       CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK &&
          curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
          loopback(host);
  curl_free(host);
  curl_url_cleanup(u);
  if (!local)
    opt_error(L, "proxy", "with a plain http:// base_url or ims_url, only "
              "a proxy on a loopback address: credentials would cross "
              "the network in clear");
}

/* A name that goes into a path or a JSON key as it is. */
static void check_name(lua_State *L, const char *opt, const char *s) {
  const char *p;
  for (p = s; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
          (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' ||
          (*p == '.' && p != s)))
      opt_error(L, opt, "only letters, digits, '_', '-' and '.' allowed");
}

/*
** A time limit of under a millisecond would end every call at once, or,
** as libcurl reads 0 ms, set no limit at all.
*/
static void check_limit(lua_State *L, const char *opt, double seconds) {
  if (seconds < 0.001)
    opt_error(L, opt, "at least 0.001 seconds");
}

static char *dup(lua_State *L, const char *s) {
  char *p;
  if (s == NULL)
    return NULL;
  p = malloc(strlen(s) + 1);
  if (p == NULL)
    luaL_error(L, "not enough memory");
  return strcpy(p, s);
}

static char *concat(lua_State *L, const char *a, const char *b,
                    const char *c, const char *d) {
  char *p;
  lua_pushfstring(L, "%s%s%s%s", a, b, c, d);
  p = dup(L, lua_tostring(L, -1));
  lua_pop(L, 1);
  return p;
}

/* Joins the scopes value (array or comma-separated string) with ','. */
static char *read_scopes(lua_State *L, int idx) {
  luaL_Buffer b;
  lua_Integer i, n;

  if (idx == 0)
    return dup(L, DEFAULT_SCOPES);
  if (lua_type(L, idx) == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    if (!cmp_clean_string(s, len))
      opt_error(L, "scopes", "empty, or holds a control character");
    return dup(L, s);
  }
  luaL_buffinit(L, &b);
  n = (lua_Integer)lua_rawlen(L, idx);
  for (i = 1; i <= n; i++) {
    size_t len = 0;
    const char *s = NULL;
    if (i > 1)   /* before the push: the buffer grows only from the top */
      luaL_addchar(&b, ',');
    /* the type first: lua_tolstring would make a number a scope */
    if (lua_rawgeti(L, idx, i) == LUA_TSTRING)
      s = lua_tolstring(L, -1, &len);
    if (s == NULL || !cmp_clean_string(s, len))
      opt_error(L, "scopes", "an array of strings expected");
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  {
    char *p = dup(L, lua_tostring(L, -1));
    lua_pop(L, 1);
    return p;
  }
}

static void check_options(lua_State *L, const Options *o) {
  if (o->org == NULL)
    opt_error(L, "org", "required");
  check_name(L, "org", o->org);
  if (o->api_key == NULL && o->client_id == NULL)
    opt_error(L, "api_key", "required (or client_id)");
  if (o->token && (o->client_id || o->secret))
    opt_error(L, "access_token", "give a token or client credentials, "
              "not both");
  if ((o->client_id == NULL) != (o->secret == NULL))
    opt_error(L, o->secret ? "client_id" : "client_secret",
              "client_id and client_secret go together");
  if (o->token && strlen(o->token) > 4096)
    opt_error(L, "access_token", "longer than 4096 bytes");
  if (o->api_key && strlen(o->api_key) > 1024)
    opt_error(L, "api_key", "longer than 1024 bytes");
  if (o->client_id && strlen(o->client_id) > 1024)   /* the API key too */
    opt_error(L, "client_id", "longer than 1024 bytes");
  if (o->resource)
    check_name(L, "resource", o->resource);
  if (o->field)
    check_name(L, "ccpa_optout_field", o->field);
  check_limit(L, "timeout", o->timeout);
  check_limit(L, "connect_timeout", o->connect_timeout);
  check_limit(L, "stall_timeout", o->stall_timeout);
  if (o->max_body < 1)
    opt_error(L, "max_body", "must be at least 1");
  if (o->retries > 100)
    opt_error(L, "retries", "at most 100");
}

/* Fills the client from checked options; may raise (memory). */
static void setup_client(lua_State *L, Client *c, const Options *o) {
  const char *resource = o->resource ? o->resource : "profileAndServices";

  c->org = dup(L, o->org);
  c->api_key = dup(L, o->api_key ? o->api_key : o->client_id);
  c->token = dup(L, o->token);
  c->client_id = dup(L, o->client_id);
  c->secret = dup(L, o->secret);
  c->renewable = o->client_id != NULL;
  c->scopes = read_scopes(L, o->scopes);
  c->field = dup(L, o->field ? o->field : "ccpaOptOut");
  c->ca_file = dup(L, o->ca_file);
  c->proxy = dup(L, o->proxy);
  c->origin = parse_base(L, "base_url",
                         o->base_url ? o->base_url : DEFAULT_BASE);
  c->base = concat(L, c->origin, "/", c->org, "/campaign/");
  c->resource = concat(L, c->base, resource, "/profile", "");
  if (c->renewable) {
    char *url;
    /* owned by the client at every step, should concat raise */
    c->ims_url = parse_base(L, "ims_url",
                            o->ims_url ? o->ims_url : DEFAULT_IMS);
    url = concat(L, c->ims_url, "/ims/token/v3", "", "");
    free(c->ims_url);
    c->ims_url = url;
  }
  if (c->proxy)
    check_proxy(L, c);
  c->timeout_ms = (long)ceil(o->timeout * 1000);
  c->connect_timeout_ms = (long)ceil(o->connect_timeout * 1000);
  c->stall = o->stall_timeout;
  c->max_body = (size_t)o->max_body;
  c->retries = (int)o->retries;
  c->max_wait = o->max_wait;
  c->rate = o->rate;
  c->rng = (unsigned long)time(NULL) ^ (unsigned long)(size_t)c;
}

static void setup_transport(lua_State *L, Client *c) {
  struct curl_slist *t;

  c->multi = curl_multi_init();
  if (c->multi == NULL || !cmp_set_headers(c))
    luaL_error(L, "not enough memory");
  t = curl_slist_append(NULL, "Content-Type: "
                        "application/x-www-form-urlencoded");
  if (t == NULL)
    luaL_error(L, "not enough memory");
  c->form_headers = t;
  c->slots = calloc(1, sizeof(Slot));
  if (c->slots == NULL)
    luaL_error(L, "not enough memory");
  c->nslots = 1;
  if (!cmp_slot_init(c, &c->slots[0]) ||
      !cmp_slot_init(c, &c->token_slot))
    luaL_error(L, "cannot set up libcurl");
  curl_easy_setopt(c->token_slot.easy, CURLOPT_HTTPHEADER,
                   c->form_headers);
}

static int campaign_new(lua_State *L) {
  Options o;
  Client *c;

  read_options(L, &o);
  check_options(L, &o);

  /* the userdata first, closed, so that __gc frees a half-made one */
  c = lua_newuserdatauv(L, sizeof *c, 1);
  memset(c, 0, sizeof *c);
  c->closed = 1;
  luaL_setmetatable(L, CLIENT_MT);
  lua_createtable(L, 0, 1);
  if (o.hook) {
    lua_pushvalue(L, o.hook);
    lua_setfield(L, -2, "on_request");
  }
  lua_setiuservalue(L, -2, 1);

  setup_client(L, c, &o);
  c->has_hook = o.hook != 0;
  c->closed = 0;
  setup_transport(L, c);
  return 1;
}

/* ---------------------------------------------------------------- */
/* the module */

static const luaL_Reg client_meta[] = {
  { "__gc", client_gc },
  { "__close", client_close },
  { "__tostring", client_tostring },
  { NULL, NULL }
};

static const luaL_Reg client_methods[] = {
  { "close", client_close },
  { "bulk", cmp_bulk },
  { NULL, NULL }
};

static void open_client(lua_State *L) {
  luaL_newmetatable(L, CLIENT_MT);
  luaL_setfuncs(L, client_meta, 0);
  lua_newtable(L);
  luaL_setfuncs(L, client_methods, 0);
  cmp_client_methods(L);
  lua_setfield(L, -2, "__index");
  lua_pushliteral(L, "campaign client");
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 1);
}

/*
** A private cjson instance, set up once for the module's needs.  Its
** decode and encode raise on bad input; they run as quiet calls, so
** that what is caught is cjson's complaint and never an interrupt.
** (cjson.safe would not do: its own protected call, on the caller's
** thread, would take an interrupt for bad JSON.)
*/
static void open_json(lua_State *L) {
  lua_State *Q;

  lua_createtable(L, 0, 4);
  Q = lua_newthread(L);
  lua_sethook(Q, NULL, 0, 0);   /* it took a copy of the caller's */
  lua_setfield(L, -2, "quiet");

  lua_getglobal(L, "require");
  lua_pushliteral(L, "cjson");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "new");
  lua_call(L, 0, 1);
  lua_remove(L, -2);   /* the user's module table: never touched */

  lua_getfield(L, -1, "encode_invalid_numbers");
  lua_pushboolean(L, 0);
  lua_call(L, 1, 0);
  lua_getfield(L, -1, "encode_number_precision");
  lua_pushinteger(L, 14);
  lua_call(L, 1, 0);
  lua_getfield(L, -1, "decode_invalid_numbers");
  lua_pushboolean(L, 0);
  lua_call(L, 1, 0);

  lua_getfield(L, -1, "decode");
  lua_setfield(L, -3, "decode");
  lua_getfield(L, -1, "encode");
  lua_setfield(L, -3, "encode");
  lua_getfield(L, -1, "null");
  lua_setfield(L, -3, "null");
  lua_pop(L, 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &STATE_KEY);
}

static const luaL_Reg functions[] = {
  { "new", campaign_new },
  { NULL, NULL }
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_ready = CURLE_FAILED_INIT;

static void init_curl(void) {
  curl_ready = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Several Lua states in several threads may open the module at once. */
__attribute__((visibility("default")))
int luaopen_campaign(lua_State *L);

int luaopen_campaign(lua_State *L) {
  pthread_once(&curl_once, init_curl);
  if (curl_ready != CURLE_OK)
    return luaL_error(L, "cannot initialise libcurl");
  open_json(L);
  cmp_open_errors(L);
  open_client(L);

  luaL_newlib(L, functions);
  cmp_pushmodstate(L, "null");
  lua_setfield(L, -2, "null");
  lua_pushliteral(L, CAMPAIGN_VERSION);
  lua_setfield(L, -2, "_VERSION");
  /* for code that moves errs across Lua states and back (campaign.ngx) */
  luaL_getmetatable(L, ERROR_MT);
  lua_setfield(L, -2, "error_metatable");
  return 1;
}
