#!/usr/bin/env bash
# encode and decode (docs/CODES.md) on a tiny trained checkpoint: the codes file holds one code per
# latent position of exactly the images asked for (a padded last batch adds none), in the smallest
# type, with the dataset's labels and the checkpoint's path, step and config; the codes are the
# nearest codebook vectors of the stored latents; the same codes give the same bytes; decode
# reproduces reconstruct's reconstructions pixel for pixel; tiles are scaled to >= 64 px (28 -> 84)
# and --rows/--cols lay them out; bad arguments exit 1 or 2 naming what is wrong.
source "$(dirname "$0")/lib/common.sh"

PY=$(py_h5)
[ -n "$PY" ] || skip_test "no Python with h5py and numpy to read codes files (apt-get install python3-h5py)"
PNG="$VQ_SOURCE_DIR/tests/scripts/lib/png_pixels.py"
FASHION=/usr/share/datasets/fashion-mnist
if [ -d "$FASHION" ]; then
    data=(data.dataset=fashion_mnist data.path="$FASHION"); side=28; latent=7; labels=1
else
    skip_case "labels and 28 px tiles: $FASHION is absent (apt-get install dataset-fashion-mnist); synthetic data"
    data=(); side=16; latent=4; labels=0
fi
"$VQVAE_BIN" train --config "$SMOKE" "${data[@]}" train.steps=10 checkpoint.dir="$WORK/run" >"$WORK/train.log" 2>&1
check "training a checkpoint exits 0" [ $? -eq 0 ] || tail -n 20 "$WORK/train.log"
ckpt="$WORK/run/ckpt_00000010.h5"

# 200 images in batches of 16: the 13th batch holds 8 real images and 8 of padding
"$VQVAE_BIN" encode --checkpoint "$ckpt" --out "$WORK/codes.h5" --count 200 --latents >"$WORK/encode.log" 2>&1
check "encode --count 200 --latents exits 0" [ $? -eq 0 ] || tail -n 20 "$WORK/encode.log"
"$PY" - "$WORK/codes.h5" "$ckpt" "$latent" "$labels" "$FASHION" <<'EOF' >"$WORK/layout.txt" 2>&1
import gzip, sys
import h5py, numpy as np
path, ckpt, latent, labels, fashion = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
def say(ok, what):
    print(('ok ' if ok else 'BAD ') + what)
with h5py.File(path, 'r') as f, h5py.File(ckpt, 'r') as c:
    a = dict(f.attrs)
    text = lambda v: v.decode() if isinstance(v, bytes) else v
    codes = f['codes']
    say(codes.shape == (200, latent, latent, 1), f'/codes shape {codes.shape} = (200, {latent}, {latent}, 1)')
    say(codes.dtype == np.uint8, f'/codes dtype {codes.dtype} = uint8 (K = 32)')
    say(f['latents'].shape == (200, latent, latent, 1, 8) and f['latents'].dtype == np.float32,
        f"/latents {f['latents'].shape} {f['latents'].dtype} = (200, {latent}, {latent}, 1, 8) float32")
    say(text(a['format']) == 'vqvae_dist_codes' and int(a['version']) == 1, 'format vqvae_dist_codes, version 1')
    say(text(a['checkpoint']) == ckpt and int(a['step']) == 10, f"checkpoint {a['checkpoint']} step {a['step']}")
    say(text(a['config']) == text(c.attrs['config']), "config = the checkpoint's config attribute")
    say(text(a['split']) == 'test' and text(a['model_type']) == 'vqvae' and int(a['num_embeddings']) == 32,
        f"split {a['split']}, model_type {a['model_type']}, num_embeddings {a['num_embeddings']}")
    say((int(a['image_height']), int(a['image_width'])) == (latent * 4, latent * 4), 'image shape')
    # the codes are the nearest codebook vectors of the latents (a near-tie may go either way)
    book = np.asarray(c['model/_vq_vae._embedding.weight'], np.float64)
    z = np.asarray(f['latents'], np.float64).reshape(-1, 8)
    d = ((z[:, None, :] - book[None]) ** 2).sum(-1)
    mine = np.asarray(codes).reshape(-1).astype(np.int64)
    gap = d[np.arange(len(z)), mine] - d.min(1)
    say(np.all(gap <= 1e-5 * (1 + d.min(1))) and len(np.unique(mine)) > 1,
        f'codes = argmin |z - e| (largest gap {gap.max():.2e}, {len(np.unique(mine))} codes used)')
    if labels:
        want = np.frombuffer(gzip.open(f'{fashion}/t10k-labels-idx1-ubyte.gz').read(), np.uint8, offset=8)[:200]
        say('labels' in f and np.array_equal(f['labels'][()], want), "/labels = the test set's first 200 labels")
    else:
        say('labels' not in f, 'synthetic data: no /labels')
EOF
while read -r verdict what; do check "codes file: $what" [ "$verdict" = ok ]; done <"$WORK/layout.txt"
grep -q '^ok \|^BAD ' "$WORK/layout.txt" || { fail "reading the codes file"; cat "$WORK/layout.txt"; }

"$VQVAE_BIN" encode --checkpoint "$ckpt" --out "$WORK/again.h5" --count 200 --latents >/dev/null 2>&1
check "the same codes give the same bytes (encode twice)" cmp -s "$WORK/codes.h5" "$WORK/again.h5"
"$VQVAE_BIN" encode --checkpoint "$ckpt" --out "$WORK/train_codes.h5" --split train --count 40 >"$WORK/train_enc.log" 2>&1
check "encode --split train --count 40" grep -q "wrote .*40 train images" "$WORK/train_enc.log" ||
    tail -n 5 "$WORK/train_enc.log"

