/*
 * maec: Masked Autoencoders (He et al. 2021) in C.
 *
 * The public API. Every function that can fail on user input returns 0 on
 * success or a non-zero MAEC_E* code, and fills a maec_error with a one-line
 * message. Nothing here aborts, asserts or exits.
 *
 * Tensors are float32, row-major (C order). Images are [B, C, H, W].
 */
#ifndef MAEC_H
#define MAEC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MAEC_VERSION "0.1.0"

/* ------------------------------------------------------------------ errors */

enum {
    MAEC_OK = 0,
    MAEC_EINVAL = 1,    /* a bad argument, flag or configuration */
    MAEC_EIO = 2,       /* a file could not be read or written */
    MAEC_EFORMAT = 3,   /* a file is not what it claims to be */
    MAEC_ESHAPE = 4,    /* shapes do not fit together */
    MAEC_ENOMEM = 5,    /* out of memory */
    MAEC_ENONFINITE = 6 /* a NaN or Inf where a number was needed */
};

typedef struct {
    int code;
    char msg[512];
} maec_error;

/* ------------------------------------------------------------------ config */

typedef enum {
    MAEC_MASK_RANDOM = 0, /* per-patch uniform noise, argsort, keep the first K */
    MAEC_MASK_BLOCK = 1,  /* BEiT-style rectangles */
    MAEC_MASK_GRID = 2    /* keep one patch of every 2x2 */
} maec_mask_strategy;

typedef struct {
    int img_h, img_w;       /* input size, multiples of patch */
    int in_chans;           /* C */
    int patch;              /* p */
    int dim, depth, heads;  /* encoder width D, blocks, heads */
    int dec_dim, dec_depth, dec_heads; /* decoder width D', blocks, heads;
                                          dec_depth 0 = encoder only */
    int mlp_ratio;          /* hidden = ratio * width (4 in the paper) */
    double mask_ratio;      /* r, 0.75 by default (a double, so that int(L * (1 - r))
                               is the number Python computes) */
    int norm_pix_loss;      /* target = per-patch normalized pixels */
    int mask_token_in_encoder; /* ablation: encoder sees all positions */
    int loss_on_all;        /* ablation: loss over all patches */
    maec_mask_strategy mask_strategy;
} maec_config;

/* The number of patches L, the patch vector length P = p*p*C, and the number
 * of visible patches K = int(L * (1 - r)). */
int maec_num_patches(const maec_config *c);
int maec_patch_dim(const maec_config *c);
int maec_num_keep(const maec_config *c);

/* Fill *c with a named preset ("vit-base-16", "vit-large-16", "vit-huge-14",
 * "fmnist-tiny", "cifar-tiny", "test-tiny", ...). maec_preset_names lists
 * them, separated by spaces. */
int maec_preset(const char *name, maec_config *c, maec_error *err);
const char *maec_preset_names(void);
/* Check that a configuration makes sense (divisibility, ranges). */
int maec_config_check(const maec_config *c, maec_error *err);
/* Configuration as a JSON object string (malloc'd), and back. Parsing only
 * sets the keys that are present. */
char *maec_config_to_json(const maec_config *c);
int maec_config_from_json(maec_config *c, const char *json, maec_error *err);

/* ------------------------------------------------------------------ model */

typedef struct maec_model maec_model;

/* One trainable or fixed tensor of the model, under its official name. */
typedef struct {
    const char *name;
    int ndim;
    int64_t shape[4];
    size_t offset; /* in floats, into the parameter buffer */
    size_t size;   /* in floats */
    int trainable; /* 0 for the fixed position embeddings */
    int decay;     /* 1 if AdamW weight decay applies */
} maec_tensor_info;

/* Create a model (parameters initialized as official from seed). */
int maec_model_create(const maec_config *c, uint64_t seed, maec_model **out,
                      maec_error *err);
void maec_model_free(maec_model *m);
const maec_config *maec_model_config(const maec_model *m);
int maec_model_num_tensors(const maec_model *m);
const maec_tensor_info *maec_model_tensor(const maec_model *m, int i);
/* Find a tensor by name: index or -1. */
int maec_model_find(const maec_model *m, const char *name);
float *maec_model_params(maec_model *m);
float *maec_model_grads(maec_model *m);
size_t maec_model_num_floats(const maec_model *m);

/* Load weights from safetensors with the official names. Depth, widths,
 * patch, channels and (for a square image) the image size follow from the
 * tensors; the rest comes from the file's __metadata__ "maec_config" and then
 * from *hint (fields > 0 in hint override; hint may be NULL). A model file
 * without any decoder tensor loads as an encoder-only model. */
