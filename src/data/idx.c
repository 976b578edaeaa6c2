/* MNIST / Fashion-MNIST IDX files, raw or gzip'd (zlib reads both).
 *
 * images: magic 0x00000803, count, rows, cols (big-endian u32), then bytes
 * labels: magic 0x00000801, count, then one byte per image */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "data/internal.h"
#include "util.h"

#define IDX_IMAGES_MAGIC 0x00000803u
#define IDX_LABELS_MAGIC 0x00000801u

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Read exactly n bytes (growing the buffer only as data arrives, so a header
 * that lies about the size cannot make us allocate for data that is not
 * there). *got: bytes read; *more: 1 if the file has bytes beyond n. */
static int gz_read_body(gzFile gz, const char *path, size_t n, unsigned char **out, size_t *got,
                        int *more, maec_error *err)
{
    size_t cap = n < ((size_t)1 << 20) ? n : ((size_t)1 << 20), len = 0;
    unsigned char *buf = malloc(cap ? cap : 1);
    if (!buf) return maec_fail(err, MAEC_ENOMEM, "%s: out of memory", path);
    while (len < n) {
        if (len == cap) {
            size_t ncap = cap > n / 2 ? n : cap * 2;
            unsigned char *nb = realloc(buf, ncap);
            if (!nb) {
                free(buf);
                return maec_fail(err, MAEC_ENOMEM, "%s: out of memory (%zu bytes)", path, ncap);
            }
            buf = nb;
            cap = ncap;
        }
        size_t want = cap - len;
        if (want > ((size_t)1 << 30)) want = (size_t)1 << 30;
        int r = gzread(gz, buf + len, (unsigned)want);
        if (r < 0) {
            int e;
            const char *m = gzerror(gz, &e);
            free(buf);
            return maec_fail(err, MAEC_EFORMAT, "%s: read error: %s", path, m ? m : "?");
        }
        if (r == 0) break;
        len += (size_t)r;
    }
    unsigned char extra;
    *more = len == n && gzread(gz, &extra, 1) == 1;
    int e = Z_OK;
    const char *m = gzerror(gz, &e);
    if (e != Z_OK && e != Z_STREAM_END) {
        free(buf);
        return maec_fail(err, MAEC_EFORMAT, "%s: corrupt or truncated file (%s)", path, m ? m : "?");
    }
    *out = buf;
    *got = len;
    return 0;
}

static int gz_read_header(gzFile gz, const char *path, unsigned char *hdr, int n, maec_error *err)
{
    int r = gzread(gz, hdr, (unsigned)n);
    if (r != n)
        return maec_fail(err, MAEC_EFORMAT, "%s: truncated IDX header (%d of %d bytes)", path,
                         r < 0 ? 0 : r, n);
    return 0;
}

int ds_is_idx_images_file(const char *path)
{
    gzFile gz = gzopen(path, "rb");
    if (!gz) return 0;
    unsigned char h[4];
    int ok = gzread(gz, h, 4) == 4 && be32(h) == IDX_IMAGES_MAGIC;
    gzclose(gz);
    return ok;
}

static int read_idx_images(maec_dataset *ds, const char *path, maec_error *err)
{
    gzFile gz = gzopen(path, "rb");
    if (!gz) return maec_fail(err, MAEC_EIO, "cannot open %s", path);
    unsigned char h[16];
    int rc = gz_read_header(gz, path, h, 16, err);
    if (rc) goto done;
    uint32_t magic = be32(h), n = be32(h + 4), rows = be32(h + 8), cols = be32(h + 12);
    if (magic != IDX_IMAGES_MAGIC) {
        rc = maec_fail(err, MAEC_EFORMAT, "%s: not an IDX images file (magic 0x%08x, want "
                       "0x00000803)", path, magic);
        goto done;
    }
    if (n == 0 || (int64_t)n > MAEC_MAX_IMAGES || rows == 0 || cols == 0 ||
        rows > MAEC_MAX_SIDE || cols > MAEC_MAX_SIDE || (uint64_t)rows * cols > MAEC_MAX_PIXELS) {
        rc = maec_fail(err, MAEC_EFORMAT, "%s: bad IDX header (%u images of %ux%u)", path, n, rows,
                       cols);
        goto done;
    }
    size_t body;
    if (!size_mul((size_t)n, (size_t)rows * cols, &body)) {
        rc = maec_fail(err, MAEC_EFORMAT, "%s: IDX size overflows (%u images of %ux%u)", path, n,
                       rows, cols);
        goto done;
    }
    unsigned char *buf;
    size_t got;
    int more;
    rc = gz_read_body(gz, path, body, &buf, &got, &more, err);
    if (rc) goto done;
    if (got != body || more) {
        free(buf);
        rc = maec_fail(err, MAEC_EFORMAT, "%s: %s: %zu data bytes for %u images of %ux%u (want %zu)",
                       path, got < body ? "truncated" : "trailing data", got, n, rows, cols, body);
        goto done;
    }
    ds->blob = buf;
    ds->u8 = buf;
    ds->n = n;
    ds->c = 1;
    ds->h = (int)rows;
    ds->w = (int)cols;
done:
    gzclose(gz);
    return rc;
}

