/* Every op of the backend table (src/backend/backend.h), forward and
 * backward, on every backend compiled in against ref, the plain-loop
 * specification, in the spirit of ggml's test-backend-ops: random shapes
 * including odd ones (1, primes, widths that are not multiples of a vector),
 * the same inputs on each backend, and for each output the normalized error
 * ||x - x_ref|| / ||x_ref|| against the op's stated tolerance. Parameter
 * gradients start from random values, so that "+=" is checked as well as
 * the product; ops that only move data must agree bit for bit (tolerance 0).
 *
 *   test_backend_ops                  the check (CI)
 *   test_backend_ops --perf           each op's time and GFLOP/s per backend
 *   test_backend_ops --op NAME        one op only (either mode)
 *   test_backend_ops --backend NAME   one backend against ref */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"
#include "backend/cuda.h"
#include "test.h"
#include "util.h"

/* ------------------------------------------------------------ buffers */

#define MAX_BUFS 32
#define MAX_OUTS 8

/* one run of an op on one backend: its buffers, and the outputs copied back */
typedef struct {
    const maec_backend *be;
    void *bufs[MAX_BUFS];
    int nbufs;
    uint64_t rng; /* the inputs' values: the same seed on every backend */
    const char *out_name[MAX_OUTS];
    float *out[MAX_OUTS];
    size_t out_n[MAX_OUTS];
    int nouts;
    double scalar; /* an op's returned value (a loss, a sum), checked as an output too */
    int has_scalar;
    double flops;
    double secs; /* in the op's calls alone (TIMED) */
} run;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* an op's call, timed for --perf */
#define TIMED(r, call)                                                    \
    do {                                                                  \
        double t0_ = now();                                               \
        call;                                                             \
        wait_backend(r);                                                  \
        (r)->secs += now() - t0_;                                         \
    } while (0)

/* a device's ops are queued: a download waits for them, so that --perf
 * times the work and not its launch */
static void wait_backend(run *r)
{
    float t;
    if (!r->be->host_shared && r->nbufs) r->be->download(&t, r->bufs[0], sizeof t);
}

static void *balloc(run *r, size_t bytes)
{
    void *p = r->be->alloc(bytes ? bytes : 1);
    if (!p || r->nbufs == MAX_BUFS) {
        fprintf(stderr, "test_backend_ops: out of memory or buffers\n");
        exit(2);
    }
    return r->bufs[r->nbufs++] = p;
}

/* n floats uniform in [lo, hi) on the backend */
static float *rnd(run *r, size_t n, float lo, float hi)
{
    float *h = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) h[i] = lo + (hi - lo) * rng_uniform(&r->rng);
    float *d = balloc(r, n * sizeof(float));
    r->be->upload(d, h, n * sizeof(float));
    free(h);
    return d;
}

static float *zeros(run *r, size_t n) { return balloc(r, n * sizeof(float)); }

static void *upload(run *r, const void *h, size_t bytes)
{
    void *d = balloc(r, bytes);
    r->be->upload(d, h, bytes);
    return d;
}

/* an output of the op: copied to the host for comparison */
static void output(run *r, const char *name, const float *d, size_t n)
{
    float *h = malloc((n ? n : 1) * sizeof(float));
    r->be->download(h, d, n * sizeof(float));
    r->out_name[r->nouts] = name;
    r->out[r->nouts] = h;
    r->out_n[r->nouts++] = n;
}

static void run_free(run *r)
{
    for (int i = 0; i < r->nbufs; i++) r->be->free(r->bufs[i]);
    for (int i = 0; i < r->nouts; i++) free(r->out[i]);
    r->nbufs = r->nouts = 0;
}

/* a random permutation of n (Fisher-Yates) */
static void permutation(int *p, int n, uint64_t *rng)
{
    for (int i = 0; i < n; i++) p[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(rng_next(rng) % (uint64_t)(i + 1)), t = p[i];
        p[i] = p[j], p[j] = t;
    }
}

/* ------------------------------------------------------------ shapes */

/* sizes that catch edge handling: 1, primes, a vector width and one past it */
static const int odd_sizes[] = {1, 2, 3, 5, 7, 13, 16, 17, 31, 33, 64, 97};
#define NODD ((int)(sizeof odd_sizes / sizeof odd_sizes[0]))

