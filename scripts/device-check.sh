#!/usr/bin/env bash
# The checks that need a GPU, as one run on a lent GPU machine (one NVIDIA
# H200; its image has the CUDA toolkit and PyTorch, no Debian libraries, no
# network), in under 8 minutes, every result under $OUT:
#   $OUT/device_check.txt   the log of every step below
#   $OUT/bench_gpu.txt      bench/gpu.sh's table (maec against PyTorch)
# Steps, most important first, each under its own time limit, cut short
# so that the whole run ends within DEADLINE seconds (default 470):
#   1. the machine: date, GPU, driver, nvcc, commit
#   2. test_backend_ops: every op on cuda against ref (TF32 off)
#   3. test_core on the cuda backend: the PyTorch fixtures through the whole
#      model and `maec grad` (MAEC_BACKEND=cuda)
#   4. tests/cli_cuda.sh: every command with --device cuda, losses against
#      the cpu, same bytes twice, stop + resume bit for bit, GPU -> CPU -> GPU
#   5. 50 steps of config A (fmnist-tiny, batch 256) on cpu and on cuda:
#      per-step losses within 1e-4 (relative)
#   6. bench/gpu.sh: img/s and device memory, maec and PyTorch eager, fp32
#      and TF32 (ViT-B/16 b256, ViT-L/16 b128, fmnist-tiny b4096)
#   7. compute-sanitizer memcheck on the op test, racecheck on the kernels
#      with shared memory (the column sums and reductions)
# Prepare on the development machine first (bash scripts/device-prep.sh),
# which builds build/cuda and fetches .deps and .devdata, and prints the
# run call (with its carry list).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-/tmp/maec-device}
mkdir -p "$OUT"
LOG=$OUT/device_check.txt
DEADLINE=${DEADLINE:-470}
START=$(date +%s)
exec > >(tee -a "$LOG") 2>&1

say() { echo "$*"; }
elapsed() { echo $(($(date +%s) - START)); }
# step NAME LIMIT CMD...: the command's output into the log, with its exit
step() {
    local name=$1 limit=$2; shift 2
    local left=$((DEADLINE - $(elapsed)))
    if [ "$left" -lt 15 ]; then say "== $name: not run (${DEADLINE}s nearly spent)"; return; fi
    [ "$limit" -gt "$left" ] && limit=$left
    say "== $name ($(elapsed)s in, limit ${limit}s)"
    timeout "$limit" "$@"
    local rc=$?
    say "-- $name: exit $rc$([ $rc -eq 124 ] && echo ' (time limit)') after $(elapsed)s"
}

say "== 1. the machine"
date -u
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader 2>&1
(command -v nvcc > /dev/null && nvcc --version | tail -1) || ls /usr/local/cuda/bin/nvcc 2>&1
say "commit: $(git rev-parse --short HEAD 2>/dev/null || echo '?') $(git status --short 2>/dev/null | wc -l) files changed"
say "cores: $(nproc)"

