#!/usr/bin/env bash
# checksrc: machine-enforced style for fedcomp's C sources (STYLE.md 30).
# Bans unsafe or unchecked calls and flags a few patterns; prints
# file:line: message for each finding and exits 1 if there is any.
set -u
cd "$(dirname "$0")/.."
files=$(git ls-files '*.c' '*.h' 2>/dev/null || find . -name '*.c' -o -name '*.h')
[[ -n "$files" ]] || files=$(find common compress proto model coordinator worker bench tests -name '*.[ch]')
status=0
report() { echo "$1: $2"; status=1; }

for f in $files; do
    [[ -f $f ]] || continue
    case $f in build/*) continue ;; esac
    # banned functions
    grep -nE '\b(sprintf|vsprintf|strcpy|strcat|strncpy|strtok|atoi|atol|atof|gets)[[:space:]]*\(' "$f" |
        grep -vE 'snprintf|vsnprintf|//.*|/\*.*\*/' | while IFS= read -r l; do
            echo "$f:${l%%:*}: banned function: ${l#*:}"
        done | grep . && status=1
    # explicit comparison with NULL is allowed (we use it for clarity), but
    # assignment inside an if condition is not.
    grep -nE '\bif \(\(?[a-z_]+ = [^=]' "$f" | while IFS= read -r l; do
        echo "$f:${l%%:*}: assignment in condition"
    done | grep . && status=1
    # overlong lines
    awk -v f="$f" 'length($0) > 100 { printf "%s:%d: line over 100 columns\n", f, NR; bad=1 } END { exit bad }' "$f" || status=1
    # tabs
    grep -nP '\t' "$f" | head -3 | while IFS= read -r l; do
        echo "$f:${l%%:*}: tab character"
    done | grep . && status=1
done
exit $status
