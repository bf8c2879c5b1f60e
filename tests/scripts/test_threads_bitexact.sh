#!/usr/bin/env bash
# The CPU backend's results do not depend on the thread count: training with train.threads=1, 2
# and 3 ends in bit-identical weights and Adam moments, with either convolution engine
# (kernels/cpu/cpu_conv_internal.h: fixed chunks, fixed-order reductions). The engines differ from
# each other by rounding only, which test_ops_conv_engines bounds.
source "$(dirname "$0")/lib/common.sh"
common=(--config "$SMOKE" train.steps=6 train.batch_size=32 data.synthetic_count=256 log.every=3
        checkpoint.every=0)
engines=(im2col)
"$VQVAE_BIN" train "${common[@]}" train.cpu_conv=onednn train.steps=1 checkpoint.dir="$WORK/probe" \
    >"$WORK/probe.log" 2>&1 && engines+=(onednn) || echo "SKIP onednn: this build has no oneDNN ($(tail -n 1 "$WORK/probe.log"))"
for engine in "${engines[@]}"; do
    for t in 1 2 3; do
        "$VQVAE_BIN" train "${common[@]}" train.cpu_conv=$engine train.threads=$t checkpoint.dir="$WORK/$engine-$t" \
            >"$WORK/$engine-$t.log" 2>&1
        check "$engine, $t thread(s): training runs" [ $? -eq 0 ]
    done
    for t in 2 3; do
        check "$engine: $t threads give the bits of 1 thread" \
            compare_h5 "$WORK/$engine-1/ckpt_00000006.h5" "$WORK/$engine-$t/ckpt_00000006.h5" 0 model optim
    done
done
finish
