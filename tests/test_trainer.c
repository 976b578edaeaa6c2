/* The library trainer (maec_trainer_*): the same weights, bit for bit, as
 * the loop written out by hand from the pieces it is made of (schedule,
 * accumulation, masks and drop path per image from (seed, epoch, position),
 * AdamW); a run stopped by
 * its flag and resumed from its checkpoint equals an unbroken one, bit for
 * bit, weights and logged losses; checkpoints pruned to `keep`; errors
 * from the batches, the hook and bad options come back as errors. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "test.h"
#include "util.h"

enum { NIMG = 40, BATCH = 4, PIX = 16 * 16 };
static float data[NIMG * PIX];

static int batch_fn(void *ctx, int64_t epoch, int64_t i, float *images, int *labels, int *n, maec_error *err)
{
    for (int b = 0; labels && b < BATCH; b++) labels[b] = (int)((((int64_t)i * BATCH + b) * 7 + epoch) % NIMG) % 3;
    int *fail_at = ctx;
    if (fail_at && *fail_at == (int)(epoch * (NIMG / BATCH) + i))
        return maec_fail(err, MAEC_EIO, "no batch %lld (as asked)", (long long)i);
    /* epoch e takes the images in another order: image (k * 7 + e) % NIMG */
    for (int b = 0; b < BATCH; b++) {
        int k = (int)((((int64_t)i * BATCH + b) * 7 + epoch) % NIMG);
        memcpy(images + (size_t)b * PIX, data + (size_t)k * PIX, PIX * sizeof(float));
    }
    *n = BATCH;
    return 0;
}

static maec_config small_config(void)
{
    maec_config c;
    maec_error err;
    if (maec_preset("test-tiny", &c, &err)) {
        printf("no test-tiny preset: %s\n", err.msg);
        exit(1);
    }
    return c;
}

static maec_train_opts small_opts(const char *dir)
{
    maec_train_opts o;
    maec_train_defaults(&o);
    o.batch_size = BATCH, o.accum_iter = 2, o.epochs = 3, o.batches_per_epoch = NIMG / BATCH;
    o.lr = 1e-3, o.min_lr = 1e-5, o.warmup_epochs = 1, o.seed = 11, o.log_every = 3, o.keep = 2;
    o.output_dir = dir;
    return o;
}

/* the logged window losses of a run, in order */
typedef struct {
    double loss[64];
    int n;
    int64_t stop_at;
    volatile int *stop;
} log_ctx;

static int hook(void *ctx, maec_trainer *t, const maec_train_event *ev, maec_error *err)
{
    (void)t, (void)err;
    log_ctx *l = ctx;
    if (ev->record && l->n < 64) l->loss[l->n++] = ev->window_loss;
    if (l->stop && ev->step == l->stop_at) *l->stop = 1;
    return 0;
}

static int fail_hook(void *ctx, maec_trainer *t, const maec_train_event *ev, maec_error *err)
{
    (void)ctx, (void)t, (void)ev;
    return maec_fail(err, MAEC_EINVAL, "the hook says stop");
}

/* the loop by hand, from the pieces: 5 steps per epoch of 2 micro-batches */
static maec_model *by_hand(const maec_train_opts *o)
{
    maec_config c = small_config();
    maec_model *m;
    maec_workspace *ws;
    maec_error err;
    if (maec_model_create(&c, 0, &m, &err) || maec_workspace_create(m, BATCH, &ws, &err)) return NULL;
    float images[BATCH * PIX], noise[BATCH * 64];
    int64_t spe = o->batches_per_epoch / o->accum_iter;
    for (int64_t s = 0; s < o->epochs * spe; s++) {
        int64_t ep = s / spe, it0 = (s % spe) * o->accum_iter;
        float lr = (float)maec_lr_at(ep + (double)it0 / o->batches_per_epoch, o->lr, o->min_lr, o->warmup_epochs,
                                     o->epochs);
        maec_zero_grad(m);
        for (int a = 0; a < o->accum_iter; a++) {
            int n;
            batch_fn(NULL, ep, it0 + a, images, NULL, &n, &err);
            for (int j = 0; j < n; j++) { /* each image's mask from (seed, epoch, its position) */
                uint64_t r = rng_derive(o->seed, (uint64_t)ep, (uint64_t)((it0 + a) * BATCH + j), 0x6d61736b);
                maec_make_noise(&c, 1, noise + (size_t)j * maec_num_patches(&c), &r);
            }
            float loss;
            maec_forward_backward(m, ws, images, n, noise, NULL, 1, 1.0f / o->accum_iter, &loss, &err);
        }
        maec_adamw opt = {lr, o->beta1, o->beta2, o->eps, o->weight_decay};
        maec_adamw_step(m, &opt);
    }
    maec_workspace_free(ws);
    return m;
}

