#!/usr/bin/env bash
# A full disk under checkpoint.dir (issue 15): training stops with exit code 1 and a message that
# says how much space the checkpoint needs and how much is free, never a crash at exit, and the
# checkpoints written before stay intact (each passes `info`, which verifies everything). Needs a
# small tmpfs: root and permission to mount (CI runs as root); SKIP otherwise.
source "$(dirname "$0")/lib/common.sh"
[ "$(id -u)" = 0 ] || { echo "SKIP: mounting a small tmpfs needs root"; exit 77; }
mnt="$WORK/full"
mkdir -p "$mnt"
# Room for two checkpoints of configs/smoke.yaml (about 516 KB each), not three.
if ! mount -t tmpfs -o size=1200k tmpfs "$mnt" 2>"$WORK/mount.txt"; then
    echo "SKIP: cannot mount a tmpfs here: $(cat "$WORK/mount.txt")"
    exit 77
fi
trap 'umount "$mnt" 2>/dev/null; rm -rf "$WORK"' EXIT

"$VQVAE_BIN" train --config "$SMOKE" train.steps=20 log.every=2 checkpoint.every=2 checkpoint.keep=10 \
    checkpoint.dir="$mnt" log.metrics_file="$WORK/metrics.jsonl" >"$WORK/train.log" 2>&1
rc=$?
tail -n 4 "$WORK/train.log" | sed 's/^/    /'
check "exit code 1 (the documented error code; got $rc)" [ $rc -eq 1 ]
check "says how much the checkpoint needs and what is free" grep -q "it needs [0-9]* bytes.*has [0-9]* bytes" \
    "$WORK/train.log"
check "says training stopped because of it" grep -q "stopping because the checkpoint of step 6 could not be written" \
    "$WORK/train.log"
check "no crash, no HDF5 dump" bash -c "! grep -qE 'Segmentation|HDF5-DIAG|infinite loop' '$WORK/train.log'"
check "no .tmp file left" bash -c "! ls '$mnt' | grep -q tmp"
for f in "$mnt"/ckpt_00000002.h5 "$mnt"/ckpt_00000004.h5; do
    "$VQVAE_BIN" info "$f" >"$WORK/info.txt" 2>&1
    check "$(basename "$f") intact (info verifies it)" grep -q "whole-file CRC-32: matches" "$WORK/info.txt"
done
check "latest names the last good one" grep -q "ckpt_00000004.h5" "$mnt/latest"
finish
