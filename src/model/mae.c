/* The MAE forward and backward pass (DESIGN.md, "One training step"). */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "vit.h"
#include "ops/ops.h"
#include "util.h"

struct maec_workspace {
    maec_config cfg;
    int max_B;
    int L, K, Ke, Te, Td, P, Cpp, D, E;
    int nthreads;
    int all_rows, used_rows; /* mae_ws_all_rows, mae_ws_used_rows */
    float *patch_in, *tokens, *x0;
    block_acts *enc, *dec;
    float *enc_norm, *en_m, *en_r;
    float *dec_emb, *dec_in;
    float *dec_norm, *dn_m, *dn_r;
    float *pred_full, *pred, *target, *mask, *noise, *patches;
    int *ids_keep, *ids_restore;
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
    w->noise = TAKE(a, BL);
    w->ids_keep = take(a, (size_t)B * w->K, sizeof(int));
    w->ids_restore = take(a, BL, sizeof(int));
    w->dx_enc = TAKE(a, (size_t)B * w->Te * D);
    w->dtmp_enc = TAKE(a, (size_t)B * w->Te * D);
    w->dtokens = TAKE(a, (size_t)B * w->Ke * D);
    carve_scratch(a, &w->scratch, B, Tmax, Wmax, Hmax, w->nthreads);
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
    w->nthreads = omp_get_max_threads();
    w->enc = calloc((size_t)c->depth + 1, sizeof(block_acts));
    w->dec = calloc((size_t)c->dec_depth + 1, sizeof(block_acts));
    if (!w->enc || !w->dec) {
        maec_workspace_free(w);
        return maec_fail(err, MAEC_ENOMEM, "out of memory");
    }
    arena a = {NULL, 0};
    carve(w, &a);
    w->nbytes = a.used;
    w->mem = maec_alloc(a.used);
    if (!w->mem) {
        maec_workspace_free(w);
        return maec_fail(err, MAEC_ENOMEM, "out of memory for activations (%zu MiB at batch %d)",
                         a.used >> 20, max_batch);
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
    maec_free(w->mem);
    free(w);
}

const float *maec_ws_pred(const maec_workspace *w) { return w->pred; }
void mae_ws_all_rows(maec_workspace *w, int all) { w->all_rows = all; }
int mae_ws_used_rows(const maec_workspace *w) { return w->used_rows; }
const float *maec_ws_mask(const maec_workspace *w) { return w->mask; }
const float *maec_ws_target(const maec_workspace *w) { return w->target; }

/* ------------------------------------------------------------ the model */

/* Conv-order patch vectors (c, i, j) of the encoded positions. */
static void gather_patch_inputs(maec_workspace *w, const float *imgs, int B)
{
    const maec_config *c = &w->cfg;
    int p = c->patch, C = c->in_chans, H = c->img_h, W = c->img_w, gw = W / p;
    int Ke = w->Ke, menc = c->mask_token_in_encoder;
#pragma omp parallel for schedule(static) collapse(2)
    for (int b = 0; b < B; b++)
        for (int k = 0; k < Ke; k++) {
            int l = menc ? k : w->ids_keep[(size_t)b * w->K + k];
            int y = l / gw, x = l % gw;
            float *dst = w->patch_in + ((size_t)b * Ke + k) * w->Cpp;
            for (int ch = 0; ch < C; ch++)
                for (int i = 0; i < p; i++)
                    memcpy(dst + (ch * p + i) * p,
                           imgs + (((size_t)b * C + ch) * H + y * p + i) * W + x * p,
                           (size_t)p * sizeof(float));
        }
}

static void make_target(maec_workspace *w, int B)
{
    const maec_config *c = &w->cfg;
    int P = w->P;
    size_t n = (size_t)B * w->L;
    memcpy(w->target, w->patches, n * P * sizeof(float));
    if (!c->norm_pix_loss) return;
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < n; r++) {
        float *t = w->target + r * P;
        double s = 0;
        for (int i = 0; i < P; i++) s += t[i];
        float mu = (float)(s / P);
        double v = 0;
        for (int i = 0; i < P; i++) v += (double)(t[i] - mu) * (t[i] - mu);
        float sd = sqrtf((float)(v / (P - 1)) + 1e-6f);
        for (int i = 0; i < P; i++) t[i] = (t[i] - mu) / sd;
    }
}

