-- luacheck configuration: `make lint`, and spec/repo/lint_spec.lua runs it too.
std = "max"
max_line_length = 120
codes = true

-- The transport for nginx uses its `ngx` global.
files["lua/aliocr/resty.lua"] = { read_globals = { "ngx" } }
-- The nginx example and the specs' handlers run inside nginx.
files["examples/openresty"] = { std = "luajit+ngx_lua" }
-- The LÖVE and Neovim examples run inside those hosts, under LuaJIT.
files["examples/love"] = { std = "luajit", globals = { "love" } }
files["examples/neovim"] = { std = "luajit", read_globals = { "vim" } }
files["spec/helpers/nginx_case.lua"] = { std = "luajit+ngx_lua" }
files["spec/helpers/nginx_json.lua"] = { std = "luajit+ngx_lua" }
files["spec/helpers/nginx_connect.lua"] = { std = "luajit+ngx_lua" }
files["spec/helpers/nginx_hostile.lua"] = { std = "luajit+ngx_lua" }
files["spec/helpers/nginx_net.lua"] = { std = "luajit+ngx_lua" }
files["spec/helpers/nginx_phases.lua"] = { std = "luajit+ngx_lua" }
files["spec/helpers/model_nginx_case.lua"] = { std = "luajit+ngx_lua" }
-- The emulator's code runs inside nginx (LuaJIT + ngx_lua).
files["emulator/lua"] = { std = "luajit+ngx_lua" }
-- The emulator's configure step (configure.lua and configure/) runs under lua5.4.
files["emulator/configure.lua"] = { std = "lua54" }
files["emulator/configure"] = { std = "lua54" }
-- The command line tool runs under lua5.4.
files["bin/aliocr"] = { std = "lua54" }
files["scripts/make-samples"] = { std = "lua54" }
-- The benchmarks: lua5.4 scripts, a wrk script and an nginx handler.
files["bench"] = { std = "lua54" }
files["bench/post.lua"] = { std = "luajit", globals = { "wrk" } }
files["bench/handler.lua"] = { std = "luajit+ngx_lua" }
-- Specs run with busted under every runtime (5.1, 5.3, 5.4, LuaJIT); spec/repo
-- under lua5.4 only, but its files share the specs' helpers and standard.
files["spec"] = { std = "max+busted" }
