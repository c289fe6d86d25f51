/*
** calls.c: the profile methods.  Each method is a `prepare` step,
** which checks its arguments and builds the request, and a shared
** `finish` step, which turns the answer into what the method returns.
** A single call and an op of a bulk run go through the same two steps.
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "campaign.h"

/* The longest URL the module sends: libcurl refuses requests over 1 MB
** deep inside a transfer, and servers long before that. */
#define MAX_URL 65536

typedef int (*Prepare)(lua_State *L, Client *c, int arg, Call *call);

typedef struct Method {
  const char *name;
  Prepare prepare;
} Method;

/* Raises "bad argument #n to 'name' (msg)", counting from after self. */
static int arg_error(lua_State *L, const Call *call, int idx,
                     const char *msg) {
  return luaL_error(L, "bad argument #%d to '%s' (%s)",
                    idx - call->arg + 1, call->name, msg);
}

/* A PKey: a non-empty string that cannot name another path. */
static const char *check_pkey(lua_State *L, const Call *call, int idx,
                              size_t *len) {
  const char *s;
  if (lua_type(L, idx) != LUA_TSTRING)
    arg_error(L, call, idx, "a PKey string expected");
  s = lua_tolstring(L, idx, len);
  if (*len == 0 || *len > 1024)
    arg_error(L, call, idx, "a PKey must have 1 to 1024 bytes");
  if (strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
    arg_error(L, call, idx, "not a PKey");
  return s;
}

/* Pushes the URL of one profile: .../profile/<escaped PKey>. */
static void push_profile_url(lua_State *L, Client *c, const Call *call,
                             int idx) {
  luaL_Buffer b;
  size_t len;
  const char *pkey = check_pkey(L, call, idx, &len);

  luaL_buffinit(L, &b);
  luaL_addstring(&b, c->resource);
  luaL_addchar(&b, '/');
  cmp_add_escaped(&b, pkey, len);
  luaL_pushresult(&b);
}

static void check_table(lua_State *L, const Call *call, int idx) {
  if (lua_type(L, idx) != LUA_TTABLE)
    arg_error(L, call, idx, "a table of fields expected");
}

/* Pushes the JSON text of the table at idx, the call's argument. */
static void push_json(lua_State *L, const Call *call, int idx) {
  const char *what = lua_pushfstring(L, "bad argument #%d to '%s'",
                                     idx - call->arg + 1, call->name);
  lua_pushvalue(L, idx);
  cmp_encode(L, -1, what);
  lua_remove(L, -2);
}

/* ---------------------------------------------------------------- */
/* filters: { email = e } or { text = t }, and list options */

typedef struct Filter {
  const char *email, *text, *order;
  size_t email_len, text_len, order_len;
  lua_Integer page_size;
  int descending;
} Filter;

static void read_filter(lua_State *L, const Call *call, int idx,
                        const char *const allowed[], Filter *f) {
  memset(f, 0, sizeof *f);
  f->page_size = 100;
  if (lua_isnoneornil(L, idx))
    return;
  if (lua_type(L, idx) != LUA_TTABLE)
    arg_error(L, call, idx, "a table of filters expected");
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    size_t klen = 0;
    const char *key = lua_type(L, -2) == LUA_TSTRING
                      ? lua_tolstring(L, -2, &klen) : "?";
    int i, t = lua_type(L, -1);
    for (i = 0; allowed[i] && strcmp(allowed[i], key) != 0; i++)
      ;
    if (strlen(key) != klen)   /* "email\0..." is no filter's name */
      i = -1;
    if (i < 0 || allowed[i] == NULL)
      arg_error(L, call, idx, lua_pushfstring(L, "unknown filter '%s'",
                                              key));
    if (strcmp(key, "email") == 0 || strcmp(key, "text") == 0 ||
        strcmp(key, "order") == 0) {
      size_t len;
      const char *s;
      if (t != LUA_TSTRING)
        arg_error(L, call, idx, lua_pushfstring(L, "'%s' must be a "
                                                "string", key));
      s = lua_tolstring(L, -1, &len);
      if (len == 0)
        arg_error(L, call, idx, lua_pushfstring(L, "'%s' is empty", key));
      if (key[0] == 'e')
        f->email = s, f->email_len = len;
      else if (key[0] == 't')
        f->text = s, f->text_len = len;
      else
        f->order = s, f->order_len = len;
    }
    else if (strcmp(key, "page_size") == 0) {
      double d = lua_tonumber(L, -1);
      if (t != LUA_TNUMBER || d != floor(d))
        arg_error(L, call, idx, "'page_size' must be an integer");
      if (d < 1 || d > 1000)   /* before the cast: no infinity cast */
        arg_error(L, call, idx, "'page_size' must be 1 to 1000");
      f->page_size = (lua_Integer)d;
    }
    else if (strcmp(key, "descending") == 0) {
      if (t != LUA_TBOOLEAN)
        arg_error(L, call, idx, "'descending' must be a boolean");
      f->descending = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
  }
  if (f->email && f->text)
    arg_error(L, call, idx, "give 'email' or 'text', not both");
  if (f->descending && f->order == NULL)
    arg_error(L, call, idx, "'descending' needs an 'order'");
}

/* Pushes .../profile[/byEmail|/byText][/_count]?... */
static void push_list_url(lua_State *L, Client *c, const Filter *f,
                          int count) {
  luaL_Buffer b;
  char sep = '?';

  luaL_buffinit(L, &b);
  luaL_addstring(&b, c->resource);
  if (f->email)
    luaL_addstring(&b, "/byEmail");
  else if (f->text)
    luaL_addstring(&b, "/byText");
  if (count)
    luaL_addstring(&b, "/_count");
  if (f->email) {
    luaL_addchar(&b, sep), sep = '&';
    cmp_add_query(&b, "email", f->email, f->email_len);
  }
  else if (f->text) {
    luaL_addchar(&b, sep), sep = '&';
    cmp_add_query(&b, "text", f->text, f->text_len);
  }
  if (!count) {
    char n[32];
    luaL_addchar(&b, sep), sep = '&';
    snprintf(n, sizeof n, "%lld", (long long)f->page_size);
    cmp_add_query(&b, "_lineCount", n, strlen(n));
    if (f->order) {
      luaL_addstring(&b, "&_order=");
      cmp_add_escaped(&b, f->order, f->order_len);
      if (f->descending)
        luaL_addstring(&b, "%20desc");
    }
    /* without it Campaign withholds `next` past 100,000 rows */
    luaL_addstring(&b, "&_forcePagination=true");
  }
  luaL_pushresult(&b);
}

/* ---------------------------------------------------------------- */
/* the methods' prepare steps: each pushes url and body (or nil) */

static int prep_get(lua_State *L, Client *c, int arg, Call *call) {
  push_profile_url(L, c, call, arg);
  lua_pushnil(L);
  call->method = M_GET, call->shape = SHAPE_OBJECT;
  call->route = "profile/pkey";
  return 2;
}

static int prep_create(lua_State *L, Client *c, int arg, Call *call) {
  check_table(L, call, arg);
  lua_pushstring(L, c->resource);
  push_json(L, call, arg);
  call->method = M_POST, call->shape = SHAPE_OBJECT;
  call->route = "profile";
  return 2;
}

static int prep_update(lua_State *L, Client *c, int arg, Call *call) {
  push_profile_url(L, c, call, arg);
  check_table(L, call, arg + 1);
  push_json(L, call, arg + 1);
  call->method = M_PATCH, call->shape = SHAPE_ANY;
  call->route = "profile/pkey";
  return 2;
}

static int prep_delete(lua_State *L, Client *c, int arg, Call *call) {
  push_profile_url(L, c, call, arg);
  lua_pushnil(L);
  call->method = M_DELETE, call->shape = SHAPE_TRUE;
  call->route = "profile/pkey";
  return 2;
}

static int prep_get_optout(lua_State *L, Client *c, int arg, Call *call) {
  prep_get(L, c, arg, call);
  call->shape = SHAPE_FIELD;
  return 2;
}

static int prep_set_optout(lua_State *L, Client *c, int arg, Call *call) {
  push_profile_url(L, c, call, arg);
  if (lua_type(L, arg + 1) != LUA_TBOOLEAN)
    arg_error(L, call, arg + 1, "a boolean expected");
  /* the field name was checked to be a plain identifier */
  lua_pushfstring(L, "{\"%s\":%s}", c->field,
                  lua_toboolean(L, arg + 1) ? "true" : "false");
  call->method = M_PATCH, call->shape = SHAPE_TRUE;
  call->route = "profile/pkey";
  return 2;
}

static const char *const find_keys[] = { "email", "text", "page_size",
                                         NULL };
static const char *const count_keys[] = { "email", "text", NULL };
static const char *const list_keys[] = { "email", "text", "page_size",
                                         "order", "descending", NULL };

static int prep_find(lua_State *L, Client *c, int arg, Call *call) {
  Filter f;
  if (lua_type(L, arg) != LUA_TTABLE)
    arg_error(L, call, arg, "a table { email = ... } or { text = ... } "
              "expected");
  read_filter(L, call, arg, find_keys, &f);
  if (!f.email && !f.text)
    arg_error(L, call, arg, "'email' or 'text' expected");
  push_list_url(L, c, &f, 0);
  lua_pushnil(L);
  call->method = M_GET, call->shape = SHAPE_LIST;
  call->route = f.email ? "profile/byEmail" : "profile/byText";
  return 2;
}

static int prep_count(lua_State *L, Client *c, int arg, Call *call) {
  Filter f;
  read_filter(L, call, arg, count_keys, &f);
  push_list_url(L, c, &f, 1);
  lua_pushnil(L);
  call->method = M_GET, call->shape = SHAPE_COUNT;
  call->route = "profile/_count";
  return 2;
}

/*
** The length of the separator at s: "/", or "%2f" or "%5c" (an encoded
** slash or backslash, which some servers decode before they resolve
** the path); 0 when none starts there.
*/
static size_t separator(const char *s) {
  if (s[0] == '/')
    return 1;
  if (s[0] == '%' &&
      ((s[1] == '2' && (s[2] == 'f' || s[2] == 'F')) ||
       (s[1] == '5' && (s[2] == 'c' || s[2] == 'C'))))
    return 3;
  return 0;
}

/*
** Is the segment at s "." or "..", its dots as they are or "%2e", up
** to a separator, a ';' (path parameters: "..;" is ".." to some
** servers), a '?' or the end?
*/
static int dots_at(const char *s) {
  int dots = 0;
  for (;;) {
    if (s[0] == '.')
      s += 1;
    else if (s[0] == '%' && s[1] == '2' && (s[2] == 'e' || s[2] == 'E'))
      s += 3;
    else
      break;
    dots++;
  }
  return (dots == 1 || dots == 2) &&
         (*s == '\0' || *s == '?' || *s == ';' || separator(s) > 0);
}

/* Does the path (up to any query) have a "." or ".." segment? */
static int dot_segment(const char *s) {
  if (dots_at(s))
    return 1;
  for (; *s != '\0' && *s != '?'; s++) {
    size_t n = separator(s);
    if (n > 0 && dots_at(s + n))
      return 1;
  }
  return 0;
}

/* No byte that could end the request line or start a fragment. */
static int check_path(const char *s, size_t len) {
  size_t i;
  for (i = 0; i < len; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch <= 32 || ch >= 127 || ch == '#' || ch == '\\')
      return 0;
  }
  return !dot_segment(s);
}

