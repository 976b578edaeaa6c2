/* PyTorch checkpoints (.pth) read without Python; see pth.h.
 *
 * A torch.save file is a zip archive: <name>/data.pkl (a pickle, protocol 2)
 * and one entry <name>/data/<key> per storage, stored uncompressed. The
 * pickle builds the checkpoint dict; a tensor in it is a call of
 * torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...) whose
 * storage is a persistent id ('storage', torch.FloatStorage, key, location,
 * numel). The machine below executes only data opcodes and maps the handful
 * of globals torch.save uses (OrderedDict, the tensor and parameter
 * rebuilders, the storage types); any other global, call or object state
 * (e.g. the argparse.Namespace of a training run's args) becomes an opaque
 * value that is carried along and never used. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>

#include "../util.h"

#include "pth.h"

enum { PV_NONE, PV_BOOL, PV_INT, PV_FLOAT, PV_STR, PV_TUPLE, PV_LIST, PV_DICT, PV_GLOBAL,
       PV_STORAGE, PV_TENSOR, PV_OBJ, PV_MARK };

typedef struct pv pv;
struct pv {
    int kind;
    int64_t i;                  /* INT, BOOL; STORAGE: numel */
    const char *s, *s2;         /* STR (bytes, not terminated); GLOBAL: module, name; STORAGE: key */
    size_t slen, s2len;
    pv **items;                 /* TUPLE, LIST; DICT: key, value, key, value, ... */
    size_t n, cap;
    /* STORAGE */
    char dtype[8];              /* "" for a type maec does not read */
    int esize;
    /* TENSOR */
    pv *storage;
    int64_t offset;
    int ndim;
    int64_t shape[ST_MAX_DIMS], stride[ST_MAX_DIMS];
};

enum { MAX_VALUES = 1 << 21, MAX_STACK = 1 << 20, MAX_MEMO = 1 << 21 };

typedef struct {
    const unsigned char *p;
    size_t len, pos;
    pv **all;                   /* every value made, freed at the end */
    size_t nall, capall;
    pv **stack;
    size_t sp, capstack;
    pv **memo;
    size_t nmemo;
    pv mark;                    /* the one MARK value */
    const char *path;
    maec_error *err;
} vm;

static int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *q = realloc(*arr, c * elem);
    if (!q) return -1;
    *arr = q;
    *cap = c;
    return 0;
}

static int bad(vm *m, const char *what)
{
    return maec_fail(m->err, MAEC_EFORMAT, "%s: not a PyTorch checkpoint maec can read: %s (pickle byte %zu)",
                     m->path, what, m->pos);
}

static pv *mk(vm *m, int kind)
{
    if (m->nall >= MAX_VALUES) {
        bad(m, "too many objects");
        return NULL;
    }
    if (grow((void **)&m->all, &m->capall, m->nall + 1, sizeof(pv *))) {
        maec_fail(m->err, MAEC_ENOMEM, "out of memory reading %s", m->path);
        return NULL;
    }
    pv *v = calloc(1, sizeof *v);
    if (!v) {
        maec_fail(m->err, MAEC_ENOMEM, "out of memory reading %s", m->path);
        return NULL;
    }
    v->kind = kind;
    m->all[m->nall++] = v;
    return v;
}

static int push(vm *m, pv *v)
{
    if (!v) return -1;
    if (m->sp >= MAX_STACK) return bad(m, "stack too deep");
    if (grow((void **)&m->stack, &m->capstack, m->sp + 1, sizeof(pv *)))
        return maec_fail(m->err, MAEC_ENOMEM, "out of memory reading %s", m->path);
    m->stack[m->sp++] = v;
    return 0;
}

static pv *pop(vm *m)
{
    if (m->sp == 0 || m->stack[m->sp - 1] == &m->mark) {
        bad(m, "stack underflow");
        return NULL;
    }
    return m->stack[--m->sp];
}

static pv *top(vm *m)
{
    if (m->sp == 0 || m->stack[m->sp - 1] == &m->mark) {
        bad(m, "stack underflow");
        return NULL;
    }
    return m->stack[m->sp - 1];
}

/* the index just above the topmost mark */
static int find_mark(vm *m, size_t *at)
{
    for (size_t k = m->sp; k > 0; k--)
        if (m->stack[k - 1] == &m->mark) {
            *at = k;
            return 0;
        }
    return bad(m, "no mark on the stack");
}

