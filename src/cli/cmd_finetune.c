/* maec finetune: the official fine-tuning recipe (main_finetune.py) on the
 * MAE encoder, partial fine-tuning (--tune-blocks), and the same ViT trained
 * from scratch (the supervised baseline). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <sys/stat.h>

#include "cli.h"
#include "eval_common.h"
#include "run.h"
#include "io/safetensors.h"
#include "util.h"

static volatile int g_stop; /* the trainer's stop flag */
static void on_signal(int s) { g_stop = s; }

/* "--name=value" for an option that was given, as its variable holds it now */
static char *opt_arg(const cli_opt *o)
{
    char v[64];
    const char *val = v;
    switch (o->kind) {
    case OPT_STR: val = *(const char **)o->dst; break;
    case OPT_INT: snprintf(v, sizeof v, "%d", *(int *)o->dst); break;
    case OPT_FLOAT: snprintf(v, sizeof v, "%.9g", (double)*(float *)o->dst); break;
    case OPT_DOUBLE: snprintf(v, sizeof v, "%.17g", *(double *)o->dst); break;
    case OPT_BOOL: val = *(int *)o->dst ? "true" : "false"; break;
    case OPT_U64: snprintf(v, sizeof v, "%llu", (unsigned long long)*(uint64_t *)o->dst); break;
    }
    size_t len = strlen(o->name) + strlen(val) + 4;
    char *a = malloc(len);
    if (a) snprintf(a, len, "--%s=%s", o->name, val);
    return a;
}

/* The run state saved in a fine-tuning checkpoint: every flag the run was
 * given, as --name=value (all but --resume and --output-dir, which are where
 * the checkpoint is), whether the encoder was randomly initialized and the
 * last test top-1 (the trainer adds its log window). NULL when out of
 * memory. */
static char *run_state_json(const cli_opt *opts, int nopts, int random_init, double top1)
{
    cJSON *r = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(r, "args");
    int ok = r && a;
    for (int k = 0; ok && k < nopts; k++) {
        if (!opts[k].seen || !strcmp(opts[k].name, "resume") || !strcmp(opts[k].name, "output-dir")) continue;
        char *s = opt_arg(&opts[k]);
        cJSON *item = s ? cJSON_CreateString(s) : NULL;
        ok = item && cJSON_AddItemToArray(a, item);
        free(s);
    }
    ok = ok && cJSON_AddBoolToObject(r, "random_init", random_init) && cJSON_AddNumberToObject(r, "top1", top1);
    char *js = ok ? cJSON_PrintUnformatted(r) : NULL;
    cJSON_Delete(r);
    return js;
}

/* --resume R (a run's folder or its checkpoint file): the checkpoint's path,
 * its folder, the flags of the run from its run state (*argv_out: an array
 * of *argc_out malloc'd strings) and the run state itself (for the
 * trainer's window) */
