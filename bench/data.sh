#!/usr/bin/env bash
# Is the data loader ever the bottleneck? `maec pretrain` on Fashion-MNIST
# (loader threads reading, augmenting and normalizing each batch beside the
# training step) against the same model's step on random inputs already in
# memory (build/bench_step), alternated in one run: images/s of each, their
# ratio, and the share of pretrain's time spent waiting for a batch
# (metrics.jsonl's data_wait). Pretrain's first 10 steps (warm-up) are left
# out of its rate.
#   bash bench/data.sh [ROUNDS] [PRESET] [BATCH] [STEPS]   (default: 2 fmnist-tiny 256 40)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2} PRESET=${2:-fmnist-tiny} BATCH=${3:-256} STEPS=${4:-40}
THREADS=${THREADS:-2}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
PY=${PY:-python3}
[ -d "$DATA" ] || { echo "no $DATA (apt-get install dataset-fashion-mnist)" >&2; exit 1; }
make -s build/maec build/bench_step
T=$(mktemp -d /tmp/maec_data_XXXXXX)
trap 'rm -rf "$T"' EXIT
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; threads $THREADS; $(date -u '+%Y-%m-%d %H:%M UTC'); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo
echo "| round | pretrain img/s (Fashion-MNIST) | data wait | step img/s (inputs in memory) | pretrain / step |"
echo "|---|---|---|---|---|"
for r in $(seq "$ROUNDS"); do
    rm -rf "$T/run"
    ./build/maec pretrain --model "$PRESET" --data-path "$DATA" --output-dir "$T/run" --batch-size "$BATCH" \
        --max-steps $((STEPS + 10)) --log-every 10 --threads "$THREADS" --seed 0 --recon-every 0 --save-every 0 > "$T/log" 2>&1 ||
        { tail -3 "$T/log" >&2; exit 1; }
    read -r ips wait < <($PY - "$T/run/metrics.jsonl" "$BATCH" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"images_per_s"' in l]
first, last = rows[0], rows[-1]
steps = last["step"] - first["step"]
print(f'{steps * int(sys.argv[2]) / (last["elapsed_s"] - first["elapsed_s"]):.1f}',
      f'{100 * sum(r["data_wait"] for r in rows[1:]) / (len(rows) - 1):.1f}%')
PY
)
    o=$(OMP_NUM_THREADS=$THREADS ./build/bench_step step "$PRESET" "$BATCH" "$STEPS")
    so=$($PY -c "import json,sys; print(json.loads(sys.argv[1])['images_per_s'])" "$o")
    echo "| $r | $ips | $wait | $so | $($PY -c "print(f'{$ips/$so:.2f}')") |"
done
