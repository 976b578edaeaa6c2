"""Write tests/fixtures/randaug/: RandAugment's operations as timm 0.3.2
applies them with PIL, on two small 8-bit images, for maec's C test.

    /usr/bin/python3 tests/reference/randaug_ref.py [--out tests/fixtures/randaug]

Needs Debian's python3-pil and python3-numpy (no timm: the operations below
are timm's auto_augment.py functions, which are one PIL call each, called
with the arguments their level functions give). Deterministic.

Files: in_rgb.npy [3, H, W] and in_gray.npy [1, H, W] (uint8 values as
float32), and for each operation case NAME: rgb_NAME.npy and gray_NAME.npy,
the output in the same layout. cases.txt lists "NAME OP ARG", OP the index
in maec's operation order (src/data/randaug.c), ARG the operation's own
argument (angle, bits, threshold, addend, factor, shear, pixels).
"""

import argparse
import os

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

FILL_RGB = (73, 90, 110)
FILL_GRAY = 73
BICUBIC = Image.BICUBIC

OPS = ["AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color",
       "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX", "TranslateY"]


def solarize_add(img, add, thresh=128):
    lut = [min(255, i + add) if i < thresh else i for i in range(256)]
    if img.mode == "RGB":
        lut = lut * 3
    return img.point(lut)


def apply(img, op, arg, fill):
    tf = dict(resample=BICUBIC, fillcolor=fill)
    if op == "AutoContrast":
        return ImageOps.autocontrast(img)
    if op == "Equalize":
        return ImageOps.equalize(img)
    if op == "Invert":
        return ImageOps.invert(img)
    if op == "Rotate":
        return img.rotate(arg, **tf)
    if op == "Posterize":
        return img if arg >= 8 else ImageOps.posterize(img, int(arg))
    if op == "Solarize":
        return ImageOps.solarize(img, int(arg))
    if op == "SolarizeAdd":
        return solarize_add(img, int(arg))
    if op == "Color":
        return ImageEnhance.Color(img).enhance(arg)
    if op == "Contrast":
        return ImageEnhance.Contrast(img).enhance(arg)
    if op == "Brightness":
        return ImageEnhance.Brightness(img).enhance(arg)
    if op == "Sharpness":
        return ImageEnhance.Sharpness(img).enhance(arg)
    if op == "ShearX":
        return img.transform(img.size, Image.AFFINE, (1, arg, 0, 0, 1, 0), **tf)
    if op == "ShearY":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, arg, 1, 0), **tf)
    if op == "TranslateX":  # translate_x_rel: arg = pct * width pixels
        return img.transform(img.size, Image.AFFINE, (1, 0, arg, 0, 1, 0), **tf)
    if op == "TranslateY":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, arg), **tf)
    raise ValueError(op)


CASES = [
    ("autocontrast", "AutoContrast", 0), ("equalize", "Equalize", 0), ("invert", "Invert", 0),
    ("rotate17", "Rotate", 17.3), ("rotate_m25", "Rotate", -25.0), ("posterize3", "Posterize", 3),
    ("posterize0", "Posterize", 0), ("solarize100", "Solarize", 100), ("solarize256", "Solarize", 256),
    ("solarizeadd60", "SolarizeAdd", 60), ("color16", "Color", 1.6), ("color03", "Color", 0.3),
    ("contrast17", "Contrast", 1.7), ("contrast04", "Contrast", 0.4), ("brightness15", "Brightness", 1.5),
    ("brightness02", "Brightness", 0.2), ("sharpness18", "Sharpness", 1.8), ("sharpness01", "Sharpness", 0.1),
    ("shearx021", "ShearX", 0.21), ("sheary_m017", "ShearY", -0.17), ("translatex72", "TranslateX", 7.2),
    ("translatey_m4", "TranslateY", -4.0),
]


def test_images(h=20, w=24):
    rng = np.random.RandomState(7)
    y, x = np.mgrid[0:h, 0:w]
    base = 40 + 150 * np.exp(-((y - 9.5) ** 2 / 40 + (x - 12) ** 2 / 60))
    rgb = np.stack([base + 30 * np.sin(x / 3.0), base * 0.8 + 20 * np.cos(y / 4.0), 255 - base])
    rgb = np.clip(rgb + rng.randint(-12, 13, size=rgb.shape), 0, 255).astype(np.uint8)
    gray = np.clip(base + rng.randint(-20, 21, size=base.shape), 20, 230).astype(np.uint8)[None]
    return rgb, gray


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "fixtures", "randaug"))
    out = ap.parse_args().out
    os.makedirs(out, exist_ok=True)
    rgb, gray = test_images()
    np.save(os.path.join(out, "in_rgb.npy"), rgb.astype("<f4"))
    np.save(os.path.join(out, "in_gray.npy"), gray.astype("<f4"))
    im_rgb = Image.fromarray(np.transpose(rgb, (1, 2, 0)), "RGB")
    im_gray = Image.fromarray(gray[0], "L")
    lines = []
    for name, op, arg in CASES:
        r = np.asarray(apply(im_rgb, op, arg, FILL_RGB)).transpose(2, 0, 1)
        g = np.asarray(apply(im_gray, op, arg, FILL_GRAY))[None]
        np.save(os.path.join(out, "rgb_%s.npy" % name), r.astype("<f4"))
        np.save(os.path.join(out, "gray_%s.npy" % name), g.astype("<f4"))
        lines.append("%s %d %r" % (name, OPS.index(op), float(arg)))
    with open(os.path.join(out, "cases.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote %d cases to %s" % (len(CASES), out))


if __name__ == "__main__":
    main()
