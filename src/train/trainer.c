/* The training loop (main_pretrain.py / engine_pretrain.py, and
 * main_finetune.py / engine_finetune.py) as a library object: schedule,
 * accumulation, random draws, AdamW, the logging window, checkpoints and
 * resume, a stop flag; the caller gives the batches and a hook
 * (include/maec.h, "trainer"). What differs between pretraining and
 * fine-tuning (the model, its loss, its draws, its optimizer step, its
 * checkpoint) is a task: a small table of functions below. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dist/comm.h"
#include "maec.h"
#include "model/classifier.h"
#include "model/model.h"
#include "util.h"

typedef struct task task;

/* what the loop asks of a model */
struct task {
    /* one micro-batch: its images (micro: its global index, for the random
     * draws), forward and backward with gradients scaled by scale and
     * added; *loss its loss */
    int (*micro)(maec_trainer *t, int64_t ep, int64_t idx, int64_t micro, float scale, float *loss, maec_error *err);
    void (*zero_grad)(maec_trainer *t);
    void (*update)(maec_trainer *t, float lr);
    int64_t (*step)(const maec_trainer *t);
    int (*save)(maec_trainer *t, const char *path, const char *run_json, maec_error *err);
    /* the gradients as a host array of *n floats, and back after the host
     * changed them (data parallel: their sum over the processes) */
    float *(*grads)(maec_trainer *t, size_t *n);
    void (*sync)(maec_trainer *t);
    /* the gradients in the backend's memory (*n floats), and that backend
     * (NULL: none; data parallel on a device: summed there) */
    float *(*grads_dev)(maec_trainer *t, size_t *n, const maec_backend **be);
};

struct maec_trainer {
    const task *task;
    maec_model *m;      /* pretraining */
    maec_workspace *ws;
    maec_classifier *c; /* fine-tuning */
    maec_clf_workspace *cw;
    maec_clf_train_opts co;
    float *targets, *keep;
    int *labels;
    maec_mix_draw *draws;
    maec_linprobe *lp; /* linear probing */
    int lp_lars;
    float lp_momentum;
    int64_t lp_steps;
    maec_train_opts o;
    char *output_dir, *checkpoint_name;
    char *run_json;
    maec_batch_fn batch;
    void *batch_ctx;
    maec_train_hook hook;
    void *hook_ctx;
    const volatile int *stop;
    maec_comm *comm; /* the processes sharing each step (NULL: this one) */
    /* gradient buckets all-reduced during the backward pass (data parallel,
     * MAE on a host-memory backend; MAEC_ALLREDUCE=whole: one all-reduce
     * after it): the ranges started, as offsets into the gradients */
    int buckets;
    float *stage; /* data parallel on a device without NCCL: the gradients on their way through the host */
    size_t (*ranges)[2];
    int nranges, capranges;
    maec_error bucket_err;
    float *images, *noise;
    /* the logging window: losses summed since the last record, carried by
     * checkpoints so that a resumed run logs as an unbroken one */
    double loss_sum;
    int loss_n;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

void maec_train_defaults(maec_train_opts *o)
{
    memset(o, 0, sizeof *o);
    o->batch_size = 64;
    o->accum_iter = 1;
    o->epochs = 400;
    o->lr = 1.5e-4 * 64 / 256;
    o->warmup_epochs = 40;
    o->beta1 = 0.9f;
    o->beta2 = 0.95f;
    o->eps = 1e-8f;
    o->weight_decay = 0.05f;
    o->log_every = 20;
    o->keep = 2;
}

/* ------------------------------------------------------------ checkpoints */

typedef struct {
    long long step;
    char name[256];
} ckpt_entry;

static int cmp_ckpt(const void *a, const void *b)
{
    const ckpt_entry *x = a, *y = b;
    return (x->step > y->step) - (x->step < y->step);
}

/* checkpoint-<step>.safetensors files in dir, oldest first */
static int list_checkpoints(const char *dir, ckpt_entry **out)
{
    *out = NULL;
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        long long s;
        char tail[32];
        if (sscanf(e->d_name, "checkpoint-%lld.%31s", &s, tail) != 2 || strcmp(tail, "safetensors")) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 8;
            ckpt_entry *nw = realloc(*out, (size_t)cap * sizeof **out);
            if (!nw) break;
            *out = nw;
        }
        (*out)[n].step = s;
        snprintf((*out)[n].name, sizeof (*out)[n].name, "%.255s", e->d_name);
        n++;
    }
    closedir(d);
    if (n) qsort(*out, (size_t)n, sizeof **out, cmp_ckpt);
    return n;
}

