/* The model's tensors: table, allocation, initialization, safetensors I/O. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "model.h"
#include "tensors.h"
#include "util.h"

/* ------------------------------------------------------------ tensor table */

static int set_views(maec_model *m, mae_views *v, float *base)
{
    const maec_config *c = &m->cfg;
    const maec_tensor_info *t = m->info;
    int i = 0;
    v->cls_token = base + t[i++].offset;
    v->pos_embed = base + t[i++].offset;
    v->pe_w = base + t[i++].offset;
    v->pe_b = base + t[i++].offset;
    v->enc_mask_token = NULL;
    if (c->mask_token_in_encoder && c->dec_depth > 0) v->enc_mask_token = base + t[i++].offset;
    v->blocks = calloc((size_t)c->depth + 1, sizeof(vit_block));
    v->dec_blocks = calloc((size_t)c->dec_depth + 1, sizeof(vit_block));
    if (!v->blocks || !v->dec_blocks) return -1;
    for (int b = 0; b < c->depth; b++, i += 12) tt_block_views(&v->blocks[b], base, t + i);
    v->norm_w = base + t[i++].offset;
    v->norm_b = base + t[i++].offset;
    if (c->dec_depth > 0) {
        v->dec_embed_w = base + t[i++].offset;
        v->dec_embed_b = base + t[i++].offset;
        v->mask_token = c->mask_token_in_encoder ? NULL : base + t[i++].offset;
        v->dec_pos_embed = base + t[i++].offset;
        for (int b = 0; b < c->dec_depth; b++, i += 12) tt_block_views(&v->dec_blocks[b], base, t + i);
        v->dec_norm_w = base + t[i++].offset;
        v->dec_norm_b = base + t[i++].offset;
        v->dec_pred_w = base + t[i++].offset;
        v->dec_pred_b = base + t[i++].offset;
    }
    return 0;
}

int model_alloc(const maec_config *cfg, maec_model **out, maec_error *err)
{
    *out = NULL;
    int rc = maec_config_check(cfg, err);
    if (rc) return rc;
    maec_model *m = calloc(1, sizeof *m);
    if (!m) return maec_fail(err, MAEC_ENOMEM, "out of memory");
    m->cfg = *cfg;
    const maec_config *c = cfg;
    int maxn = 8 + 12 * (c->depth + c->dec_depth) + 12;
    tensor_table tb;
    if (tt_init(&tb, maxn)) {
        free(m);
        return maec_fail(err, MAEC_ENOMEM, "out of memory");
    }
    int D = c->dim, L = maec_num_patches(c), P = maec_patch_dim(c), p = c->patch;
    tt_add_encoder(&tb, c, 0); /* the fixed sin-cos position embedding does not learn */
    if (c->mask_token_in_encoder && c->dec_depth > 0) tt_add(&tb, "encoder_mask_token", 1, 0, 3, 1, 1, D, 0);
    for (int b = 0; b < c->depth; b++) tt_add_block(&tb, "blocks", b, 1 + b, D, D * c->mlp_ratio);
    tt_add(&tb, "norm.weight", 1, c->depth + 1, 1, D, 0, 0, 0);
    tt_add(&tb, "norm.bias", 1, c->depth + 1, 1, D, 0, 0, 0);
    if (c->dec_depth > 0) {
        int E = c->dec_dim, top = c->depth + 1;
        tt_add(&tb, "decoder_embed.weight", 1, top, 2, E, D, 0, 0);
        tt_add(&tb, "decoder_embed.bias", 1, top, 1, E, 0, 0, 0);
        if (!c->mask_token_in_encoder) tt_add(&tb, "mask_token", 1, top, 3, 1, 1, E, 0);
        tt_add(&tb, "decoder_pos_embed", 0, top, 3, 1, L + 1, E, 0);
        for (int b = 0; b < c->dec_depth; b++) tt_add_block(&tb, "decoder_blocks", b, top, E, E * c->mlp_ratio);
        tt_add(&tb, "decoder_norm.weight", 1, top, 1, E, 0, 0, 0);
        tt_add(&tb, "decoder_norm.bias", 1, top, 1, E, 0, 0, 0);
        tt_add(&tb, "decoder_pred.weight", 1, top, 2, P, E, 0, 0);
        tt_add(&tb, "decoder_pred.bias", 1, top, 1, P, 0, 0, 0);
    }
    tt_finish(&tb);
    free(tb.layer_id); /* the MAE has no layer-wise decay */
    m->info = tb.info;
    m->names = tb.names;
    m->ntensors = tb.n;
    m->nfloats = tb.nfloats;
    m->be = maec_backend_default();
    if (buffers_alloc(m->be, m->nfloats, &m->dev, &m->mem)) {
        maec_model_free(m);
        return maec_fail(err, MAEC_ENOMEM, "out of memory for a model of %zu parameters",
                         m->nfloats);
    }
    m->params = m->mem;
    m->grads = m->mem + m->nfloats;
    m->adam_m = m->mem + 2 * m->nfloats;
    m->adam_v = m->mem + 3 * m->nfloats;
    m->dparams = m->dev;
    m->dgrads = m->dev + m->nfloats;
    m->dadam_m = m->dev + 2 * m->nfloats;
    m->dadam_v = m->dev + 3 * m->nfloats;
    if (set_views(m, &m->p, m->dparams) || set_views(m, &m->g, m->dgrads)) {
        maec_model_free(m);
        return maec_fail(err, MAEC_ENOMEM, "out of memory");
    }
    /* the fixed position embeddings */
    maec_sincos_pos_embed(m->params + m->info[maec_model_find(m, "pos_embed")].offset, D, c->img_h / p, c->img_w / p);
    if (c->dec_depth > 0)
        maec_sincos_pos_embed(m->params + m->info[maec_model_find(m, "decoder_pos_embed")].offset, c->dec_dim,
                              c->img_h / p, c->img_w / p);
    model_upload(m);
    *out = m;
    return 0;
}

