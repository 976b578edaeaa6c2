/* The ops on their own: GELU's vectorized erf against the C library's erf in
 * double; the linear layer's products, split between threads by hand,
 * against sums in double at 1, 2 and 3 threads; attention's forward and
 * backward against the same in double. */
#define _POSIX_C_SOURCE 200809L
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ops/ops.h"
#include "ops/vmath.h"
#include "test.h"
#include "util.h"

static void test_gelu(void)
{
    int n = 200001;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
    float *d = malloc(n * sizeof(float)), *one = malloc(n * sizeof(float));
    float *deriv = malloc(n * sizeof(float));
    for (int i = 0; i < n; i++) {
        x[i] = -20.0f + 40.0f * i / (n - 1);
        one[i] = 1.0f;
    }
    gelu_forward(y, deriv, x, (size_t)n);
    gelu_backward(d, deriv, one, (size_t)n);
    double worst = 0, worst_d = 0;
    for (int i = 0; i < n; i++) {
        double xv = x[i];
        double cdf = 0.5 * (1.0 + erf(xv / sqrt(2.0)));
        double ref = xv * cdf;
        double dref = cdf + xv * exp(-0.5 * xv * xv) / sqrt(2.0 * 3.14159265358979323846);
        /* error relative to the size of the terms that make the value */
        double e = fabs(y[i] - ref) / (fabs(xv) + 1e-3);
        double ed = fabs(d[i] - dref);
        /* the one-value formula (machines without AVX2, gelu_scalar, the tails) */
        double es = fabs(gelu_scalar(x[i]) - ref) / (fabs(xv) + 1e-3);
        if (e > worst) worst = e;
        if (es > worst) worst = es;
        if (ed > worst_d) worst_d = ed;
    }
    printf("  gelu: worst |err|/|x| %.2e, worst derivative error %.2e\n", worst, worst_d);
    /* an infinity stays one, a NaN stays NaN (the training loop's NaN check
     * relies on it), on 16 lanes and on one value */
    float sp[17], so[17], sd[17];
    for (int i = 0; i < 17; i++) sp[i] = i % 2 ? INFINITY : NAN;
    gelu_forward(so, sd, sp, 17);
    int special_ok = 1;
    for (int i = 0; i < 17; i++) special_ok &= i % 2 ? so[i] == INFINITY : isnan(so[i]);
    special_ok &= gelu_scalar(INFINITY) == INFINITY && isnan(gelu_scalar(NAN));
    CHECK(special_ok, "gelu of inf is inf and of NaN is NaN");
    CHECK(worst < 4e-7, "gelu forward error %.3g", worst);
    CHECK(worst_d < 1e-6, "gelu derivative error %.3g", worst_d);
    free(x);
    free(y);
    free(d);
    free(one);
    free(deriv);
}

/* uniform in [-0.5, 0.5), from the project's generator */
static float frand(uint64_t *s) { return rng_uniform(s) - 0.5f; }

