/* Elementary functions that the compiler can vectorize (glibc's expf and
 * erff are scalar calls), for the ops' inner loops. */
#ifndef MAEC_VMATH_H
#define MAEC_VMATH_H
#include <math.h>
#include <stdint.h>
#include <string.h>

/* e^x for x in [-87, 88], about 2 ulp */
static inline float exp_vec(float x)
{
    x = x < -87.0f ? -87.0f : x > 88.0f ? 88.0f : x;
    float n = rintf(x * 1.44269504088896341f);
    float r = x - n * 0.693145751953125f - n * 1.428606765330187e-06f;
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
