/* Hugging Face transformers' ViTMAE checkpoints (ViTMAEForPreTraining or
 * ViTMAEModel, saved by save_pretrained as model.safetensors or
 * pytorch_model.bin with config.json beside): their tensor names mapped to
 * the official MAE ones, the inverse of transformers'
 * convert_vit_mae_to_pytorch.py, and query / key / value joined into one
 * qkv tensor along the first dimension. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../util.h"
#include "safetensors.h"

static int exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

char *hf_weights_in(const char *dir)
{
    static const char *names[] = {"model.safetensors", "pytorch_model.bin"};
    for (int i = 0; i < 2; i++) {
        size_t n = strlen(dir) + strlen(names[i]) + 2;
        char *p = malloc(n);
        if (!p) return NULL;
        snprintf(p, n, "%s/%s", dir, names[i]);
        if (exists(p)) return p;
        free(p);
    }
    return NULL;
}

int hf_names(const st_file *f)
{
    return st_find(f, "vit.embeddings.cls_token") >= 0 || st_find(f, "embeddings.cls_token") >= 0;
}

/* dst := s with its prefix `from` replaced by `to`, if s starts with from */
static int swap_prefix(char *dst, size_t n, const char *s, const char *from, const char *to)
{
    size_t k = strlen(from);
    if (strncmp(s, from, k)) return 0;
    snprintf(dst, n, "%s%s", to, s + k);
    return 1;
}

/* a block's part: HF's names inside a layer -> the official ones */
static const char *const BLOCK_PARTS[][2] = {
    {"attention.output.dense.", "attn.proj."}, {"layernorm_before.", "norm1."}, {"layernorm_after.", "norm2."},
    {"intermediate.dense.", "mlp.fc1."},       {"output.dense.", "mlp.fc2."},
};

/* the official name of an HF tensor (of the joined qkv for query); *part
 * 0 for an ordinary tensor, 1/2/3 for query/key/value */
static void official_name(const char *hf, char *out, size_t n, int *part)
{
    *part = 0;
    const char *s = hf;
    if (!strncmp(s, "vit.", 4)) s += 4;
    static const char *const whole[][2] = {
        {"embeddings.cls_token", "cls_token"},       {"embeddings.position_embeddings", "pos_embed"},
        {"decoder.mask_token", "mask_token"},        {"decoder.decoder_pos_embed", "decoder_pos_embed"},
    };
    for (size_t i = 0; i < sizeof whole / sizeof whole[0]; i++)
        if (!strcmp(s, whole[i][0])) {
            snprintf(out, n, "%s", whole[i][1]);
            return;
        }
    if (swap_prefix(out, n, s, "embeddings.patch_embeddings.projection.", "patch_embed.proj.") ||
        swap_prefix(out, n, s, "layernorm.", "norm.") ||
        swap_prefix(out, n, s, "decoder.decoder_embed.", "decoder_embed.") ||
        swap_prefix(out, n, s, "decoder.decoder_norm.", "decoder_norm.") ||
        swap_prefix(out, n, s, "decoder.decoder_pred.", "decoder_pred."))
        return;
    const char *layer = NULL, *to = NULL;
    if (!strncmp(s, "encoder.layer.", 14)) layer = s + 14, to = "blocks.";
    else if (!strncmp(s, "decoder.decoder_layers.", 23)) layer = s + 23, to = "decoder_blocks.";
    if (layer) {
        char *end;
        long idx = strtol(layer, &end, 10);
        if (end != layer && *end == '.') {
            const char *rest = end + 1;
            static const char *const qkv[] = {"attention.attention.query.", "attention.attention.key.",
                                              "attention.attention.value."};
            for (int q = 0; q < 3; q++)
                if (!strncmp(rest, qkv[q], strlen(qkv[q]))) {
                    snprintf(out, n, "%s%ld.attn.qkv.%s", to, idx, rest + strlen(qkv[q]));
                    *part = q + 1;
                    return;
                }
            for (size_t i = 0; i < sizeof BLOCK_PARTS / sizeof BLOCK_PARTS[0]; i++)
                if (!strncmp(rest, BLOCK_PARTS[i][0], strlen(BLOCK_PARTS[i][0]))) {
                    snprintf(out, n, "%s%ld.%s%s", to, idx, BLOCK_PARTS[i][1], rest + strlen(BLOCK_PARTS[i][0]));
                    return;
                }
        }
    }
    snprintf(out, n, "%s", hf); /* unknown: kept, and refused by the loader by its own name */
}