/* out = x W^T + b, dx = dy W, dW += dy^T x, db += colsum dy, in double */
static void test_linear(int M, int K, int N)
{
    uint64_t s = 7;
    /* float sums of K (forward), N (input grad) or M (weight grad) products
     * of terms below 0.5: 1e-5 for sums of up to 48 terms and 1e-4 for up to
     * 1037, growing as the square root of the count beyond */
    double tol_o = 1e-5 * fmax(1.0, sqrt(K / 48.0)), tol_x = 1e-5 * fmax(1.0, sqrt(N / 48.0));
    double tol_w = 1e-4 * fmax(1.0, sqrt(M / 1037.0));
    float *x = malloc(sizeof(float) * M * K), *w = malloc(sizeof(float) * N * K);
    float *b = malloc(sizeof(float) * N), *dy = malloc(sizeof(float) * M * N);
    float *w0 = malloc(sizeof(float) * N * K), *b0 = malloc(sizeof(float) * N);
    double *ro = calloc((size_t)M * N, sizeof(double)), *rdx = calloc((size_t)M * K, sizeof(double));
    double *rdw = calloc((size_t)N * K, sizeof(double)), *rdb = calloc(N, sizeof(double));
    float *out = malloc(sizeof(float) * M * N), *dx = malloc(sizeof(float) * M * K);
    float *dw = malloc(sizeof(float) * N * K), *db = malloc(sizeof(float) * N);
    float *keep_dw = malloc(sizeof(float) * N * K);
    for (int i = 0; i < M * K; i++) x[i] = frand(&s);
    for (int i = 0; i < N * K; i++) w[i] = frand(&s), w0[i] = frand(&s);
    for (int i = 0; i < N; i++) b[i] = frand(&s), b0[i] = frand(&s);
    for (int i = 0; i < M * N; i++) dy[i] = frand(&s);
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double a = b[n];
            for (int k = 0; k < K; k++) a += (double)x[m * K + k] * w[n * K + k];
            ro[m * N + n] = a;
        }
    for (int m = 0; m < M; m++)
        for (int k = 0; k < K; k++) {
            double a = 0;
            for (int n = 0; n < N; n++) a += (double)dy[m * N + n] * w[n * K + k];
            rdx[m * K + k] = a;
        }
    for (int n = 0; n < N; n++) {
        rdb[n] = b0[n];
        for (int m = 0; m < M; m++) rdb[n] += dy[m * N + n];
        for (int k = 0; k < K; k++) {
            double a = w0[n * K + k];
            for (int m = 0; m < M; m++) a += (double)dy[m * N + n] * x[m * K + k];
            rdw[n * K + k] = a;
        }
    }
    int saved = omp_get_max_threads();
    for (int nt = 1; nt <= 3; nt++) {
        omp_set_num_threads(nt);
        for (int full = 1; full >= 0; full--) { /* the full product, then without dx and bias */
            linear_forward(out, x, w, full ? b : NULL, M, K, N);
            memcpy(dw, w0, sizeof(float) * N * K);
            memcpy(db, b0, sizeof(float) * N);
            linear_backward(full ? dx : NULL, dw, full ? db : NULL, dy, x, w, M, K, N);
            double eo = 0, ex = 0, ew = 0, eb = 0;
            for (int i = 0; i < M * N; i++) {
                double r = ro[i] - (full ? 0 : b[i % N]);
                eo = fmax(eo, fabs(out[i] - r));
            }
            for (int i = 0; i < M * K && full; i++) ex = fmax(ex, fabs(dx[i] - rdx[i]));
            for (int i = 0; i < N * K; i++) ew = fmax(ew, fabs(dw[i] - rdw[i]));
            for (int i = 0; i < N && full; i++) eb = fmax(eb, fabs(db[i] - rdb[i]));
            if (!full)
                for (int i = 0; i < N; i++) eb = fmax(eb, fabs(db[i] - b0[i]));
            CHECK(eo < tol_o && ex < tol_x, "linear %dx%dx%d, %d threads%s: forward %.2g, input grad %.2g",
                  M, K, N, nt, full ? "" : ", no bias", eo, ex);
            CHECK(ew < tol_w && eb < tol_w,
                  "linear %dx%dx%d, %d threads%s: weight grad %.2g, bias grad %.2g", M, K, N, nt,
                  full ? "" : ", no bias", ew, eb);
            if (full) {
                memcpy(keep_dw, dw, sizeof(float) * N * K);
                memcpy(dw, w0, sizeof(float) * N * K);
                memcpy(db, b0, sizeof(float) * N);
                linear_backward(dx, dw, db, dy, x, w, M, K, N);
                CHECK(!memcmp(keep_dw, dw, sizeof(float) * N * K),
                      "linear %dx%dx%d, %d threads: the weight gradient is the same bits on a second run",
                      M, K, N, nt);
            }
        }
    }
    omp_set_num_threads(saved);
    free(x), free(w), free(b), free(dy), free(w0), free(b0), free(ro), free(rdx), free(rdw);
    free(rdb), free(out), free(dx), free(dw), free(db), free(keep_dw);
}

/* attention's forward (output and probabilities) and backward against
 * double, at 1-3 threads, every element of the gradient written: the
 * encoder's short sequences, the decoder's longer ones, heads of 12 to 80,
 * a batch smaller than the threads */
