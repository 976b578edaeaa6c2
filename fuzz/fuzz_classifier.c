/* maec_classifier_load on arbitrary bytes (as a file): what `maec finetune`,
 * `linprobe`, `knn` and `embed` read, a classifier under timm's names or an
 * MAE model. A classifier that loads must pass maec_config_check, hold
 * finite parameters, have the head its tensors say, and survive a save and
 * reload unchanged. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_path(0, "c.safetensors");
    const char *copy = fuzz_path(1, "copy.safetensors");
    fuzz_write(path, data, size);
    maec_error err = {0};
    maec_classifier *c = NULL;
    int rc = maec_classifier_load(path, NULL, NULL, 0, &c, &err);
    fuzz_check_result(rc, &err, "maec_classifier_load");
    FUZZ_ASSERT((rc == 0) == (c != NULL), "classifier pointer %p with rc %d", (void *)c, rc);
    if (rc) return 0;
    const maec_config *cfg = maec_classifier_config(c);
    FUZZ_ASSERT(maec_config_check(cfg, &err) == 0, "loaded config fails its check: %s", err.msg);
    const maec_classifier_opts *o = maec_classifier_options(c);
    FUZZ_ASSERT(o->num_classes >= 0, "num_classes %d", o->num_classes);
    int n = maec_classifier_num_tensors(c);
    const float *p = maec_classifier_params(c);
    for (int i = 0; i < n; i++) {
        const maec_tensor_info *t = maec_classifier_tensor(c, i);
        for (size_t j = 0; j < t->size; j++)
            FUZZ_ASSERT(p[t->offset + j] - p[t->offset + j] == 0, "tensor %s value %zu not finite", t->name, j);
    }
    rc = maec_classifier_save(c, copy, &err);
    FUZZ_ASSERT(rc == 0, "cannot save a loaded classifier: %s", err.msg);
    maec_classifier *c2 = NULL;
    rc = maec_classifier_load(copy, cfg, o, 0, &c2, &err);
    FUZZ_ASSERT(rc == 0, "cannot reload a saved classifier: %s", err.msg);
    FUZZ_ASSERT(!memcmp(cfg, maec_classifier_config(c2), sizeof *cfg), "config changed by save + load");
    FUZZ_ASSERT(maec_classifier_num_tensors(c2) == n, "tensor count changed by save + load");
    for (int i = 0; i < n; i++) {
        const maec_tensor_info *t = maec_classifier_tensor(c, i), *t2 = maec_classifier_tensor(c2, i);
        FUZZ_ASSERT(!strcmp(t->name, t2->name) && t->size == t2->size, "tensor %d changed", i);
        FUZZ_ASSERT(!memcmp(p + t->offset, maec_classifier_params(c2) + t2->offset, t->size * sizeof(float)),
                    "tensor %s changed by save + load", t->name);
    }
    maec_classifier_free(c2);
    maec_classifier_free(c);
    return 0;
}
