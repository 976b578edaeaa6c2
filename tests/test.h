/* A tiny test harness: CHECK counts a pass or a failure and says why;
 * TEST_END prints the closing count line and returns the exit status. */
#ifndef MAEC_TEST_H
#define MAEC_TEST_H
#include <math.h>
#include <stdio.h>
#include <stddef.h>

static int test_passed, test_failed;

#define CHECK(cond, ...)                                                  \
    do {                                                                  \
        if (cond) {                                                       \
            test_passed++;                                                \
        } else {                                                          \
            test_failed++;                                                \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                   \
            printf(__VA_ARGS__);                                          \
            printf("\n");                                                 \
        }                                                                 \
    } while (0)

/* ||a - b|| / ||b|| (or ||a|| when b is all zero) */
static inline double rel_err(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    if (den == 0) return sqrt(num);
    return sqrt(num / den);
}

#define TEST_END()                                                        \
    do {                                                                  \
        printf("%d passed, %d failed\n", test_passed, test_failed);       \
        return test_failed ? 1 : 0;                                       \
    } while (0)
#endif
