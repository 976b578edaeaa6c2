#!/usr/bin/env bash
# The runs behind docs/RESULTS.md, one after another (hours on 2 cores).
#   bash scripts/results_fmnist.sh [ROW...]     # default: every row, in order
# A row whose runs/results/<row>.done exists is skipped, so the script can be
# stopped and started again. Logs: runs/results/<row>.log (the command, its
# output, its wall time). Rows:
#   pretrain  the MAE (fmnist-mini, 10 epochs) every other row uses
#   raw       logistic regression on raw pixels (linprobe --raw-pixels)
#   knn       MAE k-NN
#   lin       MAE linear probe (features once, then the probe; blr 0.1, 1, 4)
#   lin-mean  the same on the mean of the patch tokens, and its k-NN
#   lin-rand  linear probe of a randomly initialized encoder
#   ft        MAE full fine-tuning
#   scratch   the same ViT trained from scratch, same budget
#   ft2, ft1  MAE partial fine-tuning (last 2 / 1 blocks)
#   mask      linear probe vs mask ratio (0.25/0.5/0.75/0.9, short pretraining)
#   pretrain30, lin30, ft30  the same MAE pretrained 3x longer (30 epochs),
#             then its k-NN and linear probes (class token and mean of patch
#             tokens) and its full fine-tuning (the recipe of row ft)
#   ft30x30   the 30-epoch MAE fine-tuned for 30 epochs (not in the default list)
#   val       (not in the default list) the fine-tuning recipe chosen on a
#             held-out split: the first 50,000 training images against the
#             last 10,000 (runs/val, made with head/tail), test split unused
#   ft30x30nc, scratch30nc  (not in the default list) the recipe row val
#             chose (no random crop) for 30 epochs: the 30-epoch MAE
#             fine-tuned, and the same ViT from scratch; each resumes
#   pretrain100, ft100, scratch50  (not in the default list) a 100-epoch MAE,
#             fine-tuned for 50 epochs, and the same ViT from scratch for 50
#             epochs (both with the recipe row val chose); hours each on 2
#             cores, so each resumes where it stopped
#   valaug  (not in the default list) the official augmentation (RandAugment,
#             random erasing; with and without mixup/cutmix) on runs/val,
#             against row val's flips only
#   lin100  (not in the default list) rows 3-4b for the 100-epoch MAE
#   ft100x30nc  (not in the default list) the 100-epoch MAE fine-tuned with
#             the recipe and budget of ft30x30nc (30 epochs), against
#             scratch30nc; resumes
cd "$(dirname "$0")/.." || exit 1
MAEC=${MAEC:-./build/maec}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
R=runs/results
MAE=runs/mae10/model.safetensors
J=${J:---threads 2 --num-workers 1}  # J="--threads 1 ..." to share the machine with another row
export OMP_WAIT_POLICY=PASSIVE  # the machine is shared: do not spin
mkdir -p $R $R/feat

# run ROW command... : logs, times, marks done
run() {
    local row=$1; shift
    echo "\$ $*" > $R/$row.log
    local t0=$(date +%s)
    "$@" >> $R/$row.log 2>&1
    local rc=$?
    echo "wall_s $(( $(date +%s) - t0 )) rc $rc" >> $R/$row.log
    return $rc
}
row() { # ROW: run it unless done
    local r=$1
    [ -e $R/$r.done ] && { echo "skip $r (done)"; return 0; }
    echo "== $r ($(date +%H:%M))"
    if "row_$r"; then touch $R/$r.done; tail -2 $R/$r.log 2>/dev/null; else echo "row $r failed: see $R/$r.log"; fi
}

