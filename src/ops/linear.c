/* Linear layers: out = inp W^T + b and its gradients.
 *
 * Products of many rows and a small weight (rows at least twice the weight's
 * wider side, which is at most XSMM_MAX_WIDE: the MAE on small images) run
 * on libxsmm's JIT kernels, tile by tile, with the rows split between the
 * threads (see "libxsmm" below). The others run on OpenBLAS: split by hand
 * between the threads when the rows are many (each part a single-threaded
 * sgemm; OpenBLAS's OpenMP build runs single-threaded inside a parallel
 * region), else split by output columns (ViT-B at batch 8: 400 rows, 768 x
 * 3072; see "columns" below). A weight gradient split by rows goes into one
 * buffer per thread, added in thread order at the end. The partitions are
 * static, so results are the same from run to run at a given thread count
 * (docs/PERF.md has the measurements behind each choice). */
#include <cblas.h>
#include <libxsmm.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"

/* fewer rows than this per thread: leave the product to OpenBLAS */
enum { SPLIT_MIN_ROWS = 128 };

/* Split by rows when the rows are many and the weight small (the MAE on
 * small images: thousands of rows, 128-768 wide); when the weight is as
 * large as the rows are many (ViT-B at batch 8: 400 rows, 768 x 3072), a
 * split by rows ran below OpenBLAS's own threading (bench/gemm_shapes: 95%
 * of square sgemm against 98%), each thread packing the whole weight: those
 * are split by columns ("columns" below). */
int linear_split_threads(int M, int K, int N)
{
    if (omp_in_parallel()) return 1;
    int nt = omp_get_max_threads(), wide = K > N ? K : N;
    return nt > 1 && M >= SPLIT_MIN_ROWS * nt && M >= 2 * wide ? nt : 1;
}

static int part_lo(int M, int t, int nt) { return (int)((long long)M * t / nt); }

/* ---- columns: products of few rows against a large weight ----
 *
 * Each thread computes its share of the output's columns with one
 * single-threaded sgemm, reading all the rows and its part of the weight:
 * nothing to add up afterwards, and no synchronization inside OpenBLAS.
 * Threaded by OpenBLAS itself, the threads wait for each other's packed
 * panels in sched_yield, a system call under the VM, a visible share of
 * ViT-B's step on a Zen 5 EPYC, where the step ran faster split this way
 * (measured with bench/ab_step at the time: docs/notes/perf-2026-11-27-to-12-03.md). Shares
 * are whole blocks of COL_BLOCK columns. */
enum { COL_BLOCK = 64 };

static void col_share(int N, int t, int n, int *c0, int *c1)
{
    int blocks = (N + COL_BLOCK - 1) / COL_BLOCK;
    *c0 = part_lo(blocks, t, n) * COL_BLOCK;
    *c1 = part_lo(blocks, t + 1, n) * COL_BLOCK;
    if (*c0 > N) *c0 = N;
    if (*c1 > N) *c1 = N;
}

/* the threads to split a product by columns: 1 inside a parallel region */
static int col_threads(void) { return omp_in_parallel() ? 1 : omp_get_max_threads(); }

/* ---- libxsmm: the products of many rows and a small weight ----
 *
 * For these shapes OpenBLAS spends much of its time packing operands that
 * come from memory (docs/PERF.md). libxsmm's JIT kernels read them where
 * they lie: each kernel call computes a tile of TILE_COLS output columns by
 * TILE_ROWS rows, with the weight's tile in cache across the row tiles. In
 * libxsmm's column-major terms a row-major [rows][cols] array is a
 * cols x rows matrix, so out = inp W^T is C(N x M) = Wt(N x K) B(K x M)
 * with Wt the weight transposed (libxsmm 1.17 has no transposed-A kernel),
 * dinp = dout W is C(K x M) = W(K x N) dout(N x M) as the weight lies, and
 * dW = dout^T inp is C(K x N) = inp(K x m) dout(N x m)^T over chunks of
 * WG_ROWS rows (a transposed-B kernel), C staying in cache. */
enum { TILE_ROWS = 64, TILE_COLS = 64, WG_ROWS = TILE_ROWS, XSMM_MAX_WIDE = 1024 };

