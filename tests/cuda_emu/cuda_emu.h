/* The part of CUDA and cuBLAS that src/backend/cuda.cu uses, emulated on the
 * CPU, so that the cuda backend's own code (its kernels' indexing, their
 * reductions and barriers, every cuBLAS call's transposes, leading
 * dimensions and strides) runs and is checked against ref where there is
 * no GPU: `make CUDA=emu` builds maec and the tests with it (build/cuda-emu),
 * and CI runs tests/test_backend_ops there.
 *
 * What it is: a kernel launch runs its blocks one after another; the
 * threads of a block run as coroutines (ucontext) on one OS thread, each
 * until it reaches a barrier (__syncthreads, or a warp shuffle) or ends,
 * then the next; when every thread still running waits at a barrier, all
 * go on, after a check of CUDA's rules (every thread of the block at a
 * __syncthreads, every lane of the warp at a shuffle). __shared__ memory is
 * a static variable of the kernel, which the block's threads share (blocks
 * never overlap). A kernel found to use no barrier runs its threads as a
 * plain loop afterwards. MAEC_CUDA_EMU_ORDER=reverse runs blocks and
 * threads last first. It has 8 GPUs, one memory. Warp shuffles are
 * barriers of the whole block, which is right for kernels whose warps all
 * shuffle alike or have ended (cuda.cu's do). cuBLAS's SGEMMs are CBLAS's
 * (column-major, the same arguments). Memory is host memory; streams and
 * synchronisation do nothing.
 *
 * What it is not: a check of timing, of races between warps (there are
 * none to find: every thread of a block runs to its barrier in turn), of
 * the GPU's own rounding (erf, exp on a GPU differ in the last bits), or
 * of speed. Those need a GPU: scripts/device-check.sh. */
#ifndef MAEC_CUDA_EMU_H
#define MAEC_CUDA_EMU_H
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <ucontext.h>

#include <algorithm>
#include <functional>
#include <map>

using std::max;
using std::min;

