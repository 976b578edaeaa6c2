#!/usr/bin/env bash
# The backends under the whole command: pretrain (k-NN monitor), finetune
# (mixup, CutMix, drop path), linprobe, reconstruct and embed on the ref
# backend and on guard (ref's ops on memory the host cannot touch: any
# access of the model code to backend memory other than through upload and
# download crashes it) give the same files, byte for byte; cpu's runs match
# ref's to rounding (their losses within 1e-4); an unknown MAEC_BACKEND is
# one line and exit 2.
cd "$(dirname "$0")/.." || exit 1
. tests/lib.sh
T=${KEEP_T:-$(mktemp -d /tmp/maec_cli_backends_XXXXXX)}
[ -n "$KEEP_T" ] || trap 'rm -rf "$T"' EXIT
export OMP_WAIT_POLICY=PASSIVE
need_data
. scripts/idx.sh
cut_fmnist $DATA $T/d 128 64
J="--threads 2 --num-workers 1"
strip() { sed -E 's/,?"(images_per_s|data_wait|elapsed_s|knn_s|eval_s|feature_s)":[0-9.e+-]*//g' "$1"; }
for b in ref guard cpu; do
    MAEC_BACKEND=$b $MAEC pretrain --model test-tiny --input-size 28 --data-path $T/d --output-dir $T/$b-pre --epochs 1 \
        --batch-size 32 --warmup-epochs 0.5 --seed 3 --log-every 1 --knn-every 1 $J > $T/$b-pre.log 2>&1
    check '[ $? -eq 0 ]' "$b: pretrain failed: $(tail -2 $T/$b-pre.log)"
    MAEC_BACKEND=$b $MAEC finetune --model $T/$b-pre/model.safetensors --data-path $T/d --output-dir $T/$b-ft --epochs 1 \
        --batch-size 16 --warmup-epochs 0.5 --seed 3 --log-every 2 --mixup 0.8 --cutmix 1 --drop-path 0.2 $J > $T/$b-ft.log 2>&1
    check '[ $? -eq 0 ]' "$b: finetune failed: $(tail -2 $T/$b-ft.log)"
    MAEC_BACKEND=$b $MAEC linprobe --model $T/$b-pre/model.safetensors --data-path $T/d --output-dir $T/$b-lp --epochs 2 \
        --warmup-epochs 1 --batch-size 32 --seed 3 $J > $T/$b-lp.log 2>&1
    check '[ $? -eq 0 ]' "$b: linprobe failed: $(tail -2 $T/$b-lp.log)"
    MAEC_BACKEND=$b $MAEC reconstruct --model $T/$b-pre/model.safetensors --data-path $T/d --num-images 4 \
        --out $T/$b-rec.png > $T/$b-rec.log 2>&1
    check '[ $? -eq 0 ]' "$b: reconstruct failed: $(tail -2 $T/$b-rec.log)"
    MAEC_BACKEND=$b $MAEC embed --model $T/$b-ft/model.safetensors --data-path $T/d --out $T/$b-emb.npy $J > $T/$b-emb.log 2>&1
    check '[ $? -eq 0 ]' "$b: embed failed: $(tail -2 $T/$b-emb.log)"
done
for r in pre ft lp; do
    check 'diff <(strip $T/ref-$r/metrics.jsonl) <(strip $T/guard-$r/metrics.jsonl) > /dev/null' "$r: guard's metrics differ from ref's"
    check 'cmp -s $T/ref-$r/model.safetensors $T/guard-$r/model.safetensors' "$r: guard's model differs from ref's"
done
check 'cmp -s $T/ref-rec.png $T/guard-rec.png' "reconstruct: guard's picture differs from ref's"
check 'cmp -s $T/ref-emb.npy $T/guard-emb.npy' "embed: guard's features differ from ref's"
# cpu against ref: the same run to rounding
losses() { grep -o '"loss":[^,]*' "$1" | cut -d: -f2; }
worst=$(paste <(losses $T/ref-pre/metrics.jsonl) <(losses $T/cpu-pre/metrics.jsonl) |
    awk '{d = $1 - $2; if (d < 0) d = -d; r = d / ($1 > 0 ? $1 : 1); if (r > w) w = r} END {printf "%.2e", w + 0}')
n=$(losses $T/cpu-pre/metrics.jsonl | wc -l)
check '[ "$n" -ge 4 ] && awk "BEGIN {exit !($worst <= 1e-4)}"' "cpu's pretraining losses differ from ref's by $worst (relative)"
echo "  ref = guard byte for byte (pretrain, finetune, linprobe, reconstruct, embed); cpu's $n losses within $worst of ref's"
out=$(MAEC_BACKEND=cuda9 $MAEC info x 2>&1); rc=$?
check '[ $rc -eq 2 ] && [ "$out" = "maec: error: MAEC_BACKEND: no backend '"'"'cuda9'"'"' in this build (cpu, ref, guard)" ]' \
    "unknown backend: exit $rc, $out"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
