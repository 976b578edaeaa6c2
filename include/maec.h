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
    MAEC_ENONFINITE = 6, /* a NaN or Inf where a number was needed */
    MAEC_ESTOPPED = 7    /* a run stopped when asked to (its state saved) */
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
/* The parameters, gradients and AdamW moments as host arrays (offsets from
 * maec_model_tensor). On a backend whose memory is not the host's they are
 * host copies, made current by each call; after writing through any of
 * them, maec_model_sync hands the four back to the backend. */
float *maec_model_params(maec_model *m);
float *maec_model_grads(maec_model *m);
void maec_model_sync(maec_model *m);
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
 * (for example "maec_data": the data normalization): up to MAEC_META_MAX
 * keys besides maec's own ("format", "maec_config", ...); set returns
 * MAEC_EINVAL when that many are already there. Loading keeps the file's
 * keys, its first MAEC_META_MAX past maec's own. get returns NULL when
 * absent. */
enum { MAEC_META_MAX = 16 };
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

/* Set every gradient to zero (nothing to do where they are known to be zero
 * already: after an AdamW step, or a maec_zero_grad with no backward pass or
 * maec_model_grads call since). */
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
 * the mask [B,L] (1 = hidden) and the target [B,L,P]. A pass with backward
 * predicts only the patches the loss reads: the hidden ones (every patch
 * with loss_on_all or mask_token_in_encoder); the kept patches' predictions
 * are then zero. A pass without (backward = 0) predicts every patch. */
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
 * step counter lives in the model and is incremented first. The step
 * consumes the gradients: it leaves them all zero, so that the next
 * maec_zero_grad has nothing left to do (it clears each gradient in the pass
 * that reads it, instead of a pass of its own over them all). */
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
/* The official interpolate_pos_embed: src [1 + gh*gw, D] (the class
 * token's row, then the grid row-major) to dst [1 + nh*nw, D], the class
 * row kept and the grid resized as F.interpolate(bicubic,
 * align_corners=False) does. */
void maec_interpolate_pos_embed(const float *src, int gh, int gw, int D, float *dst, int nh, int nw);

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
/* The number of threads maec computes with now. */
int maec_get_threads(void);

/* The backend that models and classifiers created from now on compute on:
 * "cpu" (the default: OpenBLAS/libxsmm and AVX kernels, OpenMP threads) or
 * "ref" (plain loops in double, one thread: the specification the others
 * are tested against, slow on purpose). The environment variable
 * MAEC_BACKEND gives the starting choice. A workspace computes on its
 * model's backend. Returns 0, or MAEC_EINVAL for a name this build lacks.
 * maec_backend_name: the current choice. */
int maec_set_backend(const char *name, maec_error *err);
const char *maec_backend_name(void);

/* The device models and classifiers created from now on compute on: "cpu"
 * (the cpu backend), "cuda" (GPU 0) or "cuda:N" (a build with CUDA: make
 * CUDA=1). tf32: the GPU's products in TF32 (faster, about 10 bits of
 * mantissa) rather than fp32; ignored on the CPU. One GPU per process; the
 * environment variable MAEC_DEVICE gives the command's default. Returns 0,
 * or MAEC_EINVAL with one line: no CUDA in this build, no GPU, a driver too
 * old, no such device. A checkpoint written on one device loads on any. */
int maec_set_device(const char *device, int tf32, maec_error *err);
/* What the current device is, in words (the GPU's name, driver and
 * runtime; "cpu"); writes at most n bytes. */
void maec_device_describe(char *buf, size_t n);
/* Device memory of this process's models and workspaces in use now and at
 * the most, in bytes (0 and 0 on the CPU). */
void maec_device_memory(size_t *now, size_t *peak);
/* Host memory for batches that the current device copies from fastest
 * (pinned, on a GPU; plain malloc on the CPU); NULL when out of memory.
 * Free it with maec_host_free. */
void *maec_host_alloc(size_t bytes);
void maec_host_free(void *p);

