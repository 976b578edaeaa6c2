/* maec pretrain: the training loop, with checkpoints, resume and logs. */
#define _POSIX_C_SOURCE 200809L
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "data/data.h"
#include "eval_common.h"
#include "run.h"
#include "util.h"

static volatile sig_atomic_t g_signal;
static void on_signal(int s) { g_signal = s; }

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
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

/* A run killed while saving leaves checkpoint-*.safetensors.tmp.<pid>: the
 * run that owns the folder next removes them. */
static void remove_stale_temps(const char *dir)
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

/* What a checkpoint keeps beside the run's configuration so that a resumed
 * run goes on as an unbroken one: the log's window (the losses summed since
 * the last metrics record) and the compute threads (the sums are taken in
 * an order that depends on them). */
typedef struct {
    double loss_sum;
    int steps;
    int threads; /* 0: not known (an older checkpoint) */
} run_state;

/* the run's configuration with its state, as the checkpoint keeps them */
static char *checkpoint_json(const run_cfg *rc, const run_state *w)
{
    char *cfg = run_cfg_to_json(rc);
    cJSON *o = cfg ? cJSON_Parse(cfg) : NULL;
    free(cfg);
    cJSON *lw = o ? cJSON_AddObjectToObject(o, "log_window") : NULL;
    char num[64];
    snprintf(num, sizeof num, "%.17g", w->loss_sum); /* read back to the same double */
    char *js = lw && cJSON_AddRawToObject(lw, "loss_sum", num) && cJSON_AddNumberToObject(lw, "steps", w->steps) &&
                       cJSON_AddNumberToObject(o, "threads", w->threads)
                   ? cJSON_Print(o) : NULL;
    cJSON_Delete(o);
    return js;
}

/* the state a checkpoint's run configuration holds (none in checkpoints
 * written before it was kept: an empty window, threads unknown) */
static int read_run_state(const char *run_json, const char *path, run_state *w, maec_error *err)
{
    w->loss_sum = 0;
    w->steps = 0;
    w->threads = 0;
    cJSON *o = cJSON_Parse(run_json);
    const cJSON *lw = cJSON_GetObjectItemCaseSensitive(o, "log_window");
    const cJSON *th = cJSON_GetObjectItemCaseSensitive(o, "threads");
    int r = 0;
    if (th) {
        if (!cJSON_IsNumber(th) || !(th->valuedouble >= 1 && th->valuedouble <= 1024) ||
            th->valuedouble != floor(th->valuedouble))
            r = maec_fail(err, MAEC_EFORMAT, "%s: run configuration: 'threads' must be an integer in [1, 1024]", path);
        else
            w->threads = (int)th->valuedouble;
    }
    if (lw && !r) {
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(lw, "loss_sum");
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(lw, "steps");
        if (!cJSON_IsNumber(s) || !isfinite(s->valuedouble) || !cJSON_IsNumber(n) || n->valuedouble < 0 ||
            n->valuedouble > (1 << 30) || n->valuedouble != floor(n->valuedouble))
            r = maec_fail(err, MAEC_EFORMAT, "%s: run configuration: bad log_window", path);
        else
            w->loss_sum = s->valuedouble, w->steps = (int)n->valuedouble;
    }
    cJSON_Delete(o);
    return r;
}

static int save_checkpoint(maec_model *m, const run_cfg *rc, const run_state *w, maec_error *err)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/checkpoint-%08lld.safetensors", rc->output_dir,
             (long long)maec_model_step(m));
    char *js = checkpoint_json(rc, w);
    if (!js) return maec_fail(err, MAEC_ENOMEM, "out of memory");
    int r = maec_checkpoint_save(m, path, js, err);
    free(js);
    if (!r) prune_checkpoints(rc->output_dir, rc->keep);
    return r;
}

/* Load the newest checkpoint that loads; a broken newer one is skipped with a
 * warning. path is a checkpoint file or a run folder. */
