/* The MAE core against the PyTorch reference (tests/reference/make_fixtures.py):
 * loss, prediction, every gradient and the parameters after 3 AdamW steps,
 * each within a relative error of 1e-5 (||ours - ref|| / ||ref||). */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/npy.h"
#include "io/safetensors.h"
#include "maec.h"
#include "model/model.h"
#include <omp.h>
#include "test.h"
#include "util.h"

#define TOL 1e-5

static const char *FIX = "tests/fixtures";

static float *st_get(const st_file *f, const char *name, size_t *count)
{
    int i = st_find(f, name);
    if (i < 0) return NULL;
    float *buf = malloc(f->e[i].count * sizeof(float) + 4);
    maec_error err;
    if (st_read_f32(f, i, buf, &err)) {
        free(buf);
        return NULL;
    }
    if (count) *count = f->e[i].count;
    return buf;
}

/* compare every trainable gradient with the file's; returns the worst error */
static double compare_grads(maec_model *m, const st_file *ref, const char *what, const char *cs)
{
    double worst = 0;
    for (int i = 0; i < maec_model_num_tensors(m); i++) {
        const maec_tensor_info *t = maec_model_tensor(m, i);
        if (!t->trainable) continue;
        size_t n;
        float *r = st_get(ref, t->name, &n);
        CHECK(r && n == t->size, "%s %s: reference gradient of %s missing", cs, what, t->name);
        if (!r || n != t->size) {
            free(r);
            continue;
        }
        double e = rel_err(maec_model_grads(m) + t->offset, r, n);
        CHECK(e < TOL, "%s %s: gradient of %s rel err %.3g", cs, what, t->name, e);
        if (e > worst) worst = e;
        free(r);
    }
    return worst;
}

