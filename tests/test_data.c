/* Data sets, decoders, resampling, augmentation and the loader, on small files
 * made here in a temporary directory (and on Fashion-MNIST when installed). */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <math.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <png.h>
#include <zlib.h>

#include "data/data.h"
#include "data/internal.h"
#include "io/npy.h"
#include "io/png.h"
#include "maec.h"
#include "photos.h"
#include "test.h"
#include "util.h"

static void mkdirs(const char *name) /* relative to test_dir, one level at a time */
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", test_dir, name);
    for (char *s = p + strlen(test_dir) + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            mkdir(p, 0755);
            *s = '/';
        }
    mkdir(p, 0755);
}

static size_t read_bytes(const char *path, unsigned char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* an IDX file: header (magic + dims) then body; gzip'd when gz */
static void write_idx(const char *path, int gz, uint32_t magic, int ndims, const uint32_t *dims,
                      const unsigned char *body, size_t n)
{
    unsigned char hdr[16];
    put_be32(hdr, magic);
    for (int i = 0; i < ndims; i++) put_be32(hdr + 4 + 4 * i, dims[i]);
    size_t hn = 4 + 4 * (size_t)ndims;
    if (gz) {
        gzFile g = gzopen(path, "wb");
        gzwrite(g, hdr, (unsigned)hn);
        if (n) gzwrite(g, body, (unsigned)n);
        gzclose(g);
    } else {
        FILE *f = fopen(path, "wb");
        fwrite(hdr, 1, hn, f);
        if (n) fwrite(body, 1, n, f);
        fclose(f);
    }
}

static unsigned char idx_pixel(int i, int k) { return (unsigned char)((i * 12 + k) * 7 % 256); }

/* n images of rows x cols with labels i % 3 */
static void make_idx_pair(const char *images, const char *labels, int gz, int n, int rows,
                          int cols)
{
    size_t per = (size_t)rows * cols;
    unsigned char *px = malloc((size_t)n * per), *lb = malloc((size_t)n);
    for (int i = 0; i < n; i++) {
        for (size_t k = 0; k < per; k++) px[i * per + k] = idx_pixel(i, (int)k);
        lb[i] = (unsigned char)(i % 3);
    }
    uint32_t d3[3] = {(uint32_t)n, (uint32_t)rows, (uint32_t)cols}, d1[1] = {(uint32_t)n};
    write_idx(images, gz, 0x803, 3, d3, px, (size_t)n * per);
    if (labels) write_idx(labels, gz, 0x801, 1, d1, lb, (size_t)n);
    free(px);
    free(lb);
}

/* a PNG with libpng directly: any color type and depth; data packed rows */
static void write_png_raw(const char *path, int w, int h, int ctype, int depth,
                          const unsigned char *data, const png_color *pal, int npal)
{
    FILE *f = fopen(path, "wb");
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        return;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, ctype, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (pal) png_set_PLTE(png, info, pal, npal);
    png_write_info(png, info);
    int ch = ctype == PNG_COLOR_TYPE_GRAY || ctype == PNG_COLOR_TYPE_PALETTE ? 1
             : ctype == PNG_COLOR_TYPE_GRAY_ALPHA                       ? 2
             : ctype == PNG_COLOR_TYPE_RGB                              ? 3
                                                                        : 4;
    size_t stride = (size_t)w * ch * (depth / 8);
    for (int y = 0; y < h; y++) png_write_row(png, data + y * stride);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    fclose(f);
}

/* a .npy of uint8 (npy_save writes float32 only) */
static void write_npy_u8(const char *path, int ndim, const int64_t *shape, const unsigned char *d)
{
    char dict[256];
    int n = snprintf(dict, sizeof dict, "{'descr': '|u1', 'fortran_order': False, 'shape': (");
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        n += snprintf(dict + n, sizeof dict - (size_t)n, "%lld, ", (long long)shape[i]);
        count *= (size_t)shape[i];
    }
    n += snprintf(dict + n, sizeof dict - (size_t)n, "), }");
    size_t total = 10 + (size_t)n + 1, pad = (64 - total % 64) % 64, hlen = (size_t)n + pad + 1;
    FILE *f = fopen(path, "wb");
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 255),
                             (unsigned char)(hlen >> 8)};
    fwrite(pre, 1, 10, f);
    fwrite(dict, 1, (size_t)n, f);
    for (size_t i = 0; i < pad; i++) fputc(' ', f);
    fputc('\n', f);
    fwrite(d, 1, count, f);
    fclose(f);
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static float px(const maec_image *im, int c, int y, int x)
{
    return im->data[((size_t)c * im->h + y) * im->w + x];
}

/* the open must fail with a message; prints it */
#define EXPECT_FAIL(call, what)                                                             \
    do {                                                                                    \
        maec_error e_ = {0};                                                                \
        maec_dataset *d_ = NULL;                                                            \
        (void)d_;                                                                           \
        int rc_ = (call);                                                                   \
        CHECK(rc_ != 0 && e_.msg[0], "%s: expected an error (rc %d)", what, rc_);           \
        printf("  %-28s -> %s\n", what, e_.msg);                                            \
        maec_dataset_free(d_);                                                              \
    } while (0)

/* ------------------------------------------------------------------ IDX */

static void test_idx(void)
{
    mkdirs("idx");
    make_idx_pair(test_path("idx/train-images-idx3-ubyte"), test_path("idx/train-labels-idx1-ubyte"), 0, 5, 4, 3);
    make_idx_pair(test_path("idx/t10k-images-idx3-ubyte.gz"), test_path("idx/t10k-labels-idx1-ubyte.gz"), 1, 3,
                  4, 3);
    maec_error err = {0};
    maec_dataset *ds = NULL;
    int rc = maec_dataset_open(test_path("idx"), "train", &ds, &err);
    CHECK(rc == 0, "open idx dir: %s", err.msg);
    if (rc) return;
    int h = 0, w = 0;
    CHECK(!strcmp(maec_dataset_format(ds), "idx"), "format %s", maec_dataset_format(ds));
    CHECK(maec_dataset_size(ds) == 5, "idx train size %lld", (long long)maec_dataset_size(ds));
    CHECK(maec_dataset_channels(ds) == 1, "idx channels");
    CHECK(maec_dataset_native_size(ds, &h, &w) == 0 && h == 4 && w == 3, "idx size %dx%d", h, w);
    CHECK(maec_dataset_num_classes(ds) == 3, "idx classes %d", maec_dataset_num_classes(ds));
    CHECK(!maec_dataset_class_name(ds, 0), "idx files name no classes");
    CHECK(maec_dataset_label(ds, 4) == 1 && maec_dataset_label(ds, 5) == -1, "idx labels");
    maec_image im = {0};
    int exact = 1;
    for (int i = 0; i < 5; i++) {
        rc = maec_dataset_get(ds, i, &im, &err);
        if (rc || im.c != 1 || im.h != 4 || im.w != 3) exact = 0;
        for (int k = 0; k < 12 && !rc; k++)
            if (im.data[k] != (float)idx_pixel(i, k) / 255.0f) exact = 0;
    }
    CHECK(exact, "idx pixels exact");
    CHECK(maec_dataset_get(ds, 5, &im, &err) != 0, "get out of range fails");
    maec_dataset_free(ds);

    rc = maec_dataset_open(test_path("idx"), "test", &ds, &err);
    CHECK(rc == 0 && maec_dataset_size(ds) == 3, "open idx gz test split: %s", err.msg);
    if (!rc) {
        rc = maec_dataset_get(ds, 2, &im, &err);
        CHECK(rc == 0 && im.data[11] == (float)idx_pixel(2, 11) / 255.0f, "gz pixels");
        CHECK(maec_dataset_label(ds, 2) == 2, "gz labels");
    }
    maec_dataset_free(ds);
    /* a path to the images file; labels found beside it */
    rc = maec_dataset_open(test_path("idx/t10k-images-idx3-ubyte.gz"), "train", &ds, &err);
    CHECK(rc == 0 && maec_dataset_size(ds) == 3 && maec_dataset_num_classes(ds) == 3,
          "open idx file: %s", err.msg);
    maec_dataset_free(ds);
    maec_image_free(&im);

    /* bad files */
    mkdirs("badidx");
    unsigned char body[64] = {0};
    uint32_t d3[3] = {5, 4, 3}, d1[1] = {5}, d1b[1] = {4};
    write_idx(test_path("badidx/trunc-images-idx3-ubyte"), 0, 0x803, 3, d3, body, 50);
    EXPECT_FAIL(maec_dataset_open(test_path("badidx/trunc-images-idx3-ubyte"), "train", &d_, &e_),
                "truncated IDX");
    write_idx(test_path("badidx/trunc-images-idx3-ubyte"), 1, 0x803, 3, d3, body, 59);
    EXPECT_FAIL(maec_dataset_open(test_path("badidx/trunc-images-idx3-ubyte"), "train", &d_, &e_),
                "truncated gz IDX");
    write_idx(test_path("badidx/trail-images-idx3-ubyte"), 0, 0x803, 3, d3, body, 61);
    EXPECT_FAIL(maec_dataset_open(test_path("badidx/trail-images-idx3-ubyte"), "train", &d_, &e_),
                "IDX trailing bytes");
    mkdirs("badidx/magic");
    write_idx(test_path("badidx/magic/train-images-idx3-ubyte"), 0, 0x804, 3, d3, body, 60);
    EXPECT_FAIL(maec_dataset_open(test_path("badidx/magic"), "train", &d_, &e_), "IDX wrong magic");
    mkdirs("badidx/count");
    write_idx(test_path("badidx/count/train-images-idx3-ubyte"), 0, 0x803, 3, d3, body, 60);
    write_idx(test_path("badidx/count/train-labels-idx1-ubyte"), 0, 0x801, 1, d1b, body, 4);
    EXPECT_FAIL(maec_dataset_open(test_path("badidx/count"), "train", &d_, &e_), "IDX label count");
    mkdirs("badidx/lmagic");
    write_idx(test_path("badidx/lmagic/train-images-idx3-ubyte"), 0, 0x803, 3, d3, body, 60);
    write_idx(test_path("badidx/lmagic/train-labels-idx1-ubyte"), 0, 0x803, 1, d1, body, 5);
    EXPECT_FAIL(maec_dataset_open(test_path("badidx/lmagic"), "train", &d_, &e_), "IDX labels magic");
    uint32_t huge[3] = {0x7fffffff, 60000, 60000};
    write_idx(test_path("badidx/huge-images-idx3-ubyte"), 0, 0x803, 3, huge, body, 60);
    EXPECT_FAIL(maec_dataset_open(test_path("badidx/huge-images-idx3-ubyte"), "train", &d_, &e_),
                "IDX absurd header");
    test_write_bytes(test_path("badidx/short-images-idx3-ubyte"), "\0\0\x08\x03\0\0", 6);
    EXPECT_FAIL(maec_dataset_open(test_path("badidx/short-images-idx3-ubyte"), "train", &d_, &e_),
                "IDX short header");
    EXPECT_FAIL(maec_dataset_open(test_path("nonexistent"), "train", &d_, &e_), "missing path");
    EXPECT_FAIL(maec_dataset_open(test_path("idx"), "dev", &d_, &e_), "bad split name");
    EXPECT_FAIL(maec_dataset_open(test_path("badidx/count"), "test", &d_, &e_), "IDX split missing");
}