static void test_attention(int B, int T, int D, int H)
{
    uint64_t s = 11;
    int hd = D / H, ld = 3 * D;
    size_t nq = (size_t)B * T * ld, no = (size_t)B * T * D, na = (size_t)B * H * T * T;
    float *qkv = malloc(sizeof(float) * nq), *dout = malloc(sizeof(float) * no);
    float *out = malloc(sizeof(float) * no), *att = malloc(sizeof(float) * na);
    float *dqkv = malloc(sizeof(float) * nq), *scratch = malloc(sizeof(float) * 3 * attention_scratch_floats(T));
    double *ro = calloc(no, sizeof(double)), *rp = calloc(na, sizeof(double)), *rd = calloc(nq, sizeof(double));
    double *dp = malloc(sizeof(double) * T);
    for (size_t i = 0; i < nq; i++) qkv[i] = 2.0f * frand(&s);
    for (size_t i = 0; i < no; i++) dout[i] = frand(&s);
    double scale = 1.0 / sqrt((double)hd);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            const float *q = qkv + (size_t)b * T * ld + (size_t)h * hd, *k = q + D, *v = q + 2 * D;
            const float *go = dout + (size_t)b * T * D + (size_t)h * hd;
            double *p = rp + ((size_t)b * H + h) * T * T, *o = ro + (size_t)b * T * D + (size_t)h * hd;
            double *dq = rd + (size_t)b * T * ld + (size_t)h * hd, *dk = dq + D, *dv = dq + 2 * D;
            for (int i = 0; i < T; i++) {
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j < T; j++) {
                    double a = 0;
                    for (int d = 0; d < hd; d++) a += (double)q[(size_t)i * ld + d] * k[(size_t)j * ld + d];
                    p[i * T + j] = a * scale;
                    mx = fmax(mx, a * scale);
                }
                for (int j = 0; j < T; j++) sum += p[i * T + j] = exp(p[i * T + j] - mx);
                for (int j = 0; j < T; j++) p[i * T + j] /= sum;
                for (int d = 0; d < hd; d++) {
                    double a = 0;
                    for (int j = 0; j < T; j++) a += p[i * T + j] * v[(size_t)j * ld + d];
                    o[(size_t)i * D + d] = a;
                }
                /* dP row, then dS = P (dP - sum P dP) scale into dp */
                double dot = 0;
                for (int j = 0; j < T; j++) {
                    double a = 0;
                    for (int d = 0; d < hd; d++) a += (double)go[(size_t)i * D + d] * v[(size_t)j * ld + d];
                    dp[j] = a;
                    dot += a * p[i * T + j];
                }
                for (int j = 0; j < T; j++) {
                    double ds = p[i * T + j] * (dp[j] - dot) * scale;
                    for (int d = 0; d < hd; d++) {
                        dq[(size_t)i * ld + d] += ds * k[(size_t)j * ld + d];
                        dk[(size_t)j * ld + d] += ds * q[(size_t)i * ld + d];
                        dv[(size_t)j * ld + d] += p[i * T + j] * go[(size_t)i * D + d];
                    }
                }
            }
        }
    double so = 0, sd = 0; /* the outputs' scales, for relative errors */
    for (size_t i = 0; i < no; i++) so = fmax(so, fabs(ro[i]));
    for (size_t i = 0; i < nq; i++) sd = fmax(sd, fabs(rd[i]));
    int saved = omp_get_max_threads();
    for (int nt = 1; nt <= 3; nt++) {
        omp_set_num_threads(nt);
        memset(dqkv, 0xff, sizeof(float) * nq); /* NaN: every element must be written */
        attention_forward(out, att, qkv, B, T, D, H);
        attention_backward(dqkv, dout, qkv, att, scratch, 3, B, T, D, H);
        double eo = 0, ep = 0, ed = 0;
        for (size_t i = 0; i < no; i++) eo = fmax(eo, fabs(out[i] - ro[i]) / so);
        for (size_t i = 0; i < na; i++) ep = fmax(ep, fabs(att[i] - rp[i]));
        for (size_t i = 0; i < nq; i++) ed = fmax(ed, isnan(dqkv[i]) ? INFINITY : fabs(dqkv[i] - rd[i]) / sd);
        /* sums of up to 140 terms in float; measured errors 1e-7 to 7e-7 */
        CHECK(eo < 2e-6 && ep < 1e-6 && ed < 4e-6,
              "attention B %d T %d D %d H %d, %d threads: output %.2g, probabilities %.2g, gradient %.2g (relative to the largest)",
              B, T, D, H, nt, eo, ep, ed);
    }
    omp_set_num_threads(saved);
    free(qkv), free(dout), free(out), free(att), free(dqkv), free(scratch), free(ro), free(rp), free(rd), free(dp);
}

/* layer norm's gradients against sums in double: rows split between 1-3
 * threads, and a row too wide for the one-pass path */
