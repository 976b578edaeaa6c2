#!/usr/bin/env bash
# Runs every libFuzzer target of maec's readers (built by `make fuzz` into
# build/fuzz/): first the saved regression inputs (fuzz/regressions/<target>/,
# inputs that once crashed), then FUZZ_SECONDS (default 30) of fuzzing per
# target from the seed corpus fuzz/corpus/<target>/. New interesting inputs go
# to build/fuzz/out/<target>/corpus (kept between local runs), findings to
# build/fuzz/out/<target>/ (crash-*, leak-*, timeout-*, oom-*). Exits non-zero
# if any crash, sanitizer report, leak, timeout or out-of-memory is found.
#
#   FUZZ_SECONDS=300 bash fuzz/run.sh           # longer
#   FUZZ_TARGETS="npy idx" bash fuzz/run.sh     # some targets
#   FUZZ_SEED=0 bash fuzz/run.sh                # a fresh random seed
#   build/fuzz/npy build/fuzz/out/npy/crash-... # replay one input
set -u
cd "$(dirname "$0")/.." || exit 1
SECONDS_EACH=${FUZZ_SECONDS:-30}
BIN=build/fuzz
OUT=build/fuzz/out
ALL="safetensors pth model_load classifier npy idx cifar png jpeg imagefolder run_config model_config report"
TARGETS=${FUZZ_TARGETS:-$ALL}
# A fixed seed by default, so that a CI run repeats the mutations of the last
# one (FUZZ_SEED=0 lets libFuzzer pick a new seed every run).
SEED=${FUZZ_SEED:-1}
COMMON=(-timeout=10 -rss_limit_mb=2048 -seed="$SEED")
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

max_len() {
    case $1 in
        safetensors|pth|model_load|classifier) echo 65536 ;;  # a tiny checkpoint is 27 kB
        cifar|png|jpeg|imagefolder) echo 16384 ;;
        *) echo 4096 ;;
    esac
}

for t in $TARGETS; do
    if [ ! -x "$BIN/$t" ]; then echo "fuzz/run.sh: no $BIN/$t (run make fuzz)"; exit 2; fi
done

failed=0
# 1. the regression inputs, each run once
nreg=0
for t in $TARGETS; do
    d=fuzz/regressions/$t
    ls "$d"/* > /dev/null 2>&1 || continue
    n=$(ls "$d" | wc -l)
    if "$BIN/$t" "${COMMON[@]}" "$d"/* > "$OUT.$t.regress.log" 2>&1; then
        nreg=$((nreg + n))
    else
        echo "REGRESSION: $t fails on an input of $d:"; grep -E "ERROR|SUMMARY|fuzz check|Running:" "$OUT.$t.regress.log" | head -8
        failed=$((failed + 1))
    fi
    rm -f "$OUT.$t.regress.log"
done
echo "regression inputs replayed: $nreg"

# 2. fuzzing, target after target
declare -A EXECS RATE STATUS
for t in $TARGETS; do
    mkdir -p "$OUT/$t/corpus"
    rm -f "$OUT/$t"/crash-* "$OUT/$t"/leak-* "$OUT/$t"/timeout-* "$OUT/$t"/oom-*
    log=$OUT/$t/log
    echo "== $t: ${SECONDS_EACH}s, -max_len=$(max_len "$t")"
    "$BIN/$t" "${COMMON[@]}" -max_total_time="$SECONDS_EACH" -max_len="$(max_len "$t")" \
        -print_final_stats=1 -artifact_prefix="$OUT/$t/" "$OUT/$t/corpus" "fuzz/corpus/$t" > "$log" 2>&1
    rc=$?
    EXECS[$t]=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    RATE[$t]=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    found=$(ls "$OUT/$t" | grep -E '^(crash|leak|timeout|oom|slow-unit)-' | head -3)
    if [ $rc -ne 0 ] || [ -n "$found" ]; then
        STATUS[$t]="FAILED"
        failed=$((failed + 1))
        echo "FINDING in $t (exit $rc): $found"
        grep -E "ERROR|SUMMARY|fuzz check|runtime error|Test unit written" "$log" | head -10
        # the memory trend before the finding, and each input itself, so that
        # a finding on a machine one cannot log into can be replayed here
        grep -E '^#[0-9]+' "$log" | tail -3
        for f in $found; do
            if [ "$(stat -c %s "$OUT/$t/$f")" -le 16384 ]; then
                echo "input $f (base64; decode with base64 -d > $f):"
                base64 -w 0 "$OUT/$t/$f"; echo
            fi
        done
    else
        STATUS[$t]="ok"
    fi
done

# scratch folders of targets that crashed (the others remove their own)
for d in /dev/shm/maec_fuzz_* "${TMPDIR:-/tmp}"/maec_fuzz_*; do
    [ -d "$d" ] && ! kill -0 "${d##*_}" 2>/dev/null && rm -rf "$d"
done

printf '\n%-12s %12s %10s %8s  %s\n' target executions "exec/s" corpus result
total=0
for t in $TARGETS; do
    printf '%-12s %12s %10s %8s  %s\n' "$t" "${EXECS[$t]:-?}" "${RATE[$t]:-?}" "$(ls "$OUT/$t/corpus" | wc -l)" "${STATUS[$t]}"
    total=$((total + ${EXECS[$t]:-0}))
done
echo "total executions: $total in $(echo "$TARGETS" | wc -w) targets x ${SECONDS_EACH}s; regression inputs: $nreg"
[ $failed -eq 0 ] && echo "fuzz: no findings" || echo "fuzz: $failed target(s) with findings"
[ $failed -eq 0 ]
