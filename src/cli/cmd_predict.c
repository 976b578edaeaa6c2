/* maec predict: a fine-tuned classifier's classes for a data set or for
 * image files. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "data/data.h"
#include "eval_common.h"
#include "io/npy.h"
#include "run.h"
#include "util.h"

#define PREDICT_MAX_FILES 4096

/* the normalization of the inputs: --mean/--std, else the classifier's own
 * ("maec_data", written by maec finetune), else the statistics of the data
 * set's train split (or of the split itself), else for image files
 * ImageNet's for 3 channels as timm's models expect; 0 or an error */
static int predict_norm(const maec_classifier *c, const char *mean_s, const char *std_s, const char *data,
                        maec_dataset *ds, float *mean, float *std, maec_error *err)
{
    int C = maec_classifier_config(c)->in_chans;
    if (mean_s || std_s) {
        if (parse_norm_flags(mean_s, std_s, mean, std))
            return maec_fail(err, MAEC_EINVAL,
                             "predict: give both --mean and --std, each one number or three separated by commas (std > 0)");
        return 0;
    }
    const char *meta = maec_classifier_get_meta(c, "maec_data");
    if (meta && maec_parse_norm_json(meta, C, mean, std) == 0) return 0;
    if (ds && C != 3) { /* no ImageNet statistics for grey images: the data's */
        maec_dataset *tr = NULL;
        maec_error e2 = {0};
        if (maec_dataset_open(data, "train", &tr, &e2) == 0) {
            int rc = eval_normalization(NULL, tr, C, 1, mean, std, err);
            maec_dataset_free(tr);
            return rc;
        }
        return eval_normalization(NULL, ds, C, 1, mean, std, err);
    }
    if (C == 3) return eval_normalization(NULL, ds, 3, 1, mean, std, err); /* ImageNet's, said so */
    return maec_fail(err, MAEC_EINVAL,
                     "predict: the model does not say how its inputs were normalized; give --mean and --std");
}

/* one line per image: its topk classes (by name when the model keeps the
 * names), most probable first, with their softmax probabilities */
static void print_top(const char *name, const float *lg, int K, int topk, char *const *names)
{
    double mx = lg[0], z = 0;
    for (int k = 1; k < K; k++) mx = lg[k] > mx ? lg[k] : mx;
    for (int k = 0; k < K; k++) z += exp(lg[k] - mx);
    printf("%s:", name);
    /* the topk best by repeated selection: each pick the largest logit not
     * yet taken that is below the last pick (ties: the lower index first) */
    int last = -1;
    for (int t = 0; t < topk; t++) {
        int best = -1;
        for (int k = 0; k < K; k++) {
            int after_last = last < 0 || lg[k] < lg[last] || (lg[k] == lg[last] && k > last);
            if (after_last && (best < 0 || lg[k] > lg[best])) best = k;
        }
        if (best < 0) break;
        last = best;
        double p = 100 * exp(lg[best] - mx) / z;
        if (names) printf("%s %s (%d) %.2f%%", t ? "," : "", names[best], best, p);
        else printf("%s class %d %.2f%%", t ? "," : "", best, p);
    }
    printf("\n");
}

