/* Helpers of the evaluation commands: see eval_common.h. */
#define _POSIX_C_SOURCE 200809L
#include "eval_common.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "io/npy.h"
#include "run.h"
#include "util.h"

double eval_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int eval_mkdir_p(const char *path)
{
    char tmp[2048];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -1;
        *p = '/';
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return -1;
    return 0;
}

FILE *eval_open_metrics(const char *dir, int fresh, maec_error *err)
{
    char p[2100];
    snprintf(p, sizeof p, "%s/metrics.jsonl", dir);
    FILE *f = fopen(p, fresh ? "w" : "a");
    if (!f) maec_fail(err, MAEC_EIO, "cannot write %s: %s", p, strerror(errno));
    return f;
}

int eval_feature_kind(const char *s)
{
    if (!strcmp(s, "cls")) return MAEC_FEATURE_CLS;
    if (!strcmp(s, "mean")) return MAEC_FEATURE_MEAN;
    return -1;
}

int eval_normalization(const char *meta_json, maec_dataset *ds, int C, int from_file, float *mean, float *std,
                       maec_error *err)
{
    int imagenet = 0, rc = maec_eval_normalization(meta_json, ds, C, from_file, mean, std, &imagenet, err);
    if (!rc && imagenet)
        printf("normalization: the model holds no statistics of its data; ImageNet's mean and std, as the official "
               "code (--mean/--std where the command takes them)\n");
    return rc;
}

int eval_load_model(const char *model, const maec_config *hint, const maec_classifier_opts *o, uint64_t seed,
                    int from_scratch, maec_classifier **out, int *random_init, maec_error *err)
{
    *out = NULL;
    *random_init = 0;
    if (access(model, F_OK) != 0) {
        maec_config c;
        maec_error e2;
        if (maec_preset(model, &c, &e2))
            return maec_fail(err, MAEC_EIO, "--model %s: no such file, and not a preset (%s)", model,
                             maec_preset_names());
        if (hint && hint->heads > 0) c.heads = hint->heads;
        *random_init = 1;
        return maec_classifier_create(&c, NULL, o, seed, out, err);
    }
    if (!from_scratch) return maec_classifier_load(model, hint, o, seed, out, err);
    /* the architecture of the file, initialized afresh */
    maec_classifier *tmp;
    int rc = maec_classifier_load(model, hint, o, seed, &tmp, err);
    if (rc) return rc;
    *random_init = 1;
    rc = maec_classifier_create(maec_classifier_config(tmp), NULL, o, seed, out, err);
    maec_classifier_free(tmp);
    return rc;
}

int eval_save_class_names(maec_classifier *c, const maec_dataset *ds, maec_error *err)
{
    int K = maec_classifier_options(c)->num_classes;
    if (K < 1 || maec_dataset_num_classes(ds) != K) return 0;
    cJSON *a = cJSON_CreateArray();
    for (int k = 0; a && k < K; k++) {
        const char *name = maec_dataset_class_name(ds, k);
        cJSON *v = name ? cJSON_CreateString(name) : NULL;
        if (!v) {
            cJSON_Delete(a);
            return 0; /* a data set without names for every class: none kept */
        }
        cJSON_AddItemToArray(a, v);
    }
    char *js = a ? cJSON_PrintUnformatted(a) : NULL;
    cJSON_Delete(a);
    if (!js) return maec_fail(err, MAEC_ENOMEM, "out of memory");
    int rc = maec_classifier_set_meta(c, "maec_classes", js);
    free(js);
    return rc ? maec_fail(err, rc, "cannot keep the class names in the model") : 0;
}

char **eval_class_names(const maec_classifier *c)
{
    int K = maec_classifier_options(c)->num_classes;
    const char *js = maec_classifier_get_meta(c, "maec_classes");
    cJSON *a = js ? cJSON_Parse(js) : NULL;
    char **names = NULL;
    if (cJSON_IsArray(a) && K > 0 && cJSON_GetArraySize(a) == K && (names = calloc((size_t)K, sizeof *names))) {
        for (int k = 0; k < K; k++) {
            const cJSON *v = cJSON_GetArrayItem(a, k);
            if (!cJSON_IsString(v) || !(names[k] = strdup(v->valuestring))) {
                eval_free_names(names, K);
                names = NULL;
                break;
            }
        }
    }
    cJSON_Delete(a);
    return names;
}

