/* maec grad | init | info */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "io/npy.h"
#include "eval_common.h"
#include "io/safetensors.h"
#include "util.h"

/* An array's shape as "[2,1,28,28]" ("[]" for a 0-D array), cut short to
   fit buf; returns buf. */
static const char *npy_shape_str(const npy_array *a, char *buf, size_t len)
{
    size_t k = 0;
    buf[0] = 0;
    k += (size_t)snprintf(buf + k, len - k, "[");
    for (int d = 0; d < a->ndim && k < len; d++)
        k += (size_t)snprintf(buf + k, len - k, "%s%lld", d ? "," : "", (long long)a->shape[d]);
    if (k < len) snprintf(buf + k, len - k, "]");
    return buf;
}

/* maec grad --model M --images X.npy --noise N.npy --out G.safetensors */
int cmd_grad(int argc, char **argv)
{
    const char *model = NULL, *images = NULL, *noise = NULL, *out = NULL;
    maec_config hint;
    memset(&hint, 0, sizeof hint);
    int threads = 0;
    cli_opt opts[] = {
        {"model", OPT_STR, &model, "model weights (.safetensors or an official .pth, official names)", 1, 0, 0},
        {"images", OPT_STR, &images, "float32 [B,C,H,W] .npy", 1, 0, 0},
        {"noise", OPT_STR, &noise, "float32 [B,L] .npy: the masks (argsort, keep the first K)", 1, 0, 0},
        {"out", OPT_STR, &out, "output .safetensors: 'loss' and every gradient", 1, 0, 0},
        {"heads", OPT_INT, &hint.heads, "encoder heads (if not in the file)", 1, 4096, 0},
        {"decoder-heads", OPT_INT, &hint.dec_heads, "decoder heads (if not in the file)", 1, 4096, 0},
        {"mask-ratio", OPT_DOUBLE, &hint.mask_ratio, "mask ratio (if not in the file)", 0.0001, 0.9999, 0},
        {"norm-pix-loss", OPT_BOOL, &hint.norm_pix_loss, "per-patch normalized target", 1, 0, 0},
        {"threads", OPT_INT, &threads, "threads (default: all cores)", 1, 1024, 0},
    };
    int n = (int)(sizeof opts / sizeof opts[0]), npos;
    int rc = cli_parse("grad", "--model M --images X.npy --noise N.npy --out G.safetensors", argc,
                       argv, opts, n, NULL, 0, &npos);
    if (rc) return rc < 0 ? 2 : 0;
    if (!model || !images || !noise || !out) {
        cli_error("grad: --model, --images, --noise and --out are all required");
        return 2;
    }
    cli_set_threads("grad", threads);
    maec_error err = {0};
    maec_model *m = NULL;
    maec_workspace *ws = NULL;
    npy_array x = {0}, nz = {0};
    st_tensor *t = NULL;
    float *lossbuf = NULL;
    int status = 1;
    if (npy_load(images, &x, &err)) goto fail;
    if (maec_model_load(model, &hint, &m, &err)) {
        /* a file without size metadata whose patch grid is not square (as
           PyTorch writes it): the image height and width come from X.npy */
        maec_config h2 = hint;
        maec_error e2 = {0};
        if (x.ndim != 4 || x.shape[2] < 1 || x.shape[3] < 1 || x.shape[2] > 16384 || x.shape[3] > 16384)
            goto fail;
        h2.img_h = (int)x.shape[2];
        h2.img_w = (int)x.shape[3];
        if (maec_model_load(model, &h2, &m, &e2)) goto fail; /* report the first error */
    }
    const maec_config *c = maec_model_config(m);
    if (c->dec_depth < 1) {
        cli_error("grad: %s has no decoder (an encoder-only checkpoint); grad needs the full MAE", model);
        goto done;
    }
    char got[200];
    if (x.ndim != 4 || x.shape[1] != c->in_chans || x.shape[2] != c->img_h || x.shape[3] != c->img_w || x.shape[0] < 1) {
        cli_error("grad: %s has shape %s; the model wants [B,%d,%d,%d] (B >= 1)", images,
                  npy_shape_str(&x, got, sizeof got), c->in_chans, c->img_h, c->img_w);
        goto done;
    }
    int B = (int)x.shape[0], L = maec_num_patches(c);
    if (npy_load(noise, &nz, &err)) goto fail;
    if (nz.ndim != 2 || nz.shape[0] != B || nz.shape[1] != L) {
        cli_error("grad: %s has shape %s; the model wants [%d,%d] (batch, patches)", noise,
                  npy_shape_str(&nz, got, sizeof got), B, L);
        goto done;
    }
    if (maec_workspace_create(m, B, &ws, &err)) goto fail;
    maec_zero_grad(m);
    float loss;
    if (maec_forward_backward(m, ws, x.data, B, nz.data, NULL, 1, 1.0f, &loss, &err)) goto fail;
    int nt = maec_model_num_tensors(m);
    t = calloc((size_t)nt + 1, sizeof *t);
    lossbuf = malloc(sizeof(float));
    if (!t || !lossbuf) {
        cli_error("grad: out of memory");
        goto done;
    }
    *lossbuf = loss;
    int k = 0;
    t[k].name = "loss";
    t[k].ndim = 1;
    t[k].shape[0] = 1;
    t[k++].data = lossbuf;
    for (int i = 0; i < nt; i++) {
        const maec_tensor_info *ti = maec_model_tensor(m, i);
        if (!ti->trainable) continue;
        t[k].name = ti->name;
        t[k].ndim = ti->ndim;
        for (int d = 0; d < 4; d++) t[k].shape[d] = ti->shape[d];
        t[k++].data = maec_model_grads(m) + ti->offset;
    }
    if (st_save(out, t, k, NULL, NULL, 0, &err)) goto fail;
    printf("loss %.8g; %d gradients written to %s\n", (double)loss, k - 1, out);
    status = 0;
    goto done;
fail:
    cli_fail(&err);
done:
    free(t);
    free(lossbuf);
    npy_free(&x);
    npy_free(&nz);
    maec_workspace_free(ws);
    maec_model_free(m);
    return status;
}

