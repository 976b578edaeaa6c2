/* The data set: format detection, accessors and get. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "data/data.h"
#include "data/internal.h"
#include "util.h"

/* ------------------------------------------------------------------ paths */

char *path_join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *p = malloc(la + lb + 2);
    if (!p) return NULL;
    memcpy(p, a, la);
    size_t k = la;
    if (k == 0 || p[k - 1] != '/') p[k++] = '/';
    memcpy(p + k, b, lb + 1);
    return p;
}

int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

int is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

int ends_with_ci(const char *s, const char *suffix)
{
    size_t ls = strlen(s), lx = strlen(suffix);
    return ls >= lx && strcasecmp(s + ls - lx, suffix) == 0;
}

/* ------------------------------------------------------------------ open */

maec_dataset *ds_new(const char *format, const char *path)
{
    maec_dataset *ds = calloc(1, sizeof *ds);
    if (!ds) return NULL;
    ds->format = format;
    ds->path = strdup(path);
    if (!ds->path) {
        free(ds);
        return NULL;
    }
    return ds;
}

void maec_dataset_free(maec_dataset *ds)
{
    if (!ds) return;
    if (ds->files) {
        for (int64_t i = 0; i < ds->n; i++) free(ds->files[i]);
        free(ds->files);
    }
    if (ds->class_names) {
        for (int k = 0; k < ds->num_classes; k++) free(ds->class_names[k]);
        free(ds->class_names);
    }
    free(ds->blob);
    free(ds->labels);
    free(ds->path);
    free(ds);
}

int maec_dataset_open(const char *path, const char *split, maec_dataset **out,
                      maec_error *err)
{
    *out = NULL;
    if (!path || !*path) return maec_fail(err, MAEC_EINVAL, "no data set path given");
    int test;
    if (!split || !strcmp(split, "train"))
        test = 0;
    else if (!strcmp(split, "test") || !strcmp(split, "val"))
        test = 1;
    else
        return maec_fail(err, MAEC_EINVAL, "unknown data split '%s' (want train or test)", split);
    struct stat st;
    if (stat(path, &st) != 0)
        return maec_fail(err, MAEC_EIO, "cannot open data set %s: %s", path, strerror(errno));
    maec_dataset *ds = ds_new("", path);
    if (!ds) return maec_fail(err, MAEC_ENOMEM, "out of memory");
    int rc;
    if (S_ISREG(st.st_mode)) {
        if (ends_with_ci(path, ".npy")) {
            rc = ds_open_npy(ds, path, err);
        } else if (ends_with_ci(path, ".bin")) {
            rc = ds_open_cifar_file(ds, path, err);
        } else if (ds_is_idx_images_file(path)) {
            char *labels = ds_idx_labels_beside(path);
            rc = ds_open_idx(ds, path, labels, err);
            free(labels);
        } else {
            rc = maec_fail(err, MAEC_EFORMAT, "%s: unknown data set format (want a directory, an "
                           "IDX images file, a CIFAR .bin or a .npy)", path);
        }
    } else if (S_ISDIR(st.st_mode)) {
        char *images = NULL, *labels = NULL, *npy = NULL;
        char name[16];
        snprintf(name, sizeof name, "%s.npy", test ? "test" : "train");
        if (ds_find_idx(path, test ? "test" : "train", &images, &labels)) {
            rc = ds_open_idx(ds, images, labels, err);
        } else if (ds_find_idx(path, test ? "train" : "test", &images, &labels)) {
            rc = maec_fail(err, MAEC_EIO, "%s: no %s-images-idx3-ubyte[.gz] for the %s split",
                           path, test ? "t10k" : "train", test ? "test" : "train");
        } else if (ds_is_cifar_dir(path)) {
            rc = ds_open_cifar_dir(ds, path, test, err);
        } else if ((npy = path_join(path, name)) && is_file(npy)) {
            rc = ds_open_npy(ds, npy, err);
        } else {
            rc = ds_open_folder(ds, path, test, err);
        }
        free(images);
        free(labels);
        free(npy);
    } else {
        rc = maec_fail(err, MAEC_EIO, "%s: not a file or directory", path);
    }
    if (rc) {
        maec_dataset_free(ds);
        return rc;
    }
    *out = ds;
    return 0;
}

/* ------------------------------------------------------------------ accessors */

