/* The tensor table both models are built from (tensors.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensors.h"

int tt_init(tensor_table *tb, int cap)
{
    memset(tb, 0, sizeof *tb);
    tb->cap = cap;
    tb->names_cap = (size_t)cap * 64;
    tb->info = calloc((size_t)cap, sizeof(maec_tensor_info));
    tb->layer_id = calloc((size_t)cap, sizeof(int));
    tb->names = calloc(tb->names_cap, 1);
    if (tb->info && tb->layer_id && tb->names) return 0;
    tt_free(tb);
    return -1;
}

void tt_free(tensor_table *tb)
{
    free(tb->info);
    free(tb->layer_id);
    free(tb->names);
    memset(tb, 0, sizeof *tb);
}

void tt_add(tensor_table *tb, const char *name, int trainable, int layer, int ndim, int64_t d0, int64_t d1,
            int64_t d2, int64_t d3)
{
    size_t len = strlen(name) + 1;
    if (tb->n >= tb->cap || tb->names_used + len > tb->names_cap) return; /* sized by the callers: not reached */
    maec_tensor_info *t = &tb->info[tb->n];
    tb->layer_id[tb->n++] = layer;
    memcpy(tb->names + tb->names_used, name, len);
    t->name = (const char *)(uintptr_t)tb->names_used; /* made a pointer by tt_finish */
    tb->names_used += len;
    t->ndim = ndim;
    int64_t dims[4] = {d0, d1, d2, d3};
    t->size = 1;
    for (int i = 0; i < 4; i++) {
        t->shape[i] = i < ndim ? dims[i] : 0;
        if (i < ndim) t->size *= (size_t)dims[i];
    }
    t->trainable = trainable;
    size_t nl = len - 1;
    int is_bias = nl >= 5 && !strcmp(name + nl - 5, ".bias");
    t->decay = trainable && ndim > 1 && !is_bias;
    t->offset = tb->nfloats; /* 16-float alignment for every tensor */
    tb->nfloats += (t->size + 15) & ~(size_t)15;
}

void tt_no_decay(tensor_table *tb, const char *name)
{
    for (int i = 0; i < tb->n; i++)
        if (!strcmp(tb->names + (uintptr_t)tb->info[i].name, name)) tb->info[i].decay = 0;
}

void tt_add_block(tensor_table *tb, const char *prefix, int i, int layer, int D, int Hd)
{
    static const struct {
        const char *suffix;
        int nd, a, b; /* dims as multiples: a of D (0: Hd), b likewise */
    } parts[12] = {{"norm1.weight", 1, 1, 0},   {"norm1.bias", 1, 1, 0},     {"attn.qkv.weight", 2, 3, 1},
                   {"attn.qkv.bias", 1, 3, 0},  {"attn.proj.weight", 2, 1, 1}, {"attn.proj.bias", 1, 1, 0},
                   {"norm2.weight", 1, 1, 0},   {"norm2.bias", 1, 1, 0},     {"mlp.fc1.weight", 2, 0, 1},
                   {"mlp.fc1.bias", 1, 0, 0},   {"mlp.fc2.weight", 2, 1, -1}, {"mlp.fc2.bias", 1, 1, 0}};
    char nm[128];
    for (int k = 0; k < 12; k++) {
        snprintf(nm, sizeof nm, "%s.%d.%s", prefix, i, parts[k].suffix);
        int64_t d0 = parts[k].a ? (int64_t)parts[k].a * D : Hd;
        int64_t d1 = parts[k].nd < 2 ? 0 : parts[k].b < 0 ? Hd : D;
        tt_add(tb, nm, 1, layer, parts[k].nd, d0, d1, 0, 0);
    }
}

void tt_add_encoder(tensor_table *tb, const maec_config *c, int pos_trainable)
{
    int D = c->dim, L = maec_num_patches(c), p = c->patch;
    tt_add(tb, "cls_token", 1, 0, 3, 1, 1, D, 0);
    tt_add(tb, "pos_embed", pos_trainable, 0, 3, 1, L + 1, D, 0);
    tt_add(tb, "patch_embed.proj.weight", 1, 0, 4, D, c->in_chans, p, p);
    tt_add(tb, "patch_embed.proj.bias", 1, 0, 1, D, 0, 0, 0);
}

void tt_finish(tensor_table *tb)
{
    for (int i = 0; i < tb->n; i++) tb->info[i].name = tb->names + (uintptr_t)tb->info[i].name;
}

void tt_block_views(vit_block *blk, float *base, const maec_tensor_info *t)
{
    float **dst[12] = {&blk->n1w, &blk->n1b, &blk->qkvw, &blk->qkvb, &blk->projw, &blk->projb,
                       &blk->n2w, &blk->n2b, &blk->fc1w, &blk->fc1b, &blk->fc2w, &blk->fc2b};
    for (int i = 0; i < 12; i++) *dst[i] = base + t[i].offset;
}
