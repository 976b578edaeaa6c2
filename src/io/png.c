/* PNG writing with libpng into an atomic file; libpng errors come back
 * through setjmp as maec errors. */
#define _POSIX_C_SOURCE 200809L
#include "io/png.h"

#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <png.h>

#include "data/internal.h"
#include "util.h"

typedef struct {
    char msg[200];
} png_werr;

static void write_error_fn(png_structp png, png_const_charp m)
{
    png_werr *ctx = png_get_error_ptr(png);
    snprintf(ctx->msg, sizeof ctx->msg, "%s", m ? m : "error");
    png_longjmp(png, 1);
}

static void write_warning_fn(png_structp png, png_const_charp m)
{
    (void)png;
    (void)m;
}

int maec_png_write(const char *path, const unsigned char *pixels, int w, int h, int channels,
                   maec_error *err)
{
    if (!path || !pixels) return maec_fail(err, MAEC_EINVAL, "png: no path or pixels");
    if (w <= 0 || h <= 0 || w > (int)MAEC_MAX_SIDE || h > (int)MAEC_MAX_SIDE ||
        (channels != 1 && channels != 3))
        return maec_fail(err, MAEC_EINVAL, "%s: cannot write a PNG of %dx%d with %d channels", path,
                         w, h, channels);
    atomic_file af;
    int rc = atomic_open(&af, path, err);
    if (rc) return rc;
    png_werr ctx = {{0}};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &ctx, write_error_fn,
                                              write_warning_fn);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(&png, &info);
        atomic_abort(&af);
        return maec_fail(err, MAEC_ENOMEM, "%s: out of memory", path);
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        atomic_abort(&af);
        return maec_fail(err, MAEC_EIO, "cannot write %s: %s", path, ctx.msg);
    }
    png_init_io(png, af.f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8,
                 channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    size_t stride = (size_t)w * (size_t)channels;
    for (int y = 0; y < h; y++) png_write_row(png, (png_const_bytep)(pixels + (size_t)y * stride));
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    if (ferror(af.f)) af.failed = 1;
    return atomic_commit(&af, err);
}

int maec_png_read(const char *path, maec_image *img, maec_error *err)
{
    if (!path || !img) return maec_fail(err, MAEC_EINVAL, "png: no path or image");
    return maec_png_decode_file_only(path, img, err);
}
