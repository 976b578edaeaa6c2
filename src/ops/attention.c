#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "ops.h"
#include "vmath.h"

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
