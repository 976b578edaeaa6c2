/* The cuda backend: every op of backend.h on an NVIDIA GPU, as cuBLAS
 * products and this file's kernels, on one stream.
 *
 * Exact first: products are cuBLAS SGEMMs in fp32 (TF32 only when asked
 * for, maec_cuda_open's tf32), the other ops keep their sums in double as
 * ref does, and every reduction runs in an order fixed by its shape alone
 * (per-thread sums over a fixed stride, then a tree in shared memory or a
 * warp's butterfly, then partial sums added in index order): no atomics, so
 * that the same run on the same GPU gives the same bits, and a resumed run
 * equals an unbroken one there too.
 *
 * Memory: cudaMalloc'd, zeroed; upload/copy/zero are queued on the stream,
 * download waits for it. Ops that return a number (the losses, sumsq) wait
 * for the stream to hand it back; nothing else does.
 *
 * Contracts and shapes are backend.h's; the comment above each op says how
 * it maps onto cuBLAS (which is column-major: a row-major [M,N] array is a
 * column-major N x M matrix with leading dimension N). */
#ifdef MAEC_CUDA_EMU
#include "cuda_emu.h" /* tests/cuda_emu: this file on the CPU, for CI */
#else
#include <cublas_v2.h>
#include <cuda_runtime.h>
/* a kernel launched on the stream: LAUNCH(kernel, grid, block)(args) */
#define LAUNCH(k, ...) k<<<__VA_ARGS__, 0, g_stream>>>
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "backend/backend.h"
#include "backend/cuda.h"
}

/* ================================================================ state */

static int g_open;              /* maec_cuda_open succeeded */
static int g_dev = -1;          /* the device in use */
static int g_tf32;              /* TF32 tensor-core products */
static cudaStream_t g_stream;   /* every op runs on it, in order */
static cublasHandle_t g_blas;
static double *g_red;           /* reduction scratch on the device (RED_DOUBLES) */
static double *g_host_red;      /* pinned: results coming back */
#ifndef RED_DOUBLES /* (tests build it smaller, to take the chunked paths) */
#define RED_DOUBLES ((size_t)1 << 22) /* 32 MiB */
#endif

/* allocations, to count bytes in use and the peak */
typedef struct {
    void *p;
    size_t bytes;
} alloc_rec;
static alloc_rec *g_allocs;
static size_t g_nallocs, g_capallocs, g_bytes_now, g_bytes_peak;

/* A failure inside an op: the contract of backend.h has ops that cannot
 * fail, so a CUDA error there (a lost device, a launch the GPU refused) is
 * the end of the run: one line, and exit. */
