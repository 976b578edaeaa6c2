/* The MAE forward and backward pass (docs/DESIGN.md, "One training step"),
 * every operation on activations through the model's backend. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "util.h"
#include "vit.h"

struct maec_workspace {
    maec_config cfg;
    const maec_backend *be;
    /* called with each block's gradients once the backward pass is done
     * with them (mae_ws_set_grad_hook) */
    void (*grad_hook)(void *ctx, float *g, size_t n);
    void *grad_ctx;
    int max_B;
    int L, K, Ke, Te, Td, P, Cpp, D, E;
    int all_rows, used_rows; /* mae_ws_all_rows, mae_ws_used_rows */
    float *patch_in, *tokens, *x0;
    block_acts *enc, *dec;
    float *enc_norm, *en_m, *en_r;
    float *dec_emb, *dec_in;
    float *dec_norm, *dn_m, *dn_r;
    float *pred_full, *pred, *target, *mask, *patches;
    int *ids_keep, *ids_restore;
    /* the host's masking (h_noise stays there), uploaded to mask, ids_keep,
     * ids_restore */
    float *h_noise, *h_mask;
    int *h_ids_keep, *h_ids_restore;
    float *images; /* a backend copy of the batch (backends without host memory) */
    float *h_pred, *h_target; /* host copies of pred and target (backends without host memory) */
    /* backward */
    float *dx_enc, *dtmp_enc, *dx_dec, *dtmp_dec, *dpred, *ddec_emb, *dtokens;
    /* the decoder's last block after attention on the masked patches'
     * rows alone, B*(L-K) of them in a row (decoder_forward): attention's
     * output, the residual and scratch */
    float *c_attn, *c_res, *c_tmp;
    block_scratch scratch;
    void *mem;
    size_t nbytes;
};

/* ------------------------------------------------------------ the arena */


static void carve(maec_workspace *w, arena *a)
{
    const maec_config *c = &w->cfg;
    int B = w->max_B, D = w->D, E = w->E, P = w->P;
    size_t BL = (size_t)B * w->L;
    w->patches = TAKE(a, BL * P);
    w->patch_in = TAKE(a, (size_t)B * w->Ke * w->Cpp);
    w->tokens = TAKE(a, (size_t)B * w->Ke * D);
    w->x0 = TAKE(a, (size_t)B * w->Te * D);
    for (int i = 0; i < c->depth; i++)
        carve_block(a, &w->enc[i], B, w->Te, D, c->heads, D * c->mlp_ratio);
    w->enc_norm = TAKE(a, (size_t)B * w->Te * D);
    w->en_m = TAKE(a, (size_t)B * w->Te);
    w->en_r = TAKE(a, (size_t)B * w->Te);
    int Tmax = w->Te, Wmax = D, Hmax = D * c->mlp_ratio;
    if (c->dec_depth > 0) {
        w->dec_emb = TAKE(a, (size_t)B * w->Te * E);
        w->dec_in = TAKE(a, (size_t)B * w->Td * E);
        for (int i = 0; i < c->dec_depth; i++)
            carve_block(a, &w->dec[i], B, w->Td, E, c->dec_heads, E * c->mlp_ratio);
        w->dec_norm = TAKE(a, (size_t)B * w->Td * E);
        w->dn_m = TAKE(a, (size_t)B * w->Td);
        w->dn_r = TAKE(a, (size_t)B * w->Td);
        w->pred_full = TAKE(a, (size_t)B * w->Td * P);
        w->dx_dec = TAKE(a, (size_t)B * w->Td * E);
        w->dtmp_dec = TAKE(a, (size_t)B * w->Td * E);
        w->dpred = TAKE(a, (size_t)B * w->Td * P);
        w->ddec_emb = TAKE(a, (size_t)B * w->Te * E);
        w->c_attn = TAKE(a, BL * E);
        w->c_res = TAKE(a, BL * E);
        w->c_tmp = TAKE(a, BL * E);
        if (w->Td > Tmax) Tmax = w->Td;
        if (E > Wmax) Wmax = E;
        if (E * c->mlp_ratio > Hmax) Hmax = E * c->mlp_ratio;
    }
    w->pred = TAKE(a, BL * P);
    w->target = TAKE(a, BL * P);
    w->mask = TAKE(a, BL);
    w->ids_keep = take(a, (size_t)B * w->K, sizeof(int));
    w->ids_restore = take(a, BL, sizeof(int));
    w->dx_enc = TAKE(a, (size_t)B * w->Te * D);
    w->dtmp_enc = TAKE(a, (size_t)B * w->Te * D);
    w->dtokens = TAKE(a, (size_t)B * w->Ke * D);
    if (!w->be->host_shared) w->images = TAKE(a, (size_t)B * c->in_chans * c->img_h * c->img_w);
    carve_scratch(w->be, a, &w->scratch, B, Tmax, Wmax, Hmax);
}

