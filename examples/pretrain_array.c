/* Pretrain a small MAE on images held in an array with maec.h alone: 256
 * synthetic 1x16x16 pictures (a square, a disc or a gradient), the loop
 * libmaec's trainer (official schedule, AdamW, masks from the seed), the
 * batches and the log lines this program's. Saves the model; exits 0 when
 * the loss on a held-out batch, under the same masks, has gone down.
 *   pretrain_array [model.safetensors]        (default pretrain_array.safetensors) */
#include <maec.h>
#include <stdio.h>

enum { N = 256, BATCH = 32, EPOCHS = 20, PIX = 16 * 16 };
static float data[(N + BATCH) * PIX]; /* N to train on, then the held-out batch */
static uint64_t seed = 2021;          /* an LCG: the same pictures everywhere */
static float uniform(void) /* [0, 1) */
{
    return (float)((seed = seed * 6364136223846793005ULL + 1442695040888963407ULL) >> 40) / 0x1p24f;
}

static void draw(float *x) /* pixel values in [0, 1], normalized (v - 0.2) / 0.3 */
{
    int kind = (int)(uniform() * 3);
    float cy = uniform() * 16, cx = uniform() * 16, r = 2 + uniform() * 5, v = 0.5f + uniform() / 2;
    for (int y = 0; y < 16; y++)
        for (int i = 0; i < 16; i++) {
            float dy = y - cy, dx = i - cx;
            float p = kind == 0 ? (dy * dy < r * r && dx * dx < r * r) * v
                    : kind == 1 ? (dy * dy + dx * dx < r * r) * v : v * (cx < 8 ? i / 15.0f : y / 15.0f);
            x[y * 16 + i] = (p - 0.2f) / 0.3f;
        }
}

/* micro-batch i of every epoch: the same slice (the pictures are random already) */
static int batch(void *ctx, int64_t epoch, int64_t i, float *images, int *labels, int *n, maec_error *err)
{
    (void)ctx, (void)epoch, (void)labels, (void)err;
    for (int k = 0; k < BATCH * PIX; k++) images[k] = data[(size_t)i * BATCH * PIX + k];
    *n = BATCH;
    return 0;
}

static int on_step(void *ctx, maec_trainer *t, const maec_train_event *ev, maec_error *err)
{
    (void)ctx, (void)t, (void)err;
    if (ev->record && ev->step % 16 == 0) /* the mean loss since the last line */
        printf("step %3lld  epoch %5.2f  lr %.2e  loss %.4f\n", (long long)ev->step,
               (double)ev->step / ev->steps_per_epoch, ev->lr, ev->window_loss);
    return 0;
}

int main(int argc, char **argv)
{
    maec_blas_reexec(argv); /* OpenBLAS's fast kernels on CPUs newer than it */
    const char *out = argc > 1 ? argv[1] : "pretrain_array.safetensors";
    maec_error err = {0};
    maec_config c;
    maec_model *m = NULL;
    maec_trainer *t = NULL;
    int rc = 1;
    if (maec_preset("test-tiny", &c, &err)) goto fail; /* 16x16x1, patch 4: L = 16, K = 4 */
    c.dim = 64, c.heads = 4, c.depth = 3, c.dec_dim = 32, c.dec_depth = 1;
    maec_train_opts o;
    maec_train_defaults(&o); /* AdamW (0.9, 0.95), weight decay 0.05 */
    o.batch_size = BATCH, o.epochs = EPOCHS, o.batches_per_epoch = N / BATCH;
    o.lr = 2e-3, o.min_lr = 1e-5, o.warmup_epochs = 1, o.log_every = 16, o.seed = 7;
    if (maec_config_check(&c, &err) || maec_model_create(&c, 0, &m, &err) ||
        maec_trainer_create(m, &o, batch, NULL, NULL, &t, &err)) goto fail;
    maec_trainer_set_hook(t, on_step, NULL);
    for (int i = 0; i < N + BATCH; i++) draw(data + (size_t)i * PIX);
    float noise[BATCH * 16], first, last; /* the held-out batch's masks, [B, L] */
    uint64_t rng = 7;
    maec_make_noise(&c, BATCH, noise, &rng);
    const float *held = data + (size_t)N * PIX;
    maec_workspace *ws = maec_trainer_workspace(t);
    if (maec_forward_backward(m, ws, held, BATCH, noise, NULL, 0, 1, &first, &err) ||
        maec_trainer_run(t, &err) || maec_forward_backward(m, ws, held, BATCH, noise, NULL, 0, 1, &last, &err))
        goto fail;
    /* the normalization, kept as maec pretrain keeps it */
    maec_model_set_meta(m, "maec_data", "{\"mean\": [0.2], \"std\": [0.3]}");
    if (maec_model_save(m, out, &err)) goto fail;
    printf("held-out loss %.4f -> %.4f; model written to %s\n", first, last, out);
    if ((rc = !(last < first))) fprintf(stderr, "the held-out loss did not go down\n");
    goto done;
fail:
    fprintf(stderr, "pretrain_array: %s (error %d)\n", err.msg, err.code);
done:
    maec_trainer_free(t);
    maec_model_free(m);
    return rc;
}
