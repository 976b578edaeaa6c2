#!/usr/bin/env bash
# The evaluation commands end to end on a small cut of Fashion-MNIST (512
# train / 256 test images, IDX files written here): pretrain --knn-every,
# knn, embed, linprobe (model and raw pixels), finetune (full, partial, from
# scratch; same seed, same losses), and clean one-line errors on bad input.
cd "$(dirname "$0")/.." || exit 1
. tests/lib.sh
T=$(mktemp -d /tmp/maec_cli_eval_XXXXXX)
trap 'rm -rf "$T"' EXIT
export OMP_WAIT_POLICY=PASSIVE

need_data

# a small IDX data set: the first 512 train and 256 test images
D=$T/data; mkdir -p $D
. scripts/idx.sh
cut_fmnist $DATA $D 512 256

SMALL="--model fmnist-mini --embed-dim 32 --depth 2 --num-heads 2 --decoder-embed-dim 32 --decoder-depth 1 --decoder-num-heads 2 --threads 2 --seed 3 --recon-every 0 --log-every 4"
J="--threads 2 --num-workers 1"

# 1. pretrain with k-NN every epoch
$MAEC pretrain $SMALL --data-path $D --output-dir $T/pre --epochs 2 --warmup-epochs 0.5 --batch-size 64 --blr 1.5e-3 --knn-every 1 > $T/pre.log 2>&1
check '[ $? -eq 0 ]' "pretrain --knn-every failed: $(tail -2 $T/pre.log)"
nk=$(grep -c '"knn_top1"' $T/pre/metrics.jsonl)
check '[ "$nk" -eq 2 ]' "pretrain --knn-every 1: $nk knn_top1 records for 2 epochs"
M=$T/pre/model.safetensors

# 2. knn
out=$($MAEC knn --model $M --data-path $D --k 10 --output-dir $T/knn $J 2>&1)
check '[ $? -eq 0 ]' "knn failed: $out"
acc=$(echo "$out" | grep -o '"knn_top1":[0-9.]*' | cut -d: -f2)
check 'awk -v a="$acc" "BEGIN{exit !(a > 0.2 && a <= 1)}"' "knn top-1 '$acc' not above chance"
check 'grep -q knn_top1 $T/knn/metrics.jsonl' "knn --output-dir wrote no metrics"
echo "  knn top-1 $acc (512 train, 256 test)"
out2=$($MAEC knn --model $M --data-path $D --k 10 --feature mean $J 2>&1)
check '[ $? -eq 0 ] && [[ "$out2" == *"\"feature\":\"mean\""* ]]' "knn --feature mean failed: $out2"

# 3. embed: [N, D] float32 + labels
$MAEC embed --model $M --data-path $D --split train --out $T/f.npy $J > /dev/null 2>&1
check '[ $? -eq 0 ] && [ $(stat -c %s $T/f.npy) -eq $((128 + 512 * 32 * 4)) ] && [ $(stat -c %s $T/f_labels.npy) -eq $((128 + 512 * 4)) ]' \
      "embed: wrong file sizes"

# cached features feed knn and linprobe; knn on them equals knn on the model
$MAEC embed --model $M --data-path $D --split test --out $T/g.npy $J > /dev/null 2>&1
out3=$($MAEC knn --train-features $T/f.npy --test-features $T/g.npy --k 10 2>&1)
a3=$(echo "$out3" | grep -o '"knn_top1":[0-9.]*' | cut -d: -f2)
check '[ -n "$a3" ] && [ "$a3" = "$acc" ]' "knn on embed features ($a3) differs from knn on the model ($acc)"
$MAEC linprobe --train-features $T/f.npy --test-features $T/g.npy --output-dir $T/lpf --epochs 2 --warmup-epochs 0 --batch-size 64 > /dev/null 2>&1
check '[ $? -eq 0 ] && grep -q "\"final\":true" $T/lpf/metrics.jsonl' "linprobe --train-features failed"