/* fine-tuning by hand: mixup/CutMix from (seed, micro), drop path per image, clip, AdamW with layer decay */
static maec_classifier *clf_by_hand(const maec_train_opts *o, const maec_clf_train_opts *co,
                                    const maec_classifier_opts *copt)
{
    maec_config c = small_config();
    maec_classifier *k;
    maec_clf_workspace *w;
    maec_error err;
    if (maec_classifier_create(&c, NULL, copt, 3, &k, &err) || maec_clf_workspace_create(k, BATCH, 1, &w, &err))
        return NULL;
    float images[BATCH * PIX], targets[BATCH * 3];
    int labels[BATCH];
    maec_mix_draw draws[BATCH];
    int64_t spe = o->batches_per_epoch / o->accum_iter;
    for (int64_t s = 0; s < o->epochs * spe; s++) {
        int64_t ep = s / spe, it0 = (s % spe) * o->accum_iter;
        float lr = (float)maec_lr_at(ep + (double)it0 / o->batches_per_epoch, o->lr, o->min_lr, o->warmup_epochs,
                                     o->epochs);
        maec_classifier_zero_grad(k);
        for (int a = 0; a < o->accum_iter; a++) {
            int n;
            int64_t micro = ep * o->batches_per_epoch + it0 + a;
            batch_fn(NULL, ep, it0 + a, images, labels, &n, &err);
            uint64_t mr = rng_derive(o->seed, (uint64_t)micro, 0x6d6978, 0);
            maec_mix_sample(&co->mixup, n, 16, 16, &mr, draws);
            maec_mix_apply(images, labels, targets, n, 1, 16, 16, 3, co->mixup.mode, draws, co->mixup.smoothing);
            /* drop path: image j's keeps from (seed, epoch, its position), block by block */
            float keep[2 * 8 * BATCH];
            int depth = c.depth;
            for (int j = 0; j < n; j++) {
                uint64_t dr = rng_derive(o->seed, (uint64_t)ep, (uint64_t)((it0 + a) * BATCH + j), 0x64726f70);
                for (int i = 0; i < depth; i++) {
                    double dpr = depth > 1 ? (double)copt->drop_path * i / (depth - 1) : 0.0;
                    float kp = (float)(1.0 - dpr);
                    for (int br = 0; br < 2; br++)
                        keep[(i * 2 + br) * n + j] = dpr <= 0 ? 1.0f : rng_uniform(&dr) < kp ? 1.0f / kp : 0.0f;
                }
            }
            float loss;
            maec_classifier_forward_backward(k, w, images, n, targets, keep, NULL, 1, 1.0f / o->accum_iter, &loss,
                                             &err);
        }
        if (co->clip_grad > 0) maec_classifier_clip_grad(k, co->clip_grad);
        maec_adamw opt = {lr, o->beta1, o->beta2, o->eps, o->weight_decay};
        maec_classifier_adamw_step(k, &opt, co->layer_decay);
    }
    maec_clf_workspace_free(w);
    return k;
}

static int same_clf(maec_classifier *a, maec_classifier *b)
{
    size_t n = 0;
    for (int i = 0; i < maec_classifier_num_tensors(a); i++) n += maec_classifier_tensor(a, i)->size;
    return !memcmp(maec_classifier_params(a), maec_classifier_params(b), n * sizeof(float));
}

static int same_params(maec_model *a, maec_model *b)
{
    size_t n = maec_model_num_floats(a);
    return n == maec_model_num_floats(b) && !memcmp(maec_model_params(a), maec_model_params(b), n * sizeof(float));
}

static int count_checkpoints(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (!strncmp(e->d_name, "checkpoint-", 11) && strstr(e->d_name, ".safetensors") &&
            !strstr(e->d_name, ".tmp"))
            n++;
    if (d) closedir(d);
    return n;
}

