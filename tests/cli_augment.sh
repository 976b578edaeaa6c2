#!/usr/bin/env bash
# The official options that were missing, end to end on a small cut of
# Fashion-MNIST: finetune --mixup-mode/--mixup-prob/--clip-grad/--color-jitter
# (the underscore spellings too), pretrain --color-jitter and --mlp-ratio,
# init --mlp-ratio, linprobe --augment, and one-line errors on bad values.
cd "$(dirname "$0")/.." || exit 1
. tests/lib.sh
T=${KEEP_T:-$(mktemp -d /tmp/maec_cli_augment_XXXXXX)}
[ -n "$KEEP_T" ] || trap 'rm -rf "$T"' EXIT
export OMP_WAIT_POLICY=PASSIVE
need_data

D=$T/data; mkdir -p $D
. scripts/idx.sh
cut_fmnist $DATA $D 256 128
J="--threads 2 --num-workers 1"
SMALL="--model fmnist-mini --embed-dim 32 --depth 2 --num-heads 2 --decoder-embed-dim 32 --decoder-depth 1 --decoder-num-heads 2 --recon-every 0 --log-every 1 --seed 3"
losses() { grep -o '"loss":[^,]*' "$1/metrics.jsonl"; }

# pretrain: --mlp-ratio in the model, --color-jitter in config.json and in the losses
$MAEC pretrain $SMALL --data-path $D --output-dir $T/p --epochs 1 --warmup-epochs 0 --batch-size 64 --mlp-ratio 2 $J > $T/p.log 2>&1
rc=$?; check '[ $rc -eq 0 ]' "pretrain --mlp-ratio 2 failed: $(tail -2 $T/p.log)"
check '$MAEC info $T/p/model.safetensors | grep -q "\"mlp_ratio\":2" && $MAEC info $T/p/model.safetensors | grep -q "blocks.0.mlp.fc1.weight *\[64,32\]"' \
      "pretrain --mlp-ratio 2: the model's fc1 is not 64 wide or its config does not say so"
$MAEC pretrain $SMALL --data-path $D --output-dir $T/pj --epochs 1 --warmup-epochs 0 --batch-size 64 --mlp-ratio 2 --color-jitter 0.4 $J > $T/pj.log 2>&1
rc=$?
check '[ $rc -eq 0 ] && grep -q "\"color_jitter\":[[:space:]]*0.4" $T/pj/config.json' "pretrain --color-jitter 0.4 failed or is not in config.json: $(tail -2 $T/pj.log)"
check '[ -n "$(losses $T/p)" ] && [ "$(losses $T/p)" != "$(losses $T/pj)" ]' "pretrain --color-jitter 0.4: the same losses as without it"
$MAEC pretrain $SMALL --data-path $D --output-dir $T/pbad --color-jitter -1 $J > $T/pbad.log 2>&1
rc=$?; check '[ $rc -eq 2 ] && grep -q "^maec: error: .*color-jitter" $T/pbad.log' "pretrain --color-jitter -1: not a one-line error"

# init --mlp-ratio
$MAEC init --model test-tiny --mlp-ratio 3 --out $T/i.safetensors > /dev/null 2>&1
check '$MAEC info $T/i.safetensors | grep -q "blocks.0.mlp.fc1.weight *\[96,32\]"' "init --mlp-ratio 3: fc1 is not 96 wide"

# finetune: the new mixup options, clipping, colour jitter; underscores accepted
FT="--model $T/p/model.safetensors --data-path $D --epochs 1 --warmup-epochs 0 --batch-size 32 --log-every 1 --seed 1 $J"
$MAEC finetune $FT --output-dir $T/f0 > $T/f0.log 2>&1
rc=$?; check '[ $rc -eq 0 ] && grep -q "batch mode, prob 1" $T/f0.log && grep -q "gradient clipping off" $T/f0.log' \
      "finetune defaults: not batch mode, prob 1, no clipping: $(grep finetune: $T/f0.log | head -1)"
