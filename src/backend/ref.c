/* The "ref" backend: every op of backend.h as plain C11 loops, no BLAS, no
 * intrinsics, no threads. This is the specification of each op and the
 * oracle the faster backends are tested against, so it is written for
 * clarity: dot products and reductions accumulate in double, in the obvious
 * order (index ascending), and each value is rounded to float once, when it
 * is stored. Shapes in brackets, row-major, the last index fastest. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"

/* ================================================================ memory */

/* bytes rounded up to a multiple of 64 (0 -> 64), aligned to 64, zeroed */
static void *ref_alloc(size_t bytes)
{
    size_t size = bytes == 0 ? 64 : (bytes + 63) / 64 * 64;
    if (size < bytes) return NULL; /* the rounding overflowed */
    void *p = aligned_alloc(64, size);
    if (p) memset(p, 0, size);
    return p;
}

static void ref_free(void *p) { free(p); }

static void ref_upload(void *dst, const void *host_src, size_t bytes)
{
    if (bytes) memcpy(dst, host_src, bytes);
}

static void ref_download(void *host_dst, const void *src, size_t bytes)
{
    if (bytes) memcpy(host_dst, src, bytes);
}

static void ref_copy(void *dst, const void *src, size_t bytes)
{
    if (bytes) memcpy(dst, src, bytes);
}

static void ref_zero(void *p, size_t bytes)
{
    if (bytes) memset(p, 0, bytes);
}

/* ================================================================ linear */

/* sum_k a[k] * b[k] over n values, in double */
static double dot(const float *a, const float *b, int n)
{
    double s = 0.0;
    for (int k = 0; k < n; k++) s += (double)a[k] * b[k];
    return s;
}

/* out[M,N] = inp[M,K] @ w[N,K]^T + b[N] (+ res[M,N]) */
static void ref_linear_forward(float *out, const float *inp, const float *w, const float *b, const float *res,
                               int M, int K, int N)
{
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double s = dot(inp + (size_t)m * K, w + (size_t)n * K, K);
            if (b) s += b[n];
            float v = (float)s; /* the residual added to the rounded product (backend.h) */
            if (res) v += res[(size_t)m * N + n];
            out[(size_t)m * N + n] = v;
        }
}

/* the exact GELU: x Phi(x) = 0.5 x (1 + erf(x / sqrt 2)) */
static double gelu(double x) { return 0.5 * x * (1.0 + erf(x / sqrt(2.0))); }

/* GELU'(x) = Phi(x) + x phi(x) */
static double gelu_deriv(double x)
{
    double Phi = 0.5 * (1.0 + erf(x / sqrt(2.0)));
    double phi = exp(-0.5 * x * x) / sqrt(2.0 * acos(-1.0)); /* acos(-1) = pi */
    return Phi + x * phi;
}

/* out[M,N] = GELU(z), deriv[M,N] = GELU'(z), z = inp[M,K] @ w[N,K]^T + b[N]
 * (z kept in double) */
static void ref_linear_gelu_forward(float *out, float *deriv, const float *inp, const float *w, const float *b,
                                    int M, int K, int N)
{
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double z = dot(inp + (size_t)m * K, w + (size_t)n * K, K);
            if (b) z += b[n];
            out[(size_t)m * N + n] = (float)gelu(z);
            deriv[(size_t)m * N + n] = (float)gelu_deriv(z);
        }
}

/* dinp[M,K] = dout[M,N] @ w[N,K] (if dinp); dw[N,K] += dout^T @ inp[M,K];
 * db[N] += column sums of dout (if db) */
