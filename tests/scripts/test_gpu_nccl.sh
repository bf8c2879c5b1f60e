#!/usr/bin/env bash
# test_gpu_nccl.sh: the GPU side of src/dist, training configs/smoke.yaml (20 steps, fp32,
# train.deterministic=true) on device=cuda:
#   1. np=1, dist.backend=nccl: a one-rank NCCL communicator, so every all-reduce goes the NCCL
#      way (enqueued on the GPU, completion checked by dist_sync), against np=1 with
#      dist.backend=mpi (no communicator). Averaging over one rank is the identity and
#      deterministic mode repeats the GPU's arithmetic, so parameters and Adam moments must be
#      BITWISE equal.
#   2. np=2, dist.backend=mpi on ONE GPU (CUDA_VISIBLE_DEVICES = its first GPU; host-staged, the
#      ranks share the GPU): runs, the ranks hold identical parameters (dist.verify_every), and
#      it matches np=1 with twice the batch (the same global batches) to EQUIV_TOL.
#   3. With 2+ GPUs: np=2, dist.backend=nccl (one GPU per rank) against the same np=1 run. With
#      one GPU that case cannot run (counted as skipped, saying so); instead np=2 dist.backend=nccl
#      on the one GPU must be refused: exit code 1 and the message naming dist.backend=mpi.
# Cases 2 and 3 differ from np=1 only in summation order (a mean of two half-batch means), so
# their model (parameters, codebook, EMA buffers) agrees to a tolerance, not bitwise: per tensor
# max|a-b|/max|b| <= EQUIV_TOL and all tensors together ||a-b||/||b|| <= EQUIV_L2_TOL, with up to
# OUTLIERS elements excused (a ReLU or a code assignment flipped by rounding; see
# test_mpi_equivalence.sh). Measured on the CPU (VQ_GPU_TEST_DEVICE=cpu): 9e-6 per tensor, no
# outliers; the GPU's tolerances are ~100x wider for other convolution algorithms per batch size.
#
# SKIP (exit 77) when no GPU is usable (lib/gpu.sh: nvidia-smi lists none, or a one-step probe
# on train.device=cuda says "no GPU is visible" or "has no CUDA backend"); any other probe failure
# is a FAIL. VQ_REQUIRE_GPU=1 turns the SKIP into a failure (for machines that must have a GPU).
# VQ_GPU_TEST_DEVICE=cpu checks this script where there is no GPU: the same flow on device=cpu
# with dist.backend=mpi in place of nccl, pretending 2 GPUs. It tests the script, not NCCL.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib/common.sh"
source "$here/lib/mpi.sh"
source "$here/lib/gpu.sh"

STEPS=20
EQUIV_TOL=1e-3
EQUIV_L2_TOL=1e-4
OUTLIERS=300
RUN_LIMIT=300   # seconds per training run (a smoke run takes a few seconds on a GPU)

if [ "${VQ_GPU_TEST_DEVICE:-cuda}" = cpu ]; then
    DEVICE=cpu
    NCCL=mpi   # dist.backend=nccl is an error on the CPU
    GPUS=2
    echo "VQ_GPU_TEST_DEVICE=cpu: checking this script's flow on the CPU with dist.backend=mpi; NO NCCL code runs"
elif [ "${VQ_GPU_TEST_DEVICE:-cuda}" = cuda ]; then
    DEVICE=cuda
    NCCL=nccl
    # The probe: one step on the GPU, no launcher (MPI singleton).
    gpu_probe "$VQVAE_BIN" train --config "$SMOKE" train.device=cuda train.steps=1 checkpoint.every=0 \
        checkpoint.dir="$WORK/probe"
    GPUS=$(gpu_count)
else
    echo "FAIL: VQ_GPU_TEST_DEVICE='$VQ_GPU_TEST_DEVICE': expected cuda (the default) or cpu"
    exit 1
fi
# The first GPU this process may use, for the runs that must share one.
FIRST_GPU=0
if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then FIRST_GPU=${CUDA_VISIBLE_DEVICES%%,*}; fi
echo "device $DEVICE, $GPUS GPU(s) visible, NCCL runs use dist.backend=$NCCL"

# train LABEL NP [VAR=VALUE ...] -- [key=value ...]: mpirun -np NP vqvae_dist train on the smoke
# config, bounded by RUN_LIMIT, into the run folder $WORK/LABEL and the log $WORK/LABEL.log.
# Checks the exit code; leaves it in $rc.
train() {
    local label=$1 np=$2
    shift 2
    local envs=()
    while [ "$1" != "--" ]; do envs+=("$1"); shift; done
    shift
    mpi_cmd "$np"
    echo "--- $label: ${envs[*]} ${MPI_CMD[*]} vqvae_dist train $*"
    env ${envs[@]+"${envs[@]}"} timeout -k 10 "$RUN_LIMIT" "${MPI_CMD[@]}" "$VQVAE_BIN" train --config "$SMOKE" \
        train.device="$DEVICE" train.steps="$STEPS" train.deterministic=true train.precision=fp32 log.every=5 \
        checkpoint.every=0 dist.timeout_s=60 checkpoint.dir="$WORK/$label" "$@" >"$WORK/$label.log" 2>&1
    rc=$?
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then echo "(hung: killed by timeout after ${RUN_LIMIT}s)"; fi
    if [ "$rc" -eq 0 ]; then
        pass "$label: exit code 0"
    else
        fail "$label: exit code $rc"
        tail -n 30 "$WORK/$label.log"
    fi
}
# The final checkpoint of run LABEL.
final_ckpt() { echo "$WORK/$1/$(cat "$WORK/$1/latest" 2>/dev/null)"; }
in_log() {  # in_log LABEL TEXT: the run's log contains TEXT
    grep -qF -- "$2" "$WORK/$1.log"
}
# The backend line of dist_setup_comm, e.g. "backend nccl," or "backend mpi (device buffers".
backend_line() {
    grep -m 1 -o "backend [a-z]*" "$WORK/$1.log"
}
# Pass when the final checkpoints of runs A and B are bitwise equal in every parameter, buffer
# (codebook, EMA state) and Adam moment.
same_state() {
    compare_h5 "$(final_ckpt "$1")" "$(final_ckpt "$2")" 0 model optim
}
# Pass when the models of runs A and B agree to the EQUIV tolerances.
equivalent() {
    compare_h5 --l2="$EQUIV_L2_TOL" --outliers="$OUTLIERS" "$(final_ckpt "$1")" "$(final_ckpt "$2")" "$EQUIV_TOL" model
}

