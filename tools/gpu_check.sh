#!/usr/bin/env bash
# gpu_check.sh: the one prepared check of vqvae_dist on a lent GPU machine (docs/GPU_RUNBOOK.md),
# one command of at most VQ_GPU_CHECK_BUDGET seconds (480), steps in priority order, each cut by
# `timeout` to its own box and to what is left, so a slow step cannot eat the rest:
#   build     unpack the carried bundle (tools/gpu_env.sh), configure with CUDA for sm_90, build
#             only the targets the steps need
#   gputest   ctest -L gpu with VQ_REQUIRE_GPU=1: a SKIP is a failure (sub-cases that need 2 GPUs
#             are counted as skipped, as the tests print them)
#   parity    tests/torch/test_parity.py on the GPU (VQ_PARITY_DEVICE=cuda): one step vs PyTorch
#   curves    configs/cifar.yaml's model on synthetic data, batch 64, 300 steps on the GPU (fp32,
#             deterministic) against the CPU backend, for ema and vq (tests/scripts/lib/
#             compare_curves.py). The CPU runs start in the background right after the build, on
#             half the cores, and are stopped (SIGTERM: checkpoint, exit 75) when the step's box
#             ends: the curves are then compared over the steps the CPU reached (at least 100).
#   bench     bench/compare.py: ours vs PyTorch eager and torch.compile, batch 256, tf32 then fp32,
#             2 rounds each, short warm-up, peak memory
#   nccl      np=1 under mpirun, dist.backend=nccl vs mpi, cifar model: bitwise the same weights
# Outputs: $OUT (the device tool's folder; default .gpu_runs/<time>/out) gets at most 8 files:
#   summary.txt (one line per step: ok / FAIL / TIMEOUT / NOT RUN, seconds; then the figures),
#   tests.log (ctest -L gpu, parity and nccl logs), build.log, versions.txt, bench.jsonl (every
#   bench JSON line), bench.md (compare.py's tables), curves.txt, curves.png. Everything else stays
#   in .gpu_runs/<time>/. Exit code 0 when every step that ran passed.
#
#   bash tools/gpu_check.sh                          the GPU check (on the device machine)
#   VQ_GPU_CHECK_DEVICE=cpu bash tools/gpu_check.sh  the same flow on the CPU, to check this script
#                                                    where there is no GPU (GPU C tests SKIP there)
# Timing: the CPU mode, 2026-12-03 on the shared 2-core machine, VQ_GPU_CHECK_CURVE_STEPS=100:
#   1251 s, every step ok (build 99 incremental, gputest 222, parity 43, curves 220, bench 573,
#   nccl 88; docs/GPU_RUNBOOK.md). Not yet timed on a GPU: there the budget (480 s) cuts the
#   boxes (build 300, gputest 200, parity 90, curves 120, bench 220, nccl 60) in this order.
# Environment (all optional):
#   VQ_GPU_CHECK_STEPS   the steps to run (default "gputest parity curves bench nccl"); build is
#                        always first (a fresh machine has nothing built)
#   VQ_GPU_CHECK_BUDGET  seconds in all (default 480 on cuda; cpu: 7200, and each step's box x 10)
#   VQ_GPU_CHECK_CURVE_STEPS (300), VQ_GPU_CHECK_BENCH_STEPS (100; cpu 10),
#   VQ_GPU_CHECK_BENCH_WARMUP (10; cpu 2)
#   VQ_GPU_BUNDLE (.gpu_bundle), VQ_GPU_PREFIX (.gpu_prefix), VQ_GPU_BUILD (build-gpu),
#   VQ_GPU_CHECK_PYTHON (the Python with torch and h5py; default: the first of python3, /usr/bin/python3),
#   VQ_GPU_LIBS=all (every library from the bundle, if a system library conflicts),
#   VQ_GPU_CUDA=OFF (build without CUDA; cpu mode only)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
ROOT=$PWD
START=$(date +%s)
MODE=${VQ_GPU_CHECK_DEVICE:-cuda}
case "$MODE" in
    cuda) DEFAULT_BUDGET=480 CUDA_MODE=ON BENCH_DEFAULT=(100 10) ;;
    cpu) DEFAULT_BUDGET=7200 CUDA_MODE=${VQ_GPU_CUDA:-AUTO} BENCH_DEFAULT=(10 2) ;;
    *) echo "gpu_check.sh: VQ_GPU_CHECK_DEVICE must be cuda or cpu, got '$MODE'" >&2; exit 2 ;;
