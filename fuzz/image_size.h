/* The pixel count a PNG or JPEG declares in its header, for the image fuzz
 * targets: they skip inputs that declare more than FUZZ_MAX_PIXELS. maec
 * accepts images up to 2^28 pixels (MAEC_MAX_PIXELS), and a few hundred bytes
 * of JPEG can declare that many and decode (corrupt data is filled in) into
 * gigabytes of floats over many seconds: a cost linear in the declared size,
 * not a memory error, that would only show up as timeouts and out-of-memory
 * reports. (docs/RELIABILITY.md, "Limits".) */
#ifndef MAEC_FUZZ_IMAGE_SIZE_H
#define MAEC_FUZZ_IMAGE_SIZE_H
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define FUZZ_MAX_PIXELS ((uint64_t)1 << 20)

static inline uint64_t fuzz_be16(const uint8_t *p) { return (uint64_t)p[0] << 8 | p[1]; }
static inline uint64_t fuzz_be32(const uint8_t *p) { return fuzz_be16(p) << 16 | fuzz_be16(p + 2); }

/* width * height from the PNG IHDR or the first JPEG SOFn marker; 0 when
 * neither is found where a decoder would look first */
static inline uint64_t fuzz_declared_pixels(const uint8_t *d, size_t n)
{
    if (n >= 24 && d[0] == 0x89 && d[1] == 'P' && !memcmp(d + 12, "IHDR", 4))
        return fuzz_be32(d + 16) * fuzz_be32(d + 20);
    if (n < 4 || d[0] != 0xFF || d[1] != 0xD8) return 0;
    uint64_t most = 0;
    /* every SOFn-looking marker anywhere: libjpeg skips junk between segments */
    for (size_t i = 2; i + 9 <= n; i++) {
        uint8_t m = d[i + 1];
        if (d[i] == 0xFF && m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
            uint64_t px = fuzz_be16(d + i + 5) * fuzz_be16(d + i + 7);
            if (px > most) most = px;
        }
    }
    return most;
}
#endif
