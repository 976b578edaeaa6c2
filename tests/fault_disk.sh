#!/usr/bin/env bash
# Fault: the disk fills up. On a small tmpfs (mounted here; needs root, and
# is skipped, not passed, where mount is refused) a run's first checkpoint
# fits and its second does not: the run must stop with one clear error line
# and a non-zero exit, leave no temporary file, keep the first checkpoint
# intact (it loads, and the run resumes from it elsewhere with the losses of
# a run never stopped). A
# disk already full when a run starts gives a clear error too.
cd "$(dirname "$0")/.." || exit 1
. tests/lib.sh
T=$(mktemp -d /tmp/maec_fault_disk_XXXXXX)
cleanup() { mountpoint -q "$T/full" 2>/dev/null && umount "$T/full"; rm -rf "$T"; }
trap cleanup EXIT
need_data
SMALL="--model fmnist-mini --embed-dim 32 --depth 2 --num-heads 2 --decoder-embed-dim 32 --decoder-depth 1 --decoder-num-heads 2 --batch-size 32 --epochs 1 --warmup-epochs 0.01 --blr 1.5e-3 --log-every 1 --threads 1 --num-workers 1 --seed 3 --recon-every 0 --recon-images 0"

# the size of one checkpoint of this model
$MAEC pretrain $SMALL --data-path $DATA --output-dir "$T/probe" --max-steps 1 > /dev/null 2>&1
S=$(stat -c %s "$T/probe/checkpoint-00000001.safetensors" 2>/dev/null)
if [ -z "$S" ]; then echo "FAIL: the probe run wrote no checkpoint"; echo "0 passed, 1 failed"; exit 1; fi
KB=$(( (S * 3 / 2) / 1024 ))
mkdir -p "$T/full"
if ! mount -t tmpfs -o size=${KB}k tmpfs "$T/full" 2> "$T/mount.err"; then
    echo "SKIP: cannot mount a tmpfs ($(head -1 "$T/mount.err")); disk-full tests skipped (run as root)"
    echo "0 passed, 0 failed"
    exit 0
fi
echo "  checkpoint $S bytes, tmpfs ${KB} kB"

one_line_error() { # file: exactly one line, 'maec: error: ...'
    [ "$(grep -c . "$1")" -eq 1 ] && grep -q '^maec: error: ' "$1"
}

# 1. the second checkpoint does not fit
$MAEC pretrain $SMALL --data-path $DATA --output-dir "$T/full/run" --max-steps 10 --save-every 2 --keep 2 > "$T/out1" 2> "$T/err1"
rc=$?
[ $rc -ne 0 ] && [ $rc -lt 128 ] && ok || bad "disk full: exit $rc, expected a clean failure"
one_line_error "$T/err1" && ok || bad "disk full: not one 'maec: error:' line: $(cat "$T/err1")"
grep -q "No space left on device" "$T/err1" && ok || bad "disk full: message does not say why: $(cat "$T/err1")"
grep -q "checkpoint-00000004" "$T/err1" && ok || bad "disk full: message does not name the file: $(cat "$T/err1")"
echo "  disk full -> $(cat "$T/err1")"
! ls "$T/full/run"/*.tmp.* > /dev/null 2>&1 && ok || bad "disk full: a temporary file was left: $(ls "$T/full/run")"
[ -f "$T/full/run/checkpoint-00000002.safetensors" ] && ok || bad "disk full: the previous checkpoint is gone"
$MAEC info "$T/full/run/checkpoint-00000002.safetensors" > /dev/null 2>&1 && ok || bad "disk full: the previous checkpoint does not load"
# it resumes, elsewhere, and goes on as a run on a roomy disk does
$MAEC pretrain --resume "$T/full/run" --threads 1 --output-dir "$T/moved" --max-steps 10 > "$T/out2" 2>&1
rc=$?
[ $rc -eq 0 ] && grep -q "resuming from .*checkpoint-00000002" "$T/out2" && ok || bad "resume after disk full failed (exit $rc): $(tail -2 "$T/out2")"
[ -f "$T/moved/model.safetensors" ] && ok || bad "resume after disk full wrote no model"
$MAEC pretrain $SMALL --data-path $DATA --output-dir "$T/ref" --max-steps 10 > /dev/null 2>&1
# its log: steps 1-2 carried over from the full disk, 3-10 resumed
[ -n "$(losses "$T/moved")" ] && [ "$(losses "$T/moved")" = "$(losses "$T/ref")" ] && ok \
    || bad "the log of a run resumed from the kept checkpoint differs from an uninterrupted run's"

# 2. a disk already full when a run starts
rm -rf "$T/full/run"
dd if=/dev/zero of="$T/full/filler" bs=4k > /dev/null 2>&1
$MAEC pretrain $SMALL --data-path $DATA --output-dir "$T/full/run2" --max-steps 2 > /dev/null 2> "$T/err3"
rc=$?
[ $rc -ne 0 ] && [ $rc -lt 128 ] && one_line_error "$T/err3" && ok || bad "full at start: exit $rc, message '$(cat "$T/err3")'"
echo "  full at start -> $(cat "$T/err3")"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