static int append(vm *m, pv *c, pv *x)
{
    if (grow((void **)&c->items, &c->cap, c->n + 1, sizeof(pv *)))
        return maec_fail(m->err, MAEC_ENOMEM, "out of memory reading %s", m->path);
    c->items[c->n++] = x;
    return 0;
}

/* items [0, n) added to c, a list (kind PV_LIST) or a dict (PV_DICT: keys
 * and values in turn) as the opcode wants; an opaque value takes and ignores
 * them */
static int extend(vm *m, pv *c, int kind, pv *const *items, size_t n)
{
    if (c->kind == PV_OBJ) return 0;
    if (c->kind != kind)
        return bad(m, kind == PV_LIST ? "append to a value that is not a list"
                                      : "set an item of a value that is not a dict");
    for (size_t k = 0; k < n; k++)
        if (append(m, c, items[k])) return -1;
    return 0;
}

/* the value just below the topmost mark (APPENDS, SETITEMS); *at: the index
 * just above the mark */
static pv *below_mark(vm *m, size_t *at)
{
    if (find_mark(m, at)) return NULL;
    if (*at < 2 || m->stack[*at - 2] == &m->mark) {
        bad(m, "stack underflow");
        return NULL;
    }
    return m->stack[*at - 2];
}

static int need(vm *m, size_t n)
{
    if (n > m->len - m->pos) return bad(m, "truncated");
    return 0;
}

static uint64_t le(const unsigned char *p, int n)
{
    uint64_t x = 0;
    for (int k = n - 1; k >= 0; k--) x = x << 8 | p[k];
    return x;
}

static int str_is(const pv *v, const char *s)
{
    return v && v->kind == PV_STR && v->slen == strlen(s) && !memcmp(v->s, s, v->slen);
}

static int global_is(const pv *g, const char *mod, const char *name)
{
    return g->kind == PV_GLOBAL && g->slen == strlen(mod) && !memcmp(g->s, mod, g->slen) &&
           g->s2len == strlen(name) && !memcmp(g->s2, name, g->s2len);
}

static int memo_put(vm *m, size_t idx)
{
    pv *v = top(m);
    if (!v) return -1;
    if (idx >= MAX_MEMO) return bad(m, "memo index too large");
    if (idx >= m->nmemo) {
        pv **q = realloc(m->memo, (idx + 1) * sizeof(pv *));
        if (!q) return maec_fail(m->err, MAEC_ENOMEM, "out of memory reading %s", m->path);
        for (size_t k = m->nmemo; k <= idx; k++) q[k] = NULL;
        m->memo = q;
        m->nmemo = idx + 1;
    }
    m->memo[idx] = v;
    return 0;
}

static int memo_get(vm *m, size_t idx)
{
    if (idx >= m->nmemo || !m->memo[idx]) return bad(m, "memo entry missing");
    return push(m, m->memo[idx]);
}

static const struct { const char *name, *dtype; int esize; } storage_types[] = {
    {"FloatStorage", "F32", 4}, {"HalfStorage", "F16", 2}, {"BFloat16Storage", "BF16", 2},
    {"DoubleStorage", "F64", 8}, {"LongStorage", "", 8}, {"IntStorage", "", 4},
    {"ShortStorage", "", 2}, {"CharStorage", "", 1}, {"ByteStorage", "", 1}, {"BoolStorage", "", 1},
};

/* ('storage', torch.XStorage, key, location, numel) */
static pv *persistent_load(vm *m, pv *pid)
{
    if (pid->kind != PV_TUPLE || pid->n != 5 || !str_is(pid->items[0], "storage") ||
        pid->items[1]->kind != PV_GLOBAL || pid->items[2]->kind != PV_STR || pid->items[4]->kind != PV_INT ||
        pid->items[4]->i < 0) {
        bad(m, "a persistent id that is not a storage");
        return NULL;
    }
    const pv *type = pid->items[1];
    pv *s = mk(m, PV_STORAGE);
    if (!s) return NULL;
    s->s = pid->items[2]->s;
    s->slen = pid->items[2]->slen;
    s->i = pid->items[4]->i;
    s->esize = 1;
    for (size_t k = 0; k < sizeof storage_types / sizeof storage_types[0]; k++)
        if (global_is(type, "torch", storage_types[k].name)) {
            strcpy(s->dtype, storage_types[k].dtype);
            s->esize = storage_types[k].esize;
        }
    return s;
}

