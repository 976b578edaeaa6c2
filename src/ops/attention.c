#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "vmath.h"

/* row[0..n) = softmax(row), in place; GCC vectorizes these loops 8 wide */
static void softmax_row_loops(float *row, int n)
{
    float mx = row[0];
    for (int j = 1; j < n; j++) mx = row[j] > mx ? row[j] : mx;
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int j = 0; j < n; j++) {
        row[j] = exp_vec(row[j] - mx);
        s += row[j];
    }
    float inv = 1.0f / s;
    for (int j = 0; j < n; j++) row[j] *= inv;
}

/* one (batch element, head) on the short-sequence kernels below (AVX-512
 * or AVX2): 0, or -1 where they could not run (the head then goes to
 * OpenBLAS) */
typedef int (*short_fwd_fn)(float *, int, float *, const float *, const float *, const float *, int, int, float);
typedef int (*short_bwd_fn)(float *, float *, float *, const float *, int, const float *, const float *,
                            const float *, const float *, int, int, float);
typedef struct {
    short_fwd_fn fwd;
    short_bwd_fn bwd;
} short_kernels;

#ifdef __AVX512F__
#include <immintrin.h>

static inline __mmask16 tail_mask(int n) { return (__mmask16)(n >= 16 ? 0xFFFFu : (1u << n) - 1); }

/* The same 16 lanes at a time, for rows of SOFTMAX16_MIN scores or more
 * (the decoders' 50 to 197), where bench/ab_step found the training step
 * faster (docs/notes/perf-2026-11-27-to-12-03.md). Shorter rows (the encoders' 13 to 17)
 * showed no difference and keep the loops; so did the backward's rows done
 * the same way. */
enum { SOFTMAX16_MIN = 24 };

static void softmax_row(float *row, int n)
{
    if (n < SOFTMAX16_MIN) {
        softmax_row_loops(row, n);
        return;
    }
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (int j = 0; j < n; j += 16) {
        __mmask16 k = tail_mask(n - j);
        mx = _mm512_mask_max_ps(mx, k, mx, _mm512_maskz_loadu_ps(k, row + j));
    }
    __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mx)), sum = _mm512_setzero_ps();
    for (int j = 0; j < n; j += 16) {
        __mmask16 k = tail_mask(n - j);
        __m512 e = _mm512_maskz_mov_ps(k, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, row + j), m)));
        _mm512_mask_storeu_ps(row + j, k, e);
        sum = _mm512_add_ps(sum, e);
    }
    __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
    for (int j = 0; j < n; j += 16) {
        __mmask16 k = tail_mask(n - j);
        _mm512_mask_storeu_ps(row + j, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, row + j), inv));
    }
}

/* ---- Short sequences, heads 32 or 64 wide: products of our own ----
 *
 * At 13 to 65 tokens a head's products are a few kilobytes, and OpenBLAS's
 * six calls per head cost more than their arithmetic. Here each (batch
 * element, head) runs on register-blocked loops: S and dP with the keys in
 * the lanes (K and V transposed per head, 16 x 16 blocks in registers), the
 * softmax and its backward applied to those registers before anything is
 * stored, and O, dV, dQ, dK with the head's width in the lanes, broadcasting
 * the other factor. Rows past the last are computed as the last row again
 * and stored over it with the same bits, so that no block runs short.
 * Configs A and B's training steps ran faster than on OpenBLAS's calls
 * (bench/ab_step at the time: docs/notes/perf-2026-11-27-to-12-03.md). */
enum { SHORT_T = 80, SHORT_NZ = SHORT_T / 16, SHORT_HD = 64 };

/* the 16 rows of r transposed in place */
static inline __attribute__((always_inline)) void transpose16(__m512 r[16])
{
    __m512 a[16], b[16];
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) {
        a[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
        a[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    }
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        __m512d a0 = _mm512_castps_pd(a[4 * k]), a1 = _mm512_castps_pd(a[4 * k + 1]);
        __m512d a2 = _mm512_castps_pd(a[4 * k + 2]), a3 = _mm512_castps_pd(a[4 * k + 3]);
        b[4 * k] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, a2));
        b[4 * k + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, a2));
        b[4 * k + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, a3));
        b[4 * k + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, a3));
    }
