/* safetensors files: an 8-byte little-endian header length, a JSON header
 * naming each tensor's dtype, shape and byte range, then the data. */
#ifndef MAEC_SAFETENSORS_H
#define MAEC_SAFETENSORS_H
#include <stdint.h>
#include <stddef.h>
#include "maec.h"

#define ST_MAX_DIMS 8
#define ST_MAX_FILE ((size_t)1 << 40) /* the largest file maec reads */

typedef struct {
    char *name;
    char dtype[8];       /* F32, F16, BF16, F64 are readable as float */
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t count;        /* product of shape */
    size_t begin, end;   /* byte range in the data section */
} st_entry;

typedef struct {
    char *buf;           /* the whole file */
    size_t len;
    size_t data_start;
    int n;
    st_entry *e;
    int nmeta;
    char **meta_key, **meta_val;
    const char *path;
    char *own_path;      /* the file found in a folder (f->path points to it), or NULL */
} st_file;

/* Read and check a whole file: the header parses as JSON, every tensor's
 * dtype, shape and byte range are valid, ranges lie inside the data and do
 * not overlap. */
int st_open(const char *path, st_file *f, maec_error *err);
void st_close(st_file *f);
int st_find(const st_file *f, const char *name);

/* Hugging Face transformers' ViTMAE files (src/io/hf.c): the weights file
 * of a save_pretrained folder (model.safetensors, else pytorch_model.bin;
 * malloc'd, NULL if none); whether f's tensors carry ViTMAE's names; and
 * f renamed in place to the official MAE names (query/key/value joined into
 * qkv), with a "maec_config" made from config.json beside the file when
 * there is one. st_open does all three for every file it opens. */
char *hf_weights_in(const char *dir);
int hf_names(const st_file *f);
int hf_adopt(st_file *f, maec_error *err);
/* an official tensor name in transformers' naming; a qkv tensor gets
 * "QKV" where the caller puts query, key or value */
void hf_name_of(const char *name, char *out, size_t n);
const char *st_meta(const st_file *f, const char *key);
/* Convert tensor i to float32 into out (count floats), refusing non-finite
 * values. */
int st_read_f32(const st_file *f, int i, float *out, maec_error *err);

typedef struct {
    const char *name;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const float *data;
} st_tensor;

/* Write float32 tensors and string metadata (nmeta key/value pairs),
 * atomically. */
int st_save(const char *path, const st_tensor *t, int n, const char *const *meta_keys,
            const char *const *meta_vals, int nmeta, maec_error *err);
#endif
