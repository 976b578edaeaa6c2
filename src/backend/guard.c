/* The guard backend: ref's ops on memory the host cannot touch. Every
 * allocation is its own mapping, kept PROT_NONE except while an op (or
 * upload, download, copy, zero) runs, and every pointer an op is given must
 * lie in one: model code that reads or writes backend memory itself dies
 * with SIGSEGV at that access, and an op handed host memory stops with a
 * message naming the op and the argument. It stands in for a device whose
 * memory the host cannot see (host_shared = 0), so that CPU-only tests hold
 * the model to the rule of backend.h that the CUDA backend needs. Slow (two
 * mprotect calls per mapping per op): for tests.
 *   MAEC_BACKEND=guard build/tests/test_core */
#define _DEFAULT_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backend/backend.h"

typedef struct {
    char *base;
    size_t len;
} region;

static region *regions;
static int nregions, capregions;

static const maec_backend *ref(void) { return maec_backend_ref(); }

static void protect_all(int prot)
{
    for (int i = 0; i < nregions; i++)
        if (mprotect(regions[i].base, regions[i].len, prot)) {
            perror("guard backend: mprotect");
            abort();
        }
}

static void guard_open(void) { protect_all(PROT_READ | PROT_WRITE); }
static void guard_close(void) { protect_all(PROT_NONE); }

static int in_region(const void *p)
{
    for (int i = 0; i < nregions; i++)
        if ((const char *)p >= regions[i].base && (const char *)p < regions[i].base + regions[i].len) return 1;
    return 0;
}

/* a pointer an op is given: NULL, or the backend's memory */
static void guard_arg(const char *op, const char *arg, const void *p)
{
    if (p && !in_region(p)) {
        fprintf(stderr, "guard backend: %s: argument %s (%p) is not backend memory\n", op, arg, p);
        abort();
    }
}

/* a mapping of whole pages for bytes (zeroed), with protection prot,
 * recorded in *list; NULL when out of memory */
static void *map_region(region **list, int *n, int *cap, size_t bytes, int prot)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE), len = (bytes + page - 1) / page * page;
    if (!len) len = page;
    if (*n == *cap) {
        int c = *cap ? 2 * *cap : 16;
        region *r = realloc(*list, (size_t)c * sizeof *r);
        if (!r) return NULL;
        *list = r, *cap = c;
    }
    void *p = mmap(NULL, len, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    (*list)[(*n)++] = (region){p, len};
    return p;
}

static void *g_alloc(size_t bytes) { return map_region(&regions, &nregions, &capregions, bytes, PROT_NONE); }

static void g_free(void *p)
{
    for (int i = 0; i < nregions; i++)
        if (regions[i].base == p) {
            munmap(regions[i].base, regions[i].len);
            regions[i] = regions[--nregions];
            return;
        }
    if (p) {
        fprintf(stderr, "guard backend: free of %p, not backend memory\n", p);
        abort();
    }
}

/* Pinned host memory, as a GPU's (host_alloc): an upload from it may be
 * still under way after upload returns, so the host must leave the source
 * alone until the next download or op that returns a value (backend.h).
 * Here the source's pages turn read-only at the upload and writable again
 * at that point: a write in between stops the program. */
static region *pinned;
static int npinned, cappinned;
static int pinned_locked;

static void pinned_protect(int prot)
{
    for (int i = 0; i < npinned; i++)
        if (mprotect(pinned[i].base, pinned[i].len, prot)) {
            perror("guard backend: mprotect");
            abort();
        }
}

/* the next download or value: every upload from pinned memory is done */
static void pinned_release(void)
{
    if (pinned_locked) pinned_protect(PROT_READ | PROT_WRITE);
    pinned_locked = 0;
}

static void *g_host_alloc(size_t bytes)
{
    return map_region(&pinned, &npinned, &cappinned, bytes, PROT_READ | PROT_WRITE);
}

static void g_host_free(void *p)
{
    pinned_release();
    for (int i = 0; i < npinned; i++)
        if (pinned[i].base == p) {
            munmap(pinned[i].base, pinned[i].len);
            pinned[i] = pinned[--npinned];
            return;
        }
}