int buffers_alloc(const maec_backend *be, size_t nfloats, float **dev, float **host)
{
    size_t bytes;
    *dev = *host = NULL;
    if (!size_mul(nfloats, 4 * sizeof(float), &bytes) || !(*dev = be->alloc(bytes))) return -1;
    if (be->host_shared) {
        *host = *dev;
        return 0;
    }
    if (!(*host = maec_alloc(bytes))) {
        be->free(*dev);
        *dev = NULL;
        return -1;
    }
    return 0;
}

void buffers_free(const maec_backend *be, float *dev, float *host)
{
    if (host && host != dev) maec_free(host);
    if (dev) be->free(dev);
}

void buffers_upload(const maec_backend *be, float *dev, const float *host, size_t nfloats)
{
    if (!be->host_shared) be->upload(dev, host, 4 * nfloats * sizeof(float));
}

void buffers_download(const maec_backend *be, float *host, const float *dev, size_t nfloats)
{
    if (!be->host_shared) be->download(host, dev, 4 * nfloats * sizeof(float));
}

void model_upload(maec_model *m) { buffers_upload(m->be, m->dev, m->mem, m->nfloats); }
void model_download(const maec_model *m) { buffers_download(m->be, m->mem, m->dev, m->nfloats); }

void maec_model_free(maec_model *m)
{
    if (!m) return;
    for (int i = 0; i < m->nmeta; i++) {
        free(m->meta_key[i]);
        free(m->meta_val[i]);
    }
    free(m->p.blocks);
    free(m->p.dec_blocks);
    free(m->g.blocks);
    free(m->g.dec_blocks);
    free(m->info);
    free(m->names);
    buffers_free(m->be, m->dev, m->mem);
    free(m);
}

/* --------------------------------------------------------- initialization */

static void xavier_uniform(float *w, int64_t fan_out, int64_t fan_in, uint64_t *rng)
{
    double a = sqrt(6.0 / (double)(fan_in + fan_out));
    size_t n = (size_t)(fan_out * fan_in);
    for (size_t i = 0; i < n; i++) w[i] = (float)((2.0 * rng_uniform_d(rng) - 1.0) * a);
}

static void normal_init(float *w, size_t n, double std, uint64_t *rng)
{
    for (size_t i = 0; i < n; i++) w[i] = (float)(rng_normal(rng) * std);
}

