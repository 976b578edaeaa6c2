/* The classifier on the MAE encoder: fine-tuning (global pool + fc_norm +
 * head, drop path, layer-wise lr decay) and features for k-NN and linear
 * probing, every op through the backend. Behaviour as facebookresearch/mae
 * (models_vit.py, main_finetune.py, util/lr_decay.py) and timm
 * (SoftTargetCrossEntropy, DropPath). The linear probe is in
 * src/train/linprobe.c, k-NN in src/train/knn.c, mixup in src/data/mixup.c. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "classifier.h"
#include "io/safetensors.h"
#include "tensors.h"
#include "util.h"
#include "vit.h"

/* ------------------------------------------------------------ tensor table */

/* the host's copies to the backend and back (model_upload) */
static void clf_upload(maec_classifier *c) { buffers_upload(c->be, c->dev, c->mem, c->nfloats); }
static void clf_download(const maec_classifier *c) { buffers_download(c->be, c->mem, c->dev, c->nfloats); }

int clf_first_trainable_block(const maec_classifier *c)
{
    int K = c->opts.tune_blocks;
    if (K < 0 || K > c->cfg.depth) return 0;
    return c->cfg.depth - K;
}

static int set_views(maec_classifier *c, clf_views *v, float *base)
{
    const maec_tensor_info *t = c->info;
    int i = 0;
    memset(v, 0, sizeof *v);
    v->cls_token = base + t[i++].offset;
    v->pos_embed = base + t[i++].offset;
    v->pe_w = base + t[i++].offset;
    v->pe_b = base + t[i++].offset;
    v->blocks = calloc((size_t)c->cfg.depth + 1, sizeof(vit_block));
    if (!v->blocks) return -1;
    for (int b = 0; b < c->cfg.depth; b++, i += 12) tt_block_views(&v->blocks[b], base, t + i);
    if (c->opts.global_pool) {
        v->fcn_w = base + t[i++].offset;
        v->fcn_b = base + t[i++].offset;
    } else {
        v->norm_w = base + t[i++].offset;
        v->norm_b = base + t[i++].offset;
    }
    if (c->opts.num_classes > 0) {
        v->head_w = base + t[i++].offset;
        v->head_b = base + t[i++].offset;
    }
    return 0;
}

void maec_classifier_defaults(maec_classifier_opts *o)
{
    o->num_classes = 10;
    o->global_pool = 1;
    o->drop_path = 0.1f;
    o->tune_blocks = -1;
    o->head_init_std = 2e-5f;
}

static int check_opts(const maec_config *c, const maec_classifier_opts *o, maec_error *err)
{
    if (o->num_classes < 0 || o->num_classes > 1000000)
        return maec_fail(err, MAEC_EINVAL, "number of classes %d out of range", o->num_classes);
    if (!(o->drop_path >= 0 && o->drop_path < 1))
        return maec_fail(err, MAEC_EINVAL, "drop path rate %g must be in [0, 1)", (double)o->drop_path);
    if (o->tune_blocks < -1 || o->tune_blocks > c->depth)
        return maec_fail(err, MAEC_EINVAL, "--tune-blocks %d: the encoder has %d blocks", o->tune_blocks,
                         c->depth);
    if (!(o->head_init_std >= 0 && o->head_init_std < 10))
        return maec_fail(err, MAEC_EINVAL, "head init std %g out of range", (double)o->head_init_std);
    return 0;
}

/* table and buffers; parameters zero, fixed position embeddings set */
static int clf_alloc(const maec_config *cfg, const maec_classifier_opts *o, maec_classifier **out,
                     maec_error *err)
{
    *out = NULL;
    maec_config c = *cfg;
    c.dec_dim = c.dec_depth = c.dec_heads = 0;
    c.mask_token_in_encoder = 0;
    int rc = maec_config_check(&c, err);
    if (rc) return rc;
    if ((rc = check_opts(&c, o, err))) return rc;
    maec_classifier *m = calloc(1, sizeof *m);
    if (!m) return maec_fail(err, MAEC_ENOMEM, "out of memory");
    m->cfg = c;
    m->opts = *o;
    int maxn = 8 + 12 * c.depth + 8;
    tensor_table tb;
    if (tt_init(&tb, maxn)) {
        free(m);
        return maec_fail(err, MAEC_ENOMEM, "out of memory");
    }
    int D = c.dim, p = c.patch, top = c.depth + 1;
    tt_add_encoder(&tb, &c, 1); /* fine-tuning trains the position embedding, as timm's ViT */
    for (int b = 0; b < c.depth; b++) tt_add_block(&tb, "blocks", b, b + 1, D, D * c.mlp_ratio);
    const char *nrm = o->global_pool ? "fc_norm" : "norm";
    char nm[96];
    snprintf(nm, sizeof nm, "%s.weight", nrm);
    tt_add(&tb, nm, 1, top, 1, D, 0, 0, 0);
    snprintf(nm, sizeof nm, "%s.bias", nrm);
    tt_add(&tb, nm, 1, top, 1, D, 0, 0, 0);
    if (o->num_classes > 0) {
        tt_add(&tb, "head.weight", 1, top, 2, o->num_classes, D, 0, 0);
        tt_add(&tb, "head.bias", 1, top, 1, o->num_classes, 0, 0, 0);
    }
    /* the official no_weight_decay: 1-D tensors, biases, pos_embed, cls_token */
    tt_no_decay(&tb, "pos_embed");
    tt_no_decay(&tb, "cls_token");
    tt_finish(&tb);
    m->info = tb.info;
    m->layer_id = tb.layer_id;
    m->names = tb.names;
    m->ntensors = tb.n;
    m->nfloats = tb.nfloats;
    /* what learns: with --tune-blocks K only the last K blocks and what follows them */
    int first = clf_first_trainable_block(m);
    for (int i = 0; i < m->ntensors; i++)
        if (m->layer_id[i] < first + 1) m->info[i].trainable = 0;
    if (o->tune_blocks < 0)
        for (int i = 0; i < m->ntensors; i++) m->info[i].trainable = 1;
    for (int i = 0; i < m->ntensors; i++)
        if (!m->info[i].trainable) m->info[i].decay = 0;
    m->be = maec_backend_default();
    if (buffers_alloc(m->be, m->nfloats, &m->dev, &m->mem)) {
        maec_classifier_free(m);
        return maec_fail(err, MAEC_ENOMEM, "out of memory for a classifier of %zu parameters", m->nfloats);
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
        maec_classifier_free(m);
        return maec_fail(err, MAEC_ENOMEM, "out of memory");
    }
    maec_sincos_pos_embed(m->params + m->info[maec_classifier_find(m, "pos_embed")].offset, D, c.img_h / p,
                          c.img_w / p);
    clf_upload(m);
    *out = m;
    return 0;
}

