#!/usr/bin/env bash
# Configure and build into BUILD_DIR (default: build). Extra arguments go to cmake.
# The CUDA backend is built when nvcc is found (/usr/local/cuda/bin/nvcc or PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$build_dir" -j"$(nproc)"
