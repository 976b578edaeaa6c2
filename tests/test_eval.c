/* The evaluation heads against the PyTorch reference
 * (tests/reference/eval_ref.py -> tests/fixtures/eval): BatchNorm1d, the
 * soft-target cross-entropy with a linear head, global pool + fc_norm, drop
 * path, LARS, layer-wise lr decay, one whole fine-tune step of a tiny ViT
 * classifier (every gradient, then AdamW), frozen features and k-NN; each
 * within a relative error of 1e-5 per tensor. Then properties of mixup,
 * partial fine-tuning, save/load, and bad input. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/npy.h"
#include "io/safetensors.h"
#include "maec.h"
#include "model/vit.h"
#include "ops/ops.h"
#include "ops/ops_eval.h"
#include "test.h"
#include "util.h"

#define TOL 1e-5
static const char *FIX = "tests/fixtures/eval";

static float *get(const st_file *f, const char *name, size_t *count)
{
    int i = st_find(f, name);
    if (i < 0) {
        printf("  fixture tensor %s missing\n", name);
        return calloc(1, 4);
    }
    float *buf = calloc(f->e[i].count + 1, sizeof(float));
    maec_error err;
    st_read_f32(f, i, buf, &err);
    if (count) *count = f->e[i].count;
    return buf;
}

static int open_fix(const char *name, st_file *f)
{
    char p[512];
    maec_error err;
    snprintf(p, sizeof p, "%s/%s", FIX, name);
    int rc = st_open(p, f, &err);
    CHECK(rc == 0, "open %s: %s", p, err.msg);
    return rc;
}

#define CMP(what, ours, ref, n)                                                   \
    do {                                                                          \
        double e_ = rel_err((ours), (ref), (n));                                  \
        CHECK(e_ < TOL, "%s: rel err %.3g", (what), e_);                          \
        if (e_ > worst) worst = e_;                                               \
    } while (0)

static void test_batchnorm(void)
{
    st_file f;
    if (open_fix("bn.safetensors", &f)) return;
    int M = 6, D = 5;
    float *x = get(&f, "x", NULL), *y = get(&f, "y", NULL), *dy = get(&f, "dy", NULL), *dx = get(&f, "dx", NULL);
    float *rm = get(&f, "running_mean", NULL), *rv = get(&f, "running_var", NULL);
    float *x2 = get(&f, "x_eval", NULL), *y2 = get(&f, "y_eval", NULL);
    float out[30], mean[5], rstd[5], din[30], rmean[5] = {0}, rvar[5] = {1, 1, 1, 1, 1}, out2[15];
    double worst = 0;
    batchnorm1d_forward_train(out, mean, rstd, x, M, D, 1e-6f, rmean, rvar, 0.1f);
    CMP("batchnorm forward (train)", out, y, 30);
    batchnorm1d_backward(din, dy, out, rstd, M, D);
    CMP("batchnorm backward", din, dx, 30);
    CMP("batchnorm running mean", rmean, rm, 5);
    CMP("batchnorm running var", rvar, rv, 5);
    batchnorm1d_forward_eval(out2, x2, rmean, rvar, 3, D, 1e-6f);
    CMP("batchnorm forward (eval)", out2, y2, 15);
    printf("  batchnorm1d (no affine)      worst rel err %.2e\n", worst);
    free(x), free(y), free(dy), free(dx), free(rm), free(rv), free(x2), free(y2);
    st_close(&f);
}

static void test_xent_head(void)
{
    st_file f;
    if (open_fix("xent.safetensors", &f)) return;
    int B = 6, D = 8, K = 7;
    float *feat = get(&f, "feat", NULL), *w = get(&f, "weight", NULL), *b = get(&f, "bias", NULL);
    float *t = get(&f, "targets", NULL), *rlog = get(&f, "logits", NULL), *rloss = get(&f, "loss", NULL);
    float *rdl = get(&f, "dlogits", NULL), *rdf = get(&f, "dfeat", NULL), *rdw = get(&f, "dweight", NULL);
    float *rdb = get(&f, "dbias", NULL), *lab = get(&f, "labels", NULL), *tls = get(&f, "targets_ls", NULL);
    float *rls = get(&f, "loss_ls", NULL);
    float logits[42], probs[42], dl[42], df[48], dw[56] = {0}, db[7] = {0}, t2[42];
    double worst = 0;
    linear_forward(logits, feat, w, b, B, D, K);
    CMP("head logits", logits, rlog, 42);
    float loss = (float)softmax_xent_forward(probs, logits, t, B, K);
    CMP("soft-target cross-entropy loss", &loss, rloss, 1);
    softmax_xent_backward(dl, probs, t, B, K, 1.0f);
    CMP("d loss / d logits", dl, rdl, 42);
    linear_backward(df, dw, db, dl, feat, w, B, D, K);
    CMP("head d feat", df, rdf, 48);
    CMP("head d weight", dw, rdw, 56);
    CMP("head d bias", db, rdb, 7);
    int labels[6];
    for (int i = 0; i < 6; i++) labels[i] = (int)lab[i];
    one_hot_smooth(t2, labels, B, K, 0.1f);
    CMP("label smoothing targets", t2, tls, 42);
    float l2 = (float)softmax_xent_forward(probs, logits, t2, B, K);
    CMP("label smoothing loss (LabelSmoothingCrossEntropy)", &l2, rls, 1);
    printf("  linear head + cross-entropy  worst rel err %.2e\n", worst);
    free(feat), free(w), free(b), free(t), free(rlog), free(rloss), free(rdl), free(rdf), free(rdw);
    free(rdb), free(lab), free(tls), free(rls);
    st_close(&f);
}

static void test_pool_fcnorm(void)
{
    st_file f;
    if (open_fix("pool.safetensors", &f)) return;
    int B = 3, T = 5, D = 8;
    float *x = get(&f, "x", NULL), *w = get(&f, "w", NULL), *b = get(&f, "b", NULL), *y = get(&f, "y", NULL);
    float *dy = get(&f, "dy", NULL), *rdx = get(&f, "dx", NULL), *rdw = get(&f, "dw", NULL), *rdb = get(&f, "db", NULL);
    float pooled[24], out[24], mean[3], rstd[3], dp[24] = {0}, dx[120], dw[8] = {0}, db[8] = {0};
    double worst = 0;
    mean_pool_forward(pooled, x, B, T, D);
    layernorm_forward(out, mean, rstd, pooled, w, b, B, D);
    CMP("global pool + fc_norm forward", out, y, 24);
    layernorm_backward(dp, dw, db, dy, pooled, w, mean, rstd, B, D);
    mean_pool_backward(dx, dp, B, T, D);
    CMP("global pool + fc_norm d x", dx, rdx, 120);
    CMP("fc_norm d weight", dw, rdw, 8);
    CMP("fc_norm d bias", db, rdb, 8);
    printf("  global pool + fc_norm        worst rel err %.2e\n", worst);
    free(x), free(w), free(b), free(y), free(dy), free(rdx), free(rdw), free(rdb);
    st_close(&f);
}

/* the block with drop path on backend be (cpu and ref: the same fixture) */
static void test_droppath(const maec_backend *be)
{
    st_file f;
    if (open_fix("droppath.safetensors", &f)) return;
    int B = 4, T = 5, D = 16, H = 2, Hd = 64;
    static const char *names[12] = {"norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias",
                                    "attn.proj.weight", "attn.proj.bias", "norm2.weight", "norm2.bias",
                                    "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"};
    float *pp[12], *gg[12], *ref[12];
    size_t cnt[12];
    char nm[96];
    for (int i = 0; i < 12; i++) {
        snprintf(nm, sizeof nm, "blocks.0.%s", names[i]);
        pp[i] = get(&f, nm, &cnt[i]);
        gg[i] = calloc(cnt[i], sizeof(float));
        snprintf(nm, sizeof nm, "grad.blocks.0.%s", names[i]);
        ref[i] = get(&f, nm, NULL);
    }
    vit_block p = {pp[0], pp[1], pp[2], pp[3], pp[4], pp[5], pp[6], pp[7], pp[8], pp[9], pp[10], pp[11]};
    vit_block g = {gg[0], gg[1], gg[2], gg[3], gg[4], gg[5], gg[6], gg[7], gg[8], gg[9], gg[10], gg[11]};
    float *x = get(&f, "x", NULL), *k1 = get(&f, "keep_attn", NULL), *k2 = get(&f, "keep_mlp", NULL);
    float *y = get(&f, "y", NULL), *dy = get(&f, "dy", NULL), *rdx = get(&f, "dx", NULL);
    arena a = {NULL, 0};
    block_acts acts;
    block_scratch s;
    carve_block(&a, &acts, B, T, D, H, Hd);
    carve_scratch(be, &a, &s, B, T, D, Hd);
    float *dtmp = TAKE(&a, B * T * D);
    a.base = maec_alloc(a.used);
    a.used = 0;
    carve_block(&a, &acts, B, T, D, H, Hd);
    carve_scratch(be, &a, &s, B, T, D, Hd);
    dtmp = TAKE(&a, B * T * D);
    double worst = 0;
    block_forward_ex(be, &acts, &p, x, B, T, D, H, Hd, k1, k2);
    CMP("drop path block forward", acts.x_out, y, (size_t)B * T * D);
    float *dx = malloc((size_t)B * T * D * sizeof(float));
    memcpy(dx, dy, (size_t)B * T * D * sizeof(float));
    block_backward_ex(be, &acts, &p, &g, x, dx, dtmp, &s, B, T, D, H, Hd, k1, k2);
    CMP("drop path block d x", dx, rdx, (size_t)B * T * D);
    for (int i = 0; i < 12; i++) {
        snprintf(nm, sizeof nm, "drop path block d %s", names[i]);
        CMP(nm, gg[i], ref[i], cnt[i]);
    }
    printf("  drop path (given masks), %-4s worst rel err %.2e\n", be->name, worst);
    /* NULL masks = masks of ones, bit for bit */
    float ones[4] = {1, 1, 1, 1};
    float *y1 = malloc((size_t)B * T * D * sizeof(float));
    block_forward_ex(be, &acts, &p, x, B, T, D, H, Hd, ones, ones);
    memcpy(y1, acts.x_out, (size_t)B * T * D * sizeof(float));
    block_forward(be, &acts, &p, x, B, T, D, H, Hd);
    CHECK(memcmp(y1, acts.x_out, (size_t)B * T * D * sizeof(float)) == 0, "keep = 1 differs from no drop path");
    free(y1);
    for (int i = 0; i < 12; i++) free(pp[i]), free(gg[i]), free(ref[i]);
    free(x), free(k1), free(k2), free(y), free(dy), free(rdx), free(dx);
    maec_free(a.base);
    st_close(&f);
}