/* Model options shared by init and pretrain: a preset, then overrides. */
int cmd_init(int argc, char **argv)
{
    const char *preset = "fmnist-tiny", *out = NULL, *size_s = NULL;
    uint64_t seed = 0;
    maec_config o;
    memset(&o, 0, sizeof o);
    double mask_ratio = 0;
    cli_opt opts[] = {
        {"model", OPT_STR, &preset, "preset (see maec info --presets)", 1, 0, 0},
        {"out", OPT_STR, &out, "output .safetensors", 1, 0, 0},
        {"seed", OPT_U64, &seed, "initialization seed", 1, 0, 0},
        {"input-size", OPT_STR, &size_s, "image size: N (square), HxW or H,W", 1, 0, 0},
        {"img-size", OPT_STR, &size_s, "the same as --input-size", 1, 0, 0},
        {"in-chans", OPT_INT, &o.in_chans, "channels", 1, 64, 0},
        {"patch-size", OPT_INT, &o.patch, "patch size", 1, 1024, 0},
        {"embed-dim", OPT_INT, &o.dim, "encoder width", 4, 16384, 0},
        {"depth", OPT_INT, &o.depth, "encoder blocks", 1, 256, 0},
        {"num-heads", OPT_INT, &o.heads, "encoder heads", 1, 4096, 0},
        {"decoder-embed-dim", OPT_INT, &o.dec_dim, "decoder width", 4, 16384, 0},
        {"decoder-depth", OPT_INT, &o.dec_depth, "decoder blocks", 1, 256, 0},
        {"decoder-num-heads", OPT_INT, &o.dec_heads, "decoder heads", 1, 4096, 0},
        {"mlp-ratio", OPT_INT, &o.mlp_ratio, "MLP hidden width / width, encoder and decoder (4)", 1, 64, 0},
        {"mask-ratio", OPT_DOUBLE, &mask_ratio, "mask ratio", 0.0001, 0.9999, 0},
        {"norm-pix-loss", OPT_BOOL, &o.norm_pix_loss, "per-patch normalized target", 1, 0, 0},
    };
    int n = (int)(sizeof opts / sizeof opts[0]), npos;
    int rc = cli_parse("init", "--model PRESET --out M.safetensors [overrides]", argc, argv, opts, n, NULL, 0, &npos);
    if (rc) return rc < 0 ? 2 : 0;
    if (!out) {
        cli_error("init: --out is required");
        return 2;
    }
    maec_error err = {0};
    maec_config c;
    if (maec_preset(preset, &c, &err)) return cli_fail(&err);
    if (size_s && cli_parse_size(size_s, &c.img_h, &c.img_w)) {
        cli_error("init: --input-size %s: give N, HxW or H,W (1 to 16384)", size_s);
        return 2;
    }
    if (o.in_chans) c.in_chans = o.in_chans;
    if (o.patch) c.patch = o.patch;
    if (o.dim) c.dim = o.dim;
    if (o.depth) c.depth = o.depth;
    if (o.heads) c.heads = o.heads;
    if (o.dec_dim) c.dec_dim = o.dec_dim;
    if (o.dec_depth) c.dec_depth = o.dec_depth;
    if (o.mlp_ratio) c.mlp_ratio = o.mlp_ratio;
    if (o.dec_heads) c.dec_heads = o.dec_heads;
    if (mask_ratio > 0) c.mask_ratio = mask_ratio;
    if (o.norm_pix_loss) c.norm_pix_loss = 1;
    maec_model *m;
    if (maec_model_create(&c, seed, &m, &err)) return cli_fail(&err);
    rc = maec_model_save(m, out, &err);
    maec_model_free(m);
    if (rc) return cli_fail(&err);
    printf("wrote %s\n", out);
    return 0;
}