$MAEC finetune $FT --mixup_mode elem --mixup_prob 0.5 --output-dir $T/fe > $T/fe.log 2>&1
rc=$?; check '[ $rc -eq 0 ] && grep -q "elem mode, prob 0.5" $T/fe.log' "finetune --mixup_mode elem --mixup_prob 0.5 failed: $(tail -2 $T/fe.log)"
check '[ "$(losses $T/f0)" != "$(losses $T/fe)" ]' "finetune --mixup-mode elem: the same losses as batch mode"
$MAEC finetune $FT --mixup-mode pair --output-dir $T/fp > $T/fp.log 2>&1
rc=$?; check '[ $rc -eq 0 ] && grep -q "pair mode" $T/fp.log && grep -q -- "--mixup-mode=pair" $T/fp/checkpoint.safetensors' \
      "finetune --mixup-mode pair failed or is not in the checkpoint's run state: $(tail -2 $T/fp.log)"
$MAEC finetune $FT --clip_grad 0.01 --output-dir $T/fc > $T/fc.log 2>&1
rc=$?; check '[ $rc -eq 0 ] && grep -q "gradient clipping on" $T/fc.log' "finetune --clip_grad 0.01 failed: $(tail -2 $T/fc.log)"
check '[ "$(losses $T/f0)" != "$(losses $T/fc)" ]' "finetune --clip-grad 0.01: the same losses as without clipping"
$MAEC finetune $FT --clip-grad 1e6 --output-dir $T/fc6 > /dev/null 2>&1
check '[ "$(losses $T/f0)" = "$(losses $T/fc6)" ]' "finetune --clip-grad 1e6 (never reached) changed the losses"
$MAEC finetune $FT --color-jitter 0.4 --output-dir $T/fj > $T/fj.log 2>&1
rc=$?; check '[ $rc -eq 0 ] && grep -q "ignored while RandAugment is on" $T/fj.log && [ "$(losses $T/f0)" = "$(losses $T/fj)" ]' \
      "finetune --color-jitter with RandAugment on: not ignored as timm ignores it"
$MAEC finetune $FT --color-jitter 0.4 --aa none --output-dir $T/fj2 > $T/fj2.log 2>&1
$MAEC finetune $FT --aa none --output-dir $T/fn > /dev/null 2>&1
check '[ -n "$(losses $T/fj2)" ] && [ "$(losses $T/fn)" != "$(losses $T/fj2)" ]' "finetune --color-jitter 0.4 --aa none: the same losses as without it"
$MAEC finetune $FT --mixup-mode rows --output-dir $T/fbad > $T/fbad.log 2>&1
rc=$?; check '[ $rc -eq 2 ] && grep -q "^maec: error: finetune: --mixup-mode rows: give batch, pair or elem" $T/fbad.log' \
      "finetune --mixup-mode rows: not a one-line error"
$MAEC finetune $FT --mixup-prob 1.5 --output-dir $T/fbad2 > $T/fbad2.log 2>&1
rc=$?; check '[ $rc -eq 2 ] && [ "$(wc -l < $T/fbad2.log)" -eq 1 ]' "finetune --mixup-prob 1.5: not a one-line error"

# linprobe --augment: features recomputed every batch; refused on given features
LP="--model $T/p/model.safetensors --data-path $D --epochs 2 --warmup-epochs 0 --batch-size 64 --seed 0 $J"
$MAEC linprobe $LP --output-dir $T/l0 > $T/l0.log 2>&1
$MAEC linprobe $LP --augment --output-dir $T/la > $T/la.log 2>&1
rc=$?; check '[ $rc -eq 0 ] && grep -q "recomputed each batch" $T/la.log && grep -q "\"final\":true" $T/la/metrics.jsonl' \
      "linprobe --augment failed: $(tail -2 $T/la.log)"
check 'grep -q "computed once, unaugmented" $T/l0.log && [ "$(losses $T/l0)" != "$(losses $T/la)" ]' \
      "linprobe --augment: the same losses as the features computed once"
$MAEC linprobe $LP --augment --output-dir $T/la2 > /dev/null 2>&1
check '[ "$(losses $T/la)" = "$(losses $T/la2)" ]' "linprobe --augment: the same seed gave different losses"
$MAEC embed --model $T/p/model.safetensors --data-path $D --split train --out $T/tr.npy $J > /dev/null 2>&1
$MAEC embed --model $T/p/model.safetensors --data-path $D --split test --out $T/te.npy $J > /dev/null 2>&1
$MAEC linprobe --train-features $T/tr.npy --test-features $T/te.npy --augment --output-dir $T/lbad > $T/lbad.log 2>&1
rc=$?; check '[ $rc -eq 2 ] && grep -q "^maec: error: linprobe: --augment" $T/lbad.log' "linprobe --augment --train-features: not a one-line error"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
