/* NumPy .npy files (format versions 1-3, C order). */
#ifndef MAEC_NPY_H
#define MAEC_NPY_H
#include <stdint.h>
#include <stddef.h>
#include "maec.h"

#define NPY_MAX_DIMS 8

typedef struct {
    int ndim;
    int64_t shape[NPY_MAX_DIMS];
    size_t count;   /* product of shape */
    char dtype[8];  /* the file's dtype, e.g. "<f4", "|u1" */
    float *data;    /* values converted to float32 (malloc'd) */
} npy_array;

/* Read a .npy of float32/float64/uint8/int8/int16/int32/int64 (little-endian)
 * and convert to float32. Non-finite values are refused. */
int npy_load(const char *path, npy_array *out, maec_error *err);
void npy_free(npy_array *a);
/* Write float32 data as .npy version 1.0, atomically. */
int npy_save(const char *path, const float *data, int ndim,
             const int64_t *shape, maec_error *err);
#endif