static int in_pinned(const void *p)
{
    for (int i = 0; i < npinned; i++)
        if ((const char *)p >= pinned[i].base && (const char *)p < pinned[i].base + pinned[i].len) return 1;
    return 0;
}

static void g_upload(void *dst, const void *host_src, size_t bytes)
{
    guard_arg("upload", "dst", dst);
    if (bytes && in_region(host_src)) {
        fprintf(stderr, "guard backend: upload from backend memory\n");
        abort();
    }
    guard_open();
    if (bytes) memcpy(dst, host_src, bytes);
    guard_close();
    if (bytes && in_pinned(host_src)) { /* "still copying": read-only until the next value */
        pinned_protect(PROT_READ);
        pinned_locked = 1;
    }
}

static void g_download(void *host_dst, const void *src, size_t bytes)
{
    pinned_release();
    guard_arg("download", "src", src);
    if (bytes && in_region(host_dst)) {
        fprintf(stderr, "guard backend: download into backend memory\n");
        abort();
    }
    guard_open();
    if (bytes) memcpy(host_dst, src, bytes);
    guard_close();
}

static void g_copy(void *dst, const void *src, size_t bytes)
{
    guard_arg("copy", "dst", dst);
    guard_arg("copy", "src", src);
    guard_open();
    if (bytes) memmove(dst, src, bytes);
    guard_close();
}

static void g_zero(void *p, size_t bytes)
{
    guard_arg("zero", "p", p);
    guard_open();
    if (bytes) memset(p, 0, bytes);
    guard_close();
}

static void g_linear_forward(float *out, const float *inp, const float *w, const float *b, const float *res, int M,
                             int K, int N)
{
    guard_arg("linear_forward", "out", out);
    guard_arg("linear_forward", "inp", inp);
    guard_arg("linear_forward", "w", w);
    guard_arg("linear_forward", "b", b);
    guard_arg("linear_forward", "res", res);
    guard_open();
    ref()->linear_forward(out, inp, w, b, res, M, K, N);
    guard_close();
}

static void g_linear_gelu_forward(float *out, float *deriv, const float *inp, const float *w, const float *b, int M,
                                  int K, int N)
{
    guard_arg("linear_gelu_forward", "out", out);
    guard_arg("linear_gelu_forward", "deriv", deriv);
    guard_arg("linear_gelu_forward", "inp", inp);
    guard_arg("linear_gelu_forward", "w", w);
    guard_arg("linear_gelu_forward", "b", b);
    guard_open();
    ref()->linear_gelu_forward(out, deriv, inp, w, b, M, K, N);
    guard_close();
}

static void g_linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                              int M, int K, int N)
{
    guard_arg("linear_backward", "dinp", dinp);
    guard_arg("linear_backward", "dw", dw);
    guard_arg("linear_backward", "db", db);
    guard_arg("linear_backward", "dout", dout);
    guard_arg("linear_backward", "inp", inp);
    guard_arg("linear_backward", "w", w);
    guard_open();
    ref()->linear_backward(dinp, dw, db, dout, inp, w, M, K, N);
    guard_close();
}

static void g_gelu_backward(float *dinp, const float *deriv, const float *dout, size_t n)
{
    guard_arg("gelu_backward", "dinp", dinp);
    guard_arg("gelu_backward", "deriv", deriv);
    guard_arg("gelu_backward", "dout", dout);
    guard_open();
    ref()->gelu_backward(dinp, deriv, dout, n);
    guard_close();
}

static void g_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                                const float *b, int M, int D)
{
    guard_arg("layernorm_forward", "out", out);
    guard_arg("layernorm_forward", "mean", mean);
    guard_arg("layernorm_forward", "rstd", rstd);
    guard_arg("layernorm_forward", "inp", inp);
    guard_arg("layernorm_forward", "w", w);
    guard_arg("layernorm_forward", "b", b);
    guard_open();
    ref()->layernorm_forward(out, mean, rstd, inp, w, b, M, D);
    guard_close();
}

