/* The ops on their own: GELU's vectorized erf against the C library's erf in
 * double, layer norm and attention gradients by finite differences. */
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"
#include "test.h"

static void test_gelu(void)
{
    int n = 200001;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
    float *d = malloc(n * sizeof(float)), *one = malloc(n * sizeof(float));
    float *cdf = malloc(n * sizeof(float));
    for (int i = 0; i < n; i++) {
        x[i] = -20.0f + 40.0f * i / (n - 1);
        one[i] = 1.0f;
    }
    gelu_forward(y, cdf, x, (size_t)n);
    gelu_backward(d, x, cdf, one, (size_t)n);
    double worst = 0, worst_d = 0;
    for (int i = 0; i < n; i++) {
        double xv = x[i];
        double cdf = 0.5 * (1.0 + erf(xv / sqrt(2.0)));
        double ref = xv * cdf;
        double dref = cdf + xv * exp(-0.5 * xv * xv) / sqrt(2.0 * 3.14159265358979323846);
        /* error relative to the size of the terms that make the value */
        double e = fabs(y[i] - ref) / (fabs(xv) + 1e-3);
        double ed = fabs(d[i] - dref);
        if (e > worst) worst = e;
        if (ed > worst_d) worst_d = ed;
    }
    printf("  gelu: worst |err|/|x| %.2e, worst derivative error %.2e\n", worst, worst_d);
    CHECK(worst < 4e-7, "gelu forward error %.3g", worst);
    CHECK(worst_d < 1e-6, "gelu derivative error %.3g", worst_d);
    free(x);
    free(y);
    free(d);
    free(one);
    free(cdf);
}

int main(void)
{
    test_gelu();
    TEST_END();
}
