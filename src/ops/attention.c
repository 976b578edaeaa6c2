/* Multi-head attention's core. For each (batch, head): S = Q K^T * scale,
 * P = softmax(S) by rows, O = P V; Q, K, V are strided views into qkv (row
 * stride 3D).
 *
 * Where the CPU has AVX-512 and the sequence is of 32-128 tokens (the MAE's
 * decoders on small images: 50 tokens on Fashion-MNIST, 65 on CIFAR; ViT-B's
 * encoder, 50), a thread takes a whole batch element: it copies the
 * element's rows of qkv, one contiguous block, into its own buffer, and runs
 * each head's six products there on a small kernel of our own (small_mm,
 * broadcasting elements of A against rows of B, 16 columns to a register;
 * K and V are transposed for it). Per head, OpenBLAS's calls fetched the
 * strided rows one cache miss at a time and packed operands of a few
 * kilobytes; this path took 17-19% less time for the decoders of configs A
 * and B (docs/PERF.md). Elsewhere OpenBLAS does the products per head. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "ops.h"
#include "vmath.h"

#ifdef __AVX512F__
#include <immintrin.h>
#include <stdlib.h>

/* the sequences and heads for the kernels of our own: below SMALL_T_MIN
 * tokens OpenBLAS's path measured faster (13 tokens: 2.9 ms against 3.1 for
 * a batch of 256 x 3 heads of 64), above SMALL_T the products are large
 * enough for OpenBLAS */
enum { SMALL_T_MIN = 32, SMALL_T = 128, SMALL_HD = 256 };

/* C[i][j] = sum_k A[i sai + k sak] B[k ldb + j], i < RB rows, j < 16 NV
 * columns (the last vector's lanes by mask) */
static inline __attribute__((always_inline)) void mm_block(const int RB, const int NV, __mmask16 last,
                                                           int K, const float *A, int sai, int sak,
                                                           const float *B, int ldb, float *C, int ldc)
{
    __m512 acc[8][4];
#pragma GCC unroll 8
    for (int r = 0; r < RB; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_ps();
    for (int k = 0; k < K; k++) {
        const float *b = B + (size_t)k * ldb, *a = A + (size_t)k * sak;
        __m512 bv[4];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            bv[v] = v == NV - 1 ? _mm512_maskz_loadu_ps(last, b + 16 * v) : _mm512_loadu_ps(b + 16 * v);
#pragma GCC unroll 8
        for (int r = 0; r < RB; r++) {
            __m512 av = _mm512_set1_ps(a[(size_t)r * sai]);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < RB; r++) {
        float *c = C + (size_t)r * ldc;
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            if (v == NV - 1)
                _mm512_mask_storeu_ps(c + 16 * v, last, acc[r][v]);
            else
                _mm512_storeu_ps(c + 16 * v, acc[r][v]);
        }
    }
}

/* all M rows of C, RB at a time; the last block overlaps the one before it
 * (the same rows computed again, to the same bits) rather than run short */
static inline __attribute__((always_inline)) void mm_rows(const int RB, const int NV, __mmask16 last,
                                                          int M, int K, const float *A, int sai, int sak,
                                                          const float *B, int ldb, float *C, int ldc)
{
    if (M < RB) {
        for (int i = 0; i < M; i++)
            mm_block(1, NV, last, K, A + (size_t)i * sai, sai, sak, B, ldb, C + (size_t)i * ldc, ldc);
        return;
    }
    for (int i0 = 0; i0 < M; i0 += RB) {
        int i = i0 + RB <= M ? i0 : M - RB;
        mm_block(RB, NV, last, K, A + (size_t)i * sai, sai, sak, B, ldb, C + (size_t)i * ldc, ldc);
    }
}

/* C (M x N, row stride ldc) = A B: A[i][k] at A[i sai + k sak], B row-major
 * (K x N, row stride ldb); C is written, not added to */
static void small_mm(int M, int N, int K, const float *A, int sai, int sak, const float *B, int ldb,
                     float *C, int ldc)
{
    for (int n0 = 0; n0 < N; n0 += 64) {
        int n = N - n0 < 64 ? N - n0 : 64, nv = (n + 15) / 16;
        __mmask16 last = (__mmask16)(n % 16 ? (1u << (n % 16)) - 1 : 0xFFFFu);
        const float *b = B + n0;
        float *c = C + n0;
        switch (nv) {
        case 1: mm_rows(8, 1, last, M, K, A, sai, sak, b, ldb, c, ldc); break;
        case 2: mm_rows(8, 2, last, M, K, A, sai, sak, b, ldb, c, ldc); break;
        case 3: mm_rows(6, 3, last, M, K, A, sai, sak, b, ldb, c, ldc); break;
        default: mm_rows(6, 4, last, M, K, A, sai, sak, b, ldb, c, ldc); break;
        }
    }
}

static inline __mmask16 tail_mask(int n) { return (__mmask16)(n >= 16 ? 0xFFFFu : (1u << n) - 1); }

/* row[0..n) = softmax(row * scale), in place */
static void softmax_row(float *row, int n, float scale)
{
    __m512 mx = _mm512_set1_ps(-INFINITY), sc = _mm512_set1_ps(scale);
    for (int j = 0; j < n; j += 16) {
        __mmask16 k = tail_mask(n - j);
        __m512 x = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, row + j), sc);
        _mm512_mask_storeu_ps(row + j, k, x);
        mx = _mm512_mask_max_ps(mx, k, mx, x);
    }
    __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mx)), sum = _mm512_setzero_ps();
    for (int j = 0; j < n; j += 16) {
        __mmask16 k = tail_mask(n - j);
        __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, row + j), m));
        e = _mm512_maskz_mov_ps(k, e);
        _mm512_mask_storeu_ps(row + j, k, e);
        sum = _mm512_add_ps(sum, e);
    }
    __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
    for (int j = 0; j < n; j += 16) {
        __mmask16 k = tail_mask(n - j);
        _mm512_mask_storeu_ps(row + j, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, row + j), inv));
    }
}