static void test_lars(void)
{
    st_file f;
    if (open_fix("lars.safetensors", &f)) return;
    float *w = get(&f, "w0", NULL), *b = get(&f, "b0", NULL);
    float mw[30] = {0}, mb[6] = {0};
    double worst = 0;
    char nm[16];
    for (int s = 0; s < 2; s++) {
        snprintf(nm, sizeof nm, "gw%d", s);
        float *gw = get(&f, nm, NULL);
        snprintf(nm, sizeof nm, "gb%d", s);
        float *gb = get(&f, nm, NULL);
        lars_update(w, gw, mw, 30, 0.1f, 0.05f, 0.9f, 0.001f, 1);
        lars_update(b, gb, mb, 6, 0.1f, 0.05f, 0.9f, 0.001f, 0);
        snprintf(nm, sizeof nm, "w%d", s + 1);
        float *rw = get(&f, nm, NULL);
        snprintf(nm, sizeof nm, "b%d", s + 1);
        float *rb = get(&f, nm, NULL);
        CMP(s ? "LARS step 2 weight" : "LARS step 1 weight", w, rw, 30);
        CMP(s ? "LARS step 2 bias" : "LARS step 1 bias", b, rb, 6);
        free(gw), free(gb), free(rw), free(rb);
    }
    printf("  LARS (2 steps)               worst rel err %.2e\n", worst);
    free(w), free(b);
    st_close(&f);
}

