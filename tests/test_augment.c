/* The official fine-tuning options beyond the recipe's defaults, against
 * references: Mixup/CutMix in timm's three modes on given draws
 * (tests/reference/mixup_ref.py -> tests/fixtures/eval/mixup.safetensors,
 * images and targets within 1e-6 relative), and properties of the draws
 * (mixup_prob, one draw per batch, pair or image); --clip_grad against
 * torch.nn.utils.clip_grad_norm_ (tests/reference/clip_ref.py, 1e-6);
 * colour jitter against PIL (tests/reference/jitter_ref.py, the same bytes). */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "data/data.h"
#include "maec.h"
#include "ops/ops.h"
#include "test.h"
#include "util.h"

static float *get(const st_file *f, const char *name, size_t *count)
{
    int i = st_find(f, name);
    if (i < 0) {
        printf("  fixture tensor %s missing\n", name);
        if (count) *count = 0;
        return calloc(64, 4);
    }
    float *buf = calloc(f->e[i].count + 1, sizeof(float));
    maec_error err;
    st_read_f32(f, i, buf, &err);
    if (count) *count = f->e[i].count;
    return buf;
}

static void test_mix_fixture(void)
{
    st_file f;
    maec_error err;
    int rc = st_open("tests/fixtures/eval/mixup.safetensors", &f, &err);
    CHECK(rc == 0, "open mixup fixture: %s", err.msg);
    if (rc) return;
    enum { B = 6, C = 2, H = 5, W = 7, K = 4 };
    size_t n;
    float *x0 = get(&f, "x", &n), *lab = get(&f, "labels", NULL);
    CHECK(n == (size_t)B * C * H * W, "fixture x has %zu values", n);
    int labels[B];
    for (int b = 0; b < B; b++) labels[b] = (int)lab[b];
    const char *names[] = {"batch", "batchmix", "pair", "elem"};
    const int modes[] = {MAEC_MIX_BATCH, MAEC_MIX_BATCH, MAEC_MIX_PAIR, MAEC_MIX_ELEM};
    for (int m = 0; m < 4; m++) {
        char k[64];
        size_t nd;
        snprintf(k, sizeof k, "%s.cut", names[m]);
        float *cut = get(&f, k, &nd);
        snprintf(k, sizeof k, "%s.lam", names[m]);
        float *lam = get(&f, k, NULL);
        snprintf(k, sizeof k, "%s.cy", names[m]);
        float *cy = get(&f, k, NULL);
        snprintf(k, sizeof k, "%s.cx", names[m]);
        float *cx = get(&f, k, NULL);
        snprintf(k, sizeof k, "%s.x", names[m]);
        float *xr = get(&f, k, NULL);
        snprintf(k, sizeof k, "%s.t", names[m]);
        float *tr = get(&f, k, NULL);
        CHECK((int)nd == maec_mix_draws(modes[m], B), "%s: %zu draws in the fixture, %d expected", names[m], nd,
              maec_mix_draws(modes[m], B));
        maec_mix_draw d[B];
        memset(d, 0, sizeof d);
        for (size_t i = 0; i < nd && i < B; i++) {
            if (cut[i] != 0 && lam[i] < 1) maec_mix_cutbox(H, W, lam[i], (int)cy[i], (int)cx[i], &d[i]);
            else d[i].lam = lam[i];
            if (modes[m] != MAEC_MIX_BATCH) d[i].lam = (float)d[i].lam;
        }
        float x[B * C * H * W], t[B * K];
        memcpy(x, x0, sizeof x);
        maec_mix_apply(x, labels, t, B, C, H, W, K, modes[m], d, 0.1f);
        double ex = rel_err(x, xr, (size_t)B * C * H * W), et = rel_err(t, tr, (size_t)B * K);
        CHECK(ex < 1e-6, "mixup %s mode: images rel err %.3g (tolerance 1e-6)", names[m], ex);
        CHECK(et < 1e-6, "mixup %s mode: targets rel err %.3g (tolerance 1e-6)", names[m], et);
        printf("  mixup %-8s images %.2g, targets %.2g (rel err against timm's arithmetic)\n", names[m], ex, et);
        free(cut), free(lam), free(cy), free(cx), free(xr), free(tr);
    }
    free(x0), free(lab);
    st_close(&f);
}