#pragma GCC unroll 4
    for (int m = 0; m < 4; m++) { /* b[4k + m] holds column 4l + m of rows 4k..4k+3 in lane l */
        __m512 c0 = _mm512_shuffle_f32x4(b[m], b[4 + m], 0x44), c1 = _mm512_shuffle_f32x4(b[m], b[4 + m], 0xEE);
        __m512 c2 = _mm512_shuffle_f32x4(b[8 + m], b[12 + m], 0x44);
        __m512 c3 = _mm512_shuffle_f32x4(b[8 + m], b[12 + m], 0xEE);
        r[m] = _mm512_shuffle_f32x4(c0, c2, 0x88);
        r[4 + m] = _mm512_shuffle_f32x4(c0, c2, 0xDD);
        r[8 + m] = _mm512_shuffle_f32x4(c1, c3, 0x88);
        r[12 + m] = _mm512_shuffle_f32x4(c1, c3, 0xDD);
    }
}

/* dst[d][j] (row stride 16 NZ) = src[j ld + d] for j < T, 0 for T <= j < 16 NZ */
static inline __attribute__((always_inline)) void head_transpose(float *dst, const float *src, int ld, int T,
                                                                 const int NZ, const int HV)
{
    for (int z = 0; z < NZ; z++)
        for (int c = 0; c < HV; c++) {
            __m512 r[16];
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++) {
                int j = 16 * z + i;
                r[i] = j < T ? _mm512_loadu_ps(src + (size_t)j * ld + 16 * c) : _mm512_setzero_ps();
            }
            transpose16(r);
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++) _mm512_store_ps(dst + (size_t)(16 * c + i) * 16 * NZ + 16 * z, r[i]);
        }
}

static inline int last_row(int i, int T) { return i < T ? i : T - 1; }

/* a head's T rows (16 HV wide, stride ld) asked for at once, ahead of the
 * loops that read them in order (the rows come from the shared cache, and
 * the loops' own loads met them one miss at a time; docs/notes/perf-2026-11-27-to-12-03.md) */
static inline __attribute__((always_inline)) void prefetch_head(const float *x, int T, int ld, const int HV)
{
    for (int j = 0; j < T; j++)
        for (int c = 0; c < HV; c++) _mm_prefetch((const char *)(x + (size_t)j * ld + 16 * c), _MM_HINT_T0);
}

/* Rows i0..i0+R-1 (clamped) of a product with the keys in the lanes: x_r =
 * row of A (row stride lda, 16 HV wide) times bt (16 HV rows of 16 NZ,
 * aligned). MODE 0 (forward): P's row = softmax(x_r scale), stored into pw
 * (row stride T). MODE 1 (backward): with P's row read from pr, dS's row =
 * P (x_r - sum(P x_r)) scale, stored into ds (row stride 16 NZ, the lanes
 * past T zero). */
static inline __attribute__((always_inline)) void key_rows(const int R, const int NZ, const int HV, const int MODE,
                                                           const float *A, int lda, const float *bt, float *pw,
                                                           const float *pr, float *ds, int i0, int T, float scale)
{
    __m512 acc[8][SHORT_NZ]; /* fixed sizes (R <= 8), so that they stay in registers */
    const float *a[8];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        a[r] = A + (size_t)last_row(i0 + r, T) * lda;
#pragma GCC unroll 5
        for (int z = 0; z < NZ; z++) acc[r][z] = _mm512_setzero_ps();
    }
    for (int d = 0; d < 16 * HV; d++) {
        __m512 bv[SHORT_NZ];
#pragma GCC unroll 5
        for (int z = 0; z < NZ; z++) bv[z] = _mm512_load_ps(bt + (size_t)d * 16 * NZ + 16 * z);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            __m512 av = _mm512_set1_ps(a[r][d]);
#pragma GCC unroll 5
            for (int z = 0; z < NZ; z++) acc[r][z] = _mm512_fmadd_ps(av, bv[z], acc[r][z]);
        }
    }
    __m512 sc = _mm512_set1_ps(scale);
    __mmask16 last = tail_mask(T - 16 * (NZ - 1));
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        size_t row = (size_t)last_row(i0 + r, T);
        if (MODE == 0) {
            float *prow = pw + row * T;
            __m512 mx = _mm512_set1_ps(-INFINITY), sum = _mm512_setzero_ps();
#pragma GCC unroll 5
            for (int z = 0; z < NZ; z++) {
                acc[r][z] = _mm512_mul_ps(acc[r][z], sc);
                mx = z < NZ - 1 ? _mm512_max_ps(mx, acc[r][z]) : _mm512_mask_max_ps(mx, last, mx, acc[r][z]);
            }
            __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
#pragma GCC unroll 5
            for (int z = 0; z < NZ; z++) {
                acc[r][z] = exp16(_mm512_sub_ps(acc[r][z], m));
                if (z == NZ - 1) acc[r][z] = _mm512_maskz_mov_ps(last, acc[r][z]);
                sum = _mm512_add_ps(sum, acc[r][z]);
            }
            __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
#pragma GCC unroll 5
            for (int z = 0; z < NZ; z++) {
                __m512 y = _mm512_mul_ps(acc[r][z], inv);
                if (z < NZ - 1) _mm512_storeu_ps(prow + 16 * z, y);
                else _mm512_mask_storeu_ps(prow + 16 * z, last, y);
            }
        } else {
            const float *prow = pr + row * T;
            __m512 pv[SHORT_NZ], dot = _mm512_setzero_ps();
#pragma GCC unroll 5
            for (int z = 0; z < NZ; z++) {
                pv[z] = z < NZ - 1 ? _mm512_loadu_ps(prow + 16 * z) : _mm512_maskz_loadu_ps(last, prow + 16 * z);
                dot = _mm512_fmadd_ps(pv[z], acc[r][z], dot);
            }
            __m512 s = _mm512_set1_ps(_mm512_reduce_add_ps(dot));
            float *dr = ds + row * 16 * NZ;
#pragma GCC unroll 5
            for (int z = 0; z < NZ; z++)
                _mm512_store_ps(dr + 16 * z, _mm512_mul_ps(_mm512_mul_ps(pv[z], _mm512_sub_ps(acc[r][z], s)), sc));
        }
    }
}