# ---- 1. np=1: NCCL (one-rank communicator) == no communicator, bitwise ----------------------
train nccl1 1 -- dist.backend="$NCCL"
check "nccl1: dist.backend=$NCCL in use ($(backend_line nccl1))" in_log nccl1 "backend $NCCL,"
if [ "$NCCL" = nccl ]; then
    check "nccl1: a one-rank NCCL communicator was made" in_log nccl1 "communicator of 1 ranks ready"
fi
train mpi1 1 -- dist.backend=mpi
check "mpi1: dist.backend=mpi in use" in_log mpi1 "backend mpi,"
what="np=1 nccl == np=1 mpi, bitwise (parameters, codebook, Adam moments)"
if same_state nccl1 mpi1; then
    pass "$what"
else
    fail "$what"
    # Tell an NCCL problem from a GPU that does not repeat itself.
    train mpi1_again 1 -- dist.backend=mpi
    if same_state mpi1 mpi1_again >/dev/null; then
        echo "diagnosis: np=1 mpi repeats bit for bit, so the NCCL path changed the result"
    else
        echo "diagnosis: np=1 mpi does not repeat itself in deterministic mode: a CUDA kernel is not deterministic"
    fi
fi
for key in loss nmse perplexity; do
    check "np=1 nccl and mpi end at the same $key (logged by both)" \
        same_metric "$WORK/nccl1/metrics.jsonl" "$WORK/mpi1/metrics.jsonl" train "$key"
done

# ---- 2. np=2 on one GPU, host-staged MPI ------------------------------------------------------
# Half the per-rank batch: the same global batches as np=1.
half=$(awk '/^[[:space:]]*batch_size:/ { print int($2 / 2); exit }' "$SMOKE")
train mpi2_shared 2 CUDA_VISIBLE_DEVICES="$FIRST_GPU" -- dist.backend=mpi train.batch_size="$half" \
    dist.verify_every=10
if [ "$DEVICE" = cuda ]; then
    check "mpi2_shared: staged through the host" in_log mpi2_shared "backend mpi (device buffers staged through host)"
    check "mpi2_shared: both ranks on GPU 0" [ "$(grep -c "dist: GPU 0 (PCI" "$WORK/mpi2_shared.log")" -eq 2 ]
else
    check "mpi2_shared: dist.backend=mpi in use" in_log mpi2_shared "backend mpi,"
fi
check "mpi2_shared: ranks identical at step $STEPS" in_log mpi2_shared "step $STEPS: all 2 ranks hold identical"
check "np=2 (batch $half, one shared GPU) == np=1 (batch $((2 * half))) to $EQUIV_TOL" equivalent mpi2_shared mpi1

# ---- 3. np=2 NCCL, one GPU per rank -------------------------------------------------------------
if [ "$GPUS" -ge 2 ]; then
    train nccl2 2 -- dist.backend="$NCCL" train.batch_size="$half" dist.verify_every=10
    check "nccl2: dist.backend=$NCCL in use ($(backend_line nccl2))" in_log nccl2 "backend $NCCL,"
    if [ "$NCCL" = nccl ]; then
        check "nccl2: a two-rank NCCL communicator was made" in_log nccl2 "communicator of 2 ranks ready"
        check "nccl2: rank 1 on GPU 1" in_log nccl2 "[rank 1] dist: GPU 1 (PCI"
    fi
    check "nccl2: ranks identical at step $STEPS" in_log nccl2 "step $STEPS: all 2 ranks hold identical"
    check "np=2 nccl (batch $half) == np=1 (batch $((2 * half))) to $EQUIV_TOL" equivalent nccl2 mpi1
else
    skip_case "np=2 dist.backend=nccl, one GPU per rank: $GPUS GPU visible, it needs 2"
    # What such a run does on one GPU: refused before any NCCL call, with the way out.
    mpi_cmd 2
    CUDA_VISIBLE_DEVICES="$FIRST_GPU" timeout -k 10 "$RUN_LIMIT" "${MPI_CMD[@]}" "$VQVAE_BIN" train --config "$SMOKE" \
        train.device="$DEVICE" train.steps=2 train.batch_size="$half" checkpoint.every=0 dist.timeout_s=60 \
        dist.backend=nccl checkpoint.dir="$WORK/nccl2_shared" >"$WORK/nccl2_shared.log" 2>&1
    rc=$?
    grep -m 2 "error" "$WORK/nccl2_shared.log"
    check "np=2 dist.backend=nccl on one GPU is refused with exit code 1 (got $rc)" [ "$rc" -eq 1 ]
    check "np=2 dist.backend=nccl on one GPU: the message says why and names dist.backend=mpi" \
        in_log nccl2_shared "dist.backend=nccl needs one GPU per rank, but ranks of this node share a GPU"
fi
finish
