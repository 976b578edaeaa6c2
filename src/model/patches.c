/* Patchify, position embeddings, masks. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "util.h"

void maec_patchify(const float *imgs, float *patches, int B, int C, int H, int W, int p)
{
    int gh = H / p, gw = W / p, P = p * p * C;
#pragma omp parallel for schedule(static) collapse(2)
    for (int b = 0; b < B; b++)
        for (int y = 0; y < gh; y++)
            for (int x = 0; x < gw; x++) {
                float *dst = patches + ((size_t)b * gh * gw + (size_t)y * gw + x) * P;
                for (int i = 0; i < p; i++)
                    for (int j = 0; j < p; j++)
                        for (int c = 0; c < C; c++)
                            dst[(i * p + j) * C + c] =
                                imgs[(((size_t)b * C + c) * H + y * p + i) * W + x * p + j];
            }
}

void maec_unpatchify(const float *patches, float *imgs, int B, int C, int H, int W, int p)
{
    int gh = H / p, gw = W / p, P = p * p * C;
#pragma omp parallel for schedule(static) collapse(2)
    for (int b = 0; b < B; b++)
        for (int y = 0; y < gh; y++)
            for (int x = 0; x < gw; x++) {
                const float *src = patches + ((size_t)b * gh * gw + (size_t)y * gw + x) * P;
                for (int i = 0; i < p; i++)
                    for (int j = 0; j < p; j++)
                        for (int c = 0; c < C; c++)
                            imgs[(((size_t)b * C + c) * H + y * p + i) * W + x * p + j] =
                                src[(i * p + j) * C + c];
            }
}

/* One half of the embedding: D2 = D/2 values for one coordinate,
 * sin(pos * omega_k) then cos(pos * omega_k), omega_k = 10000^(-k/(D2/2)). */
static void sincos_1d(float *out, int D2, double pos)
{
    int q = D2 / 2;
    for (int k = 0; k < q; k++) {
        double omega = 1.0 / pow(10000.0, (double)k / (double)q);
        out[k] = (float)sin(pos * omega);
        out[q + k] = (float)cos(pos * omega);
    }
}

void maec_sincos_pos_embed(float *out, int D, int gh, int gw)
{
    memset(out, 0, (size_t)D * sizeof(float)); /* the class token's row */
    for (int y = 0; y < gh; y++)
        for (int x = 0; x < gw; x++) {
            float *row = out + (size_t)(1 + y * gw + x) * D;
            sincos_1d(row, D / 2, (double)x);         /* first half: the column */
            sincos_1d(row + D / 2, D / 2, (double)y); /* second half: the row */
        }
}

/* Stable argsort of one row of noise (insertion into a sorted index list
 * would be O(L^2); use qsort on (value, index) pairs). */
typedef struct {
    float v;
    int i;
} keyed;

static int cmp_keyed(const void *a, const void *b)
{
    const keyed *x = a, *y = b;
    if (x->v < y->v) return -1;
    if (x->v > y->v) return 1;
    return (x->i > y->i) - (x->i < y->i);
}

void mask_from_noise(const float *noise, int B, int L, int K, int *ids_keep, int *ids_restore,
                     float *mask)
{
#pragma omp parallel
    {
        keyed *tmp = malloc((size_t)L * sizeof *tmp);
#pragma omp for schedule(static)
        for (int b = 0; b < B; b++) {
            if (!tmp) continue;
            for (int l = 0; l < L; l++) {
                tmp[l].v = noise[(size_t)b * L + l];
                tmp[l].i = l;
            }
            qsort(tmp, (size_t)L, sizeof *tmp, cmp_keyed);
            for (int j = 0; j < L; j++) {
                int l = tmp[j].i;
                ids_restore[(size_t)b * L + l] = j;
                mask[(size_t)b * L + l] = j >= K ? 1.0f : 0.0f;
                if (j < K) ids_keep[(size_t)b * K + j] = l;
            }
        }
        free(tmp);
    }
}