/* mixup_prob: the share of batches (pairs, images) mixed at all */
static void test_mix_prob(void)
{
    enum { B = 8, N = 2000 };
    for (int mode = 0; mode < 3; mode++) {
        maec_mixup_opts o = {0.8f, 1.0f, 0.3f, 0.5f, 0.1f, mode};
        uint64_t rng = 12345;
        int nd = maec_mix_draws(mode, B), mixed = 0, total = 0, cuts = 0, badbox = 0;
        for (int it = 0; it < N; it++) {
            maec_mix_draw d[B];
            maec_mix_sample(&o, B, 9, 11, &rng, d);
            for (int i = 0; i < nd; i++, total++) {
                mixed += d[i].lam < 1.0;
                cuts += d[i].cutmix;
                if (d[i].cutmix)
                    badbox += !(d[i].yl >= 0 && d[i].yh <= 9 && d[i].xl >= 0 && d[i].xh <= 11 && d[i].yl <= d[i].yh &&
                                d[i].xl <= d[i].xh);
            }
        }
        CHECK(badbox == 0, "mode %d: %d cutmix boxes outside the 9x11 image", mode, badbox);
        double share = (double)mixed / total;
        /* 0.3 within 4 standard deviations of the count */
        double sd = sqrt(0.3 * 0.7 / total);
        CHECK(fabs(share - 0.3) < 4 * sd, "mode %d: %.3f of the draws mixed with mixup_prob 0.3", mode, share);
        CHECK(cuts > 0 && cuts < mixed, "mode %d: %d cutmix draws of %d mixed", mode, cuts, mixed);
    }
    /* prob 1 and the old entry point: the same draws and the same batch */
    float a[4 * 3 * 6], b[4 * 3 * 6], ta[4 * 2], tb[4 * 2];
    for (int i = 0; i < 72; i++) a[i] = b[i] = (float)(i % 13) - 6;
    int labels[4] = {0, 1, 1, 0};
    uint64_t r1 = 99, r2 = 99;
    float lam = maec_mixup(a, labels, ta, 4, 1, 3, 6, 2, 0.8f, 1.0f, 0.5f, 0.1f, &r1);
    maec_mixup_opts o = {0.8f, 1.0f, 1.0f, 0.5f, 0.1f, MAEC_MIX_BATCH};
    maec_mix_draw d;
    maec_mix_sample(&o, 4, 3, 6, &r2, &d);
    maec_mix_apply(b, labels, tb, 4, 1, 3, 6, 2, MAEC_MIX_BATCH, &d, 0.1f);
    CHECK(!memcmp(a, b, sizeof a) && !memcmp(ta, tb, sizeof ta) && lam == (float)d.lam && r1 == r2,
          "maec_mixup and maec_mix_sample + maec_mix_apply differ");
}

/* --clip_grad: clip_grad_norm_ against torch on three tensors, clipped and not */
static void test_clip(void)
{
    st_file f;
    maec_error err;
    int rc = st_open("tests/fixtures/eval/clip.safetensors", &f, &err);
    CHECK(rc == 0, "open clip fixture: %s", err.msg);
    if (rc) return;
    const char *ms[] = {"1", "50"};
    const float mv[] = {1.0f, 50.0f};
    for (int m = 0; m < 2; m++) {
        float *g[3], *ref[3];
        size_t n[3];
        char k[32];
        for (int t = 0; t < 3; t++) {
            snprintf(k, sizeof k, "g%d", t);
            g[t] = get(&f, k, &n[t]);
            snprintf(k, sizeof k, "c%s.g%d", ms[m], t);
            ref[t] = get(&f, k, NULL);
        }
        snprintf(k, sizeof k, "c%s.norm", ms[m]);
        float *rn = get(&f, k, NULL);
        double norm = clip_grad_norm(g, n, 3, mv[m]);
        CHECK(fabs(norm - rn[0]) <= 1e-6 * rn[0], "clip %s: norm %.9g, torch %.9g (tolerance 1e-6 relative)", ms[m],
              norm, (double)rn[0]);
        double worst = 0;
        for (int t = 0; t < 3; t++) {
            double e = rel_err(g[t], ref[t], n[t]);
            if (e > worst) worst = e;
            free(g[t]), free(ref[t]);
        }
        CHECK(worst < 1e-6, "clip %s: gradients rel err %.3g (tolerance 1e-6)", ms[m], worst);
        printf("  clip_grad %s: norm %.6g (torch %.6g), gradients rel err %.2g\n", ms[m], norm, (double)rn[0], worst);
        free(rn);
    }
    st_close(&f);
}

