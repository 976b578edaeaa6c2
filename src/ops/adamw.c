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

double clip_grad_norm(float *const *g, const size_t *n, int count, float max_norm)
{
    /* torch.nn.utils.clip_grad_norm_ (norm type 2): the 2-norm of the
     * tensors' 2-norms, then every gradient times max_norm / (norm + 1e-6)
     * where that is below 1; sums in double in a fixed order */
    double total = 0;
    for (int t = 0; t < count; t++) {
        double s = 0;
        for (size_t i = 0; i < n[t]; i++) s += (double)g[t][i] * g[t][i];
        total += s;
    }
    total = sqrt(total);
    if (max_norm > 0) {
        double coef = (double)max_norm / (total + 1e-6);
        if (coef < 1.0) {
            float cf = (float)coef;
            for (int t = 0; t < count; t++)
                for (size_t i = 0; i < n[t]; i++) g[t][i] *= cf;
        }
    }
    return total;
}