/* The kernels OpenBLAS runs on ("SkylakeX", "Haswell", "Prescott", ...).
 * OpenBLAS picks them from the CPU's model when it is loaded, and a CPU
 * newer than the OpenBLAS build gets its generic SSE3 kernels ("Prescott"),
 * several times slower (Debian 12's OpenBLAS on a 5th-generation Xeon:
 * docs/PERF.md). maec_blas_core_advice() returns the OPENBLAS_CORETYPE
 * that fits this CPU in that case ("SkylakeX" with AVX-512, "Haswell" with
 * AVX2), NULL when OpenBLAS's choice is fine or OPENBLAS_CORETYPE is set.
 * The variable only acts when OpenBLAS is loaded: a program that embeds
 * maec sets it in its environment, or calls maec_blas_reexec(argv) first
 * thing in main(), which sets it and runs the program again from the start
 * (same process, same arguments) where the advice is not NULL, and returns
 * without doing anything otherwise or if that fails. */
const char *maec_blas_core(void);
const char *maec_blas_core_advice(void);
void maec_blas_reexec(char **argv);

/* ------------------------------------------------------------------ evaluation */

/* A classifier on the MAE encoder, as the official fine-tuning and linear
 * probing (models_vit.py on timm's VisionTransformer): all L patches, no
 * masking; x = [cls; patch_embed(patches)] + pos_embed -> blocks -> then
 *   global_pool = 1: mean of the patch tokens -> "fc_norm" (LayerNorm) -> head
 *   global_pool = 0: final "norm" -> the class token -> head
 * Tensors carry timm's names: cls_token, pos_embed, patch_embed.proj.*,
 * blocks.*, norm.* or fc_norm.*, head.*. The position embeddings are
 * trainable here (as in timm); cls_token and pos_embed get no weight decay. */
typedef struct maec_classifier maec_classifier;
typedef struct maec_clf_workspace maec_clf_workspace;

typedef struct {
    int num_classes;     /* 0: no head (features only) */
    int global_pool;     /* see above */
    float drop_path;     /* stochastic depth of the last block; block i gets
                            drop_path * i / (depth - 1) (torch.linspace) */
    int tune_blocks;     /* -1: everything learns; K >= 0: only the last K
                            blocks, the norm before the head and the head */
    float head_init_std; /* head.weight ~ trunc_normal(std) (|x| <= 2), bias 0 */
} maec_classifier_opts;

/* num_classes 10, global_pool 1, drop_path 0.1, tune_blocks -1, head std 2e-5 */
void maec_classifier_defaults(maec_classifier_opts *o);

/* A classifier whose encoder is copied from an MAE model (its decoder is
 * ignored), or, with from == NULL, initialized as the MAE encoder from seed
 * (cfg then gives the encoder; with from, cfg may be NULL). The head is
 * initialized from seed. */
int maec_classifier_create(const maec_config *cfg, const maec_model *from,
                           const maec_classifier_opts *o, uint64_t seed,
                           maec_classifier **out, maec_error *err);
/* Load a classifier file written by maec_classifier_save (or any file under
 * timm names with head.* and fc_norm.* or norm.*), or an MAE model or
 * checkpoint, whose encoder is then used as by maec_classifier_create (o
 * gives the head; o may be NULL for the defaults). hint as in
 * maec_model_load (heads). The file's metadata is kept. */
int maec_classifier_load(const char *path, const maec_config *hint,
                         const maec_classifier_opts *o, uint64_t seed,
                         maec_classifier **out, maec_error *err);
/* Weights under timm's names, the encoder configuration and the classifier
 * settings in __metadata__, written atomically. */
int maec_classifier_save(const maec_classifier *c, const char *path, maec_error *err);
/* A fine-tuning checkpoint: the weights, the AdamW moments of the trainable
 * tensors ("optimizer.exp_avg.<name>", "optimizer.exp_avg_sq.<name>"), the
 * step and a run-state string (run_json, may be NULL), atomically with a
 * checksum. maec_classifier_load reads its weights and ignores the rest;
 * maec_classifier_checkpoint_load reads it all (o: as for
 * maec_classifier_load, with the tune_blocks of the run that wrote it;
 * *run_json malloc'd, NULL if none). */
