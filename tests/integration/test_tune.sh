#!/usr/bin/env bash
# fedcomp-tune (docs/tuning.md): a tiny grid of 4 configurations, 2
# devices x 2 rounds on a small model and data slice.
#
# Checks: it finishes with one "[i/4]" progress line per configuration;
# tune.csv has 4 rows and pareto.csv at least one, both with the same
# header; every pareto.csv row is a row of tune.csv and no row of tune.csv
# dominates it (as many or fewer bytes and as good or better accuracy, one
# strictly); every tune.csv row that is not on the frontier is dominated;
# the recommendation is within --tolerance of the best accuracy and is the
# cheapest such row; --help and --version work and a bad flag is refused.
# asan: yes
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
TUNE=$FL_BIN/fedcomp-tune
[[ -x $TUNE ]] || fl_fail "$TUNE not built"
[[ -d $FL_DATA ]] || fl_fail "no Fashion-MNIST in $FL_DATA"

out=$FL_TMP/tune
TOL=2.5
timeout -s TERM "$FL_WATCHDOG" "$TUNE" --data-dir "$FL_DATA" \
    --devices 2 --rounds 2 --train-limit 2000 --eval-limit 500 --hidden 32 \
    --density 0.1,0.01 --values fp16 --codec zstd:1,lz4 \
    --error-feedback on --techniques none --tolerance $TOL \
    --out "$out" >"$FL_TMP/tune.out" 2>"$FL_TMP/tune.err" ||
    fl_fail "fedcomp-tune failed: $(tail -5 "$FL_TMP/tune.err")"
[[ $(grep -cE '^\[[1-4]/4\]' "$FL_TMP/tune.out") -eq 4 ]] ||
    fl_fail "not 4 progress lines: $(cat "$FL_TMP/tune.out")"
for f in tune.csv pareto.csv; do
    [[ -s $out/$f ]] || fl_fail "$out/$f missing"
done
[[ $(head -1 "$out/tune.csv") == "$(head -1 "$out/pareto.csv")" ]] ||
    fl_fail "tune.csv and pareto.csv headers differ"
[[ $(($(wc -l <"$out/tune.csv") - 1)) -eq 4 ]] || fl_fail "tune.csv rows != 4"
[[ $(($(wc -l <"$out/pareto.csv") - 1)) -ge 1 ]] || fl_fail "pareto.csv empty"

# every row parses: numeric accuracy in [0,1], bytes > 0
awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) h[$i] = i; next }
    !($h["accuracy"] ~ /^[0-9.]+$/) || $h["accuracy"] > 1 ||
    !($h["up_bytes_per_round"] + 0 > 0) { bad = 1 }
    END { exit bad }' "$out/tune.csv" || fl_fail "tune.csv does not parse"

# frontier: a subset of tune.csv, non-dominated; everything else dominated
awk -F, '
    FNR == 1 { for (i = 1; i <= NF; i++) h[$i] = i; next }
    FILENAME ~ /tune.csv$/ { n++; row[n] = $0; acc[n] = $h["accuracy"];
                             by[n] = $h["up_bytes_per_round"];
                             par[n] = $h["pareto"]; next }
    { p++; prow[p] = $0; pacc[p] = $h["accuracy"];
      pby[p] = $h["up_bytes_per_round"] }
    function dom(a1, b1, a2, b2) {   # (a1,b1) dominates (a2,b2)
        return b1 <= b2 && a1 >= a2 && (b1 < b2 || a1 > a2)
    }
    END {
        for (i = 1; i <= p; i++) {
            found = 0
            for (j = 1; j <= n; j++) if (row[j] == prow[i]) found = 1
            if (!found) { print "pareto row not in tune.csv: " prow[i]; bad = 1 }
            for (j = 1; j <= n; j++)
                if (dom(acc[j], by[j], pacc[i], pby[i])) {
                    print "pareto row dominated: " prow[i]; bad = 1 }
        }
        for (j = 1; j <= n; j++) {
            d = 0
            for (k = 1; k <= n; k++) if (dom(acc[k], by[k], acc[j], by[j])) d = 1
            if (d == par[j]) { print "pareto flag wrong: " row[j]; bad = 1 }
        }
        np = 0; for (j = 1; j <= n; j++) np += par[j]
        if (np != p) { print "pareto.csv has " p " rows, flags say " np; bad = 1 }
        exit bad
    }' "$out/tune.csv" "$out/pareto.csv" || fl_fail "frontier is wrong"

# the recommendation: within TOL points of the best and the cheapest such
rec=$(grep -A1 '^recommended' "$FL_TMP/tune.out" | tail -1 |
    sed 's/^ *fedcomp-coordinator //')
[[ -n $rec ]] || fl_fail "no recommendation printed"
awk -F, -v tol=$TOL -v rec="$rec" '
    NR == 1 { for (i = 1; i <= NF; i++) h[$i] = i; next }
    { n++; acc[n] = $h["accuracy"]; by[n] = $h["up_bytes_per_round"];
      fl[n] = $h["flags"]; if (acc[n] > best) best = acc[n] }
    END {
        for (j = 1; j <= n; j++) if (fl[j] == rec) r = j
        if (!r) { print "recommended flags not in tune.csv: " rec; exit 1 }
        if (100 * (best - acc[r]) > tol + 1e-9) {
            print "recommendation " acc[r] " not within " tol " of " best
            exit 1 }
        for (j = 1; j <= n; j++)
            if (100 * (best - acc[j]) <= tol + 1e-9 && by[j] < by[r]) {
                print "row " j " is cheaper and within tolerance"; exit 1 }
    }' "$out/tune.csv" || fl_fail "bad recommendation '$rec'"
fl_ok "recommended: $rec"

"$TUNE" --help | grep -q -- '--density' || fl_fail "--help"
"$TUNE" --version | grep -q '^fedcomp-tune ' || fl_fail "--version"
rc=0
"$TUNE" --values fp7 >/dev/null 2>&1 || rc=$?
[[ $rc -eq 2 ]] || fl_fail "a bad --values gave status $rc, not 2"
echo "PASS"
