#!/usr/bin/env bash
# Does a refactoring change results? The command built at an older commit
# REV (in a throwaway worktree) and the one built here run the same small
# pretrain -> finetune (accumulation, mixup, CutMix, drop path, clipping)
# -> linprobe (and linprobe --augment) on a cut of Fashion-MNIST; their
# metrics.jsonl (timing fields left out) and model files are compared, and
# the script fails on any difference.
#   bash scripts/same_results.sh REV        (needs dataset-fashion-mnist)
set -u
cd "$(dirname "$0")/.."
REV=${1:?usage: scripts/same_results.sh REV}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
. scripts/idx.sh
T=$(mktemp -d /tmp/maec_same_XXXXXX)
trap 'git worktree remove --force "$T/old" > /dev/null 2>&1; rm -rf "$T"' EXIT
git worktree add -q --detach "$T/old" "$REV" || exit 1
make -s -C "$T/old" -j2 build/maec > /dev/null 2>&1 || { echo "cannot build $REV"; exit 1; }
make -s -j2 build/maec > /dev/null || exit 1
cut_fmnist "$DATA" "$T/d" 512 256
export OMP_NUM_THREADS=2
for v in old new; do
    M=./build/maec; [ $v = old ] && M=$T/old/build/maec
    $M pretrain --model test-tiny --input-size 28 --data-path $T/d --output-dir $T/$v-pre --epochs 2 --batch-size 64 \
        --accum-iter 2 --warmup-epochs 1 --seed 3 --log-every 2 --knn-every 1 > $T/$v-pre.log 2>&1 || echo "$v pretrain failed"
    $M finetune --model $T/$v-pre/model.safetensors --data-path $T/d --output-dir $T/$v-ft --epochs 2 --batch-size 32 \
        --accum-iter 2 --warmup-epochs 1 --seed 3 --log-every 3 --mixup 0.8 --cutmix 1 --drop-path 0.1 --clip-grad 1 \
        > $T/$v-ft.log 2>&1 || echo "$v finetune failed"
    $M linprobe --model $T/$v-pre/model.safetensors --data-path $T/d --output-dir $T/$v-lp --epochs 3 --warmup-epochs 1 \
        --batch-size 64 --seed 3 > $T/$v-lp.log 2>&1 || echo "$v linprobe failed"
    $M linprobe --model $T/$v-pre/model.safetensors --data-path $T/d --output-dir $T/$v-lpa --epochs 2 --warmup-epochs 1 \
        --batch-size 64 --seed 3 --augment > $T/$v-lpa.log 2>&1 || echo "$v linprobe --augment failed"
done
strip() { sed -E 's/,?"(images_per_s|data_wait|elapsed_s|knn_s|eval_s|feature_s)":[0-9.e+-]*//g' "$1"; }
bad=0
echo "maec $(git rev-parse --short HEAD) (+ working tree) against $(git -C "$T/old" rev-parse --short HEAD)"
for r in pre ft lp lpa; do
    if [ -s $T/new-$r/metrics.jsonl ] && diff <(strip $T/old-$r/metrics.jsonl) <(strip $T/new-$r/metrics.jsonl) > /dev/null; then
        echo "$r: metrics.jsonl the same ($(wc -l < $T/new-$r/metrics.jsonl) records)"
    else
        echo "$r: metrics.jsonl differs"; diff <(strip $T/old-$r/metrics.jsonl) <(strip $T/new-$r/metrics.jsonl) | head -6; bad=1
    fi
    if cmp -s $T/old-$r/model.safetensors $T/new-$r/model.safetensors; then echo "$r: model.safetensors the same, byte for byte"
    else echo "$r: model.safetensors differs"; bad=1; fi
done
exit $bad
