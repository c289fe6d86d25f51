-- Builds from the checkout with nothing fetched:
--   luarocks --lua-version 5.4 make --deps-mode=none
rockspec_format = "3.0"
package = "campaign"
version = "0.1.0-1"
source = {
  url = "git+file:///campaign",  -- `luarocks make` builds the checkout itself
}
description = {
  summary = "Adobe Campaign profile API for Lua, in C on libcurl and lua-cjson",
  detailed = [[
    Profiles in and out of Adobe Campaign as Lua tables: many calls in
    flight, retries that respect the server, tokens that renew themselves,
    and the CCPA "do not sell" opt-out.
  ]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.1",
  "lua-cjson",  -- Debian: lua-cjson; not fetched with --deps-mode=none
}
-- Debian keeps curl.h under a multiarch path that LuaRocks does not
-- search, so the build goes through the Makefile, which asks pkg-config.
build = {
  type = "make",
  build_variables = {
    CFLAGS = "$(CFLAGS)",
    LUA_CFLAGS = "-I$(LUA_INCDIR)",
    OUT = "build/luarocks$(LUA)",
  },
  install_variables = {
    OUT = "build/luarocks$(LUA)",
    LIBDIR = "$(LIBDIR)",
    LUADIR = "$(LUADIR)",
  },
}
