# What the CLI and fault test scripts share; each sources it after changing
# to the repository root. MAEC_BUILD names the build folder (default build).
MAEC=./${MAEC_BUILD:-build}/maec
DATA=${MAEC_DATA:-/usr/share/datasets/fashion-mnist}
pass=0; fail=0
ok()  { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }
# stop with one failed check when the Fashion-MNIST files are not installed
need_data() {
    if [ ! -d "$DATA" ]; then
        echo "no $DATA (apt-get install dataset-fashion-mnist)"; echo "0 passed, 1 failed"; exit 1
    fi
}
# check CONDITION MESSAGE: CONDITION evaluated, counted as passed or failed
check() { if eval "$1"; then ok; else bad "$2"; fi; }
# the logged losses of a run's folder, one a line
losses() { grep -o '"loss":[^,]*' "$1/metrics.jsonl" | cut -d: -f2; }
# the largest relative difference of two runs' logged losses (a number; 9
# when their counts differ or there are none)
worst() { paste <(losses $1) <(losses $2) | awk -v n1="$(losses $1 | wc -l)" -v n2="$(losses $2 | wc -l)" \
    '{d = $1 - $2; if (d < 0) d = -d; r = d / $1; if (r > w) w = r} END {if (n1 != n2 || n1 == 0) w = 9; printf "%.2e", w + 0}'; }
