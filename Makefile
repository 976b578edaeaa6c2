# maec build. `make` builds the library, the `maec` command and the tests;
# `make test` runs every test; `make install PREFIX=/usr/local` installs.
CC ?= cc
PREFIX ?= /usr/local
ARCH ?= -march=native
OPT ?= -O3
MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null)
BLAS_DIR ?= /usr/lib/$(MULTIARCH)/openblas-openmp
CFLAGS ?= $(OPT) $(ARCH) -g
CFLAGS += -std=c11 -Wall -Wextra -fopenmp -fPIC -Iinclude -Isrc -MMD -MP
LDFLAGS += -fopenmp
LDLIBS = -L$(BLAS_DIR) -Wl,-rpath,$(BLAS_DIR) -lopenblas -lcjson -lpng -ljpeg -lz -lm -lpthread

LIB_SRC := $(wildcard src/*.c src/ops/*.c src/model/*.c src/data/*.c src/io/*.c src/train/*.c)
CLI_SRC := $(wildcard src/cli/*.c)
TEST_SRC := $(wildcard tests/test_*.c)
LIB_OBJ := $(LIB_SRC:%.c=build/%.o)
CLI_OBJ := $(CLI_SRC:%.c=build/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=build/tests/%)

all: build/libmaec.a build/libmaec.so build/maec $(TEST_BIN)

build/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

build/libmaec.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

build/libmaec.so: $(LIB_OBJ)
	$(CC) -shared $(LDFLAGS) -o $@ $^ $(LDLIBS)

build/maec: $(CLI_OBJ) build/libmaec.a
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) build/libmaec.a $(LDLIBS)

build/tests/%: tests/%.c tests/test.h build/libmaec.a
	@mkdir -p build/tests
	$(CC) $(CFLAGS) -Itests -o $@ $< build/libmaec.a $(LDLIBS)

test: all
	@bash tests/run_tests.sh

build/maec.pc:
	@mkdir -p build
	printf 'prefix=%s\nlibdir=$${prefix}/lib\nincludedir=$${prefix}/include\n\nName: maec\nDescription: Masked autoencoders in C\nVersion: 0.1.0\nLibs: -L$${libdir} -lmaec\nLibs.private: %s -fopenmp\nCflags: -I$${includedir}\n' \
	  '$(PREFIX)' '$(LDLIBS)' > $@

install: all build/maec.pc
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 755 build/maec $(DESTDIR)$(PREFIX)/bin/maec
	install -m 644 build/libmaec.a $(DESTDIR)$(PREFIX)/lib/libmaec.a
	install -m 755 build/libmaec.so $(DESTDIR)$(PREFIX)/lib/libmaec.so
	install -m 644 include/maec.h $(DESTDIR)$(PREFIX)/include/maec.h
	install -m 644 build/maec.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/maec.pc

clean:
	rm -rf build

.PHONY: all test install clean build/maec.pc
-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)

# The built-in default: a small MAE on Fashion-MNIST, a few minutes on 2 cores.
DEMO_DATA ?= /usr/share/datasets/fashion-mnist
demo: build/maec
	./build/maec pretrain --model fmnist-mini --data-path $(DEMO_DATA) --output-dir runs/demo \
	    --epochs 2 --batch-size 128 --blr 1e-3 --warmup-epochs 0.2 --seed 0 --log-every 50
	@echo "done: open runs/demo/reconstruction.png (original | masked | reconstruction | reconstruction + visible)"
.PHONY: demo

build/bench_step: bench/bench_step.c build/libmaec.a
	$(CC) $(CFLAGS) -o $@ $< build/libmaec.a $(LDLIBS)

# ours against PyTorch (needs python3-torch): bash bench/run.sh
bench: build/bench_step
	bash bench/run.sh
.PHONY: bench
