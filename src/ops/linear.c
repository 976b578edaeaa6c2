/* Linear layers: out = inp W^T + b and its gradients, on OpenBLAS.
 *
 * With more than one thread, a product of many rows and a small weight is
 * split between the threads by hand and each part run by a single-threaded
 * sgemm (OpenBLAS's OpenMP build runs single-threaded inside a parallel
 * region): the forward and input gradient by rows, the weight gradient by
 * the rows it sums over, into one buffer per thread added in thread order at
 * the end. OpenBLAS's own
 * threading of these shapes (a few thousand rows, 128 to 768 wide) reached
 * 50-75% of its square-matrix rate on the weight gradients and 63-88% on the
 * input gradients at two threads; split this way, 70-90% and 81-91%
 * (bench/gemm_shapes, docs/PERF.md). The partition is static, so results are
 * the same from run to run at a given thread count. */
#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

/* fewer rows than this per thread: leave the product to OpenBLAS */
enum { SPLIT_MIN_ROWS = 128 };

/* Split by hand when the rows are many and the weight small (the MAE on
 * small images: thousands of rows, 128-768 wide); when the weight is as
 * large as the rows are many (ViT-B at batch 8: 400 rows, 768 x 3072),
 * OpenBLAS's own partition of it does better (bench/gemm_shapes: 98% of
 * square sgemm against 95%). */
int linear_split_threads(int M, int K, int N)
{
    if (omp_in_parallel()) return 1;
    int nt = omp_get_max_threads(), wide = K > N ? K : N;
    return nt > 1 && M >= SPLIT_MIN_ROWS * nt && M >= 2 * wide ? nt : 1;
}

static int part_lo(int M, int t, int nt) { return (int)((long long)M * t / nt); }

void linear_forward(float *out, const float *inp, const float *w, const float *b, int M, int K,
                    int N)
{
    int nt = linear_split_threads(M, K, N);
    if (nt == 1) {
        float beta = 0.0f;
        if (b) {
#pragma omp parallel for schedule(static)
            for (int m = 0; m < M; m++) memcpy(out + (size_t)m * N, b, (size_t)N * sizeof(float));
            beta = 1.0f;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, inp, K, w, K, beta,
                    out, N);
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), n = omp_get_num_threads();
        int m0 = part_lo(M, t, n), m1 = part_lo(M, t + 1, n);
        float *o = out + (size_t)m0 * N;
        if (b)
            for (int m = m0; m < m1; m++) memcpy(out + (size_t)m * N, b, (size_t)N * sizeof(float));
        if (m1 > m0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m1 - m0, N, K, 1.0f,
                        inp + (size_t)m0 * K, K, w, K, b ? 1.0f : 0.0f, o, N);
    }
}

/* db[n0..n1) += column sums of rows [m0, m1) of dout, each column in row order */
static void colsum(float *db, const float *dout, int m0, int m1, int n0, int n1, int N)
{
    enum { CB = 64 };
    for (int c0 = n0; c0 < n1; c0 += CB) {
        int c1 = c0 + CB < n1 ? c0 + CB : n1;
        float acc[CB];
        for (int n = c0; n < c1; n++) acc[n - c0] = 0.0f;
        for (int m = m0; m < m1; m++) {
            const float *row = dout + (size_t)m * N;
            for (int n = c0; n < c1; n++) acc[n - c0] += row[n];
        }
        for (int n = c0; n < c1; n++) db[n] += acc[n - c0];
    }
}

/* the other threads' partial weight (and bias) gradients; grown, never shrunk */
static _Thread_local float *part;
static _Thread_local size_t part_len;

static float *partials(size_t n)
{
    if (n > part_len) {
        float *p = realloc(part, n * sizeof(float));
        if (!p) return NULL;
        part = p;
        part_len = n;
    }
    return part;
}

void linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                     const float *w, int M, int K, int N)
{
    int nt = linear_split_threads(M, K, N);
    size_t wn = (size_t)N * K, stride = wn + (size_t)N;
    float *buf = nt > 1 ? partials(stride * (size_t)(nt - 1)) : NULL;
    if (!buf) { /* one thread, or no memory for the partial sums: OpenBLAS threads it */
        if (dinp)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, K, N, 1.0f, dout, N, w, K,
                        0.0f, dinp, K);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, K, M, 1.0f, dout, N, inp, K, 1.0f,
                    dw, K);
        if (db) {
            enum { CB = 64 };
#pragma omp parallel for schedule(static)
            for (int n0 = 0; n0 < N; n0 += CB) colsum(db, dout, 0, M, n0, n0 + CB < N ? n0 + CB : N, N);
        }
        return;
    }
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), n = omp_get_num_threads();
        int m0 = part_lo(M, t, n), m1 = part_lo(M, t + 1, n);
        if (dinp && m1 > m0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m1 - m0, K, N, 1.0f,
                        dout + (size_t)m0 * N, N, w, K, 0.0f, dinp + (size_t)m0 * K, K);
        /* thread 0 adds into dw and db, the others write their own partials */
        float *pw = t == 0 ? dw : buf + (size_t)(t - 1) * stride;
        float *pb = t == 0 ? db : pw + wn;
        if (m1 > m0)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, K, m1 - m0, 1.0f,
                        dout + (size_t)m0 * N, N, inp + (size_t)m0 * K, K, t == 0 ? 1.0f : 0.0f,
                        pw, K);
        else if (t > 0)
            memset(pw, 0, wn * sizeof(float));
        if (db) {
            if (t > 0) memset(pb, 0, (size_t)N * sizeof(float));
            colsum(pb, dout, m0, m1, 0, N, N);
        }
#pragma omp barrier
        /* add the partials in thread order, the elements split between threads */
        size_t i0 = wn * (size_t)t / (size_t)n, i1 = wn * (size_t)(t + 1) / (size_t)n;
        for (int u = 1; u < n; u++) {
            const float *p = buf + (size_t)(u - 1) * stride;
            for (size_t i = i0; i < i1; i++) dw[i] += p[i];
        }
        if (db && t == 0)
            for (int u = 1; u < n; u++) {
                const float *p = buf + (size_t)(u - 1) * stride + wn;
                for (int j = 0; j < N; j++) db[j] += p[j];
            }
    }
}

void add_inplace(float *y, const float *x, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}
