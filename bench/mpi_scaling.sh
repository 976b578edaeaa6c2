#!/usr/bin/env bash
# Data parallel on this machine: `maec pretrain` (config A: fmnist-tiny,
# global batch 256, Fashion-MNIST) as 1 process x T threads against P
# processes x T/P threads (mpirun), the gradients all-reduced in buckets as
# the backward pass makes them and (MAEC_ALLREDUCE=whole) in one call after
# it, alternated round by round; images/s of the last logged window (steps
# 5-12, the data loader included), medians.
#   bash bench/mpi_scaling.sh [ROUNDS] [THREADS] [PROCS...]   (default: 3 rounds, 2 threads, 2 processes)
# PRESET and GLOBAL (batch) choose another model: PRESET=vit-base-16 GLOBAL=8
# is config C (Fashion-MNIST resized to 224 x 224 x 3).
# Needs the MPI build: make MPI=1 BUILD=build/mpi build/mpi/maec
set -u
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}; T=${2:-2}; shift 2 2> /dev/null; PROCS=${*:-2}
M=build/mpi/maec; DATA=${DATA:-/usr/share/datasets/fashion-mnist}
PRESET=${PRESET:-fmnist-tiny}; GLOBAL=${GLOBAL:-256}
[ -x $M ] || { echo "no $M: make MPI=1 BUILD=build/mpi build/mpi/maec"; exit 1; }
O=$(mktemp -d /tmp/maec_mpi_scaling_XXXXXX); trap 'rm -rf $O' EXIT
ips() { grep -o '"images_per_s":[0-9.]*' "$1/metrics.jsonl" | tail -1 | cut -d: -f2; }
run() { # PROCS [whole] -> images/s
    local p=$1 th=$((T / $1)) b=$((GLOBAL / $1)) d=$O/run mode=${2:-buckets}
    rm -rf $d
    MAEC_ALLREDUCE=$mode OMP_NUM_THREADS=$th OMP_WAIT_POLICY=PASSIVE mpirun --allow-run-as-root --oversubscribe --bind-to none -np $p \
        $M pretrain --model $PRESET --data-path $DATA --output-dir $d --batch-size $b --max-steps 12 --log-every 4 \
        --threads $th --num-workers 1 --recon-every 0 --seed 0 > $O/log 2>&1 || { echo "failed: $(tail -2 $O/log)" >&2; echo 0; return; }
    ips $d
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
echo "maec $(git rev-parse --short HEAD), $PRESET, global batch $GLOBAL, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, $ROUNDS rounds"
: > $O/r1; for p in $PROCS; do : > $O/r$p; : > $O/w$p; done
for r in $(seq $ROUNDS); do
    run 1 >> $O/r1
    for p in $PROCS; do run $p >> $O/r$p; run $p whole >> $O/w$p; done
done
one=$(median < $O/r1)
echo "1 process x $T threads: $one img/s"
for p in $PROCS; do
    v=$(median < $O/r$p); wv=$(median < $O/w$p)
    awk -v p=$p -v t=$((T / p)) -v v=$v -v w=$wv -v o=$one 'BEGIN {
        printf "%d processes x %d thread(s), buckets during the backward pass: %.1f img/s, %.3f x one process\n", p, t, v, v / o
        printf "%d processes x %d thread(s), one all-reduce after it: %.1f img/s, %.3f x one process; buckets %.3f x that\n", p, t, w, w / o, v / w }'
done
