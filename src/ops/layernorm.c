/* Layer norm over the last dimension, eps 1e-6 (timm's ViT), forward and
 * backward. Row sums are vectorized reductions; the backward computes the
 * input gradient and the weight and bias gradients in one pass over the rows,
 * each thread summing its own rows into partials that are then added in
 * thread order (the same bits from run to run at a given thread count). */
#include <math.h>
#include <omp.h>

#include "ops.h"

#define LN_EPS 1e-6f

void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                       const float *b, int M, int D)
{
#pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) {
        const float *x = inp + (size_t)m * D;
        float *y = out + (size_t)m * D;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int i = 0; i < D; i++) s += x[i];
        float mu = s / D;
        float v = 0.0f;
#pragma omp simd reduction(+ : v)
        for (int i = 0; i < D; i++) {
            float d = x[i] - mu;
            v += d * d;
        }
        float rs = 1.0f / sqrtf(v / D + LN_EPS);
#pragma omp simd
        for (int i = 0; i < D; i++) y[i] = (x[i] - mu) * rs * w[i] + b[i];
        mean[m] = mu;
        rstd[m] = rs;
    }
}

/* the input gradient of rows [m0, m1); their weight and bias gradients
 * summed into aw, ab unless these are NULL */
static void ln_rows(float *dinp, float *aw, float *ab, const float *dout, const float *inp,
                    const float *w, const float *mean, const float *rstd, int m0, int m1, int D)
{
    for (int m = m0; m < m1; m++) {
        const float *x = inp + (size_t)m * D, *dy = dout + (size_t)m * D;
        float *dx = dinp + (size_t)m * D;
        float mu = mean[m], rs = rstd[m];
        float sum_g = 0.0f, sum_gx = 0.0f;
#pragma omp simd reduction(+ : sum_g, sum_gx)
        for (int i = 0; i < D; i++) {
            float g = dy[i] * w[i];
            float xh = (x[i] - mu) * rs;
            sum_g += g;
            sum_gx += g * xh;
        }
        sum_g /= D;
        sum_gx /= D;
#pragma omp simd
        for (int i = 0; i < D; i++) {
            float xh = (x[i] - mu) * rs;
            dx[i] += (dy[i] * w[i] - sum_g - xh * sum_gx) * rs;
            if (aw) {
                aw[i] += dy[i] * xh;
                ab[i] += dy[i];
            }
        }
    }
}

/* the widest row whose partials live on the stack; wider rows (no ViT has
 * them) take two passes */
enum { LN_MAXD = 4096 };

void layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, const float *mean, const float *rstd, int M, int D)
{
    if (D <= LN_MAXD) {
#pragma omp parallel
        {
            int t = omp_get_thread_num(), nt = omp_get_num_threads();
            int m0 = (int)((long long)M * t / nt), m1 = (int)((long long)M * (t + 1) / nt);
            float aw[LN_MAXD], ab[LN_MAXD];
            for (int i = 0; i < D; i++) aw[i] = ab[i] = 0.0f;
            ln_rows(dinp, aw, ab, dout, inp, w, mean, rstd, m0, m1, D);
            /* each thread adds its partials, in thread order */
#pragma omp for ordered schedule(static, 1)
            for (int u = 0; u < nt; u++) {
#pragma omp ordered
                for (int i = 0; i < D; i++) {
                    dw[i] += aw[i];
                    db[i] += ab[i];
                }
            }
        }
        return;
    }
    /* input gradient by rows, then the parameter gradients by columns */
#pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) ln_rows(dinp, NULL, NULL, dout, inp, w, mean, rstd, m, m + 1, D);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < D; i++) {
        float aw = 0.0f, ab = 0.0f;
        for (int m = 0; m < M; m++) {
            const float *x = inp + (size_t)m * D, *dy = dout + (size_t)m * D;
            aw += dy[i] * (x[i] - mean[m]) * rstd[m];
            ab += dy[i];
        }
        dw[i] += aw;
        db[i] += ab;
    }
}
