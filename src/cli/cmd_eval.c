/* maec knn, maec embed, maec linprobe: the frozen encoder's features. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "eval_common.h"
#include "run.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "util.h"

/* the options every feature command shares */
typedef struct {
    const char *model, *data, *feature, *eval_path, *size, *mean_s, *std_s;
    const char *out_dir; /* the command's --output-dir, where bad_images.txt goes (NULL: the log) */
    double val_split, crop_pct;
    int skip_bad;
    maec_config hint;
    int batch, threads, workers;
    uint64_t seed;
} feat_args;

#define FEAT_OPTS(a)                                                                                        \
    {"model", OPT_STR, &(a).model, "MAE model/checkpoint, classifier file, or a preset (random init)", 1, 0, 0}, \
    {"data-path", OPT_STR, &(a).data, "data set (as for pretrain)", 1, 0, 0},                             \
    {"eval-path", OPT_STR, &(a).eval_path, "evaluation images (class folders named as the training ones) "    \
     "instead of the data set's test split", 1, 0, 0},                                                    \
    {"val-split", OPT_DOUBLE, &(a).val_split, "evaluate on this seeded share of the training images, held out", \
     0.0001, 0.9999, 0},                                                                                  \
    {"input-size", OPT_STR, &(a).size, "run the encoder at this size (N, HxW or H,W; default the model's), pos_embed " \
     "interpolated as the official code", 1, 0, 0},                                                       \
    {"mean", OPT_STR, &(a).mean_s, "per-channel mean (default: the model's, else ImageNet's for RGB, else the " \
     "data's)", 1, 0, 0},                                                                                 \
    {"std", OPT_STR, &(a).std_s, "per-channel std (with --mean)", 1, 0, 0},                              \
    {"crop-pct", OPT_DOUBLE, &(a).crop_pct, "evaluation transform: shorter side to size / this, centre crop "   \
     "(default 224/256 up to 224, else 1)", 0.05, 1, 0},                                                   \
    {"skip-bad-images", OPT_BOOL, &(a).skip_bad, "skip images that do not decode (listed; an error above 1%)", 1, 0, 0}, \
    {"feature", OPT_STR, &(a).feature, "cls (class token after the final norm) | mean (of the patch tokens)", 1, 0, 0}, \
    {"heads", OPT_INT, &(a).hint.heads, "encoder heads (if not in the file)", 1, 4096, 0},               \
    {"batch-size", OPT_INT, &(a).batch, "images per forward pass", 1, 65536, 0},                          \
    {"threads", OPT_INT, &(a).threads, "compute threads (default: all cores)", 1, 1024, 0},              \
    {"num-workers", OPT_INT, &(a).workers, "data loader threads", 0, 256, 0},                             \
    {"seed", OPT_U64, &(a).seed, "seed (random-init encoders, probe init, data order)", 1, 0, 0}

static void feat_defaults(feat_args *a)
{
    memset(a, 0, sizeof *a);
    a->feature = "cls";
    a->batch = 256;
    a->workers = 1;
}

/* model + data + normalization; c NULL and raw = 1 for raw pixels */
typedef struct {
    maec_classifier *c;
    maec_dataset *train, *test;
    float mean[3], std[3];
    int feature, random_init, shape[3];
} feat_ctx;

static void feat_free(feat_ctx *x)
{
    maec_classifier_free(x->c);
    maec_dataset_free(x->train);
    maec_dataset_free(x->test);
    memset(x, 0, sizeof *x);
}