int maec_workspace_create(const maec_model *m, int max_batch, maec_workspace **out,
                          maec_error *err)
{
    *out = NULL;
    const maec_config *c = &m->cfg;
    if (max_batch < 1 || max_batch > 1 << 20)
        return maec_fail(err, MAEC_EINVAL, "batch size %d out of range", max_batch);
    maec_workspace *w = calloc(1, sizeof *w);
    if (!w) return maec_fail(err, MAEC_ENOMEM, "out of memory");
    w->cfg = *c;
    w->max_B = max_batch;
    w->L = maec_num_patches(c);
    w->K = maec_num_keep(c);
    w->Ke = c->mask_token_in_encoder ? w->L : w->K;
    w->Te = 1 + w->Ke;
    w->Td = 1 + w->L;
    w->P = maec_patch_dim(c);
    w->Cpp = w->P;
    w->D = c->dim;
    w->E = c->dec_dim;
    w->be = m->be;
    size_t BL = (size_t)max_batch * w->L;
    w->enc = calloc((size_t)c->depth + 1, sizeof(block_acts));
    w->dec = calloc((size_t)c->dec_depth + 1, sizeof(block_acts));
    w->h_noise = malloc(BL * sizeof(float));
    w->h_mask = malloc(BL * sizeof(float));
    w->h_ids_keep = malloc(((size_t)max_batch * w->K + 1) * sizeof(int));
    w->h_ids_restore = malloc(BL * sizeof(int));
    if (!w->enc || !w->dec || !w->h_noise || !w->h_mask || !w->h_ids_keep || !w->h_ids_restore) {
        maec_workspace_free(w);
        return maec_fail(err, MAEC_ENOMEM, "out of memory");
    }
    arena a = {NULL, 0};
    carve(w, &a);
    w->nbytes = a.used;
    w->mem = w->be->alloc(a.used);
    if (!w->mem) {
        char fits[160];
        activations_oom_hint(w->be, a.used, max_batch, fits, sizeof fits);
        maec_workspace_free(w);
        return maec_fail(err, MAEC_ENOMEM, "out of memory for activations (%zu MiB at batch %d%s)", a.used >> 20,
                         max_batch, fits);
    }
    a.base = w->mem;
    a.used = 0;
    carve(w, &a);
    *out = w;
    return 0;
}

void maec_workspace_free(maec_workspace *w)
{
    if (!w) return;
    free(w->enc);
    free(w->dec);
    free(w->h_noise);
    free(w->h_mask);
    free(w->h_ids_keep);
    free(w->h_ids_restore);
    free(w->h_pred);
    free(w->h_target);
    if (w->mem) w->be->free(w->mem);
    free(w);
}

/* the host's copy of n floats of backend memory src (src itself on a
 * host-memory backend), downloaded into *host, made on first use */
