/* Writes the seed corpus of every fuzz target into fuzz/corpus/<target>/:
 * small valid files made with maec itself (models, checkpoints, .npy,
 * config JSON), libpng and libjpeg (images), by hand (IDX, CIFAR), and the
 * pickles of the torch.save files among the test fixtures (.pth).
 * Run from the repository root: build/fuzz/make_seeds (make fuzz-seeds). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jpeglib.h>
#include <png.h>
#include <zip.h>
#include <zlib.h>

#include "cli/run.h"
#include "io/npy.h"
#include "io/safetensors.h"
#include "maec.h"

static char path_buf[512];

static const char *seed(const char *target, const char *name)
{
    char dir[256];
    snprintf(dir, sizeof dir, "fuzz/corpus/%s", target);
    mkdir("fuzz/corpus", 0755);
    mkdir(dir, 0755);
    snprintf(path_buf, sizeof path_buf, "%s/%s", dir, name);
    return path_buf;
}

static void die(const char *what, const maec_error *err)
{
    fprintf(stderr, "make_seeds: %s: %s\n", what, err ? err->msg : "failed");
    exit(1);
}

static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n) die(path, NULL);
    fclose(f);
}

static unsigned char *read_bytes(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) die(path, NULL);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    rewind(f);
    unsigned char *b = malloc(*n + 1);
    if (!b || fread(b, 1, *n, f) != *n) die(path, NULL);
    fclose(f);
    return b;
}

/* a file made of a, the separator, then b */
static void write_pair(const char *path, const void *a, size_t na, const char *sep, const void *b, size_t nb)
{
    FILE *f = fopen(path, "wb");
    if (!f) die(path, NULL);
    fwrite(a, 1, na, f);
    fwrite(sep, 1, strlen(sep), f);
    fwrite(b, 1, nb, f);
    fclose(f);
}

/* ------------------------------------------------------------ models */

/* a copy of a safetensors file with its checksums blanked out (the same
 * length in spaces): the fuzzer can then change the header and still reach
 * the parsing behind the checksum, as in files from before checksums */
static void strip_checksums(const char *src, const char *dst)
{
    size_t n;
    unsigned char *b = read_bytes(src, &n);
    const char *keys[2] = {",\"crc32\":\"", ",\"header_crc32\":\""};
    for (int k = 0; k < 2; k++) {
        size_t kl = strlen(keys[k]);
        for (size_t i = 8; i + kl + 9 <= n; i++)
            if (!memcmp(b + i, keys[k], kl)) {
                memset(b + i, ' ', kl + 9);
                break;
            }
    }
    write_bytes(dst, b, n);
    free(b);
}

static maec_config tiny_config(int dec_depth, int norm_pix)
{
    maec_config c;
    memset(&c, 0, sizeof c);
    c.img_h = c.img_w = 8;
    c.in_chans = 1;
    c.patch = 4;
    c.dim = 8;
    c.depth = 1;
    c.heads = 2;
    c.dec_dim = 8;
    c.dec_depth = dec_depth;
    c.dec_heads = 2;
    c.mlp_ratio = 1;
    c.mask_ratio = 0.5;
    c.norm_pix_loss = norm_pix;
    return c;
}

