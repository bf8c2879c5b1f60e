#!/usr/bin/env bash
# memcheck.sh: the fast C unit tests (tests/unit/test_*.c) under valgrind's memcheck: invalid
# reads and writes, uses of uninitialised values, bad frees, and definite leaks (these count as
# errors). What ASan (tools/test.sh --sanitize) does not see: uninitialised reads.
#   tools/memcheck.sh [BUILD_DIR] [MAX_SECONDS]
# BUILD_DIR (default build) must hold a built tree; MAX_SECONDS (default 1) picks the tests whose
# last ctest run took at most that long (Testing/Temporary/CTestCostData.txt; a test never run
# there is left out and named). Each test's valgrind log is BUILD_DIR/memcheck/NAME.log. Exit code
# 0 when every test ran clean and passed, 1 otherwise (the failing ones are listed).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
BUILD=$(cd "${1:-build}" && pwd) || { echo "memcheck.sh: no build folder '${1:-build}'; run tools/build.sh" >&2; exit 1; }
MAX=${2:-1}
command -v valgrind >/dev/null || { echo "memcheck.sh: valgrind is missing: apt-get install valgrind" >&2; exit 1; }
COST=$BUILD/Testing/Temporary/CTestCostData.txt
[ -s "$COST" ] || { echo "memcheck.sh: $COST is missing: run ctest in $BUILD once first" >&2; exit 1; }
mkdir -p "$BUILD/memcheck" "$BUILD/test-data"
# As CMakeLists.txt's VQ_TEST_ENV; one thread each, so valgrind's serialised threads stay quick.
export VQ_SOURCE_DIR=$PWD VQ_BUILD_DIR=$BUILD VQ_TEST_DATA_DIR=$BUILD/test-data OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
bad=() ran=0
for src in tests/unit/test_*.c; do
    name=$(basename "$src" .c)
    t=$(awk -v n="$name" '$1 == n && NF == 3 {print $3}' "$COST")
    if [ -z "$t" ]; then echo "-- $name: no ctest time in $COST, left out"; continue; fi
    awk -v t="$t" -v m="$MAX" 'BEGIN { exit !(t <= m) }' || continue
    [ -x "$BUILD/$name" ] || { echo "-- $name: not built"; bad+=("$name"); continue; }
    start=$SECONDS
    # --num-callers=40: deep enough that Open MPI's leaks reach MPI_Init_thread (tests/valgrind.supp)
    valgrind --tool=memcheck --error-exitcode=99 --leak-check=full --show-leak-kinds=definite \
        --errors-for-leak-kinds=definite --num-callers=40 --suppressions="$PWD/tests/valgrind.supp" \
        --log-file="$BUILD/memcheck/$name.log" "$BUILD/$name" >"$BUILD/memcheck/$name.out" 2>&1
    rc=$?
    ran=$((ran + 1))
    errors=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$BUILD/memcheck/$name.log" | tail -n 1)
    verdict=ok
    if [ $rc -eq 99 ]; then verdict="MEMCHECK ERRORS (${errors:-?}): $BUILD/memcheck/$name.log"
    elif [ $rc -eq 77 ]; then verdict="skipped (exit 77)"
    elif [ $rc -ne 0 ]; then verdict="FAILED (exit $rc): $BUILD/memcheck/$name.out"; fi
    printf '%-28s %5ss  %s\n' "$name" "$((SECONDS - start))" "$verdict"
    case "$verdict" in ok | skipped*) ;; *) bad+=("$name") ;; esac
done
echo "memcheck.sh: $ran tests under valgrind, ${#bad[@]} with findings${bad[*]:+: ${bad[*]}}"
[ ${#bad[@]} -eq 0 ] && [ "$ran" -gt 0 ]
