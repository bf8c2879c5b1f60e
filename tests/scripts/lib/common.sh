# common.sh: shared helpers for the script tests. Source it; call `finish` at the end.
# Each `check` counts a pass or a failure (and returns 0 or 1, so `check ... || continue` works);
# `skip_case` counts a sub-case that cannot run here and says why; `finish` prints
# "N passed, N failed, N skipped" and exits non-zero on any failure or when nothing passed, so a
# script test cannot pass by falling off its end, and a skipped case is never counted as passed.
# `skip_test` ends the whole test as SKIP (exit 77, ctest's SKIP_RETURN_CODE).
set -u
: "${VQVAE_BIN:?VQVAE_BIN must point to the vqvae_dist binary (ctest sets it)}"
: "${VQ_SOURCE_DIR:?VQ_SOURCE_DIR must point to the repository (ctest sets it)}"
PASSED=0
FAILED=0
SKIPPED=0
WORK=$(mktemp -d "${TMPDIR:-/tmp}/vqtest.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
SMOKE="$VQ_SOURCE_DIR/configs/smoke.yaml"

pass() { PASSED=$((PASSED + 1)); echo "ok: $*"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL: $*"; return 1; }
skip_case() { SKIPPED=$((SKIPPED + 1)); echo "SKIP: $*"; }   # skip_case "what, and why it cannot run here"
check() {  # check "description" command...: returns 0 on a pass, 1 on a failure
    local what=$1; shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}
finish() {
    echo "$(basename "$0" .sh): $PASSED passed, $FAILED failed, $SKIPPED skipped"
    [ "$FAILED" -eq 0 ] && [ "$PASSED" -gt 0 ]
    exit $?
}
# expect "description" EXIT_CODE "substring" -- args...: the program run with args exits EXIT_CODE
# and its output contains substring (case-sensitive); otherwise a failure showing the output's end.
expect() {
    local what=$1 code=$2 text=$3; shift 4
    "$VQVAE_BIN" "$@" >"$WORK/out.txt" 2>&1
    local rc=$?
    if [ $rc -ne "$code" ] || ! grep -qF -- "$text" "$WORK/out.txt"; then
        fail "$what: exit code $rc (expected $code), output:"; sed 's/^/    /' "$WORK/out.txt" | tail -n 4; return
    fi
    pass "$what"
}
# skip_test "why": the whole test cannot run here: SKIP (exit 77; lib/gpu.sh has the GPU tests' own).
skip_test() {
    echo "$(basename "$0" .sh): SKIP: $*"
    exit 77
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
    if [ "${4:-last}" = first ]; then line=$(grep "\"kind\":\"$2\"" "$1" 2>/dev/null | head -n 1)
    else line=$(grep "\"kind\":\"$2\"" "$1" 2>/dev/null | tail -n 1); fi
    echo "$line" | sed -n "s/.*\"$3\":\([^,}]*\).*/\1/p"
}
# same_metric FILE_A FILE_B KIND KEY: the last KEY of KIND is there in both files and equal as
# text (the same float printed the same way). A metric missing from either file is a failure.
same_metric() {
    local a b
    a=$(metric "$1" "$3" "$4") b=$(metric "$2" "$3" "$4")
    echo "  $4: '$a' vs '$b'"
    [ -n "$a" ] && [ -n "$b" ] && [ "$a" = "$b" ]
}
# float comparison: fcmp "a < b"
fcmp() { awk "BEGIN { exit !($1) }"; }