/* config.json beside the weights as maec's configuration JSON, or NULL */
static char *config_from_json(const st_file *f)
{
    const char *path = f->path, *slash = strrchr(path, '/');
    size_t dl = slash ? (size_t)(slash - path) : 1;
    char cp[4096];
    snprintf(cp, sizeof cp, "%.*s/config.json", (int)dl, slash ? path : ".");
    char *buf = NULL;
    size_t len = 0;
    maec_error e;
    if (read_file(cp, &buf, &len, (size_t)1 << 20, &e)) return NULL;
    cJSON *o = cJSON_ParseWithLength(buf, len);
    free(buf);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return NULL;
    }
#define NUM(k, d) (cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(o, k)) ? cJSON_GetObjectItemCaseSensitive(o, k)->valuedouble : (d))
    int D = (int)NUM("hidden_size", 768), E = (int)NUM("decoder_hidden_size", 512);
    int ih = 224, iw = 224;
    const cJSON *is = cJSON_GetObjectItemCaseSensitive(o, "image_size");
    if (cJSON_IsNumber(is)) ih = iw = is->valueint;
    else if (cJSON_IsArray(is) && cJSON_GetArraySize(is) == 2)
        ih = cJSON_GetArrayItem(is, 0)->valueint, iw = cJSON_GetArrayItem(is, 1)->valueint;
    int has_dec = st_find(f, "decoder_embed.weight") >= 0; /* named as maec names it by now */
    double inter = NUM("intermediate_size", 4.0 * D);
    const cJSON *npl = cJSON_GetObjectItemCaseSensitive(o, "norm_pix_loss");
    char *out = malloc(1024);
    if (out)
        snprintf(out, 1024,
                 "{\"img_h\":%d,\"img_w\":%d,\"in_chans\":%d,\"patch_size\":%d,\"embed_dim\":%d,\"depth\":%d,"
                 "\"num_heads\":%d,\"decoder_embed_dim\":%d,\"decoder_depth\":%d,\"decoder_num_heads\":%d,"
                 "\"mlp_ratio\":%d,\"mask_ratio\":%.9g,\"norm_pix_loss\":%s,\"mask_token_in_encoder\":false,"
                 "\"loss_on_all\":false}",
                 ih, iw, (int)NUM("num_channels", 3), (int)NUM("patch_size", 16), D, (int)NUM("num_hidden_layers", 12),
                 (int)NUM("num_attention_heads", 12), has_dec ? E : 0, has_dec ? (int)NUM("decoder_num_hidden_layers", 8) : 0,
                 has_dec ? (int)NUM("decoder_num_attention_heads", 16) : 0, (int)(inter / D + 0.5),
                 NUM("mask_ratio", 0.75), cJSON_IsTrue(npl) ? "true" : "false");
#undef NUM
    cJSON_Delete(o);
    return out;
}

