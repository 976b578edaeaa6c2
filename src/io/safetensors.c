#define _POSIX_C_SOURCE 200809L
#include "pth.h"
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <zlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../util.h"

#define ST_MAX_HEADER ((size_t)100 << 20)
#define ST_MAX_TENSORS 100000

static int dtype_bytes(const char *dt)
{
    if (!strcmp(dt, "F32")) return 4;
    if (!strcmp(dt, "F16") || !strcmp(dt, "BF16")) return 2;
    if (!strcmp(dt, "F64")) return 8;
    return 0;
}

static int cmp_begin(const void *a, const void *b)
{
    const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
    return (x->begin > y->begin) - (x->begin < y->begin);
}

void st_close(st_file *f)
{
    if (!f) return;
    for (int i = 0; i < f->n; i++) free(f->e[i].name);
    for (int i = 0; i < f->nmeta; i++) {
        free(f->meta_key[i]);
        free(f->meta_val[i]);
    }
    free(f->e);
    free(f->meta_key);
    free(f->meta_val);
    free(f->buf);
    free(f->own_path);
    memset(f, 0, sizeof *f);
}

static int parse_entry(st_file *f, const cJSON *item, st_entry *e, size_t data_len,
                       maec_error *err)
{
    const char *nm = item->string;
    if (!cJSON_IsObject(item))
        return maec_fail(err, MAEC_EFORMAT, "%s: header entry '%s' is not an object", f->path, nm);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(off))
        return maec_fail(err, MAEC_EFORMAT, "%s: tensor '%s' lacks dtype, shape or data_offsets",
                         f->path, nm);
    if (strlen(dt->valuestring) >= sizeof e->dtype)
        return maec_fail(err, MAEC_EFORMAT, "%s: tensor '%s' has unknown dtype", f->path, nm);
    strcpy(e->dtype, dt->valuestring);
    int es = dtype_bytes(e->dtype);
    e->ndim = cJSON_GetArraySize(sh);
    if (e->ndim > ST_MAX_DIMS)
        return maec_fail(err, MAEC_EFORMAT, "%s: tensor '%s' has %d dimensions (max %d)", f->path,
                         nm, e->ndim, ST_MAX_DIMS);
    e->count = 1;
    for (int d = 0; d < e->ndim; d++) {
        const cJSON *v = cJSON_GetArrayItem(sh, d);
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1e15 ||
            v->valuedouble != floor(v->valuedouble))
            return maec_fail(err, MAEC_EFORMAT, "%s: tensor '%s' has a bad shape", f->path, nm);
        e->shape[d] = (int64_t)v->valuedouble;
        if (!size_mul(e->count, (size_t)e->shape[d], &e->count))
            return maec_fail(err, MAEC_EFORMAT, "%s: tensor '%s' shape overflows", f->path, nm);
    }
    if (cJSON_GetArraySize(off) != 2)
        return maec_fail(err, MAEC_EFORMAT, "%s: tensor '%s' has bad data_offsets", f->path, nm);
    double b = cJSON_GetArrayItem(off, 0)->valuedouble, en = cJSON_GetArrayItem(off, 1)->valuedouble;
    if (!cJSON_IsNumber(cJSON_GetArrayItem(off, 0)) || !cJSON_IsNumber(cJSON_GetArrayItem(off, 1)) ||
        b < 0 || en < b || en > (double)data_len || b != floor(b) || en != floor(en))
        return maec_fail(err, MAEC_EFORMAT,
                         "%s: tensor '%s' data_offsets [%.0f, %.0f] lie outside the %zu data bytes",
                         f->path, nm, b, en, data_len);
    e->begin = (size_t)b;
    e->end = (size_t)en;
    size_t need;
    if (es && (!size_mul(e->count, (size_t)es, &need) || need != e->end - e->begin))
        return maec_fail(err, MAEC_EFORMAT,
                         "%s: tensor '%s' has %zu bytes but its shape needs %zu", f->path, nm,
                         e->end - e->begin, e->count * (size_t)es);
    e->name = strdup(nm);
    if (!e->name) return maec_fail(err, MAEC_ENOMEM, "out of memory");
    return 0;
}