/* opens what the command needs; need: 1 train, 2 test, 3 both */
static int feat_open(const char *cmd, feat_args *a, int raw, int need, feat_ctx *x, maec_error *err)
{
    memset(x, 0, sizeof *x);
    if (!a->data) return maec_fail(err, MAEC_EINVAL, "%s: --data-path is required", cmd);
    if (!raw && !a->model) return maec_fail(err, MAEC_EINVAL, "%s: --model is required", cmd);
    x->feature = eval_feature_kind(a->feature);
    if (x->feature < 0) return maec_fail(err, MAEC_EINVAL, "%s: --feature must be cls or mean, got '%s'", cmd, a->feature);
    cli_set_threads(cmd, a->threads);
    int rc = 0;
    if (!raw) {
        maec_classifier_opts o;
        maec_classifier_defaults(&o);
        o.num_classes = 0;
        o.global_pool = 0;
        o.drop_path = 0;
        rc = eval_load_model(a->model, &a->hint, &o, a->seed, 0, &x->c, &x->random_init, err);
        if (!rc && a->size) {
            int h, w;
            if (cli_parse_size(a->size, &h, &w)) rc = maec_fail(err, MAEC_EINVAL, "%s: --input-size %s: give N, HxW or H,W", cmd, a->size);
            else rc = maec_classifier_resize(&x->c, h, w, err);
        }
        if (!rc && maec_classifier_options(x->c)->global_pool && x->feature == MAEC_FEATURE_CLS)
            x->feature = MAEC_FEATURE_MEAN; /* a fine-tuned global-pool model: its pre-logits */
    }
    if (a->crop_pct > 0) maec_eval_set_crop_pct(a->crop_pct);
    if (!rc)
        rc = eval_open_sets(a->data, a->eval_path, a->val_split, a->seed, need, a->skip_bad, a->out_dir, &x->train,
                            &x->test, err);
    maec_dataset *any = x->train ? x->train : x->test;
    if (!rc) {
        if (raw) {
            x->shape[0] = maec_dataset_channels(any);
            rc = maec_dataset_native_size(any, &x->shape[1], &x->shape[2]);
            if (rc) rc = maec_fail(err, rc, "%s: --raw-pixels needs images of one size", cmd);
        } else {
            const maec_config *mc = maec_classifier_config(x->c);
            x->shape[0] = mc->in_chans, x->shape[1] = mc->img_h, x->shape[2] = mc->img_w;
        }
    }
    if (!rc && !a->mean_s && !a->std_s) { /* else --mean/--std, below */
        const char *meta = x->c ? maec_classifier_get_meta(x->c, "maec_data") : NULL;
        maec_dataset *nds = x->train ? x->train : x->test;
        if (!meta && !x->train && maec_dataset_open(a->data, "train", &nds, err) == 0) {
            rc = eval_normalization(NULL, nds, x->shape[0], x->c && !x->random_init, x->mean, x->std, err);
            maec_dataset_free(nds);
        } else {
            rc = eval_normalization(meta, nds, x->shape[0], x->c && !x->random_init, x->mean, x->std, err);
        }
    }
    if (!rc && (a->mean_s || a->std_s) && parse_norm_flags(a->mean_s, a->std_s, x->mean, x->std))
        rc = maec_fail(err, MAEC_EINVAL, "%s: give both --mean and --std, each one number or three separated by commas "
                       "(std > 0)", cmd);
    if (rc) feat_free(x);
    return rc;
}

/* features [N, D] from .npy and integer labels from <name>_labels.npy;
 * *maxlabel grows to the largest label */
static int load_features(const char *path, float **F, int **Y, int64_t *N, int *D, int *maxlabel, maec_error *err)
{
    npy_array f, l;
    size_t pl = strlen(path);
    if (pl < 5 || strcmp(path + pl - 4, ".npy"))
        return maec_fail(err, MAEC_EINVAL, "%s: features must be a .npy file", path);
    int rc = npy_load(path, &f, err);
    if (rc) return rc;
    if (f.ndim != 2 || f.shape[0] < 1 || f.shape[1] < 1 || f.shape[1] > 1 << 24) {
        npy_free(&f);
        return maec_fail(err, MAEC_ESHAPE, "%s: features must be [N, D]", path);
    }
    char lp[2048];
    snprintf(lp, sizeof lp, "%.*s_labels.npy", (int)(pl - 4), path);
    if ((rc = npy_load(lp, &l, err))) {
        npy_free(&f);
        return rc;
    }
    if (l.count != (size_t)f.shape[0]) rc = maec_fail(err, MAEC_ESHAPE, "%s: %zu labels for %lld features", lp, l.count, (long long)f.shape[0]);
    int *y = rc ? NULL : malloc(l.count * sizeof(int));
    if (!rc && !y) rc = maec_fail(err, MAEC_ENOMEM, "out of memory");
    for (size_t i = 0; !rc && i < l.count; i++) {
        float v = l.data[i];
        if (!(v >= 0 && v < 1000000) || v != floorf(v)) rc = maec_fail(err, MAEC_EINVAL, "%s: label %g is not a class index", lp, (double)v);
        else y[i] = (int)v;
        if (!rc && y[i] > *maxlabel) *maxlabel = y[i];
    }
    npy_free(&l);
    if (rc) {
        free(y);
        npy_free(&f);
        return rc;
    }
    *F = malloc(f.count * sizeof(float)); /* npy data is maec_alloc'd: copy to plain malloc */
    if (!*F) {
        free(y);
        npy_free(&f);
        return maec_fail(err, MAEC_ENOMEM, "out of memory");
    }
    memcpy(*F, f.data, f.count * sizeof(float));
    npy_free(&f);
    *Y = y;
    *N = f.shape[0];
    *D = (int)f.shape[1];
    return 0;
}

/* ------------------------------------------------------------ knn */

