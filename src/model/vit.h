/* The ViT block, shared by the MAE encoder and decoder and the classifier:
 * activations carved from an arena, forward and backward. */
#ifndef MAEC_VIT_H
#define MAEC_VIT_H
#include <stddef.h>

#include "model.h"
#include "ops/ops.h"

/* A bump allocator over one allocation: a first pass with base NULL counts
 * the bytes, a second hands out 64-byte aligned pieces. */
typedef struct {
    char *base;
    size_t used;
} arena;

void *take(arena *a, size_t n, size_t elem);
#define TAKE(a, n) ((float *)take((a), (size_t)(n), sizeof(float)))

/* one block's saved activations, rows = B*T */
typedef struct {
    float *ln1, *m1, *r1, *qkv, *att, *attn_out, *x_mid, *ln2, *m2, *r2, *gelu, *dgelu, *x_out;
} block_acts;

/* backward scratch shared by all blocks */
typedef struct {
    float *dqkv, *dfc, *att;
    int nthreads;
} block_scratch;

void carve_block(arena *a, block_acts *ba, int B, int T, int D, int H, int Hd);
void carve_scratch(arena *a, block_scratch *s, int B, int Tmax, int Wmax, int Hmax, int nthreads);

/* x_out = x_mid + MLP(LN2(x_mid)), x_mid = x_in + Attn(LN1(x_in)) */
void block_forward(block_acts *a, const vit_block *p, const float *x_in, int B, int T, int D,
                   int H, int Hd);
/* dx [B*T, D]: on entry d(loss)/d(x_out), on exit d(loss)/d(x_in); parameter
 * gradients added into g; dtmp [B*T, D] scratch */
void block_backward(const block_acts *a, const vit_block *p, vit_block *g, const float *x_in,
                    float *dx, float *dtmp, block_scratch *s, int B, int T, int D, int H, int Hd);

/* The same with drop path (stochastic depth) in its deterministic form:
 * keep_attn[B] and keep_mlp[B] scale each sample's attention and MLP branch
 * (0 when dropped, 1/keep_prob when kept), before the residual addition;
 * NULL = no drop path (block_forward and block_backward pass NULL). The
 * backward pass uses s->dqkv (at least [B*T, D]) and dtmp as scratch. */
void block_forward_ex(block_acts *a, const vit_block *p, const float *x_in, int B, int T, int D,
                      int H, int Hd, const float *keep_attn, const float *keep_mlp);
void block_backward_ex(const block_acts *a, const vit_block *p, vit_block *g, const float *x_in,
                       float *dx, float *dtmp, block_scratch *s, int B, int T, int D, int H, int Hd,
                       const float *keep_attn, const float *keep_mlp);

/* block_backward when d(loss)/d(x_out) is zero outside the rows g (the
 * decoder's last block, where only the masked patches' rows reach the
 * loss): the MLP branch and the projection after attention, row-wise, run
 * on those rows alone; attention and what is before it on all. The same
 * gradients as block_backward, up to the order of the sums. */
void block_backward_rows(const block_acts *a, const vit_block *p, vit_block *g, const float *x_in,
                         float *dx, float *dtmp, block_scratch *s, int B, int T, int D, int H, int Hd,
                         row_groups rows);
#endif