void model_init(maec_model *m, uint64_t seed)
{
    uint64_t rng = rng_derive(seed, 0x1417, 0, 0);
    for (int i = 0; i < m->ntensors; i++) {
        const maec_tensor_info *t = &m->info[i];
        float *w = m->params + t->offset;
        if (!t->trainable) continue; /* position embeddings are fixed */
        const char *nm = t->name;
        size_t nl = strlen(nm);
        if (!strcmp(nm, "cls_token") || !strcmp(nm, "mask_token") || !strcmp(nm, "encoder_mask_token")) {
            normal_init(w, t->size, 0.02, &rng);
        } else if (!strcmp(nm, "patch_embed.proj.weight")) {
            xavier_uniform(w, t->shape[0], t->shape[1] * t->shape[2] * t->shape[3], &rng);
        } else if (!strcmp(nm, "patch_embed.proj.bias")) {
            /* PyTorch's default Conv2d bias: U(+-1/sqrt(fan_in)) */
            const maec_tensor_info *wt = &m->info[i - 1];
            double bound = 1.0 / sqrt((double)(wt->shape[1] * wt->shape[2] * wt->shape[3]));
            for (size_t k = 0; k < t->size; k++) w[k] = (float)((2.0 * rng_uniform_d(&rng) - 1.0) * bound);
        } else if (t->ndim == 2) {
            xavier_uniform(w, t->shape[0], t->shape[1], &rng);
        } else if (nl > 7 && !strcmp(nm + nl - 7, ".weight")) {
            for (size_t k = 0; k < t->size; k++) w[k] = 1.0f; /* LayerNorm */
        } else {
            memset(w, 0, t->size * sizeof(float)); /* biases */
        }
    }
}

int maec_model_create(const maec_config *c, uint64_t seed, maec_model **out, maec_error *err)
{
    int rc = model_alloc(c, out, err);
    if (rc) return rc;
    model_init(*out, seed);
    model_upload(*out);
    return 0;
}

/* ------------------------------------------------------------- accessors */

const maec_config *maec_model_config(const maec_model *m) { return &m->cfg; }
int maec_model_num_tensors(const maec_model *m) { return m->ntensors; }
const maec_tensor_info *maec_model_tensor(const maec_model *m, int i)
{
    return (i >= 0 && i < m->ntensors) ? &m->info[i] : NULL;
}
int maec_model_find(const maec_model *m, const char *name)
{
    for (int i = 0; i < m->ntensors; i++)
        if (!strcmp(m->info[i].name, name)) return i;
    return -1;
}
float *maec_model_params(maec_model *m)
{
    model_download(m);
    return m->params;
}
float *maec_model_grads(maec_model *m)
{
    m->grads_zero = 0; /* the caller may write through it */
    model_download(m);
    return m->grads;
}
float *maec_model_adam_m(maec_model *m)
{
    model_download(m);
    return m->adam_m;
}
float *maec_model_adam_v(maec_model *m)
{
    model_download(m);
    return m->adam_v;
}
float *maec_model_grads_dev(maec_model *m) { return m->dgrads; }
int maec_model_host_shared(const maec_model *m) { return m->be->host_shared; }
const maec_backend *maec_model_backend(const maec_model *m) { return m->be; }

void maec_model_sync(maec_model *m)
{
    m->grads_zero = 0;
    model_upload(m);
}
size_t maec_model_num_floats(const maec_model *m) { return m->nfloats; }
int64_t maec_model_step(const maec_model *m) { return m->step; }
void maec_model_set_step(maec_model *m, int64_t step) { m->step = step; }

void maec_zero_grad(maec_model *m)
{
    if (!m->grads_zero) m->be->zero(m->dgrads, m->nfloats * sizeof(float));
    m->grads_zero = 1;
}

/* ------------------------------------------------------------ load / save */

static int count_prefix(const st_file *f, const char *prefix, int *max_index)
{
    size_t pl = strlen(prefix);
    int count = 0;
    *max_index = -1;
    for (int i = 0; i < f->n; i++) {
        if (strncmp(f->e[i].name, prefix, pl)) continue;
        count++;
        char *end;
        long k = strtol(f->e[i].name + pl, &end, 10);
        if (end != f->e[i].name + pl && *end == '.' && k >= 0 && k < 100000 && k > *max_index)
            *max_index = (int)k;
    }
    return count;
}

