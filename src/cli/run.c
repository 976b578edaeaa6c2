#define _POSIX_C_SOURCE 200809L
#include "run.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "util.h"

void run_cfg_defaults(run_cfg *rc)
{
    memset(rc, 0, sizeof *rc);
    maec_preset("fmnist-tiny", &rc->model, NULL);
    snprintf(rc->preset, sizeof rc->preset, "fmnist-tiny");
    snprintf(rc->data_path, sizeof rc->data_path, "/usr/share/datasets/fashion-mnist");
    snprintf(rc->output_dir, sizeof rc->output_dir, "runs/mae");
    rc->epochs = 400;     /* as official main_pretrain.py */
    rc->batch_size = 64;
    rc->accum_iter = 1;
    rc->blr = 1e-3f;
    rc->lr = 0;           /* 0: blr * effective batch / 256 */
    rc->min_lr = 0;
    rc->warmup_epochs = 40;
    rc->weight_decay = 0.05f;
    rc->seed = 0;
    rc->num_workers = 1;
    rc->hflip = 1;
    rc->random_crop = 1;
    rc->crop_min = 0.2f;
    rc->keep = 2;
    rc->log_every = 20;
    rc->recon_every = 1;
    rc->recon_images = 8;
    rc->knn_every = 0;
}

char *run_cfg_to_json(const run_cfg *rc)
{
    cJSON *o = cJSON_CreateObject();
    char *mj = maec_config_to_json(&rc->model);
    cJSON *mo = mj ? cJSON_Parse(mj) : NULL;
    free(mj);
    if (!o || !mo) {
        cJSON_Delete(o);
        cJSON_Delete(mo);
        return NULL;
    }
    char buf[64];
#define NUMF(k, v) (snprintf(buf, sizeof buf, "%.9g", (double)(v)), cJSON_AddRawToObject(o, k, buf))
    cJSON_AddStringToObject(o, "preset", rc->preset);
    cJSON_AddItemToObject(o, "model", mo);
    cJSON_AddStringToObject(o, "data_path", rc->data_path);
    if (rc->eval_path[0]) cJSON_AddStringToObject(o, "eval_path", rc->eval_path);
    if (rc->val_split > 0) { /* a double: all its digits, so that it reads back the same */
        snprintf(buf, sizeof buf, "%.17g", rc->val_split);
        cJSON_AddRawToObject(o, "val_split", buf);
    }
    if (rc->skip_bad) cJSON_AddBoolToObject(o, "skip_bad_images", 1);
    cJSON_AddStringToObject(o, "output_dir", rc->output_dir);
    cJSON_AddNumberToObject(o, "epochs", rc->epochs);
    cJSON_AddNumberToObject(o, "batch_size", rc->batch_size);
    cJSON_AddNumberToObject(o, "accum_iter", rc->accum_iter);
    NUMF("blr", rc->blr);
    NUMF("lr", rc->lr);
    NUMF("min_lr", rc->min_lr);
    NUMF("warmup_epochs", rc->warmup_epochs);
    NUMF("weight_decay", rc->weight_decay);
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)rc->seed);
    if (rc->seed <= ((uint64_t)1 << 53))
        cJSON_AddRawToObject(o, "seed", buf);
    else /* a JSON number would round it */
        cJSON_AddStringToObject(o, "seed", buf);
    /* printed as an integer: cJSON prints numbers with 15 digits, which
     * rounds counts above 10^15 (read back only up to 2^53) */
    snprintf(buf, sizeof buf, "%lld", rc->max_steps);
    cJSON_AddRawToObject(o, "max_steps", buf);
    cJSON_AddNumberToObject(o, "num_workers", rc->num_workers);
    cJSON_AddBoolToObject(o, "hflip", rc->hflip);
    cJSON_AddBoolToObject(o, "random_crop", rc->random_crop);
    NUMF("crop_min", rc->crop_min);
    if (rc->color_jitter > 0) NUMF("color_jitter", rc->color_jitter);
    if (rc->have_norm) {
        cJSON *mean = cJSON_AddArrayToObject(o, "mean"), *std = cJSON_AddArrayToObject(o, "std");
        for (int c = 0; c < 3; c++) {
            snprintf(buf, sizeof buf, "%.9g", (double)rc->mean[c]);
            cJSON_AddItemToArray(mean, cJSON_CreateRaw(buf));
            snprintf(buf, sizeof buf, "%.9g", (double)rc->std[c]);
            cJSON_AddItemToArray(std, cJSON_CreateRaw(buf));
        }
    }
    cJSON_AddNumberToObject(o, "save_every", rc->save_every);
    cJSON_AddNumberToObject(o, "keep", rc->keep);
    cJSON_AddNumberToObject(o, "log_every", rc->log_every);
    cJSON_AddNumberToObject(o, "recon_every", rc->recon_every);
    cJSON_AddNumberToObject(o, "recon_images", rc->recon_images);
    cJSON_AddNumberToObject(o, "knn_every", rc->knn_every);