static int pick(uint64_t *rng, int max)
{
    int v;
    do v = odd_sizes[rng_next(rng) % NODD];
    while (v > max);
    return v;
}

/* ------------------------------------------------------------ the ops */

/* Each case fills d[] with a shape (shape i of the case, from rng; shape 0
 * is the smallest) and runs the op on r->be. */
typedef struct {
    const char *name;
    double tol;  /* normalized error allowed against ref */
    int nshapes; /* in the check */
    void (*shape)(uint64_t *rng, int i, int *d, int perf);
    void (*run)(run *r, const int *d);
} op_case;

/* linear: M, K, N, variant (bit 0 bias, bit 1 residual) */
static void shape_linear(uint64_t *rng, int i, int *d, int perf)
{
    if (perf) {
        d[0] = 1024, d[1] = 256, d[2] = 1024, d[3] = 3;
        return;
    }
    d[0] = i ? pick(rng, 97) * (1 + (int)(rng_next(rng) % 3)) : 1;
    d[1] = i ? pick(rng, 97) : 1;
    d[2] = i ? pick(rng, 97) : 1;
    d[3] = i % 4;
}

static void op_linear_forward(run *r, const int *d)
{
    int M = d[0], K = d[1], N = d[2];
    float *inp = rnd(r, (size_t)M * K, -1, 1), *w = rnd(r, (size_t)N * K, -1, 1);
    float *b = (d[3] & 1) ? rnd(r, N, -1, 1) : NULL, *res = (d[3] & 2) ? rnd(r, (size_t)M * N, -1, 1) : NULL;
    float *out = zeros(r, (size_t)M * N);
    TIMED(r, r->be->linear_forward(out, inp, w, b, res, M, K, N));
    output(r, "out", out, (size_t)M * N);
    r->flops = 2.0 * M * K * N;
}

static void op_linear_gelu_forward(run *r, const int *d)
{
    int M = d[0], K = d[1], N = d[2];
    float *inp = rnd(r, (size_t)M * K, -1, 1), *w = rnd(r, (size_t)N * K, -1, 1);
    float *b = (d[3] & 1) ? rnd(r, N, -1, 1) : NULL;
    float *out = zeros(r, (size_t)M * N), *deriv = zeros(r, (size_t)M * N);
    TIMED(r, r->be->linear_gelu_forward(out, deriv, inp, w, b, M, K, N));
    output(r, "out", out, (size_t)M * N);
    output(r, "deriv", deriv, (size_t)M * N);
    r->flops = 2.0 * M * K * N;
}

static void op_linear_backward(run *r, const int *d)
{
    int M = d[0], K = d[1], N = d[2];
    float *dout = rnd(r, (size_t)M * N, -1, 1), *inp = rnd(r, (size_t)M * K, -1, 1);
    float *w = rnd(r, (size_t)N * K, -1, 1);
    float *dw = rnd(r, (size_t)N * K, -1, 1), *db = (d[3] & 1) ? rnd(r, N, -1, 1) : NULL; /* += */
    float *dinp = (d[3] & 2) ? NULL : zeros(r, (size_t)M * K);
    TIMED(r, r->be->linear_backward(dinp, dw, db, dout, inp, w, M, K, N));
    if (dinp) output(r, "dinp", dinp, (size_t)M * K);
    output(r, "dw", dw, (size_t)N * K);
    if (db) output(r, "db", db, N);
    r->flops = (dinp ? 4.0 : 2.0) * M * K * N;
}

/* elementwise: n */
static void shape_n(uint64_t *rng, int i, int *d, int perf)
{
    d[0] = perf ? 1 << 22 : i ? pick(rng, 97) * pick(rng, 97) + (int)(rng_next(rng) % 7) : 1;
}

static void op_gelu_backward(run *r, const int *d)
{
    size_t n = (size_t)d[0];
    float *deriv = rnd(r, n, -0.2f, 1.2f), *dout = rnd(r, n, -1, 1), *dinp = zeros(r, n);
    TIMED(r, r->be->gelu_backward(dinp, deriv, dout, n));
    output(r, "dinp", dinp, n);
    r->flops = (double)n;
}

static void op_add(run *r, const int *d)
{
    size_t n = (size_t)d[0];
    float *y = rnd(r, n, -1, 1), *x = rnd(r, n, -1, 1);
    TIMED(r, r->be->add(y, x, n));
    output(r, "y", y, n);
    r->flops = (double)n;
}

