"""The same MAE pretraining step in PyTorch (the official architecture,
written compactly with torch.nn), timed: the PyTorch side of bench/run.sh
(CPU) and bench/gpu.sh (GPU).

    /usr/bin/python3 bench/torch_step.py PRESET BATCH STEPS [DEVICE [PRECISION]]

DEVICE is cpu (the default) or cuda; PRECISION is fp32 (the default) or tf32,
which lets cuBLAS and cuDNN use TF32 for float32 matrix products and
convolutions (both switches are set either way, as cuDNN's defaults to on;
on the CPU PRECISION changes nothing). Prints one JSON line: images/s over
STEPS timed steps after the warm-up ones (1 on the CPU, 2 on the GPU), the
process's peak resident memory (peak_mib), the last loss and the thread
count; given a DEVICE, also "device" and "precision", and on cuda the GPU
memory PyTorch allocated at the process's peak, weights and optimizer state
included (device_peak_mib). Exit status 2 for bad arguments or cuda asked
for where PyTorch sees no GPU.
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
    "vit-large-16": (224, 3, 16, 1024, 24, 16, 512, 8, 16),
}
DEVICES = ("cpu", "cuda")
PRECISIONS = ("fp32", "tf32")
WARMUP = {"cpu": 1, "cuda": 2}  # untimed steps before the clock starts


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
        noise = torch.rand(B, L, device=imgs.device)
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        x = torch.gather(x, 1, ids_shuffle[:, :keep, None].expand(-1, -1, D))
        mask = torch.ones(B, L, device=imgs.device)
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


def usage(msg):
    print(f"torch_step.py: {msg}\nusage: torch_step.py PRESET BATCH STEPS [cpu|cuda [fp32|tf32]]"
          f" (presets: {' '.join(PRESETS)})", file=sys.stderr)
    sys.exit(2)


def main():
    if not 4 <= len(sys.argv) <= 6:
        usage("expected 3 to 5 arguments")
    preset, B, steps = sys.argv[1], sys.argv[2], sys.argv[3]
    device = sys.argv[4] if len(sys.argv) > 4 else "cpu"
    precision = sys.argv[5] if len(sys.argv) > 5 else "fp32"
    if preset not in PRESETS:
        usage(f"unknown preset {preset!r}")
    try:
        B, steps = int(B), int(steps)
    except ValueError:
        usage("BATCH and STEPS must be integers")
    if B < 1 or steps < 1:
        usage("BATCH and STEPS must be at least 1")
    if device not in DEVICES:
        usage(f"unknown device {device!r}")
    if precision not in PRECISIONS:
        usage(f"unknown precision {precision!r}")
    if device == "cuda" and not torch.cuda.is_available():
        print("torch_step.py: cuda asked for but torch.cuda.is_available() is false", file=sys.stderr)
        sys.exit(2)
    # Set both ways: cuDNN's TF32 switch defaults to on, cuBLAS's to off.
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    dev = torch.device(device)
    img, c, *rest = PRESETS[preset]
    torch.manual_seed(0)  # seeds the GPU's generators too
    model = MAE(img, c, *rest).to(dev)
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05},
                             {"params": no_decay, "weight_decay": 0.0}], lr=1e-4, betas=(0.9, 0.95))
    # the batch comes from the host every step, as in the official training
    # loop (pinned memory, samples.to(device, non_blocking=True)) and as maec's
    # step uploads it: on cuda the copy is part of the timed step
    x_host = torch.randn(B, c, img, img)
    if device == "cuda":
        x_host = x_host.pin_memory()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    warmup = WARMUP[device]
    t0 = 0
    for s in range(warmup + steps):
        if s == warmup:  # the warm-up steps' GPU work finishes before the clock starts
            sync()
            t0 = time.perf_counter()
        opt.zero_grad()
        x = x_host.to(dev, non_blocking=True)
        loss = model(x)
        loss.backward()
        opt.step()
    sync()
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"images_per_s": round(steps * B / dt, 2), "peak_mib": round(peak),
           "loss": round(loss.item(), 4), "threads": torch.get_num_threads()}
    if len(sys.argv) > 4:  # the three-argument form's output stays as bench/run.sh knows it
        out["device"] = torch.cuda.get_device_name(dev) if device == "cuda" else "cpu"
        out["precision"] = precision
    if device == "cuda":  # no reset of the peak: weights and optimizer state count
        out["device_peak_mib"] = round(torch.cuda.max_memory_allocated(dev) / 2**20)
    print(json.dumps(out))


if __name__ == "__main__":
    try:
        main()
    except RuntimeError as e:  # torch.cuda.OutOfMemoryError is one
        if "out of memory" not in str(e):
            raise
        # one line, the last on stderr, for bench/gpu.sh to record
        print(f"torch_step.py: {' '.join(sys.argv[1:])}: {str(e).splitlines()[0]}", file=sys.stderr)
        sys.exit(1)
