#!/usr/bin/env bash
# Resume is bit-exact: N steps straight == k steps, stop, resume to N (both quantizers); a
# SIGTERM mid-run writes a checkpoint, exits 75, and --resume auto reaches the same weights;
# --resume auto skips a corrupt newest checkpoint and falls back to the previous one.
# The gn-* cases: model.arch groupnorm with dropout, whose masks are keyed on the step (resumed).
source "$(dirname "$0")/lib/common.sh"
common=(--config "$SMOKE" train.steps=24 log.every=4 checkpoint.every=8 checkpoint.keep=5)
GROUPNORM=(model.arch=groupnorm "model.block_out_channels=[8, 16]" model.norm_num_groups=4 model.dropout=0.2)
# The sm-* cases: model.arch small (grouped codes, 28x28 images).
SMALL=(model.arch=small data.channels=1 data.image_size=28 quantizer.num_embeddings=16)
# vae: model.type vae (eps keyed on the step: a resumed run draws the same noise).
VAE=(model.type=vae model.arch=small data.channels=1 data.image_size=28)
for q in ema vq gn-ema sm-ema sm-vq vae; do
    arch=(quantizer.type=${q#*-})
    case $q in
    gn-*) arch+=("${GROUPNORM[@]}") ;;
    sm-*) arch+=("${SMALL[@]}") ;;
    vae) arch=("${VAE[@]}") ;;
    esac
    run=("${common[@]}" "${arch[@]}")
    "$VQVAE_BIN" train "${run[@]}" checkpoint.dir="$WORK/$q-full" >"$WORK/full.log" 2>&1
    check "$q: full run" [ $? -eq 0 ]
    "$VQVAE_BIN" train "${run[@]}" train.steps=10 checkpoint.dir="$WORK/$q-part" >"$WORK/p1.log" 2>&1
    check "$q: first part (10 steps)" [ $? -eq 0 ]
    "$VQVAE_BIN" train "${run[@]}" checkpoint.dir="$WORK/$q-part" --resume auto >"$WORK/p2.log" 2>&1
    check "$q: resumed part" [ $? -eq 0 ]
    check "$q: resume log names step 10" grep -q "resumed from .*step 10" "$WORK/p2.log"
    check "$q: resumed weights and Adam moments bit-identical" \
        compare_h5 "$WORK/$q-full/ckpt_00000024.h5" "$WORK/$q-part/ckpt_00000024.h5" 0 model optim
done

# SIGTERM: the run stops at a step boundary with a checkpoint and exit code 75.
dir="$WORK/sig"
"$VQVAE_BIN" train --config "$SMOKE" train.steps=100000 log.every=50 checkpoint.every=0 checkpoint.dir="$dir" \
    >"$WORK/sig.log" 2>&1 &
pid=$!
for _ in $(seq 100); do grep -q "step " "$WORK/sig.log" 2>/dev/null && break; sleep 0.1; done
sleep 0.5
kill -TERM $pid
wait $pid
rc=$?
check "SIGTERM: exit code 75 (got $rc)" [ $rc -eq 75 ]
check "SIGTERM: checkpoint written" test -s "$dir/latest"
stopped=$(sed -n 's/ckpt_0*\([0-9][0-9]*\)\.h5/\1/p' "$dir/latest")
echo "stopped at step $stopped"
target=$((stopped + 6))
"$VQVAE_BIN" train --config "$SMOKE" train.steps=$target checkpoint.dir="$dir" --resume auto >"$WORK/sig2.log" 2>&1
check "SIGTERM: resume to step $target" [ $? -eq 0 ]
"$VQVAE_BIN" train --config "$SMOKE" train.steps=$target checkpoint.dir="$WORK/sig-ref" >/dev/null 2>&1
check "SIGTERM: resumed run equals an uninterrupted one" \
    compare_h5 "$WORK/sig-ref/$(cat "$WORK/sig-ref/latest")" "$dir/$(cat "$dir/latest")" 0 model optim

# A corrupt newest checkpoint: --resume auto falls back to the previous good one.
dir="$WORK/ema-part"
newest="$dir/$(cat "$dir/latest")"
size=$(stat -c %s "$newest")
truncate -s $((size / 2)) "$newest"
"$VQVAE_BIN" train "${common[@]}" train.steps=30 checkpoint.dir="$dir" --resume auto >"$WORK/fb.log" 2>&1
check "fallback: run succeeds" [ $? -eq 0 ]
check "fallback: warns about the corrupt file" grep -q "skipping checkpoint" "$WORK/fb.log"
check "fallback: resumed from step 16" grep -q "resumed from .*step 16" "$WORK/fb.log"
finish
