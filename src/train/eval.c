/* Evaluating an encoder on a data set, as the maec command does
 * (include/maec_data.h, "evaluation"): the model's normalization, the
 * official evaluation transform, frozen features, tokens, accuracy, k-NN. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "maec.h"
#include "maec_data.h"
#include "util.h"

int maec_parse_norm_json(const char *js, int C, float *mean, float *std)
{
    cJSON *o = js ? cJSON_Parse(js) : NULL;
    const cJSON *m = o ? cJSON_GetObjectItem(o, "mean") : NULL, *s = o ? cJSON_GetObjectItem(o, "std") : NULL;
    int ok = cJSON_IsArray(m) && cJSON_IsArray(s) && cJSON_GetArraySize(m) >= C && cJSON_GetArraySize(s) >= C;
    for (int c = 0; ok && c < C; c++) {
        mean[c] = (float)cJSON_GetArrayItem(m, c)->valuedouble;
        std[c] = (float)cJSON_GetArrayItem(s, c)->valuedouble;
        ok = std[c] > 0;
    }
    cJSON_Delete(o);
    return ok ? 0 : -1;
}

int maec_eval_normalization(const char *meta_json, maec_dataset *ds, int C, int from_file, float *mean, float *std,
                            int *imagenet, maec_error *err)
{
    for (int c = 0; c < 3; c++) mean[c] = 0, std[c] = 1;
    if (imagenet) *imagenet = 0;
    if (meta_json && maec_parse_norm_json(meta_json, C, mean, std) == 0) return 0;
    if (from_file && C == 3) { /* an official or timm checkpoint: the official code's ImageNet statistics */
        const float im[3] = {0.485f, 0.456f, 0.406f}, is[3] = {0.229f, 0.224f, 0.225f};
        memcpy(mean, im, sizeof im);
        memcpy(std, is, sizeof is);
        if (imagenet) *imagenet = 1;
        return 0;
    }
    int rc = maec_dataset_mean_std(ds, C, 10000, 0, mean, std, err);
    if (rc) return rc;
    for (int c = 0; c < 3; c++)
        if (std[c] < 1e-6f) std[c] = 1.0f;
    return 0;
}

static double g_crop_pct = 0;
void maec_eval_set_crop_pct(double crop_pct) { g_crop_pct = crop_pct; }
double maec_eval_crop_pct(int h, int w)
{
    if (g_crop_pct > 0) return g_crop_pct;
    return (h > w ? h : w) <= 224 ? 224.0 / 256.0 : 1.0; /* main_finetune.py's build_transform */
}

static int open_loader(maec_dataset *ds, const int shape[3], const float *mean, const float *std, int batch,
                       int workers, maec_loader **ld, maec_error *err)
{
    maec_loader_opts lo;
    maec_loader_defaults(&lo, shape[0], shape[1], shape[2]);
    lo.batch = batch;
    lo.threads = workers;
    lo.shuffle = 0;
    lo.drop_last = 0;
    lo.aug.random_resized_crop = 0;
    lo.aug.crop_pct = (float)maec_eval_crop_pct(shape[1], shape[2]);
    lo.aug.hflip = 0;
    for (int c = 0; c < 3; c++) {
        lo.aug.mean[c] = mean[c];
        lo.aug.std[c] = std[c];
    }
    return maec_loader_create(ds, &lo, ld, err);
}