static maec_classifier *load_ft(int tune_blocks)
{
    maec_classifier_opts o;
    maec_classifier_defaults(&o);
    o.tune_blocks = tune_blocks;
    maec_classifier *c = NULL;
    maec_error err = {0};
    char p[512];
    snprintf(p, sizeof p, "%s/ft/model.safetensors", FIX);
    int rc = maec_classifier_load(p, NULL, &o, 0, &c, &err);
    CHECK(rc == 0, "load %s: %s", p, err.msg);
    return rc ? NULL : c;
}

static void test_finetune_step(void)
{
    maec_classifier *c = load_ft(-1);
    if (!c) return;
    maec_error err = {0};
    const maec_config *cf = maec_classifier_config(c);
    CHECK(cf->dim == 16 && cf->depth == 3 && cf->heads == 2 && cf->in_chans == 3 && cf->img_h == 8,
          "fine-tune fixture configuration read wrong");
    CHECK(maec_classifier_options(c)->num_classes == 5 && maec_classifier_options(c)->global_pool == 1,
          "head / global pool not detected");
    npy_array x, t, keep;
    char p[512];
    snprintf(p, sizeof p, "%s/ft/images.npy", FIX);
    CHECK(npy_load(p, &x, &err) == 0, "%s", err.msg);
    snprintf(p, sizeof p, "%s/ft/targets.npy", FIX);
    CHECK(npy_load(p, &t, &err) == 0, "%s", err.msg);
    snprintf(p, sizeof p, "%s/ft/keep.npy", FIX);
    CHECK(npy_load(p, &keep, &err) == 0, "%s", err.msg);
    st_file g, ad;
    if (open_fix("ft/grads.safetensors", &g) || open_fix("ft/adamw.safetensors", &ad)) return;
    int B = 4, K = 5;
    maec_clf_workspace *w;
    CHECK(maec_clf_workspace_create(c, B, 1, &w, &err) == 0, "%s", err.msg);
    maec_classifier_zero_grad(c);
    float loss;
    int rc = maec_classifier_forward_backward(c, w, x.data, B, t.data, keep.data, NULL, 1, 1.0f, &loss, &err);
    CHECK(rc == 0, "fine-tune step: %s", err.msg);
    double worst = 0;
    float *rl = get(&g, "loss", NULL), *rlog = get(&g, "logits", NULL);
    CMP("fine-tune loss", &loss, rl, 1);
    CMP("fine-tune logits", maec_clf_ws_logits(w), rlog, (size_t)B * K);
    int ngrad = 0;
    for (int i = 0; i < maec_classifier_num_tensors(c); i++) {
        const maec_tensor_info *ti = maec_classifier_tensor(c, i);
        size_t n = 0;
        float *r = get(&g, ti->name, &n);
        CHECK(n == ti->size, "gradient of %s: size", ti->name);
        if (n == ti->size) {
            char what[160];
            snprintf(what, sizeof what, "fine-tune gradient of %s", ti->name);
            CMP(what, maec_classifier_grads(c) + ti->offset, r, n);
            ngrad++;
        }
        free(r);
    }
    CHECK(ngrad == 4 + 12 * 3 + 4, "%d gradients compared", ngrad);
    printf("  fine-tune step: loss %.6f (ref %.6f), %d gradients, worst rel err %.2e\n", (double)loss,
           (double)rl[0], ngrad, worst);

    /* layer-wise lr decay: every tensor's scale and weight decay */
    char *js;
    size_t len;
    snprintf(p, sizeof p, "%s/ft/lrd.json", FIX);
    CHECK(read_file(p, &js, &len, 1 << 20, &err) == 0, "%s", err.msg);
    cJSON *o = cJSON_Parse(js);
    int nl = 0, bad = 0;
    for (int i = 0; i < maec_classifier_num_tensors(c); i++) {
        const maec_tensor_info *ti = maec_classifier_tensor(c, i);
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, ti->name);
        if (!e) {
            bad++;
            printf("  lrd.json has no %s\n", ti->name);
            continue;
        }
        double s = cJSON_GetArrayItem(e, 0)->valuedouble, wd = cJSON_GetArrayItem(e, 1)->valuedouble;
        double ours = maec_classifier_lr_scale(c, i, 0.75);
        if (fabs(ours - s) > 1e-12 * s || (wd > 0) != (ti->decay != 0)) {
            bad++;
            printf("  %s: lr scale %.9g (ref %.9g), decay %d (ref wd %g)\n", ti->name, ours, s, ti->decay, wd);
        }
        nl++;
    }
    CHECK(bad == 0 && nl == cJSON_GetArraySize(o), "layer-wise lr decay: %d of %d tensors differ", bad, nl);
    cJSON_Delete(o);
    free(js);

    /* one AdamW step with layer decay 0.75, weight decay 0.05 */
    maec_adamw opt = {1e-3f, 0.9f, 0.999f, 1e-8f, 0.05f};
    maec_classifier_adamw_step(c, &opt, 0.75f);
    double wa = 0;
    for (int i = 0; i < maec_classifier_num_tensors(c); i++) {
        const maec_tensor_info *ti = maec_classifier_tensor(c, i);
        size_t n;
        float *r = get(&ad, ti->name, &n);
        double e = rel_err(maec_classifier_params(c) + ti->offset, r, n);
        CHECK(e < TOL, "after AdamW: %s rel err %.3g", ti->name, e);
        if (e > wa) wa = e;
        free(r);
    }
    printf("  AdamW + layer decay step     worst rel err %.2e\n", wa);

    /* partial fine-tuning: the last block, fc_norm and head get the same
     * gradients; nothing else gets any */
    maec_classifier *c1 = load_ft(1);
    maec_clf_workspace *w1;
    CHECK(maec_clf_workspace_create(c1, B, 1, &w1, &err) == 0, "%s", err.msg);
    maec_classifier_zero_grad(c1);
    rc = maec_classifier_forward_backward(c1, w1, x.data, B, t.data, keep.data, NULL, 1, 1.0f, &loss, &err);
    CHECK(rc == 0, "partial step: %s", err.msg);
    int ntrain = 0, wrong = 0;
    for (int i = 0; i < maec_classifier_num_tensors(c1); i++) {
        const maec_tensor_info *ti = maec_classifier_tensor(c1, i);
        const float *gr = maec_classifier_grads(c1) + ti->offset;
        if (ti->trainable) {
            ntrain++;
            size_t n;
            float *r = get(&g, ti->name, &n);
            if (rel_err(gr, r, n) >= TOL) wrong++;
            free(r);
        } else {
            for (size_t k = 0; k < ti->size; k++)
                if (gr[k] != 0) {
                    wrong++;
                    break;
                }
        }
    }
    CHECK(ntrain == 12 + 4 && wrong == 0, "--tune-blocks 1: %d trainable tensors, %d wrong", ntrain, wrong);
    maec_clf_workspace_free(w1);
    maec_classifier_free(c1);

    /* save and load: same tensors, same logits */
    char tmp[] = "/tmp/maec_test_eval_XXXXXX";
    int fd = mkstemp(tmp);
    close(fd);
    CHECK(maec_classifier_save(c, tmp, &err) == 0, "save: %s", err.msg);
    maec_classifier *c2 = NULL;
    CHECK(maec_classifier_load(tmp, NULL, NULL, 0, &c2, &err) == 0, "reload: %s", err.msg);
    if (c2) {
        CHECK(maec_classifier_num_tensors(c2) == maec_classifier_num_tensors(c), "reload: tensor count");
        int same = 1;
        for (int i = 0; i < maec_classifier_num_tensors(c); i++) {
            const maec_tensor_info *a = maec_classifier_tensor(c, i), *b = maec_classifier_tensor(c2, i);
            same &= !strcmp(a->name, b->name) &&
                    !memcmp(maec_classifier_params(c) + a->offset, maec_classifier_params(c2) + b->offset,
                            a->size * sizeof(float));
        }
        CHECK(same, "reload: tensors differ");
        maec_classifier_free(c2);
    }
    unlink(tmp);

    /* drawn drop path: rate 0 = none; the loss is finite with masks drawn */
    uint64_t rng = 7;
    float l0, l1;
    maec_classifier_zero_grad(c);
    CHECK(maec_classifier_forward_backward(c, w, x.data, B, t.data, NULL, &rng, 1, 1.0f, &l1, &err) == 0,
          "drawn masks: %s", err.msg);
    CHECK(isfinite(l1), "drawn masks: loss %g", (double)l1);
    CHECK(maec_classifier_forward_backward(c, w, x.data, B, t.data, NULL, NULL, 0, 1.0f, &l0, &err) == 0,
          "inference: %s", err.msg);
    /* bad input */
    CHECK(maec_classifier_forward_backward(c, w, x.data, B + 1, t.data, NULL, NULL, 0, 1.0f, &l0, &err) != 0,
          "a batch larger than the workspace was accepted");
    CHECK(maec_classifier_forward_backward(c, w, x.data, B, NULL, NULL, NULL, 1, 1.0f, &l0, &err) != 0,
          "backward without targets was accepted");
    maec_clf_workspace *wi;
    CHECK(maec_clf_workspace_create(c, B, 0, &wi, &err) == 0, "%s", err.msg);
    CHECK(maec_classifier_forward_backward(c, wi, x.data, B, t.data, NULL, NULL, 1, 1.0f, &l0, &err) != 0,
          "backward on an inference workspace was accepted");
    float feats[64];
    CHECK(maec_classifier_features(c, wi, x.data, B, MAEC_FEATURE_CLS, feats, &err) != 0,
          "class-token features of a global-pool classifier were accepted");
    maec_clf_workspace_free(wi);

    free(rl), free(rlog);
    npy_free(&x), npy_free(&t), npy_free(&keep);
    st_close(&g);
    st_close(&ad);
    maec_clf_workspace_free(w);
    maec_classifier_free(c);
}

