#!/usr/bin/env bash
# Makes ready, on this machine, what scripts/device-check.sh needs on a lent
# GPU machine (one NVIDIA H200 whose image has the CUDA toolkit and PyTorch
# but not Debian's libraries, and no network):
#   build/cuda      maec, test_backend_ops, test_core and bench_step built with
#                   make CUDA=1 (nvcc under /usr/local/cuda)
#   .deps/          the Debian packages of the run-time libraries maec links
#                   (OpenBLAS, cJSON, libzip, libpng, libjpeg, libgfortran...),
#                   as .deb files that the check unpacks there
#   .devdata/       2048 training and 512 test images of Fashion-MNIST
# The three are git-ignored (.git/info/exclude) and travel as the run's
# `carry`. At the end it prints the call to make:
#   run(command="bash scripts/device-check.sh", timeout_s=600,
#       carry=[build/cuda/maec, build/cuda/tests/test_backend_ops,
#              build/cuda/tests/test_core, build/cuda/bench_step, .deps, .devdata])
set -euo pipefail
cd "$(dirname "$0")/.."
make -j"$(nproc)" CUDA=1 BUILD=build/cuda build/cuda/maec build/cuda/tests/test_backend_ops \
    build/cuda/tests/test_core build/cuda/bench_step > /dev/null
for d in /.deps/ /.devdata/; do grep -qx "$d" .git/info/exclude 2>/dev/null || echo "$d" >> .git/info/exclude; done

# the packages holding the libraries maec loads, but for the C library and
# CUDA's (the machine has its own) and libstdc++/libgcc/libgomp (newer there)
rm -rf .deps && mkdir -p .deps
pkgs=$(ldd build/cuda/maec | awk '$3 ~ /^\// {print $3}' | while read -r f; do
    real=$(readlink -f "$f")
    dpkg -S "$real" 2>/dev/null || dpkg -S "/usr$real" 2>/dev/null || dpkg -S "${real#/usr}" 2>/dev/null || true
done | cut -d: -f1 | sort -u | grep -vE '^(libc6|libstdc\+\+6|libgcc-s1|libgomp1)$' || true)
echo "packages carried: $pkgs"
(cd .deps && apt-get download $pkgs > /dev/null)
du -sh .deps

rm -rf .devdata
. scripts/idx.sh
cut_fmnist /usr/share/datasets/fashion-mnist .devdata 2048 512
gzip -f .devdata/*-ubyte
du -sh .devdata build/cuda/maec
cat <<'EOF'
ready. On a lent GPU machine:
  run(command="bash scripts/device-check.sh", timeout_s=600,
      carry=["build/cuda/maec", "build/cuda/tests/test_backend_ops", "build/cuda/tests/test_core",
             "build/cuda/bench_step", ".deps", ".devdata"])
EOF