row_pretrain() {
    run pretrain $MAEC pretrain --model fmnist-mini --data-path $DATA --output-dir runs/mae10 --epochs 10 \
        --warmup-epochs 1 --batch-size 128 --blr 1e-3 --norm-pix-loss --seed 0 $J --log-every 100 --recon-every 5
}
row_raw() {
    run raw $MAEC linprobe --raw-pixels --data-path $DATA --output-dir $R/raw --epochs 90 --warmup-epochs 10 \
        --blr 0.1 --seed 0 $J
}
row_knn() {
    run knn $MAEC knn --model $MAE --data-path $DATA --feature cls --k 20 --t 0.07 --output-dir $R/knn $J
}
LIN="--epochs 90 --warmup-epochs 10 --seed 0"
row_lin() {
    run lin-embed bash -c "$MAEC embed --model $MAE --data-path $DATA --split train --out $R/feat/mae_train.npy $J &&
        $MAEC embed --model $MAE --data-path $DATA --split test --out $R/feat/mae_test.npy $J" || return 1
    for blr in 0.1 1 4; do
        run lin-blr$blr $MAEC linprobe --train-features $R/feat/mae_train.npy --test-features $R/feat/mae_test.npy \
            --output-dir $R/lin-blr$blr --blr $blr $LIN || return 1
    done
}
row_lin-mean() { # the same with the mean of the patch tokens (after the final norm)
    if [ ! -s $R/feat/mae_mean_test.npy ]; then
        run lin-mean-embed bash -c "$MAEC embed --model $MAE --data-path $DATA --split train --feature mean --out $R/feat/mae_mean_train.npy $J &&
            $MAEC embed --model $MAE --data-path $DATA --split test --feature mean --out $R/feat/mae_mean_test.npy $J" || return 1
    fi
    run knn-mean $MAEC knn --train-features $R/feat/mae_mean_train.npy --test-features $R/feat/mae_mean_test.npy \
        --output-dir $R/knn-mean || return 1
    for blr in 0.1 1 4; do
        run lin-mean-blr$blr $MAEC linprobe --train-features $R/feat/mae_mean_train.npy --test-features $R/feat/mae_mean_test.npy \
            --output-dir $R/lin-mean-blr$blr --blr $blr $LIN || return 1
    done
}
row_lin-rand() {
    run lin-rand-embed bash -c "$MAEC embed --model fmnist-mini --seed 0 --data-path $DATA --split train --out $R/feat/rand_train.npy $J &&
        $MAEC embed --model fmnist-mini --seed 0 --data-path $DATA --split test --out $R/feat/rand_test.npy $J" || return 1
    for blr in 0.1 1 4; do
        run lin-rand-blr$blr $MAEC linprobe --train-features $R/feat/rand_train.npy --test-features $R/feat/rand_test.npy \
            --output-dir $R/lin-rand-blr$blr --blr $blr $LIN || return 1
    done
}
FT="--data-path $DATA --epochs 10 --warmup-epochs 1 --batch-size 128 --blr 1e-3 --weight-decay 0.05 --drop-path 0.1
    --smoothing 0.1 --mixup 0 --cutmix 0 --aa none --reprob 0 --crop-min 0.5 --seed 0 --log-every 100 $J"
row_ft()      { run ft $MAEC finetune --model $MAE $FT --layer-decay 0.75 --output-dir $R/ft; }
row_scratch() { run scratch $MAEC finetune --model fmnist-mini $FT --layer-decay 1 --output-dir $R/scratch; }
row_ft2()     { run ft2 $MAEC finetune --model $MAE $FT --layer-decay 0.75 --tune-blocks 2 --output-dir $R/ft2; }
row_ft1()     { run ft1 $MAEC finetune --model $MAE $FT --layer-decay 0.75 --tune-blocks 1 --output-dir $R/ft1; }
row_mask() {
    local dat=docs/mask_ratio.dat
    for r in 0.25 0.5 0.75 0.9; do
        local d=runs/mask$r
        if [ ! -e $R/mask$r.done ]; then
            run mask$r-pretrain $MAEC pretrain --model fmnist-mini --data-path $DATA --output-dir $d --epochs 2 \
                --warmup-epochs 0.2 --batch-size 128 --blr 1e-3 --norm-pix-loss --mask-ratio $r --seed 0 $J \
                --log-every 100 --recon-every 0 || return 1
            run mask$r-embed bash -c "$MAEC embed --model $d/model.safetensors --data-path $DATA --split train --out $d/train.npy $J &&
                $MAEC embed --model $d/model.safetensors --data-path $DATA --split test --out $d/test.npy $J" || return 1
            run mask$r-knn $MAEC knn --train-features $d/train.npy --test-features $d/test.npy --output-dir $d/knn || return 1
            run mask$r-lin $MAEC linprobe --train-features $d/train.npy --test-features $d/test.npy --output-dir $d/lin \
                --blr ${MASK_BLR:-1} $LIN || return 1
            touch $R/mask$r.done
        fi
    done
    { echo "# title: MAE fmnist-mini, 2 pretraining epochs per point; linear probe (90 epochs, blr ${MASK_BLR:-1})"
      echo "# mask_ratio linprobe_top1_% knn_top1_%"
      for r in 0.25 0.5 0.75 0.9; do
          lin=$(grep '"final"' runs/mask$r/lin/metrics.jsonl | grep -o '"test_top1":[0-9.]*' | cut -d: -f2)
          knn=$(grep -o '"knn_top1":[0-9.]*' runs/mask$r/knn/metrics.jsonl | tail -1 | cut -d: -f2)
          awk -v r=$r -v a=$lin -v b=$knn 'BEGIN {printf "%s %.2f %.2f\n", r, 100*a, 100*b}'
      done; } > $dat
    bash scripts/plot_mask_ratio.sh $dat docs/mask_ratio.png
}