int cmd_predict(int argc, char **argv)
{
    const char *model = NULL, *data = NULL, *split = "test", *out = NULL, *mean_s = NULL, *std_s = NULL;
    int topk = 5, batch = 256, threads = 0, workers = 1;
    double crop_pct = 0;
    maec_config hint;
    memset(&hint, 0, sizeof hint);
    cli_opt opts[] = {
        {"model", OPT_STR, &model, "a fine-tuned classifier (maec finetune's model.safetensors, or timm's)", 1, 0, 0},
        {"data-path", OPT_STR, &data, "a data set (as for pretrain): its top-1 and top-k accuracy", 1, 0, 0},
        {"split", OPT_STR, &split, "train | test (default test)", 1, 0, 0},
        {"crop-pct", OPT_DOUBLE, &crop_pct, "evaluation transform: shorter side to size / this, centre crop (default "
         "224/256 up to 224, else 1)", 0.05, 1, 0},
        {"top-k", OPT_INT, &topk, "classes to print per image, and the k of the top-k accuracy (default 5)", 1, 1000000, 0},
        {"out", OPT_STR, &out, "the logits [N, K] as float32 .npy (with --data-path, labels to <out>_labels.npy)", 1, 0, 0},
        {"mean", OPT_STR, &mean_s, "per-channel mean (default: the model's)", 1, 0, 0},
        {"std", OPT_STR, &std_s, "per-channel std (default: the model's)", 1, 0, 0},
        {"heads", OPT_INT, &hint.heads, "encoder heads (if not in the file)", 1, 4096, 0},
        {"batch-size", OPT_INT, &batch, "images per forward pass", 1, 65536, 0},
        {"threads", OPT_INT, &threads, "compute threads (default: all cores)", 1, 1024, 0},
        {"num-workers", OPT_INT, &workers, "data loader threads", 0, 256, 0},
    };
    char *pos[PREDICT_MAX_FILES];
    int npos;
    int r = cli_parse("predict", "--model M (--data-path PATH [--split test] | IMAGE...) [--top-k 5] [--out logits.npy]",
                      argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), pos, PREDICT_MAX_FILES, &npos);
    if (r) return r < 0 ? 2 : 0;
    if (!model || (!data && npos == 0) || (data && npos > 0)) {
        cli_error("predict: give --model and either --data-path or image files");
        return 2;
    }
    if (strcmp(split, "train") && strcmp(split, "test")) {
        cli_error("predict: --split must be train or test, got '%s'", split);
        return 2;
    }
    size_t ol = out ? strlen(out) : 0;
    if (out && (ol < 5 || strcmp(out + ol - 4, ".npy"))) {
        cli_error("predict: --out must end in .npy, got '%s'", out);
        return 2;
    }
    cli_set_threads("predict", threads);
    if (crop_pct > 0) maec_eval_set_crop_pct(crop_pct);
    maec_error err = {0};
    maec_classifier *c = NULL;
    maec_dataset *ds = NULL;
    maec_clf_workspace *w = NULL;
    maec_image img = {0};
    float *images = NULL, *L = NULL;
    int *Y = NULL;
    int status = 1;
    maec_classifier_opts o;
    maec_classifier_defaults(&o);
    o.num_classes = 0;
    o.drop_path = 0;
    if (maec_classifier_load(model, &hint, &o, 0, &c, &err)) goto fail;
    int K = maec_classifier_options(c)->num_classes;
    if (K < 1) {
        cli_error("predict: %s has no classifier head (a pretrained MAE?): fine-tune it first (maec finetune), "
                  "or take its features with maec embed or maec knn", model);
        goto done;
    }
    if (topk > K) topk = K;
    float mean[3], std[3];
    if (data && maec_dataset_open(data, split, &ds, &err)) goto fail;
    if (ds && maec_dataset_num_classes(ds) > K) {
        cli_error("predict: %s has %d classes, the classifier %d", data, maec_dataset_num_classes(ds), K);
        goto done;
    }
    if (predict_norm(c, mean_s, std_s, data, ds, mean, std, &err)) goto fail;
    if (ds) {
        int64_t c1 = 0, ck = 0, N = maec_dataset_size(ds);
        if (maec_eval_classify(c, ds, mean, std, batch, workers, topk, &c1, &ck, &L, &Y, &err)) goto fail;
        if (out && eval_save_rows(out, L, N, K, Y, NULL, 0, &err)) goto fail;
        if (maec_dataset_num_classes(ds) > 0)
            printf("predict: %lld images of %s (%s): top-1 %.2f%%, top-%d %.2f%%\n", (long long)N, data, split,
                   100.0 * (double)c1 / (double)N, topk, 100.0 * (double)ck / (double)N);
        else
            printf("predict: %lld unlabelled images of %s (%s)\n", (long long)N, data, split);
        if (out) printf("logits [%lld, %d] -> %s\n", (long long)N, K, out);
    } else {
        const maec_config *mc = maec_classifier_config(c);
        size_t sz = (size_t)mc->in_chans * mc->img_h * mc->img_w;
        int B = npos < batch ? npos : batch;
        images = malloc((size_t)B * sz * sizeof(float));
        L = malloc((size_t)npos * K * sizeof(float));
        if (!images || !L) {
            maec_fail(&err, MAEC_ENOMEM, "out of memory");
            goto fail;
        }
        maec_augment a;
        maec_augment_defaults(&a, mc->in_chans, mc->img_h, mc->img_w);
        a.random_resized_crop = 0;
        a.crop_pct = (float)maec_eval_crop_pct(mc->img_h, mc->img_w);
        a.hflip = 0;
        for (int k = 0; k < 3; k++) a.mean[k] = mean[k], a.std[k] = std[k];
        if (maec_clf_workspace_create(c, B, 0, &w, &err)) goto fail;
        /* every file decoded before any line is printed: a bad file stops
         * the command with nothing half-done */
        for (int i0 = 0; i0 < npos; i0 += B) {
            int n = npos - i0 < B ? npos - i0 : B;
            for (int i = 0; i < n; i++) {
                uint64_t rng = 0;
                if (maec_image_decode_file(pos[i0 + i], &img, &err)) goto fail;
                if (maec_augment_apply(&a, &img, images + i * sz, &rng, &err)) goto fail;
            }
            if (maec_classifier_forward_backward(c, w, images, n, NULL, NULL, NULL, 0, 0, NULL, &err)) goto fail;
            memcpy(L + (size_t)i0 * K, maec_clf_ws_logits(w), (size_t)n * K * sizeof(float));
        }
        if (out && eval_save_rows(out, L, npos, K, NULL, NULL, 0, &err)) goto fail;
        char **names = eval_class_names(c);
        for (int i = 0; i < npos; i++) print_top(pos[i], L + (size_t)i * K, K, topk, names);
        eval_free_names(names, K);
        if (out) printf("logits [%d, %d] -> %s\n", npos, K, out);
    }
    status = 0;
    goto done;
fail:
    cli_fail(&err);
done:
    maec_image_free(&img);
    free(images);
    free(L);
    free(Y);
    maec_clf_workspace_free(w);
    maec_dataset_free(ds);
    maec_classifier_free(c);
    return status;
}