int hf_adopt(st_file *f, maec_error *err)
{
    st_entry *ne = calloc((size_t)f->n, sizeof *ne);
    size_t total = 0;
    for (int i = 0; i < f->n; i++) total += f->e[i].end - f->e[i].begin;
    char *nb = malloc(total ? total : 1);
    if (!ne || !nb) {
        free(ne), free(nb);
        return maec_fail(err, MAEC_ENOMEM, "out of memory");
    }
    int nn = 0, rc = 0;
    size_t at = 0;
    char name[512], other[512];
    for (int i = 0; i < f->n && !rc; i++) {
        int part;
        official_name(f->e[i].name, name, sizeof name, &part);
        if (part == 2 || part == 3) continue; /* joined with its query */
        st_entry e = f->e[i];
        e.name = strdup(name);
        if (!e.name) {
            rc = maec_fail(err, MAEC_ENOMEM, "out of memory");
            break;
        }
        e.begin = at;
        size_t bytes = f->e[i].end - f->e[i].begin;
        if (bytes > total - at || (part == 1 && f->e[i].ndim < 1)) { /* a name given twice, or a scalar query */
            free(e.name);
            rc = maec_fail(err, MAEC_EFORMAT, "%s: '%s' cannot be read as a ViTMAE tensor", f->path, f->e[i].name);
            break;
        }
        memcpy(nb + at, f->buf + f->data_start + f->e[i].begin, bytes);
        at += bytes;
        if (part == 1) { /* query, then key and value after it: qkv [3E, ...] */
            for (int q = 0; q < 2 && !rc; q++) {
                snprintf(other, sizeof other, "%s", f->e[i].name);
                char *dot = strstr(other, ".query.");
                if (!dot) {
                    rc = maec_fail(err, MAEC_EFORMAT, "%s: %s: no query in its name", f->path, f->e[i].name);
                    break;
                }
                char tail[256];
                snprintf(tail, sizeof tail, "%s", dot + 7);
                snprintf(dot, sizeof other - (size_t)(dot - other), ".%s.%s", q ? "value" : "key", tail);
                int k = st_find(f, other);
                if (k < 0 || strcmp(f->e[k].dtype, f->e[i].dtype) || f->e[k].ndim != f->e[i].ndim ||
                    f->e[k].count != f->e[i].count) {
                    rc = maec_fail(err, MAEC_EFORMAT, "%s: %s has no %s of its type and shape", f->path,
                                   f->e[i].name, other);
                    break;
                }
                size_t kb = f->e[k].end - f->e[k].begin;
                if (kb > total - at) {
                    rc = maec_fail(err, MAEC_EFORMAT, "%s: '%s' given twice", f->path, other);
                    break;
                }
                memcpy(nb + at, f->buf + f->data_start + f->e[k].begin, kb);
                at += kb;
            }
            if (rc) {
                free(e.name);
                break;
            }
            e.shape[0] *= 3;
            e.count *= 3;
        }
        e.end = at;
        ne[nn++] = e;
    }
    if (rc) {
        for (int i = 0; i < nn; i++) free(ne[i].name);
        free(ne), free(nb);
        return rc;
    }
    for (int i = 0; i < f->n; i++) free(f->e[i].name);
    free(f->e);
    free(f->buf);
    f->e = ne, f->n = nn, f->buf = nb, f->len = at, f->data_start = 0;
    /* the configuration from config.json, when the file has none of maec's */
    if (!st_meta(f, "maec_config")) {
        char *cfg = config_from_json(f);
        char **mk = realloc(f->meta_key, (size_t)(f->nmeta + 1) * sizeof *mk);
        if (mk) f->meta_key = mk;
        char **mv = mk ? realloc(f->meta_val, (size_t)(f->nmeta + 1) * sizeof *mv) : NULL;
        if (mv) f->meta_val = mv;
        if (cfg && mk && mv) {
            char *key = strdup("maec_config");
            if (key) {
                f->meta_key[f->nmeta] = key;
                f->meta_val[f->nmeta++] = cfg;
                cfg = NULL;
            }
        }
        free(cfg);
    }
    return 0;
}

void hf_name_of(const char *name, char *out, size_t n)
{
    /* official -> transformers' ViTMAEForPreTraining (its rename_key) */
    static const char *const whole[][2] = {
        {"cls_token", "vit.embeddings.cls_token"},  {"pos_embed", "vit.embeddings.position_embeddings"},
        {"mask_token", "decoder.mask_token"},       {"decoder_pos_embed", "decoder.decoder_pos_embed"},
    };
    for (size_t i = 0; i < sizeof whole / sizeof whole[0]; i++)
        if (!strcmp(name, whole[i][0])) {
            snprintf(out, n, "%s", whole[i][1]);
            return;
        }
    if (swap_prefix(out, n, name, "patch_embed.proj.", "vit.embeddings.patch_embeddings.projection.") ||
        swap_prefix(out, n, name, "norm.", "vit.layernorm.") ||
        swap_prefix(out, n, name, "decoder_embed.", "decoder.decoder_embed.") ||
        swap_prefix(out, n, name, "decoder_norm.", "decoder.decoder_norm.") ||
        swap_prefix(out, n, name, "decoder_pred.", "decoder.decoder_pred."))
        return;
    const char *rest = NULL, *to = NULL;
    if (!strncmp(name, "blocks.", 7)) rest = name + 7, to = "vit.encoder.layer.";
    else if (!strncmp(name, "decoder_blocks.", 15)) rest = name + 15, to = "decoder.decoder_layers.";
    if (rest) {
        char *end;
        long idx = strtol(rest, &end, 10);
        if (end != rest && *end == '.') {
            for (size_t i = 0; i < sizeof BLOCK_PARTS / sizeof BLOCK_PARTS[0]; i++) {
                const char *o = BLOCK_PARTS[i][1];
                if (!strncmp(end + 1, o, strlen(o))) {
                    snprintf(out, n, "%s%ld.%s%s", to, idx, BLOCK_PARTS[i][0], end + 1 + strlen(o));
                    return;
                }
            }
            if (!strncmp(end + 1, "attn.qkv.", 9)) { /* the caller splits it: QKV stands for query/key/value */
                snprintf(out, n, "%s%ld.attention.attention.QKV.%s", to, idx, end + 10);
                return;
            }
        }
    }
    snprintf(out, n, "%s", name);
}