/* dst row i (row stride ldd, 16 HV wide) = sum_{k < K} coef[i sr + k sc]
 * B's row k (row stride ldb), for the rows of the block i0..i0+R-1 (clamped):
 * the head's width in the lanes */
static inline __attribute__((always_inline)) void width_rows(const int R, const int HV, float *dst, int ldd,
                                                             const float *coef, int sr, int sc, const float *B,
                                                             int ldb, int K, int i0, int T)
{
    __m512 acc[8][4]; /* fixed sizes (R <= 8, HV <= 4), so that they stay in registers */
    const float *c[8];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        c[r] = coef + (size_t)last_row(i0 + r, T) * sr;
#pragma GCC unroll 4
        for (int v = 0; v < HV; v++) acc[r][v] = _mm512_setzero_ps();
    }
    for (int k = 0; k < K; k++) {
        __m512 bv[4];
        const float *br = B + (size_t)k * ldb;
#pragma GCC unroll 4
        for (int v = 0; v < HV; v++) bv[v] = _mm512_loadu_ps(br + 16 * v);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            __m512 cv = _mm512_set1_ps(c[r][(size_t)k * sc]);
#pragma GCC unroll 4
            for (int v = 0; v < HV; v++) acc[r][v] = _mm512_fmadd_ps(cv, bv[v], acc[r][v]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        float *o = dst + (size_t)last_row(i0 + r, T) * ldd;
#pragma GCC unroll 4
        for (int v = 0; v < HV; v++) _mm512_storeu_ps(o + 16 * v, acc[r][v]);
    }
}

/* all T rows of such a product: 8 rows a block for heads of 32, 4 for 64 */
static inline __attribute__((always_inline)) void width_product(const int HV, float *dst, int ldd, const float *coef,
                                                                int sr, int sc, const float *B, int ldb, int T)
{
    const int RW = HV == 2 ? 8 : 4;
    for (int i0 = 0; i0 < T; i0 += RW) width_rows(RW, HV, dst, ldd, coef, sr, sc, B, ldb, T, i0, T);
}

/* the scores' rows a block at a time: R rows of 16 NZ lanes */
#define KEY_ROWS(NZ) ((NZ) == 1 ? 8 : (NZ) <= 3 ? 6 : 4)

/* one (batch element, head): q, k, v its rows (stride ld), o the output's
 * (stride ldo), p its T x T probabilities */
static inline __attribute__((always_inline)) void short_forward(const int NZ, const int HV, float *o, int ldo,
                                                                float *p, const float *q, const float *k,
                                                                const float *v, int ld, int T, float scale)
{
    const int R = KEY_ROWS(NZ);
    float kt[SHORT_HD * SHORT_T] __attribute__((aligned(64)));
    prefetch_head(q, T, ld, HV);
    prefetch_head(v, T, ld, HV);
    head_transpose(kt, k, ld, T, NZ, HV);
    for (int i0 = 0; i0 < T; i0 += R) key_rows(R, NZ, HV, 0, q, ld, kt, p, NULL, NULL, i0, T, scale);
    width_product(HV, o, ldo, p, T, 1, v, ld, T); /* O = P V */
}

