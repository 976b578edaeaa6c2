# Shell helper shared by scripts/results_fmnist.sh and tests/cli_eval.sh.
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