static void test_features(void)
{
    maec_error err = {0};
    char p[512];
    snprintf(p, sizeof p, "%s/feat/model.safetensors", FIX);
    maec_classifier_opts o;
    maec_classifier_defaults(&o);
    o.global_pool = 0;
    o.num_classes = 0;
    maec_classifier *c = NULL;
    int rc = maec_classifier_load(p, NULL, &o, 0, &c, &err);
    CHECK(rc == 0, "load %s: %s", p, err.msg);
    if (rc) return;
    npy_array x;
    snprintf(p, sizeof p, "%s/feat/images.npy", FIX);
    CHECK(npy_load(p, &x, &err) == 0, "%s", err.msg);
    st_file f;
    if (open_fix("feat/features.safetensors", &f)) return;
    int B = 3, D = 16;
    maec_clf_workspace *w;
    CHECK(maec_clf_workspace_create(c, 8, 0, &w, &err) == 0, "%s", err.msg);
    float out[48];
    double worst = 0;
    float *rc_ = get(&f, "cls", NULL), *rm = get(&f, "mean", NULL);
    CHECK(maec_classifier_features(c, w, x.data, B, MAEC_FEATURE_CLS, out, &err) == 0, "%s", err.msg);
    CMP("class-token features", out, rc_, (size_t)B * D);
    CHECK(maec_classifier_features(c, w, x.data, B, MAEC_FEATURE_MEAN, out, &err) == 0, "%s", err.msg);
    CMP("mean-of-patches features", out, rm, (size_t)B * D);
    printf("  frozen features (cls, mean)  worst rel err %.2e\n", worst);
    free(rc_), free(rm);
    /* maec_classifier_tokens: the patch tokens after the final norm, and
     * every token after block 1 without it (embed --tokens patch, --layer 1
     * --no-final-norm) */
    st_file tf;
    if (open_fix("feat/tokens.safetensors", &tf) == 0) {
        int T = 5, L = 4;
        float tok[3 * 5 * 16], patch[3 * 4 * 16];
        float *rpt = get(&tf, "patch", NULL), *rb1 = get(&tf, "block1", NULL);
        CHECK(maec_classifier_tokens(c, w, x.data, B, -1, 1, tok, &err) == 0, "%s", err.msg);
        for (int b = 0; b < B; b++) memcpy(patch + (size_t)b * L * D, tok + ((size_t)b * T + 1) * D, sizeof(float) * L * D);
        CMP("patch tokens after the final norm", patch, rpt, (size_t)B * L * D);
        CHECK(maec_classifier_tokens(c, w, x.data, B, 1, 0, tok, &err) == 0, "%s", err.msg);
        CMP("tokens after block 1, no norm", tok, rb1, (size_t)B * T * D);
        CHECK(maec_classifier_tokens(c, w, x.data, B, 3, 0, tok, &err) != 0, "layer 3 of a 2-block encoder accepted");
        float att[3 * 2 * 5 * 5];
        float *ratt = get(&tf, "attention", NULL);
        CHECK(maec_classifier_attention(c, w, x.data, B, att, &err) == 0, "%s", err.msg);
        CMP("last block's attention probabilities", att, ratt, (size_t)B * 2 * T * T);
        printf("  tokens (patch, block 1), attention  worst rel err %.2e\n", worst);
        free(rpt), free(rb1), free(ratt);
        st_close(&tf);
    }
    npy_free(&x);
    st_close(&f);
    maec_clf_workspace_free(w);
    maec_classifier_free(c);
}

