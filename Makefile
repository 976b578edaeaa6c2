# maec build. `make` builds the library, the `maec` command and the tests;
# `make test` runs every test; `make install PREFIX=/usr/local` installs.
CC ?= cc
PREFIX ?= /usr/local
ARCH ?= -march=native
OPT ?= -O3
MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null)
BLAS_DIR ?= /usr/lib/$(MULTIARCH)/openblas-openmp
# where objects, libraries and test programs go (make asan-test uses build/asan)
BUILD ?= build
CFLAGS ?= $(OPT) $(ARCH) -g
CFLAGS += -std=c11 -fno-math-errno -Wall -Wextra -fopenmp -fPIC -Iinclude -Isrc -MMD -MP
LDFLAGS += -fopenmp
LDLIBS = -L$(BLAS_DIR) -Wl,-rpath,$(BLAS_DIR) -lxsmm -lopenblas -lcjson -lzip -lpng -ljpeg -lz -lm -lpthread -ldl -lrt

LIB_SRC := $(wildcard src/*.c src/ops/*.c src/model/*.c src/data/*.c src/io/*.c src/backend/*.c src/train/*.c src/dist/*.c)
# make MPI=1: data-parallel training over Open MPI (mpirun -np N maec pretrain ...)
ifeq ($(MPI),1)
CC = mpicc
CFLAGS += -DMAEC_MPI
endif
# make CUDA=1: the cuda backend too (--device cuda), with the CUDA toolkit
# under CUDA_HOME: sm_90 code (H100/H200), sm_80 (A100) and compute_80
# PTX, which the driver compiles for other newer GPUs (L4, ...). Not switched on by
# itself where nvcc is: a plain build needs no toolkit at run time.
CUDA_HOME ?= /usr/local/cuda
NVCC ?= $(CUDA_HOME)/bin/nvcc
CUDA_ARCH ?= -gencode arch=compute_90,code=sm_90 -gencode arch=compute_80,code=sm_80 \
    -gencode arch=compute_80,code=compute_80
NVCCFLAGS ?= -O3 -lineinfo
# MPI=1 CUDA=1: gradients summed on the GPUs with NCCL (the toolkit's)
ifeq ($(MPI)$(CUDA),11)
CFLAGS += -DMAEC_NCCL -I$(CUDA_HOME)/include
LDLIBS += -lnccl
endif
ifeq ($(CUDA),1)
CFLAGS += -DMAEC_CUDA
LDLIBS += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublas -lcudart -lstdc++
CUDA_OBJ := $(BUILD)/src/backend/cuda.o
endif
# make CUDA=emu: the same backend source on the CPU (tests/cuda_emu/cuda_emu.h:
# kernels as coroutines, cuBLAS as CBLAS), to test it where no GPU is
ifeq ($(CUDA),emu)
CFLAGS += -DMAEC_CUDA
LDLIBS += -lstdc++
CUDA_OBJ := $(BUILD)/src/backend/cuda_emu.o
endif
CLI_SRC := $(wildcard src/cli/*.c)
TEST_SRC := $(wildcard tests/test_*.c)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o) $(CUDA_OBJ)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

all: $(BUILD)/libmaec.a $(BUILD)/libmaec.so $(BUILD)/maec $(TEST_BIN)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/%.o: %.cu src/backend/backend.h src/backend/cuda.h
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) $(CUDA_ARCH) -std=c++17 -Xcompiler -fPIC,-Wall -Iinclude -Isrc -DMAEC_CUDA -c $< -o $@

CXX ?= g++
$(BUILD)/src/backend/cuda_emu.o: src/backend/cuda.cu tests/cuda_emu/cuda_emu.h src/backend/backend.h src/backend/cuda.h
	@mkdir -p $(dir $@)
	$(CXX) -O1 -g -std=c++17 -fPIC -Wall -Wno-unused-function -x c++ -DMAEC_CUDA -DMAEC_CUDA_EMU -Iinclude -Isrc \
	    -Itests/cuda_emu -c $< -o $@

$(BUILD)/libmaec.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libmaec.so: $(LIB_OBJ)
	$(CC) -shared $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/maec: $(CLI_OBJ) $(BUILD)/libmaec.a
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libmaec.a $(LDLIBS)

$(BUILD)/tests/%: tests/%.c tests/test.h tests/photos.h $(BUILD)/libmaec.a
	@mkdir -p $(BUILD)/tests
	$(CC) $(CFLAGS) -Itests -o $@ $< $(BUILD)/libmaec.a $(LDLIBS)

test: all
	@MAEC_BUILD=$(BUILD) bash tests/run_tests.sh

# Written at every install (a phony target) with that install's PREFIX, made
# absolute so that a relative PREFIX (make install PREFIX=out) gives a usable file.
build/maec.pc:
	@mkdir -p build
	printf 'prefix=%s\nlibdir=$${prefix}/lib\nincludedir=$${prefix}/include\n\nName: maec\nDescription: Masked autoencoders in C\nVersion: 0.1.0\nLibs: -L$${libdir} -lmaec\nLibs.private: %s -fopenmp\nCflags: -I$${includedir}\n' \
	  '$(abspath $(PREFIX))' '$(LDLIBS)' > $@

install: all build/maec.pc
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 755 build/maec $(DESTDIR)$(PREFIX)/bin/maec
	install -m 644 build/libmaec.a $(DESTDIR)$(PREFIX)/lib/libmaec.a
	install -m 755 build/libmaec.so $(DESTDIR)$(PREFIX)/lib/libmaec.so
	install -m 644 include/maec.h $(DESTDIR)$(PREFIX)/include/maec.h
	install -m 644 include/maec_data.h $(DESTDIR)$(PREFIX)/include/maec_data.h
	install -m 644 build/maec.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/maec.pc

clean:
	rm -rf build

# `make examples`: the library installed into build/prefix, the programs of
# examples/ built against it through pkg-config (shared and static) into
# build/examples and run: pretrain_array writes a model, encode_images reads it.
EXAMPLES_PREFIX := $(CURDIR)/build/prefix
examples:
	@$(MAKE) --no-print-directory install PREFIX=$(EXAMPLES_PREFIX) DESTDIR=
	@PKG_CONFIG_PATH=$(EXAMPLES_PREFIX)/lib/pkgconfig $(MAKE) --no-print-directory -C examples \
	    O=$(CURDIR)/build/examples CFLAGS="-O2 -g -Wall -Wextra" run

.PHONY: all test install clean examples build/maec.pc
-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)

# The built-in default: a small MAE on Fashion-MNIST, a few minutes on 2 cores.
DEMO_DATA ?= /usr/share/datasets/fashion-mnist
demo: build/maec
	./build/maec pretrain --model fmnist-mini --data-path $(DEMO_DATA) --output-dir runs/demo \
	    --epochs 2 --batch-size 128 --blr 1e-3 --warmup-epochs 0.2 --seed 0 --log-every 50 --report
	@echo "done: open runs/demo/report.html (curves, reconstructions per epoch, configuration) or runs/demo/reconstruction.png"
.PHONY: demo

# the benchmark programs: build/bench_step, build/gemm_shapes, build/ab_step
$(BUILD)/%: bench/%.c bench/bench_util.h $(BUILD)/libmaec.a
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libmaec.a $(LDLIBS)

# ours against PyTorch (needs python3-torch): bash bench/run.sh
bench: build/bench_step build/gemm_shapes build/ab_step
	bash bench/run.sh
.PHONY: bench

# ------------------------------------------------------------------ reliability
# Sanitizers, fuzzing and fault injection (docs/RELIABILITY.md).

# `make asan-test`: the library, the command and every test built with
# AddressSanitizer + UndefinedBehaviorSanitizer into $(ASAN_BUILD), the whole
# test suite run on that build (leak detection off: OpenBLAS and OpenMP keep
# per-thread buffers to the end), then one pretrain -> checkpoint -> resume
# -> reconstruct cycle under LeakSanitizer. A sanitizer report in any
# process, the tests' own or a `maec` they start, fails the target: reports
# are written under $(ASAN_BUILD)/reports and looked for at the end.
ASAN_BUILD ?= build/asan
ASAN_FLAGS ?= -O1 -g $(ARCH) -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
ASAN_RUN = ASAN_OPTIONS=detect_leaks=0:log_path=$(CURDIR)/$(ASAN_BUILD)/reports/asan \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$(CURDIR)/$(ASAN_BUILD)/reports/ubsan \
    MAEC_BUILD=$(ASAN_BUILD)

asan:
	@CFLAGS="$(ASAN_FLAGS)" LDFLAGS="-fsanitize=address,undefined" $(MAKE) --no-print-directory BUILD=$(ASAN_BUILD) all

asan-test: asan all
	@rm -rf $(ASAN_BUILD)/reports && mkdir -p $(ASAN_BUILD)/reports
	@echo "== test suite, ASan + UBSan ($(ASAN_BUILD))"
	@$(ASAN_RUN) bash tests/run_tests.sh; rc=$$?; \
	echo "== leak check: pretrain, checkpoint, resume, reconstruct under LeakSanitizer"; \
	MAEC_BUILD=$(ASAN_BUILD) bash tests/fault_leaks.sh || rc=1; \
	if ls $(ASAN_BUILD)/reports/* > /dev/null 2>&1; then \
	    echo "sanitizer reports:"; head -40 $(ASAN_BUILD)/reports/*; rc=1; \
	else echo "no sanitizer reports"; fi; exit $$rc

# `make fault-test`: kill -9, disk full, corrupt checkpoints, a NaN loss,
# data that disappears mid-run (tests/fault_*.sh)
FAULT_TESTS ?= tests/fault_kill.sh tests/fault_disk.sh tests/fault_corrupt.sh tests/fault_nan.sh tests/fault_data.sh
fault-test: all
	@MAEC_BUILD=$(BUILD) bash tests/run_tests.sh $(FAULT_TESTS)

# `make fuzz`: libFuzzer targets (clang) for every reader into build/fuzz/;
# `bash fuzz/run.sh` runs them. `make fuzz-seeds` rewrites fuzz/corpus/.
FUZZ_CC ?= clang
FUZZ_FLAGS ?= -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS = $(FUZZ_FLAGS) -std=c11 -Wall -Wextra -fopenmp=libgomp -Iinclude -Isrc -Ifuzz -MMD -MP
FUZZ_TARGETS := safetensors pth model_load classifier npy idx cifar png jpeg imagefolder run_config model_config report
FUZZ_LIB_OBJ := $(patsubst %.c,build/fuzz/obj/%.o,$(LIB_SRC) src/cli/run.c src/cli/cli.c)

fuzz: $(FUZZ_TARGETS:%=build/fuzz/%)

build/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

build/fuzz/libmaec_fuzz.a: $(FUZZ_LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

build/fuzz/%: fuzz/fuzz_%.c fuzz/fuzz.h fuzz/st_checks.h build/fuzz/libmaec_fuzz.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< build/fuzz/libmaec_fuzz.a $(LDLIBS)

build/fuzz/png build/fuzz/jpeg: fuzz/fuzz_image.c fuzz/fuzz.h build/fuzz/libmaec_fuzz.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< build/fuzz/libmaec_fuzz.a $(LDLIBS)

build/fuzz/make_seeds: fuzz/make_seeds.c $(BUILD)/libmaec.a $(BUILD)/src/cli/run.o $(BUILD)/src/cli/cli.o
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/src/cli/run.o $(BUILD)/src/cli/cli.o $(BUILD)/libmaec.a $(LDLIBS)

fuzz-seeds: build/fuzz/make_seeds
	./build/fuzz/make_seeds

.PHONY: asan asan-test fault-test fuzz fuzz-seeds
-include $(FUZZ_LIB_OBJ:.o=.d)