# decode = the bottom half of reconstruct (same images, same batches), pixel for pixel
tile=$((side * ((64 + side - 1) / side)))   # the smallest integer scale that makes tiles >= 64 px
"$VQVAE_BIN" reconstruct --checkpoint "$ckpt" --out "$WORK/recon.png" --count 16 --cols 8 >"$WORK/recon.log" 2>&1
check "reconstruct --count 16 --cols 8 exits 0" [ $? -eq 0 ] || tail -n 5 "$WORK/recon.log"
"$VQVAE_BIN" decode --checkpoint "$ckpt" --codes "$WORK/codes.h5" --out "$WORK/decode.png" --count 16 --cols 8 \
    >"$WORK/decode.log" 2>&1
check "decode --count 16 --cols 8 exits 0" [ $? -eq 0 ] || tail -n 5 "$WORK/decode.log"
cell=$((tile + 2))
read -r rw rh _ _ _ <<<"$("$PY" "$PNG" "$WORK/recon.png")"
read -r dw dh _ dn dsum <<<"$("$PY" "$PNG" "$WORK/decode.png")"
check "tiles scaled to $tile px: reconstruct is ${rw}x${rh}, decode ${dw}x${dh} (want $((8 * cell + 2))x$((4 * cell + 2)), x$((2 * cell + 2)))" \
    [ "$rw" = $((8 * cell + 2)) -a "$rh" = $((4 * cell + 2)) -a "$dw" = "$rw" -a "$dh" = $((2 * cell + 2)) ]
read -r _ _ _ _ bottom <<<"$("$PY" "$PNG" "$WORK/recon.png" $((2 * cell)))"
read -r _ _ _ _ top <<<"$("$PY" "$PNG" "$WORK/recon.png" 0 $((2 * cell + 2)))"
check "decode's pixels = reconstruct's reconstructions ($dn distinct values)" [ "$dsum" = "$bottom" -a "$dn" -gt 8 ]
check "decode's pixels differ from the originals above them (the check can fail)" [ "$dsum" != "$top" ]
"$VQVAE_BIN" decode --checkpoint "$ckpt" --codes "$WORK/codes.h5" --out "$WORK/small.png" --scale 1 --rows 2 --cols 3 \
    >/dev/null 2>&1
read -r sw sh _ <<<"$("$PY" "$PNG" "$WORK/small.png")"
check "decode --scale 1 --rows 2 --cols 3: ${sw}x${sh} = $((3 * side + 8))x$((2 * side + 6))" \
    [ "$sw" = $((3 * side + 8)) -a "$sh" = $((2 * side + 6)) ]

# bad arguments
"$VQVAE_BIN" train --config "$SMOKE" "${data[@]}" train.steps=4 quantizer.num_embeddings=64 \
    checkpoint.dir="$WORK/other" >/dev/null 2>&1
other="$WORK/other/ckpt_00000004.h5"
expect "decode: a missing codes file" 1 "$WORK/none.h5': no such codes file" -- \
    decode --checkpoint "$ckpt" --codes "$WORK/none.h5" --out "$WORK/x.png"
expect "decode: a codes file from another checkpoint names both" 1 "written from checkpoint '$ckpt' (step 10, K 32" -- \
    decode --checkpoint "$other" --codes "$WORK/codes.h5" --out "$WORK/x.png"
expect "decode: ... and the other one" 1 "not from '$other' (step 4, K 64" -- \
    decode --checkpoint "$other" --codes "$WORK/codes.h5" --out "$WORK/x.png"
expect "decode: a checkpoint given as the codes file" 1 "that is a checkpoint" -- \
    decode --checkpoint "$ckpt" --codes "$ckpt" --out "$WORK/x.png"
expect "decode: --rows x --cols too small for --count" 2 "--rows 2 x --cols 3 holds 6 tiles, but 8 decoded images" -- \
    decode --checkpoint "$ckpt" --codes "$WORK/codes.h5" --out "$WORK/x.png" --rows 2 --cols 3 --count 8
expect "reconstruct: --rows x --cols too small" 2 "but 4 test images and their reconstructions need 8" -- \
    reconstruct --checkpoint "$ckpt" --out "$WORK/x.png" --rows 2 --cols 3 --count 4
expect "reconstruct: odd --rows" 2 "--rows 3" -- reconstruct --checkpoint "$ckpt" --out "$WORK/x.png" --rows 3
expect "encode: a missing checkpoint" 1 "$WORK/none.h5" -- encode --checkpoint "$WORK/none.h5" --out "$WORK/x.h5"
expect "encode: a bad --split" 2 "--split expects train or test" -- \
    encode --checkpoint "$ckpt" --out "$WORK/x.h5" --split valid
"$VQVAE_BIN" --help >"$WORK/help.txt" 2>&1
check "--help lists encode and decode with their options" grep -q "encode .*--split train|test.*--latents" \
    <(tr -s ' \n' ' ' <"$WORK/help.txt")
check "--help: decode takes --codes, --rows, --cols, --scale" grep -q "decode .*--codes PATH.*--rows R.*--cols C.*--scale S" \
    <(tr -s ' \n' ' ' <"$WORK/help.txt")
expect "decode needs --codes" 2 "'decode' needs --codes" -- decode --checkpoint "$ckpt" --out "$WORK/x.png"
check "no output file is left by the failed commands" [ ! -e "$WORK/x.png" -a ! -e "$WORK/x.h5" ]
finish