/*
** Pushes the full URL of an href or path: an absolute URL must be on
** the client's own origin (so a token never goes elsewhere), a path
** starting with "/" is taken from the origin, any other from
** <base_url>/<org>/campaign/.  Returns 0 when it is none of these.
*/
static int push_href(lua_State *L, Client *c, const char *s, size_t len) {
  size_t olen = strlen(c->origin);

  if (len == 0 || len > MAX_URL || !check_path(s, len))
    return 0;
  if (strstr(s, "://") != NULL) {
    if (strncmp(s, c->origin, olen) != 0 || s[olen] != '/')
      return 0;
    lua_pushlstring(L, s, len);
  }
  else if (s[0] == '/')
    lua_pushfstring(L, "%s%s", c->origin, s);
  else
    lua_pushfstring(L, "%s%s", c->base, s);
  if (lua_rawlen(L, -1) > MAX_URL) {   /* with base_url before it */
    lua_pop(L, 1);
    return 0;
  }
  return 1;
}

static int prep_request(lua_State *L, Client *c, int arg, Call *call) {
  static const char *const verbs[] = { "GET", "POST", "PATCH", "PUT",
                                       "DELETE", NULL };
  size_t len = 0;
  const char *m = lua_type(L, arg) == LUA_TSTRING
                  ? lua_tolstring(L, arg, &len) : "";
  const char *path;
  int i, body = lua_type(L, arg + 2);

  for (i = 0; verbs[i] && strcmp(verbs[i], m) != 0; i++)
    ;
  if (verbs[i] == NULL || strlen(m) != len)
    arg_error(L, call, arg, "GET, POST, PATCH, PUT or DELETE expected");
  if (i == M_GET && body != LUA_TNONE && body != LUA_TNIL)
    arg_error(L, call, arg + 2, "a GET sends no body");
  if (lua_type(L, arg + 1) != LUA_TSTRING)
    arg_error(L, call, arg + 1, "a path or href string expected");
  path = lua_tolstring(L, arg + 1, &len);
  if (len > MAX_URL)
    arg_error(L, call, arg + 1, "longer than 65536 bytes");
  if (!push_href(L, c, path, len))
    arg_error(L, call, arg + 1, "not a path, nor an href on base_url "
              "(no spaces, control characters, '#' or dot segments; "
              "at most 65536 bytes with base_url)");
  switch (body) {   /* its type, read before the URL was pushed */
    case LUA_TNONE:
    case LUA_TNIL:
      lua_pushnil(L);
      break;
    case LUA_TTABLE:
      push_json(L, call, arg + 2);
      break;
    case LUA_TSTRING:
      lua_pushvalue(L, arg + 2);
      break;
    default:
      arg_error(L, call, arg + 2, "a table or a JSON string expected");
  }
  if (i != M_GET && i != M_DELETE && lua_isnil(L, -1))
    lua_pushliteral(L, ""), lua_replace(L, -2);
  call->method = i, call->shape = SHAPE_ANY;
  call->route = "request";
  return 2;
}

