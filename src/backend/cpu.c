/* The cpu backend: the kernels of src/ops (OpenBLAS/libxsmm, AVX, OpenMP)
 * behind the table of backend.h. The CPU's own choices live here: where a
 * product runs on libxsmm's tiles, the work that follows it (attention, the
 * GELU) is done per image while its rows are in the cache of the thread
 * that made them; thread counts and per-thread scratch are this file's. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "ops/ops.h"
#include "ops/ops_eval.h"
#include "maec.h"
#include "util.h"

/* ------------------------------------------------------------ memory */

static void *cpu_alloc(size_t bytes) { return maec_alloc(bytes); }
static void cpu_free(void *p) { maec_free(p); }
static void cpu_memcpy(void *dst, const void *src, size_t bytes)
{
    if (bytes) memcpy(dst, src, bytes);
}
static void cpu_zero(void *p, size_t bytes)
{
    if (bytes) memset(p, 0, bytes);
}

/* ------------------------------------------------------------ linear */

static void cpu_linear_forward(float *out, const float *inp, const float *w, const float *b, const float *res, int M,
                               int K, int N)
{
    if (res) linear_forward_residual(out, inp, w, b, res, M, K, N);
    else linear_forward(out, inp, w, b, M, K, N);
}

/* the GELU on rows of the product as it finishes them */
typedef struct {
    float *h, *deriv;
    int N;
} gelu_items;

static void gelu_rows(void *ctx, int r0, int r1)
{
    gelu_items *c = ctx;
    size_t o = (size_t)r0 * c->N;
    gelu_forward_rows(c->h + o, c->deriv + o, c->h + o, (size_t)(r1 - r0) * c->N);
}

static void cpu_linear_gelu_forward(float *out, float *deriv, const float *inp, const float *w, const float *b, int M,
                                    int K, int N)
{
    if (linear_tiled(M, K, N)) { /* the GELU on each row tile while it is in cache */
        gelu_items gi = {out, deriv, N};
        linear_forward_items(out, inp, w, b, M, 1, K, N, gelu_rows, &gi);
    } else {
        linear_forward(out, inp, w, b, M, K, N);
        gelu_forward(out, deriv, out, (size_t)M * N); /* in place */
    }
}

/* ------------------------------------------------------------ attention */

typedef struct {
    float *out, *att, *dqkv, *scratch;
    const float *qkv, *att_in, *dout;
    int T, D, H;
} attn_items;

static void attention_forward_items(void *ctx, int b0, int b1)
{
    attn_items *c = ctx;
    attention_forward_images(c->out, c->att, c->qkv, b0, b1, c->T, c->D, c->H);
}

static void attention_backward_items(void *ctx, int b0, int b1)
{
    attn_items *c = ctx;
    float *scratch = c->scratch + (size_t)omp_get_thread_num() * attention_scratch_floats(c->T);
    attention_backward_images(c->dqkv, c->dout, c->qkv, c->att_in, scratch, b0, b1, c->T, c->D, c->H);
}

static void cpu_attention_forward(float *out, float *att, float *qkv, const float *inp, const float *w,
                                  const float *b, int B, int T, int D, int H)
{
    int M = B * T;
    /* each image's attention while its rows of qkv are in the cache of the
     * thread that made them (where the product runs on libxsmm's tiles) */
    if (linear_tiled(M, D, 3 * D)) {
        attn_items ai = {.out = out, .att = att, .qkv = qkv, .T = T, .D = D, .H = H};
        linear_forward_items(qkv, inp, w, b, B, T, D, 3 * D, attention_forward_items, &ai);
    } else {
        linear_forward(qkv, inp, w, b, M, D, 3 * D);
        attention_forward(out, att, qkv, B, T, D, H);
    }
}

/* a block of attention scratch per thread, for as many threads as run now */
static size_t cpu_attention_scratch(int B, int T)
{
    (void)B;
    return (size_t)omp_get_max_threads() * attention_scratch_floats(T);
}

