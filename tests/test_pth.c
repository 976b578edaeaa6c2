/* PyTorch checkpoints (.pth) read without Python, against the files
 * tests/reference/pth_ref.py saved with torch.save (tests/fixtures/pth/):
 * the tensors must come out with the same names, shapes and bits as PyTorch
 * holds them; anything else must be a clean error. */
#define _GNU_SOURCE /* memmem */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "maec.h"
#include "test.h"
#include "util.h"

#define FIX "tests/fixtures/pth/"

static const unsigned char *bytes(const st_file *f, int i) { return (const unsigned char *)f->buf + f->data_start + f->e[i].begin; }

/* every tensor of want is in got under the same name, in the same order, with the same shape and values */
static void same_tensors(const st_file *got, const st_file *want, int as_f32, const char *what)
{
    CHECK(got->n == want->n, "%s: %d tensors, want %d", what, got->n, want->n);
    for (int i = 0; i < want->n && i < got->n; i++) {
        const st_entry *w = &want->e[i], *g = &got->e[i];
        CHECK(!strcmp(g->name, w->name), "%s: tensor %d is '%s', want '%s'", what, i, g->name, w->name);
        int shape_ok = g->ndim == w->ndim;
        for (int d = 0; d < w->ndim && shape_ok; d++) shape_ok = g->shape[d] == w->shape[d];
        CHECK(shape_ok && g->count == w->count, "%s: '%s' has another shape", what, w->name);
        if (!shape_ok || g->count != w->count) continue;
        if (!as_f32) {
            CHECK(!strcmp(g->dtype, w->dtype) && !memcmp(bytes(got, i), bytes(want, i), g->end - g->begin),
                  "%s: '%s' differs (dtype %s, want %s)", what, w->name, g->dtype, w->dtype);
            continue;
        }
        float *a = malloc((g->count + 1) * sizeof(float)), *b = malloc((w->count + 1) * sizeof(float));
        maec_error err = {0};
        int rc = st_read_f32(got, i, a, &err) || st_read_f32(want, i, b, &err);
        CHECK(!rc && !memcmp(a, b, g->count * sizeof(float)), "%s: '%s' values differ %s", what, w->name, err.msg);
        free(a);
        free(b);
    }
}

/* Hugging Face ViTMAE files (tests/reference/hf_ref.py: the c1 model in
 * transformers' names, query/key/value apart, as a save_pretrained folder
 * with model.safetensors or pytorch_model.bin): every official tensor found
 * under its own name, byte for byte; the model loads with its configuration
 * from config.json and equals the official one */
static void test_hf(void)
{
    st_file ref;
    maec_error err = {0};
    if (st_open("tests/fixtures/c1/model.safetensors", &ref, &err)) {
        CHECK(0, "c1 model: %s", err.msg);
        return;
    }
    const char *dirs[2] = {"tests/fixtures/hf", "tests/fixtures/hf_bin"};
    for (int d = 0; d < 2; d++) {
        st_file hf;
        int rc = st_open(dirs[d], &hf, &err);
        CHECK(rc == 0, "%s: %s", dirs[d], err.msg);
        if (rc) continue;
        int bad = 0;
        for (int i = 0; i < ref.n; i++) {
            int k = st_find(&hf, ref.e[i].name);
            if (k < 0 || hf.e[k].count != ref.e[i].count || hf.e[k].ndim != ref.e[i].ndim) {
                printf("  %s: '%s' missing or of another shape\n", dirs[d], ref.e[i].name);
                bad++;
                continue;
            }
            float *a = malloc((hf.e[k].count + 1) * sizeof(float)), *b = malloc((ref.e[i].count + 1) * sizeof(float));
            if (st_read_f32(&hf, k, a, &err) || st_read_f32(&ref, i, b, &err) ||
                memcmp(a, b, ref.e[i].count * sizeof(float))) {
                printf("  %s: '%s' differs\n", dirs[d], ref.e[i].name);
                bad++;
            }
            free(a), free(b);
        }
        CHECK(bad == 0, "%s: %d of %d official tensors missing or different", dirs[d], bad, ref.n);
        CHECK(hf.n == ref.n, "%s: %d tensors, want the %d official ones", dirs[d], hf.n, ref.n);
        st_close(&hf);
        maec_model *m1 = NULL, *m2 = NULL;
        rc = maec_model_load(dirs[d], NULL, &m1, &err);
        CHECK(rc == 0, "load %s as a model: %s", dirs[d], err.msg);
        int rc2 = maec_model_load("tests/fixtures/c1/model.safetensors", NULL, &m2, &err);
        if (!rc && !rc2) {
            const maec_config *c1 = maec_model_config(m1), *c2 = maec_model_config(m2);
            CHECK(c1->heads == c2->heads && c1->dec_heads == c2->dec_heads && c1->depth == c2->depth &&
                      c1->dec_dim == c2->dec_dim && c1->img_h == c2->img_h && c1->mlp_ratio == c2->mlp_ratio,
                  "%s: the configuration from config.json differs from the official model's", dirs[d]);
            size_t n = 0;
            for (int i = 0; i < maec_model_num_tensors(m2); i++) n += maec_model_tensor(m2, i)->size;
            double e = rel_err(maec_model_params(m1), maec_model_params(m2), n);
            CHECK(e == 0, "%s: the loaded parameters differ from the official model's: rel err %.3g", dirs[d], e);
            printf("  %s: %d tensors mapped, parameters rel err %.2g\n", dirs[d], ref.n, e);
        }
        maec_model_free(m1);
        maec_model_free(m2);
    }
    st_close(&ref);
}

