/* An image folder as torchvision's ImageFolder: root/<class>/.../<image>,
 * class folders sorted by name (label = rank), the files of a class in the
 * order of sorted(os.walk(class_dir)) and sorted file names. Images are
 * *.png, *.jpg, *.jpeg (any case), decoded on get. When root has train/ and
 * val/ (or test/), the split picks one. A root without class folders but with
 * images in it is one unlabeled set. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "data/internal.h"
#include "util.h"

#define MAX_DEPTH 32

typedef struct {
    char **v;
    size_t n, cap;
} strlist;

static void strlist_free(strlist *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* takes ownership of s; 0 or -1 (s freed) */
static int strlist_push(strlist *l, char *s)
{
    if (!s) return -1;
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 64;
        char **nv = realloc(l->v, nc * sizeof *nv);
        if (!nv) {
            free(s);
            return -1;
        }
        l->v = nv;
        l->cap = nc;
    }
    l->v[l->n++] = s;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int is_image_name(const char *name)
{
    return ends_with_ci(name, ".png") || ends_with_ci(name, ".jpg") || ends_with_ci(name, ".jpeg");
}

/* entries of dir (not starting with '.'), sorted: subdirectories into dirs
 * (full paths), image files into files (full paths); either may be NULL */
static int list_dir(const char *dir, strlist *dirs, strlist *files, maec_error *err)
{
    DIR *d = opendir(dir);
    if (!d) return maec_fail(err, MAEC_EIO, "cannot open directory %s: %s", dir, strerror(errno));
    size_t d0 = dirs ? dirs->n : 0, f0 = files ? files->n : 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        int want_file = files && is_image_name(e->d_name);
        if (!dirs && !want_file) continue;
        char *p = path_join(dir, e->d_name);
        if (!p) {
            rc = maec_fail(err, MAEC_ENOMEM, "out of memory");
            break;
        }
        if (dirs && is_dir(p)) {
            if (strlist_push(dirs, p)) rc = maec_fail(err, MAEC_ENOMEM, "out of memory");
        } else if (want_file && is_file(p)) {
            if (strlist_push(files, p)) rc = maec_fail(err, MAEC_ENOMEM, "out of memory");
        } else {
            free(p);
        }
        if (rc) break;
    }
    closedir(d);
    if (dirs && dirs->n > d0) qsort(dirs->v + d0, dirs->n - d0, sizeof(char *), cmp_str);
    if (files && files->n > f0) qsort(files->v + f0, files->n - f0, sizeof(char *), cmp_str);
    return rc;
}

/* every directory under top (top included) */
static int walk_dirs(const char *top, int depth, strlist *all, maec_error *err)
{
    char *copy = strdup(top);
    if (strlist_push(all, copy)) return maec_fail(err, MAEC_ENOMEM, "out of memory");
    if (depth >= MAX_DEPTH) return 0;
    strlist subs = {0};
    int rc = list_dir(top, &subs, NULL, err);
    for (size_t i = 0; i < subs.n && !rc; i++) rc = walk_dirs(subs.v[i], depth + 1, all, err);
    strlist_free(&subs);
    return rc;
}

/* the images of one class, in torchvision's order */
static int class_files(const char *class_dir, strlist *files, maec_error *err)
{
    strlist dirs = {0};
    int rc = walk_dirs(class_dir, 0, &dirs, err);
    if (!rc && dirs.n > 1) qsort(dirs.v, dirs.n, sizeof(char *), cmp_str);
    for (size_t i = 0; i < dirs.n && !rc; i++) rc = list_dir(dirs.v[i], NULL, files, err);
    strlist_free(&dirs);
    return rc;
}

/* The folder of a split: root/train for training where it exists (with or
 * without val/ or test/ beside it), else root itself; root/val (else
 * root/test) for evaluation. Evaluating on a root without such a split is
 * refused: its images would be the training images (k-NN on the training
 * set scores itself). *train_dir (may be NULL) gets root/train when the
 * evaluation split has it beside, for mapping class names. */
static int split_dir(const char *root, int test, char **pick, char **train_dir, maec_error *err)
{
    *pick = NULL;
    if (train_dir) *train_dir = NULL;
    char *train = path_join(root, "train"), *val = path_join(root, "val"), *tst = path_join(root, "test");
    int rc = 0;
    if (!train || !val || !tst) {
        rc = maec_fail(err, MAEC_ENOMEM, "out of memory");
    } else if (!test) {
        if (is_dir(train)) *pick = train, train = NULL;
        else *pick = strdup(root);
    } else if (is_dir(val) || is_dir(tst)) {
        if (is_dir(val)) *pick = val, val = NULL;
        else *pick = tst, tst = NULL;
        if (train_dir && is_dir(train)) *train_dir = train, train = NULL;
    } else {
        rc = maec_fail(err, MAEC_EINVAL,
                       "%s has no evaluation split: lay it out as %s/train/<class>/... with %s/val/<class>/... (or "
                       "test/), or give --eval-path DIR or --val-split FRACTION",
                       root, root, root);
    }
    if (!rc && !*pick) rc = maec_fail(err, MAEC_ENOMEM, "out of memory");
    free(train);
    free(val);
    free(tst);
    return rc;
}

