# fedcomp - federated-learning coordinator with gradient compression.
#
# Public targets: all test check bench fuzz demo sweep install uninstall
# clean deps check-valgrind. Every target that needs libraries first runs
# `deps` (deploy/deps.sh installs what is missing with apt-get), then calls
# make again with FL_INNER=1: pkg-config flags are only computed in that
# inner make, after pkg-config itself may have been installed (TRAPS.md).
#
# Edge builds of the worker (deploy/README.md, "Edge builds"):
#   make worker-static          build/static/bin/fedcomp-worker: every library
#                               linked statically except libzmq and glibc
#   make CROSS=aarch64-linux-gnu  build/aarch64-linux-gnu/bin/fedcomp-worker,
#                               cross-built with Debian's cross toolchain and
#                               arm64 libraries (deps: deploy/deps.sh --cross)

SHELL := /bin/bash
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
DESTDIR ?=
B := build

.DEFAULT_GOAL := all
OUTER_TARGETS := all test check bench bench-compress bench-scale fuzz demo sweep \
                 install check-valgrind programs worker-static bench-worker \
                 bench-slowlink soak soak-lsan

ifdef CROSS
# cross mode: only the worker, in build/$(CROSS) (B=... overrides)
ifneq ($(origin B),command line)
B := build/$(CROSS)
endif
endif

ifndef FL_INNER
# ---------------------------------------------------------------- outer
NPROC := $(shell nproc 2>/dev/null || echo 2)
ifdef CROSS
.PHONY: all worker deps clean
all worker: deps
	@$(MAKE) --no-print-directory -j$(NPROC) FL_INNER=1 worker

deps:
	@deploy/deps.sh --cross $(CROSS)

clean:
	rm -rf $(B)
else
.PHONY: $(OUTER_TARGETS) deps clean uninstall
$(OUTER_TARGETS): deps
	@$(MAKE) --no-print-directory -j$(NPROC) FL_INNER=1 $@

deps:
	@deploy/deps.sh

clean:
	rm -rf $(B)

uninstall:
	rm -f $(addprefix $(DESTDIR)$(BINDIR)/,fedcomp-coordinator \
	    fedcomp-worker fedcomp-eval fedcomp-bench fedcomp-report \
	    fedcomp-swarm fedcomp-router-baseline fedcomp-keygen fedcomp-attack \
	    fedcomp-tune)
endif # CROSS

else
# ---------------------------------------------------------------- inner
PKG_CONFIG := pkg-config
PKGS := libzmq libprotobuf-c libzstd liblz4 openblas zlib libmicrohttpd
ifdef CROSS
# the target's .pc files only; the worker needs no libmicrohttpd or cmocka
CC := $(CROSS)-gcc
AR := $(CROSS)-ar
PKG_CONFIG := PKG_CONFIG_LIBDIR=/usr/lib/$(CROSS)/pkgconfig:/usr/share/pkgconfig pkg-config
PKGS := libzmq libprotobuf-c libzstd liblz4 openblas zlib
endif
PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PKGS))
PKG_LIBS := $(shell $(PKG_CONFIG) --libs $(PKGS)) -lm -lpthread
CMOCKA_LIBS := $(if $(CROSS),,$(shell pkg-config --libs cmocka))

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

