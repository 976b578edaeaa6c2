/* The reconstruction picture. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/png.h"
#include "model.h"
#include "util.h"

static unsigned char to_byte(float v)
{
    if (!(v > 0.0f)) return 0; /* also NaN */
    if (v >= 1.0f) return 255;
    return (unsigned char)lrintf(v * 255.0f);
}

int maec_reconstruction_png(maec_model *m, maec_workspace *ws, const float *images, int B,
                            const float *noise, uint64_t *rng, const float *mean,
                            const float *std, int scale, const char *path, maec_error *err)
{
    const maec_config *c = &m->cfg;
    if (scale < 1 || scale > 64) return maec_fail(err, MAEC_EINVAL, "scale %d out of range", scale);
    float loss;
    int rc = maec_forward_backward(m, ws, images, B, noise, rng, 0, 1.0f, &loss, err);
    if (rc) return rc;
    int C = c->in_chans, H = c->img_h, W = c->img_w, p = c->patch, L = maec_num_patches(c);
    int P = maec_patch_dim(c);
    size_t img = (size_t)C * H * W;
    float *pred = malloc((size_t)B * L * P * sizeof(float));
    float *truth = malloc((size_t)B * L * P * sizeof(float));
    float *panels = malloc(4 * (size_t)B * img * sizeof(float));
    int pad = 2, cw = W * scale, ch = H * scale;
    int outw = 4 * cw + 5 * pad, outh = B * ch + (B + 1) * pad;
    int oc = C == 3 ? 3 : 1;
    unsigned char *pix = malloc((size_t)outw * outh * oc);
    if (!pred || !truth || !panels || !pix) {
        free(pred);
        free(truth);
        free(panels);
        free(pix);
        return maec_fail(err, MAEC_ENOMEM, "out of memory");
    }
    memcpy(pred, maec_ws_pred(ws), (size_t)B * L * P * sizeof(float));
    const float *mask = maec_ws_mask(ws);
    maec_patchify(images, truth, B, C, H, W, p);
    if (c->norm_pix_loss) { /* un-normalize with the true patch's statistics */
        for (size_t r = 0; r < (size_t)B * L; r++) {
            const float *t = truth + r * P;
            double s = 0, v = 0;
            for (int i = 0; i < P; i++) s += t[i];
            double mu = s / P;
            for (int i = 0; i < P; i++) v += (t[i] - mu) * (t[i] - mu);
            double sd = sqrt(v / (P - 1) + 1e-6);
            for (int i = 0; i < P; i++) pred[r * P + i] = (float)(pred[r * P + i] * sd + mu);
        }
    }
    /* panel 1: masked (hidden patches at the grey value 0.5 after un-normalizing),
       panel 3: prediction with visible truth pasted back */
    float *masked = malloc((size_t)B * L * P * sizeof(float));
    float *pasted = malloc((size_t)B * L * P * sizeof(float));
    if (!masked || !pasted) {
        free(masked);
        free(pasted);
        free(pred);
        free(truth);
        free(panels);
        free(pix);
        return maec_fail(err, MAEC_ENOMEM, "out of memory");
    }
    for (size_t r = 0; r < (size_t)B * L; r++)
        for (int i = 0; i < P; i++) {
            int ch_i = i % C;
            float grey = (0.5f - mean[ch_i]) / std[ch_i];
            masked[r * P + i] = mask[r] > 0 ? grey : truth[r * P + i];
            pasted[r * P + i] = mask[r] > 0 ? pred[r * P + i] : truth[r * P + i];
        }
    memcpy(panels, images, B * img * sizeof(float));
    maec_unpatchify(masked, panels + B * img, B, C, H, W, p);
    maec_unpatchify(pred, panels + 2 * B * img, B, C, H, W, p);
    maec_unpatchify(pasted, panels + 3 * B * img, B, C, H, W, p);
    memset(pix, 255, (size_t)outw * outh * oc);
    for (int b = 0; b < B; b++)
        for (int k = 0; k < 4; k++) {
            const float *src = panels + ((size_t)k * B + b) * img;
            int x0 = pad + k * (cw + pad), y0 = pad + b * (ch + pad);
            for (int y = 0; y < ch; y++)
                for (int x = 0; x < cw; x++)
                    for (int o = 0; o < oc; o++) {
                        int cc = C == 3 ? o : 0;
                        float v = src[((size_t)cc * H + y / scale) * W + x / scale] * std[cc] + mean[cc];
                        pix[((size_t)(y0 + y) * outw + x0 + x) * oc + o] = to_byte(v);
                    }
        }
    rc = maec_png_write(path, pix, outw, outh, oc, err);
    free(masked);
    free(pasted);
    free(pred);
    free(truth);
    free(panels);
    free(pix);
    return rc;
}
