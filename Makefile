# campaign: a Lua binding of the Adobe Campaign profile API.
#
#   make            build the module for Lua 5.4 (build/lua5.4/campaign.so)
#   make test       install what is missing, build, run every spec
#   make demo       the opt-out job against a local sandbox
#   make sandbox    start the local Campaign sandbox (PORT=, SEED=)
#   make install    PREFIX=/usr/local DESTDIR=

LUA ?= lua5.4
PREFIX ?= /usr/local
CC ?= cc

# Each Lua ABI builds into a folder of its own, so that a 5.4 build is
# never picked up by LuaJIT (or the other way round).
ifeq ($(LUA),luajit)
  LUA_PC ?= luajit
  LUA_V ?= 5.1
else
  LUA_PC ?= $(LUA)
  LUA_V ?= $(patsubst lua%,%,$(LUA))
endif
OUT ?= build/$(LUA)
LIBDIR ?= $(PREFIX)/lib/lua/$(LUA_V)
LUADIR ?= $(PREFIX)/share/lua/$(LUA_V)

LUA_CFLAGS := $(shell pkg-config --cflags $(LUA_PC) 2>/dev/null)
CURL_CFLAGS := $(shell pkg-config --cflags libcurl 2>/dev/null)
CURL_LIBS := $(shell pkg-config --libs libcurl 2>/dev/null || echo -lcurl)

OPT ?= -O2
CFLAGS ?= $(OPT) -g
WARN = -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes
ALL_CFLAGS = -std=c99 -D_POSIX_C_SOURCE=200809L -fPIC -fvisibility=hidden $(WARN) $(CFLAGS) \
  $(LUA_CFLAGS) $(CURL_CFLAGS)
LDFLAGS ?=
ALL_LDFLAGS = -shared $(LDFLAGS)