int encoder_config_from_file(const st_file *f, const maec_config *hint, maec_config *c, maec_error *err)
{
    const char *path = f->path;
    memset(c, 0, sizeof *c);
    c->mlp_ratio = 4;
    c->mask_ratio = 0.75;
    const char *meta = st_meta(f, "maec_config");
    if (meta && maec_config_from_json(c, meta, err))
        return maec_fail(err, MAEC_EFORMAT, "%s: __metadata__ maec_config: %s", path, err->msg);
    int ipe = st_find(f, "patch_embed.proj.weight");
    if (ipe < 0) return maec_fail(err, MAEC_EFORMAT, "%s: missing tensor 'patch_embed.proj.weight'", path);
    const st_entry *pe = &f->e[ipe];
    if (pe->ndim != 4 || pe->shape[2] != pe->shape[3] || pe->shape[0] < 1 || pe->shape[1] < 1 ||
        pe->shape[2] < 1 || pe->shape[0] > 16384 || pe->shape[1] > 64 || pe->shape[2] > 1024)
        return maec_fail(err, MAEC_EFORMAT, "%s: 'patch_embed.proj.weight' must be [D, C, p, p]", path);
    c->dim = (int)pe->shape[0];
    c->in_chans = (int)pe->shape[1];
    c->patch = (int)pe->shape[2];
    int maxb;
    count_prefix(f, "blocks.", &maxb);
    c->depth = maxb + 1;
    int ipos = st_find(f, "pos_embed");
    int64_t L = -1;
    if (ipos >= 0 && f->e[ipos].ndim == 3) L = f->e[ipos].shape[1] - 1;
    if (hint && hint->img_h > 0) c->img_h = hint->img_h;
    if (hint && hint->img_w > 0) c->img_w = hint->img_w;
    if (c->img_h <= 0 || c->img_w <= 0) {
        if (L <= 0) return maec_fail(err, MAEC_EFORMAT, "%s: missing tensor 'pos_embed'; cannot tell the image size", path);
        int64_t g = (int64_t)llround(sqrt((double)L));
        if (g * g != L)
            return maec_fail(err, MAEC_EFORMAT, "%s: %lld patches is not a square grid; give the image size", path, (long long)L);
        c->img_h = c->img_w = (int)(g * c->patch);
    }
    int ifc1 = st_find(f, "blocks.0.mlp.fc1.weight");
    if (ifc1 >= 0 && f->e[ifc1].ndim == 2 && f->e[ifc1].shape[0] % c->dim == 0)
        c->mlp_ratio = (int)(f->e[ifc1].shape[0] / c->dim);
    if (hint && hint->heads > 0) c->heads = hint->heads;
    if (c->heads <= 0) c->heads = default_heads(c->dim);
    if (c->heads <= 0)
        return maec_fail(err, MAEC_EINVAL, "%s: the number of encoder heads for width %d is not in the file; pass --heads", path, c->dim);
    return 0;
}