static void cpu_attention_backward(float *dx, float *dw, float *db, float *dqkv, float *scratch, size_t nscratch,
                                   const float *qkv, const float *att, const float *inp, const float *w, int B,
                                   int T, int D, int H)
{
    int M = B * T;
    int nblocks = (int)(nscratch / attention_scratch_floats(T));
    /* each image's attention backward just before the qkv product's
     * backward reads its rows; dx is attention's input, then (row by row,
     * after it is read) the qkv product's output */
    attn_items ai = {.dqkv = dqkv, .scratch = scratch, .qkv = qkv, .att_in = att, .dout = dx, .T = T, .D = D,
                     .H = H};
    if (linear_tiled(M, D, 3 * D) && omp_get_max_threads() <= nblocks) { /* a scratch block per thread */
        linear_backward_items(dx, dw, db, dqkv, inp, w, B, T, D, 3 * D, attention_backward_items, &ai);
    } else {
        attention_backward(dqkv, dx, qkv, att, scratch, nblocks, B, T, D, H);
        linear_backward(dx, dw, db, dqkv, inp, w, M, D, 3 * D);
    }
    memset(db + D, 0, (size_t)D * sizeof(float)); /* the key bias: exactly zero (backend.h) */
}

/* ------------------------------------------------------------ elementwise */

static void cpu_add(float *y, const float *x, size_t n) { add_inplace(y, x, n); }

static void cpu_scale(float *x, size_t n, float s)
{
#pragma omp parallel for schedule(static) if (n > 1 << 16)
    for (size_t i = 0; i < n; i++) x[i] *= s;
}

static double cpu_sumsq(const float *x, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

/* ------------------------------------------------------------ tokens */

static void cpu_patchify(float *patches, const float *imgs, int B, int C, int H, int W, int p)
{
    maec_patchify(imgs, patches, B, C, H, W, p);
}

static void cpu_patch_gather(float *out, const float *imgs, const int *ids, int B, int K, int C, int H, int W, int p)
{
    int gw = W / p;
    size_t Cpp = (size_t)C * p * p;
#pragma omp parallel for schedule(static) collapse(2)
    for (int b = 0; b < B; b++)
        for (int k = 0; k < K; k++) {
            int l = ids ? ids[(size_t)b * K + k] : k;
            int y = l / gw, x = l % gw;
            float *dst = out + ((size_t)b * K + k) * Cpp;
            for (int ch = 0; ch < C; ch++)
                for (int i = 0; i < p; i++)
                    memcpy(dst + (ch * p + i) * p, imgs + (((size_t)b * C + ch) * H + y * p + i) * W + x * p,
                           (size_t)p * sizeof(float));
        }
}

static void cpu_norm_pix(float *t0, size_t n, int P)
{
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < n; r++) {
        float *t = t0 + r * P;
        double s = 0;
        for (int i = 0; i < P; i++) s += t[i];
        float mu = (float)(s / P);
        double v = 0;
        for (int i = 0; i < P; i++) v += (double)(t[i] - mu) * (t[i] - mu);
        float sd = sqrtf((float)(v / (P - 1)) + 1e-6f);
        for (int i = 0; i < P; i++) t[i] = (t[i] - mu) / sd;
    }
}

static void cpu_embed_forward(float *x0, const float *tokens, const float *cls, const float *pos, const int *ids,
                              const float *swap, const float *swap_tok, int B, int K, int D)
{
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        float *x = x0 + (size_t)b * (1 + K) * D;
        for (int d = 0; d < D; d++) x[d] = cls[d] + pos[d];
        for (int k = 0; k < K; k++) {
            int l = ids ? ids[(size_t)b * K + k] : k;
            const float *p = pos + (size_t)(1 + l) * D;
            float *dst = x + (size_t)(1 + k) * D;
            const float *src = (swap && swap[(size_t)b * K + k] > 0) ? swap_tok : tokens + ((size_t)b * K + k) * D;
            for (int d = 0; d < D; d++) dst[d] = src[d] + p[d];
        }
    }
}

