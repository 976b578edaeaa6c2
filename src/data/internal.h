/* Private to src/data: the data set structure and the format openers. */
#ifndef MAEC_DATA_INTERNAL_H
#define MAEC_DATA_INTERNAL_H

#include <stdint.h>

#include "data/data.h"

/* limits on what a file may claim, checked before anything is allocated */
#define MAEC_MAX_SIDE 65536u
#define MAEC_MAX_PIXELS ((uint64_t)1 << 28)
#define MAEC_MAX_IMAGES ((int64_t)1 << 31)

struct maec_dataset {
    const char *format; /* a string literal */
    char *path;         /* what was opened, for messages */
    int64_t n;
    int c, h, w;        /* h, w: 0 when sizes vary */
    int num_classes;    /* 0: no labels */
    int *labels;        /* [n] or NULL */
    char **class_names; /* [num_classes] (malloc'd) or NULL */

    /* in-memory formats (idx, cifar, npy): n images of c*h*w values */
    void *blob;          /* what to free */
    const uint8_t *u8;   /* uint8 values 0..255, or NULL */
    const float *f32;    /* float values in [0, 1], or NULL */
    int hwc;             /* per image layout: 0 [c,h,w], 1 [h,w,c] */

    /* image folders: n files, decoded on get */
    char **files;
};

maec_dataset *ds_new(const char *format, const char *path);

/* RandAugment's operation op (0..14 in the order of src/data/randaug.c:
 * AutoContrast, Equalize, Invert, Rotate, Posterize, Solarize, SolarizeAdd,
 * Color, Contrast, Brightness, Sharpness, ShearX, ShearY, TranslateX,
 * TranslateY) with its own argument (degrees, bits, threshold, addend,
 * factor, shear, pixels) on an 8-bit image [c, h, w]; tmp holds c*h*w. */
void randaug_op(int op, double arg, uint8_t *img, uint8_t *tmp, int c, int h, int w, const uint8_t *fill);

/* 1 if the (maybe gzip'd) file starts with the IDX images magic */
int ds_is_idx_images_file(const char *path);
int ds_open_idx(maec_dataset *ds, const char *images, const char *labels, maec_error *err);
/* find the split's IDX files in dir: 1 found (paths filled), 0 not */
int ds_find_idx(const char *dir, const char *split, char **images, char **labels);
/* the labels file beside an images file, or NULL */
char *ds_idx_labels_beside(const char *images);

/* 1 if dir holds CIFAR binaries (or their usual subdirectory) */
int ds_is_cifar_dir(const char *dir);
int ds_open_cifar_dir(maec_dataset *ds, const char *dir, int test, maec_error *err);
int ds_open_cifar_file(maec_dataset *ds, const char *file, maec_error *err);

int ds_open_npy(maec_dataset *ds, const char *file, maec_error *err);

int ds_open_folder(maec_dataset *ds, const char *root, int test, maec_error *err);
/* ds's labels re-numbered as the indices of its class names among names[n]
 * (a training split's classes); a class of ds not among them is an error
 * naming it and what (where the names come from) */
int ds_map_labels(maec_dataset *ds, char *const *names, int n, const char *what, maec_error *err);

/* path helpers */
char *path_join(const char *a, const char *b);
int is_dir(const char *p);
int is_file(const char *p);
int ends_with_ci(const char *s, const char *suffix);

int maec_png_decode_file_only(const char *path, maec_image *img, maec_error *err);

#endif