static const Method methods[] = {
  { "get_profile", prep_get },
  { "create_profile", prep_create },
  { "update_profile", prep_update },
  { "delete_profile", prep_delete },
  { "find_profiles", prep_find },
  { "count_profiles", prep_count },
  { "get_ccpa_optout", prep_get_optout },
  { "set_ccpa_optout", prep_set_optout },
  { "request", prep_request },
  { NULL, NULL }
};

static void prepare(lua_State *L, Client *c, const Method *m, int arg,
                    Slot *s) {
  Call call;
  size_t len = 0;
  const char *body;

  memset(&call, 0, sizeof call);
  call.name = m->name;
  call.arg = arg;
  m->prepare(L, c, arg, &call);

  /* the URL grows only with the first argument (a PKey, the filters) */
  lua_tolstring(L, -2, &len);
  if (len > MAX_URL)
    arg_error(L, &call, arg, lua_pushfstring(L, "makes a URL of %d bytes,"
              " over the %d the module sends", (int)len, MAX_URL));
  body = lua_tolstring(L, -1, &len);
  if (!cmp_slot_setup(c, s, call.method, lua_tostring(L, -2), body, len))
    luaL_error(L, "not enough memory");
  s->shape = call.shape;
  s->route = call.route;
  lua_pop(L, 2);
}

