/* How fast OpenBLAS runs the matrix products of one training step, shape by
 * shape, against its rate on large square matrices: the ceiling for a step's
 * "share of the sgemm rate" (issue 5) if everything besides the products
 * took no time at all.
 *
 *   build/gemm_shapes [PRESET] [BATCH]     (default fmnist-tiny 256)
 *
 * For every linear layer of the MAE (patch embedding, the encoder's and the
 * decoder's qkv, proj, fc1, fc2, decoder embedding and prediction) the three
 * products of a step, as maec calls them: forward out = x W^T (NT), input
 * gradient dx = dy W (NN), weight gradient dW = dy^T x (TN). Each is timed
 * alone (repeated for at least 0.3 s); the total is weighted by how often
 * the step runs it. Attention's per-head products are left out (under 5% of
 * the FLOPs for these presets). Threads: OMP_NUM_THREADS. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "maec.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* GFLOP/s of C[M,N] (+)= op(A) op(B) with maec's layouts: kind 0 NT, 1 NN, 2 TN */
static double gemm_rate(int kind, int M, int N, int K)
{
    float *A = malloc((size_t)M * K * sizeof(float)), *B = malloc((size_t)K * N * sizeof(float));
    float *C = calloc((size_t)M * N, sizeof(float));
    if (!A || !B || !C) {
        fprintf(stderr, "gemm_shapes: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < (size_t)M * K; i++) A[i] = (float)(i % 7) * 0.01f;
    for (size_t i = 0; i < (size_t)K * N; i++) B[i] = (float)(i % 5) * 0.01f;
    double t = 0;
    long reps = 1;
    for (;;) {
        double t0 = now();
        for (long r = 0; r < reps; r++) {
            if (kind == 0) /* A [M,K], B [N,K] */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, K, B, K, 1.0f, C, N);
            else if (kind == 1) /* A [M,K], B [K,N] */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A, K, B, N, 0.0f, C, N);
            else /* A [K,M], B [K,N] */
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, M, N, K, 1.0f, A, M, B, N, 1.0f, C, N);
        }
        t = now() - t0;
        if (t > 0.3) break;
        reps *= 2;
    }
    free(A);
    free(B);
    free(C);
    return 2.0 * M * N * K * (double)reps / t / 1e9;
}

typedef struct {
    const char *name;
    int rows, in, out, count; /* tokens, in and out features, layers of this kind */
    int need_dx;              /* the patch embedding has no input gradient */
} layer;

int main(int argc, char **argv)
{
    const char *preset = argc > 1 ? argv[1] : "fmnist-tiny";
    int B = argc > 2 ? atoi(argv[2]) : 256;
    maec_config c;
    maec_error err = {0};
    if (B < 1 || maec_preset(preset, &c, &err)) {
        fprintf(stderr, "gemm_shapes: %s\n", B < 1 ? "bad batch" : err.msg);
        return 1;
    }
    int L = maec_num_patches(&c), keep = (int)(L * (1.0 - c.mask_ratio));
    int P = c.patch * c.patch * c.in_chans, D = c.dim, E = c.dec_dim;
    int Me = B * (keep + 1), Md = B * (L + 1);
    layer ls[] = {
        {"patch embed", B * keep, P, D, 1, 0},
        {"enc qkv", Me, D, 3 * D, c.depth, 1},
        {"enc proj", Me, D, D, c.depth, 1},
        {"enc fc1", Me, D, c.mlp_ratio * D, c.depth, 1},
        {"enc fc2", Me, c.mlp_ratio * D, D, c.depth, 1},
        {"dec embed", Me, D, E, 1, 1},
        {"dec qkv", Md, E, 3 * E, c.dec_depth, 1},
        {"dec proj", Md, E, E, c.dec_depth, 1},
        {"dec fc1", Md, E, c.mlp_ratio * E, c.dec_depth, 1},
        {"dec fc2", Md, c.mlp_ratio * E, E, c.dec_depth, 1},
        {"dec pred", Md, E, P, 1, 1},
    };
    double sq = gemm_rate(1, 2048, 2048, 2048);
    printf("%s, batch %d: square sgemm (2048^3) %.1f GFLOP/s\n\n", preset, B, sq);
    printf("| layer | rows x in -> out | forward | input grad | weight grad |\n|---|---|---|---|---|\n");
    double flops = 0, secs = 0;
    for (size_t i = 0; i < sizeof ls / sizeof ls[0]; i++) {
        const layer *l = &ls[i];
        if (l->count == 0) continue;
        double f = 2.0 * l->rows * l->in * l->out * l->count;
        double fw = gemm_rate(0, l->rows, l->out, l->in);
        double dx = l->need_dx ? gemm_rate(1, l->rows, l->in, l->out) : 0;
        double dw = gemm_rate(2, l->out, l->in, l->rows);
        flops += f * (2 + l->need_dx);
        secs += f / fw + (l->need_dx ? f / dx : 0) + f / dw;
        printf("| %s (x%d) | %d x %d -> %d | %.0f%% | ", l->name, l->count, l->rows, l->in, l->out,
               100 * fw / sq);
        if (l->need_dx) printf("%.0f%% | ", 100 * dx / sq);
        else printf("- | ");
        printf("%.0f%% |\n", 100 * dw / sq);
    }
    double eff = flops / secs; /* secs summed FLOP / (GFLOP/s): already GFLOP/s */
    double sq2 = gemm_rate(1, 2048, 2048, 2048);
    printf("\nsquare sgemm again at the end: %.1f GFLOP/s (a large change means a busy machine: "
           "run again)\n", sq2);
    printf("all products of a step: %.1f GFLOP/s, %.0f%% of square sgemm "
           "(the step's ceiling if nothing else took time)\n", eff, 100 * eff / sq);
    return 0;
}
