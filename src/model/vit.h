/* The ViT block, shared by the MAE encoder and decoder and the classifier:
 * activations carved from an arena, forward and backward, every op through
 * the backend be (backend/backend.h). */
#ifndef MAEC_VIT_H
#define MAEC_VIT_H
#include <stddef.h>

#include "model.h"
#include "backend/backend.h"

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
    size_t natt; /* floats of att: the backend's attention_scratch */
} block_scratch;

void carve_block(arena *a, block_acts *ba, int B, int T, int D, int H, int Hd);
void carve_scratch(const maec_backend *be, arena *a, block_scratch *s, int B, int Tmax, int Wmax, int Hmax);
/* after a workspace of `bytes` at batch B did not fit: on a device that
 * says what it has free, "; the GPU has N MiB free: a batch of about K
 * fits" (activations grow with the batch), else "" */
void activations_oom_hint(const maec_backend *be, size_t bytes, int B, char *buf, size_t n);

/* x_out = x_mid + MLP(LN2(x_mid)), x_mid = x_in + Attn(LN1(x_in)) */
void block_forward(const maec_backend *be, block_acts *a, const vit_block *p, const float *x_in, int B, int T, int D,
                   int H, int Hd);
/* dx [B*T, D]: on entry d(loss)/d(x_out), on exit d(loss)/d(x_in); parameter
 * gradients added into g; dtmp [B*T, D] scratch */
void block_backward(const maec_backend *be, const block_acts *a, const vit_block *p, vit_block *g, const float *x_in,
                    float *dx, float *dtmp, block_scratch *s, int B, int T, int D, int H, int Hd);

/* The same with drop path (stochastic depth) in its deterministic form:
 * keep_attn[B] and keep_mlp[B] scale each sample's attention and MLP branch
 * (0 when dropped, 1/keep_prob when kept), before the residual addition;
 * NULL = no drop path (block_forward and block_backward pass NULL). The
 * backward pass uses s->dqkv (at least [B*T, D]) and dtmp as scratch. */
void block_forward_ex(const maec_backend *be, block_acts *a, const vit_block *p, const float *x_in, int B, int T, int D,
                      int H, int Hd, const float *keep_attn, const float *keep_mlp);
void block_backward_ex(const maec_backend *be, const block_acts *a, const vit_block *p, vit_block *g, const float *x_in,
                       float *dx, float *dtmp, block_scratch *s, int B, int T, int D, int H, int Hd,
                       const float *keep_attn, const float *keep_mlp);

/* The block in its two halves, for the decoder's last block, whose rows
 * after attention the MAE computes for the masked patches alone (mae.c):
 * block_forward_attn: LN1, qkv and attention on all B*T rows, into
 * a->attn_out; block_forward_after_attn: x_mid = res + proj(a->attn_out),
 * x_out = x_mid + MLP(LN2(x_mid)), on M rows of a->attn_out, whatever rows
 * those are. block_backward_after_attn: dx on entry d(loss)/d(x_out), on
 * exit d(loss)/d(res), dtmp on exit d(loss)/d(attn_out), all M rows;
 * block_backward_attn: from dtmp = d(loss)/d(attn_out) of all B*T rows,
 * attention, qkv and LN1, LN1's input gradient added into dx. Together the
 * same sums, in the same order, as block_forward and block_backward. */
void block_forward_attn(const maec_backend *be, block_acts *a, const vit_block *p, const float *x_in, int B, int T, int D, int H);
void block_forward_after_attn(const maec_backend *be, block_acts *a, const vit_block *p, const float *res, int M, int D, int Hd);
void block_backward_after_attn(const maec_backend *be, const block_acts *a, const vit_block *p, vit_block *g, float *dx, float *dtmp,
                               block_scratch *s, int M, int D, int Hd);
void block_backward_attn(const maec_backend *be, const block_acts *a, const vit_block *p, vit_block *g, const float *x_in, float *dx,
                         float *dtmp, block_scratch *s, int B, int T, int D, int H);
/* The encoder's input, shared by the MAE and the classifier: patches
 * ids[b*K + k] of imgs [B,C,H,W] (ids NULL: all K = L in order) into
 * patch_in [B,K,C*p*p], embedded into tokens [B,K,D], then x0 [B,1+K,D]:
 * the class token and the position embeddings added, a token swapped for
 * swap_tok where swap[b*K + k] > 0 (the mask token in the encoder; swap
 * NULL: none). The backward pass from dx0: dtokens [B,K,D] (scratch), the
 * class token's, position embeddings' (dpos NULL: fixed), swapped token's
 * and patch embedding's gradients added. */
void encoder_embed_forward(const maec_backend *be, float *x0, float *tokens, float *patch_in, const float *imgs,
                           const int *ids, const float *swap, const float *swap_tok, const float *cls, const float *pos,
                           const float *pe_w, const float *pe_b, const maec_config *c, int B, int K);
void encoder_embed_backward(const maec_backend *be, float *dtokens, const float *dx0, const float *swap, float *dcls,
                            float *dpos, float *dswap_tok, float *dpe_w, float *dpe_b, const float *patch_in,
                            const float *pe_w, const maec_config *c, int B, int K);
#endif
