/* The backend table: every operation the model performs on activations,
 * parameters and gradients, as a table of function pointers, so that one
 * model definition (src/model/) runs on any backend.
 *
 *   ref   plain C loops, no BLAS, no intrinsics, no threads: the
 *         specification of each op and the oracle of tests/test_backend_ops
 *   cpu   the fast kernels of src/ops (OpenBLAS/libxsmm, AVX, OpenMP)
 *   guard ref's ops on memory the host cannot touch: a stand-in for a
 *         device, so that CPU-only tests hold the model to the rules below
 *   cuda  cuBLAS products and CUDA kernels on one GPU (backend/cuda.cu,
 *         make CUDA=1; opened by maec_set_device)
 *
 * Contracts, for every op:
 * - Pointers are the backend's memory (from alloc). The model never reads or
 *   writes that memory itself; it goes through these ops, and through
 *   upload/download to and from the host. A backend whose memory is the
 *   host's (host_shared = 1: ref and cpu) lets the host read it directly.
 * - Shapes in brackets, row-major, the last index fastest.
 * - Parameter gradients accumulate (+=), so that micro-batches add up;
 *   activation gradients are written (=), except where an op says "adds".
 * - No op allocates, prints or fails: shapes are checked by the model,
 *   which owns the buffers.
 * - An op's result does not depend on timing or thread count beyond the
 *   rounding its documentation allows (no racing atomics).
 * Each forward op is followed by its backward, as the layers pair up. */
#ifndef MAEC_BACKEND_H
#define MAEC_BACKEND_H
#include <stddef.h>
#include <stdint.h>

