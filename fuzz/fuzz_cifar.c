/* CIFAR binary batches: the input is opened as a CIFAR-10 batch
 * (data_batch_1.bin), a CIFAR-100 file (train.bin) and a .bin whose kind
 * follows from its size. */
#include "fuzz.h"
#include "data/data.h"

static void open_as(const char *name, const uint8_t *data, size_t size)
{
    const char *path = fuzz_path(0, name);
    fuzz_write(path, data, size);
    maec_dataset *ds = NULL;
    maec_error err = {0};
    int rc = maec_dataset_open(path, "train", &ds, &err);
    fuzz_check_result(rc, &err, "maec_dataset_open");
    unlink(path);
    if (rc) return;
    int64_t n = maec_dataset_size(ds);
    FUZZ_ASSERT(n > 0 && maec_dataset_channels(ds) == 3, "%lld images", (long long)n);
    maec_image img = {0};
    int64_t pick[2] = {0, n - 1};
    for (int k = 0; k < 2; k++) {
        rc = maec_dataset_get(ds, pick[k], &img, &err);
        FUZZ_ASSERT(rc == 0 && img.h == 32 && img.w == 32 && img.c == 3, "image %lld: %s", (long long)pick[k], err.msg);
        int l = maec_dataset_label(ds, pick[k]), nc = maec_dataset_num_classes(ds);
        FUZZ_ASSERT(l >= 0 && l < nc, "label %d of %d classes", l, nc);
    }
    maec_image_free(&img);
    maec_dataset_free(ds);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    open_as("data_batch_1.bin", data, size);
    open_as("train.bin", data, size);
    open_as("batch.bin", data, size);
    return 0;
}
