#!/usr/bin/env bash
# The README's second command: install what is missing (PyTorch oracle included), build, and run
# the whole test suite with ctest. GPU tests SKIP on machines without a GPU (ctest lists them as
# skipped, never as passed). The label fuzz runs each libFuzzer harness briefly (tools/fuzz.sh; about
# 4 minutes; `ctest -LE fuzz` leaves it out). Options: --sanitize (ASan+UBSan build in build-asan,
# CPU labels only).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install_deps.sh --with-torch --with-fuzz
if [ "${1:-}" = "--sanitize" ]; then
    BUILD_DIR=build-asan tools/build.sh -DVQ_SANITIZE=ON -DVQ_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo
    cd build-asan
    # fast_unwind_on_malloc=0: Open MPI's plugins have no frame pointers, so the fast unwinder
    # stops inside them and the suppressions (tests/lsan.supp: Open MPI's own leaks) cannot match.
    ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0 \
        LSAN_OPTIONS=suppressions=$PWD/../tests/lsan.supp:fast_unwind_on_malloc=0 ctest --output-on-failure -L cpu
    exit $?
fi
tools/build.sh
cd build
# VQ_REQUIRE_TORCH: a missing PyTorch oracle fails the run instead of skipping silently.
VQ_REQUIRE_TORCH=1 ctest --output-on-failure --timeout 900