static int read_resume(const char *r, char **ckpt, char **dir, char ***argv_out, int *argc_out,
                       int *random_init, double *top1, char **state, maec_error *err)
{
    struct stat st;
    size_t n = strlen(r) + 32;
    *ckpt = malloc(n), *dir = malloc(n);
    *argv_out = NULL, *argc_out = 0;
    if (!*ckpt || !*dir) return maec_fail(err, MAEC_ENOMEM, "out of memory");
    if (stat(r, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(*dir, n, "%s", r);
        snprintf(*ckpt, n, "%s/checkpoint.safetensors", r);
    } else {
        snprintf(*ckpt, n, "%s", r);
        snprintf(*dir, n, "%s", r);
        char *slash = strrchr(*dir, '/');
        if (slash) *slash = 0;
        else snprintf(*dir, n, ".");
    }
    st_file f;
    int rc = st_open(*ckpt, &f, err);
    if (rc) return rc;
    const char *js = st_meta(&f, "maec_run");
    cJSON *j = js ? cJSON_Parse(js) : NULL;
    const cJSON *a = j ? cJSON_GetObjectItemCaseSensitive(j, "args") : NULL;
    const cJSON *ri = j ? cJSON_GetObjectItemCaseSensitive(j, "random_init") : NULL;
    const cJSON *t1 = j ? cJSON_GetObjectItemCaseSensitive(j, "top1") : NULL;
    *state = NULL;
    if (!cJSON_IsArray(a) || !cJSON_IsBool(ri) || !cJSON_IsNumber(t1))
        rc = maec_fail(err, MAEC_EFORMAT, "%s: not a fine-tuning checkpoint (no run state)", *ckpt);
    else if (!(*state = strdup(js)))
        rc = maec_fail(err, MAEC_ENOMEM, "out of memory");
    int na = rc ? 0 : cJSON_GetArraySize(a);
    if (!rc && !(*argv_out = calloc((size_t)na + 1, sizeof(char *))))
        rc = maec_fail(err, MAEC_ENOMEM, "out of memory");
    for (int i = 0; !rc && i < na; i++) {
        const cJSON *s = cJSON_GetArrayItem(a, i);
        if (!cJSON_IsString(s))
            rc = maec_fail(err, MAEC_EFORMAT, "%s: run state: args must be strings", *ckpt);
        else if (!((*argv_out)[i] = strdup(s->valuestring)))
            rc = maec_fail(err, MAEC_ENOMEM, "out of memory");
        else
            (*argc_out)++;
    }
    if (!rc) {
        *random_init = cJSON_IsTrue(ri);
        *top1 = t1->valuedouble;
    }
    cJSON_Delete(j);
    st_close(&f);
    return rc;
}

static void free_args(char **a, int n)
{
    for (int i = 0; a && i < n; i++) free(a[i]);
    free(a);
}

/* what the step hook needs */
typedef struct {
    maec_classifier *c;
    maec_trainer *tr;
    maec_dataset *test;
    FILE *mf;
    const char *out;
    const cli_opt *opts;
    int nopts, random_init, eval_every, workers, report, tty;
    float mean[3], std[3];
    double top1;
} ft_ctx;

/* after every step: the metrics record and progress line; at an epoch's
 * end the test accuracy, the weights and the report */
static int ft_step(void *ctx, maec_trainer *t, const maec_train_event *ev, maec_error *err)
{
    ft_ctx *f = ctx;
    double spe = (double)ev->steps_per_epoch;
    if (ev->record) {
        fprintf(f->mf, "{\"step\":%lld,\"epoch\":%.4f,\"loss\":%.6f,\"lr\":%.6g,\"images_per_s\":%.1f,"
                       "\"elapsed_s\":%.1f}\n",
                (long long)ev->step, (double)ev->step / spe, ev->window_loss, (double)ev->lr, ev->images_per_s,
                ev->elapsed_s);
        fflush(f->mf);
        printf("%sepoch %.2f  step %lld/%lld  loss %.4f  lr %.3g  %.0f img/s%s", f->tty ? "\r\033[K" : "",
               (double)ev->step / spe, (long long)ev->step, (long long)ev->total, ev->window_loss, (double)ev->lr,
               ev->images_per_s, f->tty ? "" : "\n");
        fflush(stdout);
    }
    int epoch_end = ev->epoch_end || ev->step == ev->total;
    int64_t ep = (ev->step + ev->steps_per_epoch - 1) / ev->steps_per_epoch;
    if (epoch_end && (ep % f->eval_every == 0 || ev->step == ev->total)) {
        double te = eval_now();
        int rc = maec_eval_top1(f->c, f->test, f->mean, f->std, 256, f->workers, &f->top1, err);
        if (rc) return rc;
        fprintf(f->mf, "{\"step\":%lld,\"epoch\":%lld,\"test_top1\":%.6f,\"eval_s\":%.1f,\"elapsed_s\":%.1f}\n",
                (long long)ev->step, (long long)ep, f->top1, eval_now() - te, ev->elapsed_s + eval_now() - te);
        fflush(f->mf);
        printf("%sepoch %lld: test top-1 %.2f%%\n", f->tty ? "\r\033[K" : "", (long long)ep, 100 * f->top1);
        fflush(stdout);
        char p[2100];
        snprintf(p, sizeof p, "%s/model.safetensors", f->out);
        if ((rc = maec_classifier_save(f->c, p, err))) return rc;
        /* the checkpoints from here on keep this accuracy */
        char *js = run_state_json(f->opts, f->nopts, f->random_init, f->top1);
        rc = js ? maec_trainer_set_run_json(t, js, err) : maec_fail(err, MAEC_ENOMEM, "out of memory");
        free(js);
        if (rc) return rc;
    }
    if (epoch_end && f->report) cli_report_update(f->out);
    return 0;
}

int cmd_finetune(int argc, char **argv)
{
    const char *model = NULL, *data = NULL, *out = NULL, *resume = NULL, *eval_path = NULL;
    double val_split = 0, crop_pct = 0;
    const char *size_s = NULL, *mean_s = NULL, *std_s = NULL;
    int skip_bad = 0;
    maec_config hint;
    memset(&hint, 0, sizeof hint);
    int epochs = 50, batch = 64, accum = 1, threads = 0, workers = 1, tune = -1, scratch = 0, cls_token = 0;
    int no_hflip = 0, no_crop = 0, eval_every = 1, log_every = 50, report = 0;
    uint64_t seed = 0, max_steps = 0;
    float blr = 5e-4f, lr = 0, min_lr = 1e-6f, warmup = 5, wd = 0.05f, layer_decay = 0.75f, drop_path = 0.1f;
    float smoothing = 0.1f, mixup = 0.8f, cutmix = 1.0f, switch_prob = 0.5f, crop_min = 0.08f, reprob = 0.25f;
    float mix_prob = 1.0f, clip_grad = 0, color_jitter = 0;
    const char *aa = "rand-m9-mstd0.5-inc1", *mix_mode = "batch";
    cli_opt opts[] = {
        {"model", OPT_STR, &model, "pretrained MAE (or classifier) file; a preset name: train from scratch", 1, 0, 0},
        {"from-scratch", OPT_BOOL, &scratch, "the architecture of --model, randomly initialized", 1, 0, 0},
        {"data-path", OPT_STR, &data, "data set with labels (as for pretrain)", 1, 0, 0},
        {"eval-path", OPT_STR, &eval_path, "evaluation images (class folders named as the training ones) instead of the "
         "data set's test split", 1, 0, 0},
        {"input-size", OPT_STR, &size_s, "fine-tune at this size (N, HxW or H,W; default the model's): pos_embed "
         "interpolated bicubically as the official code", 1, 0, 0},
        {"mean", OPT_STR, &mean_s, "per-channel mean (default: the model's, else ImageNet's for RGB, else the data's)",
         1, 0, 0},
        {"std", OPT_STR, &std_s, "per-channel std (with --mean)", 1, 0, 0},
        {"crop-pct", OPT_DOUBLE, &crop_pct, "evaluation transform: shorter side to size / this, centre crop (default "
         "224/256 up to 224, else 1)", 0.05, 1, 0},
        {"skip-bad-images", OPT_BOOL, &skip_bad, "skip images that do not decode (listed in bad_images.txt; an error "
         "above 1%)", 1, 0, 0},
        {"val-split", OPT_DOUBLE, &val_split, "evaluate on this seeded share of the training images, held out", 0.0001,
         0.9999, 0},
        {"output-dir", OPT_STR, &out, "metrics.jsonl and model.safetensors go here", 1, 0, 0},
        {"heads", OPT_INT, &hint.heads, "encoder heads (if not in the file)", 1, 4096, 0},
        {"epochs", OPT_INT, &epochs, "epochs (50)", 1, 100000, 0},
        {"max-steps", OPT_U64, &max_steps, "stop after this many optimizer steps", 0, 9007199254740992.0, 0},
        {"warmup-epochs", OPT_FLOAT, &warmup, "linear warm-up epochs (5)", 0, 1e5, 0},
        {"batch-size", OPT_INT, &batch, "images per micro-batch (64)", 1, 65536, 0},
        {"accum-iter", OPT_INT, &accum, "micro-batches per step", 1, 4096, 0},
        {"blr", OPT_FLOAT, &blr, "base lr: lr = blr * effective batch / 256 (5e-4)", 0, 10, 0},
        {"lr", OPT_FLOAT, &lr, "absolute lr (overrides --blr)", 0, 10, 0},
        {"min-lr", OPT_FLOAT, &min_lr, "lr at the end of the cosine (1e-6)", 0, 10, 0},
        {"weight-decay", OPT_FLOAT, &wd, "AdamW weight decay (0.05)", 0, 10, 0},
        {"layer-decay", OPT_FLOAT, &layer_decay, "layer-wise lr decay (0.75; 1 = none)", 0.01, 1, 0},
        {"drop-path", OPT_FLOAT, &drop_path, "stochastic depth rate (0.1)", 0, 0.99, 0},
        {"smoothing", OPT_FLOAT, &smoothing, "label smoothing (0.1)", 0, 0.99, 0},
        {"mixup", OPT_FLOAT, &mixup, "mixup alpha (0.8; 0 = off)", 0, 100, 0},
        {"cutmix", OPT_FLOAT, &cutmix, "cutmix alpha (1.0; 0 = off)", 0, 100, 0},
        {"mixup-switch-prob", OPT_FLOAT, &switch_prob, "chance of cutmix when both are on (0.5)", 0, 1, 0},
        {"mixup-prob", OPT_FLOAT, &mix_prob, "chance that a batch (pair, image) is mixed at all (1.0)", 0, 1, 0},
        {"mixup-mode", OPT_STR, &mix_mode, "batch | pair | elem: one mixup draw per batch, pair or image (batch)", 1, 0, 0},
        {"clip-grad", OPT_FLOAT, &clip_grad, "clip the gradients' global norm to this (0: off, as official)", 0, 1e9, 0},
        {"tune-blocks", OPT_INT, &tune, "partial fine-tuning: only the last K blocks, fc_norm and head learn", 0, 4096, 0},
        {"cls-token", OPT_BOOL, &cls_token, "classify the class token after the final norm (no global pool)", 1, 0, 0},
        {"crop-min", OPT_FLOAT, &crop_min, "smallest random-resized-crop area (0.08)", 0.01, 1, 0},
        {"no-random-crop", OPT_BOOL, &no_crop, "no random resized crop", 1, 0, 0},
        {"no-hflip", OPT_BOOL, &no_hflip, "no horizontal flips", 1, 0, 0},
        {"aa", OPT_STR, &aa, "RandAugment, as timm's string (rand-m9-mstd0.5-inc1); none: off", 1, 0, 0},
        {"color-jitter", OPT_FLOAT, &color_jitter, "ColorJitter(s, s, s), only with --aa none, as timm (0: off, as official)", 0, 10, 0},
        {"reprob", OPT_FLOAT, &reprob, "random erasing probability (0.25; one box of N(0,1) pixels, as timm's 'pixel' mode)", 0, 1, 0},
        {"eval-every", OPT_INT, &eval_every, "test accuracy every N epochs (and at the end)", 1, 100000, 0},
        {"log-every", OPT_INT, &log_every, "log every N steps", 1, 1 << 30, 0},
        {"report", OPT_BOOL, &report, "rewrite OUTPUT-DIR/report.html at each epoch's end (maec report)", 1, 0, 0},
        {"seed", OPT_U64, &seed, "seed: head init, data order, augmentation, mixup, drop path", 1, 0, 0},
        {"threads", OPT_INT, &threads, "compute threads (default: all cores)", 1, 1024, 0},
        {"num-workers", OPT_INT, &workers, "data loader threads", 0, 256, 0},
        {"resume", OPT_STR, &resume, "continue a run (its folder or checkpoint) with its own flags, in that folder; "
         "only --threads, --num-workers, --max-steps and --output-dir may be given with it", 1, 0, 0},
    };
    const int nopts = (int)(sizeof opts / sizeof opts[0]);
    const char *usage = "--model M --data-path P --output-dir D [options] | --resume D";
    char *ckpt = NULL, *rdir = NULL, **rargv = NULL;
    int rargc = 0, resumed_random = 0, npos, r;
    double resumed_top1 = -1;
    char *state = NULL; /* the checkpoint's run state, for the trainer's window */
    const char *resume_at = cli_find(argc, argv, "resume");
    if (cli_wants_help(argc, argv) || !resume_at) {
        r = cli_parse("finetune", usage, argc, argv, opts, nopts, NULL, 0, &npos);
    } else {
        /* the run's own flags first, then the few that may change */
        maec_error e = {0};
        r = read_resume(resume_at, &ckpt, &rdir, &rargv, &rargc, &resumed_random,
                        &resumed_top1, &state, &e);
        if (r) {
            cli_fail(&e);
            r = -1;
        }
        if (!r && (r = cli_parse("finetune", usage, rargc, rargv, opts, nopts, NULL, 0, &npos)) == 0) {
            int saved_seen[sizeof opts / sizeof opts[0]];
            for (int k = 0; k < nopts; k++) saved_seen[k] = opts[k].seen, opts[k].seen = 0;
            r = cli_parse("finetune", usage, argc, argv, opts, nopts, NULL, 0, &npos);
            for (int k = 0; !r && k < nopts; k++) {
                const char *nm = opts[k].name;
                if (opts[k].seen && strcmp(nm, "resume") && strcmp(nm, "threads") && strcmp(nm, "num-workers") &&
                    strcmp(nm, "max-steps") && strcmp(nm, "output-dir")) {
                    cli_error("finetune: --resume continues a run with its own flags; --%s cannot change "
                              "(only --threads, --num-workers, --max-steps and --output-dir can)", nm);
                    r = -1;
                }
                opts[k].seen |= saved_seen[k];
            }
            if (!out) out = rdir; /* the folder resumed, never one recorded in a file */
            /* checkpoints from before RandAugment and random erasing existed
             * hold no --aa or --reprob: those runs continue without them */
            for (int k = 0; k < nopts; k++) {
                if (!strcmp(opts[k].name, "reprob") && !opts[k].seen) reprob = 0;
                if (!strcmp(opts[k].name, "aa") && !opts[k].seen) aa = "none";
            }
        }
    }
    /* --aa and --reprob are always kept in the run state (their defaults may
     * change; a resumed run must not) */
    for (int k = 0; k < nopts; k++)
        if (!strcmp(opts[k].name, "reprob") || !strcmp(opts[k].name, "aa")) opts[k].seen = 1;
    maec_randaug ra = {0};
    if (!r) {
        maec_error e = {0};
        if (maec_randaug_parse(aa, &ra, &e)) {
            cli_error("finetune: --aa: %s", e.msg);
            r = -1;
        }
    }
    int mode = !strcmp(mix_mode, "batch") ? MAEC_MIX_BATCH
               : !strcmp(mix_mode, "pair")  ? MAEC_MIX_PAIR
               : !strcmp(mix_mode, "elem")  ? MAEC_MIX_ELEM
                                            : -1;
    if (!r && mode < 0) {
        cli_error("finetune: --mixup-mode %s: give batch, pair or elem", mix_mode);
        r = -1;
    }
    if (!r && !model) model = "fmnist-mini", scratch = 1; /* the supervised baseline */
    if (!r && (!data || !out)) {
        cli_error("finetune: --data-path and --output-dir are required");
        r = -1;
    } else if (!r && warmup > epochs) {
        cli_error("finetune: --warmup-epochs %g is longer than --epochs %d", (double)warmup, epochs);
        r = -1;
    } else if (!r && (mixup > 0 || cutmix > 0) && batch % 2) {
        cli_error("finetune: mixup/cutmix need an even --batch-size, got %d", batch);
        r = -1;
    }
    if (r) {
        free(ckpt), free(rdir), free(state), free_args(rargv, rargc);
        return r < 0 ? 2 : 0;
    }
    cli_set_threads("finetune", threads);
    /* data parallel (mpirun -np N): rank 0 writes every file and says what
     * happens; every rank reads the data and the checkpoint */
    maec_comm *comm = cli_comm();
    int rank0 = maec_comm_rank(comm) == 0, world = maec_comm_size(comm);
    if (!rank0) freopen("/dev/null", "w", stdout);
    if (state) {
        int before = batch;
        maec_error e = {0};
        if (eval_resume_batch(state, world, &batch, &e)) {
            cli_error("finetune --resume: %s", e.msg);
            free(ckpt), free(rdir), free(state), free_args(rargv, rargc);
            return 2;
        }
        if (batch != before) /* kept in the run state from here on */
            for (int k = 0; k < nopts; k++)
                if (!strcmp(opts[k].name, "batch-size")) opts[k].seen = 1;
    }
    maec_error err = {0};
    maec_dataset *train = NULL, *test = NULL;
    maec_classifier *c = NULL;
    maec_trainer *tr = NULL;
    maec_loader *ld = NULL;
    maec_mixup_opts mix = {mixup, cutmix, mix_prob, switch_prob, smoothing, mode};
    char *js = NULL;
    FILE *mf = NULL;
    int rc = 0, random_init = 0, status = 1;
    double top1 = -1;
    if (crop_pct > 0) maec_eval_set_crop_pct(crop_pct);
    if ((rc = eval_open_sets(data, eval_path, val_split, seed, 3, skip_bad, rank0 ? out : NULL, &train, &test, &err)))
        goto fail;
    int K = maec_dataset_num_classes(train);
    if (maec_dataset_num_classes(test) > K) K = maec_dataset_num_classes(test);
    if (K < 2) {
        maec_fail(&err, MAEC_EINVAL, "%s has no labels (or one class)", data);
        goto fail;
    }
    maec_classifier_opts o;
    maec_classifier_defaults(&o);
    o.num_classes = K;
    o.global_pool = !cls_token;
    o.drop_path = drop_path;
    o.tune_blocks = tune;
    /* main_finetune.py: trunc_normal(std 2e-5) on a pretrained model; timm's
     * own init (std 0.02) when training from scratch */
    int is_file = access(model, F_OK) == 0;
    o.head_init_std = (scratch || !is_file) ? 0.02f : 2e-5f;
    if (ckpt) {
        if ((rc = maec_classifier_checkpoint_load(ckpt, &hint, &o, &c, NULL, &err))) goto fail;
        random_init = resumed_random;
        top1 = resumed_top1;
    } else if ((rc = eval_load_model(model, &hint, &o, seed, scratch, &c, &random_init, &err))) {
        goto fail;
    }
    if (size_s) { /* another resolution: pos_embed interpolated as the official code */
        int h, w;
        if (cli_parse_size(size_s, &h, &w)) {
            maec_fail(&err, MAEC_EINVAL, "--input-size %s: give N, HxW or H,W", size_s);
            goto fail;
        }
        if ((rc = maec_classifier_resize(&c, h, w, &err))) goto fail;
    }
    const maec_config *mc = maec_classifier_config(c);
    if (tune > mc->depth) {
        maec_fail(&err, MAEC_EINVAL, "--tune-blocks %d: the encoder has %d blocks", tune, mc->depth);
        goto fail;
    }
    float mean[3], std[3];
    const char *meta = maec_classifier_get_meta(c, "maec_data");
    /* a resumed run finds the normalization its first part chose in the checkpoint */
    if (mean_s || std_s) { /* --mean/--std override the model's or the data's */
        if (parse_norm_flags(mean_s, std_s, mean, std)) {
            maec_fail(&err, MAEC_EINVAL, "give both --mean and --std, each one number or three separated by commas "
                      "(std > 0)");
            goto fail;
        }
    } else if ((rc = eval_normalization(random_init && !ckpt ? NULL : meta, train, mc->in_chans, !random_init, mean,
                                        std, &err))) {
        goto fail;
    }
    {
        char nb[256];
        snprintf(nb, sizeof nb, "{\"mean\":[%.9g,%.9g,%.9g],\"std\":[%.9g,%.9g,%.9g]}", (double)mean[0],
                 (double)mean[1], (double)mean[2], (double)std[0], (double)std[1], (double)std[2]);
        maec_classifier_set_meta(c, "maec_data", nb);
    }
    if ((rc = eval_save_class_names(c, train, &err))) goto fail;
    if (maec_dataset_size(train) < (int64_t)batch * world) {
        maec_fail(&err, MAEC_EINVAL, "%s has %lld images, fewer than one batch of %d", data,
                  (long long)maec_dataset_size(train), batch * world);
        goto fail;
    }
    if (rank0 && eval_mkdir_p(out)) {
        maec_fail(&err, MAEC_EIO, "cannot create %s: %s", out, strerror(errno));
        goto fail;
    }
    if (rank0) cli_report_session(out, "finetune", !ckpt);
    if (rank0) {
        /* the commands of the run, one a line: those of the folder resumed, then this one */
        char p[2100], *prev = NULL;
        size_t plen = 0;
        maec_error e2 = {0};
        snprintf(p, sizeof p, "%s/command.txt", ckpt ? rdir : out);
        if (!ckpt || read_file(p, &prev, &plen, 1 << 24, &e2)) prev = NULL, plen = 0;
        snprintf(p, sizeof p, "%s/command.txt", out);
        atomic_file af;
        if ((rc = atomic_open(&af, p, &err))) {
            free(prev);
            goto fail;
        }
        atomic_write(&af, prev ? prev : "", plen);
        free(prev);
        atomic_write(&af, "maec finetune", 13);
        for (int i = 0; i < argc; i++) atomic_write(&af, " ", 1), atomic_write(&af, argv[i], strlen(argv[i]));
        atomic_write(&af, "\n", 1);
        if ((rc = atomic_commit(&af, &err))) goto fail;
    }
    maec_loader_opts lo;
    maec_loader_defaults(&lo, mc->in_chans, mc->img_h, mc->img_w);
    lo.batch = batch;
    lo.threads = workers;
    lo.seed = seed;
    lo.rank = maec_comm_rank(comm), lo.world = world; /* this process's share of each batch */
    lo.shuffle = 1;
    lo.drop_last = 1;
    lo.aug.random_resized_crop = !no_crop;
    lo.aug.scale_min = crop_min;
    lo.aug.hflip = !no_hflip;
    lo.aug.reprob = reprob;
    lo.aug.randaug = ra;
    lo.aug.color_jitter = color_jitter;
    if (color_jitter > 0 && ra.on)
        printf("finetune: --color-jitter is ignored while RandAugment is on (--aa), as timm's create_transform does\n");
    for (int ch = 0; ch < 3; ch++) lo.aug.mean[ch] = mean[ch], lo.aug.std[ch] = std[ch];
    if ((rc = maec_loader_create(train, &lo, &ld, &err))) goto fail;
    maec_train_opts to;
    maec_train_defaults(&to);
    to.batch_size = batch, to.accum_iter = accum, to.epochs = epochs;
    to.batches_per_epoch = maec_loader_batches_per_epoch(ld);
    to.lr = lr > 0 ? lr : (double)blr * batch * accum * world / 256.0; /* the effective batch's */
    to.min_lr = min_lr, to.warmup_epochs = warmup;
    to.beta1 = 0.9f, to.beta2 = 0.999f, to.eps = 1e-8f, to.weight_decay = wd; /* main_finetune.py */
    to.seed = seed, to.max_steps = (int64_t)max_steps, to.log_every = log_every;
    to.output_dir = out, to.checkpoint_name = "checkpoint.safetensors";
    maec_clf_train_opts co = {mix, layer_decay, clip_grad};
    if (!(js = run_state_json(opts, nopts, random_init, top1))) {
        maec_fail(&err, MAEC_ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = maec_trainer_create_classifier(c, &to, &co, eval_loader_batch, ld, js, &tr, &err))) goto fail;
    maec_trainer_set_comm(tr, comm);
    if (state && (rc = maec_trainer_resume_state(tr, state, &err))) {
        maec_fail(&err, rc, "%s: %s", ckpt, err.msg);
        goto fail;
    }
    int64_t total = maec_trainer_total_steps(tr);
    if (ckpt && maec_classifier_step(c) < total) { /* the log so far, up to the checkpoint, into this run's folder */
        char from[2100], to_path[2100];
        int64_t at = maec_classifier_step(c);
        snprintf(from, sizeof from, "%s/metrics.jsonl", rdir);
        snprintf(to_path, sizeof to_path, "%s/metrics.jsonl", out);
        if (rank0 && (rc = eval_metrics_resume(from, to_path, at, maec_trainer_records_at(tr, at), &err))) goto fail;
    }
    if (!(mf = rank0 ? eval_open_metrics(out, !ckpt, &err) : fopen("/dev/null", "w"))) goto fail;
    double lr_peak = to.lr;
    int ntrain = 0;
    size_t nparam = 0;
    for (int i = 0; i < maec_classifier_num_tensors(c); i++)
        if (maec_classifier_tensor(c, i)->trainable) ntrain++, nparam += maec_classifier_tensor(c, i)->size;
    const char *what = random_init ? "from scratch (supervised)" : tune >= 0 ? "partial fine-tuning" : "fine-tuning";
    printf("finetune: %s, %s, %d classes; %zu trainable parameters in %d tensors; %lld steps of %d x %d images, "
           "lr %.3g, layer decay %g, drop path %g, mixup %g, cutmix %g (%s mode, prob %g), smoothing %g, RandAugment %s, "
           "random erasing %g, gradient clipping %s\n",
           what, model, K, nparam, ntrain, (long long)total, batch, accum, lr_peak, (double)layer_decay,
           (double)drop_path, (double)mixup, (double)cutmix, mix_mode, (double)mix_prob, (double)smoothing,
           ra.on ? aa : "none", (double)reprob, clip_grad > 0 ? "on" : "off");
    fflush(stdout);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    int tty = isatty(fileno(stdout));
    int64_t step = maec_classifier_step(c);
    if (ckpt) {
        if (step >= total) {
            printf("finetune: %s already ran its %lld steps (test top-1 %.2f%%); --max-steps continues it\n", out,
                   (long long)step, 100 * top1);
            status = 0;
            goto done;
        }
        printf("finetune: resuming %s at step %lld of %lld\n", ckpt, (long long)step, (long long)total);
        fflush(stdout);
    }
    double t0 = eval_now();
    ft_ctx fc = {.c = c, .tr = tr, .test = test, .mf = mf, .out = out, .opts = opts, .nopts = nopts,
                 .random_init = random_init, .eval_every = eval_every, .workers = workers, .report = report,
                 .tty = tty, .top1 = top1};
    for (int ch = 0; ch < 3; ch++) fc.mean[ch] = mean[ch], fc.std[ch] = std[ch];
    if (rank0) maec_trainer_set_hook(tr, ft_step, &fc); /* the log, the test accuracy, the weights */
    maec_trainer_set_stop_flag(tr, &g_stop);
    rc = maec_trainer_run(tr, &err);
    top1 = fc.top1;
    if (rc == MAEC_ENONFINITE) {
        cli_error("%s; stopping", err.msg);
        goto done;
    }
    if (rc == MAEC_ESTOPPED) {
        printf("\nstopped by signal %d at step %lld; continue with: maec finetune --resume %s\n", (int)g_stop,
               (long long)maec_classifier_step(c), out);
        status = 128 + (g_stop ? g_stop : SIGINT); /* another process may have had the signal */
        goto done;
    }
    if (rc) goto fail;
    fprintf(mf, "{\"final\":true,\"test_top1\":%.6f,\"elapsed_s\":%.1f}\n", top1, eval_now() - t0);
    fflush(mf);
    if (report && rank0) cli_report_update(out);
    printf("finetune: test top-1 %.2f%% (%.0fs); weights %s/model.safetensors\n", 100 * top1, eval_now() - t0, out);
    status = 0;
    goto done;
fail:
    if (isatty(fileno(stdout))) printf("\n");
    cli_fail(&err);
    status = 1;
done:
    if (mf) fclose(mf);
    free(js);
    maec_trainer_free(tr);
    maec_loader_free(ld);
    maec_classifier_free(c);
    maec_dataset_free(train);
    maec_dataset_free(test);
    free(ckpt), free(rdir), free(state), free_args(rargv, rargc);
    return status;
}
