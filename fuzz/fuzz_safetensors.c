/* st_open on arbitrary bytes, then st_read_f32 over every tensor: what
 * st_open accepts must be safe to read (st_checks.h). */
#include "st_checks.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_path(0, "t.safetensors");
    fuzz_write(path, data, size);
    st_file f;
    maec_error err = {0};
    int rc = st_open(path, &f, &err);
    fuzz_check_result(rc, &err, "st_open");
    if (rc) return 0;
    int zip = size >= 4 && !memcmp(data, "PK\x03\x04", 4); /* read as a .pth */
    FUZZ_ASSERT(zip || f.data_start >= 8, "data start %zu", f.data_start);
    fuzz_check_st_file(&f);
    st_close(&f);
    return 0;
}
