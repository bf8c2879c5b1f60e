#!/usr/bin/env bash
# `vqvae_dist bench` on the CPU with the smoke model: stdout is exactly one JSON line with sane
# fields, nothing is written to the working folder, and bad options are usage errors (exit 2).
source "$(dirname "$0")/lib/common.sh"

PY=$(command -v python3 || true)
[ -n "$PY" ] || { echo "SKIP: no python3 to parse the JSON line"; exit 77; }

cd "$WORK"
"$VQVAE_BIN" bench --config "$SMOKE" --steps 4 --warmup 2 train.device=cpu train.threads=1 \
    >"$WORK/out.json" 2>"$WORK/err.txt"
rc=$?
check "bench exits 0" [ $rc -eq 0 ]
[ $rc -eq 0 ] || tail -n 5 "$WORK/err.txt"
check "stdout is one line" [ "$(wc -l <"$WORK/out.json")" -eq 1 ]
check "the logs went to stderr" grep -q "bench: 4 steps in" "$WORK/err.txt"
check "no files written" [ -z "$(ls -A "$WORK" | grep -v -e '^out.json$' -e '^err.txt$')" ]

# Every field is there with a plausible value.
check_json() {
    "$PY" - "$WORK/out.json" <<'EOF'
import json, math, sys
r = json.loads(open(sys.argv[1]).read())
want = {'impl': 'vqvae_dist', 'backend': 'cpu', 'precision': 'fp32', 'world': 1, 'batch': 16, 'global_batch': 16,
        'steps': 4, 'warmup': 2, 'threads': 1, 'quantizer': 'ema', 'compile': False}
bad = [f'{k}={r.get(k)!r} (expected {v!r})' for k, v in want.items() if r.get(k) != v]
for k in ('images_per_s', 'ms_per_step', 'startup_s', 'final_loss'):
    if not isinstance(r.get(k), (int, float)) or not math.isfinite(r[k]) or r[k] <= 0:
        bad.append(f'{k}={r.get(k)!r} (expected a positive number)')
for k in ('peak_memory_bytes', 'peak_allocated_bytes', 'memory_in_use_bytes'):
    if not isinstance(r.get(k), int) or r[k] < 1 << 20:
        bad.append(f'{k}={r.get(k)!r} (expected at least 1 MiB)')
if abs(r['images_per_s'] * r['ms_per_step'] / 1000 - r['global_batch']) > 0.01 * r['global_batch']:
    bad.append('images_per_s x ms_per_step != global batch')
if not r.get('device') or not r.get('version') or not r.get('commit'):
    bad.append('device, version and commit must be non-empty')
if not 0.1 < r['final_loss'] < 10:
    bad.append(f'final_loss {r["final_loss"]} is not plausible for the smoke model')
print('\n'.join(bad))
sys.exit(1 if bad else 0)
EOF
}
check "the JSON line parses and its fields are sane" check_json
# The commit is the tree's at build time (it was once fixed when cmake first ran, and went stale).
if head=$(git -C "$VQ_SOURCE_DIR" describe --always 2>/dev/null); then
    check "commit is this tree's ($head)" grep -qE "\"commit\": \"$head(-dirty)?\"" "$WORK/out.json" ||
        echo "  the binary says $(grep -oE '"commit": "[^"]*"' "$WORK/out.json"): a commit since the last build? rebuild first"
fi
# A VAE has no quantizer, and the JSON says so (it once said the config's default, ema).
"$VQVAE_BIN" bench --config "$SMOKE" --steps 1 --warmup 0 train.device=cpu train.threads=1 model.type=vae \
    model.arch=small data.channels=1 data.image_size=28 >"$WORK/vae.json" 2>"$WORK/err.txt"
check "bench of a VAE exits 0" [ $? -eq 0 ]
check "bench of a VAE says quantizer none" grep -q '"quantizer": "none"' "$WORK/vae.json"
rm -f "$WORK/vae.json"

# tools/onednn_profile.py (docs/BENCHMARKS.md's per-primitive profile) on the same bench: the
# convolutions appear with a GFLOP/s figure and the per-step summary line adds them up.
prof=(--steps 4 -- "$VQVAE_BIN" bench --config "$SMOKE" --steps 2 --warmup 2 train.device=cpu train.threads=1
      train.cpu_conv=onednn)
if "$VQVAE_BIN" bench --config "$SMOKE" --steps 1 --warmup 0 train.cpu_conv=onednn >/dev/null 2>"$WORK/probe.txt"; then
    "$PY" "$VQ_SOURCE_DIR/tools/onednn_profile.py" "${prof[@]}" >"$WORK/profile.txt" 2>&1
    check "onednn_profile.py exits 0" [ $? -eq 0 ]
    check "onednn_profile.py lists convolutions with GFLOP/s" \
        grep -qE "[0-9]+\.[0-9] GFLOP/s +convolution " "$WORK/profile.txt"
    check "onednn_profile.py sums a step" grep -qE "^per step: convolution [0-9.]+ ms" "$WORK/profile.txt"
else
    echo "SKIP onednn_profile.py: this build has no oneDNN ($(tail -n 1 "$WORK/probe.txt"))"
fi
rm -f "$WORK/profile.txt" "$WORK/probe.txt"

expect_usage() {  # expect_usage "description" "text" -- args...
    local what=$1 text=$2; shift 3
    "$VQVAE_BIN" "$@" >"$WORK/usage.txt" 2>&1
    local rc=$?
    if [ $rc -eq 2 ] && grep -qF -- "$text" "$WORK/usage.txt"; then pass "$what"
    else fail "$what: exit code $rc, output: $(head -n 2 "$WORK/usage.txt")"; fi
}
expect_usage "--steps 0 is refused" "--steps expects a number" -- bench --steps 0
expect_usage "--warmup needs a number" "--warmup expects a number" -- bench --warmup many
expect_usage "bench takes no --count" "'bench' does not take --count" -- bench --count 3
expect_usage "train takes no --steps" "'train' does not take --steps" -- train --steps 3
check "--help lists bench" bash -c '"$0" --help | grep -q "bench .*JSON"' "$VQVAE_BIN"
finish
