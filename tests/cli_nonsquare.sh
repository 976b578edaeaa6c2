#!/usr/bin/env bash
# Non-square inputs end to end: pretrain --input-size HxW (the model's
# config, the k-NN monitor, the reconstruction picture of h x w), then
# reconstruct, knn, embed and finetune on that model, knn and finetune at
# another resolution (interpolated position embeddings); init --input-size H,W;
# a size that is none is a one-line error.
cd "$(dirname "$0")/.." || exit 1
. tests/lib.sh
T=$(mktemp -d /tmp/maec_cli_nonsquare_XXXXXX)
trap 'rm -rf "$T"' EXIT
export OMP_WAIT_POLICY=PASSIVE
need_data
D=$T/data; mkdir -p $D
. scripts/idx.sh
cut_fmnist $DATA $D 256 128
J="--threads 2 --num-workers 1"

$MAEC pretrain --model test-tiny --input-size 16x24 --data-path $D --output-dir $T/pre --epochs 2 --warmup-epochs 0 \
    --batch-size 32 --knn-every 1 --recon-images 4 $J > $T/pre.log 2>&1
rc=$?; check '[ $rc -eq 0 ]' "pretrain --input-size 16x24 failed: $(tail -2 $T/pre.log)"
check '$MAEC info $T/pre/model.safetensors | grep -q "\"img_h\":16,\"img_w\":24"' "the model is not 16 x 24"
check '[ "$(grep -c knn_top1 $T/pre/metrics.jsonl)" -eq 2 ]' "no k-NN record per epoch on a 16 x 24 model"
# PNG width x height (bytes 16-23)
pngsize() { od -An -tu1 -j16 -N8 "$1" | awk '{print ($1*16777216+$2*65536+$3*256+$4) "x" ($5*16777216+$6*65536+$7*256+$8)}'; }
$MAEC reconstruct --model $T/pre/model.safetensors --data-path $D --out $T/r.png --threads 2 > $T/r.log 2>&1
rc=$?; check '[ $rc -eq 0 ] && [ -s $T/r.png ]' "reconstruct on a 16 x 24 model failed: $(tail -1 $T/r.log)"
w0=$(pngsize $T/r.png); w1=$(pngsize $T/pre/reconstruction.png)
check '[ "$(head -c 4 $T/r.png | tail -c 3)" = PNG ] && [ "${w0%x*}" -gt 0 ] && [ "${w1%x*}" -gt 0 ]' "reconstruction pictures unreadable: $w0, $w1"
$MAEC knn --model $T/pre/model.safetensors --data-path $D $J > $T/k.log 2>&1
rc=$?; check '[ $rc -eq 0 ] && grep -q knn_top1 $T/k.log' "knn on a 16 x 24 model failed: $(tail -1 $T/k.log)"
$MAEC embed --model $T/pre/model.safetensors --data-path $D --split test --out $T/e.npy $J > $T/e.log 2>&1
rc=$?; check '[ $rc -eq 0 ] && head -c 128 $T/e.npy | grep -q "(128, 32)"' "embed on a 16 x 24 model: not [128, 32]"
# embed's tokens: every patch token (N, L, D) of the 4 x 6 grid; the class token
# after the final norm is the --feature cls output, byte for byte; another block
$MAEC embed --model $T/pre/model.safetensors --data-path $D --split test --tokens patch --out $T/p.npy $J > $T/p.log 2>&1
rc=$?; check '[ $rc -eq 0 ] && head -c 128 $T/p.npy | grep -q "(128, 24, 32)"' "embed --tokens patch: not [128, 24, 32]: $(tail -1 $T/p.log)"
$MAEC embed --model $T/pre/model.safetensors --data-path $D --split test --tokens cls --out $T/c.npy $J > /dev/null 2>&1
check 'cmp -s $T/c.npy $T/e.npy' "embed --tokens cls differs from --feature cls"
$MAEC embed --model $T/pre/model.safetensors --data-path $D --split test --tokens cls --layer 1 --no-final-norm --out $T/c1.npy $J > $T/c1.log 2>&1
rc=$?; check '[ $rc -eq 0 ] && grep -q "after block 1 ->" $T/c1.log && ! cmp -s $T/c1.npy $T/c.npy' "embed --layer 1 --no-final-norm: $(tail -1 $T/c1.log)"
$MAEC embed --model $T/pre/model.safetensors --data-path $D --split test --attention --out $T/a.npy $J > $T/a.log 2>&1
rc=$?; check '[ $rc -eq 0 ] && head -c 128 $T/a.npy | grep -q "(128, 2, 25, 25)"' "embed --attention: not [128, 2, 25, 25]: $(tail -1 $T/a.log)"
$MAEC embed --model $T/pre/model.safetensors --data-path $D --split test --tokens all --out $T/x.npy $J > $T/x.log 2>&1
rc=$?; check '[ $rc -ne 0 ] && grep -q "give cls, mean or patch" $T/x.log' "embed --tokens all: no error"
$MAEC finetune --model $T/pre/model.safetensors --data-path $D --output-dir $T/ft --max-steps 2 --batch-size 16 \
    --epochs 1 --warmup-epochs 0 $J > $T/ft.log 2>&1