static void cpu_embed_backward(float *dtokens, float *dcls, float *dpos, float *dswap_tok, const float *dx0,
                               const float *swap, int B, int K, int D)
{
    int T = 1 + K;
    for (int b = 0; b < B; b++) {
        const float *dx = dx0 + (size_t)b * T * D;
        for (int d = 0; d < D; d++) dcls[d] += dx[d];
    }
    if (dpos) {
#pragma omp parallel for schedule(static)
        for (int t = 0; t < T; t++)
            for (int b = 0; b < B; b++) {
                const float *dx = dx0 + ((size_t)b * T + t) * D;
                float *gp = dpos + (size_t)t * D;
                for (int d = 0; d < D; d++) gp[d] += dx[d];
            }
    }
    for (int b = 0; b < B; b++) {
        const float *dx = dx0 + (size_t)b * T * D;
        for (int k = 0; k < K; k++) {
            const float *src = dx + (size_t)(1 + k) * D;
            float *dt = dtokens + ((size_t)b * K + k) * D;
            if (swap && swap[(size_t)b * K + k] > 0) {
                for (int d = 0; d < D; d++) dswap_tok[d] += src[d];
                memset(dt, 0, (size_t)D * sizeof(float));
            } else {
                memcpy(dt, src, (size_t)D * sizeof(float));
            }
        }
    }
}

static void cpu_unshuffle_forward(float *x0, const float *y0, const float *pos, const int *restore, const float *tok,
                                  int B, int L, int K, int E)
{
    int Td = 1 + L, Te = 1 + K;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        float *x = x0 + (size_t)b * Td * E;
        const float *y = y0 + (size_t)b * Te * E;
        for (int d = 0; d < E; d++) x[d] = y[d] + pos[d];
        for (int l = 0; l < L; l++) {
            int t = restore ? 1 + restore[(size_t)b * L + l] : 1 + l;
            const float *src = t <= K ? y + (size_t)t * E : tok;
            const float *p = pos + (size_t)(1 + l) * E;
            for (int d = 0; d < E; d++) x[(size_t)t * E + d] = src[d] + p[d];
        }
    }
}

static void cpu_unshuffle_backward(float *dy, float *dtok, const float *dx0, int B, int L, int K, int E)
{
    int Td = 1 + L, Te = 1 + K;
    if (K == L) {
        memcpy(dy, dx0, (size_t)B * Td * E * sizeof(float));
        return;
    }
    for (int b = 0; b < B; b++) {
        const float *dx = dx0 + (size_t)b * Td * E;
        memcpy(dy + (size_t)b * Te * E, dx, (size_t)Te * E * sizeof(float));
        for (int t = Te; t < Td; t++)
            for (int d = 0; d < E; d++) dtok[d] += dx[(size_t)t * E + d];
    }
}

static void cpu_rows_gather(float *dst, const float *src, int B, int T, int off, int G, int D)
{
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++)
        memcpy(dst + (size_t)b * G * D, src + ((size_t)b * T + off) * D, (size_t)G * D * sizeof(float));
}

static void cpu_rows_expand(float *dst, const float *src, int B, int T, int off, int G, int D)
{
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        float *d = dst + (size_t)b * T * D;
        memset(d, 0, (size_t)off * D * sizeof(float));
        memcpy(d + (size_t)off * D, src + (size_t)b * G * D, (size_t)G * D * sizeof(float));
        memset(d + (size_t)(off + G) * D, 0, (size_t)(T - off - G) * D * sizeof(float));
    }
}

/* ------------------------------------------------------------ MAE loss */

/* the row of patch l of image b (backend.h, mae_pred_gather); -1: none */
static inline long pred_row(const int *restore, int compact, int b, int l, int L, int K)
{
    int t = restore ? 1 + restore[(size_t)b * L + l] : 1 + l;
    if (compact) return t <= K ? -1 : (long)b * (L - K) + t - 1 - K;
    return (long)b * (1 + L) + t;
}

