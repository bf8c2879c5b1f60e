#!/usr/bin/env bash
# The layer check (tools/check_layers.sh, docs/ARCHITECTURE.md): the tree passes it, and a copy of
# the tree with one upward include (kernels including the trainer), one include across (model
# including io) or one library of another layer (HDF5 in the model) fails it, naming the file.
source "$(dirname "$0")/lib/common.sh"
CHECK="$VQ_SOURCE_DIR/tools/check_layers.sh"

if bash "$CHECK" "$VQ_SOURCE_DIR" >"$WORK/tree.txt" 2>&1; then
    pass "the tree's includes point down the layers"
else
    fail "the tree breaks the layers:"; sed 's/^/    /' "$WORK/tree.txt"
fi

# expect_violation "what" FILE LINE: a fresh copy of src/ and kernels/ with LINE appended to FILE
# must fail the check with FILE named in the report.
expect_violation() {
    local what=$1 file=$2 line=$3 copy="$WORK/copy"
    rm -rf "$copy"; mkdir -p "$copy"
    cp -r "$VQ_SOURCE_DIR/src" "$VQ_SOURCE_DIR/kernels" "$copy/"
    printf '%s\n' "$line" >>"$copy/$file"
    if bash "$CHECK" "$copy" >"$WORK/copy.txt" 2>&1; then
        fail "$what: the check passed a tree with '$line' in $file"; return
    fi
    if ! grep -qF "$file:" "$WORK/copy.txt"; then
        fail "$what: the check failed without naming $file:"; sed 's/^/    /' "$WORK/copy.txt"; return
    fi
    pass "$what: refused ($(grep -F "$file:" "$WORK/copy.txt" | head -n 1))"
}

expect_violation "kernels including train" kernels/ops.c '#include "../src/train/trainer.h"'
expect_violation "model including io" src/model/net.c '#include "../io/config.h"'
expect_violation "io including kernels" src/io/sampler.c '#include "../../kernels/ops.h"'
expect_violation "HDF5 in the model" src/model/params.c '#include <hdf5.h>'
expect_violation "a missing header" src/core/rng.c '#include "no_such_header.h"'
finish