int maec_classifier_checkpoint_save(const maec_classifier *c, const char *path,
                                    const char *run_json, maec_error *err);
int maec_classifier_checkpoint_load(const char *path, const maec_config *hint,
                                    const maec_classifier_opts *o, maec_classifier **out,
                                    char **run_json, maec_error *err);
void maec_classifier_free(maec_classifier *c);

const maec_config *maec_classifier_config(const maec_classifier *c);
const maec_classifier_opts *maec_classifier_options(const maec_classifier *c);
int maec_classifier_num_tensors(const maec_classifier *c);
const maec_tensor_info *maec_classifier_tensor(const maec_classifier *c, int i);
int maec_classifier_find(const maec_classifier *c, const char *name);
/* host arrays as maec_model_params; maec_classifier_sync after writing */
float *maec_classifier_params(maec_classifier *c);
float *maec_classifier_grads(maec_classifier *c);
void maec_classifier_sync(maec_classifier *c);
void maec_classifier_zero_grad(maec_classifier *c);
int maec_classifier_set_meta(maec_classifier *c, const char *key, const char *value);
const char *maec_classifier_get_meta(const maec_classifier *c, const char *key);

/* Layer-wise lr decay (official util/lr_decay.py): layer id 0 for cls_token,
 * pos_embed and patch_embed.*, i+1 for blocks.i.*, depth+1 for the rest; the
 * lr of tensor i is scaled by layer_decay^(depth + 1 - id). */
int maec_classifier_layer_id(const maec_classifier *c, int i);
double maec_classifier_lr_scale(const maec_classifier *c, int i, double layer_decay);

/* Activations for up to max_batch images; train = 1 keeps what the backward
 * pass needs (all blocks), train = 0 only what inference needs. */
int maec_clf_workspace_create(const maec_classifier *c, int max_batch, int train,
                              maec_clf_workspace **out, maec_error *err);
void maec_clf_workspace_free(maec_clf_workspace *w);

enum { MAEC_FEATURE_CLS = 0, MAEC_FEATURE_MEAN = 1 };

/* Frozen features out[B, D] of images [B,C,H,W] on all patches:
 * MAEC_FEATURE_CLS: the class token after the final norm; MAEC_FEATURE_MEAN:
 * the mean of the patch tokens after the final norm (a global-pool
 * classifier, which has no final norm: fc_norm of the mean, its pre-logits). */
int maec_classifier_features(maec_classifier *c, maec_clf_workspace *w, const float *images,
                             int B, int feature, float *out, maec_error *err);

/* Forward pass to the logits [B, num_classes] (maec_clf_ws_logits). With
 * targets [B, num_classes] (soft: rows of label smoothing or mixup), the loss
 * mean_b sum_k -target * log_softmax(logits); with backward != 0, adds
 * grad_scale * d(loss)/d(param) to the gradients of the trainable tensors.
 * Drop path: keep [depth][2][B] (per block: attention branch, then MLP
 * branch; per sample 0 or 1/keep_prob), or NULL: drawn from *rng when
 * backward and drop_path > 0 and rng != NULL, else none. */
int maec_classifier_forward_backward(maec_classifier *c, maec_clf_workspace *w,
                                     const float *images, int B, const float *targets,
                                     const float *keep, uint64_t *rng, int backward,
                                     float grad_scale, float *loss, maec_error *err);
const float *maec_clf_ws_logits(const maec_clf_workspace *w);

/* AdamW over the trainable tensors with layer-wise lr decay (layer_decay 1:
 * none); weight decay on tensors of more than one dimension except cls_token
 * and pos_embed. The step counter is incremented first. It leaves the
 * gradients zero, as maec_adamw_step does. */
/* The classifier at another input size (fine-tuning, probing or features at
 * a resolution other than the pretraining one): the same weights, pos_embed
 * interpolated as the official interpolate_pos_embed (maec_interpolate_pos_embed);
 * *c is replaced (and freed). A size that is not a grid of patches is an error. */
