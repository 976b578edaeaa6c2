"""PyTorch reference of maec's evaluation heads; writes tests/fixtures/eval/.

    /usr/bin/python3 tests/reference/eval_ref.py [--out tests/fixtures/eval]

Written from the behaviour of facebookresearch/mae (models_vit.py on timm
0.3.2's VisionTransformer, main_finetune.py, main_linprobe.py,
util/lr_decay.py, util/lars.py) and timm (DropPath, Mixup targets,
SoftTargetCrossEntropy). Inputs are drawn in float32 and the reference is
computed in float64 from exactly those values; files store float32.

Fixtures:
  bn.safetensors        BatchNorm1d(affine=False, eps=1e-6) train mode:
                        forward, backward, running statistics after one step
  xent.safetensors      soft-target cross-entropy (mixup + label smoothing
                        targets): loss and d/dlogits; a linear head in front
  pool.safetensors      mean of the patch tokens + fc_norm: forward, backward
  droppath.safetensors  one ViT block with given per-sample keep scales
  lars.safetensors      two LARS steps on a weight and a bias
  ft/                   a tiny ViT classifier (global pool, fc_norm, head):
                        one fine-tune step with drop path masks and mixup
                        targets: logits, loss, every gradient, the parameters
                        after one AdamW step with layer-wise lr decay, and the
                        lr scale and weight decay of every tensor (lrd.json)
  feat/                 an encoder (final norm) and its frozen features
                        (class token, mean of the patch tokens), its patch
                        tokens after the norm, every token after block 1
                        and the last block's attention probabilities
  knn.safetensors       cosine k-NN predictions with exp(sim/T) votes
"""

import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mae_ref import Attention, Mlp, PatchEmbed  # noqa: E402
import st  # noqa: E402

torch.set_default_dtype(torch.float64)


def f32(t):
    """float32 values held in float64 (the inputs of every case)"""
    return torch.as_tensor(np.asarray(t, dtype=np.float32), dtype=torch.float64)


def rnd(g, *shape, scale=1.0):
    return f32(torch.randn(*shape, generator=g, dtype=torch.float32).numpy() * scale)


def npf(t):
    return t.detach().cpu().numpy().astype(np.float32)


# --------------------------------------------------------------------------
# the classifier (models_vit.VisionTransformer), drop path with given scales

class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio=4):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, dim * mlp_ratio)

    def forward(self, x, keep_attn=None, keep_mlp=None):
        a = self.attn(self.norm1(x))
        if keep_attn is not None:       # timm DropPath: x / keep_prob * bernoulli
            a = a * keep_attn[:, None, None]
        x = x + a
        m = self.mlp(self.norm2(x))
        if keep_mlp is not None:
            m = m * keep_mlp[:, None, None]
        return x + m


