#!/usr/bin/env bash
# maec's pretraining step against PyTorch's on this machine, alternated in
# one run: images/s, the ratio, GFLOP/s and its share of the sgemm rate
# measured in the same run (before every round of a configuration; the
# share is taken against the highest of those), and peak memory.
#   bash bench/run.sh [ROUNDS] [CONFIGS...]     (default: 2 rounds, A B C)
# A: fmnist-tiny batch 256; B: cifar-tiny batch 128; C: vit-base-16 batch 8.
# PyTorch runs at the same thread count in each of three settings of
# OpenMP's waiting threads (passive, active, libgomp's default) every round,
# and its best counts: which one is fastest differs between machines
# (docs/PERF.md).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}; shift || true
CONFIGS=${*:-A B C}
THREADS=${THREADS:-2}
PY=${PY:-/usr/bin/python3}
make -s build/bench_step
declare -A PRESET=([A]=fmnist-tiny [B]=cifar-tiny [C]=vit-base-16)
declare -A BATCH=([A]=256 [B]=128 [C]=8)
declare -A STEPS=([A]=6 [B]=6 [C]=3)
ours() { OMP_NUM_THREADS=$THREADS ./build/bench_step step "$@"; }
TORCH_POLICIES="PASSIVE ACTIVE default"
torch() { # POLICY PRESET BATCH STEPS
    local pol=$1; shift
    if [ "$pol" = default ]; then
        OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS $PY bench/torch_step.py "$@"
    else
        OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS OMP_WAIT_POLICY=$pol OPENBLAS_THREAD_TIMEOUT=4 $PY bench/torch_step.py "$@"
    fi
}
field() { $PY -c "import json,sys; print(json.loads(sys.argv[1])['$2'])" "$1"; }
# OpenBLAS's kernels for this CPU, for all three (ours, the sgemm rate and
# PyTorch, which calls the same OpenBLAS): where OpenBLAS does not know the
# CPU and falls back to its generic kernels, the fitting ones by
# OPENBLAS_CORETYPE, as the maec command sets it (maec_blas_reexec)
# A OPENBLAS_CORETYPE set in the environment is left out unless
# KEEP_CORETYPE=1: kernels slower than OpenBLAS's own choice would lower the
# sgemm rate that the shares are taken against (this project's VMs have
# come with OPENBLAS_CORETYPE=Haswell set on an AVX-512 CPU: docs/PERF.md).
dropped=""
if [ -n "${OPENBLAS_CORETYPE:-}" ] && [ "${KEEP_CORETYPE:-0}" != 1 ]; then
    dropped=$OPENBLAS_CORETYPE
    unset OPENBLAS_CORETYPE
fi
advice=$(field "$(./build/bench_step blas)" advice)
[ "$advice" = None ] || export OPENBLAS_CORETYPE=$advice
core=$(field "$(./build/bench_step blas)" core)
echo "machine: $(lscpu | sed -n 's/^Model name: *//p') (family $(lscpu | sed -n 's/^CPU family: *//p'), model $(lscpu | sed -n 's/^Model: *//p')), $(nproc) cores; threads $THREADS; $(date -u +%Y-%m-%d)"
[ -z "$dropped" ] || echo "OPENBLAS_CORETYPE=$dropped from the environment left out (KEEP_CORETYPE=1 keeps it)"
echo "OpenBLAS $(pkg-config --modversion openblas 2>/dev/null || echo '?') on its $core kernels${OPENBLAS_CORETYPE:+ (OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE)}; PyTorch $($PY -c 'import torch; print(torch.__version__)')"
sgemm() { field "$(OMP_NUM_THREADS=$THREADS ./build/bench_step sgemm 2048 10)" sgemm_gflops; }
echo
echo "| config | maec img/s | PyTorch img/s (its best waiting) | ratio | maec GFLOP/s | sgemm GFLOP/s | share of sgemm | maec peak MiB | PyTorch peak MiB |"
echo "|---|---|---|---|---|---|---|---|---|"
for c in $CONFIGS; do
    p=${PRESET[$c]} b=${BATCH[$c]} s=${STEPS[$c]}
    best_o=0; best_t=0; gf=0; mo=0; mt=0; SG=0; pt=""
    for r in $(seq "$ROUNDS"); do
        sg=$(sgemm)
        if $PY -c "import sys; sys.exit(not $sg > $SG)"; then SG=$sg; fi
        o=$(ours "$p" "$b" "$s")
        io=$(field "$o" images_per_s)
        if $PY -c "import sys; sys.exit(not $io > $best_o)"; then best_o=$io; gf=$(field "$o" gflops); mo=$(field "$o" peak_mib); fi
        for pol in $TORCH_POLICIES; do
            t=$(torch "$pol" "$p" "$b" "$s")
            it=$(field "$t" images_per_s)
            if $PY -c "import sys; sys.exit(not $it > $best_t)"; then best_t=$it; mt=$(field "$t" peak_mib); pt=${pol,,}; fi
        done
    done
    ratio=$($PY -c "print(f'{$best_o/$best_t:.2f}')")
    share=$($PY -c "print(f'{100*$gf/$SG:.0f}%')")
    echo "| $c ($p, batch $b) | $best_o | $best_t ($pt) | $ratio | $gf | $SG | $share | $mo | $mt |"
done
echo
echo "(best of $ROUNDS alternated rounds each, PyTorch's of its three waiting settings in each round;"
echo " sgemm 2048^3 with OpenBLAS at $THREADS threads before each round;"
echo " the share is against the highest sgemm rate of the configuration's rounds)"
