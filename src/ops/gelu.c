/* The exact (erf) GELU, y = x Phi(x), and its derivative Phi(x) + x phi(x),
 * 16 or 8 values at a time where the CPU allows.
 *
 * Phi(x) = erfc(-x / sqrt 2) / 2 by Abramowitz and Stegun 7.1.26: with
 * z = |x| / sqrt 2 and t = 1 / (1 + p z), erfc(z) = t P(t) exp(-z^2), P of
 * degree 4, absolute error below 1.5e-7 (so Phi below 7.5e-8). It needs one
 * exponential, exp(-z^2), which the derivative needs too (phi(x) =
 * exp(-z^2) / sqrt(2 pi)). Where the CPU has AVX-512 sixteen values go at
 * once, 1/(1 + p z) by the 14-bit reciprocal and a Newton step and 2^n by
 * scalef; with AVX2 eight, by the 12-bit reciprocal and a Newton step and
 * 2^n in the exponent bits; elsewhere the same formula on one value.
 * glibc's erff, scalar, once took a large share of a training step, and a
 * Chebyshev erfc with two exponentials and a division, auto-vectorized,
 * more than this one (the profiles at the time: docs/notes/perf-2026-11-27-to-12-03.md).
 *
 * The forward pass saves the derivative for the backward, which is then one
 * product: it reads two arrays instead of three and computes no
 * exponential; tests/test_ops.c holds both against erf in double and
 * PyTorch's fixtures hold the whole model to 1e-5. */
#include <math.h>

#include "ops.h"
#include "vmath.h"

#define GELU_INV_SQRT2 0.70710678118654752440f
#define GELU_INV_SQRT_2PI 0.39894228040143267794f
#define GELU_AS_P 0.3275911f
#define GELU_AS_A1 0.254829592f
#define GELU_AS_A2 -0.284496736f
#define GELU_AS_A3 1.421413741f
#define GELU_AS_A4 -1.453152027f
#define GELU_AS_A5 1.061405429f

/* one value: GELU(x), and GELU'(x) into *deriv */
static inline float gelu_one(float x, float *deriv)
{
    float z = fminf(fabsf(x) * GELU_INV_SQRT2, 1e4f); /* Phi is 0 or 1 long before */
    float t = 1.0f / (1.0f + GELU_AS_P * z);
    float q = GELU_AS_A5;
    q = q * t + GELU_AS_A4;
    q = q * t + GELU_AS_A3;
    q = q * t + GELU_AS_A2;
    q = q * t + GELU_AS_A1;
    float e = exp_vec(-z * z);
    float half_erfc = 0.5f * t * q * e;
    float c = x >= 0.0f ? 1.0f - half_erfc : half_erfc;
    *deriv = c + x * (GELU_INV_SQRT_2PI * e);
    return x * c;
}

#ifdef __AVX512F__
#include <immintrin.h>

/* 16 lanes of gelu_one */
static inline __m512 gelu16(__m512 x, __m512 *deriv)
{
    /* capped, as in gelu_one, so that the reciprocal of an infinity is not 0 * inf */
    __m512 z = _mm512_min_ps(_mm512_mul_ps(_mm512_abs_ps(x), _mm512_set1_ps(GELU_INV_SQRT2)),
                             _mm512_set1_ps(1e4f));
    __m512 d = _mm512_fmadd_ps(z, _mm512_set1_ps(GELU_AS_P), _mm512_set1_ps(1.0f));
    __m512 t = _mm512_rcp14_ps(d); /* then one Newton step: t (2 - d t) */
    t = _mm512_mul_ps(t, _mm512_fnmadd_ps(d, t, _mm512_set1_ps(2.0f)));
    __m512 q = _mm512_set1_ps(GELU_AS_A5);
    q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(GELU_AS_A4));
    q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(GELU_AS_A3));
    q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(GELU_AS_A2));
    q = _mm512_fmadd_ps(q, t, _mm512_set1_ps(GELU_AS_A1));
    __m512 e = exp16(_mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), z), z));
    __m512 h = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), t), _mm512_mul_ps(q, e));
    __mmask16 pos = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GE_OQ);
    __m512 c = _mm512_mask_sub_ps(h, pos, _mm512_set1_ps(1.0f), h);
    *deriv = _mm512_fmadd_ps(x, _mm512_mul_ps(_mm512_set1_ps(GELU_INV_SQRT_2PI), e), c);
    return _mm512_mul_ps(x, c);
}