/* the decoder's row of patch l of image b (decoder_forward) */
static inline int dec_row(const maec_workspace *w, int b, int l)
{
    return w->cfg.mask_token_in_encoder ? 1 + l : 1 + w->ids_restore[(size_t)b * w->L + l];
}

static void encoder_forward(maec_model *m, maec_workspace *w, int B)
{
    const maec_config *c = &m->cfg;
    const mae_views *p = &m->p;
    int D = w->D, Ke = w->Ke, Te = w->Te, menc = c->mask_token_in_encoder;
    linear_forward(w->tokens, w->patch_in, p->pe_w, p->pe_b, B * Ke, w->Cpp, D);
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        float *x = w->x0 + (size_t)b * Te * D;
        for (int d = 0; d < D; d++) x[d] = p->cls_token[d] + p->pos_embed[d];
        for (int k = 0; k < Ke; k++) {
            int l = menc ? k : w->ids_keep[(size_t)b * w->K + k];
            const float *pos = p->pos_embed + (size_t)(1 + l) * D;
            float *dst = x + (size_t)(1 + k) * D;
            const float *src = (menc && w->mask[(size_t)b * w->L + l] > 0) ? p->enc_mask_token
                                                                           : w->tokens + ((size_t)b * Ke + k) * D;
            for (int d = 0; d < D; d++) dst[d] = src[d] + pos[d];
        }
    }
    const float *x = w->x0;
    for (int i = 0; i < c->depth; i++) {
        block_forward(&w->enc[i], &p->blocks[i], x, B, Te, D, c->heads, D * c->mlp_ratio);
        x = w->enc[i].x_out;
    }
    layernorm_forward(w->enc_norm, w->en_m, w->en_r, x, p->norm_w, p->norm_b, B * Te, D);
}

/* The rows of the last block that reach the loss when training: the
 * masked patches', the last G = L - K of each image of Td (dec_row), kept
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

/* rows [off, off + G) of each of B images of T rows (stride D) <-> B*G rows in
 * a row; expanding zeroes the images' other rows */
static void rows_gather(float *dst, const float *src, int B, int T, int off, int G, int D)
{
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++)
        memcpy(dst + (size_t)b * G * D, src + ((size_t)b * T + off) * D, (size_t)G * D * sizeof(float));
}

static void rows_expand(float *dst, const float *src, int B, int T, int off, int G, int D)
{
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        float *d = dst + (size_t)b * T * D;
        memset(d, 0, (size_t)off * D * sizeof(float));
        memcpy(d + (size_t)off * D, src + (size_t)b * G * D, (size_t)G * D * sizeof(float));
        memset(d + (size_t)(off + G) * D, 0, (size_t)(T - off - G) * D * sizeof(float));
    }
}

/* the row of pred_full and dpred that decoder row t of image b lands in
 * (t > K where the rows are compact) */