int main(int argc, char **argv)
{
    (void)argc;
    test_on_command_kernels(argv);
    if (test_make_dir("pth")) return 1;
    maec_error err = {0};
    st_file pth, ref;

    /* 1. the official checkpoint dict: "model" is read, the optimizer, scaler and args are not */
    int rc = st_open(FIX "c1.pth", &pth, &err);
    CHECK(rc == 0, "c1.pth: %s", err.msg);
    int rc2 = st_open("tests/fixtures/c1/model.safetensors", &ref, &err);
    CHECK(rc2 == 0, "c1 model: %s", err.msg);
    if (!rc && !rc2) {
        same_tensors(&pth, &ref, 0, "c1.pth");
        CHECK(st_find(&pth, "optimizer") < 0 && st_find(&pth, "state.0.exp_avg") < 0, "optimizer tensors read");
        CHECK(pth.nmeta == 0, "c1.pth: %d metadata entries", pth.nmeta);
    }
    if (!rc) st_close(&pth);
    if (!rc2) st_close(&ref);

    /* the same model through maec_model_load, heads from the hint as --heads gives them */
    maec_config hint = {0};
    hint.heads = 2;
    hint.dec_heads = 2;
    maec_model *a = NULL, *b = NULL;
    rc = maec_model_load(FIX "c1.pth", &hint, &a, &err);
    CHECK(rc == 0, "load c1.pth: %s", err.msg);
    rc2 = maec_model_load("tests/fixtures/c1/model.safetensors", NULL, &b, &err);
    CHECK(rc2 == 0, "load c1 model: %s", err.msg);
    if (!rc && !rc2) {
        CHECK(!memcmp(maec_model_config(a), maec_model_config(b), sizeof(maec_config)), "configurations differ");
        CHECK(maec_model_num_floats(a) == maec_model_num_floats(b) &&
                  !memcmp(maec_model_params(a), maec_model_params(b), maec_model_num_floats(a) * sizeof(float)),
              "weights differ");
    }
    maec_model_free(a);
    maec_model_free(b);
    rc = maec_model_load(FIX "c1.pth", NULL, &a, &err);
    CHECK(rc != 0 && strstr(err.msg, "--heads"), "c1.pth without heads: '%s'", err.msg);
    if (!rc) maec_model_free(a);

    /* a fine-tuned ViT (timm's names) as a classifier, as predict and finetune load it */
    maec_classifier *ca = NULL, *cb = NULL;
    rc = maec_classifier_load(FIX "ft.pth", &hint, NULL, 0, &ca, &err);
    CHECK(rc == 0, "classifier ft.pth: %s", err.msg);
    rc2 = maec_classifier_load("tests/fixtures/eval/ft/model.safetensors", NULL, NULL, 0, &cb, &err);
    CHECK(rc2 == 0, "classifier ft model: %s", err.msg);
    if (!rc && !rc2) {
        int nt = maec_classifier_num_tensors(ca);
        const maec_tensor_info *last = nt > 0 ? maec_classifier_tensor(ca, nt - 1) : NULL;
        size_t nf = last ? last->offset + last->size : 0;
        CHECK(!memcmp(maec_classifier_config(ca), maec_classifier_config(cb), sizeof(maec_config)) &&
                  maec_classifier_options(ca)->num_classes == maec_classifier_options(cb)->num_classes &&
                  maec_classifier_options(ca)->global_pool == maec_classifier_options(cb)->global_pool,
              "ft.pth: another classifier configuration");
        CHECK(nt == maec_classifier_num_tensors(cb) && nf > 0 &&
                  !memcmp(maec_classifier_params(ca), maec_classifier_params(cb), nf * sizeof(float)),
              "ft.pth: weights differ");
    }
    maec_classifier_free(ca);
    maec_classifier_free(cb);

    /* 2. every dtype, views, shared storages, a parameter, a "module." prefix; pickle protocols 2 and 4 */
    rc2 = st_open(FIX "mixed_expected.safetensors", &ref, &err);
    CHECK(rc2 == 0, "mixed_expected: %s", err.msg);
    const char *mixed[] = {FIX "mixed.pth", FIX "mixed_p4.pth"};
    for (int k = 0; k < 2 && !rc2; k++) {
        rc = st_open(mixed[k], &pth, &err);
        CHECK(rc == 0, "%s: %s", mixed[k], err.msg);
        if (rc) continue;
        same_tensors(&pth, &ref, 1, mixed[k]);
        int f16 = st_find(&pth, "f16"), bf16 = st_find(&pth, "bf16"), f64 = st_find(&pth, "f64");
        CHECK(f16 >= 0 && !strcmp(pth.e[f16].dtype, "F16") && bf16 >= 0 && !strcmp(pth.e[bf16].dtype, "BF16") &&
                  f64 >= 0 && !strcmp(pth.e[f64].dtype, "F64"),
              "%s: dtypes not kept", mixed[k]);
        CHECK(st_find(&pth, "steps") < 0 && st_find(&pth, "module.f32") < 0, "%s: integer tensor or prefix kept",
              mixed[k]);
        st_close(&pth);
    }
    if (!rc2) st_close(&ref);

    /* 3. a pickled call of os.system is an opaque value: "model" loads, nothing runs */
    rc = st_open(FIX "call.pth", &pth, &err);
    CHECK(rc == 0 && pth.n == 1 && !strcmp(pth.e[0].name, "w") && pth.e[0].count == 4, "call.pth: %s", err.msg);
    if (!rc) st_close(&pth);

    /* 4. refused, each with one clear line */
    struct {
        const char *path, *needle;
    } bad[] = {
        {FIX "legacy.pth", "tools/convert_pth.py"},
        {FIX "notorch.zip", "data.pkl"},
        {FIX "bad_numel.pth", "does not fit its storage"},
        {FIX "bad_view.pth", "does not fit its storage"},
        {FIX "bad_short.pth", "shorter than"},
        {FIX "bad_missing.pth", "missing"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        rc = st_open(bad[k].path, &pth, &err);
        CHECK(rc == MAEC_EFORMAT && strstr(err.msg, bad[k].needle) && !strchr(err.msg, '\n'),
              "%s: rc %d, '%s' (want a format error naming %s)", bad[k].path, rc, err.msg, bad[k].needle);
        if (!rc) st_close(&pth);
    }

    /* 5. a damaged c1.pth: cut short, or one byte changed in a tensor's data (its CRC) or in data.pkl */
    char *file = NULL;
    size_t len = 0;
    rc = read_file(FIX "c1.pth", &file, &len, (size_t)1 << 30, &err);
    CHECK(rc == 0, "read c1.pth: %s", err.msg);
    if (!rc) {
        size_t cuts[] = {len - 1, len - 22, len / 2, 200, 30, 4};
        for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
            test_write_bytes(test_path("cut.pth"), file, cuts[k]);
            rc = st_open(test_path("cut.pth"), &pth, &err);
            CHECK(rc == MAEC_EFORMAT && !strchr(err.msg, '\n'), "cut at %zu: rc %d '%s'", cuts[k], rc, err.msg);
            if (!rc) st_close(&pth);
        }
        /* a byte inside data.pkl and one inside storage 0 (the first weight): each
         * after its local header (30 bytes, then the name and the extra field) */
        const char *names[2] = {"/data.pkl", "/data/0"};
        size_t spots[2] = {0, 0};
        int nspots = 0;
        for (int k = 0; k < 2; k++) {
            const char *nm = memmem(file, len, names[k], strlen(names[k]));
            const char *lh = nm;
            while (lh && lh > file && memcmp(lh, "PK\x03\x04", 4)) lh--;
            if (!lh || memcmp(lh, "PK\x03\x04", 4)) continue;
            const unsigned char *u = (const unsigned char *)lh;
            size_t off = (size_t)(lh - file) + 30 + (size_t)(u[26] | u[27] << 8) + (size_t)(u[28] | u[29] << 8) + 10;
            if (off < len) spots[nspots++] = off;
        }
        CHECK(nspots == 2, "data.pkl or data/0 not found in c1.pth");
        for (int k = 0; k < nspots; k++) {
            char *copy = malloc(len);
            memcpy(copy, file, len);
            copy[spots[k]] ^= 0x5a;
            test_write_bytes(test_path("flip.pth"), copy, len);
            free(copy);
            rc = st_open(test_path("flip.pth"), &pth, &err);
            CHECK(rc == MAEC_EFORMAT && !strchr(err.msg, '\n'), "byte %zu changed: rc %d '%s'", spots[k], rc,
                  err.msg);
            if (!rc) st_close(&pth);
        }
        free(file);
    }

    /* 6. the command line reads it as it reads safetensors */
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s info --heads 2 --decoder-heads 2 %s > %s 2>&1", test_maec_bin(), FIX "c1.pth",
             test_path("info.txt"));
    rc = system(cmd);
    char *out = NULL;
    size_t olen = 0;
    int rr = read_file(test_path("info.txt"), &out, &olen, 1 << 20, &err);
    CHECK(rc == 0 && !rr && strstr(out, "\"embed_dim\":32") && strstr(out, "decoder_pred.weight"),
          "maec info c1.pth: exit %d, %s", rc, rr ? err.msg : out);
    free(out);

    /* maec convert: the .pth as maec's own files, which then load without flags */
    const char *bin = test_maec_bin();
    snprintf(cmd, sizeof cmd, "%s convert %s %s --heads 2 --decoder-heads 2 > /dev/null && %s convert %s %s --heads 2 > /dev/null",
             bin, FIX "c1.pth", test_path("c1.safetensors"), bin, FIX "ft.pth", test_path("ft.safetensors"));
    rc = system(cmd);
    CHECK(rc == 0, "maec convert: exit %d", rc);
    a = b = NULL;
    rc = maec_model_load(test_path("c1.safetensors"), NULL, &a, &err);
    rc2 = maec_model_load("tests/fixtures/c1/model.safetensors", NULL, &b, &err);
    CHECK(!rc && !rc2 && !memcmp(maec_model_config(a), maec_model_config(b), sizeof(maec_config)) &&
              maec_model_num_floats(a) == maec_model_num_floats(b) &&
              !memcmp(maec_model_params(a), maec_model_params(b), maec_model_num_floats(a) * sizeof(float)),
          "converted c1.pth differs from c1's model: %s", err.msg);
    maec_model_free(a);
    maec_model_free(b);
    ca = cb = NULL;
    rc = maec_classifier_load(test_path("ft.safetensors"), NULL, NULL, 0, &ca, &err);
    rc2 = maec_classifier_load("tests/fixtures/eval/ft/model.safetensors", NULL, NULL, 0, &cb, &err);
    if (!rc && !rc2) {
        int nt = maec_classifier_num_tensors(ca);
        const maec_tensor_info *last = maec_classifier_tensor(ca, nt - 1);
        CHECK(nt == maec_classifier_num_tensors(cb) &&
                  !memcmp(maec_classifier_config(ca), maec_classifier_config(cb), sizeof(maec_config)) &&
                  !memcmp(maec_classifier_params(ca), maec_classifier_params(cb), (last->offset + last->size) * sizeof(float)),
              "converted ft.pth differs from the ft classifier");
    } else {
        CHECK(0, "converted ft.pth: %s", err.msg);
    }
    maec_classifier_free(ca);
    maec_classifier_free(cb);
    snprintf(cmd, sizeof cmd, "%s convert %s %s 2> /dev/null", bin, FIX "c1.pth", test_path("none.safetensors"));
    rc = system(cmd);
    CHECK(rc != 0 && access(test_path("none.safetensors"), F_OK) != 0, "convert without --heads: exit %d, or a file left", rc);
    unlink(test_path("c1.safetensors"));
    unlink(test_path("ft.safetensors"));

    unlink(test_path("cut.pth"));
    unlink(test_path("flip.pth"));
    unlink(test_path("info.txt"));
    rmdir(test_dir);
    test_hf();
    TEST_END();
}