/* ------------------------------------------------------------------ CIFAR */

static unsigned char cifar_px(int i, int k) { return (unsigned char)((i * 31 + k * 5) % 253); }

static void write_cifar(const char *path, int hundred, int first, int n, int bad_label)
{
    size_t rec = 3072 + (hundred ? 2 : 1);
    unsigned char *buf = malloc(rec * (size_t)n);
    for (int r = 0; r < n; r++) {
        unsigned char *p = buf + rec * r;
        int i = first + r;
        if (hundred) {
            p[0] = (unsigned char)(i % 20);
            p[1] = (unsigned char)((i * 7) % 100);
        } else {
            p[0] = (unsigned char)(i % 10);
        }
        if (bad_label) p[0] = p[hundred] = 200;
        for (int k = 0; k < 3072; k++) p[rec - 3072 + k] = cifar_px(i, k);
    }
    test_write_bytes(path, buf, rec * (size_t)n);
    free(buf);
}

static void test_cifar(void)
{
    mkdirs("c10");
    write_cifar(test_path("c10/data_batch_1.bin"), 0, 0, 3, 0);
    write_cifar(test_path("c10/data_batch_2.bin"), 0, 3, 2, 0);
    write_cifar(test_path("c10/test_batch.bin"), 0, 100, 2, 0);
    maec_error err = {0};
    maec_dataset *ds = NULL;
    int rc = maec_dataset_open(test_path("c10"), "train", &ds, &err);
    CHECK(rc == 0, "open cifar10: %s", err.msg);
    if (!rc) {
        int h = 0, w = 0;
        CHECK(!strcmp(maec_dataset_format(ds), "cifar10"), "format %s", maec_dataset_format(ds));
        CHECK(maec_dataset_size(ds) == 5 && maec_dataset_channels(ds) == 3 &&
                  maec_dataset_num_classes(ds) == 10,
              "cifar10 size/channels/classes");
        const char *n9 = maec_dataset_class_name(ds, 9);
        CHECK(n9 && !strcmp(n9, "truck"), "cifar10 class 9 named '%s'", n9 ? n9 : "(none)");
        CHECK(maec_dataset_native_size(ds, &h, &w) == 0 && h == 32 && w == 32, "cifar 32x32");
        maec_image im = {0};
        int exact = 1;
        for (int i = 0; i < 5; i++) {
            if (maec_dataset_get(ds, i, &im, &err) || im.c != 3 || im.h != 32) exact = 0;
            if (maec_dataset_label(ds, i) != i % 10) exact = 0;
            for (int c = 0; c < 3 && exact; c++)
                for (int y = 0; y < 32; y += 7)
                    for (int x = 0; x < 32; x += 5)
                        if (px(&im, c, y, x) != (float)cifar_px(i, c * 1024 + y * 32 + x) / 255.0f)
                            exact = 0;
        }
        CHECK(exact, "cifar10 pixels (CHW) and labels, across two batch files");
        maec_image_free(&im);
    }
    maec_dataset_free(ds);
    rc = maec_dataset_open(test_path("c10"), "test", &ds, &err);
    CHECK(rc == 0 && maec_dataset_size(ds) == 2 && maec_dataset_label(ds, 1) == 101 % 10,
          "cifar10 test split: %s", err.msg);
    maec_dataset_free(ds);
    rc = maec_dataset_open(test_path("c10/data_batch_2.bin"), "train", &ds, &err);
    CHECK(rc == 0 && maec_dataset_size(ds) == 2 && maec_dataset_label(ds, 0) == 3,
          "cifar10 single file: %s", err.msg);
    maec_dataset_free(ds);

    mkdirs("c100");
    write_cifar(test_path("c100/train.bin"), 1, 0, 4, 0);
    write_cifar(test_path("c100/test.bin"), 1, 50, 1, 0);
    FILE *nf = fopen(test_path("c100/fine_label_names.txt"), "w");
    for (int k = 0; nf && k < 100; k++) fprintf(nf, "name%d\r\n", k);
    if (nf) fclose(nf);
    rc = maec_dataset_open(test_path("c100"), "train", &ds, &err);
    CHECK(rc == 0, "open cifar100: %s", err.msg);
    if (!rc) {
        CHECK(!strcmp(maec_dataset_format(ds), "cifar100") && maec_dataset_size(ds) == 4 &&
                  maec_dataset_num_classes(ds) == 100,
              "cifar100 format/size/classes");
        CHECK(maec_dataset_label(ds, 3) == 21, "cifar100 fine label %d", maec_dataset_label(ds, 3));
        const char *n21 = maec_dataset_class_name(ds, 21);
        CHECK(n21 && !strcmp(n21, "name21"), "cifar100 class 21 named '%s' (fine_label_names.txt)",
              n21 ? n21 : "(none)");
        maec_image im = {0};
        rc = maec_dataset_get(ds, 2, &im, &err);
        CHECK(rc == 0 && px(&im, 2, 31, 31) == (float)cifar_px(2, 3071) / 255.0f, "cifar100 pixels");
        maec_image_free(&im);
    }
    maec_dataset_free(ds);
    rc = maec_dataset_open(test_path("c100/test.bin"), "train", &ds, &err);
    CHECK(rc == 0 && maec_dataset_size(ds) == 1 && maec_dataset_label(ds, 0) == 350 % 100,
          "cifar100 single file: %s", err.msg);
    maec_dataset_free(ds);

    mkdirs("cbad");
    unsigned char junk[3000] = {0};
    test_write_bytes(test_path("cbad/data_batch_1.bin"), junk, sizeof junk);
    EXPECT_FAIL(maec_dataset_open(test_path("cbad"), "train", &d_, &e_), "CIFAR bad size");
    write_cifar(test_path("cbad/test_batch.bin"), 0, 0, 2, 1);
    EXPECT_FAIL(maec_dataset_open(test_path("cbad"), "test", &d_, &e_), "CIFAR bad label");
    test_write_bytes(test_path("cbad/other.bin"), junk, sizeof junk);
    EXPECT_FAIL(maec_dataset_open(test_path("cbad/other.bin"), "train", &d_, &e_), "unnamed .bin bad size");
}

/* ------------------------------------------------------------------ images */

#define IW 6
#define IH 5

static unsigned char img_v(int y, int x, int c) { return (unsigned char)((y * 40 + x * 23 + c * 77) % 256); }

