/* The batch loader: worker threads decode and augment samples into a ring of
 * batch slots ahead of the consumer.
 *
 * Batches are numbered g = epoch * batches_per_epoch + batch_in_epoch. The
 * slots hold batches next_g .. setup_g-1 (at most `prefetch` of them); a
 * worker takes the first unclaimed sample of the oldest batch, works on it
 * without the lock, and marks it done. What a sample becomes depends only on
 * (seed, epoch, position), never on which thread ran it or when, so the
 * batches are the same for any thread count. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "data/data.h"
#include "data/internal.h"
#include "util.h"

#define MAX_THREADS 256
#define MAX_PREFETCH 64

typedef struct {
    int64_t g;        /* the batch held, -1 none */
    int64_t epoch;
    int64_t pos0;     /* position in the epoch of sample 0 */
    int n;            /* images in the batch */
    int claimed, done;
    uint32_t *idx;    /* [batch] data set indices */
    int *labels;      /* [batch] */
    float *images;    /* [batch * per] */
    int err_k;        /* the first sample that failed, or -1 */
    maec_error err;
} slot;

struct maec_loader {
    maec_dataset *ds;
    maec_loader_opts o;
    int64_t N, bpe;
    int64_t Ns; /* positions of this process's share of an epoch */
    int rank, world;
    size_t per; /* floats per output image */
    int nslots;
    slot *slots;
    uint32_t *perm;
    int64_t perm_epoch;
    int64_t next_g, setup_g;
    int inflight; /* samples claimed and not yet done */
    int stop, paused;
    pthread_mutex_t mu;
    pthread_cond_t work, ready;
    pthread_t *threads;
    int nthreads;
    maec_image own_img; /* for threads == 0 */
    double wait_s;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void maec_loader_defaults(maec_loader_opts *o, int c, int h, int w)
{
    memset(o, 0, sizeof *o);
    o->batch = 1;
    o->threads = 1;
    o->seed = 0;
    o->shuffle = 1;
    o->drop_last = 0;
    o->prefetch = 4;
    maec_augment_defaults(&o->aug, c, h, w);
}

/* Fisher-Yates from rng_derive(seed, e, 0, 0): for i = N-1 .. 1, swap i with
 * j = rng_next % (i + 1) */
static void make_perm(maec_loader *l, int64_t e)
{
    for (int64_t i = 0; i < l->N; i++) l->perm[i] = (uint32_t)i;
    if (l->o.shuffle) {
        uint64_t s = rng_derive(l->o.seed, (uint64_t)e, 0, 0);
        for (int64_t i = l->N - 1; i > 0; i--) {
            int64_t j = (int64_t)(rng_next(&s) % (uint64_t)(i + 1));
            uint32_t t = l->perm[i];
            l->perm[i] = l->perm[j];
            l->perm[j] = t;
        }
    }
    l->perm_epoch = e;
}

/* the position in the whole epoch of this process's position p */
static inline int64_t global_pos(const maec_loader *l, int64_t p) { return p * l->world + l->rank; }

/* locked: give free slots their next batches */
static void setup_slots(maec_loader *l)
{
    while (l->setup_g < l->next_g + l->nslots) {
        int64_t g = l->setup_g++;
        int64_t e = g / l->bpe, b = g % l->bpe;
        if (e != l->perm_epoch && (l->o.shuffle || l->perm_epoch < 0)) make_perm(l, e);
        slot *s = &l->slots[g % l->nslots];
        s->g = g;
        s->epoch = e;
        s->pos0 = b * l->o.batch;
        int64_t left = l->Ns - s->pos0;
        s->n = (int)(left < l->o.batch ? left : l->o.batch);
        s->claimed = s->done = 0;
        s->err_k = -1;
        s->err.code = 0;
        s->err.msg[0] = 0;
        for (int k = 0; k < s->n; k++) {
            s->idx[k] = l->perm[global_pos(l, s->pos0 + k) % l->N];
            s->labels[k] = maec_dataset_label(l->ds, s->idx[k]);
        }
    }
}

/* locked: claim a sample of the oldest batch with one left */
static slot *claim(maec_loader *l, int *k)
{
    if (l->paused || l->stop) return NULL;
    setup_slots(l);
    for (int64_t g = l->next_g; g < l->setup_g; g++) {
        slot *s = &l->slots[g % l->nslots];
        if (s->claimed < s->n) {
            *k = s->claimed++;
            l->inflight++;
            return s;
        }
    }
    return NULL;
}

/* called locked; unlocks while working */
static void work(maec_loader *l, slot *s, int k, maec_image *img)
{
    int64_t pos = global_pos(l, s->pos0 + k); /* the draw is the image's, whichever process reads it */
    uint64_t rng = rng_derive(l->o.seed, (uint64_t)s->epoch, (uint64_t)pos, 1);
    uint32_t index = s->idx[k];
    float *out = s->images + (size_t)k * l->per;
    pthread_mutex_unlock(&l->mu);
    maec_error e = {0};
    int rc = maec_dataset_get(l->ds, index, img, &e);
    if (!rc) rc = maec_augment_apply(&l->o.aug, img, out, &rng, &e);
    pthread_mutex_lock(&l->mu);
    if (rc && (s->err_k < 0 || k < s->err_k)) {
        s->err_k = k;
        s->err = e;
        if (!s->err.code) s->err.code = rc;
    }
    s->done++;
    l->inflight--;
    if (s->done == s->n || l->inflight == 0) pthread_cond_broadcast(&l->ready);
}

static void *worker_main(void *arg)
{
    maec_loader *l = arg;
    maec_image img = {0};
    pthread_mutex_lock(&l->mu);
    while (!l->stop) {
        int k;
        slot *s = claim(l, &k);
        if (s)
            work(l, s, k, &img);
        else
            pthread_cond_wait(&l->work, &l->mu);
    }
    pthread_mutex_unlock(&l->mu);
    maec_image_free(&img);
    return NULL;
}

static void stop_threads(maec_loader *l)
{
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_broadcast(&l->work);
    pthread_mutex_unlock(&l->mu);
    for (int i = 0; i < l->nthreads; i++) pthread_join(l->threads[i], NULL);
    l->nthreads = 0;
}

void maec_loader_free(maec_loader *l)
{
    if (!l) return;
    stop_threads(l);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->work);
    pthread_cond_destroy(&l->ready);
    if (l->slots)
        for (int i = 0; i < l->nslots; i++) {
            free(l->slots[i].idx);
            free(l->slots[i].labels);
            free(l->slots[i].images);
        }
    free(l->slots);
    free(l->perm);
    free(l->threads);
    maec_image_free(&l->own_img);
    free(l);
}