esac
DEADLINE=$((START + ${VQ_GPU_CHECK_BUDGET:-$DEFAULT_BUDGET}))
WANTED=" ${VQ_GPU_CHECK_STEPS:-gputest parity curves bench nccl} "
for s in $WANTED; do   # a misspelt step would otherwise run nothing and pass
    case " gputest parity curves bench nccl " in *" $s "*) ;; *)
        echo "gpu_check.sh: unknown step '$s' in VQ_GPU_CHECK_STEPS (steps: gputest parity curves bench nccl)" >&2
        exit 2 ;; esac
done
CURVE_STEPS=${VQ_GPU_CHECK_CURVE_STEPS:-300}
BENCH_STEPS=${VQ_GPU_CHECK_BENCH_STEPS:-${BENCH_DEFAULT[0]}}
BENCH_WARMUP=${VQ_GPU_CHECK_BENCH_WARMUP:-${BENCH_DEFAULT[1]}}
BUNDLE=${VQ_GPU_BUNDLE:-$ROOT/.gpu_bundle}
PREFIX=${VQ_GPU_PREFIX:-$ROOT/.gpu_prefix}
BUILD=${VQ_GPU_BUILD:-$ROOT/build-gpu}
BIN=$BUILD/vqvae_dist
WORK=$ROOT/.gpu_runs/$(date -u +%Y%m%dT%H%M%SZ)-$MODE
OUT=${OUT:-$WORK/out}
SUMMARY=$WORK/summary.txt
# The Python with torch, h5py and numpy (PyTorch baselines, parity, HDF5 comparisons): python3 on PATH
# (the device machine's), else Debian's.
TORCH_PYTHON=${VQ_GPU_CHECK_PYTHON:-}
for p in python3 /usr/bin/python3; do
    [ -n "$TORCH_PYTHON" ] && break
    "$p" -c 'import torch, h5py, numpy' 2>/dev/null && TORCH_PYTHON=$(command -v "$p")
done
mkdir -p "$WORK" "$OUT"
# The steps run in child shells (step): what they read must be exported, OUT included (the device
# tool exports its own; the default above was not, and bench.* and curves.* went to /).
export ROOT MODE BUNDLE PREFIX BUILD BIN WORK OUT TORCH_PYTHON CURVE_STEPS BENCH_STEPS BENCH_WARMUP
# shellcheck source=tools/gpu_env.sh
source "$ROOT/tools/gpu_env.sh"

echo "# tools/gpu_check.sh on $(hostname), device $MODE, $(date -u +%FT%TZ), commit" \
     "$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown), budget $((DEADLINE - START)) s" >"$SUMMARY"
note() { echo "$*" | tee -a "$SUMMARY"; cp "$SUMMARY" "$OUT/summary.txt"; }
left() { echo $((DEADLINE - $(date +%s))); }
box() { if [ "$MODE" = cpu ]; then echo $(($1 * 10)); else echo "$1"; fi; }   # a step's box in seconds
FAILED=0

# step NAME BOX FUNCTION [ARGS...]: run FUNCTION (exported to a child bash) for at most BOX seconds,
# cut to what is left of the budget less 20 s (to pack the outputs), log in $WORK/NAME.log; one
# summary line. Returns the function's exit code (124 on a timeout, 125 when not started).
step() {
    local name=$1 box=$2 rc t0 verdict room
    shift 2
    room=$(($(left) - 20))
    if [ "$room" -lt 15 ]; then
        printf '%-10s %-22s %5s\n' "$name" "NOT RUN (budget)" "-" >>"$SUMMARY"
        FAILED=1
        return 125
    fi
    [ "$box" -gt "$room" ] && box=$room
    echo "== $name (at most ${box}s)"
    t0=$(date +%s)
    timeout -k 10 "$box" bash -c "$(declare -f); $(printf '%q ' "$@")" >"$WORK/$name.log" 2>&1 </dev/null
    rc=$?
    verdict=ok
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then verdict="TIMEOUT (${box}s)"
    elif [ $rc -ne 0 ]; then verdict="FAIL (exit $rc)"; fi
    [ $rc -eq 0 ] || FAILED=1
    printf '%-10s %-22s %5ss\n' "$name" "$verdict" "$(($(date +%s) - t0))" >>"$SUMMARY"
    cp "$SUMMARY" "$OUT/summary.txt"   # kept current: if the call is cut short, this much comes back
    echo "   -> $verdict in $(($(date +%s) - t0))s"
    tail -n 4 "$WORK/$name.log" | cut -c1-240 | sed 's/^/   | /'
    return $rc
}

