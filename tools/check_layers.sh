#!/usr/bin/env bash
# Check that every #include points down the layers (docs/ARCHITECTURE.md):
#   core                      the bottom
#   io, kernels               on core
#   model, dist               on kernels (and core)
#   train                     on model, dist and io
#   main (src/main.c)         on train
# and that the libraries only the layers above may use stay out of the layers below (no HDF5 in
# the model, no MPI in the kernels, ...). Usage: tools/check_layers.sh [ROOT] (default: the repo).
# Prints each violation as FILE:LINE: what, and exits 1 when there is any.
set -euo pipefail
root=$(cd "${1:-$(dirname "$0")/..}" && pwd)

# The layer a path (relative to root) belongs to, or "" when it is in none.
layer_of() {
    case "$1" in
        src/core/*) echo core ;;
        src/io/*) echo io ;;
        kernels/*) echo kernels ;;
        src/model/*) echo model ;;
        src/dist/*) echo dist ;;
        src/train/*) echo train ;;
        src/main.c) echo main ;;
        *) echo "" ;;
    esac
}

# The layers each layer may include (itself included).
allowed() {
    case "$1" in
        core) echo "core" ;;
        io) echo "core io" ;;
        kernels) echo "core kernels" ;;
        model) echo "core kernels model" ;;
        dist) echo "core kernels dist" ;;
        train) echo "core io kernels model dist train" ;;
        main) echo "core io kernels model dist train main" ;;
    esac
}

# System headers that belong to one layer's libraries: forbidden everywhere else.
forbidden_system() {
    case "$1" in
        core) echo "hdf5.h yaml.h png.h zlib.h cblas.h mpi.h nccl.h cuda_runtime.h cuda_runtime_api.h cudnn.h cublas_v2.h dnnl.h omp.h" ;;
        io) echo "cblas.h mpi.h nccl.h cuda_runtime.h cuda_runtime_api.h cudnn.h cublas_v2.h dnnl.h" ;;
        kernels) echo "hdf5.h yaml.h png.h mpi.h nccl.h" ;;
        model) echo "hdf5.h yaml.h png.h zlib.h cblas.h mpi.h nccl.h cuda_runtime.h cuda_runtime_api.h cudnn.h cublas_v2.h dnnl.h" ;;
        dist) echo "hdf5.h yaml.h png.h cblas.h cudnn.h cublas_v2.h dnnl.h" ;;
        train|main) echo "cblas.h cuda_runtime.h cuda_runtime_api.h cudnn.h cublas_v2.h nccl.h dnnl.h" ;;
    esac
}

violations=0
report() {
    echo "$1"
    violations=$((violations + 1))
}

cd "$root"
while IFS= read -r file; do
    layer=$(layer_of "$file")
    [ -n "$layer" ] || continue
    dir=$(dirname "$file")
    ok=" $(allowed "$layer") "
    bad_system=" $(forbidden_system "$layer") "
    while IFS=: read -r line text; do
        if [[ $text =~ ^[[:space:]]*#[[:space:]]*include[[:space:]]*\"([^\"]+)\" ]]; then
            inc=${BASH_REMATCH[1]}
            # as the compiler finds it: next to the file, else under src/ or the root (-I paths)
            target=""
            for base in "$dir" src .; do
                if [ -e "$base/$inc" ]; then target=$(realpath -m --relative-to=. "$base/$inc"); break; fi
            done
            if [ -z "$target" ]; then
                report "$file:$line: includes \"$inc\", which does not exist"
                continue
            fi
            to=$(layer_of "$target")
            [ -n "$to" ] || continue   # tests' helpers and the like are outside the layers
            if [[ $ok != *" $to "* ]]; then
                report "$file:$line: $layer includes $target ($to): $layer may include only: $(allowed "$layer")"
            fi
        elif [[ $text =~ ^[[:space:]]*#[[:space:]]*include[[:space:]]*\<([^\>]+)\> ]]; then
            inc=${BASH_REMATCH[1]}
            if [[ $bad_system == *" $inc "* ]]; then
                report "$file:$line: $layer includes <$inc>, a library of another layer"
            fi
        fi
    done < <(grep -n '^[[:space:]]*#[[:space:]]*include' "$file" || true)
done < <(find src kernels -type f \( -name '*.c' -o -name '*.h' -o -name '*.cu' \) | sort)

if [ "$violations" -gt 0 ]; then
    echo "check_layers: $violations include(s) point up or across the layers (see docs/ARCHITECTURE.md)"
    exit 1
fi
echo "check_layers: every include in src/ and kernels/ points down the layers"
