/* The ViT block (pre-norm attention + MLP), forward and backward. */
#include <omp.h>
#include <string.h>

#include "ops/ops.h"
#include "ops/ops_eval.h"
#include "vit.h"

void *take(arena *a, size_t n, size_t elem)
{
    size_t bytes = (n * elem + 63) & ~(size_t)63;
    void *p = a->base ? a->base + a->used : NULL;
    a->used += bytes;
    return p;
}

void carve_block(arena *a, block_acts *ba, int B, int T, int D, int H, int Hd)
{
    size_t BT = (size_t)B * T;
    ba->ln1 = TAKE(a, BT * D);
    ba->m1 = TAKE(a, BT);
    ba->r1 = TAKE(a, BT);
    ba->qkv = TAKE(a, BT * 3 * D);
    ba->att = TAKE(a, (size_t)B * H * T * T);
    ba->attn_out = TAKE(a, BT * D);
    ba->x_mid = TAKE(a, BT * D);
    ba->ln2 = TAKE(a, BT * D);
    ba->m2 = TAKE(a, BT);
    ba->r2 = TAKE(a, BT);
    ba->gelu = TAKE(a, BT * Hd);
    ba->dgelu = TAKE(a, BT * Hd);
    ba->x_out = TAKE(a, BT * D);
}

void carve_scratch(arena *a, block_scratch *s, int B, int Tmax, int Wmax, int Hmax, int nthreads)
{
    s->dqkv = TAKE(a, (size_t)B * Tmax * 3 * Wmax);
    s->dfc = TAKE(a, (size_t)B * Tmax * Hmax);
    s->att = TAKE(a, (size_t)nthreads * attention_scratch_floats(Tmax));
    s->nthreads = nthreads;
}

/* attention on images as the qkv product finishes them (forward), or
 * just before the qkv product's backward reads them */
typedef struct {
    float *out, *att, *dqkv;
    const float *qkv, *att_in, *dout;
    const block_scratch *s;
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
    float *scratch = c->s->att + (size_t)omp_get_thread_num() * attention_scratch_floats(c->T);
    attention_backward_images(c->dqkv, c->dout, c->qkv, c->att_in, scratch, b0, b1, c->T, c->D, c->H);
}

/* the GELU on rows of fc1's output as the product finishes them */
typedef struct {
    float *h, *deriv;
    int Hd;
} gelu_items;

static void gelu_rows(void *ctx, int r0, int r1)
{
    gelu_items *c = ctx;
    size_t o = (size_t)r0 * c->Hd;
    gelu_forward_rows(c->h + o, c->deriv + o, c->h + o, (size_t)(r1 - r0) * c->Hd);
}

void block_forward_attn(block_acts *a, const vit_block *p, const float *x_in, int B, int T, int D, int H)
{
    int M = B * T;
    layernorm_forward(a->ln1, a->m1, a->r1, x_in, p->n1w, p->n1b, M, D);
    /* each image's attention while its rows of qkv are in the cache of the
     * thread that made them (where the product runs on libxsmm's tiles: the
     * training step 1.7-2.1% faster on configs A and B, docs/PERF.md) */
    if (linear_tiled(M, D, 3 * D)) {
        attn_items ai = {.out = a->attn_out, .att = a->att, .qkv = a->qkv, .T = T, .D = D, .H = H};
        linear_forward_items(a->qkv, a->ln1, p->qkvw, p->qkvb, B, T, D, 3 * D, attention_forward_items, &ai);
    } else {
        linear_forward(a->qkv, a->ln1, p->qkvw, p->qkvb, M, D, 3 * D);
        attention_forward(a->attn_out, a->att, a->qkv, B, T, D, H);
    }
}

/* after attention: x_mid = res + proj(attn_out), x_out = x_mid +
 * MLP(LN2(x_mid)) on M rows; with drop path (keep_attn, keep_mlp not NULL,
 * M = B*T) each image's branch scaled before its residual is added */
static void after_attn_forward(block_acts *a, const vit_block *p, const float *res, int M, int B, int T, int D,
                               int Hd, const float *keep_attn, const float *keep_mlp)
{
    if (keep_attn) {
        linear_forward(a->x_mid, a->attn_out, p->projw, p->projb, M, D, D);
        scale_rows(a->x_mid, keep_attn, B, T, D);
        add_inplace(a->x_mid, res, (size_t)M * D);
    } else {
        linear_forward_residual(a->x_mid, a->attn_out, p->projw, p->projb, res, M, D, D);
    }
    layernorm_forward(a->ln2, a->m2, a->r2, a->x_mid, p->n2w, p->n2b, M, D);
    if (linear_tiled(M, D, Hd)) { /* the GELU on each row tile while in cache: A, B +2.2-2.8% */
        gelu_items gi = {a->gelu, a->dgelu, Hd};
        linear_forward_items(a->gelu, a->ln2, p->fc1w, p->fc1b, M, 1, D, Hd, gelu_rows, &gi);
    } else {
        linear_forward(a->gelu, a->ln2, p->fc1w, p->fc1b, M, D, Hd);
        gelu_forward(a->gelu, a->dgelu, a->gelu, (size_t)M * Hd); /* in place */
    }
    if (keep_mlp) {
        linear_forward(a->x_out, a->gelu, p->fc2w, p->fc2b, M, Hd, D);
        scale_rows(a->x_out, keep_mlp, B, T, D);
        add_inplace(a->x_out, a->x_mid, (size_t)M * D);
    } else {
        linear_forward_residual(a->x_out, a->gelu, p->fc2w, p->fc2b, a->x_mid, M, Hd, D);
    }
}

