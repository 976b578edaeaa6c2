/* The ViT block (pre-norm attention + MLP), forward and backward, through
 * the backend's ops (backend/backend.h). */
#include <stdio.h>
#include <string.h>

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

void activations_oom_hint(const maec_backend *be, size_t bytes, int B, char *buf, size_t n)
{
    buf[0] = 0;
    if (!be->mem_free || !bytes || B < 1) return;
    size_t fr = be->mem_free();
    /* bytes per image, and room kept for what else a step allocates */
    double per = (double)bytes / B;
    long fits = (long)(0.9 * (double)fr / per);
    if (fits >= 1)
        snprintf(buf, n, "; the GPU has %zu MiB free: a batch of about %ld fits", fr >> 20, fits);
    else
        snprintf(buf, n, "; the GPU has %zu MiB free: not even one image fits", fr >> 20);
}

void carve_scratch(const maec_backend *be, arena *a, block_scratch *s, int B, int Tmax, int Wmax, int Hmax)
{
    s->dqkv = TAKE(a, (size_t)B * Tmax * 3 * Wmax);
    s->dfc = TAKE(a, (size_t)B * Tmax * Hmax);
    s->natt = be->attention_scratch(B, Tmax);
    s->att = s->natt ? TAKE(a, s->natt) : NULL; /* none: no pointer (it could be one past the arena) */
}

void block_forward_attn(const maec_backend *be, block_acts *a, const vit_block *p, const float *x_in, int B,
                        int T, int D, int H)
{
    be->layernorm_forward(a->ln1, a->m1, a->r1, x_in, p->n1w, p->n1b, B * T, D);
    be->attention_forward(a->attn_out, a->att, a->qkv, a->ln1, p->qkvw, p->qkvb, B, T, D, H);
}

/* after attention: x_mid = res + proj(attn_out), x_out = x_mid +
 * MLP(LN2(x_mid)) on M rows; with drop path (keep_attn, keep_mlp not NULL,
 * M = B*T) each image's branch scaled before its residual is added */
static void after_attn_forward(const maec_backend *be, block_acts *a, const vit_block *p, const float *res, int M,
                               int B, int T, int D, int Hd, const float *keep_attn, const float *keep_mlp)
{
    if (keep_attn) {
        be->linear_forward(a->x_mid, a->attn_out, p->projw, p->projb, NULL, M, D, D);
        be->scale_rows(a->x_mid, keep_attn, B, T, D);
        be->add(a->x_mid, res, (size_t)M * D);
    } else {
        be->linear_forward(a->x_mid, a->attn_out, p->projw, p->projb, res, M, D, D);
    }
    be->layernorm_forward(a->ln2, a->m2, a->r2, a->x_mid, p->n2w, p->n2b, M, D);
    be->linear_gelu_forward(a->gelu, a->dgelu, a->ln2, p->fc1w, p->fc1b, M, D, Hd);
    if (keep_mlp) {
        be->linear_forward(a->x_out, a->gelu, p->fc2w, p->fc2b, NULL, M, Hd, D);
        be->scale_rows(a->x_out, keep_mlp, B, T, D);
        be->add(a->x_out, a->x_mid, (size_t)M * D);
    } else {
        be->linear_forward(a->x_out, a->gelu, p->fc2w, p->fc2b, a->x_mid, M, Hd, D);
    }
}

void block_forward_after_attn(const maec_backend *be, block_acts *a, const vit_block *p, const float *res, int M,
                              int D, int Hd)
{
    after_attn_forward(be, a, p, res, M, 1, M, D, Hd, NULL, NULL);
}

/* x_out = x_mid + MLP(LN2(x_mid)), x_mid = x_in + Attn(LN1(x_in)); rows = B*T */
void block_forward_ex(const maec_backend *be, block_acts *a, const vit_block *p, const float *x_in, int B, int T,
                      int D, int H, int Hd, const float *keep_attn, const float *keep_mlp)
{
    block_forward_attn(be, a, p, x_in, B, T, D, H);
    after_attn_forward(be, a, p, x_in, B * T, B, T, D, Hd, keep_attn, keep_mlp);
}

void block_forward(const maec_backend *be, block_acts *a, const vit_block *p, const float *x_in, int B, int T, int D,
                   int H, int Hd)
{
    block_forward_ex(be, a, p, x_in, B, T, D, H, Hd, NULL, NULL);
}