int ds_map_labels(maec_dataset *ds, char *const *names, int n, const char *what, maec_error *err)
{
    if (!ds->class_names || !ds->labels) return 0;
    int *map = malloc((size_t)ds->num_classes * sizeof(int));
    if (!map) return maec_fail(err, MAEC_ENOMEM, "out of memory");
    for (int c = 0; c < ds->num_classes; c++) {
        map[c] = -1;
        for (int k = 0; k < n; k++)
            if (!strcmp(ds->class_names[c], names[k])) map[c] = k;
        if (map[c] < 0) {
            int rc = maec_fail(err, MAEC_EFORMAT, "%s: class '%s' is not a class of %s", ds->path,
                               ds->class_names[c], what);
            free(map);
            return rc;
        }
    }
    for (int64_t i = 0; i < ds->n; i++) ds->labels[i] = map[ds->labels[i]];
    char **nn = malloc((size_t)n * sizeof(char *));
    int rc = 0;
    for (int k = 0; nn && k < n; k++)
        if (!(nn[k] = strdup(names[k]))) rc = -1;
    if (!nn || rc) {
        for (int k = 0; nn && k < n; k++) free(nn[k]);
        free(nn);
        free(map);
        return maec_fail(err, MAEC_ENOMEM, "out of memory");
    }
    for (int c = 0; c < ds->num_classes; c++) free(ds->class_names[c]);
    free(ds->class_names);
    ds->class_names = nn;
    ds->num_classes = n;
    free(map);
    return 0;
}

/* the sorted class folder names of dir */
static int class_names_of(const char *dir, strlist *names, maec_error *err)
{
    int rc = list_dir(dir, names, NULL, err);
    size_t bl = strlen(dir) + 1;
    for (size_t c = 0; !rc && c < names->n; c++) memmove(names->v[c], names->v[c] + bl, strlen(names->v[c] + bl) + 1);
    return rc;
}

int ds_open_folder(maec_dataset *ds, const char *root, int test, maec_error *err)
{
    ds->format = "imagefolder";
    char *base = NULL, *train_dir = NULL;
    int src = split_dir(root, test, &base, &train_dir, err);
    if (src) return src;
    strlist classes = {0}, files = {0}, train_classes = {0};
    int *labels = NULL;
    size_t lcap = 0;
    int rc = list_dir(base, &classes, &files, err);
    if (rc) goto done;
    if (classes.n > 0) {
        /* class folders: loose images at the top are ignored, as torchvision */
        strlist_free(&files);
        if (classes.n > (size_t)1 << 24) {
            rc = maec_fail(err, MAEC_EFORMAT, "%s: too many class folders", base);
            goto done;
        }
        for (size_t c = 0; c < classes.n && !rc; c++) {
            size_t before = files.n;
            rc = class_files(classes.v[c], &files, err);
            if (rc) break;
            if (files.n == before) {
                rc = maec_fail(err, MAEC_EFORMAT, "%s: class folder '%s' has no images (*.png, "
                               "*.jpg, *.jpeg)", base, classes.v[c] + strlen(base) + 1);
                break;
            }
            if (files.n > lcap) {
                size_t nc = files.n * 2;
                int *nl = realloc(labels, nc * sizeof(int));
                if (!nl) {
                    rc = maec_fail(err, MAEC_ENOMEM, "out of memory");
                    break;
                }
                labels = nl;
                lcap = nc;
            }
            for (size_t k = before; k < files.n; k++) labels[k] = (int)c;
        }
        if (rc) goto done;
        ds->num_classes = (int)classes.n;
        /* the class folders' own names, in label order */
        size_t bl = strlen(base) + 1;
        for (size_t c = 0; c < classes.n; c++)
            memmove(classes.v[c], classes.v[c] + bl, strlen(classes.v[c] + bl) + 1);
        ds->class_names = classes.v;
        memset(&classes, 0, sizeof classes);
    }
    if (files.n == 0) {
        rc = maec_fail(err, MAEC_EFORMAT, "%s: no images found (want <class>/*.png|*.jpg|*.jpeg)",
                       base);
        goto done;
    }
    if (files.n > (size_t)MAEC_MAX_IMAGES) {
        rc = maec_fail(err, MAEC_EFORMAT, "%s: too many images", base);
        goto done;
    }
    /* the first image that decodes decides the channels and the reported
     * size (a broken one is named when it is read, or dropped by
     * maec_dataset_drop_bad); the first one's error if none of 64 does */
    maec_image first = {0};
    maec_error e0 = {0};
    rc = -1;
    for (size_t i = 0; rc && i < files.n && i < 64; i++) {
        rc = maec_image_decode_file(files.v[i], &first, i ? &e0 : err);
    }
    if (!rc) {
        ds->c = first.c;
        ds->h = first.h;
        ds->w = first.w;
    }
    maec_image_free(&first);
    if (rc) goto done;
    ds->n = (int64_t)files.n;
    ds->files = files.v;
    ds->labels = labels;
    labels = NULL;
    memset(&files, 0, sizeof files);
    /* the evaluation split's labels are the training split's class indices,
     * by name: a class missing here shifts no other label */
    if (train_dir && ds->class_names) {
        rc = class_names_of(train_dir, &train_classes, err);
        if (!rc) rc = ds_map_labels(ds, train_classes.v, (int)train_classes.n, train_dir, err);
    }
done:
    strlist_free(&train_classes);
    free(train_dir);
    strlist_free(&classes);
    strlist_free(&files);
    free(labels);
    free(base);
    return rc;
}