static void run_case(const char *cs)
{
    char path[512];
    maec_error err = {0};
    maec_model *m = NULL;
    snprintf(path, sizeof path, "%s/%s/model.safetensors", FIX, cs);
    int rc = maec_model_load(path, NULL, &m, &err);
    CHECK(rc == 0, "%s: load: %s", cs, err.msg);
    if (rc) return;
    const maec_config *c = maec_model_config(m);
    npy_array x, nz;
    snprintf(path, sizeof path, "%s/%s/images.npy", FIX, cs);
    CHECK(npy_load(path, &x, &err) == 0, "%s: %s", cs, err.msg);
    snprintf(path, sizeof path, "%s/%s/noise.npy", FIX, cs);
    CHECK(npy_load(path, &nz, &err) == 0, "%s: %s", cs, err.msg);
    int B = (int)x.shape[0], L = maec_num_patches(c), P = maec_patch_dim(c);
    st_file g;
    snprintf(path, sizeof path, "%s/%s/grads.safetensors", FIX, cs);
    CHECK(st_open(path, &g, &err) == 0, "%s: %s", cs, err.msg);

    maec_workspace *ws;
    CHECK(maec_workspace_create(m, B, &ws, &err) == 0, "%s: %s", cs, err.msg);
    maec_zero_grad(m);
    float loss;
    rc = maec_forward_backward(m, ws, x.data, B, nz.data, NULL, 1, 1.0f, &loss, &err);
    CHECK(rc == 0, "%s: forward_backward: %s", cs, err.msg);
    float *rl = st_get(&g, "loss", NULL);
    double le = rl ? fabs(loss - rl[0]) / fabs(rl[0]) : 1;
    CHECK(le < TOL, "%s: loss %.8g vs reference %.8g", cs, (double)loss, rl ? (double)rl[0] : 0.0);
    float *rmask = st_get(&g, "mask", NULL);
    CHECK(rmask && rel_err(maec_ws_mask(ws), rmask, (size_t)B * L) == 0, "%s: mask differs", cs);
    float *rpred = st_get(&g, "pred", NULL);
    /* a training pass predicts the masked patches (every patch where the
     * loss or the encoder needs the others); the kept ones are zero */
    size_t nkept = 0, nkept_zero = 0;
    double pe = 1;
    if (rpred && rmask) {
        size_t n = (size_t)B * L * P;
        float *ours = malloc(n * sizeof(float)), *ref = malloc(n * sizeof(float));
        memcpy(ours, maec_ws_pred(ws), n * sizeof(float));
        memcpy(ref, rpred, n * sizeof(float));
        if (mae_ws_used_rows(ws))
            for (size_t r = 0; r < (size_t)B * L; r++)
                if (rmask[r] == 0) {
                    nkept++;
                    int zero = 1;
                    for (int i = 0; i < P; i++) zero &= ours[r * P + i] == 0.0f;
                    nkept_zero += zero;
                    for (int i = 0; i < P; i++) ours[r * P + i] = ref[r * P + i] = 0.0f;
                }
        pe = rel_err(ours, ref, n);
        free(ours), free(ref);
    }
    CHECK(pe < TOL, "%s: prediction rel err %.3g", cs, pe);
    CHECK(nkept_zero == nkept, "%s: %zu of %zu kept patches' predictions not zero", cs, nkept - nkept_zero, nkept);
    double ge = compare_grads(m, &g, "f64 ref", cs);
    printf("  %-12s loss %.7f (ref %.7f)  pred err %.2e  worst grad err %.2e\n", cs, (double)loss,
           rl ? (double)rl[0] : 0.0, pe, ge);
    /* a pass without the backward predicts every patch, the same loss: the
     * same bits on libxsmm's tiles, within 1e-6 on OpenBLAS alone (the
     * default without AVX-512), whose bits for a row depend on its place
     * in the product, and the compact last block moves the masked rows */
    float *gsave = malloc(maec_model_num_floats(m) * sizeof(float));
    memcpy(gsave, maec_model_grads(m), maec_model_num_floats(m) * sizeof(float));
    float floss;
    rc = maec_forward_backward(m, ws, x.data, B, nz.data, NULL, 0, 1.0f, &floss, &err);
    double fpe = rpred ? rel_err(maec_ws_pred(ws), rpred, (size_t)B * L * P) : 1;
    CHECK(rc == 0 && fpe < TOL && fabs((double)floss - loss) <= 1e-6 * fabs((double)loss),
          "%s: forward only: prediction rel err %.3g, loss %.8g vs %.8g", cs,
          fpe, (double)floss, (double)loss);
    CHECK(memcmp(gsave, maec_model_grads(m), maec_model_num_floats(m) * sizeof(float)) == 0,
          "%s: a pass without the backward changed the gradients", cs);
    free(gsave);
    free(rl);
    free(rmask);
    free(rpred);
    st_close(&g);

    /* float32 PyTorch, where the fixture has it */
    snprintf(path, sizeof path, "%s/%s/grads_f32.safetensors", FIX, cs);
    if (access(path, R_OK) == 0) {
        st_file g32;
        CHECK(st_open(path, &g32, &err) == 0, "%s: %s", cs, err.msg);
        float *l32 = st_get(&g32, "loss", NULL);
        CHECK(l32 && fabs(loss - l32[0]) / fabs(l32[0]) < TOL, "%s: loss vs float32 torch", cs);
        double e32 = compare_grads(m, &g32, "f32 ref", cs);
        printf("  %-12s against float32 PyTorch: worst grad err %.2e\n", cs, e32);
        free(l32);
        st_close(&g32);
    }

    /* the same pass twice gives the same bits */
    float *g1 = malloc(maec_model_num_floats(m) * sizeof(float));
    memcpy(g1, maec_model_grads(m), maec_model_num_floats(m) * sizeof(float));
    maec_zero_grad(m);
    maec_forward_backward(m, ws, x.data, B, nz.data, NULL, 1, 1.0f, &loss, &err);
    CHECK(memcmp(g1, maec_model_grads(m), maec_model_num_floats(m) * sizeof(float)) == 0,
          "%s: a second identical pass gave different gradients", cs);
    /* zero_grad after a backward pass clears it (it skips its pass only
     * where the gradients are known to be zero) */
    maec_zero_grad(m);
    maec_forward_backward(m, ws, x.data, B, nz.data, NULL, 1, 1.0f, &loss, &err);
    maec_zero_grad(m);
    maec_forward_backward(m, ws, x.data, B, nz.data, NULL, 1, 1.0f, &loss, &err);
    CHECK(memcmp(g1, maec_model_grads(m), maec_model_num_floats(m) * sizeof(float)) == 0,
          "%s: zero_grad after a backward pass left gradients behind", cs);

    /* gradient accumulation: two half batches at scale 1/2 = one batch */
    if (B % 2 == 0) {
        maec_zero_grad(m);
        int h = B / 2;
        size_t img = (size_t)c->in_chans * c->img_h * c->img_w;
        maec_forward_backward(m, ws, x.data, h, nz.data, NULL, 1, 0.5f, NULL, &err);
        maec_forward_backward(m, ws, x.data + h * img, h, nz.data + (size_t)h * L, NULL, 1, 0.5f, NULL, &err);
        double ae = rel_err(maec_model_grads(m), g1, maec_model_num_floats(m));
        CHECK(ae < TOL, "%s: accumulated gradients rel err %.3g", cs, ae);
    }
    free(g1);

    /* three AdamW steps */
    st_file a;
    snprintf(path, sizeof path, "%s/%s/adamw.safetensors", FIX, cs);
    CHECK(st_open(path, &a, &err) == 0, "%s: %s", cs, err.msg);
    float *rlosses = st_get(&a, "losses", NULL);
    const float lrs[3] = {1e-3f, 5e-4f, 2.5e-4f};
    for (int s = 0; s < 3; s++) {
        maec_zero_grad(m);
        maec_forward_backward(m, ws, x.data, B, nz.data, NULL, 1, 1.0f, &loss, &err);
        CHECK(rlosses && fabs(loss - rlosses[s]) / fabs(rlosses[s]) < TOL,
              "%s: AdamW step %d loss %.8g vs %.8g", cs, s + 1, (double)loss, rlosses ? (double)rlosses[s] : 0.0);
        maec_adamw opt = {lrs[s], 0.9f, 0.95f, 1e-8f, 0.05f};
        maec_adamw_step(m, &opt);
    }
    double worst = 0;
    for (int i = 0; i < maec_model_num_tensors(m); i++) {
        const maec_tensor_info *t = maec_model_tensor(m, i);
        if (!t->trainable) continue;
        size_t n;
        float *r = st_get(&a, t->name, &n);
        CHECK(r && n == t->size, "%s: AdamW reference of %s missing", cs, t->name);
        if (!r) continue;
        double e = rel_err(maec_model_params(m) + t->offset, r, n);
        CHECK(e < TOL, "%s: after 3 AdamW steps %s rel err %.3g", cs, t->name, e);
        if (e > worst) worst = e;
        free(r);
    }
    printf("  %-12s after 3 AdamW steps: worst parameter err %.2e\n", cs, worst);
    free(rlosses);
    st_close(&a);

    /* the steps leave every gradient zero (the steps' zero_grad skipped its
     * pass, which the parameters above show did no harm); a gradient written
     * through maec_model_grads is cleared by the next zero_grad */
    {
        size_t nf = maec_model_num_floats(m), nonzero = 0;
        float *gr = maec_model_grads(m);
        for (size_t i = 0; i < nf; i++) nonzero += gr[i] != 0.0f;
        CHECK(nonzero == 0, "%s: %zu gradients not zero after an AdamW step", cs, nonzero);
        maec_zero_grad(m);
        gr = maec_model_grads(m);
        gr[0] = 1.0f, gr[nf - 1] = 2.0f;
        maec_model_sync(m); /* the host's writes to the backend (nothing to do on cpu and ref) */
        maec_zero_grad(m);
        gr = maec_model_grads(m);
        CHECK(gr[0] == 0.0f && gr[nf - 1] == 0.0f, "%s: zero_grad kept a gradient written through maec_model_grads", cs);
    }

    /* save, load: same configuration and the same bits */
    char tmp[] = "/tmp/maec_test_XXXXXX";
    int fd = mkstemp(tmp);
    if (fd >= 0) close(fd);
    /* metadata: MAEC_META_MAX keys fit, one more is refused, all come back */
    int meta_ok = 1;
    for (int i = 0; i < MAEC_META_MAX; i++) {
        char k[16], v[16];
        snprintf(k, sizeof k, "key%d", i), snprintf(v, sizeof v, "value%d", i);
        meta_ok &= maec_model_set_meta(m, k, v) == 0;
    }
    CHECK(meta_ok && maec_model_set_meta(m, "one_more", "x") == MAEC_EINVAL,
          "%s: %d metadata keys fit and the next is refused", cs, MAEC_META_MAX);
    CHECK(maec_model_save(m, tmp, &err) == 0, "%s: save: %s", cs, err.msg);
    maec_model *m2 = NULL;
    CHECK(maec_model_load(tmp, NULL, &m2, &err) == 0, "%s: reload: %s", cs, err.msg);
    if (m2) {
        CHECK(memcmp(maec_model_config(m2), c, sizeof *c) == 0, "%s: configuration changed on reload", cs);
        CHECK(memcmp(maec_model_params(m2), maec_model_params(m), maec_model_num_floats(m) * 4) == 0,
              "%s: parameters changed on reload", cs);
        char kl[16], vl_want[16];
        snprintf(kl, sizeof kl, "key%d", MAEC_META_MAX - 1);
        snprintf(vl_want, sizeof vl_want, "value%d", MAEC_META_MAX - 1);
        const char *v0 = maec_model_get_meta(m2, "key0"), *vl = maec_model_get_meta(m2, kl);
        CHECK(v0 && vl && !strcmp(v0, "value0") && !strcmp(vl, vl_want) &&
                  !maec_model_get_meta(m2, "one_more"),
              "%s: metadata back on reload", cs);
    }
    maec_model_free(m2);
    unlink(tmp);
    maec_workspace_free(ws);
    npy_free(&x);
    npy_free(&nz);
    maec_model_free(m);
}