static void prune_checkpoints(const char *dir, int keep)
{
    ckpt_entry *c;
    int n = list_checkpoints(dir, &c);
    for (int i = 0; i < n - keep; i++) {
        char p[2048];
        snprintf(p, sizeof p, "%s/%s", dir, c[i].name);
        unlink(p);
    }
    free(c);
}

void maec_checkpoint_clean_temps(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "checkpoint-", 11) || !strstr(e->d_name, ".safetensors.tmp.")) continue;
        char p[2048];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
}

int maec_checkpoint_load_latest(const char *path, maec_model **m, char **run_json, char *used, size_t usedlen,
                                maec_error *err)
{
    DIR *d = opendir(path);
    if (!d) { /* a file (or nothing: the load says so) */
        snprintf(used, usedlen, "%s", path);
        return maec_checkpoint_load(path, NULL, m, run_json, err);
    }
    closedir(d);
    ckpt_entry *c;
    int n = list_checkpoints(path, &c);
    if (n == 0) {
        free(c);
        return maec_fail(err, MAEC_EIO, "%s: no checkpoint-*.safetensors in that folder", path);
    }
    int r = MAEC_EIO;
    for (int i = n - 1; i >= 0; i--) {
        snprintf(used, usedlen, "%s/%s", path, c[i].name);
        r = maec_checkpoint_load(used, NULL, m, run_json, err);
        if (!r) break;
        fprintf(stderr, "maec: warning: skipping %s: %s\n", used, err->msg);
    }
    free(c);
    return r;
}

/* images per optimizer step over all the processes */
static int64_t effective_batch(const maec_trainer *t)
{
    return (int64_t)t->o.batch_size * t->o.accum_iter * maec_comm_size(t->comm);
}

int maec_trainer_resumed_processes(const char *run_json)
{
    cJSON *o = run_json ? cJSON_Parse(run_json) : NULL;
    const cJSON *np = cJSON_GetObjectItemCaseSensitive(o, "processes");
    int n = cJSON_IsNumber(np) && np->valuedouble >= 1 && np->valuedouble <= (1 << 20) ? (int)np->valuedouble : 1;
    cJSON_Delete(o);
    return n;
}

/* the caller's run configuration with the trainer's state: the log's
 * window and the compute threads (sums are taken in an order that depends
 * on them) */
static char *checkpoint_json(const maec_trainer *t)
{
    cJSON *o = t->run_json ? cJSON_Parse(t->run_json) : cJSON_CreateObject();
    if (o && !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        o = NULL;
    }
    if (o) { /* the trainer's, not a stale copy of them */
        cJSON_DeleteItemFromObjectCaseSensitive(o, "log_window");
        cJSON_DeleteItemFromObjectCaseSensitive(o, "threads");
        cJSON_DeleteItemFromObjectCaseSensitive(o, "processes");
        cJSON_DeleteItemFromObjectCaseSensitive(o, "effective_batch");
    }
    cJSON *lw = o ? cJSON_AddObjectToObject(o, "log_window") : NULL;
    char num[64];
    snprintf(num, sizeof num, "%.17g", t->loss_sum); /* read back to the same double */
    char *js = lw && cJSON_AddRawToObject(lw, "loss_sum", num) && cJSON_AddNumberToObject(lw, "steps", t->loss_n) &&
                       cJSON_AddNumberToObject(o, "threads", maec_get_threads()) &&
                       cJSON_AddNumberToObject(o, "processes", maec_comm_size(t->comm)) &&
                       cJSON_AddNumberToObject(o, "effective_batch", effective_batch(t))
                   ? cJSON_Print(o) : NULL;
    cJSON_Delete(o);
    return js;
}

int maec_trainer_resumed_threads(const char *run_json)
{
    cJSON *o = run_json ? cJSON_Parse(run_json) : NULL;
    const cJSON *th = cJSON_GetObjectItemCaseSensitive(o, "threads");
    int n = 0;
    if (cJSON_IsNumber(th) && th->valuedouble >= 1 && th->valuedouble <= 1024 && th->valuedouble == floor(th->valuedouble))
        n = (int)th->valuedouble;
    cJSON_Delete(o);
    return n;
}

