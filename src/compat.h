/*
** compat.h: the few Lua 5.4 calls the module uses, mapped down to 5.3
** and to the 5.1 ABI (LuaJIT, as nginx's Lua module runs it, or Lua
** 5.1).  The rest of the source is written for 5.4 alone.
*/
#ifndef CAMPAIGN_COMPAT_H
#define CAMPAIGN_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

#if LUA_VERSION_NUM < 502

#define LUA_OK 0

#define lua_rawlen(L, i) lua_objlen(L, (i))
#define lua_absindex(L, i) \
  ((i) > 0 || (i) <= LUA_REGISTRYINDEX ? (i) : lua_gettop(L) + (i) + 1)

/* 5.3 made these return the type of the value they push. */
static inline int compat_getfield(lua_State *L, int i, const char *k) {
  lua_getfield(L, i, k);
  return lua_type(L, -1);
}

static inline int compat_rawgeti(lua_State *L, int i, int n) {
  lua_rawgeti(L, i, n);
  return lua_type(L, -1);
}

#define lua_getfield compat_getfield
#define lua_rawgeti compat_rawgeti

/* A userdata's one user value is its environment table. */
#define lua_newuserdatauv(L, sz, n) lua_newuserdata(L, (sz))
#define lua_setiuservalue(L, i, n) lua_setfenv(L, (i))

static inline int lua_getiuservalue(lua_State *L, int i, int n) {
  (void)n;
  lua_getfenv(L, i);
  return lua_type(L, -1);
}

static inline void lua_rawsetp(lua_State *L, int i, const void *p) {
  i = lua_absindex(L, i);
  lua_pushlightuserdata(L, (void *)p);
  lua_insert(L, -2);
  lua_rawset(L, i);
}

static inline int lua_rawgetp(lua_State *L, int i, const void *p) {
  i = lua_absindex(L, i);
  lua_pushlightuserdata(L, (void *)p);
  lua_rawget(L, i);
  return lua_type(L, -1);
}

static inline const char *luaL_tolstring(lua_State *L, int i, size_t *n) {
  i = lua_absindex(L, i);
  if (luaL_callmeta(L, i, "__tostring") && lua_isstring(L, -1))
    return lua_tolstring(L, -1, n);
  switch (lua_type(L, i)) {
    case LUA_TNUMBER:
    case LUA_TSTRING:
      lua_pushvalue(L, i);
      break;
    case LUA_TBOOLEAN:
      lua_pushstring(L, lua_toboolean(L, i) ? "true" : "false");
      break;
    case LUA_TNIL:
      lua_pushliteral(L, "nil");
      break;
    default:
      lua_pushfstring(L, "%s: %p", luaL_typename(L, i), lua_topointer(L, i));
  }
  return lua_tolstring(L, -1, n);
}

/* LuaJIT 2.1 has these three; plain Lua 5.1 does not. */
#ifndef luaL_newlib
#define luaL_newlib(L, l) (lua_newtable(L), luaL_setfuncs(L, l, 0))
#define luaL_setmetatable(L, t) \
  (luaL_getmetatable(L, t), lua_setmetatable(L, -2))

static inline void luaL_setfuncs(lua_State *L, const luaL_Reg *l,
                                 int nup) {
  luaL_checkstack(L, nup, "too many upvalues");
  for (; l->name != NULL; l++) {
    int i;
    for (i = 0; i < nup; i++)
      lua_pushvalue(L, -nup);
    lua_pushcclosure(L, l->func, nup);
    lua_setfield(L, -(nup + 2), l->name);
  }
  lua_pop(L, nup);
}
#endif

#endif

#if LUA_VERSION_NUM == 503
/* 5.3: a userdata has a single user value, any Lua value. */
#define lua_newuserdatauv(L, sz, n) lua_newuserdata(L, (sz))
#define lua_setiuservalue(L, i, n) lua_setuservalue(L, (i))
#define lua_getiuservalue(L, i, n) lua_getuservalue(L, (i))
#endif

#if LUA_VERSION_NUM < 503
/* No integer subtype: every number is a double, as it arrived. */
#define lua_isinteger(L, i) 0
#endif

#endif
