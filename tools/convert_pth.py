#!/usr/bin/env python3
"""Convert an official MAE PyTorch checkpoint (.pth) to safetensors for maec.

    python3 tools/convert_pth.py mae_pretrain_vit_base.pth vitb.safetensors \
        [--num-heads 12] [--decoder-num-heads 16] [--norm-pix-loss] [--img-size 224]

The input is a dict with key "model" (what main_pretrain.py saves and what
facebookresearch/mae releases) or a raw state dict. Every tensor is written
as F32 under its own name; non-tensor entries (and integer tensors) are
skipped and listed; in a {"model": ...} dict only "model" is read. A "module."
prefix on every name (a DistributedDataParallel state dict) is removed.
The flags given (and only those) go into __metadata__["maec_config"] as
num_heads, decoder_num_heads, norm_pix_loss, img_h/img_w.

Needs PyTorch. A .pth is a pickle: the file is first read with
torch.load(weights_only=True); a checkpoint that also pickles Python objects
(e.g. the argparse "args" of a training run) needs --allow-pickle, which
runs the pickle -- only use it on files you trust.
"""

import argparse
import json
import os
import pickle
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))
import st  # noqa: E402  (safetensors writer shared with the test reference)


def fail(msg):
    print("convert_pth: error: %s" % msg, file=sys.stderr)
    sys.exit(1)


def parse_img_size(s):
    """'224' -> (224, 224); '192x256' (height x width) -> (192, 256)."""
    parts = s.lower().split("x")
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError("--img-size: expected N or HxW, got %r" % s)
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2 or min(vals) <= 0:
        raise argparse.ArgumentTypeError("--img-size: expected N or HxW, got %r" % s)
    return tuple(vals)


def positive_int(s):
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a positive integer, got %r" % s)
    if v <= 0:
        raise argparse.ArgumentTypeError("expected a positive integer, got %r" % s)
    return v


def _first_line(e):
    text = str(e).strip()
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].strip()
    line = text.splitlines()[0] if text else ""
    return "%s: %s" % (type(e).__name__, line) if line else type(e).__name__


def load_checkpoint(path, allow_pickle):
    import torch
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 -- any failure is reported, no traceback
        msg = str(e)
        objects = "weights_only" in msg or "Unsupported" in msg or "global" in msg.lower()
        if not objects:
            fail("%s: not a PyTorch checkpoint (%s)" % (path, _first_line(e)))
        if not allow_pickle:
            fail("%s: the checkpoint pickles Python objects besides tensors (%s); if you trust "
                 "the file, rerun with --allow-pickle" % (path, _first_line(e)))
    try:
        return torch.load(path, map_location="cpu")
    except Exception as e:  # noqa: BLE001
        fail("%s: not a readable PyTorch checkpoint: %s" % (path, _first_line(e)))


def state_dict_of(obj, path):
    import torch
    if not isinstance(obj, dict):
        fail("%s: expected a dict (a state dict or {'model': state dict}), got %s"
             % (path, type(obj).__name__))
    if "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    elif "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    tensors = {}
    skipped = []
    for k, v in obj.items():
        if isinstance(k, str) and isinstance(v, torch.Tensor):
            tensors[k] = v
        else:
            skipped.append(str(k))
    if not tensors:
        fail("%s: no tensors found (keys: %s)" % (path, ", ".join(list(map(str, obj))[:8]) or "none"))
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors, skipped


def main(argv=None):
    ap = argparse.ArgumentParser(description="Convert an official MAE .pth checkpoint to safetensors (F32).")
    ap.add_argument("input", help="the .pth file")
    ap.add_argument("output", help="the .safetensors file to write")
    ap.add_argument("--num-heads", type=positive_int, help="encoder attention heads (stored in the metadata)")
    ap.add_argument("--decoder-num-heads", type=positive_int, help="decoder attention heads")
    ap.add_argument("--norm-pix-loss", action="store_true", default=None,
                    help="the model was trained with the per-patch normalized target")
    ap.add_argument("--img-size", type=parse_img_size, help="input size N or HxW (height x width)")
    ap.add_argument("--allow-pickle", action="store_true",
                    help="also read checkpoints that pickle Python objects (runs the pickle: trusted files only)")
    ap.add_argument("--force", action="store_true", help="overwrite the output if it exists")
    args = ap.parse_args(argv)

    if not os.path.isfile(args.input):
        fail("%s: no such file" % args.input)
    if os.path.abspath(args.input) == os.path.abspath(args.output):
        fail("the output would overwrite the input")
    if os.path.exists(args.output) and not args.force:
        fail("%s exists (use --force to overwrite)" % args.output)
    try:
        import torch  # noqa: F401
    except ImportError:
        fail("PyTorch is needed to read .pth files (pip install torch)")

    obj = load_checkpoint(args.input, args.allow_pickle)
    tensors, skipped = state_dict_of(obj, args.input)

    if "patch_embed.proj.weight" not in tensors:
        fail("%s: no 'patch_embed.proj.weight': not an MAE / ViT checkpoint (first names: %s)"
             % (args.input, ", ".join(list(tensors)[:6])))
    import numpy as np
    out = {}
    for k, v in tensors.items():
        if not v.is_floating_point():
            skipped.append("%s (%s)" % (k, v.dtype))
            continue
        a = v.detach().to("cpu").float().contiguous().numpy()
        if not np.isfinite(a).all():
            fail("%s: tensor %s has non-finite values" % (args.input, k))
        out[k] = a

    cfg = {}
    if args.img_size is not None:
        cfg["img_h"], cfg["img_w"] = args.img_size
    if args.num_heads is not None:
        cfg["num_heads"] = args.num_heads
    if args.decoder_num_heads is not None:
        cfg["decoder_num_heads"] = args.decoder_num_heads
    if args.norm_pix_loss:
        cfg["norm_pix_loss"] = True

    # cheap consistency checks of the flags against the tensors
    D = out["patch_embed.proj.weight"].shape[0]
    if args.num_heads is not None and D % args.num_heads:
        fail("--num-heads %d does not divide the embedding width %d" % (args.num_heads, D))
    if args.decoder_num_heads is not None:
        if "decoder_embed.weight" not in out:
            fail("--decoder-num-heads given but the checkpoint has no decoder")
        D2 = out["decoder_embed.weight"].shape[0]
        if D2 % args.decoder_num_heads:
            fail("--decoder-num-heads %d does not divide the decoder width %d" % (args.decoder_num_heads, D2))
    if args.img_size is not None and "pos_embed" in out:
        p = out["patch_embed.proj.weight"].shape[-1]
        h, w = args.img_size
        if h % p or w % p or (h // p) * (w // p) + 1 != out["pos_embed"].shape[1]:
            fail("--img-size %dx%d with patch %d does not match pos_embed %s"
                 % (h, w, p, list(out["pos_embed"].shape)))

    meta = {"format": "maec", "converted_from": os.path.basename(args.input)}
    if cfg:
        meta["maec_config"] = json.dumps(cfg)
    st.save_file(args.output, out, metadata=meta)
    nparams = sum(a.size for a in out.values())
    print("wrote %s: %d tensors, %d values%s" % (
        args.output, len(out), nparams,
        ("; skipped non-tensor entries: " + ", ".join(skipped)) if skipped else ""))


if __name__ == "__main__":
    main()