/*
** Prepares the call named `name` with arguments from stack index arg
** on.  Raises on misuse.  On return the slot is set up and the stack is
** as it was.
*/
void cmp_prepare(lua_State *L, Client *c, const char *name, int arg,
                 Slot *s) {
  const Method *m;

  for (m = methods; m->name && strcmp(m->name, name) != 0; m++)
    ;
  if (m->name == NULL)
    luaL_error(L, "unknown method '%s'", name);
  prepare(L, c, m, arg, s);
}

/* ---------------------------------------------------------------- */
/* finishing: the answer's shape */

/* Replaces the answer at the top by an err; returns 0. */
static int shape_error(lua_State *L, const Slot *s, const char *msg) {
  lua_pop(L, 1);
  cmp_pusherror(L, "protocol", s->reply.status, "UNEXPECTED_ANSWER", msg,
                0);
  return 0;
}

/* Appends the page's content (at the top) to the array at acc. */
static int append_content(lua_State *L, const Slot *s, int acc) {
  lua_Integer i, n, at;

  if (lua_getfield(L, -1, "content") != LUA_TTABLE) {
    lua_pop(L, 1);
    return shape_error(L, s, "a list without 'content'");
  }
  n = (lua_Integer)lua_rawlen(L, -1);
  at = (lua_Integer)lua_rawlen(L, acc);
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    lua_rawseti(L, acc, at + i);
  }
  lua_pop(L, 1);
  return 1;
}