# 4. linprobe: model, random init, raw pixels
$MAEC linprobe --model $M --data-path $D --output-dir $T/lp --epochs 3 --warmup-epochs 1 --batch-size 64 $J > $T/lp.log 2>&1
check '[ $? -eq 0 ] && grep -q "\"final\":true" $T/lp/metrics.jsonl && [ -s $T/lp/model.safetensors ]' "linprobe failed: $(tail -2 $T/lp.log)"
check 'grep -q "\"test_top1\"" $T/lp/metrics.jsonl' "linprobe: no test_top1"
$MAEC linprobe --raw-pixels --data-path $D --output-dir $T/lpraw --epochs 3 --warmup-epochs 1 --batch-size 64 --sgd $J > $T/lpraw.log 2>&1
check '[ $? -eq 0 ] && grep -q "\"final\":true" $T/lpraw/metrics.jsonl' "linprobe --raw-pixels failed: $(tail -2 $T/lpraw.log)"
$MAEC linprobe --model test-tiny --data-path $D --output-dir $T/lprand --epochs 1 --warmup-epochs 0 --batch-size 64 $J > /dev/null 2>&1
check '[ $? -eq 0 ]' "linprobe of a random-init preset failed"

# 5. finetune: full, partial, from scratch; the same seed gives the same losses
FT="--data-path $D --epochs 1 --warmup-epochs 0.2 --batch-size 32 --log-every 1 $J"
$MAEC finetune --model $M $FT --output-dir $T/ft > $T/ft.log 2>&1
check '[ $? -eq 0 ] && grep -q "\"final\":true" $T/ft/metrics.jsonl' "finetune failed: $(tail -2 $T/ft.log)"
check '[ -s $T/ft/model.safetensors ]' "finetune wrote no model"
# RandAugment and random erasing on by default (official), and kept in the run state so
# that a resumed run keeps it whatever the default becomes
check 'grep -q "RandAugment rand-m9-mstd0.5-inc1, random erasing 0.25" $T/ft.log && grep -q -- "--reprob=0.25" $T/ft/checkpoint.safetensors && grep -q -- "--aa=rand-m9-mstd0.5-inc1" $T/ft/checkpoint.safetensors' \
      "finetune: RandAugment and random erasing not on by default, or not in the checkpoint's run state"
$MAEC finetune --model $M $FT --output-dir $T/ft2 > /dev/null 2>&1
losses() { grep -o '"loss":[^,]*' "$1/metrics.jsonl"; }
check '[ -n "$(losses $T/ft)" ] && [ "$(losses $T/ft)" = "$(losses $T/ft2)" ]' "finetune: same seed, different losses"
$MAEC finetune --model $M $FT --tune-blocks 1 --output-dir $T/ftp > $T/ftp.log 2>&1
check '[ $? -eq 0 ] && grep -q "partial fine-tuning" $T/ftp.log' "finetune --tune-blocks 1 failed: $(tail -2 $T/ftp.log)"
$MAEC finetune --model $M $FT --tune-blocks 0 --mixup 0 --cutmix 0 --output-dir $T/ftp0 > /dev/null 2>&1
check '[ $? -eq 0 ]' "finetune --tune-blocks 0 failed"
$MAEC finetune --model $M $FT --from-scratch --output-dir $T/fts > $T/fts.log 2>&1
check '[ $? -eq 0 ] && grep -q "from scratch" $T/fts.log' "finetune --from-scratch failed: $(tail -2 $T/fts.log)"
# finetune --resume: a run stopped after 5 steps (--max-steps), or by
# SIGTERM, and resumed ends with the same weights, bit for bit, as one run;
# partial fine-tuning too (its checkpoint holds the moments of what learns)
FR="--data-path $D --warmup-epochs 0.2 --batch-size 32 --log-every 4 $J"
for tb in "" "--tune-blocks 1"; do
    $MAEC finetune --model $M $FR --epochs 2 $tb --output-dir $T/fr1 > /dev/null 2>&1
    $MAEC finetune --model $M $FR --epochs 2 $tb --max-steps 5 --output-dir $T/fr2 > /dev/null 2>&1
    check '[ -s $T/fr2/checkpoint.safetensors ]' "finetune $tb --max-steps 5 wrote no checkpoint"
    $MAEC finetune --resume $T/fr2 --max-steps 0 > $T/fr2.log 2>&1
    check '[ $? -eq 0 ] && grep -q "resuming .* at step 5 of 32" $T/fr2.log' "finetune --resume $tb failed: $(tail -2 $T/fr2.log)"
    check 'cmp -s $T/fr1/model.safetensors $T/fr2/model.safetensors' "finetune $tb: stopped and resumed, other weights than one run"
    # evaluations after epochs 1 and 2: the one at step 5, where the first
    # part stopped, goes on resuming (an unbroken run has none there)
    check '[ "$(grep -c "\"epoch\":[0-9]*,\"test_top1\"" $T/fr2/metrics.jsonl)" -eq 2 ]' "finetune --resume $tb: metrics.jsonl not continued"
    rm -rf $T/fr1 $T/fr2