static void model_seeds(void)
{
    maec_error err;
    maec_model *m;
    maec_config c = tiny_config(1, 0);
    if (maec_model_create(&c, 1, &m, &err)) die("model", &err);
    maec_model_set_meta(m, "maec_data", "{\"mean\":[0.5,0.5,0.5],\"std\":[0.25,0.25,0.25]}");
    const char *targets[2] = {"safetensors", "model_load"};
    for (int t = 0; t < 2; t++) {
        if (maec_model_save(m, seed(targets[t], "tiny_model.safetensors"), &err)) die("save", &err);
        maec_model_set_step(m, 3);
        if (maec_checkpoint_save(m, seed(targets[t], "tiny_checkpoint.safetensors"), "{\"epochs\":1}", &err))
            die("checkpoint", &err);
    }
    maec_model_free(m);
    for (int t = 0; t < 2; t++) {
        char src[512];
        snprintf(src, sizeof src, "%s", seed(targets[t], "tiny_checkpoint.safetensors"));
        strip_checksums(src, seed(targets[t], "tiny_checkpoint_no_crc.safetensors"));
        snprintf(src, sizeof src, "%s", seed(targets[t], "tiny_model.safetensors"));
        strip_checksums(src, seed(targets[t], "tiny_model_no_crc.safetensors"));
    }
    c = tiny_config(0, 0); /* encoder only */
    if (maec_model_create(&c, 2, &m, &err)) die("model", &err);
    if (maec_model_save(m, seed("model_load", "encoder_only.safetensors"), &err)) die("save", &err);
    maec_model_free(m);
    c = tiny_config(1, 1);
    c.mask_token_in_encoder = 1;
    c.mask_strategy = MAEC_MASK_GRID;
    c.mask_ratio = 0.75; /* the only ratio grid masking honours */
    if (maec_model_create(&c, 3, &m, &err)) die("model", &err);
    if (maec_model_save(m, seed("model_load", "normpix_grid.safetensors"), &err)) die("save", &err);
    maec_model_free(m);

    /* every dtype, hand-written (st_save writes F32 only) */
    const char *hdr = "{\"__metadata__\":{\"format\":\"pt\"},"
                      "\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]},"
                      "\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[4,8]},"
                      "\"c\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[8,16]},"
                      "\"d\":{\"dtype\":\"I8\",\"shape\":[2,2],\"data_offsets\":[16,20]},"
                      "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[20,20]}}";
    size_t hl = strlen(hdr), padded = (hl + 7) & ~(size_t)7;
    unsigned char file[512] = {0};
    for (int i = 0; i < 8; i++) file[i] = (unsigned char)(padded >> (8 * i));
    memcpy(file + 8, hdr, hl);
    memset(file + 8 + hl, ' ', padded - hl);
    unsigned char data[20] = {0x00, 0x3c, 0x01, 0x80, 0x80, 0x3f, 0x00, 0xc0, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 1, 2, 3, 4};
    memcpy(file + 8 + padded, data, sizeof data);
    write_bytes(seed("safetensors", "dtypes.safetensors"), file, 8 + padded + sizeof data);
}

/* classifier files as `maec finetune` writes them, and an MAE model (which
 * maec_classifier_load turns into a classifier) */
static void classifier_seeds(void)
{
    maec_error err;
    maec_config c = tiny_config(0, 0);
    struct { int classes, pool; const char *name; } kinds[] = {
        {3, 1, "global_pool.safetensors"}, {2, 0, "cls_token.safetensors"}, {0, 1, "features_only.safetensors"}};
    for (int k = 0; k < 3; k++) {
        maec_classifier_opts o;
        maec_classifier_defaults(&o);
        o.num_classes = kinds[k].classes;
        o.global_pool = kinds[k].pool;
        maec_classifier *m;
        if (maec_classifier_create(&c, NULL, &o, (uint64_t)k + 1, &m, &err)) die("classifier", &err);
        if (maec_classifier_save(m, seed("classifier", kinds[k].name), &err)) die("save", &err);
        maec_classifier_free(m);
    }
    maec_model *m;
    c = tiny_config(1, 0);
    if (maec_model_create(&c, 4, &m, &err)) die("model", &err);
    if (maec_model_save(m, seed("classifier", "mae_model.safetensors"), &err)) die("save", &err);
    maec_model_free(m);
    /* a linear probe as `maec linprobe --model` writes it: the encoder with
     * its final norm, head.0 (BatchNorm running statistics), head.1 */
    c = tiny_config(0, 0);
    maec_classifier_opts o;
    maec_classifier_defaults(&o);
    o.num_classes = 0;
    o.global_pool = 0;
    maec_classifier *e;
    if (maec_classifier_create(&c, NULL, &o, 9, &e, &err)) die("probe encoder", &err);
    int n = maec_classifier_num_tensors(e), D = c.dim, K = 3;
    st_tensor t[64];
    if (n + 4 > 64) die("probe: too many tensors", &err);
    for (int i = 0; i < n; i++) {
        const maec_tensor_info *ti = maec_classifier_tensor(e, i);
        t[i] = (st_tensor){ti->name, ti->ndim, {ti->shape[0], ti->shape[1], ti->shape[2], ti->shape[3]},
                           maec_classifier_params(e) + ti->offset};
    }
    static float mean[64], var[64], w[3 * 64], b[3];
    for (int j = 0; j < D && j < 64; j++) mean[j] = 0.01f * (float)j, var[j] = 0.5f + 0.01f * (float)j;
    for (int j = 0; j < K * D && j < 3 * 64; j++) w[j] = 0.001f * (float)(j % 17) - 0.008f;
    t[n++] = (st_tensor){"head.0.running_mean", 1, {D}, mean};
    t[n++] = (st_tensor){"head.0.running_var", 1, {D}, var};
    t[n++] = (st_tensor){"head.1.weight", 2, {K, D}, w};
    t[n++] = (st_tensor){"head.1.bias", 1, {K}, b};
    char *cfg = maec_config_to_json(&c);
    const char *keys[3] = {"format", "maec_config", "maec_probe"}, *vals[3] = {"pt", cfg, "{\"feature\":\"cls\"}"};
    if (D > 64 || st_save(seed("classifier", "linprobe.safetensors"), t, n, keys, vals, 3, &err)) die("probe", &err);
    free(cfg);
    maec_classifier_free(e);
}

