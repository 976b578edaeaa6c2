/* maec_data.h: data sets, image decoding, augmentation and a threaded batch
 * loader, the public part of libmaec that reads images (with maec.h).
 *
 * A data set is opened from a path; its format follows from what is there:
 *   idx          MNIST / Fashion-MNIST: a directory with
 *                {train,t10k}-images-idx3-ubyte[.gz] (+ labels-idx1), or the
 *                path of an images file (labels beside it, same naming)
 *   cifar10      data_batch_1..5.bin / test_batch.bin (1 label + 3072 CHW)
 *   cifar100     train.bin / test.bin (coarse, fine label + 3072; fine used)
 *                (a directory, or one .bin file)
 *   npy          x.npy: [N,H,W], [N,C,H,W] or [N,H,W,C], C 1 or 3, uint8
 *                (0..255) or float ([0,1]); labels in x_labels.npy if present.
 *                A directory with {split}.npy works too.
 *   imagefolder  root/<class>/.../<name>.png|*.jpg|*.jpeg, classes and files sorted
 *                by name as torchvision's ImageFolder; root/train + root/val
 *                (or root/test) select the split. A root holding only images
 *                (no class folders) is one unlabeled set.
 *
 * Every function that can fail returns 0 or a MAEC_E* code and fills err with
 * a one-line message that names the file. Nothing aborts on bad input.
 */
#ifndef MAEC_DATA_PUBLIC_H
#define MAEC_DATA_PUBLIC_H

#include <stddef.h>
#include <stdint.h>

#include "maec.h"

/* ------------------------------------------------------------------ images */

/* A float image, channels first [c, h, w], values in [0, 1]. data is a
 * malloc'd buffer of cap floats, reused (and grown) by the functions that
 * fill an image. Start from {0}. */
typedef struct {
    int c, h, w;
    float *data;
    size_t cap;
} maec_image;

void maec_image_free(maec_image *img);
/* Set the shape of img, growing its buffer when needed. */
int maec_image_resize_buffer(maec_image *img, int c, int h, int w, maec_error *err);

/* Decode a PNG or JPEG file (detected from its first bytes) into img: gray
 * (1 channel) or RGB (3 channels), 8 or 16 bits, alpha dropped, palette
 * expanded. */
int maec_image_decode_file(const char *path, maec_image *img, maec_error *err);

/* Bicubic resampling as PIL's Image.resize(BICUBIC, box) (Keys a = -0.5,
 * kernel widened by the downscale factor: antialiased), of the box x0, y0,
 * bw, bh (in source pixels) of src into out [src->c, out_h, out_w], clamped
 * to [0, 1]. */
int maec_resize_bicubic(const maec_image *src, float x0, float y0, float bw, float bh,
                        int out_h, int out_w, float *out, maec_error *err);

/* ------------------------------------------------------------------ data sets */

typedef struct maec_dataset maec_dataset;

/* split: "train" or "test" ("val" is taken as "test"; NULL as "train"). */
int maec_dataset_open(const char *path, const char *split, maec_dataset **out,
                      maec_error *err);
void maec_dataset_free(maec_dataset *ds);

int64_t maec_dataset_size(const maec_dataset *ds);
/* 1 or 3. Image folders: 1 if the first image is gray, else 3 (every image
 * is then converted to that count by maec_dataset_get). */
int maec_dataset_channels(const maec_dataset *ds);
/* 0 when the data set has no labels */
int maec_dataset_num_classes(const maec_dataset *ds);
/* The name of class k: an image folder's class folder, CIFAR-10's ten
 * names, CIFAR-100's from fine_label_names.txt beside its files; NULL where
 * the data set has none (IDX, .npy). */
const char *maec_dataset_class_name(const maec_dataset *ds, int k);
/* label of image i, -1 when none */
int maec_dataset_label(const maec_dataset *ds, int64_t i);
/* "idx", "cifar10", "cifar100", "imagefolder" or "npy" */
const char *maec_dataset_format(const maec_dataset *ds);
/* The image size shared by all images: 0, or MAEC_ESHAPE when there is none.
 * Image folders give the size of their first image. */
int maec_dataset_native_size(const maec_dataset *ds, int *h, int *w);

/* eval's labels re-numbered by class name as train's class indices (both
 * with class names, e.g. image folders); a class of eval that train lacks is
 * an error naming it. Without names, eval may have no more classes. */
