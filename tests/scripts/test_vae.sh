#!/usr/bin/env bash
# model.type vae end to end on a tiny run: the console and metrics.jsonl show the KL and
# reconstruction terms (no codebook figures); encode writes /mean and /logvar [N, L] with labels,
# the same bytes twice; decode of the means = reconstruct's reconstructions pixel for pixel (both
# decode the mean); sample writes a grid of the asked size, the same pixels twice, other pixels
# for another train.seed, and a prefix of --count 8 is the first tiles of --count 16; configs and
# arguments that make no sense for a VAE are refused with a message naming the key or file.
source "$(dirname "$0")/lib/common.sh"

PY=$(py_h5)
[ -n "$PY" ] || skip_test "no Python with h5py and numpy to read codes files (apt-get install python3-h5py)"
PNG="$VQ_SOURCE_DIR/tests/scripts/lib/png_pixels.py"
FASHION=/usr/share/datasets/fashion-mnist
if [ -d "$FASHION" ]; then
    data=(data.dataset=fashion_mnist data.path="$FASHION"); labels=1
else
    skip_case "labels: $FASHION is absent (apt-get install dataset-fashion-mnist); synthetic 28x28 data"
    data=(data.channels=1 data.image_size=28); labels=0
fi
VAE=(model.type=vae model.arch=small train.lr=0.01)
"$VQVAE_BIN" train --config "$SMOKE" "${data[@]}" "${VAE[@]}" train.steps=10 log.every=5 train.eval_every=10 \
    checkpoint.dir="$WORK/run" >"$WORK/train.log" 2>&1
check "training a VAE exits 0" [ $? -eq 0 ] || tail -n 20 "$WORK/train.log"
ckpt="$WORK/run/ckpt_00000010.h5"
check "the console shows the loss, recon and kl terms" grep -q "step *10/10 | loss .* | recon .* | kl .* | mse " \
    "$WORK/train.log"
check "the console shows no codebook figures" bash -c "! grep -q 'perplexity' '$WORK/train.log'"
check "the eval line shows the test loss and kl" grep -q "eval  step 10 | test loss .* | kl " "$WORK/train.log"
m="$WORK/run/metrics.jsonl"
check "metrics.jsonl: train records have kl and recon_loss, no perplexity" \
    bash -c "grep '\"kind\":\"train\"' '$m' | grep '\"kl\":' | grep '\"recon_loss\":' | grep -vq perplexity"
check "metrics.jsonl: an eval record with kl" bash -c "grep '\"kind\":\"eval\"' '$m' | grep -q '\"kl\":'"

"$VQVAE_BIN" encode --checkpoint "$ckpt" --out "$WORK/codes.h5" --count 40 >"$WORK/encode.log" 2>&1
check "encode --count 40 exits 0" [ $? -eq 0 ] || tail -n 5 "$WORK/encode.log"
"$PY" - "$WORK/codes.h5" "$ckpt" "$labels" <<'EOF' >"$WORK/layout.txt" 2>&1
import sys
import h5py, numpy as np
path, ckpt, labels = sys.argv[1], sys.argv[2], int(sys.argv[3])
def say(ok, what):
    print(('ok ' if ok else 'BAD ') + what)
text = lambda v: v.decode() if isinstance(v, bytes) else v
with h5py.File(path, 'r') as f:
    a = dict(f.attrs)
    say(text(a['model_type']) == 'vae' and 'num_embeddings' not in a, f"model_type {text(a['model_type'])}, no K")
    say('codes' not in f, 'no /codes')
    for name in ('mean', 'logvar'):
        d = f[name]
        say(d.shape == (40, 16) and d.dtype == np.float32, f'/{name} {d.shape} {d.dtype} = (40, 16) float32')
    say(np.std(f['mean'][()]) > 0, '/mean is not constant')
    say(text(a['checkpoint']) == ckpt and int(a['step']) == 10, f"checkpoint {a['checkpoint']} step {a['step']}")
    say(('labels' in f) == bool(labels), f"/labels present: {'labels' in f}")
EOF
while read -r verdict what; do check "codes file: $what" [ "$verdict" = ok ]; done <"$WORK/layout.txt"
grep -q '^ok \|^BAD ' "$WORK/layout.txt" || { fail "reading the codes file"; cat "$WORK/layout.txt"; }
"$VQVAE_BIN" encode --checkpoint "$ckpt" --out "$WORK/again.h5" --count 40 >/dev/null 2>&1
check "the same latents give the same bytes (encode twice)" cmp -s "$WORK/codes.h5" "$WORK/again.h5"

