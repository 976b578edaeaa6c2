/* Bad input: every broken model, image or noise file gets a one-line error
 * and a non-zero exit from `maec grad`, with no output file left behind. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/npy.h"
#include "io/safetensors.h"
#include "maec.h"
#include "test.h"

/* run maec grad; returns exit status; stderr goes to test_dir/err.txt */
static int run_grad(const char *model, const char *images, const char *noise, char *msg, size_t msglen)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s grad --model %s --images %s --noise %s --out %s 2>%s >/dev/null",
             test_maec_bin(), model, images, noise, test_path("out.safetensors"), test_path("err.txt"));
    int st = system(cmd);
    FILE *f = fopen(test_path("err.txt"), "r");
    msg[0] = 0;
    if (f) {
        if (!fgets(msg, (int)msglen, f)) msg[0] = 0;
        fclose(f);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static int exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

/* write the model's tensors with one dropped, one renamed or one reshaped */
static void write_variant(maec_model *m, const char *path, const char *drop, const char *extra,
                          const char *reshape)
{
    int n = maec_model_num_tensors(m);
    st_tensor *t = calloc((size_t)n + 1, sizeof *t);
    int k = 0;
    for (int i = 0; i < n; i++) {
        const maec_tensor_info *ti = maec_model_tensor(m, i);
        if (drop && !strcmp(ti->name, drop)) continue;
        t[k].name = ti->name;
        t[k].ndim = ti->ndim;
        for (int d = 0; d < 4; d++) t[k].shape[d] = ti->shape[d];
        if (reshape && !strcmp(ti->name, reshape)) { /* same count, other shape */
            t[k].ndim = 1;
            t[k].shape[0] = (int64_t)ti->size;
        }
        t[k++].data = maec_model_params(m) + ti->offset;
    }
    if (extra) {
        t[k] = t[0];
        t[k++].name = extra;
    }
    maec_error err;
    char *cfg = maec_config_to_json(maec_model_config(m));
    const char *keys[] = {"maec_config"};
    const char *vals[] = {cfg};
    if (st_save(path, t, k, keys, vals, 1, &err)) printf("write_variant: %s\n", err.msg);
    free(cfg);
    free(t);
}

static void copy_truncated(const char *src, const char *dst, long keep)
{
    FILE *a = fopen(src, "rb"), *b = fopen(dst, "wb");
    for (long i = 0; i < keep; i++) {
        int ch = fgetc(a);
        if (ch == EOF) break;
        fputc(ch, b);
    }
    fclose(a);
    fclose(b);
}

static void expect_fail(const char *what, const char *model, const char *images, const char *noise,
                        const char *needle)
{
    char msg[1024];
    unlink(test_path("out.safetensors"));
    int rc = run_grad(model, images, noise, msg, sizeof msg);
    size_t ml = strlen(msg);
    if (ml && msg[ml - 1] == '\n') msg[--ml] = 0;
    CHECK(rc != 0 && rc < 128, "%s: exit status %d (want a clean non-zero exit)", what, rc);
    CHECK(!strncmp(msg, "maec: error: ", 13), "%s: message '%s' is not 'maec: error: ...'", what, msg);
    CHECK(!needle || strstr(msg, needle), "%s: message '%s' does not mention '%s'", what, msg, needle);
    CHECK(!exists(test_path("out.safetensors")), "%s: an output file was left", what);
    printf("  %-28s -> %s\n", what, msg);
}

int main(int argc, char **argv)
{
    (void)argc;
    test_on_command_kernels(argv);
    if (test_make_dir("bad")) return 1;
    maec_config c;
    maec_error err;
    maec_preset("test-tiny", &c, &err);
    maec_model *m;
    maec_model_create(&c, 3, &m, &err);
    maec_model_save(m, test_path("good.safetensors"), &err);
    int B = 2, L = maec_num_patches(&c);
    float *x = calloc((size_t)B * 256, 4), *nz = calloc((size_t)B * L, 4);
    for (int i = 0; i < B * 256; i++) x[i] = (float)(i % 17) / 17.0f;
    for (int i = 0; i < B * L; i++) nz[i] = (float)((i * 7) % L) / L;
    int64_t xs[4] = {B, 1, 16, 16}, ns[2] = {B, L};
    npy_save(test_path("x.npy"), x, 4, xs, &err);
    npy_save(test_path("n.npy"), nz, 2, ns, &err);

    char msg[1024];
    CHECK(run_grad(test_path("good.safetensors"), test_path("x.npy"), test_path("n.npy"), msg, sizeof msg) == 0, "good input fails: %s", msg);
    CHECK(exists(test_path("out.safetensors")), "good input wrote no output");

    write_variant(m, test_path("missing.safetensors"), "blocks.1.mlp.fc2.weight", NULL, NULL);
    expect_fail("missing tensor", test_path("missing.safetensors"), test_path("x.npy"), test_path("n.npy"), "blocks.1.mlp.fc2.weight");
    write_variant(m, test_path("extra.safetensors"), NULL, "head.weight", NULL);
    expect_fail("extra tensor", test_path("extra.safetensors"), test_path("x.npy"), test_path("n.npy"), "unexpected tensor");
    write_variant(m, test_path("shape.safetensors"), NULL, NULL, "blocks.0.attn.proj.weight");
    expect_fail("mis-shaped tensor", test_path("shape.safetensors"), test_path("x.npy"), test_path("n.npy"), "blocks.0.attn.proj.weight");

    struct stat st;
    stat(test_path("good.safetensors"), &st);
    copy_truncated(test_path("good.safetensors"), test_path("trunc.safetensors"), (long)st.st_size - 100);
    expect_fail("truncated data", test_path("trunc.safetensors"), test_path("x.npy"), test_path("n.npy"), NULL);
    copy_truncated(test_path("good.safetensors"), test_path("trunc2.safetensors"), 50);
    expect_fail("truncated header", test_path("trunc2.safetensors"), test_path("x.npy"), test_path("n.npy"), "header");
    /* a header length that claims more than the file has */
    copy_truncated(test_path("good.safetensors"), test_path("lie.safetensors"), (long)st.st_size);
    FILE *f = fopen(test_path("lie.safetensors"), "r+b");
    unsigned char big[8] = {0xff, 0xff, 0xff, 0x00, 0, 0, 0, 0};
    fwrite(big, 1, 8, f);
    fclose(f);
    expect_fail("lying header length", test_path("lie.safetensors"), test_path("x.npy"), test_path("n.npy"), "header length");
    /* JSON that does not parse */
    copy_truncated(test_path("good.safetensors"), test_path("json.safetensors"), (long)st.st_size);
    f = fopen(test_path("json.safetensors"), "r+b");
    fseek(f, 8, SEEK_SET);
    fputc('[', f);
    fclose(f);
    expect_fail("broken JSON header", test_path("json.safetensors"), test_path("x.npy"), test_path("n.npy"), "JSON");
    /* a data offset past the end */
    {
        FILE *g = fopen(test_path("good.safetensors"), "rb");
        unsigned char lenb[8];
        if (fread(lenb, 1, 8, g) != 8) return 1;
        uint64_t hl = 0;
        for (int i = 7; i >= 0; i--) hl = hl << 8 | lenb[i];
        char *hdr = calloc(hl + 1, 1);
        if (fread(hdr, 1, hl, g) != hl) return 1;
        fclose(g);
        char *p = strstr(hdr, "\"data_offsets\":[0,");
        if (p) {
            memcpy(p, "\"data_offsets\":[9", 17); /* [90..] instead of [0..] */
            copy_truncated(test_path("good.safetensors"), test_path("off.safetensors"), (long)st.st_size);
            FILE *h = fopen(test_path("off.safetensors"), "r+b");
            fseek(h, 8, SEEK_SET);
            fwrite(hdr, 1, hl, h);
            fclose(h);
            expect_fail("lying data offsets", test_path("off.safetensors"), test_path("x.npy"), test_path("n.npy"), NULL);
        }
        free(hdr);
    }
    /* a NaN weight */
    maec_model_params(m)[maec_model_tensor(m, maec_model_find(m, "norm.weight"))->offset + 3] = NAN;
    maec_model_save(m, test_path("nan.safetensors"), &err);
    expect_fail("non-finite weight", test_path("nan.safetensors"), test_path("x.npy"), test_path("n.npy"), "non-finite");
    maec_model_params(m)[maec_model_tensor(m, maec_model_find(m, "norm.weight"))->offset + 3] = 1.0f;
    expect_fail("missing model file", test_path("nope.safetensors"), test_path("x.npy"), test_path("n.npy"), "nope.safetensors");

    int64_t xs2[4] = {B, 1, 12, 16};
    npy_save(test_path("x_small.npy"), x, 4, xs2, &err);
    expect_fail("images of the wrong size", test_path("good.safetensors"), test_path("x_small.npy"), test_path("n.npy"), "has shape [2,1,12,16]; the model wants [B,1,16,16]");
    int64_t ns2[2] = {B, L - 1};
    npy_save(test_path("n_short.npy"), nz, 2, ns2, &err);
    expect_fail("noise of the wrong shape", test_path("good.safetensors"), test_path("x.npy"), test_path("n_short.npy"), "has shape [2,15]; the model wants [2,16]");
    int64_t ns3[2] = {B + 1, L};
    float *nz3 = calloc((size_t)(B + 1) * L, 4);
    npy_save(test_path("n_batch.npy"), nz3, 2, ns3, &err);
    expect_fail("noise for another batch", test_path("good.safetensors"), test_path("x.npy"), test_path("n_batch.npy"), "has shape [3,16]; the model wants [2,16]");
    /* a 3-D image array and 1-D noise: the message names every dimension they have */
    int64_t xs3[3] = {B, 16, 16}, ns1[1] = {B * L};
    npy_save(test_path("x_3d.npy"), x, 3, xs3, &err);
    expect_fail("3-D images", test_path("good.safetensors"), test_path("x_3d.npy"), test_path("n.npy"), "has shape [2,16,16]; the model wants [B,1,16,16]");
    npy_save(test_path("n_1d.npy"), nz, 1, ns1, &err);
    expect_fail("1-D noise", test_path("good.safetensors"), test_path("x.npy"), test_path("n_1d.npy"), "has shape [32]; the model wants [2,16]");
    f = fopen(test_path("notnpy.npy"), "wb");
    fputs("hello, not an array", f);
    fclose(f);
    expect_fail("images not .npy", test_path("good.safetensors"), test_path("notnpy.npy"), test_path("n.npy"), "not a .npy");
    copy_truncated(test_path("x.npy"), test_path("x_trunc.npy"), 200);
    expect_fail("truncated images", test_path("good.safetensors"), test_path("x_trunc.npy"), test_path("n.npy"), "size");

    /* an encoder-only checkpoint (as the released pretrain weights) loads,
       and grad refuses it with a clear message */
    {
        int n = maec_model_num_tensors(m), k = 0;
        st_tensor *t = calloc((size_t)n, sizeof *t);
        for (int i = 0; i < n; i++) {
            const maec_tensor_info *ti = maec_model_tensor(m, i);
            if (!strncmp(ti->name, "decoder", 7) || !strcmp(ti->name, "mask_token")) continue;
            t[k].name = ti->name;
            t[k].ndim = ti->ndim;
            for (int d = 0; d < 4; d++) t[k].shape[d] = ti->shape[d];
            t[k++].data = maec_model_params(m) + ti->offset;
        }
        st_save(test_path("enc.safetensors"), t, k, NULL, NULL, 0, &err);
        free(t);
        maec_config hint = {0};
        hint.heads = 2;
        maec_model *e = NULL;
        int rc = maec_model_load(test_path("enc.safetensors"), &hint, &e, &err);
        CHECK(rc == 0 && maec_model_config(e)->dec_depth == 0, "encoder-only file: %s", err.msg);
        maec_model_free(e);
        rc = maec_model_load(test_path("enc.safetensors"), NULL, &e, &err);
        CHECK(rc != 0 && strstr(err.msg, "--heads"), "heads not in the file: '%s'", err.msg);
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "%s grad --heads 2 --model %s --images %s --noise %s --out %s 2>%s",
                 test_maec_bin(), test_path("enc.safetensors"), test_path("x.npy"), test_path("n.npy"), test_path("out.safetensors"), test_path("err.txt"));
        unlink(test_path("out.safetensors"));
        rc = system(cmd);
        CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 1 && !exists(test_path("out.safetensors")), "grad on an encoder-only file");
    }

    /* a model file without size metadata whose 8x16 image makes a 2x4 patch
       grid (not square): grad takes the height and width from X.npy */
    {
        maec_config c2 = c;
        c2.img_h = 8;
        c2.img_w = 16;
        maec_model *m2 = NULL;
        int rc = maec_model_create(&c2, 5, &m2, &err);
        CHECK(rc == 0, "8x16 model: %s", err.msg);
        if (!rc) {
            int n2 = maec_model_num_tensors(m2);
            st_tensor *t2 = calloc((size_t)n2, sizeof *t2);
            for (int i = 0; i < n2; i++) {
                const maec_tensor_info *ti = maec_model_tensor(m2, i);
                t2[i].name = ti->name;
                t2[i].ndim = ti->ndim;
                for (int d = 0; d < 4; d++) t2[i].shape[d] = ti->shape[d];
                t2[i].data = maec_model_params(m2) + ti->offset;
            }
            st_save(test_path("ns.safetensors"), t2, n2, NULL, NULL, 0, &err); /* no metadata */
            free(t2);
            int L2 = maec_num_patches(&c2);
            int64_t xs4[4] = {B, 1, 8, 16}, ns4[2] = {B, L2};
            npy_save(test_path("x_ns.npy"), x, 4, xs4, &err);
            npy_save(test_path("n_ns.npy"), nz, 2, ns4, &err);
            unlink(test_path("out.safetensors"));
            char cmd[2048];
            snprintf(cmd, sizeof cmd, "%s grad --heads %d --decoder-heads %d --model %s --images %s --noise %s --out %s 2>%s >/dev/null",
                     test_maec_bin(), c2.heads, c2.dec_heads, test_path("ns.safetensors"), test_path("x_ns.npy"),
                     test_path("n_ns.npy"), test_path("out.safetensors"), test_path("err.txt"));
            rc = system(cmd);
            CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 0 && exists(test_path("out.safetensors")),
                  "grad on a non-square model without metadata failed (see %s)", test_path("err.txt"));
            /* images whose grid has another patch count still fail clearly */
            expect_fail("metadata-less model, images of another size", test_path("ns.safetensors"), test_path("x.npy"),
                        test_path("n_ns.npy"), "not a square grid");
        }
        maec_model_free(m2);
    }

    /* bad flags */
    char line[1024];
    snprintf(line, sizeof line, "%s grad --model a --images b --noise c --out d --mask-ratio 1.5 2>/dev/null", test_maec_bin());
    int rc = system(line);
    CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 2, "--mask-ratio 1.5 accepted");
    snprintf(line, sizeof line, "%s grad --bogus 2>/dev/null", test_maec_bin());
    rc = system(line);
    CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 2, "unknown flag accepted");
    snprintf(line, sizeof line, "%s frobnicate 2>/dev/null", test_maec_bin());
    rc = system(line);
    CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 2, "unknown command accepted");

    free(x);
    free(nz);
    free(nz3);
    maec_model_free(m);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", test_dir);
    if (system(cmd)) {}
    TEST_END();
}