static inline __attribute__((always_inline)) void short_backward(const int NZ, const int HV, float *dq, float *dk,
                                                                 float *dv, const float *dO, int ldo,
                                                                 const float *p, const float *q, const float *k,
                                                                 const float *v, int ld, int T, float scale)
{
    const int R = KEY_ROWS(NZ), LDS = 16 * NZ;
    float vt[SHORT_HD * SHORT_T] __attribute__((aligned(64)));
    float ds[SHORT_T * SHORT_T] __attribute__((aligned(64)));
    prefetch_head(q, T, ld, HV);
    prefetch_head(k, T, ld, HV);
    prefetch_head(dO, T, ldo, HV);
    head_transpose(vt, v, ld, T, NZ, HV);
    /* dS = P (dP - rowsum(P dP)) scale, dP = dO V^T */
    for (int i0 = 0; i0 < T; i0 += R) key_rows(R, NZ, HV, 1, dO, ldo, vt, NULL, p, ds, i0, T, scale);
    width_product(HV, dv, ld, p, 1, T, dO, ldo, T);   /* dV = P^T dO */
    width_product(HV, dq, ld, ds, LDS, 1, k, ld, T);  /* dQ = dS K */
    width_product(HV, dk, ld, ds, 1, LDS, q, ld, T);  /* dK = dS^T Q */
}

#define SHORT_VARIANT(NZ, HV)                                                                              \
    static int short_forward_##NZ##_##HV(float *o, int ldo, float *p, const float *q, const float *k,   \
                                          const float *v, int ld, int T, float scale)                      \
    {                                                                                                      \
        short_forward(NZ, HV, o, ldo, p, q, k, v, ld, T, scale);                                           \
        return 0;                                                                                          \
    }                                                                                                      \
    static int short_backward_##NZ##_##HV(float *dq, float *dk, float *dv, const float *dO, int ldo,     \
                                           const float *p, const float *q, const float *k, const float *v, \
                                           int ld, int T, float scale)                                     \
    {                                                                                                      \
        short_backward(NZ, HV, dq, dk, dv, dO, ldo, p, q, k, v, ld, T, scale);                             \
        return 0;                                                                                          \
    }
SHORT_VARIANT(1, 2)
SHORT_VARIANT(2, 2)
SHORT_VARIANT(3, 2)
SHORT_VARIANT(4, 2)
SHORT_VARIANT(5, 2)
SHORT_VARIANT(1, 4)
SHORT_VARIANT(2, 4)
SHORT_VARIANT(3, 4)
SHORT_VARIANT(4, 4)
SHORT_VARIANT(5, 4)

#define SHORT_ENTRY(NZ, HV) {short_forward_##NZ##_##HV, short_backward_##NZ##_##HV}
static const short_kernels short_fns[2 * SHORT_NZ] = {
    SHORT_ENTRY(1, 2), SHORT_ENTRY(2, 2), SHORT_ENTRY(3, 2), SHORT_ENTRY(4, 2), SHORT_ENTRY(5, 2),
    SHORT_ENTRY(1, 4), SHORT_ENTRY(2, 4), SHORT_ENTRY(3, 4), SHORT_ENTRY(4, 4), SHORT_ENTRY(5, 4),
};

/* the variant for T tokens and heads hd wide, or -1 for OpenBLAS's path */
static int short_index(int T, int hd)
{
    if (T < 1 || T > SHORT_T || (hd != 32 && hd != 64)) return -1;
    return (hd == 64) * SHORT_NZ + (T + 15) / 16 - 1;
}
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

/* lanes j < n of 8 set (for the blends and the masked loads and stores) */
static inline __m256i tail8(int n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static inline float hmax8(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}

static inline float hsum8(__m256 v)
{
    __m128 m = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_add_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_add_ss(m, _mm_movehdup_ps(m)));
}

/* dst[0..n) = softmax(scale src[0..n)); src may be dst (the tail's lanes
 * are loaded and stored under a mask) */