/* the host's copy of tensor `name` */
static float *host_tensor(maec_classifier *c, const char *name)
{
    return c->params + c->info[maec_classifier_find(c, name)].offset;
}

static void init_head(maec_classifier *c, uint64_t seed)
{
    uint64_t rng = rng_derive(seed, 0x68656164, 0, 0);
    int D = c->cfg.dim;
    if (c->opts.global_pool) {
        float *w = host_tensor(c, "fc_norm.weight"), *b = host_tensor(c, "fc_norm.bias");
        for (int d = 0; d < D; d++) w[d] = 1.0f, b[d] = 0.0f;
    }
    if (c->opts.num_classes > 0) {
        rng_trunc_normal(host_tensor(c, "head.weight"), (size_t)c->opts.num_classes * D, c->opts.head_init_std, &rng);
        memset(host_tensor(c, "head.bias"), 0, (size_t)c->opts.num_classes * sizeof(float));
    }
}

static int copy_encoder(maec_classifier *c, const maec_model *from, maec_error *err)
{
    for (int i = 0; i < c->ntensors; i++) {
        const maec_tensor_info *t = &c->info[i];
        if (!strncmp(t->name, "fc_norm.", 8) || !strncmp(t->name, "head.", 5)) continue;
        int k = maec_model_find(from, t->name);
        if (k < 0) return maec_fail(err, MAEC_EFORMAT, "the model has no tensor '%s'", t->name);
        const maec_tensor_info *s = maec_model_tensor(from, k);
        if (s->size != t->size)
            return maec_fail(err, MAEC_ESHAPE, "tensor '%s' of the model has %zu values, expected %zu",
                             t->name, s->size, t->size);
        memcpy(c->params + t->offset, maec_model_params((maec_model *)from) + s->offset,
               t->size * sizeof(float));
    }
    return 0;
}

int maec_classifier_create(const maec_config *cfg, const maec_model *from,
                           const maec_classifier_opts *o, uint64_t seed, maec_classifier **out,
                           maec_error *err)
{
    *out = NULL;
    maec_classifier_opts def;
    if (!o) {
        maec_classifier_defaults(&def);
        o = &def;
    }
    if (!from && !cfg) return maec_fail(err, MAEC_EINVAL, "a classifier needs a model or a configuration");
    const maec_config *c = from ? maec_model_config(from) : cfg;
    maec_classifier *m;
    int rc = clf_alloc(c, o, &m, err);
    if (rc) return rc;
    if (from) {
        rc = copy_encoder(m, from, err);
        for (int i = 0; !rc && i < from->nmeta; i++)
            maec_classifier_set_meta(m, from->meta_key[i], from->meta_val[i]);
    } else {
        /* the MAE encoder's initialization (models_mae.py) from seed */
        maec_config ec = *c;
        ec.dec_dim = ec.dec_depth = ec.dec_heads = 0;
        ec.mask_token_in_encoder = 0;
        maec_model *enc;
        rc = maec_model_create(&ec, seed, &enc, err);
        if (!rc) rc = copy_encoder(m, enc, err);
        maec_model_free(enc);
    }
    if (rc) {
        maec_classifier_free(m);
        return rc;
    }
    init_head(m, seed);
    clf_upload(m);
    *out = m;
    return 0;
}

int maec_classifier_resize(maec_classifier **cp, int img_h, int img_w, maec_error *err)
{
    maec_classifier *c = *cp;
    if (c->cfg.img_h == img_h && c->cfg.img_w == img_w) return 0;
    int p = c->cfg.patch;
    if (img_h < p || img_w < p || img_h % p || img_w % p)
        return maec_fail(err, MAEC_ESHAPE, "input size %dx%d is not a grid of %d-pixel patches", img_h, img_w, p);
    maec_config nc = c->cfg;
    nc.img_h = img_h, nc.img_w = img_w;
    maec_classifier *m;
    int rc = clf_alloc(&nc, &c->opts, &m, err);
    if (rc) return rc;
    clf_download(c);
    for (int i = 0; i < m->ntensors; i++) {
        const maec_tensor_info *t = &m->info[i];
        int k = maec_classifier_find(c, t->name);
        if (k < 0) continue; /* cannot happen: the same options make the same table */
        const maec_tensor_info *s = &c->info[k];
        if (!strcmp(t->name, "pos_embed"))
            maec_interpolate_pos_embed(c->params + s->offset, c->cfg.img_h / p, c->cfg.img_w / p, nc.dim,
                                       m->params + t->offset, img_h / p, img_w / p);
        else
            memcpy(m->params + t->offset, c->params + s->offset, t->size * sizeof(float));
    }
    for (int i = 0; i < c->nmeta; i++) maec_classifier_set_meta(m, c->meta_key[i], c->meta_val[i]);
    clf_upload(m);
    maec_classifier_free(c);
    *cp = m;
    return 0;
}

