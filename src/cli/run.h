/* A pretraining run's configuration: defaults, JSON, flags. */
#ifndef MAEC_RUN_H
#define MAEC_RUN_H
#include <stddef.h>
#include <stdint.h>
#include "maec.h"

typedef struct {
    maec_config model;
    char preset[64];
    char data_path[1024];
    char eval_path[1024]; /* the k-NN monitor's images ("": the data set's test split) */
    double val_split;     /* or this seeded share of the training images, held out (0: none) */
    int skip_bad;         /* --skip-bad-images */
    char output_dir[1024];
    int epochs, batch_size, accum_iter;
    float blr, lr, min_lr, warmup_epochs, weight_decay;
    uint64_t seed;
    long long max_steps;
    int num_workers;
    int hflip, random_crop;
    float crop_min;
    float color_jitter; /* ColorJitter(s, s, s) after the crop and flip (the paper's Table 1e); 0: off */
    int have_norm;
    float mean[3], std[3];
    int save_every, keep, log_every, recon_every, recon_images;
    int knn_every; /* k-NN top-1 every N epochs (0: never) */
} run_cfg;

void run_cfg_defaults(run_cfg *rc);
char *run_cfg_to_json(const run_cfg *rc);
int run_cfg_from_json(run_cfg *rc, const char *json, maec_error *err);
/* "{"mean":[...],"std":[...]}" for the model's metadata */
void run_cfg_norm_json(const run_cfg *rc, char *buf, size_t len);
/* --mean and --std as given ("0.5" or "0.485,0.456,0.406"): both or
 * neither, std > 0. 0: mean[3], std[3] set (left alone when neither is
 * given); -1: not so. */
int parse_norm_flags(const char *mean_s, const char *std_s, float *mean, float *std);
/* defaults, then --config FILE, then --model PRESET, then the other flags.
 * 0: ok; 1: --help shown; -1: error printed. */
int run_cfg_from_args(const char *cmd, int argc, char **argv, run_cfg *rc, int *threads,
                      const char **resume, maec_error *err);
/* apply the flags of a resumed run onto its saved configuration: only the
 * length of the run and its bookkeeping may change. */
int run_cfg_merge_resume(run_cfg *saved, const run_cfg *given, int argc, char **argv,
                         maec_error *err);
#endif