row_pretrain30() {
    run pretrain30 $MAEC pretrain --model fmnist-mini --data-path $DATA --output-dir runs/mae30 --epochs 30 \
        --warmup-epochs 2 --batch-size 128 --blr 1e-3 --norm-pix-loss --seed 0 $J --log-every 100 --recon-every 10
}
# k-NN and linear probes (blr 0.1, 1, 4) on the class token and on the mean
# of the patch tokens of the MAE in runs/mae$1; features in $R/feat/mae$1_*
lin_rows() {
    local T=mae$1 M=runs/mae$1/model.safetensors
    for f in cls mean; do
        if [ ! -s $R/feat/${T}_${f}_test.npy ]; then
            run lin$1-$f-embed bash -c "$MAEC embed --model $M --data-path $DATA --split train --feature $f --out $R/feat/${T}_${f}_train.npy $J &&
                $MAEC embed --model $M --data-path $DATA --split test --feature $f --out $R/feat/${T}_${f}_test.npy $J" || return 1
        fi
        run knn$1-$f $MAEC knn --train-features $R/feat/${T}_${f}_train.npy --test-features $R/feat/${T}_${f}_test.npy \
            --output-dir $R/knn$1-$f || return 1
        for blr in 0.1 1 4; do
            run lin$1-$f-blr$blr $MAEC linprobe --train-features $R/feat/${T}_${f}_train.npy \
                --test-features $R/feat/${T}_${f}_test.npy --output-dir $R/lin$1-$f-blr$blr --blr $blr $LIN || return 1
        done
    done
}
row_lin30() { lin_rows 30; }
row_ft30() { run ft30 $MAEC finetune --model runs/mae30/model.safetensors $FT --layer-decay 0.75 --output-dir $R/ft30; }
# the 30-epoch MAE fine-tuned three times longer too (30 epochs, 2 warm-up)
FT_LONG=${FT/--epochs 10 --warmup-epochs 1/--epochs 30 --warmup-epochs 2}
row_ft30x30() { run ft30x30 $MAEC finetune --model runs/mae30/model.safetensors $FT_LONG --layer-decay 0.75 --output-dir $R/ft30x30; }

# Recipe choice without the test split: runs/val holds the first 50,000
# training images as its train split and the last 10,000 as its test split
# (cut_idx of scripts/idx.sh).
. scripts/idx.sh
make_val() {
    local d=runs/val
    [ -s $d/t10k-labels-idx1-ubyte ] && return 0
    mkdir -p $d &&
    cut_idx $DATA/train-images-idx3-ubyte.gz $d/train-images-idx3-ubyte 0 50000 784 16 &&
    cut_idx $DATA/train-images-idx3-ubyte.gz $d/t10k-images-idx3-ubyte 50000 10000 784 16 &&
    cut_idx $DATA/train-labels-idx1-ubyte.gz $d/train-labels-idx1-ubyte 0 50000 1 8 &&
    cut_idx $DATA/train-labels-idx1-ubyte.gz $d/t10k-labels-idx1-ubyte 50000 10000 1 8
}
# the 30-epoch MAE fine-tuned for 10 epochs on runs/val, with the crop of
# row ft (area 0.5-1) and without any crop (flips only); the two run side by
# side, a thread each
row_val() {
    make_val || return 1
    local V="${FT/--data-path $DATA/--data-path runs/val} --layer-decay 0.75 --model runs/mae30/model.safetensors"
    V=${V/--threads 2/--threads 1}
    run val-crop05 $MAEC finetune $V --output-dir $R/val-crop05 & local p1=$!
    run val-nocrop $MAEC finetune ${V/--crop-min 0.5/--no-random-crop} --output-dir $R/val-nocrop & local p2=$!
    wait $p1 && wait $p2
}