rc=$?; check '[ $rc -eq 0 ] && grep -q "test top-1" $T/ft.log' "finetune on a 16 x 24 model failed: $(tail -1 $T/ft.log)"
# another resolution than the pretraining one: pos_embed interpolated (checked against
# F.interpolate in test_augment), the encoder run on the new grid
$MAEC knn --model $T/pre/model.safetensors --data-path $D --input-size 24x32 $J > $T/k2.log 2>&1
rc=$?; check '[ $rc -eq 0 ] && grep -q knn_top1 $T/k2.log' "knn --input-size 24x32 failed: $(tail -1 $T/k2.log)"
$MAEC finetune --model $T/pre/model.safetensors --data-path $D --output-dir $T/ft2 --input-size 24x32 --max-steps 2 \
    --batch-size 16 --epochs 1 --warmup-epochs 0 $J > $T/ft2.log 2>&1
rc=$?; check '[ $rc -eq 0 ] && $MAEC info $T/ft2/model.safetensors | grep -q "pos_embed *\[1,49,32\]"' \
      "finetune --input-size 24x32: no 6 x 8 grid (+1) of position embeddings"
$MAEC knn --model $T/pre/model.safetensors --data-path $D --input-size 25x32 $J > $T/k3.log 2>&1
rc=$?; check '[ $rc -ne 0 ] && grep -q "not a grid of 4-pixel patches" $T/k3.log' "knn --input-size 25x32: no error"
$MAEC init --model test-tiny --input-size 8,12 --out $T/i.safetensors > /dev/null 2>&1
check '$MAEC info $T/i.safetensors | grep -q "\"img_h\":8,\"img_w\":12"' "init --input-size 8,12: not 8 x 12"
$MAEC init --model test-tiny --input-size 8 12 --out $T/i2.safetensors > /dev/null 2>&1
check '$MAEC info $T/i2.safetensors | grep -q "\"img_h\":8,\"img_w\":12"' "init --input-size 8 12 (two numbers): not 8 x 12"
$MAEC pretrain --model test-tiny --input-size 16y24 --data-path $D --output-dir $T/bad $J > $T/bad.log 2>&1
rc=$?; check '[ $rc -eq 2 ] && [ "$(wc -l < $T/bad.log)" -eq 1 ] && grep -q "give N, HxW or H,W" $T/bad.log' "--input-size 16y24: not a one-line error"
$MAEC pretrain --model test-tiny --input-size 18x24 --data-path $D --output-dir $T/bad2 $J > $T/bad2.log 2>&1
rc=$?; check '[ $rc -ne 0 ] && grep -q "^maec: error:" $T/bad2.log' "--input-size 18x24 with patch 4: no error"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