static void test_knn(void)
{
    st_file f;
    if (open_fix("knn.safetensors", &f)) return;
    int N = 200, M = 40, D = 8;
    float *tr = get(&f, "train", NULL), *te = get(&f, "test", NULL), *yl = get(&f, "train_labels", NULL);
    float *rp = get(&f, "pred", NULL);
    int ytr[200], pred[40], yte[40];
    for (int i = 0; i < N; i++) ytr[i] = (int)yl[i];
    for (int i = 0; i < M; i++) yte[i] = (int)rp[i];
    maec_error err;
    double acc = maec_knn_top1(tr, ytr, N, te, yte, M, D, 4, 5, 0.07f, pred, &err);
    int same = 0;
    for (int i = 0; i < M; i++) same += pred[i] == (int)rp[i];
    CHECK(same == M && acc == 1.0, "k-NN: %d of %d predictions as the reference", same, M);
    printf("  cosine k-NN                  %d of %d predictions as the reference\n", same, M);
    CHECK(maec_knn_top1(tr, ytr, N, te, yte, M, D, 4, 0, 0.07f, NULL, &err) < 0, "k = 0 accepted");
    CHECK(maec_knn_top1(tr, ytr, N, te, yte, M, D, 4, 5, 0.0f, NULL, &err) < 0, "T = 0 accepted");
    ytr[3] = 9;
    CHECK(maec_knn_top1(tr, ytr, N, te, yte, M, D, 4, 5, 0.07f, NULL, &err) < 0, "label 9 of 4 classes accepted");
    free(tr), free(te), free(yl), free(rp);
    st_close(&f);
}

