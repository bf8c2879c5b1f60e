#!/usr/bin/env bash
# test_mpi_collectives.sh: the src/dist collectives (tests/mpi/mpi_collectives.c) with 1 rank
# started directly (singleton MPI_Init, no mpirun) and under mpirun with 1, 2, 3 and 4 ranks, plus the
# error messages of dist_setup_comm for a bad backend or timeout. Every run is bounded by `timeout`,
# so a hang fails the test instead of stalling ctest.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib/common.sh"
source "$here/lib/mpi.sh"
mpi_require_program mpi_collectives
prog="$VQ_BUILD_DIR/mpi_collectives"
out="$WORK/out.txt"

# run LABEL COMMAND...: run with a time bound, show the output, leave the exit code in $rc
# and the duration in $secs.
run() {
    local label=$1
    shift
    echo "--- $label: $*"
    local start=$SECONDS
    timeout -k 10 120 "$@" >"$out" 2>&1
    rc=$?
    secs=$((SECONDS - start))
    cat "$out"
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        echo "(hung: killed by timeout after ${secs}s)"
    fi
}

# The checks themselves: the program exits 0 only when every rank passed.
run "direct, no mpirun" "$prog"
if [ "$rc" -eq 0 ] && grep -q "np=1: [1-9][0-9]* passed, 0 failed" "$out"; then
    pass "np=1 without mpirun (${secs}s)"
else
    fail "np=1 without mpirun: exit code $rc"
fi

# Start-up alone (MPI_Init, communicators, finalize) without mpirun must cost about what it
# costs under mpirun: Open MPI's singleton mode starts its runtime on the fly.
startup_seconds() {
    local start end
    start=$(date +%s.%N)
    timeout -k 10 120 "$@" >"$out" 2>&1
    rc=$?
    end=$(date +%s.%N)
    awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }'
}
direct=$(startup_seconds "$prog" --setup mpi 10)
direct_rc=$rc
mpi_cmd 1
launched=$(startup_seconds "${MPI_CMD[@]}" "$prog" --setup mpi 10)
echo "start-up: ${direct}s without mpirun (exit code $direct_rc), ${launched}s with mpirun -np 1 (exit code $rc)"
if [ "$direct_rc" -eq 0 ] && awk -v a="$direct" -v b="$launched" 'BEGIN { exit !(a <= b + 3) }'; then
    pass "singleton start-up ${direct}s (mpirun -np 1: ${launched}s)"
else
    fail "singleton start-up ${direct}s, exit code $direct_rc (mpirun -np 1: ${launched}s; allowed: 3s more)"
fi

# 3: a world that is not a power of two (the all-reduce algorithms treat it apart).
for np in 1 2 3 4; do
    mpi_cmd "$np"
    run "mpirun np=$np" "${MPI_CMD[@]}" "$prog"
    if [ "$rc" -eq 0 ] && grep -q "np=$np: [1-9][0-9]* passed, 0 failed" "$out"; then
        pass "np=$np under mpirun (${secs}s)"
    else
        fail "np=$np under mpirun: exit code $rc"
    fi
done

# expect_error LABEL CODE TEXT COMMAND...: the command must fail with exit code CODE, in bounded
# time, and print TEXT (naming the config key the user has to fix).
expect_error() {
    local label=$1 code=$2 text=$3
    shift 3
    run "$label" "$@"
    if [ "$rc" -eq "$code" ] && grep -qF -- "$text" "$out"; then
        pass "$label"
    else
        fail "$label: wanted exit code $code and '$text', got exit code $rc"
    fi
}
expect_error "nccl on a CPU context" 1 "dist.backend=nccl needs the CUDA backend" "$prog" --setup nccl 10
expect_error "unknown backend" 1 "unknown dist.backend 'foo'; expected auto, nccl or mpi" "$prog" --setup foo 10
expect_error "zero timeout" 1 "dist.timeout_s=0: expected a positive number" "$prog" --setup mpi 0
expect_error "usage" 2 "usage: mpi_collectives" "$prog" --bogus
# With 2 ranks every rank fails the same way; the job must end (exit code from mpirun), not hang.
mpi_cmd 2
run "nccl on a CPU context, np=2" "${MPI_CMD[@]}" "$prog" --setup nccl 10
if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$rc" -ne 137 ] && grep -qF "dist.backend=nccl" "$out"; then
    pass "nccl on a CPU context, np=2: exit code $rc"
else
    fail "nccl on a CPU context, np=2: exit code $rc"
fi

finish