void maec_classifier_free(maec_classifier *c)
{
    if (!c) return;
    for (int i = 0; i < c->nmeta; i++) {
        free(c->meta_key[i]);
        free(c->meta_val[i]);
    }
    free(c->p.blocks);
    free(c->g.blocks);
    free(c->info);
    free(c->layer_id);
    free(c->names);
    buffers_free(c->be, c->dev, c->mem);
    free(c);
}

const maec_config *maec_classifier_config(const maec_classifier *c) { return &c->cfg; }
const maec_classifier_opts *maec_classifier_options(const maec_classifier *c) { return &c->opts; }
int maec_classifier_num_tensors(const maec_classifier *c) { return c->ntensors; }
const maec_tensor_info *maec_classifier_tensor(const maec_classifier *c, int i)
{
    return (i >= 0 && i < c->ntensors) ? &c->info[i] : NULL;
}
int maec_classifier_find(const maec_classifier *c, const char *name)
{
    for (int i = 0; i < c->ntensors; i++)
        if (!strcmp(c->info[i].name, name)) return i;
    return -1;
}
float *maec_classifier_params(maec_classifier *c)
{
    clf_download(c);
    return c->params;
}
float *maec_classifier_grads(maec_classifier *c)
{
    c->grads_zero = 0; /* the caller may write through it */
    clf_download(c);
    return c->grads;
}
void maec_classifier_sync(maec_classifier *c)
{
    c->grads_zero = 0;
    clf_upload(c);
}
void maec_classifier_zero_grad(maec_classifier *c)
{
    if (!c->grads_zero) c->be->zero(c->dgrads, c->nfloats * sizeof(float));
    c->grads_zero = 1;
}
int64_t maec_classifier_step(const maec_classifier *c) { return c->step; }

int maec_classifier_layer_id(const maec_classifier *c, int i)
{
    return (i >= 0 && i < c->ntensors) ? c->layer_id[i] : -1;
}

double maec_classifier_lr_scale(const maec_classifier *c, int i, double layer_decay)
{
    int id = maec_classifier_layer_id(c, i);
    if (id < 0) return 0;
    return pow(layer_decay, (double)(c->cfg.depth + 1 - id));
}

int maec_classifier_set_meta(maec_classifier *c, const char *key, const char *value)
{
    return meta_set(c->meta_key, c->meta_val, &c->nmeta, key, value);
}

const char *maec_classifier_get_meta(const maec_classifier *c, const char *key)
{
    return meta_get(c->meta_key, c->meta_val, c->nmeta, key);
}

/* ------------------------------------------------------------ load / save */

static int is_reserved(const char *k)
{
    return !strcmp(k, "format") || !strcmp(k, "maec_config") || !strcmp(k, "maec_classifier") ||
           !strcmp(k, "crc32") || !strcmp(k, "maec_run") || !strcmp(k, "step");
}

static int clf_save(const maec_classifier *c, const char *path, const char *run_json, int with_opt,
                    maec_error *err)
{
    char *cfg = maec_config_to_json(&c->cfg);
    if (!cfg) return maec_fail(err, MAEC_ENOMEM, "out of memory");
    char cl[128];
    snprintf(cl, sizeof cl, "{\"num_classes\":%d,\"global_pool\":%s}", c->opts.num_classes,
             c->opts.global_pool ? "true" : "false");
    const char *keys[3 + MAEC_META_MAX], *vals[3 + MAEC_META_MAX];
    int nk = 0;
    keys[nk] = "format", vals[nk++] = "pt";
    keys[nk] = "maec_config", vals[nk++] = cfg;
    keys[nk] = "maec_classifier", vals[nk++] = cl;
    for (int i = 0; i < c->nmeta; i++)
        if (!is_reserved(c->meta_key[i])) keys[nk] = c->meta_key[i], vals[nk++] = c->meta_val[i];
    clf_download(c);
    int rc = save_tensor_file(path, c->info, c->ntensors, c->params, with_opt ? c->adam_m : NULL,
                              with_opt ? c->adam_v : NULL, c->step, run_json, keys, vals, nk, err);
    free(cfg);
    return rc;
}

int maec_classifier_save(const maec_classifier *c, const char *path, maec_error *err)
{
    return clf_save(c, path, NULL, 0, err);
}

int maec_classifier_checkpoint_save(const maec_classifier *c, const char *path, const char *run_json,
                                    maec_error *err)
{
    return clf_save(c, path, run_json, 1, err);
}

/* the encoder's configuration of a classifier file (no decoder) and its head */
static int clf_file_config(const st_file *f, const maec_config *hint, maec_config *c,
                           maec_classifier_opts *o, maec_error *err)
{
    int rc = encoder_config_from_file(f, hint, c, err);
    if (rc) return rc;
    c->dec_dim = c->dec_depth = c->dec_heads = 0;
    c->mask_token_in_encoder = 0;
    int ih = st_find(f, "head.weight");
    o->num_classes = ih >= 0 && f->e[ih].ndim == 2 ? (int)f->e[ih].shape[0] : 0;
    o->global_pool = st_find(f, "fc_norm.weight") >= 0;
    return 0;
}