enum { KIND_OTHER, KIND_MAE, KIND_CLASSIFIER };

/* What a weights file is: a classifier (timm's head / fc_norm, or a linear
 * probe's head.0 / head.1 on an encoder), an MAE (anything else with an
 * encoder), or something else maec wrote (a probe of features: only its
 * head). */
static int file_kind(const st_file *f, int *is_probe)
{
    *is_probe = st_find(f, "head.1.weight") >= 0;
    if (st_find(f, "patch_embed.proj.weight") < 0) return KIND_OTHER;
    if (*is_probe || st_find(f, "head.weight") >= 0 || st_find(f, "fc_norm.weight") >= 0) return KIND_CLASSIFIER;
    return KIND_MAE;
}

/* maec convert IN OUT.safetensors: any weights file maec reads (an official
 * .pth above all) as maec's own model or classifier file, with the
 * configuration the flags complete stored in it, so that no flag is needed
 * afterwards. */
/* an MAE as transformers' ViTMAEForPreTraining saves it: dir/model.safetensors
 * (its names, query/key/value apart) and dir/config.json */
static int save_hf(const maec_model *m, const char *dir, maec_error *err)
{
    const maec_config *c = maec_model_config(m);
    if (eval_mkdir_p(dir)) return maec_fail(err, MAEC_EIO, "cannot create %s: %s", dir, strerror(errno));
    int n = maec_model_num_tensors(m), k = 0;
    st_tensor *t = calloc((size_t)n * 3, sizeof *t);
    char (*names)[256] = calloc((size_t)n * 3, sizeof *names);
    if (!t || !names) {
        free(t), free(names);
        return maec_fail(err, MAEC_ENOMEM, "out of memory");
    }
    const float *params = maec_model_params((maec_model *)m);
    for (int i = 0; i < n; i++) {
        const maec_tensor_info *ti = maec_model_tensor(m, i);
        char hn[256];
        hf_name_of(ti->name, hn, sizeof hn);
        char *q = strstr(hn, ".QKV.");
        int parts = q ? 3 : 1;
        for (int p = 0; p < parts; p++) {
            st_tensor *o = &t[k];
            if (q) {
                *q = 0;
                int w = snprintf(names[k], sizeof names[k], "%s.%s.%s", hn, p == 0 ? "query" : p == 1 ? "key" : "value",
                                 q + 5);
                if (w < 0 || w >= (int)sizeof names[k]) names[k][0] = 0; /* names here are short */
                *q = '.';
            } else {
                snprintf(names[k], sizeof names[k], "%s", hn);
            }
            o->name = names[k];
            o->ndim = ti->ndim;
            for (int d = 0; d < ti->ndim; d++) o->shape[d] = ti->shape[d];
            size_t per = ti->size / parts;
            if (q) o->shape[0] /= 3;
            o->data = params + ti->offset + (size_t)p * per;
            k++;
        }
    }
    char path[2100];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    const char *mk[1] = {"format"}, *mv[1] = {"pt"};
    int rc = st_save(path, t, k, mk, mv, 1, err);
    free(t), free(names);
    if (rc) return rc;
    cJSON *o = cJSON_CreateObject();
    cJSON *arch = cJSON_AddArrayToObject(o, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString("ViTMAEForPreTraining"));
    cJSON_AddStringToObject(o, "model_type", "vit_mae");
    cJSON_AddNumberToObject(o, "hidden_size", c->dim);
    cJSON_AddNumberToObject(o, "num_hidden_layers", c->depth);
    cJSON_AddNumberToObject(o, "num_attention_heads", c->heads);
    cJSON_AddNumberToObject(o, "intermediate_size", c->dim * c->mlp_ratio);
    cJSON_AddStringToObject(o, "hidden_act", "gelu");
    cJSON_AddNumberToObject(o, "layer_norm_eps", 1e-6); /* the official MAE's, which maec runs */
    if (c->img_h == c->img_w) {
        cJSON_AddNumberToObject(o, "image_size", c->img_h);
    } else {
        cJSON *is = cJSON_AddArrayToObject(o, "image_size");
        cJSON_AddItemToArray(is, cJSON_CreateNumber(c->img_h));
        cJSON_AddItemToArray(is, cJSON_CreateNumber(c->img_w));
    }
    cJSON_AddNumberToObject(o, "patch_size", c->patch);
    cJSON_AddNumberToObject(o, "num_channels", c->in_chans);
    cJSON_AddBoolToObject(o, "qkv_bias", 1);
    cJSON_AddNumberToObject(o, "decoder_hidden_size", c->dec_dim);
    cJSON_AddNumberToObject(o, "decoder_num_hidden_layers", c->dec_depth);
    cJSON_AddNumberToObject(o, "decoder_num_attention_heads", c->dec_heads);
    cJSON_AddNumberToObject(o, "decoder_intermediate_size", c->dec_dim * c->mlp_ratio);
    cJSON_AddNumberToObject(o, "mask_ratio", c->mask_ratio);
    cJSON_AddBoolToObject(o, "norm_pix_loss", c->norm_pix_loss);
    char *js = cJSON_Print(o);
    cJSON_Delete(o);
    if (!js) return maec_fail(err, MAEC_ENOMEM, "out of memory");
    snprintf(path, sizeof path, "%s/config.json", dir);
    atomic_file af;
    rc = atomic_open(&af, path, err);
    if (!rc) {
        atomic_write(&af, js, strlen(js));
        rc = atomic_commit(&af, err);
    }
    free(js);
    return rc;
}

