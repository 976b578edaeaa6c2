/* What the benchmark programs share: a clock, and a model with its
 * workspace, a batch of fixed inputs and an optimizer, stepped as
 * training does (zero_grad, forward + backward, AdamW). */
#ifndef MAEC_BENCH_UTIL_H
#define MAEC_BENCH_UTIL_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "maec.h"

static inline double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct {
    maec_model *m;
    maec_workspace *ws;
    float *x; /* batch images, the same every step */
    int batch;
    uint64_t rng;
    maec_adamw opt;
    float loss; /* of the last step */
    maec_error err;
} bench_model;

/* 0, or 1 with the reason on stderr */
static inline int bench_model_open(bench_model *b, const maec_config *c, int batch)
{
    *b = (bench_model){.batch = batch, .rng = 1, .opt = {1e-4f, 0.9f, 0.95f, 1e-8f, 0.05f}};
    if (maec_model_create(c, 0, &b->m, &b->err) || maec_workspace_create(b->m, batch, &b->ws, &b->err)) {
        fprintf(stderr, "%s\n", b->err.msg);
        return 1;
    }
    size_t n = (size_t)batch * c->in_chans * c->img_h * c->img_w;
    if (!(b->x = maec_host_alloc(n * sizeof(float)))) { /* pinned on a GPU, as PyTorch's side */
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < n; i++) b->x[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    return 0;
}

/* one training step: 0, or 1 with the reason on stderr */
static inline int bench_model_step(bench_model *b)
{
    maec_zero_grad(b->m);
    if (maec_forward_backward(b->m, b->ws, b->x, b->batch, NULL, &b->rng, 1, 1.0f, &b->loss, &b->err)) {
        fprintf(stderr, "%s\n", b->err.msg);
        return 1;
    }
    maec_adamw_step(b->m, &b->opt);
    return 0;
}

static inline void bench_model_close(bench_model *b)
{
    maec_workspace_free(b->ws);
    maec_model_free(b->m);
    maec_host_free(b->x);
}

#endif
