#!/usr/bin/env bash
# Leaks: one pretrain -> checkpoint -> resume -> reconstruct cycle (and a run
# refused for a damaged checkpoint) on a tiny model under LeakSanitizer: no
# leak may be reported. Needs the sanitizer build: make asan-test runs it as
# MAEC_BUILD=build/asan bash tests/fault_leaks.sh. One compute thread and one
# loader thread keep OpenMP's and OpenBLAS's thread pools out of the picture;
# the suppression file below is for leaks inside those two libraries only,
# whose per-thread buffers live until exit by design; none is needed today
# and anything suppressed is printed.
cd "$(dirname "$0")/.." || exit 1
B=${MAEC_BUILD:-build/asan}
. tests/lib.sh
MAEC=./$B/maec
T=$(mktemp -d /tmp/maec_fault_leaks_XXXXXX)
trap 'rm -rf "$T"' EXIT
if ! nm "$MAEC" 2>/dev/null | grep -q __asan_init && ! ldd "$MAEC" 2>/dev/null | grep -q libasan; then
    echo "SKIP: $MAEC is not built with AddressSanitizer (make asan; MAEC_BUILD=build/asan)"
    echo "0 passed, 0 failed"; exit 0
fi
need_data
cat > "$T/lsan.supp" <<'SUPP'
leak:libgomp.so
leak:libopenblas
SUPP
mkdir -p "$T/reports"
export ASAN_OPTIONS="detect_leaks=1:log_path=$T/reports/asan"
export LSAN_OPTIONS="suppressions=$T/lsan.supp:print_suppressions=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$T/reports/ubsan"
SMALL="--model fmnist-mini --embed-dim 32 --depth 2 --num-heads 2 --decoder-embed-dim 32 --decoder-depth 1 --decoder-num-heads 2 --batch-size 16 --epochs 1 --warmup-epochs 0.01 --blr 1.5e-3 --log-every 1 --threads 1 --num-workers 1 --seed 3 --recon-every 1 --recon-images 4"

step() { # name, command...
    local name=$1; shift
    "$@" > "$T/$name.log" 2>&1; local rc=$?
    local reports; reports=$(ls "$T/reports" 2>/dev/null)
    if [ -n "$reports" ]; then
        bad "$name: sanitizer report:"; head -30 "$T"/reports/*; rm -f "$T"/reports/*
    elif [ "$rc" != "${EXPECT:-0}" ]; then
        bad "$name: exit $rc (expected ${EXPECT:-0}): $(tail -2 "$T/$name.log")"
    else
        ok; echo "  $name: no leak"
    fi
}
step pretrain $MAEC pretrain $SMALL --data-path $DATA --output-dir "$T/run" --max-steps 6 --save-every 3
step resume $MAEC pretrain --resume "$T/run" --threads 1 --max-steps 10
step reconstruct $MAEC reconstruct --model "$T/run/model.safetensors" --data-path $DATA --num-images 4 --out "$T/r.png"
step reconstruct-checkpoint $MAEC reconstruct --model "$T/run/checkpoint-00000010.safetensors" --data-path $DATA --num-images 2 --out "$T/r2.png"
step info $MAEC info "$T/run/checkpoint-00000010.safetensors"
head -c 5000 "$T/run/checkpoint-00000010.safetensors" > "$T/short.safetensors"
EXPECT=1 step refused-checkpoint $MAEC pretrain --resume "$T/short.safetensors"
EXPECT=1 step refused-data $MAEC pretrain $SMALL --data-path "$T/short.safetensors" --output-dir "$T/x"
[ -s "$T/r.png" ] && ok || bad "reconstruct wrote no picture"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
