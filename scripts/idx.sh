# Shell helpers shared by scripts/results_fmnist.sh and the CLI tests.
# cut_idx SRC.gz DST FIRST COUNT ITEM_BYTES HEADER_BYTES: items
# [FIRST, FIRST+COUNT) of a gzipped IDX file, under its own header with the
# count changed (big-endian); written to DST.tmp, then renamed
cut_idx() {
    local src=$1 dst=$2 first=$3 n=$4 per=$5 hdr=$6
    { zcat "$src" | head -c 4
      printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $((n >> 24 & 255)) $((n >> 16 & 255)) $((n >> 8 & 255)) $((n & 255)))"
      zcat "$src" | head -c "$hdr" | tail -c +9
      zcat "$src" | tail -c +$((hdr + 1 + first * per)) | head -c $((n * per)); } > "$dst.tmp" && mv "$dst.tmp" "$dst"
}

# cut_fmnist SRC_DIR DST_DIR NTRAIN NTEST: the first NTRAIN training and
# NTEST test images of Fashion-MNIST (or MNIST) with their labels, as an
# IDX data set in DST_DIR (the tests' small data)
cut_fmnist() {
    local src=$1 dst=$2 ntr=$3 nte=$4
    mkdir -p "$dst"
    cut_idx "$src/train-images-idx3-ubyte.gz" "$dst/train-images-idx3-ubyte" 0 "$ntr" 784 16
    cut_idx "$src/train-labels-idx1-ubyte.gz" "$dst/train-labels-idx1-ubyte" 0 "$ntr" 1 8
    cut_idx "$src/t10k-images-idx3-ubyte.gz" "$dst/t10k-images-idx3-ubyte" 0 "$nte" 784 16
    cut_idx "$src/t10k-labels-idx1-ubyte.gz" "$dst/t10k-labels-idx1-ubyte" 0 "$nte" 1 8
}
