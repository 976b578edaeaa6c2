#!/usr/bin/env bash
# maec report and --report on small real runs (a 512/256-image cut of
# Fashion-MNIST): a mask-ratio sweep of three runs on one plot, named by
# what differs; --report during pretrain, finetune and linprobe; a resumed
# run's report continuous; a cut-short metrics line, an older run folder and
# runs of different kinds still reported, the gaps named; bad folders a
# one-line error.
cd "$(dirname "$0")/.." || exit 1
. tests/lib.sh
T=$(mktemp -d /tmp/maec_cli_report_XXXXXX)
[ -n "$KEEP" ] || trap 'rm -rf "$T"' EXIT
export OMP_WAIT_POLICY=PASSIVE

need_data

D=$T/data; mkdir -p $D
. scripts/idx.sh
cut_fmnist $DATA $D 512 256

SMALL="--model fmnist-mini --embed-dim 32 --depth 2 --num-heads 2 --decoder-embed-dim 32 --decoder-depth 1 --decoder-num-heads 2 --threads 2 --seed 3 --log-every 2 --batch-size 64 --blr 1.5e-3 --warmup-epochs 0.5 --recon-images 2"
# the number of points of chart KEY in a report's data, one line per run
points() { grep -o "\"$2\":{\"x\":\[[^]]*\]" "$1" | sed 's/.*\[//; s/\]//' | awk -F, '{print NF}'; }
rows() { grep -c "\"$2\":" "$1/metrics.jsonl"; }
one_line_error() { [ "$2" -ne 0 ] && [ "$(printf '%s\n' "$1" | wc -l)" -eq 1 ] && [[ "$1" == "maec: error: "* ]]; }

# 1. a mask-ratio sweep: three runs, one plot, named by their mask ratio
for r in 0.5 0.75 0.9; do
    $MAEC pretrain $SMALL --data-path $D --output-dir $T/mr$r --epochs 1 --mask-ratio $r > $T/mr$r.log 2>&1
    check '[ $? -eq 0 ]' "pretrain --mask-ratio $r failed: $(tail -2 $T/mr$r.log)"
done
out=$($MAEC report $T/mr0.5 $T/mr0.75 $T/mr0.9 -o $T/sweep.html 2>&1)
check '[ $? -eq 0 ] && [ -s $T/sweep.html ]' "maec report of the sweep failed: $out"
check 'grep -q "mask_ratio 0.5 / 0.75 / 0.9" $T/sweep.html' "the sweep is not named by its mask ratios"
check '[ $(grep -o "\"label\":\"mask_ratio [0-9.]*\"" $T/sweep.html | wc -l) -eq 3 ]' "not three legend entries named by mask_ratio"
check '[ "$(points $T/sweep.html loss | tr "\n" " ")" = "$(for r in 0.5 0.75 0.9; do rows $T/mr$r loss; done | tr "\n" " ")" ]' \
    "the sweep's loss curves do not have one point per metrics record: $(points $T/sweep.html loss | tr '\n' ' ')"
check '! ls $T/*.tmp.* > /dev/null 2>&1' "a temporary file was left"
# a new run in the same folder starts a new session list
$MAEC pretrain $SMALL --data-path $D --output-dir $T/mr0.5 --epochs 1 --mask-ratio 0.5 > /dev/null 2>&1
check '[ $(grep -c "\"pretrain\"" $T/mr0.5/machine.json) -eq 1 ]' "a fresh run kept an earlier run's sessions in machine.json"

# 2. --report during pretraining: report.html at each epoch's end; a resumed
# run keeps one continuous report
$MAEC pretrain $SMALL --data-path $D --output-dir $T/p --epochs 3 --max-steps 12 --knn-every 1 --report > $T/p.log 2>&1
check '[ $? -eq 0 ] && [ -s $T/p/report.html ] && [ -s $T/p/machine.json ]' "pretrain --report wrote no report: $(tail -2 $T/p.log)"
check 'grep -q "report: $T/p/report.html" $T/p.log' "pretrain --report does not say where the report is"
$MAEC pretrain --resume $T/p --max-steps 0 > $T/p2.log 2>&1
check '[ $? -eq 0 ]' "resume failed: $(tail -2 $T/p2.log)"
check '[ "$(points $T/p/report.html loss)" = "$(rows $T/p loss)" ] && [ "$(rows $T/p loss)" -eq 12 ]' \
    "after resume: $(points $T/p/report.html loss) loss points in the report, $(rows $T/p loss) records (want 12 = 24 steps / 2)"
check '[ "$(points $T/p/report.html knn_top1)" = 3 ]' "the k-NN curve has $(points $T/p/report.html knn_top1) points, want 3"
check '[ $(grep -c "\"pretrain\"" $T/p/machine.json) -eq 2 ]' "machine.json does not hold both sessions"
check '[ $(grep -o "class=\"recon-img\"" $T/p/report.html | wc -l) -eq 4 ]' "the report does not hold 3 epochs' pictures and the final one"
grep -q "Missing or damaged" $T/p/report.html && bad "a complete run's report names gaps: $(grep -o '<li>.*</li>' $T/p/report.html | head -3)" || ok
$MAEC pretrain --help 2>&1 | grep -q -- "--report" && ok || bad "pretrain --help does not list --report"

