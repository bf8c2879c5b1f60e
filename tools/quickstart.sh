#!/usr/bin/env bash
# The README's first command: install what is missing, build, train the VQ-VAE on Debian's
# Fashion-MNIST (configs/fashion_mnist.yaml), then write reconstructions of test images, their codes and the plots.
# Extra arguments are config overrides, e.g. tools/quickstart.sh train.steps=300
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install_deps.sh --with-torch   # with matplotlib, scikit-learn and h5py for the plots
tools/build.sh
run_dir=runs/fashion_mnist
build/vqvae_dist train --config configs/fashion_mnist.yaml --resume auto "$@"
latest="$run_dir/$(cat "$run_dir/latest")"
build/vqvae_dist info "$latest" | sed -n 1,13p   # sed reads to the end: head would kill info with SIGPIPE under pipefail
build/vqvae_dist reconstruct --checkpoint "$latest" --out "$run_dir/reconstructions.png" --count 16
# the codes and encoder outputs of 2000 test images, for the codebook plot (docs/CODES.md)
build/vqvae_dist encode --checkpoint "$latest" --out "$run_dir/codes.h5" --count 2000 --latents
echo "quickstart: checkpoint $latest, metrics $run_dir/metrics.jsonl, images $run_dir/reconstructions.png," \
    "codes $run_dir/codes.h5"
# The pictures (tools/plot.py, matplotlib and scikit-learn; the codes come from the C program).
# Debian's packages go into /usr/bin/python3, which need not be the python3 first on PATH.
py=
for candidate in /usr/bin/python3 python3; do
    if "$candidate" -c 'import matplotlib, sklearn, yaml, h5py, torch' 2>/dev/null; then py=$candidate; break; fi
done
if [ -n "$py" ]; then
    "$py" tools/plot.py curves "$run_dir/metrics.jsonl" --out "$run_dir/curves.png"
    "$py" tools/plot.py codebook "$latest" --codes "$run_dir/codes.h5" --out "$run_dir/codebook.png"
    echo "quickstart: plots in $run_dir (curves.png, codebook.png next to reconstructions.png)"
else
    echo "quickstart: for the plots (tools/plot.py) run tools/install_deps.sh --with-torch"
fi
