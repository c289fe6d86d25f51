/*
** bulk.c: client:bulk(ops, options), many calls in flight on the
** client's one multi handle.  Ops come from an array or a function, one
** per free slot, so memory follows the concurrency and not the number
** of ops.  The whole run is under lua_pcall: whatever error rises in it
** (from the op source, on_result, the hook, an interrupt, no memory),
** the transfers in flight are aborted first and the error is raised
** again, with the client left usable.
*/
#include <string.h>

#include "campaign.h"

#define DEFAULT_CONCURRENCY 8
#define MAX_CONCURRENCY 256

/* Stack layout of a bulk run. */
enum {
  B_CLIENT = 1, B_OPS, B_OPTS,
  B_ONRESULT,   /* the callback, or nil */
  B_CTX,        /* per slot: { op, index, acc } */
  B_RUN         /* the Run, as a light userdata */
};

typedef struct Run {
  Client *c;
  int first, last;      /* the slots in use: [first, last] */
  int from_array;
  lua_Integer size;     /* the array's length */
  lua_Integer handed;   /* ops handed out so far */
  int exhausted;        /* no more ops will come */
  int starved;          /* the function said nil while calls ran */
  lua_Integer ok, failed, retried;
} Run;

/* ---------------------------------------------------------------- */
/* preparing an op, a quiet call */

/* Arguments: the client, the op, the slot (light userdata). */
static int prepare_op(lua_State *L) {
  Client *c = lua_touserdata(L, 1);
  Slot *s = lua_touserdata(L, 3);
  lua_Integer i, n;
  const char *name;
  size_t len;

  if (lua_type(L, 2) != LUA_TTABLE)
    return luaL_error(L, "an op must be a table { method, args... }");
  /* the type first: lua_tolstring would make a number a name */
  name = lua_rawgeti(L, 2, 1) == LUA_TSTRING ? lua_tolstring(L, -1, &len)
                                             : NULL;
  if (name == NULL || strlen(name) != len)
    return luaL_error(L, "an op's first element must be a method name");
  n = (lua_Integer)lua_rawlen(L, 2);
  luaL_checkstack(L, (int)n + 4, "too many arguments in an op");
  for (i = 2; i <= n; i++)
    lua_rawgeti(L, 2, i);
  cmp_prepare(L, c, name, 5, s);
  return 0;
}

/* Pushes the err for an op that could not even be prepared. */
static void push_usage_error(lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  cmp_pusherror(L, "usage", 0, NULL, msg ? msg : "bad op", 0);
  lua_remove(L, -2);
}

/* Leaves nothing in flight: after an error, or at the end. */
static void stop(Run *r) {
  int k;
  for (k = r->first; k <= r->last; k++)
    cmp_abort(r->c, &r->c->slots[k]);
  r->c->in_bulk = 0;
}

/* ---------------------------------------------------------------- */
/* results */

static void deliver(lua_State *L, Run *r, lua_Integer index, int op,
                    int ok) {
  /* the result or err is at the top */
  if (ok)
    r->ok++;
  else {
    r->failed++;
    cmp_scrub_err(L, r->c, -1);
  }
  if (lua_isnil(L, B_ONRESULT)) {
    lua_pop(L, 1);
    return;
  }
  lua_pushvalue(L, B_ONRESULT);
  lua_pushinteger(L, index);
  lua_pushvalue(L, op);
  if (ok) {
    lua_pushvalue(L, -4);
    lua_pushnil(L);
  }
  else {
    lua_pushnil(L);
    lua_pushvalue(L, -5);
  }
  lua_call(L, 4, 0);
  lua_pop(L, 1);
}

/* ---------------------------------------------------------------- */
/* handing out ops */

/* Pushes the next op and returns 1, or returns 0. */
static int next_op(lua_State *L, Run *r) {
  if (r->from_array) {
    if (r->handed >= r->size) {
      r->exhausted = 1;
      return 0;
    }
    lua_rawgeti(L, B_OPS, r->handed + 1);
  }
  else {
    lua_pushvalue(L, B_OPS);
    lua_call(L, 0, 1);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      return 0;
    }
  }
  r->handed++;
  return 1;
}

static int busy(const Run *r) {
  int k;
  for (k = r->first; k <= r->last; k++)
    if (r->c->slots[k].state != SLOT_FREE)
      return 1;
  return 0;
}