static void op_scale(run *r, const int *d)
{
    size_t n = (size_t)d[0];
    float *x = rnd(r, n, -1, 1);
    TIMED(r, r->be->scale(x, n, 0.37f));
    output(r, "x", x, n);
    r->flops = (double)n;
}

static void op_sumsq(run *r, const int *d)
{
    size_t n = (size_t)d[0];
    float *x = rnd(r, n, -1, 1);
    TIMED(r, r->scalar = r->be->sumsq(x, n));
    r->has_scalar = 1;
    r->flops = 2.0 * n;
}

static void op_adamw(run *r, const int *d)
{
    size_t n = (size_t)d[0];
    float *p = rnd(r, n, -1, 1), *g = rnd(r, n, -1, 1), *m = rnd(r, n, -0.1f, 0.1f), *v = rnd(r, n, 0, 0.01f);
    TIMED(r, r->be->adamw(p, g, m, v, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.05f, 7));
    output(r, "p", p, n);
    output(r, "g (left zero)", g, n);
    output(r, "m", m, n);
    output(r, "v", v, n);
    r->flops = 12.0 * n;
}

/* rows: M, D */
static void shape_rows(uint64_t *rng, int i, int *d, int perf)
{
    if (perf) {
        d[0] = 8192, d[1] = 768;
        return;
    }
    d[0] = i ? pick(rng, 97) * (1 + (int)(rng_next(rng) % 4)) : 1;
    d[1] = i ? 1 + pick(rng, 97) : 2; /* D >= 2: a norm over one value is 0 / 0 */
}

static void op_layernorm_forward(run *r, const int *d)
{
    int M = d[0], D = d[1];
    float *inp = rnd(r, (size_t)M * D, -2, 3), *w = rnd(r, D, 0.5f, 1.5f), *b = rnd(r, D, -0.5f, 0.5f);
    float *out = zeros(r, (size_t)M * D), *mean = zeros(r, M), *rstd = zeros(r, M);
    TIMED(r, r->be->layernorm_forward(out, mean, rstd, inp, w, b, M, D));
    output(r, "out", out, (size_t)M * D);
    output(r, "mean", mean, M);
    output(r, "rstd", rstd, M);
    r->flops = 8.0 * M * D;
}

static void op_layernorm_backward(run *r, const int *d)
{
    int M = d[0], D = d[1];
    float *inp = rnd(r, (size_t)M * D, -2, 3), *w = rnd(r, D, 0.5f, 1.5f), *b = rnd(r, D, -0.5f, 0.5f);
    float *out = zeros(r, (size_t)M * D), *mean = zeros(r, M), *rstd = zeros(r, M);
    /* mean and rstd from ref's forward would differ in the last bit; each
     * backend's own forward gives them, as in the model */
    r->be->layernorm_forward(out, mean, rstd, inp, w, b, M, D);
    float *dout = rnd(r, (size_t)M * D, -1, 1);
    float *dinp = rnd(r, (size_t)M * D, -1, 1), *dw = rnd(r, D, -1, 1), *db = rnd(r, D, -1, 1); /* all add */
    TIMED(r, r->be->layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, M, D));
    output(r, "dinp", dinp, (size_t)M * D);
    output(r, "dw", dw, D);
    output(r, "db", db, D);
    r->flops = 12.0 * M * D;
}

static void op_norm_pix(run *r, const int *d)
{
    int M = d[0], D = d[1];
    float *t = rnd(r, (size_t)M * D, -2, 3);
    TIMED(r, r->be->norm_pix(t, (size_t)M, D));
    output(r, "t", t, (size_t)M * D);
    r->flops = 5.0 * M * D;
}

/* attention: B, T, D, H */
static void shape_attention(uint64_t *rng, int i, int *d, int perf)
{
    if (perf) {
        d[0] = 32, d[1] = 50, d[2] = 256, d[3] = 8;
        return;
    }
    static const int heads[] = {1, 2, 3, 4, 6};
    static const int hds[] = {1, 3, 4, 8, 16, 17};
    d[0] = i ? 1 + (int)(rng_next(rng) % 4) : 1;
    d[1] = i ? pick(rng, 64) : 1;
    d[3] = i ? heads[rng_next(rng) % 5] : 1;
    d[2] = d[3] * (i ? hds[rng_next(rng) % 6] : 1);
}

