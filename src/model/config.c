/* Configurations: presets, checks, JSON. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "util.h"

int maec_num_patches(const maec_config *c)
{
    if (c->patch <= 0) return 0;
    return (c->img_h / c->patch) * (c->img_w / c->patch);
}

int maec_patch_dim(const maec_config *c) { return c->patch * c->patch * c->in_chans; }

int maec_num_keep(const maec_config *c)
{
    if (c->mask_strategy == MAEC_MASK_GRID && c->patch > 0) {
        int gh = c->img_h / c->patch, gw = c->img_w / c->patch;
        return ((gh + 1) / 2) * ((gw + 1) / 2);
    }
    int L = maec_num_patches(c);
    /* int(L * (1 - r)) computed as Python does, in double */
    return (int)((double)L * (1.0 - c->mask_ratio));
}

typedef struct {
    const char *name;
    maec_config c;
} preset;

#define BASE .mlp_ratio = 4, .mask_ratio = 0.75
static const preset presets[] = {
    {"vit-base-16", {224, 224, 3, 16, 768, 12, 12, 512, 8, 16, BASE, 0, 0, 0, 0}},
    {"vit-large-16", {224, 224, 3, 16, 1024, 24, 16, 512, 8, 16, BASE, 0, 0, 0, 0}},
    {"vit-huge-14", {224, 224, 3, 14, 1280, 32, 16, 512, 8, 16, BASE, 0, 0, 0, 0}},
    /* ViT-Tiny-like encoders for small images */
    {"fmnist-tiny", {28, 28, 1, 4, 192, 12, 3, 128, 4, 4, BASE, 0, 0, 0, 0}},
    {"cifar-tiny", {32, 32, 3, 4, 192, 12, 3, 128, 4, 4, BASE, 0, 0, 0, 0}},
    {"cifar-tiny-p2", {32, 32, 3, 2, 192, 12, 3, 128, 4, 4, BASE, 0, 0, 0, 0}},
    /* a few-minute model for 2 CPU cores */
    {"fmnist-mini", {28, 28, 1, 4, 128, 6, 4, 96, 2, 4, BASE, 0, 0, 0, 0}},
    /* for tests */
    {"test-tiny", {16, 16, 1, 4, 32, 2, 2, 24, 1, 2, BASE, 0, 0, 0, 0}},
};

const char *maec_preset_names(void)
{
    return "vit-base-16 vit-large-16 vit-huge-14 fmnist-tiny cifar-tiny cifar-tiny-p2 "
           "fmnist-mini test-tiny";
}

int maec_preset(const char *name, maec_config *c, maec_error *err)
{
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        if (!strcmp(presets[i].name, name)) {
            *c = presets[i].c;
            return 0;
        }
    }
    return maec_fail(err, MAEC_EINVAL, "unknown model preset '%s' (known: %s)", name,
                     maec_preset_names());
}

int default_heads(int width)
{
    switch (width) {
    case 768: return 12;
    case 1024: return 16;
    case 1280: return 16;
    case 512: return 16;
    default: return 0;
    }
}

int maec_config_check(const maec_config *c, maec_error *err)
{
#define BAD(...) return maec_fail(err, MAEC_EINVAL, __VA_ARGS__)
    if (c->patch < 1 || c->patch > 1024) BAD("patch size %d out of range", c->patch);
    if (c->in_chans < 1 || c->in_chans > 64) BAD("channels %d out of range (1..64)", c->in_chans);
    if (c->img_h < 1 || c->img_w < 1 || c->img_h > 16384 || c->img_w > 16384)
        BAD("image size %dx%d out of range", c->img_h, c->img_w);
    if (c->img_h % c->patch || c->img_w % c->patch)
        BAD("image size %dx%d is not a multiple of the patch size %d", c->img_h, c->img_w, c->patch);
    if (maec_num_patches(c) > 65536) BAD("too many patches (%d)", maec_num_patches(c));
    if (c->dim < 4 || c->dim % 4 || c->dim > 16384)
        BAD("encoder width %d must be a positive multiple of 4 (sin-cos embedding)", c->dim);
    if (c->depth < 0 || c->depth > 256) BAD("encoder depth %d out of range", c->depth);
    if (c->heads < 1 || c->dim % c->heads)
        BAD("encoder width %d is not divisible by %d heads", c->dim, c->heads);
    if (c->mlp_ratio < 1 || c->mlp_ratio > 64) BAD("mlp ratio %d out of range", c->mlp_ratio);
    if (c->dec_depth < 0 || c->dec_depth > 256) BAD("decoder depth %d out of range", c->dec_depth);
    if (c->dec_depth > 0) {
        if (c->dec_dim < 4 || c->dec_dim % 4 || c->dec_dim > 16384)
            BAD("decoder width %d must be a positive multiple of 4", c->dec_dim);
        if (c->dec_heads < 1 || c->dec_dim % c->dec_heads)
            BAD("decoder width %d is not divisible by %d heads", c->dec_dim, c->dec_heads);
    }
    if (!(c->mask_ratio >= 0.0 && c->mask_ratio < 1.0))
        BAD("mask ratio %g must be in [0, 1)", c->mask_ratio);
    if ((int)c->mask_strategy < 0 || (int)c->mask_strategy > 2) BAD("unknown mask strategy");
    /* grid keeps one patch of every 2x2, whatever the ratio: refuse one it
     * cannot honour rather than train with another than asked for */
    if (c->mask_strategy == MAEC_MASK_GRID && fabs(c->mask_ratio - 0.75) > 1e-6)
        BAD("mask strategy grid hides three patches of every four (mask ratio 0.75); it cannot honour a mask "
            "ratio of %g", c->mask_ratio);
    int K = maec_num_keep(c), L = maec_num_patches(c);
    if (K < 1) BAD("mask ratio %g keeps no patch of %d", c->mask_ratio, L);
    if (c->norm_pix_loss && maec_patch_dim(c) < 2) BAD("norm-pix loss needs patches of 2+ values");
    return 0;
#undef BAD
}