static int int_tuple(const pv *t, int64_t *out, int *n)
{
    if (t->kind != PV_TUPLE || t->n > ST_MAX_DIMS) return -1;
    for (size_t k = 0; k < t->n; k++) {
        if (t->items[k]->kind != PV_INT || t->items[k]->i < 0) return -1;
        out[k] = t->items[k]->i;
    }
    *n = (int)t->n;
    return 0;
}

static pv *reduce(vm *m, pv *fn, pv *args)
{
    if (fn->kind == PV_GLOBAL && args->kind == PV_TUPLE) {
        if (global_is(fn, "collections", "OrderedDict") && args->n == 0) return mk(m, PV_DICT);
        if ((global_is(fn, "torch._utils", "_rebuild_tensor_v2") && args->n >= 4) ||
            (global_is(fn, "torch._utils", "_rebuild_tensor") && args->n == 4)) {
            pv *st = args->items[0];
            int nd = 0, ns = 0;
            pv *t = mk(m, PV_TENSOR);
            if (!t) return NULL;
            if (st->kind != PV_STORAGE || args->items[1]->kind != PV_INT || args->items[1]->i < 0 ||
                int_tuple(args->items[2], t->shape, &nd) || int_tuple(args->items[3], t->stride, &ns) ||
                nd != ns) {
                bad(m, "a malformed tensor");
                return NULL;
            }
            t->storage = st;
            t->offset = args->items[1]->i;
            t->ndim = nd;
            return t;
        }
        if ((global_is(fn, "torch._utils", "_rebuild_parameter") ||
             global_is(fn, "torch._utils", "_rebuild_parameter_with_state")) &&
            args->n >= 1 && args->items[0]->kind == PV_TENSOR)
            return args->items[0];
    }
    return mk(m, PV_OBJ); /* any other call: an opaque value */
}

static pv *collect(vm *m, int kind, size_t from)
{
    pv *t = mk(m, kind);
    if (!t) return NULL;
    for (size_t k = from; k < m->sp; k++)
        if (append(m, t, m->stack[k])) return NULL;
    return t;
}