int cmd_knn(int argc, char **argv)
{
    feat_args a;
    feat_defaults(&a);
    int k = 20;
    float T = 0.07f;
    const char *out = NULL, *ftr_path = NULL, *fte_path = NULL;
    cli_opt opts[] = {
        FEAT_OPTS(a),
        {"k", OPT_INT, &k, "neighbours (20)", 1, 256, 0},
        {"t", OPT_FLOAT, &T, "temperature of the votes exp(sim / T) (0.07)", 1e-4, 100, 0},
        {"output-dir", OPT_STR, &out, "also append the result to DIR/metrics.jsonl", 1, 0, 0},
        {"train-features", OPT_STR, &ftr_path, "features [N, D] from maec embed (labels beside it) instead of a model", 1, 0, 0},
        {"test-features", OPT_STR, &fte_path, "the test features for --train-features", 1, 0, 0},
    };
    int npos, r = cli_parse("knn", "--model M --data-path P [--feature cls|mean] [--k 20] [--t 0.07]", argc, argv,
                            opts, (int)(sizeof opts / sizeof opts[0]), NULL, 0, &npos);
    if (r) return r < 0 ? 2 : 0;
    maec_error err = {0};
    if (!ftr_path != !fte_path) {
        cli_error("knn: give both --train-features and --test-features");
        return 2;
    }
    int given = ftr_path != NULL;
    if (given && (a.model || a.data)) {
        cli_error("knn: --train-features replaces --model and --data-path");
        return 2;
    }
    feat_ctx x;
    memset(&x, 0, sizeof x);
    a.out_dir = out;
    if (!given && feat_open("knn", &a, 0, 3, &x, &err)) return cli_fail(&err);
    double t0 = eval_now(), top1 = 0;
    int rc = 0;
    int64_t ntr = 0, nte = 0;
    if (given) {
        float *ftr = NULL, *fte = NULL;
        int *ytr = NULL, *yte = NULL, D = 0, D2 = 0, K = 0;
        rc = load_features(ftr_path, &ftr, &ytr, &ntr, &D, &K, &err);
        if (!rc) rc = load_features(fte_path, &fte, &yte, &nte, &D2, &K, &err);
        if (!rc && D != D2) rc = maec_fail(&err, MAEC_ESHAPE, "knn: train features of dim %d, test of %d", D, D2);
        if (!rc) {
            top1 = maec_knn_top1(ftr, ytr, ntr, fte, yte, nte, D, K + 1, k, T, NULL, &err);
            if (top1 < 0) rc = MAEC_EINVAL;
        }
        free(ftr), free(fte), free(ytr), free(yte);
        x.feature = -1;
    } else {
        rc = maec_eval_knn(x.c, x.train, x.test, x.feature, k, T, x.mean, x.std, a.batch, a.workers, &top1, &err);
        ntr = maec_dataset_size(x.train), nte = maec_dataset_size(x.test);
    }
    double secs = eval_now() - t0;
    const char *fname = x.feature < 0 ? "given" : x.feature == MAEC_FEATURE_CLS ? "cls" : "mean";
    if (!rc && out) {
        if (eval_mkdir_p(out)) rc = maec_fail(&err, MAEC_EIO, "cannot create %s: %s", out, strerror(errno));
        FILE *f = rc ? NULL : eval_open_metrics(out, 0, &err);
        if (!f && !rc) rc = MAEC_EIO;
        if (f) {
            fprintf(f, "{\"knn_top1\":%.6f,\"k\":%d,\"t\":%g,\"feature\":\"%s\",\"elapsed_s\":%.1f}\n", top1, k,
                    (double)T, fname, secs);
            fclose(f);
        }
    }
    if (!rc)
        printf("{\"knn_top1\":%.6f,\"k\":%d,\"t\":%g,\"feature\":\"%s\",\"train\":%lld,\"test\":%lld,\"elapsed_s\":%.1f}\n",
               top1, k, (double)T, fname, (long long)ntr, (long long)nte, secs);
    feat_free(&x);
    return rc ? cli_fail(&err) : 0;
}

/* ------------------------------------------------------------ embed */

