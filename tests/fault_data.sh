#!/usr/bin/env bash
# Fault: the data changes under a running job. An image folder (decoded on
# the fly by loader threads) whose file is deleted, overwritten with garbage
# or cut short mid-run, or which is deleted whole, must stop the run with one
# clear error line naming the file, a clean non-zero exit, and no hang (each
# run is limited to 120 s); an image replaced by another valid image (other
# size, RGB) is read as it is now. A .npy data set is read into memory at the
# start: deleting or overwriting it mid-run does not disturb the run, and a
# later --resume says clearly that the data is gone.
cd "$(dirname "$0")/.." || exit 1
. tests/lib.sh
T=$(mktemp -d /tmp/maec_fault_data_XXXXXX)
trap 'rm -rf "$T"' EXIT
SMALL="--model fmnist-mini --embed-dim 32 --depth 2 --num-heads 2 --decoder-embed-dim 32 --decoder-depth 1 --decoder-num-heads 2 --batch-size 32 --epochs 1000 --warmup-epochs 0.01 --blr 1.5e-3 --log-every 1 --threads 1 --seed 3 --recon-every 0 --recon-images 0 --save-every 20"

# four 28x28 gray PNGs and one 40x30 RGB PNG
IMG[0]='iVBORw0KGgoAAAANSUhEUgAAABwAAAAcCAAAAABXZoBIAAABkElEQVR42mNgYGbj5OEXEpWQllNUUdfSNTA2s7Sxd3L18PYLZOATFBGXklVQVtPU0TcytbC2c3Rx9/INCA6LjIlnkJFXUtXQ1jM0MbeydXB28/TxDwqNiI5LTEnPymVANSgkPCo2ITktMye/qLSimgHVoKTUjOy8wpLyqtqG5rZOBlSDCorLKmvqm1o7uvsmTpnOgGpQXWNLe1fvhMnTZs6Zv2gpA6pBPf2Tps6YPW/hkuWr1m7YzIBq0Ky5CxYvW7lm/aatO3bvO8iAatCK1es2btm+a++Bw8dOnjnPgGrQtp179h86euL0uYtXrt+6y4Bq0JHjp85euHzt5p37j56+eM2AatClqzdu33v45Pmrtx8+f/vJgGrQg8fPXr55/+nrj9//GFnYGVANevfxy/dff2ExxYBq0J//TKwc3LCYYkA1iItXQFhMEhZTDKgGoUY5A6pBqFHOgGoQapQzYEs7sJhiwJZ2YDHFgC3twGKKAVvagcUUA7a0A4spBmxpBxZTDNjSDiymGLClHVhMAQAyumrosjJUdwAAAABJRU5ErkJggg=='
IMG[1]='iVBORw0KGgoAAAANSUhEUgAAABwAAAAcCAAAAABXZoBIAAAAvklEQVR42n3SEQMCURQF4YEgCIIgCIKFIFgIgiAIgiBYCIKFIAiCIAiCIAiCIAiCIAiCIAiCIAiCIAiCIAiCIAi6f+A8/nCGTNbP5QvFUrlSDWr1sNFstTvdXn8wHI0nSJnO5khZLFdIWW+2SNntD0g5ns5IuVxvSLk/nkh5vT9I+f5ASiQaQ0o8kURKKu0hxYogxYogxYogxYogxYogxYogxYogxYrgOQ7DdxxGwXEYZcdhBI7DCB2H0XIc9gfCLIMQckiEWQAAAABJRU5ErkJggg=='
IMG[2]='iVBORw0KGgoAAAANSUhEUgAAABwAAAAcCAAAAABXZoBIAAAArklEQVR42nXJoWIBAABF0RsURVEURVGUFUVRFIVAIEwgECwQCBYmEAgEAoFAIBAIBAKBQCAQCASKsqIofME79eAPhiOxxE86+5svlqv1ZrvbH46n8+V6uz+i63xF1/2Brv8nul5vdBmM6DKZ0WWxostmR5fjC11OF7rcHnR5fegKhND1HUVXPImuVAZduT90FUroqtTQ1Wihq9ND12CErskMXYsVujY7dB1O6LrcPv6Rkzj/rRm3AAAAAElFTkSuQmCC'
IMG[3]='iVBORw0KGgoAAAANSUhEUgAAABwAAAAcCAAAAABXZoBIAAABB0lEQVR42mOoqGvpmjBtzqIV67bsOnDszKUb9568+vDtDxMHn4gUQ0Nbz6QZ85as2rBtz6ET567cevDszacf/1i4BMRklBg6+qbMWrBszaYd+46cunDtzqMX7778YmDjEZKQU9FiwGWkgpqOEQMuIzX0TKwYcBlpYGbjxIDLSAs7Fy8GXEY6uPkEMeAy0sMvJIoBl5EBYTFJDLiMjIhLyWLAZWRCWk4RAy4jM/JKqhhwGVlQVtPEgMtIUGwx4DISFFsMuIwExRYDLiNBscWAy0hQbDHgMhIUWwy4jATFFgMuI0GxxYDLSFBsMeAyEhRbDLiMBMUWAy4jQbHFgMtIUGwx4DISFFsAMTp0YPR9O8AAAAAASUVORK5CYII='
RGB='iVBORw0KGgoAAAANSUhEUgAAACgAAAAeCAIAAADRv8uKAAABzUlEQVR42mNg4JVSN3H0i84obeqfs3Lb4Qt3X31nEZTTtnANis+pbJu8YO2u41cevvvNIaqkb+MZllxQ2zV9ycZ9p288/fSfR1LN2ME3Kr2ksW/2iq2Hzt95+Y1ZQFbL3CUwLruiddL8NTuPXX7w9he7iKKetUdoUn5N57TFG/aeuv7k4z9uBglVI3ufyLTiht5Zy7ccPHf7xVcmfhlNM+eA2KzylonzVu84eun+m59swgq6Vu4hiXnVHVMXrd9z8trjD3+5xFUM7bwjUovqe2Yu23zg7K3nXxj5pDVMnfxjMsuaJ8xdtf3IxXuvf7AKyetYugUn5Fa1T1m4bveJq4/e/+EUU2YwsPUKTyms656xdNP+MzeffaZXCDCgBwG9QoABPQjoFQIMhBIBrUKAgVAioFUIMJCaDagVAgykZgNqhQADpQUBuSHAQGlBQG4IMFC7KCQ2BBioXRQSGwIMtK4McIUAA60rA1whwEDv6hAWAgz0rg5hIcBA7+oQFgIM9K4OYSHAQO/qEBYCDPSuDmEhwEDv6hAWAgz0rg5hIcBA7+oQFgIM9K4OYSHAQO/qEBYCDPSuDmEhwEDv6hAWAgz0rg5hIcBA7+oQFgIAkd7/c6r4DJ0AAAAASUVORK5CYII='