static void cuda_die(const char *what, const char *msg, const char *file, int line)
{
    fprintf(stderr, "maec: error: GPU %d: %s: %s (%s:%d)\n", g_dev, what, msg, file, line);
    exit(1);
}
#define CK(x)                                                                                 \
    do {                                                                                      \
        cudaError_t e_ = (x);                                                                 \
        if (e_ != cudaSuccess) cuda_die(#x, cudaGetErrorString(e_), __FILE__, __LINE__);      \
    } while (0)
#define CB(x)                                                                                 \
    do {                                                                                      \
        cublasStatus_t s_ = (x);                                                              \
        if (s_ != CUBLAS_STATUS_SUCCESS) cuda_die(#x, cublasGetStatusString(s_), __FILE__, __LINE__); \
        if (g_sync_each) CK(cudaStreamSynchronize(g_stream));                                 \
    } while (0)
/* MAEC_CUDA_SYNC=1: wait after every launch and product, so that a fault
 * inside a kernel is reported at its own line, not at the next wait */
static int g_sync_each;
#define LAUNCHED()                                                                            \
    do {                                                                                      \
        CK(cudaGetLastError());                                                               \
        if (g_sync_each) CK(cudaStreamSynchronize(g_stream));                                 \
    } while (0)

static const float ONE = 1.0f, ZERO = 0.0f;

/* blocks of `threads` covering n items, capped (the kernels stride) */
static unsigned nblocks(size_t n, int threads)
{
    size_t b = (n + threads - 1) / threads;
    if (b > 65535u * 16u) b = 65535u * 16u;
    return b == 0 ? 1u : (unsigned)b;
}
#define GRID_STRIDE(i, n) for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

/* ================================================================ reductions */

/* the sum of a warp's values, the same butterfly every time */
__device__ static double warp_sum(double v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ static float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* a row x[n] read by the 32 lanes of a warp: its mean, and the sum of its
 * squared deviations from it (returned), in double; every lane gets both */
__device__ static double warp_row_moments(const float *x, int n, int lane, double *mean)
{
    double s = 0.0;
    for (int i = lane; i < n; i += 32) s += x[i];
    double mu = warp_sum(s) / n;
    s = 0.0;
    for (int i = lane; i < n; i += 32) s += ((double)x[i] - mu) * ((double)x[i] - mu);
    *mean = mu;
    return warp_sum(s);
}

/* a row z[n] read by a warp: its max (returned) and sum_i exp(z_i - max)
 * (*sum), the softmax's normalizers; every lane gets both */
__device__ static float warp_row_softmax(const float *z, int n, int lane, double *sum)
{
    float mx = -INFINITY;
    for (int i = lane; i < n; i += 32) mx = fmaxf(mx, z[i]);
    mx = warp_max(mx);
    double s = 0.0;
    for (int i = lane; i < n; i += 32) s += exp((double)z[i] - mx);
    *sum = warp_sum(s);
    return mx;
}

/* the sum over a block of 256 threads (every thread gets it) */
__device__ static double block_sum256(double v, double *sh)
{
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = 128; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    double r = sh[0];
    __syncthreads();
    return r;
}

/* Column sums: dst[n] (+)= sum over m < M of f(m, n), for n < N, in double.
 * Stage 1: block (32, 8) at (column tile, row group g) sums rows
 * [g*rpg, (g+1)*rpg) of 32 columns, thread row y taking every 8th row, the
 * 8 partials added in order: part[g*N + n]. Stage 2 adds the G partials in
 * order. The order depends on M and N only. */
template <class F>
__global__ static void colsum_partial(double *part, F f, int M, int N, int rpg)
{
    __shared__ double sh[8][33];
    int n = blockIdx.x * 32 + threadIdx.x, g = blockIdx.y;
    int m0 = g * rpg, m1 = min(M, m0 + rpg);
    double s = 0.0;
    if (n < N)
        for (int m = m0 + threadIdx.y; m < m1; m += 8) s += f(m, n);
    sh[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && n < N) {
        double t = 0.0;
        for (int y = 0; y < 8; y++) t += sh[y][threadIdx.x];
        part[(size_t)g * N + n] = t;
    }
}

__global__ static void colsum_final(float *dst, const double *part, int G, int N, int accumulate)
{
    int n = blockIdx.x * blockDim.x + threadIdx.x;
    if (n >= N) return;
    double s = 0.0;
    for (int g = 0; g < G; g++) s += part[(size_t)g * N + n];
    dst[n] = accumulate ? dst[n] + (float)s : (float)s;
}

/* f with its columns shifted by n0 (colsum in chunks of columns) */
template <class F>
struct shifted_f {
    F f;
    int n0;
    __device__ double operator()(int m, int n) const { return f(m, n + n0); }
};

/* colsum of at most RED_DOUBLES columns */
template <class F>
static void colsum_run(float *dst, F f, int M, int N, int accumulate)
{
    if (N <= 0) return;
    if (M <= 0) {
        if (!accumulate) CK(cudaMemsetAsync(dst, 0, sizeof(float) * (size_t)N, g_stream));
        return;
    }
    int G = (M + 255) / 256; /* rows per group >= 256: each thread sums >= 32 */
    if (G > 128) G = 128;
    if ((size_t)G * N > RED_DOUBLES) G = (int)(RED_DOUBLES / (size_t)N);
    if (G < 1) G = 1;
    int rpg = (M + G - 1) / G;
    G = (M + rpg - 1) / rpg;
    dim3 grid((N + 31) / 32, G), block(32, 8);
    LAUNCH(colsum_partial<F>, grid, block)(g_red, f, M, N, rpg);
    LAUNCHED();
    LAUNCH(colsum_final, (N + 255) / 256, 256)(dst, g_red, G, N, accumulate);
    LAUNCHED();
}

template <class F>
static void colsum(float *dst, F f, int M, int N, int accumulate)
{
    if ((size_t)N <= RED_DOUBLES) {
        colsum_run(dst, f, M, N, accumulate);
        return;
    }
    /* more columns than the scratch holds partial sums of: in chunks */
    for (int n0 = 0; n0 < N; n0 += (int)RED_DOUBLES) {
        int nc = N - n0 < (int)RED_DOUBLES ? N - n0 : (int)RED_DOUBLES;
        colsum_run(dst + n0, shifted_f<F>{f, n0}, M, nc, accumulate);
    }
}

/* The sum of f(i) over i < n, in double, brought back to the host: stage 1
 * G blocks of 256 threads (G fixed by n), each thread taking every
 * (G*256)-th value from its own start, a tree per block; stage 2 one block
 * adds the G partials the same way. */
template <class F>
__global__ static void sum_partial(double *part, F f, size_t n)
{
    __shared__ double sh[256];
    double s = 0.0;
    GRID_STRIDE(i, n) s += f(i);
    s = block_sum256(s, sh);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

__global__ static void sum_final(double *out, const double *part, int G)
{
    __shared__ double sh[256];
    double s = 0.0;
    for (int g = threadIdx.x; g < G; g += 256) s += part[g];
    s = block_sum256(s, sh);
    if (threadIdx.x == 0) *out = s;
}

/* the total to out (device), without waiting */
template <class F>
static void sum_to(double *out, F f, size_t n)
{
    unsigned G = n == 0 ? 1 : (unsigned)((n + 255) / 256);
    if (G > 1024) G = 1024;
    double *part = g_red + 8; /* out lies in g_red[0..8) */
    LAUNCH(sum_partial<F>, G, 256)(part, f, n);
    LAUNCHED();
    LAUNCH(sum_final, 1, 256)(out, part, (int)G);
    LAUNCHED();
}

/* g_red[0..k) to the host, waiting for the stream */
static void fetch_red(int k)
{
    CK(cudaMemcpyAsync(g_host_red, g_red, sizeof(double) * k, cudaMemcpyDeviceToHost, g_stream));
    CK(cudaStreamSynchronize(g_stream));
}

/* ================================================================ memory */

static void *cu_alloc(size_t bytes)
{
    size_t size = bytes == 0 ? 256 : (bytes + 255) / 256 * 256;
    if (size < bytes) return NULL;
    if (g_nallocs == g_capallocs) {
        size_t cap = g_capallocs ? 2 * g_capallocs : 64;
        alloc_rec *r = (alloc_rec *)realloc(g_allocs, cap * sizeof *r);
        if (!r) return NULL;
        g_allocs = r;
        g_capallocs = cap;
    }
    void *p = NULL;
    if (cudaMalloc(&p, size) != cudaSuccess) {
        cudaGetLastError(); /* an out-of-memory is reported by returning NULL, and clears */
        return NULL;
    }
    CK(cudaMemsetAsync(p, 0, size, g_stream));
    CK(cudaStreamSynchronize(g_stream));
    g_allocs[g_nallocs].p = p;
    g_allocs[g_nallocs].bytes = size;
    g_nallocs++;
    g_bytes_now += size;
    if (g_bytes_now > g_bytes_peak) g_bytes_peak = g_bytes_now;
    return p;
}

static void cu_free(void *p)
{
    if (!p) return;
    for (size_t i = 0; i < g_nallocs; i++)
        if (g_allocs[i].p == p) {
            g_bytes_now -= g_allocs[i].bytes;
            g_allocs[i] = g_allocs[--g_nallocs];
            break;
        }
    CK(cudaStreamSynchronize(g_stream)); /* nothing queued may still use it */
    CK(cudaFree(p));
}

static void cu_upload(void *dst, const void *host_src, size_t bytes)
{
    /* from pageable memory the call returns once the source is staged, so
     * the caller may reuse its buffer at once */
    if (bytes) CK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, g_stream));
}

static void cu_download(void *host_dst, const void *src, size_t bytes)
{
    if (!bytes) return;
    CK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, g_stream));
    CK(cudaStreamSynchronize(g_stream));
}

static void cu_copy(void *dst, const void *src, size_t bytes)
{
    if (bytes) CK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, g_stream));
}

static void cu_zero(void *p, size_t bytes)
{
    if (bytes) CK(cudaMemsetAsync(p, 0, bytes, g_stream));
}

static void *cu_host_alloc(size_t bytes)
{
    void *p = NULL;
    if (cudaMallocHost(&p, bytes ? bytes : 1) != cudaSuccess) {
        cudaGetLastError();
        return NULL;
    }
    return p;
}

static void cu_host_free(void *p)
{
    if (!p) return;
    CK(cudaStreamSynchronize(g_stream)); /* no copy from it still queued */
    CK(cudaFreeHost(p));
}

static size_t cu_mem_free(void)
{
    size_t fr = 0, total = 0;
    if (cudaMemGetInfo(&fr, &total) != cudaSuccess) return 0;
    return fr;
}

/* ================================================================ linear */

/* C[M,N] (row-major) = A[M,K] @ W[N,K]^T: column-major C^T (N x M) =
 * W^T... i.e. gemm(T, N) with W as the K x N matrix of leading dim K */
static void gemm_xwT(float *out, const float *inp, const float *w, int M, int K, int N, float beta)
{
    CB(cublasSgemm(g_blas, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &ONE, w, K, inp, K, &beta, out, N));
}

__global__ static void bias_res_kernel(float *out, const float *b, const float *res, int M, int N)
{
    size_t n = (size_t)M * N;
    GRID_STRIDE(i, n) {
        float v = out[i];
        if (b) v += b[i % N];
        if (res) v += res[i]; /* to the rounded product (backend.h) */
        out[i] = v;
    }
}

/* out[M,N] = inp[M,K] @ w[N,K]^T, 0 when K is 0 */
static void product(float *out, const float *inp, const float *w, int M, int K, int N)
{
    if (K <= 0)
        CK(cudaMemsetAsync(out, 0, sizeof(float) * (size_t)M * N, g_stream));
    else
        gemm_xwT(out, inp, w, M, K, N, ZERO);
}

static void cu_linear_forward(float *out, const float *inp, const float *w, const float *b, const float *res, int M,
                              int K, int N)
{
    if (M <= 0 || N <= 0) return;
    product(out, inp, w, M, K, N);
    if (b || res) {
        LAUNCH(bias_res_kernel, nblocks((size_t)M * N, 256), 256)(out, b, res, M, N);
        LAUNCHED();
    }
}