int maec_trainer_resume_state(maec_trainer *t, const char *run_json, maec_error *err)
{
    t->loss_sum = 0;
    t->loss_n = 0;
    cJSON *o = cJSON_Parse(run_json ? run_json : "{}");
    if (!o) return maec_fail(err, MAEC_EFORMAT, "run configuration: not JSON");
    const cJSON *lw = cJSON_GetObjectItemCaseSensitive(o, "log_window");
    const cJSON *th = cJSON_GetObjectItemCaseSensitive(o, "threads");
    int r = 0;
    if (th && (!cJSON_IsNumber(th) || !(th->valuedouble >= 1 && th->valuedouble <= 1024) ||
               th->valuedouble != floor(th->valuedouble)))
        r = maec_fail(err, MAEC_EFORMAT, "run configuration: 'threads' must be an integer in [1, 1024]");
    /* any number of processes, as long as a step takes as many images: the
     * batches and the data order are then the same (the draws are each
     * image's); checkpoints from before this was kept: the batch alone */
    const cJSON *eb = cJSON_GetObjectItemCaseSensitive(o, "effective_batch");
    if (!r && cJSON_IsNumber(eb) && (int64_t)eb->valuedouble != effective_batch(t))
        r = maec_fail(err, MAEC_EINVAL, "the run took %lld images a step, these %d process%s %lld (batch %d x "
                      "accumulation %d x processes): choose a batch size that keeps it",
                      (long long)eb->valuedouble, maec_comm_size(t->comm), maec_comm_size(t->comm) == 1 ? "" : "es",
                      (long long)effective_batch(t), t->o.batch_size, t->o.accum_iter);
    if (lw && !r) { /* none in checkpoints written before it was kept: an empty window */
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(lw, "loss_sum");
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(lw, "steps");
        if (!cJSON_IsNumber(s) || !isfinite(s->valuedouble) || !cJSON_IsNumber(n) || n->valuedouble < 0 ||
            n->valuedouble > (1 << 30) || n->valuedouble != floor(n->valuedouble))
            r = maec_fail(err, MAEC_EFORMAT, "run configuration: bad log_window");
        else
            t->loss_sum = s->valuedouble, t->loss_n = (int)n->valuedouble;
    }
    cJSON_Delete(o);
    return r;
}

int maec_trainer_save(maec_trainer *t, maec_error *err)
{
    if (!t->o.output_dir || maec_comm_rank(t->comm) != 0) return 0; /* rank 0 writes for all */
    char path[2048];
    if (t->o.checkpoint_name)
        snprintf(path, sizeof path, "%s/%s", t->o.output_dir, t->o.checkpoint_name);
    else
        snprintf(path, sizeof path, "%s/checkpoint-%08lld.safetensors", t->o.output_dir,
                 (long long)t->task->step(t));
    char *js = checkpoint_json(t);
    if (!js) return maec_fail(err, MAEC_ENOMEM, "out of memory");
    int r = t->task->save(t, path, js, err);
    free(js);
    if (!r && !t->o.checkpoint_name) prune_checkpoints(t->o.output_dir, t->o.keep > 0 ? t->o.keep : 1);
    return r;
}

/* ------------------------------------------------------------ the trainer */

/* ------------------------------------------------------------ tasks */


static int get_batch(maec_trainer *t, int64_t ep, int64_t idx, int *labels, int *n, maec_error *err)
{
    *n = 0;
    if (t->batch(t->batch_ctx, ep, idx, t->images, labels, n, err)) return err->code ? err->code : MAEC_EIO;
    if (*n < 1 || *n > t->o.batch_size)
        return maec_fail(err, MAEC_EINVAL, "the batch source gave %d images (1 to %d)", *n, t->o.batch_size);
    return 0;
}

/* the MAE: masks from (seed, micro) */
static int mae_micro(maec_trainer *t, int64_t ep, int64_t idx, int64_t micro, float scale, float *loss,
                     maec_error *err)
{
    int n, r = get_batch(t, ep, idx, NULL, &n, err);
    if (r) return r;
    const maec_config *mc = maec_model_config(t->m);
    /* each image's mask from (seed, epoch, its position in the whole epoch):
     * the same whatever the batch size or number of processes */
    int L = maec_num_patches(mc), rank = maec_comm_rank(t->comm), world = maec_comm_size(t->comm);
    (void)micro;
    for (int j = 0; j < n; j++) {
        int64_t pos = ((int64_t)idx * t->o.batch_size + j) * world + rank;
        uint64_t nrng = rng_derive(t->o.seed, (uint64_t)ep, (uint64_t)pos, 0x6d61736b);
        maec_make_noise(mc, 1, t->noise + (size_t)j * L, &nrng);
    }
    return maec_forward_backward(t->m, t->ws, t->images, n, t->noise, NULL, 1, scale, loss, err);
}
static void mae_zero_grad(maec_trainer *t) { maec_zero_grad(t->m); }
static void mae_update(maec_trainer *t, float lr)
{
    maec_adamw opt = {lr, t->o.beta1, t->o.beta2, t->o.eps, t->o.weight_decay};
    maec_adamw_step(t->m, &opt);
}
static int64_t mae_step(const maec_trainer *t) { return maec_model_step(t->m); }
static int mae_save(maec_trainer *t, const char *path, const char *js, maec_error *err)
{
    return maec_checkpoint_save(t->m, path, js, err);
}
static float *mae_grads(maec_trainer *t, size_t *n)
{
    *n = maec_model_num_floats(t->m);
    return maec_model_grads(t->m);
}
static void mae_sync(maec_trainer *t) { maec_model_sync(t->m); }
static float *mae_grads_dev(maec_trainer *t, size_t *n, const maec_backend **be)
{
    *n = maec_model_num_floats(t->m);
    *be = maec_model_backend(t->m);
    return maec_model_grads_dev(t->m);
}
static const task mae_task = {mae_micro, mae_zero_grad, mae_update, mae_step, mae_save, mae_grads, mae_sync,
                              mae_grads_dev};

