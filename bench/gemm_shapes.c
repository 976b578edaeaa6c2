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
 * gradient dx = dy W (NN), weight gradient dW = dy^T x (TN), each both
 * threaded by OpenBLAS and split between the threads by hand (the way
 * src/ops/linear.c ran them before it used libxsmm), and the forward and
 * backward of each layer as src/ops/linear.c runs them now. Each is timed alone (repeated for at least
 * 0.3 s); the total is weighted by how often the step runs it. Attention's per-head products are left out (under 5% of
 * the FLOPs for these presets). Threads: OMP_NUM_THREADS. */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench_util.h"
#include "ops/ops.h"

/* seconds per call of fn(ctx), the calls repeated (doubling) until they
 * take more than 0.3 s */
static double per_call(void (*fn)(void *), void *ctx)
{
    for (long reps = 1;; reps *= 2) {
        double t0 = now();
        for (long r = 0; r < reps; r++) fn(ctx);
        double t = now() - t0;
        if (t > 0.3) return t / (double)reps;
    }
}

/* the kth of nt equal parts of n: [lo(t), lo(t + 1)) */
static int lo(int n, int t, int nt) { return (int)((long long)n * t / nt); }

static float *part; /* the other threads' partial sums of a split weight gradient */

/* C[M,N] (+)= op(A) op(B) in maec's three layouts (0 forward NT, 1 input
 * gradient NN, 2 weight gradient TN), threaded by OpenBLAS (split 0) or split
 * between threads by hand as src/ops/linear.c does (split 1): rows for 0 and
 * 1, the summed-over rows K for 2 with partial sums added in thread order */
static void product(int kind, int split, int M, int N, int K, const float *A, const float *B, float *C)
{
    if (!split) {
        if (kind == 0) /* A [M,K], B [N,K] */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, K, B, K, 1.0f, C, N);
        else if (kind == 1) /* A [M,K], B [K,N] */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A, K, B, N, 0.0f, C, N);
        else /* A [K,M], B [K,N] */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, M, N, K, 1.0f, A, M, B, N, 1.0f, C, N);
        return;
    }
#pragma omp parallel
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        int m0 = lo(M, t, nt), m1 = lo(M, t + 1, nt), k0 = lo(K, t, nt), k1 = lo(K, t + 1, nt);
        if (kind == 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m1 - m0, N, K, 1.0f, A + (size_t)m0 * K, K, B, K,
                        1.0f, C + (size_t)m0 * N, N);
        else if (kind == 1)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m1 - m0, N, K, 1.0f, A + (size_t)m0 * K, K, B,
                        N, 0.0f, C + (size_t)m0 * N, N);
        else {
            float *dst = t == 0 ? C : part + (size_t)(t - 1) * M * N;
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, M, N, k1 - k0, 1.0f, A + (size_t)k0 * M, M,
                        B + (size_t)k0 * N, N, t == 0 ? 1.0f : 0.0f, dst, N);
#pragma omp barrier
            size_t n = (size_t)M * N, i0 = n * t / nt, i1 = n * (t + 1) / nt;
            for (int u = 1; u < nt; u++) {
                const float *p = part + (size_t)(u - 1) * n;
                for (size_t i = i0; i < i1; i++) C[i] += p[i];
            }
        }
    }
}

typedef struct {
    int kind, split, M, N, K;
    const float *A, *B;
    float *C;
} product_args;

static void product_call(void *p)
{
    product_args *a = p;
    product(a->kind, a->split, a->M, a->N, a->K, a->A, a->B, a->C);
}

/* GFLOP/s of product(kind, split) */
static double gemm_rate(int kind, int split, int M, int N, int K)
{
    float *A = malloc((size_t)M * K * sizeof(float)), *B = malloc((size_t)K * N * sizeof(float));
    float *C = calloc((size_t)M * N, sizeof(float));
    float *P = realloc(part, (size_t)M * N * (size_t)omp_get_max_threads() * sizeof(float));
    if (!A || !B || !C || !P) {
        fprintf(stderr, "gemm_shapes: out of memory\n");
        exit(1);
    }
    part = P;
    for (size_t i = 0; i < (size_t)M * K; i++) A[i] = (float)(i % 7) * 0.01f;
    for (size_t i = 0; i < (size_t)K * N; i++) B[i] = (float)(i % 5) * 0.01f;
    product_args a = {kind, split, M, N, K, A, B, C};
    double t = per_call(product_call, &a);
    free(A);
    free(B);
    free(C);
    return 2.0 * M * N * K / t / 1e9;
}

typedef struct {
    int M, in, out;
    const float *x, *w, *b;
    float *y, *dx, *dw, *db;
} linear_args;

static void linear_forward_call(void *p)
{
    linear_args *a = p;
    linear_forward(a->y, a->x, a->w, a->b, a->M, a->in, a->out);
}