int cmd_embed(int argc, char **argv)
{
    feat_args a;
    feat_defaults(&a);
    const char *split = "test", *out = NULL, *tokens = NULL;
    int layer = -1, no_norm = 0, attention = 0;
    cli_opt opts[] = {
        FEAT_OPTS(a),
        {"split", OPT_STR, &split, "train | test", 1, 0, 0},
        {"tokens", OPT_STR, &tokens, "cls | mean | patch: the class token, the mean of the patch tokens [N, D], or "
         "every patch token [N, L, D]", 1, 0, 0},
        {"layer", OPT_INT, &layer, "the tokens after block K (1..depth; 0 the embeddings; default the last)", 0, 4096, 0},
        {"no-final-norm", OPT_BOOL, &no_norm, "the tokens without the encoder's final norm", 1, 0, 0},
        {"attention", OPT_BOOL, &attention, "the last block's attention probabilities [N, heads, 1+L, 1+L] instead", 1,
         0, 0},
        {"out", OPT_STR, &out, "features [N, D] as float32 .npy (labels to <out>_labels.npy)", 1, 0, 0},
    };
    int npos, r = cli_parse("embed", "--model M --data-path P --split train|test --out F.npy [--feature cls|mean]",
                            argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), NULL, 0, &npos);
    if (r) return r < 0 ? 2 : 0;
    maec_error err = {0};
    if (!out) {
        cli_error("embed: --out is required");
        return 2;
    }
    if (strcmp(split, "train") && strcmp(split, "test")) {
        cli_error("embed: --split must be train or test, got '%s'", split);
        return 2;
    }
    size_t ol = strlen(out);
    if (ol < 5 || strcmp(out + ol - 4, ".npy")) {
        cli_error("embed: --out must end in .npy, got '%s'", out);
        return 2;
    }
    feat_ctx x;
    if (feat_open("embed", &a, 0, !strcmp(split, "train") ? 1 : 2, &x, &err)) return cli_fail(&err);
    maec_dataset *ds = x.train ? x.train : x.test;
    float *F = NULL;
    int *Y = NULL, D = 0;
    int64_t N = 0;
    int rc = 0, kind = -1;
    char lp[2048];
    if (attention && (tokens || layer >= 0 || no_norm)) {
        rc = maec_fail(&err, MAEC_EINVAL, "embed: --attention takes the last block's maps; not with --tokens, --layer "
                       "or --no-final-norm");
    } else if (attention) {
        kind = 3;
    } else if (tokens || layer >= 0 || no_norm) {
        const char *t = tokens ? tokens : a.feature;
        kind = !strcmp(t, "cls") ? 0 : !strcmp(t, "mean") ? 1 : !strcmp(t, "patch") ? 2 : -1;
        if (kind < 0) rc = maec_fail(&err, MAEC_EINVAL, "embed: --tokens %s: give cls, mean or patch", t);
    }
    if (kind < 0 && !rc) {
        rc = maec_eval_features(x.c, ds, x.feature, NULL, x.mean, x.std, a.batch, a.workers, &F, &Y, &N, &D, &err);
        if (!rc) rc = eval_save_rows(out, F, N, D, Y, lp, sizeof lp, &err);
        if (!rc) printf("features [%lld, %d] -> %s, labels -> %s\n", (long long)N, D, out, lp);
    } else if (!rc) {
        const maec_config *mc = maec_classifier_config(x.c);
        int per, L = (mc->img_h / mc->patch) * (mc->img_w / mc->patch);
        rc = maec_eval_tokens(x.c, ds, x.mean, x.std, a.batch, a.workers, layer, !no_norm, kind, &F, &Y, &N, &per, &err);
        int T = L + 1;
        int64_t shape[4] = {N, kind == 2 ? L : mc->dim, mc->dim, 0};
        if (kind == 3) shape[1] = mc->heads, shape[2] = T, shape[3] = T;
        if (!rc) rc = eval_save_array(out, F, kind == 3 ? 4 : kind == 2 ? 3 : 2, shape, Y, lp, sizeof lp, &err);
        if (!rc && kind == 3)
            printf("attention [%lld, %d, %d, %d] of the last block -> %s, labels -> %s\n", (long long)N, mc->heads, T, T,
                   out, lp);
        else if (!rc) {
            char sh[64];
            if (kind == 2) snprintf(sh, sizeof sh, "[%lld, %d, %d]", (long long)N, L, mc->dim);
            else snprintf(sh, sizeof sh, "[%lld, %d]", (long long)N, mc->dim);
            char where[64];
            if (layer < 0 || layer == mc->depth) snprintf(where, sizeof where, "the last block");
            else if (layer == 0) snprintf(where, sizeof where, "the embeddings");
            else snprintf(where, sizeof where, "block %d", layer);
            printf("tokens %s %s after %s%s -> %s, labels -> %s\n", kind == 0 ? "cls" : kind == 1 ? "mean" : "patch", sh,
                   where, no_norm ? "" : " and the final norm", out, lp);
        }
    }
    free(F);
    free(Y);
    feat_free(&x);
    return rc ? cli_fail(&err) : 0;
}

/* ------------------------------------------------------------ linprobe */