static void ref_linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                const float *w, int M, int K, int N)
{
    if (dinp)
        for (int m = 0; m < M; m++)
            for (int k = 0; k < K; k++) {
                double s = 0.0;
                for (int n = 0; n < N; n++) s += (double)dout[(size_t)m * N + n] * w[(size_t)n * K + k];
                dinp[(size_t)m * K + k] = (float)s;
            }
    if (dw)
        for (int n = 0; n < N; n++)
            for (int k = 0; k < K; k++) {
                double s = 0.0;
                for (int m = 0; m < M; m++) s += (double)dout[(size_t)m * N + n] * inp[(size_t)m * K + k];
                dw[(size_t)n * K + k] += (float)s;
            }
    if (db)
        for (int n = 0; n < N; n++) {
            double s = 0.0;
            for (int m = 0; m < M; m++) s += dout[(size_t)m * N + n];
            db[n] += (float)s;
        }
}

/* dinp[n] = dout[n] * deriv[n] (dinp may alias dout) */
static void ref_gelu_backward(float *dinp, const float *deriv, const float *dout, size_t n)
{
    for (size_t i = 0; i < n; i++) dinp[i] = dout[i] * deriv[i];
}

/* ================================================================ layer norm */

#define LN_EPS 1e-6

/* out[M,D] = (inp - mean) * rstd * w + b, biased variance, eps 1e-6;
 * mean[M], rstd[M] saved as float (out uses the double values) */
static void ref_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *w,
                                  const float *b, int M, int D)
{
    for (int m = 0; m < M; m++) {
        const float *x = inp + (size_t)m * D;
        double mu = 0.0;
        for (int d = 0; d < D; d++) mu += x[d];
        mu /= D;
        double var = 0.0;
        for (int d = 0; d < D; d++) var += ((double)x[d] - mu) * ((double)x[d] - mu);
        var /= D;
        double rs = 1.0 / sqrt(var + LN_EPS);
        for (int d = 0; d < D; d++) out[(size_t)m * D + d] = (float)(((double)x[d] - mu) * rs * w[d] + b[d]);
        mean[m] = (float)mu;
        rstd[m] = (float)rs;
    }
}

/* with xhat = (inp - mean) * rstd and g = dout * w, per row:
 * dinp[M,D] += rstd * (g - mean(g) - xhat * mean(g * xhat)) (if dinp);
 * dw[D] += sum_m dout * xhat; db[D] += sum_m dout */
static void ref_layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                   const float *w, const float *mean, const float *rstd, int M, int D)
{
    if (dinp)
        for (int m = 0; m < M; m++) {
            const float *x = inp + (size_t)m * D, *dy = dout + (size_t)m * D;
            double mu = mean[m], rs = rstd[m];
            double g_mean = 0.0, gx_mean = 0.0;
            for (int d = 0; d < D; d++) {
                double xhat = ((double)x[d] - mu) * rs;
                double g = (double)dy[d] * w[d];
                g_mean += g;
                gx_mean += g * xhat;
            }
            g_mean /= D;
            gx_mean /= D;
            for (int d = 0; d < D; d++) {
                double xhat = ((double)x[d] - mu) * rs;
                double g = (double)dy[d] * w[d];
                dinp[(size_t)m * D + d] += (float)(rs * (g - g_mean - xhat * gx_mean));
            }
        }
    for (int d = 0; d < D; d++) {
        double sw = 0.0, sb = 0.0;
        for (int m = 0; m < M; m++) {
            double dy = dout[(size_t)m * D + d];
            sw += dy * (((double)inp[(size_t)m * D + d] - mean[m]) * rstd[m]);
            sb += dy;
        }
        if (dw) dw[d] += (float)sw;
        if (db) db[d] += (float)sb;
    }
}

/* ================================================================ attention */

/* Within an image's qkv[T,3D] (per token (3, H, hd)) the head's q, k, v of
 * token t start at t*3D + h*hd plus 0, D, 2D; its out[T,D] slice at
 * t*D + h*hd. */

/* one image, one head: att[T,T] = softmax(q k^T / sqrt(hd)) over all T keys
 * (max subtracted), out[T, slice] = att @ v */
