#!/usr/bin/env bash
# maec's MAE pretraining step against PyTorch's on a GPU, alternated in one
# run, each configuration in plain float32 (fp32) and with TF32 matrix
# products allowed (tf32): images/s (the best of the rounds, each side), the
# ratio, and the GPU memory each process had allocated at its peak (weights
# and optimizer state included).
#   bash bench/gpu.sh [ROUNDS] [CONFIGS...]     (default: 2 rounds, B16 L16 T)
# B16: vit-base-16 batch 256; L16: vit-large-16 batch 128; T: fmnist-tiny
# batch 4096.
# maec's side:    MAEC_DEVICE=cuda MAEC_TF32=0|1 $MAEC_BENCH step PRESET BATCH STEPS
# PyTorch's side: $PY bench/torch_step.py PRESET BATCH STEPS cuda fp32|tf32
# Both print one JSON line; device_peak_mib is "-" where a side leaves it out.
# A measurement that fails (out of memory at a batch, a crash, a timeout) is
# recorded as failed with the last line of its stderr, and the run goes on.
# The table's rows come as each configuration finishes; the raw JSON lines
# (or failures) of every measurement follow the table, also when the run is
# stopped by SIGTERM or Ctrl-C.
# Environment:
#   STEPS=10            timed steps per measurement (after each side's warm-up)
#   PRECISIONS="fp32 tf32"
#   BATCH_B16=256 BATCH_L16=128 BATCH_T=4096   the batches
#   MAEC_BENCH=build/cuda/bench_step   maec's bench program (relative to the
#                       repository root; build it first, this script does not)
#   PY=python3          the Python with PyTorch; JSON is read with python3
#                       (/usr/bin/python3 where PATH has none), or JSONPY
#   TIMEOUT=0           seconds before a measurement is killed and recorded
#                       failed (0: no limit)
#   OUT                 where set, everything printed also goes to
#                       $OUT/bench_gpu.txt (created or overwritten); where
#                       not, stdout only
#   DEVICE=cuda         DEVICE=cpu is a dry run to test this script without a
#                       GPU: maec's side runs without MAEC_DEVICE/MAEC_TF32,
#                       PyTorch's with cpu (its tf32 then changes nothing), e.g.
#     DEVICE=cpu STEPS=1 BATCH_T=64 MAEC_BENCH=build/bench_step PY=/usr/bin/python3 bash bench/gpu.sh 1 T
set -euo pipefail
# $OUT as given, before the cd: a relative one is relative to the caller
OUTFILE=""
if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT"
    OUTFILE=$(cd "$OUT" && pwd)/bench_gpu.txt
    : >"$OUTFILE"
fi
cd "$(dirname "$0")/.."
die() { echo "gpu.sh: $*" >&2; exit 2; }
ROUNDS=${1:-2}; shift || true
CONFIGS=${*:-B16 L16 T}
STEPS=${STEPS:-10}
PRECISIONS=${PRECISIONS:-fp32 tf32}
DEVICE=${DEVICE:-cuda}
MAEC_BENCH=${MAEC_BENCH:-build/cuda/bench_step}
PY=${PY:-python3}
TIMEOUT=${TIMEOUT:-0}
JSONPY=${JSONPY:-$(command -v python3 || echo /usr/bin/python3)}
declare -A PRESET=([B16]=vit-base-16 [L16]=vit-large-16 [T]=fmnist-tiny)
declare -A BATCH=([B16]=${BATCH_B16:-256} [L16]=${BATCH_L16:-128} [T]=${BATCH_T:-4096})

[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, not '$ROUNDS'"
[[ $STEPS =~ ^[1-9][0-9]*$ ]] || die "STEPS must be a positive integer, not '$STEPS'"
[[ $TIMEOUT =~ ^[0-9]+$ ]] || die "TIMEOUT must be a number of seconds, not '$TIMEOUT'"
for c in $CONFIGS; do
    [ -n "${PRESET[$c]:-}" ] || die "unknown config '$c' (known: B16 L16 T)"
    [[ ${BATCH[$c]} =~ ^[1-9][0-9]*$ ]] || die "the batch of $c must be a positive integer, not '${BATCH[$c]}'"
done
for prec in $PRECISIONS; do
    case $prec in fp32 | tf32) ;; *) die "unknown precision '$prec' (known: fp32 tf32)" ;; esac
done
case $DEVICE in cuda | cpu) ;; *) die "DEVICE must be cuda or cpu, not '$DEVICE'" ;; esac
[ -x "$JSONPY" ] || command -v "$JSONPY" >/dev/null || die "no python3 to read the JSON lines with (set JSONPY)"

TMP=$(mktemp -d)
RAW=$TMP/raw # one line per measurement, printed after the table
: >"$RAW"

