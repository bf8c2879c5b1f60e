#!/usr/bin/env bash
# Training on smoke data: 200 steps lower the loss substantially and perplexity stays above 1,
# for both quantizers; the run writes a checkpoint, metrics and a reconstruction PNG.
source "$(dirname "$0")/lib/common.sh"
for q in ema vq; do
    dir="$WORK/$q"
    "$VQVAE_BIN" train --config "$SMOKE" quantizer.type=$q train.steps=200 log.every=20 checkpoint.dir="$dir" \
        >"$WORK/$q.log" 2>&1
    check "$q: training exits 0" [ $? -eq 0 ] || { tail -n 30 "$WORK/$q.log"; continue; }
    m="$dir/metrics.jsonl"
    first=$(metric "$m" train nmse first); last=$(metric "$m" train nmse last)
    ppl=$(metric "$m" train perplexity last); eval_nmse=$(metric "$m" eval nmse last)
    echo "$q: training nmse $first -> $last, perplexity $ppl, test nmse $eval_nmse"
    check "$q: reconstruction error falls by more than 40% ($first -> $last)" fcmp "$last < 0.6 * $first"
    check "$q: perplexity > 1 ($ppl)" fcmp "$ppl > 1.0"
    check "$q: test nmse well below the untrained 1.0 ($eval_nmse)" fcmp "$eval_nmse > 0 && $eval_nmse < 0.75"
    check "$q: latest points at step 200" grep -q "ckpt_00000200.h5" "$dir/latest"
    check "$q: console shows images/s" grep -q "img/s" "$WORK/$q.log"
    "$VQVAE_BIN" reconstruct --checkpoint "$dir/ckpt_00000200.h5" --out "$dir/recon.png" --count 8 >/dev/null 2>&1
    check "$q: reconstruct writes a PNG" bash -c "head -c 8 '$dir/recon.png' | od -An -tx1 | grep -q '89 50 4e 47'"
    "$VQVAE_BIN" info "$dir/ckpt_00000200.h5" >"$WORK/info.txt" 2>&1
    check "$q: info names the step" grep -q "200" "$WORK/info.txt"
done
finish