static inline size_t pred_row(const maec_workspace *w, int b, int t)
{
    return w->used_rows ? (size_t)b * (w->L - w->K) + t - 1 - w->K : (size_t)b * w->Td + t;
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
    const maec_config *c = &m->cfg;
    const mae_views *p = &m->p;
    int D = w->D, E = w->E, Te = w->Te, Td = w->Td, L = w->L, K = w->K;
    int menc = c->mask_token_in_encoder;
    linear_forward(w->dec_emb, w->enc_norm, p->dec_embed_w, p->dec_embed_b, B * Te, D, E);
    /* The decoder's rows: the cls token, then (menc aside) the kept
     * patches in the encoder's order, then the masked ones in the order of
     * the shuffle, each patch l in row dec_row(w, b, l) with its position
     * embedding. The decoder does the same for every row whatever the rows'
     * order (attention has no other notion of position), and in this order
     * the rows that reach the loss lie together at the end of each image
     * (decoder_backward) and the kept ones come straight from the encoder's. */
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        float *x = w->dec_in + (size_t)b * Td * E;
        const float *y = w->dec_emb + (size_t)b * Te * E;
        for (int d = 0; d < E; d++) x[d] = y[d] + p->dec_pos_embed[d];
        for (int l = 0; l < L; l++) {
            int t = dec_row(w, b, l);
            const float *src = menc || t <= K ? y + (size_t)t * E : p->mask_token;
            const float *pos = p->dec_pos_embed + (size_t)(1 + l) * E;
            for (int d = 0; d < E; d++) x[(size_t)t * E + d] = src[d] + pos[d];
        }
    }
    int compact = compact_rows(w, backward), G = L - K, Hd = E * c->mlp_ratio;
    w->used_rows = compact;
    const float *x = w->dec_in;
    for (int i = 0; i < c->dec_depth; i++) {
        if (compact && i == c->dec_depth - 1) {
            block_forward_attn(&w->dec[i], &p->dec_blocks[i], x, B, Td, E, c->dec_heads);
            rows_gather(w->c_attn, w->dec[i].attn_out, B, Td, 1 + K, G, E);
            rows_gather(w->c_res, x, B, Td, 1 + K, G, E);
            block_acts ac = compact_acts(w);
            block_forward_after_attn(&ac, &p->dec_blocks[i], w->c_res, B * G, E, Hd);
        } else {
            block_forward(&w->dec[i], &p->dec_blocks[i], x, B, Td, E, c->dec_heads, Hd);
        }
        x = w->dec[i].x_out;
    }
    int R = compact ? B * G : B * Td; /* the rows from here on */
    layernorm_forward(w->dec_norm, w->dn_m, w->dn_r, x, p->dec_norm_w, p->dec_norm_b, R, E);
    linear_forward(w->pred_full, w->dec_norm, p->dec_pred_w, p->dec_pred_b, R, E, w->P);
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++)
        for (int l = 0; l < L; l++) {
            float *dst = w->pred + ((size_t)b * L + l) * w->P;
            int t = dec_row(w, b, l);
            if (compact && t <= K) /* a kept patch's prediction, not made */
                memset(dst, 0, (size_t)w->P * sizeof(float));
            else
                memcpy(dst, w->pred_full + pred_row(w, b, t) * w->P, (size_t)w->P * sizeof(float));
        }
}

/* loss = sum_{b,l} mask * mean_P (pred - target)^2 / sum(mask) */
static double compute_loss(maec_workspace *w, int B)
{
    int P = w->P;
    size_t n = (size_t)B * w->L;
    double total = 0, msum = 0;
    for (size_t r = 0; r < n; r++) {
        float wt = w->cfg.loss_on_all ? 1.0f : w->mask[r];
        msum += wt;
        if (wt == 0) continue;
        const float *a = w->pred + r * P, *t = w->target + r * P;
        double s = 0;
        for (int i = 0; i < P; i++) {
            double d = (double)a[i] - t[i];
            s += d * d;
        }
        total += wt * s / P;
    }
    return total / msum;
}