done
$MAEC finetune --model $M $FR --epochs 400 --output-dir $T/fr3 > $T/fr3.log 2>&1 &
pid=$!
for i in $(seq 100); do [ -s $T/fr3/checkpoint.safetensors ] && break; sleep 0.2; done
kill -TERM $pid; wait $pid; rc=$?
check '[ $rc -eq 143 ] && grep -q "continue with: maec finetune --resume" $T/fr3.log' "finetune: SIGTERM gave exit $rc: $(tail -1 $T/fr3.log)"
$MAEC finetune --resume $T/fr3/checkpoint.safetensors --max-steps 200 > $T/fr3b.log 2>&1
check '[ $? -eq 0 ] && grep -q "\"final\":true" $T/fr3/metrics.jsonl' "finetune --resume after SIGTERM failed: $(tail -2 $T/fr3b.log)"
out=$($MAEC finetune --resume $T/fr3 2>&1)
check '[ $? -eq 0 ] && echo "$out" | grep -q "already ran its 200 steps"' "finetune --resume of a finished run: $out"

# the fine-tuned file (timm names) feeds knn and embed (its pre-logits)
out=$($MAEC knn --model $T/ft/model.safetensors --data-path $D --k 5 $J 2>&1)
check '[ $? -eq 0 ]' "knn on a fine-tuned model failed: $out"
check 'grep -q "\"fc_norm.weight\"" $T/ft/model.safetensors && grep -q "\"head.weight\"" $T/ft/model.safetensors && ! grep -q "\"norm.weight\"" $T/ft/model.safetensors && ! grep -q "\"mask_token\"" $T/ft/model.safetensors' \
      "fine-tuned model lacks timm names"

# predict: the fine-tuned model's test top-1 is the one finetune reported;
# logits [N, K] and labels to .npy; image files, one line each
out=$($MAEC predict --model $T/ft/model.safetensors --data-path $D --out $T/pl.npy $J 2>&1)
want=$(grep '"final"' $T/ft/metrics.jsonl | grep -o '"test_top1":[0-9.]*' | cut -d: -f2 | awk '{printf "%.2f", 100 * $1}')
check '[ -n "$want" ] && [[ "$out" == *"(test): top-1 $want%, top-5 "* ]]' "predict: '$out', finetune's top-1 $want%"
check '[ $(stat -c %s $T/pl.npy) -eq $((128 + 256 * 10 * 4)) ] && [ $(stat -c %s $T/pl_labels.npy) -eq $((128 + 256 * 4)) ]' \
      "predict --out: wrong file sizes"
$MAEC reconstruct --model $M --data-path $D --num-images 1 --scale 1 --out $T/one.png > /dev/null 2>&1
out=$($MAEC predict --model $T/ft/model.safetensors $T/one.png $T/one.png --top-k 3 --threads 1 2>&1); rc=$?
l1=$(echo "$out" | sed -n 1p)
check '[ $rc -eq 0 ] && [ $(echo "$out" | wc -l) -eq 2 ] && [ "$l1" = "$(echo "$out" | sed -n 2p)" ] && [ $(echo "$l1" | grep -o "class [0-9]" | wc -l) -eq 3 ]' \
      "predict on image files: '$out'"
echo "  predict: $l1"
check 'echo "$l1" | grep -o "[0-9.]*%" | tr -d % | awk "NR > 1 && \$1 > prev + 1e-9 {bad = 1} {prev = \$1} END {exit bad}"' \
      "predict: the classes of a line are not in decreasing probability: $l1"

