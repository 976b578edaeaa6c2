/* The model's internal layout: one buffer of parameters (and one each for
 * gradients and the two AdamW moments) with named views. */
#ifndef MAEC_MODEL_H
#define MAEC_MODEL_H
#include "backend/backend.h"
#include "io/safetensors.h"
#include "maec.h"

/* one ViT block's parameters (pointers into a buffer) */
typedef struct {
    float *n1w, *n1b, *qkvw, *qkvb, *projw, *projb, *n2w, *n2b, *fc1w, *fc1b, *fc2w, *fc2b;
} vit_block;

/* the same views for any of the four buffers */
typedef struct {
    float *cls_token, *pos_embed, *pe_w, *pe_b, *enc_mask_token;
    vit_block *blocks;
    float *norm_w, *norm_b;
    float *dec_embed_w, *dec_embed_b, *mask_token, *dec_pos_embed;
    vit_block *dec_blocks;
    float *dec_norm_w, *dec_norm_b, *dec_pred_w, *dec_pred_b;
} mae_views;

#define MAEC_MAX_TENSORS_PER_BLOCK 12

struct maec_model {
    maec_config cfg;
    const maec_backend *be; /* where its buffers live and its ops run */
    int ntensors;
    maec_tensor_info *info;
    char *names;        /* storage for the tensor names */
    size_t nfloats;     /* floats per buffer */
    /* The backend's buffers, params | grads | adam m | adam v in one
     * allocation (dev), the ops' views p and g into them; and the host's
     * copies of the four (params ...) that loading, saving, initialization
     * and the accessors work on: the same memory on a backend whose memory
     * is the host's, else a mirror synchronized by model_upload and
     * model_download. */
    float *dev, *dparams, *dgrads, *dadam_m, *dadam_v;
    float *mem;         /* the host's: dev itself, or a mirror */
    float *params, *grads, *adam_m, *adam_v;
    mae_views p, g;     /* views into dparams and dgrads */
    /* every gradient is known to be zero (after maec_zero_grad or an AdamW
     * step, until a backward pass or maec_model_grads hands them out), so
     * that maec_zero_grad can skip its pass */
    int grads_zero;
    int64_t step;
    int nmeta;
    char *meta_key[MAEC_META_MAX], *meta_val[MAEC_META_MAX];
};

/* Build the tensor table and views for cfg; parameters zero. */
int model_alloc(const maec_config *cfg, maec_model **out, maec_error *err);
/* The host's copies of the four buffers to the backend (after the host
 * wrote them), and back (before the host reads them); nothing to do on a
 * backend whose memory is the host's. The same for any four buffers of
 * nfloats each (the classifier's). */
void model_upload(maec_model *m);
void model_download(const maec_model *m);
void buffers_upload(const maec_backend *be, float *dev, const float *host, size_t nfloats);
void buffers_download(const maec_backend *be, float *host, const float *dev, size_t nfloats);
/* room for 4 * nfloats on the backend (*dev) and the host (*host: dev
 * itself on a host-memory backend); 0, or -1 when out of memory */
int buffers_alloc(const maec_backend *be, size_t nfloats, float **dev, float **host);
void buffers_free(const maec_backend *be, float *dev, float *host);
/* Initialization as official, from a seed. */
void model_init(maec_model *m, uint64_t seed);
/* Heads are not fixed by the tensors: guess for the paper's widths, else 0. */
int default_heads(int width);

/* The parts of loading and metadata that the MAE and the classifier share.
 * encoder_config_from_file: the encoder's configuration of a tensor file:
 * __metadata__ "maec_config" first, then the tensors' shapes, then hint
 * (image size, heads); the decoder fields are those of the metadata.
 * meta_set: set or replace key in a list of at most 16 (copies both). */
int encoder_config_from_file(const st_file *f, const maec_config *hint, maec_config *c, maec_error *err);
int meta_set(char **keys, char **vals, int *n, const char *key, const char *value);
const char *meta_get(char *const *keys, char *const *vals, int n, const char *key);
/* Read every tensor of the table info[0..n) from f into params + offset,
 * checking each shape; a tensor that is not trainable may be missing when
 * fixed_optional (the fixed position embeddings). */
int load_tensor_table(st_file *f, const maec_tensor_info *info, int n, float *params,
                      int fixed_optional, maec_error *err);
/* Checkpoints' optimizer state: tensors "optimizer.exp_avg.<name>" and
 * "optimizer.exp_avg_sq.<name>" for every trainable tensor, metadata "step"
 * and "maec_run". opt_state_base: <name> of such a tensor, else NULL.
 * check_opt_state: every such tensor of f names a tensor of info, with its
 * size. read_opt_state: all of them (an error if one is missing), the step
 * and, if run_json, a malloc'd copy of "maec_run" (NULL when absent). */
const char *opt_state_base(const char *name);
int check_opt_state(const st_file *f, const maec_tensor_info *info, int n, maec_error *err);
int read_opt_state(st_file *f, const maec_tensor_info *info, int n, float *adam_m, float *adam_v,
                   int64_t *step, char **run_json, maec_error *err);
/* Write info's tensors from params, and with adam_m and adam_v the optimizer
 * state, step and run_json (if not NULL) too; keys/vals: the caller's
 * metadata (at most 20). Atomic, with a checksum (st_save). */
int save_tensor_file(const char *path, const maec_tensor_info *info, int n, const float *params,
                     const float *adam_m, const float *adam_v, int64_t step, const char *run_json,
                     const char **keys, const char **vals, int nk, maec_error *err);

/* for tests: all = 1 runs the decoder's last block after attention on
 * every row in a training pass, not only on the masked patches'
 * (decoder_forward, decoder_backward) */
void mae_ws_all_rows(maec_workspace *w, int all);
/* data parallel: fn(ctx, g, n) with each ViT block's gradients (n floats
 * from g, backend memory) as soon as the backward pass is done with them;
 * NULL: none */
void mae_ws_set_grad_hook(maec_workspace *w, void (*fn)(void *ctx, float *g, size_t n), void *ctx);
/* the gradients on the backend, and whether that is the host's memory */
float *maec_model_grads_dev(maec_model *m);
int maec_model_host_shared(const maec_model *m);
const maec_backend *maec_model_backend(const maec_model *m);
/* whether the last pass ran the last block on the masked rows alone */
int mae_ws_used_rows(const maec_workspace *w);
/* masking: ids_keep [B,K], ids_restore [B,L], mask [B,L] from noise [B,L] */
void mask_from_noise(const float *noise, int B, int L, int K, int *ids_keep, int *ids_restore,
                     float *mask);
#endif