/*
** Pushes the absolute URL of the page's next.href, or nothing; returns
** -1 when the href is there but not one the client would follow.
*/
int cmp_next_href(lua_State *L, Client *c, int page) {
  size_t len;
  const char *href;

  if (lua_getfield(L, page, "next") != LUA_TTABLE) {
    lua_pop(L, 1);
    return 0;
  }
  lua_getfield(L, -1, "href");
  href = lua_tolstring(L, -1, &len);
  if (href == NULL || !push_href(L, c, href, len)) {
    lua_pop(L, 2);
    return -1;
  }
  lua_replace(L, -3);
  lua_pop(L, 1);
  return 1;
}

/*
** Turns the decoded answer at the top into the method's result.  Leaves
** the result (returns 1), or an err (returns 0); for a list with more
** pages, points the slot at the next one and returns 2, leaving
** nothing.  acc: the array that gathers a list's content.
*/
int cmp_finish(lua_State *L, Client *c, Slot *s, int acc) {
  switch (s->shape) {
    case SHAPE_FIELD:
      if (lua_getfield(L, -1, c->field) != LUA_TBOOLEAN) {
        lua_pop(L, 1);
        return shape_error(L, s, "the profile has no boolean opt-out "
                           "field (see ccpa_optout_field)");
      }
      lua_remove(L, -2);
      return 1;

    case SHAPE_COUNT:
      if (lua_getfield(L, -1, "count") != LUA_TNUMBER) {
        lua_pop(L, 1);
        return shape_error(L, s, "a count answer without 'count'");
      }
      lua_remove(L, -2);
      return 1;

    case SHAPE_LIST: {
      int more;
      if (!append_content(L, s, acc))
        return 0;
      more = cmp_next_href(L, c, lua_gettop(L));
      if (more < 0)
        return shape_error(L, s, "a 'next' href not on base_url (or "
                           "over 65536 bytes)");
      if (more == 0) {
        lua_pop(L, 1);
        lua_pushvalue(L, acc);
        return 1;
      }
      if (!cmp_slot_setup(c, s, M_GET, lua_tostring(L, -1), NULL, 0))
        luaL_error(L, "not enough memory");
      lua_pop(L, 2);
      return 2;
    }

    default:
      return 1;
  }
}