typedef struct maec_backend {
    const char *name;
    /* 1: the backend's memory is host memory (pointers usable on the host) */
    int host_shared;

    /* ---------------------------------------------------------- memory */
    /* bytes of zeroed memory, 64-byte aligned; NULL when out of memory */
    void *(*alloc)(size_t bytes);
    void (*free)(void *p);
    /* host -> backend, backend -> host, backend -> backend (no overlap) */
    void (*upload)(void *dst, const void *host_src, size_t bytes);
    void (*download)(void *host_dst, const void *src, size_t bytes);
    void (*copy)(void *dst, const void *src, size_t bytes);
    void (*zero)(void *p, size_t bytes);
    /* bytes the device has free now, for an out-of-memory message (NULL:
     * host memory, not asked) */
    size_t (*mem_free)(void);
    /* Host memory the device copies from fastest (pinned; NULL: malloc
     * does). An upload from it may return before the copy is done: its
     * source must stay as it is until the next download or op that returns
     * a value (the trainer's batch buffer, refilled after the step's loss
     * came back). */
    void *(*host_alloc)(size_t bytes);
    void (*host_free)(void *p);

    /* ---------------------------------------------------------- linear */
    /* out[M,N] = inp[M,K] @ w[N,K]^T + b[N] (+ res[M,N]); b and res may be
     * NULL; out does not alias inp or res. The residual is added to the
     * product rounded to float, so that with res the result equals the op
     * without it followed by add, bit for bit (drop path relies on it) */
    void (*linear_forward)(float *out, const float *inp, const float *w, const float *b, const float *res, int M,
                           int K, int N);
    /* out[M,N] = GELU(inp @ w^T + b), the exact (erf) GELU, and
     * deriv[M,N] = GELU'(inp @ w^T + b) for the backward pass */
    void (*linear_gelu_forward)(float *out, float *deriv, const float *inp, const float *w, const float *b, int M,
                                int K, int N);
    /* dinp[M,K] = dout[M,N] @ w (if dinp); dw[N,K] += dout^T @ inp;
     * db[N] += column sums of dout (if db) */
    void (*linear_backward)(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                            int M, int K, int N);
    /* dinp[n] = dout[n] * deriv[n] (dinp may alias dout) */
    void (*gelu_backward)(float *dinp, const float *deriv, const float *dout, size_t n);

    /* ---------------------------------------------------------- layer norm */
    /* out[M,D] = (inp - mean) * rstd * w + b with eps 1e-6; mean[M] and
     * rstd[M] saved */
    void (*layernorm_forward)(float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b,
                              int M, int D);
    /* dinp[M,D] ADDS the input gradient (every layer norm of a ViT reads the
     * residual stream, whose gradient is a sum); dw[D] +=, db[D] += */
    void (*layernorm_backward)(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                               const float *w, const float *mean, const float *rstd, int M, int D);

    /* ---------------------------------------------------------- attention */
    /* Multi-head self-attention with its input projection, one op:
     * qkv[B,T,3D] = inp[B,T,D] @ w[3D,D]^T + b[3D], laid out per token as
     * (3, H, hd), hd = D/H; att[B,H,T,T] = softmax(q k^T / sqrt(hd)) per
     * image and head (saved); out[B,T,D] = att @ v laid out as (H, hd). */
    void (*attention_forward)(float *out, float *att, float *qkv, const float *inp, const float *w, const float *b,
                              int B, int T, int D, int H);
    /* the floats of scratch attention_backward needs for up to B images of
     * T tokens (fixed when the workspace is made) */
    size_t (*attention_scratch)(int B, int T);
    /* dx[B,T,D]: on entry d(loss)/d(out), on exit d(loss)/d(inp) (written);
     * dw[3D,D] +=, db[3D] += with the key third of db left exactly zero
     * (the key bias shifts a row of scores, which the softmax ignores: its
     * gradient is zero, written so rather than as rounding noise);
     * dqkv[B,T,3D] and scratch (nscratch floats, at least
     * attention_scratch(B, T)) are scratch */
    void (*attention_backward)(float *dx, float *dw, float *db, float *dqkv, float *scratch, size_t nscratch,
                               const float *qkv, const float *att, const float *inp, const float *w, int B, int T,
                               int D, int H);

    /* ---------------------------------------------------------- elementwise */
    /* y[n] += x[n] */
    void (*add)(float *y, const float *x, size_t n);
    /* x[B,T,D] *= scale[b] per image (drop path; its backward is the same) */
    void (*scale_rows)(float *x, const float *scale, int B, int T, int D);

    /* ---------------------------------------------------------- tokens */
    /* the official patchify: patches[B,L,p*p*C] in (i, j, c) order from
     * imgs[B,C,H,W], L = (H/p)(W/p), patches row-major over the grid */
    void (*patchify)(float *patches, const float *imgs, int B, int C, int H, int W, int p);
    /* the patch-embedding input: out[B,K,C*p*p] in conv order (c, i, j),
     * patch ids[b*K + k] of image b (ids NULL: patch k) */
    void (*patch_gather)(float *out, const float *imgs, const int *ids, int B, int K, int C, int H, int W, int p);
    /* per-patch normalized pixels, in place on t[n,P]: (t - mean) /
     * sqrt(var + 1e-6), var unbiased (divisor P-1), as the official
     * norm_pix_loss */
    void (*norm_pix)(float *t, size_t n, int P);
    /* x[B,1+K,D]: row 0 = cls[D] + pos[0]; row 1+k = tokens[b,k] + pos[1+l]
     * with l = ids[b*K+k] (ids NULL: l = k); where swap is not NULL and
     * swap[b*K+k] > 0 the token is swap_tok[D] instead (the mask token in
     * the encoder) */
    void (*embed_forward)(float *x, const float *tokens, const float *cls, const float *pos, const int *ids,
                          const float *swap, const float *swap_tok, int B, int K, int D);
    /* the backward of embed_forward given dx[B,1+K,D]: dtokens[B,K,D]
     * written (0 where swapped); dcls[D] +=, dswap_tok[D] += (if swap);
     * dpos[1+K,D] += per row (if dpos; only with ids NULL) */
    void (*embed_backward)(float *dtokens, float *dcls, float *dpos, float *dswap_tok, const float *dx,
                           const float *swap, int B, int K, int D);
    /* The MAE decoder's input, x[B,1+L,E], from the encoder's output
     * y[B,1+K,E] (after the decoder embedding) and pos[1+L,E]: row 0 = y row 0
     * + pos[0]; patch l goes to row t = 1 + restore[b*L+l] (restore NULL:
     * t = 1 + l, K = L) with pos[1+l] added to y row t if t <= K, else to
     * the mask token tok[E] */
    void (*unshuffle_forward)(float *x, const float *y, const float *pos, const int *restore, const float *tok,
                              int B, int L, int K, int E);
    /* dy[B,1+K,E] = dx's rows 0..K; dtok[E] += the sum of dx's rows K+1..L
     * (restore NULL: dy = dx, K = L) */
    void (*unshuffle_backward)(float *dy, float *dtok, const float *dx, int B, int L, int K, int E);
    /* rows [off, off+G) of each of B blocks of T rows (width D) <-> B*G
     * rows in a row; expanding zeroes every other row */
    void (*rows_gather)(float *dst, const float *src, int B, int T, int off, int G, int D);
    void (*rows_expand)(float *dst, const float *src, int B, int T, int off, int G, int D);
    /* the mean of rows 1..T-1 (row 0, the class token, left out):
     * out[B,D] = mean_{t>=1} x[B,T,D]; backward: dx[B,T,D] = dout[b]/(T-1)
     * for t >= 1, 0 for t = 0 (written) */
    void (*mean_pool_forward)(float *out, const float *x, int B, int T, int D);
    void (*mean_pool_backward)(float *dx, const float *dout, int B, int T, int D);

    /* ---------------------------------------------------------- MAE loss */
    /* The reconstruction loss of the MAE. Patch l of image b has its
     * prediction in row r(b,l) of pred_rows[., P]: with restore NULL
     * r = b*(1+L) + 1 + l; else t = 1 + restore[b*L+l] and r = b*(1+L) + t,
     * or with compact r = b*(L-K) + t-1-K, defined for t > K only (the
     * kept patches have no row, their prediction is 0).
     * mae_pred_gather: pred[B,L,P] from those rows.
     * mae_loss: sum over patches of weight * mean_P (pred - target)^2 /
     * sum of weights, weight = mask[b*L+l] (mask NULL: 1), in double.
     * mae_loss_backward: dpred_rows = weight * 2 scale / (P * sum of
     * weights) * (pred - target) in each patch's row, every other row of
     * the cls token written 0 (rows that exist only). */
    void (*mae_pred_gather)(float *pred, const float *pred_rows, const int *restore, int compact, int B, int L,
                            int K, int P);
    double (*mae_loss)(const float *pred, const float *target, const float *mask, int B, int L, int P);
    void (*mae_loss_backward)(float *dpred_rows, const float *pred, const float *target, const float *mask,
                              const int *restore, int compact, float scale, int B, int L, int K, int P);

    /* ---------------------------------------------------------- heads */
    /* softmax cross-entropy with soft targets[B,K]: probs[B,K] kept,
     * returns mean_b sum_k -target log softmax (double); backward:
     * dlogits = scale / B * (probs * sum_k target - target) */
    double (*xent_forward)(float *probs, const float *logits, const float *targets, int B, int K);
    void (*xent_backward)(float *dlogits, const float *probs, const float *targets, int B, int K, float scale);

    /* ---------------------------------------------------------- optimizer */
    /* torch.optim.AdamW on n values (step counted from 1); g left zero */
    void (*adamw)(float *p, float *g, float *m, float *v, size_t n, float lr, float beta1, float beta2, float eps,
                  float weight_decay, long step);
    /* the sum of squares of x[n], in double */
    double (*sumsq)(const float *x, size_t n);
    /* x[n] *= s */
    void (*scale)(float *x, size_t n, float s);
} maec_backend;

/* bytes of host memory that be copies from fastest (its host_alloc's, else
 * malloc's; be may be NULL), freed by maec_host_free whichever it was;
 * maec_host_alloc is this for the current backend */
void *backend_host_alloc(const maec_backend *be, size_t bytes);

/* the backends compiled in; NULL for an unknown or absent name */
const maec_backend *maec_backend_ref(void);
const maec_backend *maec_backend_cpu(void);
/* ref's ops on memory the host cannot touch (tests: backend/guard.c) */
const maec_backend *maec_backend_guard(void);
/* the GPU's, once opened (backend/cuda.h); NULL before, or without CUDA */
const maec_backend *maec_backend_cuda(void);
const maec_backend *maec_backend_by_name(const char *name);
/* the backend models get unless told otherwise: cpu, or MAEC_BACKEND's */
const maec_backend *maec_backend_default(void);
#endif