int maec_classifier_resize(maec_classifier **c, int img_h, int img_w, maec_error *err);
/* Every token [B, 1 + L, D] (the class token first, then the patches in
 * grid order) after the first `layer` blocks (0: the embeddings; -1 or the
 * depth: the last block), through the encoder's final norm when final_norm
 * (which a global-pool fine-tuned model lacks: an error). maec embed
 * --tokens / --layer / --no-final-norm. */
int maec_classifier_tokens(maec_classifier *c, maec_clf_workspace *w, const float *images, int B, int layer,
                           int final_norm, float *out, maec_error *err);
/* The last block's attention probabilities [B, heads, 1 + L, 1 + L] (row
 * i: how token i attends to every token; the class token first), for
 * pictures (maec embed --attention). */
int maec_classifier_attention(maec_classifier *c, maec_clf_workspace *w, const float *images, int B, float *out,
                              maec_error *err);

/* --clip_grad as main_finetune.py (timm's NativeScaler): the global 2-norm
 * of the trainable tensors' gradients (after accumulation) and, where
 * max_norm > 0 and that norm exceeds it, the gradients scaled down to it
 * (torch.nn.utils.clip_grad_norm_). Returns the norm before clipping (NaN
 * when out of memory). Call between the last backward and the step. */
double maec_classifier_clip_grad(maec_classifier *c, float max_norm);
void maec_classifier_adamw_step(maec_classifier *c, const maec_adamw *opt, float layer_decay);
int64_t maec_classifier_step(const maec_classifier *c);

/* timm Mixup / CutMix in "batch" mode with label smoothing: one lam per batch
 * (with both alphas > 0, CutMix with probability switch_prob, lam ~
 * Beta(alpha, alpha)); sample b is mixed with sample B-1-b (x.flip(0));
 * CutMix pastes a box and corrects lam to the box's area. images [B,C,H,W]
 * are mixed in place; targets [B,K] = lam * y + (1 - lam) * y.flip(0) with
 * y the smoothed one-hot labels. Returns lam. Alphas 0: no mixing (only
 * smoothing). */
float maec_mixup(float *images, const int *labels, float *targets, int B, int C, int H, int W,
                 int num_classes, float mixup_alpha, float cutmix_alpha, float switch_prob,
                 float smoothing, uint64_t *rng);

/* The same in every mode of timm's Mixup, in two steps so that the draws
 * can be given (tests hold them against timm's arithmetic). mode: batch (one
 * draw for the batch), pair (one per pair b, B-1-b: both images mixed
 * alike), elem (one per image b, mixed with the original of B-1-b; its
 * partner keeps its own draw). prob is mixup_prob: the chance that a batch
 * (batch mode) or a pair or image is mixed at all. A draw's lam is 1 when
 * nothing is mixed; a CutMix draw holds its box [yl,yh) x [xl,xh) and lam
 * corrected to its area. */
enum { MAEC_MIX_BATCH = 0, MAEC_MIX_PAIR = 1, MAEC_MIX_ELEM = 2 };
typedef struct {
    float mixup_alpha, cutmix_alpha; /* 0: off */
    float prob;                      /* mixup_prob (1.0) */
    float switch_prob;               /* CutMix's chance when both are on (0.5) */
    float smoothing;                 /* label smoothing (0.1) */
    int mode;                        /* MAEC_MIX_BATCH, _PAIR or _ELEM */
} maec_mixup_opts;
typedef struct {
    double lam;
    int cutmix, yl, yh, xl, xh;
} maec_mix_draw;
/* how many draws a batch of B takes in this mode: 1, B / 2 or B */
int maec_mix_draws(int mode, int B);
/* the draws for one batch [maec_mix_draws(o->mode, B)] from rng */
void maec_mix_sample(const maec_mixup_opts *o, int B, int H, int W, uint64_t *rng, maec_mix_draw *draws);
/* timm's rand_bbox for a box of 1 - lam of the area centred at (cy, cx),
 * clipped to the image, and lam corrected to the clipped box */