static void test_pos_embed(void)
{
    st_file f;
    maec_error err;
    char path[256];
    snprintf(path, sizeof path, "%s/posembed.safetensors", FIX);
    if (st_open(path, &f, &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    struct { const char *name; int D, gh, gw; } cases[] = {{"pos_32_3x5", 32, 3, 5}, {"pos_24_4x4", 24, 4, 4}};
    for (int k = 0; k < 2; k++) {
        size_t n;
        float *r = st_get(&f, cases[k].name, &n);
        size_t want = (size_t)(cases[k].gh * cases[k].gw + 1) * cases[k].D;
        CHECK(r && n == want, "pos embed %s missing", cases[k].name);
        if (!r || n != want) continue;
        float *o = malloc(n * sizeof(float));
        maec_sincos_pos_embed(o, cases[k].D, cases[k].gh, cases[k].gw);
        double e = rel_err(o, r, n);
        CHECK(e < 1e-6, "pos embed %s rel err %.3g", cases[k].name, e);
        free(o);
        free(r);
    }
    st_close(&f);
}

static double jnum(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItem(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

static void test_lr_schedule(void)
{
    char path[256], *js;
    size_t len;
    maec_error err;
    snprintf(path, sizeof path, "%s/lr_schedule.json", FIX);
    if (read_file(path, &js, &len, 1 << 20, &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    cJSON *o = cJSON_Parse(js);
    free(js);
    const cJSON *lrs = cJSON_GetObjectItem(o, "lr"), *acc = cJSON_GetObjectItem(o, "lr_official_accum");
    double blr = jnum(o, "blr"), batch = jnum(o, "batch_size"), accum = jnum(o, "accum_iter");
    double epochs = jnum(o, "epochs"), warm = jnum(o, "warmup_epochs"), minlr = jnum(o, "min_lr");
    double ipe = jnum(o, "iters_per_epoch");
    CHECK(cJSON_IsArray(lrs) && cJSON_IsArray(acc) && blr > 0 && ipe > 0, "lr_schedule.json: unexpected layout");
    if (cJSON_IsArray(lrs) && cJSON_IsArray(acc) && blr > 0 && ipe > 0) {
        double lr = blr * batch * accum / 256.0, worst = 0, worst_acc = 0;
        int n = cJSON_GetArraySize(lrs);
        for (int it = 0; it < n; it++) {
            double ref = cJSON_GetArrayItem(lrs, it)->valuedouble;
            double ours = maec_lr_at(it / ipe, lr, minlr, warm, epochs);
            worst = fmax(worst, fabs(ours - ref) / fmax(fabs(ref), 1e-12));
            /* maec pretrain sets the lr at the first micro-batch of each step,
             * steps grouped within each epoch as official */
            int in_epoch = it % (int)ipe;
            int first = it - in_epoch % (int)accum;
            double ref_acc = cJSON_GetArrayItem(acc, it)->valuedouble;
            double ours_acc = maec_lr_at(first / ipe, lr, minlr, warm, epochs);
            worst_acc = fmax(worst_acc, fabs(ours_acc - ref_acc) / fmax(fabs(ref_acc), 1e-12));
        }
        CHECK(n == (int)(epochs * ipe) && worst < 1e-9, "lr schedule: %d values, worst rel err %.3g", n, worst);
        CHECK(worst_acc < 1e-9, "lr schedule with accumulation: worst rel err %.3g", worst_acc);
    }
    cJSON_Delete(o);
}

static void test_patchify_roundtrip(void)
{
    int B = 2, C = 3, H = 8, W = 12, p = 4;
    size_t n = (size_t)B * C * H * W;
    float *x = malloc(n * 4), *pt = malloc(n * 4), *y = malloc(n * 4);
    for (size_t i = 0; i < n; i++) x[i] = (float)i;
    maec_patchify(x, pt, B, C, H, W, p);
    /* patch (0,1) of image 0, element (row 1, col 2, channel 2) */
    int P = p * p * C;
    CHECK(pt[1 * P + (1 * p + 2) * C + 2] == x[((0 * C + 2) * H + 1) * W + 4 + 2], "patchify order");
    maec_unpatchify(pt, y, B, C, H, W, p);
    CHECK(memcmp(x, y, n * 4) == 0, "unpatchify(patchify(x)) != x");
    free(x);
    free(pt);
    free(y);
}

static void test_masks(void)
{
    maec_config c;
    maec_error err;
    maec_preset("fmnist-tiny", &c, &err);
    int L = maec_num_patches(&c), B = 4;
    float *nz = malloc((size_t)B * L * 4);
    for (int s = 0; s < 3; s++) {
        c.mask_strategy = (maec_mask_strategy)s;
        int K = maec_num_keep(&c);
        uint64_t rng = 42;
        maec_make_noise(&c, B, nz, &rng);
        int ok = 1;
        for (int b = 0; b < B; b++) {
            int kept = 0;
            for (int l = 0; l < L; l++) kept += nz[b * L + l] < 0.5f;
            if (s == 0) continue;
            ok &= kept == K;
        }
        CHECK(ok, "mask strategy %d keeps %d patches", s, K);
        if (s == 2) { /* grid: kept exactly the even rows and columns */
            int gw = c.img_w / c.patch;
            int good = 1;
            for (int l = 0; l < L; l++) good &= (nz[l] < 0.5f) == ((l / gw) % 2 == 0 && (l % gw) % 2 == 0);
            CHECK(good, "grid mask pattern");
        }
    }
    /* grid keeps one patch of every four: any other ratio is refused */
    c.mask_strategy = MAEC_MASK_GRID;
    c.mask_ratio = 0.6;
    CHECK(maec_config_check(&c, &err) == MAEC_EINVAL && strstr(err.msg, "cannot honour a mask ratio of 0.6"),
          "grid masking with mask ratio 0.6 accepted");
    c.mask_ratio = 0.75;
    CHECK(maec_config_check(&c, &err) == 0, "grid masking with mask ratio 0.75 refused: %s", err.msg);
    CHECK(maec_num_keep(&(maec_config){.img_h = 224, .img_w = 224, .patch = 16, .mask_ratio = 0.75}) == 49,
          "ViT-B/16 at 224 keeps 49 of 196");
    free(nz);
}

static void test_init_seed(void)
{
    maec_config c;
    maec_error err;
    maec_preset("test-tiny", &c, &err);
    maec_model *a, *b, *d;
    maec_model_create(&c, 7, &a, &err);
    maec_model_create(&c, 7, &b, &err);
    maec_model_create(&c, 8, &d, &err);
    size_t n = maec_model_num_floats(a);
    CHECK(memcmp(maec_model_params(a), maec_model_params(b), n * 4) == 0, "same seed, different model");
    CHECK(memcmp(maec_model_params(a), maec_model_params(d), n * 4) != 0, "different seed, same model");
    /* xavier bound of qkv [96,32]: sqrt(6/128) */
    int q = maec_model_find(a, "blocks.0.attn.qkv.weight");
    const maec_tensor_info *t = maec_model_tensor(a, q);
    float mx = 0;
    for (size_t i = 0; i < t->size; i++) mx = fmaxf(mx, fabsf(maec_model_params(a)[t->offset + i]));
    CHECK(mx <= sqrtf(6.0f / 128) && mx > 0.9f * sqrtf(6.0f / 128), "qkv init bound %g", (double)mx);
    maec_model_free(a);
    maec_model_free(b);
    maec_model_free(d);
}

/* the command: maec grad on a model written by PyTorch */
/* maec grad on case cs's model file (model.safetensors, or another file of
 * the case with the flags it needs) against the reference's gradients */
static void test_grad_command_on(const char *cs, const char *model, const char *flags)
{
    char cmd[1024], out[] = "/tmp/maec_grad_XXXXXX";
    int fd = mkstemp(out);
    if (fd >= 0) close(fd);
    snprintf(cmd, sizeof cmd,
             "%s grad --model %s/%s/%s --images %s/%s/images.npy "
             "--noise %s/%s/noise.npy --out %s %s > /dev/null",
             test_maec_bin(), FIX, cs, model, FIX, cs, FIX, cs, out, flags);
    CHECK(system(cmd) == 0, "%s: maec grad failed", cs);
    st_file ours, ref;
    maec_error err;
    char path[512];
    snprintf(path, sizeof path, "%s/%s/grads.safetensors", FIX, cs);
    if (st_open(out, &ours, &err) || st_open(path, &ref, &err)) {
        CHECK(0, "%s: %s", cs, err.msg);
        unlink(out);
        return;
    }
    int compared = 0;
    double worst = 0;
    for (int i = 0; i < ours.n; i++) {
        size_t n1 = 0, n2 = 0;
        float *a = st_get(&ours, ours.e[i].name, &n1), *b = st_get(&ref, ours.e[i].name, &n2);
        CHECK(a && b && n1 == n2, "%s: maec grad output '%s' has no reference", cs, ours.e[i].name);
        if (a && b && n1 == n2) {
            double e = rel_err(a, b, n1);
            CHECK(e < TOL, "%s: maec grad '%s' rel err %.3g", cs, ours.e[i].name, e);
            worst = fmax(worst, e);
            compared++;
        }
        free(a);
        free(b);
    }
    int trainable = 0;
    for (int i = 0; i < ref.n; i++) trainable += strcmp(ref.e[i].name, "mask") && strcmp(ref.e[i].name, "pred");
    CHECK(compared == trainable, "%s: maec grad wrote %d tensors, the reference has %d", cs, compared, trainable);
    printf("  %-12s maec grad: loss and %d gradients, worst rel err %.2e (%s)\n", cs, compared - 1, worst, model);
    st_close(&ours);
    st_close(&ref);
    unlink(out);
}

static void test_grad_command(const char *cs) { test_grad_command_on(cs, "model.safetensors", ""); }

/* The backward of the decoder's last block on the masked patches' rows
 * alone (mae.c) gives the gradients of the backward on every row, up to the
 * order of float sums: at a size where it applies (fmnist-tiny, 32 images),
 * at 1 to 3 threads, every gradient within 1e-5 relative, and the loss and
 * the predictions the same bits (the forward pass is the same). */
static void test_masked_rows(void)
{
    maec_config c;
    maec_error err;
    maec_model *m = NULL;
    maec_workspace *ws = NULL;
    CHECK(!maec_preset("fmnist-tiny", &c, &err), "preset: %s", err.msg);
    int B = 32, L = maec_num_patches(&c), P = maec_patch_dim(&c);
    size_t npix = (size_t)B * c.in_chans * c.img_h * c.img_w, ng;
    float *x = malloc(npix * sizeof(float)), *g_all = NULL, *pred_all = malloc((size_t)B * L * P * sizeof(float));
    uint64_t s = 5;
    for (size_t i = 0; i < npix; i++) x[i] = 2.0f * rng_uniform(&s) - 1.0f;
    int saved = omp_get_max_threads();
    if (maec_model_create(&c, 3, &m, &err) || maec_workspace_create(m, B, &ws, &err)) {
        CHECK(0, "masked rows: %s", err.msg);
        goto done;
    }
    ng = maec_model_num_floats(m);
    g_all = malloc(ng * sizeof(float));
    for (int nt = 1; nt <= 3; nt++) {
        omp_set_num_threads(nt);
        float loss[2];
        for (int all = 1; all >= 0; all--) {
            uint64_t rng = 9;
            mae_ws_all_rows(ws, all);
            maec_zero_grad(m);
            int rc = maec_forward_backward(m, ws, x, B, NULL, &rng, 1, 1.0f, &loss[all], &err);
            CHECK(rc == 0, "masked rows, %d threads: %s", nt, err.msg);
            CHECK(mae_ws_used_rows(ws) == !all, "masked rows, %d threads: the %s path ran", nt,
                  all ? "all-rows" : "masked-rows");
            if (all) {
                memcpy(g_all, maec_model_grads(m), ng * sizeof(float));
                memcpy(pred_all, maec_ws_pred(ws), (size_t)B * L * P * sizeof(float));
            }
        }
        /* the masked patches' predictions as on all rows (the same bits
         * where the products of B*G rows take the same path as those of
         * B*Td), the kept ones zero */
        const float *pr = maec_ws_pred(ws), *mk = maec_ws_mask(ws);
        double num = 0, den = 0;
        int kept_zero = 1;
        for (size_t r = 0; r < (size_t)B * L; r++)
            for (int i = 0; i < P; i++) {
                double a = pr[r * P + i], e = mk[r] > 0 ? pred_all[r * P + i] : 0.0;
                if (mk[r] == 0) kept_zero &= a == 0.0;
                num += (a - e) * (a - e), den += e * e;
            }
        double pe = sqrt(num / den), le = fabs((double)loss[0] - loss[1]) / fabs((double)loss[1]);
        CHECK(pe < 1e-6 && le < 1e-6 && kept_zero,
              "masked rows, %d threads: masked predictions rel err %.3g, loss %.3g, kept ones zero %d", nt, pe, le,
              kept_zero);
        double worst = 0;
        for (int i = 0; i < maec_model_num_tensors(m); i++) {
            const maec_tensor_info *t = maec_model_tensor(m, i);
            if (!t->trainable) continue;
            double e = rel_err(maec_model_grads(m) + t->offset, g_all + t->offset, t->size);
            CHECK(e < 1e-5, "masked rows, %d threads: gradient of %s rel err %.3g", nt, t->name, e);
            if (e > worst) worst = e;
        }
        printf("  masked rows only, %d threads: worst gradient rel err %.2g against all rows (%s bits)\n", nt,
               worst, memcmp(g_all, maec_model_grads(m), ng * sizeof(float)) ? "other" : "the same");
    }
done:
    omp_set_num_threads(saved);
    maec_workspace_free(ws);
    maec_model_free(m);
    free(x), free(g_all), free(pred_all);
}

int main(int argc, char **argv)
{
    (void)argc;
    test_on_command_kernels(argv);
    if (test_backend_check()) return 1;
    const char *cases[] = {"c1", "c3_normpix", "nonsquare", "menc", "allloss"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(cases[i]);
    test_grad_command("c3_normpix");
    test_grad_command("nonsquare");
    /* the same model without maec's metadata (as PyTorch users have it):
     * its 12 x 20 images read from X.npy, the rest from the flags */
    test_grad_command_on("nonsquare", "model_nometa.safetensors",
                         "--heads 2 --decoder-heads 2 --mask-ratio 0.6 --norm-pix-loss");
    test_pos_embed();
    test_lr_schedule();
    test_patchify_roundtrip();
    test_masks();
    test_init_seed();
    test_masked_rows();
    TEST_END();
}
