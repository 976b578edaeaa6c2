/* PNG files: 8-bit gray or RGB output, written atomically; reading through
 * the data decoder. */
#ifndef MAEC_PNG_H
#define MAEC_PNG_H

#include "data/data.h"
#include "maec.h"

/* Write an 8-bit PNG of w x h pixels, channels 1 (gray) or 3 (RGB),
 * row-major with the channels of a pixel interleaved ([h, w, channels]).
 * Atomic: a temporary file, fsync, rename; nothing is left on error. */
int maec_png_write(const char *path, const unsigned char *pixels, int w, int h, int channels,
                   maec_error *err);

/* Read a PNG (any bit depth and color type) into img: [c, h, w] floats in
 * [0, 1], c = 1 (gray) or 3 (RGB), alpha dropped. */
int maec_png_read(const char *path, maec_image *img, maec_error *err);

#endif
