/* Cosine k-NN classification of features (the weighted k-NN monitor of
 * InstDisc / DINO: similarities / temperature, exp-weighted votes), on the
 * host with BLAS for the similarity products. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "maec.h"
#include "util.h"

static float *l2_normalized(const float *x, int64_t n, int D)
{
    float *y = malloc((size_t)n * D * sizeof(float));
    if (!y) return NULL;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const float *a = x + (size_t)i * D;
        double s = 0;
        for (int d = 0; d < D; d++) s += (double)a[d] * a[d];
        float r = (float)(1.0 / fmax(sqrt(s), 1e-12));
        for (int d = 0; d < D; d++) y[(size_t)i * D + d] = a[d] * r;
    }
    return y;
}

double maec_knn_top1(const float *train, const int *train_labels, int64_t N, const float *test,
                     const int *test_labels, int64_t M, int D, int num_classes, int k, float T, int *pred,
                     maec_error *err)
{
    if (N < 1 || M < 1 || D < 1 || num_classes < 1 || k < 1 || k > 256 || !(T > 0)) {
        maec_fail(err, MAEC_EINVAL, "k-NN: bad arguments (N %lld, M %lld, k %d, T %g)", (long long)N,
                  (long long)M, k, (double)T);
        return -1;
    }
    if (k > N) k = (int)N;
    for (int64_t i = 0; i < N; i++)
        if (train_labels[i] < 0 || train_labels[i] >= num_classes) {
            maec_fail(err, MAEC_EINVAL, "k-NN: train label %d out of range", train_labels[i]);
            return -1;
        }
    float *a = l2_normalized(train, N, D), *q = l2_normalized(test, M, D);
    const int64_t chunk = 256;
    float *sim = malloc((size_t)chunk * N * sizeof(float));
    if (!a || !q || !sim) {
        free(a), free(q), free(sim);
        maec_fail(err, MAEC_ENOMEM, "k-NN: out of memory");
        return -1;
    }
    int64_t correct = 0;
    for (int64_t m0 = 0; m0 < M; m0 += chunk) {
        int64_t mc = M - m0 < chunk ? M - m0 : chunk;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)mc, (int)N, D, 1.0f, q + (size_t)m0 * D, D, a,
                    D, 0.0f, sim, (int)N);
#pragma omp parallel for schedule(static) reduction(+ : correct)
        for (int64_t r = 0; r < mc; r++) {
            const float *s = sim + (size_t)r * N;
            /* top k by a small insertion list (k is small) */
            float topv[256];
            int64_t topi[256];
            int kk = k, n = 0;
            for (int64_t j = 0; j < N; j++) {
                float v = s[j];
                if (n == kk && v <= topv[n - 1]) continue;
                int pos = n < kk ? n++ : kk - 1;
                while (pos > 0 && topv[pos - 1] < v) {
                    topv[pos] = topv[pos - 1];
                    topi[pos] = topi[pos - 1];
                    pos--;
                }
                topv[pos] = v;
                topi[pos] = j;
            }
            double votes[1024];
            double *vv = num_classes <= 1024 ? votes : calloc((size_t)num_classes, sizeof(double));
            if (!vv) continue;
            memset(vv, 0, (size_t)num_classes * sizeof(double));
            for (int t = 0; t < n; t++) vv[train_labels[topi[t]]] += exp((double)topv[t] / T);
            int best = 0;
            for (int cl = 1; cl < num_classes; cl++)
                if (vv[cl] > vv[best]) best = cl;
            if (vv != votes) free(vv);
            if (pred) pred[m0 + r] = best;
            if (test_labels && test_labels[m0 + r] == best) correct++;
        }
    }
    free(a);
    free(q);
    free(sim);
    return (double)correct / (double)M;
}
