/* Elementary functions that the compiler can vectorize (glibc's expf and
 * erff are scalar calls), for the ops' inner loops. */
#ifndef MAEC_VMATH_H
#define MAEC_VMATH_H
#include <math.h>
#include <stdint.h>
#include <string.h>

/* the reduction x = n ln 2 + r (ln 2 in two parts) and the range, shared
 * with the 16-lane copy in gelu.c */
#define VEXP_MIN -87.0f
#define VEXP_MAX 88.0f
#define VEXP_LOG2E 1.44269504088896341f
#define VEXP_LN2_HI 0.693145751953125f
#define VEXP_LN2_LO 1.428606765330187e-06f

/* e^x for x in [-87, 88], about 2 ulp */
static inline float exp_vec(float x)
{
    x = x < VEXP_MIN ? VEXP_MIN : x > VEXP_MAX ? VEXP_MAX : x;
    float n = rintf(x * VEXP_LOG2E);
    float r = x - n * VEXP_LN2_HI - n * VEXP_LN2_LO;
    float p = 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float s;
    memcpy(&s, &bits, sizeof s);
    return p * s;
}

#endif
