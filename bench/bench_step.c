/* One configuration's pretraining step (forward, backward, AdamW) timed, or
 * the sgemm rate: the C side of bench/run.sh.
 *   bench_step step PRESET BATCH STEPS   -> images/s, GFLOP/s, peak memory
 *   bench_step sgemm N REPS              -> GFLOP/s of an N x N x N sgemm */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "maec.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* FLOPs per image per training step: 6 x weights x tokens for every linear
 * layer, 12 N^2 D per block for attention (forward + backward). */
static double step_flops(const maec_config *c)
{
    double L = maec_num_patches(c), K = maec_num_keep(c), P = maec_patch_dim(c);
    double D = c->dim, E = c->dec_dim, h = c->mlp_ratio;
    double Te = 1 + K, Td = 1 + L;
    double f = 6 * K * P * D;                                    /* patch embedding */
    f += c->depth * (6 * Te * (4 + 2 * h) * D * D + 12 * Te * Te * D);
    f += 6 * Te * D * E;                                         /* decoder embedding */
    f += c->dec_depth * (6 * Td * (4 + 2 * h) * E * E + 12 * Td * Td * E);
    f += 6 * Td * E * P;                                         /* prediction */
    return f;
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "sgemm")) {
        int n = atoi(argv[2]), reps = atoi(argv[3]);
        float *a = calloc((size_t)n * n, 4), *b = calloc((size_t)n * n, 4), *c = calloc((size_t)n * n, 4);
        for (size_t i = 0; i < (size_t)n * n; i++) a[i] = b[i] = (float)(i % 7) * 0.1f;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
        double t0 = now();
        for (int r = 0; r < reps; r++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
        double dt = now() - t0;
        printf("{\"sgemm_gflops\": %.1f}\n", 2.0 * n * n * (double)n * reps / dt / 1e9);
        return 0;
    }
    if (argc != 5 || strcmp(argv[1], "step")) {
        fprintf(stderr, "usage: bench_step step PRESET BATCH STEPS | bench_step sgemm N REPS\n");
        return 2;
    }
    maec_config c;
    maec_error err;
    if (maec_preset(argv[2], &c, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    int B = atoi(argv[3]), steps = atoi(argv[4]);
    maec_model *m;
    maec_workspace *ws;
    if (maec_model_create(&c, 0, &m, &err) || maec_workspace_create(m, B, &ws, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    size_t n = (size_t)B * c.in_chans * c.img_h * c.img_w;
    float *x = malloc(n * sizeof(float));
    uint64_t rng = 1;
    for (size_t i = 0; i < n; i++) x[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    maec_adamw opt = {1e-4f, 0.9f, 0.95f, 1e-8f, 0.05f};
    float loss = 0;
    double t0 = 0;
    for (int s = 0; s <= steps; s++) { /* step 0 warms up */
        if (s == 1) t0 = now();
        maec_zero_grad(m);
        maec_forward_backward(m, ws, x, B, NULL, &rng, 1, 1.0f, &loss, &err);
        maec_adamw_step(m, &opt);
    }
    double dt = now() - t0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double ips = steps * B / dt;
    printf("{\"images_per_s\": %.2f, \"gflops\": %.1f, \"peak_mib\": %.0f, \"loss\": %.4f}\n", ips,
           ips * step_flops(&c) / 1e9, ru.ru_maxrss / 1024.0, (double)loss);
    maec_workspace_free(ws);
    maec_model_free(m);
    free(x);
    return 0;
}