# decode = the bottom half of reconstruct, pixel for pixel (28 px tiles scaled 3x to 84)
cell=$((84 + 2))
"$VQVAE_BIN" reconstruct --checkpoint "$ckpt" --out "$WORK/recon.png" --count 16 --cols 8 >"$WORK/recon.log" 2>&1
check "reconstruct exits 0" [ $? -eq 0 ] || tail -n 5 "$WORK/recon.log"
"$VQVAE_BIN" decode --checkpoint "$ckpt" --codes "$WORK/codes.h5" --out "$WORK/decode.png" --count 16 --cols 8 \
    >"$WORK/decode.log" 2>&1
check "decode of the means exits 0" [ $? -eq 0 ] || tail -n 5 "$WORK/decode.log"
read -r _ _ _ dn dsum <<<"$("$PY" "$PNG" "$WORK/decode.png")"
read -r _ _ _ _ bottom <<<"$("$PY" "$PNG" "$WORK/recon.png" $((2 * cell)))"
read -r _ _ _ _ top <<<"$("$PY" "$PNG" "$WORK/recon.png" 0 $((2 * cell + 2)))"
check "decode's pixels = reconstruct's reconstructions ($dn distinct values)" [ "$dsum" = "$bottom" -a "$dn" -gt 8 ]
check "decode's pixels differ from the originals above them (the check can fail)" [ "$dsum" != "$top" ]

# sample: z ~ N(0, I) keyed on (train.seed, sample index)
"$VQVAE_BIN" sample --checkpoint "$ckpt" --out "$WORK/s16.png" --count 16 --cols 8 >"$WORK/sample.log" 2>&1
check "sample --count 16 exits 0" [ $? -eq 0 ] || tail -n 5 "$WORK/sample.log"
read -r sw sh _ sn s16 <<<"$("$PY" "$PNG" "$WORK/s16.png")"
check "sample: 2 x 8 tiles of 84 px (${sw}x${sh})" [ "$sw" = $((8 * cell + 2)) -a "$sh" = $((2 * cell + 2)) ]
"$VQVAE_BIN" sample --checkpoint "$ckpt" --out "$WORK/again.png" --count 16 --cols 8 >/dev/null 2>&1
read -r _ _ _ _ again <<<"$("$PY" "$PNG" "$WORK/again.png")"
check "sample twice: the same pixels ($sn distinct values)" [ "$again" = "$s16" -a "$sn" -gt 8 ]
"$VQVAE_BIN" sample --checkpoint "$ckpt" --out "$WORK/seed.png" --count 16 --cols 8 train.seed=7 >/dev/null 2>&1
read -r _ _ _ _ seeded <<<"$("$PY" "$PNG" "$WORK/seed.png")"
check "sample with train.seed=7: other pixels" [ -n "$seeded" -a "$seeded" != "$s16" ]
"$VQVAE_BIN" sample --checkpoint "$ckpt" --out "$WORK/s8.png" --count 8 --cols 8 >/dev/null 2>&1
read -r _ _ _ _ first8 <<<"$("$PY" "$PNG" "$WORK/s8.png")"
read -r _ _ _ _ top8 <<<"$("$PY" "$PNG" "$WORK/s16.png" 0 $((cell + 2)))"
check "sample --count 8 = the first row of --count 16 (z depends on the sample index only)" [ "$first8" = "$top8" ]

# refusals
"$VQVAE_BIN" train --config "$SMOKE" "${data[@]}" model.arch=small train.steps=2 checkpoint.dir="$WORK/vq" \
    >"$WORK/vq.log" 2>&1
vq="$WORK/vq/ckpt_00000002.h5"
expect "sample on a VQ-VAE checkpoint" 1 "is a VQ-VAE (model.type vqvae)" -- sample --checkpoint "$vq" --out "$WORK/x.png"
expect "decode of a VAE's file with a VQ-VAE checkpoint" 1 "its codes mean nothing" -- \
    decode --checkpoint "$vq" --codes "$WORK/codes.h5" --out "$WORK/x.png"
expect "a VAE on the resnet arch" 1 "model.type vae is built on model.arch small" -- \
    train --config "$SMOKE" model.type=vae model.arch=resnet checkpoint.dir="$WORK/x"
expect "a VAE with dead-code restarts" 1 "quantizer.dead_code_threshold" -- \
    train --config "$SMOKE" "${data[@]}" "${VAE[@]}" quantizer.dead_code_threshold=0.1 checkpoint.dir="$WORK/x"
expect "a VAE on 32x32 images" 1 "model.type vae needs 28x28 images" -- \
    train --config "$SMOKE" "${VAE[@]}" data.dataset=synthetic data.image_size=32 checkpoint.dir="$WORK/x"
check "no output file is left by the failed commands" [ ! -e "$WORK/x.png" ]
finish