static double attention_flops(const int *d)
{
    double B = d[0], T = d[1], D = d[2];
    return 2.0 * B * T * D * 3 * D + 4.0 * B * T * T * D;
}

static void op_attention_forward(run *r, const int *d)
{
    int B = d[0], T = d[1], D = d[2], H = d[3];
    size_t M = (size_t)B * T;
    float *inp = rnd(r, M * D, -1, 1), *w = rnd(r, (size_t)3 * D * D, -0.5f, 0.5f), *b = rnd(r, 3 * D, -0.5f, 0.5f);
    float *out = zeros(r, M * D), *att = zeros(r, (size_t)B * H * T * T), *qkv = zeros(r, M * 3 * D);
    TIMED(r, r->be->attention_forward(out, att, qkv, inp, w, b, B, T, D, H));
    output(r, "out", out, M * D);
    output(r, "att", att, (size_t)B * H * T * T);
    output(r, "qkv", qkv, M * 3 * D);
    r->flops = attention_flops(d);
}

static void op_attention_backward(run *r, const int *d)
{
    int B = d[0], T = d[1], D = d[2], H = d[3];
    size_t M = (size_t)B * T;
    float *inp = rnd(r, M * D, -1, 1), *w = rnd(r, (size_t)3 * D * D, -0.5f, 0.5f), *b = rnd(r, 3 * D, -0.5f, 0.5f);
    float *out = zeros(r, M * D), *att = zeros(r, (size_t)B * H * T * T), *qkv = zeros(r, M * 3 * D);
    r->be->attention_forward(out, att, qkv, inp, w, b, B, T, D, H);
    float *dx = rnd(r, M * D, -1, 1), *dw = rnd(r, (size_t)3 * D * D, -1, 1), *db = rnd(r, 3 * D, -1, 1);
    float *dqkv = zeros(r, M * 3 * D);
    size_t ns = r->be->attention_scratch(B, T);
    float *scratch = zeros(r, ns);
    TIMED(r, r->be->attention_backward(dx, dw, db, dqkv, scratch, ns, qkv, att, inp, w, B, T, D, H));
    output(r, "dx", dx, M * D);
    output(r, "dw", dw, (size_t)3 * D * D);
    output(r, "db", db, 3 * (size_t)D);
    /* the key third of db: exactly zero on every backend */
    float *h = malloc((size_t)3 * D * sizeof(float));
    r->be->download(h, db, (size_t)3 * D * sizeof(float));
    int zero = 1;
    for (int i = D; i < 2 * D; i++) zero &= h[i] == 0.0f;
    CHECK(zero, "attention_backward on %s: the key bias gradient is not exactly zero", r->be->name);
    free(h);
    r->flops = 2.0 * attention_flops(d);
}

/* tokens: B, T, D (scale_rows, rows, mean pool) */
static void shape_btd(uint64_t *rng, int i, int *d, int perf)
{
    if (perf) {
        d[0] = 64, d[1] = 197, d[2] = 768;
        return;
    }
    d[0] = i ? pick(rng, 17) : 1;
    d[1] = i ? 1 + pick(rng, 64) : 2;
    d[2] = i ? pick(rng, 97) : 1;
}

static void op_scale_rows(run *r, const int *d)
{
    int B = d[0], T = d[1], D = d[2];
    float *x = rnd(r, (size_t)B * T * D, -1, 1), *s = rnd(r, B, 0, 2);
    TIMED(r, r->be->scale_rows(x, s, B, T, D));
    output(r, "x", x, (size_t)B * T * D);
    r->flops = (double)B * T * D;
}

static void op_rows(run *r, const int *d)
{
    int B = d[0], T = d[1], D = d[2];
    int off = (int)(rng_next(&r->rng) % T), G = 1 + (int)(rng_next(&r->rng) % (T - off));
    float *src = rnd(r, (size_t)B * T * D, -1, 1), *g = zeros(r, (size_t)B * G * D);
    float *e = rnd(r, (size_t)B * T * D, -1, 1); /* every row written */
    TIMED(r, r->be->rows_gather(g, src, B, T, off, G, D));
    TIMED(r, r->be->rows_expand(e, g, B, T, off, G, D));
    output(r, "gathered", g, (size_t)B * G * D);
    output(r, "expanded", e, (size_t)B * T * D);
}