/* "path: message" (the message copied first: maec_fail writes err->msg) */
static int prefix_path(maec_error *err, int rc, const char *path)
{
    char msg[sizeof err->msg];
    snprintf(msg, sizeof msg, "%s", err->msg);
    return maec_fail(err, rc, "%s: %s", path, msg);
}

/* A linear probe as maec linprobe (and main_linprobe.py) writes it: an
 * encoder, then head.0 = BatchNorm1d(affine=False, eps 1e-6) with running
 * statistics and head.1 = Linear. At test time the BatchNorm is an affine
 * map, folded here into a plain head: W' = W / sqrt(var + eps), b' = b -
 * W' mean. The features must be ones a classifier computes: the class token
 * after the final norm, or (a probe of a fine-tuned model) fc_norm of the
 * mean of the patch tokens; "maec_probe" metadata names them, and a file
 * without it is taken as the official probe (class token). */
static int probe_load(st_file *f, const maec_config *hint, maec_classifier_opts *opts, maec_classifier **out,
                      maec_error *err)
{
    const char *path = f->path;
    int im = st_find(f, "head.0.running_mean"), iv = st_find(f, "head.0.running_var");
    int iw = st_find(f, "head.1.weight"), ib = st_find(f, "head.1.bias");
    if (st_find(f, "patch_embed.proj.weight") < 0)
        return maec_fail(err, MAEC_EFORMAT, "%s: a linear probe of features without its encoder: it runs on "
                         "features (maec linprobe --test-features), not on images", path);
    if (im < 0 || iv < 0 || iw < 0 || ib < 0 || f->e[iw].ndim != 2 || f->e[ib].ndim != 1 ||
        f->e[im].ndim != 1 || f->e[iv].ndim != 1 || f->e[iw].shape[0] < 1 || f->e[iw].shape[0] > (1 << 24) ||
        f->e[ib].shape[0] != f->e[iw].shape[0] || f->e[im].shape[0] != f->e[iw].shape[1] ||
        f->e[iv].shape[0] != f->e[iw].shape[1])
        return maec_fail(err, MAEC_EFORMAT, "%s: a linear probe needs head.0.running_mean [D], "
                         "head.0.running_var [D], head.1.weight [K, D] and head.1.bias [K]", path);
    maec_config c;
    int rc = clf_file_config(f, hint, &c, opts, err);
    if (rc) return rc;
    const char *pm = st_meta(f, "maec_probe");
    cJSON *pj = pm ? cJSON_Parse(pm) : NULL;
    const cJSON *fe = pj ? cJSON_GetObjectItemCaseSensitive(pj, "feature") : NULL;
    int mean = cJSON_IsString(fe) && !strcmp(fe->valuestring, "mean");
    cJSON_Delete(pj);
    if (mean && !opts->global_pool)
        return maec_fail(err, MAEC_EFORMAT, "%s: a probe of the mean of the patch tokens after the final norm; "
                         "maec's classifiers take the class token, or fc_norm of the mean", path);
    int D = (int)f->e[iw].shape[1], K = (int)f->e[iw].shape[0];
    if (D != c.dim)
        return maec_fail(err, MAEC_EFORMAT, "%s: the probe's head takes %d features, the encoder gives %d", path, D,
                         c.dim);
    opts->num_classes = K;
    maec_classifier *m = NULL;
    rc = clf_alloc(&c, opts, &m, err);
    if (rc) return prefix_path(err, rc, path);
    /* the table ends with head.weight, head.bias: the encoder is all before */
    int nt = m->ntensors - 2;
    rc = load_tensor_table(f, m->info, nt, m->params, 0, err);
    for (int k = 0; !rc && k < f->n; k++) {
        const char *nm = f->e[k].name;
        if (maec_classifier_find(m, nm) < 0 && strncmp(nm, "head.0.", 7) && strncmp(nm, "head.1.", 7))
            rc = maec_fail(err, MAEC_EFORMAT, "%s: unexpected tensor '%s' for this linear probe", path, nm);
    }
    float *W = NULL, *b = NULL, *mu = NULL, *var = NULL;
    if (!rc) {
        W = malloc((size_t)K * D * sizeof(float)), b = malloc((size_t)K * sizeof(float));
        mu = malloc((size_t)D * sizeof(float)), var = malloc((size_t)D * sizeof(float));
        if (!W || !b || !mu || !var) rc = maec_fail(err, MAEC_ENOMEM, "out of memory");
    }
    if (!rc) rc = st_read_f32(f, iw, W, err);
    if (!rc) rc = st_read_f32(f, ib, b, err);
    if (!rc) rc = st_read_f32(f, im, mu, err);
    if (!rc) rc = st_read_f32(f, iv, var, err);
    for (int j = 0; !rc && j < D; j++)
        if (!(var[j] >= 0)) rc = maec_fail(err, MAEC_EFORMAT, "%s: head.0.running_var has a negative value", path);
    if (!rc) {
        float *hw = m->params + m->info[nt].offset, *hb = m->params + m->info[nt + 1].offset;
        for (int k = 0; !rc && k < K; k++) {
            double acc = b[k];
            for (int j = 0; j < D; j++) {
                double wj = W[(size_t)k * D + j] / sqrt((double)var[j] + 1e-6);
                hw[(size_t)k * D + j] = (float)wj;
                acc -= wj * mu[j];
                if (!isfinite(hw[(size_t)k * D + j]))
                    rc = maec_fail(err, MAEC_EFORMAT, "%s: the probe's head, its BatchNorm folded in, "
                                   "does not fit in float32", path);
            }
            hb[k] = (float)acc;
            if (!rc && !isfinite(hb[k]))
                rc = maec_fail(err, MAEC_EFORMAT, "%s: the probe's head, its BatchNorm folded in, does not fit "
                               "in float32", path);
        }
    }
    free(W), free(b), free(mu), free(var);
    for (int i = 0; !rc && i < f->nmeta; i++)
        if (!is_reserved(f->meta_key[i])) maec_classifier_set_meta(m, f->meta_key[i], f->meta_val[i]);
    if (rc) {
        maec_classifier_free(m);
        return rc;
    }
    clf_upload(m);
    *out = m;
    return 0;
}