/* dS row from the P and dP rows: p * (dp - sum(p * dp)) * scale, into dp */
static void softmax_back_row(float *dp, const float *p, int n, float scale)
{
    __m512 s = _mm512_setzero_ps();
    for (int j = 0; j < n; j += 16) {
        __mmask16 k = tail_mask(n - j);
        s = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, p + j), _mm512_maskz_loadu_ps(k, dp + j), s);
    }
    __m512 sv = _mm512_set1_ps(_mm512_reduce_add_ps(s)), sc = _mm512_set1_ps(scale);
    for (int j = 0; j < n; j += 16) {
        __mmask16 k = tail_mask(n - j);
        __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(k, dp + j), sv);
        d = _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(k, p + j), d), sc);
        _mm512_mask_storeu_ps(dp + j, k, d);
    }
}

/* dst[d T + j] = src[j ld + d]: a head's keys or values transposed */
static void transpose_head(float *dst, const float *src, int T, int hd, int ld)
{
    for (int j = 0; j < T; j++)
        for (int d = 0; d < hd; d++) dst[(size_t)d * T + j] = src[(size_t)j * ld + d];
}

/* per thread: the batch element's blocks and a head transposed; grown, never shrunk */
static _Thread_local float *small_buf;
static _Thread_local size_t small_len;

static float *small_scratch(int nthr, size_t per)
{
    size_t n = (size_t)nthr * per;
    if (n > small_len) {
        float *p = realloc(small_buf, n * sizeof(float));
        if (!p) return NULL;
        small_buf = p;
        small_len = n;
    }
    return small_buf;
}

/* Each thread takes whole batch elements. A batch element's rows of qkv
 * (and of dout) are one contiguous block: copied in whole, they come from
 * memory at streaming speed, where a head's rows, 3D apart, would arrive one
 * cache miss at a time; the outputs are made in a local block and copied
 * out the same way. */