static void test_decoders_and_folder(void)
{
    mkdirs("folder/a_gray");
    mkdirs("folder/b_color/sub");
    mkdirs("folder/c_empty_not");
    unsigned char g[IH * IW], rgb[IH * IW * 3], rgba[IH * IW * 4], ga[IH * IW * 2],
        g16[IH * IW * 2], pal[IH * IW];
    png_color colors[4] = {{255, 0, 0}, {0, 128, 0}, {10, 20, 30}, {200, 201, 202}};
    for (int y = 0; y < IH; y++)
        for (int x = 0; x < IW; x++) {
            int k = y * IW + x;
            g[k] = img_v(y, x, 0);
            for (int c = 0; c < 3; c++) rgb[3 * k + c] = rgba[4 * k + c] = img_v(y, x, c);
            rgba[4 * k + 3] = (unsigned char)(x * 50);
            ga[2 * k] = img_v(y, x, 0);
            ga[2 * k + 1] = 7;
            g16[2 * k] = img_v(y, x, 0); /* big-endian: high byte first */
            g16[2 * k + 1] = 0x99;
            pal[k] = (unsigned char)((x + y) % 4);
        }
    write_png_raw(test_path("folder/a_gray/g16.png"), IW, IH, PNG_COLOR_TYPE_GRAY, 16, g16, NULL, 0);
    write_png_raw(test_path("folder/a_gray/gray.png"), IW, IH, PNG_COLOR_TYPE_GRAY, 8, g, NULL, 0);
    write_png_raw(test_path("folder/a_gray/ga.png"), IW, IH, PNG_COLOR_TYPE_GRAY_ALPHA, 8, ga, NULL, 0);
    write_png_raw(test_path("folder/b_color/rgb.png"), IW, IH, PNG_COLOR_TYPE_RGB, 8, rgb, NULL, 0);
    write_png_raw(test_path("folder/b_color/rgba.PNG"), IW, IH, PNG_COLOR_TYPE_RGB_ALPHA, 8, rgba, NULL, 0);
    write_png_raw(test_path("folder/b_color/sub/pal.png"), IW, IH, PNG_COLOR_TYPE_PALETTE, 8, pal, colors, 4);
    /* a smooth 16x16 picture for JPEG, whose loss is then small */
    unsigned char smooth[16 * 16 * 3];
    for (int y = 0; y < 16; y++)
        for (int x = 0; x < 16; x++)
            for (int c = 0; c < 3; c++) smooth[(y * 16 + x) * 3 + c] = (unsigned char)(30 + 6 * x + 4 * y + 20 * c);
    write_jpeg(test_path("folder/b_color/photo.JPG"), 16, 16, 3, smooth);
    test_write_bytes(test_path("folder/b_color/notes.txt"), "hello", 5);
    unsigned char gsmooth[256];
    for (int k = 0; k < 256; k++) gsmooth[k] = (unsigned char)(60 + 8 * (k % 16) + 4 * (k / 16));
    write_jpeg(test_path("folder/c_empty_not/gray.jpeg"), 16, 16, 1, gsmooth);

    maec_error err = {0};
    maec_image im = {0};
    /* decoder: exact values for each PNG kind */
    int rc = maec_image_decode_file(test_path("folder/a_gray/gray.png"), &im, &err);
    int ok = rc == 0 && im.c == 1 && im.h == IH && im.w == IW;
    for (int k = 0; ok && k < IH * IW; k++) ok = im.data[k] == (float)g[k] / 255.0f;
    CHECK(ok, "gray PNG exact: %s", err.msg);
    rc = maec_image_decode_file(test_path("folder/a_gray/g16.png"), &im, &err);
    ok = rc == 0 && im.c == 1;
    for (int k = 0; ok && k < IH * IW; k++) ok = im.data[k] == (float)g[k] / 255.0f;
    CHECK(ok, "16-bit gray PNG -> 8 bits: %s", err.msg);
    rc = maec_image_decode_file(test_path("folder/a_gray/ga.png"), &im, &err);
    ok = rc == 0 && im.c == 1;
    for (int k = 0; ok && k < IH * IW; k++) ok = im.data[k] == (float)g[k] / 255.0f;
    CHECK(ok, "gray+alpha PNG -> gray: %s", err.msg);
    rc = maec_image_decode_file(test_path("folder/b_color/rgb.png"), &im, &err);
    ok = rc == 0 && im.c == 3;
    for (int y = 0; ok && y < IH; y++)
        for (int x = 0; x < IW; x++)
            for (int c = 0; c < 3; c++) ok &= px(&im, c, y, x) == (float)img_v(y, x, c) / 255.0f;
    CHECK(ok, "RGB PNG exact (CHW): %s", err.msg);
    rc = maec_image_decode_file(test_path("folder/b_color/rgba.PNG"), &im, &err);
    ok = rc == 0 && im.c == 3;
    for (int y = 0; ok && y < IH; y++)
        for (int x = 0; x < IW; x++)
            for (int c = 0; c < 3; c++) ok &= px(&im, c, y, x) == (float)img_v(y, x, c) / 255.0f;
    CHECK(ok, "RGBA PNG -> RGB: %s", err.msg);
    rc = maec_image_decode_file(test_path("folder/b_color/sub/pal.png"), &im, &err);
    ok = rc == 0 && im.c == 3;
    for (int y = 0; ok && y < IH; y++)
        for (int x = 0; x < IW; x++) {
            png_color pc = colors[(x + y) % 4];
            ok &= px(&im, 0, y, x) == pc.red / 255.0f && px(&im, 1, y, x) == pc.green / 255.0f &&
                  px(&im, 2, y, x) == pc.blue / 255.0f;
        }
    CHECK(ok, "palette PNG -> RGB: %s", err.msg);
    rc = maec_image_decode_file(test_path("folder/b_color/photo.JPG"), &im, &err);
    double maxd = 0;
    ok = rc == 0 && im.c == 3 && im.h == 16 && im.w == 16;
    for (int y = 0; ok && y < 16; y++)
        for (int x = 0; x < 16; x++)
            for (int c = 0; c < 3; c++) {
                double d = fabs(px(&im, c, y, x) * 255.0 - smooth[(y * 16 + x) * 3 + c]);
                if (d > maxd) maxd = d;
            }
    CHECK(ok && maxd <= 4, "RGB JPEG close to its source (max diff %.1f of 255): %s", maxd, err.msg);
    rc = maec_image_decode_file(test_path("folder/c_empty_not/gray.jpeg"), &im, &err);
    CHECK(rc == 0 && im.c == 1 && fabs(px(&im, 0, 3, 5) * 255.0 - gsmooth[3 * 16 + 5]) <= 4,
          "gray JPEG: %s", err.msg);
    /* maec_png_write / maec_png_read round trip */
    rc = maec_png_write(test_path("w_rgb.png"), rgb, IW, IH, 3, &err);
    CHECK(rc == 0, "png write: %s", err.msg);
    rc = maec_png_read(test_path("w_rgb.png"), &im, &err);
    ok = rc == 0 && im.c == 3 && im.h == IH && im.w == IW;
    for (int y = 0; ok && y < IH; y++)
        for (int x = 0; x < IW; x++)
            for (int c = 0; c < 3; c++) ok &= px(&im, c, y, x) == (float)img_v(y, x, c) / 255.0f;
    CHECK(ok, "png RGB round trip: %s", err.msg);
    rc = maec_png_write(test_path("w_g.png"), g, IW, IH, 1, &err);
    rc = rc ? rc : maec_png_read(test_path("w_g.png"), &im, &err);
    CHECK(rc == 0 && im.c == 1 && im.data[7] == (float)g[7] / 255.0f, "png gray round trip: %s",
          err.msg);
    EXPECT_FAIL(maec_png_write(test_path("w_bad.png"), g, IW, IH, 2, &e_), "png write 2 channels");
    EXPECT_FAIL(maec_png_write(test_path("no/such/dir/x.png"), g, IW, IH, 1, &e_), "png write bad dir");
    CHECK(access(test_path("w_bad.png"), F_OK) != 0, "no file left after a refused write");
    EXPECT_FAIL(maec_png_read(test_path("folder/b_color/photo.JPG"), &im, &e_), "png read of a JPEG");

    /* the folder as a data set */
    maec_dataset *ds = NULL;
    rc = maec_dataset_open(test_path("folder"), "train", &ds, &err);
    CHECK(rc == 0, "open image folder: %s", err.msg);
    if (!rc) {
        int h = 0, w = 0;
        CHECK(!strcmp(maec_dataset_format(ds), "imagefolder"), "format");
        /* a_gray: g16, ga, gray; b_color: photo.JPG, rgb, rgba.PNG, sub/pal; c: gray.jpeg */
        CHECK(maec_dataset_size(ds) == 8, "folder size %lld", (long long)maec_dataset_size(ds));
        CHECK(maec_dataset_num_classes(ds) == 3, "folder classes %d", maec_dataset_num_classes(ds));
        CHECK(maec_dataset_channels(ds) == 1, "first image gray -> 1 channel");
        CHECK(maec_dataset_native_size(ds, &h, &w) == 0 && h == IH && w == IW, "first image size");
        int labels_ok = 1, want[8] = {0, 0, 0, 1, 1, 1, 1, 2};
        for (int i = 0; i < 8; i++) labels_ok &= maec_dataset_label(ds, i) == want[i];
        CHECK(labels_ok, "folder labels in sorted order");
        const char *n0 = maec_dataset_class_name(ds, 0), *n2 = maec_dataset_class_name(ds, 2);
        CHECK(n0 && n2 && !strcmp(n0, "a_gray") && !strcmp(n2, "c_empty_not") && !maec_dataset_class_name(ds, 3) &&
                  !maec_dataset_class_name(ds, -1),
              "folder class names '%s', '%s'", n0 ? n0 : "(none)", n2 ? n2 : "(none)");
        /* index 4 is rgb.png (after photo.JPG: 'p' < 'r'); converted to gray luminance */
        rc = maec_dataset_get(ds, 4, &im, &err);
        float lum = 0.299f * img_v(2, 3, 0) / 255.0f + 0.587f * img_v(2, 3, 1) / 255.0f +
                    0.114f * img_v(2, 3, 2) / 255.0f;
        CHECK(rc == 0 && im.c == 1 && fabsf(px(&im, 0, 2, 3) - lum) < 1e-6f,
              "RGB image of a gray folder -> luminance: %s", err.msg);
        /* index 6 is sub/pal.png (walk order puts sub/ after the class folder) */
        rc = maec_dataset_get(ds, 6, &im, &err);
        CHECK(rc == 0 && im.c == 1 && im.h == IH, "nested file decoded: %s", err.msg);
        rc = maec_dataset_get(ds, 3, &im, &err);
        CHECK(rc == 0 && im.h == 16 && im.w == 16, "images keep their own sizes");
    }
    maec_dataset_free(ds);

    /* train/val split folders; first image RGB -> 3 channels, gray replicated */
    mkdirs("split/train/x");
    mkdirs("split/train/y");
    mkdirs("split/val/x");
    write_png_raw(test_path("split/train/x/1.png"), IW, IH, PNG_COLOR_TYPE_RGB, 8, rgb, NULL, 0);
    write_png_raw(test_path("split/train/y/2.png"), IW, IH, PNG_COLOR_TYPE_GRAY, 8, g, NULL, 0);
    write_png_raw(test_path("split/val/x/1.png"), IW, IH, PNG_COLOR_TYPE_GRAY, 8, g, NULL, 0);
    rc = maec_dataset_open(test_path("split"), "train", &ds, &err);
    CHECK(rc == 0 && maec_dataset_size(ds) == 2 && maec_dataset_num_classes(ds) == 2 &&
              maec_dataset_channels(ds) == 3,
          "split train: %s", err.msg);
    if (!rc) {
        rc = maec_dataset_get(ds, 1, &im, &err);
        CHECK(rc == 0 && im.c == 3 && px(&im, 0, 1, 1) == px(&im, 2, 1, 1) &&
                  px(&im, 1, 1, 1) == (float)g[IW + 1] / 255.0f,
              "gray image in an RGB folder replicated");
    }
    maec_dataset_free(ds);
    rc = maec_dataset_open(test_path("split"), "test", &ds, &err);
    CHECK(rc == 0 && maec_dataset_size(ds) == 1 && maec_dataset_channels(ds) == 1,
          "split val: %s", err.msg);
    maec_dataset_free(ds);

    /* bad folders and images */
    mkdirs("empty");
    EXPECT_FAIL(maec_dataset_open(test_path("empty"), "train", &d_, &e_), "empty folder");
    mkdirs("noimg/cls");
    test_write_bytes(test_path("noimg/cls/a.txt"), "x", 1);
    EXPECT_FAIL(maec_dataset_open(test_path("noimg"), "train", &d_, &e_), "folder without images");
    mkdirs("emptyclass/a");
    mkdirs("emptyclass/b");
    write_png_raw(test_path("emptyclass/a/1.png"), IW, IH, PNG_COLOR_TYPE_GRAY, 8, g, NULL, 0);
    EXPECT_FAIL(maec_dataset_open(test_path("emptyclass"), "train", &d_, &e_), "empty class folder");
    unsigned char buf[4096];
    size_t n = read_bytes(test_path("folder/b_color/rgb.png"), buf, sizeof buf);
    mkdirs("corrupt/a");
    test_write_bytes(test_path("corrupt/a/trunc.png"), buf, n / 2);
    EXPECT_FAIL(maec_image_decode_file(test_path("corrupt/a/trunc.png"), &im, &e_), "truncated PNG");
    EXPECT_FAIL(maec_dataset_open(test_path("corrupt"), "train", &d_, &e_), "folder w/ truncated PNG");
    memset(buf + 16, 0xAB, 40);
    test_write_bytes(test_path("corrupt/a/garbled.png"), buf, n);
    EXPECT_FAIL(maec_image_decode_file(test_path("corrupt/a/garbled.png"), &im, &e_), "corrupt PNG");
    n = read_bytes(test_path("folder/b_color/photo.JPG"), buf, sizeof buf);
    test_write_bytes(test_path("corrupt/a/trunc.jpg"), buf, n / 2);
    EXPECT_FAIL(maec_image_decode_file(test_path("corrupt/a/trunc.jpg"), &im, &e_), "truncated JPEG");
    memset(buf + 4, 0x00, n - 4);
    test_write_bytes(test_path("corrupt/a/garbled.jpg"), buf, n);
    EXPECT_FAIL(maec_image_decode_file(test_path("corrupt/a/garbled.jpg"), &im, &e_), "corrupt JPEG");
    test_write_bytes(test_path("corrupt/a/text.png"), "not an image", 12);
    EXPECT_FAIL(maec_image_decode_file(test_path("corrupt/a/text.png"), &im, &e_), "text named .png");
    /* a folder whose first image is fine and a later one is broken: the error comes on get */
    mkdirs("later/a");
    write_png_raw(test_path("later/a/1.png"), IW, IH, PNG_COLOR_TYPE_GRAY, 8, g, NULL, 0);
    test_write_bytes(test_path("later/a/2.png"), "junk", 4);
    rc = maec_dataset_open(test_path("later"), "train", &ds, &err);
    CHECK(rc == 0, "open folder with a bad second image: %s", err.msg);
    if (!rc) {
        err.msg[0] = 0;
        rc = maec_dataset_get(ds, 1, &im, &err);
        CHECK(rc != 0 && strstr(err.msg, "2.png"), "bad image named on get: %s", err.msg);
        printf("  %-28s -> %s\n", "bad image on get", err.msg);
    }
    maec_dataset_free(ds);
    maec_image_free(&im);
}