static int infer_config(const st_file *f, const maec_config *hint, maec_config *c, maec_error *err)
{
    const char *path = f->path;
    int rc = encoder_config_from_file(f, hint, c, err);
    if (rc) return rc;
    int maxd;
    int ndec = count_prefix(f, "decoder_", &maxd);
    if (st_find(f, "mask_token") >= 0) ndec++;
    c->dec_depth = 0;
    if (ndec > 0) {
        count_prefix(f, "decoder_blocks.", &maxd);
        c->dec_depth = maxd + 1;
        int ide = st_find(f, "decoder_embed.weight");
        if (ide < 0) return maec_fail(err, MAEC_EFORMAT, "%s: missing tensor 'decoder_embed.weight'", path);
        if (f->e[ide].ndim != 2 || f->e[ide].shape[0] < 1 || f->e[ide].shape[0] > 16384)
            return maec_fail(err, MAEC_EFORMAT, "%s: 'decoder_embed.weight' must be [D', D]", path);
        c->dec_dim = (int)f->e[ide].shape[0];
        if (c->dec_depth < 1) return maec_fail(err, MAEC_EFORMAT, "%s: decoder tensors but no decoder_blocks", path);
    }
    c->mask_token_in_encoder = st_find(f, "encoder_mask_token") >= 0;
    if (hint) {
        if (hint->dec_heads > 0) c->dec_heads = hint->dec_heads;
        if (hint->mask_ratio > 0) c->mask_ratio = hint->mask_ratio;
        if (hint->norm_pix_loss) c->norm_pix_loss = 1;
        if (hint->loss_on_all) c->loss_on_all = 1;
        if (hint->mask_strategy) c->mask_strategy = hint->mask_strategy;
    }
    if (c->dec_depth > 0 && c->dec_heads <= 0) c->dec_heads = default_heads(c->dec_dim);
    if (c->dec_depth > 0 && c->dec_heads <= 0)
        return maec_fail(err, MAEC_EINVAL, "%s: the number of decoder heads for width %d is not in the file; pass --decoder-heads", path, c->dec_dim);
    rc = maec_config_check(c, err);
    if (rc) return maec_fail(err, rc, "%s: %s", path, err->msg);
    return 0;
}

int meta_set(char **keys, char **vals, int *n, const char *key, const char *value)
{
    for (int i = 0; i < *n; i++) {
        if (!strcmp(keys[i], key)) {
            char *v = strdup(value);
            if (!v) return MAEC_ENOMEM;
            free(vals[i]);
            vals[i] = v;
            return 0;
        }
    }
    if (*n == MAEC_META_MAX) return MAEC_EINVAL;
    char *k = strdup(key), *v = strdup(value);
    if (!k || !v) {
        free(k);
        free(v);
        return MAEC_ENOMEM;
    }
    keys[*n] = k;
    vals[*n] = v;
    (*n)++;
    return 0;
}

const char *meta_get(char *const *keys, char *const *vals, int n, const char *key)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(keys[i], key)) return vals[i];
    return NULL;
}

int maec_model_set_meta(maec_model *m, const char *key, const char *value)
{
    return meta_set(m->meta_key, m->meta_val, &m->nmeta, key, value);
}

const char *maec_model_get_meta(const maec_model *m, const char *key)
{
    return meta_get(m->meta_key, m->meta_val, m->nmeta, key);
}

int load_tensor_table(st_file *f, const maec_tensor_info *info, int n, float *params,
                      int fixed_optional, maec_error *err)
{
    for (int i = 0; i < n; i++) {
        const maec_tensor_info *t = &info[i];
        int k = st_find(f, t->name);
        if (k < 0) {
            if (fixed_optional && !t->trainable) continue;
            return maec_fail(err, MAEC_EFORMAT, "%s: missing tensor '%s'", f->path, t->name);
        }
        const st_entry *e = &f->e[k];
        int same = e->ndim == t->ndim;
        for (int d = 0; same && d < t->ndim; d++) same = e->shape[d] == t->shape[d];
        if (!same) {
            char want[64] = "", got[64] = "";
            for (int d = 0; d < t->ndim; d++)
                snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", d ? "," : "", (long long)t->shape[d]);
            for (int d = 0; d < e->ndim && d < 6; d++)
                snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? "," : "", (long long)e->shape[d]);
            return maec_fail(err, MAEC_ESHAPE, "%s: tensor '%s' has shape [%s], expected [%s]", f->path, t->name, got, want);
        }
        int rc = st_read_f32(f, k, params + t->offset, err);
        if (rc) return rc;
    }
    return 0;
}

static const char *OPT_M = "optimizer.exp_avg.", *OPT_V = "optimizer.exp_avg_sq.";

const char *opt_state_base(const char *name)
{
    if (!strncmp(name, OPT_M, strlen(OPT_M))) return name + strlen(OPT_M);
    if (!strncmp(name, OPT_V, strlen(OPT_V))) return name + strlen(OPT_V);
    return NULL;
}

static int find_info(const maec_tensor_info *info, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(info[i].name, name)) return i;
    return -1;
}