static int parse_meta(st_file *f, const cJSON *meta, maec_error *err)
{
    if (!cJSON_IsObject(meta))
        return maec_fail(err, MAEC_EFORMAT, "%s: __metadata__ is not an object", f->path);
    int n = cJSON_GetArraySize(meta);
    f->meta_key = calloc((size_t)n + 1, sizeof(char *));
    f->meta_val = calloc((size_t)n + 1, sizeof(char *));
    if (!f->meta_key || !f->meta_val) return maec_fail(err, MAEC_ENOMEM, "out of memory");
    const cJSON *it;
    cJSON_ArrayForEach(it, meta)
    {
        if (!cJSON_IsString(it))
            return maec_fail(err, MAEC_EFORMAT, "%s: __metadata__ value '%s' is not a string",
                             f->path, it->string);
        f->meta_key[f->nmeta] = strdup(it->string);
        f->meta_val[f->nmeta] = strdup(it->valuestring);
        f->nmeta++;
        if (!f->meta_key[f->nmeta - 1] || !f->meta_val[f->nmeta - 1])
            return maec_fail(err, MAEC_ENOMEM, "out of memory");
    }
    return 0;
}

/* The header's own checksum: __metadata__ "header_crc32" is the CRC-32 of the
 * header bytes (padding included) with its 8 hex digits read as "00000000".
 * Files written before it existed have none; then only the data is checked. */
#define HEADER_CRC_KEY "\"header_crc32\":\""

static int check_header_crc(const st_file *f, size_t hlen, const cJSON *v, maec_error *err)
{
    const char *val = cJSON_IsString(v) ? v->valuestring : "";
    int hex = strlen(val) == 8;
    for (int i = 0; hex && i < 8; i++) hex = strchr("0123456789abcdef", val[i]) != NULL;
    if (!hex)
        return maec_fail(err, MAEC_EFORMAT, "%s: header_crc32 is not 8 hex digits (file is corrupt)",
                         f->path);
    char pat[40];
    snprintf(pat, sizeof pat, HEADER_CRC_KEY "%s\"", val);
    size_t pl = strlen(pat), at = 0;
    int found = 0;
    const char *h = f->buf + 8;
    for (size_t i = 0; i + pl <= hlen; i++)
        if (h[i] == '"' && !memcmp(h + i, pat, pl)) found++, at = i;
    if (found != 1)
        return maec_fail(err, MAEC_EFORMAT, "%s: header checksum cannot be checked (file is corrupt)",
                         f->path);
    size_t digits = at + strlen(HEADER_CRC_KEY);
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, (const Bytef *)h, (uInt)digits);
    crc = crc32(crc, (const Bytef *)"00000000", 8);
    crc = crc32(crc, (const Bytef *)h + digits + 8, (uInt)(hlen - digits - 8));
    char got[16];
    snprintf(got, sizeof got, "%08lx", (unsigned long)crc);
    if (strcmp(got, val))
        return maec_fail(err, MAEC_EFORMAT, "%s: header checksum mismatch (file is corrupt: crc32 %s, "
                         "header says %s)", f->path, got, val);
    return 0;
}

/* A file that is no safetensors one but was meant as a PyTorch file: named
 * so, or a pickle (its PROTO opcode first) */
static int looks_torch(const char *path, const char *buf, size_t len)
{
    size_t pl = strlen(path);
    int named = (pl > 4 && !strcmp(path + pl - 4, ".pth")) || (pl > 3 && !strcmp(path + pl - 3, ".pt")) ||
                (pl > 8 && !strcmp(path + pl - 8, ".pth.tar")) || (pl > 5 && !strcmp(path + pl - 5, ".ckpt"));
    return named || (len >= 2 && (unsigned char)buf[0] == 0x80 && buf[1] >= 2 && buf[1] <= 5);
}

static int not_torch(const char *path, maec_error *err)
{
    return maec_fail(err, MAEC_EFORMAT,
                     "%s: not a PyTorch zip checkpoint (torch.save's format since 1.6) nor one in its legacy "
                     "format, nor safetensors: cannot read it", path);
}