#define __global__
#define __device__
#define __host__
#define __shared__ static

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace emu {
struct idx3 {
    unsigned x, y, z;
};
static idx3 thread_idx, block_idx;
static dim3 block_dim, grid_dim;

enum { RUNNABLE, WAITING, DONE };
static const size_t STACK = 128 * 1024;
static const int MAX_THREADS = 1024;
static ucontext_t sched_ctx, thread_ctx[MAX_THREADS];
static char *stacks;
static int state[MAX_THREADS];
static int cur, nthreads;
static int barrier_seen;
static std::function<void()> *body;
static double slot[MAX_THREADS];
/* what each waiting thread waits at: SYNC (__syncthreads) or SHFL (a warp
 * shuffle); the strict checks below hold a block to CUDA's rules */
enum { SYNC = 1, SHFL = 2 };
static int wait_kind[MAX_THREADS];
static int kind_now;
/* MAEC_CUDA_EMU_ORDER=reverse: blocks and threads run last first, so that
 * code that works only in one order shows it */
static int reverse_order = -1;
static int reversed(void)
{
    if (reverse_order < 0) {
        const char *o = getenv("MAEC_CUDA_EMU_ORDER");
        reverse_order = o && !strcmp(o, "reverse");
    }
    return reverse_order;
}

static void set_thread(int t)
{
    cur = t;
    thread_idx.x = t % block_dim.x;
    thread_idx.y = t / block_dim.x % block_dim.y;
    thread_idx.z = t / (block_dim.x * block_dim.y);
}

/* Switching: a thread is started once with swapcontext (its own stack);
 * after that threads and the scheduler switch with _setjmp/_longjmp, which
 * leave the signal mask alone (swapcontext makes a system call each time) */
static jmp_buf sched_jb, thread_jb[MAX_THREADS];
static int started[MAX_THREADS];

static void entry()
{
    (*body)();
    state[cur] = DONE;
    _longjmp(sched_jb, 1); /* never returns */
}

/* this thread waits until every thread of the block that still runs does */
static void barrier()
{
    barrier_seen = 1;
    if (nthreads <= 0) { /* a plain loop found a barrier: cannot happen after the first launch */
        fprintf(stderr, "cuda_emu: a barrier in a kernel run without coroutines\n");
        abort();
    }
    state[cur] = WAITING;
    wait_kind[cur] = kind_now;
    if (!_setjmp(thread_jb[cur])) _longjmp(sched_jb, 1);
}

/* thread t runs until its next barrier or its end */
static void resume(int t)
{
    set_thread(t);
    if (_setjmp(sched_jb)) return;
    if (started[t]) _longjmp(thread_jb[t], 1);
    started[t] = 1;
    swapcontext(&sched_ctx, &thread_ctx[t]);
}

/* one block, its threads as coroutines */
static void run_block_coroutines(int n)
{
    if (!stacks) stacks = (char *)malloc(STACK * MAX_THREADS);
    nthreads = n;
    for (int t = 0; t < n; t++) {
        getcontext(&thread_ctx[t]);
        thread_ctx[t].uc_stack.ss_sp = stacks + STACK * (size_t)t;
        thread_ctx[t].uc_stack.ss_size = STACK;
        thread_ctx[t].uc_link = NULL;
        makecontext(&thread_ctx[t], entry, 0);
        state[t] = RUNNABLE;
        started[t] = 0;
    }
    for (;;) {
        for (int i = 0; i < n; i++) {
            int t = reversed() ? n - 1 - i : i;
            if (state[t] == RUNNABLE) resume(t);
        }
        /* CUDA's rules: __syncthreads is reached by every thread of the
         * block (none has returned); a full-mask shuffle by all 32 lanes
         * of the warp, at a shuffle */
        for (int t = 0; t < n; t++) {
            if (state[t] != WAITING) continue;
            if (wait_kind[t] == SYNC) {
                for (int u = 0; u < n; u++)
                    if (state[u] != WAITING || wait_kind[u] != SYNC) {
                        fprintf(stderr, "cuda_emu: __syncthreads: thread %d of the block is not at it\n", u);
                        abort();
                    }
            } else {
                for (int u = t & ~31; u < (t & ~31) + 32; u++)
                    if (u >= n || state[u] != WAITING || wait_kind[u] != SHFL) {
                        fprintf(stderr, "cuda_emu: warp shuffle: lane %d of the warp is not at it\n", u & 31);
                        abort();
                    }
            }
        }
        int waiting = 0;
        for (int t = 0; t < n; t++)
            if (state[t] == WAITING) {
                state[t] = RUNNABLE;
                waiting = 1;
            }
        if (!waiting) break;
    }
    nthreads = 0;
}

/* which kernels have been seen to use barriers (run with coroutines) */
static std::map<const void *, bool> needs_barrier;

static void run(const void *key, dim3 g, dim3 b, std::function<void()> &f)
{
    int n = (int)(b.x * b.y * b.z);
    if (n < 1 || n > MAX_THREADS) {
        fprintf(stderr, "cuda_emu: a block of %d threads\n", n);
        abort();
    }
    body = &f;
    grid_dim = g;
    block_dim = b;
    auto it = needs_barrier.find(key);
    int coroutines = it == needs_barrier.end() || it->second;
    barrier_seen = 0;
    unsigned nb = g.x * g.y * g.z;
    for (unsigned i = 0; i < nb; i++) {
        unsigned k = reversed() ? nb - 1 - i : i;
        block_idx.x = k % g.x;
        block_idx.y = k / g.x % g.y;
        block_idx.z = k / (g.x * g.y);
        if (coroutines) {
            run_block_coroutines(n);
        } else {
            for (int j = 0; j < n; j++) {
                set_thread(reversed() ? n - 1 - j : j);
                f();
            }
        }
    }
    if (it == needs_barrier.end()) needs_barrier[key] = barrier_seen != 0;
}

template <class K>
struct launcher {
    K k;
    dim3 g, b;
    template <class... A>
    void operator()(A... a)
    {
        std::function<void()> f = [&]() { k(a...); };
        run((const void *)k, g, b, f);
    }
};
} // namespace emu