static void test_mixup(void)
{
    int B = 6, C = 1, H = 8, W = 8, K = 4;
    float img[6 * 64], orig[6 * 64], t[24];
    int labels[6] = {0, 1, 2, 3, 0, 1};
    for (int i = 0; i < B * 64; i++) orig[i] = (float)(i / 64);
    int nmix = 0, ncut = 0, bad = 0;
    uint64_t rng = 42;
    for (int trial = 0; trial < 200; trial++) {
        memcpy(img, orig, sizeof img);
        float lam = maec_mixup(img, labels, t, B, C, H, W, K, 0.8f, 1.0f, 0.5f, 0.1f, &rng);
        if (!(lam >= 0 && lam <= 1)) bad++;
        for (int b = 0; b < B; b++) {
            double s = 0;
            for (int k = 0; k < K; k++) s += t[b * K + k];
            if (fabs(s - 1) > 1e-5) bad++;
            /* image b holds lam of itself and 1-lam of B-1-b (in mean) */
            double m = 0;
            for (int i = 0; i < 64; i++) m += img[b * 64 + i];
            m /= 64;
            double want = lam * b + (1 - lam) * (B - 1 - b);
            if (fabs(m - want) > 1e-4) bad++;
            /* target weight of its own label: lam * on + ... */
            double on = 1 - 0.1 + 0.025, off = 0.025;
            double tw = lam * on + (1 - lam) * (labels[B - 1 - b] == labels[b] ? on : off);
            if (fabs(t[b * K + labels[b]] - tw) > 1e-5) bad++;
        }
        /* cutmix leaves pixels either of b or of B-1-b; mixup blends all */
        int pure = 1;
        for (int i = 0; i < 64; i++)
            if (img[i] != 0.0f && img[i] != 5.0f) pure = 0;
        if (lam < 1) {
            if (pure) ncut++;
            else nmix++;
        }
    }
    CHECK(bad == 0, "mixup: %d inconsistencies between images, targets and lam", bad);
    CHECK(ncut > 50 && nmix > 50, "mixup/cutmix switch: %d cutmix, %d mixup of 200", ncut, nmix);
    /* no alphas: only label smoothing, images untouched */
    memcpy(img, orig, sizeof img);
    float lam = maec_mixup(img, labels, t, B, C, H, W, K, 0, 0, 0.5f, 0.1f, &rng);
    CHECK(lam == 1.0f && memcmp(img, orig, sizeof img) == 0 && fabs(t[0] - 0.925f) < 1e-6,
          "mixup off changed the batch");
    printf("  mixup/cutmix: %d cutmix, %d mixup batches of 200, targets consistent\n", ncut, nmix);
}