int check_opt_state(const st_file *f, const maec_tensor_info *info, int n, maec_error *err)
{
    for (int k = 0; k < f->n; k++) {
        const char *base = opt_state_base(f->e[k].name);
        if (!base) continue;
        int t = find_info(info, n, base);
        if (t < 0 || f->e[k].count != info[t].size)
            return maec_fail(err, MAEC_EFORMAT, "%s: optimizer state '%s' does not fit the model", f->path,
                             f->e[k].name);
    }
    return 0;
}

int read_opt_state(st_file *f, const maec_tensor_info *info, int n, float *adam_m, float *adam_v,
                   int64_t *step, char **run_json, maec_error *err)
{
    char nm[300];
    for (int i = 0; i < n; i++) {
        const maec_tensor_info *t = &info[i];
        if (!t->trainable) continue;
        for (int which = 0; which < 2; which++) {
            snprintf(nm, sizeof nm, "%s%s", which ? OPT_V : OPT_M, t->name);
            int k = st_find(f, nm);
            if (k < 0)
                return maec_fail(err, MAEC_EFORMAT, "%s: not a checkpoint (no optimizer state '%s')", f->path, nm);
            int rc = st_read_f32(f, k, (which ? adam_v : adam_m) + t->offset, err);
            if (rc) return rc;
        }
    }
    const char *st = st_meta(f, "step");
    char *end = NULL;
    long long v = st ? strtoll(st, &end, 10) : -1;
    if (!st || *end || v < 0) return maec_fail(err, MAEC_EFORMAT, "%s: checkpoint has no valid step", f->path);
    *step = v;
    if (run_json) {
        const char *r = st_meta(f, "maec_run");
        if (r && !(*run_json = strdup(r))) return maec_fail(err, MAEC_ENOMEM, "out of memory");
    }
    return 0;
}

int save_tensor_file(const char *path, const maec_tensor_info *info, int n, const float *params,
                     const float *adam_m, const float *adam_v, int64_t step, const char *run_json,
                     const char **keys, const char **vals, int nk, maec_error *err)
{
    if (nk > 20) return maec_fail(err, MAEC_EINVAL, "%s: %d metadata entries, at most 20", path, nk);
    int with_opt = adam_m && adam_v, maxt = n * 3;
    st_tensor *t = calloc((size_t)maxt, sizeof *t);
    char *names = calloc((size_t)maxt, 300);
    if (!t || !names) {
        free(t);
        free(names);
        return maec_fail(err, MAEC_ENOMEM, "out of memory");
    }
    int k = 0;
    for (int pass = 0; pass < (with_opt ? 3 : 1); pass++) {
        const float *buf = pass == 0 ? params : pass == 1 ? adam_m : adam_v;
        for (int i = 0; i < n; i++) {
            const maec_tensor_info *ti = &info[i];
            if (pass > 0 && !ti->trainable) continue;
            if (pass == 0) {
                t[k].name = ti->name;
            } else {
                char *nm = names + (size_t)k * 300;
                snprintf(nm, 300, "%s%s", pass == 1 ? OPT_M : OPT_V, ti->name);
                t[k].name = nm;
            }
            t[k].ndim = ti->ndim;
            for (int d = 0; d < 4; d++) t[k].shape[d] = ti->shape[d];
            t[k++].data = buf + ti->offset;
        }
    }
    const char *K[24], *V[24];
    char stepbuf[32];
    for (int i = 0; i < nk; i++) K[i] = keys[i], V[i] = vals[i];
    if (with_opt) {
        snprintf(stepbuf, sizeof stepbuf, "%lld", (long long)step);
        K[nk] = "step", V[nk++] = stepbuf;
        if (run_json) K[nk] = "maec_run", V[nk++] = run_json;
    }
    int rc = st_save(path, t, k, K, V, nk, err);
    free(t);
    free(names);
    return rc;
}

static int is_reserved_meta(const char *k)
{
    return !strcmp(k, "format") || !strcmp(k, "maec_config") || !strcmp(k, "crc32") ||
           !strcmp(k, "maec_run") || !strcmp(k, "step");
}

/* The fixed position embeddings may be left out of a file; then their size
 * follows from the image size in the metadata alone. Refuse a file that
 * would make us allocate far more for them than it holds (a few bytes of
 * header must not cost gigabytes): beyond 2^24 values, missing embeddings
 * may not outweigh the data present. */