#define threadIdx emu::thread_idx
#define blockIdx emu::block_idx
#define blockDim emu::block_dim
#define gridDim emu::grid_dim

template <class K>
static emu::launcher<K> emu_launch(K k, dim3 g, dim3 b)
{
    return emu::launcher<K>{k, g, b};
}
#define LAUNCH(k, ...) emu_launch(k, __VA_ARGS__)

static inline void __syncthreads()
{
    emu::kind_now = emu::SYNC;
    emu::barrier();
}

/* every thread of the warp leaves its value, all take their partner's */
template <class T>
static T __shfl_xor_sync(unsigned mask, T v, int lane_mask)
{
    (void)mask;
    int t = emu::cur;
    emu::slot[t] = (double)v;
    emu::kind_now = emu::SHFL;
    emu::barrier();
    int partner = (t & ~31) | ((t & 31) ^ lane_mask);
    T r = (T)emu::slot[partner];
    emu::kind_now = emu::SHFL;
    emu::barrier(); /* no one writes its slot again before all have read */
    return r;
}

/* ------------------------------------------------------------ runtime */

typedef enum {
    cudaSuccess = 0,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInsufficientDriver = 35,
    cudaErrorNoDevice = 100,
} cudaError_t;
typedef enum {
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
} cudaMemcpyKind;
typedef struct emu_stream *cudaStream_t;
#define cudaStreamNonBlocking 1
typedef struct {
    char name[256];
    int major, minor;
    size_t totalGlobalMem;
} cudaDeviceProp;

static const char *cudaGetErrorString(cudaError_t e) { return e == cudaSuccess ? "no error" : "emulated error"; }
static cudaError_t cudaGetLastError(void) { return cudaSuccess; }
static cudaError_t cudaGetDeviceCount(int *n)
{
    *n = 8; /* as many as a data-parallel test starts processes */
    return cudaSuccess;
}
static cudaError_t cudaDriverGetVersion(int *v)
{
    *v = 13000;
    return cudaSuccess;
}
static cudaError_t cudaRuntimeGetVersion(int *v)
{
    *v = 13000;
    return cudaSuccess;
}
static cudaError_t cudaSetDevice(int d)
{
    (void)d;
    return cudaSuccess;
}
static cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d)
{
    (void)d;
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "CUDA emulated on the CPU (tests/cuda_emu)");
    p->major = 9;
    p->totalGlobalMem = (size_t)1 << 34;
    return cudaSuccess;
}
static cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned f)
{
    (void)f;
    *s = NULL;
    return cudaSuccess;
}
static cudaError_t cudaStreamSynchronize(cudaStream_t s)
{
    (void)s;
    return cudaSuccess;
}
/* MAEC_CUDA_EMU_LIMIT bytes (if set): allocations beyond it fail, to try
 * the out-of-memory path */
