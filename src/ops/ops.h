/* The CPU ops: each a forward/backward pair with shapes in the comments.
 * Parameter gradients accumulate (+=) so that micro-batches add up;
 * activation gradients are written (=), except layernorm_backward, which adds
 * into dinp because in a ViT every layer norm reads the residual stream, whose
 * gradient is a sum anyway (this saves a pass and a buffer). */
#ifndef MAEC_OPS_H
#define MAEC_OPS_H
#include <stddef.h>

/* out[M,N] = inp[M,K] @ w[N,K]^T + b[N] (b may be NULL) */
void linear_forward(float *out, const float *inp, const float *w, const float *b, int M, int K,
                    int N);
/* out = inp @ w^T + b + res, res [M,N] (b may be NULL; out must not alias res):
 * the residual connection added in the same pass */
void linear_forward_residual(float *out, const float *inp, const float *w, const float *b, const float *res,
                             int M, int K, int N);
/* Items of rows (the images of a batch) handed on as soon as their rows
 * are done: fn(ctx, i0, i1) works on items [i0, i1), single-threaded, in
 * the thread that made them (inside a parallel region). */
typedef void (*linear_items_fn)(void *ctx, int i0, int i1);
/* linear_forward on items * per rows, then after(ctx, ...) for every item
 * once, each while its rows are in that thread's cache where the product
 * runs on libxsmm's tiles (the qkv product and attention, vit.c) */
void linear_forward_items(float *out, const float *inp, const float *w, const float *b, int items, int per,
                          int K, int N, linear_items_fn after, void *ctx);
/* how many threads split a linear layer's products by hand (1: OpenBLAS
 * threads them itself), for M rows of K inputs and N outputs */
int linear_split_threads(int M, int K, int N);
/* dinp[M,K] = dout @ w (if dinp); dw[N,K] += dout^T @ inp; db[N] += colsum(dout) (if db) */
void linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                     const float *w, int M, int K, int N);
/* linear_backward on items * per rows whose dout is made by before(ctx,
 * ...), called by each thread for its items just ahead of the chunk of rows
 * that first reads them (attention's backward and the qkv product's) */
void linear_backward_items(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                           int items, int per, int K, int N, linear_items_fn before, void *ctx);
/* whether linear layers of these shapes run on libxsmm's tiles */
int linear_tiled(int M, int K, int N);
/* libxsmm's tiles on (1) or off (0) for every shape, from here on (not
 * thread-safe: between steps); the default is on where the CPU has AVX-512.
 * Returns the setting it replaced. */
int linear_set_tiled(int on);

/* out[M,D] = (inp - mean) * rstd * w + b, eps 1e-6; mean, rstd [M] saved */
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                       const float *b, int M, int D);
/* dinp[M,D] += ..., dw[D] += ..., db[D] += ... */
void layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, const float *mean, const float *rstd, int M, int D);

/* out[n] = x * Phi(x), the exact (erf) GELU (out may alias inp), and
 * deriv[n] = GELU'(x) = Phi(x) + x phi(x) for the backward pass; gelu_scalar
 * for one value */
float gelu_scalar(float x);
void gelu_forward(float *out, float *deriv, const float *inp, size_t n);
/* the same, single-threaded (inside a parallel region) */
void gelu_forward_rows(float *out, float *deriv, const float *inp, size_t n);
/* dinp[n] = dout * deriv, deriv saved by the forward pass (dinp may alias dout) */
void gelu_backward(float *dinp, const float *deriv, const float *dout, size_t n);

/* Multi-head self-attention core (no projections).
 * qkv [B,T,3D] laid out per token as (3, H, hd); out [B,T,D] as (H, hd);
 * att [B,H,T,T] keeps the softmax probabilities for the backward pass. */
void attention_forward(float *out, float *att, const float *qkv, int B, int T, int D, int H);
/* dqkv [B,T,3D] written; scratch holds nscratch blocks of attention_scratch_floats(T)
 * floats, one per thread (at most nscratch threads run) */
void attention_backward(float *dqkv, const float *dout, const float *qkv, const float *att,
                        float *scratch, int nscratch, int B, int T, int D, int H);
size_t attention_scratch_floats(int T);
/* the same for images [b0, b1) only, single-threaded (inside a parallel
 * region); scratch: attention_scratch_floats(T) floats of this thread's */
void attention_forward_images(float *out, float *att, const float *qkv, int b0, int b1, int T, int D, int H);
void attention_backward_images(float *dqkv, const float *dout, const float *qkv, const float *att,
                               float *scratch, int b0, int b1, int T, int D, int H);

/* y[n] += x[n] */
void add_inplace(float *y, const float *x, size_t n);

/* AdamW on n values, as torch.optim.AdamW (step counted from 1), leaving g
 * zero: the pass that reads each gradient for the last time clears it, so
 * that the next step's zeroing has nothing to do (one pass over the
 * gradients fewer; measured in docs/notes/perf-2026-11-27-to-12-03.md). */
/* torch.nn.utils.clip_grad_norm_(max_norm): the global 2-norm of count
 * gradients g[t] [n[t]]; where max_norm > 0 and the norm exceeds it, every
 * gradient is scaled by max_norm / (norm + 1e-6). Returns the norm. */
double clip_grad_norm(float *const *g, const size_t *n, int count, float max_norm);
void adamw_update(float *p, float *g, float *m, float *v, size_t n, float lr, float beta1,
                  float beta2, float eps, float weight_decay, long step);
#endif
