/* A tiny test harness: CHECK counts a pass or a failure and says why;
 * TEST_END prints the closing count line and returns the exit status; a
 * scratch folder and its paths. A test defines _POSIX_C_SOURCE (or
 * _XOPEN_SOURCE, _GNU_SOURCE) before its includes, for mkdtemp. */
#ifndef MAEC_TEST_H
#define MAEC_TEST_H
#include <math.h>
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "maec.h"

static int test_passed, test_failed;

#define CHECK(cond, ...)                                                  \
    do {                                                                  \
        if (cond) {                                                       \
            test_passed++;                                                \
        } else {                                                          \
            test_failed++;                                                \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                   \
            printf(__VA_ARGS__);                                          \
            printf("\n");                                                 \
        }                                                                 \
    } while (0)

/* First thing in a test program's main: run on the OpenBLAS kernels the
 * maec command runs on (maec_blas_reexec), so that the model is checked
 * against its fixtures as users run it. test_ops does not call it, and so
 * checks the ops on the kernels OpenBLAS picks by itself. */
static inline void test_on_command_kernels(char **argv) { maec_blas_reexec(argv); }

/* ||a - b|| / ||b|| (or ||a|| when b is all zero) */
static inline double rel_err(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    if (den == 0) return sqrt(num);
    return sqrt(num / den);
}

/* A test program's scratch folder (test_make_dir) and paths in it
 * (test_path: a ring of 16, so that several can be used in one call) */
static char test_dir[64];

/* make test_dir, /tmp/maec_<name>_XXXXXX; 0 on success, else -1 and a line */
static inline int test_make_dir(const char *name)
{
    snprintf(test_dir, sizeof test_dir, "/tmp/maec_%s_XXXXXX", name);
    if (mkdtemp(test_dir)) return 0;
    printf("cannot make a temporary folder %s\n", test_dir);
    return -1;
}

static inline const char *test_path(const char *name)
{
    static char buf[16][512];
    static int k;
    k = (k + 1) % 16;
    snprintf(buf[k], sizeof buf[k], "%s/%s", test_dir, name);
    return buf[k];
}

/* path := n bytes of data (a test's own input; a failure shows in the checks that read it) */
static inline void test_write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(data, 1, n, f);
    fclose(f);
}

/* the maec command of the build under test ($MAEC_BUILD, default build) */
static inline const char *test_maec_bin(void)
{
    static char buf[512];
    const char *b = getenv("MAEC_BUILD");
    snprintf(buf, sizeof buf, "./%s/maec", b && *b ? b : "build");
    return buf;
}

/* MAEC_BACKEND names a backend that cannot run here (cuda without a GPU):
 * the default would run unseen. 0 when the asked-for backend runs (said
 * when one is asked for), else a failed count line and 1 */
static inline int test_backend_check(void)
{
    const char *want = getenv("MAEC_BACKEND");
    if (!want || !*want) return 0;
    if (strcmp(want, maec_backend_name())) {
        printf("MAEC_BACKEND=%s: not available here (the %s backend would run)\n0 passed, 1 failed\n", want,
               maec_backend_name());
        return 1;
    }
    printf("  backend: %s\n", maec_backend_name());
    return 0;
}

#define TEST_END()                                                        \
    do {                                                                  \
        printf("%d passed, %d failed\n", test_passed, test_failed);       \
        return test_failed ? 1 : 0;                                       \
    } while (0)
#endif