static void cpu_mae_pred_gather(float *pred, const float *rows, const int *restore, int compact, int B, int L, int K,
                                int P)
{
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++)
        for (int l = 0; l < L; l++) {
            float *dst = pred + ((size_t)b * L + l) * P;
            long r = pred_row(restore, compact, b, l, L, K);
            if (r < 0) memset(dst, 0, (size_t)P * sizeof(float));
            else memcpy(dst, rows + (size_t)r * P, (size_t)P * sizeof(float));
        }
}

static double cpu_mae_loss(const float *pred, const float *target, const float *mask, int B, int L, int P)
{
    size_t n = (size_t)B * L;
    double total = 0, msum = 0;
    for (size_t r = 0; r < n; r++) {
        float wt = mask ? mask[r] : 1.0f;
        msum += wt;
        if (wt == 0) continue;
        const float *a = pred + r * P, *t = target + r * P;
        double s = 0;
        for (int i = 0; i < P; i++) {
            double d = (double)a[i] - t[i];
            s += d * d;
        }
        total += wt * s / P;
    }
    return total / msum;
}

static void cpu_mae_loss_backward(float *drows, const float *pred, const float *target, const float *mask,
                                  const int *restore, int compact, float scale, int B, int L, int K, int P)
{
    double msum = 0;
    for (size_t r = 0; r < (size_t)B * L; r++) msum += mask ? mask[r] : 1.0f;
    float k = (float)(2.0 * scale / (P * msum));
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        if (!compact) memset(drows + (size_t)b * (1 + L) * P, 0, (size_t)P * sizeof(float));
        for (int l = 0; l < L; l++) {
            size_t r = (size_t)b * L + l;
            long row = pred_row(restore, compact, b, l, L, K);
            if (row < 0) continue; /* kept: no row, and a weight of 0 */
            float wt = mask ? mask[r] : 1.0f;
            float *d = drows + (size_t)row * P;
            const float *a = pred + r * P, *t = target + r * P;
            for (int i = 0; i < P; i++) d[i] = wt * k * (a[i] - t[i]);
        }
    }
}

/* ------------------------------------------------------------ the table */

static const maec_backend cpu_backend = {
    .name = "cpu",
    .host_shared = 1,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_memcpy,
    .download = cpu_memcpy,
    .copy = cpu_memcpy,
    .zero = cpu_zero,
    .linear_forward = cpu_linear_forward,
    .linear_gelu_forward = cpu_linear_gelu_forward,
    .linear_backward = linear_backward,
    .gelu_backward = gelu_backward,
    .layernorm_forward = layernorm_forward,
    .layernorm_backward = layernorm_backward,
    .attention_forward = cpu_attention_forward,
    .attention_scratch = cpu_attention_scratch,
    .attention_backward = cpu_attention_backward,
    .add = cpu_add,
    .scale_rows = scale_rows,
    .patchify = cpu_patchify,
    .patch_gather = cpu_patch_gather,
    .norm_pix = cpu_norm_pix,
    .embed_forward = cpu_embed_forward,
    .embed_backward = cpu_embed_backward,
    .unshuffle_forward = cpu_unshuffle_forward,
    .unshuffle_backward = cpu_unshuffle_backward,
    .rows_gather = cpu_rows_gather,
    .rows_expand = cpu_rows_expand,
    .mean_pool_forward = mean_pool_forward,
    .mean_pool_backward = mean_pool_backward,
    .mae_pred_gather = cpu_mae_pred_gather,
    .mae_loss = cpu_mae_loss,
    .mae_loss_backward = cpu_mae_loss_backward,
    .xent_forward = softmax_xent_forward,
    .xent_backward = softmax_xent_backward,
    .adamw = adamw_update,
    .sumsq = cpu_sumsq,
    .scale = cpu_scale,
};

const maec_backend *maec_backend_cpu(void) { return &cpu_backend; }
