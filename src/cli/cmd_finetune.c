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

#include "cli.h"
#include "eval_common.h"
#include "util.h"

static volatile sig_atomic_t g_stop;
static void on_signal(int s) { g_stop = s; }

int cmd_finetune(int argc, char **argv)
{
    const char *model = NULL, *data = NULL, *out = NULL;
    maec_config hint;
    memset(&hint, 0, sizeof hint);
    int epochs = 50, batch = 64, accum = 1, threads = 0, workers = 1, tune = -1, scratch = 0, cls_token = 0;
    int no_hflip = 0, no_crop = 0, eval_every = 1, log_every = 50;
    uint64_t seed = 0, max_steps = 0;
    float blr = 5e-4f, lr = 0, min_lr = 1e-6f, warmup = 5, wd = 0.05f, layer_decay = 0.75f, drop_path = 0.1f;
    float smoothing = 0.1f, mixup = 0.8f, cutmix = 1.0f, switch_prob = 0.5f, crop_min = 0.08f;
    cli_opt opts[] = {
        {"model", OPT_STR, &model, "pretrained MAE (or classifier) file; a preset name: train from scratch", 1, 0, 0},
        {"from-scratch", OPT_BOOL, &scratch, "the architecture of --model, randomly initialized", 1, 0, 0},
        {"data-path", OPT_STR, &data, "data set with labels (as for pretrain)", 1, 0, 0},
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
        {"tune-blocks", OPT_INT, &tune, "partial fine-tuning: only the last K blocks, fc_norm and head learn", 0, 4096, 0},
        {"cls-token", OPT_BOOL, &cls_token, "classify the class token after the final norm (no global pool)", 1, 0, 0},
        {"crop-min", OPT_FLOAT, &crop_min, "smallest random-resized-crop area (0.08)", 0.01, 1, 0},
        {"no-random-crop", OPT_BOOL, &no_crop, "no random resized crop", 1, 0, 0},
        {"no-hflip", OPT_BOOL, &no_hflip, "no horizontal flips", 1, 0, 0},
        {"eval-every", OPT_INT, &eval_every, "test accuracy every N epochs (and at the end)", 1, 100000, 0},
        {"log-every", OPT_INT, &log_every, "log every N steps", 1, 1 << 30, 0},
        {"seed", OPT_U64, &seed, "seed: head init, data order, augmentation, mixup, drop path", 1, 0, 0},
        {"threads", OPT_INT, &threads, "compute threads (default: all cores)", 1, 1024, 0},
        {"num-workers", OPT_INT, &workers, "data loader threads", 0, 256, 0},
    };
    int npos, r = cli_parse("finetune", "--model M --data-path P --output-dir D [options]", argc, argv, opts,
                            (int)(sizeof opts / sizeof opts[0]), NULL, 0, &npos);
    if (r) return r < 0 ? 2 : 0;
    if (!model) model = "fmnist-mini", scratch = 1; /* the supervised baseline */
    if (!data || !out) {
        cli_error("finetune: --data-path and --output-dir are required");
        return 2;
    }
    if (warmup > epochs) {
        cli_error("finetune: --warmup-epochs %g is longer than --epochs %d", (double)warmup, epochs);
        return 2;
    }
    if ((mixup > 0 || cutmix > 0) && batch % 2) {
        cli_error("finetune: mixup/cutmix need an even --batch-size, got %d", batch);
        return 2;
    }
    maec_set_threads(threads);
    maec_error err = {0};
    maec_dataset *train = NULL, *test = NULL;
    maec_classifier *c = NULL;
    maec_clf_workspace *w = NULL;
    maec_loader *ld = NULL;
    float *images = NULL, *targets = NULL;
    int *labels = NULL;
    FILE *mf = NULL;
    int rc = 0, random_init = 0, status = 1;
    if ((rc = maec_dataset_open(data, "train", &train, &err))) goto fail;
    if ((rc = maec_dataset_open(data, "test", &test, &err))) goto fail;
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
    if ((rc = eval_load_model(model, &hint, &o, seed, scratch, &c, &random_init, &err))) goto fail;
    const maec_config *mc = maec_classifier_config(c);
    if (tune > mc->depth) {
        maec_fail(&err, MAEC_EINVAL, "--tune-blocks %d: the encoder has %d blocks", tune, mc->depth);
        goto fail;
    }
    float mean[3], std[3];
    const char *meta = maec_classifier_get_meta(c, "maec_data");
    if ((rc = eval_normalization(random_init ? NULL : meta, train, mc->in_chans, mean, std, &err))) goto fail;
    {
        char nb[256];
        snprintf(nb, sizeof nb, "{\"mean\":[%.9g,%.9g,%.9g],\"std\":[%.9g,%.9g,%.9g]}", (double)mean[0],
                 (double)mean[1], (double)mean[2], (double)std[0], (double)std[1], (double)std[2]);
        maec_classifier_set_meta(c, "maec_data", nb);
    }
    if (maec_dataset_size(train) < batch) {
        maec_fail(&err, MAEC_EINVAL, "%s has %lld images, fewer than one batch of %d", data,
                  (long long)maec_dataset_size(train), batch);
        goto fail;
    }
    if (eval_mkdir_p(out)) {
        maec_fail(&err, MAEC_EIO, "cannot create %s: %s", out, strerror(errno));
        goto fail;
    }
    if (!(mf = eval_open_metrics(out, 1, &err))) goto fail;
    {
        char p[2100];
        snprintf(p, sizeof p, "%s/command.txt", out);
        FILE *f = fopen(p, "w");
        if (f) {
            fprintf(f, "maec finetune");
            for (int i = 0; i < argc; i++) fprintf(f, " %s", argv[i]);
            fprintf(f, "\n");
            fclose(f);
        }
    }
    maec_loader_opts lo;
    maec_loader_defaults(&lo, mc->in_chans, mc->img_h, mc->img_w);
    lo.batch = batch;
    lo.threads = workers;
    lo.seed = seed;
    lo.shuffle = 1;
    lo.drop_last = 1;
    lo.aug.random_resized_crop = !no_crop;
    lo.aug.scale_min = crop_min;
    lo.aug.hflip = !no_hflip;
    for (int ch = 0; ch < 3; ch++) lo.aug.mean[ch] = mean[ch], lo.aug.std[ch] = std[ch];
    if ((rc = maec_loader_create(train, &lo, &ld, &err))) goto fail;
    if ((rc = maec_clf_workspace_create(c, batch, 1, &w, &err))) goto fail;
    size_t img = (size_t)mc->in_chans * mc->img_h * mc->img_w;
    images = malloc((size_t)batch * img * sizeof(float));
    targets = malloc((size_t)batch * K * sizeof(float));
    labels = malloc((size_t)batch * sizeof(int));
    if (!images || !targets || !labels) {
        maec_fail(&err, MAEC_ENOMEM, "out of memory");
        goto fail;
    }
    int64_t bpe = maec_loader_batches_per_epoch(ld), spe = bpe / accum;
    if (spe < 1) {
        maec_fail(&err, MAEC_EINVAL, "an epoch of %lld batches is shorter than --accum-iter %d", (long long)bpe, accum);
        goto fail;
    }
    int64_t total = (int64_t)epochs * spe;
    if (max_steps > 0 && (int64_t)max_steps < total) total = (int64_t)max_steps;
    double lr_peak = lr > 0 ? lr : (double)blr * batch * accum / 256.0;
    int ntrain = 0;
    size_t nparam = 0;
    for (int i = 0; i < maec_classifier_num_tensors(c); i++)
        if (maec_classifier_tensor(c, i)->trainable) ntrain++, nparam += maec_classifier_tensor(c, i)->size;
    const char *what = random_init ? "from scratch (supervised)" : tune >= 0 ? "partial fine-tuning" : "fine-tuning";
    printf("finetune: %s, %s, %d classes; %zu trainable parameters in %d tensors; %lld steps of %d x %d images, "
           "lr %.3g, layer decay %g, drop path %g, mixup %g, cutmix %g, smoothing %g\n",
           what, random_init ? model : model, K, nparam, ntrain, (long long)total, batch, accum, lr_peak,
           (double)layer_decay, (double)drop_path, (double)mixup, (double)cutmix, (double)smoothing);
    fflush(stdout);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    double t0 = eval_now(), tlog = t0, loss_sum = 0, top1 = -1;
    int loss_n = 0;
    int tty = isatty(fileno(stdout));
    for (int64_t step = 0; step < total && !g_stop;) {
        int64_t micro = step * accum;
        float lr_now = (float)maec_lr_at((double)micro / bpe, lr_peak, min_lr, warmup, epochs);
        maec_classifier_zero_grad(c);
        double sl = 0;
        for (int a = 0; a < accum; a++, micro++) {
            int n;
            if ((rc = maec_loader_next(ld, images, labels, &n, &err))) goto fail;
            for (int b = 0; b < n; b++)
                if (labels[b] < 0 || labels[b] >= K) {
                    maec_fail(&err, MAEC_EINVAL, "label %d out of [0, %d)", labels[b], K);
                    goto fail;
                }
            uint64_t mrng = rng_derive(seed, (uint64_t)micro, 0x6d6978, 0);
            maec_mixup(images, labels, targets, n, mc->in_chans, mc->img_h, mc->img_w, K, mixup, cutmix, switch_prob,
                       smoothing, &mrng);
            uint64_t drng = rng_derive(seed, (uint64_t)micro, 0x64726f70, 0);
            float loss;
            rc = maec_classifier_forward_backward(c, w, images, n, targets, NULL, &drng, 1, 1.0f / accum, &loss, &err);
            if (rc) {
                if (err.code == MAEC_ENONFINITE) {
                    cli_error("the loss became %g at step %lld; stopping", (double)loss, (long long)step);
                    goto done;
                }
                goto fail;
            }
            sl += loss / accum;
        }
        maec_adamw opt = {lr_now, 0.9f, 0.999f, 1e-8f, wd};
        maec_classifier_adamw_step(c, &opt, layer_decay);
        step++;
        loss_sum += sl;
        loss_n++;
        int epoch_end = step % spe == 0 || step == total;
        if (step % log_every == 0 || epoch_end) {
            double t = eval_now();
            fprintf(mf, "{\"step\":%lld,\"epoch\":%.4f,\"loss\":%.6f,\"lr\":%.6g,\"images_per_s\":%.1f,\"elapsed_s\":%.1f}\n",
                    (long long)step, (double)step / spe, loss_sum / loss_n, (double)lr_now,
                    loss_n * (double)batch * accum / (t - tlog), t - t0);
            fflush(mf);
            printf("%sepoch %.2f  step %lld/%lld  loss %.4f  lr %.3g  %.0f img/s%s", tty ? "\r\033[K" : "",
                   (double)step / spe, (long long)step, (long long)total, loss_sum / loss_n, (double)lr_now,
                   loss_n * (double)batch * accum / (t - tlog), tty ? "" : "\n");
            fflush(stdout);
            tlog = t;
            loss_sum = 0;
            loss_n = 0;
        }
        int64_t ep = (step + spe - 1) / spe;
        if (epoch_end && (ep % eval_every == 0 || step == total)) {
            double te = eval_now();
            if ((rc = eval_top1(c, test, mean, std, 256, workers, &top1, &err))) goto fail;
            fprintf(mf, "{\"step\":%lld,\"epoch\":%lld,\"test_top1\":%.6f,\"eval_s\":%.1f,\"elapsed_s\":%.1f}\n",
                    (long long)step, (long long)ep, top1, eval_now() - te, eval_now() - t0);
            fflush(mf);
            printf("%sepoch %lld: test top-1 %.2f%%\n", tty ? "\r\033[K" : "", (long long)ep, 100 * top1);
            fflush(stdout);
            char p[2100];
            snprintf(p, sizeof p, "%s/model.safetensors", out);
            if ((rc = maec_classifier_save(c, p, &err))) goto fail;
        }
    }
    if (g_stop) {
        char p[2100];
        snprintf(p, sizeof p, "%s/model.safetensors", out);
        maec_classifier_save(c, p, &err);
        printf("\nstopped by signal %d; weights so far in %s (no resume for finetune)\n", (int)g_stop, p);
        status = 128 + g_stop;
        goto done;
    }
    fprintf(mf, "{\"final\":true,\"test_top1\":%.6f,\"elapsed_s\":%.1f}\n", top1, eval_now() - t0);
    printf("finetune: test top-1 %.2f%% (%.0fs); weights %s/model.safetensors\n", 100 * top1, eval_now() - t0, out);
    status = 0;
    goto done;
fail:
    if (isatty(fileno(stdout))) printf("\n");
    cli_fail(&err);
    status = 1;
done:
    if (mf) fclose(mf);
    free(images), free(targets), free(labels);
    maec_loader_free(ld);
    maec_clf_workspace_free(w);
    maec_classifier_free(c);
    maec_dataset_free(train);
    maec_dataset_free(test);
    return status;
}
