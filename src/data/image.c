/* Float images and PNG / JPEG decoding (libpng, libjpeg), with the libraries'
 * errors turned into maec errors through setjmp: a corrupt file gives an
 * error message, never an exit. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

#include "data/data.h"
#include "data/internal.h"
#include "util.h"

void maec_image_free(maec_image *img)
{
    if (!img) return;
    free(img->data);
    memset(img, 0, sizeof *img);
}

int maec_image_resize_buffer(maec_image *img, int c, int h, int w, maec_error *err)
{
    size_t n;
    if (c <= 0 || h <= 0 || w <= 0 || !size_mul((size_t)c, (size_t)h, &n) ||
        !size_mul(n, (size_t)w, &n) || n > (size_t)3 * MAEC_MAX_PIXELS)
        return maec_fail(err, MAEC_ESHAPE, "bad image size %dx%dx%d", c, h, w);
    if (n > img->cap) {
        float *p = realloc(img->data, n * sizeof(float));
        if (!p) return maec_fail(err, MAEC_ENOMEM, "out of memory for a %dx%dx%d image", c, h, w);
        img->data = p;
        img->cap = n;
    }
    img->c = c;
    img->h = h;
    img->w = w;
    return 0;
}

/* interleaved 8-bit row (channels ch) -> planes of img at row y */
static void put_row(maec_image *img, int y, const unsigned char *row, int ch)
{
    size_t plane = (size_t)img->h * img->w;
    float *dst = img->data + (size_t)y * img->w;
    for (int c = 0; c < ch; c++)
        for (int x = 0; x < img->w; x++) dst[c * plane + x] = (float)row[x * ch + c] / 255.0f;
}

/* ------------------------------------------------------------------ PNG */

typedef struct {
    char msg[200];
} png_errctx;

static void png_error_fn(png_structp png, png_const_charp m)
{
    png_errctx *ctx = png_get_error_ptr(png);
    snprintf(ctx->msg, sizeof ctx->msg, "%s", m ? m : "error");
    png_longjmp(png, 1);
}

static void png_warning_fn(png_structp png, png_const_charp m)
{
    (void)png;
    (void)m;
}

static int decode_png(FILE *f, const char *path, maec_image *img, maec_error *err)
{
    png_errctx ctx = {{0}};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, png_error_fn,
                                             png_warning_fn);
    if (!png) return maec_fail(err, MAEC_ENOMEM, "%s: out of memory", path);
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return maec_fail(err, MAEC_ENOMEM, "%s: out of memory", path);
    }
    unsigned char *volatile pix = NULL;
    png_bytep *volatile rows = NULL;
    volatile int rc = 0;
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        free(pix);
        free(rows);
        if (rc) return rc;
        return maec_fail(err, MAEC_EFORMAT, "%s: bad PNG: %s", path, ctx.msg);
    }
    png_init_io(png, f);
    png_set_user_limits(png, MAEC_MAX_SIDE, MAEC_MAX_SIDE);
    /* The ancillary chunks that hold no pixels are skipped unread: a 45-byte
     * file claiming a 1.9 GB sPLT chunk made libpng allocate it (found by
     * fuzz/fuzz_image.c; fuzz/regressions/png). Any other chunk's claimed
     * length is not allocated past 8 MiB (image data is read in pieces). */
    static const png_byte skip[] = "sPLT\0iCCP\0zTXt\0iTXt\0tEXt\0eXIf\0hIST\0pCAL\0sCAL\0";
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, skip, (int)(sizeof skip / 5));
    png_set_chunk_malloc_max(png, 8u << 20);
    png_read_info(png, info);
    png_uint_32 w, h;
    int depth, ctype, interlace;
    png_get_IHDR(png, info, &w, &h, &depth, &ctype, &interlace, NULL, NULL);
    if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16) png_set_strip_16(png);
    /* a palette with transparency (tRNS) expands to RGBA: drop that alpha too */
    if ((ctype & PNG_COLOR_MASK_ALPHA) || png_get_valid(png, info, PNG_INFO_tRNS))
        png_set_strip_alpha(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int ch = png_get_channels(png, info);
    size_t rowbytes = png_get_rowbytes(png, info), total;
    if ((ch != 1 && ch != 3) || w == 0 || h == 0 || (uint64_t)w * h > MAEC_MAX_PIXELS ||
        rowbytes != (size_t)w * (size_t)ch || !size_mul(rowbytes, h, &total)) {
        rc = maec_fail(err, MAEC_EFORMAT, "%s: unsupported PNG (%ux%u, %d channels)", path,
                       (unsigned)w, (unsigned)h, ch);
        png_longjmp(png, 1);
    }
    pix = malloc(total);
    rows = malloc((size_t)h * sizeof(png_bytep));
    if (!pix || !rows) {
        rc = maec_fail(err, MAEC_ENOMEM, "%s: out of memory for a %ux%u image", path,
                       (unsigned)w, (unsigned)h);
        png_longjmp(png, 1);
    }
    for (png_uint_32 y = 0; y < h; y++) rows[y] = pix + (size_t)y * rowbytes;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    rc = maec_image_resize_buffer(img, ch, (int)h, (int)w, err);
    if (rc) png_longjmp(png, 1);
    for (png_uint_32 y = 0; y < h; y++) put_row(img, (int)y, rows[y], ch);
    png_destroy_read_struct(&png, &info, NULL);
    free(pix);
    free(rows);
    return 0;
}

/* ------------------------------------------------------------------ JPEG */

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
} jpeg_errctx;