static int st_open_file(const char *path, st_file *f, maec_error *err)
{
    memset(f, 0, sizeof *f);
    f->path = path;
    int rc = read_file(path, &f->buf, &f->len, ST_MAX_FILE, err);
    if (rc) return rc;
    if (f->len >= 4 && !memcmp(f->buf, "PK\x03\x04", 4)) { /* torch.save's zip format */
        rc = pth_read(f, err);
        if (rc) st_close(f);
        return rc;
    }
    if (pth_is_legacy(f->buf, f->len)) {
        st_close(f);
        return maec_fail(err, MAEC_EFORMAT,
                         "%s: a PyTorch file in the legacy (before 1.6) format: convert it with tools/convert_pth.py",
                         path);
    }
    if (f->len < 8) {
        int torch = looks_torch(path, f->buf, f->len);
        st_close(f);
        if (torch) return not_torch(path, err);
        return maec_fail(err, MAEC_EFORMAT, "%s: too short for a safetensors file", path);
    }
    const unsigned char *u = (const unsigned char *)f->buf;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | u[i];
    if (hlen > f->len - 8 || hlen > ST_MAX_HEADER || hlen < 2) {
        unsigned long long hl = (unsigned long long)hlen;
        int torch = looks_torch(path, f->buf, f->len);
        st_close(f);
        if (torch) return not_torch(path, err);
        return maec_fail(err, MAEC_EFORMAT,
                         "%s: header length %llu does not fit the file (truncated or not safetensors)",
                         path, hl);
    }
    f->data_start = 8 + (size_t)hlen;
    size_t data_len = f->len - f->data_start;
    cJSON *root = cJSON_ParseWithLength(f->buf + 8, (size_t)hlen);
    if (!root || !cJSON_IsObject(root)) {
        int torch = looks_torch(path, f->buf, f->len);
        cJSON_Delete(root);
        st_close(f);
        if (torch) return not_torch(path, err);
        return maec_fail(err, MAEC_EFORMAT, "%s: header is not a JSON object", path);
    }
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(root, "__metadata__");
    const cJSON *hc = cJSON_IsObject(md) ? cJSON_GetObjectItemCaseSensitive(md, "header_crc32") : NULL;
    if (hc && (rc = check_header_crc(f, (size_t)hlen, hc, err)) != 0) {
        cJSON_Delete(root);
        st_close(f);
        return rc;
    }
    int total = cJSON_GetArraySize(root);
    if (total > ST_MAX_TENSORS) {
        cJSON_Delete(root);
        st_close(f);
        return maec_fail(err, MAEC_EFORMAT, "%s: too many tensors (%d)", path, total);
    }
    f->e = calloc((size_t)total + 1, sizeof(st_entry));
    if (!f->e) {
        cJSON_Delete(root);
        st_close(f);
        return maec_fail(err, MAEC_ENOMEM, "out of memory");
    }
    const cJSON *item;
    rc = 0;
    cJSON_ArrayForEach(item, root)
    {
        if (!item->string) continue;
        if (!strcmp(item->string, "__metadata__")) {
            if (f->meta_key) /* a second one would overrun the first one's arrays */
                rc = maec_fail(err, MAEC_EFORMAT, "%s: __metadata__ appears twice", path);
            else
                rc = parse_meta(f, item, err);
        } else {
            if (st_find(f, item->string) >= 0)
                rc = maec_fail(err, MAEC_EFORMAT, "%s: tensor '%s' appears twice", path, item->string);
            else
                rc = parse_entry(f, item, &f->e[f->n], data_len, err);
            if (!rc) f->n++;
        }
        if (rc) break;
    }
    cJSON_Delete(root);
    if (rc) {
        st_close(f);
        return rc;
    }
    /* no two tensors may share bytes */
    st_entry **order = malloc(((size_t)f->n + 1) * sizeof *order);
    if (!order) {
        st_close(f);
        return maec_fail(err, MAEC_ENOMEM, "out of memory");
    }
    for (int i = 0; i < f->n; i++) order[i] = &f->e[i];
    qsort(order, (size_t)f->n, sizeof *order, cmp_begin);
    /* against the furthest-reaching tensor so far, not just the previous one
     * (an empty tensor between two others must not hide their overlap) */
    const st_entry *reach = NULL;
    for (int i = 0; i < f->n; i++) {
        if (order[i]->end == order[i]->begin) continue;
        if (reach && order[i]->begin < reach->end) {
            rc = maec_fail(err, MAEC_EFORMAT, "%s: tensors '%s' and '%s' overlap", path,
                           reach->name, order[i]->name);
            break;
        }
        if (!reach || order[i]->end > reach->end) reach = order[i];
    }
    free(order);
    const char *want = rc ? NULL : st_meta(f, "crc32");
    if (want) {
        uLong crc = crc32(0L, Z_NULL, 0);
        const unsigned char *bytes = (const unsigned char *)f->buf + f->data_start;
        for (size_t done = 0; done < data_len;) {
            size_t chunk = data_len - done > (1u << 30) ? (1u << 30) : data_len - done;
            crc = crc32(crc, bytes + done, (uInt)chunk);
            done += chunk;
        }
        char got[16];
        snprintf(got, sizeof got, "%08lx", (unsigned long)crc);
        if (strcmp(got, want))
            rc = maec_fail(err, MAEC_EFORMAT, "%s: checksum mismatch (file is corrupt: crc32 %s, "
                           "header says %s)", path, got, want);
    }
    if (rc) st_close(f);
    return rc;
}