static int check_fixed_size(const st_file *f, const maec_config *c, maec_error *err)
{
    size_t rows = (size_t)maec_num_patches(c) + 1, missing = 0;
    if (st_find(f, "pos_embed") < 0) missing += rows * (size_t)c->dim;
    if (c->dec_depth > 0 && st_find(f, "decoder_pos_embed") < 0) missing += rows * (size_t)c->dec_dim;
    size_t held = (f->len - f->data_start) / 2; /* values, at 2 bytes (F16) each */
    if (missing > ((size_t)1 << 24) && missing > held)
        return maec_fail(err, MAEC_EFORMAT, "%s: no position embeddings in the file, and for %dx%d "
                         "images they would need %zu values: give the tensors or the right image size",
                         f->path, c->img_h, c->img_w, missing);
    return 0;
}

/* with_opt: also read the AdamW moments (all of them, or none) */
static int load_impl(const char *path, const maec_config *hint, maec_model **out, char **run_json,
                     int with_opt, maec_error *err)
{
    *out = NULL;
    st_file f;
    int rc = st_open(path, &f, err);
    if (rc) return rc;
    maec_config c;
    rc = infer_config(&f, hint, &c, err);
    if (!rc) rc = check_fixed_size(&f, &c, err);
    maec_model *m = NULL;
    if (!rc) rc = model_alloc(&c, &m, err);
    /* every tensor of the model, with its shape; nothing extra */
    if (!rc) rc = load_tensor_table(&f, m->info, m->ntensors, m->params, 1, err);
    for (int k = 0; !rc && k < f.n; k++) {
        const char *nm = f.e[k].name;
        if (opt_state_base(nm)) continue; /* checked by check_opt_state */
        if (maec_model_find(m, nm) < 0)
            rc = maec_fail(err, MAEC_EFORMAT, "%s: unexpected tensor '%s' for this model", path, nm);
    }
    if (!rc) rc = check_opt_state(&f, m->info, m->ntensors, err);
    if (!rc && with_opt) rc = read_opt_state(&f, m->info, m->ntensors, m->adam_m, m->adam_v, &m->step, run_json, err);
    for (int i = 0; !rc && i < f.nmeta; i++)
        if (!is_reserved_meta(f.meta_key[i])) maec_model_set_meta(m, f.meta_key[i], f.meta_val[i]);
    st_close(&f);
    if (rc) {
        maec_model_free(m);
        return rc;
    }
    model_upload(m);
    *out = m;
    return 0;
}

int maec_model_load(const char *path, const maec_config *hint, maec_model **out, maec_error *err)
{
    return load_impl(path, hint, out, NULL, 0, err);
}

int maec_checkpoint_load(const char *path, const maec_config *hint, maec_model **out,
                         char **run_json, maec_error *err)
{
    if (run_json) *run_json = NULL;
    return load_impl(path, hint, out, run_json, 1, err);
}

static int save_impl(const maec_model *m, const char *path, const char *run_json, int with_opt,
                     maec_error *err)
{
    char *cfg = maec_config_to_json(&m->cfg);
    if (!cfg) return maec_fail(err, MAEC_ENOMEM, "out of memory");
    const char *keys[2 + MAEC_META_MAX], *vals[2 + MAEC_META_MAX];
    int nk = 0;
    keys[nk] = "format", vals[nk++] = "maec";
    keys[nk] = "maec_config", vals[nk++] = cfg;
    for (int i = 0; i < m->nmeta; i++) keys[nk] = m->meta_key[i], vals[nk++] = m->meta_val[i];
    model_download(m);
    int rc = save_tensor_file(path, m->info, m->ntensors, m->params, with_opt ? m->adam_m : NULL,
                              with_opt ? m->adam_v : NULL, m->step, run_json, keys, vals, nk, err);
    free(cfg);
    return rc;
}

int maec_model_save(const maec_model *m, const char *path, maec_error *err)
{
    return save_impl(m, path, NULL, 0, err);
}

int maec_checkpoint_save(const maec_model *m, const char *path, const char *run_json,
                         maec_error *err)
{
    return save_impl(m, path, run_json, 1, err);
}