static void op_mean_pool(run *r, const int *d)
{
    int B = d[0], T = d[1], D = d[2];
    float *x = rnd(r, (size_t)B * T * D, -1, 1), *out = zeros(r, (size_t)B * D);
    float *dout = rnd(r, (size_t)B * D, -1, 1), *dx = rnd(r, (size_t)B * T * D, -1, 1);
    TIMED(r, r->be->mean_pool_forward(out, x, B, T, D));
    TIMED(r, r->be->mean_pool_backward(dx, dout, B, T, D));
    output(r, "out", out, (size_t)B * D);
    output(r, "dx", dx, (size_t)B * T * D);
    r->flops = 2.0 * B * T * D;
}

/* images: B, C, gh, gw, p (H = gh p, W = gw p) */
static void shape_img(uint64_t *rng, int i, int *d, int perf)
{
    if (perf) {
        d[0] = 64, d[1] = 3, d[2] = 14, d[3] = 14, d[4] = 16;
        return;
    }
    d[0] = i ? 1 + (int)(rng_next(rng) % 5) : 1;
    d[1] = i ? 1 + (int)(rng_next(rng) % 3) : 1;
    d[2] = i ? pick(rng, 7) : 1;
    d[3] = i ? pick(rng, 7) : 1;
    d[4] = i ? pick(rng, 17) : 1;
}

static void op_patchify(run *r, const int *d)
{
    int B = d[0], C = d[1], p = d[4], H = d[2] * p, W = d[3] * p, L = d[2] * d[3];
    size_t n = (size_t)B * C * H * W;
    float *imgs = rnd(r, n, -1, 1), *patches = zeros(r, n), *gathered = zeros(r, n);
    /* a random subset of K patches per image, in a random order */
    int K = 1 + (int)(rng_next(&r->rng) % L);
    int *perm = malloc((size_t)L * sizeof(int)), *ids = malloc((size_t)B * K * sizeof(int));
    for (int b = 0; b < B; b++) {
        permutation(perm, L, &r->rng);
        memcpy(ids + (size_t)b * K, perm, (size_t)K * sizeof(int));
    }
    int *dids = upload(r, ids, (size_t)B * K * sizeof(int));
    float *sub = zeros(r, (size_t)B * K * C * p * p);
    TIMED(r, r->be->patchify(patches, imgs, B, C, H, W, p));
    TIMED(r, r->be->patch_gather(gathered, imgs, NULL, B, L, C, H, W, p));
    TIMED(r, r->be->patch_gather(sub, imgs, dids, B, K, C, H, W, p));
    output(r, "patches", patches, n);
    output(r, "gathered (all)", gathered, n);
    output(r, "gathered (ids)", sub, (size_t)B * K * C * p * p);
    free(perm), free(ids);
}

/* MAE masking: B, L, K, D, flags (bit 0 ids, bit 1 swap / compact) */
static void shape_mae(uint64_t *rng, int i, int *d, int perf)
{
    if (perf) {
        d[0] = 64, d[1] = 196, d[2] = 49, d[3] = 512, d[4] = 1;
        return;
    }
    d[0] = i ? 1 + (int)(rng_next(rng) % 5) : 1;
    d[1] = i ? pick(rng, 64) : 1;
    d[2] = 1 + (int)(rng_next(rng) % d[1]);
    d[3] = i ? pick(rng, 97) : 1;
    d[4] = i % 4;
}

/* the host's masking for B images of L patches keeping K: ids_keep [B,K],
 * ids_restore [B,L], mask [B,L], as mask_from_noise makes them */
static void masking(run *r, int B, int L, int K, int *keep, int *restore, float *mask)
{
    int *perm = malloc((size_t)L * sizeof(int));
    for (int b = 0; b < B; b++) {
        permutation(perm, L, &r->rng); /* ids_shuffle */
        for (int k = 0; k < K; k++) keep[(size_t)b * K + k] = perm[k];
        for (int j = 0; j < L; j++) {
            restore[(size_t)b * L + perm[j]] = j;
            mask[(size_t)b * L + perm[j]] = j < K ? 0.0f : 1.0f;
        }
    }
    free(perm);
}