/* Photo folders laid out as users lay them out, made here (JPEG and PNG of
 * other sizes and shapes, grey and RGB): which images each split gets, and
 * labels that follow class names from the training split. */
static void put_photo(const char *rel, int w, int h, int ch, int seed)
{
    photo_write(test_path(rel), w, h, ch, seed, 128);
}

static void test_folder_layouts(void)
{
    maec_error err = {0};
    maec_dataset *ds = NULL;
    /* flat class folders, no split: training works, evaluation is refused */
    put_photo("lay_flat/cat/1.jpg", 40, 30, 3, 1);
    put_photo("lay_flat/cat/2.PNG", 17, 53, 1, 2);
    put_photo("lay_flat/dog/3.jpeg", 64, 48, 3, 3);
    put_photo("lay_flat/.hidden/4.png", 8, 8, 1, 4);
    int rc = maec_dataset_open(test_path("lay_flat"), "train", &ds, &err);
    CHECK(rc == 0 && maec_dataset_size(ds) == 3 && maec_dataset_num_classes(ds) == 2, "flat folder as training set: %s",
          err.msg);
    maec_dataset_free(ds);
    ds = NULL;
    rc = maec_dataset_open(test_path("lay_flat"), "test", &ds, &err);
    CHECK(rc != 0 && strstr(err.msg, "no evaluation split") && strstr(err.msg, "--eval-path") &&
              strstr(err.msg, "--val-split"),
          "flat folder evaluated on itself, or an unclear message: %s", rc ? err.msg : "(opened)");
    printf("  %-28s -> %s\n", "flat folder, test split", err.msg);
    maec_dataset_free(ds);
    ds = NULL;
    /* train/ alone: the classes are train's, and there is no evaluation split */
    put_photo("lay_tr/train/cat/a.jpg", 30, 20, 3, 5);
    put_photo("lay_tr/train/dog/b.png", 20, 30, 3, 6);
    rc = maec_dataset_open(test_path("lay_tr"), "train", &ds, &err);
    const char *n1 = rc ? NULL : maec_dataset_class_name(ds, 1);
    CHECK(rc == 0 && maec_dataset_num_classes(ds) == 2 && n1 && !strcmp(n1, "dog"),
          "train/ alone: %d classes, the second '%s' (want cat, dog): %s", rc ? -1 : maec_dataset_num_classes(ds),
          n1 ? n1 : "-", err.msg);
    maec_dataset_free(ds);
    ds = NULL;
    rc = maec_dataset_open(test_path("lay_tr"), "test", &ds, &err);
    CHECK(rc != 0 && strstr(err.msg, "no evaluation split"), "train/ alone: test split opened");
    maec_dataset_free(ds);
    ds = NULL;
    /* a class missing from test/: the others keep their training labels */
    put_photo("lay_miss/train/a/1.jpg", 24, 24, 3, 7);
    put_photo("lay_miss/train/b/1.jpg", 24, 24, 3, 8);
    put_photo("lay_miss/train/c/1.jpg", 24, 24, 3, 9);
    put_photo("lay_miss/test/a/1.png", 31, 19, 3, 10);
    put_photo("lay_miss/test/c/deep/er/1.JPG", 19, 31, 3, 11);
    rc = maec_dataset_open(test_path("lay_miss"), "test", &ds, &err);
    CHECK(rc == 0 && maec_dataset_size(ds) == 2 && maec_dataset_label(ds, 0) == 0 && maec_dataset_label(ds, 1) == 2 &&
              maec_dataset_num_classes(ds) == 3,
          "class b missing from test/: labels %d %d (want 0 2), %d classes (want 3): %s",
          rc ? -9 : maec_dataset_label(ds, 0), rc ? -9 : maec_dataset_label(ds, 1),
          rc ? -9 : maec_dataset_num_classes(ds), err.msg);
    const char *c2 = rc ? NULL : maec_dataset_class_name(ds, 2);
    CHECK(c2 && !strcmp(c2, "c"), "test split's class 2 named '%s' (want c)", c2 ? c2 : "-");
    maec_dataset_free(ds);
    ds = NULL;
    /* a class only in val/: an error naming it */
    put_photo("lay_extra/train/a/1.jpg", 24, 24, 3, 12);
    put_photo("lay_extra/train/b/1.jpg", 24, 24, 3, 13);
    put_photo("lay_extra/val/a/1.jpg", 24, 24, 3, 14);
    put_photo("lay_extra/val/zebra/1.jpg", 24, 24, 3, 15);
    rc = maec_dataset_open(test_path("lay_extra"), "test", &ds, &err);
    CHECK(rc != 0 && strstr(err.msg, "'zebra'"), "a class only in val/ not named: %s", rc ? err.msg : "(opened)");
    printf("  %-28s -> %s\n", "class only in val/", err.msg);
    maec_dataset_free(ds);
}

/* ------------------------------------------------------------------ npy */