/* the classifier: labels checked, mixup/CutMix and drop path drawn from
 * (seed, micro) */
static int clf_micro(maec_trainer *t, int64_t ep, int64_t idx, int64_t micro, float scale, float *loss,
                     maec_error *err)
{
    int n, r = get_batch(t, ep, idx, t->labels, &n, err);
    if (r) return r;
    const maec_config *mc = maec_classifier_config(t->c);
    int K = maec_classifier_options(t->c)->num_classes;
    for (int b = 0; b < n; b++)
        if (t->labels[b] < 0 || t->labels[b] >= K)
            return maec_fail(err, MAEC_EINVAL, "label %d out of [0, %d)", t->labels[b], K);
    const maec_mixup_opts *mix = &t->co.mixup;
    uint64_t mrng = rng_derive(t->o.seed, (uint64_t)micro, 0x6d6978, 0);
    maec_mix_sample(mix, n, mc->img_h, mc->img_w, &mrng, t->draws);
    maec_mix_apply(t->images, t->labels, t->targets, n, mc->in_chans, mc->img_h, mc->img_w, K, mix->mode, t->draws,
                   mix->smoothing);
    /* drop path: each image's keep of each block's two branches from (seed,
     * epoch, its position in the epoch), as its crop and flip: the same for
     * any number of processes. Mixup and CutMix pair images within a
     * process's batch, as the official code does. */
    const float *keep = NULL;
    const maec_classifier_opts *co = maec_classifier_options(t->c);
    if (co->drop_path > 0) {
        int depth = mc->depth, rank = maec_comm_rank(t->comm), world = maec_comm_size(t->comm);
        for (int j = 0; j < n; j++) {
            int64_t pos = ((int64_t)idx * t->o.batch_size + j) * world + rank;
            uint64_t r = rng_derive(t->o.seed, (uint64_t)ep, (uint64_t)pos, 0x64726f70);
            for (int i = 0; i < depth; i++) {
                double dpr = depth > 1 ? (double)co->drop_path * i / (depth - 1) : 0.0; /* torch.linspace */
                float kp = (float)(1.0 - dpr);
                for (int br = 0; br < 2; br++) { /* keep[(i*2 + branch)*n + j] */
                    float *k = t->keep + ((size_t)i * 2 + br) * n + j;
                    *k = dpr <= 0 ? 1.0f : rng_uniform(&r) < kp ? 1.0f / kp : 0.0f;
                }
            }
        }
        keep = t->keep;
    }
    return maec_classifier_forward_backward(t->c, t->cw, t->images, n, t->targets, keep, NULL, 1, scale, loss, err);
}
static void clf_zero_grad(maec_trainer *t) { maec_classifier_zero_grad(t->c); }
static void clf_update(maec_trainer *t, float lr)
{
    if (t->co.clip_grad > 0) maec_classifier_clip_grad(t->c, t->co.clip_grad);
    maec_adamw opt = {lr, t->o.beta1, t->o.beta2, t->o.eps, t->o.weight_decay};
    maec_classifier_adamw_step(t->c, &opt, t->co.layer_decay);
}
static int64_t clf_step(const maec_trainer *t) { return maec_classifier_step(t->c); }
static int clf_save(maec_trainer *t, const char *path, const char *js, maec_error *err)
{
    return maec_classifier_checkpoint_save(t->c, path, js, err);
}
/* the floats of the classifier's gradients (to the end of its last tensor) */
static void clf_grads_count(maec_trainer *t, size_t *n)
{
    *n = 0;
    for (int i = 0; i < maec_classifier_num_tensors(t->c); i++) {
        const maec_tensor_info *ti = maec_classifier_tensor(t->c, i);
        if (ti->offset + ((ti->size + 15) & ~(size_t)15) > *n) *n = ti->offset + ((ti->size + 15) & ~(size_t)15);
    }
}
static float *clf_grads(maec_trainer *t, size_t *n)
{
    clf_grads_count(t, n);
    return maec_classifier_grads(t->c);
}
static void clf_sync(maec_trainer *t) { maec_classifier_sync(t->c); }
static float *clf_grads_dev(maec_trainer *t, size_t *n, const maec_backend **be)
{
    clf_grads_count(t, n);
    *be = t->c->be;
    return t->c->dgrads;
}
static const task clf_task = {clf_micro, clf_zero_grad, clf_update, clf_step, clf_save, clf_grads, clf_sync,
                              clf_grads_dev};

