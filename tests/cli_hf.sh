#!/usr/bin/env bash
# Hugging Face ViTMAE folders through the command: the fixture folders (from
# tests/reference/hf_ref.py) as --model; convert --to hf writes a folder
# that reads back as the same model, byte for byte once written by maec;
# bad --to values and a classifier to hf are one-line errors.
cd "$(dirname "$0")/.." || exit 1
. tests/lib.sh
T=$(mktemp -d /tmp/maec_cli_hf_XXXXXX)
trap 'rm -rf "$T"' EXIT
C1=tests/fixtures/c1/model.safetensors
$MAEC info tests/fixtures/hf > $T/info.txt 2>&1
rc=$?; check '[ $rc -eq 0 ] && grep -q "\"num_heads\":2" $T/info.txt && grep -q "blocks.1.attn.qkv.weight *\[96,32\]" $T/info.txt' "info of an HF folder: $(head -1 $T/info.txt)"
$MAEC info tests/fixtures/hf_bin/pytorch_model.bin > /dev/null 2>&1
rc=$?; check '[ $rc -eq 0 ]' "info of an HF pytorch_model.bin failed"
$MAEC convert $C1 $T/hf --to hf > /dev/null 2>&1
rc=$?; check '[ $rc -eq 0 ] && [ -s $T/hf/model.safetensors ] && [ -s $T/hf/config.json ] && grep -q vit_mae $T/hf/config.json' "convert --to hf wrote no folder"
$MAEC convert $T/hf $T/back.safetensors > /dev/null 2>&1
$MAEC convert $C1 $T/direct.safetensors > /dev/null 2>&1
check 'cmp -s $T/back.safetensors $T/direct.safetensors' "c1 -> hf -> maec differs from c1 -> maec"
$MAEC convert tests/fixtures/hf $T/fromfix.safetensors > /dev/null 2>&1
check 'cmp -s $T/fromfix.safetensors $T/direct.safetensors' "the reference's HF folder read differently from c1"
$MAEC convert $C1 $T/x --to tf > $T/tf.log 2>&1
rc=$?; check '[ $rc -eq 2 ] && grep -q "give maec or hf" $T/tf.log' "convert --to tf: not a one-line error"
mkdir -p $T/empty
$MAEC info $T/empty > $T/empty.log 2>&1
rc=$?; check '[ $rc -ne 0 ] && grep -q "without model.safetensors or pytorch_model.bin" $T/empty.log' "info of an empty folder: no clear error"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