static double probe_top1(maec_linprobe *lp, const float *F, const int *Y, int64_t N, int D, int K, int B,
                         float *logits, maec_error *err)
{
    int64_t correct = 0;
    for (int64_t i = 0; i < N; i += B) {
        int n = (int)(N - i < B ? N - i : B);
        if (maec_linprobe_forward_backward(lp, F + (size_t)i * D, n, NULL, 0, logits, NULL, err)) return -1;
        for (int b = 0; b < n; b++) {
            int best = 0;
            for (int k = 1; k < K; k++)
                if (logits[(size_t)b * K + k] > logits[(size_t)b * K + best]) best = k;
            correct += best == Y[i + b];
        }
    }
    return (double)correct / (double)N;
}

static int save_probe(const char *path, maec_classifier *c, int feature, maec_linprobe *lp, int D, int K,
                      const char *meta_data, maec_error *err)
{
    int n = c ? maec_classifier_num_tensors(c) : 0;
    st_tensor *t = calloc((size_t)n + 4, sizeof *t);
    if (!t) return maec_fail(err, MAEC_ENOMEM, "out of memory");
    int k = 0;
    for (int i = 0; i < n; i++) {
        const maec_tensor_info *ti = maec_classifier_tensor(c, i);
        t[k].name = ti->name;
        t[k].ndim = ti->ndim;
        for (int d = 0; d < 4; d++) t[k].shape[d] = ti->shape[d];
        t[k++].data = maec_classifier_params(c) + ti->offset;
    }
    /* main_linprobe.py: head = Sequential(BatchNorm1d(affine=False), Linear) */
    t[k] = (st_tensor){"head.0.running_mean", 1, {D}, maec_linprobe_running_mean(lp)};
    k++;
    t[k] = (st_tensor){"head.0.running_var", 1, {D}, maec_linprobe_running_var(lp)};
    k++;
    t[k] = (st_tensor){"head.1.weight", 2, {K, D}, maec_linprobe_weight(lp)};
    k++;
    t[k] = (st_tensor){"head.1.bias", 1, {K}, maec_linprobe_bias(lp)};
    k++;
    char *cfg = c ? maec_config_to_json(maec_classifier_config(c)) : NULL;
    const char *keys[5], *vals[5];
    int nk = 0;
    keys[nk] = "format", vals[nk++] = "pt";
    if (cfg) keys[nk] = "maec_config", vals[nk++] = cfg;
    /* which features the head takes, for maec_classifier_load */
    if (c) keys[nk] = "maec_probe", vals[nk++] = feature == MAEC_FEATURE_MEAN ? "{\"feature\":\"mean\"}" : "{\"feature\":\"cls\"}";
    if (meta_data) keys[nk] = "maec_data", vals[nk++] = meta_data;
    int rc = st_save(path, t, k, keys, vals, nk, err);
    free(cfg);
    free(t);
    return rc;
}

/* linprobe --augment: a loader over the train split with main_linprobe.py's
 * transform (RandomResizedCrop at the model's size, scale 0.08-1, bicubic;
 * a flip; the normalization), shuffled and drop_last, and a workspace for
 * the frozen encoder's features of each batch */
static int open_augmented(const feat_ctx *x, int B, int workers, uint64_t seed, maec_loader **ld,
                          maec_clf_workspace **w, float **img, int64_t *ntr, maec_error *err)
{
    int shape[3] = {x->shape[0], x->shape[1], x->shape[2]};
    if (x->c) {
        const maec_config *mc = maec_classifier_config(x->c);
        shape[0] = mc->in_chans, shape[1] = mc->img_h, shape[2] = mc->img_w;
    }
    maec_loader_opts lo;
    maec_loader_defaults(&lo, shape[0], shape[1], shape[2]);
    lo.batch = B;
    lo.threads = workers;
    lo.seed = seed;
    lo.shuffle = 1;
    lo.drop_last = 1;
    lo.aug.random_resized_crop = 1;
    lo.aug.scale_min = 0.08f;
    lo.aug.hflip = 1;
    for (int c = 0; c < 3; c++) lo.aug.mean[c] = x->mean[c], lo.aug.std[c] = x->std[c];
    *img = malloc((size_t)B * shape[0] * shape[1] * shape[2] * sizeof(float));
    if (!*img) return maec_fail(err, MAEC_ENOMEM, "out of memory");
    int rc = maec_loader_create(x->train, &lo, ld, err);
    if (!rc && x->c) rc = maec_clf_workspace_create(x->c, B, 0, w, err);
    *ntr = maec_dataset_size(x->train);
    return rc;
}