# the Debian libraries maec links, unpacked here; CUDA's own from the toolkit
# (or PyTorch's wheels, where the toolkit's lib64 lacks them)
mkdir -p /tmp/maec-deps
unpack() { # a .deb's files into /tmp/maec-deps: dpkg, else ar and tar
    if command -v dpkg > /dev/null; then dpkg -x "$1" /tmp/maec-deps; return; fi
    local d; d=$(mktemp -d)
    (cd "$d" && ar x "$OLDPWD/$1" && tar -xf data.tar.* -C /tmp/maec-deps); local rc=$?
    rm -rf "$d"; return $rc
}
for f in .deps/*.deb; do unpack "$f" || say "could not unpack $f"; done
LIBS=/tmp/maec-deps/usr/lib/x86_64-linux-gnu/openblas-openmp:/tmp/maec-deps/usr/lib/x86_64-linux-gnu:/tmp/maec-deps/lib/x86_64-linux-gnu
LIBS=$LIBS:${CUDA_HOME:-/usr/local/cuda}/lib64
for p in cublas cuda_runtime; do
    d=$(python3 -c "import nvidia.$p, os; print(os.path.join(list(nvidia.$p.__path__)[0], 'lib'))" 2>/dev/null) &&
        LIBS=$LIBS:$d
done
export LD_LIBRARY_PATH=$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
ldd build/cuda/maec | grep -E "cuda|cublas|openblas|not found"
build/cuda/maec --version
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}

step "2. op test, cuda against ref" 120 env MAEC_REQUIRE_GPU=1 build/cuda/tests/test_backend_ops
step "2b. op timings on cuda" 60 build/cuda/tests/test_backend_ops --perf --backend cuda
step "3. PyTorch fixtures on the cuda backend" 150 \
    env MAEC_BUILD=build/cuda MAEC_BACKEND=cuda build/cuda/tests/test_core
step "4. tests/cli_cuda.sh" 180 env MAEC_BUILD=build/cuda MAEC_DATA=.devdata MAEC_REQUIRE_GPU=1 bash tests/cli_cuda.sh

# 5. config A for 50 steps, cpu and cuda, per-step losses
A="--model fmnist-tiny --data-path .devdata --batch-size 256 --epochs 7 --max-steps 50 --warmup-epochs 1 \
--blr 1.5e-4 --seed 0 --log-every 1 --recon-every 0 --save-every 0"
fifty() {
    rm -rf /tmp/a-cpu /tmp/a-gpu
    build/cuda/maec pretrain $A --device cpu --output-dir /tmp/a-cpu > /tmp/a-cpu.log 2>&1 || { tail -3 /tmp/a-cpu.log; return 1; }
    build/cuda/maec pretrain $A --device cuda --output-dir /tmp/a-gpu > /tmp/a-gpu.log 2>&1 || { tail -3 /tmp/a-gpu.log; return 1; }
    grep images_per_s /tmp/a-gpu/metrics.jsonl | tail -1
    paste <(grep -o '"loss":[^,]*' /tmp/a-cpu/metrics.jsonl | cut -d: -f2) \
          <(grep -o '"loss":[^,]*' /tmp/a-gpu/metrics.jsonl | cut -d: -f2) |
        awk '{d = $1 - $2; if (d < 0) d = -d; r = d / $1; if (r > w) w = r; n++}
             END {printf "%d steps, worst relative difference of the losses %.3g (must be <= 1e-4): %s\n", n, w,
                  (n == 50 && w <= 1e-4) ? "ok" : "FAILED"; exit !(n == 50 && w <= 1e-4)}'
}
export A
export -f fifty
step "5. 50 steps of config A, cpu against cuda" 150 bash -c fifty

# 6. the benchmark, maec's side through the carried libraries, PyTorch's not
cat > /tmp/maec-bench <<EOF
#!/usr/bin/env bash
LD_LIBRARY_PATH=$LIBS exec $PWD/build/cuda/bench_step "\$@"
EOF
chmod +x /tmp/maec-bench
step "6. benchmark (bench/gpu.sh)" 330 env -u LD_LIBRARY_PATH OUT="$OUT" MAEC_BENCH=/tmp/maec-bench STEPS=10 \
    TIMEOUT=60 bash bench/gpu.sh 1

# 7. the sanitizers (Firecracker machines have them working; gVisor not)
if command -v compute-sanitizer > /dev/null || [ -x /usr/local/cuda/bin/compute-sanitizer ]; then
    CS=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
    step "7. memcheck, op test" 120 "$CS" --tool memcheck --error-exitcode 3 build/cuda/tests/test_backend_ops --backend cuda
    for op in layernorm_backward linear_backward sumsq; do
        step "7. racecheck, $op" 40 "$CS" --tool racecheck --error-exitcode 3 build/cuda/tests/test_backend_ops \
            --backend cuda --op $op
    done
else
    say "== 7. no compute-sanitizer on this machine"
fi
say "== done after $(elapsed)s"
