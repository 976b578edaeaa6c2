# What the CLI and fault test scripts share; each sources it after changing
# to the repository root. MAEC_BUILD names the build folder (default build).
MAEC=./${MAEC_BUILD:-build}/maec
DATA=${MAEC_DATA:-/usr/share/datasets/fashion-mnist}
pass=0; fail=0
ok()  { pass=$((pass+1)); }
bad() { fail=$((fail+1)); echo "FAIL: $*"; }
# stop with one failed check when the Fashion-MNIST files are not installed
need_data() {
    if [ ! -d "$DATA" ]; then
        echo "no $DATA (apt-get install dataset-fashion-mnist)"; echo "0 passed, 1 failed"; exit 1
    fi
}