/* ------------------------------------------------------------ .npy */

static void npy_u8(const char *path, const char *shape, const unsigned char *data, size_t n, int version)
{
    char dict[128];
    int dl = snprintf(dict, sizeof dict, "{'descr': '|u1', 'fortran_order': False, 'shape': %s, }", shape);
    size_t pre = version == 1 ? 10 : 12, total = pre + (size_t)dl + 1, pad = (64 - total % 64) % 64;
    size_t hlen = (size_t)dl + pad + 1;
    FILE *f = fopen(path, "wb");
    unsigned char p[12] = {0x93, 'N', 'U', 'M', 'P', 'Y', (unsigned char)version, 0,
                           (unsigned char)(hlen & 255), (unsigned char)(hlen >> 8), 0, 0};
    fwrite(p, 1, pre, f);
    fwrite(dict, 1, (size_t)dl, f);
    for (size_t i = 0; i < pad; i++) fputc(' ', f);
    fputc('\n', f);
    fwrite(data, 1, n, f);
    fclose(f);
}

static void npy_seeds(void)
{
    maec_error err;
    float x[2 * 1 * 4 * 4];
    for (int i = 0; i < 32; i++) x[i] = (float)(i % 9) / 8.0f;
    int64_t s4[4] = {2, 1, 4, 4}, s3[3] = {2, 4, 4}, s1[1] = {2};
    if (npy_save(seed("npy", "f32_nchw.npy"), x, 4, s4, &err)) die("npy", &err);
    if (npy_save(seed("npy", "f32_nhw.npy"), x, 3, s3, &err)) die("npy", &err);
    unsigned char u[2 * 3 * 3 * 3];
    for (size_t i = 0; i < sizeof u; i++) u[i] = (unsigned char)(i * 37);
    npy_u8(seed("npy", "u8_nhwc.npy"), "(2, 3, 3, 3)", u, sizeof u, 1);
    npy_u8(seed("npy", "u8_v2.npy"), "(2, 3, 9)", u, 54, 2);
    /* images with labels: x.npy, "LABELS!!", x_labels.npy */
    const char *tmp = "build/fuzz/seed_tmp.npy";
    float lab[2] = {1, 0};
    if (npy_save(tmp, x, 4, s4, &err)) die("npy", &err);
    size_t na, nb;
    unsigned char *a = read_bytes(tmp, &na);
    if (npy_save(tmp, lab, 1, s1, &err)) die("npy", &err);
    unsigned char *b = read_bytes(tmp, &nb);
    write_pair(seed("npy", "with_labels"), a, na, "LABELS!!", b, nb);
    free(a);
    free(b);
    remove(tmp);
}

/* ------------------------------------------------------------ IDX, CIFAR */

static void be32(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16), p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

static void idx_seeds(void)
{
    unsigned char img[16 + 3 * 4 * 5], lab[8 + 3];
    be32(img, 0x803), be32(img + 4, 3), be32(img + 8, 4), be32(img + 12, 5);
    for (int i = 0; i < 60; i++) img[16 + i] = (unsigned char)(i * 11);
    be32(lab, 0x801), be32(lab + 4, 3);
    lab[8] = 0, lab[9] = 9, lab[10] = 4;
    write_pair(seed("idx", "pair"), img, sizeof img, "IDXLABEL", lab, sizeof lab);
    write_bytes(seed("idx", "images_only"), img, sizeof img);
    /* the same, gzip'd */
    const char *tmp[2] = {"build/fuzz/seed_i.gz", "build/fuzz/seed_l.gz"};
    const unsigned char *src[2] = {img, lab};
    size_t len[2] = {sizeof img, sizeof lab};
    unsigned char *gz[2];
    size_t gzn[2];
    for (int k = 0; k < 2; k++) {
        gzFile g = gzopen(tmp[k], "wb9");
        gzwrite(g, src[k], (unsigned)len[k]);
        gzclose(g);
        gz[k] = read_bytes(tmp[k], &gzn[k]);
        remove(tmp[k]);
    }
    write_pair(seed("idx", "pair_gz"), gz[0], gzn[0], "IDXLABEL", gz[1], gzn[1]);
    free(gz[0]);
    free(gz[1]);
}

