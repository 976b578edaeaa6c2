"""Writes tests/fixtures/pth/: PyTorch checkpoints saved with torch.save, and
what maec must read from them, for tests/test_pth.c.

    /usr/bin/python3 tests/reference/pth_ref.py

- c1.pth: what the official main_pretrain.py saves (misc.save_model): a dict
  of "model" (the weights of tests/fixtures/c1/model.safetensors), "optimizer"
  (an AdamW state dict after one step over two of the tensors, so that it
  holds tensors of its own), "epoch",
  "scaler" and "args" (an argparse.Namespace, which only a full unpickler
  could build). maec must read "model" and nothing else.
- ft.pth: what the official main_finetune.py saves, around the fine-tuned
  ViT of tests/fixtures/eval/ft/model.safetensors (timm's names, a head).
- mixed.pth (pickle protocol 2, torch.save's default) and mixed_p4.pth
  (protocol 4): a bare state dict under a "module." prefix (as
  DistributedDataParallel saves it) with float32, float16, bfloat16 and
  float64 tensors, an integer tensor (left out), a transposed view, two
  slices of one storage, a 0-d tensor, an empty tensor and an
  nn.Parameter; mixed_expected.safetensors holds what maec must return,
  every tensor contiguous and as float32, without the prefix, in file order.
- call.pth: {"model": {"w": ...}, "hook": <a pickled call of
  os.system("true")>}: the call must stay an opaque value, never run.
- notorch.zip: a zip archive without data.pkl.
- bad_numel.pth, bad_view.pth, bad_short.pth, bad_missing.pth: a tensor
  whose storage claims 2^62 elements, a view reaching past its storage, a
  storage entry shorter than its element count, a storage entry missing.
- legacy.pth: the pre-1.6 format (_use_new_zipfile_serialization=False),
  which maec refuses with a pointer to tools/convert_pth.py.

Every value is drawn from a seeded generator and torch.save's zip entries
carry no time stamps, so rerunning gives the same bytes, except in
legacy.pth, whose storage keys are object addresses.
"""

import argparse
import collections
import io
import pickle
import os
import sys
import zipfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import st  # noqa: E402

FIX = os.path.join(HERE, "..", "fixtures")
OUT = os.path.join(FIX, "pth")


class FakeStorage:
    def __init__(self, key, numel):
        self.key, self.numel = key, numel


class FakeTensor:
    """Pickles as torch.save pickles a tensor, with any numbers."""

    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


class TorchLikePickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, FakeStorage):
            return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel)
        return None


def save_crafted(path, state, storage_bytes):
    """A torch.save-like zip around the pickle of `state`, one storage entry "0"."""
    buf = io.BytesIO()
    TorchLikePickler(buf, protocol=2).dump(state)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in (("archive/data.pkl", buf.getvalue()), ("archive/data/0", storage_bytes),
                           ("archive/version", b"3\n")):
            z.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), data)


class Hook:
    """Pickles as a call of os.system("true")."""

    def __reduce__(self):
        return (os.system, ("true",))