# say LINE...: to stdout and, where $OUT is set, to $OUT/bench_gpu.txt
say() {
    printf '%s\n' "$@"
    [ -z "$OUTFILE" ] || printf '%s\n' "$@" >>"$OUTFILE"
}
finish() {
    if [ -s "$RAW" ]; then
        say "" "raw (side config precision round: its JSON line or failure):"
        while IFS= read -r line; do say "$line"; done <"$RAW"
    fi
    rm -rf "$TMP"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# fields JSON NAME...: the named values, space-separated; "-" for one that is
# missing or null. Fails on a line that is not a JSON object.
fields() {
    "$JSONPY" -c '
import json, sys
d = json.loads(sys.argv[1])
print(" ".join("-" if d.get(k) is None else str(d[k]) for k in sys.argv[2:]))' "$@"
}
# gt A B: whether number A > number B
gt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 > b + 0) }'; }
# clean TEXT: one table cell's worth: no '|', at most 80 characters
clean() {
    local s=${1//|//}
    [ ${#s} -le 80 ] || s="${s:0:77}..."
    printf '%s' "$s"
}

# measure SIDE CONFIG PRECISION: runs one measurement; sets RESULT to its
# JSON line and returns 0, or sets RESULT to the reason it failed and
# returns 1.
measure() {
    local side=$1 c=$2 prec=$3 p=${PRESET[$2]} b=${BATCH[$2]}
    local -a cmd
    if [ "$side" = maec ]; then
        if [ "$DEVICE" = cuda ]; then
            local tf32=0
            [ "$prec" = fp32 ] || tf32=1
            cmd=(env MAEC_DEVICE=cuda "MAEC_TF32=$tf32")
        else
            cmd=(env -u MAEC_DEVICE -u MAEC_TF32)
        fi
        cmd+=("$MAEC_BENCH" step "$p" "$b" "$STEPS")
    else
        cmd=("$PY" bench/torch_step.py "$p" "$b" "$STEPS" "$DEVICE" "$prec")
    fi
    [ "$TIMEOUT" = 0 ] || cmd=(timeout -k 10 "$TIMEOUT" "${cmd[@]}")
    local out rc=0 line last
    out=$("${cmd[@]}" 2>"$TMP/err") || rc=$?
    # the last line on stdout that looks like JSON, and the last non-blank on stderr
    line=$(printf '%s\n' "$out" | grep '^{' | tail -n 1 || true)
    last=$(grep -v '^[[:space:]]*$' "$TMP/err" | tail -n 1 | tr -d '\r' || true)
    if [ "$rc" -eq 0 ] && [ -n "$line" ] && fields "$line" images_per_s >/dev/null 2>&1; then
        RESULT=$line
        return 0
    fi
    if [ "$TIMEOUT" != 0 ] && { [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; }; then
        RESULT="timed out after ${TIMEOUT}s${last:+ ($last)}"
    elif [ -n "$last" ]; then
        RESULT=$last
    elif [ "$rc" -ne 0 ]; then
        RESULT="exit status $rc, nothing on stderr"
    else
        RESULT="no JSON line on stdout"
    fi
    return 1
}

# the header: when, where, what
say "maec against PyTorch, MAE pretraining step: $(date -u +%Y-%m-%d\ %H:%M) UTC on $(hostname)"
if [ "$DEVICE" = cpu ]; then
    say "DEVICE=cpu: a dry run on the CPU ($(nproc) cores), not a GPU measurement"
fi
if command -v nvidia-smi >/dev/null; then
    gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1 || true)
    while IFS= read -r g; do say "GPU (name, driver): $g"; done <<<"$gpu"
fi
say "PyTorch: $("$PY" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda)' 2>/dev/null | tail -n 1 || echo "? ($PY could not import torch)")"
if rev=$(git rev-parse --short HEAD 2>/dev/null); then
    git diff --quiet HEAD 2>/dev/null || rev="$rev (with uncommitted changes)"
else
    rev='? (no git)'
fi
say "maec: $MAEC_BENCH, commit $rev"
[ -x "$MAEC_BENCH" ] || say "($MAEC_BENCH is not there or not executable: maec's side will fail)"
say "steps $STEPS after each side's warm-up, best of $ROUNDS round(s), maec then PyTorch in each"
say ""
say "| config | precision | maec img/s | PyTorch img/s | ratio maec/PyTorch | maec device MiB | PyTorch device MiB |"
say "|---|---|---|---|---|---|---|"

for c in $CONFIGS; do
    p=${PRESET[$c]} b=${BATCH[$c]}
    for prec in $PRECISIONS; do
        # per side: the best images/s and its device peak, the failures
        declare -A best=([maec]="" [torch]="") mib=([maec]=- [torch]=-) nfail=([maec]=0 [torch]=0) why=()
        for r in $(seq "$ROUNDS"); do
            for side in maec torch; do
                if measure "$side" "$c" "$prec"; then
                    echo "$side $c $prec $r: $RESULT" >>"$RAW"
                    read -r ips dmib <<<"$(fields "$RESULT" images_per_s device_peak_mib)"
                    if [ -z "${best[$side]}" ] || gt "$ips" "${best[$side]}"; then
                        best[$side]=$ips
                        mib[$side]=$dmib
                    fi
                else
                    echo "$side $c $prec $r: failed: $RESULT" >>"$RAW"
                    nfail[$side]=$((nfail[$side] + 1))
                    why[$side]=$RESULT
                fi
            done
        done
        # a side's cell: its best, with how many rounds failed, or its last failure
        declare -A cell=()
        for side in maec torch; do
            if [ -z "${best[$side]}" ]; then
                cell[$side]="failed: $(clean "${why[$side]}")"
            elif [ "${nfail[$side]}" -gt 0 ]; then
                cell[$side]="${best[$side]} (${nfail[$side]} of $ROUNDS failed)"
            else
                cell[$side]=${best[$side]}
            fi
        done
        ratio=-
        if [ -n "${best[maec]}" ] && [ -n "${best[torch]}" ] && gt "${best[torch]}" 0; then
            ratio=$(awk -v a="${best[maec]}" -v b="${best[torch]}" 'BEGIN { printf "%.2f", a / b }')
        fi
        say "| $c ($p, batch $b) | $prec | ${cell[maec]} | ${cell[torch]} | $ratio | ${mib[maec]} | ${mib[torch]} |"
        unset best mib nfail why cell
    done
done
say ""
say "(device MiB: the GPU memory the process had allocated at its peak, from its best round;"
say " a failure's full last stderr line is in the raw lines below)"