/* the next augmented batch's features xb [B, D] and labels yb */
static int augmented_features(const feat_ctx *x, maec_loader *ld, maec_clf_workspace *w, float *img, int B, int D,
                              float *xb, int *yb, maec_error *err)
{
    int n;
    int rc = maec_loader_next(ld, img, yb, &n, err);
    if (!rc && n != B) rc = maec_fail(err, MAEC_EINVAL, "linprobe: a batch of %d images, %d expected", n, B);
    if (rc) return rc;
    if (x->c) return maec_classifier_features(x->c, w, img, B, x->feature, xb, err);
    memcpy(xb, img, (size_t)B * D * sizeof(float));
    return 0;
}

/* The probe trainer's batches: features of the training set in an order
 * drawn per epoch from (seed, epoch), or with --augment recomputed from
 * the loader's augmented images. */
typedef struct {
    const feat_ctx *x;
    const float *ftr;
    const int *ytr;
    int64_t ntr, *perm, epoch;
    int B, D, augment;
    uint64_t seed;
    maec_loader *ald;
    maec_clf_workspace *aw;
    float *aimg;
} probe_src;

static int probe_batch(void *ctx, int64_t epoch, int64_t s, float *xb, int *yb, int *n, maec_error *err)
{
    probe_src *p = ctx;
    *n = p->B;
    if (p->augment) return augmented_features(p->x, p->ald, p->aw, p->aimg, p->B, p->D, xb, yb, err);
    if (epoch != p->epoch) { /* this epoch's order */
        uint64_t prng = rng_derive(p->seed, (uint64_t)epoch, 0x70726f62, 0);
        for (int64_t i = 0; i < p->ntr; i++) p->perm[i] = i;
        for (int64_t i = p->ntr - 1; i > 0; i--) {
            int64_t j = (int64_t)(rng_next(&prng) % (uint64_t)(i + 1)), t = p->perm[i];
            p->perm[i] = p->perm[j];
            p->perm[j] = t;
        }
        p->epoch = epoch;
    }
    for (int b = 0; b < p->B; b++) {
        int64_t idx = p->perm[s * p->B + b];
        memcpy(xb + (size_t)b * p->D, p->ftr + (size_t)idx * p->D, (size_t)p->D * sizeof(float));
        yb[b] = p->ytr[idx];
    }
    return 0;
}

/* what the probe's step hook needs */
typedef struct {
    maec_linprobe *lp;
    FILE *mf;
    const float *fte;
    const int *yte;
    int64_t nte;
    int D, K, B, eval_every, epochs, report;
    float *logits;
    const char *out;
    double t0, top1;
} probe_log;

/* at each epoch's end: the epoch's record, the test accuracy every
 * --eval-every epochs and at the last, the report */
static int probe_step(void *ctx, maec_trainer *t, const maec_train_event *ev, maec_error *err)
{
    (void)t;
    probe_log *l = ctx;
    if (!ev->epoch_end) return 0;
    int ep = (int)(ev->step / ev->steps_per_epoch);
    fprintf(l->mf, "{\"epoch\":%d,\"loss\":%.6f,\"lr\":%.6g", ep, ev->window_loss, (double)ev->lr);
    if (ep % l->eval_every == 0 || ep == l->epochs) {
        l->top1 = probe_top1(l->lp, l->fte, l->yte, l->nte, l->D, l->K, l->B, l->logits, err);
        if (l->top1 < 0) return MAEC_EINVAL;
        fprintf(l->mf, ",\"test_top1\":%.6f", l->top1);
        printf("epoch %d  loss %.4f  test top-1 %.2f%%\n", ep, ev->window_loss, 100 * l->top1);
        fflush(stdout);
    }
    fprintf(l->mf, ",\"elapsed_s\":%.1f}\n", eval_now() - l->t0);
    fflush(l->mf);
    if (l->report) cli_report_update(l->out);
    return 0;
}