static void test_linprobe_api(void)
{
    maec_error err = {0};
    maec_linprobe *lp;
    CHECK(maec_linprobe_create(4, 1, 8, 0, &lp, &err) != 0, "a probe with 1 class was accepted");
    CHECK(maec_linprobe_create(4, 3, 8, 0, &lp, &err) == 0, "%s", err.msg);
    /* three separable clusters: the probe learns them (LARS alone moves
     * small weights slowly: its step is lr * 0.001 * ||w||) */
    float x[8 * 4];
    int y[8];
    uint64_t rng = 5;
    float loss0 = 0, loss = 0;
    for (int it = 0; it < 300; it++) {
        for (int b = 0; b < 8; b++) {
            y[b] = (int)(rng_next(&rng) % 3);
            for (int d = 0; d < 4; d++) x[b * 4 + d] = (d == y[b] ? 3.0f : 0.0f) + (float)rng_normal(&rng) * 0.3f;
        }
        CHECK(maec_linprobe_forward_backward(lp, x, 8, y, 1, NULL, &loss, &err) == 0, "%s", err.msg);
        if (it == 0) loss0 = loss;
        maec_linprobe_step(lp, 0.1f, 0.0f, 0.9f, it % 2); /* SGD and LARS in turn */
    }
    float logits[24];
    CHECK(maec_linprobe_forward_backward(lp, x, 8, y, 0, logits, &loss, &err) == 0, "%s", err.msg);
    int right = 0;
    for (int b = 0; b < 8; b++) {
        int best = 0;
        for (int k = 1; k < 3; k++)
            if (logits[b * 3 + k] > logits[b * 3 + best]) best = k;
        right += best == y[b];
    }
    CHECK(right == 8 && loss < 0.5f * loss0, "linear probe did not learn: %d of 8, loss %g -> %g", right,
          (double)loss0, (double)loss);
    y[0] = 3;
    CHECK(maec_linprobe_forward_backward(lp, x, 8, y, 1, NULL, &loss, &err) != 0, "label 3 of 3 classes accepted");
    CHECK(maec_linprobe_forward_backward(lp, x, 1, y, 1, NULL, &loss, &err) != 0, "batch of 1 in training accepted");
    maec_linprobe_free(lp);
}

