# shellcheck shell=bash
# gpu.sh: shared by tests/scripts/test_gpu_*.sh. Source it after common.sh, then:
#   gpu_skip "why"        SKIP (exit 77); with VQ_REQUIRE_GPU=1 (a GPU machine, where a skipped GPU
#                         test means something is wrong: tools/gpu_check.sh sets it) a failure (exit 1)
#   gpu_probe CMD...      is a GPU usable? CMD is one short vqvae_dist run on train.device=cuda.
#                         SKIP when `nvidia-smi -L` fails or lists no GPU, or when CMD fails with the
#                         binary's "no GPU is visible" (no driver, a driver older than the runtime,
#                         CUDA_VISIBLE_DEVICES empty) or "has no CUDA backend" (nvcc was not found at
#                         configure time). Any other failure of CMD is a FAIL and ends the test: a GPU
#                         is there and running on it broke. Without nvidia-smi on PATH the probe decides.
#   gpu_count             the GPUs this process may use: CUDA_VISIBLE_DEVICES when set (nvidia-smi
#                         ignores it), else nvidia-smi's list, else 1 (the probe found one)

gpu_skip() {
    echo "$(basename "$0" .sh): SKIP: $*"
    if [ "${VQ_REQUIRE_GPU:-0}" = 1 ]; then
        echo "VQ_REQUIRE_GPU=1: a skipped GPU test counts as a failure here"
        exit 1
    fi
    exit 77
}

gpu_probe() {
    if command -v nvidia-smi >/dev/null 2>&1; then
        local gpus
        gpus=$(timeout 60 nvidia-smi -L 2>&1) || gpu_skip "nvidia-smi -L failed: $(echo "$gpus" | head -n 2)"
        echo "$gpus" | grep -q "^GPU [0-9]" || gpu_skip "nvidia-smi -L lists no GPU: $(echo "$gpus" | head -n 2)"
        echo "$gpus"
    fi
    timeout -k 10 300 "$@" >"$WORK/probe.log" 2>&1
    local rc=$? why
    [ $rc -eq 0 ] && return 0
    why=$(grep -m 1 -E "no GPU is visible|has no CUDA backend" "$WORK/probe.log")
    [ -n "$why" ] && gpu_skip "$why"
    tail -n 30 "$WORK/probe.log"
    fail "a GPU is there but the probe failed (exit code $rc): $*"
    finish
}

gpu_count() {
    if [ -n "${CUDA_VISIBLE_DEVICES+set}" ]; then
        echo "$CUDA_VISIBLE_DEVICES" | tr ',' '\n' | grep -c .
    elif command -v nvidia-smi >/dev/null 2>&1; then
        nvidia-smi -L 2>/dev/null | grep -c '^GPU '
    else
        echo 1
    fi
}
