#!/usr/bin/env bash
# The cuda backend under the command, on a build with CUDA (make CUDA=1 on a
# GPU machine, or make CUDA=emu: the same source on the CPU emulator of
# tests/cuda_emu): every command that runs a model runs with --device cuda;
# pretraining's per-step losses are within 1e-4 (relative) of the cpu's;
# two runs on the device give the same bytes; a run stopped and resumed on
# it equals the unbroken run bit for bit; a run goes GPU -> CPU -> GPU
# through its checkpoints; a device that is not there and an out-of-memory
# are one line and a non-zero exit, with nothing written.
# A build without CUDA: --device cuda says so (exit 2). A CUDA build on a
# machine without a GPU: it says that (exit 2), and the rest is skipped.
cd "$(dirname "$0")/.." || exit 1
. tests/lib.sh
T=${KEEP_T:-$(mktemp -d /tmp/maec_cli_cuda_XXXXXX)}
[ -n "$KEEP_T" ] || trap 'rm -rf "$T"' EXIT
export OMP_WAIT_POLICY=PASSIVE

if ! $MAEC --version | grep -q "GPU: CUDA"; then
    out=$($MAEC knn --device cuda --model x 2>&1); rc=$?
    check '[ $rc -eq 2 ] && [ "$(echo "$out" | wc -l)" -eq 1 ] && echo "$out" | grep -q "built without CUDA"' \
        "--device cuda on a build without CUDA: exit $rc, $out"
    echo "  this build has no CUDA: --device cuda refused in one line (make CUDA=1 or CUDA=emu for the rest)"
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ]; exit
fi
out=$($MAEC knn --device cuda --help 2>&1); rc=$?
if [ $rc -ne 0 ] && [ -n "${MAEC_REQUIRE_GPU:-}" ]; then
    bad "MAEC_REQUIRE_GPU: no GPU to run on: $out"; echo "$pass passed, $fail failed"; exit 1
fi
if [ $rc -ne 0 ]; then
    check '[ $rc -eq 2 ] && [ "$(echo "$out" | wc -l)" -eq 1 ] && echo "$out" | grep -q "no CUDA GPU\|driver"' \
        "--device cuda without a GPU: exit $rc, $out"
    echo "  GPU tests skipped: no GPU present ($out)"
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ]; exit
fi
emu=0; $MAEC --version | grep -q "GPU: CUDA emulated" && emu=1

need_data
. scripts/idx.sh
cut_fmnist $DATA $T/d 128 64
J="--threads 2 --num-workers 1"
PRE="--model test-tiny --input-size 28 --data-path $T/d --epochs 2 --batch-size 32 --warmup-epochs 0.5 --seed 3 \
--log-every 1 --recon-every 0 $J"

# 1. pretraining on the device against the cpu: 8 steps
$MAEC pretrain $PRE --device cpu --output-dir $T/cpu > $T/cpu.log 2>&1
check '[ $? -eq 0 ]' "cpu pretrain failed: $(tail -2 $T/cpu.log)"
$MAEC pretrain $PRE --device cuda --output-dir $T/gpu > $T/gpu.log 2>&1
check '[ $? -eq 0 ]' "cuda pretrain failed: $(tail -2 $T/gpu.log)"
n=$(losses $T/gpu | wc -l)
w=$(worst $T/cpu $T/gpu)
check '[ "$n" -eq 8 ] && awk "BEGIN {exit !($w <= 1e-4)}"' "cuda's $n losses differ from the cpu's by $w (relative)"
check 'grep -q "\"device\":.*cuda:0" $T/gpu/machine.json' "machine.json does not name the GPU"
echo "  pretrain on cuda: $n losses within $w of the cpu's"

# 2. the same run again on the device: the same bytes
$MAEC pretrain $PRE --device cuda --output-dir $T/gpu2 > /dev/null 2>&1
check 'cmp -s $T/gpu/model.safetensors $T/gpu2/model.safetensors' "two cuda runs differ"

# 3. stopped at step 3 and resumed on the device: the unbroken run, bit for bit
$MAEC pretrain $PRE --device cuda --output-dir $T/stop --max-steps 3 > /dev/null 2>&1
$MAEC pretrain --resume $T/stop --device cuda --max-steps 8 > $T/stop.log 2>&1
check '[ $? -eq 0 ] && [ "$(losses $T/gpu)" = "$(losses $T/stop)" ] && cmp -s $T/gpu/model.safetensors $T/stop/model.safetensors' \
    "cuda stop + resume differs from the unbroken cuda run: $(tail -2 $T/stop.log)"

# 4. GPU -> CPU -> GPU: steps 1-3 on cuda, 4-5 on the cpu, 6-8 on cuda
$MAEC pretrain $PRE --device cuda --output-dir $T/mix --max-steps 3 > /dev/null 2>&1
$MAEC pretrain --resume $T/mix --device cpu --max-steps 5 > $T/mix1.log 2>&1
r1=$?
$MAEC pretrain --resume $T/mix --device cuda --max-steps 8 > $T/mix2.log 2>&1
r2=$?
w=$(worst $T/gpu $T/mix)
check '[ $r1 -eq 0 ] && [ $r2 -eq 0 ] && [ "$(losses $T/mix | wc -l)" -eq 8 ] && awk "BEGIN {exit !($w <= 1e-4)}"' \
    "GPU -> CPU -> GPU: exits $r1 $r2, $(losses $T/mix | wc -l) losses, $w from the unbroken run: $(tail -1 $T/mix2.log)"
echo "  cuda: twice the same bytes; stop + resume = unbroken; GPU -> CPU -> GPU within $w"