static void test_npy(void)
{
    maec_error err = {0};
    maec_dataset *ds = NULL;
    maec_image im = {0};
    /* float NHWC [4, 5, 6, 3] + labels */
    int64_t sh[4] = {4, 5, 6, 3};
    float *x = malloc(4 * 5 * 6 * 3 * sizeof(float));
    for (int i = 0; i < 4 * 5 * 6 * 3; i++) x[i] = (float)((i * 7) % 101) / 100.0f;
    npy_save(test_path("x.npy"), x, 4, sh, &err);
    float lab[4] = {2, 0, 5, 1};
    int64_t lsh[1] = {4};
    npy_save(test_path("x_labels.npy"), lab, 1, lsh, &err);
    int rc = maec_dataset_open(test_path("x.npy"), "train", &ds, &err);
    CHECK(rc == 0, "open npy NHWC: %s", err.msg);
    if (!rc) {
        int h = 0, w = 0;
        CHECK(!strcmp(maec_dataset_format(ds), "npy") && maec_dataset_size(ds) == 4 &&
                  maec_dataset_channels(ds) == 3 && maec_dataset_native_size(ds, &h, &w) == 0 &&
                  h == 5 && w == 6,
              "npy NHWC shape");
        CHECK(maec_dataset_num_classes(ds) == 6 && maec_dataset_label(ds, 2) == 5, "npy labels");
        rc = maec_dataset_get(ds, 2, &im, &err);
        int ok = rc == 0 && im.c == 3;
        for (int y = 0; ok && y < 5; y++)
            for (int xx = 0; xx < 6; xx++)
                for (int c = 0; c < 3; c++)
                    ok &= px(&im, c, y, xx) == x[((2 * 5 + y) * 6 + xx) * 3 + c];
        CHECK(ok, "npy NHWC -> CHW exact");
    }
    maec_dataset_free(ds);
    /* uint8 NCHW [3, 3, 4, 2] without labels */
    unsigned char u[3 * 3 * 4 * 2];
    for (int i = 0; i < (int)sizeof u; i++) u[i] = (unsigned char)(i * 9);
    int64_t ush[4] = {3, 3, 4, 2};
    write_npy_u8(test_path("u.npy"), 4, ush, u);
    rc = maec_dataset_open(test_path("u.npy"), "train", &ds, &err);
    CHECK(rc == 0 && maec_dataset_channels(ds) == 3 && maec_dataset_num_classes(ds) == 0 &&
              maec_dataset_label(ds, 0) == -1,
          "open npy uint8 NCHW: %s", err.msg);
    if (!rc) {
        rc = maec_dataset_get(ds, 1, &im, &err);
        CHECK(rc == 0 && im.h == 4 && im.w == 2 && px(&im, 2, 3, 1) == (float)u[24 + 23] / 255.0f,
              "npy uint8 values / 255");
    }
    maec_dataset_free(ds);
    /* [N, H, W] */
    int64_t gsh[3] = {2, 3, 3};
    write_npy_u8(test_path("g.npy"), 3, gsh, u);
    rc = maec_dataset_open(test_path("g.npy"), "train", &ds, &err);
    CHECK(rc == 0 && maec_dataset_channels(ds) == 1 && maec_dataset_size(ds) == 2, "npy NHW: %s",
          err.msg);
    maec_dataset_free(ds);
    /* a directory with train.npy */
    mkdirs("npydir");
    write_npy_u8(test_path("npydir/train.npy"), 3, gsh, u);
    rc = maec_dataset_open(test_path("npydir"), "train", &ds, &err);
    CHECK(rc == 0 && !strcmp(maec_dataset_format(ds), "npy"), "npy dir: %s", err.msg);
    maec_dataset_free(ds);
    /* bad shapes and values */
    int64_t bsh[4] = {2, 5, 5, 5}, b1[1] = {10}, b2[2] = {2, 5};
    npy_save(test_path("bad4.npy"), x, 4, bsh, &err);
    EXPECT_FAIL(maec_dataset_open(test_path("bad4.npy"), "train", &d_, &e_), "npy shape [2,5,5,5]");
    npy_save(test_path("bad1.npy"), x, 1, b1, &err);
    EXPECT_FAIL(maec_dataset_open(test_path("bad1.npy"), "train", &d_, &e_), "npy shape [10]");
    npy_save(test_path("bad2.npy"), x, 2, b2, &err);
    EXPECT_FAIL(maec_dataset_open(test_path("bad2.npy"), "train", &d_, &e_), "npy shape [2,5]");
    float big[18];
    for (int i = 0; i < 18; i++) big[i] = 3.0f * i;
    npy_save(test_path("range.npy"), big, 3, gsh, &err);
    EXPECT_FAIL(maec_dataset_open(test_path("range.npy"), "train", &d_, &e_), "npy floats out of [0,1]");
    npy_save(test_path("y.npy"), x, 3, gsh, &err);
    npy_save(test_path("y_labels.npy"), lab, 1, lsh, &err); /* 4 labels for 2 images */
    EXPECT_FAIL(maec_dataset_open(test_path("y.npy"), "train", &d_, &e_), "npy label count");
    test_write_bytes(test_path("junk.npy"), "\x93NUMPY\x01\x00\x10\x00{'descr'", 17);
    EXPECT_FAIL(maec_dataset_open(test_path("junk.npy"), "train", &d_, &e_), "npy truncated header");
    free(x);
    maec_image_free(&im);
}

/* ------------------------------------------------------------------ resize */

static void test_resize(void)
{
    maec_error err = {0};
    maec_image im = {0};
    maec_image_resize_buffer(&im, 3, 5, 7, &err);
    uint64_t s = 42;
    for (int i = 0; i < 3 * 5 * 7; i++) im.data[i] = rng_uniform(&s);
    float out[3 * 40 * 40];
    int rc = maec_resize_bicubic(&im, 0, 0, 7, 5, 5, 7, out, &err);
    CHECK(rc == 0 && memcmp(out, im.data, sizeof(float) * 105) == 0, "identity resize is exact");
    /* constant stays constant, up and down */
    for (int i = 0; i < 105; i++) im.data[i] = 0.375f;
    double md = 0;
    rc = maec_resize_bicubic(&im, 0, 0, 7, 5, 2, 3, out, &err);
    for (int i = 0; i < 3 * 2 * 3; i++) md = fmax(md, fabs(out[i] - 0.375));
    rc |= maec_resize_bicubic(&im, 0, 0, 7, 5, 13, 31, out, &err);
    for (int i = 0; i < 3 * 13 * 31; i++) md = fmax(md, fabs(out[i] - 0.375));
    CHECK(rc == 0 && md < 1e-6, "constant image stays constant (max diff %g)", md);
    /* 2x2 checker -> 1x1: the average */
    maec_image ck = {0};
    maec_image_resize_buffer(&ck, 1, 2, 2, &err);
    ck.data[0] = ck.data[3] = 1.0f;
    ck.data[1] = ck.data[2] = 0.0f;
    rc = maec_resize_bicubic(&ck, 0, 0, 2, 2, 1, 1, out, &err);
    CHECK(rc == 0 && fabsf(out[0] - 0.5f) < 1e-6f, "2x2 checker averages to %g", (double)out[0]);
    /* compared with PIL 9.4 Image.resize(BICUBIC, box) on a uint8 image, which
     * rounds to 8 bits after each pass: within 1.5 / 255 */
    static const int pil_a[] = {76, 108, 163, 126, 93, 115, 96, 112, 139, 128, 153, 130, 94, 97, 140};
    static const int pil_b[] = {10, 28, 62, 97, 124, 154, 168, 155, 195, 120, 11, 130, 157, 154,
                                112, 138, 178, 160, 41, 55, 103, 138, 98, 129, 108, 31, 55, 93,
                                131, 169, 208, 167, 97, 65, 85, 123, 166, 206, 128, 56, 89, 123,
                                106, 67, 187, 223, 177, 43, 73, 77, 76, 105, 131, 167, 195};
    static const int pil_c[] = {145, 204, 59, 111, 44, 134, 68, 150, 197, 170, 110, 49};
    static const int pil_d[] = {153, 130, 168, 53, 127, 40, 98, 183, 77, 175, 115, 118, 193, 93, 73, 99};
    struct {
        int ow, oh;
        float box[4];
        const int *ref;
    } cases[4] = {{5, 3, {0, 0, 8, 6}, pil_a},
                  {11, 5, {0, 0, 8, 6}, pil_b},
                  {3, 4, {1, 1, 6, 4}, pil_c},
                  {4, 4, {0.5f, 1.25f, 6.0f, 4.5f}, pil_d}};
    maec_image g = {0};
    maec_image_resize_buffer(&g, 1, 6, 8, &err);
    for (int y = 0; y < 6; y++)
        for (int x = 0; x < 8; x++) g.data[y * 8 + x] = (float)((x * 37 + y * 91) % 256) / 255.0f;
    for (int t = 0; t < 4; t++) {
        rc = maec_resize_bicubic(&g, cases[t].box[0], cases[t].box[1], cases[t].box[2],
                                 cases[t].box[3], cases[t].oh, cases[t].ow, out, &err);
        double worst = 0;
        for (int i = 0; i < cases[t].ow * cases[t].oh; i++)
            worst = fmax(worst, fabs(out[i] * 255.0 - cases[t].ref[i]));
        CHECK(rc == 0 && worst <= 1.5, "PIL bicubic case %d: max diff %.2f / 255", t, worst);
    }
    EXPECT_FAIL(maec_resize_bicubic(&g, 1, 0, 8, 6, 2, 2, out, &e_), "resize box outside");
    maec_image_free(&g);
    maec_image_free(&ck);
    maec_image_free(&im);
}

/* ------------------------------------------------------------------ augment */

