#!/usr/bin/env bash
# Damaged and unusual checkpoints and configs through the real binary (issue 15): each must end
# quickly with the documented exit code and a message naming the file, never hang, crash or show
# HDF5's own error dump, and lose nothing: a flipped byte in the global heap (info, eval, and
# train --resume auto, which falls back), a flipped digit in the stored config, a file without
# /optim (eval works, resume refuses), a corrupt /optim (info refuses, eval works), a config with
# a NUL byte, a config from a newer version, a file from before checksums, data.dataset=mnist.
source "$(dirname "$0")/lib/common.sh"
edit() { python3 "$VQ_SOURCE_DIR/tests/scripts/lib/ckpt_edit.py" "$@"; }

expect() {  # expect "description" EXIT_CODE "substring" -- args...   (at most 60 s)
    local what=$1 code=$2 text=$3; shift 4
    timeout 60 "$VQVAE_BIN" "$@" >"$WORK/out.txt" 2>&1
    local rc=$?
    if [ $rc -ne "$code" ]; then
        fail "$what: exit code $rc, expected $code$([ $rc -eq 124 ] && echo ' (it hung)')"
        sed 's/^/    /' "$WORK/out.txt" | tail -n 5; return
    fi
    if ! grep -qiF -- "$text" "$WORK/out.txt"; then
        fail "$what: output lacks '$text'"; sed 's/^/    /' "$WORK/out.txt" | tail -n 5; return
    fi
    if grep -qE "HDF5-DIAG|infinite loop closing library|#000: " "$WORK/out.txt"; then
        fail "$what: HDF5's own error dump reached the output"; return
    fi
    pass "$what"
}

run="$WORK/run"
"$VQVAE_BIN" train --config "$SMOKE" train.steps=4 checkpoint.every=2 checkpoint.keep=5 checkpoint.dir="$run" \
    >"$WORK/train.log" 2>&1
check "a run with checkpoints at steps 2 and 4" test -s "$run/ckpt_00000004.h5" -a -s "$run/ckpt_00000002.h5"
cp "$run/ckpt_00000004.h5" "$WORK/good.h5"

# 1: one flipped byte in the global heap (string attributes: no HDF5 checksum of its own).
edit flip-heap "$run/ckpt_00000004.h5"
expect "info: flipped heap byte" 1 "checksum mismatch in checkpoint '$run/ckpt_00000004.h5'" -- \
    info "$run/ckpt_00000004.h5"
expect "eval: flipped heap byte" 1 "checksum mismatch" -- eval --checkpoint "$run/ckpt_00000004.h5"
check "eval: a damaged file's error does not speak of resuming" bash -c "! grep -qi 'resum' '$WORK/out.txt'"
expect "resume auto: falls back past the flipped file" 0 "resumed from $run/ckpt_00000002.h5" -- \
    train --config "$SMOKE" train.steps=6 checkpoint.every=2 checkpoint.keep=5 checkpoint.dir="$run" --resume auto
check "resume auto: says why it skipped the newest" grep -q "skipping checkpoint: checksum mismatch" "$WORK/out.txt"

# 3: HDF5's own report only when asked; here HDF5 itself fails (superblock damage, resealed).
cp "$WORK/good.h5" "$WORK/super.h5"
python3 -c "import sys; p=sys.argv[1]; b=bytearray(open(p,'rb').read()); b[512+20]^=0x10; open(p,'wb').write(b)" \
    "$WORK/super.h5"
edit reseal "$WORK/super.h5"
expect "info: HDF5 fails, our message only" 1 "truncated or corrupt" -- info "$WORK/super.h5"
VQ_HDF5_ERRORS=1 "$VQVAE_BIN" info "$WORK/super.h5" >"$WORK/diag.txt" 2>&1
check "VQ_HDF5_ERRORS=1 shows HDF5's stack too" grep -q "HDF5-DIAG" "$WORK/diag.txt"

# 5: a flipped digit in the stored config (synthetic_count 256 -> 356) is not used silently.
cp "$WORK/good.h5" "$WORK/config.h5"
edit flip-text "$WORK/config.h5" "synthetic_count: 256" "synthetic_count: 356"
expect "eval: changed config text" 1 "checksum mismatch" -- eval --checkpoint "$WORK/config.h5"

