# aliocr: developer build. `make` builds, `make test` runs every spec,
# `make demo` runs the demo against the local emulator, `make install
# PREFIX=DIR` installs a standard tree. Each target first installs the Debian
# packages it needs (scripts/bootstrap) when they are missing.

LUA_VERSION ?= 5.4
LUA         ?= lua$(LUA_VERSION)
LUA_PC      ?= lua$(LUA_VERSION)
# Recursively expanded on purpose: pkg-config runs after the bootstrap.
LUA_CFLAGS  ?= $(shell pkg-config --cflags $(LUA_PC))
CURL_CFLAGS ?= $(shell pkg-config --cflags libcurl libcrypto)
CURL_LIBS   ?= $(shell pkg-config --libs libcurl libcrypto)

CFLAGS  ?= -O2 -g
WARN     = -Wall -Wextra -Werror -std=c99 -pedantic
ALL_CFLAGS = $(CFLAGS) $(WARN) -fPIC -fvisibility=hidden $(LUA_CFLAGS) $(CURL_CFLAGS)
LIBFLAG ?= -shared

PREFIX  ?= /usr/local
LUADIR   = $(PREFIX)/share/lua/$(LUA_VERSION)
LIBDIR   = $(PREFIX)/lib/lua/$(LUA_VERSION)
BINDIR   = $(PREFIX)/bin
DATADIR  = $(PREFIX)/share/aliocr

CORE     = build/aliocr/core.so
SOURCES  = $(wildcard src/*.c)
HEADERS  = $(wildcard src/*.h)

.PHONY: all bootstrap build test valgrind demo install lint clean

all: bootstrap
	@$(MAKE) --no-print-directory build

bootstrap:
	@scripts/bootstrap

build: $(CORE)

# Built aside and renamed: a process that has the old one loaded keeps it.
$(CORE): $(SOURCES) $(HEADERS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(LIBFLAG) -o $@.tmp $(SOURCES) $(LDFLAGS) $(CURL_LIBS)
	@mv -f $@.tmp $@

test: all
	@LUA=$(LUA) spec/run

# The client specs inside valgrind's memcheck: 0 errors, 0 bytes definitely lost.
valgrind: all
	@VALGRIND=1 LUA=$(LUA) spec/run $(wildcard spec/client_*_spec.lua)

demo: all
	@examples/emulator_demo.sh

lint: bootstrap
	luacheck lua emulator spec examples bin/aliocr

install: all
	install -d $(DESTDIR)$(LUADIR)/aliocr $(DESTDIR)$(LIBDIR)/aliocr $(DESTDIR)$(BINDIR) $(DESTDIR)$(DATADIR)
	install -m 644 lua/aliocr.lua $(DESTDIR)$(LUADIR)/aliocr.lua
	install -m 644 $(wildcard lua/aliocr/*.lua) $(DESTDIR)$(LUADIR)/aliocr/
	install -m 755 $(CORE) $(DESTDIR)$(LIBDIR)/aliocr/core.so
	install -m 755 bin/aliocr $(DESTDIR)$(BINDIR)/aliocr
	install -m 755 bin/aliocr-emulator $(DESTDIR)$(BINDIR)/aliocr-emulator
	rm -rf $(DESTDIR)$(DATADIR)/emulator
	cp -R emulator $(DESTDIR)$(DATADIR)/emulator

clean:
	rm -rf build