/* with_opt: a checkpoint of maec_classifier_checkpoint_save, moments and step included */
static int clf_load(const char *path, const maec_config *hint, const maec_classifier_opts *o,
                    uint64_t seed, maec_classifier **out, char **run_json, int with_opt, maec_error *err)
{
    *out = NULL;
    if (run_json) *run_json = NULL;
    maec_classifier_opts opts;
    if (o) opts = *o;
    else maec_classifier_defaults(&opts);
    st_file f;
    int rc = st_open(path, &f, err);
    if (rc) return rc;
    if (!with_opt && st_find(&f, "head.1.weight") >= 0) {
        rc = probe_load(&f, hint, &opts, out, err);
        st_close(&f);
        return rc;
    }
    int is_clf = st_find(&f, "head.weight") >= 0 || st_find(&f, "fc_norm.weight") >= 0;
    if (with_opt && !is_clf) {
        st_close(&f);
        return maec_fail(err, MAEC_EFORMAT, "%s: not a fine-tuning checkpoint (no classifier head)", path);
    }
    if (!is_clf) {
        st_close(&f);
        maec_model *m;
        if ((rc = maec_model_load(path, hint, &m, err))) return rc;
        rc = maec_classifier_create(NULL, m, &opts, seed, out, err);
        if (rc) rc = prefix_path(err, rc, path);
        maec_model_free(m);
        return rc;
    }
    maec_config c;
    maec_classifier *m = NULL;
    rc = clf_file_config(&f, hint, &c, &opts, err);
    if (!rc) {
        rc = clf_alloc(&c, &opts, &m, err);
        if (rc) rc = prefix_path(err, rc, path);
    }
    if (!rc) rc = load_tensor_table(&f, m->info, m->ntensors, m->params, 0, err);
    for (int k = 0; !rc && k < f.n; k++)
        if (!opt_state_base(f.e[k].name) && maec_classifier_find(m, f.e[k].name) < 0)
            rc = maec_fail(err, MAEC_EFORMAT, "%s: unexpected tensor '%s' for this classifier", path, f.e[k].name);
    if (!rc) rc = check_opt_state(&f, m->info, m->ntensors, err);
    if (!rc && with_opt) rc = read_opt_state(&f, m->info, m->ntensors, m->adam_m, m->adam_v, &m->step, run_json, err);
    for (int i = 0; !rc && i < f.nmeta; i++)
        if (!is_reserved(f.meta_key[i])) maec_classifier_set_meta(m, f.meta_key[i], f.meta_val[i]);
    st_close(&f);
    if (rc) {
        maec_classifier_free(m);
        return rc;
    }
    clf_upload(m);
    *out = m;
    return 0;
}

int maec_classifier_load(const char *path, const maec_config *hint, const maec_classifier_opts *o,
                         uint64_t seed, maec_classifier **out, maec_error *err)
{
    return clf_load(path, hint, o, seed, out, NULL, 0, err);
}

int maec_classifier_checkpoint_load(const char *path, const maec_config *hint,
                                    const maec_classifier_opts *o, maec_classifier **out,
                                    char **run_json, maec_error *err)
{
    int rc = clf_load(path, hint, o, 0, out, run_json, 1, err);
    if (rc && run_json) {
        free(*run_json);
        *run_json = NULL;
    }
    return rc;
}

/* ------------------------------------------------------------ workspace */

struct maec_clf_workspace {
    maec_config cfg;
    maec_classifier_opts opts;
    const maec_backend *be;
    int max_B, train, L, T, D, Cpp, K, nacts;
    float *images; /* a backend copy of the batch (backends without host memory) */
    float *patch_in, *tokens, *x0;
    block_acts *acts;
    float *normed, *nm, *nr;          /* final norm over all rows (features) */
    float *pooled, *feat, *fm, *fr;   /* [B, D] pooled / cls rows; after the norm */
    float *logits, *probs;
    float *dlogits, *dfeat, *dpooled, *dx, *dtmp, *dtokens;
    float *keep, *targets;            /* the host's, uploaded */
    block_scratch scratch;
    void *mem;
    float *h_logits, *h_keep;         /* host copies (backends without host memory) */
};