/* Gives every free slot an op, as long as ops come. */
static void fill(lua_State *L, Run *r) {
  int k;
  for (k = r->first; k <= r->last && !r->exhausted && !r->starved; k++) {
    Slot *s = &r->c->slots[k];
    int op, status;
    if (s->state != SLOT_FREE)
      continue;
    if (!next_op(L, r)) {
      if (!r->from_array) {
        if (busy(r))
          r->starved = 1;
        else
          r->exhausted = 1;
      }
      return;
    }
    op = lua_gettop(L);

    /* quiet: what it catches is about the op, never an interrupt */
    lua_pushcfunction(L, prepare_op);
    lua_pushlightuserdata(L, r->c);
    lua_pushvalue(L, op);
    lua_pushlightuserdata(L, s);
    status = cmp_quiet_call(L, 3, 0);
    if (status != LUA_OK && status != LUA_ERRRUN)
      lua_error(L);   /* no memory */
    if (status != LUA_OK) {
      s->state = SLOT_FREE;
      push_usage_error(L);
      deliver(L, r, r->handed, op, 0);
      lua_pop(L, 1);
      k--;   /* the slot is still free */
      continue;
    }

    lua_createtable(L, 3, 0);
    lua_pushvalue(L, op);
    lua_rawseti(L, -2, 1);
    lua_pushinteger(L, r->handed);
    lua_rawseti(L, -2, 2);
    lua_newtable(L);
    lua_rawseti(L, -2, 3);
    lua_rawseti(L, B_CTX, k);
    lua_pop(L, 1);
  }
}

/* ---------------------------------------------------------------- */
/* finished transfers */

static void finish_slot(lua_State *L, Run *r, int k) {
  Slot *s = &r->c->slots[k];
  int ctx, done;

  if (cmp_hook(L, B_CLIENT, s) != LUA_OK)
    lua_error(L);
  s->state = SLOT_FREE;

  lua_rawgeti(L, B_CTX, k);
  ctx = lua_gettop(L);
  lua_rawgeti(L, ctx, 3);   /* the list accumulator */
  if (cmp_reply(L, &s->reply, s->shape)) {
    done = cmp_finish(L, r->c, s, ctx + 1);
    if (done == 2) {        /* the slot now asks for the next page */
      lua_settop(L, ctx - 1);
      return;
    }
  }
  else if (cmp_retry(L, r->c, s)) {
    r->retried++;
    lua_settop(L, ctx - 1);
    return;
  }
  else
    done = 0;

  lua_rawgeti(L, ctx, 1);
  lua_rawgeti(L, ctx, 2);
  lua_pushnil(L);
  lua_rawseti(L, B_CTX, k);
  lua_pushvalue(L, -3);     /* the result or err */
  deliver(L, r, lua_tointeger(L, -2), lua_gettop(L) - 2, done);
  lua_settop(L, ctx - 1);
  r->starved = 0;           /* a completion may have queued more ops */
}

/*
** Without a token nothing can start: every call waiting to start ends
** with the token endpoint's err, which is at the top.
*/
static void fail_ready(lua_State *L, Run *r) {
  int err = lua_gettop(L), k;

  for (k = r->first; k <= r->last; k++) {
    Slot *s = &r->c->slots[k];
    if (s->state != SLOT_READY)
      continue;
    s->state = SLOT_FREE;
    lua_rawgeti(L, B_CTX, k);
    lua_rawgeti(L, -1, 1);
    lua_rawgeti(L, -2, 2);
    lua_pushnil(L);
    lua_rawseti(L, B_CTX, k);
    lua_pushvalue(L, err);
    deliver(L, r, lua_tointeger(L, -2), lua_gettop(L) - 2, 0);
    lua_settop(L, err);
  }
  lua_pop(L, 1);
  r->starved = 0;
}

static int any_ready(const Run *r) {
  int k;
  for (k = r->first; k <= r->last; k++)
    if (r->c->slots[k].state == SLOT_READY)
      return 1;
  return 0;
}

/* ---------------------------------------------------------------- */

