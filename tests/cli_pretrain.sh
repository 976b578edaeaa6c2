#!/usr/bin/env bash
# maec pretrain end to end on Fashion-MNIST with a small model: the loss goes
# down; a run stopped by SIGINT or killed with kill -9 and resumed gives the
# same losses, bit for bit, as one never stopped; reconstruct draws the
# picture; bad input gets a clean error.
cd "$(dirname "$0")/.." || exit 1
. tests/lib.sh
T=$(mktemp -d /tmp/maec_cli_XXXXXX)
trap 'rm -rf "$T"' EXIT

need_data

SMALL="--model fmnist-mini --embed-dim 32 --depth 2 --num-heads 2 --decoder-embed-dim 32 --decoder-depth 1 --decoder-num-heads 2 --batch-size 32 --epochs 1 --warmup-epochs 0.01 --blr 1.5e-3 --log-every 1 --threads 2 --seed 3 --recon-every 0"

# 1. an uninterrupted run of 40 steps
$MAEC pretrain $SMALL --data-path $DATA --output-dir $T/a --max-steps 40 > $T/a.log 2>&1
check '[ $? -eq 0 ]' "uninterrupted run failed: $(tail -2 $T/a.log)"
check '[ $(losses $T/a | wc -l) -eq 40 ]' "40 logged steps expected, got $(losses $T/a | wc -l)"
first=$(losses $T/a | head -5 | awk '{s+=$1} END {print s/NR}')
last=$(losses $T/a | tail -5 | awk '{s+=$1} END {print s/NR}')
check 'awk -v a=$first -v b=$last "BEGIN{exit !(b < 0.9*a)}"' "loss did not go down: $first -> $last"
echo "  loss $first -> $last over 40 steps"
check '[ -f $T/a/model.safetensors ] && [ -f $T/a/config.json ] && [ -f $T/a/reconstruction.png ]' "outputs missing"

# 2. stopped at step 15 by --max-steps, then resumed to 40
$MAEC pretrain $SMALL --data-path $DATA --output-dir $T/b --max-steps 15 > /dev/null 2>&1
$MAEC pretrain --resume $T/b --max-steps 40 > $T/b.log 2>&1
check '[ $? -eq 0 ]' "resume failed: $(tail -2 $T/b.log)"
check '[ "$(losses $T/a)" = "$(losses $T/b)" ]' "resumed losses differ from the uninterrupted run"

# 3. SIGINT in the middle, then resume (polled every 10 ms: the 40 steps of this
# tiny model can take well under a second on an idle machine)
$MAEC pretrain $SMALL --data-path $DATA --output-dir $T/c --max-steps 40 > $T/c.log 2>&1 &
pid=$!
for i in $(seq 1000); do [ -f $T/c/metrics.jsonl ] && [ $(wc -l < $T/c/metrics.jsonl) -ge 8 ] && break; sleep 0.01; done
kill -INT $pid; wait $pid; rc=$?
check '[ $rc -eq 130 ]' "SIGINT: exit $rc, expected 130"
check 'grep -q "checkpoint saved" $T/c.log' "SIGINT: no checkpoint message"
$MAEC pretrain --resume $T/c > /dev/null 2>&1
check '[ "$(losses $T/a)" = "$(losses $T/c)" ]' "losses after SIGINT + resume differ"

# 4. kill -9 in the middle (checkpoints every 4 steps), then resume
$MAEC pretrain $SMALL --data-path $DATA --output-dir $T/d --max-steps 40 --save-every 4 > /dev/null 2>&1 &
pid=$!
for i in $(seq 1000); do [ -f $T/d/metrics.jsonl ] && [ $(wc -l < $T/d/metrics.jsonl) -ge 14 ] && break; sleep 0.01; done
kill -9 $pid; wait $pid 2>/dev/null
check 'ls $T/d/checkpoint-*.safetensors > /dev/null 2>&1' "kill -9: no checkpoint on disk"
check '! ls $T/d/*.tmp.* > /dev/null 2>&1 || true' ""
touch $T/d/checkpoint-00000099.safetensors.tmp.12345   # as a kill during a save leaves
$MAEC pretrain --resume $T/d > $T/d.log 2>&1
check '[ $? -eq 0 ]' "resume after kill -9 failed: $(tail -2 $T/d.log)"
check '[ "$(losses $T/a)" = "$(losses $T/d)" ]' "losses after kill -9 + resume differ"
check '! ls $T/d/*.tmp.* > /dev/null 2>&1' "a stale temporary checkpoint was left"