/* the linear probe: features and labels from the batch source */
static int lp_micro(maec_trainer *t, int64_t ep, int64_t idx, int64_t micro, float scale, float *loss, maec_error *err)
{
    (void)micro;
    int n, r = get_batch(t, ep, idx, t->labels, &n, err);
    if (r) return r;
    r = maec_linprobe_forward_backward(t->lp, t->images, n, t->labels, 1, NULL, loss, err);
    if (!r && !isfinite(*loss)) r = maec_fail(err, MAEC_ENONFINITE, "the loss is not finite (%g)", (double)*loss);
    (void)scale; /* the probe's gradients are set, not added: no accumulation (checked at creation) */
    return r;
}
static void lp_zero_grad(maec_trainer *t) { (void)t; }
static void lp_update(maec_trainer *t, float lr)
{
    maec_linprobe_step(t->lp, lr, t->o.weight_decay, t->lp_momentum, t->lp_lars);
    t->lp_steps++;
}
static int64_t lp_step(const maec_trainer *t) { return t->lp_steps; }
static int lp_save(maec_trainer *t, const char *path, const char *js, maec_error *err)
{
    (void)t, (void)path, (void)js, (void)err;
    return 0; /* a probe trains in minutes: no checkpoints (maec linprobe saves the result) */
}
static const task lp_task = {lp_micro, lp_zero_grad, lp_update, lp_step, lp_save, NULL, NULL, NULL};

/* the parts common to both: options checked, buffers, copies */
static int trainer_new(const maec_train_opts *o, maec_batch_fn batch, void *batch_ctx, const char *run_json,
                       size_t img_floats, const maec_backend *be, maec_trainer **out, maec_error *err)
{
    *out = NULL;
    if (!o || !batch) return maec_fail(err, MAEC_EINVAL, "trainer: a model, options and a batch source");
    if (o->batch_size < 1 || o->accum_iter < 1 || o->epochs < 1 || o->log_every < 1 || o->batches_per_epoch < 1)
        return maec_fail(err, MAEC_EINVAL, "trainer: batch size, accumulation, epochs, log interval and batches "
                                           "per epoch must be at least 1");
    if (o->batches_per_epoch / o->accum_iter < 1)
        return maec_fail(err, MAEC_EINVAL, "an epoch of %lld batches is shorter than --accum-iter %d",
                         (long long)o->batches_per_epoch, o->accum_iter);
    if (!(o->lr >= 0) || !(o->min_lr >= 0) || !(o->warmup_epochs >= 0))
        return maec_fail(err, MAEC_EINVAL, "trainer: learning rates and warm-up must be >= 0");
    maec_trainer *t = calloc(1, sizeof *t);
    if (!t) return maec_fail(err, MAEC_ENOMEM, "out of memory");
    t->o = *o;
    t->batch = batch;
    t->batch_ctx = batch_ctx;
    /* the batch where the device copies from fastest (pinned, on a GPU) */
    t->images = backend_host_alloc(be, (size_t)o->batch_size * img_floats * sizeof(float));
    t->output_dir = o->output_dir ? strdup(o->output_dir) : NULL;
    t->checkpoint_name = o->checkpoint_name ? strdup(o->checkpoint_name) : NULL;
    t->run_json = run_json ? strdup(run_json) : NULL;
    t->o.output_dir = t->output_dir;
    t->o.checkpoint_name = t->checkpoint_name;
    if (!t->images || (o->output_dir && !t->output_dir) || (o->checkpoint_name && !t->checkpoint_name) ||
        (run_json && !t->run_json)) {
        maec_trainer_free(t);
        return maec_fail(err, MAEC_ENOMEM, "out of memory");
    }
    *out = t;
    return 0;
}

int maec_trainer_create(maec_model *m, const maec_train_opts *o, maec_batch_fn batch, void *batch_ctx,
                        const char *run_json, maec_trainer **out, maec_error *err)
{
    *out = NULL;
    if (!m) return maec_fail(err, MAEC_EINVAL, "trainer: a model, options and a batch source");
    const maec_config *c = maec_model_config(m);
    maec_trainer *t;
    int r = trainer_new(o, batch, batch_ctx, run_json, (size_t)c->in_chans * c->img_h * c->img_w,
                        maec_model_backend(m), &t, err);
    if (r) return r;
    t->task = &mae_task;
    t->m = m;
    t->noise = malloc((size_t)o->batch_size * maec_num_patches(c) * sizeof(float));
    if (!t->noise) r = maec_fail(err, MAEC_ENOMEM, "out of memory");
    else if (maec_workspace_create(m, o->batch_size, &t->ws, err)) r = err->code ? err->code : MAEC_ENOMEM;
    if (r) {
        maec_trainer_free(t);
        return r;
    }
    *out = t;
    return 0;
}