def main():
    os.makedirs(OUT, exist_ok=True)
    g = torch.Generator().manual_seed(0)

    # 1. the official checkpoint dict around c1's weights
    t, _ = st.load_file(os.path.join(FIX, "c1", "model.safetensors"))
    sd = {k: torch.from_numpy(v.copy()) for k, v in t.items()}
    params = [torch.nn.Parameter(sd[k].clone()) for k in ("cls_token", "norm.weight")]
    opt = torch.optim.AdamW(params, lr=1e-3, betas=(0.9, 0.95), weight_decay=0.05)
    for p in params:
        p.grad = torch.randn(p.shape, generator=g)
    opt.step()
    args = argparse.Namespace(model="mae_vit_tiny", input_size=16, mask_ratio=0.75, norm_pix_loss=False,
                              lr=None, blr=1.5e-4, epochs=3, output_dir="./output_dir")
    # a module's state_dict(): an OrderedDict with a _metadata attribute
    sd = collections.OrderedDict(sd)
    sd._metadata = collections.OrderedDict([("", {"version": 1})])
    torch.save({"model": sd, "optimizer": opt.state_dict(), "epoch": 3,
                "scaler": {"scale": 65536.0, "growth_factor": 2.0, "_growth_tracker": 0}, "args": args},
               os.path.join(OUT, "c1.pth"))

    # what main_finetune.py saves: a fine-tuned ViT under timm's names
    t, _ = st.load_file(os.path.join(FIX, "eval", "ft", "model.safetensors"))
    ft = collections.OrderedDict((k, torch.from_numpy(v.copy())) for k, v in t.items())
    torch.save({"model": ft, "epoch": 5, "args": args}, os.path.join(OUT, "ft.pth"))

    # 2. a bare state dict with every kind of tensor the reader handles
    base = torch.randn(6, 5, generator=g)
    shared = torch.randn(20, generator=g)
    mixed = {
        "module.f32": torch.randn(3, 4, generator=g),
        "module.f16": torch.randn(2, 3, generator=g).half(),
        "module.bf16": torch.randn(4, generator=g).bfloat16(),
        "module.f64": torch.randn(2, 2, 2, generator=g).double(),
        "module.steps": torch.arange(5),                      # int64: left out
        "module.transposed": base.t(),                        # strides (1, 5)
        "module.part_a": shared[2:8].view(2, 3),              # offset 2 in a shared storage
        "module.part_b": shared[10:14],                       # offset 10 in the same one
        "module.scalar": torch.tensor(1.5),
        "module.empty": torch.zeros(0, 3),
        "module.param": torch.nn.Parameter(torch.randn(3, generator=g)),
    }
    torch.save(mixed, os.path.join(OUT, "mixed.pth"))
    torch.save(mixed, os.path.join(OUT, "mixed_p4.pth"), pickle_protocol=4)
    expected = {}
    for k, v in mixed.items():
        if not v.is_floating_point():
            continue
        expected[k[len("module."):]] = v.detach().float().contiguous().numpy()
    st.save_file(os.path.join(OUT, "mixed_expected.safetensors"), expected)

    # 3. a checkpoint with a pickled call of os.system, which torch.load
    #    (without weights_only) would run; maec reads "model" and runs nothing
    torch.save({"model": {"w": torch.arange(4, dtype=torch.float32)}, "hook": Hook()},
               os.path.join(OUT, "call.pth"))

    # 4. a zip archive that is not a checkpoint
    with zipfile.ZipFile(os.path.join(OUT, "notorch.zip"), "w") as z:
        z.writestr(zipfile.ZipInfo("notes/readme.txt", date_time=(2026, 1, 1, 0, 0, 0)), "not a checkpoint\n")

    # 5. tensors that do not fit their storage (each file is refused)
    four = np.arange(4, dtype=np.float32).tobytes()
    save_crafted(os.path.join(OUT, "bad_numel.pth"),
                 {"w": FakeTensor(FakeStorage("0", 2**62), 2**62 - 2, (4,), (1,))}, four)
    save_crafted(os.path.join(OUT, "bad_view.pth"), {"w": FakeTensor(FakeStorage("0", 4), 1, (2, 2), (2, 1))}, four)
    save_crafted(os.path.join(OUT, "bad_short.pth"), {"w": FakeTensor(FakeStorage("0", 8), 0, (8,), (1,))}, four)
    save_crafted(os.path.join(OUT, "bad_missing.pth"), {"w": FakeTensor(FakeStorage("7", 4), 0, (4,), (1,))}, four)

    # 6. the legacy format
    torch.save({"w": torch.ones(2)}, os.path.join(OUT, "legacy.pth"), _use_new_zipfile_serialization=False)

    for f in sorted(os.listdir(OUT)):
        print("%-28s %7d bytes" % (f, os.path.getsize(os.path.join(OUT, f))))


if __name__ == "__main__":
    main()
