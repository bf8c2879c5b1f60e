#!/usr/bin/env bash
# Install what vqvae_dist needs from Debian 12 packages, only what is missing.
# Usage: tools/install_deps.sh [--with-torch] [--with-fuzz]
#   --with-torch: the PyTorch oracle for the tests, the Python package python/vqvae_dist and the
#   plotting tool tools/plot.py; --with-fuzz: clang and libFuzzer (tools/fuzz.sh)
set -euo pipefail
packages=(build-essential cmake pkg-config libopenmpi-dev openmpi-bin libhdf5-dev hdf5-tools
          libopenblas-dev libdnnl-dev libyaml-dev libpng-dev zlib1g-dev dataset-fashion-mnist)
for option in "$@"; do
    case "$option" in
    --with-torch) packages+=(python3 python3-torch python3-h5py python3-numpy python3-yaml python3-matplotlib
                             python3-sklearn python3-pil) ;;
    --with-fuzz) packages+=(clang libclang-rt-14-dev) ;;
    *) echo "install_deps: unknown option '$option' (--with-torch, --with-fuzz)" >&2; exit 2 ;;
    esac
done
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install_deps: all ${#packages[@]} packages present"
    exit 0
fi
echo "install_deps: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "install_deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    sudo=sudo
fi
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