void block_backward_attn(const maec_backend *be, const block_acts *a, const vit_block *p, vit_block *g,
                         const float *x_in, float *dx, float *dtmp, block_scratch *s, int B, int T, int D, int H)
{
    /* dtmp: d(loss)/d(attn_out) in, d(loss)/d(ln1) out */
    be->attention_backward(dtmp, g->qkvw, g->qkvb, s->dqkv, s->att, s->natt, a->qkv, a->att, a->ln1, p->qkvw, B, T,
                           D, H);
    be->layernorm_backward(dx, g->n1w, g->n1b, dtmp, x_in, p->n1w, a->m1, a->r1, B * T, D);
}

/* the backward of after_attn_forward: dx on entry d(loss)/d(x_out), on exit
 * d(loss)/d(res); dtmp on exit d(loss)/d(attn_out) */
static void after_attn_backward(const maec_backend *be, const block_acts *a, const vit_block *p, vit_block *g,
                                float *dx, float *dtmp, block_scratch *s, int M, int B, int T, int D, int Hd,
                                const float *keep_attn, const float *keep_mlp)
{
    const float *dbranch = dx;
    if (keep_mlp) { /* the MLP branch sees keep_mlp[b] * dx; dtmp is free until fc1's backward */
        be->copy(dtmp, dx, (size_t)M * D * sizeof(float));
        be->scale_rows(dtmp, keep_mlp, B, T, D);
        dbranch = dtmp;
    }
    be->linear_backward(s->dfc, g->fc2w, g->fc2b, dbranch, a->gelu, p->fc2w, M, Hd, D);
    be->gelu_backward(s->dfc, a->dgelu, s->dfc, (size_t)M * Hd);
    be->linear_backward(dtmp, g->fc1w, g->fc1b, s->dfc, a->ln2, p->fc1w, M, D, Hd);
    be->layernorm_backward(dx, g->n2w, g->n2b, dtmp, a->x_mid, p->n2w, a->m2, a->r2, M, D);
    dbranch = dx;
    if (keep_attn) { /* s->dqkv ([M, 3D]) is free until attention's backward */
        be->copy(s->dqkv, dx, (size_t)M * D * sizeof(float));
        be->scale_rows(s->dqkv, keep_attn, B, T, D);
        dbranch = s->dqkv;
    }
    be->linear_backward(dtmp, g->projw, g->projb, dbranch, a->attn_out, p->projw, M, D, D);
}

void block_backward_after_attn(const maec_backend *be, const block_acts *a, const vit_block *p, vit_block *g,
                               float *dx, float *dtmp, block_scratch *s, int M, int D, int Hd)
{
    after_attn_backward(be, a, p, g, dx, dtmp, s, M, 1, M, D, Hd, NULL, NULL);
}

/* dx [B*T, D]: on entry d(loss)/d(x_out), on exit d(loss)/d(x_in). */
void block_backward_ex(const maec_backend *be, const block_acts *a, const vit_block *p, vit_block *g,
                       const float *x_in, float *dx, float *dtmp, block_scratch *s, int B, int T, int D, int H, int Hd,
                       const float *keep_attn, const float *keep_mlp)
{
    after_attn_backward(be, a, p, g, dx, dtmp, s, B * T, B, T, D, Hd, keep_attn, keep_mlp);
    block_backward_attn(be, a, p, g, x_in, dx, dtmp, s, B, T, D, H);
}

void block_backward(const maec_backend *be, const block_acts *a, const vit_block *p, vit_block *g,
                    const float *x_in, float *dx, float *dtmp, block_scratch *s, int B, int T, int D, int H, int Hd)
{
    block_backward_ex(be, a, p, g, x_in, dx, dtmp, s, B, T, D, H, Hd, NULL, NULL);
}

void encoder_embed_forward(const maec_backend *be, float *x0, float *tokens, float *patch_in, const float *imgs,
                           const int *ids, const float *swap, const float *swap_tok, const float *cls, const float *pos,
                           const float *pe_w, const float *pe_b, const maec_config *c, int B, int K)
{
    int D = c->dim, Cpp = maec_patch_dim(c);
    be->patch_gather(patch_in, imgs, ids, B, K, c->in_chans, c->img_h, c->img_w, c->patch);
    be->linear_forward(tokens, patch_in, pe_w, pe_b, NULL, B * K, Cpp, D);
    be->embed_forward(x0, tokens, cls, pos, ids, swap, swap_tok, B, K, D);
}

void encoder_embed_backward(const maec_backend *be, float *dtokens, const float *dx0, const float *swap, float *dcls,
                            float *dpos, float *dswap_tok, float *dpe_w, float *dpe_b, const float *patch_in,
                            const float *pe_w, const maec_config *c, int B, int K)
{
    int D = c->dim;
    be->embed_backward(dtokens, dcls, dpos, dswap_tok, dx0, swap, B, K, D);
    be->linear_backward(NULL, dpe_w, dpe_b, dtokens, patch_in, pe_w, B * K, maec_patch_dim(c), D);
}
