/* Resampling (PIL's bicubic), RandomResizedCrop, flip, channel conversion,
 * normalization, and the data set's mean and standard deviation. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"
#include "data/internal.h"
#include "util.h"

/* ------------------------------------------------------------------ resampling */

/* Keys cubic with a = -0.5, support 2 (PIL's bicubic_filter) */
static double bicubic(double x)
{
    const double a = -0.5;
    if (x < 0) x = -x;
    if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
    return 0;
}

typedef struct {
    int ksize;
    int *bounds; /* [out][2]: first input index, count */
    double *k;   /* [out][ksize] normalized weights */
} coeffs;

static void coeffs_free(coeffs *c)
{
    free(c->bounds);
    free(c->k);
}

/* PIL's precompute_coeffs: the kernel is widened by the scale when
 * downscaling (antialiasing); weights are normalized to sum to 1 */
static int coeffs_make(coeffs *c, int in_size, double in0, double in1, int out_size)
{
    double scale = (in1 - in0) / out_size, filterscale = scale < 1 ? 1 : scale;
    double support = 2.0 * filterscale;
    c->ksize = (int)ceil(support) * 2 + 1;
    size_t nk;
    c->bounds = malloc((size_t)out_size * 2 * sizeof(int));
    c->k = size_mul((size_t)out_size, (size_t)c->ksize, &nk) && nk < ((size_t)1 << 32)
               ? malloc(nk * sizeof(double))
               : NULL;
    if (!c->bounds || !c->k) {
        coeffs_free(c);
        return -1;
    }
    for (int xx = 0; xx < out_size; xx++) {
        double center = in0 + (xx + 0.5) * scale, ss = 1.0 / filterscale, ww = 0;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double *k = c->k + (size_t)xx * c->ksize;
        int x = 0;
        for (; x < xmax; x++) {
            double w = bicubic((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (x = 0; x < xmax; x++)
            if (ww != 0) k[x] /= ww;
        for (; x < c->ksize; x++) k[x] = 0;
        c->bounds[2 * xx] = xmin;
        c->bounds[2 * xx + 1] = xmax;
    }
    return 0;
}

static float clamp01(double v) { return v < 0 ? 0.0f : v > 1 ? 1.0f : (float)v; }

/* Resample the box [x0,x1) x [y0,y1) of a C x H x W view (planes plane_stride
 * apart, rows row_stride apart) into out [C, oh, ow]: horizontal pass, then
 * vertical, each clamped to [0, 1] as PIL does for 8-bit images; a pass
 * whose size and box are the identity is skipped, as in PIL. */
static int resample(const float *src, int C, int H, int W, size_t plane_stride,
                    size_t row_stride, double x0, double y0, double x1, double y1, int oh, int ow,
                    float *out)
{
    int need_h = ow != W || x0 != 0 || x1 != W;
    int need_v = oh != H || y0 != 0 || y1 != H;
    coeffs cx = {0}, cy = {0};
    if (need_h && coeffs_make(&cx, W, x0, x1, ow)) return -1;
    if (need_v && coeffs_make(&cy, H, y0, y1, oh)) {
        coeffs_free(&cx);
        return -1;
    }
    /* the source rows the vertical pass reads */
    int r0 = 0, r1 = H;
    if (need_v) {
        r0 = cy.bounds[0];
        r1 = cy.bounds[2 * (oh - 1)] + cy.bounds[2 * (oh - 1) + 1];
    }
    int tw = need_h ? ow : W; /* == ow */
    float *tmp = malloc((size_t)(r1 - r0) * (size_t)tw * sizeof(float));
    if (!tmp) {
        coeffs_free(&cx);
        coeffs_free(&cy);
        return -1;
    }
    for (int c = 0; c < C; c++) {
        const float *sp = src + (size_t)c * plane_stride;
        for (int y = r0; y < r1; y++) {
            const float *row = sp + (size_t)y * row_stride;
            float *t = tmp + (size_t)(y - r0) * tw;
            if (!need_h) {
                memcpy(t, row, (size_t)W * sizeof(float));
                continue;
            }
            for (int xx = 0; xx < ow; xx++) {
                int xmin = cx.bounds[2 * xx], n = cx.bounds[2 * xx + 1];
                const double *k = cx.k + (size_t)xx * cx.ksize;
                double acc = 0;
                for (int x = 0; x < n; x++) acc += row[xmin + x] * k[x];
                t[xx] = clamp01(acc);
            }
        }
        float *op = out + (size_t)c * oh * ow;
        for (int yy = 0; yy < oh; yy++) {
            float *o = op + (size_t)yy * ow;
            if (!need_v) {
                memcpy(o, tmp + (size_t)(yy - r0) * tw, (size_t)ow * sizeof(float));
                continue;
            }
            int ymin = cy.bounds[2 * yy], n = cy.bounds[2 * yy + 1];
            const double *k = cy.k + (size_t)yy * cy.ksize;
            for (int xx = 0; xx < ow; xx++) {
                double acc = 0;
                for (int y = 0; y < n; y++) acc += tmp[(size_t)(ymin + y - r0) * tw + xx] * k[y];
                o[xx] = clamp01(acc);
            }
        }
    }
    free(tmp);
    coeffs_free(&cx);
    coeffs_free(&cy);
    return 0;
}

static int check_image(const maec_image *src, maec_error *err)
{
    if (!src || !src->data || (src->c != 1 && src->c != 3) || src->h <= 0 || src->w <= 0)
        return maec_fail(err, MAEC_EINVAL, "bad source image (%d channels, %dx%d)",
                         src ? src->c : 0, src ? src->h : 0, src ? src->w : 0);
    return 0;
}

int maec_resize_bicubic(const maec_image *src, float x0, float y0, float bw, float bh, int out_h,
                        int out_w, float *out, maec_error *err)
{
    int rc = check_image(src, err);
    if (rc) return rc;
    if (out_h <= 0 || out_w <= 0 || out_h > (int)MAEC_MAX_SIDE || out_w > (int)MAEC_MAX_SIDE)
        return maec_fail(err, MAEC_EINVAL, "bad output size %dx%d", out_h, out_w);
    if (!(x0 >= 0 && y0 >= 0 && bw > 0 && bh > 0 && (double)x0 + bw <= src->w &&
          (double)y0 + bh <= src->h))
        return maec_fail(err, MAEC_EINVAL, "resize box (%g, %g, %g x %g) is not inside the %dx%d "
                         "image", (double)x0, (double)y0, (double)bw, (double)bh, src->w, src->h);
    size_t plane = (size_t)src->h * src->w;
    if (resample(src->data, src->c, src->h, src->w, plane, (size_t)src->w, x0, y0,
                 (double)x0 + bw, (double)y0 + bh, out_h, out_w, out))
        return maec_fail(err, MAEC_ENOMEM, "out of memory resizing to %dx%d", out_h, out_w);
    return 0;
}

/* ------------------------------------------------------------------ augmentation */

void maec_augment_defaults(maec_augment *a, int c, int h, int w)
{
    memset(a, 0, sizeof *a);
    a->out_c = c;
    a->out_h = h;
    a->out_w = w;
    a->random_resized_crop = 1;
    a->scale_min = 0.2f;
    a->scale_max = 1.0f;
    a->ratio_min = 3.0f / 4.0f;
    a->ratio_max = 4.0f / 3.0f;
    a->hflip = 1;
    for (int i = 0; i < 3; i++) {
        a->mean[i] = 0.0f;
        a->std[i] = 1.0f;
    }
}

int maec_augment_check(const maec_augment *a, maec_error *err)
{
    if (!a) return maec_fail(err, MAEC_EINVAL, "no augmentation settings");
    if (a->out_c != 1 && a->out_c != 3)
        return maec_fail(err, MAEC_EINVAL, "augmentation: %d output channels (want 1 or 3)", a->out_c);
    if (a->out_h <= 0 || a->out_w <= 0 || a->out_h > (int)MAEC_MAX_SIDE ||
        a->out_w > (int)MAEC_MAX_SIDE)
        return maec_fail(err, MAEC_EINVAL, "augmentation: bad output size %dx%d", a->out_h, a->out_w);
    if (a->random_resized_crop &&
        !(a->scale_min > 0 && a->scale_min <= a->scale_max && a->scale_max <= 1 &&
          a->ratio_min > 0 && a->ratio_min <= a->ratio_max && isfinite(a->ratio_max)))
        return maec_fail(err, MAEC_EINVAL, "augmentation: bad crop scale (%g, %g) or ratio (%g, %g)",
                         (double)a->scale_min, (double)a->scale_max, (double)a->ratio_min,
                         (double)a->ratio_max);
    if (a->randaug.on && !(a->randaug.n >= 0 && a->randaug.n <= 16 && a->randaug.m >= 0 &&
                           isfinite(a->randaug.m) && a->randaug.mstd >= 0 && isfinite(a->randaug.mstd)))
        return maec_fail(err, MAEC_EINVAL, "augmentation: bad RandAugment settings (n %d, m %g, mstd %g)",
                         a->randaug.n, (double)a->randaug.m, (double)a->randaug.mstd);
    if (!(a->crop_pct >= 0 && a->crop_pct <= 1))
        return maec_fail(err, MAEC_EINVAL, "augmentation: crop_pct %g (want 0 to 1)", (double)a->crop_pct);
    if (!(a->color_jitter >= 0 && a->color_jitter <= 10))
        return maec_fail(err, MAEC_EINVAL, "augmentation: colour jitter %g (want 0 to 10)", (double)a->color_jitter);
    if (!(a->reprob >= 0 && a->reprob <= 1))
        return maec_fail(err, MAEC_EINVAL, "augmentation: random erasing probability %g (want 0 to 1)",
                         (double)a->reprob);
    for (int c = 0; c < a->out_c; c++)
        if (!isfinite(a->mean[c]) || !isfinite(a->std[c]) || a->std[c] == 0)
            return maec_fail(err, MAEC_EINVAL, "augmentation: bad mean %g / std %g of channel %d",
                             (double)a->mean[c], (double)a->std[c], c);
    return 0;
}

/* integer in [0, n) */
static int rand_below(uint64_t *rng, int n) { return (int)(rng_uniform_d(rng) * n); }

void maec_random_resized_crop_box(int h, int w, float scale_min, float scale_max,
                                  float ratio_min, float ratio_max, uint64_t *rng, int *ci,
                                  int *cj, int *ch, int *cw)
{
    if (h <= 0 || w <= 0 || !(scale_min > 0 && scale_min <= scale_max && ratio_min > 0 &&
                              ratio_min <= ratio_max && isfinite(scale_max) && isfinite(ratio_max))) {
        /* nonsense settings (maec_augment_check refuses them): the whole image */
        *ci = *cj = 0;
        *ch = h > 0 ? h : 0;
        *cw = w > 0 ? w : 0;
        return;
    }
    double area = (double)h * w;
    double lr0 = log(ratio_min), lr1 = log(ratio_max);
    for (int t = 0; t < 10; t++) {
        double target = area * (scale_min + (scale_max - scale_min) * rng_uniform_d(rng));
        double ratio = exp(lr0 + (lr1 - lr0) * rng_uniform_d(rng));
        /* Python's round(): half to even, as rint in the default mode */
        double bw = rint(sqrt(target * ratio)), bh = rint(sqrt(target / ratio));
        if (bw > 0 && bw <= w && bh > 0 && bh <= h) {
            *ch = (int)bh;
            *cw = (int)bw;
            *ci = rand_below(rng, h - *ch + 1);
            *cj = rand_below(rng, w - *cw + 1);
            return;
        }
    }
    /* fallback: center crop with the ratio clamped to the range */
    double in_ratio = (double)w / h;
    int bw = w, bh = h;
    if (in_ratio < ratio_min) {
        bh = (int)rint(w / (double)ratio_min);
    } else if (in_ratio > ratio_max) {
        bw = (int)rint(h * (double)ratio_max);
    }
    if (bh < 1) bh = 1;
    if (bw < 1) bw = 1;
    if (bh > h) bh = h;
    if (bw > w) bw = w;
    *ch = bh;
    *cw = bw;
    *ci = (h - bh) / 2;
    *cj = (w - bw) / 2;
}

void maec_center_crop_box(int h, int w, int oh, int ow, double crop_pct, double *x0, double *y0, double *x1,
                          double *y1)
{
    /* torchvision Resize(int(size / crop_pct)) on the shorter side (the
     * longer one int(short' * long / short)), then CenterCrop(size) with
     * Python's round (half to even); for an oh x ow output the image is
     * scaled to cover int(oh / crop_pct) x int(ow / crop_pct) */
    int hs = (int)(oh / crop_pct), ws = (int)(ow / crop_pct), rh, rw;
    if ((double)hs / h >= (double)ws / w) {
        rh = hs;
        rw = (int)((double)hs * w / h);
    } else {
        rw = ws;
        rh = (int)((double)ws * h / w);
    }
    if (rh < oh) rh = oh;
    if (rw < ow) rw = ow;
    double top = rint((rh - oh) / 2.0), left = rint((rw - ow) / 2.0);
    *y0 = top * h / rh, *y1 = (top + oh) * h / rh;
    *x0 = left * w / rw, *x1 = (left + ow) * w / rw;
}

int maec_augment_apply(const maec_augment *a, const maec_image *src, float *out, uint64_t *rng,
                       maec_error *err)
{
    int rc = maec_augment_check(a, err);
    if (!rc) rc = check_image(src, err);
    if (rc) return rc;
    int C = src->c, oh = a->out_h, ow = a->out_w, oc = a->out_c;
    size_t oplane = (size_t)oh * ow;
    /* 3 -> 1 channels needs room for three planes; otherwise resample into out */
    float *tmp = NULL, *dst = out;
    if (C > oc) {
        tmp = malloc((size_t)C * oplane * sizeof(float));
        if (!tmp) return maec_fail(err, MAEC_ENOMEM, "out of memory");
        dst = tmp;
    }
    uint64_t dummy = 0;
    if (!rng) rng = &dummy;
    size_t plane = (size_t)src->h * src->w;
    int fail;
    if (a->random_resized_crop) {
        int i, j, ch, cw;
        maec_random_resized_crop_box(src->h, src->w, a->scale_min, a->scale_max, a->ratio_min,
                                     a->ratio_max, rng, &i, &j, &ch, &cw);
        /* crop, then resize the crop (as torchvision): the kernel stays inside */
        fail = resample(src->data + (size_t)i * src->w + j, C, ch, cw, plane, (size_t)src->w, 0, 0,
                        cw, ch, oh, ow, dst);
    } else if (a->crop_pct > 0) {
        double x0, y0, x1, y1;
        maec_center_crop_box(src->h, src->w, oh, ow, a->crop_pct, &x0, &y0, &x1, &y1);
        fail = resample(src->data, C, src->h, src->w, plane, (size_t)src->w, x0, y0, x1, y1, oh, ow, dst);
    } else {
        fail = resample(src->data, C, src->h, src->w, plane, (size_t)src->w, 0, 0, src->w, src->h,
                        oh, ow, dst);
    }
    if (fail) {
        free(tmp);
        return maec_fail(err, MAEC_ENOMEM, "out of memory resizing to %dx%d", oh, ow);
    }
    if (a->hflip && rng_uniform_d(rng) < 0.5) {
        for (size_t r = 0; r < (size_t)C * oh; r++) {
            float *row = dst + r * ow;
            for (int x = 0, y = ow - 1; x < y; x++, y--) {
                float t = row[x];
                row[x] = row[y];
                row[y] = t;
            }
        }
    }
    if (C == 3 && oc == 1) {
        for (size_t k = 0; k < oplane; k++)
            out[k] = 0.299f * dst[k] + 0.587f * dst[oplane + k] + 0.114f * dst[2 * oplane + k];
    } else if (C == 1 && oc == 3) {
        memcpy(out + oplane, out, oplane * sizeof(float));
        memcpy(out + 2 * oplane, out, oplane * sizeof(float));
    }
    free(tmp);
    if (a->randaug.on || a->color_jitter > 0) {
        uint8_t *q = malloc((size_t)oc * oplane), fill[3];
        if (!q) return maec_fail(err, MAEC_ENOMEM, "out of memory");
        for (size_t k = 0; k < (size_t)oc * oplane; k++) {
            float v = out[k] * 255.0f + 0.5f;
            q[k] = (uint8_t)(v <= 0 ? 0 : v >= 255 ? 255 : v);
        }
        for (int c = 0; c < oc; c++) {
            float v = a->mean[c] * 255.0f + 0.5f;
            fill[c] = (uint8_t)(v <= 0 ? 0 : v >= 255 ? 255 : v);
        }
        /* timm: RandAugment, or else the colour jitter, never both */
        int rc2 = a->randaug.on ? maec_randaug_apply(&a->randaug, q, oc, oh, ow, fill, rng, err)
                                : maec_color_jitter(a->color_jitter, q, oc, oh, ow, rng, err);
        for (size_t k = 0; !rc2 && k < (size_t)oc * oplane; k++) out[k] = q[k] / 255.0f;
        free(q);
        if (rc2) return rc2;
    }
    for (int c = 0; c < oc; c++) {
        float m = a->mean[c], inv = 1.0f / a->std[c];
        float *p = out + (size_t)c * oplane;
        if (m == 0.0f && a->std[c] == 1.0f) continue;
        for (size_t k = 0; k < oplane; k++) p[k] = (p[k] - m) * inv;
    }
    if (a->reprob > 0) maec_random_erase(out, oc, oh, ow, a->reprob, rng);
    return 0;
}

void maec_random_erase(float *img, int c, int h, int w, float p, uint64_t *rng)
{
    if (rng_uniform_d(rng) >= p) return; /* timm: random() > p returns */
    const double area = (double)h * w, la = log(0.3), lb = log(1 / 0.3);
    for (int attempt = 0; attempt < 10; attempt++) {
        double target = (0.02 + (1.0 / 3 - 0.02) * rng_uniform_d(rng)) * area;
        double aspect = exp(la + (lb - la) * rng_uniform_d(rng));
        int eh = (int)lround(sqrt(target * aspect)), ew = (int)lround(sqrt(target / aspect));
        if (ew >= w || eh >= h) continue;
        /* randint(0, h - eh), both ends included */
        int top = (int)(rng_uniform_d(rng) * (h - eh + 1)), left = (int)(rng_uniform_d(rng) * (w - ew + 1));
        for (int ch = 0; ch < c; ch++)
            for (int y = top; y < top + eh; y++)
                for (int x = left; x < left + ew; x++) img[((size_t)ch * h + y) * w + x] = (float)rng_normal(rng);
        return;
    }
}

/* ------------------------------------------------------------------ statistics */

#define STAT_BLOCK 256

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

int maec_dataset_mean_std(maec_dataset *ds, int out_c, int64_t max_samples, uint64_t seed, float *mean,
                          float *std, maec_error *err)
{
    if (!ds || !mean || !std) return maec_fail(err, MAEC_EINVAL, "maec_dataset_mean_std: no data set");
    if (out_c != 1 && out_c != 3)
        return maec_fail(err, MAEC_EINVAL, "mean/std: %d channels (want 1 or 3)", out_c);
    int64_t n = ds->n, *idx = NULL;
    if (max_samples > 0 && max_samples < n) {
        /* a seeded sample over the whole set (the first images of a
         * class-sorted folder are a class or two), in index order */
        int64_t *perm = malloc((size_t)n * sizeof *perm);
        if (!perm) return maec_fail(err, MAEC_ENOMEM, "out of memory");
        uint64_t rng = rng_derive(seed, 0x6e6f726d, (uint64_t)n, 0);
        for (int64_t i = 0; i < n; i++) perm[i] = i;
        for (int64_t i = 0; i < max_samples; i++) {
            int64_t j = i + (int64_t)(rng_next(&rng) % (uint64_t)(n - i)), t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        qsort(perm, (size_t)max_samples, sizeof *perm, cmp_i64);
        idx = perm;
        n = max_samples;
    }
    /* per image sums, then added in image order: the result does not depend
     * on the thread count */
    double (*part)[2][3] = malloc(STAT_BLOCK * sizeof *part);
    double *cnt = malloc(STAT_BLOCK * sizeof(double));
    int *rcs = malloc(STAT_BLOCK * sizeof(int));
    maec_error *errs = malloc(STAT_BLOCK * sizeof(maec_error));
    if (!part || !cnt || !rcs || !errs) {
        free(part);
        free(cnt);
        free(rcs);
        free(errs);
        free(idx);
        return maec_fail(err, MAEC_ENOMEM, "out of memory");
    }
    double s[3] = {0}, ss[3] = {0}, count = 0;
    int rc = 0;
    for (int64_t b0 = 0; b0 < n && !rc; b0 += STAT_BLOCK) {
        int nb = (int)(n - b0 < STAT_BLOCK ? n - b0 : STAT_BLOCK);
#pragma omp parallel
        {
            maec_image img = {0};
#pragma omp for schedule(dynamic)
            for (int k = 0; k < nb; k++) {
                rcs[k] = maec_dataset_get(ds, idx ? idx[b0 + k] : b0 + k, &img, &errs[k]);
                memset(part[k], 0, sizeof part[k]);
                cnt[k] = 0;
                if (rcs[k]) continue;
                size_t plane = (size_t)img.h * img.w;
                const float *d = img.data;
                for (size_t q = 0; q < plane; q++) {
                    double px[3];
                    if (img.c == 1) {
                        px[0] = px[1] = px[2] = d[q];
                    } else if (out_c == 1) {
                        px[0] = 0.299f * d[q] + 0.587f * d[plane + q] + 0.114f * d[2 * plane + q];
                    } else {
                        px[0] = d[q], px[1] = d[plane + q], px[2] = d[2 * plane + q];
                    }
                    for (int c = 0; c < out_c; c++) {
                        part[k][0][c] += px[c];
                        part[k][1][c] += px[c] * px[c];
                    }
                }
                cnt[k] = (double)plane;
            }
            maec_image_free(&img);
        }
        for (int k = 0; k < nb; k++) {
            if (rcs[k]) {
                if (err) *err = errs[k];
                rc = rcs[k];
                break;
            }
            for (int c = 0; c < out_c; c++) {
                s[c] += part[k][0][c];
                ss[c] += part[k][1][c];
            }
            count += cnt[k];
        }
    }
    free(idx);
    free(part);
    free(cnt);
    free(rcs);
    free(errs);
    if (rc) return rc;
    if (count <= 0) return maec_fail(err, MAEC_EINVAL, "mean/std: no pixels");
    for (int c = 0; c < out_c; c++) {
        double m = s[c] / count, v = ss[c] / count - m * m;
        mean[c] = (float)m;
        std[c] = (float)sqrt(v > 0 ? v : 0);
    }
    return 0;
}
