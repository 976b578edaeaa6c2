"""An MAE in Hugging Face transformers' ViTMAEForPreTraining naming; writes
tests/fixtures/hf/ (model.safetensors + config.json, as save_pretrained
lays them out) and tests/fixtures/hf_bin/ (pytorch_model.bin + config.json).

    /usr/bin/python3 tests/reference/hf_ref.py [--out tests/fixtures/hf]

transformers is not installed here: the names follow the mapping of its
models/vit_mae/convert_vit_mae_to_pytorch.py (rename_key, and qkv split
into query / key / value along the first dimension), applied to the
official-named tests/fixtures/c1/model.safetensors, with the fixed sin-cos
position embeddings that ViTMAEForPreTraining stores. maec reads the HF
files back and must find every tensor of the c1 model, value for value
(test_pth.c).
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st  # noqa: E402
from mae_ref import sincos_2d  # noqa: E402


def hf_name(name):
    """official -> HF, as transformers' rename_key"""
    rules = [
        ("cls_token", "vit.embeddings.cls_token"),
        ("mask_token", "decoder.mask_token"),
        ("decoder_pos_embed", "decoder.decoder_pos_embed"),
    ]
    for a, b in rules:
        if name == a:
            return b
    if name == "pos_embed":
        return "vit.embeddings.position_embeddings"
    name = name.replace("patch_embed.proj", "vit.embeddings.patch_embeddings.projection")
    name = name.replace("decoder_blocks", "decoder.decoder_layers")
    if name.startswith("blocks"):
        name = "vit.encoder.layer" + name[len("blocks"):]
    name = name.replace("attn.proj", "attention.output.dense")
    name = name.replace("norm1", "layernorm_before").replace("norm2", "layernorm_after")
    name = name.replace("mlp.fc1", "intermediate.dense").replace("mlp.fc2", "output.dense")
    for a in ("decoder_embed", "decoder_norm", "decoder_pred"):
        if name.startswith(a):
            name = "decoder." + name
    if name in ("norm.weight", "norm.bias"):
        name = "vit.layer" + name
    return name


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "fixtures", "hf"))
    a = ap.parse_args()
    t, meta = st.load_file(os.path.join(here, "..", "fixtures", "c1", "model.safetensors"))
    cfg = json.loads(meta["maec_config"])
    D, E = cfg["embed_dim"], cfg["decoder_embed_dim"]
    gh, gw = cfg["img_h"] // cfg["patch_size"], cfg["img_w"] // cfg["patch_size"]
    t = dict(t)
    t["pos_embed"] = sincos_2d(D, gh, gw)[None].astype(np.float32)
    t["decoder_pos_embed"] = sincos_2d(E, gh, gw)[None].astype(np.float32)
    out = {}
    for name, v in t.items():
        if ".attn.qkv." in name:
            dim = E if name.startswith("decoder_blocks") else D
            base = hf_name(name.replace("attn.qkv", "attention.attention.QKV"))
            for k, part in enumerate(("query", "key", "value")):
                out[base.replace("QKV", part)] = np.ascontiguousarray(v[k * dim:(k + 1) * dim])
        else:
            out[hf_name(name)] = v
    os.makedirs(a.out, exist_ok=True)
    st.save_file(os.path.join(a.out, "model.safetensors"), out, {"format": "pt"})
    config = {
        "architectures": ["ViTMAEForPreTraining"], "model_type": "vit_mae",
        "hidden_size": D, "num_hidden_layers": cfg["depth"], "num_attention_heads": cfg["num_heads"],
        "intermediate_size": D * cfg["mlp_ratio"], "hidden_act": "gelu", "layer_norm_eps": 1e-12,
        "image_size": cfg["img_h"], "patch_size": cfg["patch_size"], "num_channels": cfg["in_chans"],
        "qkv_bias": True, "decoder_hidden_size": E, "decoder_num_hidden_layers": cfg["decoder_depth"],
        "decoder_num_attention_heads": cfg["decoder_num_heads"], "decoder_intermediate_size": E * cfg["mlp_ratio"],
        "mask_ratio": cfg["mask_ratio"], "norm_pix_loss": cfg["norm_pix_loss"],
    }
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    # the same as pytorch_model.bin (torch.save of the state dict), the other
    # file save_pretrained writes
    import torch
    bindir = a.out.rstrip("/") + "_bin"
    os.makedirs(bindir, exist_ok=True)
    torch.save({k: torch.from_numpy(np.array(v)) for k, v in out.items()}, os.path.join(bindir, "pytorch_model.bin"))
    with open(os.path.join(bindir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)


if __name__ == "__main__":
    main()
