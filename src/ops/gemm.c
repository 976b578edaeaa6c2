/* The linear layers' three matrix products with AVX-512 kernels of our own:
 *   forward          C[M,N]  = A[M,K] W[N,K]^T + b   (then GELU, if asked)
 *   input gradient   C[M,K]  = G[M,N] W[N,K]
 *   weight gradient  C[N,K] += G[M,N]^T X[M,K],  db[N] += column sums of G
 * linear.c uses them where the rows are many against the weight (the MAE on
 * small images: a few thousand rows, a reduction of 128-768). There the
 * forward and input gradient read the activations where they lie and pack
 * only the weight (once per call: N*K floats against 2*M*N*K flops); the
 * bias is the accumulators' first value; fc1's GELU and its derivative are
 * computed on each tile while it is in L1, instead of in a pass of their own
 * over memory; the weight gradient packs its block of rows of G and X (both
 * are read across rows) and sums G's columns for the bias gradient as it
 * copies them. docs/PERF.md has what this gained, and what it did not.
 *
 * One micro-kernel computes a 12 x 32 tile of C in 24 zmm registers: for each
 * step p of the reduction it broadcasts A(i, p) for the 12 rows and loads the
 * 32 values B(p, 0..31). A(i, p) is a[i*rsa + p*csa] (rows of the
 * activations, or the packed slices of G), B(p, j) is b[p*rsb + j] (a packed
 * panel). Short columns are masked; short rows go through a zero-padded
 * copy. The lines of the tile it will write, and the next tile's rows of A,
 * are prefetched while it runs (measured: the products of config A with
 * their inputs out of cache went from 240-260 to 280-300 GFLOP/s).
 *
 * Each element of C is one sum in the order of p, computed by one thread, so
 * the results do not depend on the number of threads. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"

#ifdef __AVX512F__
#include <immintrin.h>

#include "gelu_inline.h"

enum { MR = 12, NR = 32, KC = 512, MC = 96 };

/* what the micro-kernel starts its accumulators from */
enum { INIT_ZERO, INIT_BIAS, INIT_C };

static inline __attribute__((always_inline)) void kernel(int kc, const float *a, long rsa,
                                                         long csa, const float *b, long rsb,
                                                         __mmask16 m0, __mmask16 m1, float *c,
                                                         long ldc, int init, const float *bias,
                                                         const float *next)
{
    __m512 acc[MR][2];
    if (init != INIT_C) /* the tile's lines, for writing, while the products run */
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) {
            _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_ET0);
            _mm_prefetch((const char *)(c + i * ldc + 16), _MM_HINT_ET0);
        }
    if (init == INIT_C) {
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) {
            acc[i][0] = _mm512_maskz_loadu_ps(m0, c + i * ldc);
            acc[i][1] = _mm512_maskz_loadu_ps(m1, c + i * ldc + 16);
        }
    } else {
        __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();
        if (init == INIT_BIAS) {
            b0 = _mm512_maskz_loadu_ps(m0, bias);
            b1 = _mm512_maskz_loadu_ps(m1, bias + 16);
        }
#pragma GCC unroll 12
        for (int i = 0; i < MR; i++) {
            acc[i][0] = b0;
            acc[i][1] = b1;
        }
    }
    for (int p0 = 0; p0 < kc; p0 += 16) {
        if (next) /* the next tile's rows of A, a line of each per 16 steps */
#pragma GCC unroll 12
            for (int i = 0; i < MR; i++) _mm_prefetch((const char *)(next + i * rsa + p0 * csa), _MM_HINT_T0);
        int p1 = p0 + 16 < kc ? p0 + 16 : kc;
        for (int p = p0; p < p1; p++) {
            __m512 x0 = _mm512_maskz_loadu_ps(m0, b + p * rsb);
            __m512 x1 = _mm512_maskz_loadu_ps(m1, b + p * rsb + 16);
#pragma GCC unroll 12
            for (int i = 0; i < MR; i++) {
                __m512 s = _mm512_set1_ps(a[i * rsa + p * csa]);
                acc[i][0] = _mm512_fmadd_ps(s, x0, acc[i][0]);
                acc[i][1] = _mm512_fmadd_ps(s, x1, acc[i][1]);
            }
        }
    }
#pragma GCC unroll 12
    for (int i = 0; i < MR; i++) {
        _mm512_mask_storeu_ps(c + i * ldc, m0, acc[i][0]);
        _mm512_mask_storeu_ps(c + i * ldc + 16, m1, acc[i][1]);
    }
}

