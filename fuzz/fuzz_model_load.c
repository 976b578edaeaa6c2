/* maec_model_load and maec_checkpoint_load on arbitrary bytes (as a file).
 * A model that loads must pass maec_config_check, hold finite parameters,
 * and survive a save and reload unchanged. */
#include "fuzz.h"

static void check_model(maec_model *m, const char *what)
{
    maec_error err = {0};
    const maec_config *c = maec_model_config(m);
    FUZZ_ASSERT(maec_config_check(c, &err) == 0, "%s: loaded config fails its check: %s", what, err.msg);
    size_t n = maec_model_num_floats(m);
    const float *p = maec_model_params(m);
    for (size_t i = 0; i < n; i++) FUZZ_ASSERT(p[i] - p[i] == 0, "%s: param %zu not finite", what, i);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_path(0, "m.safetensors");
    const char *copy = fuzz_path(1, "copy.safetensors");
    fuzz_write(path, data, size);
    maec_error err = {0};
    maec_model *m = NULL;
    int rc = maec_model_load(path, NULL, &m, &err);
    fuzz_check_result(rc, &err, "maec_model_load");
    FUZZ_ASSERT((rc == 0) == (m != NULL), "model pointer %p with rc %d", (void *)m, rc);
    if (!rc) {
        check_model(m, "model");
        /* what we accept we can write and read back, the same */
        rc = maec_model_save(m, copy, &err);
        FUZZ_ASSERT(rc == 0, "cannot save a loaded model: %s", err.msg);
        maec_model *m2 = NULL;
        rc = maec_model_load(copy, maec_model_config(m), &m2, &err);
        FUZZ_ASSERT(rc == 0, "cannot reload a saved model: %s", err.msg);
        FUZZ_ASSERT(!memcmp(maec_model_config(m), maec_model_config(m2), sizeof(maec_config)),
                    "config changed by save + load");
        FUZZ_ASSERT(maec_model_num_floats(m) == maec_model_num_floats(m2), "size changed");
        FUZZ_ASSERT(!memcmp(maec_model_params(m), maec_model_params(m2),
                            maec_model_num_floats(m) * sizeof(float)), "parameters changed by save + load");
        maec_model_free(m2);
        maec_model_free(m);
        m = NULL;
    }
    char *run_json = (char *)1;
    memset(&err, 0, sizeof err);
    rc = maec_checkpoint_load(path, NULL, &m, &run_json, &err);
    fuzz_check_result(rc, &err, "maec_checkpoint_load");
    FUZZ_ASSERT((rc == 0) == (m != NULL), "checkpoint pointer %p with rc %d", (void *)m, rc);
    FUZZ_ASSERT(rc == 0 || run_json == NULL, "run_json left set on failure");
    if (!rc) {
        check_model(m, "checkpoint");
        FUZZ_ASSERT(maec_model_step(m) >= 0, "negative step");
        const float *am = maec_model_adam_m(m), *av = maec_model_adam_v(m);
        for (size_t i = 0; i < maec_model_num_floats(m); i++)
            FUZZ_ASSERT(am[i] - am[i] == 0 && av[i] - av[i] == 0, "moment %zu not finite", i);
        maec_model_free(m);
        free(run_json);
    }
    return 0;
}
