# aliocr: developer build. `make` builds, `make test` runs every spec, `make
# unit` the unit specs alone (seconds), `make demo` runs the demo against the
# local emulator, `make docs` makes the API reference, `make model` runs the
# model-based test at length, `make install PREFIX=DIR` installs a standard
# tree (LUA_VERSION=5.4, 5.3 or 5.1), `make install-luajit PREFIX=DIR` the
# same for LuaJIT and nginx. Each target first installs the Debian packages
# it needs (scripts/bootstrap) when they are missing.

LUA_VERSION ?= 5.4
LUA         ?= lua$(LUA_VERSION)
CURL_CFLAGS ?= $(shell pkg-config --cflags libcurl libcrypto)
CURL_LIBS   ?= $(shell pkg-config --libs libcurl libcrypto)
# The engine's worker thread (src/worker.c).
CURL_CFLAGS += -pthread
CURL_LIBS   += -pthread -ldl

CFLAGS  ?= -O2 -g
WARN     = -Wall -Wextra -Werror -std=c99 -pedantic
LIBFLAG ?= -shared

PREFIX  ?= /usr/local
LUADIR   = $(PREFIX)/share/lua/$(LUA_VERSION)
LIBDIR   = $(PREFIX)/lib/lua/$(LUA_VERSION)
BINDIR   = $(PREFIX)/bin
DATADIR  = $(PREFIX)/share/aliocr

.DEFAULT_GOAL := all