/* the exact GELU and its derivative at z, in double */
__device__ static void gelu_pair(double z, float *g, float *d)
{
    double Phi = 0.5 * (1.0 + erf(z * 0.70710678118654752440));
    double phi = exp(-0.5 * z * z) * 0.39894228040143267794;
    *g = (float)(z * Phi);
    *d = (float)(Phi + z * phi);
}

__global__ static void bias_gelu_kernel(float *out, float *deriv, const float *b, int M, int N)
{
    size_t n = (size_t)M * N;
    GRID_STRIDE(i, n) {
        double z = out[i];
        if (b) z += b[i % N];
        gelu_pair(z, &out[i], &deriv[i]);
    }
}

static void cu_linear_gelu_forward(float *out, float *deriv, const float *inp, const float *w, const float *b, int M,
                                   int K, int N)
{
    if (M <= 0 || N <= 0) return;
    product(out, inp, w, M, K, N);
    LAUNCH(bias_gelu_kernel, nblocks((size_t)M * N, 256), 256)(out, deriv, b, M, N);
    LAUNCHED();
}

/* f(m, n) = src[m * ld + n] */
struct rows_f {
    const float *src;
    size_t ld;
    __device__ double operator()(int m, int n) const { return src[(size_t)m * ld + n]; }
};

/* dinp[M,K] = dout[M,N] @ w[N,K]: column-major dinp^T (K x M) = w^T (K x N,
 * ld K) @ dout^T (N x M, ld N): gemm(N, N).
 * dw[N,K] += dout^T @ inp: column-major dw^T (K x N) = inp^T (K x M) @ dout
 * (M x N): gemm(N, T) with beta 1. */
static void cu_linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                               int M, int K, int N)
{
    if (M <= 0) return;
    if (dinp && K > 0) {
        if (N > 0)
            CB(cublasSgemm(g_blas, CUBLAS_OP_N, CUBLAS_OP_N, K, M, N, &ONE, w, K, dout, N, &ZERO, dinp, K));
        else
            CK(cudaMemsetAsync(dinp, 0, sizeof(float) * (size_t)M * K, g_stream));
    }
    if (dw && K > 0 && N > 0)
        CB(cublasSgemm(g_blas, CUBLAS_OP_N, CUBLAS_OP_T, K, N, M, &ONE, inp, K, dout, N, &ONE, dw, K));
    if (db) colsum(db, rows_f{dout, (size_t)N}, M, N, 1);
}

__global__ static void mul_kernel(float *dinp, const float *deriv, const float *dout, size_t n)
{
    GRID_STRIDE(i, n) dinp[i] = dout[i] * deriv[i];
}

static void cu_gelu_backward(float *dinp, const float *deriv, const float *dout, size_t n)
{
    if (!n) return;
    LAUNCH(mul_kernel, nblocks(n, 256), 256)(dinp, deriv, dout, n);
    LAUNCHED();
}

/* ================================================================ layer norm */

#define LN_EPS 1e-6

/* a warp per row, 8 rows per block; mean and variance in double, two passes */
__global__ static void ln_forward_kernel(float *out, float *mean, float *rstd, const float *inp, const float *w,
                                         const float *b, int M, int D)
{
    int m = blockIdx.x * 8 + threadIdx.y, lane = threadIdx.x;
    if (m >= M) return;
    const float *x = inp + (size_t)m * D;
    double mu, ss = warp_row_moments(x, D, lane, &mu);
    double rs = 1.0 / sqrt(ss / D + LN_EPS);
    for (int d = lane; d < D; d += 32) out[(size_t)m * D + d] = (float)(((double)x[d] - mu) * rs * w[d] + b[d]);
    if (lane == 0) {
        mean[m] = (float)mu;
        rstd[m] = (float)rs;
    }
}

static void cu_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                                 const float *b, int M, int D)
{
    if (M <= 0) return;
    LAUNCH(ln_forward_kernel, (M + 7) / 8, dim3(32, 8))(out, mean, rstd, inp, w, b, M, D);
    LAUNCHED();
}

/* dinp += rstd * (g - mean(g) - xhat mean(g xhat)), g = dout w, per row */
__global__ static void ln_backward_kernel(float *dinp, const float *dout, const float *inp, const float *w,
                                          const float *mean, const float *rstd, int M, int D)
{
    int m = blockIdx.x * 8 + threadIdx.y, lane = threadIdx.x;
    if (m >= M) return;
    const float *x = inp + (size_t)m * D, *dy = dout + (size_t)m * D;
    double mu = mean[m], rs = rstd[m], gs = 0.0, gxs = 0.0;
    for (int d = lane; d < D; d += 32) {
        double xhat = ((double)x[d] - mu) * rs, g = (double)dy[d] * w[d];
        gs += g;
        gxs += g * xhat;
    }
    double gm = warp_sum(gs) / D, gxm = warp_sum(gxs) / D;
    for (int d = lane; d < D; d += 32) {
        double xhat = ((double)x[d] - mu) * rs, g = (double)dy[d] * w[d];
        dinp[(size_t)m * D + d] += (float)(rs * (g - gm - xhat * gxm));
    }
}

/* f(m, d) = dout[m,d] * xhat[m,d] */
struct ln_dw_f {
    const float *dout, *inp, *mean, *rstd;
    int D;
    __device__ double operator()(int m, int d) const
    {
        size_t i = (size_t)m * D + d;
        return (double)dout[i] * (((double)inp[i] - mean[m]) * rstd[m]);
    }
};

static void cu_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                  const float *w, const float *mean, const float *rstd, int M, int D)
{
    if (M <= 0) return;
    if (dinp) {
        LAUNCH(ln_backward_kernel, (M + 7) / 8, dim3(32, 8))(dinp, dout, inp, w, mean, rstd, M, D);
        LAUNCHED();
    }
    if (dw) colsum(dw, ln_dw_f{dout, inp, mean, rstd, D}, M, D, 1);
    if (db) colsum(db, rows_f{dout, (size_t)D}, M, D, 1);
}

/* ================================================================ attention */

/* Per head h, batched over the B images (cublasSgemmStridedBatched), with
 * qkv[B,T,3D] laid out per token as (3, H, hd): q of token t at t*3D +
 * h*hd, k at +D, v at +2D (leading dimension 3D), att[B,H,T,T], out[B,T,D]
 * (head slice at h*hd, leading dimension D). */

/* softmax of each row of x[rows, T] in place: a warp per row */
__global__ static void softmax_rows_kernel(float *x, size_t rows, int T)
{
    size_t r = blockIdx.x * (size_t)8 + threadIdx.y;
    int lane = threadIdx.x;
    if (r >= rows) return;
    float *row = x + r * T;
    double s;
    float mx = warp_row_softmax(row, T, lane, &s);
    for (int j = lane; j < T; j += 32) row[j] = (float)(exp((double)row[j] - mx) / s);
}

