#!/usr/bin/env bash
# Fault: kill -9 at random moments. A small pretraining run (checkpoints every
# 5 steps) is started, killed after a random 0.2-2 s, resumed, killed again,
# 20 times (odd kills timed from the start, even ones from the first
# training step). After every kill the newest checkpoint on disk must load, and the
# next resume must use it (no "skipping" of a broken one). At the end the run
# is resumed to completion, and its losses, step by step, must equal those of
# a run never interrupted. FAULT_KILLS (20) and FAULT_SEED (random) change it.
cd "$(dirname "$0")/.." || exit 1
. tests/lib.sh
T=$(mktemp -d /tmp/maec_fault_kill_XXXXXX)
[ -n "$FAULT_KEEP" ] && echo "  keeping $T" || trap 'rm -rf "$T"' EXIT
need_data
KILLS=${FAULT_KILLS:-20}
SEED=${FAULT_SEED:-$RANDOM}
RANDOM=$SEED
echo "  $KILLS kills, FAULT_SEED=$SEED"

SMALL="--model fmnist-mini --embed-dim 32 --depth 2 --num-heads 2 --decoder-embed-dim 32 --decoder-depth 1 --decoder-num-heads 2 --batch-size 32 --epochs 5 --warmup-epochs 0.01 --blr 1.5e-3 --log-every 1 --threads 1 --num-workers 1 --seed 3 --recon-every 0 --save-every 5 --keep 2"
newest() { ls "$T/run"/checkpoint-*.safetensors 2>/dev/null | sort | tail -1; }

survived=0; mid_save=0
for i in $(seq "$KILLS"); do
    if [ -n "$(newest)" ]; then
        $MAEC pretrain --resume "$T/run" --threads 1 > "$T/log.$i" 2>&1 &
    else
        $MAEC pretrain $SMALL --data-path $DATA --output-dir "$T/run" > "$T/log.$i" 2>&1 &
    fi
    pid=$!
    # odd kills: 0.2-2 s after the start (loading, resuming, the first
    # steps); even kills: 0.2-2 s after training began
    from="start"
    if [ $((i % 2)) -eq 0 ]; then
        from="training"
        for k in $(seq 300); do grep -q "^output:" "$T/log.$i" 2>/dev/null && break; kill -0 $pid 2>/dev/null || break; sleep 0.1; done
    fi
    ms=$((200 + RANDOM % 1801))
    sleep "$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))"
    kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
    if grep -q "warning: skipping" "$T/log.$i"; then bad "kill $i: resume skipped a broken checkpoint: $(grep warning "$T/log.$i")"; fi
    c=$(newest)
    ls "$T/run"/*.tmp.* > /dev/null 2>&1 && mid_save=$((mid_save+1))
    if [ -z "$c" ]; then
        echo "  kill $i, ${ms} ms after $from: no checkpoint yet"
        continue
    fi
    if out=$($MAEC info "$c" 2>&1); then survived=$((survived+1)); else bad "kill $i: $c does not load: $out"; fi
    echo "  kill $i, ${ms} ms after $from: newest $(basename "$c") loads"
done
[ "$survived" -gt 0 ] && ok || bad "no checkpoint survived any kill"
echo "  $survived of $KILLS kills left a loadable newest checkpoint; $mid_save left a partial temporary file"

# finish: resume to 10 steps past the newest checkpoint
c=$(newest)
step=$(basename "$c" | sed 's/checkpoint-0*\([0-9]*\)\.safetensors/\1/')
final=$((step + 10))
$MAEC pretrain --resume "$T/run" --threads 1 --max-steps $final > "$T/final.log" 2>&1
rc=$?
[ $rc -eq 0 ] && ok || bad "final resume failed (exit $rc): $(tail -2 "$T/final.log")"
grep -q "resuming from .*checkpoint-0*$step.safetensors" "$T/final.log" && ok || bad "final resume did not start from the newest checkpoint (step $step)"
[ -f "$T/run/model.safetensors" ] && ok || bad "no model.safetensors after the run finished"
# the same run, never interrupted
$MAEC pretrain $SMALL --data-path $DATA --output-dir "$T/ref" --max-steps $final > "$T/ref.log" 2>&1
[ "$(losses "$T/run" | wc -l)" -eq $final ] && ok || bad "$final logged steps expected, got $(losses "$T/run" | wc -l)"
[ "$(losses "$T/run")" = "$(losses "$T/ref")" ] && ok || bad "losses after $KILLS kills differ from an uninterrupted run of $final steps"
echo "  resumed to step $final: losses equal to an uninterrupted run, bit for bit"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
