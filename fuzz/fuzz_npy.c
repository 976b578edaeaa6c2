/* npy_load on arbitrary bytes, then the same file as a data set
 * (maec_dataset_open on x.npy, with x_labels.npy when the input holds the
 * separator "LABELS!!": the part after it is the labels file). */
#include "fuzz.h"
#include "data/data.h"
#include "io/npy.h"

static void check_dataset(maec_dataset *ds)
{
    int64_t n = maec_dataset_size(ds);
    int c = maec_dataset_channels(ds), h = 0, w = 0;
    FUZZ_ASSERT(n > 0 && (c == 1 || c == 3), "%lld images of %d channels", (long long)n, c);
    FUZZ_ASSERT(maec_dataset_native_size(ds, &h, &w) == 0 && h > 0 && w > 0, "no size");
    maec_image img = {0};
    maec_error err = {0};
    int64_t pick[2] = {0, n - 1};
    for (int k = 0; k < 2; k++) {
        int rc = maec_dataset_get(ds, pick[k], &img, &err);
        fuzz_check_result(rc, &err, "maec_dataset_get");
        FUZZ_ASSERT(rc == 0, "an in-memory image cannot be read: %s", err.msg);
        FUZZ_ASSERT(img.c == c && img.h == h && img.w == w, "image %lld shape %dx%dx%d", (long long)pick[k],
                    img.c, img.h, img.w);
        for (size_t i = 0; i < (size_t)c * h * w; i++)
            FUZZ_ASSERT(img.data[i] >= -0.011f && img.data[i] <= 1.011f, "pixel %g", (double)img.data[i]);
        int l = maec_dataset_label(ds, pick[k]), nc = maec_dataset_num_classes(ds);
        FUZZ_ASSERT(nc == 0 ? l == -1 : (l >= 0 && l < nc), "label %d of %d classes", l, nc);
    }
    maec_image_free(&img);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_path(0, "x.npy"), *lpath = fuzz_path(1, "x_labels.npy");
    size_t n1, n2;
    const uint8_t *second;
    if (fuzz_split(data, size, "LABELS!!", &n1, &second, &n2))
        fuzz_write(lpath, second, n2);
    else
        unlink(lpath);
    fuzz_write(path, data, n1);

    npy_array a;
    maec_error err = {0};
    int rc = npy_load(path, &a, &err);
    fuzz_check_result(rc, &err, "npy_load");
    if (!rc) {
        size_t count = 1;
        FUZZ_ASSERT(a.ndim >= 0 && a.ndim <= NPY_MAX_DIMS, "%d dims", a.ndim);
        for (int d = 0; d < a.ndim; d++) count *= (size_t)a.shape[d];
        FUZZ_ASSERT(count == a.count && a.data != NULL, "count %zu vs shape %zu", a.count, count);
        for (size_t i = 0; i < a.count; i++) FUZZ_ASSERT(a.data[i] - a.data[i] == 0, "value %zu not finite", i);
        npy_free(&a);
    }
    maec_dataset *ds = NULL;
    memset(&err, 0, sizeof err);
    rc = maec_dataset_open(path, "train", &ds, &err);
    fuzz_check_result(rc, &err, "maec_dataset_open");
    if (!rc) {
        check_dataset(ds);
        maec_dataset_free(ds);
    }
    return 0;
}
