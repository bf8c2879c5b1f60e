#!/usr/bin/env bash
# Stand-in for a torch test when no interpreter can import torch + h5py + numpy.
echo "$1: SKIP: no Python interpreter here can import torch, h5py and numpy (CMake tried /usr/bin/python3 and python3 on PATH)."
echo "Install them with: apt-get install python3-torch python3-h5py python3-numpy, then re-run cmake."
if [ "${VQ_REQUIRE_TORCH:-0}" = "1" ]; then
    echo "VQ_REQUIRE_TORCH=1: treating the missing oracle as a failure"
    exit 1
fi
exit 77