static void test_augment(void)
{
    maec_error err = {0};
    /* crop boxes: inside, area in range unless the fallback, deterministic */
    int inside = 1, in_scale = 1, same = 1;
    for (int t = 0; t < 500; t++) {
        uint64_t r1 = rng_derive(7, (uint64_t)t, 0, 0), r2 = r1;
        int H = 20 + t % 37, W = 15 + t % 53;
        int i, j, h, w, i2, j2, h2, w2;
        maec_random_resized_crop_box(H, W, 0.2f, 1.0f, 0.75f, 4.0f / 3, &r1, &i, &j, &h, &w);
        maec_random_resized_crop_box(H, W, 0.2f, 1.0f, 0.75f, 4.0f / 3, &r2, &i2, &j2, &h2, &w2);
        same &= i == i2 && j == j2 && h == h2 && w == w2;
        inside &= i >= 0 && j >= 0 && h > 0 && w > 0 && i + h <= H && j + w <= W;
        double frac = (double)h * w / ((double)H * W);
        double ar = (double)w / h;
        /* rounding of w and h moves the area and ratio a little */
        int fallback = (h == H && w == W) || (i == (H - h) / 2 && j == (W - w) / 2);
        if (!fallback) in_scale &= frac > 0.2 * 0.75 && frac <= 1.0 && ar > 0.75 * 0.8 && ar < 4.0 / 3 * 1.25;
    }
    CHECK(inside, "crop boxes inside the image");
    CHECK(in_scale, "crop boxes within scale and ratio (up to rounding)");
    CHECK(same, "crop boxes deterministic from the rng state");
    /* an impossible ratio falls back to a center crop */
    {
        uint64_t r = 1;
        int i, j, h, w;
        maec_random_resized_crop_box(10, 100, 0.9f, 1.0f, 1.0f, 1.0f, &r, &i, &j, &h, &w);
        CHECK(h == 10 && w == 10 && i == 0 && j == 45, "fallback center crop (%d %d %d %d)", i, j, h, w);
    }

    maec_image im = {0};
    maec_image_resize_buffer(&im, 3, 12, 10, &err);
    uint64_t s = 3;
    for (int k = 0; k < 3 * 120; k++) im.data[k] = rng_uniform(&s);
    maec_augment a;
    maec_augment_defaults(&a, 3, 8, 8);
    CHECK(a.random_resized_crop == 1 && a.hflip == 1 && fabsf(a.scale_min - 0.2f) < 1e-7f &&
              a.std[2] == 1.0f,
          "augment defaults");
    float o1[3 * 64], o2[3 * 64], o3[3 * 64];
    uint64_t r1 = 99, r2 = 99, r3 = 100;
    int rc = maec_augment_apply(&a, &im, o1, &r1, &err);
    rc |= maec_augment_apply(&a, &im, o2, &r2, &err);
    rc |= maec_augment_apply(&a, &im, o3, &r3, &err);
    CHECK(rc == 0 && !memcmp(o1, o2, sizeof o1) && memcmp(o1, o3, sizeof o1),
          "augment deterministic from the seed, different for another");
    /* flip: no crop, same size: either the image or its mirror; both happen */
    a.random_resized_crop = 0;
    a.out_h = 12;
    a.out_w = 10;
    int n_same = 0, n_flip = 0, bad = 0;
    float o[3 * 120];
    for (int t = 0; t < 40; t++) {
        uint64_t r = (uint64_t)t * 1000 + 1;
        maec_augment_apply(&a, &im, o, &r, &err);
        int eq = !memcmp(o, im.data, sizeof o), fl = 1;
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < 12; y++)
                for (int x = 0; x < 10; x++) fl &= o[(c * 12 + y) * 10 + x] == px(&im, c, y, 9 - x);
        n_same += eq;
        n_flip += fl;
        bad += !eq && !fl;
    }
    CHECK(bad == 0 && n_same > 5 && n_flip > 5, "flip: %d same, %d flipped, %d other", n_same,
          n_flip, bad);
    /* normalization and channel conversion */
    a.hflip = 0;
    a.mean[0] = 0.5f, a.mean[1] = 0.25f, a.mean[2] = 0.0f;
    a.std[0] = 0.25f, a.std[1] = 0.5f, a.std[2] = 2.0f;
    rc = maec_augment_apply(&a, &im, o, NULL, &err);
    int ok = rc == 0;
    for (int c = 0; c < 3; c++)
        for (int k = 0; k < 120; k++)
            ok &= fabsf(o[c * 120 + k] - (im.data[c * 120 + k] - a.mean[c]) / a.std[c]) < 1e-5f;
    CHECK(ok, "normalize (x - mean) / std");
    maec_augment_defaults(&a, 1, 12, 10);
    a.random_resized_crop = a.hflip = 0;
    rc = maec_augment_apply(&a, &im, o, NULL, &err);
    ok = rc == 0;
    for (int k = 0; k < 120; k++)
        ok &= fabsf(o[k] - (0.299f * im.data[k] + 0.587f * im.data[120 + k] + 0.114f * im.data[240 + k])) < 1e-6f;
    CHECK(ok, "RGB -> 1 channel by luminance");
    maec_image gray = {0};
    maec_image_resize_buffer(&gray, 1, 12, 10, &err);
    memcpy(gray.data, im.data, 120 * sizeof(float));
    maec_augment_defaults(&a, 3, 12, 10);
    a.random_resized_crop = a.hflip = 0;
    rc = maec_augment_apply(&a, &gray, o, NULL, &err);
    CHECK(rc == 0 && !memcmp(o, gray.data, 480) && !memcmp(o + 120, gray.data, 480) &&
              !memcmp(o + 240, gray.data, 480),
          "gray -> 3 channels replicated");
    a.std[1] = 0;
    EXPECT_FAIL(maec_augment_apply(&a, &gray, o, NULL, &e_), "augment std 0");
    maec_augment_defaults(&a, 2, 12, 10);
    EXPECT_FAIL(maec_augment_apply(&a, &gray, o, NULL, &e_), "augment 2 channels");
    maec_image_free(&gray);
    maec_image_free(&im);

    /* mean / std over the IDX set made above: exact values in double */
    maec_dataset *ds = NULL;
    if (maec_dataset_open(test_path("idx"), "train", &ds, &err) == 0) {
        /* all 5 images, exact in double */
        double sum = 0, sq = 0;
        for (int i = 0; i < 5; i++)
            for (int k = 0; k < 12; k++) {
                double v = (float)idx_pixel(i, k) / 255.0f;
                sum += v;
                sq += v * v;
            }
        double m = sum / 60, sd = sqrt(sq / 60 - m * m);
        float mean[3], std[3];
        rc = maec_dataset_mean_std(ds, 1, 0, 0, mean, std, &err);
        CHECK(rc == 0 && fabs(mean[0] - m) < 1e-6 && fabs(std[0] - sd) < 1e-6,
              "mean/std of the 5 images: %g %g (want %g %g)", (double)mean[0], (double)std[0], m, sd);
        /* a sample of 2: a seeded draw over the whole set, the same for the
         * same seed; over 12 seeds not always the first two images */
        float ma[3], sa[3], mb[3], sb[3];
        int same = 1, first = 0;
        double s01 = 0;
        for (int i = 0; i < 2; i++)
            for (int k = 0; k < 12; k++) s01 += (float)idx_pixel(i, k) / 255.0f;
        for (uint64_t seed = 0; seed < 12; seed++) {
            maec_dataset_mean_std(ds, 1, 2, seed, ma, sa, &err);
            maec_dataset_mean_std(ds, 1, 2, seed, mb, sb, &err);
            same &= ma[0] == mb[0] && sa[0] == sb[0];
            first += fabs(ma[0] - s01 / 24) < 1e-6;
        }
        CHECK(same, "mean/std sample: the same seed gave different statistics");
        CHECK(first < 12, "mean/std sample of 2: the first two images for all of 12 seeds");
        rc = maec_dataset_mean_std(ds, 3, 0, 0, mean, std, &err);
        CHECK(rc == 0 && mean[2] == mean[0] && std[1] == std[0] && fabs(mean[1] - m) < 1e-6,
              "mean/std of gray into 3 channels");
        float mean2[3], std2[3];
        maec_dataset_mean_std(ds, 1, 0, 0, mean, std, &err);
        maec_dataset_mean_std(ds, 1, 100, 0, mean2, std2, &err);
        CHECK(mean[0] == mean2[0] && std[0] == std2[0], "max_samples <= 0 or > N: all images");
    }
    maec_dataset_free(ds);
}

/* ------------------------------------------------------------------ loader */

#define LN 11
#define LB 3

typedef struct {
    int nb;
    float img[12][LB * 36];
    int lab[12][LB];
    int n[12];
} run_record;

/* batches of an 11-image IDX set (labels = index) */
static int record_run(maec_dataset *ds, int threads, uint64_t seed, int drop_last, int prefetch,
                      int64_t seek_e, int64_t seek_b, int nb, run_record *r)
{
    maec_loader_opts o;
    maec_loader_defaults(&o, 1, 6, 6);
    o.batch = LB;
    o.threads = threads;
    o.seed = seed;
    o.drop_last = drop_last;
    o.prefetch = prefetch;
    maec_loader *l = NULL;
    maec_error err = {0};
    if (maec_loader_create(ds, &o, &l, &err)) {
        printf("loader: %s\n", err.msg);
        return -1;
    }
    if (seek_e >= 0 && maec_loader_seek(l, seek_e, seek_b, &err)) {
        maec_loader_free(l);
        return -1;
    }
    memset(r, 0, sizeof *r);
    for (int b = 0; b < nb; b++) {
        if (maec_loader_next(l, r->img[b], r->lab[b], &r->n[b], &err)) {
            printf("next: %s\n", err.msg);
            maec_loader_free(l);
            return -1;
        }
    }
    r->nb = nb;
    maec_loader_free(l);
    return 0;
}

static int same_run(const run_record *a, int a0, const run_record *b, int b0, int nb)
{
    for (int k = 0; k < nb; k++) {
        int i = a0 + k, j = b0 + k;
        if (a->n[i] != b->n[j] || memcmp(a->lab[i], b->lab[j], sizeof a->lab[i]) ||
            memcmp(a->img[i], b->img[j], (size_t)a->n[i] * 36 * sizeof(float)))
            return 0;
    }
    return 1;
}

/* random erasing (timm's 'pixel' mode, one box): how often, a box in every
 * channel alike, N(0, 1) inside, nothing outside; same rng, same result */