/* out[i] = GELU(x[i]) (out may be x), deriv[i] = GELU'(x[i]), i < n */
static inline void gelu_row(float *out, float *deriv, const float *x, long n)
{
    long i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 d, y = gelu16(_mm512_loadu_ps(x + i), &d);
        _mm512_storeu_ps(deriv + i, d);
        _mm512_storeu_ps(out + i, y);
    }
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        __m512 d, y = gelu16(_mm512_maskz_loadu_ps(k, x + i), &d);
        _mm512_mask_storeu_ps(deriv + i, k, d);
        _mm512_mask_storeu_ps(out + i, k, y);
    }
}
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

/* 8 lanes of gelu_one, as gelu16 (the 12-bit reciprocal, one Newton step) */
static inline __m256 gelu8(__m256 x, __m256 *deriv)
{
    __m256 ax = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
    __m256 z = _mm256_min_ps(_mm256_mul_ps(ax, _mm256_set1_ps(GELU_INV_SQRT2)), _mm256_set1_ps(1e4f));
    __m256 d = _mm256_fmadd_ps(z, _mm256_set1_ps(GELU_AS_P), _mm256_set1_ps(1.0f));
    __m256 t = _mm256_rcp_ps(d);
    t = _mm256_mul_ps(t, _mm256_fnmadd_ps(d, t, _mm256_set1_ps(2.0f)));
    __m256 q = _mm256_set1_ps(GELU_AS_A5);
    q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(GELU_AS_A4));
    q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(GELU_AS_A3));
    q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(GELU_AS_A2));
    q = _mm256_fmadd_ps(q, t, _mm256_set1_ps(GELU_AS_A1));
    __m256 e = exp8(_mm256_mul_ps(_mm256_sub_ps(_mm256_setzero_ps(), z), z));
    __m256 h = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), t), _mm256_mul_ps(q, e));
    __m256 pos = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ);
    __m256 c = _mm256_blendv_ps(h, _mm256_sub_ps(_mm256_set1_ps(1.0f), h), pos);
    *deriv = _mm256_fmadd_ps(x, _mm256_mul_ps(_mm256_set1_ps(GELU_INV_SQRT_2PI), e), c);
    return _mm256_mul_ps(x, c);
}

static inline void gelu_row(float *out, float *deriv, const float *x, long n)
{
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 d, y = gelu8(_mm256_loadu_ps(x + i), &d);
        _mm256_storeu_ps(deriv + i, d);
        _mm256_storeu_ps(out + i, y);
    }
    for (; i < n; i++) out[i] = gelu_one(x[i], &deriv[i]);
}
#else
static inline void gelu_row(float *out, float *deriv, const float *x, long n)
{
#pragma omp simd
    for (long i = 0; i < n; i++) out[i] = gelu_one(x[i], &deriv[i]);
}
#endif

float gelu_scalar(float x)
{
    float d;
    return gelu_one(x, &d);
}

/* out may alias inp */
void gelu_forward(float *out, float *deriv, const float *inp, size_t n)
{
    enum { CHUNK = 4096 };
    long nc = (long)((n + CHUNK - 1) / CHUNK);
#pragma omp parallel for schedule(static)
    for (long c = 0; c < nc; c++) {
        size_t i0 = (size_t)c * CHUNK, len = n - i0 < CHUNK ? n - i0 : CHUNK;
        gelu_row(out + i0, deriv + i0, inp + i0, (long)len);
    }
}

void gelu_forward_rows(float *out, float *deriv, const float *inp, size_t n) { gelu_row(out, deriv, inp, (long)n); }

void gelu_backward(float *dinp, const float *deriv, const float *dout, size_t n)
{
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) dinp[i] = dout[i] * deriv[i];
}
