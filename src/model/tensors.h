/* The tensor table both models are built from (the MAE in model.c, the
 * classifier in classifier.c): names, shapes, offsets into one buffer of
 * parameters (and one each for gradients and the AdamW moments), what
 * learns, what decays, each tensor's layer for layer-wise lr decay; the
 * ViT encoder's part of it and the views of a block's tensors. */
#ifndef MAEC_TENSORS_H
#define MAEC_TENSORS_H
#include <stddef.h>
#include <stdint.h>

#include "maec.h"
#include "model.h"

typedef struct {
    maec_tensor_info *info;
    int *layer_id; /* 0: the embeddings, 1 + b: block b, depth + 1: what follows */
    char *names;
    size_t names_used, names_cap;
    int n, cap;
    size_t nfloats;
} tensor_table;

/* room for cap tensors; 0, or -1 when out of memory */
int tt_init(tensor_table *tb, int cap);
void tt_free(tensor_table *tb);
/* a tensor of ndim dims (d0..d3), 16-float aligned in the buffer; it decays
 * when it learns, has more than one dimension and is not a bias (the
 * official MAE's optimizer groups; tt_no_decay exempts more) */
void tt_add(tensor_table *tb, const char *name, int trainable, int layer, int ndim, int64_t d0, int64_t d1,
            int64_t d2, int64_t d3);
void tt_no_decay(tensor_table *tb, const char *name);
/* a ViT block's 12 tensors "<prefix>.<i>.norm1.weight" ... of width D and
 * MLP width Hd, in the order vit_block_views reads them */
void tt_add_block(tensor_table *tb, const char *prefix, int i, int layer, int D, int Hd);
/* the encoder's embeddings (cls_token, pos_embed, patch_embed.proj.*,
 * layer 0); pos_embed learns when pos_trainable */
void tt_add_encoder(tensor_table *tb, const maec_config *c, int pos_trainable);
/* names made pointers; the table is then the model's (info, layer_id, names) */
void tt_finish(tensor_table *tb);
/* views of the 12 tensors from info[0] on into base */
void tt_block_views(vit_block *blk, float *base, const maec_tensor_info *info);
#endif
