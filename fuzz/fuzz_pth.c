/* The pickle machine of the .pth reader (src/io/pth.c). The input is the
 * checkpoint's data.pkl; it is packed, with correct CRCs (else libzip would
 * refuse nearly every mutation before the pickle is read), into a zip like
 * torch.save's: archive/data.pkl and the storages archive/data/0 to
 * archive/data/31, each 256 small floats. Then st_open reads the file and
 * what it accepts must keep st_open's promises (st_checks.h). Damaged zip
 * archives themselves are the safetensors target's (it reads .pth too). */
#include "st_checks.h"

#include <zip.h>

enum { NSTORAGE = 32, STORAGE_FLOATS = 256 };

static float storage[STORAGE_FLOATS];

static void add(zip_t *z, const char *name, const void *data, size_t size)
{
    zip_source_t *s = zip_source_buffer(z, data, size, 0);
    FUZZ_ASSERT(s != NULL, "zip source for %s", name);
    zip_int64_t i = zip_file_add(z, name, s, ZIP_FL_OVERWRITE);
    FUZZ_ASSERT(i >= 0, "zip add %s: %s", name, zip_strerror(z));
    FUZZ_ASSERT(zip_set_file_compression(z, (zip_uint64_t)i, ZIP_CM_STORE, 0) == 0, "store %s", name);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int k = 0; k < STORAGE_FLOATS; k++) storage[k] = (float)(k - 128) / 64.0f;
    const char *path = fuzz_path(0, "t.pth");
    unlink(path);
    int zerr = 0;
    zip_t *z = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &zerr);
    FUZZ_ASSERT(z != NULL, "zip_open: %d", zerr);
    add(z, "archive/data.pkl", data, size);
    add(z, "archive/version", "3\n", 2);
    char names[NSTORAGE][32];
    for (int k = 0; k < NSTORAGE; k++) {
        snprintf(names[k], sizeof names[k], "archive/data/%d", k);
        add(z, names[k], storage, sizeof storage);
    }
    FUZZ_ASSERT(zip_close(z) == 0, "zip_close: %s", zip_strerror(z));
    st_file f;
    maec_error err = {0};
    int rc = st_open(path, &f, &err);
    fuzz_check_result(rc, &err, "st_open");
    if (rc) return 0;
    fuzz_check_st_file(&f);
    st_close(&f);
    return 0;
}