# class names: fine-tuned on an image folder, the model keeps the folders'
# names and predict prints them
for split in train val; do for cl in boot shirt; do
    mkdir -p $T/folder/$split/$cl
    for i in 1 2 3 4; do
        $MAEC reconstruct --model $M --data-path $D --num-images 1 --scale 1 --seed $i --out $T/folder/$split/$cl/$i.png > /dev/null 2>&1
    done
done; done
$MAEC finetune --model $M --data-path $T/folder --epochs 1 --warmup-epochs 0 --batch-size 4 --mixup 0 --cutmix 0 \
    --output-dir $T/ftf $J > $T/ftf.log 2>&1
check '[ $? -eq 0 ] && grep -q "maec_classes" $T/ftf/model.safetensors' "finetune on an image folder kept no class names: $(tail -1 $T/ftf.log)"
out=$($MAEC predict --model $T/ftf/model.safetensors $T/one.png --threads 1 2>&1)
check '[[ "$out" == *": boot (0) "*", shirt (1) "* ]] || [[ "$out" == *": shirt (1) "*", boot (0) "* ]]' "predict did not name the classes: '$out'"
echo "  predict: $out"

# info reads every file the evaluation commands write
out=$($MAEC info $T/ftf/model.safetensors 2>&1)
check '[ $? -eq 0 ] && [[ "$out" == *"classifier: 2 classes, mean of the patch tokens"*"classes [\"boot\",\"shirt\"]"* ]]' "info on a fine-tuned model: $(echo "$out" | head -3)"
out=$($MAEC info $T/lpf/model.safetensors 2>&1)
check '[ $? -eq 0 ] && [[ "$out" == *"no encoder"*"head.1.weight"* ]]' "info on a probe of features: $(echo "$out" | head -3)"
out=$($MAEC info $T/lp/model.safetensors 2>&1)
check '[ $? -eq 0 ] && [[ "$out" == *"a linear probe, its BatchNorm folded"* ]]' "info on a probe of a model: $(echo "$out" | head -3)"
# a linear probe runs as a classifier (its BatchNorm folded into the head):
# predict gives the probe's own test top-1, to one image of 256 (a probe
# trained well above chance, so that a wrong fold would show)
$MAEC linprobe --model $M --data-path $D --output-dir $T/lp2 --epochs 15 --warmup-epochs 1 --batch-size 64 --blr 4 $J > /dev/null 2>&1
out=$($MAEC predict --model $T/lp2/model.safetensors --data-path $D $J 2>&1)
got=$(echo "$out" | grep -o "top-1 [0-9.]*" | cut -d" " -f2)
want=$(grep '"final"' $T/lp2/metrics.jsonl | grep -o '"test_top1":[0-9.]*' | cut -d: -f2)
check 'awk -v b="$want" "BEGIN{exit !(b > 0.2)}"' "the probe for predict reached only '$want' (want > 0.2, chance 0.1)"
check '[ -n "$got" ] && [ -n "$want" ] && awk -v a="$got" -v b="$want" "BEGIN{d = a - 100 * b; exit !(d < 0.4 && d > -0.4)}"' \
      "predict on a linear probe: top-1 '$got'%, the probe reported '$want'"
echo "  predict on the linear probe: top-1 $got% (probe: $want)"