int maec_loader_create(maec_dataset *ds, const maec_loader_opts *o, maec_loader **out,
                       maec_error *err)
{
    *out = NULL;
    if (!ds || !o) return maec_fail(err, MAEC_EINVAL, "loader: no data set or options");
    int rc = maec_augment_check(&o->aug, err);
    if (rc) return rc;
    if (o->batch <= 0 || o->batch > (1 << 24))
        return maec_fail(err, MAEC_EINVAL, "loader: bad batch size %d", o->batch);
    if (o->threads < 0 || o->threads > MAX_THREADS)
        return maec_fail(err, MAEC_EINVAL, "loader: bad thread count %d (0..%d)", o->threads,
                         MAX_THREADS);
    int64_t N = maec_dataset_size(ds);
    if (N <= 0 || N > (int64_t)UINT32_MAX)
        return maec_fail(err, MAEC_EINVAL, "loader: data set has %lld images", (long long)N);
    int world = o->world > 1 ? o->world : 1;
    if (o->rank < 0 || (o->world > 1 && o->rank >= o->world) || o->world > (1 << 20))
        return maec_fail(err, MAEC_EINVAL, "loader: rank %d of %d processes", o->rank, o->world);
    int64_t Ns = (N + world - 1) / world; /* the share, the epoch padded to a multiple of world */
    /* with drop_last the whole epoch's full batches of world * batch, so that
     * every process has as many and no padding is read */
    int64_t bpe = o->drop_last ? N / ((int64_t)world * o->batch) : (Ns + o->batch - 1) / o->batch;
    if (bpe == 0)
        return maec_fail(err, MAEC_EINVAL, "loader: %lld images make no full batch of %d%s", (long long)N,
                         o->batch * world, world > 1 ? " (the batch times the processes)" : "");
    maec_loader *l = calloc(1, sizeof *l);
    if (!l) return maec_fail(err, MAEC_ENOMEM, "out of memory");
    l->ds = ds;
    l->o = *o;
    l->N = N;
    l->bpe = bpe;
    l->world = world;
    l->rank = world > 1 ? o->rank : 0;
    l->Ns = o->drop_last ? bpe * o->batch : Ns;
    l->per = (size_t)o->aug.out_c * o->aug.out_h * o->aug.out_w;
    l->nslots = o->prefetch <= 0 ? 4 : o->prefetch > MAX_PREFETCH ? MAX_PREFETCH : o->prefetch;
    l->o.prefetch = l->nslots;
    l->perm_epoch = -1;
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->work, NULL);
    pthread_cond_init(&l->ready, NULL);
    size_t nimg;
    l->slots = calloc((size_t)l->nslots, sizeof(slot));
    l->perm = malloc((size_t)N * sizeof(uint32_t));
    l->threads = calloc((size_t)(o->threads ? o->threads : 1), sizeof(pthread_t));
    int ok = l->slots && l->perm && l->threads &&
             size_mul(l->per, (size_t)o->batch, &nimg) && size_mul(nimg, sizeof(float), &nimg);
    for (int i = 0; ok && i < l->nslots; i++) {
        slot *s = &l->slots[i];
        s->g = -1;
        s->idx = malloc((size_t)o->batch * sizeof(uint32_t));
        s->labels = malloc((size_t)o->batch * sizeof(int));
        s->images = malloc(nimg);
        ok = s->idx && s->labels && s->images;
    }
    if (!ok) {
        maec_loader_free(l);
        return maec_fail(err, MAEC_ENOMEM, "loader: out of memory for %d batches of %d images",
                         l->nslots, o->batch);
    }
    for (int i = 0; i < o->threads; i++) {
        if (pthread_create(&l->threads[i], NULL, worker_main, l) != 0) {
            maec_loader_free(l);
            return maec_fail(err, MAEC_ENOMEM, "loader: cannot start thread %d", i);
        }
        l->nthreads = i + 1;
    }
    *out = l;
    return 0;
}