# 5. the other commands with --device cuda, against the cpu where they compute
M=$T/gpu/model.safetensors
FT="--model $M --data-path $T/d --epochs 1 --batch-size 16 --warmup-epochs 0.5 --seed 3 --log-every 1 $J"
$MAEC finetune $FT --device cpu --output-dir $T/ftc > $T/ftc.log 2>&1
$MAEC finetune $FT --device cuda --output-dir $T/ftg > $T/ftg.log 2>&1
check '[ $? -eq 0 ]' "cuda finetune failed: $(tail -2 $T/ftg.log)"
w=$(worst $T/ftc $T/ftg)
n=$(losses $T/ftg | wc -l)
check '[ "$n" -ge 4 ] && [ "$n" -eq "$(losses $T/ftc | wc -l)" ] && awk "BEGIN {exit !($w <= 1e-4)}"' \
    "cuda finetune's $n losses differ from the cpu's by $w"
$MAEC finetune $FT --device cuda --output-dir $T/ftm --mixup 0.8 --cutmix 1 --drop-path 0.2 > $T/ftm.log 2>&1
check '[ $? -eq 0 ]' "cuda finetune with mixup, CutMix, drop path failed: $(tail -2 $T/ftm.log)"
$MAEC linprobe --model $M --data-path $T/d --output-dir $T/lp --epochs 2 --warmup-epochs 1 --batch-size 32 --seed 3 \
    --device cuda $J > $T/lp.log 2>&1
check '[ $? -eq 0 ]' "cuda linprobe failed: $(tail -2 $T/lp.log)"
kc=$($MAEC knn --model $M --data-path $T/d --k 10 --device cpu $J 2>&1 | grep -o '"knn_top1":[0-9.]*')
kg=$($MAEC knn --model $M --data-path $T/d --k 10 --device cuda $J 2>&1 | grep -o '"knn_top1":[0-9.]*')
check '[ -n "$kg" ] && [ "$kc" = "$kg" ]' "knn on cuda '$kg', on the cpu '$kc'"
$MAEC embed --model $M --data-path $T/d --out $T/eg.npy --device cuda $J > $T/eg.log 2>&1
check '[ $? -eq 0 ] && [ -s $T/eg.npy ]' "cuda embed failed: $(tail -2 $T/eg.log)"
$MAEC reconstruct --model $M --data-path $T/d --num-images 4 --out $T/rec.png --device cuda > $T/rec.log 2>&1
check '[ $? -eq 0 ] && [ -s $T/rec.png ]' "cuda reconstruct failed: $(tail -2 $T/rec.log)"
$MAEC predict --model $T/ftg/model.safetensors --data-path $T/d --out $T/pg.npy --device cuda $J > $T/pg.log 2>&1
check '[ $? -eq 0 ] && [ -s $T/pg.npy ]' "cuda predict failed: $(tail -2 $T/pg.log)"
echo "  finetune within $w of the cpu; linprobe, embed, reconstruct, predict run; knn $kg as on the cpu"

# 6. errors: a device that is not there; out of memory (the emulator's limit)
out=$($MAEC pretrain $PRE --device cuda:99 --output-dir $T/no 2>&1); rc=$?
check '[ $rc -eq 2 ] && [ "$(echo "$out" | wc -l)" -eq 1 ] && echo "$out" | grep -q "no GPU cuda:99" && [ ! -e $T/no ]' \
    "--device cuda:99: exit $rc, $out"
out=$($MAEC pretrain $PRE --device gpu --output-dir $T/no 2>&1); rc=$?
check '[ $rc -eq 2 ] && echo "$out" | grep -q "not a device"' "--device gpu: exit $rc, $out"
if [ "$emu" = 1 ]; then
    out=$(MAEC_CUDA_EMU_LIMIT=75000000 $MAEC pretrain ${PRE/--batch-size 32/--batch-size 128} --device cuda --output-dir $T/oom 2>&1); rc=$?
    check '[ $rc -eq 1 ] && echo "$out" | grep -q "out of memory for activations.*a batch of about [0-9]* fits" && [ ! -e $T/oom/model.safetensors ] && ! ls $T/oom/checkpoint-* > /dev/null 2>&1' \
        "out of memory on the device: exit $rc, $out"
    echo "  emulated: $(echo "$out" | tail -1)"
fi

# 7. data parallel on the device (a build with MPI too; on the emulator, or
# where MAEC_GPUS says there are 2 GPUs): 2 processes of batch 16 train as
# 1 of 32, their gradients summed through NCCL on GPUs, through the host on
# the emulator
if $MAEC --version | grep -q "data parallel: MPI" && command -v mpirun > /dev/null &&
    { [ "$emu" = 1 ] || [ "${MAEC_GPUS:-1}" -ge 2 ]; }; then
    P1=${PRE/--threads 2/--threads 1}
    for np in 1 2; do
        OMP_NUM_THREADS=1 mpirun --allow-run-as-root --oversubscribe -np $np $MAEC pretrain \
            ${P1/--batch-size 32/--batch-size $((32 / np))} --device cuda --output-dir $T/dp$np > $T/dp$np.log 2>&1
        check '[ $? -eq 0 ]' "cuda pretrain -np $np failed: $(tail -3 $T/dp$np.log)"
    done
    w=$(worst $T/dp1 $T/dp2)
    check '[ "$(losses $T/dp2 | wc -l)" -eq 8 ] && awk "BEGIN {exit !($w <= 1e-5)}"' \
        "cuda: 2 processes' losses differ from one's by $w"
    echo "  cuda, 2 processes of batch 16 against 1 of 32: $(losses $T/dp2 | wc -l) losses within $w"
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