static int run(vm *m, pv **result)
{
    for (;;) {
        if (need(m, 1)) return -1;
        unsigned op = m->p[m->pos++];
        const unsigned char *a = m->p + m->pos;
        size_t at = 0;
        pv *v, *x, *y;
        switch (op) {
        case 0x80: /* PROTO */
            if (need(m, 1)) return -1;
            if (a[0] > 5) return bad(m, "pickle protocol above 5");
            m->pos += 1;
            break;
        case 0x95: /* FRAME */
            if (need(m, 8)) return -1;
            m->pos += 8;
            break;
        case '.': /* STOP */
            if (!(*result = pop(m))) return -1;
            return 0;
        case '(':
            if (push(m, &m->mark)) return -1;
            break;
        case 'N':
            if (push(m, mk(m, PV_NONE))) return -1;
            break;
        case 0x88:
        case 0x89: /* NEWTRUE, NEWFALSE */
            if (!(v = mk(m, PV_BOOL))) return -1;
            v->i = op == 0x88;
            if (push(m, v)) return -1;
            break;
        case 'J':
        case 'K':
        case 'M': { /* BININT (signed 4), BININT1, BININT2 */
            int n = op == 'J' ? 4 : op == 'K' ? 1 : 2;
            if (need(m, (size_t)n) || !(v = mk(m, PV_INT))) return -1;
            v->i = op == 'J' ? (int64_t)(int32_t)(uint32_t)le(a, 4) : (int64_t)le(a, n);
            m->pos += (size_t)n;
            if (push(m, v)) return -1;
            break;
        }
        case 0x8a: { /* LONG1: little-endian two's complement, up to 8 bytes kept */
            if (need(m, 1)) return -1;
            size_t n = a[0];
            if (need(m, 1 + n) || !(v = mk(m, PV_INT))) return -1;
            if (n > 8) return bad(m, "an integer wider than 64 bits");
            uint64_t u = n ? le(a + 1, (int)n) : 0;
            if (n && n < 8 && (a[n] & 0x80)) u |= ~(uint64_t)0 << (8 * n);
            v->i = (int64_t)u;
            m->pos += 1 + n;
            if (push(m, v)) return -1;
            break;
        }
        case 'G': { /* BINFLOAT, big-endian double */
            if (need(m, 8) || !(v = mk(m, PV_FLOAT))) return -1;
            uint64_t u = 0;
            for (int k = 0; k < 8; k++) u = u << 8 | a[k];
            memcpy(&v->i, &u, 8); /* kept as bits; nothing reads it */
            m->pos += 8;
            if (push(m, v)) return -1;
            break;
        }
        case 'X':
        case 0x8c:
        case 0x8d:
        case 'T':
        case 'U':
        case 'B':
        case 'C':
        case 0x8e: { /* unicode and byte strings with 4-, 1- or 8-byte lengths */
            int n = (op == 0x8c || op == 'U' || op == 'C') ? 1 : (op == 0x8d || op == 0x8e) ? 8 : 4;
            if (need(m, (size_t)n)) return -1;
            uint64_t len = le(a, n);
            m->pos += (size_t)n;
            if (len > m->len - m->pos) return bad(m, "truncated string");
            if (!(v = mk(m, PV_STR))) return -1;
            v->s = (const char *)m->p + m->pos;
            v->slen = (size_t)len;
            m->pos += (size_t)len;
            if (push(m, v)) return -1;
            break;
        }
        case 'c': { /* GLOBAL module\nname\n */
            const char *s = (const char *)a;
            size_t rest = m->len - m->pos;
            const char *nl1 = memchr(s, '\n', rest);
            if (!nl1) return bad(m, "truncated global");
            const char *nl2 = memchr(nl1 + 1, '\n', rest - (size_t)(nl1 + 1 - s));
            if (!nl2) return bad(m, "truncated global");
            if (!(v = mk(m, PV_GLOBAL))) return -1;
            v->s = s;
            v->slen = (size_t)(nl1 - s);
            v->s2 = nl1 + 1;
            v->s2len = (size_t)(nl2 - nl1 - 1);
            m->pos += (size_t)(nl2 + 1 - s);
            if (push(m, v)) return -1;
            break;
        }
        case 0x93: /* STACK_GLOBAL */
            if (!(y = pop(m)) || !(x = pop(m))) return -1;
            if (x->kind != PV_STR || y->kind != PV_STR) return bad(m, "a global that is not two names");
            if (!(v = mk(m, PV_GLOBAL))) return -1;
            v->s = x->s;
            v->slen = x->slen;
            v->s2 = y->s;
            v->s2len = y->slen;
            if (push(m, v)) return -1;
            break;
        case 'q':
        case 'r':   /* BINPUT, LONG_BINPUT */
        case 'h':
        case 'j': { /* BINGET, LONG_BINGET */
            int n = op == 'q' || op == 'h' ? 1 : 4;
            if (need(m, (size_t)n)) return -1;
            size_t idx = (size_t)le(a, n);
            m->pos += (size_t)n;
            if ((op == 'q' || op == 'r' ? memo_put(m, idx) : memo_get(m, idx))) return -1;
            break;
        }
        case 0x94: /* MEMOIZE */
            if (memo_put(m, m->nmemo)) return -1;
            break;
        case '}':
            if (push(m, mk(m, PV_DICT))) return -1;
            break;
        case ']':
            if (push(m, mk(m, PV_LIST))) return -1;
            break;
        case ')':
            if (push(m, mk(m, PV_TUPLE))) return -1;
            break;
        case 0x8f: /* EMPTY_SET: kept as a list */
            if (push(m, mk(m, PV_LIST))) return -1;
            break;
        case 't': /* TUPLE */
        case 'l': /* LIST */
        case 0x91: /* FROZENSET */
            if (find_mark(m, &at) || !(v = collect(m, op == 't' ? PV_TUPLE : PV_LIST, at))) return -1;
            m->sp = at - 1;
            if (push(m, v)) return -1;
            break;
        case 0x85:
        case 0x86:
        case 0x87: { /* TUPLE1..3 */
            size_t n = op - 0x84;
            if (m->sp < n) return bad(m, "stack underflow");
            for (size_t k = m->sp - n; k < m->sp; k++)
                if (m->stack[k] == &m->mark) return bad(m, "stack underflow");
            if (!(v = collect(m, PV_TUPLE, m->sp - n))) return -1;
            m->sp -= n;
            if (push(m, v)) return -1;
            break;
        }
        case 'a': /* APPEND */
            if (!(x = pop(m)) || !(v = top(m)) || extend(m, v, PV_LIST, &x, 1)) return -1;
            break;
        case 'e': /* APPENDS */
        case 0x90: /* ADDITEMS */
            if (!(v = below_mark(m, &at)) || extend(m, v, PV_LIST, m->stack + at, m->sp - at)) return -1;
            m->sp = at - 1;
            break;
        case 's': { /* SETITEM */
            if (!(y = pop(m)) || !(x = pop(m)) || !(v = top(m))) return -1;
            pv *kv[2] = {x, y};
            if (extend(m, v, PV_DICT, kv, 2)) return -1;
            break;
        }
        case 'u': /* SETITEMS */
            if (!(v = below_mark(m, &at))) return -1;
            if ((m->sp - at) % 2) return bad(m, "a key without a value");
            if (extend(m, v, PV_DICT, m->stack + at, m->sp - at)) return -1;
            m->sp = at - 1;
            break;
        case 'Q': /* BINPERSID */
            if (!(x = pop(m))) return -1;
            if (push(m, persistent_load(m, x))) return -1;
            break;
        case 'R': /* REDUCE */
            if (!(y = pop(m)) || !(x = pop(m))) return -1;
            if (push(m, reduce(m, x, y))) return -1;
            break;
        case 0x81: /* NEWOBJ */
            if (!(y = pop(m)) || !(x = pop(m))) return -1;
            if (push(m, mk(m, PV_OBJ))) return -1;
            break;
        case 'b': /* BUILD: an object's state, which maec does not need */
            if (!(y = pop(m)) || !top(m)) return -1;
            break;
        case '0': /* POP */
            if (m->sp == 0) return bad(m, "stack underflow");
            m->sp--;
            break;
        case '1': /* POP_MARK */
            if (find_mark(m, &at)) return -1;
            m->sp = at - 1;
            break;
        case '2': /* DUP */
            if (!(v = top(m)) || push(m, v)) return -1;
            break;
        default: {
            char what[64];
            snprintf(what, sizeof what, "pickle opcode 0x%02x", op);
            m->pos--;
            return bad(m, what);
        }
        }
    }
}