static void cifar_seeds(void)
{
    static unsigned char ten[2 * 3073], hundred[3074];
    for (int r = 0; r < 2; r++) {
        ten[r * 3073] = (unsigned char)(r * 7);
        for (int i = 1; i < 3073; i++) ten[r * 3073 + i] = (unsigned char)(i * 13 + r);
    }
    hundred[0] = 19, hundred[1] = 99;
    for (int i = 2; i < 3074; i++) hundred[i] = (unsigned char)(i * 5);
    write_bytes(seed("cifar", "cifar10_2"), ten, sizeof ten);
    write_bytes(seed("cifar", "cifar100_1"), hundred, sizeof hundred);
}

/* ------------------------------------------------------------ PNG, JPEG */

static void png_file(const char *path, int w, int h, int color, int depth, int interlace, int trns)
{
    FILE *f = fopen(path, "wb");
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (!f || !png || !info || setjmp(png_jmpbuf(png))) die(path, NULL);
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, color,
                 interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (color == PNG_COLOR_TYPE_PALETTE) {
        png_color pal[4] = {{0, 0, 0}, {255, 0, 0}, {0, 255, 0}, {0, 0, 255}};
        png_set_PLTE(png, info, pal, 4);
        if (trns) {
            png_byte alpha[2] = {0, 128};
            png_set_tRNS(png, info, alpha, 2, NULL);
        }
    }
    png_write_info(png, info);
    int ch = color == PNG_COLOR_TYPE_RGB ? 3 : color == PNG_COLOR_TYPE_RGBA ? 4 : color == PNG_COLOR_TYPE_GRAY_ALPHA ? 2 : 1;
    size_t rowbytes = ((size_t)w * ch * depth + 7) / 8;
    unsigned char *pix = malloc(rowbytes * (size_t)h);
    png_bytep rows[64];
    for (int y = 0; y < h && y < 64; y++) {
        rows[y] = pix + (size_t)y * rowbytes;
        for (size_t i = 0; i < rowbytes; i++)
            rows[y][i] = (unsigned char)((y * 31 + (int)i * 17) & (color == PNG_COLOR_TYPE_PALETTE && depth == 8 ? 3 : 255));
    }
    if (interlace) png_set_interlace_handling(png);
    png_write_image(png, rows);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    free(pix);
    fclose(f);
}

static void jpeg_file(const char *path, int w, int h, int comps, int progressive)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr jerr;
    c.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&c);
    FILE *f = fopen(path, "wb");
    if (!f) die(path, NULL);
    jpeg_stdio_dest(&c, f);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = comps;
    c.in_color_space = comps == 1 ? JCS_GRAYSCALE : comps == 3 ? JCS_RGB : JCS_CMYK;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 50, TRUE);
    if (progressive) jpeg_simple_progression(&c);
    jpeg_start_compress(&c, TRUE);
    unsigned char *row = malloc((size_t)w * comps);
    while (c.next_scanline < c.image_height) {
        for (int i = 0; i < w * comps; i++) row[i] = (unsigned char)(i * 9 + (int)c.next_scanline * 23);
        JSAMPROW r = row;
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    free(row);
    fclose(f);
}

static void image_seeds(void)
{
    png_file(seed("png", "gray8.png"), 5, 3, PNG_COLOR_TYPE_GRAY, 8, 0, 0);
    png_file(seed("png", "gray1.png"), 9, 2, PNG_COLOR_TYPE_GRAY, 1, 0, 0);
    png_file(seed("png", "gray16.png"), 3, 3, PNG_COLOR_TYPE_GRAY, 16, 0, 0);
    png_file(seed("png", "rgb8.png"), 4, 4, PNG_COLOR_TYPE_RGB, 8, 0, 0);
    png_file(seed("png", "rgba_interlaced.png"), 7, 5, PNG_COLOR_TYPE_RGBA, 8, 1, 0);
    png_file(seed("png", "gray_alpha.png"), 3, 2, PNG_COLOR_TYPE_GRAY_ALPHA, 8, 0, 0);
    png_file(seed("png", "palette.png"), 4, 3, PNG_COLOR_TYPE_PALETTE, 8, 0, 0);
    png_file(seed("png", "palette_trns.png"), 4, 3, PNG_COLOR_TYPE_PALETTE, 8, 0, 1);
    jpeg_file(seed("jpeg", "gray.jpg"), 8, 8, 1, 0);
    jpeg_file(seed("jpeg", "rgb.jpg"), 13, 9, 3, 0);
    jpeg_file(seed("jpeg", "rgb_progressive.jpg"), 16, 16, 3, 1);
    jpeg_file(seed("jpeg", "cmyk.jpg"), 8, 8, 4, 0);
    png_file(seed("imagefolder", "rgb.png"), 6, 5, PNG_COLOR_TYPE_RGB, 8, 0, 0);
    png_file(seed("imagefolder", "gray.png"), 12, 4, PNG_COLOR_TYPE_GRAY, 8, 0, 0);
    jpeg_file(seed("imagefolder", "rgb.jpg"), 10, 10, 3, 0);
    jpeg_file(seed("imagefolder", "gray.jpg"), 3, 17, 1, 1);
}