/* ---------------------------------------------------------------- */
/* running a call */

/* Full jitter over an exponential step: 0.25 s, 0.5 s, 1 s, ... */
double cmp_backoff(Client *c, int tries) {
  double step = 0.25 * pow(2, tries - 1);
  c->rng = c->rng * 6364136223846793005UL + 1442695040888963407UL;
  step *= 0.5 + (double)(c->rng >> 11) / 9007199254740992.0 / 2;
  return step < c->max_wait ? step : c->max_wait;
}

/*
** With the err of a try at the top: may the slot try again?  If so,
** schedules it (honouring Retry-After for the whole client) and pops
** the err.
*/
int cmp_retry(lua_State *L, Client *c, Slot *s) {
  double wait, now;
  int retryable;

  /* an expired token: renew it and repeat the call, once */
  if (c->renewable && !s->renewed && s->reply.status == 401) {
    lua_getfield(L, -1, "code");
    retryable = lua_type(L, -1) == LUA_TSTRING &&
                strcmp(lua_tostring(L, -1), "401013") == 0;
    lua_pop(L, 1);
    if (retryable) {
      s->renewed = 1;
      /* calls in flight with the same token: one renewal for all */
      if (s->token_gen == c->token_gen)
        c->token_expires = 0;
      s->not_before = 0;
      s->state = SLOT_READY;
      lua_pop(L, 1);
      return 1;
    }
  }

  lua_getfield(L, -1, "retryable");
  retryable = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (!retryable || s->tries > c->retries)
    return 0;

  /* a POST is repeated only if it surely never reached the server */
  if (s->method == M_POST && s->reply.sent) {
    const char *code;
    lua_getfield(L, -1, "code");
    code = lua_tostring(L, -1);
    lua_pop(L, 1);
    if (code == NULL || strcmp(code, "429050") != 0)
      return 0;
  }

  now = cmp_now();
  wait = cmp_backoff(c, s->tries);
  if (s->reply.retry_after >= 0) {
    wait = s->reply.retry_after < c->max_wait ? s->reply.retry_after
                                              : c->max_wait;
    if (now + wait > c->paused_until)
      c->paused_until = now + wait;
  }
  s->not_before = now + wait;
  s->state = SLOT_READY;
  lua_pop(L, 1);
  return 1;
}

/* The hook's body, under lua_pcall: the client, then the slot. */
static int hook(lua_State *L) {
  static const char *const verbs[] = { "GET", "POST", "PATCH", "PUT",
                                       "DELETE" };
  const Slot *s = lua_touserdata(L, 2);

  lua_getiuservalue(L, 1, 1);
  if (lua_getfield(L, -1, "on_request") != LUA_TFUNCTION)
    return 0;
  lua_createtable(L, 0, 5);
  lua_pushstring(L, verbs[s->method]);
  lua_setfield(L, -2, "method");
  lua_pushstring(L, s->route);
  lua_setfield(L, -2, "route");
  lua_pushinteger(L, s->reply.status);
  lua_setfield(L, -2, "status");
  lua_pushnumber(L, cmp_now() - s->started);
  lua_setfield(L, -2, "elapsed");
  lua_pushinteger(L, s->tries);
  lua_setfield(L, -2, "try");
  lua_call(L, 1, 0);
  return 0;
}

/*
** Calls the on_request hook, if any, with what the try was.  Returns
** LUA_OK, or an error status with the error at the top.  The caller
** keeps the slot busy meanwhile, so a call the hook makes on the same
** client cannot take the slot and its answer.
*/
int cmp_hook(lua_State *L, int client_idx, const Slot *s) {
  Client *c = lua_touserdata(L, client_idx);
  if (!c->has_hook)
    return LUA_OK;
  lua_pushcfunction(L, hook);
  lua_pushvalue(L, client_idx);
  lua_pushlightuserdata(L, (void *)s);
  return lua_pcall(L, 2, 0, 0);
}