int maec_loader_next(maec_loader *l, float *images, int *labels, int *n_out, maec_error *err)
{
    if (!l || !images) return maec_fail(err, MAEC_EINVAL, "loader: no loader or output");
    double t0 = now_s();
    pthread_mutex_lock(&l->mu);
    setup_slots(l);
    slot *s = &l->slots[l->next_g % l->nslots];
    while (s->g != l->next_g || s->done < s->n) {
        int k;
        slot *w;
        if (l->nthreads == 0 && (w = claim(l, &k)) != NULL)
            work(l, w, k, &l->own_img);
        else
            pthread_cond_wait(&l->ready, &l->mu);
    }
    l->wait_s += now_s() - t0;
    if (s->err_k >= 0) {
        maec_error e = s->err;
        pthread_mutex_unlock(&l->mu);
        if (err) *err = e;
        return e.code ? e.code : MAEC_EIO;
    }
    pthread_mutex_unlock(&l->mu);
    /* the slot cannot be refilled before next_g moves on */
    memcpy(images, s->images, (size_t)s->n * l->per * sizeof(float));
    if (labels)
        for (int k = 0; k < s->n; k++) labels[k] = s->labels[k];
    if (n_out) *n_out = s->n;
    pthread_mutex_lock(&l->mu);
    l->next_g++;
    pthread_cond_broadcast(&l->work);
    pthread_mutex_unlock(&l->mu);
    return 0;
}

void maec_loader_position(const maec_loader *l, int64_t *epoch, int64_t *batch_in_epoch)
{
    maec_loader *m = (maec_loader *)l;
    pthread_mutex_lock(&m->mu);
    int64_t g = m->next_g;
    pthread_mutex_unlock(&m->mu);
    if (epoch) *epoch = g / l->bpe;
    if (batch_in_epoch) *batch_in_epoch = g % l->bpe;
}

int maec_loader_seek(maec_loader *l, int64_t epoch, int64_t batch_in_epoch, maec_error *err)
{
    if (!l) return maec_fail(err, MAEC_EINVAL, "loader: none");
    if (epoch < 0 || batch_in_epoch < 0 || batch_in_epoch >= l->bpe ||
        epoch > (INT64_MAX - batch_in_epoch) / l->bpe / 2)
        return maec_fail(err, MAEC_EINVAL, "loader: cannot seek to epoch %lld batch %lld (%lld "
                         "batches per epoch)", (long long)epoch, (long long)batch_in_epoch,
                         (long long)l->bpe);
    pthread_mutex_lock(&l->mu);
    l->paused = 1;
    while (l->inflight > 0) pthread_cond_wait(&l->ready, &l->mu);
    l->next_g = l->setup_g = epoch * l->bpe + batch_in_epoch;
    for (int i = 0; i < l->nslots; i++) l->slots[i].g = -1;
    l->paused = 0;
    pthread_cond_broadcast(&l->work);
    pthread_mutex_unlock(&l->mu);
    return 0;
}

int64_t maec_loader_batches_per_epoch(const maec_loader *l) { return l ? l->bpe : 0; }

double maec_loader_wait_seconds(const maec_loader *l)
{
    if (!l) return 0;
    maec_loader *m = (maec_loader *)l;
    pthread_mutex_lock(&m->mu);
    double w = m->wait_s;
    pthread_mutex_unlock(&m->mu);
    return w;
}
