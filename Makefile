# netstep — build, test, sanitizers, fuzzing, benchmarks.
#
#   make               library and apps into build/ (gcc -O2 -g)
#   make test          every test: unit, protocol, fuzz (bounded), integration
#   make asan test     the same against an ASan+UBSan build in build-asan/
#   make tsan test     the same against a ThreadSanitizer build in build-tsan/
#   make fuzz          build the libFuzzer targets (clang) into build-fuzz/
#   make demo          a private namespace with tap0, netstepd, and a ping
#   make bench         throughput and latency against the kernel (ratios)
#   make setcap        let build/bin/* open taps without root
#   make clean
#
# Tools and packages: tools/install-deps installs every Debian package used.

CC       ?= gcc
SAN      :=
BUILD    := build
ifneq ($(filter asan,$(MAKECMDGOALS)),)
  BUILD  := build-asan
  SAN    := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
endif
ifneq ($(filter tsan,$(MAKECMDGOALS)),)
  BUILD  := build-tsan
  SAN    := -fsanitize=thread
endif

CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE -pthread $(SAN)
CPPFLAGS += -I. -Iplatform/linux
DEPFLAGS := -MMD -MP
LDFLAGS  += -pthread $(SAN)
LDLIBS   += -lcap -lm

LIB_SRCS := net.c $(wildcard util/*.c proto/*.c driver/*.c platform/linux/*.c)
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
LIB      := $(BUILD)/libnetstep.a

APP_COMMON := app/common.c app/server.c
APP_SRCS   := $(filter-out $(APP_COMMON),$(wildcard app/*.c))
APPS       := $(APP_SRCS:app/%.c=$(BUILD)/bin/%)

UNIT_SRCS  := $(wildcard tests/unit/test_*.c)
UNIT_BINS  := $(UNIT_SRCS:tests/%.c=$(BUILD)/tests/%)
PROTO_HELPERS := $(filter-out tests/proto/test_%.c,$(wildcard tests/proto/*.c))
PROTO_SRCS := $(wildcard tests/proto/test_*.c)
PROTO_BINS := $(PROTO_SRCS:tests/%.c=$(BUILD)/tests/%)

FUZZ_SRCS  := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS  := $(FUZZ_SRCS:tests/fuzz/%.c=build-fuzz/%)
FUZZ_RUNS  ?= 20000

PYTHON     ?= /usr/bin/python3

.PHONY: all asan tsan test unit proto fuzz fuzz-run integration demo bench setcap clean
all: $(LIB) $(APPS)
asan tsan: all

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(DEPFLAGS) $(CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/bin/%: app/%.c $(APP_COMMON) app/common.h app/server.h $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(APP_COMMON) $(LIB) $(LDFLAGS) $(LDLIBS)

$(BUILD)/tests/unit/%: tests/unit/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(LIB) $(LDFLAGS) $(LDLIBS) -lcmocka

$(BUILD)/tests/proto/%: tests/proto/%.c $(PROTO_HELPERS) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Itests/proto $(CFLAGS) -o $@ $< $(PROTO_HELPERS) $(LIB) $(LDFLAGS) $(LDLIBS) -lcmocka

# libFuzzer targets: the library sources compiled straight in with clang.
FUZZ_CFLAGS := -std=c11 -g -O1 -D_GNU_SOURCE -pthread -fsanitize=fuzzer,address,undefined \
               -fno-sanitize-recover=undefined -I. -Iplatform/linux -Itests/proto
build-fuzz/%: tests/fuzz/%.c $(LIB_SRCS) $(PROTO_HELPERS) $(wildcard *.h */*.h platform/linux/*.h tests/proto/*.h)
	@mkdir -p build-fuzz
	clang $(FUZZ_CFLAGS) -o $@ $< $(LIB_SRCS) $(PROTO_HELPERS) -lcap

fuzz: $(FUZZ_BINS)

unit: $(UNIT_BINS)
proto: $(PROTO_BINS)

# The whole suite; tools/run-tests prints one summary line that CI reads.
test: all $(UNIT_BINS) $(PROTO_BINS) $(if $(SAN),,$(FUZZ_BINS))
	NETSTEP_BUILD=$(BUILD) FUZZ_RUNS=$(FUZZ_RUNS) PYTHON=$(PYTHON) \
	    SANITIZER="$(filter asan tsan,$(MAKECMDGOALS))" tools/run-tests

demo: all
	tools/demo

$(BUILD)/bench/%: bench/%.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -g -Wall -Wextra -Werror -o $@ $<

bench: all $(BUILD)/bench/udpbench $(BUILD)/bench/tcpbench $(BUILD)/bench/tapread
	NETSTEP_BUILD=$(BUILD) $(PYTHON) bench/bench.py

setcap: all
	setcap cap_net_admin+ep $(BUILD)/bin/* || { echo "setcap needs root (sudo make setcap)"; exit 1; }

clean:
	rm -rf build build-asan build-tsan build-fuzz

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