/* Waits for one slot to finish, moving every other transfer on too. */
void cmp_wait_slot(Client *c, Slot *s, int idx) {
  while (s->state != SLOT_DONE) {
    double wait = cmp_start_ready(c, idx, idx + 1);
    if (s->state == SLOT_RUNNING || s->state == SLOT_DONE)
      wait = 1;
    cmp_step(c, wait);
  }
}

/*
** Runs the call set up on slot 0 to its end, with retries and every
** page of a list.  Pushes the result, or nil and err; returns their
** count.
*/
static int run_single(lua_State *L, Client *c, int client_idx) {
  Slot *s = &c->slots[0];
  int acc, r;

  lua_newtable(L);
  acc = lua_gettop(L);
  for (;;) {
    if (!cmp_token(L, c, client_idx)) {
      s->state = SLOT_FREE;
      lua_pushnil(L);
      lua_insert(L, -2);
      return 2;
    }
    cmp_wait_slot(c, s, 0);
    if (cmp_hook(L, client_idx, s) != LUA_OK) {
      s->state = SLOT_FREE;
      return lua_error(L);
    }
    s->state = SLOT_FREE;
    if (cmp_reply(L, &s->reply, s->shape)) {
      r = cmp_finish(L, c, s, acc);
      if (r == 2)
        continue;
    }
    else if (cmp_retry(L, c, s))
      continue;
    else
      r = 0;
    if (r == 0) {
      cmp_scrub_err(L, c, -1);
      lua_pushnil(L);
      lua_insert(L, -2);
      return 2;
    }
    return 1;
  }
}

/*
** Calls the function below the top nargs values (the client first)
** with the client marked busy, under lua_pcall.  A finalizer or an err
** metamethod may run Lua code at any allocation of a call, and a
** close() or bulk() from there would free or move what the call still
** holds: the mark makes those raise.  An error that escapes the call
** first frees slot 0 and the mark, so the client stays usable, then
** goes on up.  Returns the function's results.
*/
static int guarded(lua_State *L, Client *c, int nargs) {
  int base = lua_gettop(L) - nargs - 1, status;
  int outer = c->in_call;   /* profiles() from a hook: inside a call */

  c->in_call = 1;
  status = lua_pcall(L, nargs, LUA_MULTRET, 0);
  c->in_call = outer;
  if (status != LUA_OK) {
    if (!outer)
      cmp_abort(c, &c->slots[0]);
    return lua_error(L);
  }
  return lua_gettop(L) - base;
}

static int single_body(lua_State *L) {
  return run_single(L, lua_touserdata(L, 1), 1);
}

/* Runs the call set up on slot 0 to its end, under the guard. */
static int run_guarded(lua_State *L, Client *c, int client_idx) {
  lua_pushcfunction(L, single_body);
  lua_pushvalue(L, client_idx);
  return guarded(L, c, 1);
}

/* Is a call on the client under way (its own hook, a finalizer)? */
int cmp_busy(const Client *c) {
  return c->in_call || c->slots[0].state != SLOT_FREE;
}

/* ---------------------------------------------------------------- */
/* the profiles iterator */

