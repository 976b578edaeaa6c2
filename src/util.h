/* Internal helpers shared by the library: errors, checked sizes, random
 * numbers, atomic files. */
#ifndef MAEC_UTIL_H
#define MAEC_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stddef.h>
#include "maec.h"

#if defined(__GNUC__)
#define MAEC_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define MAEC_PRINTF(a, b)
#endif

/* Set err (may be NULL) and return code. */
int maec_fail(maec_error *err, int code, const char *fmt, ...) MAEC_PRINTF(3, 4);

/* a*b and a+b for sizes, 0 on overflow. */
int size_mul(size_t a, size_t b, size_t *out);
int size_add(size_t a, size_t b, size_t *out);

/* Zeroed, 64-byte aligned allocation; NULL on failure or zero-size overflow. */
void *maec_alloc(size_t nbytes);
void maec_free(void *p);

/* Random numbers: splitmix64 state; same seed, same stream everywhere. */
uint64_t rng_next(uint64_t *s);
/* uniform in [0,1) with 24 random bits */
float rng_uniform(uint64_t *s);
double rng_uniform_d(uint64_t *s);
/* standard normal (Box-Muller on doubles) */
double rng_normal(uint64_t *s);
/* w[n] from a normal of standard deviation std cut to [-2, 2] (timm's
 * trunc_normal_ with its absolute bounds), redrawn until inside */
void rng_trunc_normal(float *w, size_t n, double std, uint64_t *s);
/* an independent stream derived from a seed and up to three indices */
uint64_t rng_derive(uint64_t seed, uint64_t a, uint64_t b, uint64_t c);

/* Atomic file writing: write to "<path>.tmp.<pid>", fsync, rename. */
typedef struct {
    FILE *f;
    char *path;
    char *tmp;
    int failed;
} atomic_file;
int atomic_open(atomic_file *af, const char *path, maec_error *err);
int atomic_write(atomic_file *af, const void *data, size_t n);
/* commit: flush, fsync, close, rename, fsync the directory */
int atomic_commit(atomic_file *af, maec_error *err);
/* abort: close and remove the temporary file */
void atomic_abort(atomic_file *af);

/* Whole-file read into malloc'd memory (with a terminating NUL). */
int read_file(const char *path, char **data, size_t *len, size_t max_len,
              maec_error *err);

int all_finite(const float *x, size_t n);

#endif
