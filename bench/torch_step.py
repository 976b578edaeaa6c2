"""The same MAE pretraining step in PyTorch (the official architecture,
written compactly with torch.nn), timed: the PyTorch side of bench/run.sh.

    /usr/bin/python3 bench/torch_step.py PRESET BATCH STEPS
"""
import json
import math
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {  # img, chans, patch, D, depth, heads, D', dec depth, dec heads
    "fmnist-tiny": (28, 1, 4, 192, 12, 3, 128, 4, 4),
    "cifar-tiny": (32, 3, 4, 192, 12, 3, 128, 4, 4),
    "vit-base-16": (224, 3, 16, 768, 12, 12, 512, 8, 16),
    "fmnist-mini": (28, 1, 4, 128, 6, 4, 96, 2, 4),
}


class Block(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.h = h
        self.norm1 = nn.LayerNorm(d, eps=1e-6)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d, eps=1e-6)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)

    def forward(self, x):
        B, N, D = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(B, N, 3, self.h, D // self.h).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        a = (q @ k.transpose(-2, -1)) * (D // self.h) ** -0.5
        x = x + self.proj((a.softmax(-1) @ v).transpose(1, 2).reshape(B, N, D))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class MAE(nn.Module):
    def __init__(self, img, c, p, d, depth, h, dd, ddepth, dh):
        super().__init__()
        self.p, self.c = p, c
        self.L = (img // p) ** 2
        self.patch_embed = nn.Conv2d(c, d, p, p)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.L + 1, d), requires_grad=False)
        self.blocks = nn.ModuleList([Block(d, h) for _ in range(depth)])
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.decoder_embed = nn.Linear(d, dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dd))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, self.L + 1, dd), requires_grad=False)
        self.decoder_blocks = nn.ModuleList([Block(dd, dh) for _ in range(ddepth)])
        self.decoder_norm = nn.LayerNorm(dd, eps=1e-6)
        self.decoder_pred = nn.Linear(dd, p * p * c)

    def forward(self, imgs, ratio=0.75):
        x = self.patch_embed(imgs).flatten(2).transpose(1, 2) + self.pos_embed[:, 1:]
        B, L, D = x.shape
        keep = int(L * (1 - ratio))
        noise = torch.rand(B, L)
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        x = torch.gather(x, 1, ids_shuffle[:, :keep, None].expand(-1, -1, D))
        mask = torch.ones(B, L)
        mask[:, :keep] = 0
        mask = torch.gather(mask, 1, ids_restore)
        x = torch.cat([(self.cls_token + self.pos_embed[:, :1]).expand(B, -1, -1), x], 1)
        for b in self.blocks:
            x = b(x)
        x = self.decoder_embed(self.norm(x))
        E = x.shape[-1]
        m = self.mask_token.repeat(B, L - keep, 1)
        y = torch.cat([x[:, 1:], m], 1)
        y = torch.gather(y, 1, ids_restore[:, :, None].expand(-1, -1, E))
        x = torch.cat([x[:, :1], y], 1) + self.decoder_pos_embed
        for b in self.decoder_blocks:
            x = b(x)
        pred = self.decoder_pred(self.decoder_norm(x))[:, 1:]
        n, c, hh, ww = imgs.shape
        p = self.p
        t = imgs.reshape(n, c, hh // p, p, ww // p, p)
        t = torch.einsum("nchpwq->nhwpqc", t).reshape(n, L, p * p * c)
        loss = ((pred - t) ** 2).mean(-1)
        return (loss * mask).sum() / mask.sum()


def main():
    preset, B, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    img, c, *rest = PRESETS[preset]
    torch.manual_seed(0)
    model = MAE(img, c, *rest)
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05},
                             {"params": no_decay, "weight_decay": 0.0}], lr=1e-4, betas=(0.9, 0.95))
    x = torch.randn(B, c, img, img)
    t0 = 0
    for s in range(steps + 1):
        if s == 1:
            t0 = time.perf_counter()
        opt.zero_grad()
        loss = model(x)
        loss.backward()
        opt.step()
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"images_per_s": round(steps * B / dt, 2), "peak_mib": round(peak),
                      "loss": round(loss.item(), 4), "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
