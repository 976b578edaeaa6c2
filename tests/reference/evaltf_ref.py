"""The official evaluation transform on PIL images; writes
tests/fixtures/randaug/evaltf.safetensors.

    /usr/bin/python3 tests/reference/evaltf_ref.py [--out tests/fixtures/randaug]

main_finetune.py's build_transform for evaluation: Resize(int(size /
crop_pct), BICUBIC) (torchvision: the shorter side to that, the longer
int(short' * long / short)), then CenterCrop(size) (top and left with
Python's round). For an H x W output maec scales the image to cover
int(H / crop_pct) x int(W / crop_pct) the same way; for H = W that is the
torchvision transform. Written with PIL 9.4 directly (torchvision calls
Image.resize and Image.crop). Needs python3-pil and numpy.

Tensors: for each case k: k.in [c, h, w] (uint8 values as float32), k.out
[c, H, W] (uint8 values), k.args [H, W, crop_pct].
"""

import argparse
import os
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402

CASES = [  # (h, w, channels, H, W, crop_pct)
    (23, 37, 3, 16, 16, 224 / 256),
    (50, 20, 1, 16, 16, 224 / 256),
    (30, 30, 3, 16, 16, 1.0),
    (41, 29, 3, 12, 20, 0.9),
]


def transform(img, H, W, crop_pct):
    w, h = img.size
    hs, ws = int(H / crop_pct), int(W / crop_pct)
    if hs / h >= ws / w:
        rh, rw = hs, int(hs * w / h)
    else:
        rw, rh = ws, int(ws * h / w)
    img = img.resize((rw, rh), Image.BICUBIC)
    top, left = int(round((rh - H) / 2.0)), int(round((rw - W) / 2.0))
    return img.crop((left, top, left + W, top + H))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/randaug")
    a = ap.parse_args()
    rs = np.random.RandomState(9)
    t = {}
    for k, (h, w, c, H, W, cp) in enumerate(CASES):
        yy, xx = np.mgrid[0:h, 0:w]
        base = (128 + 90 * np.sin(xx / 3.0) * np.cos(yy / 4.0)).astype(np.float64)
        arr = np.stack([base + 20 * j for j in range(c)], -1) + rs.randint(-10, 10, size=(h, w, c))
        arr = np.clip(arr, 0, 255).astype(np.uint8)
        img = Image.fromarray(arr[:, :, 0] if c == 1 else arr, "L" if c == 1 else "RGB")
        out = np.asarray(transform(img, H, W, cp))
        if c == 1:
            out = out[:, :, None]
        t["%d.in" % k] = arr.transpose(2, 0, 1).astype(np.float32)
        t["%d.out" % k] = out.transpose(2, 0, 1).astype(np.float32)
        t["%d.args" % k] = np.array([H, W, cp], dtype=np.float32)
    st.save_file(os.path.join(a.out, "evaltf.safetensors"), t)


if __name__ == "__main__":
    main()