SOURCES  = $(wildcard src/*.c)
HEADERS  = $(wildcard src/*.h)

# One core per Lua runtime, each built against that runtime's headers: Lua
# 5.4 (the default, in build/), 5.3, 5.1 and LuaJIT (OpenResty's fork, the
# one nginx's Lua module runs) in build/<runtime>/.
CORE     = build/aliocr/core.so
CORES    = $(CORE) build/5.3/aliocr/core.so build/5.1/aliocr/core.so build/jit/aliocr/core.so

# $(call core_rule,target,pkg-config name): built aside and renamed, so that
# a process that has the old one loaded keeps it. pkg-config runs when the
# recipe does, after the bootstrap.
define core_rule
$(1): $$(SOURCES) $$(HEADERS)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(CFLAGS) $$(WARN) -fPIC -fvisibility=hidden $$(shell pkg-config --cflags $(2)) $$(CURL_CFLAGS) \
	  $$(LIBFLAG) -o $$@.tmp $$(SOURCES) $$(LDFLAGS) $$(CURL_LIBS)
	@mv -f $$@.tmp $$@
endef
$(eval $(call core_rule,build/aliocr/core.so,lua5.4))
$(eval $(call core_rule,build/5.3/aliocr/core.so,lua5.3))
$(eval $(call core_rule,build/5.1/aliocr/core.so,lua5.1))
$(eval $(call core_rule,build/jit/aliocr/core.so,luajit))

# The core `make install` installs: the one built for LUA_VERSION (5.4, 5.3
# or 5.1); install-luajit installs LuaJIT's into the 5.1 tree LuaJIT reads.
INSTALL_CORE_5.4 = build/aliocr/core.so
INSTALL_CORE_5.3 = build/5.3/aliocr/core.so
INSTALL_CORE_5.1 = build/5.1/aliocr/core.so
INSTALL_CORE    ?= $(INSTALL_CORE_$(LUA_VERSION))

.PHONY: all bootstrap build test unit valgrind asan tsan model static fuzz demo docs bench soak install install-luajit lint clean

all: bootstrap
	@$(MAKE) --no-print-directory build

bootstrap:
	@scripts/bootstrap

build: $(CORES)

# The unit and integration specs (spec/unit, spec/integration) on every
# runtime, the repo specs (spec/repo) once under lua5.4; the last line sums
# them up.
test: all
	@spec/run-all

# The unit specs alone (spec/unit: no server, no child process), under lua5.4.
unit: all
	@spec/run spec/unit

# The runs whose cost is the CPU (valgrind, the sanitizers) go as this many
# runs side by side (spec/run-split): one per core.
SPEC_JOBS ?= $(shell nproc 2>/dev/null || echo 1)

# The unit and integration specs with their Lua process inside valgrind's
# memcheck: 0 errors, 0 bytes definitely lost. (The repo specs check files
# and run other programs: memcheck would trace nothing of theirs.)
valgrind: all
	@VALGRIND=1 LUA=$(LUA) spec/run-split $(SPEC_JOBS) spec/unit spec/integration

# The C core built with AddressSanitizer and UndefinedBehaviorSanitizer, and
# the unit and integration specs run against it under lua5.4 (spec/run
# ASAN=1): any report fails.
ASAN_CORE = build/asan/aliocr/core.so
$(ASAN_CORE): $(SOURCES) $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all $(WARN) \
	  -fPIC -fvisibility=hidden $(shell pkg-config --cflags lua5.4) $(CURL_CFLAGS) $(LIBFLAG) -o $@.tmp \
	  $(SOURCES) $(LDFLAGS) $(CURL_LIBS)
	@mv -f $@.tmp $@

# The interpreter that runs them: Lua 5.4 in a program built with the
# sanitizers (their runtimes must come first; a preload would reach children).
build/asan/lua: spec/asan_lua.c
	@mkdir -p $(dir $@)
	$(CC) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined $(WARN) \
	  $(shell pkg-config --cflags lua5.4) -o $@ $< $(shell pkg-config --libs lua5.4)

asan: all
	@$(MAKE) --no-print-directory $(ASAN_CORE) build/asan/lua
	@ASAN=1 spec/run-split $(SPEC_JOBS) spec/unit spec/integration

# The C core built with ThreadSanitizer (the engine's worker thread, see
# src/worker.c), and the specs of jobs, batches and the worker run against
# it under lua5.4 (spec/run TSAN=1): any report fails.
TSAN_CORE = build/tsan/aliocr/core.so
TSAN_SPECS = spec/integration/client_worker_spec.lua spec/integration/client_jobs_spec.lua \
  spec/integration/client_hostile_spec.lua spec/unit
$(TSAN_CORE): $(SOURCES) $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) -O1 -g -fno-omit-frame-pointer -fsanitize=thread $(WARN) \
	  -fPIC -fvisibility=hidden $(shell pkg-config --cflags lua5.4) $(CURL_CFLAGS) $(LIBFLAG) -o $@.tmp \
	  $(SOURCES) $(LDFLAGS) $(CURL_LIBS)
	@mv -f $@.tmp $@

build/tsan/lua: spec/asan_lua.c
	@mkdir -p $(dir $@)
	$(CC) -O1 -g -fno-omit-frame-pointer -fsanitize=thread $(WARN) \
	  $(shell pkg-config --cflags lua5.4) -o $@ $< $(shell pkg-config --libs lua5.4)

tsan: all
	@$(MAKE) --no-print-directory $(TSAN_CORE) build/tsan/lua
	@TSAN=1 spec/run $(TSAN_SPECS)

# The model-based test (spec/integration/model_spec.lua,
# spec/helpers/model.lua) at length: MODEL_OPS random operations (submit,
# cancel, poll, wait, batches that re-enter, raise or yield, blocking calls,
# close, finalizers, faults) in MODEL_SEQS sequences on clients of one
# emulator, each checked against a model of what every job, call and batch
# must end as and against the emulator's ledger, with the core built with the
# sanitizers (as `make asan`). MODEL_SEED=N replays a run; a failure prints
# its seed and its ops, shrunk. Then the model-based test of the nginx
# transport (spec/integration/model_nginx_spec.lua: calls, batches, thread
# kills, ngx.exit, downstream aborts, close from another light thread,
# faults) for MODEL_NGINX_OPS operations in
# MODEL_NGINX_SEQS sequences against the emulator's ledger and the worker's
# memory (the core inside nginx is the LuaJIT build: no sanitizers there).
# The two run side by side; their output is printed once both are done.
MODEL_OPS  ?= 60000
MODEL_SEQS ?= 120
MODEL_NGINX_OPS  ?= 1500
MODEL_NGINX_SEQS ?= 30
model: all
	@$(MAKE) --no-print-directory $(ASAN_CORE) build/asan/lua
	@ASAN=1 MODEL_OPS=$(MODEL_OPS) MODEL_SEQS=$(MODEL_SEQS) spec/run spec/integration/model_spec.lua \
	  > build/model.log 2>&1 & \
	  MODEL_OPS=$(MODEL_NGINX_OPS) MODEL_SEQS=$(MODEL_NGINX_SEQS) spec/run spec/integration/model_nginx_spec.lua \
	  > build/model_nginx.log 2>&1; \
	  wait; \
	  cat build/model.log build/model_nginx.log; \
	  cat build/model.log build/model_nginx.log | awk '/^[0-9]+ passed, [0-9]+ failed$$/ { p += $$1; f += $$3 } \
	    END { print p " passed, " f " failed"; exit f > 0 }'

# libFuzzer harnesses (fuzz/*.c, built with clang and the sanitizers), each
# run FUZZ_SECONDS from its seed corpus (scripts/fuzz).
FUZZ_SECONDS ?= 60
FUZZ_HARNESSES = build/fuzz/response_fuzz build/fuzz/sign_fuzz build/fuzz/http_fuzz
build/fuzz/%: fuzz/%.c fuzz/harness.h $(SOURCES) $(HEADERS)
	@mkdir -p build/fuzz
	clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -I src \
	  $(shell pkg-config --cflags lua5.4) $(CURL_CFLAGS) -o $@ $< $(SOURCES) \
	  $(shell pkg-config --libs lua5.4) $(CURL_LIBS)

fuzz: all
	@$(MAKE) --no-print-directory $(FUZZ_HARNESSES)
	@scripts/fuzz $(FUZZ_SECONDS)

# cppcheck and clang-tidy on src/, luacheck on the Lua: zero warnings.
static: bootstrap
	@scripts/static-check

# The main job: examples/demo.lua against the emulator's Tesseract backend.
demo: all
	@$(LUA) examples/demo.lua

# The benchmarks (bench/run.lua): a table on stdout, and build/bench/; then
# the rate limiter's (bench/rate.lua, about 2 minutes): a table on stdout and
# in build/bench/rate.md.
bench: all
	@scripts/bootstrap bench
	@$(MAKE) --no-print-directory build/bench/limit
	@lua5.4 bench/run.lua
	@lua5.4 bench/rate.lua > build/bench/rate.md && cat build/bench/rate.md

# 200,000 calls with one in ten faulted: resident size, descriptors, stats
# against the ledger (bench/soak.lua).
soak: all
	@lua5.4 bench/soak.lua

build/bench/limit: bench/limit.c
	@mkdir -p build/bench
	$(CC) $(CFLAGS) $(WARN) $(CURL_CFLAGS) -o $@ $< $(LDFLAGS) $(shell pkg-config --libs libcurl)

# The API reference, made by LDoc from the code's comments: build/docs/index.html.
docs: bootstrap
	@rm -rf build/docs
	@ldoc . >/dev/null
	@echo "build/docs/index.html"

lint: bootstrap
	luacheck lua emulator spec examples bin/aliocr scripts/make-samples bench

install: all
	@test -n "$(INSTALL_CORE)" || { echo "make install: LUA_VERSION must be 5.4, 5.3 or 5.1 (or use install-luajit)" >&2; exit 2; }
	install -d $(DESTDIR)$(LUADIR)/aliocr/client $(DESTDIR)$(LUADIR)/aliocr/cli $(DESTDIR)$(LIBDIR)/aliocr \
	  $(DESTDIR)$(BINDIR) $(DESTDIR)$(DATADIR)
	install -m 644 lua/aliocr.lua $(DESTDIR)$(LUADIR)/aliocr.lua
	install -m 644 $(wildcard lua/aliocr/*.lua) $(DESTDIR)$(LUADIR)/aliocr/
	install -m 644 $(wildcard lua/aliocr/client/*.lua) $(DESTDIR)$(LUADIR)/aliocr/client/
	install -m 644 $(wildcard lua/aliocr/cli/*.lua) $(DESTDIR)$(LUADIR)/aliocr/cli/
	install -m 755 $(INSTALL_CORE) $(DESTDIR)$(LIBDIR)/aliocr/core.so
	install -m 755 bin/aliocr $(DESTDIR)$(BINDIR)/aliocr
	install -m 755 bin/aliocr-emulator $(DESTDIR)$(BINDIR)/aliocr-emulator
	rm -rf $(DESTDIR)$(DATADIR)/emulator
	cp -R emulator $(DESTDIR)$(DATADIR)/emulator

# LuaJIT (nginx's Lua module, OpenResty, game hosts): PREFIX/share/lua/5.1
# and PREFIX/lib/lua/5.1, which LuaJIT searches when PREFIX is /usr/local.
install-luajit: all
	@$(MAKE) --no-print-directory install LUA_VERSION=5.1 INSTALL_CORE=build/jit/aliocr/core.so

clean:
	rm -rf build
