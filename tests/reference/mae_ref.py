"""PyTorch reference of the Masked Autoencoder (He et al. 2021) for maec's tests.

Written from the behaviour of facebookresearch/mae (models_mae.py with the
timm 0.3.2 ViT Block, util/pos_embed.py, util/lr_sched.py, the AdamW set-up
of main_pretrain.py). State-dict names are the official ones, so a
state dict of this module loads into the official model and back.

Extras over the official model (ablations of the paper), both off by default:
  mask_token_in_encoder  the encoder sees all L positions; masked ones get a
                         learned `encoder_mask_token` (no decoder mask_token)
  loss_on_all            the loss is averaged over every patch, not only the
                         masked ones
"""

import json
import math
from dataclasses import dataclass, asdict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


# --------------------------------------------------------------------------
# configuration

@dataclass
class MAEConfig:
    img_h: int = 224
    img_w: int = 224
    in_chans: int = 3
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    decoder_embed_dim: int = 512
    decoder_depth: int = 8
    decoder_num_heads: int = 16
    mlp_ratio: int = 4
    mask_ratio: float = 0.75
    norm_pix_loss: bool = False
    mask_token_in_encoder: bool = False
    loss_on_all: bool = False

    @property
    def grid_h(self):
        return self.img_h // self.patch_size

    @property
    def grid_w(self):
        return self.img_w // self.patch_size

    @property
    def num_patches(self):
        return self.grid_h * self.grid_w

    @property
    def patch_dim(self):
        return self.patch_size * self.patch_size * self.in_chans

    @property
    def len_keep(self):
        # Python float (double) arithmetic, as the official code: with
        # L=15, r=0.6 this is 6; in float32 it would be 5.
        return int(self.num_patches * (1 - self.mask_ratio))

    def check(self):
        p = self.patch_size
        assert self.img_h % p == 0 and self.img_w % p == 0, "image size not a multiple of patch"
        assert self.embed_dim % 4 == 0 and self.decoder_embed_dim % 4 == 0, "dims must be multiples of 4"
        assert self.embed_dim % self.num_heads == 0
        assert self.decoder_embed_dim % self.decoder_num_heads == 0
        assert 0.0 <= self.mask_ratio < 1.0

    def to_json(self):
        return json.dumps(asdict(self), sort_keys=False)


# --------------------------------------------------------------------------
# patches and position embeddings

def patchify(imgs, p):
    """[B,C,H,W] -> [B,L,p*p*C]; patches row-major, inside a patch (i, j, c)."""
    B, C, H, W = imgs.shape
    assert H % p == 0 and W % p == 0
    h, w = H // p, W // p
    x = imgs.reshape(B, C, h, p, w, p)
    x = torch.einsum("nchpwq->nhwpqc", x)
    return x.reshape(B, h * w, p * p * C)


def unpatchify(x, p, h, w, C):
    """[B,L,p*p*C] -> [B,C,h*p,w*p] (inverse of patchify)."""
    B, L, P = x.shape
    assert L == h * w and P == p * p * C
    x = x.reshape(B, h, w, p, p, C)
    x = torch.einsum("nhwpqc->nchpwq", x)
    return x.reshape(B, C, h * p, w * p)