int64_t maec_dataset_size(const maec_dataset *ds) { return ds ? ds->n : 0; }
int maec_dataset_channels(const maec_dataset *ds) { return ds ? ds->c : 0; }
int maec_dataset_num_classes(const maec_dataset *ds) { return ds ? ds->num_classes : 0; }
const char *maec_dataset_class_name(const maec_dataset *ds, int k)
{
    return ds && ds->class_names && k >= 0 && k < ds->num_classes ? ds->class_names[k] : NULL;
}
const char *maec_dataset_format(const maec_dataset *ds) { return ds ? ds->format : ""; }

int maec_dataset_label(const maec_dataset *ds, int64_t i)
{
    if (!ds || !ds->labels || i < 0 || i >= ds->n) return -1;
    return ds->labels[i];
}

int maec_dataset_native_size(const maec_dataset *ds, int *h, int *w)
{
    if (!ds || ds->h <= 0 || ds->w <= 0) return MAEC_ESHAPE;
    if (h) *h = ds->h;
    if (w) *w = ds->w;
    return 0;
}

/* convert img in place to c channels (1 <-> 3) */
static int convert_channels(maec_image *img, int c, maec_error *err)
{
    if (img->c == c) return 0;
    size_t plane = (size_t)img->h * img->w;
    if (img->c == 1 && c == 3) {
        int rc = maec_image_resize_buffer(img, 3, img->h, img->w, err);
        if (rc) return rc;
        memcpy(img->data + plane, img->data, plane * sizeof(float));
        memcpy(img->data + 2 * plane, img->data, plane * sizeof(float));
        return 0;
    }
    if (img->c == 3 && c == 1) {
        float *d = img->data;
        for (size_t k = 0; k < plane; k++)
            d[k] = 0.299f * d[k] + 0.587f * d[plane + k] + 0.114f * d[2 * plane + k];
        img->c = 1;
        return 0;
    }
    return maec_fail(err, MAEC_ESHAPE, "cannot convert %d channels to %d", img->c, c);
}

