#!/usr/bin/env bash
# test_mpi_codes.sh: `encode` under mpirun: each rank encodes whole batches of its shard and rank 0
# writes the file once from every rank's codes, so the codes file (codes, latents, labels,
# attributes) is the same bytes for np=1, 2 and 3. The smoke config with 1600 synthetic training
# images has 200 test images: in batches of 16, 13 batches; np=2 splits them 6 + 7 and np=3
# 4 + 4 + 5, the last rank's last batch padded (8 real images).
# The same for a VAE's means and log-variances (np=1 and 2).
# A run that fails or hangs is bounded by `timeout`; train.threads=1 per rank.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib/common.sh"
source "$here/lib/mpi.sh"

"$VQVAE_BIN" train --config "$SMOKE" data.synthetic_count=1600 train.steps=10 train.threads=1 checkpoint.dir="$WORK/run" \
    >"$WORK/train.log" 2>&1
check "training a checkpoint exits 0" [ $? -eq 0 ] || tail -n 20 "$WORK/train.log"
ckpt="$WORK/run/ckpt_00000010.h5"

encode() {  # encode NP OUT: exit code of an np-rank encode of every test image, with latents
    mpi_cmd "$1"
    timeout -k 10 180 "${MPI_CMD[@]}" "$VQVAE_BIN" encode --checkpoint "$ckpt" --out "$2" --latents \
        train.threads=1 >"$2.log" 2>&1
}
for np in 1 2 3; do
    encode "$np" "$WORK/codes_np$np.h5"
    check "np=$np: encode exits 0" [ $? -eq 0 ] || { tail -n 10 "$WORK/codes_np$np.h5.log"; continue; }
    check "np=$np: says it wrote 200 images once" [ "$(grep -c 'wrote .*200 test images' "$WORK/codes_np$np.h5.log")" = 1 ]
done
check "np=2 writes the same bytes as np=1" cmp "$WORK/codes_np1.h5" "$WORK/codes_np2.h5"
check "np=3 writes the same bytes as np=1" cmp "$WORK/codes_np1.h5" "$WORK/codes_np3.h5"
PY=$(py_h5)
if [ -n "$PY" ]; then
    shape=$("$PY" -c 'import h5py, sys; f = h5py.File(sys.argv[1], "r"); print(f["codes"].shape, f["latents"].shape)' \
        "$WORK/codes_np3.h5" 2>&1)
    check "np=3: 200 images of codes and latents, none from the padding ($shape)" \
        [ "$shape" = "(200, 4, 4, 1) (200, 4, 4, 1, 8)" ]
else
    skip_case "the codes file's shape: no Python with h5py (apt-get install python3-h5py)"
fi

# model.type vae: /mean and /logvar, the same bytes for np=1 and np=2
"$VQVAE_BIN" train --config "$SMOKE" data.synthetic_count=1600 data.channels=1 data.image_size=28 model.type=vae \
    model.arch=small train.steps=4 train.threads=1 checkpoint.dir="$WORK/vae" >"$WORK/vae.log" 2>&1
check "vae: training a checkpoint exits 0" [ $? -eq 0 ] || tail -n 20 "$WORK/vae.log"
ckpt="$WORK/vae/ckpt_00000004.h5"
for np in 1 2; do
    encode "$np" "$WORK/vae_np$np.h5"
    check "vae np=$np: encode exits 0" [ $? -eq 0 ] || tail -n 10 "$WORK/vae_np$np.h5.log"
done
check "vae: np=2 writes the same bytes as np=1" cmp "$WORK/vae_np1.h5" "$WORK/vae_np2.h5"
finish
