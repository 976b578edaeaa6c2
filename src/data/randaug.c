/* RandAugment as timm's rand_augment_transform (the version the official
 * MAE code pins, 0.3.2), on 8-bit images as PIL holds them: n operations
 * drawn with replacement from fifteen, each applied with probability 0.5 at
 * a magnitude drawn around m. The operations follow PIL's: ImageOps'
 * autocontrast, equalize, invert, posterize, solarize; ImageEnhance's
 * blends (truncated to 8 bits as Image.blend does); affine transforms
 * (rotate, shear, translate) with PIL's bicubic filter (a = -1, taps
 * clamped at the border), the area outside the image in the fill colour. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"
#include "data/internal.h"
#include "util.h"

#define RA_MAX_LEVEL 10.0

enum {
    OP_AUTOCONTRAST, OP_EQUALIZE, OP_INVERT, OP_ROTATE, OP_POSTERIZE, OP_SOLARIZE, OP_SOLARIZE_ADD,
    OP_COLOR, OP_CONTRAST, OP_BRIGHTNESS, OP_SHARPNESS, OP_SHEAR_X, OP_SHEAR_Y, OP_TRANSLATE_X,
    OP_TRANSLATE_Y, OP_COUNT
};

int maec_randaug_parse(const char *s, maec_randaug *ra, maec_error *err)
{
    memset(ra, 0, sizeof *ra);
    if (!s || !*s || !strcmp(s, "none")) return 0;
    if (strncmp(s, "rand", 4) || (s[4] && s[4] != '-'))
        return maec_fail(err, MAEC_EINVAL, "auto-augment '%s': only RandAugment ('rand-m9-mstd0.5-inc1', or 'none')", s);
    ra->n = 2;
    ra->m = 10;
    const char *p = s + 4;
    while (*p == '-') {
        p++;
        const char *v = p;
        while (*v >= 'a' && *v <= 'z') v++;
        size_t kl = (size_t)(v - p);
        char *end;
        double x = strtod(v, &end);
        if (kl == 0 || end == v || (*end && *end != '-') || !isfinite(x) || x < 0)
            return maec_fail(err, MAEC_EINVAL, "auto-augment '%s': cannot read '%.*s'", s,
                             (int)(strcspn(p, "-")), p);
        if (kl == 1 && *p == 'm' && x <= 30) ra->m = (float)x;
        else if (kl == 1 && *p == 'n' && x == floor(x) && x <= 16) ra->n = (int)x;
        else if (kl == 4 && !strncmp(p, "mstd", 4) && x <= 100) ra->mstd = (float)x;
        else if (kl == 3 && !strncmp(p, "inc", 3) && (x == 0 || x == 1)) ra->increasing = (int)x;
        else
            return maec_fail(err, MAEC_EINVAL, "auto-augment '%s': unknown or out-of-range part '%.*s' (m, n, mstd, inc)",
                             s, (int)(strcspn(p, "-")), p);
        p = end;
    }
    if (*p) return maec_fail(err, MAEC_EINVAL, "auto-augment '%s': cannot read it", s);
    ra->on = 1;
    return 0;
}

/* ------------------------------------------------------------------ the operations */

static uint8_t clip8(double v) { return v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)v; }

/* Image.blend(degenerate, image, factor) for one plane */
static void blend(const uint8_t *deg, uint8_t *img, size_t n, double f)
{
    /* ImagingBlend takes alpha as a C float and computes in float */
    float a = (float)f;
    for (size_t i = 0; i < n; i++) img[i] = clip8((float)(int)deg[i] + a * (float)((int)img[i] - (int)deg[i]));
}

/* PIL's L of RGB planes (ITU-R 601-2 in 16-bit fixed point), or the plane itself */
static void to_gray(const uint8_t *img, int c, size_t n, uint8_t *g)
{
    if (c == 1) {
        memcpy(g, img, n);
        return;
    }
    for (size_t i = 0; i < n; i++)
        g[i] = (uint8_t)((img[i] * 19595u + img[n + i] * 38470u + img[2 * n + i] * 7471u + 0x8000u) >> 16);
}

static void apply_lut(uint8_t *p, size_t n, const uint8_t *lut)
{
    for (size_t i = 0; i < n; i++) p[i] = lut[p[i]];
}