def sincos_1d(dim, pos, dtype=np.float64):
    """dim even; pos 1-D array -> [len(pos), dim] = [sin(pos*w_k)..., cos(pos*w_k)...],
    w_k = 10000^(-k/(dim/2)), k = 0..dim/2-1."""
    assert dim % 2 == 0
    omega = np.arange(dim // 2, dtype=dtype)
    omega /= dim / 2.0
    omega = 1.0 / 10000 ** omega
    out = np.einsum("m,d->md", pos.astype(dtype), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_2d(dim, grid_h, grid_w, cls_token=True, dtype=np.float64):
    """Fixed 2-D sin-cos table [grid_h*grid_w (+1), dim], returned as float64.

    Token (row y, col x) is row y*grid_w + x (after the class row). The first
    dim/2 columns encode the column x, the last dim/2 the row y (the official
    code's meshgrid(w, h) puts w first).

    dtype=np.float64 (the default, used for the fixtures) computes everything
    in double; the official util/pos_embed.py computes omega, the products and
    sin/cos in numpy float32 (dtype=np.float32 reproduces that up to numpy's
    float32 sin/cos), which differs from the double table cast to float32 by
    up to ~2e-6 (ViT-L, 14x14).
    """
    assert dim % 4 == 0
    ys, xs = np.meshgrid(np.arange(grid_h, dtype=dtype),
                         np.arange(grid_w, dtype=dtype), indexing="ij")
    emb = np.concatenate([sincos_1d(dim // 2, xs.reshape(-1), dtype),
                          sincos_1d(dim // 2, ys.reshape(-1), dtype)], axis=1)
    if cls_token:
        emb = np.concatenate([np.zeros((1, dim)), emb], axis=0)
    return emb.astype(np.float64)


# --------------------------------------------------------------------------
# modules (timm 0.3.2 ViT block, no dropout / drop path)

class PatchEmbed(nn.Module):
    def __init__(self, in_chans, embed_dim, p):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=p, stride=p)

    def forward(self, x):
        x = self.proj(x)                       # [B,D,h,w]
        return x.flatten(2).transpose(1, 2)    # [B,h*w,D], row-major patches


class Attention(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, D = x.shape
        H = self.num_heads
        qkv = self.qkv(x).reshape(B, N, 3, H, D // H).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]          # [B,H,N,hd]
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, D)
        return self.proj(x)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()                      # exact (erf)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio=4):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        x = x + self.mlp(self.norm2(x))
        return x


class MAE(nn.Module):
    def __init__(self, cfg: MAEConfig):
        super().__init__()
        cfg.check()
        self.cfg = cfg
        D, D2, L = cfg.embed_dim, cfg.decoder_embed_dim, cfg.num_patches
        # parameter registration order follows the official state dict
        self.patch_embed = PatchEmbed(cfg.in_chans, D, cfg.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.pos_embed = nn.Parameter(torch.zeros(1, L + 1, D), requires_grad=False)
        if cfg.mask_token_in_encoder:
            self.encoder_mask_token = nn.Parameter(torch.zeros(1, 1, D))
        self.blocks = nn.ModuleList([Block(D, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(D, eps=1e-6)
        self.decoder_embed = nn.Linear(D, D2, bias=True)
        if not cfg.mask_token_in_encoder:
            self.mask_token = nn.Parameter(torch.zeros(1, 1, D2))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, L + 1, D2), requires_grad=False)
        self.decoder_blocks = nn.ModuleList(
            [Block(D2, cfg.decoder_num_heads, cfg.mlp_ratio) for _ in range(cfg.decoder_depth)])
        self.decoder_norm = nn.LayerNorm(D2, eps=1e-6)
        self.decoder_pred = nn.Linear(D2, cfg.patch_dim, bias=True)
        self.initialize_weights()

    # ---- initialization (official initialize_weights) ----
    def initialize_weights(self):
        cfg = self.cfg
        pe = sincos_2d(cfg.embed_dim, cfg.grid_h, cfg.grid_w)
        self.pos_embed.data.copy_(torch.from_numpy(pe).float().unsqueeze(0))
        dpe = sincos_2d(cfg.decoder_embed_dim, cfg.grid_h, cfg.grid_w)
        self.decoder_pos_embed.data.copy_(torch.from_numpy(dpe).float().unsqueeze(0))
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view([w.shape[0], -1]))   # bias keeps Conv2d default init
        nn.init.normal_(self.cls_token, std=0.02)
        if cfg.mask_token_in_encoder:
            nn.init.normal_(self.encoder_mask_token, std=0.02)
        else:
            nn.init.normal_(self.mask_token, std=0.02)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m):
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.LayerNorm):
            nn.init.constant_(m.bias, 0)
            nn.init.constant_(m.weight, 1.0)

    # ---- masking ----
    def random_masking_ids(self, noise):
        """noise [B,L] -> ids_shuffle, ids_restore, mask [B,L] (1 = removed)."""
        B, L = noise.shape
        keep = self.cfg.len_keep
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        mask = torch.ones(B, L, dtype=noise.dtype, device=noise.device)
        mask[:, :keep] = 0
        mask = torch.gather(mask, 1, ids_restore)
        return ids_shuffle, ids_restore, mask

    # ---- encoder ----
    def forward_encoder(self, imgs, noise):
        cfg = self.cfg
        x = self.patch_embed(imgs) + self.pos_embed[:, 1:, :]
        B, L, D = x.shape
        ids_shuffle, ids_restore, mask = self.random_masking_ids(noise)
        if cfg.mask_token_in_encoder:
            m = mask.unsqueeze(-1).to(x.dtype)
            tok = self.encoder_mask_token + self.pos_embed[:, 1:, :]
            x = x * (1 - m) + tok * m          # all L positions, original order
        else:
            ids_keep = ids_shuffle[:, :cfg.len_keep]
            x = torch.gather(x, 1, ids_keep.unsqueeze(-1).repeat(1, 1, D))
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(B, -1, -1)
        x = torch.cat([cls, x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        return x, mask, ids_restore

    # ---- decoder ----
    def forward_decoder(self, x, ids_restore):
        cfg = self.cfg
        x = self.decoder_embed(x)
        if not cfg.mask_token_in_encoder:
            B, N, D2 = x.shape
            n_mask = ids_restore.shape[1] + 1 - N
            mask_tokens = self.mask_token.repeat(B, n_mask, 1)
            x_ = torch.cat([x[:, 1:, :], mask_tokens], dim=1)
            x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).repeat(1, 1, D2))
            x = torch.cat([x[:, :1, :], x_], dim=1)
        x = x + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        x = self.decoder_norm(x)
        x = self.decoder_pred(x)
        return x[:, 1:, :]

    # ---- loss ----
    def forward_loss(self, imgs, pred, mask):
        target = patchify(imgs, self.cfg.patch_size)
        if self.cfg.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)      # unbiased (P-1)
            target = (target - mean) / (var + 1.0e-6) ** 0.5
        loss = ((pred - target) ** 2).mean(dim=-1)      # [B,L]
        w = torch.ones_like(mask) if self.cfg.loss_on_all else mask
        return (loss * w).sum() / w.sum()

    def forward(self, imgs, noise):
        """imgs [B,C,H,W], noise [B,L] -> loss, pred [B,L,P], mask [B,L]."""
        latent, mask, ids_restore = self.forward_encoder(imgs, noise)
        pred = self.forward_decoder(latent, ids_restore)
        loss = self.forward_loss(imgs, pred, mask)
        return loss, pred, mask

    # ---- parameter sets ----
    def trainable(self):
        """[(name, param)] in state-dict order, without the fixed pos embeds."""
        return [(n, p) for n, p in self.named_parameters() if p.requires_grad]


# --------------------------------------------------------------------------
# optimizer and schedule (official main_pretrain.py / util/lr_sched.py)

def no_decay(name, p):
    return p.ndim <= 1 or name.endswith(".bias")


def make_adamw(model, lr=1e-3, weight_decay=0.05):
    decay, skip = [], []
    for n, p in model.trainable():
        (skip if no_decay(n, p) else decay).append(p)
    return torch.optim.AdamW(
        [{"params": skip, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}],
        lr=lr, betas=(0.9, 0.95), eps=1e-8)


def lr_at(epoch_frac, lr_max, min_lr, warmup_epochs, epochs):
    """Learning rate at a fractional epoch: linear warm-up, then half-cycle cosine."""
    if epoch_frac < warmup_epochs:
        return lr_max * epoch_frac / warmup_epochs
    return min_lr + (lr_max - min_lr) * 0.5 * (
        1.0 + math.cos(math.pi * (epoch_frac - warmup_epochs) / (epochs - warmup_epochs)))


def maec_metadata(cfg: MAEConfig):
    """__metadata__ for a maec model file."""
    c = {
        "img_h": cfg.img_h, "img_w": cfg.img_w, "in_chans": cfg.in_chans,
        "patch_size": cfg.patch_size, "embed_dim": cfg.embed_dim, "depth": cfg.depth,
        "num_heads": cfg.num_heads, "decoder_embed_dim": cfg.decoder_embed_dim,
        "decoder_depth": cfg.decoder_depth, "decoder_num_heads": cfg.decoder_num_heads,
        "mlp_ratio": cfg.mlp_ratio, "mask_ratio": cfg.mask_ratio,
        "norm_pix_loss": bool(cfg.norm_pix_loss),
        "mask_token_in_encoder": bool(cfg.mask_token_in_encoder),
        "loss_on_all": bool(cfg.loss_on_all),
    }
    return {"format": "maec", "maec_config": json.dumps(c)}
