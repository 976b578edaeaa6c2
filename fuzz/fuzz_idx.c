/* MNIST IDX files, raw or gzip'd: the input is an images file, optionally
 * followed by the separator "IDXLABEL" and a labels file; both are written
 * under their MNIST names and opened with maec_dataset_open. */
#include "fuzz.h"
#include "data/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *images = fuzz_path(0, "train-images-idx3-ubyte");
    const char *labels = fuzz_path(1, "train-labels-idx1-ubyte");
    size_t n1, n2;
    const uint8_t *second;
    if (fuzz_split(data, size, "IDXLABEL", &n1, &second, &n2))
        fuzz_write(labels, second, n2);
    else
        unlink(labels);
    fuzz_write(images, data, n1);
    maec_dataset *ds = NULL;
    maec_error err = {0};
    int rc = maec_dataset_open(images, "train", &ds, &err);
    fuzz_check_result(rc, &err, "maec_dataset_open");
    if (rc) return 0;
    int64_t n = maec_dataset_size(ds);
    int h = 0, w = 0;
    FUZZ_ASSERT(n > 0 && maec_dataset_channels(ds) == 1, "%lld images", (long long)n);
    FUZZ_ASSERT(maec_dataset_native_size(ds, &h, &w) == 0, "no size");
    maec_image img = {0};
    int64_t pick[2] = {0, n - 1};
    for (int k = 0; k < 2; k++) {
        rc = maec_dataset_get(ds, pick[k], &img, &err);
        FUZZ_ASSERT(rc == 0 && img.h == h && img.w == w && img.c == 1, "image %lld: %s", (long long)pick[k], err.msg);
        int l = maec_dataset_label(ds, pick[k]), nc = maec_dataset_num_classes(ds);
        FUZZ_ASSERT(nc == 0 ? l == -1 : (l >= 0 && l < nc), "label %d of %d classes", l, nc);
    }
    maec_image_free(&img);
    maec_dataset_free(ds);
    return 0;
}