static pv *dict_get(const pv *d, const char *key)
{
    pv *found = NULL;
    for (size_t k = 0; k + 1 < d->n; k += 2)
        if (str_is(d->items[k], key)) found = d->items[k + 1]; /* the last one, as Python keeps */
    return found;
}

typedef struct {
    const pv *key;
    const pv *t;
    size_t order;
} named;

static int by_name(const void *pa, const void *pb)
{
    const named *a = pa, *b = pb;
    size_t n = a->key->slen < b->key->slen ? a->key->slen : b->key->slen;
    int c = memcmp(a->key->s, b->key->s, n);
    if (c) return c;
    if (a->key->slen != b->key->slen) return a->key->slen < b->key->slen ? -1 : 1;
    return a->order < b->order ? -1 : a->order > b->order;
}

static int by_order(const void *pa, const void *pb)
{
    const named *a = pa, *b = pb;
    return a->order < b->order ? -1 : a->order > b->order;
}

/* the zip entry's bytes, which must be stored (torch.save never compresses) */
static int read_entry(zip_t *z, zip_int64_t idx, const char *path, const char *name, size_t max,
                      unsigned char **out, size_t *len, maec_error *err)
{
    zip_stat_t st;
    zip_stat_init(&st);
    if (zip_stat_index(z, (zip_uint64_t)idx, 0, &st) || !(st.valid & ZIP_STAT_SIZE) ||
        !(st.valid & ZIP_STAT_COMP_METHOD))
        return maec_fail(err, MAEC_EFORMAT, "%s: cannot read the zip entry %s", path, name);
    if (st.comp_method != ZIP_CM_STORE)
        return maec_fail(err, MAEC_EFORMAT, "%s: zip entry %s is compressed (torch.save stores them as they are)",
                         path, name);
    if (st.size > max)
        return maec_fail(err, MAEC_EFORMAT, "%s: zip entry %s is larger than the file", path, name);
    unsigned char *b = malloc(st.size ? (size_t)st.size : 1);
    if (!b) return maec_fail(err, MAEC_ENOMEM, "out of memory reading %s", path);
    zip_file_t *zf = zip_fopen_index(z, (zip_uint64_t)idx, 0);
    zip_int64_t got = zf ? zip_fread(zf, b, st.size) : -1;
    unsigned char more;
    /* libzip checks the entry's CRC-32 when a read reaches its end */
    if (got == (zip_int64_t)st.size && zip_fread(zf, &more, 1) != 0) got = -1;
    const char *why = zf ? zip_file_strerror(zf) : zip_strerror(z);
    if (got != (zip_int64_t)st.size) {
        int rc = maec_fail(err, MAEC_EFORMAT, "%s: zip entry %s: %s", path, name,
                           got < 0 ? why : "shorter than its size");
        if (zf) zip_fclose(zf);
        free(b);
        return rc;
    }
    zip_fclose(zf);
    *out = b;
    *len = (size_t)st.size;
    return 0;
}

