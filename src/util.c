#define _POSIX_C_SOURCE 200809L
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int maec_fail(maec_error *err, int code, const char *fmt, ...)
{
    if (err) {
        /* through a copy: callers may pass err->msg itself as an argument
         * ("%s: %s", path, err->msg), and vsnprintf must not overlap */
        char buf[sizeof err->msg];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        memcpy(err->msg, buf, sizeof buf);
        /* one line, whatever a file put in a name we quote: control
         * characters (a line break, an escape sequence) become '?' */
        for (char *p = err->msg; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
        err->code = code;
    }
    return code;
}

int size_mul(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a) return 0;
    *out = a * b;
    return 1;
}

int size_add(size_t a, size_t b, size_t *out)
{
    if (b > SIZE_MAX - a) return 0;
    *out = a + b;
    return 1;
}

void *maec_alloc(size_t nbytes)
{
    size_t rounded;
    if (!size_add(nbytes, 63, &rounded)) return NULL;
    rounded &= ~(size_t)63;
    if (rounded == 0) rounded = 64;
    void *p = NULL;
    if (posix_memalign(&p, 64, rounded) != 0) return NULL;
    memset(p, 0, rounded);
    return p;
}

void maec_free(void *p) { free(p); }

uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

float rng_uniform(uint64_t *s) { return (float)(rng_next(s) >> 40) * (1.0f / 16777216.0f); }

double rng_uniform_d(uint64_t *s) { return (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0); }

double rng_normal(uint64_t *s)
{
    double u1 = rng_uniform_d(s), u2 = rng_uniform_d(s);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void rng_trunc_normal(float *w, size_t n, double std, uint64_t *s)
{
    for (size_t i = 0; i < n; i++) {
        double x;
        do x = rng_normal(s) * std;
        while (x < -2.0 || x > 2.0);
        w[i] = (float)x;
    }
}

uint64_t rng_derive(uint64_t seed, uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t s = seed;
    uint64_t x = rng_next(&s);
    s = x ^ (a * 0xD1B54A32D192ED03ull);
    x = rng_next(&s);
    s = x ^ (b * 0xAEF17502108EF2D9ull);
    x = rng_next(&s);
    s = x ^ (c * 0x9E3779B97F4A7C15ull);
    return rng_next(&s);
}

int atomic_open(atomic_file *af, const char *path, maec_error *err)
{
    memset(af, 0, sizeof *af);
    size_t n = strlen(path) + 32;
    af->path = strdup(path);
    af->tmp = malloc(n);
    if (!af->path || !af->tmp) {
        free(af->path);
        free(af->tmp);
        return maec_fail(err, MAEC_ENOMEM, "out of memory");
    }
    snprintf(af->tmp, n, "%s.tmp.%ld", path, (long)getpid());
    af->f = fopen(af->tmp, "wb");
    if (!af->f) {
        int e = errno;
        free(af->path);
        free(af->tmp);
        af->path = af->tmp = NULL;
        return maec_fail(err, MAEC_EIO, "cannot write %s: %s", path, strerror(e));
    }
    return 0;
}

int atomic_write(atomic_file *af, const void *data, size_t n)
{
    if (af->failed) return -1;
    if (n && fwrite(data, 1, n, af->f) != n) af->failed = errno ? errno : EIO;
    return af->failed ? -1 : 0;
}

static void fsync_dir_of(const char *path)
{
    char *copy = strdup(path);
    if (!copy) return;
    int fd = open(dirname(copy), O_RDONLY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(copy);
}

int atomic_commit(atomic_file *af, maec_error *err)
{
    int e = af->failed;
    if (!e && fflush(af->f) != 0) e = errno;
    if (!e && fsync(fileno(af->f)) != 0) e = errno;
    if (fclose(af->f) != 0 && !e) e = errno;
    af->f = NULL;
    if (!e && rename(af->tmp, af->path) != 0) e = errno;
    int rc = 0;
    if (e) {
        unlink(af->tmp);
        rc = maec_fail(err, MAEC_EIO, "cannot write %s: %s", af->path, strerror(e));
    } else {
        fsync_dir_of(af->path);
    }
    free(af->path);
    free(af->tmp);
    af->path = af->tmp = NULL;
    return rc;
}

void atomic_abort(atomic_file *af)
{
    if (af->f) fclose(af->f);
    if (af->tmp) unlink(af->tmp);
    free(af->path);
    free(af->tmp);
    memset(af, 0, sizeof *af);
}

int read_file(const char *path, char **data, size_t *len, size_t max_len,
              maec_error *err)
{
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return maec_fail(err, MAEC_EIO, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return maec_fail(err, MAEC_EIO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_len) {
        fclose(f);
        return maec_fail(err, MAEC_EFORMAT, "%s: file too large (%lld bytes)", path,
                         (long long)st.st_size);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        return maec_fail(err, MAEC_ENOMEM, "%s: out of memory", path);
    }
    if (n && fread(buf, 1, n, f) != n) {
        free(buf);
        fclose(f);
        return maec_fail(err, MAEC_EIO, "%s: read error", path);
    }
    fclose(f);
    buf[n] = 0;
    *data = buf;
    *len = n;
    return 0;
}

int all_finite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}
