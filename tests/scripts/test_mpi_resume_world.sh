#!/usr/bin/env bash
# test_mpi_resume_world.sh: a checkpoint resumes at another world size and the data order goes
# on where it stopped (DESIGN.md section 3: the epoch permutation depends only on the seed and the
# epoch, a global batch takes the next batch x world samples of it). configs/smoke.yaml has 256
# synthetic images; VQ_TEST_LOG_SAMPLES makes every rank log the ids it trains on, and
# lib/check_samples.py checks over both runs of a case:
#   - every step 0 .. target-1 trained exactly once (the resume continues at the saved step);
#   - epoch 0 over all ranks and both runs is exactly a permutation of 0..255, epoch 1 started and
#     has no id twice;
#   - the sample order of each epoch is the same in every case (a prefix of the others').
# Plus: both runs exit 0, the resume says the checkpoint was written by another world size, and
# the final checkpoint's step attribute is the target.
#   A  np=2 (batch 16, global 32) 5 steps = 160 ids -> np=1 (global 16): 6 steps end epoch 0, 3 more
#   B  np=1 (global 16) 6 steps = 96 ids -> np=2 (global 32): 5 steps end epoch 0, 2 more
#   C  np=1 5 steps = 80 ids -> np=2: 5 steps reach 240 and the last 16 ids of epoch 0 no longer
#      make a global batch of 32: they are dropped (like drop_last), and must be the last 16 of the
#      epoch's order (from case A), none repeated.
# Every run is bounded by `timeout`; train.threads=1 per rank.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib/common.sh"
source "$here/lib/mpi.sh"
PY=$(py_h5)
[ -n "$PY" ] || { echo "FAIL: no Python with h5py + numpy (apt-get install python3-h5py)"; exit 1; }
COUNT=256

# train CASE NP STEPS [--resume auto]: batch 16 per rank, sample log $WORK/CASE.samples.rank<R>.
train() {
    local case=$1 np=$2 steps=$3
    shift 3
    mpi_cmd "$np"
    local log="$WORK/$case.np$np.log" start=$SECONDS rc
    VQ_TEST_LOG_SAMPLES="$WORK/$case.samples" timeout -k 10 120 "${MPI_CMD[@]}" -x VQ_TEST_LOG_SAMPLES \
        "$VQVAE_BIN" train --config "$SMOKE" train.device=cpu train.threads=1 train.batch_size=16 \
        train.steps="$steps" checkpoint.every=0 checkpoint.dir="$WORK/$case" log.every=5 "$@" >"$log" 2>&1
    rc=$?
    echo "  $case: np=$np to step $steps: exit code $rc after $((SECONDS - start)) s"
    if [ $rc -ne 0 ]; then tail -n 20 "$log"; fi
    return $rc
}

final_step() {  # the step attribute of the newest checkpoint in DIR
    "$PY" -c 'import h5py, sys; print(h5py.File(sys.argv[1], "r").attrs["step"])' "$1/$(cat "$1/latest")"
}

# case NAME NP1 STEPS1 NP2 TARGET DROPPED
run_case() {
    local name=$1 np1=$2 steps1=$3 np2=$4 target=$5 dropped=$6
    echo "=== $name: np=$np1 for $steps1 steps, then --resume auto at np=$np2 to step $target"
    train "$name" "$np1" "$steps1"
    check "$name: np=$np1 run (exit code 0)" [ $? -eq 0 ]
    train "$name" "$np2" "$target" --resume auto
    check "$name: resumed np=$np2 run (exit code 0)" [ $? -eq 0 ]
    local log="$WORK/$name.np$np2.log"
    grep "resumed from" "$log" | sed 's/^/  /'
    check "$name: resumed at step $steps1, written by another world size" \
        grep -q "resumed from .*: step $steps1, .*(written by another world size" "$log"
    local step; step=$(final_step "$WORK/$name")
    check "$name: final checkpoint at step $target (got $step)" [ "$step" = "$target" ]
    local same=()
    [ "$name" != A ] && same=(--same-order="$WORK/A.samples")
    check "$name: sample ids (check_samples.py)" \
        "$PY" "$here/lib/check_samples.py" "$WORK/$name.samples" $COUNT "$target" --dropped="$dropped" "${same[@]}"
}

run_case A 2 5 1 14 0
run_case B 1 6 2 13 0
run_case C 1 5 2 12 16
finish
