#!/usr/bin/env bash
# Data-parallel training over Open MPI (make MPI=1; MAEC_BUILD names that
# build, e.g. build/mpi). Without MPI in the build, or without mpirun, says
# so and checks only that the command runs alone.
#  - pretrain: 1 process of batch 24, 2 of 12 and 3 of 8 train alike (each
#    image's crop, flip and mask drawn from (seed, epoch, its position in
#    the epoch)): every logged loss within 1e-5 (relative) of one process's;
#    only rank 0 writes files.
#  - finetune with drop path (drawn per image too), without mixup (which
#    pairs images within a process, as the official code): 1 of 16 and 2 of 8 alike.
#  - a rank killed with SIGKILL ends the job within seconds, non-zero, and
#    the last checkpoint still loads: the run resumes from it.
#  - a run of 2 processes stopped at step 7 and resumed by 3 (each with the
#    batch that keeps a step's images) logs one process's losses; a number
#    of processes that cannot share the batch, and commands that run as one
#    process, are refused in one line.
cd "$(dirname "$0")/.." || exit 1
. tests/lib.sh
T=${KEEP_T:-$(mktemp -d /tmp/maec_cli_mpi_XXXXXX)}
[ -n "$KEEP_T" ] || trap 'rm -rf "$T"' EXIT
need_data
if ! $MAEC --version | grep -q "data parallel: MPI" || ! command -v mpirun > /dev/null; then
    echo "  ($MAEC is built without MPI, or there is no mpirun: data-parallel checks skipped; make MPI=1 builds it)"
    check '$MAEC --version | grep -q "data parallel"' "maec --version does not say whether it has MPI"
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ]; exit
fi
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
MPIRUN="mpirun --allow-run-as-root --oversubscribe"
. scripts/idx.sh
cut_fmnist $DATA $T/d 240 60
J="--threads 1 --num-workers 1"

for np in 1 2 3; do
    $MPIRUN -np $np $MAEC pretrain --model test-tiny --input-size 28 --data-path $T/d --output-dir $T/pre$np --epochs 2 \
        --batch-size $((24 / np)) --warmup-epochs 1 --seed 3 --log-every 1 --knn-every 1 $J > $T/pre$np.log 2>&1
    check '[ $? -eq 0 ]' "pretrain -np $np failed: $(tail -3 $T/pre$np.log)"
done
for np in 2 3; do
    w=$(worst $T/pre1 $T/pre$np)
    check 'awk "BEGIN {exit !($w <= 1e-5)}"' "pretrain: $np processes' losses differ from one's by $w"
    echo "  pretrain, $np processes of batch $((24 / np)) against 1 of 24: $(losses $T/pre$np | wc -l) losses within $w"
done
check 'grep -q "data parallel: 3 processes, 8 images each per micro-batch: an effective batch of 24" $T/pre3.log' \
    "the log does not state the effective batch"
check '[ "$(grep -c knn_top1 $T/pre3/metrics.jsonl)" -eq 2 ] && [ "$(grep -o "knn_top1.:[0-9.]*" $T/pre1/metrics.jsonl | tail -1)" = "$(grep -o "knn_top1.:[0-9.]*" $T/pre3/metrics.jsonl | tail -1)" ]' \
    "the k-NN monitor of 3 processes differs from one's"
check '[ "$(ls $T/pre3 | grep -c checkpoint-)" -ge 1 ] && [ -s $T/pre3/model.safetensors ] && [ "$(grep -c "^{" $T/pre3/metrics.jsonl)" -eq "$(grep -c "^{" $T/pre1/metrics.jsonl)" ]' \
    "3 processes wrote other files than one: $(ls $T/pre3)"

for np in 1 2; do
    $MPIRUN -np $np $MAEC finetune --model $T/pre1/model.safetensors --data-path $T/d --output-dir $T/ft$np --epochs 1 \
        --batch-size $((16 / np)) --warmup-epochs 0.5 --seed 3 --log-every 1 --drop-path 0.2 --mixup 0 --cutmix 0 $J \
        > $T/ft$np.log 2>&1
    check '[ $? -eq 0 ]' "finetune -np $np failed: $(tail -3 $T/ft$np.log)"
done
w=$(worst $T/ft1 $T/ft2)
check 'awk "BEGIN {exit !($w <= 1e-5)}"' "finetune: 2 processes' losses differ from one's by $w"
echo "  finetune, 2 processes of batch 8 against 1 of 16: $(losses $T/ft2 | wc -l) losses within $w"
# fine-tuning on 2 processes for 6 steps, then on 1 to the end: one process's losses
$MPIRUN -np 2 $MAEC finetune --model $T/pre1/model.safetensors --data-path $T/d --output-dir $T/ftr --epochs 1 \
    --batch-size 8 --warmup-epochs 0.5 --seed 3 --log-every 1 --drop-path 0.2 --mixup 0 --cutmix 0 --max-steps 6 $J \
    > $T/ftr.log 2>&1
