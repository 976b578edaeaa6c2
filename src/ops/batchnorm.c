/* BatchNorm1d without affine parameters (the linear-probe normalization). */
#include <math.h>
#include <string.h>

#include "ops_eval.h"

void batchnorm1d_forward_train(float *out, float *mean, float *rstd, const float *inp, int M, int D,
                               float eps, float *running_mean, float *running_var, float momentum)
{
#pragma omp parallel for schedule(static)
    for (int d = 0; d < D; d++) {
        double s = 0;
        for (int m = 0; m < M; m++) s += inp[(size_t)m * D + d];
        double mu = s / M;
        double v = 0;
        for (int m = 0; m < M; m++) {
            double x = inp[(size_t)m * D + d] - mu;
            v += x * x;
        }
        float rs = (float)(1.0 / sqrt(v / M + (double)eps));
        for (int m = 0; m < M; m++) out[(size_t)m * D + d] = (float)((inp[(size_t)m * D + d] - mu) * rs);
        mean[d] = (float)mu;
        rstd[d] = rs;
        if (running_mean && running_var) {
            double unbiased = M > 1 ? v / (M - 1) : v;
            running_mean[d] = (1.0f - momentum) * running_mean[d] + momentum * (float)mu;
            running_var[d] = (1.0f - momentum) * running_var[d] + momentum * (float)unbiased;
        }
    }
}

void batchnorm1d_forward_eval(float *out, const float *inp, const float *running_mean,
                              const float *running_var, int M, int D, float eps)
{
#pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++)
        for (int d = 0; d < D; d++)
            out[(size_t)m * D + d] =
                (inp[(size_t)m * D + d] - running_mean[d]) / sqrtf(running_var[d] + eps);
}

void batchnorm1d_backward(float *dinp, const float *dout, const float *xhat, const float *rstd, int M,
                          int D)
{
#pragma omp parallel for schedule(static)
    for (int d = 0; d < D; d++) {
        double sg = 0, sgx = 0;
        for (int m = 0; m < M; m++) {
            double g = dout[(size_t)m * D + d];
            sg += g;
            sgx += g * xhat[(size_t)m * D + d];
        }
        double k = (double)rstd[d] / M;
        for (int m = 0; m < M; m++) {
            size_t i = (size_t)m * D + d;
            dinp[i] = (float)(k * (M * (double)dout[i] - sg - xhat[i] * sgx));
        }
    }
}