/* the two lane masks of a column block nr wide (1..32) */
static inline void col_masks(int nr, __mmask16 *m0, __mmask16 *m1)
{
    *m0 = nr >= 16 ? 0xFFFF : (__mmask16)((1u << nr) - 1);
    *m1 = nr >= 32 ? 0xFFFF : nr <= 16 ? 0 : (__mmask16)((1u << (nr - 16)) - 1);
}

/* The micro-kernel on mr <= MR rows of A (rows lda apart): full tiles
 * directly, short ones through zero-padded copies of their rows of A and C
 * (pad: MR*kc + MR*NR floats). */
static void tile(int mr, int nr, int kc, const float *a, long lda, const float *b, float *c,
                 long ldc, int init, const float *bias, float *pad, const float *next)
{
    __mmask16 m0, m1;
    col_masks(nr, &m0, &m1);
    if (mr == MR) {
        kernel(kc, a, lda, 1, b, NR, m0, m1, c, ldc, init, bias, next);
        return;
    }
    float *ap = pad, *cp = pad + (size_t)MR * kc;
    memset(ap, 0, (size_t)MR * kc * sizeof(float));
    for (int i = 0; i < mr; i++) memcpy(ap + (size_t)i * kc, a + i * lda, (size_t)kc * sizeof(float));
    if (init == INIT_C)
        for (int i = 0; i < mr; i++) memcpy(cp + i * NR, c + i * ldc, (size_t)nr * sizeof(float));
    kernel(kc, ap, kc, 1, b, NR, m0, m1, cp, NR, init, bias, NULL);
    for (int i = 0; i < mr; i++) memcpy(c + i * ldc, cp + i * NR, (size_t)nr * sizeof(float));
}

/* The packed weight, shared by the team, lives in the calling thread's
 * buffer, grown and never shrunk; short tiles use a scratch on each thread's
 * stack (MR * (KC + NR) floats, 26 KiB), so nothing can fail once the
 * threads have started. */
static _Thread_local float *pack_buf;
static _Thread_local size_t pack_len;

static float *grow(float **buf, size_t *len, size_t n)
{
    if (n > *len) {
        float *p = realloc(*buf, n * sizeof(float));
        if (!p) return NULL;
        *buf = p;
        *len = n;
    }
    return *buf;
}

static int team_size(void) { return omp_in_parallel() ? 1 : omp_get_max_threads(); }

static int part_lo(int n, int t, int nt) { return (int)((long long)n * t / nt); }

/* C[M, Nc] (ldc) = A[M, R] (lda) B + bias, B packed as ceil(Nc/NR) panels of
 * R x NR, zero past Nc; then GELU in place with its derivative into deriv
 * (ldc too) if deriv. The threads share the rows when there are enough of
 * them, else the panels. */
static void rows_times_packed(float *c, long ldc, const float *a, long lda, const float *bp,
                              const float *bias, float *deriv, int M, int Nc, int R)
{
    int npan = (Nc + NR - 1) / NR, nt = team_size();
    int by_rows = M >= 2 * MR * nt;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int t = omp_get_thread_num(), n = omp_get_num_threads();
        int r0 = 0, r1 = M, j0 = 0, j1 = npan;
        if (by_rows) {
            r0 = part_lo(M / MR, t, n) * MR;
            r1 = t == n - 1 ? M : part_lo(M / MR, t + 1, n) * MR;
        } else {
            j0 = part_lo(npan, t, n);
            j1 = part_lo(npan, t + 1, n);
        }
        float pad[MR * (KC + NR)];
        for (int k0 = 0; k0 < R; k0 += KC) {
            int kc = R - k0 < KC ? R - k0 : KC, last = k0 + kc == R;
            int init = k0 > 0 ? INIT_C : bias ? INIT_BIAS : INIT_ZERO;
            for (int mc0 = r0; mc0 < r1; mc0 += MC) {
                int mc1 = mc0 + MC < r1 ? mc0 + MC : r1;
                for (int j = j0; j < j1; j++) {
                    int nr = Nc - j * NR < NR ? Nc - j * NR : NR;
                    const float *b = bp + (size_t)j * R * NR + (size_t)k0 * NR;
                    for (int m = mc0; m < mc1; m += MR) {
                        int mr = mc1 - m < MR ? mc1 - m : MR;
                        float *ct = c + m * ldc + j * NR;
                        const float *next = m + 2 * MR <= r1 ? a + (m + MR) * lda + k0 : NULL;
                        if (deriv && last) /* its lines, for writing, while the tile is computed */
                            for (int i = 0; i < mr; i++) {
                                _mm_prefetch((const char *)(deriv + (m + i) * ldc + j * NR), _MM_HINT_ET0);
                                _mm_prefetch((const char *)(deriv + (m + i) * ldc + j * NR + 16), _MM_HINT_ET0);
                            }
                        tile(mr, nr, kc, a + m * lda + k0, lda, b, ct, ldc, init,
                             bias ? bias + j * NR : NULL, pad, next);
                        if (deriv && last)
                            for (int i = 0; i < mr; i++)
                                gelu_row(ct + i * ldc, deriv + (m + i) * ldc + j * NR, ct + i * ldc, nr);
                    }
                }
            }
        }
    }
}

