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
#include <stdio.h>
#include <stdlib.h>

#include "bench_util.h"

int main(int argc, char **argv)
{
    maec_blas_reexec(argv); /* OpenBLAS's fitting kernels where it does not know the CPU */
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
    bench_model bm;
    if (bench_model_open(&bm, &c, B)) return 1;
    double total[2] = {0, 0};
    int wins = 0;
    for (int p = -2; p < pairs; p++) { /* two warm-up pairs */
        double t[2];
        for (int k = 0; k < 2; k++) {
            int v = (p & 1) ? 1 - k : k; /* base first in even pairs, variant first in odd */
            if (v) setenv("MAEC_AB", "1", 1);
            else unsetenv("MAEC_AB");
            double t0 = now();
            if (bench_model_step(&bm)) return 1;
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
    bench_model_close(&bm);
    return 0;
}