static int load_resume(const char *path, maec_model **m, char **run_json, char *used, size_t usedlen,
                       maec_error *err)
{
    struct stat st;
    if (stat(path, &st) != 0) return maec_fail(err, MAEC_EIO, "--resume %s: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode)) {
        snprintf(used, usedlen, "%s", path);
        return maec_checkpoint_load(path, NULL, m, run_json, err);
    }
    ckpt_entry *c;
    int n = list_checkpoints(path, &c);
    if (n == 0) {
        free(c);
        return maec_fail(err, MAEC_EIO, "--resume %s: no checkpoint-*.safetensors in that folder", path);
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

/* The folder a --resume argument names: the folder itself, or the one
 * that holds the checkpoint file. A resumed run writes there (unless
 * --output-dir says otherwise), never where its saved configuration says:
 * that is where the run was, which a copy of it must leave alone. */
static void resume_folder(const char *resume, char *dir, size_t n)
{
    struct stat st;
    snprintf(dir, n, "%s", resume);
    if (stat(resume, &st) == 0 && S_ISDIR(st.st_mode)) return;
    char *slash = strrchr(dir, '/');
    if (!slash) snprintf(dir, n, ".");
    else if (slash == dir) dir[1] = 0;
    else *slash = 0;
}

/* ------------------------------------------------------------ the run */

/* a few fixed evaluation images, for the pictures during training */
static int load_view_images(maec_dataset *ds, const maec_config *mc, const run_cfg *rc, int n,
                            float *out, maec_error *err)
{
    maec_augment a;
    maec_augment_defaults(&a, mc->in_chans, mc->img_h, mc->img_w);
    a.random_resized_crop = 0;
    a.hflip = 0;
    for (int c = 0; c < 3; c++) {
        a.mean[c] = rc->mean[c];
        a.std[c] = rc->std[c];
    }
    maec_image img = {0};
    size_t sz = (size_t)mc->in_chans * mc->img_h * mc->img_w;
    int64_t N = maec_dataset_size(ds);
    int r = 0;
    for (int i = 0; i < n && !r; i++) {
        uint64_t rng = 0;
        r = maec_dataset_get(ds, (int64_t)i * (N / n), &img, err);
        if (!r) r = maec_augment_apply(&a, &img, out + i * sz, &rng, err);
    }
    maec_image_free(&img);
    return r;
}

int cmd_pretrain(int argc, char **argv)
{
    run_cfg rc;
    int threads = 0;
    const char *resume = NULL;
    int status = 1;
    maec_error err = {0};
    /* --report: report.html rewritten at each epoch's end (taken out here:
     * it is no part of the run's configuration) */
    int report = 0;
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--report")) {
            report = 1;
            memmove(argv + i, argv + i + 1, (size_t)(argc - i - 1) * sizeof *argv);
            argc--, i--;
        }
    int r = run_cfg_from_args("pretrain", argc, argv, &rc, &threads, &resume, &err);
    if (r == 1) printf("  --report                    rewrite OUTPUT-DIR/report.html at each epoch's end (maec report)\n");
    if (r) return r < 0 ? 2 : 0; /* -1: error already printed, 1: --help */

    maec_model *m = NULL;
    maec_workspace *ws = NULL;
    maec_dataset *ds = NULL, *ds_view = NULL, *ds_eval = NULL;
    maec_loader *ld = NULL;
    float *images = NULL, *noise = NULL, *view = NULL;
    FILE *metrics = NULL;
    char *js = NULL;
    run_state win = {0, 0, 0};
    char from_dir[1024]; /* where the run's log is so far */
    snprintf(from_dir, sizeof from_dir, "%s", rc.output_dir);

    if (resume) {
        char *run_json = NULL;
        char used[2048];
        if (load_resume(resume, &m, &run_json, used, sizeof used, &err)) goto fail;
        run_cfg saved;
        if (!run_json || run_cfg_from_json(&saved, run_json, &err)) {
            free(run_json);
            if (!err.msg[0]) maec_fail(&err, MAEC_EFORMAT, "%s has no run configuration", used);
            goto fail;
        }
        int bad = read_run_state(run_json, used, &win, &err);
        free(run_json);
        if (bad || run_cfg_merge_resume(&saved, &rc, argc, argv, &err)) goto fail;
        rc = saved;
        resume_folder(resume, from_dir, sizeof from_dir);
        if (!cli_find(argc, argv, "output-dir")) snprintf(rc.output_dir, sizeof rc.output_dir, "%s", from_dir);
        if (memcmp(maec_model_config(m), &rc.model, sizeof rc.model) != 0) {
            maec_fail(&err, MAEC_EINVAL, "%s: its model does not match its run configuration", used);
            goto fail;
        }
        printf("resuming from %s (step %lld)\n", used, (long long)maec_model_step(m));
        /* the threads the run had, for the same sums, unless --threads says otherwise */
        if (!threads) threads = win.threads;
    }
    win.threads = threads = cli_set_threads("pretrain", threads);
    if (eval_mkdir_p(rc.output_dir)) {
        maec_fail(&err, MAEC_EIO, "cannot create output folder %s: %s", rc.output_dir, strerror(errno));
        goto fail;
    }
    remove_stale_temps(rc.output_dir);
    /* with the k-NN monitor, its evaluation set, checked before training (a
     * held-out share leaves the pretraining set too) */
    if (eval_open_sets(rc.data_path, rc.eval_path[0] ? rc.eval_path : NULL, rc.val_split, rc.seed,
                       rc.knn_every > 0 ? 3 : 1, rc.skip_bad, rc.output_dir, &ds, &ds_eval, &err)) {
        if (rc.knn_every > 0) maec_fail(&err, err.code, "--knn-every: %s", err.msg);
        goto fail;
    }
    if (maec_dataset_size(ds) < rc.batch_size) {
        maec_fail(&err, MAEC_EINVAL, "%s has %lld images, fewer than one batch of %d", rc.data_path,
                  (long long)maec_dataset_size(ds), rc.batch_size);
        goto fail;
    }
    if (!rc.have_norm) {
        if (maec_dataset_mean_std(ds, rc.model.in_chans, 10000, rc.seed, rc.mean, rc.std, &err)) goto fail;
        for (int c = 0; c < 3; c++)
            if (rc.std[c] < 1e-6f) rc.std[c] = 1.0f;
        rc.have_norm = 1;
    }
    if (!m && maec_model_create(&rc.model, rc.seed, &m, &err)) goto fail;
    {
        char nb[256];
        run_cfg_norm_json(&rc, nb, sizeof nb);
        maec_model_set_meta(m, "maec_data", nb);
    }
    /* the run's configuration, for --config */
    js = run_cfg_to_json(&rc);
    {
        char p[2048];
        snprintf(p, sizeof p, "%s/config.json", rc.output_dir);
        atomic_file af;
        if (!js || atomic_open(&af, p, &err)) goto fail;
        atomic_write(&af, js, strlen(js));
        atomic_write(&af, "\n", 1);
        if (atomic_commit(&af, &err)) goto fail;
    }
    cli_report_session(rc.output_dir, "pretrain", !resume);
    if (resume && !report) { /* a resumed run keeps its report going */
        char p[2048];
        snprintf(p, sizeof p, "%s/report.html", from_dir); /* where the run was */
        report = access(p, F_OK) == 0;
    }

    maec_loader_opts lo;
    memset(&lo, 0, sizeof lo);
    lo.batch = rc.batch_size;
    lo.threads = rc.num_workers;
    lo.seed = rc.seed;
    lo.shuffle = 1;
    lo.drop_last = 1;
    lo.prefetch = 4;
    maec_augment_defaults(&lo.aug, rc.model.in_chans, rc.model.img_h, rc.model.img_w);
    lo.aug.random_resized_crop = rc.random_crop;
    lo.aug.scale_min = rc.crop_min;
    lo.aug.hflip = rc.hflip;
    lo.aug.color_jitter = rc.color_jitter;
    for (int c = 0; c < 3; c++) {
        lo.aug.mean[c] = rc.mean[c];
        lo.aug.std[c] = rc.std[c];
    }
    if (maec_loader_create(ds, &lo, &ld, &err)) goto fail;
    int64_t bpe = maec_loader_batches_per_epoch(ld);
    int64_t spe = bpe / rc.accum_iter; /* optimizer steps per epoch */
    if (spe < 1) {
        maec_fail(&err, MAEC_EINVAL, "an epoch of %lld batches is shorter than --accum-iter %d",
                  (long long)bpe, rc.accum_iter);
        goto fail;
    }
    const int64_t sched_total = (int64_t)rc.epochs * spe;
    int64_t total = sched_total;
    if (rc.max_steps > 0 && rc.max_steps < total) total = rc.max_steps;
    int64_t step = maec_model_step(m);
    /* the steps a record is written at by a run that is not stopped: every
     * --log-every steps, at each epoch's end and at the schedule's */
#define LOGGED_AT(s) ((s) % rc.log_every == 0 || (s) % spe == 0 || (s) == sched_total)
    int B = rc.batch_size;
    const maec_config *mc = maec_model_config(m);
    size_t img_floats = (size_t)mc->in_chans * mc->img_h * mc->img_w;
    images = malloc((size_t)B * img_floats * sizeof(float));
    noise = malloc((size_t)B * maec_num_patches(mc) * sizeof(float));
    if (!images || !noise) {
        maec_fail(&err, MAEC_ENOMEM, "out of memory");
        goto fail;
    }
    if (maec_workspace_create(m, B, &ws, &err)) goto fail;

    /* pictures of a fixed set of images, from the test split if there is one */
    int nview = rc.recon_images;
    if (nview > 0) {
        if (maec_dataset_open(rc.data_path, "test", &ds_view, &err)) ds_view = NULL;
        maec_dataset *src = ds_view ? ds_view : ds;
        if (nview > maec_dataset_size(src)) nview = (int)maec_dataset_size(src);
        if (nview > B) nview = B;
        view = malloc((size_t)nview * img_floats * sizeof(float));
        if (!view || load_view_images(src, mc, &rc, nview, view, &err)) goto fail;
        char p[2048];
        snprintf(p, sizeof p, "%s/recon", rc.output_dir);
        eval_mkdir_p(p);
    }

    char mpath[2048], from_path[2048];
    snprintf(mpath, sizeof mpath, "%s/metrics.jsonl", rc.output_dir);
    snprintf(from_path, sizeof from_path, "%s/metrics.jsonl", from_dir);
    if (eval_metrics_resume(from_path, mpath, step, LOGGED_AT(step), &err)) goto fail;
    metrics = fopen(mpath, "a");
    if (!metrics) {
        maec_fail(&err, MAEC_EIO, "cannot write %s: %s", mpath, strerror(errno));
        goto fail;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    int tty = isatty(fileno(stdout));
    double lr_peak = rc.lr > 0 ? rc.lr : rc.blr * (double)B * rc.accum_iter / 256.0;
    printf("pretraining %s on %s (%lld images): %lld steps of %d x %d images, lr %.3g, %d threads\n",
           rc.preset[0] ? rc.preset : "custom model", rc.data_path, (long long)maec_dataset_size(ds),
           (long long)total, B, rc.accum_iter, lr_peak, threads);
    printf("output: %s\n", rc.output_dir);
    fflush(stdout);
    double t_start = now_s(), t_log = t_start, wait0 = maec_loader_wait_seconds(ld);
    double loss_sum = win.loss_sum;
    int loss_n = win.steps, here_n = 0; /* here_n: steps of the window this process ran */
    int64_t step0 = step;
    /* fault injection for tests/fault_nan.sh: MAEC_FAULT_NAN_AT_STEP=N makes
     * the loss of optimizer step N (1-based, as logged) a NaN */
    const char *nan_env = getenv("MAEC_FAULT_NAN_AT_STEP");
    long long nan_at = nan_env ? atoll(nan_env) : 0;
    /* and MAEC_FAULT_SIGINT_AT_STEP=N (tests/cli_resume_safety.sh) sends the
     * run a SIGINT once step N is done: a stop at a step known in advance */
    const char *sig_env = getenv("MAEC_FAULT_SIGINT_AT_STEP");
    long long sig_at = sig_env ? atoll(sig_env) : 0;
    while (step < total && !g_signal) {
        /* As official, steps are grouped within an epoch: step s takes the
         * micro-batches from (s % spe) * accum of epoch s / spe on; when
         * accum does not divide an epoch, its last bpe % accum micro-batches
         * are skipped. Official runs them, but the zero_grad at the start of
         * its next epoch drops their gradients: the updates are the same. */
        int64_t ep_i = step / spe, it0 = (step % spe) * rc.accum_iter;
        int64_t pos_e, pos_b;
        maec_loader_position(ld, &pos_e, &pos_b);
        if ((pos_e != ep_i || pos_b != it0) && maec_loader_seek(ld, ep_i, it0, &err)) goto fail;
        int64_t micro = ep_i * bpe + it0; /* a global micro-batch index, for the masks */
        double epoch_f = (double)ep_i + (double)it0 / (double)bpe;
        float lr = (float)maec_lr_at(epoch_f, lr_peak, rc.min_lr, rc.warmup_epochs, rc.epochs);
        maec_zero_grad(m);
        double step_loss = 0;
        for (int a = 0; a < rc.accum_iter; a++, micro++) {
            int n;
            if (maec_loader_next(ld, images, NULL, &n, &err)) goto fail;
            uint64_t nrng = rng_derive(rc.seed, (uint64_t)micro, 0x6d61736b, 0);
            maec_make_noise(mc, n, noise, &nrng);
            float loss;
            int fb = maec_forward_backward(m, ws, images, n, noise, NULL, 1, 1.0f / rc.accum_iter, &loss, &err);
            if (!fb && nan_at > 0 && step + 1 == nan_at) { /* the test hook: as if the loss were NaN */
                loss = NAN;
                fb = maec_fail(&err, MAEC_ENONFINITE, "the loss is not finite (nan, MAEC_FAULT_NAN_AT_STEP)");
            }
            if (fb) {
                if (err.code == MAEC_ENONFINITE) {
                    fprintf(stderr, "%s", tty ? "\n" : "");
                    cli_error("the loss became %g at step %lld; stopping. The last good checkpoint is kept in %s",
                              (double)loss, (long long)step + 1, rc.output_dir);
                    status = 1;
                    goto done;
                }
                goto fail;
            }
            step_loss += loss / rc.accum_iter;
        }
        maec_adamw opt = {lr, 0.9f, 0.95f, 1e-8f, rc.weight_decay};
        maec_adamw_step(m, &opt);
        step++;
        if (sig_at > 0 && step == sig_at) raise(SIGINT);
        loss_sum += step_loss;
        loss_n++;
        here_n++;
        int epoch_end = step % spe == 0;
        if (LOGGED_AT(step) || step == total) {
            double t = now_s();
            double ips = (double)here_n * B * rc.accum_iter / (t - t_log);
            double wait = maec_loader_wait_seconds(ld);
            double wait_frac = (wait - wait0) / (t - t_log);
            double eta = (double)(total - step) * (t - t_start) / (double)(step - step0);
            fprintf(metrics,
                    "{\"step\":%lld,\"epoch\":%.4f,\"loss\":%.9g,\"lr\":%.6g,\"images_per_s\":%.1f,"
                    "\"data_wait\":%.3f,\"elapsed_s\":%.1f}\n",
                    (long long)step, (double)step / spe, loss_sum / loss_n, (double)lr, ips,
                    wait_frac, t - t_start);
            fflush(metrics);
            printf("%sepoch %.2f  step %lld/%lld  loss %.4f  lr %.3g  %.0f img/s  wait %.0f%%  ETA %.0fs%s",
                   tty ? "\r\033[K" : "", (double)step / spe, (long long)step, (long long)total,
                   loss_sum / loss_n, (double)lr, ips, 100 * wait_frac, eta, tty ? "" : "\n");
            fflush(stdout);
            t_log = t;
            wait0 = wait;
            here_n = 0;
            if (LOGGED_AT(step)) { /* else the run stops here, the window kept for its checkpoint */
                loss_sum = 0;
                loss_n = 0;
            }
        }
        int64_t ep = step / spe;
        if (epoch_end && view && rc.recon_every > 0 && ep % rc.recon_every == 0) {
            char p[2048];
            snprintf(p, sizeof p, "%s/recon/epoch-%04lld.png", rc.output_dir, (long long)ep);
            uint64_t vr = rng_derive(rc.seed, 0x76696577, 0, 0);
            if (maec_reconstruction_png(m, ws, view, nview, NULL, &vr, rc.mean, rc.std, 4, p, &err)) goto fail;
        }
        if (epoch_end && rc.knn_every > 0 && (ep % rc.knn_every == 0 || step == total)) {
            double tk = now_s(), knn = 0;
            if (eval_knn_model(m, ds, ds_eval, rc.mean, rc.std, rc.num_workers, &knn, &err)) goto fail;
            fprintf(metrics, "{\"step\":%lld,\"epoch\":%lld,\"knn_top1\":%.6f,\"knn_s\":%.1f}\n", (long long)step,
                    (long long)ep, knn, now_s() - tk);
            fflush(metrics);
            printf("%sepoch %lld: k-NN top-1 %.2f%%\n", tty ? "\r\033[K" : "", (long long)ep, 100 * knn);
            fflush(stdout);
        }
        if (epoch_end && report) cli_report_update(rc.output_dir);
        if ((rc.save_every > 0 ? step % rc.save_every == 0 : epoch_end) && step < total) {
            win.loss_sum = loss_sum, win.steps = loss_n;
            if (save_checkpoint(m, &rc, &win, &err)) goto fail;
        }
    }
#undef LOGGED_AT
    if (tty) printf("\n");
    win.loss_sum = loss_sum, win.steps = loss_n;
    if (save_checkpoint(m, &rc, &win, &err)) goto fail;
    if (g_signal) {
        printf("stopped by signal %d at step %lld; checkpoint saved. Continue with: maec pretrain --resume %s\n",
               (int)g_signal, (long long)step, rc.output_dir);
        status = 128 + g_signal;
        goto done;
    }
    {
        char p[2048];
        snprintf(p, sizeof p, "%s/model.safetensors", rc.output_dir);
        if (maec_model_save(m, p, &err)) goto fail;
        printf("model: %s\n", p);
        if (view) {
            snprintf(p, sizeof p, "%s/reconstruction.png", rc.output_dir);
            uint64_t vr = rng_derive(rc.seed, 0x76696577, 0, 0);
            if (maec_reconstruction_png(m, ws, view, nview, NULL, &vr, rc.mean, rc.std, 4, p, &err)) goto fail;
            printf("reconstructions: %s (original | masked | reconstruction | reconstruction + visible)\n", p);
        }
        printf("metrics: %s\n", mpath);
        if (report && !cli_report_update(rc.output_dir)) printf("report: %s/report.html\n", rc.output_dir);
    }
    status = 0;
    goto done;
fail:
    if (isatty(fileno(stdout))) printf("\n");
    cli_fail(&err);
    status = 1;
done:
    if (metrics) fclose(metrics);
    free(js);
    free(images);
    free(noise);
    free(view);
    maec_loader_free(ld);
    maec_dataset_free(ds);
    maec_dataset_free(ds_view);
    maec_dataset_free(ds_eval);
    maec_workspace_free(ws);
    maec_model_free(m);
    return status;
}