static void jpeg_error_exit_fn(j_common_ptr cinfo)
{
    jpeg_errctx *ctx = (jpeg_errctx *)cinfo->err;
    cinfo->err->format_message(cinfo, ctx->msg);
    longjmp(ctx->jb, 1);
}

/* warnings are silent, except a truncated file, which is an error (as PIL) */
static void jpeg_emit_message_fn(j_common_ptr cinfo, int level)
{
    if (level < 0) {
        cinfo->err->num_warnings++;
        if (cinfo->err->msg_code == JWRN_JPEG_EOF) jpeg_error_exit_fn(cinfo);
    }
}

static void jpeg_output_message_fn(j_common_ptr cinfo) { (void)cinfo; }

static int decode_jpeg(FILE *f, const char *path, maec_image *img, maec_error *err)
{
    struct jpeg_decompress_struct cinfo;
    jpeg_errctx ctx;
    memset(&ctx, 0, sizeof ctx);
    cinfo.err = jpeg_std_error(&ctx.pub);
    ctx.pub.error_exit = jpeg_error_exit_fn;
    ctx.pub.emit_message = jpeg_emit_message_fn;
    ctx.pub.output_message = jpeg_output_message_fn;
    unsigned char *volatile row = NULL;
    volatile int rc = 0;
    if (setjmp(ctx.jb)) {
        jpeg_destroy_decompress(&cinfo);
        free(row);
        if (rc) return rc;
        return maec_fail(err, MAEC_EFORMAT, "%s: bad JPEG: %s", path, ctx.msg);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_stdio_src(&cinfo, f);
    jpeg_read_header(&cinfo, TRUE);
    int cmyk = 0;
    switch (cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE: cinfo.out_color_space = JCS_GRAYSCALE; break;
    case JCS_CMYK:
    case JCS_YCCK:
        cinfo.out_color_space = JCS_CMYK;
        cmyk = 1;
        break;
    default: cinfo.out_color_space = JCS_RGB; break;
    }
    if (cinfo.image_width == 0 || cinfo.image_height == 0 ||
        (uint64_t)cinfo.image_width * cinfo.image_height > MAEC_MAX_PIXELS) {
        rc = maec_fail(err, MAEC_EFORMAT, "%s: unsupported JPEG size %ux%u", path,
                       (unsigned)cinfo.image_width, (unsigned)cinfo.image_height);
        longjmp(ctx.jb, 1);
    }
    jpeg_start_decompress(&cinfo);
    int w = (int)cinfo.output_width, h = (int)cinfo.output_height;
    int comps = cinfo.output_components, ch = comps == 1 ? 1 : 3;
    if (comps != (cmyk ? 4 : ch)) {
        rc = maec_fail(err, MAEC_EFORMAT, "%s: unsupported JPEG (%d components)", path, comps);
        longjmp(ctx.jb, 1);
    }
    rc = maec_image_resize_buffer(img, ch, h, w, err);
    if (rc) longjmp(ctx.jb, 1);
    row = malloc((size_t)w * (size_t)comps);
    if (!row) {
        rc = maec_fail(err, MAEC_ENOMEM, "%s: out of memory", path);
        longjmp(ctx.jb, 1);
    }
    int adobe = cinfo.saw_Adobe_marker;
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW r = row;
        int y = (int)cinfo.output_scanline;
        if (jpeg_read_scanlines(&cinfo, &r, 1) != 1) {
            rc = maec_fail(err, MAEC_EFORMAT, "%s: bad JPEG: cannot read row %d", path, y);
            longjmp(ctx.jb, 1);
        }
        if (cmyk) {
            /* CMYK -> RGB as PIL: Adobe files store the inverted values */
            for (int x = 0; x < w; x++) {
                unsigned char *p = row + 4 * x;
                int k = adobe ? p[3] : 255 - p[3];
                for (int c = 0; c < 3; c++) {
                    int v = adobe ? p[c] : 255 - p[c];
                    p[c] = (unsigned char)((v * k + 127) / 255);
                }
                /* compact to RGB in place (x*3 <= x*4) */
                row[3 * x] = p[0];
                row[3 * x + 1] = p[1];
                row[3 * x + 2] = p[2];
            }
        }
        put_row(img, y, row, ch);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    free(row);
    return 0;
}

/* ------------------------------------------------------------------ files */

int maec_image_decode_file(const char *path, maec_image *img, maec_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) return maec_fail(err, MAEC_EIO, "cannot open image %s: %s", path, strerror(errno));
    unsigned char sig[8] = {0};
    size_t got = fread(sig, 1, sizeof sig, f);
    rewind(f);
    int rc;
    if (got == 8 && !png_sig_cmp(sig, 0, 8))
        rc = decode_png(f, path, img, err);
    else if (got >= 3 && sig[0] == 0xFF && sig[1] == 0xD8 && sig[2] == 0xFF)
        rc = decode_jpeg(f, path, img, err);
    else
        rc = maec_fail(err, MAEC_EFORMAT, "%s: not a PNG or JPEG image%s", path,
                       got == 0 ? " (empty file)" : "");
    fclose(f);
    return rc;
}

int maec_png_decode_file_only(const char *path, maec_image *img, maec_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) return maec_fail(err, MAEC_EIO, "cannot open %s: %s", path, strerror(errno));
    unsigned char sig[8] = {0};
    size_t got = fread(sig, 1, sizeof sig, f);
    rewind(f);
    int rc = (got == 8 && !png_sig_cmp(sig, 0, 8))
                 ? decode_png(f, path, img, err)
                 : maec_fail(err, MAEC_EFORMAT, "%s: not a PNG file", path);
    fclose(f);
    return rc;
}
