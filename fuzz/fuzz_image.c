/* maec_image_decode_file (PNG or JPEG, told apart by the first bytes) on
 * arbitrary bytes; a decoded image is then resampled to 8x8 (bicubic, the
 * path every training image takes). Built twice, as png and jpeg, each with
 * its own seeds. */
#include "fuzz.h"
#include "data/data.h"
#include "image_size.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fuzz_declared_pixels(data, size) > FUZZ_MAX_PIXELS) return 0; /* see image_size.h */
    const char *path = fuzz_path(0, "t.img");
    fuzz_write(path, data, size);
    maec_image img = {0};
    maec_error err = {0};
    int rc = maec_image_decode_file(path, &img, &err);
    fuzz_check_result(rc, &err, "maec_image_decode_file");
    if (!rc) {
        FUZZ_ASSERT((img.c == 1 || img.c == 3) && img.h > 0 && img.w > 0, "image %dx%dx%d", img.c, img.h, img.w);
        size_t n = (size_t)img.c * img.h * img.w;
        FUZZ_ASSERT(n <= img.cap, "%zu values in a buffer of %zu", n, img.cap);
        for (size_t i = 0; i < n; i++)
            FUZZ_ASSERT(img.data[i] >= 0.0f && img.data[i] <= 1.0f, "pixel %zu is %g", i, (double)img.data[i]);
        float out[3 * 8 * 8];
        rc = maec_resize_bicubic(&img, 0, 0, (float)img.w, (float)img.h, 8, 8, out, &err);
        FUZZ_ASSERT(rc == 0, "resize: %s", err.msg);
        for (int i = 0; i < img.c * 64; i++)
            FUZZ_ASSERT(out[i] >= 0.0f && out[i] <= 1.0f, "resized pixel %d is %g", i, (double)out[i]);
    }
    maec_image_free(&img);
    return 0;
}