int maec_trainer_create_classifier(maec_classifier *c, const maec_train_opts *o, const maec_clf_train_opts *co,
                                   maec_batch_fn batch, void *batch_ctx, const char *run_json, maec_trainer **out,
                                   maec_error *err)
{
    *out = NULL;
    if (!c || !co) return maec_fail(err, MAEC_EINVAL, "trainer: a classifier, options and a batch source");
    const maec_config *mc = maec_classifier_config(c);
    int K = maec_classifier_options(c)->num_classes;
    if (K < 1) return maec_fail(err, MAEC_EINVAL, "trainer: the classifier has no head");
    if (!(co->layer_decay > 0 && co->layer_decay <= 1) || !(co->clip_grad >= 0))
        return maec_fail(err, MAEC_EINVAL, "trainer: layer decay in (0, 1], gradient clipping >= 0");
    maec_trainer *t;
    int r = trainer_new(o, batch, batch_ctx, run_json, (size_t)mc->in_chans * mc->img_h * mc->img_w, c->be, &t,
                        err);
    if (r) return r;
    t->task = &clf_task;
    t->c = c;
    t->co = *co;
    size_t B = (size_t)o->batch_size;
    t->targets = malloc(B * K * sizeof(float));
    t->labels = malloc(B * sizeof(int));
    t->draws = malloc(B * sizeof *t->draws);
    t->keep = malloc(((size_t)mc->depth * 2 + 1) * B * sizeof(float));
    if (!t->targets || !t->labels || !t->draws || !t->keep) r = maec_fail(err, MAEC_ENOMEM, "out of memory");
    else if (maec_clf_workspace_create(c, o->batch_size, 1, &t->cw, err)) r = err->code ? err->code : MAEC_ENOMEM;
    if (r) {
        maec_trainer_free(t);
        return r;
    }
    *out = t;
    return 0;
}

int maec_trainer_create_linprobe(maec_linprobe *lp, int dim, const maec_train_opts *o, int lars, float momentum,
                                 maec_batch_fn batch, void *batch_ctx, maec_trainer **out, maec_error *err)
{
    *out = NULL;
    if (!lp || dim < 1) return maec_fail(err, MAEC_EINVAL, "trainer: a probe, its feature width and a batch source");
    if (o && o->accum_iter != 1)
        return maec_fail(err, MAEC_EINVAL, "trainer: a linear probe trains without gradient accumulation");
    maec_trainer *t;
    int r = trainer_new(o, batch, batch_ctx, NULL, (size_t)dim, NULL, &t, err);
    if (r) return r;
    t->task = &lp_task;
    t->lp = lp;
    t->lp_lars = lars;
    t->lp_momentum = momentum;
    t->o.output_dir = NULL; /* no checkpoints */
    t->labels = malloc((size_t)o->batch_size * sizeof(int));
    if (!t->labels) {
        maec_trainer_free(t);
        return maec_fail(err, MAEC_ENOMEM, "out of memory");
    }
    *out = t;
    return 0;
}

int maec_trainer_set_run_json(maec_trainer *t, const char *run_json, maec_error *err)
{
    char *js = run_json ? strdup(run_json) : NULL;
    if (run_json && !js) return maec_fail(err, MAEC_ENOMEM, "out of memory");
    free(t->run_json);
    t->run_json = js;
    return 0;
}

void maec_trainer_free(maec_trainer *t)
{
    if (!t) return;
    maec_workspace_free(t->ws);
    maec_clf_workspace_free(t->cw);
    maec_host_free(t->images);
    free(t->noise);
    free(t->targets);
    free(t->labels);
    free(t->draws);
    free(t->keep);
    free(t->output_dir);
    free(t->checkpoint_name);
    free(t->ranges);
    free(t->stage);
    free(t->run_json);
    free(t);
}

void maec_trainer_set_hook(maec_trainer *t, maec_train_hook hook, void *ctx)
{
    t->hook = hook;
    t->hook_ctx = ctx;
}

void maec_trainer_set_stop_flag(maec_trainer *t, const volatile int *stop) { t->stop = stop; }

void maec_trainer_set_comm(maec_trainer *t, maec_comm *c)
{
    t->comm = c;
    /* buckets for the MAE on host memory, unless MAEC_ALLREDUCE=whole */
    const char *mode = getenv("MAEC_ALLREDUCE");
    t->buckets = t->task == &mae_task && maec_model_host_shared(t->m) && !(mode && !strcmp(mode, "whole"));
    if (t->buckets && !t->ranges) {
        t->capranges = 4096;
        t->ranges = malloc((size_t)t->capranges * sizeof *t->ranges);
        if (!t->ranges) t->buckets = 0, t->capranges = 0;
    }
}