void eval_free_names(char **names, int K)
{
    if (!names) return;
    for (int k = 0; k < K; k++) free(names[k]);
    free(names);
}

int eval_save_rows(const char *out, const float *rows, int64_t N, int D, const int *labels, char *labels_path,
                   size_t lp_size, maec_error *err)
{
    int64_t shape[2] = {N, D};
    return eval_save_array(out, rows, 2, shape, labels, labels_path, lp_size, err);
}

int eval_save_array(const char *out, const float *data, int ndim, const int64_t *shape, const int *labels,
                    char *labels_path, size_t lp_size, maec_error *err)
{
    int64_t N = shape[0];
    int rc = npy_save(out, data, ndim, shape, err);
    if (rc || !labels) return rc;
    char lp[2048];
    size_t ol = strlen(out);
    snprintf(lp, sizeof lp, "%.*s_labels.npy", (int)(ol > 4 ? ol - 4 : ol), out);
    if (labels_path) snprintf(labels_path, lp_size, "%s", lp);
    float *yf = malloc((size_t)N * sizeof(float));
    if (!yf) return maec_fail(err, MAEC_ENOMEM, "out of memory");
    for (int64_t i = 0; i < N; i++) yf[i] = (float)labels[i];
    rc = npy_save(lp, yf, 1, shape, err);
    free(yf);
    return rc;
}

int eval_metrics_resume(const char *from, const char *to, long long step, int keep_at_step, maec_error *err)
{
    char *buf = NULL;
    size_t len = 0;
    maec_error rerr = {0};
    /* no log where the run stopped: trim the one already at `to`, if any */
    if (read_file(from, &buf, &len, (size_t)1 << 30, &rerr) && read_file(to, &buf, &len, (size_t)1 << 30, &rerr))
        return 0;
    atomic_file af;
    if (atomic_open(&af, to, err)) {
        free(buf);
        return err->code;
    }
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        /* a line cut short by a kill is no record; one past the checkpoint
         * is written again; the "final" record of a run now going on goes */
        cJSON *o = cJSON_Parse(line);
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "step");
        int keep = cJSON_IsObject(o) && !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "final"));
        if (keep && cJSON_IsNumber(s))
            keep = s->valuedouble < (double)step || (keep_at_step && s->valuedouble == (double)step);
        cJSON_Delete(o);
        if (!keep) continue;
        atomic_write(&af, line, strlen(line));
        atomic_write(&af, "\n", 1);
    }
    free(buf);
    return atomic_commit(&af, err);
}

/* --skip-bad-images on one set: its undecodable images dropped, listed (in
 * list, appended) and counted; above MAX_BAD_SHARE of the set, an error */
#define MAX_BAD_SHARE 0.01
static int skip_bad(maec_dataset *ds, const char *name, char **list, size_t *len, maec_error *err)
{
    char **bad = NULL;
    int64_t nbad = 0, n0 = maec_dataset_size(ds);
    int rc = maec_dataset_drop_bad(ds, &bad, &nbad, err);
    if (rc || nbad == 0) return rc;
    printf("data: --skip-bad-images: %lld of the %lld %s images do not decode and are skipped\n", (long long)nbad,
           (long long)n0, name);
    for (int64_t i = 0; i < nbad; i++) {
        size_t k = strlen(bad[i]);
        char *nl = realloc(*list, *len + k + 2);
        if (nl) {
            memcpy(nl + *len, bad[i], k);
            nl[*len + k] = '\n';
            nl[*len + k + 1] = 0;
            *list = nl;
            *len += k + 1;
        }
    }
    if ((double)nbad > MAX_BAD_SHARE * (double)n0)
        rc = maec_fail(err, MAEC_EFORMAT, "%lld of the %lld %s images (%.2g%%) do not decode, more than the %g%% that "
                       "--skip-bad-images skips; the first: %s", (long long)nbad, (long long)n0, name,
                       100.0 * nbad / n0, 100 * MAX_BAD_SHARE, bad[0]);
    for (int64_t i = 0; i < nbad; i++) free(bad[i]);
    free(bad);
    return rc;
}

