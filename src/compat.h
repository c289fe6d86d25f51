/*
** compat.h: the few Lua 5.4 calls the module uses, mapped down to the
** 5.1 ABI of LuaJIT.  The rest of the source is written for 5.4 alone.
*/
#ifndef CAMPAIGN_COMPAT_H
#define CAMPAIGN_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

#if LUA_VERSION_NUM < 502

#define LUA_OK 0

#define lua_rawlen(L, i) lua_objlen(L, (i))
#define luaL_setfuncs(L, l, n) compat_setfuncs(L, l, n)
#define luaL_newlib(L, l) (lua_newtable(L), luaL_setfuncs(L, l, 0))
#define lua_newuserdatauv(L, sz, n) lua_newuserdata(L, (sz))
#define lua_setiuservalue(L, i, n) lua_setfenv(L, (i))
#define lua_getiuservalue(L, i, n) (lua_getfenv(L, (i)), LUA_TTABLE)
#define luaL_testudata(L, i, t) compat_testudata(L, i, t)

static inline void compat_setfuncs(lua_State *L, const luaL_Reg *l,
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

static inline void *compat_testudata(lua_State *L, int i, const char *t) {
  void *p = lua_touserdata(L, i);
  if (p == NULL || !lua_getmetatable(L, i))
    return NULL;
  luaL_getmetatable(L, t);
  if (!lua_rawequal(L, -1, -2))
    p = NULL;
  lua_pop(L, 2);
  return p;
}

static inline void lua_rawsetp(lua_State *L, int i, const void *p) {
  i = i < 0 && i > LUA_REGISTRYINDEX ? lua_gettop(L) + i + 1 : i;
  lua_pushlightuserdata(L, (void *)p);
  lua_insert(L, -2);
  lua_rawset(L, i);
}

static inline int lua_rawgetp(lua_State *L, int i, const void *p) {
  i = i < 0 && i > LUA_REGISTRYINDEX ? lua_gettop(L) + i + 1 : i;
  lua_pushlightuserdata(L, (void *)p);
  lua_rawget(L, i);
  return lua_type(L, -1);
}

#endif

#if LUA_VERSION_NUM < 503
/* No integer subtype: every number is a double, as it arrived. */
#define lua_isinteger(L, i) 0
#endif

#endif