#undef NUMF
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    return s;
}

void run_cfg_norm_json(const run_cfg *rc, char *buf, size_t len)
{
    snprintf(buf, len, "{\"mean\":[%.9g,%.9g,%.9g],\"std\":[%.9g,%.9g,%.9g]}", (double)rc->mean[0],
             (double)rc->mean[1], (double)rc->mean[2], (double)rc->std[0], (double)rc->std[1],
             (double)rc->std[2]);
}

/* 0: absent, 1: found (*v set), -1: not a number (err set) */
static int jnum(const cJSON *o, const char *k, double *v, maec_error *err)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!x) return 0;
    if (!cJSON_IsNumber(x) && !cJSON_IsBool(x)) {
        maec_fail(err, MAEC_EINVAL, "run configuration: '%s' must be a number", k);
        return -1;
    }
    *v = cJSON_IsBool(x) ? (double)cJSON_IsTrue(x) : x->valuedouble;
    if (*v == 0) *v = 0; /* -0 reads as 0: a run written back says "0" and must read the same */
    return 1;
}

/* a number in [lo, hi]: 0 absent, 1 found, -1 error. whole: an integer;
 * else a float field, compared as a float (0.01 is stored as 0.0099999998
 * and written back so: it must be read back in range) */
static int jrange(const cJSON *o, const char *k, double lo, double hi, int whole, double *v,
                  maec_error *err)
{
    int q = jnum(o, k, v, err);
    int in = q == 1 && (whole ? *v >= lo && *v <= hi && *v == floor(*v)
                              : fabs(*v) <= 1e30 && (float)*v >= (float)lo && (float)*v <= (float)hi);
    if (q == 1 && !in) {
        maec_fail(err, MAEC_EINVAL, "run configuration: '%s' must be %s in [%g, %g]", k,
                  whole ? "an integer" : "a number", lo, hi);
        return -1;
    }
    return q;
}

static int jstr(const cJSON *o, const char *k, char *dst, size_t n, maec_error *err)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!x) return 0;
    if (!cJSON_IsString(x) || strlen(x->valuestring) >= n)
        return maec_fail(err, MAEC_EINVAL, "run configuration: '%s' must be a string", k);
    snprintf(dst, n, "%s", x->valuestring);
    return 0;
}