/* libxsmm's tiles where the CPU has AVX-512. With AVX2 alone its JIT
 * kernels ran below OpenBLAS's split by hand (bench/gemm_shapes and
 * bench/ab_step on a Zen 3 EPYC at the time: docs/notes/perf-2026-11-27-to-12-03.md), so
 * there the products stay on OpenBLAS.
 * linear_set_tiled turns the tiles on or off (the tests run both). */
#ifdef __AVX512F__
static int xsmm_on = 1;
#else
static int xsmm_on = 0;
#endif

int linear_set_tiled(int on)
{
    int was = xsmm_on;
    xsmm_on = on;
    return was;
}

static int use_xsmm(int M, int K, int N)
{
    if (!xsmm_on || omp_in_parallel()) return 0;
    int wide = K > N ? K : N;
    return wide <= XSMM_MAX_WIDE && M >= 2 * wide && M >= SPLIT_MIN_ROWS * omp_get_max_threads();
}

int linear_tiled(int M, int K, int N) { return use_xsmm(M, K, N); }

static libxsmm_smmfunction kernel(int m, int n, int k, int lda, int ldb, int ldc, float beta, int trans_b)
{
    libxsmm_blasint mm = m, nn = n, kk = k, a = lda, b = ldb, c = ldc;
    float alpha = 1.0f;
    int flags = trans_b ? LIBXSMM_GEMM_FLAGS('N', 'T') : LIBXSMM_GEMM_FLAGS('N', 'N');
    return libxsmm_smmdispatch(mm, nn, kk, &a, &b, &c, &alpha, &beta, &flags, NULL);
}

/* rows [r0, r1) of the row-major C[r][j] (j < ncols, row stride ldc) =
 * sum_k A[j + k*lda] B[r*ldb + k], plus bias[j] when given, added to each
 * tile just after its kernel while it is in L1. (Written into the tile
 * before a beta = 1 kernel instead, the bias rows took the tile's cache
 * misses in a loop of stores, and the steps of A and B ran slower:
 * docs/notes/perf-2026-11-27-to-12-03.md.)
 * The four kernels: [last row tile is short][last column tile is short].
 * Returns -1 (nothing done) if libxsmm has no kernel; dry: only look the
 * kernels up (libxsmm keeps them, so the real call finds them). */
static int tiles(const float *A, int lda, const float *B, int ldb, float *C, int ldc, int r0, int r1,
                 int ncols, int k, const float *bias, const float *res, int dry)
{
    if (r1 <= r0) return 0;
    int rr = (r1 - r0) % TILE_ROWS, rc = ncols % TILE_COLS;
    libxsmm_smmfunction f[2][2] = {{NULL, NULL}, {NULL, NULL}};
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++) {
            int n = a ? rr : TILE_ROWS, m = b ? rc : TILE_COLS;
            if (n == 0 || m == 0 || (!a && r1 - r0 < TILE_ROWS) || (!b && ncols < TILE_COLS)) continue;
            if (!(f[a][b] = kernel(m, n, k, lda, ldb, ldc, 0.0f, 0))) return -1;
        }
    if (dry) return 0;
    for (int r = r0; r < r1; r += TILE_ROWS) {
        int nr = r1 - r < TILE_ROWS ? r1 - r : TILE_ROWS;
        for (int c = 0; c < ncols; c += TILE_COLS) {
            int nc = ncols - c < TILE_COLS ? ncols - c : TILE_COLS;
            float *dst = C + (size_t)r * ldc + c;
            f[nr < TILE_ROWS][nc < TILE_COLS](A + c, B + (size_t)r * ldb, dst);
            if (bias && res)
                for (int i = 0; i < nr; i++) {
                    float *d = dst + (size_t)i * ldc;
                    const float *bb = bias + c, *rr = res + (size_t)(r + i) * ldc + c;
#pragma omp simd
                    for (int j = 0; j < nc; j++) d[j] = (d[j] + bb[j]) + rr[j];
                }
            else if (bias || res)
                for (int i = 0; i < nr; i++) {
                    float *d = dst + (size_t)i * ldc;
                    const float *bb = bias ? bias + c : res + (size_t)(r + i) * ldc + c;
#pragma omp simd
                    for (int j = 0; j < nc; j++) d[j] += bb[j];
                }
        }
    }
    return 0;
}