void maec_mix_cutbox(int H, int W, double lam, int cy, int cx, maec_mix_draw *d);
/* images [B,C,H,W] mixed in place under the draws; targets [B,K] = lam_b *
 * y_b + (1 - lam_b) * y_{B-1-b}, y the smoothed one-hot labels (B even) */
void maec_mix_apply(float *images, const int *labels, float *targets, int B, int C, int H, int W, int num_classes,
                    int mode, const maec_mix_draw *draws, float smoothing);

/* The linear probe of main_linprobe.py on features: BatchNorm1d(D,
 * affine=False, eps 1e-6, momentum 0.1) then Linear(D, K) (weight
 * trunc_normal std 0.01, bias 0). Training uses batch statistics and updates
 * the running ones; evaluation uses the running ones. */
typedef struct maec_linprobe maec_linprobe;
int maec_linprobe_create(int dim, int num_classes, int max_batch, uint64_t seed,
                         maec_linprobe **out, maec_error *err);
void maec_linprobe_free(maec_linprobe *lp);
/* weight [K, D], bias [K], running mean [D], running var [D] */
float *maec_linprobe_weight(maec_linprobe *lp);
float *maec_linprobe_bias(maec_linprobe *lp);
float *maec_linprobe_running_mean(maec_linprobe *lp);
float *maec_linprobe_running_var(maec_linprobe *lp);
/* gradients of weight and bias (set, not accumulated, by each training pass) */
const float *maec_linprobe_grad_weight(const maec_linprobe *lp);
const float *maec_linprobe_grad_bias(const maec_linprobe *lp);
/* train = 1: batch statistics (B >= 2), running statistics updated, loss
 * against labels (cross-entropy, no smoothing) and gradients; train = 0:
 * running statistics, logits only (labels may be NULL). logits [B, K] may be
 * NULL. */
int maec_linprobe_forward_backward(maec_linprobe *lp, const float *features, int B,
                                   const int *labels, int train, float *logits, float *loss,
                                   maec_error *err);
/* One step: LARS (util/lars.py: trust 0.001; weight decay and adaptation on
 * the weight only) or, with lars = 0, SGD with momentum (weight decay on the
 * weight only). */
void maec_linprobe_step(maec_linprobe *lp, float lr, float weight_decay, float momentum, int lars);

/* Cosine k-NN: train [N, D] and test [M, D] features (L2-normalized here,
 * in copies), labels in [0, num_classes); each test sample takes the k most
 * similar train samples, votes with weight exp(sim / T) per class, and
 * predicts the class with the largest sum (1 <= k <= 256). Writes pred [M] (may be NULL) and
 * returns the top-1 accuracy in [0, 1], or a negative value on error. */
double maec_knn_top1(const float *train, const int *train_labels, int64_t N, const float *test,
                     const int *test_labels, int64_t M, int D, int num_classes, int k, float T,
                     int *pred, maec_error *err);

#ifdef __cplusplus
}
#endif
/* ------------------------------------------------------------------ trainer */

/* The training loop of main_pretrain.py, main_finetune.py and
 * main_linprobe.py as a library object, for the MAE (pretraining), the
 * classifier (fine-tuning) and the linear probe (on features): the
 * schedule (linear warm-up, then half-cosine, set per iteration), gradient
 * accumulation (step s of an epoch takes its micro-batches s * accum on;
 * an epoch's last batches % accum are left out, as the official loop
 * drops their gradients), AdamW, the random draws (masks; mixup and drop
 * path) of micro-batch i from (seed, i), so that a run does not depend on
 * where it was stopped and resumed, the loss averaged over logging
 * windows, checkpoints that carry the window so that a resumed run logs as
 * an unbroken one, and a stop flag honoured at a step boundary. The caller
 * gives the batches and is told about every step through a hook (logging,
 * pictures, evaluation). */
typedef struct maec_trainer maec_trainer;