int maec_model_load(const char *path, const maec_config *hint,
                    maec_model **out, maec_error *err);
/* Write the weights (and the configuration in __metadata__), atomically. */
int maec_model_save(const maec_model *m, const char *path, maec_error *err);

/* String metadata kept with the model and saved in the file's __metadata__
 * (for example "maec_data": the data normalization). Loading keeps every key
 * of the file. get returns NULL when absent. */
int maec_model_set_meta(maec_model *m, const char *key, const char *value);
const char *maec_model_get_meta(const maec_model *m, const char *key);

/* Checkpoints: the weights, the AdamW moments (as "optimizer.exp_avg.<name>"
 * and "optimizer.exp_avg_sq.<name>"), the step and a run-state JSON string,
 * written atomically with a checksum. maec_model_load reads a checkpoint's
 * weights and ignores the rest. */
int maec_checkpoint_save(const maec_model *m, const char *path, const char *run_json,
                         maec_error *err);
/* *run_json is malloc'd (NULL if the file has none). */
int maec_checkpoint_load(const char *path, const maec_config *hint, maec_model **out,
                         char **run_json, maec_error *err);

/* ------------------------------------------------------------------ training */

typedef struct maec_workspace maec_workspace;

/* Activations for batches of up to max_batch images. */
int maec_workspace_create(const maec_model *m, int max_batch,
                          maec_workspace **out, maec_error *err);
void maec_workspace_free(maec_workspace *ws);

void maec_zero_grad(maec_model *m);

/* Forward pass on images [B,C,H,W] with the masks that noise [B,L] gives
 * (noise may be NULL: the model's mask strategy draws it from *rng_state).
 * Writes the loss. With backward != 0, also runs the backward pass and adds
 * grad_scale * d(loss)/d(param) to the model's gradients. */
int maec_forward_backward(maec_model *m, maec_workspace *ws,
                          const float *images, int B, const float *noise,
                          uint64_t *rng_state, int backward, float grad_scale,
                          float *loss, maec_error *err);

/* After a forward pass: the prediction [B,L,P] (patch order as patchify),
 * the mask [B,L] (1 = hidden) and the target [B,L,P]. */
const float *maec_ws_pred(const maec_workspace *ws);
const float *maec_ws_mask(const maec_workspace *ws);
const float *maec_ws_target(const maec_workspace *ws);

/* Fill noise [B,L] for the given strategy (random: U[0,1); block and grid:
 * values whose argsort keeps exactly K patches of that pattern). */
void maec_make_noise(const maec_config *c, int B, float *noise,
                     uint64_t *rng_state);

typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
} maec_adamw;

/* One AdamW step over the trainable tensors (decay on those marked). The
 * step counter lives in the model and is incremented first. */
void maec_adamw_step(maec_model *m, const maec_adamw *opt);
int64_t maec_model_step(const maec_model *m);
void maec_model_set_step(maec_model *m, int64_t step);
float *maec_model_adam_m(maec_model *m);
float *maec_model_adam_v(maec_model *m);

/* Official schedule: linear warm-up, then half-cycle cosine to min_lr, at the
 * fractional epoch. */
double maec_lr_at(double epoch, double lr, double min_lr, double warmup_epochs,
                  double epochs);

/* ------------------------------------------------------------------ images */

/* [B,C,H,W] <-> [B,L,P] in the official order (patch row-major; inside a
 * patch (row, col, channel), channel fastest). */
void maec_patchify(const float *imgs, float *patches, int B, int C, int H,
                   int W, int p);
void maec_unpatchify(const float *patches, float *imgs, int B, int C, int H,
                     int W, int p);

/* Fixed 2-D sin-cos position embedding [(gh*gw + 1), D], row 0 zero. */
void maec_sincos_pos_embed(float *out, int D, int gh, int gw);

/* The picture of the paper: a row per image, original | masked (hidden
 * patches grey) | reconstruction | reconstruction with the visible patches
 * pasted back. images are normalized [B,C,H,W]; mean and std (C values each)
 * undo the normalization for display. For a norm-pix model the predicted
 * patches are shown un-normalized with each true patch's mean and variance,
 * as the official demo does. Panels are upscaled by `scale`. Writes a PNG
 * atomically. noise may be NULL (then drawn from *rng). */
int maec_reconstruction_png(maec_model *m, maec_workspace *ws, const float *images, int B,
                            const float *noise, uint64_t *rng, const float *mean,
                            const float *std, int scale, const char *path, maec_error *err);

/* ------------------------------------------------------------------ misc */

/* Set the number of threads used by maec (OpenMP and BLAS). 0 = default. */
void maec_set_threads(int n);

#ifdef __cplusplus
}
#endif
#endif