int run_cfg_from_json(run_cfg *rc, const char *json, maec_error *err)
{
    run_cfg_defaults(rc);
    cJSON *o = cJSON_Parse(json);
    if (!o || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return maec_fail(err, MAEC_EFORMAT, "run configuration is not a JSON object");
    }
    int r = 0;
    double v = 0;
    r = r ? r : jstr(o, "preset", rc->preset, sizeof rc->preset, err);
    const cJSON *mo = cJSON_GetObjectItemCaseSensitive(o, "model");
    if (!r && mo) {
        char *ms = cJSON_PrintUnformatted(mo);
        r = ms ? maec_config_from_json(&rc->model, ms, err) : MAEC_ENOMEM;
        free(ms);
    } else if (!r && rc->preset[0]) {
        r = maec_preset(rc->preset, &rc->model, err);
    }
    r = r ? r : jstr(o, "data_path", rc->data_path, sizeof rc->data_path, err);
    r = r ? r : jstr(o, "eval_path", rc->eval_path, sizeof rc->eval_path, err);
    r = r ? r : jstr(o, "output_dir", rc->output_dir, sizeof rc->output_dir, err);
    /* the ranges of the flags: what a config.json or a checkpoint holds is
     * checked as the command line is (no zero batch or log interval, no
     * number that does not fit its field) */
#define GETI(k, f, lo, hi) if (!r) { int q = jrange(o, k, lo, hi, 1, &v, err); if (q < 0) r = err->code; else if (q) f = (int)v; }
#define GETF(k, f, lo, hi) if (!r) { int q = jrange(o, k, lo, hi, 0, &v, err); if (q < 0) r = err->code; else if (q) f = (float)v; }
    GETI("epochs", rc->epochs, 1, 1000000);
    GETI("batch_size", rc->batch_size, 1, 65536);
    GETI("accum_iter", rc->accum_iter, 1, 4096);
    GETF("blr", rc->blr, 0, 10);
    GETF("lr", rc->lr, 0, 10);
    GETF("min_lr", rc->min_lr, 0, 10);
    GETF("warmup_epochs", rc->warmup_epochs, 0, 1e6);
    GETF("weight_decay", rc->weight_decay, 0, 10);
    if (!r) {
        /* a number (exact up to 2^53) or, for larger seeds, a decimal string */
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "seed");
        int ok = 0;
        if (cJSON_IsNumber(s)) {
            double d = s->valuedouble;
            ok = d >= 0 && d < 18446744073709551616.0 && d == floor(d);
            if (ok) rc->seed = (uint64_t)d;
        } else if (cJSON_IsString(s) && s->valuestring[0] >= '0' && s->valuestring[0] <= '9') {
            char *end;
            errno = 0;
            unsigned long long u = strtoull(s->valuestring, &end, 10);
            ok = !*end && !errno;
            if (ok) rc->seed = (uint64_t)u;
        }
        if (s && !ok)
            r = maec_fail(err, MAEC_EINVAL, "run configuration: 'seed' must be a non-negative integer");
    }
    if (!r) { int q = jrange(o, "max_steps", 0, 9007199254740992.0, 1, &v, err); if (q < 0) r = err->code; else if (q) rc->max_steps = (long long)v; }
    GETI("num_workers", rc->num_workers, 0, 256);
    GETI("hflip", rc->hflip, 0, 1);
    GETI("random_crop", rc->random_crop, 0, 1);
    GETF("crop_min", rc->crop_min, 0.01, 1);
    GETF("color_jitter", rc->color_jitter, 0, 10);
    GETI("skip_bad_images", rc->skip_bad, 0, 1);
    if (!r) { int q = jrange(o, "val_split", 0, 0.9999, 0, &v, err); if (q < 0) r = err->code; else if (q) rc->val_split = v; }
    GETI("save_every", rc->save_every, 0, 1 << 30);
    GETI("keep", rc->keep, 1, 1000);
    GETI("log_every", rc->log_every, 1, 1 << 30);
    GETI("recon_every", rc->recon_every, 0, 1 << 30);
    GETI("knn_every", rc->knn_every, 0, 1 << 30);
    GETI("recon_images", rc->recon_images, 0, 64);
#undef GETI
#undef GETF
    if (!r) {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "mean"), *s = cJSON_GetObjectItemCaseSensitive(o, "std");
        if (m || s) {
            if (!cJSON_IsArray(m) || !cJSON_IsArray(s) || cJSON_GetArraySize(m) != 3 || cJSON_GetArraySize(s) != 3)
                r = maec_fail(err, MAEC_EINVAL, "run configuration: mean and std must be arrays of 3 numbers");
            for (int c = 0; !r && c < 3; c++) {
                const cJSON *mv = cJSON_GetArrayItem(m, c), *sv = cJSON_GetArrayItem(s, c);
                if (!cJSON_IsNumber(mv) || !cJSON_IsNumber(sv) || !(fabs(mv->valuedouble) <= 1e6) ||
                    !(sv->valuedouble > 0 && sv->valuedouble <= 1e6)) {
                    r = maec_fail(err, MAEC_EINVAL, "run configuration: mean and std must be numbers, std positive");
                    break;
                }
                rc->mean[c] = (float)mv->valuedouble;
                rc->std[c] = (float)sv->valuedouble;
                if (!(rc->std[c] > 0)) r = maec_fail(err, MAEC_EINVAL, "run configuration: std must be positive");
            }
            rc->have_norm = !r;
        }
    }
    cJSON_Delete(o);
    return r;
}

