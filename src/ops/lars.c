/* LARS, as facebookresearch/mae util/lars.py (from MoCo v3). */
#include <math.h>

#include "ops_eval.h"

void lars_update(float *p, const float *g, float *mu, size_t n, float lr, float weight_decay,
                 float momentum, float trust, int adapt)
{
    float q = 1.0f, wd = 0.0f;
    if (adapt) {
        wd = weight_decay;
        double pn = 0, un = 0;
        for (size_t i = 0; i < n; i++) {
            float dp = g[i] + wd * p[i];
            pn += (double)p[i] * p[i];
            un += (double)dp * dp;
        }
        pn = sqrt(pn);
        un = sqrt(un);
        if (pn > 0 && un > 0) q = (float)(trust * pn / un);
    }
    for (size_t i = 0; i < n; i++) {
        float dp = (g[i] + wd * p[i]) * q;
        mu[i] = mu[i] * momentum + dp;
        p[i] -= lr * mu[i];
    }
}
