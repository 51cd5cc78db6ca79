# kvc — build, test, bench, install. `make V=1` shows the full commands.

PREFIX ?= /usr/local
DESTDIR ?=
LIBDIR ?= $(PREFIX)/lib
INCDIR ?= $(PREFIX)/include
BINDIR ?= $(PREFIX)/bin

CC ?= cc
AR ?= ar
OUT := build
VERSION := 0.1.0
SOVERSION := 0

CFLAGS ?= -O2 -g
# make DEBUG=1: sanitizers, and the pool checks its invariants on every call.
ifeq ($(DEBUG),1)
CFLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -DKVC_DEBUG
LDFLAGS += -fsanitize=address,undefined
OUT := build-debug
endif
KVC_CFLAGS := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wshadow -Wno-unused-parameter \
	-fPIC -pthread -Iinclude $(CFLAGS)
LDLIBS := -pthread -luring -ldl -lm

# The CUDA toolkit is optional: the cuda backend needs only the driver, found
# at run time. When the toolkit is here, its cuda.h checks our driver ABI.
CUDA_HOME ?= $(firstword $(wildcard /usr/local/cuda /usr/lib/cuda))
NVCC ?= $(shell command -v nvcc 2>/dev/null || { test -x "$(CUDA_HOME)/bin/nvcc" && echo "$(CUDA_HOME)/bin/nvcc"; })
CUDA_H := $(wildcard $(CUDA_HOME)/include/cuda.h)

ifeq ($(V),1)
Q :=
msg = @true
else
Q := @
msg = @printf '  %-7s %s\n' $(1) $(2)
endif

