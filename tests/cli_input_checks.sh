#!/usr/bin/env bash
# Small input checks (issue 22): each mistake gets one clear line and exit 2
# (a flag) or 1 (a file), or a one-line warning when the run can go on:
# a warm-up longer than the schedule, --threads beyond the cores, the run
# header's thread count, a .pth that is no PyTorch file, a grid mask with a
# ratio it cannot honour, the default --data-path in --help.
cd "$(dirname "$0")/.." || exit 1
. tests/lib.sh
T=$(mktemp -d /tmp/maec_input_checks_XXXXXX)
trap 'rm -rf "$T"' EXIT
export OMP_WAIT_POLICY=PASSIVE

need_data
D=$T/data; mkdir -p $D
. scripts/idx.sh
cut_idx $DATA/train-images-idx3-ubyte.gz $D/train-images-idx3-ubyte 0 64 784 16
cut_idx $DATA/train-labels-idx1-ubyte.gz $D/train-labels-idx1-ubyte 0 64 1 8
TINY="--model test-tiny --data-path $D --batch-size 32 --mean 0.3 --std 0.35 --recon-images 0 --max-steps 1"

# expect EXIT TEXT command...: exit code EXIT and one line on stderr starting with TEXT
expect() {
    local want=$1 text=$2; shift 2
    out=$("$@" 2>&1 >/dev/null); rc=$?
    if [ $rc -eq $want ] && [[ "$out" == "$text"* ]] && [ $(echo "$out" | wc -l) -eq 1 ]; then ok; echo "  -> $out"
    else bad "$*: exit $rc (want $want), message '$out'"; fi
}

# warm-up longer than the schedule (the default warm-up of 40 epochs too)
expect 2 "maec: error: pretrain: --warmup-epochs 5 is longer than --epochs 2" \
    $MAEC pretrain $TINY --epochs 2 --warmup-epochs 5 --output-dir $T/w1
expect 2 "maec: error: pretrain: --warmup-epochs 40 is longer than --epochs 10" \
    $MAEC pretrain $TINY --epochs 10 --output-dir $T/w2
expect 2 "maec: error: finetune: --warmup-epochs 3 is longer than --epochs 2" \
    $MAEC finetune --data-path $D --output-dir $T/w4 --epochs 2 --warmup-epochs 3
expect 2 "maec: error: linprobe: --warmup-epochs 3 is longer than --epochs 2" \
    $MAEC linprobe --model test-tiny --data-path $D --output-dir $T/w5 --epochs 2 --warmup-epochs 3
check '[ ! -e $T/w1 ] && [ ! -e $T/w2 ] && [ ! -e $T/w4 ] && [ ! -e $T/w5 ]' "a refused run made its folder"
$MAEC pretrain $TINY --epochs 2 --warmup-epochs 2 --output-dir $T/w3 > /dev/null 2>&1
check '[ $? -eq 0 ]' "a warm-up as long as the schedule was refused"
# on resume, --epochs may not shrink below the warm-up either
expect 1 "maec: error: --resume: --epochs 1 is shorter than the run's warm-up of 2 epochs" \
    $MAEC pretrain --resume $T/w3 --epochs 1

# --threads beyond the cores: a one-line warning, and the run goes on
cores=$(getconf _NPROCESSORS_ONLN)
out=$($MAEC pretrain $TINY --epochs 1 --warmup-epochs 0 --threads $((cores * 8)) --output-dir $T/t1 2>&1 >$T/t1.log); rc=$?
check '[ $rc -eq 0 ] && [[ "$out" == "maec: warning: pretrain: --threads $((cores * 8)) is more than the $cores cores here"* ]] && [ $(echo "$out" | wc -l) -eq 1 ]' \
      "--threads $((cores * 8)) on $cores cores: exit $rc, '$out'"
out=$($MAEC pretrain $TINY --epochs 1 --warmup-epochs 0 --threads 1 --output-dir $T/t2 2>&1 >/dev/null)
check '[ -z "$out" ]' "--threads 1 gave '$out'"
# the run header names the threads in use, never "0 threads"
$MAEC pretrain $TINY --epochs 1 --warmup-epochs 0 --output-dir $T/t3 > $T/t3.log 2>&1
check 'grep -q "lr [0-9.e-]*, [1-9][0-9]* threads$" $T/t3.log' "run header without --threads: $(head -1 $T/t3.log)"
$MAEC pretrain $TINY --epochs 1 --warmup-epochs 0 --threads 1 --output-dir $T/t4 > $T/t4.log 2>&1
check 'grep -q "lr [0-9.e-]*, 1 threads$" $T/t4.log' "run header with --threads 1: $(head -1 $T/t4.log)"

# a .pth (or a pickle) that is no zip archive: said so, not a safetensors error
printf 'this is no checkpoint at all, only some text' > $T/plain.pth
expect 1 "maec: error: $T/plain.pth: not a PyTorch zip checkpoint (torch.save's format since 1.6) nor one in its legacy format" \
    $MAEC reconstruct --model $T/plain.pth --data-path $D
printf '\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}q\x00.' > $T/pickle.bin
expect 1 "maec: error: $T/pickle.bin: not a PyTorch zip checkpoint" $MAEC reconstruct --model $T/pickle.bin --data-path $D
printf 'x' > $T/short.safetensors
expect 1 "maec: error: $T/short.safetensors: too short for a safetensors file" $MAEC reconstruct --model $T/short.safetensors --data-path $D

# grid masking keeps one patch of every four: only a mask ratio of 0.75
expect 2 "maec: error: pretrain: mask strategy grid hides three patches of every four (mask ratio 0.75); it cannot honour a mask ratio of 0.5" \
    $MAEC pretrain $TINY --epochs 1 --warmup-epochs 0 --mask-strategy grid --mask-ratio 0.5 --output-dir $T/g1
$MAEC pretrain $TINY --epochs 1 --warmup-epochs 0 --mask-strategy grid --mask-ratio 0.75 --output-dir $T/g2 > /dev/null 2>&1
check '[ $? -eq 0 ]' "grid masking with its own ratio of 0.75 was refused"

# the data read when --data-path is not given, in --help
check '$MAEC pretrain --help | grep -q -- "--data-path.*(default: /usr/share/datasets/fashion-mnist)"' "pretrain --help does not name the default --data-path"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