maec_workspace *maec_trainer_workspace(maec_trainer *t) { return t->ws; }

/* the model's hook: a block's gradients are final, start their sum */
static void bucket_ready(void *ctx, float *g, size_t n)
{
    maec_trainer *t = ctx;
    size_t off = (size_t)(g - maec_model_grads_dev(t->m));
    if (t->nranges < t->capranges) {
        t->ranges[t->nranges][0] = off, t->ranges[t->nranges][1] = n;
        t->nranges++;
        if (comm_iallreduce_sum(t->comm, g, n, &t->bucket_err)) t->nranges = -1000000; /* reported after */
    }
    comm_progress(t->comm);
}

static int cmp_range(const void *a, const void *b)
{
    const size_t *x = a, *y = b;
    return (x[0] > y[0]) - (x[0] < y[0]);
}

/* the rest of the gradients (what lies between the blocks) summed too, all
 * waited for */
static int buckets_finish(maec_trainer *t, float *g, size_t n, maec_error *err)
{
    if (t->nranges < 0) {
        *err = t->bucket_err;
        return err->code ? err->code : MAEC_EIO;
    }
    qsort(t->ranges, (size_t)t->nranges, sizeof *t->ranges, cmp_range);
    size_t at = 0;
    for (int i = 0; i <= t->nranges; i++) {
        size_t end = i < t->nranges ? t->ranges[i][0] : n;
        if (end > at && comm_iallreduce_sum(t->comm, g + at, end - at, err)) return err->code;
        if (i < t->nranges) at = t->ranges[i][0] + t->ranges[i][1];
    }
    return comm_waitall(t->comm, err);
}

/* One optimizer step from micro-batches [it0, it0 + accum) of epoch ep_i:
 * the step's mean loss in *step_loss. */
static int train_step(maec_trainer *t, int64_t ep_i, int64_t it0, float lr, int64_t nan_at, double *step_loss,
                      maec_error *err)
{
    const maec_train_opts *o = &t->o;
    int64_t micro = ep_i * o->batches_per_epoch + it0; /* a global micro-batch index, for the random draws */
    int64_t step = t->task->step(t);
    t->task->zero_grad(t);
    *step_loss = 0;
    int world = maec_comm_size(t->comm), buckets = world > 1 && t->buckets;
    for (int a = 0; a < o->accum_iter; a++, micro++) {
        float loss = 0;
        err->code = 0;
        if (buckets && a == o->accum_iter - 1) { /* the last micro-batch makes the final gradients */
            t->nranges = 0;
            mae_ws_set_grad_hook(t->ws, bucket_ready, t);
        }
        int fb = t->task->micro(t, ep_i, it0 + a, micro, 1.0f / o->accum_iter, &loss, err);
        if (!fb && nan_at > 0 && step + 1 == nan_at) { /* the test hook: as if the loss were NaN */
            loss = NAN;
            fb = MAEC_ENONFINITE;
        }
        if (fb == MAEC_ENONFINITE || (fb && err->code == MAEC_ENONFINITE))
            return maec_fail(err, MAEC_ENONFINITE, "the loss became %g at step %lld", (double)loss,
                             (long long)step + 1);
        if (fb) return fb;
        *step_loss += loss / o->accum_iter;
    }
    if (world > 1 && !t->task->grads)
        return maec_fail(err, MAEC_EINVAL, "this trainer does not run over several processes");
    const maec_backend *dbe = NULL;
    size_t dn = 0;
    float *dg = world > 1 && t->task->grads_dev ? t->task->grads_dev(t, &dn, &dbe) : NULL;
    if (world > 1 && dg && !dbe->host_shared) { /* on a device: summed there (NCCL), or through the host */
        if (!t->stage && !(t->stage = malloc((dn ? dn : 1) * sizeof(float))))
            return maec_fail(err, MAEC_ENOMEM, "out of memory");
        int r = comm_allreduce_backend(t->comm, dbe, dg, dn, 1.0f / (float)world, t->stage, err);
        if (!r) r = maec_comm_allreduce_sum_f64(t->comm, step_loss, 1, err);
        if (r) return r;
        *step_loss /= world;
    } else if (world > 1) { /* the gradients' and the loss's mean over the processes */
        size_t n;
        float *g = t->task->grads(t, &n);
        int r;
        if (buckets) {
            mae_ws_set_grad_hook(t->ws, NULL, NULL);
            r = buckets_finish(t, g, n, err);
        } else {
            r = maec_comm_allreduce_sum(t->comm, g, n, err);
        }
        if (r) return r;
        float inv = 1.0f / (float)world;
        for (size_t i = 0; i < n; i++) g[i] *= inv;
        t->task->sync(t);
        if ((r = maec_comm_allreduce_sum_f64(t->comm, step_loss, 1, err))) return r;
        *step_loss /= world;
    }
    t->task->update(t, lr);
    return 0;
}

