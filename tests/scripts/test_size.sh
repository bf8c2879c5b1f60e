#!/usr/bin/env bash
# The size limits (tools/check_size.sh): the tree passes them (tools/size_allow.txt aside), and
# a tree with a file over the limit or a function over the limit fails them, naming the file.
source "$(dirname "$0")/lib/common.sh"
CHECK="$VQ_SOURCE_DIR/tools/check_size.sh"

if bash "$CHECK" "$VQ_SOURCE_DIR" >"$WORK/tree.txt" 2>&1; then
    pass "the tree is within the size limits: $(tail -n 1 "$WORK/tree.txt")"
else
    fail "the tree is over the size limits:"; sed 's/^/    /' "$WORK/tree.txt"
fi

# A small tree: one C file with a function of BODY lines, and FILLER more lines of comments.
make_tree() {  # make_tree DIR BODY FILLER
    mkdir -p "$1/src/core"
    {
        echo '// a generated file'
        echo 'int long_one(int x) {'
        for ((i = 0; i < $2 - 1; i++)); do echo "    x += $i;   // { not a brace \"}\""; done
        echo '}'
        for ((i = 0; i < $3; i++)); do echo "// filler $i"; done
    } >"$1/src/core/big.c"
}
make_tree "$WORK/ok" 80 400
check "a function of 80 lines in a file of 482 lines passes" bash "$CHECK" "$WORK/ok"
make_tree "$WORK/long_function" 81 0
if bash "$CHECK" "$WORK/long_function" >"$WORK/out.txt" 2>&1; then
    fail "a function of 81 lines passed"
else
    check "a function of 81 lines is refused, by name" grep -q "src/core/big.c:2: function long_one is 81 lines" "$WORK/out.txt"
fi
make_tree "$WORK/long_file" 10 500
if bash "$CHECK" "$WORK/long_file" >"$WORK/out.txt" 2>&1; then
    fail "a file of 512 lines passed"
else
    check "a file of 512 lines is refused, by name" grep -q "src/core/big.c:1: 512 lines" "$WORK/out.txt"
fi
mkdir -p "$WORK/long_file/tools"
echo "src/core/big.c   # being split" >"$WORK/long_file/tools/size_allow.txt"
check "an allow-listed file passes" bash "$CHECK" "$WORK/long_file"
finish