typedef struct {
    int batch_size;       /* images per micro-batch */
    int accum_iter;       /* micro-batches per optimizer step */
    int epochs;           /* the schedule's length */
    int64_t batches_per_epoch; /* micro-batches in an epoch */
    double lr;            /* peak (official: blr * batch * accum / 256) */
    double min_lr, warmup_epochs;
    float beta1, beta2, eps, weight_decay; /* AdamW (0.9, 0.95, 1e-8, 0.05; fine-tuning: 0.999 for beta2) */
    uint64_t seed;        /* the random draws' */
    int64_t max_steps;    /* stop after this many optimizer steps in all (0: the schedule's end) */
    int log_every;        /* a record every N steps, at each epoch's end and the schedule's */
    int save_every;       /* a checkpoint every N steps (0: at each epoch's end) */
    int keep;             /* checkpoints kept in output_dir (the newest) */
    const char *output_dir; /* where checkpoint-<step>.safetensors go (NULL: none) */
    const char *checkpoint_name; /* one file of this name instead, rewritten (NULL: one per step, `keep` kept) */
} maec_train_opts;

/* the defaults of main_pretrain.py where it has them */
void maec_train_defaults(maec_train_opts *o);

/* Micro-batch `index` (0-based) of epoch `epoch`, as normalized images
 * [n, C, H, W] into `images` (room for batch_size), and their classes into
 * labels[n] where labels is not NULL (fine-tuning); *n images. The trainer
 * asks for them in order within an epoch, and says where to start after a
 * resume. Nonzero with err set: the run stops with that error. */
typedef int (*maec_batch_fn)(void *ctx, int64_t epoch, int64_t index, float *images, int *labels, int *n,
                             maec_error *err);

/* What the hook hears after every optimizer step. */
typedef struct {
    int64_t step, total;   /* steps done, steps this run will do in all */
    int64_t steps_per_epoch;
    int64_t schedule_steps; /* the schedule's length in steps */
    float lr;              /* the step's */
    double loss;           /* the step's mean loss over its micro-batches */
    int epoch_end;         /* the step ends an epoch */
    int record;            /* a log record is due: window_loss, images_per_s */
    double window_loss;    /* the mean loss since the last record */
    double images_per_s;   /* since the last record, counting this process's steps */
    double window_s;       /* seconds since the last record (or since this process started) */
    double elapsed_s;      /* since the run (this process) started */
    double eta_s;          /* to the run's end, at this process's pace */
} maec_train_event;

/* Nonzero with err set: the run stops with that error. */
typedef int (*maec_train_hook)(void *ctx, maec_trainer *t, const maec_train_event *ev, maec_error *err);

/* A trainer of model m (not owned; its step counter is the trainer's
 * position). run_json: the caller's run configuration as a JSON object,
 * kept in every checkpoint (may be NULL). */
int maec_trainer_create(maec_model *m, const maec_train_opts *o, maec_batch_fn batch, void *batch_ctx,
                        const char *run_json, maec_trainer **out, maec_error *err);
/* Fine-tuning: a trainer of classifier c (not owned) with its head's
 * loss (soft-target cross-entropy), mixup/CutMix per micro-batch, drop
 * path as c's options say, gradient clipping and layer-wise lr decay. */
typedef struct {
    maec_mixup_opts mixup; /* mixup, CutMix, label smoothing (all off: plain smoothed labels) */
    float layer_decay;     /* 1: none */
    float clip_grad;       /* the global gradient norm's bound (0: none) */
} maec_clf_train_opts;
int maec_trainer_create_classifier(maec_classifier *c, const maec_train_opts *o, const maec_clf_train_opts *co,
                                   maec_batch_fn batch, void *batch_ctx, const char *run_json, maec_trainer **out,
                                   maec_error *err);
/* Linear probing: a trainer of probe lp (not owned) on features of dim
 * values: the batch source fills `images` with features [n, dim] (and
 * labels), the update is LARS (lars = 1) or SGD with momentum, with
 * weight_decay from o. Its steps are counted by the trainer (a probe has
 * no step counter); it writes no checkpoints. */
int maec_trainer_create_linprobe(maec_linprobe *lp, int dim, const maec_train_opts *o, int lars, float momentum,
                                 maec_batch_fn batch, void *batch_ctx, maec_trainer **out, maec_error *err);
