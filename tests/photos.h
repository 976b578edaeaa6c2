/* Photo-like test images written by the tests themselves (no committed
 * images): JPEG (libjpeg) or PNG (maec_png_write) by the file's extension,
 * of any size, grey or RGB, with a pattern that depends on a seed, and the
 * folders above them made as needed. */
#ifndef MAEC_TEST_PHOTOS_H
#define MAEC_TEST_PHOTOS_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <jpeglib.h>

#include "io/png.h"

static void write_jpeg(const char *path, int w, int h, int ch, const unsigned char *data)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr jerr;
    c.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&c);
    FILE *f = fopen(path, "wb");
    if (!f) {
        jpeg_destroy_compress(&c);
        return;
    }
    jpeg_stdio_dest(&c, f);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = ch;
    c.in_color_space = ch == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 100, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(data + (size_t)c.next_scanline * w * ch);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    fclose(f);
}

/* mkdir -p of the folder part of path */
static inline void photo_dirs(const char *path)
{
    char p[1024];
    snprintf(p, sizeof p, "%s", path);
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            mkdir(p, 0755);
            *s = '/';
        }
}

static inline int photo_is_jpeg(const char *s)
{
    size_t n = strlen(s);
    return (n > 4 && !strcasecmp(s + n - 4, ".jpg")) || (n > 5 && !strcasecmp(s + n - 5, ".jpeg"));
}

/* a w x h image of ch channels at path; its brightness follows level (0..255) */
static inline void photo_write(const char *path, int w, int h, int ch, int seed, int level)
{
    unsigned char *p = malloc((size_t)w * h * ch);
    if (!p) return;
    for (int i = 0; i < w * h * ch; i++) {
        int v = level + ((i * 7 + seed * 31 + (i / (w * ch)) * 3) % 41) - 20;
        p[i] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
    photo_dirs(path);
    if (photo_is_jpeg(path)) {
        write_jpeg(path, w, h, ch, p);
    } else {
        maec_error err;
        maec_png_write(path, p, w, h, ch, &err);
    }
    free(p);
}
#endif