static void test_layernorm(int M, int D)
{
    uint64_t s = 11;
    size_t n = (size_t)M * D;
    float *x = malloc(n * sizeof(float)), *dy = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
    float *dx = malloc(n * sizeof(float)), *w = malloc(D * sizeof(float)), *b = malloc(D * sizeof(float));
    float *dw = malloc(D * sizeof(float)), *db = malloc(D * sizeof(float));
    float *mean = malloc(M * sizeof(float)), *rstd = malloc(M * sizeof(float));
    double *rdx = malloc(n * sizeof(double)), *rdw = calloc(D, sizeof(double)), *rdb = calloc(D, sizeof(double));
    for (size_t i = 0; i < n; i++) x[i] = 3.0f * frand(&s) + 1.0f, dy[i] = frand(&s);
    for (int i = 0; i < D; i++) w[i] = 1.0f + frand(&s), b[i] = frand(&s);
    for (int m = 0; m < M; m++) {
        const float *xr = x + (size_t)m * D, *g = dy + (size_t)m * D;
        double mu = 0, v = 0, sg = 0, sgx = 0;
        for (int i = 0; i < D; i++) mu += xr[i];
        mu /= D;
        for (int i = 0; i < D; i++) v += (xr[i] - mu) * (xr[i] - mu);
        double rs = 1.0 / sqrt(v / D + 1e-6);
        for (int i = 0; i < D; i++) {
            double xh = (xr[i] - mu) * rs;
            sg += (double)g[i] * w[i];
            sgx += (double)g[i] * w[i] * xh;
            rdw[i] += g[i] * xh;
            rdb[i] += g[i];
        }
        for (int i = 0; i < D; i++) {
            double xh = (xr[i] - mu) * rs;
            /* dx starts at 1: the backward adds into it */
            rdx[(size_t)m * D + i] = 1.0 + (g[i] * w[i] - sg / D - xh * sgx / D) * rs;
        }
    }
    int saved = omp_get_max_threads();
    for (int nt = 1; nt <= 3; nt++) {
        omp_set_num_threads(nt);
        layernorm_forward(y, mean, rstd, x, w, b, M, D);
        for (size_t i = 0; i < n; i++) dx[i] = 1.0f;
        for (int i = 0; i < D; i++) dw[i] = db[i] = 0.0f;
        layernorm_backward(dx, dw, db, dy, x, w, mean, rstd, M, D);
        double ex = 0, ew = 0;
        for (size_t i = 0; i < n; i++) ex = fmax(ex, fabs(dx[i] - rdx[i]));
        for (int i = 0; i < D; i++) ew = fmax(ew, fmax(fabs(dw[i] - rdw[i]), fabs(db[i] - rdb[i])));
        CHECK(ex < 2e-5 && ew < 1e-4, "layer norm %d x %d, %d threads: input grad %.2g, weight/bias grad %.2g",
              M, D, nt, ex, ew);
    }
    omp_set_num_threads(saved);
    free(x), free(dy), free(y), free(dx), free(w), free(b), free(dw), free(db), free(mean), free(rstd);
    free(rdx), free(rdw), free(rdb);
}

/* The backward ops on the decoder's shapes against double at 1-3 threads:
 * linear_backward (libxsmm's tiles when the rows are many, OpenBLAS when
 * few), layernorm_backward, each adding into its parameter gradients; and
 * linear_forward_residual against double and against linear_forward then
 * add_inplace (the same bits). */