int maec_dataset_map_classes(maec_dataset *eval, const maec_dataset *train, maec_error *err);
/* A seeded share frac (0 < frac < 1) of an image folder's images moved out
 * of ds into *held, for evaluation (--val-split); both keep the files'
 * order. Other formats have a test split of their own: an error. */
int maec_dataset_hold_out(maec_dataset *ds, double frac, uint64_t seed, maec_dataset **held, maec_error *err);

/* --skip-bad-images: decodes every image of an image folder once and drops
 * those that do not decode, keeping the others' order; *bad (malloc'd,
 * *nbad strings, each "what went wrong, naming the file") lists them. Other
 * formats: nothing to drop. An error when none decodes. */
int maec_dataset_drop_bad(maec_dataset *ds, char ***bad, int64_t *nbad, maec_error *err);

/* Decode image i into img (channels first, [0, 1], native size, the data
 * set's channel count), reusing img's buffer. Safe to call from several
 * threads at once with different img. */
int maec_dataset_get(maec_dataset *ds, int64_t i, maec_image *img, maec_error *err);

/* ------------------------------------------------------------------ augmentation */

/* RandAugment settings (timm's config string, e.g. "rand-m9-mstd0.5-inc1":
 * n operations (n, default 2) at magnitude m (default 10) of 0..10, drawn
 * N(m, mstd) per operation when mstd > 0, the "increasing" forms of the
 * operations with inc1) */
typedef struct {
    int on, n, increasing;
    float m, mstd;
} maec_randaug;

/* "none" or "" (off), or "rand" followed by "-m9", "-n2", "-mstd0.5", "-inc1"
 * parts in any order */
int maec_randaug_parse(const char *s, maec_randaug *ra, maec_error *err);
/* The operations on an 8-bit image [c, h, w]; fill: the colour of the area
 * that rotations, shears and translations bring in, one value a channel.
 * Draws from *rng. */
int maec_randaug_apply(const maec_randaug *ra, uint8_t *img, int c, int h, int w, const uint8_t *fill,
                       uint64_t *rng, maec_error *err);

/* torchvision's ColorJitter(s, s, s) on an 8-bit image [c, h, w] as PIL
 * computes it: brightness, contrast and saturation (ImageEnhance's
 * Brightness, Contrast, Color) in a random order, each factor uniform in
 * [max(0, 1 - s), 1 + s]. Draws from *rng. s <= 0: nothing. */
int maec_color_jitter(float strength, uint8_t *img, int c, int h, int w, uint64_t *rng, maec_error *err);
/* The same with the draws given: order[k] in 0..2 (brightness, contrast,
 * saturation) the k-th applied, factor[f] each one's factor; tmp [h * w] */
void maec_color_jitter_apply(const int order[3], const double factor[3], uint8_t *img, uint8_t *tmp, int c, int h,
                             int w);

typedef struct {
    int out_c, out_h, out_w;  /* output image: out_c 1 or 3 */
    int random_resized_crop;  /* 1: RandomResizedCrop; 0: resize the whole image (or, with crop_pct, as below) */
    float crop_pct;           /* without the random crop: > 0 keeps the aspect ratio, as the official evaluation
                               * transform: the shorter side resized to size / crop_pct, then a centre crop
                               * (maec_center_crop_box); 0 squashes the whole image to the output size */
    float scale_min, scale_max; /* crop area fraction */
    float ratio_min, ratio_max; /* crop aspect ratio w/h */
    int hflip;                /* flip horizontally with p = 0.5 */
    float mean[3], std[3];    /* out = (x - mean) / std per channel */
    maec_randaug randaug;     /* on 8-bit values after the flip (off: no rounding to 8 bits) */
    float color_jitter;       /* ColorJitter(s, s, s) on 8-bit values after the flip, when RandAugment is off
                               * (timm's create_transform); 0: off */
    float reprob;             /* random erasing after normalizing: probability (0: off) */
} maec_augment;