int main(int argc, char **argv)
{
    test_on_command_kernels(argv);
    (void)argc;
    if (test_backend_check()) return 1;
    if (test_make_dir("trainer")) return 1;
    uint64_t r = 5;
    for (int i = 0; i < NIMG * PIX; i++) data[i] = rng_uniform(&r) * 2 - 1;
    maec_config c = small_config();
    maec_error err;
    char dir_a[256], dir_b[256];
    snprintf(dir_a, sizeof dir_a, "%s", test_path("a"));
    snprintf(dir_b, sizeof dir_b, "%s", test_path("b"));
    mkdir(dir_a, 0755);
    mkdir(dir_b, 0755);

    /* 1. an unbroken run = the loop by hand, bit for bit */
    maec_train_opts o = small_opts(dir_a);
    maec_model *m = NULL, *hand = by_hand(&o);
    maec_trainer *t = NULL;
    log_ctx la = {0};
    CHECK(hand != NULL, "the loop by hand did not run");
    CHECK(!maec_model_create(&c, 0, &m, &err) && !maec_trainer_create(m, &o, batch_fn, NULL, "{\"note\": 1}", &t, &err),
          "trainer: %s", err.msg);
    maec_trainer_set_hook(t, hook, &la);
    int rc = maec_trainer_run(t, &err);
    CHECK(rc == 0, "run: %d %s", rc, err.msg);
    CHECK(maec_model_step(m) == 15, "steps %lld, want 15", (long long)maec_model_step(m));
    CHECK(hand && same_params(m, hand), "the trainer's weights differ from the loop by hand");
    CHECK(count_checkpoints(dir_a) == 2, "%d checkpoints kept, want 2", count_checkpoints(dir_a));
    /* records at steps 3, 5 (epoch), 6, 9, 10, 12, 15: 7 */
    CHECK(la.n == 7, "%d records, want 7", la.n);
    maec_trainer_free(t);
    t = NULL;

    /* 2. stopped at step 7 by its flag, resumed from the checkpoint: the same */
    volatile int stop = 0;
    maec_model *m1 = NULL;
    log_ctx lb = {.stop_at = 7, .stop = &stop};
    o.output_dir = dir_b;
    CHECK(!maec_model_create(&c, 0, &m1, &err) && !maec_trainer_create(m1, &o, batch_fn, NULL, NULL, &t, &err),
          "trainer: %s", err.msg);
    maec_trainer_set_hook(t, hook, &lb);
    maec_trainer_set_stop_flag(t, &stop);
    rc = maec_trainer_run(t, &err);
    CHECK(rc == MAEC_ESTOPPED, "stopped run: %d %s", rc, err.msg);
    CHECK(maec_model_step(m1) == 7, "stopped at step %lld, want 7", (long long)maec_model_step(m1));
    maec_trainer_free(t);
    t = NULL;
    maec_model *m2 = NULL;
    char *js = NULL, used[1024];
    CHECK(!maec_checkpoint_load_latest(dir_b, &m2, &js, used, sizeof used, &err), "load latest: %s", err.msg);
    CHECK(m2 && strstr(used, "checkpoint-00000007.safetensors"), "resumed from %s, want step 7", used);
    stop = 0;
    if (m2) {
        CHECK(!maec_trainer_create(m2, &o, batch_fn, NULL, NULL, &t, &err) &&
                  !maec_trainer_resume_state(t, js, &err),
              "resume: %s", err.msg);
        maec_trainer_set_hook(t, hook, &lb);
        rc = maec_trainer_run(t, &err);
        CHECK(rc == 0, "resumed run: %d %s", rc, err.msg);
        CHECK(same_params(m2, m), "stopped and resumed: the weights differ from the unbroken run's");
        /* the window carried over: the same records, the same losses */
        int same = lb.n == la.n;
        for (int i = 0; same && i < la.n; i++) same = lb.loss[i] == la.loss[i];
        CHECK(same, "stopped and resumed: %d records against %d, or other losses", lb.n, la.n);
        CHECK(maec_trainer_resumed_threads(js) == maec_get_threads(), "threads not kept in the checkpoint");
    }
    maec_trainer_free(t);
    t = NULL;
    free(js);

    /* 3. errors */
    maec_model *m3 = NULL;
    int fail_at = 4;
    o.output_dir = NULL;
    CHECK(!maec_model_create(&c, 0, &m3, &err), "model: %s", err.msg);
    CHECK(!maec_trainer_create(m3, &o, batch_fn, &fail_at, NULL, &t, &err), "trainer: %s", err.msg);
    rc = maec_trainer_run(t, &err);
    CHECK(rc == MAEC_EIO && strstr(err.msg, "no batch"), "a batch error: %d %s", rc, err.msg);
    maec_trainer_free(t);
    t = NULL;
    CHECK(!maec_trainer_create(m3, &o, batch_fn, NULL, NULL, &t, &err), "trainer: %s", err.msg);
    maec_trainer_set_hook(t, fail_hook, NULL);
    rc = maec_trainer_run(t, &err);
    CHECK(rc == MAEC_EINVAL && strstr(err.msg, "hook"), "a hook error: %d %s", rc, err.msg);
    maec_trainer_free(t);
    t = NULL;
    maec_train_opts bad = o;
    bad.accum_iter = 11; /* longer than an epoch of 10 */
    CHECK(maec_trainer_create(m3, &bad, batch_fn, NULL, NULL, &t, &err) == MAEC_EINVAL && !t,
          "accumulation longer than an epoch accepted");
    bad = o;
    bad.batch_size = 0;
    CHECK(maec_trainer_create(m3, &bad, batch_fn, NULL, NULL, &t, &err) == MAEC_EINVAL && !t, "batch 0 accepted");
    CHECK(maec_trainer_create(m3, &o, NULL, NULL, NULL, &t, &err) == MAEC_EINVAL && !t, "no batch source accepted");
    CHECK(maec_trainer_create(m3, &o, batch_fn, NULL, NULL, &t, &err) == 0, "trainer: %s", err.msg);
    CHECK(maec_trainer_resume_state(t, "{\"log_window\": {\"loss_sum\": \"x\"}}", &err) == MAEC_EFORMAT,
          "a bad log window accepted");
    maec_trainer_free(t);
    /* 4. fine-tuning: the same loop on the classifier, with mixup, CutMix,
     * drop path, clipping and layer decay; stopped and resumed */
    maec_classifier_opts copt;
    maec_classifier_defaults(&copt);
    copt.num_classes = 3, copt.drop_path = 0.2f;
    maec_clf_train_opts co = {{0.8f, 1.0f, 1.0f, 0.5f, 0.1f, MAEC_MIX_BATCH}, 0.75f, 1.0f};
    maec_train_opts fo = small_opts(NULL);
    fo.beta2 = 0.999f;
    maec_classifier *kh = clf_by_hand(&fo, &co, &copt), *k1 = NULL, *k2 = NULL;
    CHECK(kh != NULL, "fine-tuning by hand did not run");
    CHECK(!maec_classifier_create(&c, NULL, &copt, 3, &k1, &err) &&
              !maec_trainer_create_classifier(k1, &fo, &co, batch_fn, NULL, NULL, &t, &err),
          "classifier trainer: %s", err.msg);
    rc = k1 ? maec_trainer_run(t, &err) : -1;
    CHECK(rc == 0, "fine-tuning run: %d %s", rc, err.msg);
    CHECK(kh && k1 && same_clf(k1, kh), "the classifier trainer's weights differ from the loop by hand");
    maec_trainer_free(t);
    t = NULL;
    char dir_c[256];
    snprintf(dir_c, sizeof dir_c, "%s", test_path("c"));
    mkdir(dir_c, 0755);
    fo.output_dir = dir_c, fo.checkpoint_name = "checkpoint.safetensors";
    stop = 0;
    log_ctx lc = {.stop_at = 4, .stop = &stop};
    CHECK(!maec_classifier_create(&c, NULL, &copt, 3, &k2, &err) &&
              !maec_trainer_create_classifier(k2, &fo, &co, batch_fn, NULL, "{\"mine\": true}", &t, &err),
          "classifier trainer: %s", err.msg);
    maec_trainer_set_hook(t, hook, &lc);
    maec_trainer_set_stop_flag(t, &stop);
    rc = maec_trainer_run(t, &err);
    CHECK(rc == MAEC_ESTOPPED && maec_classifier_step(k2) == 4, "fine-tuning stopped: %d at step %lld", rc,
          (long long)maec_classifier_step(k2));
    maec_trainer_free(t);
    t = NULL;
    maec_classifier_free(k2);
    k2 = NULL;
    char cpath[300];
    snprintf(cpath, sizeof cpath, "%s/checkpoint.safetensors", dir_c);
    js = NULL;
    CHECK(!maec_classifier_checkpoint_load(cpath, NULL, &copt, &k2, &js, &err), "classifier checkpoint: %s", err.msg);
    CHECK(js && strstr(js, "\"mine\"") && strstr(js, "log_window"), "the checkpoint lost the run state: %s",
          js ? js : "(none)");
    stop = 0;
    if (k2) {
        CHECK(!maec_trainer_create_classifier(k2, &fo, &co, batch_fn, NULL, js, &t, &err) &&
                  !maec_trainer_resume_state(t, js, &err),
              "classifier resume: %s", err.msg);
        rc = maec_trainer_run(t, &err);
        CHECK(rc == 0 && k1 && same_clf(k2, k1), "fine-tuning stopped and resumed differs from unbroken: %d %s", rc,
              err.msg);
        maec_trainer_free(t);
        t = NULL;
    }
    free(js);
    maec_classifier_free(kh);
    maec_classifier_free(k1);
    maec_classifier_free(k2);
    printf("  trainer = loop by hand (15 steps, accum 2; MAE and classifier), stop + resume = unbroken, bit for bit\n");
    maec_model_free(m);
    maec_model_free(m1);
    maec_model_free(m2);
    maec_model_free(m3);
    maec_model_free(hand);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", test_dir);
    if (system(cmd) != 0) printf("could not remove %s\n", test_dir);
    TEST_END();
}