check '[ $? -eq 0 ]' "finetune -np 2 --max-steps 6 failed: $(tail -3 $T/ftr.log)"
$MAEC finetune --resume $T/ftr --max-steps 15 $J > $T/ftr2.log 2>&1
check '[ $? -eq 0 ] && grep -q "resuming a run of 2 processes as 1: --batch-size 16 each" $T/ftr2.log' \
    "finetune resumed by 1 process: $(tail -2 $T/ftr2.log)"
w=$(worst $T/ft1 $T/ftr)
check 'awk "BEGIN {exit !($w <= 1e-5)}"' "finetune, 2 processes then 1: losses differ from one process's by $w"
echo "  finetune, 2 processes to step 6, then 1: $(losses $T/ftr | wc -l) losses within $w of one process's"

# a rank killed: the job ends within seconds, the last checkpoint loads and resumes
$MPIRUN -np 2 $MAEC pretrain --model test-tiny --input-size 28 --data-path $T/d --output-dir $T/kill --epochs 400 \
    --batch-size 12 --warmup-epochs 1 --seed 3 --save-every 3 $J > $T/kill.log 2>&1 &
job=$!
for i in $(seq 300); do ls $T/kill/checkpoint-*.safetensors > /dev/null 2>&1 && break; sleep 0.1; done
victim=$(pgrep -f "maec pretrain.*$T/kill" | tail -1)
t0=$(date +%s.%N)
kill -9 $victim
for i in $(seq 200); do kill -0 $job 2> /dev/null || break; sleep 0.1; done
wait $job; rc=$?
took=$(awk -v a="$(date +%s.%N)" -v b="$t0" "BEGIN {printf \"%.1f\", a - b}")
check '[ $rc -ne 0 ] && awk "BEGIN {exit !($took < 15)}"' "after kill -9 of a rank: job exit $rc after ${took}s"
echo "  a rank killed with SIGKILL: the job ended in ${took}s with status $rc"
$MPIRUN -np 2 $MAEC pretrain --resume $T/kill --max-steps 12 $J > $T/kill2.log 2>&1
check '[ $? -eq 0 ] && grep -q "resuming from" $T/kill2.log' "resume after the kill failed: $(tail -3 $T/kill2.log)"
# another number of processes resumes a run with the batch that keeps a
# step's images: 2 processes stopped at step 7, 3 go on, and the losses are
# those of one process throughout
MAEC_FAULT_SIGINT_AT_STEP=7 $MPIRUN -np 2 $MAEC pretrain --model test-tiny --input-size 28 --data-path $T/d \
    --output-dir $T/re --epochs 2 --batch-size 12 --warmup-epochs 1 --seed 3 --log-every 1 $J > $T/re.log 2>&1
rc=$?
check '[ $rc -ne 0 ] && ls $T/re/checkpoint-00000007.safetensors > /dev/null' "the stop at step 7: exit $rc, $(ls $T/re)"
$MPIRUN -np 3 $MAEC pretrain --resume $T/re $J > $T/re2.log 2>&1
check '[ $? -eq 0 ] && grep -q "resuming a run of 2 processes as 3: --batch-size 8 each keeps its batches of 24 images" $T/re2.log' \
    "resume of 2 processes by 3: $(tail -2 $T/re2.log)"
w=$(worst $T/pre1 $T/re)
check 'awk "BEGIN {exit !($w <= 1e-5)}"' "2 processes, stopped, then 3: losses differ from one process's by $w"
echo "  2 processes to step 7, then 3 from the checkpoint: $(losses $T/re | wc -l) losses within $w of one process's"
out=$($MPIRUN -np 5 $MAEC pretrain --resume $T/kill --max-steps 15 $J 2>&1); rc=$?
check '[ $rc -ne 0 ] && echo "$out" | grep -q "which 5 processes cannot share equally"' \
    "resume by 5 processes of batches of 24: exit $rc, $(echo "$out" | grep error | head -1)"
# the MPI build started without mpirun: one process on its own
$MAEC pretrain --model test-tiny --input-size 28 --data-path $T/d --output-dir $T/alone --epochs 2 --batch-size 24 \
    --warmup-epochs 1 --seed 3 --log-every 1 --max-steps 3 $J > $T/alone.log 2>&1
check '[ $? -eq 0 ] && ! grep -q "data parallel:" $T/alone.log && [ "$(losses $T/alone | head -3)" = "$(losses $T/pre1 | head -3)" ]' \
    "the MPI build without mpirun: $(tail -2 $T/alone.log)"
out=$($MPIRUN -np 2 $MAEC knn --model $T/pre1/model.safetensors --data-path $T/d 2>&1); rc=$?
check '[ $rc -ne 0 ] && echo "$out" | grep -q "knn runs as one process"' "knn under mpirun: exit $rc"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
