"""Write the fixtures that maec's C tests compare against.

    /usr/bin/python3 tests/reference/make_fixtures.py [--out tests/fixtures]

Deterministic: every case has its own torch seed. Parameters, images and
noise are drawn in float32 and the reference is then computed in float64
from exactly those float32 values; all files store float32.
"""

import argparse
import copy
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mae_ref import (MAE, MAEConfig, patchify, unpatchify, sincos_2d,  # noqa: E402
                     make_adamw, lr_at, maec_metadata)
import st  # noqa: E402

ADAMW_LRS = [1e-3, 5e-4, 2.5e-4]
ADAM_TINY_GRAD = 1e-6

CASES = [
    # name, seed, batch, config
    ("c1", 101, 3, MAEConfig(img_h=16, img_w=16, in_chans=1, patch_size=4, embed_dim=32, depth=2,
                             num_heads=2, decoder_embed_dim=24, decoder_depth=1, decoder_num_heads=2,
                             mask_ratio=0.75, norm_pix_loss=False)),
    ("c3_normpix", 102, 2, MAEConfig(img_h=16, img_w=16, in_chans=3, patch_size=4, embed_dim=32, depth=2,
                                     num_heads=4, decoder_embed_dim=24, decoder_depth=2, decoder_num_heads=3,
                                     mask_ratio=0.75, norm_pix_loss=True)),
    ("nonsquare", 103, 2, MAEConfig(img_h=12, img_w=20, in_chans=3, patch_size=4, embed_dim=32, depth=1,
                                    num_heads=2, decoder_embed_dim=16, decoder_depth=2, decoder_num_heads=2,
                                    mask_ratio=0.6, norm_pix_loss=True)),
    ("menc", 104, 2, MAEConfig(img_h=16, img_w=16, in_chans=1, patch_size=4, embed_dim=32, depth=2,
                               num_heads=2, decoder_embed_dim=24, decoder_depth=1, decoder_num_heads=2,
                               mask_ratio=0.75, norm_pix_loss=False, mask_token_in_encoder=True)),
    ("allloss", 105, 2, MAEConfig(img_h=8, img_w=12, in_chans=1, patch_size=2, embed_dim=16, depth=1,
                                  num_heads=1, decoder_embed_dim=8, decoder_depth=1, decoder_num_heads=1,
                                  mask_ratio=0.5, norm_pix_loss=True, loss_on_all=True)),
]


def f32(t):
    return t.detach().to(torch.float32).cpu().numpy()


def build_case(cfg, seed, batch):
    """Model (float32 params incl. the bias/norm noise), images, noise."""
    torch.manual_seed(seed)
    model = MAE(cfg)
    # every bias and every LayerNorm weight gets normal(0, .02) noise, so that
    # the tests can see bias and norm mistakes
    norm_w = {mn + ".weight" for mn, m in model.named_modules() if isinstance(m, torch.nn.LayerNorm)}
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias") or name in norm_w:
                p.add_(torch.randn_like(p) * 0.02)
    imgs = torch.randn(batch, cfg.in_chans, cfg.img_h, cfg.img_w, dtype=torch.float32)
    noise = torch.rand(batch, cfg.num_patches, dtype=torch.float32)
    for row in noise:
        assert len(set(row.tolist())) == row.numel(), "tied noise values"
    return model, imgs, noise


def grads_of(model, imgs, noise):
    model.zero_grad(set_to_none=True)
    loss, pred, mask = model(imgs, noise)
    loss.backward()
    return loss, pred, mask


def grads_dict(model, loss, pred, mask):
    out = {"loss": f32(loss.reshape(1)), "mask": f32(mask), "pred": f32(pred)}
    for n, p in model.trainable():
        out[n] = f32(p.grad)
    return out