static const float *host_view(const maec_workspace *w, float **host, const float *src, size_t n)
{
    if (w->be->host_shared) return src;
    if (!*host && !(*host = malloc(n * sizeof(float)))) return NULL;
    w->be->download(*host, src, n * sizeof(float));
    return *host;
}

const float *maec_ws_pred(const maec_workspace *w)
{
    maec_workspace *mw = (maec_workspace *)w; /* the host copy is a cache */
    return host_view(w, &mw->h_pred, w->pred, (size_t)w->max_B * w->L * w->P);
}
void mae_ws_all_rows(maec_workspace *w, int all) { w->all_rows = all; }
void mae_ws_set_grad_hook(maec_workspace *w, void (*fn)(void *ctx, float *g, size_t n), void *ctx)
{
    w->grad_hook = fn;
    w->grad_ctx = ctx;
}

/* a block's gradients, done: its 12 tensors lie together, norm1.weight to
 * mlp.fc2.bias (width D) */
static void block_done(const maec_workspace *w, vit_block *g, int D)
{
    if (w->grad_hook) w->grad_hook(w->grad_ctx, g->n1w, (size_t)(g->fc2b + D - g->n1w));
}
int mae_ws_used_rows(const maec_workspace *w) { return w->used_rows; }
const float *maec_ws_mask(const maec_workspace *w) { return w->h_mask; }
const float *maec_ws_target(const maec_workspace *w)
{
    maec_workspace *mw = (maec_workspace *)w;
    return host_view(w, &mw->h_target, w->target, (size_t)w->max_B * w->L * w->P);
}

/* ------------------------------------------------------------ the model */

/* the official target: the patches, per-patch normalized with norm-pix */
static void make_target(maec_workspace *w, int B)
{
    const maec_backend *be = w->be;
    size_t n = (size_t)B * w->L;
    be->copy(w->target, w->patches, n * w->P * sizeof(float));
    if (w->cfg.norm_pix_loss) be->norm_pix(w->target, n, w->P);
}

/* the masking as the backend's ops take it: which patches the encoder
 * sees (NULL: all, in order) and where the decoder puts them (NULL: row
 * 1 + l); enc_patches: the encoder's patch rows (all L with the mask token
 * in the encoder) */
static const int *keep_ids(const maec_workspace *w) { return w->cfg.mask_token_in_encoder ? NULL : w->ids_keep; }
static const int *restore_ids(const maec_workspace *w)
{
    return w->cfg.mask_token_in_encoder ? NULL : w->ids_restore;
}
static int enc_patches(const maec_workspace *w) { return w->Ke; }

static void encoder_forward(maec_model *m, maec_workspace *w, const float *imgs, int B)
{
    const maec_backend *be = w->be;
    const maec_config *c = &m->cfg;
    const mae_views *p = &m->p;
    int D = w->D, Ke = w->Ke, Te = w->Te, menc = c->mask_token_in_encoder;
    encoder_embed_forward(be, w->x0, w->tokens, w->patch_in, imgs, keep_ids(w), menc ? w->mask : NULL,
                          p->enc_mask_token, p->cls_token, p->pos_embed, p->pe_w, p->pe_b, c, B, Ke);
    const float *x = w->x0;
    for (int i = 0; i < c->depth; i++) {
        block_forward(be, &w->enc[i], &p->blocks[i], x, B, Te, D, c->heads, D * c->mlp_ratio);
        x = w->enc[i].x_out;
    }
    be->layernorm_forward(w->enc_norm, w->en_m, w->en_r, x, p->norm_w, p->norm_b, B * Te, D);
}

/* The rows of the last block that reach the loss when training: the
 * masked patches', the last G = L - K of each image of Td (rows 1 + ids_restore), kept
 * together as B*G rows in a row from the last block's projection on
 * (c_attn, c_res, and the first B*G rows of that block's later activations,
 * the decoder norm's and the prediction's). Every other row's output is
 * dropped by the loss, so the work there is skipped (docs/PERF.md); the
 * sums of the rows kept are the same. */