static void cu_attention_forward(float *out, float *att, float *qkv, const float *inp, const float *w,
                                 const float *b, int B, int T, int D, int H)
{
    if (B <= 0 || T <= 0) return;
    int hd = D / H;
    long long sq = (long long)T * 3 * D, sa = (long long)H * T * T, so = (long long)T * D;
    float scale = (float)(1.0 / sqrt((double)hd));
    cu_linear_forward(qkv, inp, w, b, NULL, B * T, D, 3 * D);
    for (int h = 0; h < H; h++) {
        const float *q = qkv + (size_t)h * hd, *k = q + D;
        float *a = att + (size_t)h * T * T;
        /* scores[i][j] = q_i . k_j / sqrt(hd): column-major S^T (T x T) =
         * k (as hd x T)^T @ q (hd x T) */
        CB(cublasSgemmStridedBatched(g_blas, CUBLAS_OP_T, CUBLAS_OP_N, T, T, hd, &scale, k, 3 * D, sq, q, 3 * D, sq,
                                     &ZERO, a, T, sa, B));
    }
    size_t rows = (size_t)B * H * T;
    LAUNCH(softmax_rows_kernel, (unsigned)((rows + 7) / 8), dim3(32, 8))(att, rows, T);
    LAUNCHED();
    for (int h = 0; h < H; h++) {
        const float *v = qkv + (size_t)h * hd + 2 * (size_t)D;
        /* out_i = sum_j att[i][j] v_j: column-major out (hd x T, ld D) =
         * v (hd x T, ld 3D) @ att^T-as-stored (T x T column-major = att
         * row-major transposed) */
        CB(cublasSgemmStridedBatched(g_blas, CUBLAS_OP_N, CUBLAS_OP_N, hd, T, T, &ONE, v, 3 * D, sq,
                                     att + (size_t)h * T * T, T, sa, &ZERO, out + (size_t)h * hd, D, so, B));
    }
}

/* one head's datt[B,T,T] for every image */
static size_t cu_attention_scratch(int B, int T) { return (size_t)B * T * T; }

/* ds = att * (datt - rowsum(att * datt)), in place on datt: a warp per row */
__global__ static void softmax_back_kernel(float *ds, const float *att, int B, int H, int h, int T)
{
    size_t r = blockIdx.x * (size_t)8 + threadIdx.y; /* row of ds: image b, query i */
    int lane = threadIdx.x;
    if (r >= (size_t)B * T) return;
    size_t b = r / T, i = r % T;
    const float *a = att + (((size_t)b * H + h) * T + i) * T;
    float *d = ds + r * T;
    double s = 0.0;
    for (int j = lane; j < T; j += 32) s += (double)a[j] * d[j];
    s = warp_sum(s);
    for (int j = lane; j < T; j += 32) d[j] = (float)((double)a[j] * ((double)d[j] - s));
}

__global__ static void zero_cols_kernel(float *db, int off, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) db[off + i] = 0.0f;
}

static void cu_attention_backward(float *dx, float *dw, float *db, float *dqkv, float *scratch, size_t nscratch,
                                  const float *qkv, const float *att, const float *inp, const float *w, int B, int T,
                                  int D, int H)
{
    (void)nscratch; /* at least attention_scratch(B, T): the model sizes it so */
    if (B <= 0 || T <= 0) return;
    int hd = D / H;
    long long sq = (long long)T * 3 * D, sa = (long long)H * T * T, so = (long long)T * D, ss = (long long)T * T;
    float scale = (float)(1.0 / sqrt((double)hd));
    for (int h = 0; h < H; h++) {
        const float *q = qkv + (size_t)h * hd, *k = q + D, *v = q + 2 * (size_t)D;
        const float *dout = dx + (size_t)h * hd;
        const float *a = att + (size_t)h * T * T;
        float *dq = dqkv + (size_t)h * hd, *dk = dq + D, *dv = dq + 2 * (size_t)D;
        /* datt[i][j] = dout_i . v_j (as the scores, with v for k, dout for q) */
        CB(cublasSgemmStridedBatched(g_blas, CUBLAS_OP_T, CUBLAS_OP_N, T, T, hd, &ONE, v, 3 * D, sq, dout, D, so,
                                     &ZERO, scratch, T, ss, B));
        LAUNCH(softmax_back_kernel, (unsigned)(((size_t)B * T + 7) / 8), dim3(32, 8))(scratch, att, B, H, h,
                                                                                             T);
        LAUNCHED();
        /* dq_i = sum_j ds[i][j] k_j / sqrt(hd): column-major dq (hd x T) =
         * k (hd x T) @ ds-as-stored (T x T, column j... = ds^T) */
        CB(cublasSgemmStridedBatched(g_blas, CUBLAS_OP_N, CUBLAS_OP_N, hd, T, T, &scale, k, 3 * D, sq, scratch, T, ss,
                                     &ZERO, dq, 3 * D, sq, B));
        /* dk_j = sum_i ds[i][j] q_i / sqrt(hd): dk (hd x T) = q (hd x T) @
         * (ds-as-stored)^T */
        CB(cublasSgemmStridedBatched(g_blas, CUBLAS_OP_N, CUBLAS_OP_T, hd, T, T, &scale, q, 3 * D, sq, scratch, T, ss,
                                     &ZERO, dk, 3 * D, sq, B));
        /* dv_j = sum_i att[i][j] dout_i: dv (hd x T) = dout (hd x T, ld D) @
         * (att-as-stored)^T */
        CB(cublasSgemmStridedBatched(g_blas, CUBLAS_OP_N, CUBLAS_OP_T, hd, T, T, &ONE, dout, D, so, a, T, sa, &ZERO,
                                     dv, 3 * D, sq, B));
    }
    /* every head's dout is read: dx may now take d inp */
    cu_linear_backward(dx, dw, db, dqkv, inp, w, B * T, D, 3 * D);
    if (db) {
        LAUNCH(zero_cols_kernel, (D + 255) / 256, 256)(db, D, D);
        LAUNCHED();
    }
}

/* ================================================================ elementwise */

__global__ static void add_kernel(float *y, const float *x, size_t n)
{
    GRID_STRIDE(i, n) y[i] += x[i];
}

static void cu_add(float *y, const float *x, size_t n)
{
    if (!n) return;
    LAUNCH(add_kernel, nblocks(n, 256), 256)(y, x, n);
    LAUNCHED();
}

__global__ static void scale_rows_kernel(float *x, const float *scale, size_t per, size_t n)
{
    GRID_STRIDE(i, n) x[i] *= scale[i / per];
}

static void cu_scale_rows(float *x, const float *scale, int B, int T, int D)
{
    size_t per = (size_t)T * D, n = per * B;
    if (!n) return;
    LAUNCH(scale_rows_kernel, nblocks(n, 256), 256)(x, scale, per, n);
    LAUNCHED();
}

__global__ static void scale_kernel(float *x, size_t n, float s)
{
    GRID_STRIDE(i, n) x[i] *= s;
}

static void cu_scale(float *x, size_t n, float s)
{
    if (!n) return;
    LAUNCH(scale_kernel, nblocks(n, 256), 256)(x, n, s);
    LAUNCHED();
}

/* ================================================================ tokens */

/* patches[b, y*gw+x, (i*p+j)*C + c] = imgs[b, c, y*p+i, x*p+j], one thread
 * per output value */
__global__ static void patchify_kernel(float *patches, const float *imgs, int B, int C, int H, int W, int p)
{
    int gh = H / p, gw = W / p, P = p * p * C;
    size_t n = (size_t)B * gh * gw * P;
    GRID_STRIDE(o, n) {
        int e = (int)(o % P);
        size_t row = o / P;
        int l = (int)(row % ((size_t)gh * gw));
        size_t b = row / ((size_t)gh * gw);
        int c = e % C, ij = e / C, i = ij / p, j = ij % p, y = l / gw, x = l % gw;
        patches[o] = imgs[((b * C + c) * H + (size_t)y * p + i) * W + (size_t)x * p + j];
    }
}