void block_forward_after_attn(block_acts *a, const vit_block *p, const float *res, int M, int D, int Hd)
{
    after_attn_forward(a, p, res, M, 1, M, D, Hd, NULL, NULL);
}

/* x_out = x_mid + MLP(LN2(x_mid)), x_mid = x_in + Attn(LN1(x_in)); rows = B*T */
void block_forward_ex(block_acts *a, const vit_block *p, const float *x_in, int B, int T, int D,
                      int H, int Hd, const float *keep_attn, const float *keep_mlp)
{
    block_forward_attn(a, p, x_in, B, T, D, H);
    after_attn_forward(a, p, x_in, B * T, B, T, D, Hd, keep_attn, keep_mlp);
}

void block_forward(block_acts *a, const vit_block *p, const float *x_in, int B, int T, int D,
                   int H, int Hd)
{
    block_forward_ex(a, p, x_in, B, T, D, H, Hd, NULL, NULL);
}

void block_backward_attn(const block_acts *a, const vit_block *p, vit_block *g, const float *x_in, float *dx,
                         float *dtmp, block_scratch *s, int B, int T, int D, int H)
{
    int M = B * T;
    /* each image's attention backward just before the qkv product's
     * backward reads its rows; dtmp is attention's input, then (row by
     * row, after it is read) the qkv product's output */
    attn_items ai = {.dqkv = s->dqkv, .qkv = a->qkv, .att_in = a->att, .dout = dtmp, .s = s, .T = T, .D = D, .H = H};
    if (linear_tiled(M, D, 3 * D) && omp_get_max_threads() <= s->nthreads) { /* a scratch block per thread */
        linear_backward_items(dtmp, g->qkvw, g->qkvb, s->dqkv, a->ln1, p->qkvw, B, T, D, 3 * D,
                              attention_backward_items, &ai);
    } else {
        attention_backward(s->dqkv, dtmp, a->qkv, a->att, s->att, s->nthreads, B, T, D, H);
        linear_backward(dtmp, g->qkvw, g->qkvb, s->dqkv, a->ln1, p->qkvw, M, D, 3 * D);
    }
    /* The key bias adds q.b to every score of a row, which the softmax
     * ignores: its gradient is exactly zero. Write that, not rounding noise
     * (which AdamW, dividing by its own scale, would turn into steps). */
    memset(g->qkvb + D, 0, (size_t)D * sizeof(float));
    layernorm_backward(dx, g->n1w, g->n1b, dtmp, x_in, p->n1w, a->m1, a->r1, M, D);
}

/* the backward of after_attn_forward: dx on entry d(loss)/d(x_out), on exit
 * d(loss)/d(res); dtmp on exit d(loss)/d(attn_out) */
static void after_attn_backward(const block_acts *a, const vit_block *p, vit_block *g, float *dx, float *dtmp,
                                block_scratch *s, int M, int B, int T, int D, int Hd, const float *keep_attn,
                                const float *keep_mlp)
{
    const float *dbranch = dx;
    if (keep_mlp) { /* the MLP branch sees keep_mlp[b] * dx; dtmp is free until fc1's backward */
        memcpy(dtmp, dx, (size_t)M * D * sizeof(float));
        scale_rows(dtmp, keep_mlp, B, T, D);
        dbranch = dtmp;
    }
    linear_backward(s->dfc, g->fc2w, g->fc2b, dbranch, a->gelu, p->fc2w, M, Hd, D);
    gelu_backward(s->dfc, a->dgelu, s->dfc, (size_t)M * Hd);
    linear_backward(dtmp, g->fc1w, g->fc1b, s->dfc, a->ln2, p->fc1w, M, D, Hd);
    layernorm_backward(dx, g->n2w, g->n2b, dtmp, a->x_mid, p->n2w, a->m2, a->r2, M, D);
    dbranch = dx;
    if (keep_attn) { /* s->dqkv ([M, 3D]) is free until attention's backward */
        memcpy(s->dqkv, dx, (size_t)M * D * sizeof(float));
        scale_rows(s->dqkv, keep_attn, B, T, D);
        dbranch = s->dqkv;
    }
    linear_backward(dtmp, g->projw, g->projb, dbranch, a->attn_out, p->projw, M, D, D);
}

void block_backward_after_attn(const block_acts *a, const vit_block *p, vit_block *g, float *dx, float *dtmp,
                               block_scratch *s, int M, int D, int Hd)
{
    after_attn_backward(a, p, g, dx, dtmp, s, M, 1, M, D, Hd, NULL, NULL);
}

/* dx [B*T, D]: on entry d(loss)/d(x_out), on exit d(loss)/d(x_in). */
void block_backward_ex(const block_acts *a, const vit_block *p, vit_block *g, const float *x_in,
                       float *dx, float *dtmp, block_scratch *s, int B, int T, int D, int H, int Hd,
                       const float *keep_attn, const float *keep_mlp)
{
    after_attn_backward(a, p, g, dx, dtmp, s, B * T, B, T, D, Hd, keep_attn, keep_mlp);
    block_backward_attn(a, p, g, x_in, dx, dtmp, s, B, T, D, H);
}

void block_backward(const block_acts *a, const vit_block *p, vit_block *g, const float *x_in,
                    float *dx, float *dtmp, block_scratch *s, int B, int T, int D, int H, int Hd)
{
    block_backward_ex(a, p, g, x_in, dx, dtmp, s, B, T, D, H, Hd, NULL, NULL);
}