/* --color-jitter: ColorJitter's three transforms against PIL 9.4 on given
 * draws (tests/reference/jitter_ref.py): the same bytes, RGB and grey */
static void test_jitter(void)
{
    st_file f;
    maec_error err;
    int rc = st_open("tests/fixtures/randaug/jitter.safetensors", &f, &err);
    CHECK(rc == 0, "open jitter fixture: %s", err.msg);
    if (rc) return;
    enum { H = 9, W = 7 };
    float *rgb = get(&f, "rgb", NULL), *gray = get(&f, "gray", NULL);
    for (int k = 0; k < 3; k++) {
        char name[32];
        snprintf(name, sizeof name, "%d.order", k);
        float *of = get(&f, name, NULL);
        snprintf(name, sizeof name, "%d.factor", k);
        float *ff = get(&f, name, NULL);
        int order[3] = {(int)of[0], (int)of[1], (int)of[2]};
        double factor[3] = {ff[0], ff[1], ff[2]};
        for (int g = 0; g < 2; g++) {
            int c = g ? 1 : 3;
            snprintf(name, sizeof name, "%d.%s", k, g ? "gray" : "rgb");
            float *ref = get(&f, name, NULL);
            const float *in = g ? gray : rgb;
            uint8_t img[3 * H * W], tmp[H * W];
            for (int i = 0; i < c * H * W; i++) img[i] = (uint8_t)in[i];
            maec_color_jitter_apply(order, factor, img, tmp, c, H, W);
            int diff = 0;
            for (int i = 0; i < c * H * W; i++) diff += img[i] != (uint8_t)ref[i];
            CHECK(diff == 0, "colour jitter case %d %s: %d of %d bytes differ from PIL", k, g ? "grey" : "RGB", diff,
                  c * H * W);
            free(ref);
        }
        free(of), free(ff);
    }
    /* the draws: factors within [1 - s, 1 + s] show as a changed image, and
     * strength 0 leaves the bytes as they are */
    uint8_t img[3 * H * W], orig[3 * H * W];
    for (int i = 0; i < 3 * H * W; i++) orig[i] = img[i] = (uint8_t)rgb[i];
    uint64_t rng = 3;
    CHECK(maec_color_jitter(0, img, 3, H, W, &rng, &err) == 0 && !memcmp(img, orig, sizeof img) && rng == 3,
          "colour jitter 0 changed the image or drew");
    int changed = 0;
    for (int it = 0; it < 20; it++) {
        memcpy(img, orig, sizeof img);
        maec_color_jitter(0.4f, img, 3, H, W, &rng, &err);
        changed += memcmp(img, orig, sizeof img) != 0;
    }
    CHECK(changed >= 19, "colour jitter 0.4 changed %d of 20 images", changed);
    free(rgb), free(gray);
    st_close(&f);
}

/* the official evaluation transform (aspect kept, shorter side to size /
 * crop_pct, centre crop) against PIL 9.4 (tests/reference/evaltf_ref.py),
 * which rounds to 8 bits after each pass: within 1.5 / 255 */
