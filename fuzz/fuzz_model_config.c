/* maec_config_from_json (the "maec_config" metadata of every model file) on
 * arbitrary text, over a preset. A configuration that parses and passes
 * maec_config_check must survive maec_config_to_json and back unchanged. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *js = malloc(size + 1);
    FUZZ_ASSERT(js != NULL, "out of memory");
    memcpy(js, data, size);
    js[size] = 0;
    maec_config c;
    maec_error err = {0};
    FUZZ_ASSERT(maec_preset("test-tiny", &c, &err) == 0, "no preset");
    int r = maec_config_from_json(&c, js, &err);
    free(js);
    fuzz_check_result(r, &err, "maec_config_from_json");
    if (r) return 0;
    r = maec_config_check(&c, &err);
    fuzz_check_result(r, &err, "maec_config_check");
    if (r) return 0;
    char *out = maec_config_to_json(&c);
    FUZZ_ASSERT(out != NULL, "maec_config_to_json failed");
    maec_config back;
    memset(&back, 0, sizeof back);
    r = maec_config_from_json(&back, out, &err);
    FUZZ_ASSERT(r == 0, "its own JSON is refused: %s", err.msg);
    FUZZ_ASSERT(!memcmp(&c, &back, sizeof c), "JSON round trip changes the configuration:\n%s", out);
    FUZZ_ASSERT(maec_num_keep(&c) == maec_num_keep(&back), "kept patches differ");
    free(out);
    return 0;
}
