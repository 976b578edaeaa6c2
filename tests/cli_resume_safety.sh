#!/usr/bin/env bash
# Resuming is safe and exact (issue 22):
# 1. a resumed run writes only where the user said: into the folder resumed,
#    or --output-dir; never into the folder its saved configuration names
#    (a copy of run A resumed as B, from A's working directory or another
#    one, leaves every file of A as it was, byte for byte): pretrain,
#    finetune, and linprobe reading a copied run;
# 2. the metrics.jsonl of a run stopped (--max-steps, SIGINT) and resumed
#    equals that of an unbroken run with the same flags and thread count
#    (a resumed run keeps its thread count unless --threads is given),
#    field by field, except the timing fields (images_per_s, data_wait,
#    elapsed_s, eval_s, knn_s), which are left out of the comparison.
cd "$(dirname "$0")/.." || exit 1
. tests/lib.sh
T=$(mktemp -d /tmp/maec_resume_safety_XXXXXX)
trap 'rm -rf "$T"' EXIT
export OMP_WAIT_POLICY=PASSIVE
M_ABS="$PWD/${MAEC#./}"

need_data

# a small IDX data set: the first 512 train and 256 test images (16 steps of 32)
D=$T/data; mkdir -p $D
. scripts/idx.sh
cut_fmnist $DATA $D 512 256

SMALL="--model fmnist-mini --embed-dim 32 --depth 2 --num-heads 2 --decoder-embed-dim 32 --decoder-depth 1 --decoder-num-heads 2 --batch-size 32 --epochs 2 --warmup-epochs 0.5 --blr 1.5e-3 --threads 1 --num-workers 1 --seed 3 --recon-every 1 --recon-images 2 --log-every 3 --save-every 2"
# the records without their timing fields
records() { sed -E 's/,"(images_per_s|data_wait|elapsed_s|eval_s|knn_s)":[^,}]*//g' "$1/metrics.jsonl"; }

# ---------------------------------------------------------------- pretrain
# A: written with an absolute --output-dir; W: with a relative one, in $T/w
$M_ABS pretrain $SMALL --data-path $D --output-dir $T/A --max-steps 7 > $T/A.log 2>&1
check '[ $? -eq 0 ] && [ -s $T/A/model.safetensors ]' "pretrain A failed: $(tail -2 $T/A.log)"
mkdir -p $T/w $T/elsewhere
(cd $T/w && $M_ABS pretrain $SMALL --data-path $D --output-dir run --max-steps 7 > /dev/null 2>&1)
cp -a $T/A $T/A.orig
cp -a $T/w/run $T/w/run.orig
cp -a $T/A $T/B
cp -a $T/w/run $T/w/copy

# the copy of A resumed from another working directory
(cd $T/elsewhere && $M_ABS pretrain --resume $T/B --max-steps 12 --threads 1 > $T/B.log 2>&1)
check '[ $? -eq 0 ]' "pretrain --resume of a copy failed: $(tail -2 $T/B.log)"
check 'diff -r $T/A $T/A.orig > /dev/null' "pretrain --resume of a copy changed the original: $(diff -rq $T/A $T/A.orig | head -3)"
check '[ -s $T/B/checkpoint-00000012.safetensors ] && grep -q "\"step\":12," $T/B/metrics.jsonl' \
      "pretrain --resume of a copy did not continue in the copy"
