#!/usr/bin/env bash
# Runs every test binary (build/tests/test_*) and the CLI tests
# (tests/cli_*.sh), then prints the total as 'N passed, N failed'.
cd "$(dirname "$0")/.." || exit 1
pass=0; fail=0; broken=0
for t in build/tests/test_* tests/cli_*.sh; do
    [ -e "$t" ] || continue
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
