#!/usr/bin/env bash
# The command runs OpenBLAS on kernels that fit the CPU: where OpenBLAS does
# not know the CPU and falls back to its generic SSE3 kernels, maec sets
# OPENBLAS_CORETYPE and runs itself again (maec_blas_reexec); a
# OPENBLAS_CORETYPE the user set stands. `maec --version` names the kernels.
cd "$(dirname "$0")/.." || exit 1
. tests/lib.sh

out=$($MAEC --version 2>&1)
check '[ $? -eq 0 ]' "maec --version failed: $out"
core=$(echo "$out" | sed -n 's/^OpenBLAS kernels: \([^ ]*\).*/\1/p')
check '[ -n "$core" ]' "no 'OpenBLAS kernels:' line in: $out"
echo "  OpenBLAS kernels: $core"
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null)
if [[ " $flags " == *" avx2 "* && " $flags " == *" fma "* ]]; then
    case "${core,,}" in
        haswell|zen|excavator|skylakex|cooperlake|sapphirerapids) ok ;;
        *) bad "OpenBLAS on its $core kernels on a CPU with AVX2 and FMA" ;;
    esac
fi
# the user's choice stands
out=$(OPENBLAS_CORETYPE=Haswell $MAEC --version 2>&1)
check 'echo "$out" | grep -qx "OpenBLAS kernels: Haswell (OPENBLAS_CORETYPE=Haswell)"' "OPENBLAS_CORETYPE=Haswell not kept: $out"
# the arguments reach the command whole after a re-run
out=$($MAEC info 2>&1); rc=$?
check '[ $rc -ne 0 ] && echo "$out" | grep -q "^maec: error: "' "maec info without a file: exit $rc, $out"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
