#!/usr/bin/env bash
# Today's maec against an older commit, on this machine in one run: the
# pretraining step of configurations A, B, C (bench/run.sh) built at REV in
# a throwaway worktree and here, alternated round by round (the machine's
# speed drifts by more than the differences looked for), and each
# configuration's median images/s, the ratio new/old and peak memory.
#   bash bench/compare.sh REV [ROUNDS] [CONFIGS...]   (default: 5 rounds, A B C)
set -euo pipefail
cd "$(dirname "$0")/.."
REV=${1:?usage: bench/compare.sh REV [ROUNDS] [CONFIGS...]}; shift
ROUNDS=${1:-5}; shift || true
CONFIGS=${*:-A B C}
THREADS=${THREADS:-2}
declare -A PRESET=([A]=fmnist-tiny [B]=cifar-tiny [C]=vit-base-16)
declare -A BATCH=([A]=256 [B]=128 [C]=8)
declare -A STEPS=([A]=6 [B]=6 [C]=3)
OLD=$(mktemp -d /tmp/maec_compare_XXXXXX)
trap 'git worktree remove --force "$OLD/src" >/dev/null 2>&1 || true; rm -rf "$OLD"' EXIT
git worktree add -q --detach "$OLD/src" "$REV"
make -s -C "$OLD/src" build/bench_step > /dev/null
make -s build/bench_step > /dev/null
field() { sed -n "s/.*\"$1\": \([0-9.]*\).*/\1/p" <<< "$2"; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
echo "maec $(git rev-parse --short HEAD) against $(git -C "$OLD/src" rev-parse --short HEAD), $ROUNDS rounds, $THREADS threads, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
for c in $CONFIGS; do
    : > "$OLD/new.$c"; : > "$OLD/old.$c"
    for r in $(seq "$ROUNDS"); do
        for which in new old; do
            if [ $(( r % 2 )) -eq 0 ]; then which=$([ $which = new ] && echo old || echo new); fi
            bin=./build/bench_step; [ $which = old ] && bin="$OLD/src/build/bench_step"
            out=$(OMP_NUM_THREADS=$THREADS $bin step "${PRESET[$c]}" "${BATCH[$c]}" "${STEPS[$c]}" | tail -1)
            echo "$(field images_per_s "$out") $(field peak_mib "$out")" >> "$OLD/$which.$c"
        done
    done
    n=$(cut -d' ' -f1 "$OLD/new.$c" | median); o=$(cut -d' ' -f1 "$OLD/old.$c" | median)
    nm=$(cut -d' ' -f2 "$OLD/new.$c" | sort -g | tail -1); om=$(cut -d' ' -f2 "$OLD/old.$c" | sort -g | tail -1)
    awk -v c="$c" -v n="$n" -v o="$o" -v nm="$nm" -v om="$om" -v p="${PRESET[$c]}" -v b="${BATCH[$c]}" \
        'BEGIN {printf "%s (%s, batch %s): new %.2f img/s, old %.2f img/s, ratio %.3f; peak %s MiB new, %s MiB old\n", c, p, b, n, o, n / o, nm, om}'
done