int maec_eval_tokens(maec_classifier *c, maec_dataset *ds, const float *mean, const float *std, int batch, int workers,
                int layer, int final_norm, int kind, float **feat, int **labels, int64_t *n_out, int *per,
                maec_error *err)
{
    *feat = NULL;
    *labels = NULL;
    const maec_config *mc = maec_classifier_config(c);
    int shape[3] = {mc->in_chans, mc->img_h, mc->img_w};
    int D = mc->dim, L = (mc->img_h / mc->patch) * (mc->img_w / mc->patch), T = L + 1;
    int64_t N = maec_dataset_size(ds);
    if (N < 1) return maec_fail(err, MAEC_EINVAL, "the data set is empty");
    int H = mc->heads;
    size_t img = (size_t)shape[0] * shape[1] * shape[2];
    size_t row = kind == 3 ? (size_t)H * T * T : kind == 2 ? (size_t)L * D : (size_t)D;
    *per = (int)row;
    maec_loader *ld = NULL;
    maec_clf_workspace *w = NULL;
    float *images = malloc((size_t)batch * img * sizeof(float)),
          *tok = malloc((size_t)batch * (kind == 3 ? (size_t)H * T * T : (size_t)T * D) * sizeof(float));
    float *F = malloc((size_t)N * row * sizeof(float));
    int *Y = malloc((size_t)N * sizeof(int));
    int rc = 0;
    if (!images || !tok || !F || !Y) rc = maec_fail(err, MAEC_ENOMEM, "out of memory for %lld token rows", (long long)N);
    if (!rc) rc = open_loader(ds, shape, mean, std, batch, workers, &ld, err);
    if (!rc) rc = maec_clf_workspace_create(c, batch, 0, &w, err);
    int64_t done = 0;
    while (!rc && done < N) {
        int n;
        rc = maec_loader_next(ld, images, Y + done, &n, err);
        if (!rc && kind == 3) {
            rc = maec_classifier_attention(c, w, images, n, F + (size_t)done * row, err);
            done += n;
            continue;
        }
        if (!rc) rc = maec_classifier_tokens(c, w, images, n, layer, final_norm, tok, err);
        for (int b = 0; !rc && b < n; b++) {
            const float *t = tok + (size_t)b * T * D;
            float *o = F + (size_t)(done + b) * row;
            if (kind == 0) {
                memcpy(o, t, (size_t)D * sizeof(float));
            } else if (kind == 2) {
                memcpy(o, t + D, (size_t)L * D * sizeof(float));
            } else { /* the mean of the patch tokens, in double, in order */
                for (int d = 0; d < D; d++) {
                    double s = 0;
                    for (int l = 1; l <= L; l++) s += t[(size_t)l * D + d];
                    o[d] = (float)(s / L);
                }
            }
        }
        done += n;
    }
    maec_clf_workspace_free(w);
    maec_loader_free(ld);
    free(images);
    free(tok);
    if (rc) {
        free(F);
        free(Y);
        return rc;
    }
    *feat = F;
    *labels = Y;
    *n_out = N;
    return 0;
}

int maec_eval_features(maec_classifier *c, maec_dataset *ds, int feature, const int shape_in[3], const float *mean,
                  const float *std, int batch, int workers, float **feat, int **labels, int64_t *n_out, int *dim,
                  maec_error *err)
{
    *feat = NULL;
    *labels = NULL;
    int shape[3];
    if (c) {
        const maec_config *mc = maec_classifier_config(c);
        shape[0] = mc->in_chans, shape[1] = mc->img_h, shape[2] = mc->img_w;
    } else {
        memcpy(shape, shape_in, sizeof shape);
    }
    int64_t N = maec_dataset_size(ds);
    if (N < 1) return maec_fail(err, MAEC_EINVAL, "the data set is empty");
    size_t img = (size_t)shape[0] * shape[1] * shape[2];
    int D = c ? maec_classifier_config(c)->dim : (int)img;
    *dim = D;
    maec_loader *ld = NULL;
    maec_clf_workspace *w = NULL;
    float *images = malloc((size_t)batch * img * sizeof(float));
    float *F = malloc((size_t)N * D * sizeof(float));
    int *Y = malloc((size_t)N * sizeof(int));
    int rc = 0;
    if (!images || !F || !Y) rc = maec_fail(err, MAEC_ENOMEM, "out of memory for %lld features", (long long)N);
    if (!rc) rc = open_loader(ds, shape, mean, std, batch, workers, &ld, err);
    if (!rc && c) rc = maec_clf_workspace_create(c, batch, 0, &w, err);
    int64_t done = 0;
    while (!rc && done < N) {
        int n;
        rc = maec_loader_next(ld, images, Y + done, &n, err);
        if (rc) break;
        if (c)
            rc = maec_classifier_features(c, w, images, n, feature, F + (size_t)done * D, err);
        else
            memcpy(F + (size_t)done * D, images, (size_t)n * img * sizeof(float));
        done += n;
    }
    maec_clf_workspace_free(w);
    maec_loader_free(ld);
    free(images);
    if (rc) {
        free(F);
        free(Y);
        return rc;
    }
    *feat = F;
    *labels = Y;
    *n_out = N;
    return 0;
}

/* the rank of logit y among lg[0..K): how many come before it, argmax order
 * (greater, or equal at a lower index) */
static int label_rank(const float *lg, int K, int y)
{
    int r = 0;
    for (int k = 0; k < K; k++) r += lg[k] > lg[y] || (lg[k] == lg[y] && k < y);
    return r;
}