/* BEiT-style block masking of exactly n_mask patches of a gh x gw grid. */
static void block_mask(unsigned char *m, int gh, int gw, int n_mask, uint64_t *rng)
{
    int L = gh * gw, count = 0;
    memset(m, 0, (size_t)L);
    int min_area = 4 < n_mask ? 4 : n_mask;
    double log_lo = log(0.3), log_hi = log(1.0 / 0.3);
    for (int tries = 0; count < n_mask && tries < 100 * L; tries++) {
        int max_area = n_mask - count;
        if (max_area < min_area) break;
        double area = min_area + rng_uniform_d(rng) * (max_area - min_area);
        double ar = exp(log_lo + rng_uniform_d(rng) * (log_hi - log_lo));
        int h = (int)lround(sqrt(area * ar)), w = (int)lround(sqrt(area / ar));
        if (h < 1 || w < 1 || h >= gh || w >= gw) continue;
        int top = (int)(rng_next(rng) % (uint64_t)(gh - h + 1));
        int left = (int)(rng_next(rng) % (uint64_t)(gw - w + 1));
        int fresh = 0;
        for (int y = top; y < top + h; y++)
            for (int x = left; x < left + w; x++) fresh += !m[y * gw + x];
        if (fresh == 0 || fresh > max_area) continue;
        for (int y = top; y < top + h; y++)
            for (int x = left; x < left + w; x++) m[y * gw + x] = 1;
        count += fresh;
    }
    /* top up with single patches if the blocks fell short */
    while (count < n_mask) {
        int l = (int)(rng_next(rng) % (uint64_t)L);
        if (!m[l]) {
            m[l] = 1;
            count++;
        }
    }
}

void maec_make_noise(const maec_config *c, int B, float *noise, uint64_t *rng)
{
    int L = maec_num_patches(c), K = maec_num_keep(c);
    int gh = c->img_h / c->patch, gw = c->img_w / c->patch;
    unsigned char *m = c->mask_strategy == MAEC_MASK_BLOCK ? malloc((size_t)L) : NULL;
    for (int b = 0; b < B; b++) {
        float *nz = noise + (size_t)b * L;
        for (int l = 0; l < L; l++) nz[l] = rng_uniform(rng);
        if (c->mask_strategy == MAEC_MASK_RANDOM) continue;
        if (c->mask_strategy == MAEC_MASK_BLOCK && m) block_mask(m, gh, gw, L - K, rng);
        /* kept patches sort first: noise in [0, 0.5) for kept, [0.5, 1) for hidden */
        for (int l = 0; l < L; l++) {
            int hidden;
            if (c->mask_strategy == MAEC_MASK_GRID) {
                int y = l / gw, x = l % gw;
                hidden = (y % 2) || (x % 2);
            } else {
                hidden = m ? m[l] : 0;
            }
            nz[l] = 0.5f * nz[l] + (hidden ? 0.5f : 0.0f);
        }
    }
    free(m);
}

/* torch's cubic convolution weights (A = -0.75) at fraction t, for the
 * samples at -1, 0, 1, 2 */
static void cubic_weights(double t, double w[4])
{
    const double A = -0.75;
    double x;
    x = t + 1;
    w[0] = ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
    x = t;
    w[1] = ((A + 2) * x - (A + 3)) * x * x + 1;
    x = 1 - t;
    w[2] = ((A + 2) * x - (A + 3)) * x * x + 1;
    x = 2 - t;
    w[3] = ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
}

void maec_interpolate_pos_embed(const float *src, int gh, int gw, int D, float *dst, int nh, int nw)
{
    /* util/pos_embed.py interpolate_pos_embed: the class token's row kept,
     * the grid through F.interpolate(bicubic, align_corners=False): source
     * (o + 0.5) * in / out - 0.5, unclamped, the taps clamped to the edge */
    memcpy(dst, src, (size_t)D * sizeof(float));
    const float *g = src + D;
    float *o = dst + D;
    for (int y = 0; y < nh; y++) {
        double sy = (y + 0.5) * gh / nh - 0.5, fy = floor(sy), wy[4];
        cubic_weights(sy - fy, wy);
        for (int x = 0; x < nw; x++) {
            double sx = (x + 0.5) * gw / nw - 0.5, fx = floor(sx), wx[4];
            cubic_weights(sx - fx, wx);
            int iy[4], ix[4];
            for (int k = 0; k < 4; k++) {
                int a = (int)fy - 1 + k, b = (int)fx - 1 + k;
                iy[k] = a < 0 ? 0 : a >= gh ? gh - 1 : a;
                ix[k] = b < 0 ? 0 : b >= gw ? gw - 1 : b;
            }
            float *out = o + ((size_t)y * nw + x) * D;
            for (int d = 0; d < D; d++) {
                double acc = 0;
                for (int r = 0; r < 4; r++) {
                    const float *row = g + (size_t)iy[r] * gw * D + d;
                    double v = 0;
                    for (int k = 0; k < 4; k++) v += wx[k] * row[(size_t)ix[k] * D];
                    acc += wy[r] * v;
                }
                out[d] = (float)acc;
            }
        }
    }
}