static void attention_head_forward(float *out, float *att, const float *qkv, int T, int D, int hd, int h)
{
    size_t D3 = (size_t)3 * D;
    double inv_sqrt = 1.0 / sqrt((double)hd);
    for (int i = 0; i < T; i++) {
        const float *q = qkv + i * D3 + (size_t)h * hd;
        float *a = att + (size_t)i * T;
        double mx = -INFINITY;
        for (int j = 0; j < T; j++) {
            double s = dot(q, qkv + j * D3 + D + (size_t)h * hd, hd) * inv_sqrt;
            if (s > mx) mx = s;
        }
        double sum = 0.0;
        for (int j = 0; j < T; j++) {
            double s = dot(q, qkv + j * D3 + D + (size_t)h * hd, hd) * inv_sqrt;
            sum += exp(s - mx);
        }
        for (int j = 0; j < T; j++) {
            double s = dot(q, qkv + j * D3 + D + (size_t)h * hd, hd) * inv_sqrt;
            a[j] = (float)(exp(s - mx) / sum);
        }
        for (int d = 0; d < hd; d++) {
            double o = 0.0;
            for (int j = 0; j < T; j++) o += (double)a[j] * qkv[j * D3 + 2 * (size_t)D + (size_t)h * hd + d];
            out[(size_t)i * D + (size_t)h * hd + d] = (float)o;
        }
    }
}

/* qkv[B,T,3D] = inp[B,T,D] @ w[3D,D]^T + b[3D]; att[B,H,T,T];
 * out[B,T,D] */
static void ref_attention_forward(float *out, float *att, float *qkv, const float *inp, const float *w,
                                  const float *b, int B, int T, int D, int H)
{
    int hd = D / H;
    ref_linear_forward(qkv, inp, w, b, NULL, B * T, D, 3 * D);
    for (int bi = 0; bi < B; bi++)
        for (int h = 0; h < H; h++)
            attention_head_forward(out + (size_t)bi * T * D, att + ((size_t)bi * H + h) * T * T,
                                   qkv + (size_t)bi * T * 3 * D, T, D, hd, h);
}

/* ref needs no scratch: its row buffers are T doubles on the stack */
static size_t ref_attention_scratch(int B, int T)
{
    (void)B;
    (void)T;
    return 0;
}

/* datt[i,j] = dout[i, slice] . v[j] for one image and head, in double */
static double attention_datt(const float *dout, const float *qkv, int D, int hd, int h, int i, int j)
{
    size_t D3 = (size_t)3 * D;
    return dot(dout + (size_t)i * D + (size_t)h * hd, qkv + j * D3 + 2 * (size_t)D + (size_t)h * hd, hd);
}

/* one image, one head, from dout[T,D] (its slice), qkv[T,3D], att[T,T]:
 *   datt   = dout @ v^T
 *   dscore = att * (datt - rowsum(att * datt))
 *   dq = dscore @ k / sqrt(hd), dk = dscore^T @ q / sqrt(hd), dv = att^T @ dout
 * written into the head's slices of dqkv[T,3D] */
static void attention_head_backward(float *dqkv, const float *dout, const float *qkv, const float *att, int T,
                                    int D, int hd, int h)
{
    size_t D3 = (size_t)3 * D;
    double inv_sqrt = 1.0 / sqrt((double)hd);
    double rowsum[T]; /* rowsum[i] = sum_j att[i,j] datt[i,j] */
    double ds[T];     /* one row or one column of dscore */
    for (int i = 0; i < T; i++) {
        double s = 0.0;
        for (int j = 0; j < T; j++) s += (double)att[(size_t)i * T + j] * attention_datt(dout, qkv, D, hd, h, i, j);
        rowsum[i] = s;
    }
    /* dq[i] = sum_j dscore[i,j] k[j] / sqrt(hd) */
    for (int i = 0; i < T; i++) {
        for (int j = 0; j < T; j++)
            ds[j] = att[(size_t)i * T + j] * (attention_datt(dout, qkv, D, hd, h, i, j) - rowsum[i]);
        for (int d = 0; d < hd; d++) {
            double s = 0.0;
            for (int j = 0; j < T; j++) s += ds[j] * qkv[j * D3 + D + (size_t)h * hd + d];
            dqkv[i * D3 + (size_t)h * hd + d] = (float)(s * inv_sqrt);
        }
    }
    /* dk[j] = sum_i dscore[i,j] q[i] / sqrt(hd) */
    for (int j = 0; j < T; j++) {
        for (int i = 0; i < T; i++)
            ds[i] = att[(size_t)i * T + j] * (attention_datt(dout, qkv, D, hd, h, i, j) - rowsum[i]);
        for (int d = 0; d < hd; d++) {
            double s = 0.0;
            for (int i = 0; i < T; i++) s += ds[i] * qkv[i * D3 + (size_t)h * hd + d];
            dqkv[j * D3 + D + (size_t)h * hd + d] = (float)(s * inv_sqrt);
        }
    }
    /* dv[j] = sum_i att[i,j] dout[i] */
    for (int j = 0; j < T; j++)
        for (int d = 0; d < hd; d++) {
            double s = 0.0;
            for (int i = 0; i < T; i++) s += (double)att[(size_t)i * T + j] * dout[(size_t)i * D + (size_t)h * hd + d];
            dqkv[j * D3 + 2 * (size_t)D + (size_t)h * hd + d] = (float)s;
        }
}