/* the weight transposed, for the forward kernels; grown, never shrunk */
static _Thread_local float *wt_buf;
static _Thread_local size_t wt_len;

/* Thread t of n's rows: a share of M, or with items (per > 0 rows each,
 * M = items * per) a share of whole items. */
static void thread_rows(int M, int per, int t, int n, int *r0, int *r1)
{
    if (per > 0) {
        int items = M / per;
        *r0 = part_lo(items, t, n) * per;
        *r1 = part_lo(items, t + 1, n) * per;
    } else {
        *r0 = part_lo(M, t, n);
        *r1 = part_lo(M, t + 1, n);
    }
}

/* after (may be NULL): called by each thread for its items as soon as their
 * rows are done (linear_forward_items) */
static int xsmm_forward(float *out, const float *inp, const float *w, const float *b, const float *res, int M,
                        int K, int N, int per, linear_items_fn after, void *ctx)
{
    size_t n = (size_t)N * K;
    if (n > wt_len) {
        float *p = realloc(wt_buf, n * sizeof(float));
        if (!p) return -1;
        wt_buf = p;
        wt_len = n;
    }
    float *wt = wt_buf;
    int nt = omp_get_max_threads();
    for (int t = 0; t < nt; t++) {
        int r0, r1;
        thread_rows(M, after ? per : 0, t, nt, &r0, &r1);
        if (tiles(NULL, N, NULL, K, NULL, N, r0, r1, N, K, b, res, 1)) return -1;
    }
#pragma omp parallel num_threads(nt)
    {
        enum { TB = 16 };
#pragma omp for schedule(static)
        for (int j0 = 0; j0 < N; j0 += TB)
            for (int k0 = 0; k0 < K; k0 += TB)
                for (int j = j0; j < j0 + TB && j < N; j++)
                    for (int k = k0; k < k0 + TB && k < K; k++) wt[(size_t)k * N + j] = w[(size_t)j * K + k];
        int t = omp_get_thread_num(), n = omp_get_num_threads(), r0, r1;
        thread_rows(M, after ? per : 0, t, n, &r0, &r1);
        if (!after) {
            tiles(wt, N, inp, K, out, N, r0, r1, N, K, b, res, 0);
        } else { /* a row tile at a time, each item handed on once its last row is done */
            int done = r0 / per;
            for (int r = r0; r < r1; r += TILE_ROWS) {
                int e = r + TILE_ROWS < r1 ? r + TILE_ROWS : r1;
                tiles(wt, N, inp, K, out, N, r, e, N, K, b, res, 0);
                if (e / per > done) {
                    after(ctx, done, e / per);
                    done = e / per;
                }
            }
        }
    }
    return 0;
}

/* fn(ctx, ...) on each thread's share of the items, where the product did
 * not run item by item */
static void items_by_thread(int items, linear_items_fn fn, void *ctx)
{
#pragma omp parallel
    {
        int t = omp_get_thread_num(), n = omp_get_num_threads();
        int i0 = part_lo(items, t, n), i1 = part_lo(items, t + 1, n);
        if (i1 > i0) fn(ctx, i0, i1);
    }
}

void linear_forward_items(float *out, const float *inp, const float *w, const float *b, int items, int per,
                          int K, int N, linear_items_fn after, void *ctx)
{
    int M = items * per;
    if (use_xsmm(M, K, N) && xsmm_forward(out, inp, w, b, NULL, M, K, N, per, after, ctx) == 0) return;
    linear_forward(out, inp, w, b, M, K, N);
    items_by_thread(items, after, ctx);
}

