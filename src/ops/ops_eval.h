/* CPU ops of the evaluation heads (linear probe, fine-tuning): each a
 * forward/backward pair with shapes in the comments, in the style of ops.h.
 * Parameter gradients accumulate (+=); activation gradients are written (=). */
#ifndef MAEC_OPS_EVAL_H
#define MAEC_OPS_EVAL_H
#include <stddef.h>

/* BatchNorm1d without affine parameters, training mode (batch statistics):
 * out[M,D] = (inp - mean) * rstd, mean and biased variance over the M rows,
 * rstd = 1/sqrt(var + eps); mean[D], rstd[D] saved. If running_mean and
 * running_var are not NULL they are updated as torch does:
 * r = (1 - momentum) r + momentum * batch value, with the unbiased variance
 * (divisor M-1) for running_var. M >= 2. */
void batchnorm1d_forward_train(float *out, float *mean, float *rstd, const float *inp, int M, int D,
                               float eps, float *running_mean, float *running_var, float momentum);
/* Evaluation mode: out = (inp - running_mean) / sqrt(running_var + eps). */
void batchnorm1d_forward_eval(float *out, const float *inp, const float *running_mean,
                              const float *running_var, int M, int D, float eps);
/* dinp[M,D] = rstd/M * (M dout - sum_m dout - xhat * sum_m dout*xhat), where
 * xhat = out of the forward pass (dinp may not alias dout). */
void batchnorm1d_backward(float *dinp, const float *dout, const float *xhat, const float *rstd, int M,
                          int D);

/* Softmax cross-entropy with soft targets (timm SoftTargetCrossEntropy; hard
 * labels with label smoothing are the targets on = 1 - s + s/K, off = s/K):
 * loss = mean_b sum_k -target[b,k] * log_softmax(logits[b])[k].
 * probs[B,K] keeps the softmax. Returns the loss (accumulated in double). */
double softmax_xent_forward(float *probs, const float *logits, const float *targets, int B, int K);
/* dlogits[B,K] = scale / B * (probs * sum_k target - target) */
void softmax_xent_backward(float *dlogits, const float *probs, const float *targets, int B, int K,
                           float scale);
/* soft targets [B,K] from labels: on = 1 - smoothing + smoothing/K, off = smoothing/K */
void one_hot_smooth(float *targets, const int *labels, int B, int K, float smoothing);

/* Mean of the tokens 1..T-1 (the class token, row 0, left out):
 * out[B,D] = mean_{t>=1} x[B,T,D]. */
void mean_pool_forward(float *out, const float *x, int B, int T, int D);
/* dx[B,T,D] = dout[b] / (T-1) for t >= 1, 0 for t = 0 (written) */
void mean_pool_backward(float *dx, const float *dout, int B, int T, int D);

/* Drop path (stochastic depth) in its deterministic form: every row of
 * sample b is multiplied by scale[b] (0, or 1/keep_prob when kept):
 * x[B,T,D] *= scale[b]. The backward pass is the same call on the gradient. */
void scale_rows(float *x, const float *scale, int B, int T, int D);

/* LARS (facebookresearch/mae util/lars.py, from MoCo v3) on one tensor of n
 * values: if adapt (tensors of more than one dimension), dp = g + wd * p and
 * dp *= trust * ||p|| / ||dp|| when both norms are > 0; otherwise dp = g (no
 * weight decay, no adaptation). Then mu = momentum * mu + dp; p -= lr * mu. */
void lars_update(float *p, const float *g, float *mu, size_t n, float lr, float weight_decay,
                 float momentum, float trust, int adapt);
#endif
