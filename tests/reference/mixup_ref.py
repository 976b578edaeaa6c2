"""timm's Mixup/CutMix in its three modes, on given draws; writes
tests/fixtures/eval/mixup.safetensors.

    /usr/bin/python3 tests/reference/mixup_ref.py [--out tests/fixtures/eval]

Written from the behaviour of timm's timm/data/mixup.py (Mixup._mix_batch,
_mix_pair, _mix_elem, rand_bbox, cutmix_bbox_and_lam with correct_lam,
mixup_target), which main_finetune.py uses. The random draws (whether
CutMix, lam before the box correction, the box centre) are fixed here and
stored, so that maec's arithmetic is held against timm's on the same draws;
the images are mixed in float32 as timm does, per-image and per-pair lams
kept in a float32 array as timm keeps them.

Tensors: x [B,C,H,W] the batch, labels [B]; for each mode m in batch, pair,
batchmix, elem: m.cut, m.lam, m.cy, m.cx [draws] (the draws), m.x (the mixed batch),
m.t [B,K] (the targets, smoothing 0.1).
"""

import argparse
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402

B, C, H, W, K, SMOOTH = 6, 2, 5, 7, 4, 0.1


def box(lam, cy, cx):
    """timm rand_bbox (no margin) and the lam corrected to the clipped box"""
    ratio = np.sqrt(1 - lam)
    ch, cw = int(H * ratio), int(W * ratio)
    yl, yh = np.clip(cy - ch // 2, 0, H), np.clip(cy + ch // 2, 0, H)
    xl, xh = np.clip(cx - cw // 2, 0, W), np.clip(cx + cw // 2, 0, W)
    return (int(yl), int(yh), int(xl), int(xh)), 1.0 - (yh - yl) * (xh - xl) / float(H * W)


def one_hot(y, on, off):
    return torch.full((len(y), K), off, dtype=torch.float32).scatter_(1, y.view(-1, 1), on)


def target(y, lam):
    off = SMOOTH / K
    on = 1.0 - SMOOTH + off
    y1, y2 = one_hot(y, on, off), one_hot(y.flip(0), on, off)
    return y1 * lam + y2 * (1.0 - lam)


def mix_batch(x, cut, lam, cy, cx):
    lam = float(lam)
    if lam == 1.0:
        return 1.0
    if cut:
        (yl, yh, xl, xh), lam = box(lam, cy, cx)
        x[:, :, yl:yh, xl:xh] = x.flip(0)[:, :, yl:yh, xl:xh]
    else:
        xf = x.flip(0).mul_(1.0 - lam)
        x.mul_(lam).add_(xf)
    return lam


def mix_pairs(x, cuts, lams, cys, cxs, elem):
    n = len(x)
    lam_b = np.array(lams, dtype=np.float32)
    orig = x.clone()
    for i in range(n if elem else n // 2):
        j = n - i - 1
        lam = lam_b[i]
        if lam != 1.0:
            if cuts[i]:
                (yl, yh, xl, xh), lam = box(lam, cys[i], cxs[i])
                x[i][:, yl:yh, xl:xh] = orig[j][:, yl:yh, xl:xh]
                if not elem:
                    x[j][:, yl:yh, xl:xh] = orig[i][:, yl:yh, xl:xh]
                lam_b[i] = lam
            else:
                x[i] = x[i] * lam + orig[j] * (1 - lam)
                if not elem:
                    x[j] = x[j] * lam + orig[i] * (1 - lam)
    if not elem:
        lam_b = np.concatenate((lam_b, lam_b[::-1]))
    return torch.tensor(lam_b, dtype=torch.float32).unsqueeze(1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/eval")
    a = ap.parse_args()
    g = torch.Generator().manual_seed(7)
    x0 = torch.randn(B, C, H, W, generator=g, dtype=torch.float32)
    y = torch.tensor([0, 3, 1, 1, 2, 3])
    t = {"x": x0.numpy(), "labels": y.numpy().astype(np.float32)}
    cases = {
        # one cutmix draw for the whole batch
        "batch": ([1], [0.55], [1], [6]),
        # one mixup draw for the whole batch
        "batchmix": ([0], [0.7], [0], [0]),
        # three pairs: mixup, cutmix clipped at a corner, untouched
        "pair": ([0, 1, 0], [0.3, 0.62, 1.0], [0, 4, 0], [0, 0, 0]),
        # six images, each its own draw
        "elem": ([1, 0, 0, 1, 0, 1], [0.4, 0.8, 1.0, 0.9, 0.15, 0.5], [2, 0, 0, 0, 0, 4], [3, 0, 0, 6, 0, 1]),
    }
    for m, (cut, lam, cy, cx) in cases.items():
        lam = [float(np.float32(v)) for v in lam]  # the values the fixture stores
        x = x0.clone()
        if m.startswith("batch"):
            lam_t = mix_batch(x, cut[0], lam[0], cy[0], cx[0])
        else:
            lam_t = mix_pairs(x, cut, lam, cy, cx, m == "elem")
        t[m + ".cut"] = np.array(cut, dtype=np.float32)
        t[m + ".lam"] = np.array(lam, dtype=np.float32)
        t[m + ".cy"] = np.array(cy, dtype=np.float32)
        t[m + ".cx"] = np.array(cx, dtype=np.float32)
        t[m + ".x"] = x.numpy()
        t[m + ".t"] = target(y, lam_t).numpy()
    st.save_file(os.path.join(a.out, "mixup.safetensors"), t)


if __name__ == "__main__":
    main()
