/*
** interrupt.c: a test-only module that raises lua5.4's Ctrl-C error the
** way lua.c does.  lua.c's signal handler sets a C hook on the main
** thread; at the next event the hook clears itself and raises
** "interrupted!" with luaL_error.  A C hook runs without a frame of its
** own, so the error seems to come from whatever function was running:
** a Lua hook function (debug.sethook) would not show that.
**
**   local interrupt = require "interrupt"
**   interrupt.arm(co, n, "crl")  -- raise at the n-th event of thread co
**   interrupt.fired()            -- whether it was raised since armed
**
** Only events of the armed thread count: a coroutine created later has
** a copy of the hook, which passes its own events by, as lua.c's hook
** then fires in the main thread anyway.
*/
#include <lua.h>
#include <lauxlib.h>

static lua_State *target;
static long left;
static int fired;

static void hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  if (L != target || --left > 0)
    return;
  lua_sethook(L, NULL, 0, 0);
  fired = 1;
  luaL_error(L, "interrupted!");
}

static int mask_of(const char *s) {
  int mask = 0;
  for (; *s; s++) {
    if (*s == 'c')
      mask |= LUA_MASKCALL;
    else if (*s == 'r')
      mask |= LUA_MASKRET;
    else if (*s == 'l')
      mask |= LUA_MASKLINE;
  }
  return mask;
}

static int arm(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  luaL_argcheck(L, co != NULL, 1, "a thread expected");
  left = (long)luaL_checkinteger(L, 2);
  luaL_argcheck(L, left >= 1, 2, "an event number from 1 expected");
  target = co;
  fired = 0;
  lua_sethook(co, hook, mask_of(luaL_optstring(L, 3, "cr")), 0);
  return 0;
}

static int was_fired(lua_State *L) {
  lua_pushboolean(L, fired);
  return 1;
}

int luaopen_interrupt(lua_State *L);

__attribute__((visibility("default")))
int luaopen_interrupt(lua_State *L) {
  static const luaL_Reg functions[] = {
    { "arm", arm },
    { "fired", was_fired },
    { NULL, NULL }
  };
  luaL_newlib(L, functions);
  return 1;
}