int maec_eval_classify(maec_classifier *c, maec_dataset *ds, const float *mean, const float *std, int batch,
                  int workers, int topk, int64_t *correct1, int64_t *correctk, float **logits, int **labels,
                  maec_error *err)
{
    const maec_config *mc = maec_classifier_config(c);
    int shape[3] = {mc->in_chans, mc->img_h, mc->img_w};
    int K = maec_classifier_options(c)->num_classes;
    int64_t N = maec_dataset_size(ds);
    size_t img = (size_t)shape[0] * shape[1] * shape[2];
    if (logits) *logits = NULL, *labels = NULL;
    if (K < 1) return maec_fail(err, MAEC_EINVAL, "the model has no classifier head");
    if (N < 1) return maec_fail(err, MAEC_EINVAL, "the data set is empty");
    float *images = malloc((size_t)batch * img * sizeof(float));
    int *Y = malloc((size_t)(logits ? N : batch) * sizeof(int));
    float *L = logits ? malloc((size_t)N * K * sizeof(float)) : NULL;
    maec_loader *ld = NULL;
    maec_clf_workspace *w = NULL;
    int rc = 0;
    if (!images || !Y || (logits && !L)) rc = maec_fail(err, MAEC_ENOMEM, "out of memory");
    if (!rc) rc = open_loader(ds, shape, mean, std, batch, workers, &ld, err);
    if (!rc) rc = maec_clf_workspace_create(c, batch, 0, &w, err);
    int64_t done = 0, c1 = 0, ck = 0;
    while (!rc && done < N) {
        int n, *y = logits ? Y + done : Y;
        rc = maec_loader_next(ld, images, y, &n, err);
        if (!rc) rc = maec_classifier_forward_backward(c, w, images, n, NULL, NULL, NULL, 0, 0, NULL, err);
        if (rc) break;
        const float *lg = maec_clf_ws_logits(w);
        for (int b = 0; b < n; b++) {
            if (y[b] < 0 || y[b] >= K) continue; /* unlabelled, or a class the head lacks: wrong */
            int r = label_rank(lg + (size_t)b * K, K, y[b]);
            c1 += r == 0;
            ck += r < topk;
        }
        if (L) memcpy(L + (size_t)done * K, lg, (size_t)n * K * sizeof(float));
        done += n;
    }
    maec_clf_workspace_free(w);
    maec_loader_free(ld);
    free(images);
    if (!rc) {
        *correct1 = c1;
        if (correctk) *correctk = ck;
    }
    if (rc || !logits) {
        free(Y);
        free(L);
        return rc;
    }
    *logits = L;
    *labels = Y;
    return 0;
}

int maec_eval_top1(maec_classifier *c, maec_dataset *ds, const float *mean, const float *std, int batch, int workers,
              double *top1, maec_error *err)
{
    int64_t c1;
    int rc = maec_eval_classify(c, ds, mean, std, batch, workers, 1, &c1, NULL, NULL, NULL, err);
    if (!rc) *top1 = (double)c1 / (double)maec_dataset_size(ds);
    return rc;
}

int maec_eval_knn(maec_classifier *c, maec_dataset *train, maec_dataset *test, int feature, int k, float T,
             const float *mean, const float *std, int batch, int workers, double *top1, maec_error *err)
{
    float *ftr = NULL, *fte = NULL;
    int *ytr = NULL, *yte = NULL;
    int64_t ntr = 0, nte = 0;
    int D, K = maec_dataset_num_classes(train);
    if (K < 1 || maec_dataset_num_classes(test) < 1)
        return maec_fail(err, MAEC_EINVAL, "k-NN needs labels in both the train and the test split");
    if (maec_dataset_num_classes(test) > K) K = maec_dataset_num_classes(test);
    int rc = maec_eval_features(c, train, feature, NULL, mean, std, batch, workers, &ftr, &ytr, &ntr, &D, err);
    if (!rc) rc = maec_eval_features(c, test, feature, NULL, mean, std, batch, workers, &fte, &yte, &nte, &D, err);
    if (!rc) {
        double acc = maec_knn_top1(ftr, ytr, ntr, fte, yte, nte, D, K, k, T, NULL, err);
        if (acc < 0) rc = err->code ? err->code : MAEC_EINVAL;
        else *top1 = acc;
    }
    free(ftr), free(fte), free(ytr), free(yte);
    return rc;
}

int maec_eval_knn_model(const maec_model *m, maec_dataset *train, maec_dataset *test, const float *mean,
                   const float *std, int workers, double *top1, maec_error *err)
{
    maec_classifier_opts o;
    maec_classifier_defaults(&o);
    o.num_classes = 0;
    o.global_pool = 0;
    o.drop_path = 0;
    maec_classifier *c = NULL;
    int rc = maec_classifier_create(NULL, m, &o, 0, &c, err);
    if (!rc) rc = maec_eval_knn(c, train, test, MAEC_FEATURE_CLS, 20, 0.07f, mean, std, 256, workers, top1, err);
    maec_classifier_free(c);
    return rc;
}