class ViT(nn.Module):
    def __init__(self, img, C, p, D, depth, heads, num_classes, global_pool):
        super().__init__()
        self.global_pool = global_pool
        L = (img // p) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.pos_embed = nn.Parameter(torch.zeros(1, L + 1, D))
        self.patch_embed = PatchEmbed(C, D, p)
        self.blocks = nn.ModuleList([Block(D, heads) for _ in range(depth)])
        if global_pool:
            self.fc_norm = nn.LayerNorm(D, eps=1e-6)
        else:
            self.norm = nn.LayerNorm(D, eps=1e-6)
        self.head = nn.Linear(D, num_classes) if num_classes else None

    def encode(self, x, keep=None):
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for i, blk in enumerate(self.blocks):
            x = blk(x, *(keep[i] if keep is not None else (None, None)))
        return x

    def forward(self, x, keep=None):
        x = self.encode(x, keep)
        if self.global_pool:
            f = self.fc_norm(x[:, 1:, :].mean(dim=1))
        else:
            f = self.norm(x)[:, 0]
        return self.head(f)


def randomize(model, g):
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("norm1.weight") or n.endswith("norm2.weight") or "norm.weight" in n:
                p.copy_(1.0 + rnd(g, *p.shape, scale=0.1))
            else:
                p.copy_(rnd(g, *p.shape, scale=0.3 if p.ndim == 1 else 0.2))


def soft_xent(logits, targets):
    """timm SoftTargetCrossEntropy"""
    return torch.sum(-targets * F.log_softmax(logits, dim=-1), dim=-1).mean()


def mixup_targets(labels, K, lam, smoothing):
    """timm mixup_target: smoothed one-hot, mixed with the flipped batch"""
    off = smoothing / K
    on = 1.0 - smoothing + off
    y1 = torch.full((len(labels), K), off)
    y1[torch.arange(len(labels)), labels] = on
    return y1 * lam + y1.flip(0) * (1.0 - lam)


def enc_metadata(img, C, p, D, depth, heads):
    c = {"img_h": img, "img_w": img, "in_chans": C, "patch_size": p, "embed_dim": D, "depth": depth,
         "num_heads": heads, "decoder_embed_dim": 0, "decoder_depth": 0, "decoder_num_heads": 0,
         "mlp_ratio": 4, "mask_ratio": 0.75, "norm_pix_loss": False, "mask_token_in_encoder": False,
         "loss_on_all": False}
    return {"format": "pt", "maec_config": json.dumps(c)}


# --------------------------------------------------------------------------
# util/lr_decay.py and util/lars.py, as described there

def layer_id(name, num_layers):
    if name in ("cls_token", "pos_embed") or name.startswith("patch_embed"):
        return 0
    if name.startswith("blocks"):
        return int(name.split(".")[1]) + 1
    return num_layers


def lrd_groups(model, weight_decay, layer_decay, no_wd=("pos_embed", "cls_token")):
    num_layers = len(model.blocks) + 1
    scales = [layer_decay ** (num_layers - i) for i in range(num_layers + 1)]
    out = {}
    for n, p in model.named_parameters():
        wd = 0.0 if (p.ndim == 1 or n in no_wd) else weight_decay
        out[n] = (scales[layer_id(n, num_layers)], wd)
    return out


def lars_step(p, g, mu, lr, wd, momentum=0.9, trust=0.001):
    if p.ndim > 1:
        dp = g + wd * p
        pn, un = torch.norm(p), torch.norm(dp)
        q = trust * pn / un if (pn > 0 and un > 0) else torch.tensor(1.0)
        dp = dp * q
    else:
        dp = g
    mu.mul_(momentum).add_(dp)
    p.sub_(lr * mu)


# --------------------------------------------------------------------------

def case_bn(out):
    g = torch.Generator().manual_seed(11)
    x = rnd(g, 6, 5) * 2 + 0.5
    x.requires_grad_(True)
    bn = nn.BatchNorm1d(5, affine=False, eps=1e-6, momentum=0.1)
    bn.train()
    y = bn(x)
    dy = rnd(g, 6, 5)
    (y * dy).sum().backward()
    st.save_file(os.path.join(out, "bn.safetensors"), {
        "x": npf(x), "y": npf(y), "dy": npf(dy), "dx": npf(x.grad),
        "running_mean": npf(bn.running_mean), "running_var": npf(bn.running_var)})
    # evaluation mode with those running statistics
    bn.eval()
    with torch.no_grad():
        x2 = rnd(g, 3, 5)
        y2 = bn(x2)
    d = st.load_file(os.path.join(out, "bn.safetensors"))[0]
    d.update({"x_eval": npf(x2), "y_eval": npf(y2)})
    st.save_file(os.path.join(out, "bn.safetensors"), d)


def case_xent(out):
    g = torch.Generator().manual_seed(12)
    B, D, K = 6, 8, 7
    feat = rnd(g, B, D).requires_grad_(True)
    w = rnd(g, K, D, scale=0.5).requires_grad_(True)
    b = rnd(g, K, scale=0.1).requires_grad_(True)
    labels = torch.tensor([0, 3, 6, 2, 2, 5])
    t = mixup_targets(labels, K, lam=0.7, smoothing=0.1)
    logits = F.linear(feat, w, b)
    loss = soft_xent(logits, t)
    logits.retain_grad()
    loss.backward()
    # label smoothing alone equals timm's LabelSmoothingCrossEntropy
    ls = mixup_targets(labels, K, lam=1.0, smoothing=0.1)
    lp = F.log_softmax(logits.detach(), dim=-1)
    ref_ls = (0.9 * F.nll_loss(lp, labels, reduction="none") - 0.1 * lp.mean(dim=-1)).mean()
    st.save_file(os.path.join(out, "xent.safetensors"), {
        "feat": npf(feat), "weight": npf(w), "bias": npf(b), "labels": labels.numpy().astype(np.float32),
        "targets": npf(t), "logits": npf(logits), "loss": np.array([loss.item()], np.float32),
        "dlogits": npf(logits.grad), "dfeat": npf(feat.grad), "dweight": npf(w.grad), "dbias": npf(b.grad),
        "targets_ls": npf(ls), "loss_ls": np.array([ref_ls.item()], np.float32)})


def case_pool(out):
    g = torch.Generator().manual_seed(13)
    B, T, D = 3, 5, 8
    x = rnd(g, B, T, D).requires_grad_(True)
    ln = nn.LayerNorm(D, eps=1e-6)
    with torch.no_grad():
        ln.weight.copy_(1 + rnd(g, D, scale=0.1))
        ln.bias.copy_(rnd(g, D, scale=0.1))
    y = ln(x[:, 1:, :].mean(dim=1))
    dy = rnd(g, B, D)
    (y * dy).sum().backward()
    st.save_file(os.path.join(out, "pool.safetensors"), {
        "x": npf(x), "w": npf(ln.weight), "b": npf(ln.bias), "y": npf(y), "dy": npf(dy),
        "dx": npf(x.grad), "dw": npf(ln.weight.grad), "db": npf(ln.bias.grad)})


def block_tensors(blk, prefix="blocks.0."):
    return {prefix + n: npf(p) for n, p in blk.named_parameters()}


def case_droppath(out):
    g = torch.Generator().manual_seed(14)
    B, T, D, H = 4, 5, 16, 2
    blk = Block(D, H)
    randomize(blk, g)
    x = rnd(g, B, T, D).requires_grad_(True)
    k1 = f32([0.0, 1.25, 1.25, 0.0])          # keep_prob 0.8
    k2 = f32([1.25, 0.0, 1.25, 1.25])
    y = blk(x, k1, k2)
    dy = rnd(g, B, T, D)
    (y * dy).sum().backward()
    t = block_tensors(blk)
    t.update({"x": npf(x), "keep_attn": npf(k1), "keep_mlp": npf(k2), "y": npf(y), "dy": npf(dy),
              "dx": npf(x.grad)})
    for n, p in blk.named_parameters():
        t["grad.blocks.0." + n] = npf(p.grad)
    st.save_file(os.path.join(out, "droppath.safetensors"), t)


def case_lars(out):
    g = torch.Generator().manual_seed(15)
    w = rnd(g, 6, 5, scale=0.1)
    b = rnd(g, 6, scale=0.1)
    t = {"w0": npf(w), "b0": npf(b)}
    mw, mb = torch.zeros_like(w), torch.zeros_like(b)
    for s in range(2):
        gw, gb = rnd(g, 6, 5), rnd(g, 6)
        t["gw%d" % s], t["gb%d" % s] = npf(gw), npf(gb)
        lars_step(w, gw, mw, lr=0.1, wd=0.05)
        lars_step(b, gb, mb, lr=0.1, wd=0.05)
        t["w%d" % (s + 1)], t["b%d" % (s + 1)] = npf(w), npf(b)
    st.save_file(os.path.join(out, "lars.safetensors"), t)


def case_ft(out):
    d = os.path.join(out, "ft")
    os.makedirs(d, exist_ok=True)
    g = torch.Generator().manual_seed(16)
    img, C, p, D, depth, H, K, B = 8, 3, 4, 16, 3, 2, 5, 4
    model = ViT(img, C, p, D, depth, H, K, global_pool=True)
    randomize(model, g)
    st.save_file(os.path.join(d, "model.safetensors"),
                 {n: npf(q) for n, q in model.named_parameters()}, enc_metadata(img, C, p, D, depth, H))
    x = rnd(g, B, C, img, img)
    labels = torch.tensor([1, 4, 0, 4])
    t = mixup_targets(labels, K, lam=0.65, smoothing=0.1)
    # drop path rate 0.2 over 3 blocks: keep_prob 1, 0.9, 0.8
    keep = torch.ones(depth, 2, B)
    keep[1] = f32([[1 / 0.9, 0, 1 / 0.9, 1 / 0.9], [0, 1 / 0.9, 1 / 0.9, 1 / 0.9]])
    keep[2] = f32([[1.25, 1.25, 0, 1.25], [1.25, 0, 0, 1.25]])
    keep = f32(keep.numpy())
    logits = model(x, keep)
    loss = soft_xent(logits, t)
    loss.backward()
    st.save_npy(os.path.join(d, "images.npy"), npf(x))
    st.save_npy(os.path.join(d, "targets.npy"), npf(t))
    st.save_npy(os.path.join(d, "keep.npy"), npf(keep))
    grads = {n: npf(q.grad) for n, q in model.named_parameters()}
    grads["loss"] = np.array([loss.item()], np.float32)
    grads["logits"] = npf(logits)
    st.save_file(os.path.join(d, "grads.safetensors"), grads)
    # one AdamW step with layer-wise lr decay 0.75, weight decay 0.05
    lr, wd, ld = 1e-3, 0.05, 0.75
    groups = lrd_groups(model, wd, ld)
    params = dict(model.named_parameters())
    opt = torch.optim.AdamW([{"params": [params[n]], "lr": lr * s, "weight_decay": w}
                             for n, (s, w) in groups.items()], lr=lr, betas=(0.9, 0.999), eps=1e-8)
    opt.step()
    st.save_file(os.path.join(d, "adamw.safetensors"), {n: npf(q) for n, q in model.named_parameters()})
    with open(os.path.join(d, "lrd.json"), "w") as f:
        json.dump({n: [s, w] for n, (s, w) in groups.items()}, f, indent=1)


def case_feat(out):
    d = os.path.join(out, "feat")
    os.makedirs(d, exist_ok=True)
    g = torch.Generator().manual_seed(17)
    img, C, p, D, depth, H, B = 8, 1, 4, 16, 2, 2, 3
    model = ViT(img, C, p, D, depth, H, 0, global_pool=False)
    randomize(model, g)
    st.save_file(os.path.join(d, "model.safetensors"),
                 {n: npf(q) for n, q in model.named_parameters()}, enc_metadata(img, C, p, D, depth, H))
    x = rnd(g, B, C, img, img)
    with torch.no_grad():
        z = model.norm(model.encode(x))
    st.save_npy(os.path.join(d, "images.npy"), npf(x))
    st.save_file(os.path.join(d, "features.safetensors"),
                 {"cls": npf(z[:, 0]), "mean": npf(z[:, 1:].mean(dim=1))})
    # maec embed --tokens patch / --layer K / --no-final-norm: every token
    # after block 1 (no norm), and the patch tokens after the final norm
    with torch.no_grad():
        e = model.patch_embed(x)
        e = torch.cat([model.cls_token.expand(B, -1, -1), e], dim=1) + model.pos_embed
        b1 = model.blocks[0](e)
        # the last block's attention probabilities [B, heads, T, T] (embed --attention)
        last = model.blocks[-1]
        xin = model.blocks[0](e) if depth == 2 else None
        qkv = last.attn.qkv(last.norm1(xin)).reshape(B, -1, 3, H, D // H).permute(2, 0, 3, 1, 4)
        att = ((qkv[0] @ qkv[1].transpose(-2, -1)) * last.attn.scale).softmax(dim=-1)
    st.save_file(os.path.join(d, "tokens.safetensors"),
                 {"patch": npf(z[:, 1:]), "block1": npf(b1), "attention": npf(att)})


def case_knn(out):
    g = torch.Generator().manual_seed(18)
    N, M, D, C, k, T = 200, 40, 8, 4, 5, 0.07
    train, test = rnd(g, N, D), rnd(g, M, D)
    ytr = torch.randint(0, C, (N,), generator=g)
    a, q = F.normalize(train, dim=1), F.normalize(test, dim=1)
    sim = q @ a.T
    v, i = sim.topk(k, dim=1)
    w = (v / T).exp()
    votes = torch.zeros(M, C).scatter_add_(1, ytr[i], w)
    pred = votes.argmax(dim=1)
    st.save_file(os.path.join(out, "knn.safetensors"), {
        "train": npf(train), "test": npf(test), "train_labels": ytr.numpy().astype(np.float32),
        "pred": pred.numpy().astype(np.float32)})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "fixtures", "eval"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for case in (case_bn, case_xent, case_pool, case_droppath, case_lars, case_ft, case_feat, case_knn):
        case(a.out)
        print("wrote", case.__name__[5:])


if __name__ == "__main__":
    main()