static void cu_patchify(float *patches, const float *imgs, int B, int C, int H, int W, int p)
{
    size_t n = (size_t)B * (H / p) * (W / p) * p * p * C;
    if (!n) return;
    LAUNCH(patchify_kernel, nblocks(n, 256), 256)(patches, imgs, B, C, H, W, p);
    LAUNCHED();
}

/* out[b,k,(c*p+i)*p+j] = imgs[b,c,y*p+i,x*p+j], patch l = ids[b*K+k] or k */
__global__ static void patch_gather_kernel(float *out, const float *imgs, const int *ids, int B, int K, int C, int H,
                                           int W, int p)
{
    int gw = W / p, P = C * p * p;
    size_t n = (size_t)B * K * P;
    GRID_STRIDE(o, n) {
        int e = (int)(o % P);
        size_t bk = o / P, b = bk / K;
        int l = ids ? ids[bk] : (int)(bk % K);
        int c = e / (p * p), i = (e / p) % p, j = e % p, y = l / gw, x = l % gw;
        out[o] = imgs[((b * C + c) * H + (size_t)y * p + i) * W + (size_t)x * p + j];
    }
}

static void cu_patch_gather(float *out, const float *imgs, const int *ids, int B, int K, int C, int H, int W, int p)
{
    size_t n = (size_t)B * K * C * p * p;
    if (!n) return;
    LAUNCH(patch_gather_kernel, nblocks(n, 256), 256)(out, imgs, ids, B, K, C, H, W, p);
    LAUNCHED();
}

/* per row of t[n,P]: (t - mean) / sqrt(var + 1e-6), var unbiased: a warp
 * per row */
__global__ static void norm_pix_kernel(float *t, size_t n, int P)
{
    size_t r = blockIdx.x * (size_t)8 + threadIdx.y;
    int lane = threadIdx.x;
    if (r >= n) return;
    float *row = t + r * P;
    double mu, ss = warp_row_moments(row, P, lane, &mu);
    double sd = sqrt(ss / (P - 1) + 1e-6);
    for (int k = lane; k < P; k += 32) row[k] = (float)(((double)row[k] - mu) / sd);
}

static void cu_norm_pix(float *t, size_t n, int P)
{
    if (!n) return;
    LAUNCH(norm_pix_kernel, (unsigned)((n + 7) / 8), dim3(32, 8))(t, n, P);
    LAUNCHED();
}

/* x[B,1+K,D]: row 0 = cls + pos[0]; row 1+k = (tokens[b,k] or swap_tok) +
 * pos[1+l] */
__global__ static void embed_forward_kernel(float *x, const float *tokens, const float *cls, const float *pos,
                                            const int *ids, const float *swap, const float *swap_tok, int B, int K,
                                            int D)
{
    size_t n = (size_t)B * (1 + K) * D;
    GRID_STRIDE(o, n) {
        int d = (int)(o % D);
        size_t bt = o / D, b = bt / (1 + K);
        int t = (int)(bt % (1 + K));
        if (t == 0) {
            x[o] = cls[d] + pos[d];
        } else {
            size_t bk = b * K + t - 1;
            int l = ids ? ids[bk] : t - 1;
            const float *tok = swap && swap[bk] > 0 ? swap_tok : tokens + bk * D;
            x[o] = tok[d] + pos[(size_t)(1 + l) * D + d];
        }
    }
}

static void cu_embed_forward(float *x, const float *tokens, const float *cls, const float *pos, const int *ids,
                             const float *swap, const float *swap_tok, int B, int K, int D)
{
    size_t n = (size_t)B * (1 + K) * D;
    if (!n) return;
    LAUNCH(embed_forward_kernel, nblocks(n, 256), 256)(x, tokens, cls, pos, ids, swap, swap_tok, B, K, D);
    LAUNCHED();
}

__global__ static void embed_dtokens_kernel(float *dtokens, const float *dx, const float *swap, int B, int K, int D)
{
    size_t n = (size_t)B * K * D;
    GRID_STRIDE(o, n) {
        size_t bk = o / D, b = bk / K, k = bk % K;
        int d = (int)(o % D);
        dtokens[o] = swap && swap[bk] > 0 ? 0.0f : dx[(b * (1 + K) + 1 + k) * D + d];
    }
}

/* f(m, d) over the B*K token rows: dx of the row where swapped, else 0 */
struct swapped_f {
    const float *dx, *swap;
    int K, D;
    __device__ double operator()(int m, int d) const
    {
        size_t b = (size_t)m / K, k = (size_t)m % K;
        return swap[m] > 0 ? (double)dx[(b * (1 + K) + 1 + k) * D + d] : 0.0;
    }
};

static void cu_embed_backward(float *dtokens, float *dcls, float *dpos, float *dswap_tok, const float *dx,
                              const float *swap, int B, int K, int D)
{
    size_t rows = (size_t)(1 + K);
    if (dtokens && (size_t)B * K * D > 0) {
        LAUNCH(embed_dtokens_kernel, nblocks((size_t)B * K * D, 256), 256)(dtokens, dx, swap, B, K, D);
        LAUNCHED();
    }
    if (dcls) colsum(dcls, rows_f{dx, rows * D}, B, D, 1);
    if (swap && dswap_tok) colsum(dswap_tok, swapped_f{dx, swap, K, D}, B * K, D, 1);
    if (dpos) colsum(dpos, rows_f{dx, rows * D}, B, (int)(rows * D), 1);
}

/* x[B,1+L,E] from y[B,1+K,E]: one thread per value of x, found from the
 * inverse of restore: the row t of x holds patch l with t = 1 + restore[l];
 * a thread per (b, l) writes row t, and one per b writes row 0 */
__global__ static void unshuffle_forward_kernel(float *x, const float *y, const float *pos, const int *restore,
                                                const float *tok, int B, int L, int K, int E)
{
    size_t n = (size_t)B * (1 + L) * E;
    GRID_STRIDE(o, n) {
        int e = (int)(o % E);
        size_t bl = o / E, b = bl / (1 + L);
        int l = (int)(bl % (1 + L)); /* 0: the cls row; else patch l-1 */
        const float *yb = y + b * (1 + K) * E;
        if (l == 0) {
            x[b * (1 + L) * E + e] = yb[e] + pos[e];
        } else {
            int t = 1 + (restore ? restore[b * L + l - 1] : l - 1);
            const float *src = t <= K ? yb + (size_t)t * E : tok;
            x[(b * (1 + L) + t) * E + e] = src[e] + pos[(size_t)l * E + e];
        }
    }
}

static void cu_unshuffle_forward(float *x, const float *y, const float *pos, const int *restore, const float *tok,
                                 int B, int L, int K, int E)
{
    size_t n = (size_t)B * (1 + L) * E;
    if (!n) return;
    LAUNCH(unshuffle_forward_kernel, nblocks(n, 256), 256)(x, y, pos, restore, tok, B, L, K, E);
    LAUNCHED();
}

__global__ static void rows_copy_kernel(float *dst, const float *src, int B, int rows, size_t dst_per, size_t src_per,
                                        int D)
{
    size_t n = (size_t)B * rows * D;
    GRID_STRIDE(o, n) {
        size_t b = o / ((size_t)rows * D), r = o % ((size_t)rows * D);
        dst[b * dst_per + r] = src[b * src_per + r];
    }
}