static int use_small(int B, int T, int hd)
{
    return T >= SMALL_T_MIN && T <= SMALL_T && hd <= SMALL_HD && B >= omp_get_max_threads();
}

static int attention_forward_small(float *out, float *att, const float *qkv, int B, int T, int D, int H)
{
    int hd = D / H, ld = 3 * D, nthr = omp_get_max_threads();
    size_t blk = (size_t)T * D, per = 5 * blk; /* qkv block, K transposed, out block */
    float *buf = small_scratch(nthr, per);
    if (!buf) return -1;
    float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel for schedule(static) num_threads(nthr)
    for (int b = 0; b < B; b++) {
        float *xb = buf + (size_t)omp_get_thread_num() * per, *kt = xb + 3 * blk, *ob = kt + blk;
        memcpy(xb, qkv + (size_t)b * 3 * blk, 3 * blk * sizeof(float));
        for (int h = 0; h < H; h++) {
            const float *q = xb + (size_t)h * hd;
            float *p = att + ((size_t)b * H + h) * T * T;
            transpose_head(kt, q + D, T, hd, ld);
            small_mm(T, T, hd, q, ld, 1, kt, T, p, T);
            for (int i = 0; i < T; i++) softmax_row(p + (size_t)i * T, T, scale);
            small_mm(T, hd, T, p, T, 1, q + 2 * D, ld, ob + (size_t)h * hd, D);
        }
        memcpy(out + (size_t)b * blk, ob, blk * sizeof(float));
    }
    return 0;
}

static int attention_backward_small(float *dqkv, const float *dout, const float *qkv, const float *att,
                                    int B, int T, int D, int H)
{
    int hd = D / H, ld = 3 * D, nthr = omp_get_max_threads();
    size_t blk = (size_t)T * D, per = 8 * blk + (size_t)T * T; /* qkv, dout, V^T, dqkv; dP */
    float *buf = small_scratch(nthr, per);
    if (!buf) return -1;
    float scale = 1.0f / sqrtf((float)hd);
#pragma omp parallel for schedule(static) num_threads(nthr)
    for (int b = 0; b < B; b++) {
        float *xb = buf + (size_t)omp_get_thread_num() * per, *gb = xb + 3 * blk, *vt = gb + blk;
        float *db = vt + blk, *dp = db + 3 * blk;
        memcpy(xb, qkv + (size_t)b * 3 * blk, 3 * blk * sizeof(float));
        memcpy(gb, dout + (size_t)b * blk, blk * sizeof(float));
        for (int h = 0; h < H; h++) {
            const float *q = xb + (size_t)h * hd, *k = q + D, *v = q + 2 * D;
            const float *p = att + ((size_t)b * H + h) * T * T, *dO = gb + (size_t)h * hd;
            float *dq = db + (size_t)h * hd;
            transpose_head(vt, v, T, hd, ld);
            small_mm(T, T, hd, dO, D, 1, vt, T, dp, T);          /* dP = dO V^T */
            small_mm(T, hd, T, p, 1, T, dO, D, dq + 2 * D, ld);  /* dV = P^T dO */
            for (int i = 0; i < T; i++) softmax_back_row(dp + (size_t)i * T, p + (size_t)i * T, T, scale);
            small_mm(T, hd, T, dp, T, 1, k, ld, dq, ld);         /* dQ = dS K */
            small_mm(T, hd, T, dp, 1, T, q, ld, dq + D, ld);     /* dK = dS^T Q */
        }
        memcpy(dqkv + (size_t)b * 3 * blk, db, 3 * blk * sizeof(float));
    }
    return 0;
}
#endif

/* OpenBLAS's products, one call per product and head: where AVX-512 is
 * missing, or the sequence too long or the batch too small for the above */
