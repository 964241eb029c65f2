# fedcomp - federated-learning coordinator with gradient compression.
#
# Public targets: all test check bench fuzz demo sweep install uninstall
# clean deps check-valgrind. Every target that needs libraries first runs
# `deps` (deploy/deps.sh installs what is missing with apt-get), then calls
# make again with FL_INNER=1: pkg-config flags are only computed in that
# inner make, after pkg-config itself may have been installed (TRAPS.md).

SHELL := /bin/bash
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
DESTDIR ?=
B := build

.DEFAULT_GOAL := all
OUTER_TARGETS := all test check bench bench-compress fuzz demo sweep \
                 install check-valgrind programs

ifndef FL_INNER
# ---------------------------------------------------------------- outer
.PHONY: $(OUTER_TARGETS) deps clean uninstall
$(OUTER_TARGETS): deps
	@$(MAKE) --no-print-directory FL_INNER=1 $@

deps:
	@deploy/deps.sh

clean:
	rm -rf $(B)

uninstall:
	rm -f $(addprefix $(DESTDIR)$(BINDIR)/,fedcomp-coordinator \
	    fedcomp-worker fedcomp-eval fedcomp-bench)

else
# ---------------------------------------------------------------- inner
PKGS := libzmq libprotobuf-c libzstd liblz4 openblas zlib
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))
PKG_LIBS := $(shell pkg-config --libs $(PKGS)) -lm -lpthread
CMOCKA_LIBS := $(shell pkg-config --libs cmocka)

WARN := -std=c11 -Wall -Wextra -Wpedantic -Wshadow -Wcast-qual -Wcast-align \
        -Wstrict-prototypes -Wmissing-prototypes -Wpointer-arith -Wvla \
        -Wformat=2 -Wwrite-strings -Wundef -Wswitch-enum -fno-common
CPPFLAGS_ALL := -I. -I$(B)/gen -D_DEFAULT_SOURCE $(PKG_CFLAGS)

# Variants: rel (optimised, asserts on), asan (address + undefined).
CFLAGS_rel := -O2 -g -Werror
CFLAGS_asan := -O1 -g -Werror -fsanitize=address,undefined \
               -fno-sanitize-recover=all -fno-omit-frame-pointer
LDFLAGS_rel :=
LDFLAGS_asan := -fsanitize=address,undefined

# Sources. A file named *_main.c is a program entry point.
LIB_SRCS := $(wildcard common/*.c compress/*.c proto/*.c model/*.c)
COORD_SRCS := $(filter-out %_main.c,$(wildcard coordinator/*.c))
WRK_SRCS := $(filter-out %_main.c,$(wildcard worker/*.c))
BENCH_SRCS := $(filter-out %_main.c,$(wildcard bench/*.c))
GEN_C := $(B)/gen/proto/fedcomp.pb-c.c
GEN_H := $(B)/gen/proto/fedcomp.pb-c.h
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)

# program name -> main source
PROG_fedcomp-coordinator := coordinator/coord_main.c
PROG_fedcomp-worker := worker/wrk_main.c
PROG_fedcomp-eval := coordinator/eval_main.c
PROG_fedcomp-bench := bench/bench_main.c
PROGRAMS := $(foreach p,fedcomp-coordinator fedcomp-worker fedcomp-eval \
              fedcomp-bench,$(if $(wildcard $(PROG_$(p))),$(p)))

objs = $(patsubst %.c,$(B)/$(1)/obj/%.o,$(2))

$(GEN_C) $(GEN_H): proto/fedcomp.proto
	@mkdir -p $(B)/gen
	protoc-c --c_out=$(B)/gen $<

# ---- per-variant rules
define VARIANT
$(B)/$(1)/obj/%.o: %.c $(GEN_H)
	@mkdir -p $$(@D)
	$$(CC) $(WARN) $$(CFLAGS_$(1)) $$(CPPFLAGS_ALL) -MMD -MP -c $$< -o $$@

# generated code: not ours to warn about beyond the basics
$(B)/$(1)/obj/gen/%.o: $(B)/gen/%.c $(GEN_H)
	@mkdir -p $$(@D)
	$$(CC) -std=c11 -Wall $$(CFLAGS_$(1)) $$(CPPFLAGS_ALL) -MMD -MP -c $$< -o $$@

$(B)/$(1)/libfedcomp.a: $(call objs,$(1),$(LIB_SRCS)) $(B)/$(1)/obj/gen/proto/fedcomp.pb-c.o
	@rm -f $$@
	$$(AR) rcs $$@ $$^
$(B)/$(1)/libcoord.a: $(call objs,$(1),$(COORD_SRCS))
	@rm -f $$@
	$$(AR) rcs $$@ $$^
$(B)/$(1)/libwrk.a: $(call objs,$(1),$(WRK_SRCS))
	@rm -f $$@
	$$(AR) rcs $$@ $$^
$(B)/$(1)/libbench.a: $(call objs,$(1),$(BENCH_SRCS))
	@rm -f $$@
	$$(AR) rcs $$@ $$^

LIBS_$(1) := $(if $(COORD_SRCS),$(B)/$(1)/libcoord.a) \
             $(if $(WRK_SRCS),$(B)/$(1)/libwrk.a) \
             $(if $(BENCH_SRCS),$(B)/$(1)/libbench.a) $(B)/$(1)/libfedcomp.a

$(B)/$(1)/bin/%: $$(LIBS_$(1)) $(call objs,$(1),$(wildcard */*_main.c))
	@mkdir -p $$(@D)
	$$(CC) $$(CFLAGS_$(1)) $$(LDFLAGS_$(1)) -o $$@ \
	    $(B)/$(1)/obj/$$(patsubst %.c,%.o,$$(PROG_$$*)) $$(LIBS_$(1)) $(PKG_LIBS)