/* the list of skipped images: list_dir/bad_images.txt (atomically), else one warning each */
static int write_bad_list(const char *list, const char *list_dir, maec_error *err)
{
    if (!list) return 0;
    if (!list_dir) {
        for (const char *p = list; *p;) {
            const char *e = strchr(p, '\n');
            fprintf(stderr, "maec: warning: skipped %.*s\n", (int)(e - p), p);
            p = e + 1;
        }
        return 0;
    }
    char path[2100];
    if (eval_mkdir_p(list_dir))
        return maec_fail(err, MAEC_EIO, "cannot create %s: %s", list_dir, strerror(errno));
    snprintf(path, sizeof path, "%s/bad_images.txt", list_dir);
    atomic_file af;
    if (atomic_open(&af, path, err)) return err->code;
    atomic_write(&af, list, strlen(list));
    if (atomic_commit(&af, err)) return err->code;
    printf("data: the skipped images are listed in %s\n", path);
    return 0;
}

int eval_open_sets(const char *data, const char *eval_path, double val_split, uint64_t seed, int need,
                   int skip, const char *list_dir, maec_dataset **train, maec_dataset **test, maec_error *err)
{
    char *list = NULL;
    size_t len = 0;
    *train = *test = NULL;
    if (eval_path && val_split > 0)
        return maec_fail(err, MAEC_EINVAL, "give --eval-path or --val-split, not both");
    int rc = 0;
    if ((need & 1) || eval_path || val_split > 0) rc = maec_dataset_open(data, "train", train, err);
    if (!rc && skip && *train) rc = skip_bad(*train, "training", &list, &len, err);
    const char *from = "its test split";
    char what[64];
    if (!rc && val_split > 0) { /* held out whichever set is asked for, so train never holds them */
        rc = maec_dataset_hold_out(*train, val_split, seed, test, err);
        snprintf(what, sizeof what, "a seeded %g share held out of the training images", val_split);
        from = what;
    } else if (!rc && (need & 2)) {
        if (eval_path) {
            rc = maec_dataset_open(eval_path, "train", test, err);
            if (!rc) rc = maec_dataset_map_classes(*test, *train, err);
            from = eval_path;
        } else {
            rc = maec_dataset_open(data, "test", test, err);
        }
    }
    if (!rc && skip && *test && (eval_path || val_split <= 0)) rc = skip_bad(*test, "evaluation", &list, &len, err);
    if (list) {
        maec_error e2 = {0};
        int r2 = write_bad_list(list, list_dir, &e2);
        if (!rc && r2) *err = e2, rc = r2;
        free(list);
    }
    if (!rc && *train && *test)
        printf("data: %lld training images from %s; %lld evaluation images from %s\n", (long long)maec_dataset_size(*train),
               data, (long long)maec_dataset_size(*test), from);
    if (!rc && !(need & 1)) {
        maec_dataset_free(*train);
        *train = NULL;
    }
    if (!rc && !(need & 2)) {
        maec_dataset_free(*test);
        *test = NULL;
    }
    if (rc) {
        maec_dataset_free(*train);
        maec_dataset_free(*test);
        *train = *test = NULL;
    }
    return rc;
}

int eval_loader_batch(void *ctx, int64_t epoch, int64_t index, float *images, int *labels, int *n, maec_error *err)
{
    maec_loader *ld = ctx;
    int64_t pos_e, pos_b;
    maec_loader_position(ld, &pos_e, &pos_b);
    if ((pos_e != epoch || pos_b != index) && maec_loader_seek(ld, epoch, index, err)) return err->code;
    return maec_loader_next(ld, images, labels, n, err);
}

int eval_resume_batch(const char *state, int world, int *batch, maec_error *err)
{
    int was = maec_trainer_resumed_processes(state);
    if (was == world) return 0;
    int64_t eff = (int64_t)*batch * was;
    if (eff % world)
        return maec_fail(err, MAEC_EINVAL, "the run took batches of %lld images over %d process%s, which %d "
                         "processes cannot share equally", (long long)eff, was, was == 1 ? "" : "es", world);
    *batch = (int)(eff / world);
    printf("resuming a run of %d process%s as %d: --batch-size %d each keeps its batches of %lld images "
           "(and its learning rate)\n", was, was == 1 ? "" : "es", world, *batch, (long long)eff);
    return 0;
}