/* dx[B,T,D]: d out on entry, d inp on exit; dqkv[B,T,3D] computed in full,
 * then dw[3D,D] += dqkv^T @ inp, db[3D] += colsum(dqkv) with db[D..2D)
 * set to exactly 0, dx = dqkv @ w. scratch is not used. */
static void ref_attention_backward(float *dx, float *dw, float *db, float *dqkv, float *scratch, size_t nscratch,
                                   const float *qkv, const float *att, const float *inp, const float *w, int B,
                                   int T, int D, int H)
{
    (void)scratch;
    (void)nscratch;
    int hd = D / H;
    for (int bi = 0; bi < B; bi++)
        for (int h = 0; h < H; h++)
            attention_head_backward(dqkv + (size_t)bi * T * 3 * D, dx + (size_t)bi * T * D,
                                    qkv + (size_t)bi * T * 3 * D, att + ((size_t)bi * H + h) * T * T, T, D, hd, h);
    ref_linear_backward(dx, dw, db, dqkv, inp, w, B * T, D, 3 * D);
    if (db)
        for (int n = D; n < 2 * D; n++) db[n] = 0.0f;
}

/* ================================================================ elementwise */

/* y[n] += x[n] */
static void ref_add(float *y, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

/* x[B,T,D] *= scale[b] */
static void ref_scale_rows(float *x, const float *scale, int B, int T, int D)
{
    size_t per = (size_t)T * D;
    for (int b = 0; b < B; b++)
        for (size_t i = 0; i < per; i++) x[(size_t)b * per + i] *= scale[b];
}

/* ================================================================ tokens */

/* patches[B, h*w, p*p*C] from imgs[B,C,H,W], h = H/p, w = W/p:
 * patches[b, y*w+x, (i*p+j)*C + c] = imgs[b, c, y*p+i, x*p+j] */
static void ref_patchify(float *patches, const float *imgs, int B, int C, int H, int W, int p)
{
    int gh = H / p, gw = W / p, P = p * p * C;
    for (int b = 0; b < B; b++)
        for (int y = 0; y < gh; y++)
            for (int x = 0; x < gw; x++) {
                float *row = patches + ((size_t)b * gh * gw + (size_t)y * gw + x) * P;
                for (int i = 0; i < p; i++)
                    for (int j = 0; j < p; j++)
                        for (int c = 0; c < C; c++)
                            row[(i * p + j) * C + c] =
                                imgs[(((size_t)b * C + c) * H + (size_t)y * p + i) * W + (size_t)x * p + j];
            }
}

/* out[B,K,C*p*p]: out[b,k,(c*p+i)*p+j] = imgs[b,c,y*p+i,x*p+j] for patch
 * l = ids[b*K+k] (ids NULL: l = k), y = l / (W/p), x = l % (W/p) */
static void ref_patch_gather(float *out, const float *imgs, const int *ids, int B, int K, int C, int H, int W,
                             int p)
{
    int gw = W / p, P = C * p * p;
    for (int b = 0; b < B; b++)
        for (int k = 0; k < K; k++) {
            int l = ids ? ids[(size_t)b * K + k] : k;
            int y = l / gw, x = l % gw;
            float *row = out + ((size_t)b * K + k) * P;
            for (int c = 0; c < C; c++)
                for (int i = 0; i < p; i++)
                    for (int j = 0; j < p; j++)
                        row[(c * p + i) * p + j] =
                            imgs[(((size_t)b * C + c) * H + (size_t)y * p + i) * W + (size_t)x * p + j];
        }
}

/* per row of t[n,P]: t = (t - mean) / sqrt(var + 1e-6), var = sum (t -
 * mean)^2 / (P-1) */
static void ref_norm_pix(float *t, size_t n, int P)
{
    for (size_t r = 0; r < n; r++) {
        float *row = t + r * P;
        double mu = 0.0;
        for (int k = 0; k < P; k++) mu += row[k];
        mu /= P;
        double var = 0.0;
        for (int k = 0; k < P; k++) var += ((double)row[k] - mu) * ((double)row[k] - mu);
        var /= P - 1;
        double sd = sqrt(var + 1e-6);
        for (int k = 0; k < P; k++) row[k] = (float)(((double)row[k] - mu) / sd);
    }
}

/* x[B,1+K,D]: row 0 = cls + pos[0]; row 1+k = tokens[b,k] (or swap_tok
 * where swap[b*K+k] > 0) + pos[1+l], l = ids[b*K+k] (ids NULL: l = k) */
static void ref_embed_forward(float *x, const float *tokens, const float *cls, const float *pos, const int *ids,
                              const float *swap, const float *swap_tok, int B, int K, int D)
{
    for (int b = 0; b < B; b++) {
        float *xb = x + (size_t)b * (1 + K) * D;
        for (int d = 0; d < D; d++) xb[d] = cls[d] + pos[d];
        for (int k = 0; k < K; k++) {
            int l = ids ? ids[(size_t)b * K + k] : k;
            int swapped = swap && swap[(size_t)b * K + k] > 0;
            const float *tok = swapped ? swap_tok : tokens + ((size_t)b * K + k) * D;
            for (int d = 0; d < D; d++) xb[(size_t)(1 + k) * D + d] = tok[d] + pos[(size_t)(1 + l) * D + d];
        }
    }
}

/* from dx[B,1+K,D]: dtokens[B,K,D] = dx rows 1..K (0 where swapped);
 * dcls[D] += sum_b dx[b,0]; dswap_tok[D] += the sum of the swapped rows (if
 * swap); dpos[1+K,D] += sum_b dx[b] row by row (if dpos) */
static void ref_embed_backward(float *dtokens, float *dcls, float *dpos, float *dswap_tok, const float *dx,
                               const float *swap, int B, int K, int D)
{
    size_t rows = (size_t)(1 + K);
    if (dtokens)
        for (int b = 0; b < B; b++)
            for (int k = 0; k < K; k++) {
                int swapped = swap && swap[(size_t)b * K + k] > 0;
                for (int d = 0; d < D; d++)
                    dtokens[((size_t)b * K + k) * D + d] =
                        swapped ? 0.0f : dx[((size_t)b * rows + 1 + k) * D + d];
            }
    if (dcls)
        for (int d = 0; d < D; d++) {
            double s = 0.0;
            for (int b = 0; b < B; b++) s += dx[(size_t)b * rows * D + d];
            dcls[d] += (float)s;
        }
    if (swap && dswap_tok)
        for (int d = 0; d < D; d++) {
            double s = 0.0;
            for (int b = 0; b < B; b++)
                for (int k = 0; k < K; k++)
                    if (swap[(size_t)b * K + k] > 0) s += dx[((size_t)b * rows + 1 + k) * D + d];
            dswap_tok[d] += (float)s;
        }
    if (dpos)
        for (size_t t = 0; t < rows; t++)
            for (int d = 0; d < D; d++) {
                double s = 0.0;
                for (int b = 0; b < B; b++) s += dx[((size_t)b * rows + t) * D + d];
                dpos[t * D + d] += (float)s;
            }
}

/* x[B,1+L,E] from y[B,1+K,E], pos[1+L,E]: row 0 = y row 0 + pos[0]; patch
 * l goes to row t = 1 + restore[b*L+l] (restore NULL: t = 1 + l), which is
 * y row t + pos[1+l] if t <= K, else tok[E] + pos[1+l] */
static void ref_unshuffle_forward(float *x, const float *y, const float *pos, const int *restore, const float *tok,
                                  int B, int L, int K, int E)
{
    for (int b = 0; b < B; b++) {
        float *xb = x + (size_t)b * (1 + L) * E;
        const float *yb = y + (size_t)b * (1 + K) * E;
        for (int e = 0; e < E; e++) xb[e] = yb[e] + pos[e];
        for (int l = 0; l < L; l++) {
            int t = 1 + (restore ? restore[(size_t)b * L + l] : l);
            const float *src = t <= K ? yb + (size_t)t * E : tok;
            for (int e = 0; e < E; e++) xb[(size_t)t * E + e] = src[e] + pos[(size_t)(1 + l) * E + e];
        }
    }
}

/* dy[B,1+K,E] = dx[B,1+L,E] rows 0..K; dtok[E] += sum of dx rows K+1..L */
static void ref_unshuffle_backward(float *dy, float *dtok, const float *dx, int B, int L, int K, int E)
{
    for (int b = 0; b < B; b++)
        memcpy(dy + (size_t)b * (1 + K) * E, dx + (size_t)b * (1 + L) * E, sizeof(float) * (size_t)(1 + K) * E);
    if (dtok && K < L)
        for (int e = 0; e < E; e++) {
            double s = 0.0;
            for (int b = 0; b < B; b++)
                for (int t = K + 1; t <= L; t++) s += dx[((size_t)b * (1 + L) + t) * E + e];
            dtok[e] += (float)s;
        }
}

/* dst[B*G,D] = rows [off, off+G) of each image of src[B,T,D] */
static void ref_rows_gather(float *dst, const float *src, int B, int T, int off, int G, int D)
{
    for (int b = 0; b < B; b++)
        for (int g = 0; g < G; g++)
            memcpy(dst + ((size_t)b * G + g) * D, src + ((size_t)b * T + off + g) * D, sizeof(float) * D);
}

/* dst[B,T,D]: rows [off, off+G) of image b = src[b*G .. b*G+G), every
 * other row 0 */
static void ref_rows_expand(float *dst, const float *src, int B, int T, int off, int G, int D)
{
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            float *row = dst + ((size_t)b * T + t) * D;
            if (t >= off && t < off + G)
                memcpy(row, src + ((size_t)b * G + t - off) * D, sizeof(float) * D);
            else
                memset(row, 0, sizeof(float) * D);
        }
}