/* f(m, e) over B*(L-K) rows: row K+1+(m % (L-K)) of image m / (L-K) */
struct masked_rows_f {
    const float *dx;
    int L, K, E;
    __device__ double operator()(int m, int e) const
    {
        size_t b = (size_t)m / (L - K), t = K + 1 + (size_t)m % (L - K);
        return dx[(b * (1 + L) + t) * E + e];
    }
};

static void cu_unshuffle_backward(float *dy, float *dtok, const float *dx, int B, int L, int K, int E)
{
    size_t n = (size_t)B * (1 + K) * E;
    if (n) {
        LAUNCH(rows_copy_kernel, nblocks(n, 256), 256)(dy, dx, B, 1 + K, (size_t)(1 + K) * E,
                                                                 (size_t)(1 + L) * E, E);
        LAUNCHED();
    }
    if (dtok && K < L) colsum(dtok, masked_rows_f{dx, L, K, E}, B * (L - K), E, 1);
}

static void cu_rows_gather(float *dst, const float *src, int B, int T, int off, int G, int D)
{
    size_t n = (size_t)B * G * D;
    if (!n) return;
    LAUNCH(rows_copy_kernel, nblocks(n, 256), 256)(dst, src + (size_t)off * D, B, G, (size_t)G * D,
                                                             (size_t)T * D, D);
    LAUNCHED();
}

__global__ static void rows_expand_kernel(float *dst, const float *src, int B, int T, int off, int G, int D)
{
    size_t n = (size_t)B * T * D;
    GRID_STRIDE(o, n) {
        size_t bt = o / D, b = bt / T;
        int t = (int)(bt % T), d = (int)(o % D);
        dst[o] = t >= off && t < off + G ? src[(b * G + t - off) * D + d] : 0.0f;
    }
}

static void cu_rows_expand(float *dst, const float *src, int B, int T, int off, int G, int D)
{
    size_t n = (size_t)B * T * D;
    if (!n) return;
    LAUNCH(rows_expand_kernel, nblocks(n, 256), 256)(dst, src, B, T, off, G, D);
    LAUNCHED();
}

/* out[b,d] = mean over t >= 1: a thread per value, t ascending */
__global__ static void mean_pool_kernel(float *out, const float *x, int B, int T, int D)
{
    size_t n = (size_t)B * D;
    GRID_STRIDE(o, n) {
        size_t b = o / D;
        int d = (int)(o % D);
        double s = 0.0;
        for (int t = 1; t < T; t++) s += x[(b * T + t) * D + d];
        out[o] = (float)(s / (T - 1));
    }
}

static void cu_mean_pool_forward(float *out, const float *x, int B, int T, int D)
{
    size_t n = (size_t)B * D;
    if (!n) return;
    LAUNCH(mean_pool_kernel, nblocks(n, 256), 256)(out, x, B, T, D);
    LAUNCHED();
}

__global__ static void mean_pool_back_kernel(float *dx, const float *dout, int B, int T, int D)
{
    size_t n = (size_t)B * T * D;
    GRID_STRIDE(o, n) {
        size_t bt = o / D, b = bt / T;
        int t = (int)(bt % T), d = (int)(o % D);
        dx[o] = t == 0 ? 0.0f : (float)((double)dout[b * D + d] / (T - 1));
    }
}

static void cu_mean_pool_backward(float *dx, const float *dout, int B, int T, int D)
{
    size_t n = (size_t)B * T * D;
    if (!n) return;
    LAUNCH(mean_pool_back_kernel, nblocks(n, 256), 256)(dx, dout, B, T, D);
    LAUNCHED();
}

/* ================================================================ MAE loss */

/* the row of pred_rows holding patch l of image b, -1 when none */
__device__ static long mae_row(const int *restore, int compact, int b, int l, int L, int K)
{
    int t = 1 + (restore ? restore[(size_t)b * L + l] : l);
    if (!compact) return (long)b * (1 + L) + t;
    if (t <= K) return -1;
    return (long)b * (L - K) + t - 1 - K;
}

__global__ static void mae_pred_gather_kernel(float *pred, const float *pred_rows, const int *restore, int compact,
                                              int B, int L, int K, int P)
{
    size_t n = (size_t)B * L * P;
    GRID_STRIDE(o, n) {
        size_t bl = o / P;
        int k = (int)(o % P), b = (int)(bl / L), l = (int)(bl % L);
        long r = mae_row(restore, compact, b, l, L, K);
        pred[o] = r < 0 ? 0.0f : pred_rows[(size_t)r * P + k];
    }
}

static void cu_mae_pred_gather(float *pred, const float *pred_rows, const int *restore, int compact, int B, int L,
                               int K, int P)
{
    size_t n = (size_t)B * L * P;
    if (!n) return;
    LAUNCH(mae_pred_gather_kernel, nblocks(n, 256), 256)(pred, pred_rows, restore, compact, B, L, K, P);
    LAUNCHED();
}

/* per patch: weight * mean_P (pred - target)^2, a warp per patch */
__global__ static void patch_se_kernel(double *se, const float *pred, const float *target, const float *mask,
                                       size_t n, int P)
{
    size_t r = blockIdx.x * (size_t)8 + threadIdx.y;
    int lane = threadIdx.x;
    if (r >= n) return;
    double s = 0.0;
    for (int k = lane; k < P; k += 32) {
        double e = (double)pred[r * P + k] - target[r * P + k];
        s += e * e;
    }
    s = warp_sum(s);
    if (lane == 0) se[r] = (mask ? (double)mask[r] : 1.0) * (s / P);
}

struct arr_d {
    const double *x;
    __device__ double operator()(size_t i) const { return x[i]; }
};
struct arr_f {
    const float *x;
    __device__ double operator()(size_t i) const { return x[i]; }
};
struct sq_f {
    const float *x;
    __device__ double operator()(size_t i) const { return (double)x[i] * x[i]; }
};

/* the per-patch terms live after the reduction's partials */
#define RED_TERMS (g_red + 8 + 1024)
#define RED_TERMS_MAX (RED_DOUBLES - 8 - 1024)

static double cu_mae_loss(const float *pred, const float *target, const float *mask, int B, int L, int P)
{
    size_t n = (size_t)B * L;
    if (n == 0) return 0.0;
    double loss = 0.0, msum = mask ? 0.0 : (double)n;
    /* in chunks of the scratch, added in order */
    for (size_t c0 = 0; c0 < n; c0 += RED_TERMS_MAX) {
        size_t c = n - c0 < RED_TERMS_MAX ? n - c0 : RED_TERMS_MAX;
        LAUNCH(patch_se_kernel, (unsigned)((c + 7) / 8), dim3(32, 8))(
            RED_TERMS, pred + c0 * P, target + c0 * P, mask ? mask + c0 : NULL, c, P);
        LAUNCHED();
        sum_to(g_red, arr_d{RED_TERMS}, c);
        if (mask) sum_to(g_red + 1, arr_f{mask + c0}, c);
        fetch_red(2);
        loss += g_host_red[0];
        if (mask) msum += g_host_red[1];
    }
    return msum == 0.0 ? 0.0 : loss / msum;
}

/* dpred_rows: weight * c * (pred - target) in patch l's row, c = 2 scale /
 * (P msum) with msum at *msum_dev; the cls rows of !compact written 0 */
