#!/usr/bin/env bash
# The CPU backend's results do not depend on the thread count: training with train.threads=1, 2
# and 3 ends in bit-identical weights and Adam moments, with either convolution engine
# (kernels/cpu/cpu_conv_internal.h: fixed chunks, fixed-order reductions), for the smoke resnet and
# for the small MNIST model (model.arch small: its dense 7x7 layers, its 1-channel sides, sigmoid).
# The engines differ from each other by rounding only, which test_ops_conv_engines bounds. The same
# for oneDNN in bf16 (train.precision=bf16) on CPUs with AVX512-BF16, which must also differ from
# its fp32 (else bf16 did not run).
source "$(dirname "$0")/lib/common.sh"
common=(--config "$SMOKE" train.steps=6 train.batch_size=32 data.synthetic_count=256 log.every=3
        checkpoint.every=0)
engines=(im2col)
"$VQVAE_BIN" train "${common[@]}" train.cpu_conv=onednn train.steps=1 checkpoint.dir="$WORK/probe" \
    >"$WORK/probe.log" 2>&1 && engines+=(onednn) || echo "SKIP onednn: this build has no oneDNN ($(tail -n 1 "$WORK/probe.log"))"
if [ "${engines[-1]}" = onednn ]; then
    "$VQVAE_BIN" train "${common[@]}" train.cpu_conv=onednn train.precision=bf16 train.steps=1 \
        checkpoint.dir="$WORK/probe16" >"$WORK/probe16.log" 2>&1 && engines+=(onednn-bf16) ||
        skip_case "onednn-bf16: $(grep -m1 error "$WORK/probe16.log")"
fi
small=(--config "$VQ_SOURCE_DIR/configs/mnist_small.yaml" data.dataset=synthetic data.channels=1
       data.image_size=28 train.steps=6 train.batch_size=64 data.synthetic_count=256 log.every=3
       checkpoint.every=0 train.eval_every=0)
# differs A B: both checkpoints exist and their models are not bit-identical.
differs() { [ -s "$1" ] && [ -s "$2" ] && ! compare_h5 "$1" "$2" 0 model >/dev/null; }
for model in smoke small; do
    for engine in "${engines[@]}"; do
        for t in 1 2 3; do
            if [ $model = smoke ]; then args=("${common[@]}"); else args=("${small[@]}"); fi
            conv=(train.cpu_conv=${engine%-bf16})
            [ "$engine" = onednn-bf16 ] && conv+=(train.precision=bf16)
            "$VQVAE_BIN" train "${args[@]}" "${conv[@]}" train.threads=$t \
                checkpoint.dir="$WORK/$model-$engine-$t" >"$WORK/$model-$engine-$t.log" 2>&1
            check "$model, $engine, $t thread(s): training runs" [ $? -eq 0 ]
        done
        for t in 2 3; do
            check "$model, $engine: $t threads give the bits of 1 thread" \
                compare_h5 "$WORK/$model-$engine-1/ckpt_00000006.h5" "$WORK/$model-$engine-$t/ckpt_00000006.h5" 0 \
                model optim
        done
    done
    if [[ " ${engines[*]} " == *" onednn-bf16 "* ]]; then
        check "$model: bf16 weights differ from fp32's (bf16 ran)" \
            differs "$WORK/$model-onednn-1/ckpt_00000006.h5" "$WORK/$model-onednn-bf16-1/ckpt_00000006.h5"
    fi
done
finish