static void test_backward_rows(size_t M, int K, int N, int tiled)
{
    uint64_t s = 13;
    float *x = malloc(M * K * sizeof(float)), *dy = malloc(M * N * sizeof(float)), *w = malloc((size_t)N * K * sizeof(float));
    float *b = malloc(N * sizeof(float)), *res = malloc(M * N * sizeof(float)), *out = malloc(M * N * sizeof(float));
    float *out2 = malloc(M * N * sizeof(float)), *dx = malloc(M * K * sizeof(float));
    float *dw = malloc((size_t)N * K * sizeof(float)), *db = malloc(N * sizeof(float));
    float *lw = malloc(K * sizeof(float)), *lb = malloc(K * sizeof(float)), *mean = malloc(M * sizeof(float));
    float *rstd = malloc(M * sizeof(float)), *ly = malloc(M * K * sizeof(float)), *ldy = malloc(M * K * sizeof(float));
    double *rdw = malloc((size_t)N * K * sizeof(double)), *rdb = malloc(N * sizeof(double));
    for (size_t i = 0; i < M * K; i++) x[i] = frand(&s), ldy[i] = frand(&s);
    for (size_t i = 0; i < M * N; i++) dy[i] = frand(&s), res[i] = frand(&s);
    for (int i = 0; i < N * K; i++) w[i] = frand(&s);
    for (int i = 0; i < N; i++) b[i] = frand(&s);
    for (int i = 0; i < K; i++) lw[i] = 1.0f + frand(&s), lb[i] = frand(&s);
    CHECK(linear_tiled((int)M, K, N) == tiled, "linear %zu x %d -> %d: on %s", M, K, N,
          tiled ? "libxsmm's tiles" : "OpenBLAS");
    for (int n = 0; n < N; n++) {
        rdb[n] = 0;
        for (size_t m = 0; m < M; m++) rdb[n] += dy[m * N + n];
        for (int k = 0; k < K; k++) {
            double a = 0;
            for (size_t m = 0; m < M; m++) a += (double)dy[m * N + n] * x[m * K + k];
            rdw[(size_t)n * K + k] = a;
        }
    }
    double tol_w = 1e-4 * fmax(1.0, sqrt(M / 1037.0)), tol_x = 1e-5 * fmax(1.0, sqrt(N / 48.0));
    double tol_o = 1e-5 * fmax(1.0, sqrt(K / 48.0));
    int saved = omp_get_max_threads();
    for (int nt = 1; nt <= 3; nt++) {
        omp_set_num_threads(nt);
        /* linear_backward, adding into gradients that start at 0.5 */
        for (size_t i = 0; i < M * K; i++) dx[i] = 7.0f;
        for (int i = 0; i < N * K; i++) dw[i] = 0.5f;
        for (int i = 0; i < N; i++) db[i] = 0.5f;
        linear_backward(dx, dw, db, dy, x, w, (int)M, K, N);
        double ex = 0, ew = 0, eb = 0;
        for (size_t m = 0; m < M; m++)
            for (int k = 0; k < K; k++) {
                double a = 0;
                for (int n = 0; n < N; n++) a += (double)dy[m * N + n] * w[(size_t)n * K + k];
                ex = fmax(ex, fabs(dx[m * K + k] - a));
            }
        for (int i = 0; i < N * K; i++) ew = fmax(ew, fabs(dw[i] - (0.5 + rdw[i])));
        for (int i = 0; i < N; i++) eb = fmax(eb, fabs(db[i] - (0.5 + rdb[i])));
        CHECK(ex < tol_x && ew < tol_w && eb < tol_w,
              "linear backward %zu x %d -> %d, %d threads: input grad %.2g, weight grad %.2g, bias grad %.2g", M,
              K, N, nt, ex, ew, eb);
        /* layernorm_backward, rows of K */
        layernorm_forward(ly, mean, rstd, x, lw, lb, (int)M, K);
        for (size_t i = 0; i < M * K; i++) dx[i] = 1.0f;
        float gw[4096], gb[4096];
        for (int i = 0; i < K; i++) gw[i] = gb[i] = 0.0f;
        layernorm_backward(dx, gw, gb, ldy, x, lw, mean, rstd, (int)M, K);
        double lx = 0, lg = 0;
        for (int k = 0; k < K; k++) {
            double aw = 0, ab = 0;
            for (size_t m = 0; m < M; m++) {
                double xh = (x[m * K + k] - mean[m]) * (double)rstd[m];
                aw += ldy[m * K + k] * xh;
                ab += ldy[m * K + k];
            }
            lg = fmax(lg, fmax(fabs(gw[k] - aw), fabs(gb[k] - ab)));
        }
        for (size_t m = 0; m < M; m++) {
            double sg = 0, sgx = 0;
            for (int k = 0; k < K; k++) {
                double xh = (x[m * K + k] - mean[m]) * (double)rstd[m], gg = (double)ldy[m * K + k] * lw[k];
                sg += gg;
                sgx += gg * xh;
            }
            for (int k = 0; k < K; k++) {
                double xh = (x[m * K + k] - mean[m]) * (double)rstd[m];
                double r = 1.0 + ((double)ldy[m * K + k] * lw[k] - sg / K - xh * sgx / K) * rstd[m];
                lx = fmax(lx, fabs(dx[m * K + k] - r));
            }
        }
        CHECK(lx < 2e-5 && lg < 1e-4 * fmax(1.0, sqrt(M / 1037.0)),
              "layer norm backward %zu x %d, %d threads: input grad %.2g (added to 1), weight/bias grad %.2g", M, K,
              nt, lx, lg);
        /* linear_forward_residual over all M rows */
        linear_forward_residual(out, x, w, b, res, (int)M, K, N);
        linear_forward(out2, x, w, b, (int)M, K, N);
        add_inplace(out2, res, M * N);
        double eo = 0;
        for (size_t m = 0; m < M; m++)
            for (int n = 0; n < N; n++) {
                double a = b[n];
                for (int k = 0; k < K; k++) a += (double)x[m * K + k] * w[(size_t)n * K + k];
                eo = fmax(eo, fabs(out[m * N + n] - (a + res[m * N + n])));
            }
        CHECK(eo < tol_o && !memcmp(out, out2, M * N * sizeof(float)),
              "linear with residual %zu x %d -> %d, %d threads: error %.2g, the bits of linear then add %d", M, K,
              N, nt, eo, !memcmp(out, out2, M * N * sizeof(float)));
    }
    omp_set_num_threads(saved);
    free(x), free(dy), free(w), free(b), free(res), free(out), free(out2), free(dx), free(dw), free(db);
    free(lw), free(lb), free(mean), free(rstd), free(ly), free(ldy), free(rdw), free(rdb);
}

