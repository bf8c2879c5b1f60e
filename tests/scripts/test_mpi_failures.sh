#!/usr/bin/env bash
# test_mpi_failures.sh: what goes wrong in a data-parallel run is caught, on every rank.
#   (a) kill -9 of rank 1 mid-run (dist.timeout_s=10): the job ends non-zero within 45 s (mpirun
#       sees the dead rank, or our collective timeout ends it); the time, exit code and message
#       are printed.
#   (a2) the same with mpirun told not to abort (Open MPI 4): the trainer's collective timeout
#       must end the job (after ~10 s, with rank 0's timeout message; it then calls MPI_Abort(76)).
#   (b) VQ_TEST_INJECT_NAN=3:1 (a NaN in rank 1's gradient at the 0-based step 3 = step 4 as
#       logged), np=2, dist.verify_every=2, log.every=4: both ranks warn that step 4 was skipped,
#       the run completes, every verify passes (the skip was taken by both ranks), the checkpoint
#       has step 12 with 11 Adam steps, and metrics.jsonl ends with a finite loss.
#   (c) VQ_TEST_PERTURB=4:1 (rank 1 nudges a parameter after step 5), dist.verify_every=2:
#       verify passes at step 4 and fails at step 6 with exit code 1 and a message naming rank 1.
# Every run is bounded by `timeout`; train.threads=1 per rank.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib/common.sh"
source "$here/lib/mpi.sh"
source "$here/lib/find_rank.sh"
PY=$(py_h5)
[ -n "$PY" ] || { echo "FAIL: no Python with h5py + numpy (apt-get install python3-h5py)"; exit 1; }
common=(--config "$SMOKE" train.device=cpu train.threads=1 train.batch_size=16 checkpoint.every=0)
mpi_cmd 2

echo "=== (a) kill -9 of rank 1 mid-run, dist.timeout_s=10"
log="$WORK/kill.log"
timeout -k 10 60 "${MPI_CMD[@]}" "$VQVAE_BIN" train "${common[@]}" train.steps=100000 log.every=20 \
    dist.timeout_s=10 checkpoint.dir="$WORK/kill" >"$log" 2>&1 &
job=$!
for _ in $(seq 600); do grep -q "^step " "$log" 2>/dev/null && break; sleep 0.1; done
check "(a) the run logs its first step" grep -q "^step " "$log"
rank1=$(wait_for_rank_pid "$job" 1)
check "(a) found rank 1's process (pid ${rank1:-none})" [ -n "$rank1" ]
start=$(date +%s.%N)
[ -n "$rank1" ] && kill -KILL "$rank1"
wait $job
rc=$?
secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
echo "(a) exit code $rc, $secs s after the kill; the end of the output:"
tail -n 8 "$log" | sed 's/^/  /'
check "(a) non-zero exit code ($rc)" [ $rc -ne 0 ]
check "(a) the job ended within 45 s of the kill (${secs} s; 60 s = the outer timeout killed a hang)" \
    fcmp "$secs < 45"
check "(a) the output names the dead rank or the timeout" \
    grep -Eq "rank 1 with PID [0-9]+ .*(exited on signal 9|Killed)|got no answer from the other ranks" "$log"

# (a2) the same with mpirun told not to abort the job when a rank fails (Open MPI 4's switch): only
# the trainer's collective timeout can end it: rank 0 waits dist.timeout_s=10 s in an all-reduce,
# says so and calls MPI_Abort(76); mpirun's exit code is the first failed rank's (137, rank 1).
if mpi_is_openmpi4; then
    echo "=== (a2) kill -9 of rank 1, mpirun does not abort: dist.timeout_s=10 must end the job"
    log="$WORK/kill2.log"
    timeout -k 10 60 "${MPI_CMD[@]}" --mca orte_abort_on_non_zero_status 0 "$VQVAE_BIN" train "${common[@]}" \
        train.steps=100000 log.every=20 dist.timeout_s=10 checkpoint.dir="$WORK/kill2" >"$log" 2>&1 &
    job=$!
    for _ in $(seq 600); do grep -q "^step " "$log" 2>/dev/null && break; sleep 0.1; done
    rank1=$(wait_for_rank_pid "$job" 1)
    check "(a2) found rank 1's process (pid ${rank1:-none})" [ -n "$rank1" ]
    start=$(date +%s.%N)
    [ -n "$rank1" ] && kill -KILL "$rank1"
    wait $job
    rc=$?
    secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    echo "(a2) exit code $rc, $secs s after the kill"
    grep -E "error|MPI_ABORT|errorcode" "$log" | sed 's/^/  /'
    check "(a2) non-zero exit code ($rc)" [ $rc -ne 0 ]
    check "(a2) ended by the timeout: after 10 s, within 45 s of the kill (${secs} s)" fcmp "$secs >= 9.5 && $secs < 45"
    check "(a2) rank 0 names the collective and dist.timeout_s=10" grep -Eq \
        "^\[rank 0\] error: collective '[a-z_]+' at step [0-9]+ got no answer from the other ranks within dist.timeout_s=10 s" \
        "$log"
    # Open MPI's "MPI_ABORT was invoked ... with errorcode 76" notice shows only sometimes: not checked.