/* copy a strided tensor of esize-byte elements contiguous into dst */
static void gather(unsigned char *dst, const unsigned char *src, const pv *t, int esize)
{
    int nd = t->ndim;
    int64_t idx[ST_MAX_DIMS] = {0};
    size_t count = 1;
    for (int d = 0; d < nd; d++) count *= (size_t)t->shape[d];
    for (size_t k = 0; k < count; k++) {
        size_t off = 0;
        for (int d = 0; d < nd; d++) off += (size_t)(idx[d] * t->stride[d]);
        memcpy(dst + k * (size_t)esize, src + off * (size_t)esize, (size_t)esize);
        for (int d = nd - 1; d >= 0; d--) {
            if (++idx[d] < t->shape[d]) break;
            idx[d] = 0;
        }
    }
}

/* row-major strides, so the elements lie in one run */
static int contiguous(const pv *t)
{
    int64_t want = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->shape[d] != 1 && t->stride[d] != want) return 0;
        want *= t->shape[d];
    }
    return 1;
}

int pth_is_legacy(const char *buf, size_t len)
{
    /* pickle protocol 2, then LONG1 of torch's magic number 0x1950a86a20f9469cfc6c */
    return len >= 5 && !memcmp(buf, "\x80\x02\x8a\x0a\x6c", 5);
}

typedef struct {
    unsigned char *buf;
    size_t len;
    st_entry *e;
    int n;
} built;

static int build(const st_file *f, zip_t *z, const char *prefix, const pv *root, built *b, maec_error *err);

int pth_read(st_file *f, maec_error *err)
{
    const char *path = f->path;
    zip_error_t ze;
    zip_error_init(&ze);
    zip_source_t *src = zip_source_buffer_create(f->buf, f->len, 0, &ze);
    zip_t *z = src ? zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &ze) : NULL;
    if (!z) {
        int rc = maec_fail(err, MAEC_EFORMAT, "%s: not a readable zip archive: %s", path, zip_error_strerror(&ze));
        if (src) zip_source_free(src);
        zip_error_fini(&ze);
        return rc;
    }
    zip_error_fini(&ze);
    /* <name>/data.pkl, <name> without a slash */
    zip_int64_t nent = zip_get_num_entries(z, 0), pkl = -1;
    const char *pname = NULL;
    for (zip_int64_t k = 0; k < nent && pkl < 0; k++) {
        const char *nm = zip_get_name(z, (zip_uint64_t)k, 0);
        if (!nm) continue;
        const char *slash = strchr(nm, '/');
        if (slash && slash > nm && !strcmp(slash + 1, "data.pkl")) {
            pkl = k;
            pname = nm;
        }
    }
    if (pkl < 0) {
        zip_discard(z);
        return maec_fail(err, MAEC_EFORMAT, "%s: a zip archive without <name>/data.pkl: not a PyTorch checkpoint", path);
    }
    size_t plen = (size_t)(strchr(pname, '/') - pname) + 1;
    char *prefix = malloc(plen + 1);
    if (!prefix) {
        zip_discard(z);
        return maec_fail(err, MAEC_ENOMEM, "out of memory reading %s", path);
    }
    memcpy(prefix, pname, plen);
    prefix[plen] = 0;
    /* a big-endian file would need its bytes swapped */
    char bo[64];
    snprintf(bo, sizeof bo, "%.40sbyteorder", prefix);
    zip_int64_t boi = zip_name_locate(z, bo, 0);
    if (boi >= 0) {
        unsigned char *b = NULL;
        size_t bl = 0;
        int rc = read_entry(z, boi, path, bo, 16, &b, &bl, err);
        int little = !rc && bl == 6 && !memcmp(b, "little", 6);
        free(b);
        if (!little) {
            free(prefix);
            zip_discard(z);
            return rc ? rc : maec_fail(err, MAEC_EFORMAT, "%s: not a little-endian PyTorch file", path);
        }
    }
    unsigned char *pk = NULL;
    size_t pklen = 0;
    int rc = read_entry(z, pkl, path, pname, f->len, &pk, &pklen, err);
    vm m = {0};
    m.p = pk;
    m.len = pklen;
    m.path = path;
    m.err = err;
    m.mark.kind = PV_MARK;
    pv *root = NULL;
    built b = {0};
    if (!rc && run(&m, &root)) rc = err->code ? err->code : MAEC_EFORMAT; /* its failures return -1 */
    if (!rc) rc = build(f, z, prefix, root, &b, err);
    for (size_t k = 0; k < m.nall; k++) {
        free(m.all[k]->items);
        free(m.all[k]);
    }
    free(m.all);
    free(m.stack);
    free(m.memo);
    free(pk);
    free(prefix);
    zip_discard(z); /* before the file's bytes go: libzip read from them */
    if (!rc) {
        free(f->buf);
        f->buf = (char *)b.buf;
        f->len = b.len;
        f->data_start = 0;
        f->e = b.e;
        f->n = b.n;
    }
    return rc;
}

