/* The classifier on the MAE encoder (fine-tuning, linear probing, features):
 * its own tensor table under timm's names, with the ViT block views into one
 * buffer of parameters | gradients | AdamW moments, as model.h does for the
 * MAE. The public functions are in maec.h ("evaluation"). */
#ifndef MAEC_CLASSIFIER_H
#define MAEC_CLASSIFIER_H
#include "maec.h"
#include "model.h"

typedef struct {
    float *cls_token, *pos_embed, *pe_w, *pe_b;
    vit_block *blocks;
    float *norm_w, *norm_b;   /* global_pool 0: the encoder's final norm */
    float *fcn_w, *fcn_b;     /* global_pool 1: fc_norm */
    float *head_w, *head_b;   /* num_classes > 0 */
} clf_views;

struct maec_classifier {
    maec_config cfg;          /* the encoder (dec_depth 0) */
    const maec_backend *be;   /* where its buffers live and its ops run */
    maec_classifier_opts opts;
    int ntensors;
    maec_tensor_info *info;
    int *layer_id;
    char *names;
    size_t nfloats;
    /* as maec_model's: the backend's buffers (dev, views p and g) and the
     * host's copies (mem: dev itself on a host-memory backend) */
    float *dev, *dparams, *dgrads, *dadam_m, *dadam_v;
    float *mem, *params, *grads, *adam_m, *adam_v;
    clf_views p, g;
    int grads_zero; /* as maec_model's */
    int64_t step;
    int nmeta;
    char *meta_key[MAEC_META_MAX], *meta_val[MAEC_META_MAX];
};

/* first block that learns: 0 for full fine-tuning, depth - K for --tune-blocks K */
int clf_first_trainable_block(const maec_classifier *c);
#endif
