#!/usr/bin/env bash
# Fault: damaged files. A real checkpoint with one byte changed (at random
# places in the data and in the JSON header), cut short at random lengths,
# or empty, must be refused by `maec pretrain --resume FILE` with one clear
# error line and a clean non-zero exit (checkpoints carry a CRC-32 of their
# data and one of their header). In a run folder whose newest checkpoint is
# damaged, --resume falls back to the one before, with a warning. Headers,
# config files and embedded configurations nested 100000 deep are refused,
# not a stack overflow (cJSON stops at CJSON_NESTING_LIMIT, 1000).
cd "$(dirname "$0")/.." || exit 1
. tests/lib.sh
T=$(mktemp -d /tmp/maec_fault_corrupt_XXXXXX)
trap 'rm -rf "$T"' EXIT
need_data
SEED=${FAULT_SEED:-$RANDOM}
RANDOM=$SEED
FLIPS=${FAULT_FLIPS:-40}
echo "  FAULT_SEED=$SEED"
SMALL="--model fmnist-mini --embed-dim 32 --depth 2 --num-heads 2 --decoder-embed-dim 32 --decoder-depth 1 --decoder-num-heads 2 --batch-size 32 --epochs 1 --warmup-epochs 0.01 --blr 1.5e-3 --log-every 1 --threads 1 --num-workers 1 --seed 3 --recon-every 0 --recon-images 0"
$MAEC pretrain $SMALL --data-path $DATA --output-dir "$T/run" --max-steps 4 --save-every 2 > /dev/null 2>&1
C="$T/run/checkpoint-00000004.safetensors"
[ -f "$C" ] || { echo "FAIL: no checkpoint"; echo "0 passed, 1 failed"; exit 1; }
SIZE=$(stat -c %s "$C")
HLEN=$(od -An -tu8 -N8 "$C" | tr -d ' ')
# the 15 bytes of the key "header_crc32": a change there only renames that
# key: the file is then read as one from before header checksums (its data
# still checked), which is right, so those bytes are not flipped below
KEYAT=$(grep -abo '"header_crc32":"' "$C" | head -1 | cut -d: -f1)

refused() { # name, file: resume must fail cleanly with one line
    local name=$1 file=$2 rc
    out=$($MAEC pretrain --resume "$file" --threads 1 2>&1 >/dev/null); rc=$?
    if [ $rc -ne 0 ] && [ $rc -lt 128 ] && [[ "$out" == "maec: error: "* ]] && [ "$(echo "$out" | wc -l)" -eq 1 ]; then
        ok; return 0
    fi
    bad "$name: exit $rc, message '$out'"; return 1
}
rand() { echo $(( (RANDOM * 32768 + RANDOM) % $1 )); }
flip() { # file, position: xor the byte with a random non-zero value
    local b x
    b=$(od -An -tu1 -j"$2" -N1 "$1" | tr -d ' ')
    x=$(( (RANDOM % 255) + 1 ))
    printf "\\$(printf %03o $(( b ^ x )))" | dd of="$1" bs=1 seek="$2" conv=notrunc 2>/dev/null
}

# 1. one byte changed: in the data, in the header (and its length prefix)
n_data=0; n_head=0; why=""
for i in $(seq "$FLIPS"); do
    if [ $((i % 2)) -eq 0 ]; then pos=$(( 8 + HLEN + $(rand $((SIZE - 8 - HLEN))) )); kind=data; n_data=$((n_data+1))
    else
        pos=$(rand $((8 + HLEN)))
        while [ -n "$KEYAT" ] && [ $pos -ge $((8 + KEYAT)) ] && [ $pos -lt $((8 + KEYAT + 15)) ]; do pos=$(rand $((8 + HLEN))); done
        kind=header; n_head=$((n_head+1))
    fi
    cp "$C" "$T/flip.safetensors"
    flip "$T/flip.safetensors" $pos
    if refused "byte $pos ($kind) changed" "$T/flip.safetensors"; then
        why="$why$(echo "$out" | sed 's/^maec: error: [^:]*: //; s/ (.*//; s/tensor .* data_offsets.*/data_offsets outside the data/')\n"
    fi
done 2>/dev/null
echo "  $FLIPS one-byte changes ($n_data in the data, $n_head in the header) refused:"
printf "$why" | sort | uniq -c | sed 's/^/    /'

# 2. cut short, and empty
for i in $(seq 10); do
    len=$(rand "$SIZE")
    head -c "$len" "$C" > "$T/short.safetensors"
    refused "cut to $len bytes" "$T/short.safetensors"
done
: > "$T/empty.safetensors"
refused "empty file" "$T/empty.safetensors"
echo "  10 truncations and an empty file refused"
out=$($MAEC pretrain --resume "$T/short.safetensors" 2>&1)
echo "  e.g. -> $out"

# 3. a run folder whose newest checkpoint is damaged resumes from the one before
flip "$C" $(( 8 + HLEN + SIZE / 2 ))
out=$($MAEC pretrain --resume "$T/run" --threads 1 --max-steps 6 2>&1); rc=$?
[ $rc -eq 0 ] && ok || bad "resume with a damaged newest checkpoint: exit $rc: $(echo "$out" | tail -2)"
echo "$out" | grep -q "warning: skipping .*checkpoint-00000004.*checksum" && ok || bad "no warning about the damaged checkpoint"
echo "$out" | grep -q "resuming from .*checkpoint-00000002" && ok || bad "did not resume from the checkpoint before"

# 4. nesting 100000 deep: a safetensors header, a --config file, a model's
# embedded configuration (in a file without checksums, as older files are)
N=100000
perl -e '$n=shift; $h="{\"a\":" . ("[" x $n) . ("]" x $n) . "}"; $h .= " " x ((8 - length($h) % 8) % 8); print pack("Q<", length $h), $h' $N > "$T/deep.safetensors"
refused "header nested $N deep" "$T/deep.safetensors"
out=$($MAEC info "$T/deep.safetensors" 2>&1); rc=$?
[ $rc -ne 0 ] && [ $rc -lt 128 ] && ok || bad "info on a deep header: exit $rc"
echo "  deep header -> $out"
perl -e '$n=shift; print "{\"model\":" . ("{\"a\":" x $n) . "1" . ("}" x $n) . "}"' $N > "$T/deep.json"
out=$($MAEC pretrain --config "$T/deep.json" 2>&1); rc=$?
[ $rc -ne 0 ] && [ $rc -lt 128 ] && [[ "$out" == "maec: error: "* ]] && ok || bad "--config nested $N deep: exit $rc, '$out'"
echo "  deep config.json -> $out"
perl -e '$n=shift; $cfg = ("[" x $n) . ("]" x $n); $h="{\"__metadata__\":{\"maec_config\":\"$cfg\"},\"patch_embed.proj.weight\":{\"dtype\":\"F32\",\"shape\":[4,1,1,1],\"data_offsets\":[0,16]}}"; $h .= " " x ((8 - length($h) % 8) % 8); print pack("Q<", length $h), $h, "\0" x 16' $N > "$T/deepmeta.safetensors"
out=$($MAEC info "$T/deepmeta.safetensors" 2>&1); rc=$?
[ $rc -ne 0 ] && [ $rc -lt 128 ] && [[ "$out" == "maec: error: "* ]] && ok || bad "embedded config nested $N deep: exit $rc, '$out'"
echo "  deep embedded configuration -> $out"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
