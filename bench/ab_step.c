/* Two variants of maec's code in one process, alternated step by step: the
 * way to measure a change of a few percent on a machine whose speed drifts
 * by more than that between runs (docs/PERF.md, "Method").
 *
 *   ab_step PRESET BATCH PAIRS
 *
 * The code under test reads the environment variable MAEC_AB ("1": the
 * variant, unset: the base) in a throwaway build, e.g.
 *     const char *e = getenv("MAEC_AB");
 *     if (e && *e == '1') ... the variant ... else ... the base ...
 * (each call of an op, not each element). ab_step runs two warm-up pairs,
 * then PAIRS pairs of training steps, the order within a pair alternating,
 * and prints both throughputs, their ratio and in how many pairs the
 * variant was the faster. Committed code does not read MAEC_AB. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "maec.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: ab_step PRESET BATCH PAIRS\n");
        return 2;
    }
    maec_config c;
    maec_error err;
    if (maec_preset(argv[1], &c, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    int B = atoi(argv[2]), pairs = atoi(argv[3]);
    if (B < 1 || pairs < 1) {
        fprintf(stderr, "ab_step: BATCH and PAIRS must be positive\n");
        return 2;
    }
    maec_model *m;
    maec_workspace *ws;
    if (maec_model_create(&c, 0, &m, &err) || maec_workspace_create(m, B, &ws, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    size_t n = (size_t)B * c.in_chans * c.img_h * c.img_w;
    float *x = malloc(n * sizeof(float));
    if (!x) return 1;
    for (size_t i = 0; i < n; i++) x[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    uint64_t rng = 1;
    maec_adamw opt = {1e-4f, 0.9f, 0.95f, 1e-8f, 0.05f};
    float loss = 0;
    double total[2] = {0, 0};
    int wins = 0;
    for (int p = -2; p < pairs; p++) { /* two warm-up pairs */
        double t[2];
        for (int k = 0; k < 2; k++) {
            int v = (p & 1) ? 1 - k : k; /* base first in even pairs, variant first in odd */
            if (v) setenv("MAEC_AB", "1", 1);
            else unsetenv("MAEC_AB");
            double t0 = now();
            maec_zero_grad(m);
            if (maec_forward_backward(m, ws, x, B, NULL, &rng, 1, 1.0f, &loss, &err)) {
                fprintf(stderr, "%s\n", err.msg);
                return 1;
            }
            maec_adamw_step(m, &opt);
            t[v] = now() - t0;
        }
        if (p >= 0) {
            total[0] += t[0], total[1] += t[1];
            wins += t[1] < t[0];
        }
    }
    printf("{\"preset\": \"%s\", \"batch\": %d, \"pairs\": %d, \"base_images_per_s\": %.2f, "
           "\"variant_images_per_s\": %.2f, \"variant_gain_pct\": %.2f, \"variant_faster_pairs\": %d}\n",
           argv[1], B, pairs, B * pairs / total[0], B * pairs / total[1], 100 * (total[0] / total[1] - 1), wins);
    maec_workspace_free(ws);
    maec_model_free(m);
    free(x);
    return 0;
}
