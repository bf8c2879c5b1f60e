#!/usr/bin/env bash
# The README's first command: install what is missing, build, train the VQ-VAE on Debian's
# Fashion-MNIST (configs/fashion_mnist.yaml), then write reconstructions of test images.
# Extra arguments are config overrides, e.g. tools/quickstart.sh train.steps=300
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install_deps.sh
tools/build.sh
run_dir=runs/fashion_mnist
build/vqvae_dist train --config configs/fashion_mnist.yaml --resume auto "$@"
latest="$run_dir/$(cat "$run_dir/latest")"
build/vqvae_dist info "$latest" | head -n 12
build/vqvae_dist reconstruct --checkpoint "$latest" --out "$run_dir/reconstructions.png" --count 16
echo "quickstart: checkpoint $latest, metrics $run_dir/metrics.jsonl, images $run_dir/reconstructions.png"
# The pictures (tools/plot.py): curves need matplotlib, the codebook plot also torch to encode test images.
if python3 -c 'import matplotlib, sklearn, yaml, h5py' 2>/dev/null; then
    python3 tools/plot.py curves "$run_dir/metrics.jsonl" --out "$run_dir/curves.png"
    if python3 -c 'import torch' 2>/dev/null; then
        python3 tools/plot.py codebook "$latest" --count 2000 --out "$run_dir/codebook.png"
    fi
    echo "quickstart: plots in $run_dir (curves.png, codebook.png next to reconstructions.png)"
else
    echo "quickstart: for the plots (tools/plot.py) run tools/install_deps.sh --with-torch"
fi