int cmd_linprobe(int argc, char **argv)
{
    feat_args a;
    feat_defaults(&a);
    int raw = 0, epochs = 90, sgd = 0, eval_every = 1, report = 0, augment = 0;
    float blr = 0.1f, lr = 0, min_lr = 0, warmup = 10, wd = 0, momentum = 0.9f;
    const char *out = NULL, *ftr_path = NULL, *fte_path = NULL;
    cli_opt opts[] = {
        FEAT_OPTS(a),
        {"raw-pixels", OPT_BOOL, &raw, "features = the normalized pixels (logistic regression)", 1, 0, 0},
        {"augment", OPT_BOOL, &augment, "train features recomputed every batch under the official RandomResizedCrop "
         "+ flip (an encoder pass per epoch; default: once, unaugmented)", 1, 0, 0},
        {"output-dir", OPT_STR, &out, "metrics.jsonl and model.safetensors go here", 1, 0, 0},
        {"epochs", OPT_INT, &epochs, "epochs over the train features (90)", 1, 100000, 0},
        {"warmup-epochs", OPT_FLOAT, &warmup, "linear warm-up epochs (10)", 0, 1e5, 0},
        {"blr", OPT_FLOAT, &blr, "base lr: lr = blr * batch / 256 (0.1)", 0, 1e4, 0},
        {"lr", OPT_FLOAT, &lr, "absolute lr (overrides --blr)", 0, 1e4, 0},
        {"min-lr", OPT_FLOAT, &min_lr, "lr at the end of the cosine (0)", 0, 1e4, 0},
        {"weight-decay", OPT_FLOAT, &wd, "weight decay of the linear weight (0)", 0, 10, 0},
        {"momentum", OPT_FLOAT, &momentum, "momentum (0.9)", 0, 0.9999, 0},
        {"sgd", OPT_BOOL, &sgd, "SGD with momentum instead of LARS", 1, 0, 0},
        {"eval-every", OPT_INT, &eval_every, "test accuracy every N epochs (and at the end)", 1, 100000, 0},
        {"report", OPT_BOOL, &report, "rewrite OUTPUT-DIR/report.html at each epoch's end (maec report)", 1, 0, 0},
        {"train-features", OPT_STR, &ftr_path, "features [N, D] from maec embed (labels beside it) instead of a model", 1, 0, 0},
        {"test-features", OPT_STR, &fte_path, "the test features for --train-features", 1, 0, 0},
    };
    int npos, r = cli_parse("linprobe", "--model M --data-path P --output-dir D [options]", argc, argv, opts,
                            (int)(sizeof opts / sizeof opts[0]), NULL, 0, &npos);
    if (r) return r < 0 ? 2 : 0;
    maec_error err = {0};
    if (!out) {
        cli_error("linprobe: --output-dir is required");
        return 2;
    }
    if (raw && a.model) {
        cli_error("linprobe: give --model or --raw-pixels, not both");
        return 2;
    }
    if (warmup > epochs) {
        cli_error("linprobe: --warmup-epochs %g is longer than --epochs %d", (double)warmup, epochs);
        return 2;
    }
    if (!ftr_path != !fte_path) {
        cli_error("linprobe: give both --train-features and --test-features");
        return 2;
    }
    int given = ftr_path != NULL;
    if (given && augment) {
        cli_error("linprobe: --augment recomputes features from images: give --model (or --raw-pixels) and --data-path, "
                  "not --train-features");
        return 2;
    }
    if (given && (raw || a.model || a.data)) {
        cli_error("linprobe: --train-features replaces --model, --raw-pixels and --data-path");
        return 2;
    }
    feat_ctx x;
    memset(&x, 0, sizeof x);
    a.out_dir = out;
    if (!given && feat_open("linprobe", &a, raw, 3, &x, &err)) return cli_fail(&err);
    int rc = 0;
    float *ftr = NULL, *fte = NULL, *logits = NULL;
    int *ytr = NULL, *yte = NULL, D = 0;
    int64_t ntr = 0, nte = 0, *perm = NULL;
    maec_linprobe *lp = NULL;
    maec_loader *ald = NULL;
    maec_clf_workspace *aw = NULL;
    float *aimg = NULL;
    FILE *mf = NULL;
    int K = 0;
    if (given) {
        rc = load_features(ftr_path, &ftr, &ytr, &ntr, &D, &K, &err);
        int D2 = 0;
        if (!rc) rc = load_features(fte_path, &fte, &yte, &nte, &D2, &K, &err);
        if (!rc && D2 != D) rc = maec_fail(&err, MAEC_ESHAPE, "linprobe: train features of dim %d, test of %d", D, D2);
        if (!rc) K++;
    } else {
        K = maec_dataset_num_classes(x.train);
        if (maec_dataset_num_classes(x.test) > K) K = maec_dataset_num_classes(x.test);
    }
    if (!rc && K < 2) rc = maec_fail(&err, MAEC_EINVAL, "linprobe: %s has no labels (or one class)", given ? ftr_path : a.data);
    if (!rc && eval_mkdir_p(out)) rc = maec_fail(&err, MAEC_EIO, "cannot create %s: %s", out, strerror(errno));
    if (!rc) mf = eval_open_metrics(out, 1, &err);
    if (!rc && !mf) rc = MAEC_EIO;
    if (!rc) cli_report_session(out, "linprobe", 1);
    double t0 = eval_now();
    if (!rc && !given) {
        printf("linprobe: features of %s (%s)...\n", raw ? "the raw pixels" : a.model,
               raw ? "normalized" : x.feature == MAEC_FEATURE_CLS ? "class token" : "mean of patch tokens");
        fflush(stdout);
        if (!augment)
            rc = maec_eval_features(x.c, x.train, x.feature, x.shape, x.mean, x.std, a.batch, a.workers, &ftr, &ytr, &ntr, &D,
                               &err);
    }
    if (!rc && !given) rc = maec_eval_features(x.c, x.test, x.feature, x.shape, x.mean, x.std, a.batch, a.workers, &fte, &yte, &nte, &D, &err);
    double t_feat = eval_now() - t0;
    int B = a.batch;
    if (!rc && augment) rc = open_augmented(&x, B, a.workers, a.seed, &ald, &aw, &aimg, &ntr, &err);
    if (!rc && ntr < B) rc = maec_fail(&err, MAEC_EINVAL, "linprobe: %lld train images, fewer than one batch of %d", (long long)ntr, B);
    if (!rc) rc = maec_linprobe_create(D, K, B, a.seed, &lp, &err);
    if (!rc) {
        logits = malloc((size_t)B * K * sizeof(float));
        perm = malloc((size_t)ntr * sizeof(int64_t));
        if (!logits || (!perm && !augment)) rc = maec_fail(&err, MAEC_ENOMEM, "out of memory");
    }
    double lr_peak = lr > 0 ? lr : (double)blr * B / 256.0;
    int64_t spe = ntr / B; /* drop_last, as the official loader */
    if (!rc) {
        printf("linprobe: %lld train / %lld test features of dim %d in %.0fs; %d epochs of %lld steps, %s, lr %.4g; "
               "train features %s\n",
               (long long)ntr, (long long)nte, D, t_feat, epochs, (long long)spe, sgd ? "SGD" : "LARS", lr_peak,
               augment ? "recomputed each batch under RandomResizedCrop + flip" : "computed once, unaugmented");
        fflush(stdout);
    }
    double top1 = 0;
    maec_trainer *tr = NULL;
    if (!rc) {
        maec_train_opts to;
        maec_train_defaults(&to);
        to.batch_size = B, to.epochs = epochs, to.batches_per_epoch = spe;
        to.lr = lr_peak, to.min_lr = min_lr, to.warmup_epochs = warmup, to.weight_decay = wd;
        to.seed = a.seed, to.log_every = (int)(spe < 1 << 30 ? spe : 1 << 30); /* a record per epoch */
        probe_src src = {.x = &x, .ftr = ftr, .ytr = ytr, .ntr = ntr, .perm = perm, .epoch = -1, .B = B, .D = D,
                         .augment = augment, .seed = a.seed, .ald = ald, .aw = aw, .aimg = aimg};
        probe_log pl = {.lp = lp, .mf = mf, .fte = fte, .yte = yte, .nte = nte, .D = D, .K = K, .B = B,
                        .eval_every = eval_every, .epochs = epochs, .report = report, .logits = logits, .out = out,
                        .t0 = t0};
        rc = maec_trainer_create_linprobe(lp, D, &to, !sgd, momentum, probe_batch, &src, &tr, &err);
        if (!rc) {
            maec_trainer_set_hook(tr, probe_step, &pl);
            rc = maec_trainer_run(tr, &err);
        }
        top1 = pl.top1;
        maec_trainer_free(tr);
    }
    if (!rc) {
        char p[2100];
        snprintf(p, sizeof p, "%s/model.safetensors", out);
        char nb[256];
        snprintf(nb, sizeof nb, "{\"mean\":[%.9g,%.9g,%.9g],\"std\":[%.9g,%.9g,%.9g]}", (double)x.mean[0],
                 (double)x.mean[1], (double)x.mean[2], (double)x.std[0], (double)x.std[1], (double)x.std[2]);
        rc = save_probe(p, x.c, x.feature, lp, D, K, given ? NULL : nb, &err);
        if (!rc) {
            fprintf(mf, "{\"final\":true,\"test_top1\":%.6f,\"epochs\":%d,\"feature_s\":%.1f,\"elapsed_s\":%.1f}\n", top1,
                    epochs, t_feat, eval_now() - t0);
            printf("linprobe: test top-1 %.2f%% after %d epochs (%.0fs); weights %s\n", 100 * top1, epochs,
                   eval_now() - t0, p);
            fflush(mf);
            if (report) cli_report_update(out);
        }
    }
    if (mf) fclose(mf);
    free(ftr), free(fte), free(ytr), free(yte), free(logits), free(perm), free(aimg);
    maec_clf_workspace_free(aw);
    maec_loader_free(ald);
    maec_linprobe_free(lp);
    feat_free(&x);
    return rc ? cli_fail(&err) : 0;
}