static void g_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                 const float *w, const float *mean, const float *rstd, int M, int D)
{
    guard_arg("layernorm_backward", "dinp", dinp);
    guard_arg("layernorm_backward", "dw", dw);
    guard_arg("layernorm_backward", "db", db);
    guard_arg("layernorm_backward", "dout", dout);
    guard_arg("layernorm_backward", "inp", inp);
    guard_arg("layernorm_backward", "w", w);
    guard_arg("layernorm_backward", "mean", mean);
    guard_arg("layernorm_backward", "rstd", rstd);
    guard_open();
    ref()->layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, M, D);
    guard_close();
}

static void g_attention_forward(float *out, float *att, float *qkv, const float *inp, const float *w, const float *b,
                                int B, int T, int D, int H)
{
    guard_arg("attention_forward", "out", out);
    guard_arg("attention_forward", "att", att);
    guard_arg("attention_forward", "qkv", qkv);
    guard_arg("attention_forward", "inp", inp);
    guard_arg("attention_forward", "w", w);
    guard_arg("attention_forward", "b", b);
    guard_open();
    ref()->attention_forward(out, att, qkv, inp, w, b, B, T, D, H);
    guard_close();
}

static size_t g_attention_scratch(int B, int T)
{
    guard_open();
    size_t v = ref()->attention_scratch(B, T);
    guard_close();
    return v;
}

static void g_attention_backward(float *dx, float *dw, float *db, float *dqkv, float *scratch, size_t nscratch,
                                 const float *qkv, const float *att, const float *inp, const float *w, int B, int T,
                                 int D, int H)
{
    guard_arg("attention_backward", "dx", dx);
    guard_arg("attention_backward", "dw", dw);
    guard_arg("attention_backward", "db", db);
    guard_arg("attention_backward", "dqkv", dqkv);
    guard_arg("attention_backward", "scratch", scratch);
    guard_arg("attention_backward", "qkv", qkv);
    guard_arg("attention_backward", "att", att);
    guard_arg("attention_backward", "inp", inp);
    guard_arg("attention_backward", "w", w);
    guard_open();
    ref()->attention_backward(dx, dw, db, dqkv, scratch, nscratch, qkv, att, inp, w, B, T, D, H);
    guard_close();
}

static void g_add(float *y, const float *x, size_t n)
{
    guard_arg("add", "y", y);
    guard_arg("add", "x", x);
    guard_open();
    ref()->add(y, x, n);
    guard_close();
}

static void g_scale_rows(float *x, const float *scale, int B, int T, int D)
{
    guard_arg("scale_rows", "x", x);
    guard_arg("scale_rows", "scale", scale);
    guard_open();
    ref()->scale_rows(x, scale, B, T, D);
    guard_close();
}

static void g_patchify(float *patches, const float *imgs, int B, int C, int H, int W, int p)
{
    guard_arg("patchify", "patches", patches);
    guard_arg("patchify", "imgs", imgs);
    guard_open();
    ref()->patchify(patches, imgs, B, C, H, W, p);
    guard_close();
}

static void g_patch_gather(float *out, const float *imgs, const int *ids, int B, int K, int C, int H, int W, int p)
{
    guard_arg("patch_gather", "out", out);
    guard_arg("patch_gather", "imgs", imgs);
    guard_arg("patch_gather", "ids", ids);
    guard_open();
    ref()->patch_gather(out, imgs, ids, B, K, C, H, W, p);
    guard_close();
}

static void g_norm_pix(float *t, size_t n, int P)
{
    guard_arg("norm_pix", "t", t);
    guard_open();
    ref()->norm_pix(t, n, P);
    guard_close();
}

static void g_embed_forward(float *x, const float *tokens, const float *cls, const float *pos, const int *ids,
                            const float *swap, const float *swap_tok, int B, int K, int D)
{
    guard_arg("embed_forward", "x", x);
    guard_arg("embed_forward", "tokens", tokens);
    guard_arg("embed_forward", "cls", cls);
    guard_arg("embed_forward", "pos", pos);
    guard_arg("embed_forward", "ids", ids);
    guard_arg("embed_forward", "swap", swap);
    guard_arg("embed_forward", "swap_tok", swap_tok);
    guard_open();
    ref()->embed_forward(x, tokens, cls, pos, ids, swap, swap_tok, B, K, D);
    guard_close();
}