static int compact_rows(const maec_workspace *w, int backward)
{
    const maec_config *c = &w->cfg;
    return backward && !w->all_rows && !c->mask_token_in_encoder && !c->loss_on_all && w->L > w->K &&
           c->dec_depth > 0;
}

/* the last block with its attention output and later activations in the
 * compact rows */
static block_acts compact_acts(const maec_workspace *w)
{
    block_acts a = w->dec[w->cfg.dec_depth - 1];
    a.attn_out = w->c_attn;
    return a;
}

static void decoder_forward(maec_model *m, maec_workspace *w, int B, int backward)
{
    const maec_backend *be = w->be;
    const maec_config *c = &m->cfg;
    const mae_views *p = &m->p;
    int D = w->D, E = w->E, Te = w->Te, Td = w->Td, L = w->L, K = w->K;
    be->linear_forward(w->dec_emb, w->enc_norm, p->dec_embed_w, p->dec_embed_b, NULL, B * Te, D, E);
    /* The decoder's rows: the cls token, then (menc aside) the kept
     * patches in the encoder's order, then the masked ones in the order of
     * the shuffle, each patch l in row 1 + ids_restore[l] with its position
     * embedding. The decoder does the same for every row whatever the rows'
     * order (attention has no other notion of position), and in this order
     * the rows that reach the loss lie together at the end of each image
     * (decoder_backward) and the kept ones come straight from the encoder's. */
    be->unshuffle_forward(w->dec_in, w->dec_emb, p->dec_pos_embed, restore_ids(w), p->mask_token, B, L,
                          enc_patches(w), E);
    int compact = compact_rows(w, backward), G = L - K, Hd = E * c->mlp_ratio;
    w->used_rows = compact;
    const float *x = w->dec_in;
    for (int i = 0; i < c->dec_depth; i++) {
        if (compact && i == c->dec_depth - 1) {
            block_forward_attn(be, &w->dec[i], &p->dec_blocks[i], x, B, Td, E, c->dec_heads);
            be->rows_gather(w->c_attn, w->dec[i].attn_out, B, Td, 1 + K, G, E);
            be->rows_gather(w->c_res, x, B, Td, 1 + K, G, E);
            block_acts ac = compact_acts(w);
            block_forward_after_attn(be, &ac, &p->dec_blocks[i], w->c_res, B * G, E, Hd);
        } else {
            block_forward(be, &w->dec[i], &p->dec_blocks[i], x, B, Td, E, c->dec_heads, Hd);
        }
        x = w->dec[i].x_out;
    }
    int R = compact ? B * G : B * Td; /* the rows from here on */
    be->layernorm_forward(w->dec_norm, w->dn_m, w->dn_r, x, p->dec_norm_w, p->dec_norm_b, R, E);
    be->linear_forward(w->pred_full, w->dec_norm, p->dec_pred_w, p->dec_pred_b, NULL, R, E, w->P);
    be->mae_pred_gather(w->pred, w->pred_full, restore_ids(w), compact, B, L, enc_patches(w), w->P);
}

/* the loss's weights: the mask, or none (every patch) */
static const float *loss_weights(const maec_workspace *w) { return w->cfg.loss_on_all ? NULL : w->mask; }

