#!/usr/bin/env bash
# The example programs (examples/) as a user builds them: `make examples`
# installs the library into build/prefix, builds each program against it
# through pkg-config, shared and static, and runs them: pretrain_array
# trains on images in memory and writes a model, encode_images reads it and
# prints features. The static and shared programs give the same features;
# errors are a message and a non-zero exit; the pkg-config file follows a
# later install's PREFIX (a relative one made absolute). Uses the default
# build (build/), whatever MAEC_BUILD says: the examples link a plain build.
cd "$(dirname "$0")/.." || exit 1
. tests/lib.sh
T=$(mktemp -d /tmp/maec_cli_examples_XXXXXX)
[ -n "$KEEP" ] || trap 'rm -rf "$T" build/relprefix' EXIT
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=2
E=build/examples

make --no-print-directory examples > $T/make.log 2>&1
rc=$?; check '[ $rc -eq 0 ]' "make examples failed (exit $rc): $(grep -v '^image' $T/make.log | tail -4)"
check 'grep -q "^prefix=$PWD/build/prefix$" build/prefix/lib/pkgconfig/maec.pc' "build/prefix's maec.pc does not name build/prefix"
for p in pretrain_array encode_images knn_eval; do
    check '[ -x $E/$p ] && [ -x $E/$p-static ]' "$p: not built shared and static"
    check 'readelf -d $E/$p | grep -q "NEEDED.*libmaec.so"' "$E/$p does not link libmaec.so"
    check '! readelf -d $E/$p-static | grep -q "libmaec.so"' "$E/$p-static links libmaec.so"
done

# pretrain_array: a loss line every 16 of its 160 steps, the held-out loss down, a model written
line=$(grep "^held-out loss" $T/make.log)
check '[[ "$line" == *"model written to $PWD/$E/pretrain_array.safetensors" ]]' "pretrain_array wrote no model: $line"
check '[ -s $E/pretrain_array.safetensors ]' "no $E/pretrain_array.safetensors"
check '[ "$(grep -c "^step .* loss [0-9.]*$" $T/make.log)" -eq 10 ]' "pretrain_array did not print 10 loss lines"
check 'echo "$line" | awk "{exit !(\$5 < \$3 * 0.8)}"' "the held-out loss did not go down by a fifth: $line"

# encode_images, shared then static, on that model: [40, 64] features, the same values
check '[ "$(grep -c "^features \[40, 64\]$" $T/make.log)" -eq 2 ]' "encode_images did not print features [40, 64] twice"
check 'grep -q "normalization {\"mean\": \[0.2\], \"std\": \[0.3\]}" $T/make.log' "the model's metadata did not reach encode_images"
grep "^image" $T/make.log > $T/feat
check '[ "$(wc -l < $T/feat)" -eq 8 ] && [ "$(head -4 $T/feat)" = "$(tail -4 $T/feat)" ]' \
    "shared and static encode_images differ: $(cat $T/feat)"
check '[ "$(sed -n 1p $T/feat)" != "$(sed -n 2p $T/feat)" ]' "two different images gave the same features"

# knn_eval: the model evaluated on a cut of Fashion-MNIST through maec_data.h,
# the same k-NN top-1 as `maec knn` gives
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
if [ -d "$DATA" ]; then
    . scripts/idx.sh
    cut_fmnist "$DATA" $T/d 512 256
    out=$($E/knn_eval $E/pretrain_array.safetensors $T/d 10 2>&1); rc=$?
    ours=$(echo "$out" | sed -n 's/^k-NN (k 10, T 0.07) top-1: \([0-9.]*\)%$/\1/p')
    check '[ $rc -eq 0 ] && [ -n "$ours" ]' "knn_eval: exit $rc, $out"
    cli=$(build/maec knn --model $E/pretrain_array.safetensors --data-path $T/d --k 10 2>&1 |
        sed -n 's/.*"knn_top1":\([0-9.]*\),.*/\1/p' | awk '{printf "%.2f", 100 * $1}')
    check '[ -n "$ours" ] && [ "$ours" = "$cli" ]' "knn_eval says $ours%, maec knn $cli%"
    out=$($E/knn_eval-static $E/pretrain_array.safetensors $T/nothing 2>&1); rc=$?
    check '[ $rc -ne 0 ] && [[ "$out" == "knn_eval: "* ]] && [ "$(echo "$out" | wc -l)" -eq 1 ]' "knn_eval, no data: exit $rc, $out"
else
    echo "  (no $DATA: knn_eval not run)"
fi

# errors: a one-line message and a non-zero exit
out=$($E/encode_images $T/missing.safetensors 2>&1); rc=$?
check '[ $rc -ne 0 ] && [[ "$out" == "encode_images: "* ]] && [ "$(echo "$out" | wc -l)" -eq 1 ]' "a missing model: exit $rc, $out"
out=$($E/encode_images 2>&1); rc=$?
check '[ $rc -eq 2 ] && [[ "$out" == usage:* ]]' "no arguments: exit $rc, $out"
out=$($E/pretrain_array-static $T/no/such/dir/m.safetensors 2>&1 > /dev/null); rc=$?
check '[ $rc -ne 0 ] && [[ "$out" == "pretrain_array: "*"(error 2)" ]] && [ "$(echo "$out" | wc -l)" -eq 1 ]' "an unwritable output: exit $rc, $out"

# a later install elsewhere, PREFIX relative: its maec.pc names it, absolute, and
# the command line of the README builds and runs against it
make --no-print-directory -s install PREFIX=build/relprefix > $T/install.log 2>&1
check '[ $? -eq 0 ]' "make install PREFIX=build/relprefix failed: $(tail -2 $T/install.log)"
check 'grep -q "^prefix=$PWD/build/relprefix$" build/relprefix/lib/pkgconfig/maec.pc' \
    "maec.pc not regenerated for PREFIX=build/relprefix: $(head -1 build/relprefix/lib/pkgconfig/maec.pc)"
export PKG_CONFIG_PATH=$PWD/build/relprefix/lib/pkgconfig
cc -o $T/enc examples/encode_images.c $(pkg-config --cflags --libs --static maec) -Wl,-rpath,$PWD/build/relprefix/lib 2> $T/cc.log
check '[ $? -eq 0 ]' "cc \$(pkg-config --cflags --libs --static maec) failed: $(head -3 $T/cc.log)"
check '$T/enc $E/pretrain_array.safetensors 4 | grep -q "^features \[4, 64\]$"' "the program built by the README's line did not run"
check 'ldd $T/enc | grep -q "libmaec.so => $PWD/build/relprefix/lib/"' "not linked against build/relprefix: $(ldd $T/enc | grep maec)"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