# ---- build -------------------------------------------------------------------------------------
build() {
    gpu_configure "$BUILD" "$CUDA_MODE" || return 1
    # shellcheck disable=SC2086  # a list of target names
    cmake --build "$BUILD" -j"$(nproc)" --target $GPU_BUILD_TARGETS || return 1
    ldd "$BIN" | grep -E "cudnn|nccl|cublas|mpi|hdf5|openblas|not found"
    ! ldd "$BIN" | grep -q "not found"
}

# ---- gputest, parity ---------------------------------------------------------------------------
# ctest_verdict LOG: ctest's exit code, and in cuda mode a skipped test is a failure.
ctest_verdict() {
    local rc=$1 log=$2
    if grep -qE "\*\*\*Skipped|Not Run" "$log"; then
        if [ "$MODE" = cuda ]; then echo "a test was SKIPPED on a GPU machine: counted as a failure"; return 1; fi
        echo "(cpu mode: the GPU C tests SKIP here, as they must without a GPU)"
    fi
    return "$rc"
}
gputest() {
    cd "$BUILD" || return 1
    local env=(VQ_REQUIRE_GPU=1 VQ_GPU_TEST_REPORT="$WORK/gpu-test-report.txt")
    [ "$MODE" = cpu ] && env=(VQ_GPU_TEST_DEVICE=cpu VQ_GPU_TEST_REPORT="$WORK/gpu-test-report.txt")
    env "${env[@]}" ctest -L gpu -j3 --output-on-failure --timeout 400 -V >"$WORK/ctest-gpu.txt" 2>&1
    local rc=$?
    grep -E "^ *[0-9]+/[0-9]+ Test|tests passed|SKIP|: [0-9]+ passed" "$WORK/ctest-gpu.txt"
    ctest_verdict $rc "$WORK/ctest-gpu.txt"
}
parity() {
    cd "$BUILD" || return 1
    VQ_PARITY_DEVICE=$MODE VQ_REQUIRE_TORCH=1 ctest -R '^test_parity$' --output-on-failure --timeout 300 -V \
        >"$WORK/ctest-parity.txt" 2>&1
    local rc=$?
    tail -n 25 "$WORK/ctest-parity.txt"
    ctest_verdict $rc "$WORK/ctest-parity.txt"
}

# ---- curves ------------------------------------------------------------------------------------
# The CIFAR model's tolerances (compare_curves.py), from two CPU runs that differ only in
# train.threads (1 vs 2; summation order, as CPU vs GPU): loss per step within 4.5e-5 for steps
# 1..5, 2.4e-3 by step 9, 7% by step 50; mean nmse over steps 151..300 13% (ema) and 5.5% (vq)
# apart, test nmse 12% and 9%. One pair of runs (docs/GPU_RUNBOOK.md): the margins are wide.
export CURVE_TOLERANCES="--early=5 --early-tol=1e-3 --late-tol=0.3 --eval-tol=0.35"
# curve_run NAME DEVICE QUANTIZER [key=value...]: CURVE_STEPS steps of the cifar model, batch 64,
# every step logged, into $WORK/curves/NAME. exec: a SIGTERM reaches the trainer (checkpoint, 75).
curve_run() {
    local name=$1 device=$2 q=$3
    shift 3
    exec "$BIN" train --config "$ROOT/configs/cifar.yaml" data.dataset=synthetic data.synthetic_count=8192 \
        train.batch_size=64 train.steps="$CURVE_STEPS" train.eval_every=0 train.eval_batches=4 log.every=1 \
        checkpoint.every=0 quantizer.type="$q" train.device="$device" train.precision=fp32 train.deterministic=true \
        checkpoint.dir="$WORK/curves/$name" "$@"
}
# The CPU side, in the background from the end of the build: half the cores between the two runs.
start_cpu_curves() {
    local q threads=$(($(nproc) / 4))
    [ "$threads" -lt 1 ] && threads=1
    mkdir -p "$WORK/curves"
    CPU_PIDS=()
    for q in ema vq; do
        (curve_run "cpu-$q" cpu "$q" train.threads="$threads") >"$WORK/curves/cpu-$q.log" 2>&1 &
        CPU_PIDS+=($!)
    done
    export CPU_PIDS_LIST="${CPU_PIDS[*]}"
    echo "curves: CPU runs started in the background (pids ${CPU_PIDS[*]}, $threads threads each)"
}
curves() {
    local q rc=0 dev=cuda p
    [ "$MODE" = cpu ] && dev=cpu
    for q in ema vq; do
        echo "--- gpu-$q: $CURVE_STEPS steps on $dev"
        (curve_run "gpu-$q" "$dev" "$q") >"$WORK/curves/gpu-$q.log" 2>&1 || { echo "gpu-$q failed:"; tail -n 20 "$WORK/curves/gpu-$q.log"; rc=1; }
    done
    # Wait for the CPU runs until 15 s before this step's box ends (GPU_CHECK_BOX_END), then stop them.
    for p in $CPU_PIDS_LIST; do
        while kill -0 "$p" 2>/dev/null && [ "$(date +%s)" -lt "$GPU_CHECK_BOX_END" ]; do sleep 1; done
        if kill -0 "$p" 2>/dev/null; then
            echo "curves: the CPU run (pid $p) is still going: SIGTERM (it checkpoints and exits 75)"
            kill -TERM "$p"
        fi
    done
    for p in $CPU_PIDS_LIST; do while kill -0 "$p" 2>/dev/null; do sleep 0.5; done; done
    for q in ema vq; do
        echo "--- $q: CPU vs $dev ($(tail -n 1 "$WORK/curves/cpu-$q.log"))"
        "$TORCH_PYTHON" "$ROOT/tests/scripts/lib/compare_curves.py" "$WORK/curves/cpu-$q/metrics.jsonl" \
            "$WORK/curves/gpu-$q/metrics.jsonl" --steps="$CURVE_STEPS" $CURVE_TOLERANCES || rc=1
    done
    "$TORCH_PYTHON" "$ROOT/tools/gpu_curves.py" "$WORK/curves" "$OUT/curves.txt" "$OUT/curves.png" || rc=1
    return $rc
}