/* crop on, scale (0.2, 1), ratio (3/4, 4/3), flip on, mean 0, std 1 */
void maec_augment_defaults(maec_augment *a, int c, int h, int w);
int maec_augment_check(const maec_augment *a, maec_error *err);
/* The source box [x0,x1) x [y0,y1) of an h x w image that the official
 * evaluation transform (Resize(int(size / crop_pct)) on the shorter side,
 * bicubic, then CenterCrop(size)) maps onto an oh x ow output; resampling
 * that box to oh x ow is the same arithmetic as resizing then cropping. */
void maec_center_crop_box(int h, int w, int oh, int ow, double crop_pct, double *x0, double *y0, double *x1,
                          double *y1);

/* The RandomResizedCrop box (torchvision's get_params) for an h x w image:
 * top i, left j, height ch, width cw. Draws from *rng. */
void maec_random_resized_crop_box(int h, int w, float scale_min, float scale_max,
                                  float ratio_min, float ratio_max, uint64_t *rng,
                                  int *i, int *j, int *ch, int *cw);

/* timm's RandomErasing in its 'pixel' mode with one box, on an image
 * [c, h, w]: with probability p, a box of 2% to 1/3 of the area with an
 * aspect ratio log-uniform in (0.3, 1/0.3) (up to 10 tries to fit one),
 * filled with N(0, 1) values, one per pixel and channel. Draws from *rng. */
void maec_random_erase(float *img, int c, int h, int w, float p, uint64_t *rng);

/* crop (or resize) -> flip -> channel conversion (gray to RGB: replicate;
 * RGB to gray: 0.299 R + 0.587 G + 0.114 B) -> RandAugment (on the values
 * rounded to 8 bits, as on PIL images; fill colour the mean) -> normalize ->
 * random erasing (a->reprob > 0), into out [a->out_c, a->out_h, a->out_w].
 * Draws from *rng (crop, flip, RandAugment, erasing). */
int maec_augment_apply(const maec_augment *a, const maec_image *src, float *out,
                       uint64_t *rng, maec_error *err);

/* Per-channel mean and (population) standard deviation of the pixels in
 * [0, 1] of max_samples images drawn at random (seeded) from the whole data
 * set, or of all when max_samples <= 0 or >= its size, at native size,
 * converted to out_c channels. Deterministic: the same seed, the same
 * images, summed in index order whatever the thread count. */
int maec_dataset_mean_std(maec_dataset *ds, int out_c, int64_t max_samples, uint64_t seed, float *mean,
                          float *std, maec_error *err);

/* ------------------------------------------------------------------ loader */

typedef struct maec_loader maec_loader;

typedef struct {
    int batch;       /* images per batch */
    int threads;     /* worker threads; 0: work in the caller of next() */
    uint64_t seed;
    int shuffle;     /* a new permutation every epoch */
    int drop_last;   /* skip the partial last batch of an epoch */
    maec_augment aug;
    int prefetch;    /* batches prepared ahead (<= 0: 4) */
    /* Data parallel: this process's share of each epoch, as PyTorch's
     * DistributedSampler: of the epoch's permutation (padded to a multiple
     * of world by repeating its start) process `rank` takes the positions
     * rank, rank + world, ... An image's augmentation is drawn from (seed,
     * epoch, its position in the whole epoch), and with drop_last an epoch
     * has floor(N / (world * batch)) batches: so `world` processes with
     * batch b see, between them, exactly what one process with batch
     * world * b sees. world <= 1: everything (rank 0). */
    int rank, world;
} maec_loader_opts;

/* batch 1, 1 thread, seed 0, shuffle on, drop_last off, prefetch 4,
 * maec_augment_defaults(c, h, w) */
void maec_loader_defaults(maec_loader_opts *o, int c, int h, int w);

/* The order of epoch e is a Fisher-Yates permutation from
 * rng_derive(seed, e, 0, 0) (identity without shuffle); the sample at
 * position k of epoch e is augmented with rng_derive(seed, e, k, 1). The
 * batches do not depend on the thread count or scheduling. The data set
 * must outlive the loader. One consumer thread calls next/seek/free. */
int maec_loader_create(maec_dataset *ds, const maec_loader_opts *o, maec_loader **out,
                       maec_error *err);
/* The next batch, in order, epoch after epoch: images [batch, out_c, out_h,
 * out_w], labels [batch] (may be NULL), *n_out images (smaller than batch
 * only for the last batch of an epoch without drop_last). An error while
 * preparing the batch is returned here; the position then stays at that
 * batch. */