int st_open(const char *path, st_file *f, maec_error *err)
{
    /* a folder as Hugging Face's save_pretrained writes it */
    char *own = NULL;
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        own = hf_weights_in(path);
        if (!own)
            return maec_fail(err, MAEC_EIO, "%s: a folder without model.safetensors or pytorch_model.bin", path);
    }
    int rc = st_open_file(own ? own : path, f, err);
    if (!rc) {
        f->own_path = own;
        own = NULL;
        if (hf_names(f)) rc = hf_adopt(f, err);
        if (rc) st_close(f);
    }
    free(own);
    return rc;
}

int st_find(const st_file *f, const char *name)
{
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->e[i].name, name)) return i;
    return -1;
}

const char *st_meta(const st_file *f, const char *key)
{
    for (int i = 0; i < f->nmeta; i++)
        if (!strcmp(f->meta_key[i], key)) return f->meta_val[i];
    return NULL;
}

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 31, man = h & 1023, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal */
            float v = ldexpf((float)man, -24);
            return sign ? -v : v;
        }
    } else if (exp == 31) {
        bits = sign | 0x7F800000u | (man << 13);
    } else {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    }
    float v;
    memcpy(&v, &bits, 4);
    return v;
}

int st_read_f32(const st_file *f, int i, float *out, maec_error *err)
{
    const st_entry *e = &f->e[i];
    const unsigned char *src = (const unsigned char *)f->buf + f->data_start + e->begin;
    if (!strcmp(e->dtype, "F32")) {
        memcpy(out, src, e->count * 4);
    } else if (!strcmp(e->dtype, "F64")) {
        for (size_t k = 0; k < e->count; k++) {
            double d;
            memcpy(&d, src + 8 * k, 8);
            out[k] = (float)d;
        }
    } else if (!strcmp(e->dtype, "F16")) {
        for (size_t k = 0; k < e->count; k++) out[k] = half_to_float((uint16_t)(src[2 * k] | src[2 * k + 1] << 8));
    } else if (!strcmp(e->dtype, "BF16")) {
        for (size_t k = 0; k < e->count; k++) {
            uint32_t bits = (uint32_t)(src[2 * k] | src[2 * k + 1] << 8) << 16;
            memcpy(&out[k], &bits, 4);
        }
    } else {
        return maec_fail(err, MAEC_EFORMAT, "%s: tensor '%s' has dtype %s (want F32, F16, BF16 or F64)",
                         f->path, e->name, e->dtype);
    }
    for (size_t k = 0; k < e->count; k++)
        if (!isfinite(out[k]))
            return maec_fail(err, MAEC_ENONFINITE, "%s: tensor '%s' has a non-finite value at index %zu",
                             f->path, e->name, k);
    return 0;
}