static void g_embed_backward(float *dtokens, float *dcls, float *dpos, float *dswap_tok, const float *dx,
                             const float *swap, int B, int K, int D)
{
    guard_arg("embed_backward", "dtokens", dtokens);
    guard_arg("embed_backward", "dcls", dcls);
    guard_arg("embed_backward", "dpos", dpos);
    guard_arg("embed_backward", "dswap_tok", dswap_tok);
    guard_arg("embed_backward", "dx", dx);
    guard_arg("embed_backward", "swap", swap);
    guard_open();
    ref()->embed_backward(dtokens, dcls, dpos, dswap_tok, dx, swap, B, K, D);
    guard_close();
}

static void g_unshuffle_forward(float *x, const float *y, const float *pos, const int *restore, const float *tok,
                                int B, int L, int K, int E)
{
    guard_arg("unshuffle_forward", "x", x);
    guard_arg("unshuffle_forward", "y", y);
    guard_arg("unshuffle_forward", "pos", pos);
    guard_arg("unshuffle_forward", "restore", restore);
    guard_arg("unshuffle_forward", "tok", tok);
    guard_open();
    ref()->unshuffle_forward(x, y, pos, restore, tok, B, L, K, E);
    guard_close();
}

static void g_unshuffle_backward(float *dy, float *dtok, const float *dx, int B, int L, int K, int E)
{
    guard_arg("unshuffle_backward", "dy", dy);
    guard_arg("unshuffle_backward", "dtok", dtok);
    guard_arg("unshuffle_backward", "dx", dx);
    guard_open();
    ref()->unshuffle_backward(dy, dtok, dx, B, L, K, E);
    guard_close();
}

static void g_rows_gather(float *dst, const float *src, int B, int T, int off, int G, int D)
{
    guard_arg("rows_gather", "dst", dst);
    guard_arg("rows_gather", "src", src);
    guard_open();
    ref()->rows_gather(dst, src, B, T, off, G, D);
    guard_close();
}

static void g_rows_expand(float *dst, const float *src, int B, int T, int off, int G, int D)
{
    guard_arg("rows_expand", "dst", dst);
    guard_arg("rows_expand", "src", src);
    guard_open();
    ref()->rows_expand(dst, src, B, T, off, G, D);
    guard_close();
}

static void g_mean_pool_forward(float *out, const float *x, int B, int T, int D)
{
    guard_arg("mean_pool_forward", "out", out);
    guard_arg("mean_pool_forward", "x", x);
    guard_open();
    ref()->mean_pool_forward(out, x, B, T, D);
    guard_close();
}

static void g_mean_pool_backward(float *dx, const float *dout, int B, int T, int D)
{
    guard_arg("mean_pool_backward", "dx", dx);
    guard_arg("mean_pool_backward", "dout", dout);
    guard_open();
    ref()->mean_pool_backward(dx, dout, B, T, D);
    guard_close();
}

static void g_mae_pred_gather(float *pred, const float *pred_rows, const int *restore, int compact, int B, int L,
                              int K, int P)
{
    guard_arg("mae_pred_gather", "pred", pred);
    guard_arg("mae_pred_gather", "pred_rows", pred_rows);
    guard_arg("mae_pred_gather", "restore", restore);
    guard_open();
    ref()->mae_pred_gather(pred, pred_rows, restore, compact, B, L, K, P);
    guard_close();
}

static double g_mae_loss(const float *pred, const float *target, const float *mask, int B, int L, int P)
{
    pinned_release();
    guard_arg("mae_loss", "pred", pred);
    guard_arg("mae_loss", "target", target);
    guard_arg("mae_loss", "mask", mask);
    guard_open();
    double v = ref()->mae_loss(pred, target, mask, B, L, P);
    guard_close();
    return v;
}