__global__ static void mae_loss_back_kernel(float *dpred_rows, const float *pred, const float *target,
                                            const float *mask, const int *restore, int compact, float scale,
                                            const double *msum_dev, double msum_fixed, int B, int L, int K, int P)
{
    double msum = msum_dev ? *msum_dev : msum_fixed;
    size_t n = (size_t)B * (1 + L) * P; /* a thread per value of every (b, 0..L) row */
    GRID_STRIDE(o, n) {
        int k = (int)(o % P);
        size_t bl = o / P;
        int b = (int)(bl / (1 + L)), l1 = (int)(bl % (1 + L));
        if (l1 == 0) {
            if (!compact) dpred_rows[(size_t)b * (1 + L) * P + k] = 0.0f;
            continue;
        }
        int l = l1 - 1;
        long r = mae_row(restore, compact, b, l, L, K);
        if (r < 0) continue;
        size_t pi = ((size_t)b * L + l) * P + k;
        double weight = mask ? mask[(size_t)b * L + l] : 1.0;
        double c = msum == 0.0 ? 0.0 : weight * 2.0 * scale / ((double)P * msum);
        dpred_rows[(size_t)r * P + k] = (float)(c * ((double)pred[pi] - target[pi]));
    }
}

static void cu_mae_loss_backward(float *dpred_rows, const float *pred, const float *target, const float *mask,
                                 const int *restore, int compact, float scale, int B, int L, int K, int P)
{
    size_t n = (size_t)B * (1 + L) * P;
    if (!n) return;
    if (mask) sum_to(g_red, arr_f{mask}, (size_t)B * L);
    LAUNCH(mae_loss_back_kernel, nblocks(n, 256), 256)(dpred_rows, pred, target, mask, restore, compact,
                                                                 scale, mask ? g_red : NULL, (double)B * L, B, L,
                                                                 K, P);
    LAUNCHED();
}

/* ================================================================ heads */

/* a warp per row: probs, and the row's loss to rowloss[b] */
__global__ static void xent_forward_kernel(double *rowloss, float *probs, const float *logits, const float *targets,
                                           int B, int K)
{
    int b = blockIdx.x * 8 + threadIdx.y, lane = threadIdx.x;
    if (b >= B) return;
    const float *z = logits + (size_t)b * K, *tg = targets + (size_t)b * K;
    double s;
    float mx = warp_row_softmax(z, K, lane, &s);
    double lse = mx + log(s), row = 0.0;
    for (int k = lane; k < K; k += 32) {
        probs[(size_t)b * K + k] = (float)(exp((double)z[k] - mx) / s);
        row -= (double)tg[k] * ((double)z[k] - lse);
    }
    row = warp_sum(row);
    if (lane == 0) rowloss[b] = row;
}

static double cu_xent_forward(float *probs, const float *logits, const float *targets, int B, int K)
{
    if (B <= 0) return 0.0;
    double total = 0.0;
    for (int b0 = 0; b0 < B; b0 += (int)RED_TERMS_MAX) {
        int c = B - b0 < (int)RED_TERMS_MAX ? B - b0 : (int)RED_TERMS_MAX;
        LAUNCH(xent_forward_kernel, (c + 7) / 8, dim3(32, 8))(RED_TERMS, probs + (size_t)b0 * K,
                                                                       logits + (size_t)b0 * K,
                                                                       targets + (size_t)b0 * K, c, K);
        LAUNCHED();
        sum_to(g_red, arr_d{RED_TERMS}, (size_t)c);
        fetch_red(1);
        total += g_host_red[0];
    }
    return total / B;
}

__global__ static void xent_backward_kernel(float *dlogits, const float *probs, const float *targets, int B, int K,
                                            double c)
{
    int b = blockIdx.x * 8 + threadIdx.y, lane = threadIdx.x;
    if (b >= B) return;
    const float *tg = targets + (size_t)b * K;
    double ts = 0.0;
    for (int k = lane; k < K; k += 32) ts += tg[k];
    ts = warp_sum(ts);
    for (int k = lane; k < K; k += 32)
        dlogits[(size_t)b * K + k] = (float)(c * ((double)probs[(size_t)b * K + k] * ts - tg[k]));
}

static void cu_xent_backward(float *dlogits, const float *probs, const float *targets, int B, int K, float scale)
{
    if (B <= 0) return;
    LAUNCH(xent_backward_kernel, (B + 7) / 8, dim3(32, 8))(dlogits, probs, targets, B, K,
                                                                    (double)scale / B);
    LAUNCHED();
}

/* ================================================================ optimizer */

__global__ static void adamw_kernel(float *p, float *g, float *m, float *v, size_t n, double lr, double b1, double b2,
                                    double eps, double wd, double bc1, double bc2)
{
    GRID_STRIDE(i, n) {
        double gi = g[i];
        double pi = p[i] * (1.0 - lr * wd);
        double mi = b1 * m[i] + (1.0 - b1) * gi;
        double vi = b2 * v[i] + (1.0 - b2) * gi * gi;
        m[i] = (float)mi;
        v[i] = (float)vi;
        p[i] = (float)(pi - lr * (mi / bc1) / (sqrt(vi / bc2) + eps));
        g[i] = 0.0f;
    }
}

/* torch.optim.AdamW, each value in double as ref; the bias corrections
 * computed once on the host */
static void cu_adamw(float *p, float *g, float *m, float *v, size_t n, float lr, float beta1, float beta2, float eps,
                     float weight_decay, long step)
{
    if (!n) return;
    double b1 = beta1, b2 = beta2;
    double bc1 = 1.0 - pow(b1, (double)step), bc2 = 1.0 - pow(b2, (double)step);
    LAUNCH(adamw_kernel, nblocks(n, 256), 256)(p, g, m, v, n, lr, b1, b2, eps, weight_decay, bc1, bc2);
    LAUNCHED();
}

static double cu_sumsq(const float *x, size_t n)
{
    if (!n) return 0.0;
    sum_to(g_red, sq_f{x}, n);
    fetch_red(1);
    return g_host_red[0];
}

/* ================================================================ the table */

static maec_backend cuda_backend;

static void fill_table(maec_backend *t)
{
    memset(t, 0, sizeof *t);
    t->name = "cuda";
    t->host_shared = 0;
    t->alloc = cu_alloc;
    t->free = cu_free;
    t->upload = cu_upload;
    t->download = cu_download;
    t->copy = cu_copy;
    t->zero = cu_zero;
    t->mem_free = cu_mem_free;
    t->host_alloc = cu_host_alloc;
    t->host_free = cu_host_free;
    t->linear_forward = cu_linear_forward;
    t->linear_gelu_forward = cu_linear_gelu_forward;
    t->linear_backward = cu_linear_backward;
    t->gelu_backward = cu_gelu_backward;
    t->layernorm_forward = cu_layernorm_forward;
    t->layernorm_backward = cu_layernorm_backward;
    t->attention_forward = cu_attention_forward;
    t->attention_scratch = cu_attention_scratch;
    t->attention_backward = cu_attention_backward;
    t->add = cu_add;
    t->scale_rows = cu_scale_rows;
    t->patchify = cu_patchify;
    t->patch_gather = cu_patch_gather;
    t->norm_pix = cu_norm_pix;
    t->embed_forward = cu_embed_forward;
    t->embed_backward = cu_embed_backward;
    t->unshuffle_forward = cu_unshuffle_forward;
    t->unshuffle_backward = cu_unshuffle_backward;
    t->rows_gather = cu_rows_gather;
    t->rows_expand = cu_rows_expand;
    t->mean_pool_forward = cu_mean_pool_forward;
    t->mean_pool_backward = cu_mean_pool_backward;
    t->mae_pred_gather = cu_mae_pred_gather;
    t->mae_loss = cu_mae_loss;
    t->mae_loss_backward = cu_mae_loss_backward;
    t->xent_forward = cu_xent_forward;
    t->xent_backward = cu_xent_backward;
    t->adamw = cu_adamw;
    t->sumsq = cu_sumsq;
    t->scale = cu_scale;
}