static inline void softmax8(float *dst, const float *src, int n, float scale)
{
    __m256 sc = _mm256_set1_ps(scale), mx = _mm256_set1_ps(-INFINITY), ninf = mx;
    int j = 0;
    for (; j + 8 <= n; j += 8) mx = _mm256_max_ps(mx, _mm256_mul_ps(_mm256_loadu_ps(src + j), sc));
    __m256i last = tail8(n - j);
    if (j < n)
        mx = _mm256_max_ps(mx, _mm256_blendv_ps(ninf, _mm256_mul_ps(_mm256_maskload_ps(src + j, last), sc),
                                                _mm256_castsi256_ps(last)));
    __m256 m = _mm256_set1_ps(hmax8(mx)), sum = _mm256_setzero_ps();
    for (j = 0; j + 8 <= n; j += 8) {
        __m256 e = exp8(_mm256_fmsub_ps(_mm256_loadu_ps(src + j), sc, m));
        _mm256_storeu_ps(dst + j, e);
        sum = _mm256_add_ps(sum, e);
    }
    if (j < n) {
        __m256 e = _mm256_and_ps(exp8(_mm256_fmsub_ps(_mm256_maskload_ps(src + j, last), sc, m)),
                                 _mm256_castsi256_ps(last));
        _mm256_maskstore_ps(dst + j, last, e);
        sum = _mm256_add_ps(sum, e);
    }
    __m256 inv = _mm256_set1_ps(1.0f / hsum8(sum));
    for (j = 0; j + 8 <= n; j += 8) _mm256_storeu_ps(dst + j, _mm256_mul_ps(_mm256_loadu_ps(dst + j), inv));
    if (j < n) _mm256_maskstore_ps(dst + j, last, _mm256_mul_ps(_mm256_maskload_ps(dst + j, last), inv));
}

static void softmax_row(float *row, int n)
{
    if (n < 8) softmax_row_loops(row, n);
    else softmax8(row, row, n, 1.0f);
}

/* ---- Short sequences, heads a multiple of 8 up to 64 wide, on AVX2 ----
 *
 * The same idea as the AVX-512 kernels above with half the lanes and half
 * the registers: every product of a (batch element, head) on one register
 * tile, 6 rows by 16 columns (12 accumulators of 8 lanes), one factor's row
 * broadcast. S = Q K^T and dP = dO V^T take K and V transposed per head (8 x
 * 8 blocks in registers, the keys past T zero), land in the thread's
 * buffer, and the softmax or its backward runs over its rows; O,
 * dV, dQ and dK have the head's width in the lanes. Up to 200 tokens (ViT-B
 * at 224's decoder, 197): bench_step attention vit-base-16 8 on a Zen 3
 * EPYC, the decoder's 50 GFLOP/s on OpenBLAS's calls against 64-85 here. */
enum { SHORT_T = 200, SHORT_HD = 64 };

/* this thread's buffer for a head: K or V transposed (SHORT_HD x lt) and
 * the scores (T x lt), lt = T rounded up to 8; grown, never shrunk; NULL
 * when there is no memory (the head then goes to OpenBLAS). On the heap,
 * not the stack: at 200 tokens it is 210 KB, and threads of programs that
 * embed maec may have small stacks. */
static _Thread_local float *short8_buf;
static _Thread_local size_t short8_len;

static float *short8_scratch(int T)
{
    size_t lt = (size_t)(T + 7) & ~(size_t)7, n = (SHORT_HD + (size_t)T) * lt;
    if (n > short8_len) {
        float *p = aligned_alloc(32, (n * sizeof(float) + 31) & ~(size_t)31);
        if (!p) return NULL;
        free(short8_buf);
        short8_buf = p;
        short8_len = n;
    }
    return short8_buf;
}

/* the 8 rows of r transposed in place */
static inline __attribute__((always_inline)) void transpose8(__m256 r[8])
{
    __m256 a[8], b[8];
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        a[2 * k] = _mm256_unpacklo_ps(r[2 * k], r[2 * k + 1]);
        a[2 * k + 1] = _mm256_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    }
#pragma GCC unroll 2
    for (int k = 0; k < 2; k++) {
        b[4 * k] = _mm256_shuffle_ps(a[4 * k], a[4 * k + 2], 0x44);
        b[4 * k + 1] = _mm256_shuffle_ps(a[4 * k], a[4 * k + 2], 0xEE);
        b[4 * k + 2] = _mm256_shuffle_ps(a[4 * k + 1], a[4 * k + 3], 0x44);
        b[4 * k + 3] = _mm256_shuffle_ps(a[4 * k + 1], a[4 * k + 3], 0xEE);
    }
#pragma GCC unroll 4
    for (int m = 0; m < 4; m++) {
        r[m] = _mm256_permute2f128_ps(b[m], b[4 + m], 0x20);
        r[4 + m] = _mm256_permute2f128_ps(b[m], b[4 + m], 0x31);
    }
}

/* dst[d][j] (row stride lt, a multiple of 8) = src[j ld + d] for d < HD,
 * j < T; 0 for T <= j < lt */
static inline __attribute__((always_inline)) void head_transpose8(float *dst, int lt, const float *src, int ld, int T,
                                                                  const int HD)
{
    for (int j0 = 0; j0 < lt; j0 += 8)
        for (int c = 0; c < HD; c += 8) {
            __m256 r[8];
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++)
                r[i] = j0 + i < T ? _mm256_loadu_ps(src + (size_t)(j0 + i) * ld + c) : _mm256_setzero_ps();
            transpose8(r);
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++) _mm256_store_ps(dst + (size_t)(c + i) * lt + j0, r[i]);
        }
}

