"""torch.nn.utils.clip_grad_norm_ on three gradients; writes
tests/fixtures/eval/clip.safetensors.

    /usr/bin/python3 tests/reference/clip_ref.py [--out tests/fixtures/eval]

main_finetune.py's --clip_grad goes through timm's NativeScaler to
clip_grad_norm_(model.parameters(), max_norm) after the gradients are
accumulated. Tensors: g0, g1, g2 the gradients; for max_norm 1.0 (clipped)
and 50.0 (left alone): c<m>.g0..g2 after clipping and c<m>.norm the total
norm it returns.
"""

import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures/eval")
    a = ap.parse_args()
    g = torch.Generator().manual_seed(11)
    shapes = [(3, 4), (5,), (2, 2, 3)]
    grads = [torch.randn(*s, generator=g, dtype=torch.float32) * (k + 1) for k, s in enumerate(shapes)]
    t = {"g%d" % k: x.numpy() for k, x in enumerate(grads)}
    for m in (1.0, 50.0):
        ps = [torch.nn.Parameter(torch.zeros(s)) for s in shapes]
        for p, x in zip(ps, grads):
            p.grad = x.clone()
        norm = torch.nn.utils.clip_grad_norm_(ps, m)
        for k, p in enumerate(ps):
            t["c%g.g%d" % (m, k)] = p.grad.numpy()
        t["c%g.norm" % m] = np.array([norm.item()], dtype=np.float32)
    st.save_file(os.path.join(a.out, "clip.safetensors"), t)


if __name__ == "__main__":
    main()
