#!/usr/bin/env bash
# make install puts the library, header and pkg-config file under PREFIX;
# a C and a C++ program build against them with pkg-config and run.
cd "$(dirname "$0")/.." || exit 1
pass=0; fail=0
check() { if eval "$1"; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL: $2"; fi; }
T=$(mktemp -d /tmp/maec_install_XXXXXX)
trap 'rm -rf "$T"' EXIT
make -s install PREFIX="$T/usr" > "$T/install.log" 2>&1
check '[ $? -eq 0 ]' "make install failed: $(tail -3 $T/install.log)"
for f in bin/maec lib/libmaec.a lib/libmaec.so include/maec.h lib/pkgconfig/maec.pc; do
    check '[ -e "$T/usr/$f" ]' "$f not installed"
done
cat > "$T/embed.c" <<'C'
#include <maec.h>
#include <stdio.h>
int main(void) {
    maec_config c; maec_error err; maec_model *m; maec_workspace *ws;
    if (maec_preset("test-tiny", &c, &err) || maec_model_create(&c, 1, &m, &err) ||
        maec_workspace_create(m, 2, &ws, &err)) { printf("%s\n", err.msg); return 1; }
    float x[2 * 16 * 16] = {0}, loss; uint64_t rng = 1;
    for (int i = 0; i < 512; i++) x[i] = (float)(i % 13) / 13.0f;
    if (maec_forward_backward(m, ws, x, 2, NULL, &rng, 0, 1.0f, &loss, &err)) { printf("%s\n", err.msg); return 1; }
    printf("loss %.4f\n", loss);
    /* the encoder as a classifier: logits and features, as an embedding program does */
    maec_classifier_opts o; maec_classifier *cl; maec_clf_workspace *cw; float feat[2 * 64];
    maec_classifier_defaults(&o);
    if (maec_classifier_create(NULL, m, &o, 0, &cl, &err) || maec_clf_workspace_create(cl, 2, 0, &cw, &err) ||
        maec_classifier_forward_backward(cl, cw, x, 2, NULL, NULL, NULL, 0, 0, NULL, &err) ||
        maec_classifier_features(cl, cw, x, 2, MAEC_FEATURE_MEAN, feat, &err)) { printf("%s\n", err.msg); return 1; }
    printf("logits %d classes, first %.4f; feature %.4f\n", maec_classifier_options(cl)->num_classes,
           maec_clf_ws_logits(cw)[0], feat[0]);
    maec_clf_workspace_free(cw); maec_classifier_free(cl);
    if (maec_model_load("/nonexistent.safetensors", NULL, &m, &err) == 0) return 1;
    printf("error: %s\n", err.msg);
    maec_workspace_free(ws); maec_model_free(m);
    return 0;
}
C
cp "$T/embed.c" "$T/embed.cpp"
export PKG_CONFIG_PATH="$T/usr/lib/pkgconfig"
cc -std=c11 -o "$T/embed_c" "$T/embed.c" $(pkg-config --cflags --libs maec) -Wl,-rpath,"$T/usr/lib" 2> "$T/cc.log"
check '[ $? -eq 0 ]' "C program did not build: $(head -3 $T/cc.log)"
check '"$T/embed_c" | grep -q "^loss"' "C program did not run"
check '"$T/embed_c" | grep -q "^logits 10 classes"' "C program: no classifier logits: $("$T/embed_c" 2>&1 | tail -1)"
c++ -o "$T/embed_cpp" -x c++ "$T/embed.cpp" $(pkg-config --cflags --libs maec) -Wl,-rpath,"$T/usr/lib" 2> "$T/cxx.log"
check '[ $? -eq 0 ]' "C++ program did not build: $(head -3 $T/cxx.log)"
check '"$T/embed_cpp" | grep -q "^loss"' "C++ program did not run"
cc -std=c11 -o "$T/embed_static" "$T/embed.c" -I"$T/usr/include" "$T/usr/lib/libmaec.a" $(pkg-config --libs-only-other --libs-only-L maec) $(pkg-config --static --libs maec | sed 's/-lmaec//') 2> "$T/st.log"
check '[ $? -eq 0 ] && "$T/embed_static" | grep -q "^loss"' "static link failed: $(head -3 $T/st.log)"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
