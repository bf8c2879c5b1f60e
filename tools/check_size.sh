#!/usr/bin/env bash
# Check the size limits of the code (README "Quality bar"): no source file over MAX_FILE_LINES
# lines (C, CUDA, headers, Python, shell under src, kernels, tests, tools, bench, python, launch)
# and no C/CUDA function whose body is over MAX_FUNCTION_LINES lines (counted from the line after
# its opening brace to its closing brace). Files named in tools/size_allow.txt are exempt.
# Usage: tools/check_size.sh [ROOT] (default: the repo). Prints each violation as FILE:LINE: what,
# and exits 1 when there is any.
set -euo pipefail
root=$(cd "${1:-$(dirname "$0")/..}" && pwd)
MAX_FILE_LINES=${MAX_FILE_LINES:-500}
MAX_FUNCTION_LINES=${MAX_FUNCTION_LINES:-80}
cd "$root"

allowed=" "
if [ -f tools/size_allow.txt ]; then
    while IFS= read -r entry; do
        entry=${entry%%#*}
        entry=${entry//[[:space:]]/}
        [ -n "$entry" ] && allowed+="$entry "
    done < tools/size_allow.txt
fi

# The functions of one C/CUDA file whose body is too long, as FILE:LINE: message. Braces are
# counted outside comments, strings, character constants and preprocessor lines; `extern "C" {`
# blocks are transparent. Relies on the house style: a function's closing brace in column 0.
long_functions() {
    awk -v file="$1" -v max="$MAX_FUNCTION_LINES" '
    function strip(s,    out) {
        # block comments (possibly opened on an earlier line), then strings, chars, line comments
        out = ""
        while (length(s) > 0) {
            if (in_comment) {
                i = index(s, "*/")
                if (i == 0) return out
                s = substr(s, i + 2); in_comment = 0
            } else {
                i = index(s, "/*")
                if (i == 0) { out = out s; break }
                out = out substr(s, 1, i - 1); s = substr(s, i + 2); in_comment = 1
            }
        }
        gsub(/\\./, "", out)
        gsub(/"[^"]*"/, "\"\"", out)
        gsub(/\047[^\047]*\047/, "", out)
        sub(/\/\/.*/, "", out)
        return out
    }
    BEGIN { depth = 0; decl = ""; decl_line = 0; in_macro = 0; in_comment = 0 }
    {
        raw = $0
        if (in_macro) { in_macro = (raw ~ /\\$/); next }
        if (!in_comment && raw ~ /^[ \t]*#/) { in_macro = (raw ~ /\\$/); next }
        s = strip(raw)
        if (depth == 0 && s ~ /[^ \t]/ && decl == "") decl_line = NR
        for (k = 1; k <= length(s); k++) {
            c = substr(s, k, 1)
            if (depth == 0) {
                if (c == "{") {
                    if (decl ~ /extern[ \t]*""[ \t]*$/) { decl = ""; continue }   # extern "C" {
                    depth = 1
                    is_function = (decl ~ /\)[ \t]*(const)?[ \t]*$/ && decl !~ /=/ && decl !~ /^[ \t]*(typedef|struct|enum|union)[ \t]/)
                    name = ""
                    if (is_function) { t = decl; sub(/\(.*/, "", t); n = split(t, w, /[^A-Za-z0-9_:~]+/); name = w[n] }
                    open_line = NR; start_line = decl_line; decl = ""
                } else if (c == ";" || c == "}") {
                    decl = ""
                } else {
                    decl = decl c
                }
            } else if (c == "{") {
                depth++
            } else if (c == "}") {
                depth--
                if (depth == 0) {
                    body = NR - open_line
                    if (is_function && body > max)
                        printf "%s:%d: function %s is %d lines long (over %d): split it along its jobs\n", file, start_line, name, body, max
                    decl = ""
                }
            }
        }
        if (depth == 0 && decl != "") decl = decl " "
    }' "$1"
}

violations=0
while IFS= read -r file; do
    if [[ $allowed == *" $file "* ]]; then continue; fi
    lines=$(wc -l < "$file")
    if [ "$lines" -gt "$MAX_FILE_LINES" ]; then
        echo "$file:1: $lines lines (over $MAX_FILE_LINES): split it, one job per file"
        violations=$((violations + 1))
    fi
    case "$file" in
        *.c | *.h | *.cu)
            while IFS= read -r report; do
                echo "$report"
                violations=$((violations + 1))
            done < <(long_functions "$file")
            ;;
    esac
done < <(find src kernels tests tools bench python launch -type f \
             \( -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.py' -o -name '*.sh' \) 2>/dev/null | sort)

for entry in $allowed; do
    [ -e "$entry" ] || echo "check_size: note: $entry is in tools/size_allow.txt but does not exist; remove it"
done
if [ "$violations" -gt 0 ]; then
    echo "check_size: $violations file(s) or function(s) over the limits ($MAX_FILE_LINES lines a file, $MAX_FUNCTION_LINES a function)"
    exit 1
fi
echo "check_size: no file over $MAX_FILE_LINES lines, no function over $MAX_FUNCTION_LINES (allow-listed:${allowed% })"