make_folder() { # dir: 2 classes x 128 images
    local d=$1
    for c in a b; do
        mkdir -p "$d/$c"
        for i in $(seq -w 0 127); do echo "${IMG[$((10#$i % 4))]}" | base64 -d > "$d/$c/img$i.png"; done
    done
}

# run in the background, wait for training to start, do $2, wait for the end
run_and() { # name, action, extra flags...
    local name=$1 action=$2; shift 2
    $MAEC pretrain $SMALL "$@" > "$T/$name.out" 2> "$T/$name.err" &
    local pid=$!
    for k in $(seq 600); do grep -q "^output:" "$T/$name.out" 2>/dev/null && break; kill -0 $pid 2>/dev/null || break; sleep 0.1; done
    sleep 0.3
    eval "$action"
    local waited=0
    while kill -0 $pid 2>/dev/null && [ $waited -lt 1200 ]; do sleep 0.1; waited=$((waited+1)); done
    if kill -0 $pid 2>/dev/null; then kill -9 $pid; wait $pid 2>/dev/null; RC=124; else wait $pid; RC=$?; fi
}

expect_error() { # run name, label, what the message must contain
    local err; err=$(cat "$T/$1.err")
    if [ $RC -eq 124 ]; then bad "$2: hung (killed after 120 s)"; return; fi
    if [ $RC -ne 0 ] && [ $RC -lt 128 ] && [[ "$err" == "maec: error: "* ]] && [ "$(echo "$err" | wc -l)" -eq 1 ] && [[ "$err" == *"$3"* ]]; then
        ok; echo "  $2 -> $err"
    else
        bad "$2: exit $RC, message '$err' (want one line naming '$3')"
    fi
}