check '[ -z "$(ls $T/elsewhere)" ]' "pretrain --resume wrote into the working directory: $(ls $T/elsewhere)"
check 'grep -q "\"output_dir\":[[:space:]]*\"$T/B\"" $T/B/config.json' "the copy's config.json does not name the copy"
# the copy of W resumed from W's working directory (where "run" resolves to the original)
(cd $T/w && $M_ABS pretrain --resume copy --max-steps 12 --threads 1 > $T/w.log 2>&1)
check '[ $? -eq 0 ] && [ -s $T/w/copy/checkpoint-00000012.safetensors ]' "pretrain --resume copy (relative) failed: $(tail -2 $T/w.log)"
check 'diff -r $T/w/run $T/w/run.orig > /dev/null' "pretrain --resume copy changed the original run: $(diff -rq $T/w/run $T/w/run.orig | head -3)"
# a checkpoint file: its folder
cp -a $T/A.orig $T/F
(cd $T/elsewhere && $M_ABS pretrain --resume $T/F/checkpoint-00000006.safetensors --max-steps 12 > /dev/null 2>&1)
check 'diff -r $T/A $T/A.orig > /dev/null && [ -s $T/F/checkpoint-00000012.safetensors ]' "pretrain --resume FILE did not continue in the file's folder"
# --output-dir wins: C gets the run (and the log so far), A.orig's copy stays as it was
cp -a $T/A.orig $T/G
$M_ABS pretrain --resume $T/G --output-dir $T/C --max-steps 12 --threads 1 > $T/C.log 2>&1
check '[ $? -eq 0 ] && [ -s $T/C/checkpoint-00000012.safetensors ] && [ -s $T/C/model.safetensors ]' "pretrain --resume --output-dir failed: $(tail -2 $T/C.log)"
check 'diff -r $T/G $T/A.orig > /dev/null' "pretrain --resume --output-dir changed the folder resumed"
# a run with --report resumed into --output-dir keeps its report going there
$M_ABS pretrain $SMALL --data-path $D --output-dir $T/R --max-steps 7 --report > /dev/null 2>&1
cp -a $T/R $T/R.orig
$M_ABS pretrain --resume $T/R --output-dir $T/R2 --max-steps 16 --threads 1 > /dev/null 2>&1
check '[ -s $T/R2/report.html ] && diff -r $T/R $T/R.orig > /dev/null' "pretrain --resume --output-dir of a run with --report: no report.html in the new folder, or the old one changed"
# --config takes a run's settings, never its folder
out=$($M_ABS pretrain --config $T/A/config.json 2>&1 >/dev/null); rc=$?
check '[ $rc -eq 2 ] && [[ "$out" == "maec: error: pretrain: --config repeats a run'"'"'s settings, not its folder"* ]]' "--config without --output-dir: exit $rc, '$out'"
check 'diff -r $T/A $T/A.orig > /dev/null' "pretrain --config changed the run it repeats"

# metrics: the unbroken run of 12 steps; stopped at 7 (a step no record
# falls on: the log's window of steps 7-9 was cut) and resumed, in place (B)
# and into another folder (C): the same records
$M_ABS pretrain $SMALL --data-path $D --output-dir $T/U --max-steps 12 > /dev/null 2>&1
check '[ "$(records $T/U | grep -c "\"loss\"")" -eq 4 ]' "unbroken run: $(records $T/U | grep -c '"loss"') loss records, 4 expected"
check '[ -n "$(records $T/U)" ] && [ "$(records $T/U)" = "$(records $T/B)" ]' \
      "pretrain: metrics.jsonl after --max-steps 7 and --resume differs from an unbroken run: $(diff <(records $T/U) <(records $T/B) | head -4)"
check '[ "$(records $T/U)" = "$(records $T/C)" ]' "pretrain: metrics.jsonl resumed into --output-dir differs from an unbroken run"
# a whole run of 32 steps (two epochs, a k-NN record at each end) stopped
# by SIGINT after step 10, in the window of steps 10-12, and after step 17,
# just past an epoch's end, then resumed
$M_ABS pretrain $SMALL --knn-every 1 --data-path $D --output-dir $T/U2 > /dev/null 2>&1
check '[ "$(records $T/U2 | grep -c knn_top1)" -eq 2 ]' "unbroken run: no k-NN records"
MAEC_FAULT_SIGINT_AT_STEP=10 $M_ABS pretrain $SMALL --knn-every 1 --data-path $D --output-dir $T/S > /dev/null 2>&1
check '[ $? -eq 130 ] && [ -s $T/S/checkpoint-00000010.safetensors ]' "SIGINT at step 10: no stop there"
MAEC_FAULT_SIGINT_AT_STEP=17 $M_ABS pretrain --resume $T/S --threads 1 > /dev/null 2>&1
check '[ $? -eq 130 ] && [ -s $T/S/checkpoint-00000017.safetensors ]' "SIGINT at step 17: no stop there"
# without --threads: the run's own thread count (1), not all cores
$M_ABS pretrain --resume $T/S > $T/S.log 2>&1
check 'grep -q ", 1 threads$" $T/S.log' "pretrain --resume without --threads: not the run's 1 thread: $(grep threads $T/S.log)"
check '[ -n "$(records $T/U2)" ] && [ "$(records $T/U2)" = "$(records $T/S)" ]' \
      "pretrain: metrics.jsonl after SIGINT and --resume differs from an unbroken run: $(diff <(records $T/U2) <(records $T/S) | head -4)"