static size_t emu_in_use;
static std::map<void *, size_t> emu_sizes;
static cudaError_t cudaMalloc(void **p, size_t n)
{
    const char *lim = getenv("MAEC_CUDA_EMU_LIMIT");
    if (lim && emu_in_use + n > (size_t)strtoull(lim, NULL, 10)) return cudaErrorMemoryAllocation;
    *p = aligned_alloc(256, (n + 255) / 256 * 256);
    if (!*p) return cudaErrorMemoryAllocation;
    memset(*p, 0xff, n); /* NaN: memory that is read before it is written shows */
    emu_sizes[*p] = n;
    emu_in_use += n;
    return cudaSuccess;
}
static cudaError_t cudaMallocHost(void **p, size_t n)
{
    *p = aligned_alloc(256, (n + 255) / 256 * 256);
    return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
static cudaError_t cudaFreeHost(void *p)
{
    free(p);
    return cudaSuccess;
}
static cudaError_t cudaFree(void *p)
{
    auto it = emu_sizes.find(p);
    if (it != emu_sizes.end()) {
        emu_in_use -= it->second;
        emu_sizes.erase(it);
    }
    free(p);
    return cudaSuccess;
}
static cudaError_t cudaMemGetInfo(size_t *fr, size_t *total)
{
    *total = (size_t)1 << 34;
    const char *lim = getenv("MAEC_CUDA_EMU_LIMIT");
    size_t cap = lim ? (size_t)strtoull(lim, NULL, 10) : *total;
    *fr = cap > emu_in_use ? cap - emu_in_use : 0;
    return cudaSuccess;
}
static cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind k, cudaStream_t st)
{
    (void)k;
    (void)st;
    memcpy(d, s, n);
    return cudaSuccess;
}
static cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t st)
{
    (void)st;
    memset(p, v, n);
    return cudaSuccess;
}

/* ------------------------------------------------------------ cuBLAS */

typedef struct emu_blas *cublasHandle_t;
typedef enum { CUBLAS_STATUS_SUCCESS = 0 } cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum { CUBLAS_DEFAULT_MATH = 0, CUBLAS_TF32_TENSOR_OP_MATH = 3 } cublasMath_t;

static const char *cublasGetStatusString(cublasStatus_t s) { return s ? "emulated error" : "success"; }
static cublasStatus_t cublasCreate(cublasHandle_t *h)
{
    *h = NULL;
    return CUBLAS_STATUS_SUCCESS;
}
static cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s)
{
    (void)h;
    (void)s;
    return CUBLAS_STATUS_SUCCESS;
}
static cublasStatus_t cublasSetWorkspace(cublasHandle_t h, void *w, size_t n)
{
    (void)h;
    (void)w;
    (void)n;
    return CUBLAS_STATUS_SUCCESS;
}
static cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m)
{
    (void)h;
    (void)m;
    return CUBLAS_STATUS_SUCCESS;
}

/* the argument checks cuBLAS makes (it refuses, where CBLAS would print) */
static void emu_gemm_check(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, int lda, int ldb, int ldc)
{
    int arows = ta == CUBLAS_OP_N ? m : k, brows = tb == CUBLAS_OP_N ? k : n;
    if (m < 0 || n < 0 || k < 0 || lda < std::max(1, arows) || ldb < std::max(1, brows) || ldc < std::max(1, m)) {
        fprintf(stderr, "cuda_emu: cublasSgemm refuses m %d n %d k %d lda %d ldb %d ldc %d\n", m, n, k, lda, ldb, ldc);
        abort();
    }
}

static cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                  const float *alpha, const float *A, int lda, const float *B, int ldb,
                                  const float *beta, float *C, int ldc)
{
    (void)h;
    emu_gemm_check(ta, tb, m, n, k, lda, ldb, ldc);
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    cblas_sgemm(CblasColMajor, ta == CUBLAS_OP_N ? CblasNoTrans : CblasTrans,
                tb == CUBLAS_OP_N ? CblasNoTrans : CblasTrans, m, n, k, *alpha, A, lda, B, ldb, *beta, C, ldc);
    return CUBLAS_STATUS_SUCCESS;
}

static cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                                                int n, int k, const float *alpha, const float *A, int lda,
                                                long long sa, const float *B, int ldb, long long sb,
                                                const float *beta, float *C, int ldc, long long sc, int batch)
{
    for (int i = 0; i < batch; i++)
        cublasSgemm(h, ta, tb, m, n, k, alpha, A + i * sa, lda, B + i * sb, ldb, beta, C + i * sc, ldc);
    return CUBLAS_STATUS_SUCCESS;
}
#endif
