/* Global average pooling of the patch tokens, and the row scaling of drop
 * path. */
#include <string.h>

#include "ops_eval.h"

void mean_pool_forward(float *out, const float *x, int B, int T, int D)
{
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        float *o = out + (size_t)b * D;
        for (int d = 0; d < D; d++) {
            float s = 0.0f;
            for (int t = 1; t < T; t++) s += x[((size_t)b * T + t) * D + d];
            o[d] = s / (float)(T - 1);
        }
    }
}

void mean_pool_backward(float *dx, const float *dout, int B, int T, int D)
{
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        memset(dx + (size_t)b * T * D, 0, (size_t)D * sizeof(float));
        const float *g = dout + (size_t)b * D;
        for (int t = 1; t < T; t++) {
            float *r = dx + ((size_t)b * T + t) * D;
            for (int d = 0; d < D; d++) r[d] = g[d] / (float)(T - 1);
        }
    }
}

void scale_rows(float *x, const float *scale, int B, int T, int D)
{
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        float s = scale[b];
        if (s == 1.0f) continue;
        float *r = x + (size_t)b * T * D;
        for (size_t i = 0; i < (size_t)T * D; i++) r[i] *= s;
    }
}