# kill -9 after a checkpoint: the records past it are written again, once
$M_ABS pretrain $SMALL --data-path $D --output-dir $T/K --max-steps 9 > /dev/null 2>&1
rm $T/K/checkpoint-00000009.safetensors $T/K/model.safetensors   # as if killed after step 9's record, before its save
printf '{"step":10,"epo' >> $T/K/metrics.jsonl                   # and in the middle of a record
$M_ABS pretrain --resume $T/K --max-steps 12 --threads 1 > /dev/null 2>&1
check '[ "$(records $T/U)" = "$(records $T/K)" ]' "pretrain: metrics.jsonl after a kill and --resume differs from an unbroken run: $(diff <(records $T/U) <(records $T/K) | head -4)"

# ---------------------------------------------------------------- finetune
M=$T/A.orig/model.safetensors
FT="--model $M --data-path $D --epochs 1 --warmup-epochs 0.2 --batch-size 32 --log-every 3 --threads 1 --num-workers 1"
$M_ABS finetune $FT --output-dir $T/fu > /dev/null 2>&1
$M_ABS finetune $FT --max-steps 5 --output-dir $T/fa > $T/fa.log 2>&1
check '[ $? -eq 0 ] && [ -s $T/fa/checkpoint.safetensors ]' "finetune --max-steps 5 failed: $(tail -2 $T/fa.log)"
cp -a $T/fa $T/fa.orig
cp -a $T/fa $T/fb
(cd $T/elsewhere && $M_ABS finetune --resume $T/fb --max-steps 0 > $T/fb.log 2>&1)
check '[ $? -eq 0 ] && grep -q "\"final\":true" $T/fb/metrics.jsonl' "finetune --resume of a copy failed: $(tail -2 $T/fb.log)"
check 'diff -r $T/fa $T/fa.orig > /dev/null' "finetune --resume of a copy changed the original"
check '[ -z "$(ls $T/elsewhere)" ]' "finetune --resume wrote into the working directory"
check 'cmp -s $T/fu/model.safetensors $T/fb/model.safetensors' "finetune: stopped and resumed, other weights than one run"
check '[ -n "$(records $T/fu)" ] && [ "$(records $T/fu)" = "$(records $T/fb)" ]' \
      "finetune: metrics.jsonl after --max-steps 5 and --resume differs from an unbroken run: $(diff <(records $T/fu) <(records $T/fb) | head -4)"
check '[ $(wc -l < $T/fb/command.txt) -eq 2 ]' "finetune: command.txt does not hold both commands of the run"
# --output-dir wins
$M_ABS finetune --resume $T/fa --max-steps 0 --output-dir $T/fc > $T/fc.log 2>&1
check '[ $? -eq 0 ] && [ -s $T/fc/model.safetensors ] && [ -s $T/fc/checkpoint.safetensors ]' "finetune --resume --output-dir failed: $(tail -2 $T/fc.log)"
check 'diff -r $T/fa $T/fa.orig > /dev/null' "finetune --resume --output-dir changed the folder resumed"
check '[ "$(records $T/fu)" = "$(records $T/fc)" ]' "finetune: metrics.jsonl resumed into --output-dir differs from an unbroken run"
# a finished run resumed: nothing to do, its log left alone
cp $T/fb/metrics.jsonl $T/fb.metrics
$M_ABS finetune --resume $T/fb > /dev/null 2>&1
check 'cmp -s $T/fb/metrics.jsonl $T/fb.metrics' "finetune --resume of a finished run changed its metrics.jsonl"

# ---------------------------------------------------------------- linprobe
# reading a copied run's model from another working directory leaves the original alone
cp -a $T/A.orig $T/L
(cd $T/elsewhere && $M_ABS linprobe --model $T/L/model.safetensors --data-path $D --output-dir $T/lp --epochs 1 --warmup-epochs 0 --batch-size 64 --threads 1 > $T/lp.log 2>&1)
check '[ $? -eq 0 ] && [ -s $T/lp/model.safetensors ]' "linprobe failed: $(tail -2 $T/lp.log)"
check 'diff -r $T/L $T/A.orig > /dev/null && diff -r $T/A $T/A.orig > /dev/null' "linprobe changed the run it read"
check '[ -z "$(ls $T/elsewhere)" ]' "linprobe wrote into the working directory"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