# Sources. A file named *_main.c is a program entry point. Each folder is a
# layer with its own archive; a unit test links only the layers its name
# says (test_cmp_* -> compress + common), which also proves the layering.
GEN_C := $(B)/gen/proto/fedcomp.pb-c.c
GEN_H := $(B)/gen/proto/fedcomp.pb-c.h
SRCS_common := $(wildcard common/*.c)
SRCS_cmp := $(wildcard compress/*.c)
SRCS_pb := $(wildcard proto/*.c)
SRCS_mdl := $(filter-out %_main.c,$(wildcard model/*.c))
SRCS_coord := $(filter-out %_main.c,$(wildcard coordinator/*.c))
SRCS_wrk := $(filter-out %_main.c,$(wildcard worker/*.c))
SRCS_bench := $(filter-out %_main.c,$(wildcard bench/*.c))
LAYERS := coord wrk bench mdl pb cmp common
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
# helpers some unit tests share (linked from an archive: only where used)
UNIT_HELPERS := $(filter-out $(UNIT_SRCS),$(wildcard tests/unit/*.c))
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
LIB_SRCS := $(SRCS_common) $(SRCS_cmp) $(SRCS_pb) $(SRCS_mdl)

# layers a test or fuzz target links, by its name
layers_for = $(strip \
    $(if $(filter test_common%,$(1)),common, \
    $(if $(filter test_cmp% fuzz_cmp%,$(1)),cmp common, \
    $(if $(filter test_pb% fuzz_pb%,$(1)),pb cmp common, \
    $(if $(filter test_mdl%,$(1)),mdl common, \
    $(LAYERS))))))

# program name -> main source
PROG_fedcomp-coordinator := coordinator/coord_main.c
PROG_fedcomp-worker := worker/wrk_main.c
PROG_fedcomp-eval := coordinator/eval_main.c
PROG_fedcomp-bench := bench/bench_main.c
PROG_fedcomp-report := coordinator/report_main.c
PROG_fedcomp-swarm := bench/swarm_main.c
PROG_fedcomp-router-baseline := bench/router_main.c
PROG_fedcomp-keygen := worker/keygen_main.c
PROG_fedcomp-attack := bench/attack_main.c
PROG_fedcomp-tune := bench/tune_main.c
PROGRAMS := $(foreach p,fedcomp-coordinator fedcomp-worker fedcomp-eval \
              fedcomp-bench fedcomp-report fedcomp-swarm \
              fedcomp-router-baseline fedcomp-keygen \
              fedcomp-attack fedcomp-tune,$(if $(wildcard $(PROG_$(p))),$(p)))

objs = $(patsubst %.c,$(B)/$(1)/obj/%.o,$(2))
# archives of variant $(1) for layers $(2), in link order, skipping empty ones
libs = $(foreach l,$(2),$(if $(SRCS_$(l))$(filter pb,$(l)),$(B)/$(1)/lib$(l).a))

$(GEN_C) $(GEN_H) &: proto/fedcomp.proto
	@mkdir -p $(B)/gen
	@echo "  PROTO $<"
	@protoc-c --c_out=$(B)/gen $<

# ---- per-variant rules
define VARIANT
$(B)/$(1)/obj/%.o: %.c $(GEN_H)
	@mkdir -p $$(@D)
	@echo "  CC    $(1)  $$<"
	@$$(CC) $(WARN) $$(CFLAGS_$(1)) $$(CPPFLAGS_ALL) -MMD -MP -c $$< -o $$@

# generated code: not ours to warn about beyond the basics
$(B)/$(1)/obj/gen/%.o: $(B)/gen/%.c $(GEN_H)
	@mkdir -p $$(@D)
	@echo "  CC    $(1)  $$<"
	@$$(CC) -std=c11 -Wall $$(CFLAGS_$(1)) $$(CPPFLAGS_ALL) -MMD -MP -c $$< -o $$@

$(foreach l,common cmp mdl coord wrk bench,
$(B)/$(1)/lib$(l).a: $(call objs,$(1),$(SRCS_$(l)))
	@rm -f $$@
	@echo "  AR    $$@"
	@$$(AR) rcs $$@ $$^
)
$(B)/$(1)/libpb.a: $(call objs,$(1),$(SRCS_pb)) $(B)/$(1)/obj/gen/proto/fedcomp.pb-c.o
	@rm -f $$@
	@echo "  AR    $$@"
	@$$(AR) rcs $$@ $$^

$(B)/$(1)/bin/%: $(call libs,$(1),$(LAYERS)) $(call objs,$(1),$(wildcard */*_main.c))
	@mkdir -p $$(@D)
	@echo "  LINK  $$@"
	@$$(CC) $$(CFLAGS_$(1)) $$(LDFLAGS_$(1)) -o $$@ \
	    $(B)/$(1)/obj/$$(patsubst %.c,%.o,$$(PROG_$$*)) \
	    $(call libs,$(1),$(LAYERS)) $(PKG_LIBS)

$(B)/$(1)/libtesthelp.a: $(call objs,$(1),$(UNIT_HELPERS))
	@rm -f $$@
	@echo "  AR    $$@"
	@$$(AR) rcs $$@ $$^

$(foreach t,$(patsubst tests/unit/%.c,%,$(UNIT_SRCS)),
$(B)/$(1)/tests/$(t): $(B)/$(1)/obj/tests/unit/$(t).o $(B)/$(1)/libtesthelp.a $(call libs,$(1),$(call layers_for,$(t)))
	@mkdir -p $$(@D)
	@echo "  LINK  $$@"
	@$$(CC) $$(CFLAGS_$(1)) $$(LDFLAGS_$(1)) -o $$@ $$^ $(CMOCKA_LIBS) $(PKG_LIBS)
)

# plain-main replay of the fuzz targets (gcc; corpus replay in make test)
$(foreach t,$(patsubst tests/fuzz/%.c,%,$(FUZZ_SRCS)),
$(B)/$(1)/fuzz/$(t): $(B)/$(1)/obj/tests/fuzz/$(t).o $(B)/$(1)/obj/tests/fuzz/replay_main.o $(call libs,$(1),$(call layers_for,$(t)))
	@mkdir -p $$(@D)
	@echo "  LINK  $$@"
	@$$(CC) $$(CFLAGS_$(1)) $$(LDFLAGS_$(1)) -o $$@ $$^ $(PKG_LIBS)
)