/* out[B,D] = mean over t = 1..T-1 of x[B,T,D] */
static void ref_mean_pool_forward(float *out, const float *x, int B, int T, int D)
{
    for (int b = 0; b < B; b++)
        for (int d = 0; d < D; d++) {
            double s = 0.0;
            for (int t = 1; t < T; t++) s += x[((size_t)b * T + t) * D + d];
            out[(size_t)b * D + d] = (float)(s / (T - 1));
        }
}

/* dx[B,T,D] = dout[b] / (T-1) for t >= 1, 0 for t = 0 */
static void ref_mean_pool_backward(float *dx, const float *dout, int B, int T, int D)
{
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int d = 0; d < D; d++)
                dx[((size_t)b * T + t) * D + d] = t == 0 ? 0.0f : (float)((double)dout[(size_t)b * D + d] / (T - 1));
}

/* ================================================================ MAE loss */

/* the row of pred_rows holding patch l of image b, or -1 when it has none
 * (compact and t <= K: a kept patch) */
static long mae_row(const int *restore, int compact, int b, int l, int L, int K)
{
    int t = 1 + (restore ? restore[(size_t)b * L + l] : l);
    if (!compact) return (long)b * (1 + L) + t;
    if (t <= K) return -1;
    return (long)b * (L - K) + t - 1 - K;
}

