/* CIFAR-10 / CIFAR-100 binary versions.
 *
 * CIFAR-10:  data_batch_1..5.bin, test_batch.bin; records of 1 label byte +
 *            3072 bytes (3 planes of 32x32, R, G, B)
 * CIFAR-100: train.bin, test.bin; records of coarse label, fine label +
 *            3072 bytes; the fine label (0..99) is used */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/internal.h"
#include "util.h"

#define CIFAR_PIXELS 3072
#define CIFAR_MAX_FILES 5

typedef struct {
    int hundred;   /* 0: CIFAR-10, 1: CIFAR-100 */
    int nfiles;
    char *files[CIFAR_MAX_FILES];
} cifar_set;

static size_t record_size(int hundred) { return CIFAR_PIXELS + (hundred ? 2 : 1); }

static void cifar_set_free(cifar_set *s)
{
    for (int i = 0; i < s->nfiles; i++) free(s->files[i]);
    s->nfiles = 0;
}

/* number of records of one file, checking its size */
static int count_records(const char *path, int hundred, size_t *n, maec_error *err)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return maec_fail(err, MAEC_EIO, "cannot open %s: %s", path, strerror(errno));
    size_t rec = record_size(hundred);
    if (st.st_size <= 0 || (uint64_t)st.st_size % rec != 0)
        return maec_fail(err, MAEC_EFORMAT, "%s: size %lld bytes is not a positive multiple of the "
                         "%s record size %zu", path, (long long)st.st_size,
                         hundred ? "CIFAR-100" : "CIFAR-10", rec);
    *n = (size_t)((uint64_t)st.st_size / rec);
    return 0;
}

/* n names, one a line (a trailing newline, spaces and '\r' dropped), from
 * the file name in the folder of path; NULL unless exactly n non-empty lines */
static char **read_names_beside(const char *path, const char *name, int n)
{
    const char *slash = strrchr(path, '/');
    size_t dl = slash ? (size_t)(slash - path) : 1;
    char *p = malloc(dl + strlen(name) + 2);
    if (!p) return NULL;
    snprintf(p, dl + strlen(name) + 2, "%.*s/%s", (int)dl, slash ? path : ".", name);
    FILE *f = fopen(p, "r");
    free(p);
    if (!f) return NULL;
    char **v = calloc((size_t)n, sizeof *v), line[256];
    int k = 0, ok = v != NULL;
    while (ok && fgets(line, sizeof line, f)) {
        size_t l = strlen(line);
        while (l > 0 && (line[l - 1] == '\n' || line[l - 1] == '\r' || line[l - 1] == ' ')) line[--l] = 0;
        if (l == 0) continue;
        ok = k < n && (v[k] = strdup(line)) != NULL;
        k++;
    }
    fclose(f);
    if (ok && k == n) return v;
    for (int i = 0; v && i < n; i++) free(v[i]);
    free(v);
    return NULL;
}

static int load_records(maec_dataset *ds, const cifar_set *s, maec_error *err)
{
    size_t counts[CIFAR_MAX_FILES], total = 0;
    for (int f = 0; f < s->nfiles; f++) {
        int rc = count_records(s->files[f], s->hundred, &counts[f], err);
        if (rc) return rc;
        if (!size_add(total, counts[f], &total) || total > (size_t)MAEC_MAX_IMAGES)
            return maec_fail(err, MAEC_EFORMAT, "%s: too many records", s->files[f]);
    }
    size_t bytes;
    if (!size_mul(total, CIFAR_PIXELS, &bytes))
        return maec_fail(err, MAEC_EFORMAT, "%s: too many records", s->files[0]);
    unsigned char *pix = malloc(bytes);
    int *labels = malloc(total * sizeof(int));
    size_t rec = record_size(s->hundred);
    unsigned char *buf = malloc(rec);
    if (!pix || !labels || !buf) {
        free(pix);
        free(labels);
        free(buf);
        return maec_fail(err, MAEC_ENOMEM, "%s: out of memory for %zu images", s->files[0], total);
    }
    size_t k = 0;
    int rc = 0;
    int nclass = s->hundred ? 100 : 10;
    for (int f = 0; f < s->nfiles && !rc; f++) {
        FILE *fp = fopen(s->files[f], "rb");
        if (!fp) {
            rc = maec_fail(err, MAEC_EIO, "cannot open %s: %s", s->files[f], strerror(errno));
            break;
        }
        for (size_t r = 0; r < counts[f]; r++, k++) {
            if (fread(buf, 1, rec, fp) != rec) {
                rc = maec_fail(err, MAEC_EIO, "%s: read error at record %zu", s->files[f], r);
                break;
            }
            int label = s->hundred ? buf[1] : buf[0];
            if (label >= nclass || (s->hundred && buf[0] >= 20)) {
                rc = maec_fail(err, MAEC_EFORMAT, "%s: record %zu has label %d (want < %d)",
                               s->files[f], r, label, nclass);
                break;
            }
            labels[k] = label;
            memcpy(pix + k * CIFAR_PIXELS, buf + rec - CIFAR_PIXELS, CIFAR_PIXELS);
        }
        fclose(fp);
    }
    free(buf);
    if (rc) {
        free(pix);
        free(labels);
        return rc;
    }
    /* the class names: CIFAR-10's ten, as batches.meta.txt of its binary
     * release gives them; CIFAR-100's from fine_label_names.txt beside the
     * data when it is there. Names are an extra: without them (or memory
     * for them) the data set still loads. */
    if (!s->hundred) {
        static const char *const names[10] = {"airplane", "automobile", "bird", "cat", "deer",
                                              "dog", "frog", "horse", "ship", "truck"};
        ds->class_names = calloc(10, sizeof(char *));
        for (int c = 0; ds->class_names && c < 10; c++) ds->class_names[c] = strdup(names[c]);
    } else {
        ds->class_names = read_names_beside(s->files[0], "fine_label_names.txt", 100);
    }
    ds->format = s->hundred ? "cifar100" : "cifar10";
    ds->blob = pix;
    ds->u8 = pix;
    ds->labels = labels;
    ds->num_classes = nclass;
    ds->n = (int64_t)total;
    ds->c = 3;
    ds->h = 32;
    ds->w = 32;
    return 0;
}