/* The qkv product with each image's attention as its rows are done, and
 * its backward with each image's attention backward just ahead
 * (linear_forward_items, linear_backward_items), against the separate
 * ops: the forward's outputs and the input gradient the same bits, the
 * weight and bias gradients within 1e-5 relative (the threads' shares of
 * the rows differ), at 1-3 threads. */
typedef struct {
    float *out, *att, *dqkv, *scratch;
    const float *qkv, *dout, *att_in;
    int T, D, H;
} items_ctx;

static void items_fwd(void *p, int b0, int b1)
{
    items_ctx *c = p;
    attention_forward_images(c->out, c->att, c->qkv, b0, b1, c->T, c->D, c->H);
}

static void items_bwd(void *p, int b0, int b1)
{
    items_ctx *c = p;
    attention_backward_images(c->dqkv, c->dout, c->qkv, c->att_in,
                              c->scratch + (size_t)omp_get_thread_num() * attention_scratch_floats(c->T), b0, b1,
                              c->T, c->D, c->H);
}

static void test_items(int B, int T, int D, int H)
{
    uint64_t s = 17;
    size_t M = (size_t)B * T, N = 3 * (size_t)D, nw = N * D;
    float *x = malloc(M * D * sizeof(float)), *w = malloc(nw * sizeof(float)), *b = malloc(N * sizeof(float));
    float *dy = malloc(M * D * sizeof(float)), *dy2 = malloc(M * D * sizeof(float));
    float *qkv[2], *o[2], *att[2], *dqkv[2], *dw[2], *db[2];
    for (int v = 0; v < 2; v++) {
        qkv[v] = malloc(M * N * sizeof(float)), o[v] = malloc(M * D * sizeof(float));
        att[v] = malloc((size_t)B * H * T * T * sizeof(float)), dqkv[v] = malloc(M * N * sizeof(float));
        dw[v] = malloc(nw * sizeof(float)), db[v] = malloc(N * sizeof(float));
    }
    float *scratch = malloc(3 * attention_scratch_floats(T) * sizeof(float));
    for (size_t i = 0; i < M * D; i++) x[i] = frand(&s), dy[i] = frand(&s);
    for (size_t i = 0; i < nw; i++) w[i] = 0.2f * frand(&s);
    for (size_t i = 0; i < N; i++) b[i] = frand(&s);
    int saved = omp_get_max_threads();
    for (int nt = 1; nt <= 3; nt++) {
        omp_set_num_threads(nt);
        /* separately */
        linear_forward(qkv[0], x, w, b, (int)M, D, (int)N);
        attention_forward(o[0], att[0], qkv[0], B, T, D, H);
        memcpy(dy2, dy, M * D * sizeof(float));
        attention_backward(dqkv[0], dy2, qkv[0], att[0], scratch, 3, B, T, D, H);
        memset(dw[0], 0, nw * sizeof(float)), memset(db[0], 0, N * sizeof(float));
        linear_backward(dy2, dw[0], db[0], dqkv[0], x, w, (int)M, D, (int)N);
        /* fused */
        items_ctx c = {o[1], att[1], dqkv[1], scratch, qkv[1], NULL, NULL, T, D, H};
        linear_forward_items(qkv[1], x, w, b, B, T, D, (int)N, items_fwd, &c);
        float *dx = malloc(M * D * sizeof(float));
        memcpy(dx, dy, M * D * sizeof(float));
        c.dout = dx, c.att_in = att[1];
        memset(dw[1], 0, nw * sizeof(float)), memset(db[1], 0, N * sizeof(float));
        linear_backward_items(dx, dw[1], db[1], dqkv[1], x, w, B, T, D, (int)N, items_bwd, &c);
        int fwd_same = !memcmp(qkv[0], qkv[1], M * N * sizeof(float)) && !memcmp(o[0], o[1], M * D * sizeof(float)) &&
                       !memcmp(att[0], att[1], (size_t)B * H * T * T * sizeof(float));
        int bwd_same = !memcmp(dqkv[0], dqkv[1], M * N * sizeof(float)) && !memcmp(dy2, dx, M * D * sizeof(float));
        double ew = rel_err(dw[1], dw[0], nw), eb = rel_err(db[1], db[0], N);
        CHECK(fwd_same && bwd_same && ew < 1e-5 && eb < 1e-5,
              "qkv with attention on items, %d x %d tokens, %d wide, %d heads, %d threads: forward the same bits %d, "
              "gradients of qkv and input %d, weight grad %.2g, bias grad %.2g", B, T, D, H, nt, fwd_same, bwd_same,
              ew, eb);
        free(dx);
    }
    omp_set_num_threads(saved);
    for (int v = 0; v < 2; v++) free(qkv[v]), free(o[v]), free(att[v]), free(dqkv[v]), free(dw[v]), free(db[v]);
    free(x), free(w), free(b), free(dy), free(dy2), free(scratch);
}