static void attention_forward_blas(float *out, float *att, const float *qkv, int B, int T, int D, int H)
{
    int hd = D / H;
    float scale = 1.0f / sqrtf((float)hd);
    int ld = 3 * D;
#pragma omp parallel for schedule(static) collapse(2)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++) {
            const float *q = qkv + (size_t)b * T * ld + (size_t)h * hd;
            const float *k = q + D;
            const float *v = q + 2 * D;
            float *p = att + ((size_t)b * H + h) * T * T;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, scale, q, ld, k, ld,
                        0.0f, p, T);
            for (int i = 0; i < T; i++) {
                float *row = p + (size_t)i * T;
                float mx = row[0];
                for (int j = 1; j < T; j++) mx = row[j] > mx ? row[j] : mx;
                float s = 0.0f;
#pragma omp simd reduction(+ : s)
                for (int j = 0; j < T; j++) {
                    row[j] = exp_vec(row[j] - mx);
                    s += row[j];
                }
                float inv = 1.0f / s;
                for (int j = 0; j < T; j++) row[j] *= inv;
            }
            float *o = out + (size_t)b * T * D + (size_t)h * hd;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.0f, p, T, v, ld,
                        0.0f, o, D);
        }
    }
}

size_t attention_scratch_floats(int T) { return (size_t)T * T; }

/* dP = dO V^T; dV = P^T dO; dS = P * (dP - rowsum(dP * P)) * scale;
 * dQ = dS K; dK = dS^T Q. */
static void attention_backward_blas(float *dqkv, const float *dout, const float *qkv, const float *att,
                                    float *scratch, int nscratch, int B, int T, int D, int H)
{
    int hd = D / H;
    float scale = 1.0f / sqrtf((float)hd);
    int ld = 3 * D;
    int nthr = omp_get_max_threads() < nscratch ? omp_get_max_threads() : nscratch;
    (void)nthr; /* unused where OpenMP is off (the fuzz build) */
#pragma omp parallel for schedule(static) collapse(2) num_threads(nthr)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++) {
            float *dp = scratch + (size_t)omp_get_thread_num() * T * T;
            const float *q = qkv + (size_t)b * T * ld + (size_t)h * hd;
            const float *k = q + D;
            const float *v = q + 2 * D;
            float *dq = dqkv + (size_t)b * T * ld + (size_t)h * hd;
            float *dk = dq + D;
            float *dv = dq + 2 * D;
            const float *p = att + ((size_t)b * H + h) * T * T;
            const float *dO = dout + (size_t)b * T * D + (size_t)h * hd;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, 1.0f, dO, D, v, ld,
                        0.0f, dp, T);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, 1.0f, p, T, dO, D,
                        0.0f, dv, ld);
            for (int i = 0; i < T; i++) {
                const float *pr = p + (size_t)i * T;
                float *dr = dp + (size_t)i * T;
                float s = 0.0f;
                for (int j = 0; j < T; j++) s += pr[j] * dr[j];
                for (int j = 0; j < T; j++) dr[j] = pr[j] * (dr[j] - s) * scale;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.0f, dp, T, k, ld,
                        0.0f, dq, ld);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, 1.0f, dp, T, q, ld,
                        0.0f, dk, ld);
        }
    }
}

void attention_forward(float *out, float *att, const float *qkv, int B, int T, int D, int H)
{
#ifdef __AVX512F__
    if (use_small(B, T, D / H) && attention_forward_small(out, att, qkv, B, T, D, H) == 0) return;
#endif
    attention_forward_blas(out, att, qkv, B, T, D, H);
}

void attention_backward(float *dqkv, const float *dout, const float *qkv, const float *att,
                        float *scratch, int nscratch, int B, int T, int D, int H)
{
#ifdef __AVX512F__
    if (use_small(B, T, D / H) && attention_backward_small(dqkv, dout, qkv, att, B, T, D, H) == 0) return;
#endif
    attention_backward_blas(dqkv, dout, qkv, att, scratch, nscratch, B, T, D, H);
}