static void read_bulk_options(lua_State *L, Run *r) {
  lua_Integer n = DEFAULT_CONCURRENCY;

  if (!lua_isnoneornil(L, B_OPTS)) {
    luaL_checktype(L, B_OPTS, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, B_OPTS) != 0) {
      size_t len = 1;
      const char *key = lua_type(L, -2) == LUA_TSTRING
                        ? lua_tolstring(L, -2, &len) : "?";
      if (strlen(key) != len)   /* "concurrency\0..." names no option */
        luaL_error(L, "bad option '%s' to 'bulk' (unknown option)", key);
      if (strcmp(key, "concurrency") == 0) {
        double d = lua_tonumber(L, -1);
        if (lua_type(L, -1) != LUA_TNUMBER || !(d >= 1) ||
            d > MAX_CONCURRENCY || d != (double)(int)d)
          luaL_error(L, "bad option 'concurrency' to 'bulk' (an integer "
                     "from 1 to %d expected)", MAX_CONCURRENCY);
        n = (lua_Integer)d;
      }
      else if (strcmp(key, "on_result") != 0)
        luaL_error(L, "bad option '%s' to 'bulk' (unknown option)", key);
      lua_pop(L, 1);
    }
  }
  lua_settop(L, B_OPTS);
  if (lua_istable(L, B_OPTS))
    lua_getfield(L, B_OPTS, "on_result");
  else
    lua_pushnil(L);
  if (!lua_isnil(L, B_ONRESULT) && !lua_isfunction(L, B_ONRESULT))
    luaL_error(L, "bad option 'on_result' to 'bulk' (a function "
               "expected)");
  lua_newtable(L);   /* B_CTX */
  r->first = 1;
  r->last = (int)n;
}

/* The run itself, under lua_pcall; the stack is laid out as B_*. */
static int run(lua_State *L) {
  Run *r = lua_touserdata(L, B_RUN);
  Client *c = r->c;

  lua_settop(L, B_CTX);
  for (;;) {
    int k;
    double wait;

    fill(L, r);
    if (r->exhausted && !busy(r))
      return 0;
    if (any_ready(r) && !cmp_token(L, c, B_CLIENT)) {
      fail_ready(L, r);
      continue;
    }
    wait = cmp_start_ready(c, r->first, r->last + 1);
    for (k = r->first; k <= r->last; k++)
      if (c->slots[k].state == SLOT_RUNNING)
        wait = wait > 1 ? 1 : wait;
    cmp_step(c, wait);
    for (k = r->first; k <= r->last; k++)
      if (c->slots[k].state == SLOT_DONE)
        finish_slot(L, r, k);
  }
}

int cmp_bulk(lua_State *L) {
  Run r;
  Client *c = cmp_checkclient(L, B_CLIENT);
  int i, status;

  memset(&r, 0, sizeof r);
  r.c = c;
  if (lua_type(L, B_OPS) == LUA_TTABLE) {
    r.from_array = 1;
    r.size = (lua_Integer)lua_rawlen(L, B_OPS);
  }
  else if (lua_type(L, B_OPS) != LUA_TFUNCTION)
    return luaL_argerror(L, B_OPS, "an array of ops or a function "
                         "expected");
  read_bulk_options(L, &r);
  /* reading the options ran Lua code (a finalizer may have closed it) */
  c = cmp_checkclient(L, B_CLIENT);
  if (c->in_bulk)
    return luaL_error(L, "a bulk run is already going on this client");
  if (c->nslots > 0 && cmp_busy(c))   /* the slots move */
    return luaL_error(L, "a call on this client is already running "
                      "(from its own hook?)");
  if (!cmp_grow_slots(c, r.last + 1))
    return luaL_error(L, "not enough memory");

  c->in_bulk = 1;
  lua_pushcfunction(L, run);
  for (i = 1; i <= B_CTX; i++)
    lua_pushvalue(L, i);
  lua_pushlightuserdata(L, &r);
  status = lua_pcall(L, B_RUN, 0, 0);
  stop(&r);
  if (status != LUA_OK)
    return lua_error(L);

  lua_createtable(L, 0, 4);
  lua_pushinteger(L, r.ok);
  lua_setfield(L, -2, "ok");
  lua_pushinteger(L, r.failed);
  lua_setfield(L, -2, "failed");
  lua_pushinteger(L, r.retried);
  lua_setfield(L, -2, "retried");
  lua_pushinteger(L, r.handed);
  lua_setfield(L, -2, "ops");
  return 1;
}