static void test_eval_transform(void)
{
    st_file f;
    maec_error err;
    int rc = st_open("tests/fixtures/randaug/evaltf.safetensors", &f, &err);
    CHECK(rc == 0, "open evaltf fixture: %s", err.msg);
    if (rc) return;
    for (int k = 0; k < 4; k++) {
        char name[32];
        snprintf(name, sizeof name, "%d.in", k);
        int i = st_find(&f, name);
        if (i < 0 || f.e[i].ndim != 3) {
            CHECK(0, "fixture case %d missing", k);
            continue;
        }
        int c = (int)f.e[i].shape[0], h = (int)f.e[i].shape[1], w = (int)f.e[i].shape[2];
        float *in = get(&f, name, NULL);
        snprintf(name, sizeof name, "%d.out", k);
        float *ref = get(&f, name, NULL);
        snprintf(name, sizeof name, "%d.args", k);
        float *args = get(&f, name, NULL);
        int H = (int)args[0], W = (int)args[1];
        maec_image im = {0};
        maec_image_resize_buffer(&im, c, h, w, &err);
        for (size_t q = 0; q < (size_t)c * h * w; q++) im.data[q] = in[q] / 255.0f;
        maec_augment a;
        maec_augment_defaults(&a, c, H, W);
        a.random_resized_crop = 0;
        a.hflip = 0;
        a.crop_pct = args[2];
        float *out = calloc((size_t)c * H * W, sizeof(float));
        rc = maec_augment_apply(&a, &im, out, NULL, &err);
        double worst = 0;
        for (size_t q = 0; !rc && q < (size_t)c * H * W; q++) worst = fmax(worst, fabs(out[q] * 255.0 - ref[q]));
        CHECK(rc == 0 && worst <= 1.5, "evaluation transform case %d (%dx%d -> %dx%d, crop_pct %g): max diff %.2f / 255",
              k, h, w, H, W, (double)args[2], worst);
        printf("  eval transform %dx%d -> %dx%d crop_pct %.3f: max diff %.2f / 255 against PIL\n", h, w, H, W,
               (double)args[2], worst);
        /* crop_pct 0: the old squash of the whole image, not the same for a non-square photo */
        a.crop_pct = 0;
        float *sq = calloc((size_t)c * H * W, sizeof(float));
        maec_augment_apply(&a, &im, sq, NULL, &err);
        if (h != w) CHECK(memcmp(sq, out, (size_t)c * H * W * sizeof(float)) != 0, "case %d: squash = crop", k);
        free(sq), free(out), free(in), free(ref), free(args);
        maec_image_free(&im);
    }
    st_close(&f);
}

/* interpolate_pos_embed against F.interpolate(bicubic, align_corners=False)
 * (tests/reference/interp_ref.py): up, down, non-square, identity; 1e-5 */
static void test_interp(void)
{
    st_file f;
    maec_error err;
    int rc = st_open("tests/fixtures/eval/interp.safetensors", &f, &err);
    CHECK(rc == 0, "open interp fixture: %s", err.msg);
    if (rc) return;
    for (int k = 0; k < 5; k++) {
        char name[32];
        snprintf(name, sizeof name, "%d.grid", k);
        float *g = get(&f, name, NULL);
        snprintf(name, sizeof name, "%d.src", k);
        size_t ns;
        float *src = get(&f, name, &ns);
        snprintf(name, sizeof name, "%d.dst", k);
        size_t nd;
        float *ref = get(&f, name, &nd);
        int gh = (int)g[0], gw = (int)g[1], nh = (int)g[2], nw = (int)g[3], D = (int)(ns / (1 + (size_t)gh * gw));
        float *out = calloc(nd + 1, sizeof(float));
        maec_interpolate_pos_embed(src, gh, gw, D, out, nh, nw);
        double e = rel_err(out, ref, nd);
        CHECK(nd == (size_t)(1 + nh * nw) * D && e < 1e-5, "pos_embed %dx%d -> %dx%d: rel err %.3g (tolerance 1e-5)", gh,
              gw, nh, nw, e);
        printf("  interpolate_pos_embed %dx%d -> %dx%d: rel err %.2g against F.interpolate\n", gh, gw, nh, nw, e);
        free(g), free(src), free(ref), free(out);
    }
    st_close(&f);
}

int main(int argc, char **argv)
{
    (void)argc;
    test_on_command_kernels(argv);
    test_mix_fixture();
    test_mix_prob();
    test_clip();
    test_jitter();
    test_eval_transform();
    test_interp();
    TEST_END();
}