int cmd_convert(int argc, char **argv)
{
    maec_config hint;
    memset(&hint, 0, sizeof hint);
    double mask_ratio = 0;
    const char *to = "maec";
    cli_opt opts[] = {
        {"to", OPT_STR, &to, "maec (official MAE names, one .safetensors) | hf (a folder as transformers' "
         "save_pretrained writes a ViTMAEForPreTraining: model.safetensors + config.json)", 1, 0, 0},
        {"heads", OPT_INT, &hint.heads, "encoder heads (if not in the file)", 1, 4096, 0},
        {"decoder-heads", OPT_INT, &hint.dec_heads, "decoder heads (if not in the file)", 1, 4096, 0},
        {"norm-pix-loss", OPT_BOOL, &hint.norm_pix_loss, "the model was trained on normalized pixels", 1, 0, 0},
        {"mask-ratio", OPT_DOUBLE, &mask_ratio, "mask ratio to store (default 0.75)", 0.0001, 0.9999, 0},
    };
    char *pos[2];
    int npos;
    int rc = cli_parse("convert", "IN.pth|IN.safetensors OUT.safetensors [--heads N] [--decoder-heads N] [--norm-pix-loss]",
                       argc, argv, opts, 5, pos, 2, &npos);
    if (rc) return rc < 0 ? 2 : 0;
    if (npos != 2) {
        cli_error("convert: give an input file and an output .safetensors");
        return 2;
    }
    hint.mask_ratio = (float)mask_ratio;
    int hf = !strcmp(to, "hf");
    if (!hf && strcmp(to, "maec")) {
        cli_error("convert: --to %s: give maec or hf", to);
        return 2;
    }
    maec_error err = {0};
    st_file f;
    if (st_open(pos[0], &f, &err)) return cli_fail(&err);
    int is_probe, kind = file_kind(&f, &is_probe);
    st_close(&f);
    if (kind == KIND_OTHER) {
        cli_error("convert: %s has no encoder (no patch_embed.proj.weight): not an MAE or a ViT classifier", pos[0]);
        return 1;
    }
    const maec_config *cfg;
    maec_model *m = NULL;
    maec_classifier *c = NULL;
    if (hf && kind == KIND_CLASSIFIER) {
        cli_error("convert: --to hf writes an MAE (ViTMAEForPreTraining); %s is a classifier", pos[0]);
        return 2;
    }
    if (kind == KIND_CLASSIFIER) {
        maec_classifier_opts o;
        maec_classifier_defaults(&o);
        o.num_classes = 0;
        if (maec_classifier_load(pos[0], &hint, &o, 0, &c, &err)) return cli_fail(&err);
        cfg = maec_classifier_config(c);
        rc = maec_classifier_save(c, pos[1], &err);
    } else {
        if (maec_model_load(pos[0], &hint, &m, &err)) return cli_fail(&err);
        cfg = maec_model_config(m);
        rc = hf ? save_hf(m, pos[1], &err) : maec_model_save(m, pos[1], &err);
    }
    char *js = rc ? NULL : maec_config_to_json(cfg);
    maec_model_free(m);
    maec_classifier_free(c);
    if (rc) return cli_fail(&err);
    printf("wrote %s: %s %s\n", pos[1], kind == KIND_CLASSIFIER ? "classifier" : "MAE", js ? js : "");
    free(js);
    return 0;
}