/* panels for the forward: bp[j][p][jj] = w[j*NR + jj][p], w [N, K] */
static void pack_rows_as_columns(float *bp, const float *w, int N, int K)
{
    int npan = (N + NR - 1) / NR;
#pragma omp parallel for schedule(static) if (!omp_in_parallel())
    for (int j = 0; j < npan; j++) {
        float *d = bp + (size_t)j * K * NR;
        int nr = N - j * NR < NR ? N - j * NR : NR;
        for (int p = 0; p < K; p++) {
            for (int jj = 0; jj < nr; jj++) d[p * NR + jj] = w[(size_t)(j * NR + jj) * K + p];
            for (int jj = nr; jj < NR; jj++) d[p * NR + jj] = 0.0f;
        }
    }
}

/* panels for the input gradient: bp[j][p][jj] = w[p][j*NR + jj], w [N, K] */
static void pack_row_slices(float *bp, const float *w, int N, int K)
{
    int npan = (K + NR - 1) / NR;
#pragma omp parallel for schedule(static) if (!omp_in_parallel())
    for (int j = 0; j < npan; j++) {
        float *d = bp + (size_t)j * N * NR;
        int nr = K - j * NR < NR ? K - j * NR : NR;
        for (int p = 0; p < N; p++) {
            memcpy(d + p * NR, w + (size_t)p * K + j * NR, (size_t)nr * sizeof(float));
            for (int jj = nr; jj < NR; jj++) d[p * NR + jj] = 0.0f;
        }
    }
}

static size_t packed_len(int cols, int red) { return (size_t)((cols + NR - 1) / NR) * NR * red; }

int gemm_forward(float *out, float *deriv, const float *inp, const float *w, const float *b, int M,
                 int K, int N)
{
    float *bp = grow(&pack_buf, &pack_len, packed_len(N, K));
    if (!bp) return -1;
    pack_rows_as_columns(bp, w, N, K);
    rows_times_packed(out, N, inp, K, bp, b, deriv, M, N, K);
    return 0;
}

int gemm_input_grad(float *dinp, const float *dout, const float *w, int M, int K, int N)
{
    float *bp = grow(&pack_buf, &pack_len, packed_len(K, N));
    if (!bp) return -1;
    pack_row_slices(bp, w, N, K);
    rows_times_packed(dinp, K, dout, N, bp, NULL, NULL, M, K, N);
    return 0;
}

/* The weight gradient reads both operands across rows (a column slice of G,
 * a column slice of X, for each of the M rows it sums over), so both are
 * packed, block of rows by block: each thread copies the 12-wide slices of
 * G for its tiles (ap[i][p][0..11]) and, one at a time, the 32-wide panels of
 * X (bp[p][0..31]) that it needs, zero past the edges. The copies cost
 * (N + K) floats per row summed over, against 2 N K flops. */
static int dw_rows(int N, int K)
{
    /* the block of rows: G's and X's slices for it about 1 MiB, in L2 */
    int r = (int)((1 << 18) / ((N + MR) + (K + NR)));
    r = r < 32 ? 32 : r > 256 ? 256 : r;
    return r;
}

static size_t dw_scratch_floats(int N, int K)
{
    size_t rows = (size_t)dw_rows(N, K), nn = (size_t)(N + MR - 1) / MR * MR;
    return rows * (nn + (size_t)(K + NR - 1) / NR * NR) + nn + 16;
}

/* dw[N, K] += dout[M, N]^T inp[M, K] and db[N] += the column sums of dout:
 * tiles of 12 rows of dw by 32 columns, the sum over M in blocks; the threads
 * share the tiles (the column sums go with the tiles of the thread that has
 * the first panel) */