# ---- bench -------------------------------------------------------------------------------------
bench() {
    local precision dev=$MODE rc=0 gpu name
    gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1 | tr 'A-Z ' 'a-z-')
    for precision in tf32 fp32; do
        name=$(date -u +%F)-${gpu:-$MODE}-$precision
        echo "--- $precision: bench/compare.py, results in $WORK/bench/$name"
        "$TORCH_PYTHON" "$ROOT/bench/compare.py" --bin "$BIN" --python "$TORCH_PYTHON" --device "$dev" \
            --precision "$precision" --batch 256 --steps "$BENCH_STEPS" --warmup "$BENCH_WARMUP" --repeat 2 \
            --out "$WORK/bench" --name "$name" quantizer.type=ema || rc=1
        cat "$WORK/bench/$name/results.jsonl" >>"$OUT/bench.jsonl" 2>/dev/null
        { echo "<!-- $WORK/bench/$name/README.md -->"; cat "$WORK/bench/$name/README.md"; echo; } >>"$OUT/bench.md" 2>/dev/null
    done
    return $rc
}

# ---- nccl --------------------------------------------------------------------------------------
nccl() {
    local run want=nccl dev=cuda rc=0
    [ "$MODE" = cpu ] && want=mpi dev=cpu   # dist.backend=nccl needs the CUDA backend: the flow only
    for run in "1-$want" 2-mpi; do
        echo "--- $run: np=1, dist.backend=${run#*-}, cifar model on $dev, batch 256, 50 steps, fp32 deterministic"
        mpirun --allow-run-as-root --oversubscribe --bind-to none -np 1 "$BIN" train \
            --config "$ROOT/configs/cifar.yaml" data.dataset=synthetic data.synthetic_count=8192 train.batch_size=256 \
            train.steps=50 log.every=10 train.eval_every=0 train.eval_batches=1 checkpoint.every=0 \
            train.device="$dev" train.precision=fp32 train.deterministic=true dist.backend="${run#*-}" \
            checkpoint.dir="$WORK/nccl/$run" >"$WORK/nccl/$run.log" 2>&1 || { echo "FAIL: $run exit code $?"; rc=1; }
        grep -E "dist:|^done" "$WORK/nccl/$run.log" || tail -n 20 "$WORK/nccl/$run.log"
    done
    if [ "$want" = nccl ] && ! grep -q "communicator of 1 ranks ready" "$WORK/nccl/1-nccl.log"; then
        echo "FAIL: the nccl run made no NCCL communicator"; rc=1
    fi
    "$TORCH_PYTHON" "$ROOT/tests/scripts/lib/compare_h5.py" \
        "$WORK/nccl/1-$want/ckpt_00000050.h5" "$WORK/nccl/2-mpi/ckpt_00000050.h5" 0 model optim || rc=1
    return $rc
}