static void test_bad_files(void)
{
    maec_error err = {0};
    maec_classifier *c = NULL;
    CHECK(maec_classifier_load("/nonexistent.safetensors", NULL, NULL, 0, &c, &err) != 0 && c == NULL,
          "a missing file loaded");
    char tmp[] = "/tmp/maec_test_eval_XXXXXX";
    int fd = mkstemp(tmp);
    CHECK(write(fd, "garbage!garbage!", 16) == 16, "write");
    close(fd);
    CHECK(maec_classifier_load(tmp, NULL, NULL, 0, &c, &err) != 0 && c == NULL, "garbage loaded");
    unlink(tmp);
    maec_classifier_opts o;
    maec_classifier_defaults(&o);
    maec_config cfg;
    maec_preset("test-tiny", &cfg, &err);
    o.tune_blocks = 5;
    CHECK(maec_classifier_create(&cfg, NULL, &o, 0, &c, &err) != 0, "--tune-blocks 5 of 2 blocks accepted");
    o.tune_blocks = -1;
    o.drop_path = 1.5f;
    CHECK(maec_classifier_create(&cfg, NULL, &o, 0, &c, &err) != 0, "drop path 1.5 accepted");
    o.drop_path = 0.1f;
    CHECK(maec_classifier_create(&cfg, NULL, &o, 0, &c, &err) == 0, "from scratch: %s", err.msg);
    maec_clf_workspace *w;
    CHECK(maec_clf_workspace_create(c, 0, 1, &w, &err) != 0, "batch 0 accepted");
    maec_classifier_free(c);
}

int main(int argc, char **argv)
{
    (void)argc;
    test_on_command_kernels(argv);
    if (test_backend_check()) return 1;
    maec_set_threads(2);
    test_batchnorm();
    test_xent_head();
    test_pool_fcnorm();
    test_droppath(maec_backend_cpu());
    test_droppath(maec_backend_ref());
    test_lars();
    test_finetune_step();
    test_features();
    test_knn();
    test_mixup();
    test_linprobe_api();
    test_bad_files();
    TEST_END();
}