/* "a" or "a,b,c" into out[3] (one value serves every channel) */
static int parse_triple(const char *s, float *out)
{
    float v[3];
    char *end;
    int n = 0;
    while (n < 3) {
        v[n++] = strtof(s, &end);
        if (end == s || !isfinite(v[n - 1])) return -1;
        s = end;
        if (*s == ',') s++;
        else break;
    }
    if (*s || n == 2) return -1;
    for (int i = 0; i < 3; i++) out[i] = n == 1 ? v[0] : v[i];
    return 0;
}

int parse_norm_flags(const char *mean_s, const char *std_s, float *mean, float *std)
{
    if (!mean_s && !std_s) return 0;
    float m[3], s[3];
    if (!mean_s || !std_s || parse_triple(mean_s, m) || parse_triple(std_s, s)) return -1;
    for (int c = 0; c < 3; c++)
        if (!(s[c] > 0)) return -1;
    memcpy(mean, m, sizeof m);
    memcpy(std, s, sizeof s);
    return 0;
}

/* Parse flags on top of *rc. */
static int parse_flags(const char *cmd, int argc, char **argv, run_cfg *rc, int *threads,
                       const char **resume)
{
    const char *preset = NULL, *config = NULL, *data = NULL, *out = NULL, *strategy = NULL, *eval_path = NULL;
    const char *mean = NULL, *std = NULL;
    int no_hflip = 0, no_crop = 0;
    const char *input_size = NULL;
    maec_config *mc = &rc->model;
    cli_opt opts[] = {
        {"model", OPT_STR, &preset, "model preset (maec info --presets)", 1, 0, 0},
        {"config", OPT_STR, &config, "a run's config.json: repeat that run", 1, 0, 0},
        {"resume", OPT_STR, resume, "continue a run: its folder or a checkpoint file", 1, 0, 0},
        {"data-path", OPT_STR, &data, "data: IDX/CIFAR folder or file, image folder, .npy "
         "(default: /usr/share/datasets/fashion-mnist)", 1, 0, 0},
        {"output-dir", OPT_STR, &out, "where checkpoints, logs and pictures go (default: runs/mae; "
         "with --resume: the folder resumed)", 1, 0, 0},
        {"epochs", OPT_INT, &rc->epochs, "epochs (schedule length)", 1, 1000000, 0},
        {"max-steps", OPT_U64, &rc->max_steps, "stop after this many optimizer steps", 0, 9007199254740992.0, 0},
        {"batch-size", OPT_INT, &rc->batch_size, "images per micro-batch", 1, 65536, 0},
        {"accum-iter", OPT_INT, &rc->accum_iter, "micro-batches per optimizer step", 1, 4096, 0},
        {"blr", OPT_FLOAT, &rc->blr, "base lr: lr = blr * effective batch / 256", 0, 10, 0},
        {"lr", OPT_FLOAT, &rc->lr, "absolute lr (overrides --blr)", 0, 10, 0},
        {"min-lr", OPT_FLOAT, &rc->min_lr, "lr at the end of the cosine", 0, 10, 0},
        {"warmup-epochs", OPT_FLOAT, &rc->warmup_epochs, "linear warm-up epochs", 0, 1e6, 0},
        {"weight-decay", OPT_FLOAT, &rc->weight_decay, "AdamW weight decay", 0, 10, 0},
        {"seed", OPT_U64, &rc->seed, "seed: init, data order, augmentation, masks", 1, 0, 0},
        {"threads", OPT_INT, threads, "compute threads (default: all cores)", 1, 1024, 0},
        {"num-workers", OPT_INT, &rc->num_workers, "data loader threads", 1, 256, 0},
        {"mask-ratio", OPT_DOUBLE, &mc->mask_ratio, "share of patches hidden", 0.0001, 0.9999, 0},
        {"mask-strategy", OPT_STR, &strategy, "random | block | grid", 1, 0, 0},
        {"norm-pix-loss", OPT_BOOL, &mc->norm_pix_loss, "target: per-patch normalized pixels", 1, 0, 0},
        {"mask-token-in-encoder", OPT_BOOL, &mc->mask_token_in_encoder, "ablation: encoder sees mask tokens", 1, 0, 0},
        {"loss-on-all", OPT_BOOL, &mc->loss_on_all, "ablation: loss on all patches", 1, 0, 0},
        {"input-size", OPT_STR, &input_size, "image size: N (square), HxW or H,W", 1, 0, 0},
        {"patch-size", OPT_INT, &mc->patch, "patch size", 1, 1024, 0},
        {"embed-dim", OPT_INT, &mc->dim, "encoder width", 4, 16384, 0},
        {"depth", OPT_INT, &mc->depth, "encoder blocks", 1, 256, 0},
        {"num-heads", OPT_INT, &mc->heads, "encoder heads", 1, 4096, 0},
        {"decoder-embed-dim", OPT_INT, &mc->dec_dim, "decoder width", 4, 16384, 0},
        {"decoder-depth", OPT_INT, &mc->dec_depth, "decoder blocks", 1, 256, 0},
        {"decoder-num-heads", OPT_INT, &mc->dec_heads, "decoder heads", 1, 4096, 0},
        {"mlp-ratio", OPT_INT, &mc->mlp_ratio, "MLP hidden width / width, encoder and decoder (4)", 1, 64, 0},
        {"no-hflip", OPT_BOOL, &no_hflip, "no horizontal flips", 1, 0, 0},
        {"no-random-crop", OPT_BOOL, &no_crop, "resize whole images, no random resized crop", 1, 0, 0},
        {"crop-min", OPT_FLOAT, &rc->crop_min, "smallest crop area share (0.2)", 0.01, 1, 0},
        {"color-jitter", OPT_FLOAT, &rc->color_jitter, "ablation: ColorJitter(s, s, s) after the crop and flip (0: off)", 0, 10, 0},
        {"mean", OPT_STR, &mean, "per-channel mean, e.g. 0.5 or 0.485,0.456,0.406", 1, 0, 0},
        {"std", OPT_STR, &std, "per-channel std (default: computed from the data)", 1, 0, 0},
        {"save-every", OPT_INT, &rc->save_every, "checkpoint every N steps (default: each epoch)", 0, 1 << 30, 0},
        {"keep", OPT_INT, &rc->keep, "checkpoints kept", 1, 1000, 0},
        {"log-every", OPT_INT, &rc->log_every, "log every N steps", 1, 1 << 30, 0},
        {"recon-every", OPT_INT, &rc->recon_every, "reconstruction picture every N epochs (0: never)", 0, 1 << 30, 0},
        {"knn-every", OPT_INT, &rc->knn_every, "k-NN top-1 on the test split every N epochs (0: never)", 0, 1 << 30, 0},
        {"skip-bad-images", OPT_BOOL, &rc->skip_bad, "skip images that do not decode (listed in bad_images.txt; an "
         "error above 1%)", 1, 0, 0},
        {"eval-path", OPT_STR, &eval_path, "the k-NN monitor's images (class folders named as the training ones) "
         "instead of the data set's test split", 1, 0, 0},
        {"val-split", OPT_DOUBLE, &rc->val_split, "the k-NN monitor evaluates this seeded share of the training images, "
         "held out of pretraining", 0.0001, 0.9999, 0},
        {"recon-images", OPT_INT, &rc->recon_images, "images in the pictures", 0, 64, 0},
    };
    int n = (int)(sizeof opts / sizeof opts[0]), npos;
    int r = cli_parse(cmd, "[--model PRESET] [--data-path PATH] [--output-dir DIR] [options]", argc, argv,
                      opts, n, NULL, 0, &npos);
    if (r) return r;
    if (preset) snprintf(rc->preset, sizeof rc->preset, "%s", preset);
    if (data) snprintf(rc->data_path, sizeof rc->data_path, "%s", data);
    if (eval_path) snprintf(rc->eval_path, sizeof rc->eval_path, "%s", eval_path);
    if (out) snprintf(rc->output_dir, sizeof rc->output_dir, "%s", out);
    if (input_size && cli_parse_size(input_size, &mc->img_h, &mc->img_w)) {
        cli_error("%s: --input-size %s: give N, HxW or H,W (1 to 16384)", cmd, input_size);
        return -1;
    }
    if (no_hflip) rc->hflip = 0;
    if (no_crop) rc->random_crop = 0;
    if (strategy) {
        if (!strcmp(strategy, "random")) mc->mask_strategy = MAEC_MASK_RANDOM;
        else if (!strcmp(strategy, "block")) mc->mask_strategy = MAEC_MASK_BLOCK;
        else if (!strcmp(strategy, "grid")) mc->mask_strategy = MAEC_MASK_GRID;
        else {
            cli_error("%s: --mask-strategy must be random, block or grid, got '%s'", cmd, strategy);
            return -1;
        }
    }
    if (mean || std) {
        if (parse_norm_flags(mean, std, rc->mean, rc->std)) {
            cli_error("%s: give both --mean and --std, each one number or three separated by commas (std > 0)", cmd);
            return -1;
        }
        rc->have_norm = 1;
    }
    return 0;
}