$(B)/$(1)/tests/%: $(B)/$(1)/obj/tests/unit/%.o $$(LIBS_$(1))
	@mkdir -p $$(@D)
	$$(CC) $$(CFLAGS_$(1)) $$(LDFLAGS_$(1)) -o $$@ $$< $$(LIBS_$(1)) \
	    $(CMOCKA_LIBS) $(PKG_LIBS)

# plain-main replay of the fuzz targets (gcc; corpus replay in make test)
$(B)/$(1)/fuzz/%: $(B)/$(1)/obj/tests/fuzz/%.o $(B)/$(1)/obj/tests/fuzz/replay_main.o $$(LIBS_$(1))
	@mkdir -p $$(@D)
	$$(CC) $$(CFLAGS_$(1)) $$(LDFLAGS_$(1)) -o $$@ $$< \
	    $(B)/$(1)/obj/tests/fuzz/replay_main.o $$(LIBS_$(1)) $(PKG_LIBS)

build-$(1): $(addprefix $(B)/$(1)/bin/,$(PROGRAMS)) \
            $(patsubst tests/unit/%.c,$(B)/$(1)/tests/%,$(UNIT_SRCS)) \
            $(patsubst tests/fuzz/%.c,$(B)/$(1)/fuzz/%,$(FUZZ_SRCS))
endef
$(foreach v,rel asan,$(eval $(call VARIANT,$(v))))

.SECONDARY:
.PHONY: all programs test check bench bench-compress fuzz demo sweep install \
        check-valgrind build-rel build-asan

# Programs are also placed directly in build/ (build/fedcomp-coordinator).
programs: build-rel
	@for p in $(PROGRAMS); do ln -sf rel/bin/$$p $(B)/$$p; done
all: programs

check: programs
	@tests/run-tests.sh --quick

test: programs build-asan
	@tests/run-tests.sh --full

bench: programs
	@bench/run-bench.sh

bench-compress: programs
	@$(B)/fedcomp-bench compress

demo: programs
	@deploy/demo.sh

sweep: programs
	@bench/sweep.sh

check-valgrind: programs
	@tests/valgrind.sh

install: programs
	install -d $(DESTDIR)$(BINDIR)
	install -m 0755 $(addprefix $(B)/rel/bin/,$(PROGRAMS)) $(DESTDIR)$(BINDIR)/

# ---- libFuzzer builds (clang), not part of make test
FUZZ_CC := clang
FUZZ_CFLAGS := -std=c11 -g -O1 -fsanitize=fuzzer-no-link,address,undefined
FUZZ_LIB_OBJS := $(patsubst %.c,$(B)/fuzz/obj/%.o,$(LIB_SRCS) $(COORD_SRCS)) \
                 $(B)/fuzz/obj/gen/proto/fedcomp.pb-c.o
$(B)/fuzz/obj/%.o: %.c $(GEN_H)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(CPPFLAGS_ALL) -c $< -o $@
$(B)/fuzz/obj/gen/%.o: $(B)/gen/%.c $(GEN_H)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(CPPFLAGS_ALL) -c $< -o $@
$(B)/fuzz/bin/%: $(B)/fuzz/obj/tests/fuzz/%.o $(FUZZ_LIB_OBJS)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $^ $(PKG_LIBS)
fuzz: $(patsubst tests/fuzz/%.c,$(B)/fuzz/bin/%,$(FUZZ_SRCS))
	@tests/fuzz/run-fuzz.sh $^

-include $(shell find $(B) -name '*.d' 2>/dev/null)
endif