int gemm_weight_grad(float *dw, float *db, const float *dout, const float *inp, int M, int K,
                     int N)
{
    int nt = team_size(), ntile = (N + MR - 1) / MR, npan = (K + NR - 1) / NR;
    int rows = dw_rows(N, K);
    size_t per = dw_scratch_floats(N, K);
    float *scratch = grow(&pack_buf, &pack_len, per * (size_t)nt);
    if (!scratch) return -1;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int t = omp_get_thread_num(), n = omp_get_num_threads();
        /* split whichever of tiles and panels divides more evenly */
        int split_tiles = ntile >= npan;
        int lo = part_lo(split_tiles ? ntile : npan, t, n);
        int hi = part_lo(split_tiles ? ntile : npan, t + 1, n);
        int i0 = split_tiles ? lo : 0, i1 = split_tiles ? hi : ntile;
        int j0 = split_tiles ? 0 : lo, j1 = split_tiles ? npan : hi;
        int sums = db && j0 == 0 && j1 > j0;
        float *ap = scratch + per * (size_t)t, *bp = ap + (size_t)rows * ntile * MR;
        float *sum = bp + (size_t)rows * npan * NR;
        float cp[MR * NR];
        memset(sum, 0, (size_t)ntile * MR * sizeof(float));
        for (int m0 = 0; m0 < M && i1 > i0 && j1 > j0; m0 += rows) {
            int mc = M - m0 < rows ? M - m0 : rows;
            /* copy the block row by row: G's slices 12 wide (masked 16-lane
             * copies), summing their columns on the way, then X's panels */
            for (int p = 0; p < mc; p++) {
                const float *g = dout + (size_t)(m0 + p) * N;
                for (int i = i0; i < i1; i++) {
                    int mr = N - i * MR < MR ? N - i * MR : MR;
                    __m512 v = _mm512_maskz_loadu_ps((__mmask16)((1u << mr) - 1), g + i * MR);
                    _mm512_mask_storeu_ps(ap + ((size_t)i * rows + p) * MR, 0x0FFF, v);
                    if (sums)
                        _mm512_mask_storeu_ps(sum + i * MR, 0x0FFF,
                                              _mm512_add_ps(_mm512_maskz_loadu_ps(0x0FFF, sum + i * MR), v));
                }
            }
            for (int p = 0; p < mc; p++) {
                const float *x = inp + (size_t)(m0 + p) * K;
                for (int j = j0; j < j1; j++) {
                    __mmask16 k0, k1;
                    col_masks(K - j * NR < NR ? K - j * NR : NR, &k0, &k1);
                    float *d = bp + ((size_t)(j - j0) * rows + p) * NR;
                    _mm512_storeu_ps(d, _mm512_maskz_loadu_ps(k0, x + j * NR));
                    _mm512_storeu_ps(d + 16, _mm512_maskz_loadu_ps(k1, x + j * NR + 16));
                }
            }
            for (int j = j0; j < j1; j++) {
                int nr = K - j * NR < NR ? K - j * NR : NR;
                __mmask16 k0, k1;
                col_masks(nr, &k0, &k1);
                const float *b = bp + (size_t)(j - j0) * rows * NR;
                for (int i = i0; i < i1; i++) {
                    int mr = N - i * MR < MR ? N - i * MR : MR;
                    const float *a = ap + (size_t)i * rows * MR;
                    float *c = dw + (size_t)i * MR * K + j * NR;
                    if (mr == MR) {
                        kernel(mc, a, 1, MR, b, NR, k0, k1, c, K, INIT_C, NULL, NULL);
                        continue;
                    }
                    for (int ii = 0; ii < mr; ii++) memcpy(cp + ii * NR, c + ii * K, (size_t)nr * sizeof(float));
                    kernel(mc, a, 1, MR, b, NR, k0, k1, cp, NR, INIT_C, NULL, NULL);
                    for (int ii = 0; ii < mr; ii++) memcpy(c + ii * K, cp + ii * NR, (size_t)nr * sizeof(float));
                }
            }
        }
        if (sums)
            for (int c = i0 * MR; c < i1 * MR && c < N; c++) db[c] += sum[c];
    }
    return 0;
}

int gemm_available(void) { return 1; }

#else /* no AVX-512: the callers use OpenBLAS */

int gemm_available(void) { return 0; }
int gemm_forward(float *out, float *deriv, const float *inp, const float *w, const float *b, int M,
                 int K, int N)
{
    (void)out, (void)deriv, (void)inp, (void)w, (void)b, (void)M, (void)K, (void)N;
    return -1;
}
int gemm_input_grad(float *dinp, const float *dout, const float *w, int M, int K, int N)
{
    (void)dinp, (void)dout, (void)w, (void)M, (void)K, (void)N;
    return -1;
}
int gemm_weight_grad(float *dw, float *db, const float *dout, const float *inp, int M, int K,
                     int N)
{
    (void)dw, (void)db, (void)dout, (void)inp, (void)M, (void)K, (void)N;
    return -1;
}
#endif