static void op_embed(run *r, const int *d)
{
    int B = d[0], L = d[1], D = d[3], ids_on = d[4] & 1, swap_on = d[4] & 2;
    int K = ids_on ? d[2] : L;
    int *keep = malloc((size_t)B * L * sizeof(int)), *restore = malloc((size_t)B * L * sizeof(int));
    float *mask = malloc((size_t)B * L * sizeof(float));
    masking(r, B, L, K, keep, restore, mask);
    int *dkeep = ids_on ? upload(r, keep, (size_t)B * K * sizeof(int)) : NULL;
    /* swap (the mask token in the encoder) goes with all patches in order */
    float *dswap = swap_on && !ids_on ? upload(r, mask, (size_t)B * L * sizeof(float)) : NULL;
    float *tokens = rnd(r, (size_t)B * K * D, -1, 1), *cls = rnd(r, D, -1, 1), *pos = rnd(r, (size_t)(1 + L) * D, -1, 1);
    float *tok = rnd(r, D, -1, 1), *x = zeros(r, (size_t)B * (1 + K) * D);
    TIMED(r, r->be->embed_forward(x, tokens, cls, pos, dkeep, dswap, tok, B, K, D));
    output(r, "x", x, (size_t)B * (1 + K) * D);
    float *dx = rnd(r, (size_t)B * (1 + K) * D, -1, 1), *dtokens = zeros(r, (size_t)B * K * D);
    float *dcls = rnd(r, D, -1, 1), *dtok = rnd(r, D, -1, 1);
    float *dpos = ids_on ? NULL : rnd(r, (size_t)(1 + K) * D, -1, 1);
    TIMED(r, r->be->embed_backward(dtokens, dcls, dpos, dswap ? dtok : NULL, dx, dswap, B, K, D));
    output(r, "dtokens", dtokens, (size_t)B * K * D);
    output(r, "dcls", dcls, D);
    if (dpos) output(r, "dpos", dpos, (size_t)(1 + K) * D);
    if (dswap) output(r, "dswap_tok", dtok, D);
    free(keep), free(restore), free(mask);
}

static void op_unshuffle(run *r, const int *d)
{
    int B = d[0], L = d[1], E = d[3], shuffled = d[4] & 1;
    int K = shuffled ? d[2] : L;
    int *keep = malloc((size_t)B * L * sizeof(int)), *restore = malloc((size_t)B * L * sizeof(int));
    float *mask = malloc((size_t)B * L * sizeof(float));
    masking(r, B, L, K, keep, restore, mask);
    int *drestore = shuffled ? upload(r, restore, (size_t)B * L * sizeof(int)) : NULL;
    float *y = rnd(r, (size_t)B * (1 + K) * E, -1, 1), *pos = rnd(r, (size_t)(1 + L) * E, -1, 1);
    float *tok = rnd(r, E, -1, 1), *x = zeros(r, (size_t)B * (1 + L) * E);
    TIMED(r, r->be->unshuffle_forward(x, y, pos, drestore, tok, B, L, K, E));
    output(r, "x", x, (size_t)B * (1 + L) * E);
    float *dx = rnd(r, (size_t)B * (1 + L) * E, -1, 1), *dy = zeros(r, (size_t)B * (1 + K) * E);
    float *dtok = rnd(r, E, -1, 1);
    TIMED(r, r->be->unshuffle_backward(dy, dtok, dx, B, L, K, E));
    output(r, "dy", dy, (size_t)B * (1 + K) * E);
    output(r, "dtok", dtok, E);
    free(keep), free(restore), free(mask);
}