static int has(const char *dir, const char *name)
{
    char *p = path_join(dir, name);
    int ok = p && is_file(p);
    free(p);
    return ok;
}

static const char *const CIFAR_SUBDIRS[] = {"cifar-10-batches-bin", "cifar-100-binary"};

int ds_is_cifar_dir(const char *dir)
{
    for (int i = 0; i < 2; i++) {
        char *p = path_join(dir, CIFAR_SUBDIRS[i]);
        int ok = p && is_dir(p);
        free(p);
        if (ok) return 1;
    }
    return has(dir, "data_batch_1.bin") || has(dir, "test_batch.bin") || has(dir, "train.bin") ||
           has(dir, "test.bin");
}

static int add_file(cifar_set *s, const char *dir, const char *name, maec_error *err)
{
    char *p = path_join(dir, name);
    if (!p) return maec_fail(err, MAEC_ENOMEM, "out of memory");
    s->files[s->nfiles++] = p;
    return 0;
}

int ds_open_cifar_dir(maec_dataset *ds, const char *dir, int test, maec_error *err)
{
    char *sub = NULL;
    for (int i = 0; i < 2 && !sub; i++) {
        sub = path_join(dir, CIFAR_SUBDIRS[i]);
        if (sub && !is_dir(sub)) {
            free(sub);
            sub = NULL;
        }
    }
    const char *d = sub ? sub : dir;
    cifar_set s = {0};
    int rc = 0;
    if (has(d, "data_batch_1.bin") || has(d, "test_batch.bin")) {
        s.hundred = 0;
        if (test) {
            rc = add_file(&s, d, "test_batch.bin", err);
        } else {
            char name[32];
            for (int i = 1; i <= 5 && !rc; i++) {
                snprintf(name, sizeof name, "data_batch_%d.bin", i);
                if (has(d, name)) rc = add_file(&s, d, name, err);
            }
            if (!rc && s.nfiles == 0)
                rc = maec_fail(err, MAEC_EIO, "%s: no CIFAR-10 training batches (data_batch_1.bin "
                               "...)", d);
        }
    } else {
        s.hundred = 1;
        rc = add_file(&s, d, test ? "test.bin" : "train.bin", err);
    }
    if (!rc) rc = load_records(ds, &s, err);
    cifar_set_free(&s);
    free(sub);
    return rc;
}

int ds_open_cifar_file(maec_dataset *ds, const char *file, maec_error *err)
{
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    cifar_set s = {0};
    if (!strncmp(base, "data_batch", 10) || !strcmp(base, "test_batch.bin")) {
        s.hundred = 0;
    } else if (!strcmp(base, "train.bin") || !strcmp(base, "test.bin")) {
        s.hundred = 1;
    } else {
        struct stat st;
        if (stat(file, &st) != 0)
            return maec_fail(err, MAEC_EIO, "cannot open %s: %s", file, strerror(errno));
        uint64_t sz = (uint64_t)st.st_size;
        int ten = sz > 0 && sz % record_size(0) == 0, hundred = sz > 0 && sz % record_size(1) == 0;
        if (ten == hundred)
            return maec_fail(err, MAEC_EFORMAT, "%s: cannot tell CIFAR-10 from CIFAR-100 by its size "
                             "(%llu bytes; name it data_batch_N.bin or train.bin)", file,
                             (unsigned long long)sz);
        s.hundred = hundred;
    }
    s.files[0] = strdup(file);
    if (!s.files[0]) return maec_fail(err, MAEC_ENOMEM, "out of memory");
    s.nfiles = 1;
    int rc = load_records(ds, &s, err);
    cifar_set_free(&s);
    return rc;
}