static const char *strategy_name(maec_mask_strategy s)
{
    return s == MAEC_MASK_BLOCK ? "block" : s == MAEC_MASK_GRID ? "grid" : "random";
}

char *maec_config_to_json(const maec_config *c)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddNumberToObject(o, "img_h", c->img_h);
    cJSON_AddNumberToObject(o, "img_w", c->img_w);
    cJSON_AddNumberToObject(o, "in_chans", c->in_chans);
    cJSON_AddNumberToObject(o, "patch_size", c->patch);
    cJSON_AddNumberToObject(o, "embed_dim", c->dim);
    cJSON_AddNumberToObject(o, "depth", c->depth);
    cJSON_AddNumberToObject(o, "num_heads", c->heads);
    cJSON_AddNumberToObject(o, "decoder_embed_dim", c->dec_dim);
    cJSON_AddNumberToObject(o, "decoder_depth", c->dec_depth);
    cJSON_AddNumberToObject(o, "decoder_num_heads", c->dec_heads);
    cJSON_AddNumberToObject(o, "mlp_ratio", c->mlp_ratio);
    /* the float's shortest decimal form */
    char buf[32];
    snprintf(buf, sizeof buf, "%.17g", c->mask_ratio);
    cJSON_AddRawToObject(o, "mask_ratio", buf);
    cJSON_AddBoolToObject(o, "norm_pix_loss", c->norm_pix_loss);
    cJSON_AddBoolToObject(o, "mask_token_in_encoder", c->mask_token_in_encoder);
    cJSON_AddBoolToObject(o, "loss_on_all", c->loss_on_all);
    cJSON_AddStringToObject(o, "mask_strategy", strategy_name(c->mask_strategy));
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static int get_int(const cJSON *o, const char *k, int *dst, maec_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!v) return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > 1e9)
        return maec_fail(err, MAEC_EINVAL, "configuration key '%s' must be an integer", k);
    *dst = (int)v->valuedouble;
    return 0;
}

static int get_bool(const cJSON *o, const char *k, int *dst, maec_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!v) return 0;
    if (!cJSON_IsBool(v) && !cJSON_IsNumber(v))
        return maec_fail(err, MAEC_EINVAL, "configuration key '%s' must be true or false", k);
    *dst = cJSON_IsBool(v) ? cJSON_IsTrue(v) : v->valuedouble != 0;
    return 0;
}

int maec_config_from_json(maec_config *c, const char *json, maec_error *err)
{
    cJSON *o = cJSON_Parse(json);
    if (!o || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return maec_fail(err, MAEC_EFORMAT, "configuration is not a JSON object");
    }
    int rc = 0;
    int img = 0;
    rc = rc ? rc : get_int(o, "img_size", &img, err);
    if (!rc && img > 0) c->img_h = c->img_w = img;
    rc = rc ? rc : get_int(o, "img_h", &c->img_h, err);
    rc = rc ? rc : get_int(o, "img_w", &c->img_w, err);
    rc = rc ? rc : get_int(o, "in_chans", &c->in_chans, err);
    rc = rc ? rc : get_int(o, "patch_size", &c->patch, err);
    rc = rc ? rc : get_int(o, "embed_dim", &c->dim, err);
    rc = rc ? rc : get_int(o, "depth", &c->depth, err);
    rc = rc ? rc : get_int(o, "num_heads", &c->heads, err);
    rc = rc ? rc : get_int(o, "decoder_embed_dim", &c->dec_dim, err);
    rc = rc ? rc : get_int(o, "decoder_depth", &c->dec_depth, err);
    rc = rc ? rc : get_int(o, "decoder_num_heads", &c->dec_heads, err);
    rc = rc ? rc : get_int(o, "mlp_ratio", &c->mlp_ratio, err);
    rc = rc ? rc : get_bool(o, "norm_pix_loss", &c->norm_pix_loss, err);
    rc = rc ? rc : get_bool(o, "mask_token_in_encoder", &c->mask_token_in_encoder, err);
    rc = rc ? rc : get_bool(o, "loss_on_all", &c->loss_on_all, err);
    if (!rc) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "mask_ratio");
        if (v && !cJSON_IsNumber(v))
            rc = maec_fail(err, MAEC_EINVAL, "configuration key 'mask_ratio' must be a number");
        else if (v)
            c->mask_ratio = v->valuedouble;
    }
    if (!rc) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "mask_strategy");
        if (v) {
            if (cJSON_IsString(v) && !strcmp(v->valuestring, "random")) c->mask_strategy = MAEC_MASK_RANDOM;
            else if (cJSON_IsString(v) && !strcmp(v->valuestring, "block")) c->mask_strategy = MAEC_MASK_BLOCK;
            else if (cJSON_IsString(v) && !strcmp(v->valuestring, "grid")) c->mask_strategy = MAEC_MASK_GRID;
            else rc = maec_fail(err, MAEC_EINVAL, "mask_strategy must be \"random\", \"block\" or \"grid\"");
        }
    }
    cJSON_Delete(o);
    return rc;
}