/*
** Upvalues: the client, the options table, the current page's content,
** the position in it, and the next page's URL (false at the end).
*/
static int next_profile(lua_State *L) {
  Client *c = cmp_checkclient(L, lua_upvalueindex(1));
  lua_Integer i = lua_tointeger(L, lua_upvalueindex(4));
  Slot *s = &c->slots[0];

  for (;;) {
    /* a finalizer run by the last page's allocations may have closed it */
    c = cmp_checkclient(L, lua_upvalueindex(1));
    if (lua_rawgeti(L, lua_upvalueindex(3), i + 1) != LUA_TNIL) {
      lua_pushinteger(L, i + 1);
      lua_replace(L, lua_upvalueindex(4));
      return 1;
    }
    lua_pop(L, 1);
    if (!lua_toboolean(L, lua_upvalueindex(5)))
      return 0;

    if (cmp_busy(c))
      return luaL_error(L, "a call on this client is already running");
    if (!cmp_slot_setup(c, s, M_GET, lua_tostring(L, lua_upvalueindex(5)),
                        NULL, 0))
      return luaL_error(L, "not enough memory");
    s->shape = SHAPE_PAGE;
    s->route = "profile";
    lua_pushvalue(L, lua_upvalueindex(1));
    if (run_guarded(L, c, lua_gettop(L)) == 2)
      return lua_error(L);   /* a page failed: never end as if complete */

    if (lua_getfield(L, -1, "content") != LUA_TTABLE)
      return shape_error(L, s, "a list without 'content'"), lua_error(L);
    lua_replace(L, lua_upvalueindex(3));
    switch (cmp_next_href(L, c, lua_gettop(L))) {
      case 0:
        lua_pushboolean(L, 0);
        break;
      case -1:
        return shape_error(L, s, "a 'next' href not on base_url (or "
                           "over 65536 bytes)"),
               lua_error(L);
    }
    lua_replace(L, lua_upvalueindex(5));
    i = 0;
    lua_settop(L, 0);
  }
}

static int profiles_body(lua_State *L) {
  Client *c = lua_touserdata(L, 1);
  Call call;
  Filter f;
  size_t len;

  memset(&call, 0, sizeof call);
  call.name = "profiles";
  call.arg = 2;
  read_filter(L, &call, 2, list_keys, &f);
  lua_settop(L, 2);
  lua_newtable(L);              /* the page */
  lua_pushinteger(L, 0);        /* the position */
  push_list_url(L, c, &f, 0);   /* the first page's URL */
  lua_tolstring(L, -1, &len);
  if (len > MAX_URL)
    arg_error(L, &call, 2, lua_pushfstring(L, "makes a URL of %d bytes, "
              "over the %d the module sends", (int)len, MAX_URL));
  lua_pushcclosure(L, next_profile, 5);
  return 1;
}

/* profiles: its checks allocate, so they run under the guard. */
static int client_profiles(lua_State *L) {
  Client *c = cmp_checkclient(L, 1);

  lua_settop(L, 2);
  lua_pushcfunction(L, profiles_body);
  lua_insert(L, 1);
  return guarded(L, c, 2);
}

/* A method's prepare and run steps, under run_guarded's lua_pcall. */
static int method_body(lua_State *L) {
  Client *c = lua_touserdata(L, 1);
  const Method *m = lua_touserdata(L, lua_upvalueindex(1));

  prepare(L, c, m, 2, &c->slots[0]);
  return run_single(L, c, 1);
}

/*
** The one C function behind every method: upvalue 1 is its Method.
** The argument checks allocate too, so they run under the guard as
** well: a finalizer run by them cannot close the client either.
*/
static int call_method(lua_State *L) {
  Client *c = cmp_checkclient(L, 1);

  if (cmp_busy(c))
    return luaL_error(L, "a call on this client is already running "
                      "(from its own hook?)");
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushcclosure(L, method_body, 1);
  lua_insert(L, 1);
  return guarded(L, c, lua_gettop(L) - 1);
}

void cmp_client_methods(lua_State *L) {
  const Method *m;
  lua_pushcfunction(L, client_profiles);
  lua_setfield(L, -2, "profiles");
  for (m = methods; m->name != NULL; m++) {
    lua_pushlightuserdata(L, (void *)m);
    lua_pushcclosure(L, call_method, 1);
    lua_setfield(L, -2, m->name);
  }
}