void linear_forward(float *out, const float *inp, const float *w, const float *b, int M, int K,
                    int N)
{
    if (use_xsmm(M, K, N) && xsmm_forward(out, inp, w, b, NULL, M, K, N, 0, NULL, NULL) == 0) return;
    int nt = linear_split_threads(M, K, N);
    if (nt == 1) {
#pragma omp parallel num_threads(col_threads())
        {
            int c0, c1;
            col_share(N, omp_get_thread_num(), omp_get_num_threads(), &c0, &c1);
            if (c1 > c0) {
                if (b)
                    for (int m = 0; m < M; m++)
                        memcpy(out + (size_t)m * N + c0, b + c0, (size_t)(c1 - c0) * sizeof(float));
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, c1 - c0, K, 1.0f, inp, K,
                            w + (size_t)c0 * K, K, b ? 1.0f : 0.0f, out + c0, N);
            }
        }
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

/* On libxsmm's path the residual is added to each tile after its bias,
 * while the tile is in L1, the same two additions in the same order as a
 * separate pass would make (which cost a read and a write of out and res). */
void linear_forward_residual(float *out, const float *inp, const float *w, const float *b, const float *res,
                             int M, int K, int N)
{
    if (use_xsmm(M, K, N) && xsmm_forward(out, inp, w, b, res, M, K, N, 0, NULL, NULL) == 0) return;
    linear_forward(out, inp, w, b, M, K, N);
    add_inplace(out, res, (size_t)M * N);
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

/* In thread t of n, after a barrier: the other threads' partial weight and
 * bias gradients (buf, one block of stride floats per thread 1..n-1, the
 * bias after the wn weights) added into dw and db in thread order, the
 * elements of dw split between the threads, db by thread 0. */
static void add_partials(float *dw, float *db, const float *buf, size_t stride, size_t wn, int N, int t, int n)
{
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

static void linear_backward_blas(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                 const float *w, int M, int K, int N);

/* weight gradient rows [m0, m1) added into C (row-major [N][K]); dry as for tiles */
static int xsmm_wgrad(float *C, const float *dout, const float *inp, int m0, int m1, int K, int N, int dry)
{
    if (m1 <= m0) return 0;
    libxsmm_smmfunction full = NULL, rest = NULL;
    int rem = (m1 - m0) % WG_ROWS;
    if (m1 - m0 >= WG_ROWS && !(full = kernel(K, N, WG_ROWS, K, N, K, 1.0f, 1))) return -1;
    if (rem && !(rest = kernel(K, N, rem, K, N, K, 1.0f, 1))) return -1;
    if (dry) return 0;
    for (int r = m0; r < m1; r += WG_ROWS)
        (m1 - r < WG_ROWS ? rest : full)(inp + (size_t)r * K, dout + (size_t)r * N, C);
    return 0;
}

/* fn(ctx, r0, r1) on rows [a0, a1) in chunks of at most TILE_ROWS, in order */
static int for_chunks(int a0, int a1, int (*fn)(void *, int, int), void *ctx)
{
    for (int r = a0; r < a1; r += TILE_ROWS)
        if (fn(ctx, r, r + TILE_ROWS < a1 ? r + TILE_ROWS : a1)) return -1;
    return 0;
}

typedef struct {
    float *dinp, *pw;
    const float *dout, *inp, *w;
    int K, N, dry;
    float *acc; /* the bias sums, or NULL */
    /* linear_backward_items: before(bctx, ...) makes dout's rows of each
     * item ahead of the first chunk that reads them; items [0, done) are
     * made, the thread's last is item_end - 1 */
    linear_items_fn before;
    void *bctx;
    int per, done, item_end;
} bwd_chunk;

/* the input gradient, the weight gradient and the bias sums of rows [r0, r1) */
static int backward_chunk(void *ctx, int r0, int r1)
{
    bwd_chunk *c = ctx;
    int K = c->K, N = c->N;
    if (c->dry)
        return (c->dinp && tiles(NULL, K, NULL, N, NULL, K, r0, r1, K, N, NULL, NULL, 1)) ||
               xsmm_wgrad(NULL, NULL, NULL, r0, r1, K, N, 1);
    if (c->before) {
        int need = (r1 + c->per - 1) / c->per;
        if (need > c->item_end) need = c->item_end;
        if (need > c->done) {
            c->before(c->bctx, c->done, need);
            c->done = need;
        }
    }
    if (c->dinp) tiles(c->w, K, c->dout, N, c->dinp, K, r0, r1, K, N, NULL, NULL, 0);
    xsmm_wgrad(c->pw, c->dout, c->inp, r0, r1, K, N, 0);
    if (c->acc)
        for (int m = r0; m < r1; m++) {
            const float *row = c->dout + (size_t)m * N;
            float *acc = c->acc;
#pragma omp simd
            for (int j = 0; j < N; j++) acc[j] += row[j];
        }
    return 0;
}

/* libxsmm's backward on M rows, -1 (nothing done) if it does not apply */
static int xsmm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                         int M, int K, int N, int per, linear_items_fn before, void *bctx)
{
    int nt = omp_get_max_threads();
    size_t wn = (size_t)N * K, stride = wn + (size_t)N;
    if (!use_xsmm(M, K, N)) return -1;
    float *buf = nt > 1 ? partials(stride * (size_t)(nt - 1)) : NULL;
    if (nt > 1 && !buf) return -1;
    for (int t = 0; t < nt; t++) { /* every kernel there before anything is written */
        bwd_chunk c = {.dinp = dinp, .K = K, .N = N, .dry = 1};
        int a0, a1;
        thread_rows(M, before ? per : 0, t, nt, &a0, &a1);
        if (for_chunks(a0, a1, backward_chunk, &c)) return -1;
    }
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num(), n = omp_get_num_threads(), a0, a1;
        thread_rows(M, before ? per : 0, t, n, &a0, &a1);
        /* thread 0 adds into dw and db, the others write their own partials */
        float *pw = t == 0 ? dw : buf + (size_t)(t - 1) * stride;
        float *pb = t == 0 ? db : pw + wn;
        if (t > 0) memset(pw, 0, wn * sizeof(float));
        /* a chunk of rows at a time, each product and the bias sums reading
         * the chunk of dout while it is in cache: the same sums in the same
         * order as whole passes would make */
        float acc[XSMM_MAX_WIDE];
        for (int j = 0; j < N; j++) acc[j] = 0.0f;
        bwd_chunk c = {dinp, pw, dout, inp, w, K, N, 0, db ? acc : NULL, before, bctx, per,
                       before ? a0 / per : 0, before ? a1 / per : 0};
        for_chunks(a0, a1, backward_chunk, &c);
        if (db) {
            if (t > 0) memset(pb, 0, (size_t)N * sizeof(float));
            for (int j = 0; j < N; j++) pb[j] += acc[j];
        }
#pragma omp barrier
        add_partials(dw, db, buf, stride, wn, N, t, n);
    }
    return 0;
}

void linear_backward_items(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                           int items, int per, int K, int N, linear_items_fn before, void *ctx)
{
    int M = items * per;
    if (xsmm_backward(dinp, dw, db, dout, inp, w, M, K, N, per, before, ctx) == 0) return;
    items_by_thread(items, before, ctx);
    linear_backward_blas(dinp, dw, db, dout, inp, w, M, K, N);
}

void linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                     const float *w, int M, int K, int N)
{
    if (xsmm_backward(dinp, dw, db, dout, inp, w, M, K, N, 0, NULL, NULL) == 0) return;
    linear_backward_blas(dinp, dw, db, dout, inp, w, M, K, N);
}

static void linear_backward_blas(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                 const float *w, int M, int K, int N)
{
    int nt = linear_split_threads(M, K, N);
    size_t wn = (size_t)N * K, stride = wn + (size_t)N;
    float *buf = nt > 1 ? partials(stride * (size_t)(nt - 1)) : NULL;
    if (!buf) { /* few rows, or no memory for the partial sums: split by columns */
#pragma omp parallel num_threads(nt > 1 ? 1 : col_threads())
        {
            int t = omp_get_thread_num(), n = omp_get_num_threads(), c0, c1;
            col_share(K, t, n, &c0, &c1); /* dinp's columns */
            if (dinp && c1 > c0)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, c1 - c0, N, 1.0f, dout, N, w + c0, K,
                            0.0f, dinp + c0, K);
            col_share(N, t, n, &c0, &c1); /* dw's rows, db's elements */
            if (c1 > c0) {
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c1 - c0, K, M, 1.0f, dout + c0, N, inp, K,
                            1.0f, dw + (size_t)c0 * K, K);
                if (db) colsum(db, dout, 0, M, c0, c1, N);
            }
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
        add_partials(dw, db, buf, stride, wn, N, t, n);
    }
}

void add_inplace(float *y, const float *x, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}
