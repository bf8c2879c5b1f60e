#!/usr/bin/env bash
# Install what vqvae_dist needs from Debian 12 packages, only what is missing.
# Usage: tools/install_deps.sh [--with-torch]   (--with-torch: the PyTorch oracle for the tests)
set -euo pipefail
packages=(build-essential cmake pkg-config libopenmpi-dev openmpi-bin libhdf5-dev hdf5-tools
          libopenblas-dev libdnnl-dev libyaml-dev libpng-dev zlib1g-dev dataset-fashion-mnist)
if [ "${1:-}" = "--with-torch" ]; then
    packages+=(python3 python3-torch python3-h5py python3-numpy)
fi
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
