#include <math.h>

#include "ops.h"

void adamw_update(float *p, float *g, float *m, float *v, size_t n, float lr, float beta1,
                  float beta2, float eps, float weight_decay, long step)
{
    /* the scalars in double, as torch computes them in Python */
    double bc1 = 1.0 - pow((double)beta1, (double)step);
    float bc2_sqrt = (float)sqrt(1.0 - pow((double)beta2, (double)step));
    float step_size = (float)((double)lr / bc1);
    float decay = (float)(1.0 - (double)lr * (double)weight_decay);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        g[i] = 0.0f;
        float pi = p[i] * decay;
        float mi = m[i] * beta1 + (1.0f - beta1) * gi;
        float vi = v[i] * beta2 + (1.0f - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi - step_size * mi / (sqrtf(vi) / bc2_sqrt + eps);
    }
}
