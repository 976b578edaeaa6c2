/* One configuration's pretraining step (forward, backward, AdamW) timed, or
 * the sgemm rate: the C side of bench/run.sh.
 *   bench_step step PRESET BATCH STEPS   -> images/s, GFLOP/s, peak memory
 *   bench_step sgemm N REPS              -> GFLOP/s of an N x N x N sgemm
 *   bench_step attention PRESET BATCH REPS -> the encoder's and the decoder's
 *     attention core (forward, backward) alone, its inputs out of cache as
 *     in a step: ms per call and GFLOP/s */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench_util.h"
#include "ops/ops.h"

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

/* attention's forward and backward for B sequences of T tokens, D wide in
 * H heads, each call after a 256 MiB sweep that leaves its inputs in memory */
static void time_attention(const char *what, int B, int T, int D, int H, int reps)
{
    size_t nq = (size_t)B * T * 3 * D, no = (size_t)B * T * D, na = (size_t)B * H * T * T, nbig = 64u << 20;
    float *qkv = malloc(nq * 4), *dqkv = malloc(nq * 4), *out = malloc(no * 4), *dout = malloc(no * 4);
    float *att = malloc(na * 4), *big = calloc(nbig, 4);
    int nthr = omp_get_max_threads();
    float *scratch = malloc((size_t)nthr * attention_scratch_floats(T) * 4);
    for (size_t i = 0; i < nq; i++) qkv[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
    for (size_t i = 0; i < no; i++) dout[i] = (float)((i * 104729) % 1000) / 1000.0f - 0.5f;
    double tf = 0, tb = 0;
    for (int r = 0; r <= reps; r++) { /* round 0 warms up */
        for (size_t i = 0; i < nbig; i += 16) big[i] += 1.0f;
        double t0 = now();
        attention_forward(out, att, qkv, B, T, D, H);
        double t1 = now();
        for (size_t i = 0; i < nbig; i += 16) big[i] += 1.0f;
        double t2 = now();
        attention_backward(dqkv, dout, qkv, att, scratch, nthr, B, T, D, H);
        double t3 = now();
        if (r) tf += t1 - t0, tb += t3 - t2;
    }
    double fl = 12.0 * T * T * D * B; /* 4 T^2 D forward, 8 T^2 D backward */
    printf("{\"part\": \"%s\", \"batch\": %d, \"tokens\": %d, \"width\": %d, \"heads\": %d, "
           "\"forward_ms\": %.3f, \"backward_ms\": %.3f, \"gflops\": %.1f}\n",
           what, B, T, D, H, tf / reps * 1e3, tb / reps * 1e3, fl * reps / (tf + tb) / 1e9);
    free(qkv), free(dqkv), free(out), free(dout), free(att), free(big), free(scratch);
}

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "blas")) { /* before any re-run: what OpenBLAS chose, and the advice */
        const char *adv = maec_blas_core_advice();
        printf("{\"core\": \"%s\", \"advice\": %s%s%s}\n", maec_blas_core(), adv ? "\"" : "",
               adv ? adv : "null", adv ? "\"" : "");
        return 0;
    }
    maec_blas_reexec(argv);
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
    if (argc != 5 || (strcmp(argv[1], "step") && strcmp(argv[1], "attention"))) {
        fprintf(stderr, "usage: bench_step step PRESET BATCH STEPS | bench_step sgemm N REPS | "
                        "bench_step attention PRESET BATCH REPS | bench_step blas\n");
        return 2;
    }
    maec_config c;
    maec_error err;
    /* MAEC_DEVICE=cuda[:N] (MAEC_TF32=1): the step on the GPU (bench/gpu.sh) */
    const char *dev = getenv("MAEC_DEVICE"), *tf32 = getenv("MAEC_TF32");
    if (dev && *dev && maec_set_device(dev, tf32 && *tf32 && strcmp(tf32, "0"), &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    if (maec_preset(argv[2], &c, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    int B = atoi(argv[3]), steps = atoi(argv[4]);
    if (!strcmp(argv[1], "attention")) {
        time_attention("encoder", B, 1 + maec_num_keep(&c), c.dim, c.heads, steps);
        time_attention("decoder", B, 1 + maec_num_patches(&c), c.dec_dim, c.dec_heads, steps);
        return 0;
    }
    bench_model bm;
    if (bench_model_open(&bm, &c, B)) return 1;
    double t0 = 0;
    for (int s = 0; s <= steps; s++) { /* step 0 warms up */
        if (s == 1) t0 = now();
        if (bench_model_step(&bm)) return 1;
    }
    double dt = now() - t0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double ips = steps * B / dt;
    size_t dev_now, dev_peak;
    maec_device_memory(&dev_now, &dev_peak);
    printf("{\"images_per_s\": %.2f, \"gflops\": %.1f, \"peak_mib\": %.0f, \"loss\": %.4f", ips,
           ips * step_flops(&c) / 1e9, ru.ru_maxrss / 1024.0, (double)bm.loss);
    if (dev_peak) printf(", \"device_peak_mib\": %.0f", dev_peak / 1048576.0);
    char what[256];
    maec_device_describe(what, sizeof what);
    printf(", \"device\": \"%s\"}\n", what);
    bench_model_close(&bm);
    return 0;
}
