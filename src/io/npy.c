#define _POSIX_C_SOURCE 200809L
#include "npy.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../util.h"

#define NPY_MAX_FILE ((size_t)1 << 40)

/* Find 'key': in the header dict and return a pointer just past the colon. */
static const char *dict_value(const char *hdr, const char *key)
{
    char pat[32];
    snprintf(pat, sizeof pat, "'%s'", key);
    const char *p = strstr(hdr, pat);
    if (!p) return NULL;
    p += strlen(pat);
    while (*p == ' ') p++;
    if (*p != ':') return NULL;
    p++;
    while (*p == ' ') p++;
    return p;
}

static int parse_header(const char *hdr, npy_array *a, int *fortran, const char *path,
                        maec_error *err)
{
    const char *d = dict_value(hdr, "descr");
    if (!d || *d != '\'') return maec_fail(err, MAEC_EFORMAT, "%s: .npy header has no descr", path);
    d++;
    const char *e = strchr(d, '\'');
    if (!e || e - d >= (long)sizeof a->dtype || e == d)
        return maec_fail(err, MAEC_EFORMAT, "%s: bad .npy descr", path);
    memcpy(a->dtype, d, (size_t)(e - d));
    a->dtype[e - d] = 0;

    const char *f = dict_value(hdr, "fortran_order");
    if (!f) return maec_fail(err, MAEC_EFORMAT, "%s: .npy header has no fortran_order", path);
    *fortran = strncmp(f, "True", 4) == 0;

    const char *s = dict_value(hdr, "shape");
    if (!s || *s != '(') return maec_fail(err, MAEC_EFORMAT, "%s: .npy header has no shape", path);
    s++;
    a->ndim = 0;
    a->count = 1;
    for (;;) {
        while (*s == ' ' || *s == ',') s++;
        if (*s == ')') break;
        if (*s < '0' || *s > '9') return maec_fail(err, MAEC_EFORMAT, "%s: bad .npy shape", path);
        if (a->ndim == NPY_MAX_DIMS)
            return maec_fail(err, MAEC_EFORMAT, "%s: more than %d dimensions", path, NPY_MAX_DIMS);
        char *end;
        unsigned long long v = strtoull(s, &end, 10);
        if (end == s || v > ((uint64_t)1 << 40))
            return maec_fail(err, MAEC_EFORMAT, "%s: bad .npy shape", path);
        a->shape[a->ndim++] = (int64_t)v;
        if (!size_mul(a->count, (size_t)v, &a->count))
            return maec_fail(err, MAEC_EFORMAT, "%s: .npy shape overflows", path);
        s = end;
    }
    return 0;
}

static int dtype_size(const char *dt)
{
    if (!strcmp(dt, "<f4") || !strcmp(dt, "<i4")) return 4;
    if (!strcmp(dt, "<f8") || !strcmp(dt, "<i8")) return 8;
    if (!strcmp(dt, "<i2")) return 2;
    if (!strcmp(dt, "|u1") || !strcmp(dt, "|i1") || !strcmp(dt, "|b1")) return 1;
    return 0;
}

static float convert_one(const char *dt, const unsigned char *p)
{
    if (!strcmp(dt, "<f4")) { float v; memcpy(&v, p, 4); return v; }
    if (!strcmp(dt, "<f8")) { double v; memcpy(&v, p, 8); return (float)v; }
    if (!strcmp(dt, "<i4")) { int32_t v; memcpy(&v, p, 4); return (float)v; }
    if (!strcmp(dt, "<i8")) { int64_t v; memcpy(&v, p, 8); return (float)v; }
    if (!strcmp(dt, "<i2")) { int16_t v; memcpy(&v, p, 2); return (float)v; }
    if (!strcmp(dt, "|i1")) return (float)(int8_t)p[0];
    return (float)p[0];
}