static void carve_ws(maec_clf_workspace *w, arena *a)
{
    const maec_config *c = &w->cfg;
    size_t B = (size_t)w->max_B, BT = B * w->T, D = (size_t)w->D;
    int Hd = w->D * c->mlp_ratio;
    w->patch_in = TAKE(a, B * w->L * w->Cpp);
    w->tokens = TAKE(a, B * w->L * D);
    w->x0 = TAKE(a, BT * D);
    for (int i = 0; i < w->nacts; i++) carve_block(a, &w->acts[i], w->max_B, w->T, w->D, c->heads, Hd);
    w->normed = TAKE(a, BT * D);
    w->nm = TAKE(a, BT);
    w->nr = TAKE(a, BT);
    w->pooled = TAKE(a, B * D);
    w->feat = TAKE(a, B * D);
    w->fm = TAKE(a, B);
    w->fr = TAKE(a, B);
    int K = w->K > 0 ? w->K : 1;
    w->logits = TAKE(a, B * K);
    w->targets = TAKE(a, B * K);
    w->probs = TAKE(a, B * K);
    if (w->train) {
        w->dlogits = TAKE(a, B * K);
        w->dfeat = TAKE(a, B * D);
        w->dpooled = TAKE(a, B * D);
        w->dx = TAKE(a, BT * D);
        w->dtmp = TAKE(a, BT * D);
        w->dtokens = TAKE(a, B * w->L * D);
        w->keep = TAKE(a, (size_t)c->depth * 2 * B);
        carve_scratch(w->be, a, &w->scratch, w->max_B, w->T, w->D, Hd);
    }
    if (!w->be->host_shared) w->images = TAKE(a, B * c->in_chans * c->img_h * c->img_w);
}

int maec_clf_workspace_create(const maec_classifier *c, int max_batch, int train,
                              maec_clf_workspace **out, maec_error *err)
{
    *out = NULL;
    if (max_batch < 1 || max_batch > 1 << 20)
        return maec_fail(err, MAEC_EINVAL, "batch size %d out of range", max_batch);
    maec_clf_workspace *w = calloc(1, sizeof *w);
    if (!w) return maec_fail(err, MAEC_ENOMEM, "out of memory");
    w->cfg = c->cfg;
    w->opts = c->opts;
    w->max_B = max_batch;
    w->train = train ? 1 : 0;
    w->L = maec_num_patches(&c->cfg);
    w->T = w->L + 1;
    w->D = c->cfg.dim;
    w->Cpp = maec_patch_dim(&c->cfg);
    w->K = c->opts.num_classes;
    w->nacts = train ? c->cfg.depth : 2; /* inference: two sets, used in turn */
    if (w->nacts < 1) w->nacts = 1;
    w->be = c->be;
    if (!w->be->host_shared) {
        int K = w->K > 0 ? w->K : 1;
        w->h_logits = malloc((size_t)max_batch * K * sizeof(float));
        w->h_keep = malloc(((size_t)c->cfg.depth * 2 + 1) * max_batch * sizeof(float));
        if (!w->h_logits || !w->h_keep) {
            maec_clf_workspace_free(w);
            return maec_fail(err, MAEC_ENOMEM, "out of memory");
        }
    }
    w->acts = calloc((size_t)w->nacts, sizeof(block_acts));
    if (!w->acts) {
        free(w);
        return maec_fail(err, MAEC_ENOMEM, "out of memory");
    }
    arena a = {NULL, 0};
    carve_ws(w, &a);
    w->mem = w->be->alloc(a.used);
    if (!w->mem) {
        char fits[160];
        activations_oom_hint(w->be, a.used, max_batch, fits, sizeof fits);
        maec_clf_workspace_free(w);
        return maec_fail(err, MAEC_ENOMEM, "out of memory for activations (%zu MiB at batch %d%s)", a.used >> 20,
                         max_batch, fits);
    }
    a.base = w->mem;
    a.used = 0;
    carve_ws(w, &a);
    *out = w;
    return 0;
}

void maec_clf_workspace_free(maec_clf_workspace *w)
{
    if (!w) return;
    free(w->acts);
    free(w->h_logits);
    free(w->h_keep);
    if (w->mem) w->be->free(w->mem);
    free(w);
}

const float *maec_clf_ws_logits(const maec_clf_workspace *w)
{
    if (w->be->host_shared) return w->logits;
    w->be->download(w->h_logits, w->logits, (size_t)w->max_B * (w->K > 0 ? w->K : 1) * sizeof(float));
    return w->h_logits;
}

static int ws_fits(const maec_classifier *c, const maec_clf_workspace *w, int B, maec_error *err)
{
    if (B < 1 || B > w->max_B)
        return maec_fail(err, MAEC_EINVAL, "batch of %d images, the workspace holds %d", B, w->max_B);
    if (memcmp(&w->cfg, &c->cfg, sizeof c->cfg) != 0 || w->opts.num_classes != c->opts.num_classes ||
        w->opts.global_pool != c->opts.global_pool || w->be != c->be)
        return maec_fail(err, MAEC_EINVAL, "workspace was made for another classifier or backend");
    return 0;
}

/* ------------------------------------------------------------ forward */

/* drop-path scales: keep[(i*2 + branch)*B + b] */
static void draw_keep(const maec_classifier *c, float *keep, int B, uint64_t *rng)
{
    int depth = c->cfg.depth;
    for (int i = 0; i < depth; i++) {
        double dpr = depth > 1 ? (double)c->opts.drop_path * i / (depth - 1) : 0.0;
        float kp = (float)(1.0 - dpr);
        for (int j = 0; j < 2 * B; j++) {
            float *k = keep + (size_t)i * 2 * B + j;
            if (dpr <= 0) *k = 1.0f;
            else *k = rng_uniform(rng) < kp ? 1.0f / kp : 0.0f;
        }
    }
}

