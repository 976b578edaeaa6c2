/* maec reconstruct: the paper's picture for a trained model. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "data/data.h"
#include "run.h"
#include "util.h"

int cmd_reconstruct(int argc, char **argv)
{
    const char *model = NULL, *data = NULL, *split = "test", *out = "reconstruction.png";
    const char *mean_s = NULL, *std_s = NULL;
    int num = 8, scale = 4, threads = 0;
    uint64_t seed = 0;
    maec_config hint;
    memset(&hint, 0, sizeof hint);
    cli_opt opts[] = {
        {"model", OPT_STR, &model, "model or checkpoint (.safetensors, or an official .pth)", 1, 0, 0},
        {"data-path", OPT_STR, &data, "a data set to take images from", 1, 0, 0},
        {"split", OPT_STR, &split, "train or test (default test)", 1, 0, 0},
        {"num-images", OPT_INT, &num, "images (rows), spread over the data set", 1, 256, 0},
        {"out", OPT_STR, &out, "output PNG", 1, 0, 0},
        {"seed", OPT_U64, &seed, "seed of the masks", 1, 0, 0},
        {"mask-ratio", OPT_DOUBLE, &hint.mask_ratio, "mask ratio (default: the model's)", 0.0001, 0.9999, 0},
        {"scale", OPT_INT, &scale, "upscaling of each panel", 1, 64, 0},
        {"heads", OPT_INT, &hint.heads, "encoder heads (if not in the file)", 1, 4096, 0},
        {"decoder-heads", OPT_INT, &hint.dec_heads, "decoder heads (if not in the file)", 1, 4096, 0},
        {"norm-pix-loss", OPT_BOOL, &hint.norm_pix_loss, "the model was trained on normalized pixels", 1, 0, 0},
        {"mean", OPT_STR, &mean_s, "per-channel mean (default: the model's)", 1, 0, 0},
        {"std", OPT_STR, &std_s, "per-channel std (default: the model's)", 1, 0, 0},
        {"threads", OPT_INT, &threads, "threads", 1, 1024, 0},
    };
    char *pos[256];
    int npos;
    int r = cli_parse("reconstruct", "--model M (--data-path PATH | IMAGE...) [--out grid.png]", argc, argv,
                      opts, (int)(sizeof opts / sizeof opts[0]), pos, 256, &npos);
    if (r) return r < 0 ? 2 : 0;
    if (!model || (!data && npos == 0) || (data && npos > 0)) {
        cli_error("reconstruct: give --model and either --data-path or image files");
        return 2;
    }
    if (strcmp(split, "train") && strcmp(split, "test")) {
        cli_error("reconstruct: --split must be train or test");
        return 2;
    }
    cli_set_threads("reconstruct", threads);
    maec_error err = {0};
    maec_model *m = NULL;
    maec_workspace *ws = NULL;
    maec_dataset *ds = NULL;
    float *images = NULL;
    maec_image img = {0};
    int status = 1;
    if (maec_model_load(model, &hint, &m, &err)) goto fail;
    const maec_config *c = maec_model_config(m);
    if (c->dec_depth < 1) {
        cli_error("reconstruct: %s has no decoder (an encoder-only checkpoint)", model);
        goto done;
    }
    float mean[3] = {0, 0, 0}, std[3] = {1, 1, 1};
    if (c->in_chans == 3) { /* the official demo's ImageNet normalization */
        const float im[3] = {0.485f, 0.456f, 0.406f}, is[3] = {0.229f, 0.224f, 0.225f};
        memcpy(mean, im, sizeof im);
        memcpy(std, is, sizeof is);
    }
    maec_parse_norm_json(maec_model_get_meta(m, "maec_data"), c->in_chans, mean, std);
    if (parse_norm_flags(mean_s, std_s, mean, std)) {
        cli_error("reconstruct: give both --mean and --std, each one number or three separated by commas (std > 0)");
        goto done;
    }
    int B = data ? num : npos;
    size_t sz = (size_t)c->in_chans * c->img_h * c->img_w;
    images = malloc((size_t)B * sz * sizeof(float));
    if (!images) {
        maec_fail(&err, MAEC_ENOMEM, "out of memory");
        goto fail;
    }
    maec_augment a;
    maec_augment_defaults(&a, c->in_chans, c->img_h, c->img_w);
    a.random_resized_crop = 0;
    a.hflip = 0;
    for (int k = 0; k < 3; k++) a.mean[k] = mean[k], a.std[k] = std[k];
    if (data) {
        /* the test split by default; a folder without one shows its own images */
        int given = 0;
        for (int k = 1; k < argc; k++) given |= !strncmp(argv[k], "--split", 7);
        if (maec_dataset_open(data, split, &ds, &err)) {
            if (given || strcmp(split, "test") || maec_dataset_open(data, "train", &ds, &err)) goto fail;
        }
        int64_t N = maec_dataset_size(ds);
        if (B > N) B = (int)N;
        for (int i = 0; i < B; i++) {
            uint64_t rng = 0;
            if (maec_dataset_get(ds, (int64_t)i * (N / B), &img, &err)) goto fail;
            if (maec_augment_apply(&a, &img, images + i * sz, &rng, &err)) goto fail;
        }
    } else {
        for (int i = 0; i < B; i++) {
            uint64_t rng = 0;
            if (maec_image_decode_file(pos[i], &img, &err)) goto fail;
            if (maec_augment_apply(&a, &img, images + i * sz, &rng, &err)) goto fail;
        }
    }
    if (maec_workspace_create(m, B, &ws, &err)) goto fail;
    uint64_t rng = rng_derive(seed, 0x72656373, 0, 0);
    if (maec_reconstruction_png(m, ws, images, B, NULL, &rng, mean, std, scale, out, &err)) goto fail;
    printf("wrote %s: %d rows of original | masked | reconstruction | reconstruction + visible\n", out, B);
    status = 0;
    goto done;
fail:
    cli_fail(&err);
done:
    maec_image_free(&img);
    free(images);
    maec_dataset_free(ds);
    maec_workspace_free(ws);
    maec_model_free(m);
    return status;
}