static void linear_backward_call(void *p)
{
    linear_args *a = p;
    linear_backward(a->dx, a->dw, a->db, a->y, a->x, a->w, a->M, a->in, a->out);
}

/* seconds per call of maec's own linear_forward (with a bias) and
 * linear_backward (input gradient if need_dx, weight and bias gradients):
 * what src/ops/linear.c runs (libxsmm where it applies, else OpenBLAS) */
static void maec_times(int M, int in, int out, int need_dx, double *fwd, double *bwd)
{
    float *x = malloc((size_t)M * in * sizeof(float)), *w = malloc((size_t)out * in * sizeof(float));
    float *b = calloc((size_t)out, sizeof(float)), *y = malloc((size_t)M * out * sizeof(float));
    float *dx = malloc((size_t)M * in * sizeof(float)), *dw = calloc((size_t)out * in, sizeof(float));
    float *db = calloc((size_t)out, sizeof(float));
    if (!x || !w || !b || !y || !dx || !dw || !db) {
        fprintf(stderr, "gemm_shapes: out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < (size_t)M * in; i++) x[i] = (float)(i % 7) * 0.01f;
    for (size_t i = 0; i < (size_t)out * in; i++) w[i] = (float)(i % 5) * 0.01f;
    linear_args a = {M, in, out, x, w, b, y, need_dx ? dx : NULL, dw, db};
    *fwd = per_call(linear_forward_call, &a);
    *bwd = per_call(linear_backward_call, &a);
    free(x), free(w), free(b), free(y), free(dx), free(dw), free(db);
}

typedef struct {
    const char *name;
    int rows, in, out, count; /* tokens, in and out features, layers of this kind */
    int need_dx;              /* the patch embedding has no input gradient */
} layer;

int main(int argc, char **argv)
{
    maec_blas_reexec(argv); /* OpenBLAS's fitting kernels where it does not know the CPU */
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
    double sq = gemm_rate(1, 0, 2048, 2048, 2048);
    printf("%s, batch %d, %d threads: square sgemm (2048^3) %.1f GFLOP/s\n\n", preset, B,
           omp_get_max_threads(), sq);
    printf("Each product's rate as a share of square sgemm, threaded by OpenBLAS / split between\n"
           "threads by hand (as maec runs them from 2 threads on when rows >= 2 x the wider side of the weight)\n\n");
    printf("| layer | rows x in -> out | forward | input grad | weight grad |\n|---|---|---|---|---|\n");
    /* and as maec runs them: split by hand only where src/ops/linear.c does */
    double flops = 0, secs[2] = {0, 0}, secs_maec = 0;
    for (size_t i = 0; i < sizeof ls / sizeof ls[0]; i++) {
        const layer *l = &ls[i];
        if (l->count == 0) continue;
        double f = 2.0 * l->rows * l->in * l->out * l->count;
        flops += f * (2 + l->need_dx);
        printf("| %s (x%d) | %d x %d -> %d |", l->name, l->count, l->rows, l->in, l->out);
        for (int kind = 0; kind < 3; kind++) {
            if (kind == 1 && !l->need_dx) {
                printf(" - |");
                continue;
            }
            int M = kind == 2 ? l->out : l->rows, N = kind == 0 ? l->out : l->in;
            int K = kind == 0 ? l->in : kind == 1 ? l->out : l->rows;
            double r[2];
            for (int sp = 0; sp < 2; sp++) {
                r[sp] = gemm_rate(kind, sp, M, N, K);
                secs[sp] += f / r[sp];
            }
            printf(" %.0f%% / %.0f%% |", 100 * r[0] / sq, 100 * r[1] / sq);
        }
        double tf = 0, tb = 0;
        maec_times(l->rows, l->in, l->out, l->need_dx, &tf, &tb);
        secs_maec += (tf + tb) * l->count * 1e9; /* in the units of secs[]: FLOP / (GFLOP/s) */
        printf("\n");
    }
    double sq2 = gemm_rate(1, 0, 2048, 2048, 2048);
    printf("\nsquare sgemm again at the end: %.1f GFLOP/s (a large change means a busy machine: "
           "run again)\n", sq2);
    for (int sp = 0; sp < 2; sp++) /* secs: FLOP / (GFLOP/s) summed, so flops / secs is GFLOP/s */
        printf("all products of a step, %s: %.1f GFLOP/s, %.0f%% of square sgemm\n",
               sp ? "split by hand" : "threaded by OpenBLAS", flops / secs[sp], 100 * flops / secs[sp] / sq);
    printf("all products of a step as maec runs them (src/ops/linear.c: libxsmm where it applies, with the\n"
           "bias and its gradient): %.1f GFLOP/s, %.0f%% of square sgemm\n",
           flops / secs_maec, 100 * flops / secs_maec / sq);
    printf("(the step's ceiling if nothing else took time)\n");
    return 0;
}