/* whether to stop at this step boundary: the flag of any process (a signal
 * reaches the processes at different moments; they must stop together) */
static int stop_requested(maec_trainer *t)
{
    double f = t->stop && *t->stop ? 1 : 0;
    maec_error e;
    if (maec_comm_size(t->comm) > 1 && maec_comm_allreduce_sum_f64(t->comm, &f, 1, &e)) return 1;
    return f > 0;
}

/* optimizer steps per epoch, and in the schedule */
static int64_t steps_per_epoch(const maec_trainer *t) { return t->o.batches_per_epoch / t->o.accum_iter; }
static int64_t schedule_steps(const maec_trainer *t) { return (int64_t)t->o.epochs * steps_per_epoch(t); }

int64_t maec_trainer_total_steps(const maec_trainer *t)
{
    int64_t total = schedule_steps(t);
    return t->o.max_steps > 0 && t->o.max_steps < total ? t->o.max_steps : total;
}

int maec_trainer_records_at(const maec_trainer *t, int64_t s)
{
    return s % t->o.log_every == 0 || s % steps_per_epoch(t) == 0 || s == schedule_steps(t);
}

int maec_trainer_run(maec_trainer *t, maec_error *err)
{
    const maec_train_opts *o = &t->o;
    const int64_t bpe = o->batches_per_epoch, spe = steps_per_epoch(t);
    const int64_t sched_total = schedule_steps(t), total = maec_trainer_total_steps(t);
    int64_t step = t->task->step(t), step0 = step;
#define LOGGED_AT(s) maec_trainer_records_at(t, (s))
    /* fault injection for tests/fault_nan.sh: MAEC_FAULT_NAN_AT_STEP=N makes
     * the loss of optimizer step N (1-based, as logged) a NaN */
    const char *nan_env = getenv("MAEC_FAULT_NAN_AT_STEP");
    int64_t nan_at = nan_env ? atoll(nan_env) : 0;
    double t_start = now_s(), t_log = t_start;
    int here_n = 0; /* steps of the window this process ran */
    int stopped = 0;
    while (step < total && !(stopped = stop_requested(t))) {
        /* As official, steps are grouped within an epoch: step s takes the
         * micro-batches from (s % spe) * accum of epoch s / spe on; when
         * accum does not divide an epoch, its last bpe % accum micro-batches
         * are skipped. Official runs them, but the zero_grad at the start of
         * its next epoch drops their gradients: the updates are the same. */
        int64_t ep_i = step / spe, it0 = (step % spe) * o->accum_iter;
        double epoch_f = (double)ep_i + (double)it0 / (double)bpe;
        float lr = (float)maec_lr_at(epoch_f, o->lr, o->min_lr, o->warmup_epochs, o->epochs);
        double step_loss;
        int r = train_step(t, ep_i, it0, lr, nan_at, &step_loss, err);
        if (r) return r;
        step++;
        t->loss_sum += step_loss;
        t->loss_n++;
        here_n++;
        maec_train_event ev = {.step = step, .total = total, .steps_per_epoch = spe, .schedule_steps = sched_total,
                               .lr = lr, .loss = step_loss, .epoch_end = step % spe == 0};
        double tnow = now_s();
        ev.elapsed_s = tnow - t_start;
        if (LOGGED_AT(step) || step == total) {
            ev.record = 1;
            ev.window_loss = t->loss_sum / t->loss_n;
            ev.window_s = tnow - t_log;
            ev.images_per_s = (double)here_n * o->batch_size * o->accum_iter / ev.window_s;
        }
        ev.eta_s = (double)(total - step) * ev.elapsed_s / (double)(step - step0);
        if (t->hook && t->hook(t->hook_ctx, t, &ev, err)) return err->code ? err->code : MAEC_EIO;
        if (ev.record) {
            t_log = tnow;
            here_n = 0;
            if (LOGGED_AT(step)) { /* else the run stops here, the window kept for its checkpoint */
                t->loss_sum = 0;
                t->loss_n = 0;
            }
        }
        if ((o->save_every > 0 ? step % o->save_every == 0 : ev.epoch_end) && step < total &&
            maec_trainer_save(t, err))
            return err->code;
    }
#undef LOGGED_AT
    if (maec_trainer_save(t, err)) return err->code;
    if (stopped)
        return maec_fail(err, MAEC_ESTOPPED, "stopped at step %lld; checkpoint saved", (long long)step);
    return 0;
}