static void op_mae_loss(run *r, const int *d)
{
    int B = d[0], L = d[1], P = d[3], shuffled = d[4] & 1, compact = shuffled && (d[4] & 2);
    int K = shuffled ? d[2] : L;
    if (K == L && shuffled) K = L - 1 > 0 ? L - 1 : L; /* some masked patches */
    int *keep = malloc((size_t)B * L * sizeof(int)), *restore = malloc((size_t)B * L * sizeof(int));
    float *mask = malloc((size_t)B * L * sizeof(float));
    masking(r, B, L, K, keep, restore, mask);
    int *drestore = shuffled ? upload(r, restore, (size_t)B * L * sizeof(int)) : NULL;
    float *dmask = upload(r, mask, (size_t)B * L * sizeof(float));
    int weighted = shuffled && K < L; /* a weight of zero everywhere has no loss */
    size_t nrows = compact ? (size_t)B * (L - K) : (size_t)B * (1 + L);
    float *rows = rnd(r, nrows * P, -1, 1), *pred = zeros(r, (size_t)B * L * P);
    float *target = rnd(r, (size_t)B * L * P, -1, 1), *drows = rnd(r, nrows * P, -1, 1);
    TIMED(r, r->be->mae_pred_gather(pred, rows, drestore, compact, B, L, K, P));
    output(r, "pred", pred, (size_t)B * L * P);
    TIMED(r, r->scalar = r->be->mae_loss(pred, target, weighted ? dmask : NULL, B, L, P));
    r->has_scalar = 1;
    TIMED(r, r->be->mae_loss_backward(drows, pred, target, weighted ? dmask : NULL, drestore, compact, 0.7f, B, L,
                                      K, P));
    output(r, "dpred rows", drows, nrows * P);
    free(keep), free(restore), free(mask);
}

/* classes: B, K */
static void shape_xent(uint64_t *rng, int i, int *d, int perf)
{
    if (perf) {
        d[0] = 1024, d[1] = 1000;
        return;
    }
    d[0] = i ? pick(rng, 97) : 1;
    d[1] = i ? pick(rng, 97) : 1;
}

static void op_xent(run *r, const int *d)
{
    int B = d[0], K = d[1];
    float *logits = rnd(r, (size_t)B * K, -4, 4), *targets = rnd(r, (size_t)B * K, 0, 1);
    float *probs = zeros(r, (size_t)B * K), *dl = zeros(r, (size_t)B * K);
    TIMED(r, r->scalar = r->be->xent_forward(probs, logits, targets, B, K));
    r->has_scalar = 1;
    TIMED(r, r->be->xent_backward(dl, probs, targets, B, K, 0.5f));
    output(r, "probs", probs, (size_t)B * K);
    output(r, "dlogits", dl, (size_t)B * K);
    r->flops = 6.0 * B * K;
}

static const op_case cases[] = {
    {"linear_forward", 1e-5, 24, shape_linear, op_linear_forward},
    {"linear_gelu_forward", 1e-5, 16, shape_linear, op_linear_gelu_forward},
    {"linear_backward", 1e-5, 24, shape_linear, op_linear_backward},
    {"gelu_backward", 1e-6, 8, shape_n, op_gelu_backward},
    {"layernorm_forward", 1e-5, 16, shape_rows, op_layernorm_forward},
    {"layernorm_backward", 1e-5, 16, shape_rows, op_layernorm_backward},
    {"attention_forward", 1e-5, 16, shape_attention, op_attention_forward},
    {"attention_backward", 1e-5, 16, shape_attention, op_attention_backward},
    {"add", 0, 8, shape_n, op_add},
    {"scale", 0, 8, shape_n, op_scale},
    {"sumsq", 1e-12, 8, shape_n, op_sumsq},
    {"scale_rows", 0, 8, shape_btd, op_scale_rows},
    {"rows_gather/expand", 0, 12, shape_btd, op_rows},
    {"mean_pool", 1e-6, 12, shape_btd, op_mean_pool},
    {"patchify/patch_gather", 0, 12, shape_img, op_patchify},
    {"norm_pix", 1e-6, 12, shape_rows, op_norm_pix},
    {"embed", 1e-6, 16, shape_mae, op_embed},
    {"unshuffle", 1e-6, 16, shape_mae, op_unshuffle},
    {"mae_loss", 1e-6, 16, shape_mae, op_mae_loss},
    {"xent", 1e-6, 12, shape_xent, op_xent},
    {"adamw", 1e-6, 8, shape_n, op_adamw},
};
/* every case's shapes times this in the check (0.1 s per round) */
#define SHAPES_X 4
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

/* ------------------------------------------------------------ the check */

