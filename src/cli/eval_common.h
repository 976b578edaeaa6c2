/* Shared by the evaluation commands (knn, embed, linprobe, finetune) and by
 * pretrain --knn-every: data with the model's normalization, frozen features
 * of a whole split, test accuracy, the metrics file. */
#ifndef MAEC_EVAL_COMMON_H
#define MAEC_EVAL_COMMON_H
#include <stdint.h>
#include <stdio.h>

#include "data/data.h"
#include "maec.h"

/* The normalization saved with a model ("maec_data" metadata); else, for a
 * 3-channel model from a file (from_file: an official or timm checkpoint),
 * ImageNet's mean and std, said in one line; else the per-channel mean and
 * std of 10000 images drawn (seed 0) from the whole of ds. */
int eval_normalization(const char *meta_json, maec_dataset *ds, int C, int from_file, float *mean, float *std,
                       maec_error *err);

/* Load --model: a model/classifier file, or, when no such file exists, a
 * preset name (random initialization from seed). *random_init tells which. */
int eval_load_model(const char *model, const maec_config *hint, const maec_classifier_opts *o,
                    uint64_t seed, int from_scratch, maec_classifier **out, int *random_init,
                    maec_error *err);

/* Every image of ds in order, resized to the model's input, normalized, no
 * augmentation: features [N, D] (c != NULL: maec_classifier_features of the
 * given kind; c == NULL: the normalized pixels, D = C*H*W, with C, H, W from
 * shape[3]) and labels [N] (-1 when the data set has none). malloc'd. */
int eval_features(maec_classifier *c, maec_dataset *ds, int feature, const int shape[3],
                  const float *mean, const float *std, int batch, int workers, float **feat,
                  int **labels, int64_t *n, int *dim, maec_error *err);

/* Every image of ds through the classifier, in order, no augmentation: how
 * many have their label as the top-1 logit (*correct1) and among the topk
 * largest (*correctk, if not NULL); an unlabelled image counts as wrong.
 * logits != NULL: also every image's logits [N, K] and labels [N]
 * (malloc'd). */
int eval_classify(maec_classifier *c, maec_dataset *ds, const float *mean, const float *std, int batch,
                  int workers, int topk, int64_t *correct1, int64_t *correctk, float **logits, int **labels,
                  maec_error *err);
/* Top-1 accuracy of the classifier on every image of ds (no augmentation). */
int eval_top1(maec_classifier *c, maec_dataset *ds, const float *mean, const float *std, int batch,
              int workers, double *top1, maec_error *err);

/* k-NN top-1 of the encoder's frozen features: train split as the memory,
 * test split as the queries (pretrain --knn-every and maec knn). */
int eval_knn(maec_classifier *c, maec_dataset *train, maec_dataset *test, int feature, int k, float T,
             const float *mean, const float *std, int batch, int workers, double *top1, maec_error *err);

/* pretrain --knn-every: k-NN top-1 (class token, k 20, T 0.07) of the
 * encoder of m, train as the memory, test (eval_open_sets) as the queries */
int eval_knn_model(const maec_model *m, maec_dataset *train, maec_dataset *test, const float *mean,
                   const float *std, int workers, double *top1, maec_error *err);

/* The class names of ds (maec_dataset_class_name), when it has one for
 * each of the classifier's classes, into its metadata "maec_classes" (a
 * JSON array); 0, or an error when they cannot be kept. */
int eval_save_class_names(maec_classifier *c, const maec_dataset *ds, maec_error *err);
/* Those names back ([num_classes], malloc'd), or NULL when the model has
 * none; eval_free_names frees them. */
char **eval_class_names(const maec_classifier *c);
void eval_free_names(char **names, int K);

/* rows [N, D] of float32 to out (a .npy path), and, when labels is not
 * NULL, the labels [N] as float32 to <out without .npy>_labels.npy (its path
 * into labels_path, if not NULL); each file atomic */
/* The same for an array of any shape (shape[0] rows; labels [shape[0]]) */
int eval_save_array(const char *out, const float *data, int ndim, const int64_t *shape, const int *labels,
                    char *labels_path, size_t lp_size, maec_error *err);
/* maec embed --tokens/--layer/--no-final-norm: every image's tokens after
 * `layer` blocks (-1: all), through the final norm or not; kind 0 the class
 * token [D], 1 the mean of the patch tokens [D], 2 the patch tokens [L*D],
 * 3 the last block's attention probabilities [heads * T * T];
 * *per the floats per image */
int eval_tokens(maec_classifier *c, maec_dataset *ds, const float *mean, const float *std, int batch, int workers,
                int layer, int final_norm, int kind, float **feat, int **labels, int64_t *n_out, int *per,
                maec_error *err);
int eval_save_rows(const char *out, const float *rows, int64_t N, int D, const int *labels, char *labels_path,
                   size_t lp_size, maec_error *err);

/* "cls" / "mean" -> MAEC_FEATURE_*; -1 if neither */
int eval_feature_kind(const char *s);
int eval_mkdir_p(const char *path);
/* The evaluation transform's crop_pct (--crop-pct): the official rule
 * (224/256 for inputs up to 224, else 1) unless set; the images keep their
 * aspect ratio, the shorter side resized to size / crop_pct, then a centre
 * crop. */
void eval_set_crop_pct(double crop_pct);
double eval_crop_pct(int h, int w);
double eval_now(void);
/* open <dir>/metrics.jsonl for appending (truncated first when fresh) */
FILE *eval_open_metrics(const char *dir, int fresh, maec_error *err);
/* The metrics.jsonl of a run resumed at optimizer step `step`: the records
 * of `from` (the stopped run's log) up to that step, written atomically to
 * `to` (the same file, or the log in another --output-dir); records past
 * it, lines cut short and a "final" record are left out, and those of step
 * itself unless keep_at_step (what a run writes because it stops at a step
 * no unbroken run logs). Records without a step are kept. When `from` is
 * missing, the log at `to` (if any) is trimmed so. */
int eval_metrics_resume(const char *from, const char *to, long long step, int keep_at_step, maec_error *err);
/* The training set of data and the evaluation set (need: 1 train, 2 the
 * evaluation set, 3 both): data's test split (val/ or test/ of an image
 * folder), or eval_path's images with their classes mapped by name to the
 * training set's, or a seeded val_split share of the training images held
 * out; says which in one line. skip_bad (--skip-bad-images): images that
 * do not decode are dropped from both, listed in list_dir/bad_images.txt
 * (stderr without list_dir), and more than 1% of a set is an error. */
int eval_open_sets(const char *data, const char *eval_path, double val_split, uint64_t seed, int need,
                   int skip_bad, const char *list_dir, maec_dataset **train, maec_dataset **test, maec_error *err);

/* a trainer's batch source (maec_batch_fn) over a loader (ctx): its next
 * batch, after seeking where the trainer asks for another place */
int eval_loader_batch(void *ctx, int64_t epoch, int64_t index, float *images, int *labels, int *n, maec_error *err);
#endif