static void loss_backward(maec_workspace *w, int B, float grad_scale)
{
    int P = w->P, L = w->L, Td = w->Td;
    double msum = 0;
    for (size_t r = 0; r < (size_t)B * L; r++) msum += w->cfg.loss_on_all ? 1.0f : w->mask[r];
    float k = (float)(2.0 * grad_scale / (P * msum));
    int compact = w->used_rows;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        if (!compact) memset(w->dpred + (size_t)b * Td * P, 0, (size_t)P * sizeof(float));
        for (int l = 0; l < L; l++) {
            size_t r = (size_t)b * L + l;
            float wt = w->cfg.loss_on_all ? 1.0f : w->mask[r];
            int row = dec_row(w, b, l);
            if (compact && row <= w->K) continue; /* kept: no row, and a weight of 0 */
            float *d = w->dpred + pred_row(w, b, row) * P;
            const float *a = w->pred + r * P, *t = w->target + r * P;
            for (int i = 0; i < P; i++) d[i] = wt * k * (a[i] - t[i]);
        }
    }
}

static void decoder_backward(maec_model *m, maec_workspace *w, int B)
{
    const maec_config *c = &m->cfg;
    const mae_views *p = &m->p;
    mae_views *g = &m->g;
    int D = w->D, E = w->E, Te = w->Te, Td = w->Td, L = w->L, K = w->K;
    int menc = c->mask_token_in_encoder;
    int Hd = E * c->mlp_ratio;
    int G = L - K, n = c->dec_depth;
    if (w->used_rows) { /* the last block after attention on the masked rows alone (decoder_forward) */
        int R = B * G;
        block_acts ac = compact_acts(w);
        linear_backward(w->c_tmp, g->dec_pred_w, g->dec_pred_b, w->dpred, w->dec_norm, p->dec_pred_w, R, E, w->P);
        memset(w->c_res, 0, (size_t)R * E * sizeof(float));
        layernorm_backward(w->c_res, g->dec_norm_w, g->dec_norm_b, w->c_tmp, ac.x_out, p->dec_norm_w, w->dn_m,
                           w->dn_r, R, E);
        block_backward_after_attn(&ac, &p->dec_blocks[n - 1], &g->dec_blocks[n - 1], w->c_res, w->c_tmp,
                                  &w->scratch, R, E, Hd);
        /* every other row's gradient is zero up to attention */
        rows_expand(w->dx_dec, w->c_res, B, Td, 1 + K, G, E);
        rows_expand(w->dtmp_dec, w->c_tmp, B, Td, 1 + K, G, E);
        block_backward_attn(&w->dec[n - 1], &p->dec_blocks[n - 1], &g->dec_blocks[n - 1],
                            n > 1 ? w->dec[n - 2].x_out : w->dec_in, w->dx_dec, w->dtmp_dec, &w->scratch, B, Td, E,
                            c->dec_heads);
        n--;
    } else {
        linear_backward(w->dtmp_dec, g->dec_pred_w, g->dec_pred_b, w->dpred, w->dec_norm, p->dec_pred_w, B * Td, E,
                        w->P);
        memset(w->dx_dec, 0, (size_t)B * Td * E * sizeof(float));
        const float *x_last = n ? w->dec[n - 1].x_out : w->dec_in;
        layernorm_backward(w->dx_dec, g->dec_norm_w, g->dec_norm_b, w->dtmp_dec, x_last, p->dec_norm_w, w->dn_m,
                           w->dn_r, B * Td, E);
    }
    for (int i = n - 1; i >= 0; i--) {
        const float *x_in = i ? w->dec[i - 1].x_out : w->dec_in;
        block_backward(&w->dec[i], &p->dec_blocks[i], &g->dec_blocks[i], x_in, w->dx_dec, w->dtmp_dec,
                       &w->scratch, B, Td, E, c->dec_heads, Hd);
    }
    /* un-shuffle backward: the cls and kept rows back to the encoder (the
     * same order), the masked rows' sum to the mask token */
    if (menc) {
        memcpy(w->ddec_emb, w->dx_dec, (size_t)B * Td * E * sizeof(float));
    } else {
        for (int b = 0; b < B; b++) {
            const float *dx = w->dx_dec + (size_t)b * Td * E;
            memcpy(w->ddec_emb + (size_t)b * Te * E, dx, (size_t)(1 + K) * E * sizeof(float));
            for (int t = 1 + K; t < Td; t++)
                for (int d = 0; d < E; d++) g->mask_token[d] += dx[(size_t)t * E + d];
        }
    }
    linear_backward(w->dtmp_enc, g->dec_embed_w, g->dec_embed_b, w->ddec_emb, w->enc_norm,
                    p->dec_embed_w, B * Te, D, E);
}