/* patch embedding, class token, position embeddings, blocks; returns x_last [B*T, D] */
/* the tokens [B, T, D] after the first `blocks` blocks (0: the embeddings) */
static const float *encode_upto(maec_classifier *c, maec_clf_workspace *w, const float *images, int B,
                                const float *keep, int blocks)
{
    const maec_backend *be = w->be;
    const clf_views *p = &c->p;
    const maec_config *cf = &c->cfg;
    int D = w->D, L = w->L, T = w->T, Hd = D * cf->mlp_ratio;
    if (!be->host_shared) {
        be->upload(w->images, images, (size_t)B * cf->in_chans * cf->img_h * cf->img_w * sizeof(float));
        images = w->images;
    }
    encoder_embed_forward(be, w->x0, w->tokens, w->patch_in, images, NULL, NULL, NULL, p->cls_token, p->pos_embed,
                          p->pe_w, p->pe_b, cf, B, L);
    const float *x = w->x0;
    for (int i = 0; i < blocks; i++) {
        block_acts *a = &w->acts[w->train ? i : (i & 1)];
        const float *k1 = keep ? keep + (size_t)i * 2 * B : NULL, *k2 = keep ? k1 + B : NULL;
        block_forward_ex(be, a, &p->blocks[i], x, B, T, D, cf->heads, Hd, k1, k2);
        x = a->x_out;
    }
    return x;
}

static const float *encode(maec_classifier *c, maec_clf_workspace *w, const float *images, int B,
                           const float *keep)
{
    return encode_upto(c, w, images, B, keep, c->cfg.depth);
}

int maec_classifier_tokens(maec_classifier *c, maec_clf_workspace *w, const float *images, int B, int layer,
                           int final_norm, float *out, maec_error *err)
{
    int rc = ws_fits(c, w, B, err);
    if (rc) return rc;
    if (layer < 0) layer = c->cfg.depth;
    if (layer > c->cfg.depth)
        return maec_fail(err, MAEC_EINVAL, "layer %d: the encoder has %d blocks", layer, c->cfg.depth);
    if (final_norm && c->opts.global_pool)
        return maec_fail(err, MAEC_EINVAL, "this fine-tuned model has no final norm of its tokens (it pools, then "
                         "fc_norm): ask for the tokens without it");
    int D = w->D, T = w->T;
    const float *x = encode_upto(c, w, images, B, NULL, layer);
    if (final_norm) {
        w->be->layernorm_forward(w->normed, w->nm, w->nr, x, c->p.norm_w, c->p.norm_b, B * T, D);
        x = w->normed;
    }
    w->be->download(out, x, (size_t)B * T * D * sizeof(float));
    return 0;
}

int maec_classifier_attention(maec_classifier *c, maec_clf_workspace *w, const float *images, int B, float *out,
                              maec_error *err)
{
    int rc = ws_fits(c, w, B, err);
    if (rc) return rc;
    int depth = c->cfg.depth, T = w->T, H = c->cfg.heads;
    if (depth < 1) return maec_fail(err, MAEC_EINVAL, "this encoder has no blocks, so no attention maps");
    encode_upto(c, w, images, B, NULL, depth);
    /* the last block's softmax(q k^T / sqrt(head width)), which its
     * attention op keeps for the backward pass */
    const float *att = w->acts[w->train ? depth - 1 : ((depth - 1) & 1)].att;
    w->be->download(out, att, (size_t)B * H * T * T * sizeof(float));
    return 0;
}

int maec_classifier_features(maec_classifier *c, maec_clf_workspace *w, const float *images, int B,
                             int feature, float *out, maec_error *err)
{
    int rc = ws_fits(c, w, B, err);
    if (rc) return rc;
    if (feature != MAEC_FEATURE_CLS && feature != MAEC_FEATURE_MEAN)
        return maec_fail(err, MAEC_EINVAL, "unknown feature kind %d", feature);
    if (c->opts.global_pool && feature == MAEC_FEATURE_CLS)
        return maec_fail(err, MAEC_EINVAL,
                         "this classifier pools globally and has no final norm for the class token; use the mean feature");
    int D = w->D, T = w->T;
    const maec_backend *be = w->be;
    const float *x = encode(c, w, images, B, NULL);
    if (c->opts.global_pool) {
        be->mean_pool_forward(w->pooled, x, B, T, D);
        be->layernorm_forward(w->feat, w->fm, w->fr, w->pooled, c->p.fcn_w, c->p.fcn_b, B, D);
    } else if (feature == MAEC_FEATURE_CLS) {
        be->rows_gather(w->pooled, x, B, T, 0, 1, D);
        be->layernorm_forward(w->feat, w->fm, w->fr, w->pooled, c->p.norm_w, c->p.norm_b, B, D);
    } else {
        be->layernorm_forward(w->normed, w->nm, w->nr, x, c->p.norm_w, c->p.norm_b, B * T, D);
        be->mean_pool_forward(w->feat, w->normed, B, T, D);
    }
    be->download(out, w->feat, (size_t)B * D * sizeof(float));
    return 0;
}

