#!/usr/bin/env bash
# test_mpi_signal.sh: a stop request that reaches ONE rank stops them all with a checkpoint
# (DESIGN.md section 3: the stop is agreed by an all-reduce of a flag, never taken by one rank).
# An np=2 run of 100000 steps (checkpoint.every=0) gets SIGUSR1 on rank 1's process only, after
# its first log line. Expected: mpirun exits 75, each rank exits 75 (recorded by a wrapper around
# each rank), checkpoint.dir has a checkpoint named by `latest`; then --resume auto at np=2 to
# stopped+6 steps equals an uninterrupted np=2 run of stopped+6 steps bitwise (model and Adam
# moments). Every run is bounded by `timeout` (generous: they bound a hang, not the speed, and a
# loaded machine may be 10x slower); train.threads=1 per rank.
# Open MPI 4's mpirun aborts the job when a rank exits non-zero (orte_abort_on_non_zero_status, on
# by default; that is how mpirun itself exits 75): SIGTERM to every rank still running, SIGKILL
# odls_base_sigkill_timeout (1 s) later. Both ranks leave MPI_Finalize together, but on a loaded
# machine rank 0 may still be on its way out when rank 1's 75 is seen; its wrapper then died of the
# SIGTERM without recording 75. So the wrapper traps TERM (the rank's own handler treats it as one
# more stop request) and the SIGKILL waits 10 s: a rank that never exits is still killed and fails.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib/common.sh"
source "$here/lib/mpi.sh"
source "$here/lib/find_rank.sh"

common=(--config "$SMOKE" train.device=cpu train.threads=1 train.batch_size=16 checkpoint.every=0 log.every=20)
dir="$WORK/sig"
log="$WORK/sig.log"
mpi_cmd 2
# Each rank runs under a small wrapper that records its exit code in $WORK/rc.<rank>.
# shellcheck disable=SC2016  # expanded by the wrapper's bash, on each rank
wrapper='trap true TERM; "$@"; rc=$?; echo $rc >"$VQ_RC_DIR/rc.${OMPI_COMM_WORLD_RANK:-${PMIX_RANK:-x}}"; exit $rc'
start=$SECONDS
VQ_RC_DIR=$WORK OMPI_MCA_odls_base_sigkill_timeout=10 timeout -k 10 300 "${MPI_CMD[@]}" -x VQ_RC_DIR \
    bash -c "$wrapper" rank-wrapper "$VQVAE_BIN" train "${common[@]}" train.steps=100000 checkpoint.dir="$dir" \
    >"$log" 2>&1 &
job=$!
# Until the first step is logged or the run has ended (its timeout bounds the wait).
while kill -0 "$job" 2>/dev/null && ! grep -q "^step " "$log" 2>/dev/null; do sleep 0.1; done
check "the run logs its first step" grep -q "^step " "$log"
rank1=$(wait_for_rank_pid "$job" 1)
check "found rank 1's process (pid ${rank1:-none})" [ -n "$rank1" ]
rank0=$(find_rank_pid "$job" 0)
echo "rank 0: pid ${rank0:-?}, rank 1: pid ${rank1:-?}; SIGUSR1 to rank 1 only"
[ -n "$rank1" ] && kill -USR1 "$rank1"
wait $job
rc=$?
echo "mpirun exit code $rc after $((SECONDS - start)) s; ranks: 0 -> $(cat "$WORK/rc.0" 2>/dev/null), 1 -> $(cat "$WORK/rc.1" 2>/dev/null)"
grep -E '^step |stopped|^checkpoint: |rank [01]\]' "$log" | tail -n 12 | sed 's/^/  /'
check "mpirun exit code 75 (got $rc)" [ $rc -eq 75 ]
check "rank 0 exit code 75 (got $(cat "$WORK/rc.0" 2>/dev/null))" [ "$(cat "$WORK/rc.0" 2>/dev/null)" = 75 ]
check "rank 1 exit code 75 (got $(cat "$WORK/rc.1" 2>/dev/null))" [ "$(cat "$WORK/rc.1" 2>/dev/null)" = 75 ]
# The ranks gather their last signals: rank 0's log names SIGUSR1 and rank 1, which received it.
usr1=$(kill -l SIGUSR1 2>/dev/null || kill -l USR1)   # its number: 10 on Linux x86
check "the log names SIGUSR1 ($usr1) and rank 1" grep -q "stopped by signal $usr1 (received by rank 1) at step" "$log"
check "checkpoint written (latest)" test -s "$dir/latest"
stopped=$(sed -n 's/ckpt_0*\([0-9][0-9]*\)\.h5/\1/p' "$dir/latest" 2>/dev/null)
check "stopped at a step > 0 (${stopped:-none}) and the latest checkpoint exists" \
    test -n "$stopped" -a -s "$dir/$(cat "$dir/latest" 2>/dev/null)"
check "the log names the same step" grep -q "stopped by signal .* at step ${stopped:-none};" "$log"
echo "stopped at step ${stopped:-?}"

target=$((${stopped:-0} + 6))
timeout -k 10 300 "${MPI_CMD[@]}" "$VQVAE_BIN" train "${common[@]}" train.steps=$target checkpoint.dir="$dir" \
    --resume auto >"$WORK/resume.log" 2>&1
rc=$?
check "resume to step $target (exit code $rc)" [ $rc -eq 0 ]
check "resume log names step $stopped" grep -q "resumed from .*: step $stopped," "$WORK/resume.log"
timeout -k 10 300 "${MPI_CMD[@]}" "$VQVAE_BIN" train "${common[@]}" train.steps=$target checkpoint.dir="$WORK/ref" \
    >"$WORK/ref.log" 2>&1
rc=$?
check "uninterrupted np=2 run of $target steps (exit code $rc)" [ $rc -eq 0 ]
check "resumed run equals the uninterrupted one bitwise (model and optim)" \
    compare_h5 "$WORK/ref/$(cat "$WORK/ref/latest" 2>/dev/null)" "$dir/$(cat "$dir/latest" 2>/dev/null)" 0 model optim
finish
