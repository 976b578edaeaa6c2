/* The linear probe of main_linprobe.py: BatchNorm1d without affine
 * parameters, then a linear layer, trained with LARS (util/lars.py) on
 * frozen features. The features come from the classifier (maec_classifier_
 * features); this head runs on the host's kernels (src/ops). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "maec.h"
#include "ops/ops.h"
#include "ops/ops_eval.h"
#include "util.h"

struct maec_linprobe {
    int D, K, max_B;
    float *w, *b, *gw, *gb, *mw, *mb, *rmean, *rvar;
    float *xhat, *bm, *br, *logits, *probs, *targets, *dlogits;
};

int maec_linprobe_create(int D, int K, int max_B, uint64_t seed, maec_linprobe **out, maec_error *err)
{
    *out = NULL;
    if (D < 1 || D > 1 << 24 || K < 2 || K > 1000000 || max_B < 1 || max_B > 1 << 24)
        return maec_fail(err, MAEC_EINVAL, "linear probe: bad sizes (dim %d, classes %d, batch %d)", D, K, max_B);
    maec_linprobe *lp = calloc(1, sizeof *lp);
    if (!lp) return maec_fail(err, MAEC_ENOMEM, "out of memory");
    lp->D = D, lp->K = K, lp->max_B = max_B;
    size_t KD = (size_t)K * D, BD = (size_t)max_B * D, BK = (size_t)max_B * K;
    float **bufs[] = {&lp->w, &lp->gw, &lp->mw, &lp->b, &lp->gb, &lp->mb, &lp->rmean, &lp->rvar, &lp->bm,
                      &lp->br, &lp->xhat, &lp->logits, &lp->probs, &lp->targets, &lp->dlogits};
    size_t sizes[] = {KD, KD, KD, K, K, K, D, D, D, D, BD, BK, BK, BK, BK};
    for (int i = 0; i < 15; i++) {
        *bufs[i] = calloc(sizes[i], sizeof(float));
        if (!*bufs[i]) {
            maec_linprobe_free(lp);
            return maec_fail(err, MAEC_ENOMEM, "out of memory");
        }
    }
    uint64_t rng = rng_derive(seed, 0x6c696e, 0, 0);
    rng_trunc_normal(lp->w, KD, 0.01, &rng);
    for (int d = 0; d < D; d++) lp->rvar[d] = 1.0f;
    *out = lp;
    return 0;
}

void maec_linprobe_free(maec_linprobe *lp)
{
    if (!lp) return;
    float *bufs[] = {lp->w, lp->gw, lp->mw, lp->b, lp->gb, lp->mb, lp->rmean, lp->rvar, lp->bm,
                     lp->br, lp->xhat, lp->logits, lp->probs, lp->targets, lp->dlogits};
    for (int i = 0; i < 15; i++) free(bufs[i]);
    free(lp);
}

float *maec_linprobe_weight(maec_linprobe *lp) { return lp->w; }
float *maec_linprobe_bias(maec_linprobe *lp) { return lp->b; }
float *maec_linprobe_running_mean(maec_linprobe *lp) { return lp->rmean; }
float *maec_linprobe_running_var(maec_linprobe *lp) { return lp->rvar; }
const float *maec_linprobe_grad_weight(const maec_linprobe *lp) { return lp->gw; }
const float *maec_linprobe_grad_bias(const maec_linprobe *lp) { return lp->gb; }

#define BN_EPS 1e-6f
#define BN_MOMENTUM 0.1f

int maec_linprobe_forward_backward(maec_linprobe *lp, const float *x, int B, const int *labels, int train,
                                   float *logits, float *loss, maec_error *err)
{
    int D = lp->D, K = lp->K;
    if (B < 1 || B > lp->max_B) return maec_fail(err, MAEC_EINVAL, "linear probe: batch %d out of range", B);
    if (train && (B < 2 || !labels))
        return maec_fail(err, MAEC_EINVAL, "linear probe: training needs labels and a batch of at least 2");
    if (train)
        batchnorm1d_forward_train(lp->xhat, lp->bm, lp->br, x, B, D, BN_EPS, lp->rmean, lp->rvar, BN_MOMENTUM);
    else
        batchnorm1d_forward_eval(lp->xhat, x, lp->rmean, lp->rvar, B, D, BN_EPS);
    linear_forward(lp->logits, lp->xhat, lp->w, lp->b, B, D, K);
    if (logits) memcpy(logits, lp->logits, (size_t)B * K * sizeof(float));
    if (loss) *loss = 0;
    if (labels) {
        for (int b = 0; b < B; b++)
            if (labels[b] < 0 || labels[b] >= K)
                return maec_fail(err, MAEC_EINVAL, "linear probe: label %d out of [0, %d)", labels[b], K);
        one_hot_smooth(lp->targets, labels, B, K, 0.0f);
        double l = softmax_xent_forward(lp->probs, lp->logits, lp->targets, B, K);
        if (loss) *loss = (float)l;
        if (!isfinite(l)) return maec_fail(err, MAEC_ENONFINITE, "linear probe: the loss is not finite");
    }
    if (!train) return 0;
    softmax_xent_backward(lp->dlogits, lp->probs, lp->targets, B, K, 1.0f);
    memset(lp->gw, 0, (size_t)K * D * sizeof(float));
    memset(lp->gb, 0, (size_t)K * sizeof(float));
    linear_backward(NULL, lp->gw, lp->gb, lp->dlogits, lp->xhat, lp->w, B, D, K);
    return 0;
}

void maec_linprobe_step(maec_linprobe *lp, float lr, float weight_decay, float momentum, int lars)
{
    size_t KD = (size_t)lp->K * lp->D;
    if (lars) {
        lars_update(lp->w, lp->gw, lp->mw, KD, lr, weight_decay, momentum, 0.001f, 1);
    } else { /* SGD with momentum, decay on the weight */
        for (size_t i = 0; i < KD; i++) {
            lp->mw[i] = momentum * lp->mw[i] + lp->gw[i] + weight_decay * lp->w[i];
            lp->w[i] -= lr * lp->mw[i];
        }
    }
    lars_update(lp->b, lp->gb, lp->mb, (size_t)lp->K, lr, 0.0f, momentum, 0.001f, 0);
}