int maec_classifier_forward_backward(maec_classifier *c, maec_clf_workspace *w, const float *images, int B,
                                     const float *targets, const float *keep, uint64_t *rng, int backward,
                                     float grad_scale, float *loss, maec_error *err)
{
    int rc = ws_fits(c, w, B, err);
    if (rc) return rc;
    int K = c->opts.num_classes, D = w->D, T = w->T, L = w->L;
    const maec_config *cf = &c->cfg;
    if (K < 1) return maec_fail(err, MAEC_EINVAL, "this classifier has no head");
    if (backward && !w->train)
        return maec_fail(err, MAEC_EINVAL, "the backward pass needs a training workspace");
    if (backward && !targets) return maec_fail(err, MAEC_EINVAL, "the backward pass needs targets");
    size_t nkeep = (size_t)c->cfg.depth * 2 * B;
    if (!keep && backward && rng && c->opts.drop_path > 0) { /* drawn on the host */
        float *hk = w->be->host_shared ? w->keep : w->h_keep;
        draw_keep(c, hk, B, rng);
        keep = hk;
    }
    if (keep && !w->be->host_shared) { /* the caller's or the draw, to the backend */
        if (!w->train) return maec_fail(err, MAEC_EINVAL, "drop path needs a training workspace");
        w->be->upload(w->keep, keep, nkeep * sizeof(float));
        keep = w->keep;
    }
    if (targets && !w->be->host_shared) {
        w->be->upload(w->targets, targets, (size_t)B * K * sizeof(float));
        targets = w->targets;
    }
    const maec_backend *be = w->be;
    const float *x = encode(c, w, images, B, keep);
    const float *nw = c->opts.global_pool ? c->p.fcn_w : c->p.norm_w;
    const float *nb = c->opts.global_pool ? c->p.fcn_b : c->p.norm_b;
    if (c->opts.global_pool) be->mean_pool_forward(w->pooled, x, B, T, D);
    else be->rows_gather(w->pooled, x, B, T, 0, 1, D);
    be->layernorm_forward(w->feat, w->fm, w->fr, w->pooled, nw, nb, B, D);
    be->linear_forward(w->logits, w->feat, c->p.head_w, c->p.head_b, NULL, B, D, K);
    if (!targets) {
        if (loss) *loss = 0;
        return 0;
    }
    double l = be->xent_forward(w->probs, w->logits, targets, B, K);
    if (loss) *loss = (float)l;
    if (!isfinite(l)) return maec_fail(err, MAEC_ENONFINITE, "the loss is not finite (%g)", l);
    if (!backward) return 0;
    c->grads_zero = 0;

    clf_views *g = &c->g;
    const clf_views *p = &c->p;
    be->xent_backward(w->dlogits, w->probs, targets, B, K, grad_scale);
    be->linear_backward(w->dfeat, g->head_w, g->head_b, w->dlogits, w->feat, p->head_w, B, D, K);
    be->zero(w->dpooled, (size_t)B * D * sizeof(float));
    be->layernorm_backward(w->dpooled, c->opts.global_pool ? g->fcn_w : g->norm_w,
                       c->opts.global_pool ? g->fcn_b : g->norm_b, w->dfeat, w->pooled, nw, w->fm, w->fr, B, D);
    int first = clf_first_trainable_block(c);
    if (c->opts.tune_blocks == 0) return 0;
    if (c->opts.global_pool) be->mean_pool_backward(w->dx, w->dpooled, B, T, D);
    else be->rows_expand(w->dx, w->dpooled, B, T, 0, 1, D);
    int Hd = D * cf->mlp_ratio;
    for (int i = cf->depth - 1; i >= first; i--) {
        const float *x_in = i ? w->acts[i - 1].x_out : w->x0;
        const float *k1 = keep ? keep + (size_t)i * 2 * B : NULL, *k2 = keep ? k1 + B : NULL;
        block_backward_ex(be, &w->acts[i], &p->blocks[i], &g->blocks[i], x_in, w->dx, w->dtmp, &w->scratch, B, T, D,
                          cf->heads, Hd, k1, k2);
    }
    if (first > 0) return 0;
    /* embeddings: class token, position embeddings, patch embedding */
    encoder_embed_backward(be, w->dtokens, w->dx, NULL, g->cls_token, g->pos_embed, NULL, g->pe_w, g->pe_b,
                           w->patch_in, p->pe_w, cf, B, L);
    return 0;
}

double maec_classifier_clip_grad(maec_classifier *c, float max_norm)
{
    /* torch.nn.utils.clip_grad_norm_ (norm type 2) over the trainable
     * tensors only (frozen ones have no gradient in PyTorch): the 2-norm of
     * the tensors' 2-norms, then every gradient times max_norm / (norm +
     * 1e-6) where that is below 1; sums in double in a fixed order */
    const maec_backend *be = c->be;
    double total = 0;
    for (int i = 0; i < c->ntensors; i++)
        if (c->info[i].trainable) total += be->sumsq(c->dgrads + c->info[i].offset, c->info[i].size);
    total = sqrt(total);
    double coef = (double)max_norm / (total + 1e-6);
    if (max_norm > 0 && coef < 1.0)
        for (int i = 0; i < c->ntensors; i++)
            if (c->info[i].trainable) be->scale(c->dgrads + c->info[i].offset, c->info[i].size, (float)coef);
    return total;
}

void maec_classifier_adamw_step(maec_classifier *c, const maec_adamw *o, float layer_decay)
{
    c->step++;
    for (int i = 0; i < c->ntensors; i++) {
        const maec_tensor_info *t = &c->info[i];
        if (!t->trainable) { /* the update clears the others' */
            c->be->zero(c->dgrads + t->offset, t->size * sizeof(float));
            continue;
        }
        float lr = (float)(o->lr * maec_classifier_lr_scale(c, i, layer_decay));
        size_t off = t->offset;
        c->be->adamw(c->dparams + off, c->dgrads + off, c->dadam_m + off, c->dadam_v + off, t->size, lr, o->beta1,
                     o->beta2, o->eps, t->decay ? o->weight_decay : 0.0f, (long)c->step);
    }
    c->grads_zero = 1; /* as maec_adamw_step: every gradient is left zero */
}