SRC = $(wildcard src/*.c)
HDR = $(wildcard src/*.h)
OBJ = $(patsubst src/%.c,$(OUT)/%.o,$(SRC))
SO = $(OUT)/campaign.so
SPEC_SO = build/spec/$(LUA)/interrupt.so
SPEC_THREADS = build/spec/$(LUA)/threads

BUSTED = $(LUA) /usr/bin/busted
WITH_SANDBOX = sh spec/sandbox/with-sandbox.sh

.PHONY: all deps install clean test spec lint demo sandbox sandbox-stop \
  check-memory bench

all: $(SO)

$(OUT)/%.o: src/%.c $(HDR) | $(OUT)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(SO): $(OBJ)
	$(CC) $(ALL_LDFLAGS) -o $@ $(OBJ) $(CURL_LIBS)

$(OUT):
	mkdir -p $@

deps:
	@sh tools/deps.sh test

install: $(SO)
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(LUADIR)/campaign
	install -m 0755 $(SO) $(DESTDIR)$(LIBDIR)/campaign.so
	install -m 0644 lua/campaign/ngx.lua $(DESTDIR)$(LUADIR)/campaign/ngx.lua

clean:
	rm -rf build

# The specs: the module against the sandbox over 127.0.0.1.
test:
	@sh tools/deps.sh test
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory spec lint sdk-check

spec: $(SO) $(SPEC_SO) $(SPEC_THREADS)
	$(WITH_SANDBOX) $(BUSTED) spec

# Test-only programs for the specs: lua.c's Ctrl-C raised at a chosen
# hook event (spec/support/interrupt.c), and Lua states in threads
# (spec/threads/threads.c; also run under helgrind and TSan by
# check-threads).
$(SPEC_SO): spec/support/interrupt.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $<

$(SPEC_THREADS): spec/threads/threads.c
	@mkdir -p $(@D)
	$(CC) -O1 -g $(SAN_DEFS) -o $@ $< $(LUA_LIBS) -lpthread

lint:
	luacheck -q .

sandbox:
	@sh tools/deps.sh sandbox
	@sh spec/sandbox/sandbox.sh start

sandbox-stop:
	@sh spec/sandbox/sandbox.sh stop

demo:
	@sh tools/deps.sh demo
	@$(MAKE) --no-print-directory all
	@sh examples/demo.sh

# The whole suite with the interpreter under valgrind: definite leaks and
# invalid accesses fail it.  Programs the specs start are not followed.
check-memory:
	@sh tools/deps.sh memory
	@$(MAKE) --no-print-directory all $(SPEC_SO) $(SPEC_THREADS)
	$(WITH_SANDBOX) valgrind -q --leak-check=full \
	  --errors-for-leak-kinds=definite --show-leak-kinds=definite \
	  --error-exitcode=1 --suppressions=spec/valgrind.supp $(BUSTED) spec

bench:
	@sh tools/deps.sh bench
	@$(MAKE) --no-print-directory all
	@sh spec/bench/run.sh

# Adobe's Node SDK against a sandbox (npm install into build/sdk; says
# "skipped" and succeeds when npm is unreachable).
.PHONY: sdk-check
sdk-check:
	@sh spec/sdk/check.sh

# The OpenResty example (examples/openresty/): nginx with the LuaJIT build,
# against a sandbox; Ctrl-C stops both.
.PHONY: openresty-demo
openresty-demo:
	@sh examples/openresty/run.sh

# ----------------------------------------------------------------------
# Hardening (issue 6): the fuzzer, the sanitizers, threads.
#
#   make fuzz [FUZZ_SECONDS=60]  libFuzzer (+ASan, UBSan) on the code that
#                                turns answers into results (fuzz/)
#   make check-asan              every spec, the module built with ASan and
#                                UBSan into build/asan (lua5.4 is not)
#   make check-threads           Lua states in threads, helgrind and TSan
.PHONY: fuzz check-asan check-threads
FUZZ_SECONDS ?= 60
SAN_CC ?= clang
LUA_LIBS = $(shell pkg-config --libs $(LUA_PC) 2>/dev/null || echo -l$(LUA))
SAN_DEFS = -std=c99 -D_POSIX_C_SOURCE=200809L $(LUA_CFLAGS) $(CURL_CFLAGS)

build/fuzz/fuzz_reply: fuzz/fuzz_reply.c $(SRC) $(HDR)
	@sh tools/deps.sh fuzz
	@mkdir -p build/fuzz
	$(SAN_CC) -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	  $(SAN_DEFS) -o $@ fuzz/fuzz_reply.c $(SRC) $(LUA_LIBS) $(CURL_LIBS) -lm -lpthread

# The harness keeps one Lua state across inputs, whose garbage outlives
# each input: leaks are left to check-memory (valgrind).
fuzz: build/fuzz/fuzz_reply
	@mkdir -p build/fuzz/work
	build/fuzz/fuzz_reply -max_total_time=$(FUZZ_SECONDS) -max_len=16384 -timeout=10 \
	  -detect_leaks=0 \
	  -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=build/fuzz/ \
	  build/fuzz/work fuzz/corpus

ASAN_FLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
  -fno-sanitize-recover=undefined
check-asan:
	@sh tools/deps.sh asan
	@$(MAKE) --no-print-directory OUT=build/asan CC=$(SAN_CC) CFLAGS="$(ASAN_FLAGS)" \
	  LDFLAGS="-fsanitize=address,undefined -shared-libasan" all
	@$(MAKE) --no-print-directory $(SO) $(SPEC_SO) $(SPEC_THREADS)
	SAN_CC=$(SAN_CC) $(WITH_SANDBOX) sh spec/support/asan-run.sh $(BUSTED) spec

check-threads: $(SO)
	@sh tools/deps.sh asan
	@sh tools/deps.sh memory
	@$(MAKE) --no-print-directory OUT=build/tsan CC=$(SAN_CC) CFLAGS="-O1 -g -fsanitize=thread" \
	  LDFLAGS="-fsanitize=thread" all
	@mkdir -p build/threads
	$(CC) -g -O1 $(SAN_DEFS) -o build/threads/threads spec/threads/threads.c $(LUA_LIBS) -lpthread
	$(SAN_CC) -g -O1 -fsanitize=thread $(SAN_DEFS) -o build/threads/threads-tsan \
	  spec/threads/threads.c $(LUA_LIBS) -lpthread
	$(WITH_SANDBOX) sh spec/threads/run.sh