# 6: a file without /optim evaluates (and says nothing of resuming); resume refuses it.
if py_h5 >/dev/null && [ -n "$(py_h5)" ]; then
    cp "$WORK/good.h5" "$WORK/weights.h5"
    "$(py_h5)" "$VQ_SOURCE_DIR/tests/scripts/lib/ckpt_edit.py" drop-optim "$WORK/weights.h5"
    expect "eval: weights only" 0 "test nmse" -- eval --checkpoint "$WORK/weights.h5"
    check "eval: no resume wording" bash -c "! grep -qi 'resum' '$WORK/out.txt'"
    expect "resume: weights only refused" 1 "'/optim' (the Adam state) is missing" -- \
        train --config "$SMOKE" train.steps=6 checkpoint.dir="$WORK/r6" --resume "$WORK/weights.h5"
    # 8: a corrupt /optim: info checks it and says so; eval does not need it.
    cp "$WORK/good.h5" "$WORK/optim.h5"
    "$(py_h5)" "$VQ_SOURCE_DIR/tests/scripts/lib/ckpt_edit.py" poison-optim "$WORK/optim.h5"
    expect "info: corrupt /optim refused" 1 "negative values" -- info "$WORK/optim.h5"
    expect "eval: corrupt /optim does not matter" 0 "test nmse" -- eval --checkpoint "$WORK/optim.h5"
    # A config written by a newer version: info shows it and names the key; eval refuses.
    cp "$WORK/good.h5" "$WORK/newer.h5"
    "$(py_h5)" "$VQ_SOURCE_DIR/tests/scripts/lib/ckpt_edit.py" newer-config "$WORK/newer.h5" 9.9.9
    expect "info: newer config shown" 0 "new_option: 3" -- info "$WORK/newer.h5"
    check "info: names the unknown key" grep -q "unknown to this program.*train.new_option" "$WORK/out.txt"
    expect "eval: newer config refused" 1 "written by vqvae_dist 9.9.9: use that version or newer" -- \
        eval --checkpoint "$WORK/newer.h5"
else
    skip_case "weights-only, corrupt /optim and newer-config files need h5py (apt-get install python3-h5py)"
fi

# A file from before whole-file checksums: loads, and info says what it could not check.
expect "info: file without a checksum" 0 "NOT checked      no whole-file checksum" -- \
    info "$VQ_SOURCE_DIR/tests/data/checkpoint_v1_0.1.0.h5"

# 1: a file without the checksum header (as before it existed) still evaluates and resumes, with a
# warning that only its datasets' checksums are verified.
cp "$WORK/good.h5" "$WORK/old.h5"
edit unseal "$WORK/old.h5"
expect "eval: file without a checksum, with a warning" 0 "has no whole-file checksum" -- \
    eval --checkpoint "$WORK/old.h5"
check "eval: file without a checksum evaluates" grep -q "test nmse" "$WORK/out.txt"
expect "resume: file without a checksum, with a warning" 0 "has no whole-file checksum" -- \
    train --config "$SMOKE" train.steps=6 checkpoint.dir="$WORK/r_old" --resume "$WORK/old.h5"
check "resume: file without a checksum resumed" grep -q "resumed from" "$WORK/out.txt"

# 7: a NUL byte in a config file.
printf 'train:\n  steps: 3\n\0  lr: fast\n' >"$WORK/nul.yaml"
expect "config with a NUL byte" 1 "NUL byte at offset 18 (line 3)" -- train --config "$WORK/nul.yaml"

# data.dataset=mnist reads MNIST's folder, not Fashion-MNIST's.
if [ -e /usr/share/datasets/mnist ]; then
    skip_case "data.dataset=mnist with the default path: /usr/share/datasets/mnist exists here"
else
    expect "mnist: its own default folder" 1 "data.path '/usr/share/datasets/mnist' for data.dataset mnist" -- \
        train data.dataset=mnist checkpoint.dir="$WORK/mnist"
fi
finish