static void g_mae_loss_backward(float *dpred_rows, const float *pred, const float *target, const float *mask,
                                const int *restore, int compact, float scale, int B, int L, int K, int P)
{
    guard_arg("mae_loss_backward", "dpred_rows", dpred_rows);
    guard_arg("mae_loss_backward", "pred", pred);
    guard_arg("mae_loss_backward", "target", target);
    guard_arg("mae_loss_backward", "mask", mask);
    guard_arg("mae_loss_backward", "restore", restore);
    guard_open();
    ref()->mae_loss_backward(dpred_rows, pred, target, mask, restore, compact, scale, B, L, K, P);
    guard_close();
}

static double g_xent_forward(float *probs, const float *logits, const float *targets, int B, int K)
{
    pinned_release();
    guard_arg("xent_forward", "probs", probs);
    guard_arg("xent_forward", "logits", logits);
    guard_arg("xent_forward", "targets", targets);
    guard_open();
    double v = ref()->xent_forward(probs, logits, targets, B, K);
    guard_close();
    return v;
}

static void g_xent_backward(float *dlogits, const float *probs, const float *targets, int B, int K, float scale)
{
    guard_arg("xent_backward", "dlogits", dlogits);
    guard_arg("xent_backward", "probs", probs);
    guard_arg("xent_backward", "targets", targets);
    guard_open();
    ref()->xent_backward(dlogits, probs, targets, B, K, scale);
    guard_close();
}

static void g_adamw(float *p, float *g, float *m, float *v, size_t n, float lr, float beta1, float beta2, float eps,
                    float weight_decay, long step)
{
    guard_arg("adamw", "p", p);
    guard_arg("adamw", "g", g);
    guard_arg("adamw", "m", m);
    guard_arg("adamw", "v", v);
    guard_open();
    ref()->adamw(p, g, m, v, n, lr, beta1, beta2, eps, weight_decay, step);
    guard_close();
}

static double g_sumsq(const float *x, size_t n)
{
    pinned_release();
    guard_arg("sumsq", "x", x);
    guard_open();
    double v = ref()->sumsq(x, n);
    guard_close();
    return v;
}

static void g_scale(float *x, size_t n, float s)
{
    guard_arg("scale", "x", x);
    guard_open();
    ref()->scale(x, n, s);
    guard_close();
}

static const maec_backend guard_backend = {
    .name = "guard",
    .host_shared = 0,
    .alloc = g_alloc,
    .free = g_free,
    .upload = g_upload,
    .download = g_download,
    .copy = g_copy,
    .zero = g_zero,
    .host_alloc = g_host_alloc,
    .host_free = g_host_free,
    .linear_forward = g_linear_forward,
    .linear_gelu_forward = g_linear_gelu_forward,
    .linear_backward = g_linear_backward,
    .gelu_backward = g_gelu_backward,
    .layernorm_forward = g_layernorm_forward,
    .layernorm_backward = g_layernorm_backward,
    .attention_forward = g_attention_forward,
    .attention_scratch = g_attention_scratch,
    .attention_backward = g_attention_backward,
    .add = g_add,
    .scale_rows = g_scale_rows,
    .patchify = g_patchify,
    .patch_gather = g_patch_gather,
    .norm_pix = g_norm_pix,
    .embed_forward = g_embed_forward,
    .embed_backward = g_embed_backward,
    .unshuffle_forward = g_unshuffle_forward,
    .unshuffle_backward = g_unshuffle_backward,
    .rows_gather = g_rows_gather,
    .rows_expand = g_rows_expand,
    .mean_pool_forward = g_mean_pool_forward,
    .mean_pool_backward = g_mean_pool_backward,
    .mae_pred_gather = g_mae_pred_gather,
    .mae_loss = g_mae_loss,
    .mae_loss_backward = g_mae_loss_backward,
    .xent_forward = g_xent_forward,
    .xent_backward = g_xent_backward,
    .adamw = g_adamw,
    .sumsq = g_sumsq,
    .scale = g_scale,
};

const maec_backend *maec_backend_guard(void) { return &guard_backend; }