/* dst's rows i0..i0+R-1 (row stride ldd), columns 0..8 CW: row i =
 * sum_{k < K} coef[i sr + k sc] B's row k (row stride ldb) */
static inline __attribute__((always_inline)) void tile8(const int R, const int CW, float *dst, int ldd,
                                                        const float *coef, int sr, int sc, const float *B, int ldb,
                                                        int K, int i0)
{
    __m256 acc[6][2]; /* fixed sizes (R <= 6, CW <= 2), so that they stay in registers */
    const float *c[6];
#pragma GCC unroll 6
    for (int r = 0; r < R; r++) {
        c[r] = coef + (size_t)(i0 + r) * sr;
        acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    }
    for (int k = 0; k < K; k++) {
        const float *br = B + (size_t)k * ldb;
        __m256 b0 = _mm256_loadu_ps(br), b1 = CW == 2 ? _mm256_loadu_ps(br + 8) : b0;
#pragma GCC unroll 6
        for (int r = 0; r < R; r++) {
            __m256 av = _mm256_broadcast_ss(c[r] + (size_t)k * sc);
            acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
            if (CW == 2) acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < R; r++) {
        float *o = dst + (size_t)(i0 + r) * ldd;
        _mm256_storeu_ps(o, acc[r][0]);
        if (CW == 2) _mm256_storeu_ps(o + 8, acc[r][1]);
    }
}

/* the rows i0.. of a tile, the last block (T - i0 rows, 1 to 6) */
static inline __attribute__((always_inline)) void tile8_tail(const int CW, int rows, float *dst, int ldd,
                                                             const float *coef, int sr, int sc, const float *B,
                                                             int ldb, int K, int i0)
{
    switch (rows) {
    case 1: tile8(1, CW, dst, ldd, coef, sr, sc, B, ldb, K, i0); break;
    case 2: tile8(2, CW, dst, ldd, coef, sr, sc, B, ldb, K, i0); break;
    case 3: tile8(3, CW, dst, ldd, coef, sr, sc, B, ldb, K, i0); break;
    case 4: tile8(4, CW, dst, ldd, coef, sr, sc, B, ldb, K, i0); break;
    case 5: tile8(5, CW, dst, ldd, coef, sr, sc, B, ldb, K, i0); break;
    default: tile8(6, CW, dst, ldd, coef, sr, sc, B, ldb, K, i0); break;
    }
}

/* dst (T rows, stride ldd; N columns, a multiple of 8) = coef B, coef's
 * element (i, k) at i sr + k sc, B's rows K of stride ldb */
static inline __attribute__((always_inline)) void product8(float *dst, int ldd, const float *coef, int sr, int sc,
                                                           const float *B, int ldb, int K, int N, int T)
{
    int c0 = 0;
    for (; c0 + 16 <= N; c0 += 16) {
        int i0 = 0;
        for (; i0 + 6 <= T; i0 += 6) tile8(6, 2, dst + c0, ldd, coef, sr, sc, B + c0, ldb, K, i0);
        if (i0 < T) tile8_tail(2, T - i0, dst + c0, ldd, coef, sr, sc, B + c0, ldb, K, i0);
    }
    if (c0 < N) {
        int i0 = 0;
        for (; i0 + 6 <= T; i0 += 6) tile8(6, 1, dst + c0, ldd, coef, sr, sc, B + c0, ldb, K, i0);
        if (i0 < T) tile8_tail(1, T - i0, dst + c0, ldd, coef, sr, sc, B + c0, ldb, K, i0);
    }
}

/* one (batch element, head), as short_forward above: q, k, v its rows
 * (stride ld), o the output's (stride ldo), p its T x T probabilities */
static inline __attribute__((always_inline)) int short_forward8(const int HD, float *o, int ldo, float *p,
                                                                const float *q, const float *k, const float *v,
                                                                int ld, int T, float scale)
{
    int lt = (T + 7) & ~7;
    float *kt = short8_scratch(T);
    if (!kt) return -1;
    float *s = kt + (size_t)SHORT_HD * lt;
    head_transpose8(kt, lt, k, ld, T, HD);
    product8(s, lt, q, ld, 1, kt, lt, HD, lt, T); /* S = Q K^T, not yet scaled */
    for (int i = 0; i < T; i++) softmax8(p + (size_t)i * T, s + (size_t)i * lt, T, scale);
    product8(o, ldo, p, T, 1, v, ld, T, HD, T); /* O = P V */
    return 0;
}

static inline __attribute__((always_inline)) int short_backward8(const int HD, float *dq, float *dk, float *dv,
                                                                  const float *dO, int ldo, const float *p,
                                                                  const float *q, const float *k, const float *v,
                                                                  int ld, int T, float scale)
{
    int lt = (T + 7) & ~7;
    float *vt = short8_scratch(T);
    if (!vt) return -1;
    float *ds = vt + (size_t)SHORT_HD * lt;
    head_transpose8(vt, lt, v, ld, T, HD);
    product8(ds, lt, dO, ldo, 1, vt, lt, HD, lt, T); /* dP = dO V^T */
    __m256i last = tail8(T - (lt - 8));
    __m256 sc = _mm256_set1_ps(scale);
    for (int i = 0; i < T; i++) { /* dS = P (dP - rowsum(P dP)) scale */
        const float *pr = p + (size_t)i * T;
        float *dr = ds + (size_t)i * lt;
        __m256 dot = _mm256_setzero_ps();
        int j = 0;
        for (; j + 8 < lt; j += 8) dot = _mm256_fmadd_ps(_mm256_loadu_ps(pr + j), _mm256_load_ps(dr + j), dot);
        dot = _mm256_fmadd_ps(_mm256_maskload_ps(pr + j, last), _mm256_load_ps(dr + j), dot);
        __m256 sum = _mm256_set1_ps(hsum8(dot));
        for (j = 0; j + 8 < lt; j += 8)
            _mm256_store_ps(dr + j, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(pr + j),
                                                                _mm256_sub_ps(_mm256_load_ps(dr + j), sum)), sc));
        _mm256_store_ps(dr + j, _mm256_mul_ps(_mm256_mul_ps(_mm256_maskload_ps(pr + j, last),
                                                            _mm256_sub_ps(_mm256_load_ps(dr + j), sum)), sc));
    }
    product8(dv, ld, p, 1, T, dO, ldo, T, HD, T);  /* dV = P^T dO */
    product8(dq, ld, ds, lt, 1, k, ld, T, HD, T);  /* dQ = dS K */
    product8(dk, ld, ds, 1, lt, q, ld, T, HD, T);  /* dK = dS^T Q */
    return 0;
}

#define SHORT8_VARIANT(HD)                                                                                 \
    static int short8_forward_##HD(float *o, int ldo, float *p, const float *q, const float *k,          \
                                    const float *v, int ld, int T, float scale)                            \
    {                                                                                                      \
        return short_forward8(HD, o, ldo, p, q, k, v, ld, T, scale);                                           \
    }                                                                                                      \
    static int short8_backward_##HD(float *dq, float *dk, float *dv, const float *dO, int ldo,           \
                                     const float *p, const float *q, const float *k, const float *v,       \
                                     int ld, int T, float scale)                                           \
    {                                                                                                      \
        return short_backward8(HD, dq, dk, dv, dO, ldo, p, q, k, v, ld, T, scale);                             \
    }
SHORT8_VARIANT(8)
SHORT8_VARIANT(16)
SHORT8_VARIANT(24)
SHORT8_VARIANT(32)
SHORT8_VARIANT(40)
SHORT8_VARIANT(48)
SHORT8_VARIANT(56)
SHORT8_VARIANT(64)

#define SHORT8_ENTRY(HD) {short8_forward_##HD, short8_backward_##HD}
static const short_kernels short_fns[SHORT_HD / 8] = {SHORT8_ENTRY(8),  SHORT8_ENTRY(16), SHORT8_ENTRY(24),
                                                      SHORT8_ENTRY(32), SHORT8_ENTRY(40), SHORT8_ENTRY(48),
                                                      SHORT8_ENTRY(56), SHORT8_ENTRY(64)};

/* the variant for T tokens and heads hd wide, or -1 for OpenBLAS's path */
static int short_index(int T, int hd)
{
    if (T < 1 || T > SHORT_T || hd < 8 || hd > SHORT_HD || hd % 8) return -1;
    return hd / 8 - 1;
}
#else
static void softmax_row(float *row, int n) { softmax_row_loops(row, n); }
static const short_kernels *const short_fns = NULL;
static int short_index(int T, int hd) { return (void)T, (void)hd, -1; }
#endif

/* the kernels for T tokens in heads of D / H, or NULL for OpenBLAS's path */
static short_fwd_fn short_forward_fn(int T, int D, int H)
{
    int ix = short_index(T, D / H);
    return ix < 0 ? NULL : short_fns[ix].fwd;
}

static short_bwd_fn short_backward_fn(int T, int D, int H)
{
    int ix = short_index(T, D / H);
    return ix < 0 ? NULL : short_fns[ix].bwd;
}

/* Image b, head h: S = Q K^T * scale, P = softmax(S) by rows, O = P V, with
 * Q, K, V strided views into qkv (row stride 3D); on the short kernels f
 * where there are some, else on OpenBLAS. */
static void head_forward(short_fwd_fn f, float *out, float *att, const float *qkv, int b, int h, int T, int D, int H)
{
    int hd = D / H, ld = 3 * D;
    float scale = 1.0f / sqrtf((float)hd);
    const float *q = qkv + (size_t)b * T * ld + (size_t)h * hd, *k = q + D, *v = q + 2 * D;
    float *o = out + (size_t)b * T * D + (size_t)h * hd, *p = att + ((size_t)b * H + h) * T * T;
    if (f && f(o, D, p, q, k, v, ld, T, scale) == 0) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, scale, q, ld, k, ld, 0.0f, p, T);
    for (int i = 0; i < T; i++) softmax_row(p + (size_t)i * T, T);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.0f, p, T, v, ld, 0.0f, o, D);
}

void attention_forward(float *out, float *att, const float *qkv, int B, int T, int D, int H)
{
    short_fwd_fn f = short_forward_fn(T, D, H);
#pragma omp parallel for schedule(static) collapse(2)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) head_forward(f, out, att, qkv, b, h, T, D, H);
}

void attention_forward_images(float *out, float *att, const float *qkv, int b0, int b1, int T, int D, int H)
{
    short_fwd_fn f = short_forward_fn(T, D, H);
    for (int b = b0; b < b1; b++)
        for (int h = 0; h < H; h++) head_forward(f, out, att, qkv, b, h, T, D, H);
}

size_t attention_scratch_floats(int T) { return (size_t)T * T; }

/* dP = dO V^T; dV = P^T dO; dS = P * (dP - rowsum(dP * P)) * scale;
 * dQ = dS K; dK = dS^T Q, for image b, head h; dp: T x T floats of scratch
 * for OpenBLAS's path */
static void head_backward(short_bwd_fn f, float *dqkv, const float *dout, const float *qkv, const float *att,
                          float *dp, int b, int h, int T, int D, int H)
{
    int hd = D / H, ld = 3 * D;
    float scale = 1.0f / sqrtf((float)hd);
    const float *q = qkv + (size_t)b * T * ld + (size_t)h * hd, *k = q + D, *v = q + 2 * D;
    float *dq = dqkv + (size_t)b * T * ld + (size_t)h * hd, *dk = dq + D, *dv = dq + 2 * D;
    const float *p = att + ((size_t)b * H + h) * T * T, *dO = dout + (size_t)b * T * D + (size_t)h * hd;
    if (f && f(dq, dk, dv, dO, D, p, q, k, v, ld, T, scale) == 0) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, 1.0f, dO, D, v, ld, 0.0f, dp, T);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, 1.0f, p, T, dO, D, 0.0f, dv, ld);
    for (int i = 0; i < T; i++) {
        const float *pr = p + (size_t)i * T;
        float *dr = dp + (size_t)i * T;
        float s = 0.0f;
        for (int j = 0; j < T; j++) s += pr[j] * dr[j];
        for (int j = 0; j < T; j++) dr[j] = pr[j] * (dr[j] - s) * scale;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.0f, dp, T, k, ld, 0.0f, dq, ld);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, 1.0f, dp, T, q, ld, 0.0f, dk, ld);
}

void attention_backward(float *dqkv, const float *dout, const float *qkv, const float *att,
                        float *scratch, int nscratch, int B, int T, int D, int H)
{
    short_bwd_fn f = short_backward_fn(T, D, H);
    int nthr = omp_get_max_threads() < nscratch ? omp_get_max_threads() : nscratch;
    (void)nthr; /* unused where OpenMP is off (the fuzz build) */
#pragma omp parallel for schedule(static) collapse(2) num_threads(nthr)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            head_backward(f, dqkv, dout, qkv, att, scratch + (size_t)omp_get_thread_num() * T * T, b, h, T, D, H);
}

void attention_backward_images(float *dqkv, const float *dout, const float *qkv, const float *att,
                               float *scratch, int b0, int b1, int T, int D, int H)
{
    short_bwd_fn f = short_backward_fn(T, D, H);
    for (int b = b0; b < b1; b++)
        for (int h = 0; h < H; h++) head_backward(f, dqkv, dout, qkv, att, scratch, b, h, T, D, H);
}
