/* Shared by the evaluation commands (knn, embed, linprobe, finetune) and by
 * pretrain --knn-every: data with the model's normalization, frozen features
 * of a whole split, test accuracy, the metrics file. */
#ifndef MAEC_EVAL_COMMON_H
#define MAEC_EVAL_COMMON_H
#include <stdint.h>
#include <stdio.h>

#include "data/data.h"
#include "maec.h"

/* maec_eval_normalization, saying in one line when it took ImageNet's */
int eval_normalization(const char *meta_json, maec_dataset *ds, int C, int from_file, float *mean, float *std,
                       maec_error *err);

/* Load --model: a model/classifier file, or, when no such file exists, a
 * preset name (random initialization from seed). *random_init tells which. */
int eval_load_model(const char *model, const maec_config *hint, const maec_classifier_opts *o,
                    uint64_t seed, int from_scratch, maec_classifier **out, int *random_init,
                    maec_error *err);

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
int eval_save_rows(const char *out, const float *rows, int64_t N, int D, const int *labels, char *labels_path,
                   size_t lp_size, maec_error *err);

/* "cls" / "mean" -> MAEC_FEATURE_*; -1 if neither */
int eval_feature_kind(const char *s);
int eval_mkdir_p(const char *path);
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
/* A run resumed by another number of processes than its checkpoint's
 * (run state `state`): *batch becomes the batch per process that keeps a
 * step's images, said in one line; 0, or an error when world processes
 * cannot share them equally */
int eval_resume_batch(const char *state, int world, int *batch, maec_error *err);
#endif