static int read_idx_labels(maec_dataset *ds, const char *path, maec_error *err)
{
    gzFile gz = gzopen(path, "rb");
    if (!gz) return maec_fail(err, MAEC_EIO, "cannot open %s", path);
    unsigned char h[8];
    int rc = gz_read_header(gz, path, h, 8, err);
    if (rc) goto done;
    uint32_t magic = be32(h), n = be32(h + 4);
    if (magic != IDX_LABELS_MAGIC) {
        rc = maec_fail(err, MAEC_EFORMAT, "%s: not an IDX labels file (magic 0x%08x, want "
                       "0x00000801)", path, magic);
        goto done;
    }
    if ((int64_t)n != ds->n) {
        rc = maec_fail(err, MAEC_EFORMAT, "%s: %u labels for %lld images", path, n,
                       (long long)ds->n);
        goto done;
    }
    unsigned char *buf;
    size_t got;
    int more;
    rc = gz_read_body(gz, path, n, &buf, &got, &more, err);
    if (rc) goto done;
    if (got != n || more) {
        free(buf);
        rc = maec_fail(err, MAEC_EFORMAT, "%s: %s: %zu label bytes (want %u)", path,
                       got < n ? "truncated" : "trailing data", got, n);
        goto done;
    }
    ds->labels = malloc((size_t)n * sizeof(int));
    if (!ds->labels) {
        free(buf);
        rc = maec_fail(err, MAEC_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    int maxl = 0;
    for (uint32_t i = 0; i < n; i++) {
        ds->labels[i] = buf[i];
        if (buf[i] > maxl) maxl = buf[i];
    }
    ds->num_classes = maxl + 1;
    free(buf);
done:
    gzclose(gz);
    return rc;
}

int ds_open_idx(maec_dataset *ds, const char *images, const char *labels, maec_error *err)
{
    ds->format = "idx";
    int rc = read_idx_images(ds, images, err);
    if (!rc && labels) rc = read_idx_labels(ds, labels, err);
    return rc;
}

static char *first_existing(const char *dir, const char *prefix, const char *kind)
{
    static const char *const forms[] = {"%s-%s-idx%c-ubyte", "%s-%s-idx%c-ubyte.gz",
                                        "%s-%s.idx%c-ubyte", "%s-%s.idx%c-ubyte.gz"};
    char name[64];
    for (int k = 0; k < 4; k++) {
        snprintf(name, sizeof name, forms[k], prefix, kind, kind[0] == 'i' ? '3' : '1');
        char *p = path_join(dir, name);
        if (p && is_file(p)) return p;
        free(p);
    }
    return NULL;
}

int ds_find_idx(const char *dir, const char *split, char **images, char **labels)
{
    const char *prefix = strcmp(split, "test") ? "train" : "t10k";
    *images = first_existing(dir, prefix, "images");
    *labels = *images ? first_existing(dir, prefix, "labels") : NULL;
    return *images != NULL;
}

char *ds_idx_labels_beside(const char *images)
{
    const char *base = strrchr(images, '/');
    base = base ? base + 1 : images;
    const char *pats[2][2] = {{"images-idx3", "labels-idx1"}, {"images.idx3", "labels.idx1"}};
    for (int k = 0; k < 2; k++) {
        const char *at = strstr(base, pats[k][0]);
        if (!at) continue;
        size_t len = strlen(images), pre = (size_t)(at - images);
        char *p = malloc(len + 4);
        if (!p) return NULL;
        memcpy(p, images, len + 1);
        memcpy(p + pre, pats[k][1], strlen(pats[k][1]));
        if (is_file(p)) return p;
        /* the same with or without .gz */
        if (ends_with_ci(p, ".gz"))
            p[len - 3] = 0;
        else
            strcat(p, ".gz");
        if (is_file(p)) return p;
        free(p);
    }
    return NULL;
}
