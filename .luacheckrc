-- luacheck configuration: `make lint`, and spec/lint_spec.lua runs it too.
std = "max"
max_line_length = 120
codes = true

-- The emulator's code runs inside nginx (LuaJIT + ngx_lua).
files["emulator/lua"] = { std = "luajit+ngx_lua" }
-- The emulator's configure step runs under lua5.4.
files["emulator/configure.lua"] = { std = "lua54" }
-- The command line tool runs under lua5.4.
files["bin/aliocr"] = { std = "lua54" }
-- Specs run under lua5.4 with busted.
files["spec"] = { std = "lua54+busted" }