int run_cfg_from_args(const char *cmd, int argc, char **argv, run_cfg *rc, int *threads,
                      const char **resume, maec_error *err)
{
    run_cfg_defaults(rc);
    *threads = 0;
    *resume = NULL;
    const char *config = cli_find(argc, argv, "config");
    const char *preset = cli_find(argc, argv, "model");
    if (config) {
        char *js;
        size_t len;
        if (read_file(config, &js, &len, 1 << 20, err) || run_cfg_from_json(rc, js, err)) {
            if (js) free(js);
            cli_error("%s: --config %s: %s", cmd, config, err->msg);
            return -1;
        }
        free(js);
    }
    if (preset) {
        if (maec_preset(preset, &rc->model, err)) {
            cli_error("%s: %s", cmd, err->msg);
            return -1;
        }
    }
    int r = parse_flags(cmd, argc, argv, rc, threads, resume);
    if (r) return r;
    if (*resume) return 0; /* checked against the saved run instead */
    if (config && !cli_find(argc, argv, "output-dir")) {
        /* the folder in the file is the first run's: never written by a second */
        cli_error("%s: --config repeats a run's settings, not its folder: give the new run an --output-dir", cmd);
        return -1;
    }
    if (maec_config_check(&rc->model, err)) {
        cli_error("%s: %s", cmd, err->msg);
        return -1;
    }
    if (rc->model.dec_depth < 1) {
        cli_error("%s: pretraining needs a decoder (--decoder-depth >= 1)", cmd);
        return -1;
    }
    if (rc->warmup_epochs > rc->epochs) {
        cli_error("%s: --warmup-epochs %g is longer than --epochs %d: the lr would never reach its peak "
                  "(give a shorter --warmup-epochs)", cmd, (double)rc->warmup_epochs, rc->epochs);
        return -1;
    }
    return 0;
}