# the official augmentation on the held-out split, against row val's
# val-nocrop (flips only): flips + RandAugment (rand-m9-mstd0.5-inc1) +
# random erasing 0.25, without and with mixup 0.8 / cutmix 1.0; the two
# side by side, a thread each, as row val
row_valaug() {
    make_val || return 1
    local V="${FT/--data-path $DATA/--data-path runs/val} --layer-decay 0.75 --model runs/mae30/model.safetensors"
    V=${V/--threads 2/--threads 1}
    V=${V/--crop-min 0.5/--no-random-crop}
    V=${V/--aa none --reprob 0/--aa rand-m9-mstd0.5-inc1 --reprob 0.25}
    run val-aug $MAEC finetune $V --output-dir $R/val-aug & local p1=$!
    run val-augmix $MAEC finetune ${V/--mixup 0 --cutmix 0/--mixup 0.8 --cutmix 1.0} --output-dir $R/val-augmix & local p2=$!
    wait $p1 && wait $p2
}

# A longer budget, run across several sittings: each row resumes its run
# when a checkpoint is there (a stopped row is not marked done), and each
# sitting logs to its own file ($R/<row>-MMDD-HHMM.log).
# resumable ROW CHECKPOINT DIR SUBCOMMAND ARGS...: continue the run in DIR
# (maec SUBCOMMAND --resume DIR) when CHECKPOINT (a glob) is there, else
# start it with ARGS
resumable() {
    local row=$1 ck=$2 dir=$3 cmd=$4; shift 4
    local log=$row-$(date +%m%d-%H%M)
    if ls $ck > /dev/null 2>&1; then run $log $MAEC $cmd --resume $dir $J
    else run $log $MAEC $cmd "$@"; fi
}
row_pretrain100() {
    resumable pretrain100 'runs/mae100/checkpoint-*.safetensors' runs/mae100 pretrain --model fmnist-mini \
        --data-path $DATA --output-dir runs/mae100 --epochs 100 --warmup-epochs 5 --batch-size 128 --blr 1e-3 \
        --norm-pix-loss --seed 0 $J --log-every 100 --recon-every 20
}
# the recipe row val chose: flips, no random crop; 30 epochs (2 warm-up)
FT_NC=${FT_LONG/--crop-min 0.5/--no-random-crop}
row_ft30x30nc() {
    resumable ft30x30nc $R/ft30x30nc/checkpoint.safetensors $R/ft30x30nc finetune \
        --model runs/mae30/model.safetensors $FT_NC --layer-decay 0.75 --output-dir $R/ft30x30nc
}
row_scratch30nc() {
    resumable scratch30nc $R/scratch30nc/checkpoint.safetensors $R/scratch30nc finetune --model fmnist-mini \
        $FT_NC --layer-decay 1 --output-dir $R/scratch30nc
}
row_ft100x30nc() {
    resumable ft100x30nc $R/ft100x30nc/checkpoint.safetensors $R/ft100x30nc finetune \
        --model runs/mae100/model.safetensors $FT_NC --layer-decay 0.75 --output-dir $R/ft100x30nc
}
FT50=${FT/--epochs 10 --warmup-epochs 1/--epochs 50 --warmup-epochs 5}
FT50=${FT50/--crop-min 0.5/--no-random-crop}  # the recipe row val chose
row_ft100() {
    resumable ft100 $R/ft100/checkpoint.safetensors $R/ft100 finetune --model runs/mae100/model.safetensors \
        $FT50 --layer-decay 0.75 --output-dir $R/ft100
}
row_lin100() { lin_rows 100; }
row_scratch50() {
    resumable scratch50 $R/scratch50/checkpoint.safetensors $R/scratch50 finetune --model fmnist-mini $FT50 \
        --layer-decay 1 --output-dir $R/scratch50
}

# one compound command, read whole before it runs: the script can be edited
# while a long run of it goes on
{
    ROWS=${*:-pretrain raw knn lin lin-mean lin-rand ft scratch mask ft2 ft1 pretrain30 lin30 ft30}
    for r in $ROWS; do row $r; done
    exit 0
}