/* fc1 with the GELU applied to each row tile as the product finishes it
 * (linear_forward_items, one row an item) against linear_forward then
 * gelu_forward: the same bits, at 1-3 threads */
typedef struct {
    float *h, *d;
    int N;
} gelu_ctx;

static void gelu_cb(void *p, int r0, int r1)
{
    gelu_ctx *c = p;
    size_t o = (size_t)r0 * c->N;
    gelu_forward_rows(c->h + o, c->d + o, c->h + o, (size_t)(r1 - r0) * c->N);
}

static void test_gelu_items(int M, int K, int N, int tiled)
{
    CHECK(linear_tiled(M, K, N) == tiled, "fc1 with the GELU, %d x %d -> %d: on %s", M, K, N,
          tiled ? "libxsmm's tiles" : "OpenBLAS");
    uint64_t s = 19;
    float *x = malloc((size_t)M * K * sizeof(float)), *w = malloc((size_t)N * K * sizeof(float));
    float *b = malloc(N * sizeof(float)), *h[2], *d[2];
    for (int v = 0; v < 2; v++) h[v] = malloc((size_t)M * N * sizeof(float)), d[v] = malloc((size_t)M * N * sizeof(float));
    for (size_t i = 0; i < (size_t)M * K; i++) x[i] = 4.0f * frand(&s);
    for (size_t i = 0; i < (size_t)N * K; i++) w[i] = frand(&s);
    for (int i = 0; i < N; i++) b[i] = frand(&s);
    int saved = omp_get_max_threads();
    for (int nt = 1; nt <= 3; nt++) {
        omp_set_num_threads(nt);
        linear_forward(h[0], x, w, b, M, K, N);
        gelu_forward(h[0], d[0], h[0], (size_t)M * N);
        gelu_ctx c = {h[1], d[1], N};
        linear_forward_items(h[1], x, w, b, M, 1, K, N, gelu_cb, &c);
        CHECK(!memcmp(h[0], h[1], (size_t)M * N * sizeof(float)) && !memcmp(d[0], d[1], (size_t)M * N * sizeof(float)),
              "fc1 with the GELU on its row tiles, %d x %d -> %d, %d threads: the same bits", M, K, N, nt);
    }
    omp_set_num_threads(saved);
    for (int v = 0; v < 2; v++) free(h[v]), free(d[v]);
    free(x), free(w), free(b);
}

/* the vectorizable exp (softmax, GELU) against exp in double */
static void test_exp(void)
{
    double worst = 0;
    for (int i = 0; i <= 1000000; i++) {
        float x = -87.0f + 175.0f * (float)i / 1000000.0f;
        double ref = exp((double)x), e = fabs(exp_vec(x) - ref) / ref;
        if (e > worst) worst = e;
    }
    printf("  exp: worst relative error %.2e on [-87, 88]\n", worst);
    CHECK(worst < 4e-7, "exp_vec relative error %.3g", worst);
#if defined(__AVX2__) && defined(__FMA__)
    /* the 8-lane version (softmax and GELU where there is AVX2 but not AVX-512) */
    double worst8 = 0;
    for (int i = 0; i <= 1000000; i += 8) {
        float xs[8], es[8];
        for (int l = 0; l < 8; l++) xs[l] = -87.0f + 175.0f * (float)(i + l) / 1000008.0f;
        _mm256_storeu_ps(es, exp8(_mm256_loadu_ps(xs)));
        for (int l = 0; l < 8; l++) {
            double ref = exp((double)xs[l]), e = fabs(es[l] - ref) / ref;
            if (e > worst8) worst8 = e;
        }
    }
    printf("  exp8: worst relative error %.2e on [-87, 88]\n", worst8);
    CHECK(worst8 < 4e-7, "exp8 relative error %.3g", worst8);
#endif
}

/* OpenBLAS's kernels: advice only where its choice is below what the CPU
 * can run, and never against the user's OPENBLAS_CORETYPE */