# 3. finetune and linprobe --report
$MAEC finetune --model $T/p/model.safetensors --data-path $D --output-dir $T/ft --epochs 1 --warmup-epochs 0 --batch-size 64 \
    --threads 2 --log-every 2 --report > $T/ft.log 2>&1
check '[ $? -eq 0 ] && [ -s $T/ft/report.html ]' "finetune --report wrote no report: $(tail -2 $T/ft.log)"
check '[ "$(points $T/ft/report.html test_top1)" = "$(rows $T/ft test_top1 | awk "{print \$1-1}")" ]' \
    "finetune's top-1 curve: $(points $T/ft/report.html test_top1) points for $(rows $T/ft test_top1) records (one is the final)"
check 'grep -q "<td>finetune</td>" $T/ft/report.html' "the report does not say it is a fine-tuning run"
# a fine-tuning run stopped and resumed keeps --report and one continuous report
$MAEC finetune --model $T/p/model.safetensors --data-path $D --output-dir $T/ft2 --epochs 2 --warmup-epochs 0 --batch-size 64 \
    --threads 2 --log-every 2 --max-steps 4 --report > /dev/null 2>&1
$MAEC finetune --resume $T/ft2 --max-steps 0 > $T/ft2.log 2>&1
check '[ $? -eq 0 ] && [ "$(points $T/ft2/report.html loss)" = 8 ] && [ "$(rows $T/ft2 loss)" = 8 ]' \
    "resumed finetune: $(points $T/ft2/report.html loss) loss points for $(rows $T/ft2 loss) records, want 8: $(tail -2 $T/ft2.log)"
$MAEC linprobe --model $T/p/model.safetensors --data-path $D --output-dir $T/lp --epochs 3 --warmup-epochs 0 --batch-size 64 \
    --threads 2 --report > $T/lp.log 2>&1
check '[ $? -eq 0 ] && [ -s $T/lp/report.html ]' "linprobe --report wrote no report: $(tail -2 $T/lp.log)"
check '[ "$(points $T/lp/report.html loss)" = 3 ] && grep -q "\"xlabel\":\"epoch\"" $T/lp/report.html' "the probe's loss is not 3 points against the epoch"

# 4. what a report is still written from, the gaps named
cp -r $T/p $T/cut && printf '{"step":26,"epoch":3.2,"lo' >> $T/cut/metrics.jsonl && rm $T/cut/machine.json
out=$($MAEC report $T/cut 2>&1)
check '[ $? -eq 0 ] && grep -q "is cut short" $T/cut/report.html' "a cut-short metrics line: $out"
check 'grep -q "older maec" $T/cut/report.html' "a folder without machine.json is not named as from an older maec"
check '[ "$(points $T/cut/report.html loss)" = 12 ]' "the cut-short run's curve lost records"
mkdir $T/nometrics && cp $T/p/config.json $T/nometrics/
out=$($MAEC report $T/nometrics 2>&1)
check '[ $? -eq 0 ] && grep -q "no metrics.jsonl" $T/nometrics/report.html' "a run without metrics: $out"
out=$($MAEC report $T/p $T/lp $T/ft -o $T/mixed.html 2>&1)
check '[ $? -eq 0 ] && [ $(grep -o "\"name\":\"[a-z]*\"" $T/mixed.html | wc -l) -eq 3 ]' "runs of different kinds side by side: $out"

# 5. bad input: one line, non-zero
out=$($MAEC report $T/none 2>&1); rc=$?
check 'one_line_error "$out" $rc && [[ "$out" == *"$T/none"* ]]' "a missing folder: rc $rc, '$out'"
mkdir $T/empty
out=$($MAEC report $T/empty 2>&1); rc=$?
check 'one_line_error "$out" $rc && [[ "$out" == *"holds no maec run"* ]]' "an empty folder: rc $rc, '$out'"
out=$($MAEC report $T/p/config.json 2>&1); rc=$?
check 'one_line_error "$out" $rc' "a file as a run folder: rc $rc, '$out'"
out=$($MAEC report 2>&1); rc=$?
check 'one_line_error "$out" $rc' "no run: rc $rc, '$out'"
out=$($MAEC report $T/p -o $T/no/such/dir/r.html 2>&1); rc=$?
check 'one_line_error "$out" $rc' "an unwritable output: rc $rc, '$out'"
if [ "$(id -u)" -ne 0 ]; then
    mkdir $T/locked && cp $T/p/metrics.jsonl $T/locked/ && chmod 000 $T/locked
    out=$($MAEC report $T/locked 2>&1); rc=$?
    chmod 755 $T/locked
    check 'one_line_error "$out" $rc' "an unreadable folder: rc $rc, '$out'"
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