LIB_SRCS := $(wildcard alloc/*.c runtime/*.c kernels/*.c model/*.c swap/*.c)
LIB_SRCS := $(filter-out alloc/backend_cuda_abi.c,$(LIB_SRCS))
LIB_OBJS := $(LIB_SRCS:%.c=$(OUT)/%.o) $(OUT)/kernels/images.o

# The CUDA kernels: one fat binary per kernels/*.cu (machine code for sm_80
# and sm_90, PTX for later devices), embedded in the library. They do not
# depend on DEBUG, so both builds share them. Without nvcc the table of
# images is empty and the GPU path reports that it was not built.
CU_SRCS := $(wildcard kernels/*.cu)
FATBIN_DIR := build/fatbin
NVCC_FLAGS ?= -O3 -std=c++17 -Xptxas -warn-spills \
	-gencode=arch=compute_80,code=sm_80 \
	'-gencode=arch=compute_90,code=[sm_90,compute_90]'
FATBINS := $(if $(NVCC),$(CU_SRCS:kernels/%.cu=$(FATBIN_DIR)/%.fatbin))
KVCCTL_SRCS := $(wildcard tools/kvcctl/*.c)
KVCCTL_OBJS := $(KVCCTL_SRCS:%.c=$(OUT)/%.o)
TEST_SRCS := $(wildcard tests/test_*.c)
TEST_SUPPORT := $(filter-out $(TEST_SRCS),$(wildcard tests/*.c))
TEST_SUPPORT_OBJS := $(TEST_SUPPORT:%.c=$(OUT)/%.o)
TESTS := $(TEST_SRCS:%.c=$(OUT)/%)
EXAMPLES := $(patsubst %.c,$(OUT)/%,$(wildcard examples/*.c))
BENCHES := $(patsubst %.c,$(OUT)/%,$(wildcard bench/*.c))

# Each fuzz target as a plain program over files (-DKVC_FUZZ_MAIN): the
# test suite runs the checked-in seeds through them with any compiler.
FUZZ_SEEDS := $(patsubst fuzz/%.c,$(OUT)/fuzz/%_seeds,$(wildcard fuzz/fuzz_*.c))

STATIC_LIB := $(OUT)/libkvc.a
SHARED_LIB := $(OUT)/libkvc.so.$(VERSION)
KVCCTL := $(OUT)/kvcctl
ABI_CHECK := $(if $(CUDA_H),$(OUT)/alloc/backend_cuda_abi.o)

GPU_TEST := $(patsubst %.c,$(OUT)/%,$(wildcard tests/gpu/test_gpu.c))
GPU_BENCH := $(patsubst %.c,$(OUT)/%,$(wildcard bench/gpu/bench_gpu.c))

all: $(STATIC_LIB) $(SHARED_LIB) $(KVCCTL) $(EXAMPLES) $(TESTS) $(BENCHES) $(ABI_CHECK) \
	$(GPU_TEST) $(GPU_BENCH) $(FUZZ_SEEDS)

-include $(shell find $(OUT) -name '*.d' 2>/dev/null)

$(OUT)/%.o: %.c
	$(call msg,CC,$@)
	@mkdir -p $(@D)
	$(Q)$(CC) $(KVC_CFLAGS) -MMD -MP -c $< -o $@

# Compiled against the toolkit's cuda.h only to check our mirror of the ABI.
$(OUT)/alloc/backend_cuda_abi.o: alloc/backend_cuda_abi.c alloc/cuda_driver.h
	$(call msg,CHECK,$@)
	@mkdir -p $(@D)
	$(Q)$(CC) $(KVC_CFLAGS) -I$(CUDA_HOME)/include -c $< -o $@

$(FATBIN_DIR)/%.fatbin: kernels/%.cu $(wildcard kernels/*.h) $(wildcard include/kvc/*.h)
	$(call msg,NVCC,$@)
	@mkdir -p $(@D)
	$(Q)$(NVCC) $(NVCC_FLAGS) -Iinclude -Ikernels -fatbin -o $@ $<

# The table of images: an assembler file that pulls each fat binary in.
$(OUT)/kernels/images.S: tools/gen-images.sh $(FATBINS) Makefile
	$(call msg,GEN,$@)
	@mkdir -p $(@D)
	$(Q)tools/gen-images.sh $(FATBINS) > $@

$(OUT)/kernels/images.o: $(OUT)/kernels/images.S $(FATBINS)
	$(call msg,AS,$@)
	$(Q)$(CC) -c -o $@ $<

$(STATIC_LIB): $(LIB_OBJS)
	$(call msg,AR,$@)
	$(Q)rm -f $@ && $(AR) rcs $@ $^

$(SHARED_LIB): $(LIB_OBJS) kvc.map
	$(call msg,LD,$@)
	$(Q)$(CC) -shared -Wl,-soname,libkvc.so.$(SOVERSION) -Wl,--version-script=kvc.map \
		-Wl,-z,defs $(LDFLAGS) -o $@ $(LIB_OBJS) $(LDLIBS)
	$(Q)ln -sf libkvc.so.$(VERSION) $(OUT)/libkvc.so.$(SOVERSION)
	$(Q)ln -sf libkvc.so.$(VERSION) $(OUT)/libkvc.so

$(KVCCTL): $(KVCCTL_OBJS) $(STATIC_LIB)
	$(call msg,LD,$@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $(KVCCTL_OBJS) $(STATIC_LIB) $(LDLIBS) -lm

$(OUT)/examples/%: examples/%.c $(STATIC_LIB)
	$(call msg,CC,$@)
	@mkdir -p $(@D)
	$(Q)$(CC) $(KVC_CFLAGS) -o $@ $< $(STATIC_LIB) $(LDLIBS)

# Tests may reach internal headers (the ops struct, the fake driver).
$(OUT)/tests/%.o: tests/%.c
	$(call msg,CC,$@)
	@mkdir -p $(@D)
	$(Q)$(CC) $(KVC_CFLAGS) -Ialloc -Itests -MMD -MP -c $< -o $@

$(OUT)/tests/test_%: tests/test_%.c $(TEST_SUPPORT_OBJS) $(STATIC_LIB)
	$(call msg,CC,$@)
	@mkdir -p $(@D)
	$(Q)$(CC) $(KVC_CFLAGS) -Ialloc -Itests -DKVCCTL='"$(KVCCTL)"' \
		-DPOOL_DEMO='"$(OUT)/examples/pool_demo"' -DGPU_TEST='"$(GPU_TEST)"' \
		-DGPU_BENCH='"$(GPU_BENCH)"' -DFUZZ_DIR='"$(OUT)/fuzz"' \
		-o $@ $< $(TEST_SUPPORT_OBJS) $(STATIC_LIB) \
		-lcmocka $(LDLIBS) -lm

# test_plot checks kvcctl's plot writers, so it links them too.
$(OUT)/tests/test_plot: tests/test_plot.c $(OUT)/tools/kvcctl/plot.o $(TEST_SUPPORT_OBJS) $(STATIC_LIB)
	$(call msg,CC,$@)
	@mkdir -p $(@D)
	$(Q)$(CC) $(KVC_CFLAGS) -Ialloc -Itests -o $@ $< $(OUT)/tools/kvcctl/plot.o \
		$(TEST_SUPPORT_OBJS) $(STATIC_LIB) -lcmocka $(LDLIBS) -lm

$(OUT)/bench/%: bench/%.c bench/bench.h $(STATIC_LIB)
	$(call msg,CC,$@)
	@mkdir -p $(@D)
	$(Q)$(CC) $(KVC_CFLAGS) -Ialloc -o $@ $< $(STATIC_LIB) $(LDLIBS) -lm

# GPU test and benchmark: plain C over the driver table; they build
# everywhere and need a GPU only to run (77 = skipped without one).
$(OUT)/tests/gpu/%: tests/gpu/%.c $(wildcard tests/gpu/*.h) $(STATIC_LIB)
	$(call msg,CC,$@)
	@mkdir -p $(@D)
	$(Q)$(CC) $(KVC_CFLAGS) -Ialloc -Ikernels -Itests -o $@ $< $(STATIC_LIB) $(LDLIBS)

$(OUT)/bench/gpu/%: bench/gpu/%.c $(wildcard tests/gpu/*.h) $(STATIC_LIB)
	$(call msg,CC,$@)
	@mkdir -p $(@D)
	$(Q)$(CC) $(KVC_CFLAGS) -Ialloc -Ikernels -Itests -o $@ $< $(STATIC_LIB) $(LDLIBS)

test-gpu: $(GPU_TEST)
	@$(GPU_TEST) $(GPU_ARGS)

bench-gpu: $(GPU_BENCH)
	@$(GPU_BENCH) $(GPU_ARGS)

$(OUT)/tests/test_gpu_programs: $(GPU_TEST) $(GPU_BENCH)

$(OUT)/fuzz/%_seeds: fuzz/%.c fuzz/fuzz_main.h $(STATIC_LIB)
	$(call msg,CC,$@)
	@mkdir -p $(@D)
	$(Q)$(CC) $(KVC_CFLAGS) -DKVC_FUZZ_MAIN -o $@ $< $(STATIC_LIB) $(LDLIBS)

$(OUT)/tests/test_fuzz_seeds: $(FUZZ_SEEDS)

test: all
	@TEST_LOG_DIR=$(OUT)/test-logs tests/run-tests.sh $(TESTS)

bench: $(BENCHES)
	@set -e; for b in $(BENCHES); do $$b; done

$(OUT)/kvc.pc: kvc.pc.in Makefile
	$(call msg,GEN,$@)
	@mkdir -p $(@D)
	$(Q)sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
		-e 's|@INCDIR@|$(INCDIR)|' -e 's|@VERSION@|$(VERSION)|' $< > $@

install: $(STATIC_LIB) $(SHARED_LIB) $(KVCCTL) $(OUT)/kvc.pc
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCDIR)/kvc $(DESTDIR)$(BINDIR)
	install -m 644 $(STATIC_LIB) $(DESTDIR)$(LIBDIR)/
	install -m 755 $(SHARED_LIB) $(DESTDIR)$(LIBDIR)/
	ln -sf libkvc.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libkvc.so.$(SOVERSION)
	ln -sf libkvc.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libkvc.so
	install -m 644 include/kvc/*.h $(DESTDIR)$(INCDIR)/kvc/
	install -m 755 $(KVCCTL) $(DESTDIR)$(BINDIR)/
	install -m 644 $(OUT)/kvc.pc $(DESTDIR)$(LIBDIR)/pkgconfig/

deps:
	tools/install-deps.sh

# SmolLM2-135M-Instruct for `kvcctl generate` and `kvcctl eval`.
model:
	tools/get-model.sh models

EVAL_TEXT ?= /usr/share/common-licenses/GPL-3
eval: $(KVCCTL)
	@test -f $(EVAL_TEXT) || { echo "eval: $(EVAL_TEXT) is missing; run with EVAL_TEXT=FILE" >&2; exit 1; }
	$(KVCCTL) eval --text $(EVAL_TEXT) --plot $(OUT)/eval.png --json > $(OUT)/eval.json

.PHONY: model eval

# The fragmentation study (Documentation/fragmentation.rst): the request
# trace replayed under many configurations; tables and figures in
# $(OUT)/study. STUDY_CSV=FILE replays another trace.
STUDY_CSV ?= data/azure_conv_2023.csv
study: $(KVCCTL)
	tools/study.sh $(KVCCTL) $(STUDY_CSV) $(OUT)/study

.PHONY: study

# The GGUF reader under libFuzzer (clang), from the checked-in seeds; new
# inputs go to $(OUT)/fuzz/corpus. FUZZ_TIME=seconds.
FUZZ_CC ?= clang
FUZZ_TIME ?= 60
$(OUT)/fuzz/fuzz_gguf: fuzz/fuzz_gguf.c fuzz/fuzz_main.h model/gguf.c model/gguf.h alloc/error.c
	$(call msg,FUZZCC,$@)
	@mkdir -p $(@D)
	$(Q)$(FUZZ_CC) -g -O1 -fsanitize=fuzzer,address,undefined -std=c11 -D_GNU_SOURCE \
		-Wall -Wextra -Iinclude $(filter %.c,$^) -o $@

# The trace reader, likewise; its seeds are the fuzz/corpus/*.kvct traces.
$(OUT)/fuzz/fuzz_record: fuzz/fuzz_record.c fuzz/fuzz_main.h alloc/record_read.c alloc/error.c include/kvc/record.h
	$(call msg,FUZZCC,$@)
	@mkdir -p $(@D)
	$(Q)$(FUZZ_CC) -g -O1 -fsanitize=fuzzer,address,undefined -std=c11 -D_GNU_SOURCE \
		-Wall -Wextra -Iinclude $(filter %.c,$^) -o $@

fuzz: $(OUT)/fuzz/fuzz_gguf $(OUT)/fuzz/fuzz_record
	@mkdir -p $(OUT)/fuzz/corpus $(OUT)/fuzz/corpus-record
	$(OUT)/fuzz/fuzz_gguf -max_total_time=$(FUZZ_TIME) $(OUT)/fuzz/corpus fuzz/corpus
	$(OUT)/fuzz/fuzz_record -max_total_time=$(FUZZ_TIME) $(OUT)/fuzz/corpus-record fuzz/corpus

.PHONY: fuzz

format:
	clang-format -i $$(git ls-files '*.c' '*.h' '*.cu')

format-check:
	clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h' '*.cu')

clean:
	rm -rf $(OUT) $(FATBIN_DIR)

.PHONY: all test test-gpu bench bench-gpu install deps format format-check clean
.SECONDARY:
