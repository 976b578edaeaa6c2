#include <cblas.h>
#include <math.h>
#include <omp.h>
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

#ifdef __AVX512F__
#include <immintrin.h>

static inline __mmask16 tail_mask(int n) { return (__mmask16)(n >= 16 ? 0xFFFFu : (1u << n) - 1); }

/* The same 16 lanes at a time, for rows of SOFTMAX16_MIN scores or more
 * (the decoders' 50 to 197): the training step about 1% faster on configs
 * A, B and C (bench/ab_step, docs/PERF.md). Shorter rows (the encoders' 13
 * to 17) showed no difference and keep the loops; so did the backward's
 * rows done the same way. */
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
#else
static void softmax_row(float *row, int n) { softmax_row_loops(row, n); }
#endif

/* For each (batch, head): S = Q K^T * scale, P = softmax(S) by rows,
 * O = P V. Q, K, V are strided views into qkv (row stride 3D). */
void attention_forward(float *out, float *att, const float *qkv, int B, int T, int D, int H)
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
            for (int i = 0; i < T; i++) softmax_row(p + (size_t)i * T, T);
            float *o = out + (size_t)b * T * D + (size_t)h * hd;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.0f, p, T, v, ld,
                        0.0f, o, D);
        }
    }
}

size_t attention_scratch_floats(int T) { return (size_t)T * T; }

/* dP = dO V^T; dV = P^T dO; dS = P * (dP - rowsum(dP * P)) * scale;
 * dQ = dS K; dK = dS^T Q. */
void attention_backward(float *dqkv, const float *dout, const float *qkv, const float *att,
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
