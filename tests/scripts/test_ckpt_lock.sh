#!/usr/bin/env bash
# One training run per checkpoint.dir (issue 15): a second run on a folder in use is refused at
# once with the folder and the holder's PID, and leaves the first run's files alone; the lock is
# released at the end of a run and by a run killed with SIGKILL (a stale lock file does not block
# a resume); eval of a checkpoint in that folder is not blocked.
source "$(dirname "$0")/lib/common.sh"
dir="$WORK/run"
started() { for _ in $(seq 300); do grep -q "step " "$1" 2>/dev/null && return 0; sleep 0.1; done; return 1; }

"$VQVAE_BIN" train --config "$SMOKE" train.steps=2 checkpoint.dir="$dir" >/dev/null 2>&1
# The first run saves nothing until it is stopped, so ckpt_00000002.h5 stays for the eval below.
"$VQVAE_BIN" train --config "$SMOKE" train.steps=100000 log.every=20 checkpoint.every=100000 checkpoint.keep=5 \
    checkpoint.dir="$dir" --resume auto >"$WORK/first.log" 2>&1 &
first=$!
check "first run started" started "$WORK/first.log"
check "the lock file names the first run" grep -q "pid $first on" "$dir/lock"

timeout 60 "$VQVAE_BIN" train --config "$SMOKE" train.steps=50 checkpoint.dir="$dir" >"$WORK/second.log" 2>&1
rc=$?
check "second run on the same folder: exit code 1 (got $rc)" [ $rc -eq 1 ]
check "second run: names the folder and the holder's PID" \
    grep -q "checkpoint.dir '$dir' is in use by another training run (pid $first on" "$WORK/second.log"
check "second run: wrote no checkpoint" bash -c "! grep -q 'checkpoint: .*h5' '$WORK/second.log'"

timeout 120 "$VQVAE_BIN" eval --checkpoint "$dir/ckpt_00000002.h5" >"$WORK/eval.log" 2>&1
check "eval of a checkpoint in the locked folder works" grep -q "test nmse" "$WORK/eval.log"

kill -TERM $first
wait $first
rc=$?
check "first run stops resumably (75, got $rc)" [ $rc -eq 75 ]
"$VQVAE_BIN" train --config "$SMOKE" train.steps=2 checkpoint.dir="$WORK/other" >/dev/null 2>&1
timeout 120 "$VQVAE_BIN" train --config "$SMOKE" train.steps=1 checkpoint.dir="$dir" --resume auto \
    >"$WORK/after.log" 2>&1
check "after the first run ended the folder is free" bash -c "! grep -q 'in use' '$WORK/after.log'"

# kill -9: no chance to unlock; the kernel drops the flock with the process.
"$VQVAE_BIN" train --config "$SMOKE" train.steps=100000 log.every=20 checkpoint.every=10 checkpoint.dir="$dir" \
    --resume auto >"$WORK/killed.log" 2>&1 &
killed=$!
check "a run to kill started" started "$WORK/killed.log"
kill -KILL $killed
wait $killed 2>/dev/null
check "the stale lock file is still there" grep -q "pid $killed on" "$dir/lock"
stop=$(( $(sed -n 's/ckpt_0*\([0-9][0-9]*\)\.h5/\1/p' "$dir/latest") + 3 ))
timeout 120 "$VQVAE_BIN" train --config "$SMOKE" train.steps=$stop checkpoint.dir="$dir" --resume auto \
    >"$WORK/resume.log" 2>&1
rc=$?
check "resume after kill -9: not blocked by the stale lock (rc $rc)" [ $rc -eq 0 ]
check "resume after kill -9: resumed" grep -q "resumed from" "$WORK/resume.log"
finish
