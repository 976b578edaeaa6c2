/* Our own matrix products for the linear layers (gemm.c), where the CPU has
 * AVX-512; gemm_available() says whether it has. Each returns 0, or -1 when
 * they are not available or the packed weight's buffer could not be had,
 * before writing anything (the caller then uses OpenBLAS). They thread themselves with OpenMP unless called inside a
 * parallel region, and give the same bits at any number of threads. */
#ifndef MAEC_GEMM_H
#define MAEC_GEMM_H

int gemm_available(void);
/* out[M,N] = inp[M,K] w[N,K]^T + b[N] (b may be NULL); if deriv, then
 * out = GELU(out) in place and deriv[M,N] = GELU'(pre-activation) */
int gemm_forward(float *out, float *deriv, const float *inp, const float *w, const float *b, int M,
                 int K, int N);
/* dinp[M,K] = dout[M,N] w[N,K] */
int gemm_input_grad(float *dinp, const float *dout, const float *w, int M, int K, int N);
/* dw[N,K] += dout[M,N]^T inp[M,K]; db[N] += the column sums of dout (if db) */
int gemm_weight_grad(float *dw, float *db, const float *dout, const float *inp, int M, int K,
                     int N);
#endif
