#!/usr/bin/env bash
# mpi.sh: shared by tests/scripts/test_mpi_*.sh. Source it, then:
#   mpi_require_program NAME        fail (exit 1) with a hint when $VQ_BUILD_DIR/NAME is missing
#   mpi_cmd NP                      set the array MPI_CMD to the mpirun command line for NP ranks:
#                                   "${MPI_CMD[@]}" PROGRAM ARGS (works under `timeout`, a function would not)
#   mpi_is_openmpi4                 true when VQ_MPIEXEC is Open MPI 4 (its orte_* switches exist)
# The pass/fail/skip bookkeeping is lib/common.sh's (source it first).
# VQ_MPIEXEC and VQ_BUILD_DIR come from ctest (CMakeLists.txt); defaults allow running by hand.

VQ_MPIEXEC=${VQ_MPIEXEC:-mpirun}
if [ -z "${VQ_BUILD_DIR:-}" ]; then
    echo "error: VQ_BUILD_DIR is not set; run through ctest, or export VQ_BUILD_DIR=<your build folder>" >&2
    exit 1
fi

# --oversubscribe: the test machines may have fewer cores than ranks (np=4 on 2 cores).
# --allow-run-as-root: Open MPI refuses root without it (containers, CI); only added when root.
MPI_FLAGS=(--oversubscribe)
if [ "$(id -u)" = 0 ]; then
    MPI_FLAGS+=(--allow-run-as-root)
fi

mpi_require_program() {
    if [ ! -x "$VQ_BUILD_DIR/$1" ]; then
        echo "FAIL: $VQ_BUILD_DIR/$1 is missing; build it: cmake --build $VQ_BUILD_DIR --target $1" >&2
        exit 1
    fi
}

mpi_cmd() {
    # shellcheck disable=SC2034  # used by the scripts that source this file
    MPI_CMD=("$VQ_MPIEXEC" "${MPI_FLAGS[@]}" -np "$1")
}

mpi_is_openmpi4() {
    "$VQ_MPIEXEC" --version 2>&1 | grep -Eq "\((Open MPI|OpenRTE)\) 4\."
}
