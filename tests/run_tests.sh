#!/usr/bin/env bash
# Runs every test binary (build/tests/test_*) and the CLI tests
# (tests/cli_*.sh), then prints the total as 'N passed, N failed'.
# MAEC_BUILD names another build folder (make asan-test: build/asan).
# Arguments, when given, replace the list (make fault-test: tests/fault_*.sh).
cd "$(dirname "$0")/.." || exit 1
export MAEC_BUILD=${MAEC_BUILD:-build}
pass=0; fail=0; broken=0
if [ $# -gt 0 ]; then list=("$@"); else list=("$MAEC_BUILD"/tests/test_* tests/cli_*.sh); fi
for t in "${list[@]}"; do
    if [ ! -e "$t" ]; then [ $# -gt 0 ] && { echo "== $t: missing"; broken=$((broken+1)); }; continue; fi
    case "$t" in *.d) continue;; esac
    echo "== $t"
    if [[ "$t" == *.sh ]]; then out=$(bash "$t" 2>&1); rc=$?; else out=$("$t" 2>&1); rc=$?; fi
    echo "$out" | grep -v '^[0-9]* passed, [0-9]* failed$'
    line=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -1)
    if [ -z "$line" ]; then
        echo "   (no count line, exit $rc)"; broken=$((broken+1)); continue
    fi
    p=${line%% passed*}; f=${line#*passed, }; f=${f%% failed*}
    echo "   $p passed, $f failed"
    pass=$((pass+p)); fail=$((fail+f))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then broken=$((broken+1)); fi
done
fail=$((fail+broken))
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