void maec_trainer_free(maec_trainer *t);
/* replace the run configuration kept in checkpoints from now on (a copy) */
int maec_trainer_set_run_json(maec_trainer *t, const char *run_json, maec_error *err);
/* the hook called after every step (NULL: none) */
void maec_trainer_set_hook(maec_trainer *t, maec_train_hook hook, void *ctx);
/* a flag that stops the run at the next step boundary when nonzero (a
 * signal handler sets it); the run saves a checkpoint and returns
 * MAEC_ESTOPPED */
void maec_trainer_set_stop_flag(maec_trainer *t, const volatile int *stop);
/* Continue a run from the state of a checkpoint's run configuration (the
 * logging window maec_trainer keeps there); the model is the one loaded
 * from it. Another number of processes may resume it when a step takes
 * as many images (batch x accumulation x processes): an error otherwise. */
int maec_trainer_resume_state(maec_trainer *t, const char *run_json, maec_error *err);
/* Train to the end (or max_steps, or the stop flag). 0 when done;
 * MAEC_ESTOPPED when stopped (a checkpoint written); MAEC_ENONFINITE when
 * the loss is not finite (nothing saved: the last good checkpoint stays);
 * another error from the batches, the hook or a write. */
int maec_trainer_run(maec_trainer *t, maec_error *err);
/* Write checkpoint-<step>.safetensors into output_dir now (atomic), and
 * keep the newest `keep`. */
int maec_trainer_save(maec_trainer *t, maec_error *err);
/* the optimizer steps this run does in all (the schedule's, or max_steps),
 * and whether an unbroken run writes a log record after step s: every
 * log_every steps, at each epoch's end and at the schedule's (what a
 * resumed run's log is cut back to) */
int64_t maec_trainer_total_steps(const maec_trainer *t);
int maec_trainer_records_at(const maec_trainer *t, int64_t s);
/* the workspace the trainer computes in (for pictures between steps;
 * NULL for a classifier's trainer) */
maec_workspace *maec_trainer_workspace(maec_trainer *t);
/* the compute threads the resumed run had (0: not recorded), and the
 * processes it ran as (1 when not recorded) */
int maec_trainer_resumed_threads(const char *run_json);
int maec_trainer_resumed_processes(const char *run_json);

/* The newest checkpoint-<step>.safetensors of a run folder that loads (a
 * broken newer one is skipped with a warning on stderr), or the checkpoint
 * file given; `used` gets its path. */
int maec_checkpoint_load_latest(const char *path, maec_model **out, char **run_json, char *used, size_t used_len,
                                maec_error *err);
/* Remove checkpoint-*.safetensors.tmp.* left in dir by a run killed while
 * saving. */
void maec_checkpoint_clean_temps(const char *dir);

/* ------------------------------------------------------------------ processes */

/* Data-parallel training over processes started by mpirun (or srun), on
 * MPI where maec is built with it (make MPI=1): every process trains on its
 * share of each batch (maec_loader_opts.rank/world) and the trainer sums the
 * gradients over the processes before each step. Without a launcher, or
 * without MPI in the build, one process on its own (rank 0 of 1). */
typedef struct maec_comm maec_comm;
int maec_comm_init(int *argc, char ***argv, maec_comm **out, maec_error *err);
void maec_comm_finalize(maec_comm *c);
int maec_comm_rank(const maec_comm *c);
int maec_comm_size(const maec_comm *c);
/* buf[n] summed over the processes, in place (every process gets the sum) */
int maec_comm_allreduce_sum(maec_comm *c, float *buf, size_t n, maec_error *err);
int maec_comm_allreduce_sum_f64(maec_comm *c, double *buf, int n, maec_error *err);
int maec_comm_barrier(maec_comm *c, maec_error *err);
/* end every process of the job (MPI_Abort), or this one alone */
void maec_comm_abort(maec_comm *c, int code);
/* the trainer's processes (NULL: this one alone): gradients averaged over
 * them before each step, the loss reported as their mean, checkpoints
 * written by rank 0 */
void maec_trainer_set_comm(maec_trainer *t, maec_comm *c);

#endif
