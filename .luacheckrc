-- luacheck settings for the whole tree.
std = "lua54"
max_line_length = 100
exclude_files = { "build/", "spec/sdk/node_modules/" }

files["spec/"] = { std = "+busted" }
files["spec/sandbox/lua/"] = { std = "luajit", globals = { "ngx" } }
files["examples/openresty/"] = { std = "luajit", globals = { "ngx" } }
files["lua/"] = { std = "luajit", read_globals = { "ngx" } }