/* pred[B,L,P]: patch l's row of pred_rows, or 0 where it has none */
static void ref_mae_pred_gather(float *pred, const float *pred_rows, const int *restore, int compact, int B, int L,
                                int K, int P)
{
    for (int b = 0; b < B; b++)
        for (int l = 0; l < L; l++) {
            float *dst = pred + ((size_t)b * L + l) * P;
            long r = mae_row(restore, compact, b, l, L, K);
            if (r < 0)
                memset(dst, 0, sizeof(float) * P);
            else
                memcpy(dst, pred_rows + (size_t)r * P, sizeof(float) * P);
        }
}

/* the sum of the weights: of mask[B*L], or B*L when mask is NULL */
static double mask_sum(const float *mask, int B, int L)
{
    if (!mask) return (double)B * L;
    double s = 0.0;
    for (size_t i = 0; i < (size_t)B * L; i++) s += mask[i];
    return s;
}

/* sum_{b,l} weight * mean_P (pred - target)^2 / sum of weights, pred and
 * target [B,L,P], weight = mask[b*L+l] (NULL: 1); 0 when the weights sum
 * to 0 */
static double ref_mae_loss(const float *pred, const float *target, const float *mask, int B, int L, int P)
{
    double msum = mask_sum(mask, B, L);
    if (msum == 0.0) return 0.0;
    double loss = 0.0;
    for (size_t bl = 0; bl < (size_t)B * L; bl++) {
        double weight = mask ? mask[bl] : 1.0;
        double se = 0.0;
        for (int k = 0; k < P; k++) {
            double e = (double)pred[bl * P + k] - target[bl * P + k];
            se += e * e;
        }
        loss += weight * (se / P);
    }
    return loss / msum;
}