static void decoder_backward(maec_model *m, maec_workspace *w, int B)
{
    const maec_config *c = &m->cfg;
    const mae_views *p = &m->p;
    mae_views *g = &m->g;
    int D = w->D, E = w->E, Te = w->Te, Td = w->Td, L = w->L, K = w->K;
    const maec_backend *be = w->be;
    int Hd = E * c->mlp_ratio;
    int G = L - K, n = c->dec_depth;
    if (w->used_rows) { /* the last block after attention on the masked rows alone (decoder_forward) */
        int R = B * G;
        block_acts ac = compact_acts(w);
        be->linear_backward(w->c_tmp, g->dec_pred_w, g->dec_pred_b, w->dpred, w->dec_norm, p->dec_pred_w, R, E,
                            w->P);
        be->zero(w->c_res, (size_t)R * E * sizeof(float));
        be->layernorm_backward(w->c_res, g->dec_norm_w, g->dec_norm_b, w->c_tmp, ac.x_out, p->dec_norm_w, w->dn_m,
                           w->dn_r, R, E);
        block_backward_after_attn(be, &ac, &p->dec_blocks[n - 1], &g->dec_blocks[n - 1], w->c_res, w->c_tmp,
                                  &w->scratch, R, E, Hd);
        /* every other row's gradient is zero up to attention */
        be->rows_expand(w->dx_dec, w->c_res, B, Td, 1 + K, G, E);
        be->rows_expand(w->dtmp_dec, w->c_tmp, B, Td, 1 + K, G, E);
        block_backward_attn(be, &w->dec[n - 1], &p->dec_blocks[n - 1], &g->dec_blocks[n - 1],
                            n > 1 ? w->dec[n - 2].x_out : w->dec_in, w->dx_dec, w->dtmp_dec, &w->scratch, B, Td, E,
                            c->dec_heads);
        block_done(w, &g->dec_blocks[n - 1], E);
        n--;
    } else {
        be->linear_backward(w->dtmp_dec, g->dec_pred_w, g->dec_pred_b, w->dpred, w->dec_norm, p->dec_pred_w, B * Td,
                            E, w->P);
        be->zero(w->dx_dec, (size_t)B * Td * E * sizeof(float));
        const float *x_last = n ? w->dec[n - 1].x_out : w->dec_in;
        be->layernorm_backward(w->dx_dec, g->dec_norm_w, g->dec_norm_b, w->dtmp_dec, x_last, p->dec_norm_w, w->dn_m,
                           w->dn_r, B * Td, E);
    }
    for (int i = n - 1; i >= 0; i--) {
        const float *x_in = i ? w->dec[i - 1].x_out : w->dec_in;
        block_backward(be, &w->dec[i], &p->dec_blocks[i], &g->dec_blocks[i], x_in, w->dx_dec, w->dtmp_dec,
                       &w->scratch, B, Td, E, c->dec_heads, Hd);
        block_done(w, &g->dec_blocks[i], E);
    }
    /* un-shuffle backward: the cls and kept rows back to the encoder (the
     * same order), the masked rows' sum to the mask token */
    be->unshuffle_backward(w->ddec_emb, g->mask_token, w->dx_dec, B, L, enc_patches(w), E);
    be->linear_backward(w->dtmp_enc, g->dec_embed_w, g->dec_embed_b, w->ddec_emb, w->enc_norm, p->dec_embed_w, B * Te,
                        D, E);
}

static void encoder_backward(maec_model *m, maec_workspace *w, int B)
{
    const maec_backend *be = w->be;
    const maec_config *c = &m->cfg;
    const mae_views *p = &m->p;
    mae_views *g = &m->g;
    int D = w->D, Te = w->Te, Ke = w->Ke, menc = c->mask_token_in_encoder;
    be->zero(w->dx_enc, (size_t)B * Te * D * sizeof(float));
    const float *x_last = c->depth ? w->enc[c->depth - 1].x_out : w->x0;
    be->layernorm_backward(w->dx_enc, g->norm_w, g->norm_b, w->dtmp_enc, x_last, p->norm_w, w->en_m, w->en_r, B * Te,
                           D);
    for (int i = c->depth - 1; i >= 0; i--) {
        const float *x_in = i ? w->enc[i - 1].x_out : w->x0;
        block_backward(be, &w->enc[i], &p->blocks[i], &g->blocks[i], x_in, w->dx_enc, w->dtmp_enc, &w->scratch, B,
                       Te, D, c->heads, D * c->mlp_ratio);
        block_done(w, &g->blocks[i], D);
    }
    encoder_embed_backward(be, w->dtokens, w->dx_enc, menc ? w->mask : NULL, g->cls_token, NULL, g->enc_mask_token,
                           g->pe_w, g->pe_b, w->patch_in, p->pe_w, c, B, Ke);
}