/* ------------------------------------------------------------ JSON */

static void json_seeds(void)
{
    run_cfg rc;
    run_cfg_defaults(&rc);
    char *js = run_cfg_to_json(&rc);
    write_bytes(seed("run_config", "defaults.json"), js, strlen(js));
    free(js);
    rc.have_norm = 1;
    for (int c = 0; c < 3; c++) rc.mean[c] = 0.25f * (float)(c + 1), rc.std[c] = 0.5f;
    rc.max_steps = 40;
    rc.seed = 12345;
    rc.save_every = 4;
    maec_preset("cifar-tiny", &rc.model, NULL);
    js = run_cfg_to_json(&rc);
    write_bytes(seed("run_config", "cifar_norm.json"), js, strlen(js));
    free(js);
    const char *small = "{\"preset\":\"test-tiny\",\"epochs\":2,\"batch_size\":8}";
    write_bytes(seed("run_config", "preset_only.json"), small, strlen(small));

    maec_config c;
    const char *names[3] = {"test-tiny", "vit-base-16", "fmnist-mini"};
    for (int i = 0; i < 3; i++) {
        maec_preset(names[i], &c, NULL);
        if (i == 2) c.mask_strategy = MAEC_MASK_BLOCK, c.norm_pix_loss = 1;
        js = maec_config_to_json(&c);
        char nm[64];
        snprintf(nm, sizeof nm, "%s.json", names[i]);
        write_bytes(seed("model_config", nm), js, strlen(js));
        free(js);
    }
    const char *sq = "{\"img_size\":32,\"patch_size\":8,\"mask_ratio\":0.6,\"mask_strategy\":\"grid\"}";
    write_bytes(seed("model_config", "img_size.json"), sq, strlen(sq));
}

/* ------------------------------------------------------------ .pth */

/* the data.pkl of each torch.save file among the test fixtures (pth target),
 * and the small files whole (safetensors target, which reads .pth too) */
static void pth_seeds(void)
{
    const char *files[] = {"mixed.pth", "mixed_p4.pth", "call.pth", "c1.pth"};
    for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) {
        char path[256], name[64];
        snprintf(path, sizeof path, "tests/fixtures/pth/%s", files[k]);
        int zerr = 0;
        zip_t *z = zip_open(path, ZIP_RDONLY, &zerr);
        if (!z) die(path, NULL);
        zip_int64_t i = -1;
        for (zip_int64_t e = 0; e < zip_get_num_entries(z, 0) && i < 0; e++) {
            const char *nm = zip_get_name(z, (zip_uint64_t)e, 0), *sl = nm ? strchr(nm, '/') : NULL;
            if (sl && !strcmp(sl + 1, "data.pkl")) i = e;
        }
        zip_stat_t st;
        zip_file_t *zf = i >= 0 && !zip_stat_index(z, (zip_uint64_t)i, 0, &st) ? zip_fopen_index(z, (zip_uint64_t)i, 0) : NULL;
        if (!zf) die(path, NULL);
        unsigned char *b = malloc(st.size + 1);
        if (!b || zip_fread(zf, b, st.size) != (zip_int64_t)st.size) die(path, NULL);
        zip_fclose(zf);
        zip_discard(z);
        snprintf(name, sizeof name, "%.*s.pkl", (int)(strlen(files[k]) - 4), files[k]);
        write_bytes(seed("pth", name), b, st.size);
        free(b);
        size_t n;
        unsigned char *whole = read_bytes(path, &n);
        if (n <= 16384) write_bytes(seed("safetensors", files[k]), whole, n);
        free(whole);
    }
}

int main(void)
{
    mkdir("build", 0755);
    mkdir("build/fuzz", 0755);
    model_seeds();
    classifier_seeds();
    npy_seeds();
    idx_seeds();
    cifar_seeds();
    image_seeds();
    json_seeds();
    pth_seeds();
    printf("seeds written to fuzz/corpus/\n");
    return 0;
}
