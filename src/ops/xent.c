/* Softmax cross-entropy with soft targets (label smoothing, mixup). */
#include <math.h>

#include "ops_eval.h"

double softmax_xent_forward(float *probs, const float *logits, const float *targets, int B, int K)
{
    double total = 0;
    for (int b = 0; b < B; b++) {
        const float *z = logits + (size_t)b * K, *t = targets + (size_t)b * K;
        float *p = probs + (size_t)b * K;
        double mx = z[0];
        for (int k = 1; k < K; k++)
            if (z[k] > mx) mx = z[k];
        double s = 0;
        for (int k = 0; k < K; k++) s += exp((double)z[k] - mx);
        double lse = mx + log(s);
        for (int k = 0; k < K; k++) {
            double lp = (double)z[k] - lse;
            p[k] = (float)exp(lp);
            total -= (double)t[k] * lp;
        }
    }
    return total / B;
}

void softmax_xent_backward(float *dlogits, const float *probs, const float *targets, int B, int K,
                           float scale)
{
    for (int b = 0; b < B; b++) {
        const float *p = probs + (size_t)b * K, *t = targets + (size_t)b * K;
        float *d = dlogits + (size_t)b * K;
        double st = 0;
        for (int k = 0; k < K; k++) st += t[k];
        for (int k = 0; k < K; k++) d[k] = (float)((double)scale / B * ((double)p[k] * st - t[k]));
    }
}

void one_hot_smooth(float *targets, const int *labels, int B, int K, float smoothing)
{
    float off = smoothing / K, on = 1.0f - smoothing + off;
    for (int b = 0; b < B; b++)
        for (int k = 0; k < K; k++) targets[(size_t)b * K + k] = k == labels[b] ? on : off;
}
