#!/usr/bin/env bash
# Commands load only what they use: `layout` reads no data and prints the arena it plans; `eval`
# and `reconstruct` read the checkpoint and the test set, and create no run folder and no
# metrics log; eval counts every test image (the last batch is padded, not dropped).
source "$(dirname "$0")/lib/common.sh"

# layout: no data is read (a data path that does not exist is fine), the totals add up.
"$VQVAE_BIN" layout --config "$VQ_SOURCE_DIR/configs/cifar.yaml" data.path=/nonexistent train.batch_size=8 \
    >"$WORK/layout.txt" 2>&1
check "layout exits 0 without reading data" [ $? -eq 0 ] || tail -n 20 "$WORK/layout.txt"
check "layout lists the quantizer layer" grep -q "quantize  quantizer" "$WORK/layout.txt"
check "layout lists the loss layer" grep -q "mse_loss  recon_loss" "$WORK/layout.txt"
line=$(grep "layers; arena" "$WORK/layout.txt")
echo "$line"
sum_ok=$(echo "$line" | awk '{ for (i = 1; i <= NF; i++) { if ($i == "arena") a = $(i+1); if ($i == "activations") v = $(i+1);
    if ($i == "gradients") g = $(i+1); if ($i == "scratch") s = $(i+1) } d = a - v - g - s; print (d < 0.02 && d > -0.02) ? 1 : 0 }')
check "layout: arena = activations + gradients + scratch" [ "$sum_ok" = 1 ]
# the slots' bytes follow from their shapes (float32 / int32: 4 bytes an element)
# (the table ends at its first blank line: under ASan, LeakSanitizer's suppression counts follow)
slots=$(awk '/^slot +name/ { on = 1; next } on && NF == 0 { exit } on && $1 ~ /^[0-9]+$/ && $2 != "layers;" { n = split($3, d, "x"); c = 1;
    for (i = 1; i <= n; i++) c *= d[i]; print (c * 4 == $5) ? "ok" : "bad:" $2 }' "$WORK/layout.txt")
good=$(echo "$slots" | grep -c '^ok$'); wrong=$(echo "$slots" | grep -v '^ok$' | head -n 2 | tr '\n' ' ')
check "layout: 28 slots, each with 4 bytes an element ($good ok; wrong: $wrong)" [ "$good" -eq 28 -a -z "$wrong" ]

# a checkpoint to read
run="$WORK/run"
"$VQVAE_BIN" train --config "$SMOKE" train.steps=10 checkpoint.dir="$run" >"$WORK/train.log" 2>&1
check "training a checkpoint exits 0" [ $? -eq 0 ] || tail -n 20 "$WORK/train.log"
ckpt="$run/ckpt_00000010.h5"
lines_before=$(wc -l <"$run/metrics.jsonl")

"$VQVAE_BIN" eval --checkpoint "$ckpt" checkpoint.dir="$WORK/not_made" train.batch_size=24 >"$WORK/eval.log" 2>&1
check "eval exits 0" [ $? -eq 0 ] || tail -n 20 "$WORK/eval.log"
# smoke: 256 synthetic training images -> 64 test images; batch 24 leaves a remainder of 16
check "eval counts all 64 test images with a partial last batch" grep -q "| 64 images" "$WORK/eval.log"
"$VQVAE_BIN" eval --checkpoint "$ckpt" train.batch_size=16 >"$WORK/eval16.log" 2>&1
nmse24=$(sed -n 's/.*test nmse \([0-9.]*\).*/\1/p' "$WORK/eval.log")
nmse16=$(sed -n 's/.*test nmse \([0-9.]*\).*/\1/p' "$WORK/eval16.log")
ppl24=$(sed -n 's/.*perplexity \([0-9.]*\).*/\1/p' "$WORK/eval.log")
ppl16=$(sed -n 's/.*perplexity \([0-9.]*\).*/\1/p' "$WORK/eval16.log")
check "a padded last batch gives the metrics of whole batches (nmse $nmse24 vs $nmse16, perplexity $ppl24 vs $ppl16)" \
    fcmp "$nmse16 > 0 && ($nmse24 - $nmse16)^2 < (1e-4 * $nmse16)^2 && $ppl24 == $ppl16"
"$VQVAE_BIN" reconstruct --checkpoint "$ckpt" --out "$WORK/recon.png" --count 4 checkpoint.dir="$WORK/not_made" \
    >"$WORK/recon.log" 2>&1
check "reconstruct exits 0" [ $? -eq 0 ] || tail -n 20 "$WORK/recon.log"
check "eval and reconstruct create no run folder" [ ! -e "$WORK/not_made" ]
check "eval and reconstruct append nothing to metrics.jsonl" [ "$(wc -l <"$run/metrics.jsonl")" = "$lines_before" ]
finish
