#!/usr/bin/env bash
# Fuzz one reader: tools/fuzz.sh TARGET SECONDS      (TARGET: config, dataset, checkpoint, codes)
#                  tools/fuzz.sh --build             (only build the libFuzzer programs)
# Builds tests/fuzz/fuzz_TARGET.c with clang, libFuzzer, ASan and UBSan into $VQ_FUZZ_BUILD_DIR
# (default build-fuzz), makes the harness's seed corpus there, adds tests/fuzz/regressions/TARGET/,
# and fuzzes for SECONDS. A crash, leak, hang or UB report fails with the input saved under
# $VQ_FUZZ_BUILD_DIR/crashes/: fix it, then add that file to tests/fuzz/regressions/TARGET/
# (the suite replays it: test_fuzz_replay_TARGET). docs/FUZZING.md has the details.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${VQ_FUZZ_BUILD_DIR:-build-fuzz}
targets=$(for f in tests/fuzz/fuzz_*.c; do basename "$f" .c; done)

if ! command -v clang >/dev/null; then
    echo "SKIP: clang is not installed; apt-get install clang libclang-rt-14-dev (tools/install_deps.sh --with-fuzz)"
    exit 77
fi
if ! echo 'int LLVMFuzzerTestOneInput(const char *d, long n) { return 0; }' |
        clang -x c -fsanitize=fuzzer,address,undefined -o /dev/null - 2>/dev/null; then
    echo "SKIP: clang cannot link libFuzzer with ASan and UBSan; apt-get install libclang-rt-14-dev"
    exit 77
fi

build_all() {
    cmake -S . -B "$build" -DCMAKE_C_COMPILER=clang -DVQ_FUZZ=ON -DVQ_CUDA=OFF \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    # shellcheck disable=SC2086
    cmake --build "$build" -j"$(nproc)" --target $targets
}

if [ "${1:-}" = "--build" ]; then
    build_all
    exit 0
fi
[ $# -eq 2 ] || { echo "usage: tools/fuzz.sh TARGET SECONDS | --build   (targets: ${targets//fuzz_/})" >&2; exit 2; }
target=$1 seconds=$2
[ -f "tests/fuzz/fuzz_$target.c" ] || { echo "no harness tests/fuzz/fuzz_$target.c (targets: ${targets//fuzz_/})" >&2; exit 2; }
[ -x "$build/fuzz_$target" ] || build_all

corpus="$build/corpus/$target"
mkdir -p "$corpus" "$build/crashes" "tests/fuzz/regressions/$target"
VQ_FUZZ_MAKE_SEEDS="$corpus" "$build/fuzz_$target"
echo "fuzz_$target: $(ls "$corpus" | wc -l) inputs in $corpus, $(ls "tests/fuzz/regressions/$target" | wc -l) regression inputs; $seconds s"
# -close_fd_mask=1: the harnesses print (info) to stdout; the sanitizers report on stderr.
# LSan: leaks inside libhdf5 on its own error paths are HDF5's (tests/fuzz/lsan.supp).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/fuzz/lsan.supp}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# Exit codes: 0 = nothing found; 1 = a finding (libFuzzer's default 77 would read as SKIP in ctest).
exec "$build/fuzz_$target" -max_total_time="$seconds" -timeout=20 -error_exitcode=1 -timeout_exitcode=1 -rss_limit_mb=2048 -malloc_limit_mb=2048 \
    -close_fd_mask=1 -print_final_stats=1 -artifact_prefix="$build/crashes/$target-" \
    "$corpus" "tests/fuzz/regressions/$target"