def finite_diff_check(model, imgs, noise, names, eps=1e-6):
    """Central differences on one entry of each named parameter (float64)."""
    params = dict(model.named_parameters())
    loss, _, _ = grads_of(model, imgs, noise)
    worst = 0.0
    lines = []
    for name in names:
        p = params[name]
        flat_idx = (p.numel() * 7 // 13) % p.numel()
        g = p.grad.reshape(-1)[flat_idx].item()
        with torch.no_grad():
            orig = p.reshape(-1)[flat_idx].item()
            p.view(-1)[flat_idx] = orig + eps
            lp = model(imgs, noise)[0].item()
            p.view(-1)[flat_idx] = orig - eps
            lm = model(imgs, noise)[0].item()
            p.view(-1)[flat_idx] = orig
        fd = (lp - lm) / (2 * eps)
        rel = abs(fd - g) / max(abs(fd), abs(g), 1e-12)
        worst = max(worst, rel)
        lines.append("    %-36s[%4d] autograd % .9e  fd % .9e  rel %.1e" % (name, flat_idx, g, fd, rel))
    return worst, lines


OFFICIAL_BLOCK = ["norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
                  "attn.proj.bias", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias",
                  "mlp.fc2.weight", "mlp.fc2.bias"]


def official_names(cfg):
    n = ["cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"]
    n += ["blocks.%d.%s" % (i, s) for i in range(cfg.depth) for s in OFFICIAL_BLOCK]
    n += ["norm.weight", "norm.bias", "decoder_embed.weight", "decoder_embed.bias", "decoder_pos_embed"]
    n += ["decoder_blocks.%d.%s" % (i, s) for i in range(cfg.decoder_depth) for s in OFFICIAL_BLOCK]
    n += ["decoder_norm.weight", "decoder_norm.bias", "decoder_pred.weight", "decoder_pred.bias"]
    n += ["encoder_mask_token"] if cfg.mask_token_in_encoder else ["mask_token"]
    return set(n)


def manual_adamw(model, imgs, noise, lrs, wd=0.05, b1=0.9, b2=0.95, eps=1e-8):
    """The AdamW update written out (torch 1.13 single-tensor AdamW), float64:
        p <- p * (1 - lr*wd)                      (wd = 0 for ndim <= 1 and *.bias)
        m <- b1*m + (1-b1)*g ;  v <- b2*v + (1-b2)*g*g
        p <- p - (lr / (1-b1^t)) * m / (sqrt(v) / sqrt(1-b2^t) + eps)
    """
    params = model.trainable()
    state = {n: (torch.zeros_like(p), torch.zeros_like(p)) for n, p in params}
    for t, lr in enumerate(lrs, start=1):
        model.zero_grad(set_to_none=True)
        model(imgs, noise)[0].backward()
        with torch.no_grad():
            for n, p in params:
                m, v = state[n]
                g = p.grad
                w = 0.0 if (p.ndim <= 1 or n.endswith(".bias")) else wd
                p.mul_(1 - lr * w)
                m.mul_(b1).add_((1 - b1) * g)
                v.mul_(b2).add_((1 - b2) * g * g)
                denom = v.sqrt() / (1 - b2 ** t) ** 0.5 + eps
                p.sub_((lr / (1 - b1 ** t)) * m / denom)
    return model


def write_case(out_dir, name, seed, batch, cfg, summary):
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    model32, imgs32, noise32 = build_case(cfg, seed, batch)

    st.save_file(os.path.join(d, "model.safetensors"),
                 {n: f32(t) for n, t in model32.state_dict().items()},
                 metadata=maec_metadata(cfg))
    st.save_npy(os.path.join(d, "images.npy"), imgs32.numpy())
    st.save_npy(os.path.join(d, "noise.npy"), noise32.numpy())

    # float64 reference from the same float32 values
    model = copy.deepcopy(model32).double()
    imgs, noise = imgs32.double(), noise32.double()
    loss, pred, mask = grads_of(model, imgs, noise)
    st.save_file(os.path.join(d, "grads.safetensors"), grads_dict(model, loss, pred, mask),
                 metadata={"case": name, "dtype": "float64 reference, stored float32"})

    # three AdamW steps, lr 1e-3, 5e-4, 2.5e-4
    mopt = copy.deepcopy(model32).double()
    opt = make_adamw(mopt, lr=ADAMW_LRS[0], weight_decay=0.05)
    losses = []
    for lr in ADAMW_LRS:
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        l, _, _ = mopt(imgs, noise)
        l.backward()
        losses.append(l.item())
        opt.step()
    ad = {n: f32(p) for n, p in mopt.trainable()}
    ad["losses"] = np.array(losses, dtype=np.float32)
    st.save_file(os.path.join(d, "adamw.safetensors"), ad,
                 metadata={"case": name, "lrs": json.dumps(ADAMW_LRS), "betas": "[0.9, 0.95]",
                           "eps": "1e-08", "weight_decay": "0.05",
                           "note": "entries whose float64 gradient (grads.safetensors) has |g| < 1e-6 are "
                                   "ill-conditioned under Adam (e.g. the key third of qkv.bias, zero gradient "
                                   "in exact arithmetic); float32 round-off moves them by up to ~sum(lrs)"})

    # checks of the reference itself
    assert set(model32.state_dict()) == official_names(cfg), "state-dict names"
    mman = manual_adamw(copy.deepcopy(model32).double(), imgs, noise, ADAMW_LRS)
    adam_diff = max((a - b).abs().max().item() for (_, a), (_, b) in zip(mman.trainable(), mopt.trainable()))
    assert adam_diff < 1e-12, "torch AdamW differs from the written-out update: %g" % adam_diff
    fd_names = ["patch_embed.proj.weight", "patch_embed.proj.bias", "blocks.0.attn.qkv.weight",
                "blocks.0.norm1.weight", "norm.bias", "decoder_blocks.0.mlp.fc1.weight",
                "decoder_pred.bias", "cls_token"]
    fd_names.append("encoder_mask_token" if cfg.mask_token_in_encoder else "mask_token")
    fd_model = copy.deepcopy(model32).double()
    worst, lines = finite_diff_check(fd_model, imgs, noise, fd_names)
    x = patchify(imgs, cfg.patch_size)
    back = unpatchify(x, cfg.patch_size, cfg.grid_h, cfg.grid_w, cfg.in_chans)
    assert torch.equal(back, imgs), "patchify/unpatchify round trip"
    assert x.shape == (batch, cfg.num_patches, cfg.patch_dim)
    assert int(mask.sum().item()) == batch * (cfg.num_patches - cfg.len_keep)

    s = {"case": name, "loss_f64": loss.item(), "adamw_losses": losses, "fd_worst_rel": worst,
         "adamw_manual_vs_torch": adam_diff,
         "L": cfg.num_patches, "keep": cfg.len_keep}

    # the same in plain PyTorch float32, to calibrate the tolerances of the C
    # tests (grads_f32.safetensors is kept for c3_normpix only)
    m32 = copy.deepcopy(model32).float()
    l32, p32, k32 = grads_of(m32, imgs32, noise32)
    if name == "c3_normpix":
        st.save_file(os.path.join(d, "grads_f32.safetensors"), grads_dict(m32, l32, p32, k32),
                     metadata={"case": name, "dtype": "float32 PyTorch"})
    g_abs = g_rel = 0.0
    for (n, p64), (_, q) in zip(model.trainable(), m32.trainable()):
        diff = (p64.grad - q.grad.double()).abs().max().item()
        g_abs = max(g_abs, diff)
        g_rel = max(g_rel, diff / (p64.grad.abs().max().item() + 1e-30))
    pred_abs = (pred - p32.double()).abs().max().item()
    # three AdamW steps in float32; entries whose float64 gradient is tiny
    # (|g| < ADAM_TINY_GRAD, mostly the key part of qkv.bias, whose gradient is
    # zero in exact arithmetic) are ill-conditioned under Adam: there float32
    # round-off of size ~1e-9 becomes an update of size ~lr.
    mo32 = copy.deepcopy(model32).float()
    opt32 = make_adamw(mo32)
    for lr in ADAMW_LRS:
        for g in opt32.param_groups:
            g["lr"] = lr
        opt32.zero_grad(set_to_none=True)
        mo32(imgs32, noise32)[0].backward()
        opt32.step()
    a_good = a_bad = 0.0
    n_bad = 0
    for (n, p64), (_, q) in zip(mopt.trainable(), mo32.trainable()):
        diff = (p64 - q.double()).abs()
        bad = model.get_parameter(n).grad.abs() < ADAM_TINY_GRAD
        n_bad += int(bad.sum().item())
        if (~bad).any():
            a_good = max(a_good, diff[~bad].max().item())
        if bad.any():
            a_bad = max(a_bad, diff[bad].max().item())
    s.update({"loss_f32": l32.item(), "f32_grad_maxabs": g_abs, "f32_grad_maxrel": g_rel,
              "f32_pred_maxabs": pred_abs, "f32_adamw_maxabs": a_good, "f32_adamw_tiny_maxabs": a_bad,
              "n_tiny": n_bad})

    summary.append(s)
    print("%-11s L=%-3d keep=%-3d loss %.9f  adamw losses %s" % (
        name, cfg.num_patches, cfg.len_keep, loss.item(), ", ".join("%.9f" % v for v in losses)))
    print("  float32 PyTorch vs this float64 reference: loss %.9f (diff %.1e), pred max|d| %.1e, "
          "grads max|d| %.1e (max|d|/max|g| per tensor %.1e)" % (
              l32.item(), abs(l32.item() - loss.item()), pred_abs, g_abs, g_rel))
    print("  float32 PyTorch AdamW x3 vs reference: max|d| %.1e where |g64| >= %g; %.1e on the %d entries below" % (
        a_good, ADAM_TINY_GRAD, a_bad, n_bad))
    print("  AdamW written out vs torch.optim.AdamW: max |diff| %.1e" % adam_diff)
    print("  finite differences (float64, eps 1e-6), worst rel %.1e:" % worst)
    for ln in lines:
        print(ln)
    assert worst < 1e-5, "finite-difference check failed"


def write_lr_schedule(out_dir):
    p = dict(blr=1.5e-4, batch_size=64, accum_iter=2, world_size=1, epochs=5, warmup_epochs=2,
             min_lr=1e-6, iters_per_epoch=7)
    eff = p["batch_size"] * p["accum_iter"] * p["world_size"]
    lr_max = p["blr"] * eff / 256
    lrs, epochs_frac, official = [], [], []
    cur = None
    for epoch in range(p["epochs"]):
        for it in range(p["iters_per_epoch"]):
            e = it / p["iters_per_epoch"] + epoch
            lr = lr_at(e, lr_max, p["min_lr"], p["warmup_epochs"], p["epochs"])
            lrs.append(lr)
            epochs_frac.append(e)
            # main_pretrain.py only sets the lr when it % accum_iter == 0
            if it % p["accum_iter"] == 0:
                cur = lr
            official.append(cur)
    doc = dict(p)
    doc.update({
        "eff_batch_size": eff,
        "lr_max": lr_max,
        "note": "lr[k] = schedule at fractional epoch it/iters_per_epoch + epoch, k = epoch*iters_per_epoch + it "
                "(it = micro-batch index within the epoch). lr_official_accum is the lr in effect at each "
                "micro-batch in main_pretrain.py, which only updates it when it % accum_iter == 0.",
        "epoch_frac": epochs_frac,
        "lr": lrs,
        "lr_official_accum": official,
    })
    with open(os.path.join(out_dir, "lr_schedule.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print("lr_schedule: lr_max %.6g, %d values, first %s, last %.9g" % (
        lr_max, len(lrs), ["%.6g" % v for v in lrs[:3]], lrs[-1]))


def write_posembed(out_dir):
    t = {
        "pos_32_3x5": sincos_2d(32, 3, 5).astype(np.float32)[None],
        "pos_24_4x4": sincos_2d(24, 4, 4).astype(np.float32)[None],
    }
    st.save_file(os.path.join(out_dir, "posembed.safetensors"), t,
                 metadata={"note": "[1, 1+gh*gw, D], row 0 = class token (zeros); "
                                   "first D/2 dims encode the column, last D/2 the row"})
    # spot check: token (y=1, x=2) of the 3x5 grid, dim 0 = sin(x*1) and dim 16 = sin(y*1)
    row = t["pos_32_3x5"][0, 1 + 1 * 5 + 2]
    assert abs(row[0] - np.sin(2.0)) < 1e-7 and abs(row[16] - np.sin(1.0)) < 1e-7
    assert abs(row[8] - np.cos(2.0)) < 1e-7 and abs(row[24] - np.cos(1.0)) < 1e-7
    print("posembed: pos_32_3x5 %s, pos_24_4x4 %s" % (t["pos_32_3x5"].shape, t["pos_24_4x4"].shape))


def check_patchify_order():
    """Element (c, y, x) of an image lands at patch (y//p)*(W/p) + x//p,
    index ((y%p)*p + x%p)*C + c inside the patch vector."""
    B, C, H, W, p = 2, 3, 8, 12, 4
    imgs = torch.randn(B, C, H, W, dtype=torch.float64)
    x = patchify(imgs, p)
    for c, y, xx in [(0, 0, 0), (2, 5, 7), (1, 7, 11), (2, 3, 4)]:
        l = (y // p) * (W // p) + xx // p
        k = ((y % p) * p + xx % p) * C + c
        assert x[1, l, k] == imgs[1, c, y, xx]
    assert torch.equal(unpatchify(x, p, H // p, W // p, C), imgs)
    print("patchify: order and round trip ok (also checked per case)")


def selftest_st(out_dir):
    """Round trip of the safetensors writer/reader on the written model."""
    for name, _, _, _ in CASES:
        tens, meta = st.load_file(os.path.join(out_dir, name, "model.safetensors"))
        cfg = json.loads(meta["maec_config"])
        assert meta["format"] == "maec" and cfg["embed_dim"] == tens["cls_token"].shape[-1]
        with open(os.path.join(out_dir, name, "model.safetensors"), "rb") as f:
            n = int.from_bytes(f.read(8), "little")
        assert n % 8 == 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "..", "fixtures"))
    args = ap.parse_args()
    out = os.path.normpath(args.out)
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)        # fixed reduction order
    summary = []
    for name, seed, batch, cfg in CASES:
        write_case(out, name, seed, batch, cfg, summary)
    check_patchify_order()
    write_lr_schedule(out)
    write_posembed(out)
    selftest_st(out)
    total = 0
    for root, _, files in os.walk(out):
        for fn in files:
            total += os.path.getsize(os.path.join(root, fn))
    print("wrote %s (%.1f KiB)" % (out, total / 1024))


if __name__ == "__main__":
    main()