for workers in 1 2; do
    make_folder "$T/f$workers"
    run_and "deleted-w$workers" "rm '$T/f$workers/b/img100.png'" --data-path "$T/f$workers" --output-dir "$T/o" --num-workers $workers --max-steps 2000
    expect_error "deleted-w$workers" "image deleted mid-run (--num-workers $workers)" "img100.png"
done
make_folder "$T/g"
run_and garbage "head -c 300 /dev/urandom > '$T/g/a/img007.png'" --data-path "$T/g" --output-dir "$T/o" --num-workers 1 --max-steps 2000
expect_error garbage "image overwritten with garbage mid-run" "img007.png"
make_folder "$T/h"
run_and truncated "head -c 200 '$T/h/a/img009.png' > '$T/cut.png' && mv '$T/cut.png' '$T/h/a/img009.png'" --data-path "$T/h" --output-dir "$T/o" --num-workers 2 --max-steps 2000
expect_error truncated "image cut short mid-run" "img009.png"
make_folder "$T/k"
run_and folder "rm -rf '$T/k'" --data-path "$T/k" --output-dir "$T/o" --num-workers 1 --max-steps 2000
expect_error folder "whole folder deleted mid-run" "$T/k"
make_folder "$T/v"
run_and replaced "echo '$RGB' | base64 -d > '$T/v/a/img011.png'" --data-path "$T/v" --output-dir "$T/o2" --num-workers 1 --max-steps 40
[ $RC -eq 0 ] && ok || bad "image replaced by a valid RGB image of another size: exit $RC: $(cat "$T/replaced.err")"

# a .npy data set lives in memory once opened
perl -e '$d = "{\x27descr\x27: \x27|u1\x27, \x27fortran_order\x27: False, \x27shape\x27: (256, 28, 28), }";
    $d .= " " x (127 - 10 - length $d) . "\n"; print "\x93NUMPY\x01\x00", pack("v", length $d), $d' > "$T/x.npy"
head -c $((256 * 784)) /dev/urandom >> "$T/x.npy"
run_and npy-deleted "rm '$T/x.npy'" --data-path "$T/x.npy" --output-dir "$T/n" --num-workers 2 --max-steps 40
[ $RC -eq 0 ] && ok || bad ".npy deleted mid-run: exit $RC: $(cat "$T/npy-deleted.err")"
out=$($MAEC pretrain --resume "$T/n" --max-steps 60 2>&1 >/dev/null); rc=$?
[ $rc -ne 0 ] && [ $rc -lt 128 ] && [[ "$out" == "maec: error: "*"x.npy"* ]] && ok || bad "resume without the .npy: exit $rc: '$out'"
echo "  resume after the .npy was deleted -> $out"
echo "garbage" > "$T/x.npy"
out=$($MAEC pretrain --resume "$T/n" --max-steps 60 2>&1 >/dev/null); rc=$?
[ $rc -ne 0 ] && [ $rc -lt 128 ] && [[ "$out" == "maec: error: "*"x.npy"* ]] && ok || bad "resume with a changed .npy: exit $rc: '$out'"
echo "  resume after the .npy was overwritten -> $out"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
