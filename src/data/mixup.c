/* Mixup and CutMix as timm's Mixup (batch, pair and elem modes, label
 * smoothing on the mixed targets), drawn from the caller's random stream. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "maec.h"
#include "util.h"

/* Gamma(a, 1): Marsaglia and Tsang, with the a < 1 boost */
static double gamma_draw(double a, uint64_t *rng)
{
    if (a < 1.0) {
        double u = rng_uniform_d(rng);
        return gamma_draw(a + 1.0, rng) * pow(u > 0 ? u : 1e-300, 1.0 / a);
    }
    double d = a - 1.0 / 3.0, cc = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x = rng_normal(rng), v = 1.0 + cc * x;
        if (v <= 0) continue;
        v = v * v * v;
        double u = rng_uniform_d(rng);
        if (u < 1.0 - 0.0331 * x * x * x * x) return d * v;
        if (u > 0 && log(u) < 0.5 * x * x + d * (1.0 - v + log(v))) return d * v;
    }
}

static double beta_draw(double a, uint64_t *rng)
{
    double x = gamma_draw(a, rng), y = gamma_draw(a, rng);
    return x + y > 0 ? x / (x + y) : 0.5;
}

static int randint(int lo, int hi, uint64_t *rng) /* [lo, hi) */
{
    return lo + (int)(rng_uniform_d(rng) * (hi - lo));
}

int maec_mix_draws(int mode, int B)
{
    return mode == MAEC_MIX_ELEM ? B : mode == MAEC_MIX_PAIR ? B / 2 : 1;
}

void maec_mix_cutbox(int H, int W, double lam, int cy, int cx, maec_mix_draw *d)
{
    /* timm's rand_bbox (no margin) and cutmix_bbox_and_lam with correct_lam */
    double ratio = sqrt(1.0 - lam);
    int ch = (int)(H * ratio), cw = (int)(W * ratio);
    int yl = cy - ch / 2, yh = cy + ch / 2, xl = cx - cw / 2, xh = cx + cw / 2;
    d->yl = yl < 0 ? 0 : yl > H ? H : yl;
    d->yh = yh < 0 ? 0 : yh > H ? H : yh;
    d->xl = xl < 0 ? 0 : xl > W ? W : xl;
    d->xh = xh < 0 ? 0 : xh > W ? W : xh;
    d->cutmix = 1;
    d->lam = 1.0 - (double)(d->yh - d->yl) * (d->xh - d->xl) / ((double)H * W);
}

/* one mixing decision as timm's _params_per_batch / _params_per_elem draw
 * it: mixed at all with probability prob (no draw when prob is 1), CutMix
 * with switch_prob when both alphas are on, lam ~ Beta(alpha, alpha) */
static void mix_draw_one(const maec_mixup_opts *o, int H, int W, uint64_t *rng, maec_mix_draw *d)
{
    memset(d, 0, sizeof *d);
    d->lam = 1.0;
    if (!(o->mixup_alpha > 0) && !(o->cutmix_alpha > 0)) return;
    if (o->prob < 1.0f && !(rng_uniform_d(rng) < o->prob)) return;
    int cutmix = 0;
    double lam;
    if (o->mixup_alpha > 0 && o->cutmix_alpha > 0) {
        cutmix = rng_uniform_d(rng) < o->switch_prob;
        lam = beta_draw(cutmix ? o->cutmix_alpha : o->mixup_alpha, rng);
    } else if (o->mixup_alpha > 0) {
        lam = beta_draw(o->mixup_alpha, rng);
    } else {
        cutmix = 1;
        lam = beta_draw(o->cutmix_alpha, rng);
    }
    d->lam = lam;
    if (cutmix && lam < 1.0) {
        int cy = randint(0, H, rng), cx = randint(0, W, rng);
        maec_mix_cutbox(H, W, lam, cy, cx, d);
    }
}

void maec_mix_sample(const maec_mixup_opts *o, int B, int H, int W, uint64_t *rng, maec_mix_draw *d)
{
    int n = maec_mix_draws(o->mode, B);
    for (int i = 0; i < n; i++) {
        mix_draw_one(o, H, W, rng, &d[i]);
        /* timm keeps per-image and per-pair lams in a float32 array */
        if (o->mode != MAEC_MIX_BATCH) d[i].lam = (float)d[i].lam;
    }
}

/* image b's pixel (y, x) under its draw: a its own value, z its partner's */
static inline float mix_px(const maec_mix_draw *d, float lf, float mf, int y, int x, float a, float z)
{
    if (d->lam >= 1.0) return a;
    if (d->cutmix) return y >= d->yl && y < d->yh && x >= d->xl && x < d->xh ? z : a;
    return a * lf + z * mf;
}

/* the draw that image b of B takes */
static const maec_mix_draw *mix_of(const maec_mix_draw *d, int mode, int b, int B)
{
    return mode == MAEC_MIX_ELEM ? &d[b] : mode == MAEC_MIX_PAIR ? &d[b < B / 2 ? b : B - 1 - b] : &d[0];
}

void maec_mix_apply(float *images, const int *labels, float *targets, int B, int C, int H, int W, int K, int mode,
                    const maec_mix_draw *d, float smoothing)
{
    size_t img = (size_t)C * H * W;
    /* each pair (i, B-1-i) from both originals, so no copy of the batch */
    for (int i = 0; i < B / 2; i++) {
        const maec_mix_draw *di = mix_of(d, mode, i, B), *dj = mix_of(d, mode, B - 1 - i, B);
        if (di->lam >= 1.0 && dj->lam >= 1.0) continue;
        float lfi = (float)di->lam, mfi = (float)(1.0 - di->lam), lfj = (float)dj->lam, mfj = (float)(1.0 - dj->lam);
        float *p = images + (size_t)i * img, *q = images + (size_t)(B - 1 - i) * img;
        for (int c = 0; c < C; c++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    size_t k = ((size_t)c * H + y) * W + x;
                    float a = p[k], z = q[k];
                    p[k] = mix_px(di, lfi, mfi, y, x, a, z);
                    q[k] = mix_px(dj, lfj, mfj, y, x, z, a);
                }
    }
    float off = smoothing / K, on = 1.0f - smoothing + off;
    for (int b = 0; b < B; b++) {
        const maec_mix_draw *db = mix_of(d, mode, b, B);
        float lf = (float)db->lam, mf = (float)(1.0 - db->lam);
        float *t = targets + (size_t)b * K;
        int y1 = labels[b], y2 = labels[B - 1 - b];
        for (int k = 0; k < K; k++) {
            float v1 = k == y1 ? on : off, v2 = k == y2 ? on : off;
            t[k] = v1 * lf + v2 * mf;
        }
    }
}

float maec_mixup(float *images, const int *labels, float *targets, int B, int C, int H, int W, int K,
                 float mixup_alpha, float cutmix_alpha, float switch_prob, float smoothing, uint64_t *rng)
{
    maec_mixup_opts o = {mixup_alpha, cutmix_alpha, 1.0f, switch_prob, smoothing, MAEC_MIX_BATCH};
    maec_mix_draw d;
    maec_mix_sample(&o, B, H, W, rng, &d);
    maec_mix_apply(images, labels, targets, B, C, H, W, K, MAEC_MIX_BATCH, &d, smoothing);
    return (float)d.lam;
}