int cmd_info(int argc, char **argv)
{
    int presets = 0;
    maec_config hint;
    memset(&hint, 0, sizeof hint);
    cli_opt opts[] = {
        {"presets", OPT_BOOL, &presets, "list the model presets", 1, 0, 0},
        {"heads", OPT_INT, &hint.heads, "encoder heads (if not in the file)", 1, 4096, 0},
        {"decoder-heads", OPT_INT, &hint.dec_heads, "decoder heads (if not in the file)", 1, 4096, 0},
    };
    char *pos[1];
    int npos;
    int rc = cli_parse("info", "MODEL.safetensors|MODEL.pth | --presets", argc, argv, opts, 3, pos, 1, &npos);
    if (rc) return rc < 0 ? 2 : 0;
    maec_error err = {0};
    if (presets) {
        char names[512];
        snprintf(names, sizeof names, "%s", maec_preset_names());
        for (char *s = strtok(names, " "); s; s = strtok(NULL, " ")) {
            maec_config c;
            maec_preset(s, &c, &err);
            char *js = maec_config_to_json(&c);
            printf("%-14s %s\n", s, js ? js : "");
            free(js);
        }
        return 0;
    }
    if (npos != 1) {
        cli_error("info: give one model file (or --presets)");
        return 2;
    }
    st_file f;
    if (st_open(pos[0], &f, &err)) return cli_fail(&err);
    int is_probe, kind = file_kind(&f, &is_probe);
    int is_clf = kind == KIND_CLASSIFIER;
    if (kind == KIND_OTHER) {
        const char *fmt = st_meta(&f, "format");
        printf("no encoder (format %s): %d tensors\n", fmt ? fmt : "unknown", f.n);
        for (int i = 0; i < f.n; i++) {
            printf("%-40s [", f.e[i].name);
            for (int d = 0; d < f.e[i].ndim; d++) printf("%s%lld", d ? "," : "", (long long)f.e[i].shape[d]);
            printf("] %s\n", f.e[i].dtype);
        }
        st_close(&f);
        return 0;
    }
    st_close(&f);
    const maec_config *cfg;
    maec_model *m = NULL;
    maec_classifier *c = NULL;
    if (is_clf) {
        maec_classifier_opts o;
        maec_classifier_defaults(&o);
        o.num_classes = 0;
        if (maec_classifier_load(pos[0], &hint, &o, 0, &c, &err)) return cli_fail(&err);
        cfg = maec_classifier_config(c);
    } else {
        if (maec_model_load(pos[0], &hint, &m, &err)) return cli_fail(&err);
        cfg = maec_model_config(m);
    }
    char *js = maec_config_to_json(cfg);
    printf("config %s\n", js ? js : "");
    free(js);
    if (c) {
        const maec_classifier_opts *o = maec_classifier_options(c);
        const char *names = maec_classifier_get_meta(c, "maec_classes");
        printf("classifier: %d classes, %s%s%s%s\n", o->num_classes,
               o->global_pool ? "mean of the patch tokens (fc_norm)" : "class token",
               is_probe ? "; a linear probe, its BatchNorm folded into head.weight and head.bias" : "",
               names ? "; classes " : "", names ? names : "");
    }
    size_t total = 0;
    int n = c ? maec_classifier_num_tensors(c) : maec_model_num_tensors(m);
    for (int i = 0; i < n; i++) {
        const maec_tensor_info *t = c ? maec_classifier_tensor(c, i) : maec_model_tensor(m, i);
        printf("%-40s [", t->name);
        for (int d = 0; d < t->ndim; d++) printf("%s%lld", d ? "," : "", (long long)t->shape[d]);
        printf("]%s%s\n", t->trainable ? "" : " fixed", t->decay ? " decay" : "");
        if (t->trainable) total += t->size;
    }
    printf("%zu trainable parameters\n", total);
    maec_model_free(m);
    maec_classifier_free(c);
    return 0;
}