# 6. bad input: one line 'maec: error: ...', non-zero exit
expect_err() { # name, command...
    local name=$1; shift
    out=$("$@" 2>&1 >/dev/null); rc=$?
    if [ $rc -ne 0 ] && [ $rc -lt 128 ] && [[ "$out" == "maec: error: "* ]] && [ $(echo "$out" | wc -l) -eq 1 ]; then ok; echo "  $name -> $out"
    else bad "$name: exit $rc, message '$out'"; fi
}
expect_err "knn, no model" $MAEC knn --data-path $D
expect_err "knn, no such model" $MAEC knn --model $T/none.safetensors --data-path $D
expect_err "knn, bad feature" $MAEC knn --model $M --data-path $D --feature avg
expect_err "knn, k 0" $MAEC knn --model $M --data-path $D --k 0
expect_err "knn, T 0" $MAEC knn --model $M --data-path $D --t 0
expect_err "knn, no data" $MAEC knn --model $M --data-path $T/nothing
printf 'garbage' > $T/bad.safetensors
expect_err "knn, corrupt model" $MAEC knn --model $T/bad.safetensors --data-path $D
expect_err "embed, bad split" $MAEC embed --model $M --data-path $D --split val --out $T/x.npy
expect_err "embed, not .npy" $MAEC embed --model $M --data-path $D --out $T/x.txt
expect_err "embed, no --out" $MAEC embed --model $M --data-path $D
expect_err "knn, train features only" $MAEC knn --train-features $T/f.npy
expect_err "knn, features and model" $MAEC knn --train-features $T/f.npy --test-features $T/g.npy --model $M
expect_err "linprobe, missing features" $MAEC linprobe --train-features $T/none.npy --test-features $T/g.npy --output-dir $T/x
expect_err "linprobe, no output dir" $MAEC linprobe --model $M --data-path $D
expect_err "linprobe, model and raw" $MAEC linprobe --model $M --raw-pixels --data-path $D --output-dir $T/x
expect_err "linprobe, warmup > epochs" $MAEC linprobe --model $M --data-path $D --output-dir $T/x --epochs 2 --warmup-epochs 3
expect_err "linprobe, unknown flag" $MAEC linprobe --model $M --data-path $D --output-dir $T/x --epoch 3
expect_err "finetune, tune too many blocks" $MAEC finetune --model $M $FT --tune-blocks 5 --output-dir $T/x
expect_err "finetune, odd batch with mixup" $MAEC finetune --model $M --data-path $D --batch-size 33 --output-dir $T/x
expect_err "finetune, --aa auto" $MAEC finetune --model $M $FT --aa original-mstd0.5 --output-dir $T/x
expect_err "finetune, reprob 2" $MAEC finetune --model $M $FT --reprob 2 --output-dir $T/x
expect_err "finetune, bad drop path" $MAEC finetune --model $M $FT --drop-path 1 --output-dir $T/x
expect_err "finetune, unknown preset" $MAEC finetune --model vit-tiny-99 $FT --output-dir $T/x
expect_err "finetune, corrupt model" $MAEC finetune --model $T/bad.safetensors $FT --output-dir $T/x
mkdir -p $T/nolabels; cp $D/train-images-idx3-ubyte $D/t10k-images-idx3-ubyte $T/nolabels/
expect_err "finetune, no labels" $MAEC finetune --model $M --data-path $T/nolabels --batch-size 32 --output-dir $T/x
# predict on unlabelled images: no accuracy, the logits all the same
out=$($MAEC predict --model $T/ft/model.safetensors --data-path $T/nolabels --out $T/nl.npy --threads 1 2>&1)
check '[ $? -eq 0 ] && [[ "$out" == *"256 unlabelled images"* ]] && [ $(stat -c %s $T/nl.npy) -eq $((128 + 256 * 10 * 4)) ]' \
      "predict on unlabelled images: $out"
expect_err "finetune --resume, changed flag" $MAEC finetune --resume $T/fr3 --blr 0.1
expect_err "finetune --resume, no checkpoint" $MAEC finetune --resume $T/nothing
expect_err "finetune --resume, an MAE file" $MAEC finetune --resume $M
expect_err "predict, an MAE (no head)" $MAEC predict --model $M --data-path $D
expect_err "predict, a probe of features" $MAEC predict --model $T/lpf/model.safetensors --data-path $D
expect_err "predict, no input" $MAEC predict --model $T/ft/model.safetensors
expect_err "predict, data and files" $MAEC predict --model $T/ft/model.safetensors --data-path $D $T/one.png
expect_err "predict, no such image" $MAEC predict --model $T/ft/model.safetensors $T/none.png
expect_err "predict, mean without std" $MAEC predict --model $T/ft/model.safetensors $T/one.png --mean 0.5
expect_err "predict, std 0" $MAEC predict --model $T/ft/model.safetensors $T/one.png --mean 0.5 --std 0
expect_err "predict, --out not .npy" $MAEC predict --model $T/ft/model.safetensors --data-path $D --out $T/x.txt
expect_err "pretrain, bad knn-every" $MAEC pretrain $SMALL --data-path $D --output-dir $T/x --knn-every -1
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
