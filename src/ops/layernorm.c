#include <math.h>

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
        for (int i = 0; i < D; i++) s += x[i];
        float mu = s / D;
        float v = 0.0f;
        for (int i = 0; i < D; i++) {
            float d = x[i] - mu;
            v += d * d;
        }
        float rs = 1.0f / sqrtf(v / D + LN_EPS);
        for (int i = 0; i < D; i++) y[i] = (x[i] - mu) * rs * w[i] + b[i];
        mean[m] = mu;
        rstd[m] = rs;
    }
}

void layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, const float *mean, const float *rstd, int M, int D)
{
#pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) {
        const float *x = inp + (size_t)m * D, *dy = dout + (size_t)m * D;
        float *dx = dinp + (size_t)m * D;
        float mu = mean[m], rs = rstd[m];
        float sum_g = 0.0f, sum_gx = 0.0f;
        for (int i = 0; i < D; i++) {
            float g = dy[i] * w[i];
            float xh = (x[i] - mu) * rs;
            sum_g += g;
            sum_gx += g * xh;
        }
        sum_g /= D;
        sum_gx /= D;
        for (int i = 0; i < D; i++) {
            float g = dy[i] * w[i];
            float xh = (x[i] - mu) * rs;
            dx[i] += (g - sum_g - xh * sum_gx) * rs;
        }
    }
    /* parameter gradients: columns split across threads, rows in order */
    enum { CB = 64 };
#pragma omp parallel for schedule(static)
    for (int i0 = 0; i0 < D; i0 += CB) {
        int i1 = i0 + CB < D ? i0 + CB : D;
        float aw[CB], ab[CB];
        for (int i = i0; i < i1; i++) aw[i - i0] = ab[i - i0] = 0.0f;
        for (int m = 0; m < M; m++) {
            const float *x = inp + (size_t)m * D, *dy = dout + (size_t)m * D;
            float mu = mean[m], rs = rstd[m];
            for (int i = i0; i < i1; i++) {
                aw[i - i0] += dy[i] * (x[i] - mu) * rs;
                ab[i - i0] += dy[i];
            }
        }
        for (int i = i0; i < i1; i++) {
            dw[i] += aw[i - i0];
            db[i] += ab[i - i0];
        }
    }
}