/* an 8-bit image from a fixture .npy ([c, h, w] values 0..255 as float32) */
static uint8_t *load_u8(const char *path, int *c, int *h, int *w)
{
    npy_array a;
    maec_error err = {0};
    if (npy_load(path, &a, &err) || a.ndim != 3) {
        printf("  cannot read %s: %s\n", path, err.msg);
        return NULL;
    }
    *c = (int)a.shape[0], *h = (int)a.shape[1], *w = (int)a.shape[2];
    uint8_t *u = malloc(a.count);
    for (size_t i = 0; u && i < a.count; i++) u[i] = (uint8_t)a.data[i];
    npy_free(&a);
    return u;
}

/* RandAugment's operations against PIL 9.4 (tests/reference/randaug_ref.py
 * -> tests/fixtures/randaug): the same bytes for the point operations and
 * the blends; for the affine ones (PIL's bicubic filter in double, ours the
 * same formula; the same bytes when written) at most 1 level off, on at
 * most 1% of the values, which leaves room for another libm's cos and sin. */
static void test_randaug_ops(void)
{
    const char *F = "tests/fixtures/randaug";
    FILE *cf = fopen("tests/fixtures/randaug/cases.txt", "r");
    CHECK(cf != NULL, "no %s/cases.txt", F);
    if (!cf) return;
    char name[64], path[256];
    int op, ncases = 0;
    double arg;
    while (fscanf(cf, "%63s %d %lf", name, &op, &arg) == 3) {
        for (int g = 0; g < 2; g++) {
            int c, h, w, c2, h2, w2;
            snprintf(path, sizeof path, "%s/in_%s.npy", F, g ? "gray" : "rgb");
            uint8_t *img = load_u8(path, &c, &h, &w);
            snprintf(path, sizeof path, "%s/%s_%s.npy", F, g ? "gray" : "rgb", name);
            uint8_t *want = load_u8(path, &c2, &h2, &w2);
            uint8_t *tmp = malloc((size_t)c * h * w);
            int ok = img && want && tmp && c == c2 && h == h2 && w == w2;
            int ndiff = 0, maxd = 0;
            if (ok) {
                const uint8_t fill[3] = {g ? 73 : 73, 90, 110};
                randaug_op(op, arg, img, tmp, c, h, w, fill);
                for (size_t i = 0; i < (size_t)c * h * w; i++) {
                    int d = abs((int)img[i] - (int)want[i]);
                    ndiff += d != 0;
                    maxd = d > maxd ? d : maxd;
                }
            }
            int affine = op == 3 || op >= 11;
            CHECK(ok && (affine ? maxd <= 1 && ndiff * 100 <= c * h * w : ndiff == 0),
                  "randaug %s (%s): %d of %d values differ from PIL's, by up to %d", name, g ? "gray" : "rgb",
                  ndiff, ok ? c * h * w : 0, maxd);
            free(img), free(want), free(tmp);
        }
        ncases++;
    }
    fclose(cf);
    CHECK(ncases == 22, "randaug: %d cases in cases.txt (want 22)", ncases);

    /* timm's config strings */
    maec_randaug ra;
    maec_error err = {0};
    int rc = maec_randaug_parse("rand-m9-mstd0.5-inc1", &ra, &err);
    CHECK(rc == 0 && ra.on && ra.n == 2 && ra.m == 9 && ra.mstd == 0.5f && ra.increasing == 1,
          "parse rand-m9-mstd0.5-inc1: %s", err.msg);
    rc = maec_randaug_parse("rand-n3-m5", &ra, &err);
    CHECK(rc == 0 && ra.on && ra.n == 3 && ra.m == 5 && ra.mstd == 0 && !ra.increasing, "parse rand-n3-m5");
    rc = maec_randaug_parse("none", &ra, &err);
    CHECK(rc == 0 && !ra.on, "parse none");
    const char *bad[] = {"auto", "randx", "rand-x3", "rand-m", "rand-m9-", "rand-inc2", "rand-n1.5", "rand-m-1",
                         "rand-mnan", "original-mstd0.5"};
    for (int i = 0; i < (int)(sizeof bad / sizeof bad[0]); i++) {
        maec_error e = {0};
        CHECK(maec_randaug_parse(bad[i], &ra, &e) != 0 && e.msg[0], "parse '%s' accepted", bad[i]);
        if (i == 2) printf("  %-28s -> %s\n", "randaug 'rand-x3'", e.msg);
    }

    /* the whole transform: deterministic from the rng; changes about 3 in 4
     * images (each of the two operations is skipped with p 0.5) */
    maec_randaug_parse("rand-m9-mstd0.5-inc1", &ra, &err);
    int c, h, w, changed = 0, same = 1;
    uint8_t *img0 = load_u8("tests/fixtures/randaug/in_rgb.npy", &c, &h, &w);
    uint8_t *a = img0 ? malloc((size_t)c * h * w) : NULL, *b = img0 ? malloc((size_t)c * h * w) : NULL;
    const uint8_t fill[3] = {73, 90, 110};
    for (int t = 0; a && b && t < 400; t++) {
        memcpy(a, img0, (size_t)c * h * w);
        memcpy(b, img0, (size_t)c * h * w);
        uint64_t r1 = rng_derive(3, (uint64_t)t, 0, 0), r2 = r1;
        maec_randaug_apply(&ra, a, c, h, w, fill, &r1, &err);
        maec_randaug_apply(&ra, b, c, h, w, fill, &r2, &err);
        same &= !memcmp(a, b, (size_t)c * h * w) && r1 == r2;
        changed += memcmp(a, img0, (size_t)c * h * w) != 0;
    }
    CHECK(img0 && same, "RandAugment: same rng, same image");
    CHECK(changed > 260 && changed < 340, "RandAugment changed %d of 400 images (want about 300)", changed);
    free(img0), free(a), free(b);
}

static void test_random_erase(void)
{
    enum { C = 3, H = 28, W = 24, N = 2000 };
    static float img[C * H * W], img2[C * H * W];
    int erased = 0, boxes_ok = 1, same = 1;
    double sum = 0, sum2 = 0, cnt = 0, area_frac = 0;
    for (int t = 0; t < N; t++) {
        for (int k = 0; k < C * H * W; k++) img[k] = img2[k] = 5.0f;
        uint64_t r1 = rng_derive(11, (uint64_t)t, 0, 0), r2 = r1;
        maec_random_erase(img, C, H, W, t < N / 2 ? 0.25f : 1.0f, &r1);
        maec_random_erase(img2, C, H, W, t < N / 2 ? 0.25f : 1.0f, &r2);
        same &= !memcmp(img, img2, sizeof img) && r1 == r2;
        /* the bounding box of the changed pixels of channel 0 */
        int y0 = H, y1 = -1, x0 = W, x1 = -1, n = 0;
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                if (img[y * W + x] != 5.0f) {
                    n++;
                    y0 = y < y0 ? y : y0, y1 = y > y1 ? y : y1, x0 = x < x0 ? x : x0, x1 = x > x1 ? x : x1;
                }
        if (n == 0) continue;
        if (t < N / 2) erased++;
        else area_frac += (double)n / (H * W);
        /* a full box (a value of exactly 5 inside is all but impossible), the same in every channel */
        boxes_ok &= n == (y1 - y0 + 1) * (x1 - x0 + 1) && (y1 - y0 + 1) < H && (x1 - x0 + 1) < W;
        for (int c = 0; c < C; c++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    float v = img[((size_t)c * H + y) * W + x];
                    int in = y >= y0 && y <= y1 && x >= x0 && x <= x1;
                    boxes_ok &= in ? v != 5.0f : v == 5.0f;
                    if (in) sum += v, sum2 += (double)v * v, cnt++;
                }
    }
    double p = (double)erased / (N / 2), mean = sum / cnt, var = sum2 / cnt - mean * mean;
    area_frac /= N / 2;
    /* 1000 draws at p 0.25: sd 0.014; box area uniform in 2% to 1/3 of the image
     * (mean 0.177; 0.174 measured over 20,000 boxes of this size), sd of the mean 0.003 */
    CHECK(p > 0.20 && p < 0.30, "random erasing at p 0.25 erased %.3f of the images", p);
    CHECK(area_frac > 0.15 && area_frac < 0.20, "mean erased area %.3f of the image", area_frac);
    CHECK(boxes_ok, "random erasing: one box, alike in every channel, nothing outside");
    CHECK(fabs(mean) < 0.02 && fabs(var - 1) < 0.03, "erased values mean %.4f var %.4f (want N(0, 1))", mean, var);
    CHECK(same, "random erasing: same rng, same result");
    uint64_t r = 5;
    for (int k = 0; k < C * H * W; k++) img[k] = 5.0f;
    maec_random_erase(img, C, H, W, 0.0f, &r);
    int untouched = 1;
    for (int k = 0; k < C * H * W; k++) untouched &= img[k] == 5.0f;
    CHECK(untouched, "random erasing at p 0 changes nothing");
    maec_augment a;
    maec_augment_defaults(&a, 1, 8, 8);
    a.reprob = 1.5f;
    EXPECT_FAIL(maec_augment_check(&a, &e_), "random erasing probability 1.5");
    a.reprob = NAN;
    EXPECT_FAIL(maec_augment_check(&a, &e_), "random erasing probability NaN");
}