/* dpred_rows: patch l's row = weight * 2 scale / (P msum) * (pred - target)
 * (pred, target [B,L,P]); with !compact the cls rows (b*(1+L)) written 0;
 * with compact the kept patches (no row) skipped */
static void ref_mae_loss_backward(float *dpred_rows, const float *pred, const float *target, const float *mask,
                                  const int *restore, int compact, float scale, int B, int L, int K, int P)
{
    double msum = mask_sum(mask, B, L);
    for (int b = 0; b < B; b++) {
        if (!compact) memset(dpred_rows + (size_t)b * (1 + L) * P, 0, sizeof(float) * P);
        for (int l = 0; l < L; l++) {
            long r = mae_row(restore, compact, b, l, L, K);
            if (r < 0) continue;
            size_t bl = (size_t)b * L + l;
            double weight = mask ? mask[bl] : 1.0;
            double c = msum == 0.0 ? 0.0 : weight * 2.0 * scale / ((double)P * msum);
            for (int k = 0; k < P; k++)
                dpred_rows[(size_t)r * P + k] = (float)(c * ((double)pred[bl * P + k] - target[bl * P + k]));
        }
    }
}

/* ================================================================ heads */

/* probs[B,K] = softmax(logits[B,K]) per row; returns
 * mean_b sum_k -targets[b,k] * log_softmax(logits)[b,k] */
static double ref_xent_forward(float *probs, const float *logits, const float *targets, int B, int K)
{
    double total = 0.0;
    for (int b = 0; b < B; b++) {
        const float *z = logits + (size_t)b * K;
        double mx = -INFINITY;
        for (int k = 0; k < K; k++)
            if (z[k] > mx) mx = z[k];
        double sum = 0.0;
        for (int k = 0; k < K; k++) sum += exp((double)z[k] - mx);
        double lse = mx + log(sum);
        double row = 0.0;
        for (int k = 0; k < K; k++) {
            probs[(size_t)b * K + k] = (float)(exp((double)z[k] - mx) / sum);
            row -= (double)targets[(size_t)b * K + k] * ((double)z[k] - lse);
        }
        total += row;
    }
    return total / B;
}

