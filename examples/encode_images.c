/* Encode images with a pretrained MAE's encoder, with maec.h alone: load a
 * model file (maec's, the official .pth or a Hugging Face ViTMAE folder) as
 * a classifier without a head, and print the feature vector of each of N
 * generated images (the class token after the encoder's final norm, as
 * `maec embed --feature cls`), computed in batches of 16.
 *   encode_images model.safetensors [N]        (N = 8 by default) */
#include <maec.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    maec_blas_reexec(argv);
    if (argc < 2) { fprintf(stderr, "usage: %s model.safetensors [N]\n", argv[0]); return 2; }
    int n = argc > 2 ? atoi(argv[2]) : 8;
    if (n < 1 || n > 100000) { fprintf(stderr, "N must be in 1..100000, not %s\n", argv[2]); return 2; }
    maec_error err = {0};
    maec_classifier *c = NULL;
    maec_clf_workspace *w = NULL;
    float *x = NULL, *feat = NULL;
    int rc = 1;
    maec_classifier_opts o; /* no head, the final norm kept: features only */
    maec_classifier_defaults(&o);
    o.num_classes = 0, o.global_pool = 0;
    if (maec_classifier_load(argv[1], NULL, &o, 0, &c, &err)) goto fail;
    const maec_config *cfg = maec_classifier_config(c);
    int C = cfg->in_chans, H = cfg->img_h, W = cfg->img_w, D = cfg->dim, batch = n < 16 ? n : 16;
    size_t img = (size_t)C * H * W;
    const char *norm = maec_classifier_get_meta(c, "maec_data");
    printf("%s: %dx%dx%d images, patch %d, encoder dim %d, depth %d, normalization %s\n", argv[1],
           C, H, W, cfg->patch, D, cfg->depth, norm ? norm : "(none saved)");
    x = malloc(img * batch * sizeof *x), feat = malloc((size_t)n * D * sizeof *feat);
    if (!x || !feat) { fprintf(stderr, "out of memory\n"); goto done; }
    if (maec_clf_workspace_create(c, batch, 0, &w, &err)) goto fail; /* 0: inference only */

    for (int i0 = 0; i0 < n; i0 += batch) {
        int b = n - i0 < batch ? n - i0 : batch;
        for (int i = 0; i < b; i++) /* image i0 + i: stripes of period 2 + (i0 + i) % 7, tilted */
            for (size_t k = 0; k < img; k++) {
                int y = (int)(k / W % H), xx = (int)(k % W), period = 2 + (i0 + i) % 7;
                x[i * img + k] = ((xx + y * ((i0 + i) % 3)) / period % 2) ? 1.5f : -0.6f;
            }
        if (maec_classifier_features(c, w, x, b, MAEC_FEATURE_CLS, feat + (size_t)i0 * D, &err))
            goto fail;
    }
    printf("features [%d, %d]\n", n, D);
    for (int i = 0; i < n && i < 4; i++) {
        printf("image %d:", i);
        for (int j = 0; j < D && j < 6; j++) printf(" %8.4f", feat[(size_t)i * D + j]);
        printf(" ...\n");
    }
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "encode_images: %s (error %d)\n", err.msg, err.code);
done:
    maec_clf_workspace_free(w);
    maec_classifier_free(c);
    free(x), free(feat);
    return rc;
}