# ---- outputs -----------------------------------------------------------------------------------
pack() {
    local rc=$?
    trap - EXIT INT TERM
    # A shell error (set -u, a bad source) ends the script outside any step: say so, with the log
    # it went to, rather than leave a summary with no verdict.
    if [ "$rc" -ne 0 ] && [ "${FAILED:-0}" -eq 0 ]; then
        echo "ABORTED    exit code $rc outside a step (a shell error?); the last lines of setup.log:" >>"$SUMMARY"
        tail -n 5 "$WORK/setup.log" 2>/dev/null | sed 's/^/  | /' >>"$SUMMARY"
    fi
    [ -n "${CPU_PIDS_LIST:-}" ] && kill -TERM $CPU_PIDS_LIST 2>/dev/null
    {
        echo
        echo "# figures"
        grep -h "^summary:" "$WORK/curves.log" 2>/dev/null | sed 's/^/curves: /'
        grep -h -E "^\| (vqvae_dist|PyTorch)|^- vs |^# vqvae_dist vs" "$OUT/bench.md" 2>/dev/null
        grep -h -E "^[a-z0-9_-]+: [0-9]+ passed, [0-9]+ failed" "$WORK/ctest-gpu.txt" "$WORK/ctest-parity.txt" 2>/dev/null
        grep -h "^SKIP:" "$WORK/ctest-gpu.txt" 2>/dev/null | sed 's/^/sub-case /'
        cat "$WORK/gpu-test-report.txt" 2>/dev/null
        grep -h "worst relative error" "$WORK/nccl.log" 2>/dev/null | sed 's/^/nccl: /'
        grep -E "^== (git|glibc|cpu)|NVIDIA H|^torch|^device|CUDNN_MAJOR|NCCL_MAJOR|release" "$WORK/versions.txt" 2>/dev/null
        echo "# finished $(date -u +%FT%TZ) after $(($(date +%s) - START)) s; all files in $WORK"
    } >>"$SUMMARY"
    cp "$SUMMARY" "$OUT/summary.txt"
    cp "$WORK/versions.txt" "$OUT/versions.txt" 2>/dev/null
    tail -c 4000000 "$WORK/build.log" >"$OUT/build.log" 2>/dev/null
    for f in ctest-gpu.txt gputest.log ctest-parity.txt nccl.log curves.log bench.log; do
        [ -f "$WORK/$f" ] && { echo "======== $f"; tail -c 3000000 "$WORK/$f"; }
    done >"$OUT/tests.log"
    echo
    echo "==================== summary ===================="
    cat "$SUMMARY"
    echo "outputs in $OUT: $(cd "$OUT" && ls | xargs)"
}
trap pack EXIT
trap 'note "# stopped by a signal"; exit 130' INT TERM

# ---- main --------------------------------------------------------------------------------------
if ! gpu_env_setup "$WORK" >"$WORK/setup.log" 2>&1; then
    cat "$WORK/setup.log"
    FAILED=1
    note "setup      FAIL (unpacking the bundle; see setup.log)"
    exit 1
fi
note "setup: $(tail -n 1 "$WORK/setup.log"); cuDNN ${CUDNN_LIB:-none}, NCCL ${NCCL_LIB:-none}"
[ -n "$TORCH_PYTHON" ] || note "setup: no Python here imports torch, h5py and numpy: parity, curves, bench and nccl will FAIL"
export NVCC CUDA_HOME CUDNN_H NCCL_H CUDNN_LIB NCCL_LIB GPU_BUILD_TARGETS CUDA_MODE
if ! step build "$(box 300)" build; then
    FAILED=1
    note "the build failed: nothing else can run (see build.log)"
    exit 1
fi
mkdir -p "$WORK/nccl"
[[ "$WANTED" == *" curves "* ]] && start_cpu_curves
[[ "$WANTED" == *" gputest "* ]] && step gputest "$(box 200)" gputest
[[ "$WANTED" == *" parity "* ]] && step parity "$(box 90)" parity
if [[ "$WANTED" == *" curves "* ]]; then
    b=$(box 120) room=$(($(left) - 20))
    [ "$b" -gt "$room" ] && b=$room
    export GPU_CHECK_BOX_END=$(($(date +%s) + b - 15))   # when curves() stops the CPU runs
    step curves "$b" curves
fi
[[ "$WANTED" == *" bench "* ]] && step bench "$(box 220)" bench
[[ "$WANTED" == *" nccl "* ]] && step nccl "$(box 60)" nccl
[ "$FAILED" -eq 0 ]
exit $?
