/* What st_open promises about a file it accepted (safetensors, or a .pth it
 * read into the same form), checked by the safetensors and pth targets:
 * every byte range inside the data, the byte count of a readable dtype
 * matching its shape, names unique, no two tensors sharing bytes, every
 * float readable and finite or refused with a clean error. */
#ifndef MAEC_FUZZ_ST_CHECKS_H
#define MAEC_FUZZ_ST_CHECKS_H
#include "fuzz.h"
#include "io/safetensors.h"

static int elem_bytes(const char *dt)
{
    if (!strcmp(dt, "F32")) return 4;
    if (!strcmp(dt, "F16") || !strcmp(dt, "BF16")) return 2;
    if (!strcmp(dt, "F64")) return 8;
    return 0;
}

static void fuzz_check_st_file(st_file *f)
{
    FUZZ_ASSERT(f->data_start <= f->len, "data start %zu of %zu", f->data_start, f->len);
    size_t data_len = f->len - f->data_start;
    for (int i = 0; i < f->n; i++) {
        const st_entry *e = &f->e[i];
        FUZZ_ASSERT(e->name != NULL, "tensor %d has no name", i);
        FUZZ_ASSERT(st_find(f, e->name) == i, "tensor name '%s' is not unique", e->name);
        FUZZ_ASSERT(e->begin <= e->end && e->end <= data_len, "'%s' range [%zu, %zu) outside %zu bytes",
                    e->name, e->begin, e->end, data_len);
        FUZZ_ASSERT(e->ndim >= 0 && e->ndim <= ST_MAX_DIMS, "'%s' has %d dims", e->name, e->ndim);
        int es = elem_bytes(e->dtype);
        maec_error rerr = {0};
        if (!es) {
            float dummy[1];
            int r = st_read_f32(f, i, dummy, &rerr);
            FUZZ_ASSERT(r != 0, "dtype '%s' read as float", e->dtype);
            fuzz_check_result(r, &rerr, "st_read_f32");
            continue;
        }
        FUZZ_ASSERT(e->count * (size_t)es == e->end - e->begin, "'%s': %zu values of %d bytes in %zu bytes",
                    e->name, e->count, es, e->end - e->begin);
        float *out = malloc(e->count ? e->count * sizeof(float) : 1);
        FUZZ_ASSERT(out != NULL, "out of memory");
        int r = st_read_f32(f, i, out, &rerr);
        fuzz_check_result(r, &rerr, "st_read_f32");
        if (!r)
            for (size_t k = 0; k < e->count; k++)
                FUZZ_ASSERT(out[k] == out[k] && out[k] - out[k] == 0, "'%s'[%zu] not finite", e->name, k);
        free(out);
    }
    /* no two non-empty tensors share a byte */
    for (int i = 0; i < f->n && f->n <= 2000; i++)
        for (int j = i + 1; j < f->n; j++) {
            const st_entry *a = &f->e[i], *b = &f->e[j];
            if (a->begin == a->end || b->begin == b->end) continue;
            FUZZ_ASSERT(a->end <= b->begin || b->end <= a->begin, "'%s' and '%s' overlap", a->name, b->name);
        }
    for (int i = 0; i < f->nmeta; i++) {
        FUZZ_ASSERT(f->meta_key[i] && f->meta_val[i], "metadata %d missing", i);
        FUZZ_ASSERT(st_meta(f, f->meta_key[i]) != NULL, "metadata '%s' not found", f->meta_key[i]);
    }
}
#endif
