#!/usr/bin/env bash
# Installs the Debian packages maec builds and runs with (idempotent).
set -euo pipefail
PKGS="make gcc libc6-dev pkg-config libopenblas-openmp-dev libcjson-dev libzip-dev libxsmm-dev libpng-dev libjpeg-dev zlib1g-dev dataset-fashion-mnist"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "installing:$missing"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
fi
