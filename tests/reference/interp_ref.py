"""The official interpolate_pos_embed (util/pos_embed.py of
facebookresearch/mae) on random position embeddings; writes
tests/fixtures/eval/interp.safetensors.

    /usr/bin/python3 tests/reference/interp_ref.py [--out tests/fixtures/eval]

The class token's row is kept; the patch rows, laid out as the (gh, gw)
grid, go through F.interpolate(mode='bicubic', align_corners=False) to the
new grid. Tensors for each case k: k.src [1, 1 + gh*gw, D], k.dst [1, 1 +
nh*nw, D], k.grid [gh, gw, nh, nw].
"""

import argparse
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402

CASES = [(4, 4, 6, 6), (4, 4, 3, 5), (5, 3, 2, 4), (3, 3, 3, 3), (7, 7, 14, 14)]
D = 8


def interpolate(pe, gh, gw, nh, nw):
    extra, pos = pe[:, :1], pe[:, 1:]
    pos = pos.reshape(-1, gh, gw, D).permute(0, 3, 1, 2)
    pos = F.interpolate(pos, size=(nh, nw), mode="bicubic", align_corners=False)
    pos = pos.permute(0, 2, 3, 1).flatten(1, 2)
    return torch.cat((extra, pos), dim=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/eval")
    a = ap.parse_args()
    g = torch.Generator().manual_seed(3)
    t = {}
    for k, (gh, gw, nh, nw) in enumerate(CASES):
        pe = torch.randn(1, 1 + gh * gw, D, generator=g, dtype=torch.float32)
        t["%d.src" % k] = pe.numpy()
        t["%d.dst" % k] = interpolate(pe, gh, gw, nh, nw).numpy()
        t["%d.grid" % k] = np.array([gh, gw, nh, nw], dtype=np.float32)
    st.save_file(os.path.join(a.out, "interp.safetensors"), t)


if __name__ == "__main__":
    main()
