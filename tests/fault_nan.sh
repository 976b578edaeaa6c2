#!/usr/bin/env bash
# Fault: the loss becomes NaN. The test hook MAEC_FAULT_NAN_AT_STEP=N (read
# by maec pretrain) makes the loss of optimizer step N a NaN; the run must
# stop at once with a clear message and a non-zero exit, write no checkpoint
# or model from the poisoned step, keep the last good checkpoint (it loads),
# and `--resume` from it must finish with the losses of a run never stopped.
cd "$(dirname "$0")/.." || exit 1
. tests/lib.sh
T=$(mktemp -d /tmp/maec_fault_nan_XXXXXX)
trap 'rm -rf "$T"' EXIT
need_data
SMALL="--model fmnist-mini --embed-dim 32 --depth 2 --num-heads 2 --decoder-embed-dim 32 --decoder-depth 1 --decoder-num-heads 2 --batch-size 32 --epochs 1 --warmup-epochs 0.01 --blr 1.5e-3 --log-every 1 --threads 1 --num-workers 1 --seed 3 --recon-every 0 --save-every 4"

for at in 7 1; do
    rm -rf "$T/run"
    MAEC_FAULT_NAN_AT_STEP=$at $MAEC pretrain $SMALL --data-path $DATA --output-dir "$T/run" --max-steps 12 > "$T/out" 2> "$T/err"
    rc=$?
    [ $rc -ne 0 ] && [ $rc -lt 128 ] && ok || bad "NaN at step $at: exit $rc, expected a clean failure"
    grep -q "^maec: error: the loss became nan at step $at; stopping. The last good checkpoint is kept in $T/run" "$T/err" \
        && ok || bad "NaN at step $at: message: $(cat "$T/err")"
    echo "  NaN at step $at -> $(cat "$T/err")"
    [ ! -f "$T/run/model.safetensors" ] && ok || bad "NaN at step $at: a model was written"
    last=$(( (at - 1) / 4 * 4 ))
    newest=$(ls "$T/run"/checkpoint-*.safetensors 2>/dev/null | sort | tail -1)
    if [ $last -eq 0 ]; then
        [ -z "$newest" ] && ok || bad "NaN at step $at: a checkpoint was written: $newest"
        continue
    fi
    [ "$(basename "$newest")" = "$(printf 'checkpoint-%08d.safetensors' $last)" ] && ok || bad "NaN at step $at: newest checkpoint is $newest, expected step $last"
    $MAEC info "$newest" > /dev/null 2>&1 && ok || bad "NaN at step $at: the kept checkpoint does not load"
    [ "$(losses "$T/run" | wc -l)" -eq $((at - 1)) ] && ok || bad "NaN at step $at: $(losses "$T/run" | wc -l) steps logged, expected $((at - 1))"
    # resume (without the hook) and finish as a run never stopped
    $MAEC pretrain --resume "$T/run" --threads 1 > "$T/out2" 2>&1
    rc=$?
    [ $rc -eq 0 ] && grep -q "resuming from .*$(basename "$newest")" "$T/out2" && ok || bad "resume after NaN: exit $rc: $(tail -2 "$T/out2")"
    $MAEC pretrain $SMALL --data-path $DATA --output-dir "$T/ref" --max-steps 12 > /dev/null 2>&1
    [ "$(losses "$T/run")" = "$(losses "$T/ref")" ] && ok || bad "losses after NaN + resume differ from an uninterrupted run"
    echo "  resumed from $(basename "$newest") to step 12: losses equal to an uninterrupted run"
done
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