int maec_loader_next(maec_loader *l, float *images, int *labels, int *n_out, maec_error *err);
/* position of the next batch next() returns */
void maec_loader_position(const maec_loader *l, int64_t *epoch, int64_t *batch_in_epoch);
/* continue as an uninterrupted run would from this position */
int maec_loader_seek(maec_loader *l, int64_t epoch, int64_t batch_in_epoch, maec_error *err);
int64_t maec_loader_batches_per_epoch(const maec_loader *l);
/* total seconds next() spent waiting for data */
double maec_loader_wait_seconds(const maec_loader *l);
/* stops and joins the workers (also mid-epoch) */
void maec_loader_free(maec_loader *l);

/* ------------------------------------------------------------------ evaluation */

/* An encoder evaluated on a data set as the maec command does it: every
 * image in order under the official evaluation transform (the shorter side
 * resized to size / crop_pct, bicubic, a centre crop; no augmentation),
 * normalized with mean/std, in batches of `batch` read by `workers` loader
 * threads. */

/* The normalization of a model's "maec_data" metadata (meta_json, may be
 * NULL); else, for a 3-channel model from a file (from_file: an official
 * or timm checkpoint), ImageNet's mean and std (*imagenet set to 1, so that
 * the caller can say so); else the per-channel mean and std of 10000
 * images drawn (seed 0) from ds. */
int maec_eval_normalization(const char *meta_json, maec_dataset *ds, int C, int from_file, float *mean, float *std,
                            int *imagenet, maec_error *err);
/* mean and std of C channels from {"mean":[...],"std":[...]}: 0, or -1
 * when not so (std must be > 0) */
int maec_parse_norm_json(const char *js, int C, float *mean, float *std);
/* The evaluation transform's crop_pct, process-wide: the official rule
 * (224/256 for inputs up to 224, else 1) unless set (0: the rule again). */
void maec_eval_set_crop_pct(double crop_pct);
double maec_eval_crop_pct(int h, int w);
/* Features [N, D] of every image (c != NULL: maec_classifier_features of
 * the given kind; c == NULL: the normalized pixels, D = C*H*W with C, H, W
 * from shape[3]) and labels [N] (-1 where the data set has none); both
 * malloc'd. */
int maec_eval_features(maec_classifier *c, maec_dataset *ds, int feature, const int shape[3], const float *mean,
                       const float *std, int batch, int workers, float **feat, int **labels, int64_t *n, int *dim,
                       maec_error *err);
/* Every image's tokens after `layer` blocks (-1: all), through the final
 * norm or not; kind 0 the class token [D], 1 the mean of the patch tokens
 * [D], 2 the patch tokens [L*D], 3 the last block's attention
 * probabilities [heads * T * T]; *per the floats per image; malloc'd. */
int maec_eval_tokens(maec_classifier *c, maec_dataset *ds, const float *mean, const float *std, int batch,
                     int workers, int layer, int final_norm, int kind, float **feat, int **labels, int64_t *n_out,
                     int *per, maec_error *err);
/* How many images have their label as the top-1 logit (*correct1) and
 * among the topk largest (*correctk, if not NULL); an unlabelled image
 * counts as wrong. logits != NULL: every image's logits [N, K] and labels
 * [N] too (malloc'd). */
int maec_eval_classify(maec_classifier *c, maec_dataset *ds, const float *mean, const float *std, int batch,
                       int workers, int topk, int64_t *correct1, int64_t *correctk, float **logits, int **labels,
                       maec_error *err);
/* the top-1 accuracy in [0, 1] */
int maec_eval_top1(maec_classifier *c, maec_dataset *ds, const float *mean, const float *std, int batch, int workers,
                   double *top1, maec_error *err);
/* k-NN top-1 of frozen features (maec_knn_top1): train as the memory,
 * test as the queries */
int maec_eval_knn(maec_classifier *c, maec_dataset *train, maec_dataset *test, int feature, int k, float T,
                  const float *mean, const float *std, int batch, int workers, double *top1, maec_error *err);
/* the same for the encoder of an MAE model: class token, k 20, T 0.07,
 * batches of 256 (pretrain --knn-every) */
int maec_eval_knn_model(const maec_model *m, maec_dataset *train, maec_dataset *test, const float *mean,
                        const float *std, int workers, double *top1, maec_error *err);

#endif
