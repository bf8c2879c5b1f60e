# common.sh: shared helpers for the script tests. Source it; call `finish` at the end.
# Each `check` counts a pass or a failure; `finish` prints "N passed, N failed" and exits
# non-zero on any failure, so a script test cannot pass by falling off its end.
set -u
: "${VQVAE_BIN:?VQVAE_BIN must point to the vqvae_dist binary (ctest sets it)}"
: "${VQ_SOURCE_DIR:?VQ_SOURCE_DIR must point to the repository (ctest sets it)}"
PASSED=0
FAILED=0
WORK=$(mktemp -d "${TMPDIR:-/tmp}/vqtest.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
SMOKE="$VQ_SOURCE_DIR/configs/smoke.yaml"

pass() { PASSED=$((PASSED + 1)); echo "ok: $*"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL: $*"; }
check() {  # check "description" command...
    local what=$1; shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}
finish() {
    echo "$(basename "$0" .sh): $PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ] && [ "$PASSED" -gt 0 ]
    exit $?
}
# The Python that can import h5py and numpy (for comparing checkpoints), or empty.
py_h5() {
    local p
    for p in "${VQ_TORCH_PYTHON:-}" /usr/bin/python3 python3; do
        [ -n "$p" ] && "$p" -c "import h5py, numpy" 2>/dev/null && { echo "$p"; return; }
    done
}
# compare_h5 A B TOL [GROUP]: max relative error per dataset of GROUP (default /model) <= TOL;
# TOL=0 asks for bitwise equality.
compare_h5() {
    local py; py=$(py_h5)
    [ -n "$py" ] || { echo "compare_h5: no Python with h5py + numpy (apt-get install python3-h5py)"; return 1; }
    "$py" "$VQ_SOURCE_DIR/tests/scripts/lib/compare_h5.py" "$@"
}
# Last JSON value of KEY in metrics.jsonl lines of KIND (train|eval); FIRST: the first one.
metric() {  # metric FILE KIND KEY [first|last]
    local line
    if [ "${4:-last}" = first ]; then line=$(grep "\"kind\":\"$2\"" "$1" | head -n 1)
    else line=$(grep "\"kind\":\"$2\"" "$1" | tail -n 1); fi
    echo "$line" | sed -n "s/.*\"$3\":\([^,}]*\).*/\1/p"
}
# float comparison: fcmp "a < b"
fcmp() { awk "BEGIN { exit !($1) }"; }