static void encoder_backward(maec_model *m, maec_workspace *w, int B)
{
    const maec_config *c = &m->cfg;
    const mae_views *p = &m->p;
    mae_views *g = &m->g;
    int D = w->D, Te = w->Te, Ke = w->Ke, menc = c->mask_token_in_encoder;
    memset(w->dx_enc, 0, (size_t)B * Te * D * sizeof(float));
    const float *x_last = c->depth ? w->enc[c->depth - 1].x_out : w->x0;
    layernorm_backward(w->dx_enc, g->norm_w, g->norm_b, w->dtmp_enc, x_last, p->norm_w, w->en_m,
                       w->en_r, B * Te, D);
    for (int i = c->depth - 1; i >= 0; i--) {
        const float *x_in = i ? w->enc[i - 1].x_out : w->x0;
        block_backward(&w->enc[i], &p->blocks[i], &g->blocks[i], x_in, w->dx_enc, w->dtmp_enc,
                       &w->scratch, B, Te, D, c->heads, D * c->mlp_ratio);
    }
    for (int b = 0; b < B; b++) {
        const float *dx = w->dx_enc + (size_t)b * Te * D;
        for (int d = 0; d < D; d++) g->cls_token[d] += dx[d];
        for (int k = 0; k < Ke; k++) {
            const float *src = dx + (size_t)(1 + k) * D;
            float *dt = w->dtokens + ((size_t)b * Ke + k) * D;
            if (menc && w->mask[(size_t)b * w->L + k] > 0) {
                for (int d = 0; d < D; d++) g->enc_mask_token[d] += src[d];
                memset(dt, 0, (size_t)D * sizeof(float));
            } else {
                memcpy(dt, src, (size_t)D * sizeof(float));
            }
        }
    }
    linear_backward(NULL, g->pe_w, g->pe_b, w->dtokens, w->patch_in, p->pe_w, B * Ke, w->Cpp, D);
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
    if (memcmp(&w->cfg, c, sizeof *c) != 0)
        return maec_fail(err, MAEC_EINVAL, "workspace was made for another model configuration");
    size_t BL = (size_t)B * w->L;
    if (noise) {
        memcpy(w->noise, noise, BL * sizeof(float));
    } else {
        uint64_t local = 0;
        maec_make_noise(c, B, w->noise, rng_state ? rng_state : &local);
    }
    mask_from_noise(w->noise, B, w->L, w->K, w->ids_keep, w->ids_restore, w->mask);
    maec_patchify(images, w->patches, B, c->in_chans, c->img_h, c->img_w, c->patch);
    make_target(w, B);
    gather_patch_inputs(w, images, B);
    encoder_forward(m, w, B);
    decoder_forward(m, w, B, backward);
    double l = compute_loss(w, B);
    if (loss) *loss = (float)l;
    if (!isfinite(l)) return maec_fail(err, MAEC_ENONFINITE, "the loss is not finite (%g)", l);
    if (!backward) return 0;
    m->grads_zero = 0;
    loss_backward(w, B, grad_scale);
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
        if (!t->trainable) { /* adamw_update clears the others' */
            memset(m->grads + off, 0, t->size * sizeof(float));
            continue;
        }
        adamw_update(m->params + off, m->grads + off, m->adam_m + off, m->adam_v + off, t->size,
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

void maec_set_threads(int n)
{
    if (n > 0) omp_set_num_threads(n);
}

int maec_get_threads(void) { return omp_get_max_threads(); }
