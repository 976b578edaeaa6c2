"""torchvision's ColorJitter(s, s, s) on PIL images, on given draws; writes
tests/fixtures/randaug/jitter.safetensors.

    /usr/bin/python3 tests/reference/jitter_ref.py [--out tests/fixtures/randaug]

torchvision applies brightness, contrast and saturation to a PIL image as
ImageEnhance.Brightness, Contrast and Color, in the order of a random
permutation, each with a factor drawn uniform in [max(0, 1 - s), 1 + s]
(timm's create_transform puts it after the crop and flip when RandAugment
is off). The draws are fixed here and stored. Needs python3-pil and numpy.

Tensors: rgb [3,H,W] and gray [1,H,W] (uint8 values as float32); for each
case k: k.order [3] (0 brightness, 1 contrast, 2 saturation, in the order
applied), k.factor [3] (by transform), k.rgb and k.gray (the outputs).
"""

import argparse
import os
import sys

import numpy as np
from PIL import Image, ImageEnhance

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402

ENH = [ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color]
CASES = [
    ([0, 1, 2], [1.3, 0.7, 1.2]),
    ([2, 0, 1], [0.6, 1.4, 0.65]),
    ([1, 2, 0], [1.0, 1.39, 0.0]),
]


def jitter(img, order, factor):
    for f in order:
        img = ENH[f](img).enhance(factor[f])
    return img


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/randaug")
    a = ap.parse_args()
    rs = np.random.RandomState(5)
    rgb = rs.randint(0, 256, size=(9, 7, 3)).astype(np.uint8)
    rgb[:3, :3] = [250, 20, 30]  # a saturated corner
    gray = rs.randint(0, 256, size=(9, 7)).astype(np.uint8)
    t = {"rgb": rgb.transpose(2, 0, 1).astype(np.float32), "gray": gray[None].astype(np.float32)}
    for k, (order, factor) in enumerate(CASES):
        factor = [float(np.float32(v)) for v in factor]  # the values stored
        out_rgb = np.asarray(jitter(Image.fromarray(rgb, "RGB"), order, factor))
        out_gray = np.asarray(jitter(Image.fromarray(gray, "L"), order, factor))
        t["%d.order" % k] = np.array(order, dtype=np.float32)
        t["%d.factor" % k] = np.array(factor, dtype=np.float32)
        t["%d.rgb" % k] = out_rgb.transpose(2, 0, 1).astype(np.float32)
        t["%d.gray" % k] = out_gray[None].astype(np.float32)
    st.save_file(os.path.join(a.out, "jitter.safetensors"), t)


if __name__ == "__main__":
    main()
