/* Shared by the libFuzzer targets in fuzz/: a private scratch folder (in
 * /dev/shm when it is writable, else $TMPDIR or /tmp) where each target
 * writes its input as a file, because maec's readers take paths; and the
 * checks every target makes on what a reader returns.
 *
 * A reader may accept or refuse an input. When it refuses, the error must be
 * usable: a non-zero MAEC_E* code, the same code in err.code, and a one-line
 * message (FUZZ_VERBOSE=1 prints each result). Anything else (a crash, a sanitizer report, a leak, a hang, a
 * broken promise checked by a target) is a finding. */
#ifndef MAEC_FUZZ_H
#define MAEC_FUZZ_H

#define _POSIX_C_SOURCE 200809L
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "maec.h"

/* abort with a message: libFuzzer saves the input as a crash */
#define FUZZ_ASSERT(cond, ...)                                              \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "fuzz check failed at %s:%d: %s: ", __FILE__,   \
                    __LINE__, #cond);                                       \
            fprintf(stderr, __VA_ARGS__);                                   \
            fprintf(stderr, "\n");                                          \
            abort();                                                        \
        }                                                                   \
    } while (0)

static char fuzz_dir_buf[256];

static inline void fuzz_cleanup(void)
{
    if (!fuzz_dir_buf[0]) return;
    char cmd[320];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fuzz_dir_buf);
    if (system(cmd)) {}
}

/* the scratch folder, made on first use and removed at exit */
static inline const char *fuzz_dir(void)
{
    if (fuzz_dir_buf[0]) return fuzz_dir_buf;
    const char *env = getenv("FUZZ_TMP");
    const char *base = env && *env ? env : access("/dev/shm", W_OK) == 0 ? "/dev/shm"
                                     : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(fuzz_dir_buf, sizeof fuzz_dir_buf, "%s/maec_fuzz_%ld", base, (long)getpid());
    mkdir(fuzz_dir_buf, 0700);
    atexit(fuzz_cleanup);
    return fuzz_dir_buf;
}

/* dir/name, in a static buffer per slot (slot 0..7) */
static inline const char *fuzz_path(int slot, const char *name)
{
    static char buf[8][512];
    snprintf(buf[slot & 7], sizeof buf[0], "%s/%s", fuzz_dir(), name);
    return buf[slot & 7];
}

/* write bytes to path (replacing it) */
static inline void fuzz_write(const char *path, const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    FUZZ_ASSERT(f != NULL, "cannot write %s", path);
    if (size) FUZZ_ASSERT(fwrite(data, 1, size, f) == size, "short write to %s", path);
    fclose(f);
}

/* a reader's result: 0, or an error with a code and a one-line message */
static inline void fuzz_check_result(int rc, const maec_error *err, const char *what)
{
    static int verbose = -1;
    if (verbose < 0) verbose = getenv("FUZZ_VERBOSE") != NULL;
    if (verbose) fprintf(stderr, "%s: %s\n", what, rc ? err->msg : "ok");
    if (rc == 0) return;
    FUZZ_ASSERT(rc >= MAEC_EINVAL && rc <= MAEC_ENONFINITE, "%s: unknown error code %d", what, rc);
    FUZZ_ASSERT(err->code == rc, "%s: returned %d but err.code is %d", what, rc, err->code);
    size_t n = strnlen(err->msg, sizeof err->msg);
    FUZZ_ASSERT(n > 0 && n < sizeof err->msg, "%s: empty or unterminated message", what);
    FUZZ_ASSERT(strchr(err->msg, '\n') == NULL, "%s: message has a line break: %s", what, err->msg);
}

/* split data at the first occurrence of sep: the part before and after */
static inline int fuzz_split(const uint8_t *data, size_t size, const char *sep, size_t *first,
                      const uint8_t **second, size_t *second_size)
{
    size_t sl = strlen(sep);
    for (size_t i = 0; i + sl <= size; i++) {
        if (!memcmp(data + i, sep, sl)) {
            *first = i;
            *second = data + i + sl;
            *second_size = size - i - sl;
            return 1;
        }
    }
    *first = size;
    *second = NULL;
    *second_size = 0;
    return 0;
}

#endif