build-$(1): $(addprefix $(B)/$(1)/bin/,$(PROGRAMS)) \
            $(patsubst tests/unit/%.c,$(B)/$(1)/tests/%,$(UNIT_SRCS)) \
            $(patsubst tests/fuzz/%.c,$(B)/$(1)/fuzz/%,$(FUZZ_SRCS))
endef
$(foreach v,rel asan,$(eval $(call VARIANT,$(v))))

.SECONDARY:
.PHONY: all programs test check bench bench-compress bench-scale fuzz demo sweep install \
        check-valgrind build-rel build-asan bench-worker bench-slowlink soak soak-lsan

# Programs are also placed directly in build/ (build/fedcomp-coordinator).
programs: build-rel
	@for p in $(PROGRAMS); do ln -sf rel/bin/$$p $(B)/$$p; done
all: programs

check: programs
	@FL_BUILD=$(B) tests/run-tests.sh --quick

test: programs build-asan
	@FL_BUILD=$(B) tests/run-tests.sh --full

bench: programs
	@bench/run-bench.sh

bench-compress: programs
	@$(B)/fedcomp-bench compress

bench-scale: programs
	@bench/scale.sh

# the worker's cost on a device: compression against training, peak RSS
bench-worker: programs
	@bench/worker_cost.sh

# 8 workers behind 1 Mbit/s uplinks in network namespaces (needs root):
# make bench-slowlink SLOWLINK_ARGS="--rounds 5"
bench-slowlink: programs
	@bench/slowlink.sh $(SLOWLINK_ARGS)

# 300 rounds with 1,000 churning swarm devices; soak-lsan: a short run of
# the ASan coordinator with LeakSanitizer
soak: programs
	@bench/soak.sh --bin $(B) $(SOAK_ARGS)
soak-lsan: programs build-asan
	@bench/soak.sh --lsan --bin $(B) --asan-bin $(B)/asan/bin

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
fuzz_objs = $(patsubst %.c,$(B)/fuzz/obj/%.o,$(foreach l,$(1),$(SRCS_$(l)))) \
    $(if $(filter pb,$(1)),$(B)/fuzz/obj/gen/proto/fedcomp.pb-c.o)
$(B)/fuzz/obj/%.o: %.c $(GEN_H)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(CPPFLAGS_ALL) -MMD -MP -c $< -o $@
$(B)/fuzz/obj/gen/%.o: $(B)/gen/%.c $(GEN_H)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(CPPFLAGS_ALL) -MMD -MP -c $< -o $@
$(foreach t,$(patsubst tests/fuzz/%.c,%,$(FUZZ_SRCS)),$(eval \
$(B)/fuzz/bin/$(t): $(B)/fuzz/obj/tests/fuzz/$(t).o $(call fuzz_objs,$(call layers_for,$(t))) ; \
	@mkdir -p $$(@D) && $(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $$@ $$^ $(PKG_LIBS)))
fuzz: $(patsubst tests/fuzz/%.c,$(B)/fuzz/bin/%,$(FUZZ_SRCS))
	@tests/fuzz/run-fuzz.sh $^

# ---- edge builds of the worker (deploy/README.md, "Edge builds")
# Both link the release objects of the layers the worker needs.
WORKER_LAYERS := wrk mdl pb cmp common
WORKER_DEPS := $(B)/rel/obj/worker/wrk_main.o $(call libs,rel,$(WORKER_LAYERS))

# Static worker: libzmq stays shared (Debian's libzmq.a needs
# libgssapi_krb5, which Debian ships only as a shared library), and with it
# glibc (a static glibc cannot load shared libraries) and libzmq's own
# libraries; protobuf-c, zstd, lz4, zlib and OpenBLAS are static.
# libgfortran/libquadmath are listed for OpenBLAS's LAPACK part, which the
# worker does not use today (nothing of them is linked).
STATIC_LIBS := $(shell $(PKG_CONFIG) --libs-only-L openblas) \
    -Wl,-Bstatic -lprotobuf-c -lzstd -llz4 -lopenblas -lgfortran -lquadmath \
    -lz -Wl,-Bdynamic -lzmq -lm -lpthread
$(B)/static/bin/fedcomp-worker: $(WORKER_DEPS)
	@mkdir -p $(@D)
	@echo "  LINK  $@"
	@$(CC) $(CFLAGS_rel) $(LDFLAGS_rel) -o $@ $^ $(STATIC_LIBS)
.PHONY: worker-static
worker-static: $(B)/static/bin/fedcomp-worker

ifdef CROSS
# make CROSS=...: only the worker (and the archives it links) for $(CROSS)
$(B)/bin/fedcomp-worker: $(WORKER_DEPS)
	@mkdir -p $(@D)
	@echo "  LINK  $@"
	@$(CC) $(CFLAGS_rel) $(LDFLAGS_rel) -o $@ $^ $(PKG_LIBS)
.DEFAULT_GOAL := worker
.PHONY: worker
worker: $(B)/bin/fedcomp-worker
endif

-include $(shell find $(B) -name '*.d' 2>/dev/null)
endif