int maec_dataset_get(maec_dataset *ds, int64_t i, maec_image *img, maec_error *err)
{
    if (!ds || !img) return maec_fail(err, MAEC_EINVAL, "maec_dataset_get: no data set or image");
    if (i < 0 || i >= ds->n)
        return maec_fail(err, MAEC_EINVAL, "%s: image %lld out of range (%lld images)", ds->path,
                         (long long)i, (long long)ds->n);
    if (ds->files) {
        int rc = maec_image_decode_file(ds->files[i], img, err);
        if (!rc) rc = convert_channels(img, ds->c, err);
        return rc;
    }
    int rc = maec_image_resize_buffer(img, ds->c, ds->h, ds->w, err);
    if (rc) return rc;
    size_t plane = (size_t)ds->h * ds->w, per = plane * ds->c;
    float *d = img->data;
    if (ds->u8) {
        const uint8_t *s = ds->u8 + (size_t)i * per;
        if (ds->hwc) {
            for (size_t k = 0; k < plane; k++)
                for (int c = 0; c < ds->c; c++) d[c * plane + k] = (float)s[k * ds->c + c] / 255.0f;
        } else {
            for (size_t k = 0; k < per; k++) d[k] = (float)s[k] / 255.0f;
        }
    } else {
        const float *s = ds->f32 + (size_t)i * per;
        if (ds->hwc) {
            for (size_t k = 0; k < plane; k++)
                for (int c = 0; c < ds->c; c++) d[c * plane + k] = s[k * ds->c + c];
        } else {
            memcpy(d, s, per * sizeof(float));
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ evaluation sets */

int maec_dataset_map_classes(maec_dataset *eval, const maec_dataset *train, maec_error *err)
{
    if (!eval->labels || eval->num_classes == 0) return 0;
    if (eval->class_names && train->class_names)
        return ds_map_labels(eval, train->class_names, train->num_classes, train->path, err);
    if (eval->num_classes > train->num_classes)
        return maec_fail(err, MAEC_EFORMAT, "%s has %d classes, the training set %s %d", eval->path, eval->num_classes,
                         train->path, train->num_classes);
    return 0;
}

int maec_dataset_hold_out(maec_dataset *ds, double frac, uint64_t seed, maec_dataset **held, maec_error *err)
{
    *held = NULL;
    if (!ds->files)
        return maec_fail(err, MAEC_EINVAL, "%s: a held-out share is taken from image folders; this %s data set has a "
                         "test split of its own", ds->path, ds->format);
    int64_t n = ds->n, k = (int64_t)(frac * (double)n + 0.5);
    if (!(frac > 0 && frac < 1) || k < 1 || k >= n)
        return maec_fail(err, MAEC_EINVAL, "%s: a held-out share of %g of %lld images leaves no training or no "
                         "evaluation image", ds->path, frac, (long long)n);
    int64_t *perm = malloc((size_t)n * sizeof *perm);
    char *mark = calloc((size_t)n, 1);
    maec_dataset *h = ds_new(ds->format, ds->path);
    char **hf = malloc((size_t)k * sizeof *hf), **tf = malloc((size_t)(n - k) * sizeof *tf);
    int *hl = ds->labels ? malloc((size_t)k * sizeof *hl) : NULL, *tl = ds->labels ? malloc((size_t)(n - k) * sizeof *tl) : NULL;
    char **names = ds->class_names ? calloc((size_t)ds->num_classes, sizeof *names) : NULL;
    int rc = !perm || !mark || !h || !hf || !tf || (ds->labels && (!hl || !tl)) || (ds->class_names && !names);
    for (int c = 0; !rc && names && c < ds->num_classes; c++) rc = !(names[c] = strdup(ds->class_names[c]));
    if (rc) {
        if (names)
            for (int c = 0; c < ds->num_classes; c++) free(names[c]);
        free(perm), free(mark), free(hf), free(tf), free(hl), free(tl), free(names);
        maec_dataset_free(h);
        return maec_fail(err, MAEC_ENOMEM, "out of memory");
    }
    /* the first k of a seeded permutation are held out; both keep file order */
    uint64_t rng = rng_derive(seed, 0x76616c, (uint64_t)n, 0);
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(rng_next(&rng) % (uint64_t)(i + 1)), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (int64_t i = 0; i < k; i++) mark[perm[i]] = 1;
    int64_t a = 0, b = 0;
    for (int64_t i = 0; i < n; i++) {
        if (mark[i]) {
            if (hl) hl[a] = ds->labels[i];
            hf[a++] = ds->files[i];
        } else {
            if (tl) tl[b] = ds->labels[i];
            tf[b++] = ds->files[i];
        }
    }
    h->n = k, h->c = ds->c, h->h = ds->h, h->w = ds->w;
    h->num_classes = ds->num_classes, h->labels = hl, h->class_names = names, h->files = hf;
    free(ds->files), free(ds->labels);
    ds->files = tf, ds->labels = tl, ds->n = n - k;
    free(perm), free(mark);
    *held = h;
    return 0;
}

int maec_dataset_drop_bad(maec_dataset *ds, char ***bad_out, int64_t *nbad_out, maec_error *err)
{
    *bad_out = NULL;
    *nbad_out = 0;
    if (!ds->files) return 0; /* decoded already: nothing to find */
    int64_t n = ds->n;
    char **why = calloc((size_t)n, sizeof *why);
    if (!why) return maec_fail(err, MAEC_ENOMEM, "out of memory");
    int oom = 0;
#pragma omp parallel
    {
        maec_image img = {0};
#pragma omp for schedule(dynamic, 16)
        for (int64_t i = 0; i < n; i++) {
            maec_error e = {0};
            if (maec_dataset_get(ds, i, &img, &e)) {
                why[i] = strdup(e.msg[0] ? e.msg : ds->files[i]);
                if (!why[i]) oom = 1;
            }
        }
        maec_image_free(&img);
    }
    int64_t nbad = 0;
    for (int64_t i = 0; i < n; i++) nbad += why[i] != NULL;
    char **bad = nbad ? malloc((size_t)nbad * sizeof *bad) : NULL;
    if (oom || (nbad && !bad) || nbad == n) {
        for (int64_t i = 0; i < n; i++) free(why[i]);
        free(why);
        free(bad);
        if (nbad == n && !oom) return maec_fail(err, MAEC_EFORMAT, "%s: none of its %lld images decodes", ds->path, (long long)n);
        return maec_fail(err, MAEC_ENOMEM, "out of memory");
    }
    /* the good ones keep their order (and so the data order of a seed) */
    int64_t k = 0, b = 0;
    for (int64_t i = 0; i < n; i++) {
        if (why[i]) {
            bad[b++] = why[i];
            free(ds->files[i]);
            continue;
        }
        ds->files[k] = ds->files[i];
        if (ds->labels) ds->labels[k] = ds->labels[i];
        k++;
    }
    ds->n = k;
    free(why);
    *bad_out = bad;
    *nbad_out = nbad;
    return 0;
}