static void test_loader(void)
{
    mkdirs("lidx");
    /* labels = index: write them by hand */
    {
        unsigned char px_[LN * 64], lb[LN];
        for (int i = 0; i < LN; i++) {
            lb[i] = (unsigned char)i;
            for (int k = 0; k < 64; k++) px_[i * 64 + k] = (unsigned char)(i * 20 + k);
        }
        uint32_t d3[3] = {LN, 8, 8}, d1[1] = {LN};
        write_idx(test_path("lidx/train-images-idx3-ubyte"), 0, 0x803, 3, d3, px_, sizeof px_);
        write_idx(test_path("lidx/train-labels-idx1-ubyte"), 0, 0x801, 1, d1, lb, sizeof lb);
    }
    maec_error err = {0};
    maec_dataset *ds = NULL;
    if (maec_dataset_open(test_path("lidx"), "train", &ds, &err)) {
        CHECK(0, "open loader set: %s", err.msg);
        return;
    }
    static run_record a, b, c, d, e;
    /* 4 batches per epoch: 3, 3, 3, 2; three epochs */
    int rc = record_run(ds, 1, 5, 0, 4, -1, 0, 12, &a);
    CHECK(rc == 0, "loader run");
    if (rc) {
        maec_dataset_free(ds);
        return;
    }
    CHECK(a.n[0] == 3 && a.n[3] == 2 && a.n[4] == 3 && a.n[7] == 2, "batch sizes, smaller last batch");
    int perm_ok = 1;
    for (int ep = 0; ep < 3; ep++) {
        int seen[LN] = {0};
        for (int bb = 0; bb < 4; bb++)
            for (int k = 0; k < a.n[ep * 4 + bb]; k++) {
                int lab = a.lab[ep * 4 + bb][k];
                if (lab < 0 || lab >= LN || seen[lab]++) perm_ok = 0;
            }
    }
    CHECK(perm_ok, "each epoch is a permutation");
    CHECK(memcmp(a.lab[0], a.lab[4], sizeof a.lab[0]) || memcmp(a.lab[1], a.lab[5], sizeof a.lab[0]),
          "epochs are shuffled differently");
    rc = record_run(ds, 1, 5, 0, 4, -1, 0, 12, &b);
    CHECK(rc == 0 && same_run(&a, 0, &b, 0, 12), "same seed, same batches");
    rc = record_run(ds, 2, 5, 0, 2, -1, 0, 12, &b);
    CHECK(rc == 0 && same_run(&a, 0, &b, 0, 12), "2 threads, prefetch 2: same batches");
    rc = record_run(ds, 0, 5, 0, 1, -1, 0, 12, &b);
    CHECK(rc == 0 && same_run(&a, 0, &b, 0, 12), "no threads: same batches");
    rc = record_run(ds, 4, 5, 0, 7, -1, 0, 12, &b);
    CHECK(rc == 0 && same_run(&a, 0, &b, 0, 12), "4 threads, prefetch 7: same batches");
    rc = record_run(ds, 2, 6, 0, 4, -1, 0, 12, &c);
    CHECK(rc == 0 && !same_run(&a, 0, &c, 0, 1), "another seed, other batches");
    rc = record_run(ds, 2, 5, 0, 4, 1, 2, 6, &d);
    CHECK(rc == 0 && same_run(&a, 6, &d, 0, 6), "seek (epoch 1, batch 2) = uninterrupted run");
    rc = record_run(ds, 3, 5, 1, 4, -1, 0, 6, &e);
    /* drop_last: 3 batches per epoch, the first three of each epoch as before */
    CHECK(rc == 0 && e.n[2] == 3 && same_run(&a, 0, &e, 0, 3) && same_run(&a, 4, &e, 3, 3),
          "drop_last skips the partial batch only");

    /* positions, seek mid-run, labels NULL, no shuffle */
    maec_loader_opts o;
    maec_loader_defaults(&o, 1, 6, 6);
    o.batch = LB;
    o.threads = 2;
    o.seed = 5;
    maec_loader *l = NULL;
    rc = maec_loader_create(ds, &o, &l, &err);
    CHECK(rc == 0 && maec_loader_batches_per_epoch(l) == 4, "batches per epoch");
    if (!rc) {
        float img[LB * 36];
        int n = 0;
        int64_t ep = -1, bi = -1;
        for (int k = 0; k < 5; k++) maec_loader_next(l, img, NULL, &n, &err);
        maec_loader_position(l, &ep, &bi);
        CHECK(ep == 1 && bi == 1, "position after 5 batches: (%lld, %lld)", (long long)ep, (long long)bi);
        rc = maec_loader_seek(l, 1, 2, &err);
        rc |= maec_loader_next(l, img, NULL, &n, &err);
        CHECK(rc == 0 && !memcmp(img, a.img[6], sizeof img), "seek on a running loader");
        rc = maec_loader_seek(l, 0, 0, &err);
        rc |= maec_loader_next(l, img, NULL, &n, &err);
        CHECK(rc == 0 && !memcmp(img, a.img[0], sizeof img), "seek back to the start");
        EXPECT_FAIL(maec_loader_seek(l, 0, 4, &e_), "seek past the epoch");
        CHECK(maec_loader_wait_seconds(l) >= 0, "wait seconds");
        maec_loader_free(l); /* mid-epoch */
    }
    o.shuffle = 0;
    o.aug.random_resized_crop = 0;
    o.aug.hflip = 0;
    rc = maec_loader_create(ds, &o, &l, &err);
    if (!rc) {
        float img[LB * 36];
        int lab[LB], n = 0, ok = 1;
        for (int k = 0; k < 4; k++) {
            maec_loader_next(l, img, lab, &n, &err);
            for (int q = 0; q < n; q++) ok &= lab[q] == k * LB + q;
        }
        CHECK(ok, "no shuffle: identity order");
        maec_loader_free(l);
    }
    o.batch = 12;
    o.drop_last = 1;
    EXPECT_FAIL(maec_loader_create(ds, &o, &l, &e_), "drop_last with N < batch");
    o.batch = 0;
    EXPECT_FAIL(maec_loader_create(ds, &o, &l, &e_), "batch 0");
    maec_dataset_free(ds);

    /* an image deleted mid-run: the error comes from next(), no hang */
    mkdirs("del/a");
    unsigned char g[64];
    for (int k = 0; k < 64; k++) g[k] = (unsigned char)(k * 3);
    char name[64];
    for (int i = 0; i < 6; i++) {
        snprintf(name, sizeof name, "del/a/%d.png", i);
        write_png_raw(test_path(name), 8, 8, PNG_COLOR_TYPE_GRAY, 8, g, NULL, 0);
    }
    if (maec_dataset_open(test_path("del"), "train", &ds, &err) == 0) {
        maec_loader_defaults(&o, 1, 6, 6);
        o.batch = 1;
        o.threads = 2;
        o.shuffle = 0;
        o.prefetch = 1;
        rc = maec_loader_create(ds, &o, &l, &err);
        if (!rc) {
            float img[36];
            int n, r1 = maec_loader_next(l, img, NULL, &n, &err);
            remove(test_path("del/a/4.png"));
            int r2 = 0, k = 1;
            for (; k < 6 && !r2; k++) r2 = maec_loader_next(l, img, NULL, &n, &err);
            CHECK(r1 == 0 && r2 != 0 && k - 1 == 4 && strstr(err.msg, "4.png"),
                  "deleted file: error at batch %d: %s", k - 1, err.msg);
            printf("  %-28s -> %s\n", "image deleted mid-run", err.msg);
            int64_t ep, bi;
            maec_loader_position(l, &ep, &bi);
            CHECK(bi == 4, "position stays at the failed batch");
            maec_loader_free(l);
        }
        maec_dataset_free(ds);
    }
}

/* ------------------------------------------------------------------ real data */

static void test_fashion_mnist(void)
{
    const char *fm = "/usr/share/datasets/fashion-mnist";
    struct stat st;
    if (stat(fm, &st) != 0) {
        printf("  (no %s: skipped)\n", fm);
        return;
    }
    maec_error err = {0};
    maec_dataset *ds = NULL;
    const char *splits[2] = {"train", "test"};
    int64_t want[2] = {60000, 10000};
    for (int s = 0; s < 2; s++) {
        int rc = maec_dataset_open(fm, splits[s], &ds, &err);
        int h = 0, w = 0;
        CHECK(rc == 0, "fashion-mnist %s: %s", splits[s], err.msg);
        if (rc) continue;
        maec_dataset_native_size(ds, &h, &w);
        CHECK(maec_dataset_size(ds) == want[s] && maec_dataset_num_classes(ds) == 10 &&
                  maec_dataset_channels(ds) == 1 && h == 28 && w == 28,
              "fashion-mnist %s: %lld images, %d classes, %dx%dx%d", splits[s],
              (long long)maec_dataset_size(ds), maec_dataset_num_classes(ds), h, w,
              maec_dataset_channels(ds));
        maec_image im = {0};
        rc = maec_dataset_get(ds, want[s] - 1, &im, &err);
        float mx = 0;
        for (int k = 0; !rc && k < 784; k++) mx = fmaxf(mx, im.data[k]);
        CHECK(rc == 0 && mx > 0.5f && mx <= 1.0f, "fashion-mnist last image has content");
        maec_image_free(&im);
        if (s == 0) {
            float mean[1], std[1];
            rc = maec_dataset_mean_std(ds, 1, 10000, 0, mean, std, &err);
            printf("  fashion-mnist mean %.4f std %.4f (first 10000)\n", (double)mean[0], (double)std[0]);
            CHECK(rc == 0 && fabsf(mean[0] - 0.286f) < 0.01f && fabsf(std[0] - 0.353f) < 0.01f,
                  "fashion-mnist mean/std near 0.286/0.353");
        }
        maec_dataset_free(ds);
    }
}

int main(int argc, char **argv)
{
    (void)argc;
    test_on_command_kernels(argv);
    if (test_make_dir("data")) return 1;
    test_idx();
    test_cifar();
    test_decoders_and_folder();
    test_folder_layouts();
    test_npy();
    test_resize();
    test_augment();
    test_random_erase();
    test_randaug_ops();
    test_loader();
    test_fashion_mnist();
    nftw(test_dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    TEST_END();
}
