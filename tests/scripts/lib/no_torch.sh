#!/usr/bin/env bash
# Stand-in for a torch test when no interpreter can import torch + h5py + numpy + yaml.
echo "$1: SKIP: no Python interpreter here can import torch, h5py, numpy and yaml (CMake tried /usr/bin/python3 and python3 on PATH)."
echo "Install them with: tools/install_deps.sh --with-torch, then re-run cmake."
if [ "${VQ_REQUIRE_TORCH:-0}" = "1" ]; then
    echo "VQ_REQUIRE_TORCH=1: treating the missing oracle as a failure"
    exit 1
fi
exit 77