int st_save(const char *path, const st_tensor *t, int n, const char *const *meta_keys,
            const char *const *meta_vals, int nmeta, maec_error *err)
{
    cJSON *root = cJSON_CreateObject();
    if (!root) return maec_fail(err, MAEC_ENOMEM, "out of memory");
    /* a CRC-32 of the data section, checked on reading */
    uLong crc = crc32(0L, Z_NULL, 0);
    for (int i = 0; i < n; i++) {
        size_t count = 1;
        for (int d = 0; d < t[i].ndim; d++) count *= (size_t)t[i].shape[d];
        const unsigned char *bytes = (const unsigned char *)t[i].data;
        for (size_t done = 0, len = count * 4; done < len;) {
            size_t chunk = len - done > (1u << 30) ? (1u << 30) : len - done;
            crc = crc32(crc, bytes + done, (uInt)chunk);
            done += chunk;
        }
    }
    char crcbuf[16];
    snprintf(crcbuf, sizeof crcbuf, "%08lx", (unsigned long)crc);
    cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
    for (int i = 0; meta && i < nmeta; i++)
        if (strcmp(meta_keys[i], "crc32") && strcmp(meta_keys[i], "header_crc32")) /* ours */
            cJSON_AddStringToObject(meta, meta_keys[i], meta_vals[i]);
    if (meta) cJSON_AddStringToObject(meta, "crc32", crcbuf);
    if (meta) cJSON_AddStringToObject(meta, "header_crc32", "00000000"); /* set below */
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        cJSON *o = cJSON_AddObjectToObject(root, t[i].name);
        if (!o) break;
        cJSON_AddStringToObject(o, "dtype", "F32");
        cJSON *sh = cJSON_AddArrayToObject(o, "shape");
        size_t count = 1;
        for (int d = 0; d < t[i].ndim; d++) {
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t[i].shape[d]));
            count *= (size_t)t[i].shape[d];
        }
        cJSON *offs = cJSON_AddArrayToObject(o, "data_offsets");
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        off += count * 4;
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
    }
    char *js = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!js) return maec_fail(err, MAEC_ENOMEM, "out of memory");
    size_t jl = strlen(js);
    size_t padded = (jl + 7) & ~(size_t)7;
    char *hdr = malloc(padded);
    if (!hdr) {
        free(js);
        return maec_fail(err, MAEC_ENOMEM, "out of memory");
    }
    memcpy(hdr, js, jl);
    memset(hdr + jl, ' ', padded - jl);
    free(js);
    /* the header's checksum, over the header with its own digits zero */
    const char *pat = HEADER_CRC_KEY "00000000\"";
    size_t pl = strlen(pat);
    for (size_t i = 0; i + pl <= padded; i++) {
        if (!memcmp(hdr + i, pat, pl)) {
            uLong hcrc = crc32(crc32(0L, Z_NULL, 0), (const Bytef *)hdr, (uInt)padded);
            char hex[16];
            snprintf(hex, sizeof hex, "%08lx", (unsigned long)hcrc);
            memcpy(hdr + i + strlen(HEADER_CRC_KEY), hex, 8);
            break;
        }
    }
    unsigned char lenb[8];
    for (int i = 0; i < 8; i++) lenb[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    atomic_file af;
    int rc = atomic_open(&af, path, err);
    if (rc) {
        free(hdr);
        return rc;
    }
    atomic_write(&af, lenb, 8);
    atomic_write(&af, hdr, padded);
    free(hdr);
    for (int i = 0; i < n; i++) {
        size_t count = 1;
        for (int d = 0; d < t[i].ndim; d++) count *= (size_t)t[i].shape[d];
        atomic_write(&af, t[i].data, count * 4);
    }
    return atomic_commit(&af, err);
}
