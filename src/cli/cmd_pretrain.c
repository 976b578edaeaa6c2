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

static volatile int g_signal; /* the trainer's stop flag */
static void on_signal(int s) { g_signal = s; }

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------ the step hook */

/* what the step hook needs: the run, its log and its monitors */
typedef struct {
    const run_cfg *rc;
    maec_model *m;
    maec_loader *ld;
    maec_dataset *ds, *ds_eval;
    FILE *metrics;
    const float *view;
    int nview, report, tty;
    double wait0;
    long long sig_at;
    int rank0, world; /* only rank 0 logs, draws and evaluates */
} step_ctx;

/* after every step: the metrics record and the progress line; at an
 * epoch's end the pictures, the k-NN monitor and the report */
static int on_step(void *ctx, maec_trainer *t, const maec_train_event *ev, maec_error *err)
{
    step_ctx *c = ctx;
    const run_cfg *rc = c->rc;
    if (c->sig_at > 0 && ev->step == c->sig_at) raise(SIGINT);
    if (!c->rank0) return 0;
    double spe = (double)ev->steps_per_epoch;
    if (ev->record) {
        double wait = maec_loader_wait_seconds(c->ld);
        double wait_frac = (wait - c->wait0) / ev->window_s;
        c->wait0 = wait;
        fprintf(c->metrics,
                "{\"step\":%lld,\"epoch\":%.4f,\"loss\":%.9g,\"lr\":%.6g,\"images_per_s\":%.1f,"
                "\"data_wait\":%.3f,\"elapsed_s\":%.1f}\n",
                (long long)ev->step, (double)ev->step / spe, ev->window_loss, (double)ev->lr,
                ev->images_per_s * c->world, wait_frac, ev->elapsed_s);
        fflush(c->metrics);
        printf("%sepoch %.2f  step %lld/%lld  loss %.4f  lr %.3g  %.0f img/s  wait %.0f%%  ETA %.0fs%s",
               c->tty ? "\r\033[K" : "", (double)ev->step / spe, (long long)ev->step, (long long)ev->total,
               ev->window_loss, (double)ev->lr, ev->images_per_s * c->world, 100 * wait_frac, ev->eta_s,
               c->tty ? "" : "\n");
        fflush(stdout);
    }
    if (!ev->epoch_end) return 0;
    int64_t ep = ev->step / ev->steps_per_epoch;
    if (c->view && rc->recon_every > 0 && ep % rc->recon_every == 0) {
        char p[2048];
        snprintf(p, sizeof p, "%s/recon/epoch-%04lld.png", rc->output_dir, (long long)ep);
        uint64_t vr = rng_derive(rc->seed, 0x76696577, 0, 0);
        if (maec_reconstruction_png(c->m, maec_trainer_workspace(t), c->view, c->nview, NULL, &vr, rc->mean, rc->std,
                                    4, p, err))
            return err->code;
    }
    if (rc->knn_every > 0 && (ep % rc->knn_every == 0 || ev->step == ev->total)) {
        double tk = now_s(), knn = 0;
        if (maec_eval_knn_model(c->m, c->ds, c->ds_eval, rc->mean, rc->std, rc->num_workers, &knn, err)) return err->code;
        fprintf(c->metrics, "{\"step\":%lld,\"epoch\":%lld,\"knn_top1\":%.6f,\"knn_s\":%.1f}\n",
                (long long)ev->step, (long long)ep, knn, now_s() - tk);
        fflush(c->metrics);
        printf("%sepoch %lld: k-NN top-1 %.2f%%\n", c->tty ? "\r\033[K" : "", (long long)ep, 100 * knn);
        fflush(stdout);
    }
    if (c->report) cli_report_update(rc->output_dir);
    return 0;
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
    maec_trainer *tr = NULL;
    maec_dataset *ds = NULL, *ds_view = NULL, *ds_eval = NULL;
    maec_loader *ld = NULL;
    float *view = NULL;
    FILE *metrics = NULL;
    char *js = NULL, *resume_json = NULL;
    char used[2048] = ""; /* the checkpoint resumed */
    char from_dir[1024]; /* where the run's log is so far */
    snprintf(from_dir, sizeof from_dir, "%s", rc.output_dir);

    if (resume) {
        struct stat st;
        if (stat(resume, &st) != 0) {
            maec_fail(&err, MAEC_EIO, "--resume %s: %s", resume, strerror(errno));
            goto fail;
        }
        if (maec_checkpoint_load_latest(resume, &m, &resume_json, used, sizeof used, &err)) {
            if (S_ISDIR(st.st_mode)) maec_fail(&err, err.code, "--resume %s", err.msg);
            goto fail;
        }
        run_cfg saved;
        if (!resume_json || run_cfg_from_json(&saved, resume_json, &err)) {
            if (!err.msg[0]) maec_fail(&err, MAEC_EFORMAT, "%s has no run configuration", used);
            goto fail;
        }
        if (run_cfg_merge_resume(&saved, &rc, argc, argv, &err)) goto fail;
        rc = saved;
        resume_folder(resume, from_dir, sizeof from_dir);
        if (!cli_find(argc, argv, "output-dir")) snprintf(rc.output_dir, sizeof rc.output_dir, "%s", from_dir);
        if (memcmp(maec_model_config(m), &rc.model, sizeof rc.model) != 0) {
            maec_fail(&err, MAEC_EINVAL, "%s: its model does not match its run configuration", used);
            goto fail;
        }
        printf("resuming from %s (step %lld)\n", used, (long long)maec_model_step(m));
        /* the threads the run had, for the same sums, unless --threads says otherwise */
        if (!threads) threads = maec_trainer_resumed_threads(resume_json);
    }
    threads = cli_set_threads("pretrain", threads);
    /* data parallel (mpirun -np N): rank 0 writes every file, and says what
     * happens; every rank reads the data and the checkpoint */
    maec_comm *comm = cli_comm();
    int rank0 = maec_comm_rank(comm) == 0, world = maec_comm_size(comm);
    if (!rank0) freopen("/dev/null", "w", stdout);
    if (resume && eval_resume_batch(resume_json, world, &rc.batch_size, &err)) {
        maec_fail(&err, err.code, "--resume: %s", err.msg);
        goto fail;
    }
    if (rank0 && eval_mkdir_p(rc.output_dir)) {
        maec_fail(&err, MAEC_EIO, "cannot create output folder %s: %s", rc.output_dir, strerror(errno));
        goto fail;
    }
    if (rank0) maec_checkpoint_clean_temps(rc.output_dir);
    /* with the k-NN monitor, its evaluation set, checked before training (a
     * held-out share leaves the pretraining set too) */
    if (eval_open_sets(rc.data_path, rc.eval_path[0] ? rc.eval_path : NULL, rc.val_split, rc.seed,
                       rc.knn_every > 0 ? 3 : 1, rc.skip_bad, rank0 ? rc.output_dir : NULL, &ds, &ds_eval, &err)) {
        if (rc.knn_every > 0) maec_fail(&err, err.code, "--knn-every: %s", err.msg);
        goto fail;
    }
    if (maec_dataset_size(ds) < (int64_t)rc.batch_size * world) {
        maec_fail(&err, MAEC_EINVAL, "%s has %lld images, fewer than one batch of %d", rc.data_path,
                  (long long)maec_dataset_size(ds), rc.batch_size * world);
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
        if (!js) goto fail;
        if (rank0) {
            if (atomic_open(&af, p, &err)) goto fail;
            atomic_write(&af, js, strlen(js));
            atomic_write(&af, "\n", 1);
            if (atomic_commit(&af, &err)) goto fail;
        }
    }
    if (rank0) cli_report_session(rc.output_dir, "pretrain", !resume);
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
    lo.rank = maec_comm_rank(comm), lo.world = world; /* this process's share of each batch */
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
    maec_train_opts to;
    maec_train_defaults(&to);
    to.batch_size = rc.batch_size;
    to.accum_iter = rc.accum_iter;
    to.epochs = rc.epochs;
    to.batches_per_epoch = maec_loader_batches_per_epoch(ld);
    /* the official rule: lr = blr * effective batch / 256, the effective batch
     * batch * accum-iter * processes */
    to.lr = rc.lr > 0 ? rc.lr : rc.blr * (double)rc.batch_size * rc.accum_iter * world / 256.0;
    to.min_lr = rc.min_lr;
    to.warmup_epochs = rc.warmup_epochs;
    to.weight_decay = rc.weight_decay;
    to.seed = rc.seed;
    to.max_steps = rc.max_steps;
    to.log_every = rc.log_every;
    to.save_every = rc.save_every;
    to.keep = rc.keep;
    to.output_dir = rc.output_dir;
    if (maec_trainer_create(m, &to, eval_loader_batch, ld, js, &tr, &err)) goto fail;
    maec_trainer_set_comm(tr, comm);
    if (resume && maec_trainer_resume_state(tr, resume_json, &err)) {
        maec_fail(&err, err.code, "%s: %s", used, err.msg);
        goto fail;
    }
    int64_t total = maec_trainer_total_steps(tr), step = maec_model_step(m);
    int B = rc.batch_size;
    const maec_config *mc = maec_model_config(m);
    size_t img_floats = (size_t)mc->in_chans * mc->img_h * mc->img_w;

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
        if (rank0) eval_mkdir_p(p);
    }

    char mpath[2048], from_path[2048];
    snprintf(mpath, sizeof mpath, "%s/metrics.jsonl", rc.output_dir);
    snprintf(from_path, sizeof from_path, "%s/metrics.jsonl", from_dir);
    if (rank0 && eval_metrics_resume(from_path, mpath, step, maec_trainer_records_at(tr, step), &err)) goto fail;
    metrics = fopen(rank0 ? mpath : "/dev/null", "a");
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
    printf("pretraining %s on %s (%lld images): %lld steps of %d x %d images, lr %.3g, %d threads\n",
           rc.preset[0] ? rc.preset : "custom model", rc.data_path, (long long)maec_dataset_size(ds),
           (long long)total, B, rc.accum_iter, to.lr, threads);
    if (world > 1)
        printf("data parallel: %d processes, %d images each per micro-batch: an effective batch of %d\n", world, B,
               B * rc.accum_iter * world);
    printf("output: %s\n", rc.output_dir);
    fflush(stdout);
    /* MAEC_FAULT_SIGINT_AT_STEP=N (tests/cli_resume_safety.sh) sends the run
     * a SIGINT once step N is done: a stop at a step known in advance */
    const char *sig_env = getenv("MAEC_FAULT_SIGINT_AT_STEP");
    step_ctx sc = {.rc = &rc, .m = m, .ld = ld, .ds = ds, .ds_eval = ds_eval, .metrics = metrics, .view = view,
                   .nview = nview, .report = report, .tty = tty, .wait0 = maec_loader_wait_seconds(ld),
                   .sig_at = sig_env ? atoll(sig_env) : 0, .rank0 = rank0, .world = world};
    maec_trainer_set_hook(tr, on_step, &sc);
    maec_trainer_set_stop_flag(tr, &g_signal);
    r = maec_trainer_run(tr, &err);
    if (r == MAEC_ENONFINITE) {
        fprintf(stderr, "%s", tty ? "\n" : "");
        cli_error("%s; stopping. The last good checkpoint is kept in %s", err.msg, rc.output_dir);
        status = 1;
        goto done;
    }
    if (r && r != MAEC_ESTOPPED) goto fail;
    if (tty) printf("\n");
    if (r == MAEC_ESTOPPED) {
        printf("stopped by signal %d at step %lld; checkpoint saved. Continue with: maec pretrain --resume %s\n",
               (int)g_signal, (long long)maec_model_step(m), rc.output_dir);
        status = 128 + (g_signal ? g_signal : SIGINT); /* another process may have had the signal */
        goto done;
    }
    if (rank0) {
        char p[2048];
        snprintf(p, sizeof p, "%s/model.safetensors", rc.output_dir);
        if (maec_model_save(m, p, &err)) goto fail;
        printf("model: %s\n", p);
        if (view) {
            snprintf(p, sizeof p, "%s/reconstruction.png", rc.output_dir);
            uint64_t vr = rng_derive(rc.seed, 0x76696577, 0, 0);
            if (maec_reconstruction_png(m, maec_trainer_workspace(tr), view, nview, NULL, &vr, rc.mean, rc.std, 4, p,
                                        &err))
                goto fail;
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
    free(resume_json);
    free(view);
    maec_loader_free(ld);
    maec_dataset_free(ds);
    maec_dataset_free(ds_view);
    maec_dataset_free(ds_eval);
    maec_trainer_free(tr);
    maec_model_free(m);
    return status;
}
