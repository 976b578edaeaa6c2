/* A data set in a .npy file: [N,H,W], [N,C,H,W] or [N,H,W,C] with C 1 or 3;
 * uint8 (or another integer type holding 0..255) or float in [0, 1]. Labels
 * in "<name>_labels.npy" beside it, when that file exists. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/internal.h"
#include "io/npy.h"
#include "util.h"

#define MAX_CLASSES (1 << 24)

static int is_c(int64_t v) { return v == 1 || v == 3; }

static int load_labels(maec_dataset *ds, const char *file, maec_error *err)
{
    size_t len = strlen(file);
    char *lp = malloc(len + 16);
    if (!lp) return maec_fail(err, MAEC_ENOMEM, "out of memory");
    memcpy(lp, file, len - 4);
    strcpy(lp + len - 4, "_labels.npy");
    if (!is_file(lp)) {
        free(lp);
        return 0; /* labels are optional */
    }
    npy_array a;
    int rc = npy_load(lp, &a, err);
    if (rc) {
        free(lp);
        return rc;
    }
    if (!(a.ndim == 1 || (a.ndim == 2 && a.shape[1] == 1)) || a.shape[0] != ds->n) {
        rc = maec_fail(err, MAEC_ESHAPE, "%s: labels must have shape [%lld] (one per image)", lp,
                       (long long)ds->n);
        goto done;
    }
    ds->labels = malloc((size_t)ds->n * sizeof(int));
    if (!ds->labels) {
        rc = maec_fail(err, MAEC_ENOMEM, "%s: out of memory", lp);
        goto done;
    }
    int maxl = 0;
    for (int64_t i = 0; i < ds->n; i++) {
        float v = a.data[i];
        if (v < 0 || v >= MAX_CLASSES || v != floorf(v)) {
            rc = maec_fail(err, MAEC_EFORMAT, "%s: label %lld is %g (want an integer 0..%d)", lp,
                           (long long)i, (double)v, MAX_CLASSES - 1);
            free(ds->labels);
            ds->labels = NULL;
            goto done;
        }
        ds->labels[i] = (int)v;
        if (ds->labels[i] > maxl) maxl = ds->labels[i];
    }
    ds->num_classes = maxl + 1;
done:
    npy_free(&a);
    free(lp);
    return rc;
}

int ds_open_npy(maec_dataset *ds, const char *file, maec_error *err)
{
    ds->format = "npy";
    npy_array a;
    int rc = npy_load(file, &a, err);
    if (rc) return rc;
    const int64_t *s = a.shape;
    int64_t n = 0, c = 0, h = 0, w = 0;
    int hwc = 0;
    if (a.ndim == 3) {
        n = s[0], c = 1, h = s[1], w = s[2];
    } else if (a.ndim == 4 && is_c(s[3]) && !is_c(s[1])) {
        n = s[0], h = s[1], w = s[2], c = s[3], hwc = 1;
    } else if (a.ndim == 4 && is_c(s[1])) {
        n = s[0], c = s[1], h = s[2], w = s[3];
    } else {
        char shape[160] = "";
        size_t k = 0;
        for (int i = 0; i < a.ndim && k < sizeof shape - 24; i++)
            k += (size_t)snprintf(shape + k, sizeof shape - k, "%s%lld", i ? ", " : "",
                                  (long long)s[i]);
        rc = maec_fail(err, MAEC_ESHAPE, "%s: shape (%s) is not [N,H,W], [N,C,H,W] or [N,H,W,C] "
                       "with C = 1 or 3", file, shape);
        goto fail;
    }
    if (n < 1 || n > MAEC_MAX_IMAGES || h < 1 || w < 1 || h > MAEC_MAX_SIDE ||
        w > MAEC_MAX_SIDE || (uint64_t)(h * w) > MAEC_MAX_PIXELS) {
        rc = maec_fail(err, MAEC_ESHAPE, "%s: bad image count or size (%lld images of %lldx%lld)",
                       file, (long long)n, (long long)h, (long long)w);
        goto fail;
    }
    ds->n = n;
    ds->c = (int)c;
    ds->h = (int)h;
    ds->w = (int)w;
    ds->hwc = hwc;
    if (!strcmp(a.dtype, "<f4") || !strcmp(a.dtype, "<f8")) {
        float lo = 0, hi = 0;
        for (size_t i = 0; i < a.count; i++) {
            if (a.data[i] < lo) lo = a.data[i];
            if (a.data[i] > hi) hi = a.data[i];
        }
        if (lo < -0.01f || hi > 1.01f) {
            rc = maec_fail(err, MAEC_EFORMAT, "%s: float pixels must be in [0, 1] (found %g .. %g)",
                           file, (double)lo, (double)hi);
            goto fail;
        }
        ds->blob = a.data; /* maec_alloc'd: plain free() is right (posix_memalign) */
        ds->f32 = a.data;
        return load_labels(ds, file, err);
    }
    if (!strcmp(a.dtype, "|b1")) {
        rc = maec_fail(err, MAEC_EFORMAT, "%s: boolean images are not supported", file);
        goto fail;
    }
    /* integer types: uint8 values */
    unsigned char *u = malloc(a.count);
    if (!u) {
        rc = maec_fail(err, MAEC_ENOMEM, "%s: out of memory", file);
        goto fail;
    }
    for (size_t i = 0; i < a.count; i++) {
        float v = a.data[i];
        if (v < 0 || v > 255 || v != floorf(v)) {
            free(u);
            rc = maec_fail(err, MAEC_EFORMAT, "%s: integer pixels must be 0..255 (value %g at %zu)",
                           file, (double)v, i);
            goto fail;
        }
        u[i] = (unsigned char)v;
    }
    npy_free(&a);
    ds->blob = u;
    ds->u8 = u;
    return load_labels(ds, file, err);
fail:
    npy_free(&a);
    return rc;
}