/* ================================================================ opening */

extern "C" int maec_cuda_open(int device, int tf32, char *msg, size_t msglen)
{
    if (g_open) {
        if (device != g_dev) {
            snprintf(msg, msglen, "GPU %d is already in use by this process (one GPU per process)", g_dev);
            return -1;
        }
        if (tf32 != g_tf32) {
            CB(cublasSetMathMode(g_blas, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
            g_tf32 = tf32;
        }
        return 0;
    }
    int n = 0, drv = 0, rt = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    cudaDriverGetVersion(&drv);
    cudaRuntimeGetVersion(&rt);
    if (drv == 0 || e == cudaErrorNoDevice || (e == cudaSuccess && n == 0)) {
        snprintf(msg, msglen, "no CUDA GPU found on this machine%s (use --device cpu)",
                 drv == 0 ? ": no NVIDIA driver" : "");
        return -1;
    }
    /* minor-version compatibility: a 13.x runtime runs on any 13.y driver */
    if (e == cudaErrorInsufficientDriver || (e == cudaSuccess && drv / 1000 < rt / 1000)) {
        snprintf(msg, msglen,
                 "the NVIDIA driver is too old for this build: it supports CUDA %d.%d, maec was built with CUDA "
                 "%d.%d (update the driver, or build with an older CUDA toolkit)",
                 drv / 1000, drv % 1000 / 10, rt / 1000, rt % 1000 / 10);
        return -1;
    }
    if (e != cudaSuccess) {
        snprintf(msg, msglen, "CUDA could not start: %s", cudaGetErrorString(e));
        return -1;
    }
    if (device < 0 || device >= n) {
        if (n == 1)
            snprintf(msg, msglen, "no GPU cuda:%d: this machine has one, cuda:0", device);
        else
            snprintf(msg, msglen, "no GPU cuda:%d: this machine has %d, cuda:0 to cuda:%d", device, n, n - 1);
        return -1;
    }
    cudaDeviceProp prop;
    if ((e = cudaSetDevice(device)) != cudaSuccess || (e = cudaGetDeviceProperties(&prop, device)) != cudaSuccess ||
        (e = cudaStreamCreateWithFlags(&g_stream, cudaStreamNonBlocking)) != cudaSuccess) {
        snprintf(msg, msglen, "GPU %d could not be opened: %s", device, cudaGetErrorString(e));
        return -1;
    }
    if (prop.major < 8) { /* the build holds sm_90 code and compute_80 PTX */
        snprintf(msg, msglen, "GPU %d (%s) is compute capability %d.%d; this build needs 8.0 (A100) or newer",
                 device, prop.name, prop.major, prop.minor);
        return -1;
    }
    if (cublasCreate(&g_blas) != CUBLAS_STATUS_SUCCESS || cublasSetStream(g_blas, g_stream) != CUBLAS_STATUS_SUCCESS ||
        cublasSetMathMode(g_blas, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH) != CUBLAS_STATUS_SUCCESS) {
        snprintf(msg, msglen, "cuBLAS could not start on GPU %d", device);
        return -1;
    }
    /* cuBLAS's workspace, ours: else it allocates on its own inside a
     * product, where the model's memory may have left none (32 MiB: the
     * size NVIDIA advises for Hopper) */
    void *ws = NULL;
    if (cudaMalloc((void **)&g_red, sizeof(double) * RED_DOUBLES) != cudaSuccess ||
        cudaMallocHost((void **)&g_host_red, sizeof(double) * 8) != cudaSuccess ||
        cudaMalloc(&ws, (size_t)32 << 20) != cudaSuccess ||
        cublasSetWorkspace(g_blas, ws, (size_t)32 << 20) != CUBLAS_STATUS_SUCCESS) {
        snprintf(msg, msglen, "GPU %d: out of memory for the first 64 MiB", device);
        return -1;
    }
    const char *se = getenv("MAEC_CUDA_SYNC");
    g_sync_each = se && *se && strcmp(se, "0");
    /* one kernel and one product now: code this GPU cannot run (PTX newer
     * than its driver, no image for its architecture) fails here, in one
     * line, not in the middle of a run */
    LAUNCH(zero_cols_kernel, 1, 1)((float *)g_red, 0, 1);
    e = cudaGetLastError();
    if (e == cudaSuccess) e = cudaStreamSynchronize(g_stream);
    if (e == cudaSuccess) {
        float one = 1.0f, zero = 0.0f;
        if (cublasSgemm(g_blas, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, (float *)g_red, 1, (float *)g_red, 1, &zero,
                        (float *)g_red + 1, 1) != CUBLAS_STATUS_SUCCESS) {
            snprintf(msg, msglen, "GPU %d (%s): cuBLAS cannot run on it", device, prop.name);
            return -1;
        }
        e = cudaStreamSynchronize(g_stream);
    }
    if (e != cudaSuccess) {
        snprintf(msg, msglen, "GPU %d (%s, compute %d.%d) cannot run this build's code: %s (rebuild with the CUDA "
                 "toolkit of this driver, or update the driver)", device, prop.name, prop.major, prop.minor,
                 cudaGetErrorString(e));
        return -1;
    }
    fill_table(&cuda_backend);
    g_dev = device;
    g_tf32 = tf32;
    g_open = 1;
    return 0;
}

extern "C" const maec_backend *maec_backend_cuda(void) { return g_open ? &cuda_backend : NULL; }

extern "C" void maec_cuda_memory(size_t *now, size_t *peak)
{
    if (now) *now = g_bytes_now;
    if (peak) *peak = g_bytes_peak;
}

extern "C" int maec_cuda_describe(char *buf, size_t n)
{
    if (!g_open) return -1;
    cudaDeviceProp prop;
    int drv = 0, rt = 0;
    if (cudaGetDeviceProperties(&prop, g_dev) != cudaSuccess) return -1;
    cudaDriverGetVersion(&drv);
    cudaRuntimeGetVersion(&rt);
    snprintf(buf, n, "%s (cuda:%d, compute %d.%d, %.0f GiB; driver CUDA %d.%d, runtime %d.%d%s)", prop.name, g_dev,
             prop.major, prop.minor, prop.totalGlobalMem / 1073741824.0, drv / 1000, drv % 1000 / 10, rt / 1000,
             rt % 1000 / 10,
             !g_tf32 ? "" : getenv("NVIDIA_TF32_OVERRIDE") && !strcmp(getenv("NVIDIA_TF32_OVERRIDE"), "0")
                               ? "; TF32 asked for, but NVIDIA_TF32_OVERRIDE=0 keeps fp32"
                               : "; TF32 products");
    return 0;
}

extern "C" int maec_cuda_emulated(void)
{
#ifdef MAEC_CUDA_EMU
    return 1;
#else
    return 0;
#endif
}

extern "C" void *maec_cuda_stream(void) { return (void *)g_stream; }
