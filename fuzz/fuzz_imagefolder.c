/* The image-folder data set: a folder root/cls/ holding one file, the input
 * (named img.png, or img.jpg when it starts as a JPEG does), opened with
 * maec_dataset_open; then the image is read, its mean and std computed and
 * one training sample made from it (random resized crop, flip, to 8x8). */
#include "fuzz.h"
#include "data/data.h"
#include "image_size.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fuzz_declared_pixels(data, size) > FUZZ_MAX_PIXELS) return 0; /* see image_size.h */
    const char *root = fuzz_path(0, "root");
    const char *cls = fuzz_path(1, "root/cls");
    const char *png = fuzz_path(2, "root/cls/img.png"), *jpg = fuzz_path(3, "root/cls/img.jpg");
    mkdir(root, 0700);
    mkdir(cls, 0700);
    int is_jpeg = size >= 2 && data[0] == 0xFF && data[1] == 0xD8;
    unlink(is_jpeg ? png : jpg);
    fuzz_write(is_jpeg ? jpg : png, data, size);

    maec_dataset *ds = NULL;
    maec_error err = {0};
    int rc = maec_dataset_open(root, "train", &ds, &err);
    fuzz_check_result(rc, &err, "maec_dataset_open");
    if (rc) return 0;
    int c = maec_dataset_channels(ds);
    FUZZ_ASSERT(maec_dataset_size(ds) == 1 && (c == 1 || c == 3), "%lld images of %d channels",
                (long long)maec_dataset_size(ds), c);
    FUZZ_ASSERT(maec_dataset_num_classes(ds) == 1 && maec_dataset_label(ds, 0) == 0, "labels");
    maec_image img = {0};
    rc = maec_dataset_get(ds, 0, &img, &err);
    FUZZ_ASSERT(rc == 0 && img.c == c, "the image that opened does not read: %s", err.msg);
    float mean[3], std[3];
    rc = maec_dataset_mean_std(ds, 3, 0, 0, mean, std, &err);
    FUZZ_ASSERT(rc == 0, "mean/std: %s", err.msg);
    for (int k = 0; k < 3; k++)
        FUZZ_ASSERT(mean[k] >= 0 && mean[k] <= 1 && std[k] >= 0 && std[k] <= 1, "mean %g std %g",
                    (double)mean[k], (double)std[k]);
    maec_augment a;
    maec_augment_defaults(&a, 3, 8, 8);
    float out[3 * 8 * 8];
    uint64_t rng = size;
    rc = maec_augment_apply(&a, &img, out, &rng, &err);
    FUZZ_ASSERT(rc == 0, "augment: %s", err.msg);
    for (int i = 0; i < 3 * 64; i++) FUZZ_ASSERT(out[i] - out[i] == 0, "sample value %d not finite", i);
    maec_image_free(&img);
    maec_dataset_free(ds);
    return 0;
}