/* The float tensors of the state dict, each contiguous in its own byte range
 * of a new buffer. */
static int build(const st_file *f, zip_t *z, const char *prefix, const pv *root, built *b, maec_error *err)
{
    const char *path = f->path;
    const pv *sd = root;
    if (root->kind == PV_DICT) {
        const pv *inner = dict_get(root, "model");
        if (!inner || inner->kind != PV_DICT) inner = dict_get(root, "state_dict");
        if (inner && inner->kind == PV_DICT) sd = inner;
    }
    if (sd->kind != PV_DICT)
        return maec_fail(err, MAEC_EFORMAT, "%s: the checkpoint is not a dict of tensors", path);
    size_t n = 0;
    named *list = malloc((sd->n / 2 + 1) * sizeof *list);
    if (!list) return maec_fail(err, MAEC_ENOMEM, "out of memory reading %s", path);
    for (size_t k = 0; k + 1 < sd->n; k += 2) {
        const pv *key = sd->items[k], *t = sd->items[k + 1];
        if (key->kind != PV_STR || t->kind != PV_TENSOR || !t->storage->dtype[0]) continue;
        if (key->slen == 0 || memchr(key->s, 0, key->slen)) continue;
        list[n].key = key;
        list[n].t = t;
        list[n].order = k;
        n++;
    }
    /* one tensor per name, the last set (as Python's dict keeps), in file order */
    qsort(list, n, sizeof *list, by_name);
    size_t u = 0;
    for (size_t k = 0; k < n; k++) {
        if (k + 1 < n && list[k + 1].key->slen == list[k].key->slen &&
            !memcmp(list[k + 1].key->s, list[k].key->s, list[k].key->slen))
            continue;
        list[u++] = list[k];
    }
    n = u;
    qsort(list, n, sizeof *list, by_order);
    if (n == 0) {
        free(list);
        return maec_fail(err, MAEC_EFORMAT,
                         "%s: no floating-point tensors in the checkpoint (looked in 'model', 'state_dict' and the top level)",
                         path);
    }
    if (n > (size_t)INT32_MAX / 2) {
        free(list);
        return maec_fail(err, MAEC_EFORMAT, "%s: too many tensors", path);
    }
    static const char mod[] = "module.";
    int strip = 1;
    for (size_t k = 0; k < n && strip; k++)
        strip = list[k].key->slen > strlen(mod) && !memcmp(list[k].key->s, mod, strlen(mod));
    /* check every tensor against its storage's element count; lay out the output */
    size_t total = 0;
    int rc = 0;
    for (size_t k = 0; k < n && !rc; k++) {
        const pv *t = list[k].t;
        int es = t->storage->esize;
        /* a storage is no larger than the file, the offset inside it: this
         * bounds every sum below */
        if ((uint64_t)t->storage->i > f->len / (size_t)es || t->offset > t->storage->i) {
            rc = maec_fail(err, MAEC_EFORMAT, "%s: tensor '%.*s' does not fit its storage", path,
                           (int)list[k].key->slen, list[k].key->s);
            break;
        }
        size_t count = 1, maxidx = (size_t)t->offset;
        for (int d = 0; d < t->ndim; d++) {
            uint64_t s = (uint64_t)t->shape[d];
            if (s && count > SIZE_MAX / 16 / s) {
                rc = maec_fail(err, MAEC_EFORMAT, "%s: tensor '%.*s' is too large", path, (int)list[k].key->slen,
                               list[k].key->s);
                break;
            }
            count *= (size_t)s;
        }
        if (rc) break;
        int fits = 1;
        if (count) {
            for (int d = 0; d < t->ndim && fits; d++) {
                uint64_t step = (uint64_t)(t->shape[d] - 1);
                if (t->stride[d] && step > (SIZE_MAX / 16 - maxidx) / (uint64_t)t->stride[d]) fits = 0;
                else maxidx += (size_t)(step * (uint64_t)t->stride[d]);
            }
            fits = fits && (uint64_t)maxidx < (uint64_t)t->storage->i;
        }
        if (!fits || count > f->len / (size_t)es + 1) {
            rc = maec_fail(err, MAEC_EFORMAT, "%s: tensor '%.*s' does not fit its storage", path,
                           (int)list[k].key->slen, list[k].key->s);
            break;
        }
        total += count * (size_t)es;
        /* views share their storage's bytes, each copied: allow some of that,
         * not a small file that asks for terabytes */
        if (total > 2 * f->len + ((size_t)1 << 20)) {
            rc = maec_fail(err, MAEC_EFORMAT, "%s: the tensors hold more than twice the file's bytes", path);
            break;
        }
    }
    st_entry *e = rc ? NULL : calloc(n, sizeof *e);
    unsigned char *out = rc ? NULL : malloc(total ? total : 1);
    if (!rc && (!e || !out)) rc = maec_fail(err, MAEC_ENOMEM, "out of memory reading %s", path);
    unsigned char *sbuf = NULL;
    size_t slen = 0;
    const pv *cached = NULL;
    size_t pos = 0, made = 0;
    for (size_t k = 0; k < n && !rc; k++) {
        const pv *t = list[k].t, *st = t->storage;
        int es = st->esize;
        const pv *key = list[k].key;
        size_t skip = strip ? strlen(mod) : 0;
        if (!(e[k].name = malloc(key->slen - skip + 1))) {
            rc = maec_fail(err, MAEC_ENOMEM, "out of memory reading %s", path);
            break;
        }
        made = k + 1;
        memcpy(e[k].name, key->s + skip, key->slen - skip);
        e[k].name[key->slen - skip] = 0;
        strcpy(e[k].dtype, st->dtype);
        e[k].ndim = t->ndim;
        e[k].count = 1;
        for (int d = 0; d < t->ndim; d++) {
            e[k].shape[d] = t->shape[d];
            e[k].count *= (size_t)t->shape[d];
        }
        e[k].begin = pos;
        e[k].end = pos + e[k].count * (size_t)es;
        pos = e[k].end;
        if (!e[k].count) continue;
        if (!(cached && cached->slen == st->slen && !memcmp(cached->s, st->s, st->slen))) {
            char name[160];
            snprintf(name, sizeof name, "%sdata/%.*s", prefix, st->slen > 100 ? 100 : (int)st->slen, st->s);
            zip_int64_t idx = st->slen > 100 ? -1 : zip_name_locate(z, name, 0);
            if (idx < 0) {
                rc = maec_fail(err, MAEC_EFORMAT, "%s: storage %.*s of tensor '%s' is missing", path,
                               st->slen > 100 ? 100 : (int)st->slen, st->s, e[k].name);
                break;
            }
            free(sbuf);
            sbuf = NULL;
            cached = NULL;
            if ((rc = read_entry(z, idx, path, name, f->len, &sbuf, &slen, err))) break;
            cached = st;
        }
        if ((uint64_t)slen < (uint64_t)st->i * (uint64_t)es) {
            rc = maec_fail(err, MAEC_EFORMAT, "%s: storage of tensor '%s' is shorter than its %lld elements", path,
                           e[k].name, (long long)st->i);
            break;
        }
        const unsigned char *from = sbuf + (size_t)t->offset * (size_t)es;
        if (contiguous(t)) memcpy(out + e[k].begin, from, e[k].count * (size_t)es);
        else gather(out + e[k].begin, from, t, es);
    }
    free(sbuf);
    if (rc) {
        for (size_t k = 0; k < made; k++) free(e[k].name);
        free(e);
        free(out);
        free(list);
        return rc;
    }
    free(list);
    b->buf = out;
    b->len = total;
    b->e = e;
    b->n = (int)n;
    return 0;
}
