/* The exact (erf) GELU (gelu_inline.h has the formula and why).
 * The forward pass saves the derivative Phi(x) + x phi(x) for the backward,
 * which is then one product: it reads two arrays instead of three and
 * computes no exponential; tests/test_ops.c holds it against erf in double
 * and PyTorch's fixtures hold the whole model to 1e-5. */
#include "gelu_inline.h"
#include "ops.h"

float gelu_scalar(float x)
{
    float d;
    return gelu_one(x, &d);
}

/* out may alias inp */
void gelu_forward(float *out, float *deriv, const float *inp, size_t n)
{
    enum { CHUNK = 4096 };
    long nc = (long)((n + CHUNK - 1) / CHUNK);
#pragma omp parallel for schedule(static)
    for (long c = 0; c < nc; c++) {
        size_t i0 = (size_t)c * CHUNK, len = n - i0 < CHUNK ? n - i0 : CHUNK;
        gelu_row(out + i0, deriv + i0, inp + i0, (long)len);
    }
}

void gelu_backward(float *dinp, const float *deriv, const float *dout, size_t n)
{
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) dinp[i] = dout[i] * deriv[i];
}