int maec_forward_backward(maec_model *m, maec_workspace *w, const float *images, int B,
                          const float *noise, uint64_t *rng_state, int backward, float grad_scale,
                          float *loss, maec_error *err)
{
    const maec_config *c = &m->cfg;
    if (c->dec_depth < 1)
        return maec_fail(err, MAEC_EINVAL, "this model has no decoder (an encoder-only checkpoint)");
    if (B < 1 || B > w->max_B)
        return maec_fail(err, MAEC_EINVAL, "batch of %d images, the workspace holds %d", B, w->max_B);
    if (memcmp(&w->cfg, c, sizeof *c) != 0 || w->be != m->be)
        return maec_fail(err, MAEC_EINVAL, "workspace was made for another model configuration or backend");
    const maec_backend *be = w->be;
    size_t BL = (size_t)B * w->L;
    if (noise) {
        memcpy(w->h_noise, noise, BL * sizeof(float));
    } else {
        uint64_t local = 0;
        maec_make_noise(c, B, w->h_noise, rng_state ? rng_state : &local);
    }
    mask_from_noise(w->h_noise, B, w->L, w->K, w->h_ids_keep, w->h_ids_restore, w->h_mask);
    be->upload(w->mask, w->h_mask, BL * sizeof(float));
    be->upload(w->ids_keep, w->h_ids_keep, (size_t)B * w->K * sizeof(int));
    be->upload(w->ids_restore, w->h_ids_restore, BL * sizeof(int));
    const float *imgs = images;
    if (!be->host_shared) {
        be->upload(w->images, images, (size_t)B * c->in_chans * c->img_h * c->img_w * sizeof(float));
        imgs = w->images;
    }
    be->patchify(w->patches, imgs, B, c->in_chans, c->img_h, c->img_w, c->patch);
    make_target(w, B);
    encoder_forward(m, w, imgs, B);
    decoder_forward(m, w, B, backward);
    double l = be->mae_loss(w->pred, w->target, loss_weights(w), B, w->L, w->P);
    if (loss) *loss = (float)l;
    if (!isfinite(l)) return maec_fail(err, MAEC_ENONFINITE, "the loss is not finite (%g)", l);
    if (!backward) return 0;
    m->grads_zero = 0;
    be->mae_loss_backward(w->dpred, w->pred, w->target, loss_weights(w), restore_ids(w), w->used_rows, grad_scale, B,
                          w->L, enc_patches(w), w->P);
    decoder_backward(m, w, B);
    encoder_backward(m, w, B);
    return 0;
}

void maec_adamw_step(maec_model *m, const maec_adamw *o)
{
    m->step++;
    for (int i = 0; i < m->ntensors; i++) {
        const maec_tensor_info *t = &m->info[i];
        size_t off = t->offset;
        if (!t->trainable) { /* the update clears the others' */
            m->be->zero(m->dgrads + off, t->size * sizeof(float));
            continue;
        }
        m->be->adamw(m->dparams + off, m->dgrads + off, m->dadam_m + off, m->dadam_v + off, t->size,
                     o->lr, o->beta1, o->beta2, o->eps, t->decay ? o->weight_decay : 0.0f,
                     (long)m->step);
    }
    m->grads_zero = 1;
}

double maec_lr_at(double epoch, double lr, double min_lr, double warmup_epochs, double epochs)
{
    if (epoch < warmup_epochs) return lr * epoch / warmup_epochs;
    if (epochs <= warmup_epochs) return lr;
    return min_lr + (lr - min_lr) * 0.5 *
                        (1.0 + cos(3.14159265358979323846 * (epoch - warmup_epochs) / (epochs - warmup_epochs)));
}