else
    skip_case "(a2) needs Open MPI 4's orte_abort_on_non_zero_status switch; $VQ_MPIEXEC is $("$VQ_MPIEXEC" --version 2>&1 | head -n 1)"
fi

echo "=== (b) NaN in rank 1's gradient at step 4 (VQ_TEST_INJECT_NAN=3:1)"
log="$WORK/nan.log"
# The ranks' stderr lines reach mpirun's output interleaved ("[rank 1] [rank 0] warning: ..."),
# so with Open MPI 4 each rank's output also goes to its own file (--output-filename).
per_rank=()
if mpi_is_openmpi4; then
    per_rank=(--output-filename "$WORK/nan-out")
fi
VQ_TEST_INJECT_NAN=3:1 timeout -k 10 120 "${MPI_CMD[@]}" "${per_rank[@]}" -x VQ_TEST_INJECT_NAN "$VQVAE_BIN" train \
    "${common[@]}" train.steps=12 log.every=4 dist.verify_every=2 checkpoint.dir="$WORK/nan" >"$log" 2>&1
rc=$?
grep -E "^step |warning|verify|^done" "$log" | sed 's/^/  /'
check "(b) the run completes (exit code $rc)" [ $rc -eq 0 ]
warning="warning: 1 step\(s\) skipped since the last report, the last one step 4:"
check "(b) two warnings (one per rank) that step 4 was skipped, none about another step" \
    [ "$(grep -Ec "$warning" "$log")" -eq 2 -a "$(grep -c "warning: .*skipped" "$log")" -eq 2 ]
for r in 0 1; do
    if [ ${#per_rank[@]} -gt 0 ]; then
        check "(b) rank $r warns that step 4 was skipped (its own stderr)" \
            grep -Eq "^\[rank $r\] $warning" "$WORK/nan-out/1/rank.$r/stderr"
    else
        check "(b) rank $r warns (a '[rank $r]' prefix in the output)" grep -q "\[rank $r\] " "$log"
    fi
done
check "(b) verify passed at steps 2, 4, ..., 12" \
    [ "$(grep -Ec "^verify: step (2|4|6|8|10|12): all 2 ranks hold identical" "$log")" -eq 6 ]
check "(b) no verify failure" bash -c "! grep -q 'dist.verify_every: at step' '$log'"
check "(b) done: 12 steps, 1 skipped" grep -q "^done: 12 steps in .*, 1 skipped" "$log"
ck="$WORK/nan/$(cat "$WORK/nan/latest" 2>/dev/null)"
steps=$("$PY" -c 'import h5py, sys; f = h5py.File(sys.argv[1], "r"); print(f.attrs["step"], f["optim"].attrs["step"])' \
    "$ck" 2>/dev/null)
check "(b) checkpoint: step 12, 11 Adam steps (got '$steps')" [ "$steps" = "12 11" ]
loss=$(metric "$WORK/nan/metrics.jsonl" train loss last)
echo "(b) last train loss in metrics.jsonl: $loss (losses: $(grep '"kind":"train"' "$WORK/nan/metrics.jsonl" |
    sed -n 's/.*"loss":\([^,]*\).*/\1/p' | xargs))"
check "(b) the last train loss is finite" \
    "$PY" -c 'import math, sys; sys.exit(0 if math.isfinite(float(sys.argv[1])) else 1)' "${loss:-nan}"
check "(b) every logged train loss is finite" "$PY" -c '
import math, re, sys
losses = [float(m.group(1)) for l in open(sys.argv[1]) if "\"kind\":\"train\"" in l
          for m in [re.search(r"\"loss\":([^,}]*)", l)] if m]
sys.exit(0 if len(losses) == 4 and all(math.isfinite(x) for x in losses) else 1)' "$WORK/nan/metrics.jsonl"

echo "=== (c) rank 1's parameters diverge after step 5 (VQ_TEST_PERTURB=4:1), dist.verify_every=2"
log="$WORK/perturb.log"
VQ_TEST_PERTURB=4:1 timeout -k 10 120 "${MPI_CMD[@]}" -x VQ_TEST_PERTURB "$VQVAE_BIN" train "${common[@]}" \
    train.steps=12 log.every=4 dist.verify_every=2 checkpoint.dir="$WORK/perturb" >"$log" 2>&1
rc=$?
grep -E "verify|error" "$log" | sed 's/^/  /'
check "(c) exit code 1 (got $rc)" [ $rc -eq 1 ]
check "(c) verify passed at step 4" grep -q "^verify: step 4: all 2 ranks hold identical" "$log"
check "(c) the error names step 6 and rank 1" \
    grep -q "error: dist.verify_every: at step 6 the parameters of rank(s) 1 differ from rank 0" "$log"
check "(c) no training after the failed verify" bash -c "! grep -Eq '^(step +8/|done:)' '$log'"
finish