static void autocontrast(uint8_t *p, size_t n)
{
    int lo = 255, hi = 0;
    for (size_t i = 0; i < n; i++) lo = p[i] < lo ? p[i] : lo, hi = p[i] > hi ? p[i] : hi;
    if (hi <= lo) return;
    double scale = 255.0 / (hi - lo), offset = -lo * scale;
    uint8_t lut[256];
    for (int i = 0; i < 256; i++) {
        int v = (int)(i * scale + offset);
        lut[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
    apply_lut(p, n, lut);
}

static void equalize(uint8_t *p, size_t n)
{
    size_t h[256] = {0}, total = 0, last = 0;
    for (size_t i = 0; i < n; i++) h[p[i]]++;
    int nonzero = 0;
    for (int i = 0; i < 256; i++)
        if (h[i]) total += h[i], last = h[i], nonzero++;
    if (nonzero <= 1) return;
    size_t step = (total - last) / 255;
    if (!step) return;
    uint8_t lut[256];
    size_t acc = step / 2;
    for (int i = 0; i < 256; i++) {
        size_t v = acc / step;
        lut[i] = (uint8_t)(v > 255 ? 255 : v);
        acc += h[i];
    }
    apply_lut(p, n, lut);
}

/* ImageFilter.SMOOTH (3 x 3, centre 5, the rest 1, / 13), border pixels kept */
static void smooth(const uint8_t *src, uint8_t *dst, int h, int w)
{
    memcpy(dst, src, (size_t)h * w);
    for (int y = 1; y < h - 1; y++)
        for (int x = 1; x < w - 1; x++) {
            int s = 0;
            for (int dy = -1; dy <= 1; dy++)
                for (int dx = -1; dx <= 1; dx++) s += src[(size_t)(y + dy) * w + x + dx] * (dx || dy ? 1 : 5);
            dst[(size_t)y * w + x] = clip8(s / 13.0 + 0.5);
        }
}

/* PIL's bicubic_filter8: the cubic of a = -1, taps clamped to the image;
 * 0 when (xin, yin) is outside it */
static int bicubic8(const uint8_t *p, int h, int w, double xin, double yin, uint8_t *out)
{
    if (xin < 0 || xin >= w || yin < 0 || yin >= h) return 0;
    xin -= 0.5, yin -= 0.5;
    int x = (int)floor(xin), y = (int)floor(yin);
    double dx = xin - x, dy = yin - y;
    x--, y--;
    double rows[4];
    for (int k = 0; k < 4; k++) {
        int yy = y + k < 0 ? 0 : y + k >= h ? h - 1 : y + k;
        double v[4];
        for (int j = 0; j < 4; j++) {
            int xx = x + j < 0 ? 0 : x + j >= w ? w - 1 : x + j;
            v[j] = p[(size_t)yy * w + xx];
        }
        double p1 = v[1], p2 = -v[0] + v[2], p3 = 2 * (v[0] - v[1]) + v[2] - v[3], p4 = -v[0] + v[1] - v[2] + v[3];
        rows[k] = p1 + dx * (p2 + dx * (p3 + dx * p4));
    }
    double p1 = rows[1], p2 = -rows[0] + rows[2], p3 = 2 * (rows[0] - rows[1]) + rows[2] - rows[3],
           p4 = -rows[0] + rows[1] - rows[2] + rows[3];
    *out = clip8(p1 + dy * (p2 + dy * (p3 + dy * p4)));
    return 1;
}

/* Image.transform(AFFINE, a, BICUBIC, fillcolor): output pixel (x, y) takes
 * the input at (a0 x' + a1 y' + a2, a3 x' + a4 y' + a5), x' = x + 0.5 */
static void affine(uint8_t *img, uint8_t *tmp, int c, int h, int w, const double a[6], const uint8_t *fill)
{
    size_t n = (size_t)h * w;
    for (int ch = 0; ch < c; ch++) {
        const uint8_t *src = img + ch * n;
        uint8_t *dst = tmp + ch * n;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                double xo = x + 0.5, yo = y + 0.5;
                if (!bicubic8(src, h, w, a[0] * xo + a[1] * yo + a[2], a[3] * xo + a[4] * yo + a[5],
                              &dst[(size_t)y * w + x]))
                    dst[(size_t)y * w + x] = fill[ch];
            }
    }
    memcpy(img, tmp, (size_t)c * n);
}

/* Image.rotate(deg, BICUBIC, fillcolor): counter-clockwise about the centre */
static void rotate(uint8_t *img, uint8_t *tmp, int c, int h, int w, double deg, const uint8_t *fill)
{
    double t = -deg * 3.14159265358979323846 / 180.0, cx = w / 2.0, cy = h / 2.0;
    double co = round(cos(t) * 1e15) / 1e15, si = round(sin(t) * 1e15) / 1e15;
    double a[6] = {co, si, 0, -si, co, 0};
    a[2] = a[0] * -cx + a[1] * -cy + cx;
    a[5] = a[3] * -cx + a[4] * -cy + cy;
    affine(img, tmp, c, h, w, a, fill);
}

void randaug_op(int op, double arg, uint8_t *img, uint8_t *tmp, int c, int h, int w, const uint8_t *fill)
{
    size_t n = (size_t)h * w;
    switch (op) {
    case OP_AUTOCONTRAST:
        for (int ch = 0; ch < c; ch++) autocontrast(img + ch * n, n);
        break;
    case OP_EQUALIZE:
        for (int ch = 0; ch < c; ch++) equalize(img + ch * n, n);
        break;
    case OP_INVERT:
        for (size_t i = 0; i < (size_t)c * n; i++) img[i] = (uint8_t)(255 - img[i]);
        break;
    case OP_ROTATE:
        rotate(img, tmp, c, h, w, arg, fill);
        break;
    case OP_POSTERIZE: {
        int bits = (int)arg;
        if (bits >= 8) break;
        uint8_t mask = (uint8_t)~((1u << (8 - bits)) - 1u);
        for (size_t i = 0; i < (size_t)c * n; i++) img[i] &= mask;
        break;
    }
    case OP_SOLARIZE: {
        int th = (int)arg;
        for (size_t i = 0; i < (size_t)c * n; i++)
            if (img[i] >= th) img[i] = (uint8_t)(255 - img[i]);
        break;
    }
    case OP_SOLARIZE_ADD: {
        int add = (int)arg;
        for (size_t i = 0; i < (size_t)c * n; i++)
            if (img[i] < 128) img[i] = (uint8_t)(img[i] + add > 255 ? 255 : img[i] + add);
        break;
    }
    case OP_COLOR:
        if (c == 1) break; /* the gray of a gray image is itself */
        to_gray(img, c, n, tmp);
        for (int ch = 0; ch < c; ch++) blend(tmp, img + ch * n, n, arg);
        break;
    case OP_CONTRAST: {
        to_gray(img, c, n, tmp);
        double s = 0;
        for (size_t i = 0; i < n; i++) s += tmp[i];
        memset(tmp, (int)(s / (double)n + 0.5), n);
        for (int ch = 0; ch < c; ch++) blend(tmp, img + ch * n, n, arg);
        break;
    }
    case OP_BRIGHTNESS:
        memset(tmp, 0, n);
        for (int ch = 0; ch < c; ch++) blend(tmp, img + ch * n, n, arg);
        break;
    case OP_SHARPNESS:
        for (int ch = 0; ch < c; ch++) {
            smooth(img + ch * n, tmp, h, w);
            blend(tmp, img + ch * n, n, arg);
        }
        break;
    case OP_SHEAR_X: case OP_SHEAR_Y: {
        double a[6] = {1, op == OP_SHEAR_X ? arg : 0, 0, op == OP_SHEAR_Y ? arg : 0, 1, 0};
        affine(img, tmp, c, h, w, a, fill);
        break;
    }
    case OP_TRANSLATE_X: case OP_TRANSLATE_Y: {
        double a[6] = {1, 0, op == OP_TRANSLATE_X ? arg : 0, 0, 1, op == OP_TRANSLATE_Y ? arg : 0};
        affine(img, tmp, c, h, w, a, fill);
        break;
    }
    }
}

static double negate_half(double v, uint64_t *rng) { return rng_uniform_d(rng) > 0.5 ? -v : v; }

/* timm's level_to_arg functions: the argument of op at magnitude level
 * (0..10); draws the sign of the signed ones */
static double level_arg(int op, int increasing, double level, int h, int w, uint64_t *rng)
{
    double f = level / RA_MAX_LEVEL;
    switch (op) {
    case OP_ROTATE: return negate_half(f * 30.0, rng);
    case OP_POSTERIZE: return increasing ? 4 - (int)(f * 4) : (int)(f * 4);
    case OP_SOLARIZE: return increasing ? 256 - (int)(f * 256) : (int)(f * 256);
    case OP_SOLARIZE_ADD: return (int)(f * 110);
    case OP_COLOR: case OP_CONTRAST: case OP_BRIGHTNESS: case OP_SHARPNESS:
        return increasing ? 1.0 + negate_half(f * 0.9, rng) : f * 1.8 + 0.1;
    case OP_SHEAR_X: case OP_SHEAR_Y: return negate_half(f * 0.3, rng);
    case OP_TRANSLATE_X: return negate_half(f * 0.45, rng) * w;
    case OP_TRANSLATE_Y: return negate_half(f * 0.45, rng) * h;
    default: return 0;
    }
}

int maec_randaug_apply(const maec_randaug *ra, uint8_t *img, int c, int h, int w, const uint8_t *fill,
                       uint64_t *rng, maec_error *err)
{
    if (!ra->on) return 0;
    uint8_t *tmp = malloc((size_t)c * h * w);
    if (!tmp) return maec_fail(err, MAEC_ENOMEM, "out of memory");
    int ops[16];
    for (int i = 0; i < ra->n; i++) ops[i] = (int)(rng_uniform_d(rng) * OP_COUNT);
    for (int i = 0; i < ra->n; i++) {
        if (rng_uniform_d(rng) > 0.5) continue; /* AugmentOp: prob 0.5 */
        double level = ra->m;
        if (ra->mstd > 0) level += ra->mstd * rng_normal(rng);
        level = level < 0 ? 0 : level > RA_MAX_LEVEL ? RA_MAX_LEVEL : level;
        randaug_op(ops[i], level_arg(ops[i], ra->increasing, level, h, w, rng), img, tmp, c, h, w, fill);
    }
    free(tmp);
    return 0;
}

/* ------------------------------------------------------------------ colour jitter */

void maec_color_jitter_apply(const int order[3], const double factor[3], uint8_t *img, uint8_t *tmp, int c, int h,
                             int w)
{
    /* torchvision's adjust_brightness, adjust_contrast, adjust_saturation on
     * PIL images are ImageEnhance's Brightness, Contrast and Color */
    static const int ops[3] = {OP_BRIGHTNESS, OP_CONTRAST, OP_COLOR};
    for (int k = 0; k < 3; k++) {
        int f = order[k];
        if (f < 0 || f > 2) continue;
        randaug_op(ops[f], factor[f], img, tmp, c, h, w, NULL);
    }
}

int maec_color_jitter(float strength, uint8_t *img, int c, int h, int w, uint64_t *rng, maec_error *err)
{
    if (!(strength > 0)) return 0;
    /* ColorJitter(s, s, s).get_params: an order of the four transforms
     * (hue's slot unused, as its strength is 0), then each factor
     * uniform in [max(0, 1 - s), 1 + s] */
    int perm[4] = {0, 1, 2, 3};
    for (int i = 3; i > 0; i--) {
        int j = (int)(rng_uniform_d(rng) * (i + 1));
        int t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    int order[3], k = 0;
    for (int i = 0; i < 4; i++)
        if (perm[i] < 3) order[k++] = perm[i];
    double lo = strength < 1 ? 1.0 - strength : 0.0, f[3];
    for (int i = 0; i < 3; i++) f[i] = lo + (1.0 + strength - lo) * rng_uniform_d(rng);
    uint8_t *tmp = malloc((size_t)h * w);
    if (!tmp) return maec_fail(err, MAEC_ENOMEM, "out of memory");
    maec_color_jitter_apply(order, f, img, tmp, c, h, w);
    free(tmp);
    return 0;
}