static void test_blas_advice(void)
{
    const char *core = maec_blas_core(), *adv = maec_blas_core_advice();
    CHECK(core && *core, "no OpenBLAS core name");
    CHECK(!adv || !strcmp(adv, "SkylakeX") || !strcmp(adv, "Haswell"), "advice %s", adv);
    int modern = !strcasecmp(core, "haswell") || !strcasecmp(core, "zen") || !strcasecmp(core, "excavator") ||
                 !strcasecmp(core, "skylakex") || !strcasecmp(core, "cooperlake") ||
                 !strcasecmp(core, "sapphirerapids");
    CHECK(!(modern && adv), "advice %s against OpenBLAS's own choice %s", adv, core);
    __builtin_cpu_init();
    if (!modern && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && !getenv("OPENBLAS_CORETYPE"))
        CHECK(adv != NULL, "OpenBLAS on %s kernels on a CPU with AVX2, and no advice", core);
    const char *was = getenv("OPENBLAS_CORETYPE");
    char keep[64] = "";
    if (was) snprintf(keep, sizeof keep, "%s", was);
    setenv("OPENBLAS_CORETYPE", "Haswell", 1);
    CHECK(maec_blas_core_advice() == NULL, "advice against a set OPENBLAS_CORETYPE");
    if (was) setenv("OPENBLAS_CORETYPE", keep, 1);
    else unsetenv("OPENBLAS_CORETYPE");
}

/* the linear layers' tests, libxsmm's tiles on where tiled is 1 */
static void linear_tests(int tiled)
{
    /* rows split between threads by hand; few rows against a wide weight
     * (OpenBLAS's own threads); a thin input (patch embedding); a handful of
     * rows */
    test_linear(1037, 48, 40);
    test_linear(700, 96, 200);  /* libxsmm path: full and short tiles in rows and columns */
    test_linear(1100, 130, 70);
    test_linear(29, 600, 33);
    test_linear(300, 16, 192);
    test_linear(7, 192, 100);
    test_backward_rows(40 * 37, 128, 512, tiled); /* libxsmm's tiles: fmnist-tiny's decoder, fc1 */
    test_backward_rows(20 * 48, 128, 128, tiled); /* cifar-tiny's decoder, proj */
    test_backward_rows(3 * 15, 64, 48, 0);    /* few rows: OpenBLAS */
    test_items(80, 17, 192, 3); /* libxsmm's tiles: cifar-tiny's encoder */
    test_items(20, 65, 128, 4); /* its decoder */
    test_items(3, 9, 48, 2);    /* few rows: OpenBLAS, then attention */
    test_gelu_items(1650, 192, 768, tiled); /* libxsmm's tiles, short last tiles */
    test_gelu_items(50, 64, 96, 0);     /* few rows: OpenBLAS, then the GELU */
}

/* Unlike the other test programs, this one does not call
 * test_on_command_kernels (test.h): the ops are checked on the kernels
 * OpenBLAS picks by itself (its generic ones where it does not know the
 * CPU), and test_blas_advice sees the advice where there is one. */
int main(void)
{
    test_blas_advice();
    test_exp();
    test_gelu();
    test_attention(3, 13, 192, 3);
    /* the short-sequence kernels: each block of 16 keys (AVX-512) or 8
     * (AVX2), heads of 32 and 64 (and any multiple of 8 to 64 on AVX2),
     * sequences shorter than a row block */
    test_attention(3, 17, 192, 3);
    test_attention(2, 1, 64, 1);
    test_attention(2, 5, 128, 4);
    test_attention(2, 16, 64, 1);
    test_attention(3, 32, 128, 2);
    test_attention(2, 47, 64, 2);
    test_attention(2, 65, 128, 4);
    test_attention(2, 80, 128, 2);
    test_attention(2, 81, 128, 2);
    test_attention(3, 140, 64, 2);
    test_attention(2, 197, 64, 2); /* ViT-B at 224, its decoder (AVX2: the longest short kernel) */
    test_attention(1, 201, 64, 2); /* past it: OpenBLAS */
    test_attention(1, 50, 64, 2);
    test_attention(4, 50, 128, 4);
    test_attention(3, 33, 48, 4);
    test_attention(3, 65, 160, 2);
    test_attention(2, 128, 32, 1);
    test_attention(2, 23, 96, 4);  /* heads of 24 */
    test_attention(3, 9, 80, 2);   /* heads of 40 */
    /* the products on libxsmm's tiles where they apply (every CPU can run
     * them; the default where it has AVX-512), then on OpenBLAS alone (the
     * default with AVX2 only) */
    int default_tiled = linear_set_tiled(1);
    for (int tiled = 1; tiled >= 0; tiled--) {
        linear_set_tiled(tiled);
        printf("  linear layers %s\n", tiled ? "on libxsmm's tiles where they apply" : "on OpenBLAS alone");
        linear_tests(tiled);
    }
    linear_set_tiled(default_tiled);
    test_layernorm(301, 192);
    test_layernorm(3, 4100);
    TEST_END();
}
