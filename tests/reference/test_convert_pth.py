"""Checks of tools/convert_pth.py on checkpoints saved here with torch.save.

    /usr/bin/python3 tests/reference/test_convert_pth.py
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from mae_ref import MAE, MAEConfig  # noqa: E402
import st  # noqa: E402

TOOL = os.path.join(HERE, "..", "..", "tools", "convert_pth.py")
passed = failed = 0


def run(*args):
    r = subprocess.run([sys.executable, TOOL] + list(args), capture_output=True, text=True)
    return r.returncode, (r.stdout + r.stderr).strip()


def check(cond, what, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print("ok   %s" % what)
    else:
        failed += 1
        print("FAIL %s %s" % (what, detail))


def main():
    torch.manual_seed(0)
    cfg = MAEConfig(img_h=16, img_w=16, in_chans=3, patch_size=4, embed_dim=32, depth=2, num_heads=2,
                    decoder_embed_dim=24, decoder_depth=1, decoder_num_heads=3)
    sd = MAE(cfg).state_dict()
    with tempfile.TemporaryDirectory() as d:
        p = lambda n: os.path.join(d, n)  # noqa: E731

        # 1. raw state dict, no flags
        torch.save(sd, p("raw.pth"))
        rc, out = run(p("raw.pth"), p("raw.st"))
        t, meta = st.load_file(p("raw.st")) if rc == 0 else ({}, {})
        check(rc == 0, "raw state dict converts", out)
        check(set(t) == set(sd) and all(np.array_equal(t[k], sd[k].numpy()) for k in sd),
              "same names and values")
        check(all(a.dtype == np.float32 for a in t.values()), "all F32")
        check(meta.get("format") == "maec" and "maec_config" not in meta, "no maec_config without flags", meta)

        # 2. {"model": sd, "epoch": int} + flags (weights_only can read it)
        sd16 = {k: v.half() for k, v in sd.items()}
        torch.save({"model": sd16, "epoch": 3}, p("ck.pth"))
        rc, out = run(p("ck.pth"), p("ck.st"), "--num-heads", "2", "--decoder-num-heads", "3",
                      "--norm-pix-loss", "--img-size", "16")
        check(rc == 0, "{'model': ...} with flags converts", out)
        if rc == 0:
            t, meta = st.load_file(p("ck.st"))
            cfg_m = json.loads(meta["maec_config"])
            check(cfg_m == {"img_h": 16, "img_w": 16, "num_heads": 2, "decoder_num_heads": 3,
                            "norm_pix_loss": True}, "maec_config holds the flags given", cfg_m)
            check(np.array_equal(t["blocks.0.attn.qkv.weight"], sd16["blocks.0.attn.qkv.weight"].float().numpy()),
                  "half tensors widened to F32")

        # 3. a checkpoint that pickles an argparse.Namespace: refused, then accepted with --allow-pickle
        torch.save({"model": sd, "args": argparse.Namespace(norm_pix_loss=True)}, p("args.pth"))
        rc, out = run(p("args.pth"), p("args.st"))
        check(rc != 0 and "--allow-pickle" in out and not os.path.exists(p("args.st")),
              "pickled objects refused without --allow-pickle", out)
        rc, out = run(p("args.pth"), p("args.st"), "--allow-pickle")
        check(rc == 0 and os.path.exists(p("args.st")), "--allow-pickle reads it", out)

        # 4. bad inputs, each refused with one line and no output file
        with open(p("junk.pth"), "wb") as f:
            f.write(b"this is not a checkpoint\n" * 10)
        torch.save([1, 2, 3], p("list.pth"))
        torch.save({"fc.weight": torch.zeros(2, 2)}, p("notmae.pth"))
        torch.save({"epoch": 1}, p("empty.pth"))
        cases = [
            ((p("missing.pth"), p("o1.st")), "no such file"),
            ((p("junk.pth"), p("o2.st")), "not a PyTorch checkpoint"),
            ((p("list.pth"), p("o3.st")), "expected a dict"),
            ((p("notmae.pth"), p("o4.st")), "not an MAE"),
            ((p("empty.pth"), p("o5.st")), "no tensors"),
            ((p("raw.pth"), p("o6.st"), "--num-heads", "5"), "does not divide"),
            ((p("raw.pth"), p("o7.st"), "--img-size", "20"), "does not match pos_embed"),
            ((p("raw.pth"), p("o8.st"), "--img-size", "ax3"), "--img-size"),
            ((p("raw.pth"), p("raw.st")), "exists"),
            ((p("raw.pth"), p("raw.pth")), "overwrite the input"),
        ]
        for args, needle in cases:
            rc, out = run(*args)
            made = os.path.exists(args[1]) and args[1].endswith(".st") and os.path.basename(args[1]).startswith("o")
            check(rc != 0 and needle in out and "Traceback" not in out and not made,
                  "refuses: %s" % needle, "rc=%d out=%r" % (rc, out))
        rc, out = run(p("raw.pth"), p("raw.st"), "--force")
        check(rc == 0, "--force overwrites", out)

    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