static void check_case(const op_case *c, const maec_backend *be)
{
    uint64_t rng = 0x5eed0000u + (uint64_t)(c - cases);
    double worst = 0;
    int n = 0;
    for (int i = 0; i < c->nshapes * SHAPES_X; i++) {
        int d[8] = {0};
        c->shape(&rng, i, d, 0);
        run a = {.be = maec_backend_ref(), .rng = rng_derive(42, (uint64_t)(c - cases), (uint64_t)i, 0)};
        run b = {.be = be, .rng = a.rng};
        c->run(&a, d);
        c->run(&b, d);
        for (int k = 0; k < a.nouts; k++) {
            double e = rel_err(b.out[k], a.out[k], a.out_n[k]);
            if (!(e <= c->tol)) /* NaN fails */
                CHECK(0, "%s on %s, shape %d [%d %d %d %d %d], %s: normalized error %.3g > %.1g", c->name, be->name,
                      i, d[0], d[1], d[2], d[3], d[4], a.out_name[k], e, c->tol);
            else
                test_passed++;
            if (e > worst || e != e) worst = e;
            n++;
        }
        if (a.has_scalar) {
            double den = fabs(a.scalar) > 0 ? fabs(a.scalar) : 1;
            double e = fabs(b.scalar - a.scalar) / den;
            CHECK(e <= (c->tol > 1e-7 ? c->tol : 1e-7), "%s on %s, shape %d: value %.9g, ref %.9g", c->name,
                  be->name, i, b.scalar, a.scalar);
            if (e > worst) worst = e;
            n++;
        }
        run_free(&a);
        run_free(&b);
    }
    printf("  %-22s %-4s %4d outputs over %3d shapes: worst %.2e (tolerance %.0e)\n", c->name, be->name, n,
           c->nshapes * SHAPES_X, worst, c->tol);
}

/* ------------------------------------------------------------ --perf */

static void perf_case(const op_case *c, const maec_backend *be)
{
    int d[8] = {0};
    uint64_t rng = 1;
    c->shape(&rng, 1, d, 1);
    double best = 1e30, flops = 0;
    for (int rep = 0; rep < 3; rep++) {
        run r = {.be = be, .rng = 7};
        c->run(&r, d);
        if (r.secs < best) best = r.secs;
        flops = r.flops;
        run_free(&r);
    }
    printf("  %-22s %-4s [%d %d %d %d %d]  %9.3f ms", c->name, be->name, d[0], d[1], d[2], d[3], d[4], best * 1e3);
    if (flops > 0) printf("  %8.2f GFLOP/s", flops / best * 1e-9);
    printf("\n");
}

int main(int argc, char **argv)
{
    int perf = 0;
    const char *only = NULL, *backend = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--perf")) perf = 1;
        else if (!strcmp(argv[i], "--op") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--backend") && i + 1 < argc) backend = argv[++i];
        else {
            fprintf(stderr, "usage: test_backend_ops [--perf] [--op NAME] [--backend NAME]\n");
            return 2;
        }
    }
    const maec_backend *all[2] = {maec_backend_cpu()};
    int nb = 1;
#ifdef MAEC_CUDA
    { /* the GPU's, where there is one: the build has CUDA, the machine may not */
        char msg[256];
        if (maec_cuda_open(0, 0, msg, sizeof msg) == 0) {
            char what[256];
            maec_cuda_describe(what, sizeof what);
            printf("cuda: %s\n", what);
            all[nb++] = maec_backend_cuda();
        } else if (getenv("MAEC_REQUIRE_GPU")) { /* scripts/device-check.sh: a GPU machine */
            printf("cuda: %s\n0 passed, 1 failed\n", msg);
            return 1;
        } else {
            printf("cuda: GPU tests skipped: %s\n", msg);
        }
    }
#endif
    if (backend && !maec_backend_by_name(backend)) {
        fprintf(stderr, "test_backend_ops: no backend '%s' in this build (or no GPU for it)\n", backend);
        return 2;
    }
    printf("%s every op against ref%s\n", perf ? "timing" : "checking", perf ? " (best of 3, the op's calls alone)" : "");
    for (int i = 0; i < NCASES; i++) {
        if (only && strcmp(only, cases[i].name)) continue;
        if (perf) perf_case(&cases[i], maec_backend_ref());
        for (int j = 0; j < nb; j++) {
            if (backend && strcmp(backend, all[j]->name)) continue;
            if (perf) perf_case(&cases[i], all[j]);
            else check_case(&cases[i], all[j]);
        }
    }
    if (perf) return 0;
    TEST_END();
}
