#include <cblas.h>
#include <string.h>

#include "ops.h"

void linear_forward(float *out, const float *inp, const float *w, const float *b, int M, int K,
                    int N)
{
    float beta = 0.0f;
    if (b) {
#pragma omp parallel for schedule(static)
        for (int m = 0; m < M; m++) memcpy(out + (size_t)m * N, b, (size_t)N * sizeof(float));
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, inp, K, w, K, beta, out,
                N);
}

void linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                     const float *w, int M, int K, int N)
{
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, K, N, 1.0f, dout, N, w, K, 0.0f,
                    dinp, K);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, K, M, 1.0f, dout, N, inp, K, 1.0f, dw,
                K);
    if (db) {
        /* columns split across threads; each column summed in row order */
        enum { CB = 64 };
#pragma omp parallel for schedule(static)
        for (int n0 = 0; n0 < N; n0 += CB) {
            int n1 = n0 + CB < N ? n0 + CB : N;
            float acc[CB];
            for (int n = n0; n < n1; n++) acc[n - n0] = 0.0f;
            for (int m = 0; m < M; m++) {
                const float *row = dout + (size_t)m * N;
                for (int n = n0; n < n1; n++) acc[n - n0] += row[n];
            }
            for (int n = n0; n < n1; n++) db[n] += acc[n - n0];
        }
    }
}

void add_inplace(float *y, const float *x, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}