int run_cfg_merge_resume(run_cfg *saved, const run_cfg *given, int argc, char **argv, maec_error *err)
{
    (void)given;
    run_cfg upd = *saved;
    int threads;
    const char *resume;
    if (parse_flags("pretrain", argc, argv, &upd, &threads, &resume))
        return maec_fail(err, MAEC_EINVAL, "bad flags");
    /* what may change when a run goes on */
    saved->epochs = upd.epochs;
    saved->max_steps = upd.max_steps;
    saved->num_workers = upd.num_workers;
    saved->save_every = upd.save_every;
    saved->keep = upd.keep;
    saved->log_every = upd.log_every;
    saved->recon_every = upd.recon_every;
    saved->knn_every = upd.knn_every;
    memcpy(saved->output_dir, upd.output_dir, sizeof saved->output_dir);
    if (saved->warmup_epochs > saved->epochs)
        return maec_fail(err, MAEC_EINVAL, "--resume: --epochs %d is shorter than the run's warm-up of %g epochs",
                         saved->epochs, (double)saved->warmup_epochs);
    upd.have_norm = saved->have_norm;
    if (maec_config_check(&upd.model, err)) return maec_fail(err, err->code, "--resume: %s", err->msg);
    if (memcmp(&upd.model, &saved->model, sizeof upd.model) != 0)
        return maec_fail(err, MAEC_EINVAL,
                         "--resume: the checkpoint was made with another model configuration than "
                         "these flags ask for");
    if (memcmp(&upd, saved, sizeof upd) != 0)
        return maec_fail(err, MAEC_EINVAL,
                         "--resume: flags change the run's data or optimizer settings; only --epochs, "
                         "--max-steps, --output-dir, --num-workers, --save-every, --keep, --log-every "
                         "and --recon-every may change");
    return 0;
}
