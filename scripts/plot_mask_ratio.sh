#!/usr/bin/env bash
# Linear-probe top-1 against the MAE mask ratio, drawn with gnuplot.
#   bash scripts/plot_mask_ratio.sh [DATA.dat] [OUT.png]
# DATA: lines "mask_ratio top1_percent [knn_top1_percent]" ('#' comments);
# by default docs/mask_ratio.dat, written by scripts/results_fmnist.sh.
set -e
cd "$(dirname "$0")/.."
DAT=${1:-docs/mask_ratio.dat}
OUT=${2:-docs/mask_ratio.png}
command -v gnuplot > /dev/null || { echo "gnuplot is not installed (apt-get install gnuplot-nox)" >&2; exit 1; }
[ -s "$DAT" ] || { echo "no data in $DAT" >&2; exit 1; }
TITLE=$(grep -m1 '^# title:' "$DAT" | sed 's/^# title: *//')
NCOL=$(grep -v '^#' "$DAT" | awk 'NF {print NF; exit}')
PLOT="'$DAT' using 1:2 with linespoints lw 2 pt 7 ps 1.2 title 'linear probe'"
[ "${NCOL:-2}" -ge 3 ] && PLOT="$PLOT, '$DAT' using 1:3 with linespoints lw 2 pt 5 ps 1.2 dt 2 title 'k-NN (k 20)'"
gnuplot <<GP
set terminal pngcairo size 720,480 font ",11" noenhanced
set output '$OUT'
set title "${TITLE:-MAE on Fashion-MNIST: accuracy vs mask ratio}"
set xlabel 'mask ratio'
set ylabel 'test top-1 (%)'
set xtics (0.25, 0.5, 0.75, 0.9)
set xrange [0.2:0.95]
set grid
set key below horizontal
plot $PLOT
GP
echo "wrote $OUT"