int npy_load(const char *path, npy_array *a, maec_error *err)
{
    memset(a, 0, sizeof *a);
    char *buf;
    size_t len;
    int rc = read_file(path, &buf, &len, NPY_MAX_FILE, err);
    if (rc) return rc;
    const unsigned char *u = (const unsigned char *)buf;
    if (len < 10 || memcmp(buf, "\x93NUMPY", 6) != 0) {
        free(buf);
        return maec_fail(err, MAEC_EFORMAT, "%s: not a .npy file", path);
    }
    int major = u[6];
    size_t hlen, hstart;
    if (major == 1) {
        hlen = (size_t)u[8] | (size_t)u[9] << 8;
        hstart = 10;
    } else if (major == 2 || major == 3) {
        if (len < 12) {
            free(buf);
            return maec_fail(err, MAEC_EFORMAT, "%s: truncated .npy header", path);
        }
        hlen = (size_t)u[8] | (size_t)u[9] << 8 | (size_t)u[10] << 16 | (size_t)u[11] << 24;
        hstart = 12;
    } else {
        free(buf);
        return maec_fail(err, MAEC_EFORMAT, "%s: unsupported .npy version %d", path, major);
    }
    if (hlen > len - hstart || hlen > (1u << 20)) {
        free(buf);
        return maec_fail(err, MAEC_EFORMAT, "%s: truncated .npy header", path);
    }
    char *hdr = malloc(hlen + 1);
    if (!hdr) {
        free(buf);
        return maec_fail(err, MAEC_ENOMEM, "out of memory");
    }
    memcpy(hdr, buf + hstart, hlen);
    hdr[hlen] = 0;
    int fortran = 0;
    rc = parse_header(hdr, a, &fortran, path, err);
    free(hdr);
    if (rc) {
        free(buf);
        return rc;
    }
    int es = dtype_size(a->dtype);
    if (!es) {
        free(buf);
        return maec_fail(err, MAEC_EFORMAT, "%s: unsupported .npy dtype '%s' (want <f4, <f8, |u1, "
                         "<i2, <i4 or <i8)", path, a->dtype);
    }
    if (fortran && a->ndim > 1) {
        free(buf);
        return maec_fail(err, MAEC_EFORMAT, "%s: Fortran-order arrays are not supported", path);
    }
    size_t nbytes;
    size_t data_start = hstart + hlen;
    if (!size_mul(a->count, (size_t)es, &nbytes) || nbytes != len - data_start) {
        free(buf);
        return maec_fail(err, MAEC_EFORMAT, "%s: data size does not match shape (%zu bytes for "
                         "%zu values of %s)", path, len - data_start, a->count, a->dtype);
    }
    a->data = maec_alloc(a->count * sizeof(float));
    if (!a->data) {
        free(buf);
        return maec_fail(err, MAEC_ENOMEM, "%s: out of memory", path);
    }
    const unsigned char *src = u + data_start;
    for (size_t i = 0; i < a->count; i++) {
        a->data[i] = convert_one(a->dtype, src + i * (size_t)es);
        if (!isfinite(a->data[i])) {
            free(buf);
            npy_free(a);
            return maec_fail(err, MAEC_ENONFINITE, "%s: non-finite value at index %zu", path, i);
        }
    }
    free(buf);
    return 0;
}

void npy_free(npy_array *a)
{
    maec_free(a->data);
    a->data = NULL;
}

int npy_save(const char *path, const float *data, int ndim, const int64_t *shape,
             maec_error *err)
{
    char dict[256];
    int n = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        n += snprintf(dict + n, sizeof dict - (size_t)n, "%lld,%s", (long long)shape[i],
                      (i + 1 < ndim) ? " " : "");
        count *= (size_t)shape[i];
    }
    if (ndim > 1) n--; /* numpy writes (2, 3) but (4,) */
    n += snprintf(dict + n, sizeof dict - (size_t)n, "), }");
    size_t total = 10 + (size_t)n + 1;
    size_t pad = (64 - total % 64) % 64;
    size_t hlen = (size_t)n + pad + 1;
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 255),
                             (unsigned char)(hlen >> 8)};
    atomic_file af;
    int rc = atomic_open(&af, path, err);
    if (rc) return rc;
    atomic_write(&af, pre, 10);
    atomic_write(&af, dict, (size_t)n);
    for (size_t i = 0; i < pad; i++) atomic_write(&af, " ", 1);
    atomic_write(&af, "\n", 1);
    atomic_write(&af, data, count * sizeof(float));
    return atomic_commit(&af, err);
}