# 5. --config repeats a run exactly
$MAEC pretrain --config $T/a/config.json --output-dir $T/e > /dev/null 2>&1
check '[ "$(losses $T/a)" = "$(losses $T/e)" ]' "--config did not repeat the run"

# 6. reconstruct
$MAEC reconstruct --model $T/a/model.safetensors --data-path $DATA --num-images 4 --out $T/r.png > /dev/null 2>&1
check '[ $? -eq 0 ] && [ -s $T/r.png ]' "reconstruct failed"
$MAEC reconstruct --model $T/a/checkpoint-00000040.safetensors --data-path $DATA --num-images 2 --out $T/r2.png > /dev/null 2>&1
check '[ $? -eq 0 ] && [ -s $T/r2.png ]' "reconstruct from a checkpoint failed"

# 7. bad input
expect_err() { # name, command...
    local name=$1; shift
    out=$("$@" 2>&1 >/dev/null); rc=$?
    if [ $rc -ne 0 ] && [ $rc -lt 128 ] && [[ "$out" == "maec: error: "* ]] && [ $(echo "$out" | wc -l) -eq 1 ]; then ok; echo "  $name -> $out"
    else bad "$name: exit $rc, message '$out'"; fi
}
expect_err "missing data" $MAEC pretrain $SMALL --data-path $T/nothing --output-dir $T/x
mkdir -p $T/empty
expect_err "empty folder" $MAEC pretrain $SMALL --data-path $T/empty --output-dir $T/x
printf 'garbage' > $T/bad.npy
expect_err "corrupt data file" $MAEC pretrain $SMALL --data-path $T/bad.npy --output-dir $T/x
expect_err "bad batch size" $MAEC pretrain --batch-size 0 --data-path $DATA --output-dir $T/x
expect_err "bad mask ratio" $MAEC pretrain $SMALL --mask-ratio 1 --data-path $DATA --output-dir $T/x
expect_err "bad number" $MAEC pretrain --blr fast --data-path $DATA --output-dir $T/x
expect_err "flag given twice" $MAEC pretrain --epochs 2 --epochs 3 --data-path $DATA --output-dir $T/x
expect_err "unknown flag" $MAEC pretrain --epoch 2 --data-path $DATA --output-dir $T/x
expect_err "bad strategy" $MAEC pretrain $SMALL --mask-strategy zigzag --data-path $DATA --output-dir $T/x
expect_err "two means" $MAEC pretrain $SMALL --mean 0.5,0.4 --std 0.3 --data-path $DATA --output-dir $T/x
expect_err "std without mean" $MAEC pretrain $SMALL --std 0.3 --data-path $DATA --output-dir $T/x
expect_err "std 0" $MAEC pretrain $SMALL --mean 0.5 --std 0,1,1 --data-path $DATA --output-dir $T/x
expect_err "mean not a number" $MAEC pretrain $SMALL --mean nan --std 1 --data-path $DATA --output-dir $T/x
expect_err "width vs heads" $MAEC pretrain --model fmnist-mini --num-heads 5 --data-path $DATA --output-dir $T/x
expect_err "resume, other model" $MAEC pretrain --resume $T/a --embed-dim 64
expect_err "resume, nothing there" $MAEC pretrain --resume $T/empty
cp $T/a/checkpoint-00000040.safetensors $T/corrupt.safetensors
size=$(stat -c %s $T/corrupt.safetensors)
printf '\x01\x02\x03\x04' | dd of=$T/corrupt.safetensors bs=1 seek=$((size - 1000)) conv=notrunc 2>/dev/null
expect_err "corrupt checkpoint" $MAEC pretrain --resume $T/corrupt.safetensors
grep -q checksum <<< "$out" && ok || bad "corrupt checkpoint: no checksum error"
head -c 3000 $T/a/checkpoint-00000040.safetensors > $T/short.safetensors
expect_err "truncated checkpoint" $MAEC pretrain --resume $T/short.safetensors
expect_err "reconstruct, no model" $MAEC reconstruct --model $T/none.safetensors --data-path $DATA
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