/* dlogits[B,K] = scale / B * (probs * sum_k targets - targets) */
static void ref_xent_backward(float *dlogits, const float *probs, const float *targets, int B, int K, float scale)
{
    double c = (double)scale / B;
    for (int b = 0; b < B; b++) {
        const float *tg = targets + (size_t)b * K;
        double tsum = 0.0;
        for (int k = 0; k < K; k++) tsum += tg[k];
        for (int k = 0; k < K; k++)
            dlogits[(size_t)b * K + k] = (float)(c * ((double)probs[(size_t)b * K + k] * tsum - tg[k]));
    }
}

/* ================================================================ optimizer */

/* torch.optim.AdamW, step counted from 1, each value in double:
 * p *= 1 - lr wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 * p -= lr (m / bc1) / (sqrt(v / bc2) + eps), bc = 1 - beta^step; g = 0 */
static void ref_adamw(float *p, float *g, float *m, float *v, size_t n, float lr, float beta1, float beta2,
                      float eps, float weight_decay, long step)
{
    double b1 = beta1, b2 = beta2;
    double bc1 = 1.0 - pow(b1, (double)step), bc2 = 1.0 - pow(b2, (double)step);
    for (size_t i = 0; i < n; i++) {
        double gi = g[i];
        double pi = p[i] * (1.0 - (double)lr * weight_decay);
        double mi = b1 * m[i] + (1.0 - b1) * gi;
        double vi = b2 * v[i] + (1.0 - b2) * gi * gi;
        m[i] = (float)mi;
        v[i] = (float)vi;
        p[i] = (float)(pi - (double)lr * (mi / bc1) / (sqrt(vi / bc2) + eps));
        g[i] = 0.0f;
    }
}

/* sum_i x[i]^2 in double */
static double ref_sumsq(const float *x, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

/* x[n] *= s */
static void ref_scale(float *x, size_t n, float s)
{
    for (size_t i = 0; i < n; i++) x[i] *= s;
}

/* ================================================================ the table */

static const maec_backend ref_backend = {
    .name = "ref",
    .host_shared = 1,
    .alloc = ref_alloc,
    .free = ref_free,
    .upload = ref_upload,
    .download = ref_download,
    .copy = ref_copy,
    .zero = ref_zero,
    .linear_forward = ref_linear_forward,
    .linear_gelu_forward = ref_linear_gelu_forward,
    .linear_backward = ref_linear_backward,
    .gelu_backward = ref_gelu_backward,
    .layernorm_forward = ref_layernorm_forward,
    .layernorm_backward = ref_layernorm_backward,
    .attention_forward = ref_attention_forward,
    .attention_scratch = ref_attention_scratch,
    .attention_backward = ref_attention_backward,
    .add = ref_add,
    .scale_rows = ref_scale_rows,
    .patchify = ref_patchify,
    .patch_gather = ref_patch_gather,
    .norm_pix = ref_norm_pix,
    .embed_forward = ref_embed_forward,
    .embed_backward = ref_embed_backward,
    .unshuffle_forward = ref_unshuffle_forward,
    .unshuffle_backward = ref_unshuffle_backward,
    .rows_gather = ref_rows_gather,
    .rows_expand = ref_rows_expand,
    .mean_pool_forward = ref_mean_pool_forward,
    .mean_pool_backward = ref_mean_pool_backward,
    .mae_pred_gather = ref_mae_pred_gather,
    .mae_loss = ref_mae_loss,
    .mae_loss_backward = ref_mae_loss_backward,
    .xent_forward = ref_xent_forward,
    .xent_backward = ref_xent_backward,
    .adamw = ref_adamw,
    .sumsq = ref_sumsq,
    .scale = ref_scale,
};

const maec_backend *maec_backend_ref(void) { return &ref_backend; }
