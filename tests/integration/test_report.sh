#!/usr/bin/env bash
# test_report.sh - fedcomp-report end to end, on synthetic report
# directories in the coordinator's real format (rounds.csv, devices.csv)
# and a benchmark sweep (sweep.csv, sweep-fit.csv):
#   - every chart exists as valid SVG (well-formed XML) and PNG (magic
#     bytes, size, dimensions), with its .gp script
#   - the plotted data (.dat files) match the CSVs, recomputed here with awk
#     independently of the C code; the summary's numbers too
#   - clear errors and exit status 1 for a bad column count, a missing
#     column, a non-numeric value, an empty file, a missing directory, and
#     a missing gnuplot (which names the Debian package); exit status 2 for
#     bad command lines; --help, --version, --format, the default --out
# Needs gnuplot (gnuplot-nox); xmllint or python3 to check the SVG.
# asan: yes
source "$(dirname "$0")/lib.sh"

REPORT=$FL_BIN/fedcomp-report
[[ -x $REPORT ]] || fl_fail "$REPORT not built"
command -v gnuplot >/dev/null || fl_fail "gnuplot missing (apt-get install gnuplot-nox)"
T=$FL_TMP

ROUNDS_HEADER="round,attempt,joined,selected,reported,dropped,rejected,late,\
up_wire_bytes,up_dense_bytes,other_rx_bytes,down_wire_bytes,\
down_dense_bytes,up_ratio,density,values,codec,wall_s,cpu_s,agg_s,\
test_acc,test_loss"
DEVICES_HEADER="round,device,status,samples,up_bytes,down_bytes,k,density,\
values,codec,train_ms,encode_ms,upload_ms,loss,attempt,budget,load_ms,peak_rss_kb"

# The headers above must be the coordinator's (coordinator/coord_report.c).
src=$FL_ROOT/coordinator/coord_report.c
if [[ -f $src ]]; then
    real=$(awk '/coord_rounds_csv_header\[\] =/ { on = 1; next }
                on { s = s $0 } on && /;/ { exit }
                END { gsub(/[ ";]/, "", s); print s }' "$src")
    [[ $real == "$ROUNDS_HEADER" ]] ||
        fl_fail "rounds.csv header differs from coord_report.c: $real"
    real=$(awk '/coord_devices_csv_header\[\] =/ { on = 1; next }
                on { s = s $0 } on && /;/ { exit }
                END { gsub(/[ ";]/, "", s); print s }' "$src")
    [[ $real == "$DEVICES_HEADER" ]] ||
        fl_fail "devices.csv header differs from coord_report.c: $real"
fi

# ---------------------------------------------------------------- data
# run A: 5 rounds, round 3 abandoned once (empty accuracy) then retried
A=$T/topk-1pct
mkdir -p "$A"
{
    echo "$ROUNDS_HEADER"
    cat <<'EOF'
1,1,4,4,4,0,0,0,24000,1600000,120,1700000,1600000,66.6667,0.01,fp16,zstd:1,0.800000,0.100000,0.010000,0.512300,1.400000
2,1,4,4,3,1,0,0,18500,1200000,0,60000,1600000,64.8649,0.01,fp16,zstd:1,1.200000,0.090000,0.008000,0.634500,1.100000
3,1,4,4,1,2,1,0,6000,400000,5000,60000,1600000,66.6667,0.01,fp16,zstd:1,2.500000,0.050000,0.002000,,
3,2,4,4,4,0,0,1,23800,1600000,0,61000,1600000,67.2269,0.01,fp16,zstd:1,0.900000,0.110000,0.012000,0.701200,0.900000
4,1,4,4,4,0,0,0,23500,1600000,0,59000,1600000,68.0851,0.01,fp16,zstd:1,0.850000,0.100000,0.011000,0.745600,0.780000
5,1,4,4,4,0,0,0,23100,1600000,0,58000,1600000,69.2641,0.01,fp16,zstd:1,0.830000,0.100000,0.010000,0.768900,0.700000
EOF
} >"$A/rounds.csv"

# one line per cohort member and attempt: round attempt device status
plan="1 1 w1 reported;1 1 w2 reported;1 1 w3 reported;1 1 w10 reported
2 1 w1 reported;2 1 w2 reported;2 1 w3 dropped;2 1 w10 reported
3 1 w1 reported;3 1 w2 rejected;3 1 w3 dropped;3 1 w10 dropped
3 2 w1 reported;3 2 w2 reported;3 2 w3 reported;3 2 w10 reported
3 0 w3 late
4 1 w1 reported;4 1 w2 reported;4 1 w3 reported;4 1 w10 reported
5 1 w1 reported;5 1 w2 reported;5 1 w3 reported;5 1 w10 reported"
{
    echo "$DEVICES_HEADER"
    tr ';' '\n' <<<"$plan" | awk '{
        r = $1; a = ($2 == 0 ? "" : $2); d = $3; s = $4; n = substr(d, 2)
        if (s == "dropped")
            printf "%s,%s,%s,,0,15000,,,,,,,,,%s,,,\n", r, d, s, a
        else if (s == "rejected")
            printf "%s,%s,%s,2000,%d,15000,,,,,,,,,%s,,,\n", r, d, s, 4800 + n, a
        else
            printf "%s,%s,%s,2000,%d,15000,2352,0.0100023,fp16,zstd,%d,1," \
                   "%.3f,0.900000,%s,,3,40000\n", r, d, s, 5000 + 37 * n + 11 * r,
                   50 + n, 3 + n * 1.5 + r * 0.25 + (s == "late" ? 30 : 0), a
    }'
} >"$A/devices.csv"

# run B, to compare: dense uploads, no devices.csv
B=$T/dense
mkdir -p "$B"
{
    echo "$ROUNDS_HEADER"
    cat <<'EOF'
1,1,4,4,4,0,0,0,1600400,1600000,0,1700000,1600000,0.9998,1,fp32,none,1.500000,0.200000,0.050000,0.530000,1.300000
2,1,4,4,4,0,0,0,1600400,1600000,0,1700000,1600000,0.9998,1,fp32,none,1.500000,0.200000,0.050000,0.660000,1.000000
3,1,4,4,4,0,0,0,1600400,1600000,0,1700000,1600000,0.9998,1,fp32,none,1.500000,0.200000,0.050000,0.740000,0.800000
EOF
} >"$B/rounds.csv"

# a sweep as bench/analyze.py writes it
S=$T/sweep
mkdir -p "$S"
cat >"$S/sweep.csv" <<'EOF'
devices,rounds,up_bytes_per_round,up_bytes_per_device,down_bytes_per_round,down_bytes_per_device,coord_cpu_s_per_round,coord_cpu_ms_per_device,agg_s_per_round,round_wall_s,final_acc
4,3,23000.0,5750.0,60000.0,15000.0,0.05,12.5,0.004,0.8,0.7
16,3,92500.0,5781.25,240000.0,15000.0,0.19,11.875,0.016,1.1,0.72
64,3,371000.0,5796.875,960000.0,15000.0,0.77,12.03125,0.065,2.3,0.71
EOF
cat >"$S/sweep-fit.csv" <<'EOF'
metric,a,b,r2,p,r2_loglog
up_bytes_per_round,-166.66666666666,5799.107142857143,0.9999998,1.0025,0.99999
up_bytes_per_device,5755.208333333333,0.6975446428571429,0.81,0.0036,0.83
down_bytes_per_round,0.0,15000.0,1.0,1.0,1.0
down_bytes_per_device,15000.0,0.0,1.0,nan,nan
coord_cpu_s_per_round,0.0023809523809,0.011994047619047,0.99998,0.99,0.9999
coord_cpu_ms_per_device,12.2,-0.003,0.1,-0.01,0.1
agg_s_per_round,-0.00011904761904,0.0010178571428571,0.9999,1.0,0.9999
round_wall_s,0.7071428571428,0.02455357142857,0.9999,0.33,0.92
final_acc,0.709,0.00001,0.01,0.005,0.01
EOF

# --------------------------------------------------------------- helpers
# expect_fail STATUS NEEDLE CMD... : CMD exits STATUS and says NEEDLE on
# stderr
expect_fail() {
    local want=$1 needle=$2 rc=0
    shift 2
    "$@" >"$T/out.txt" 2>"$T/err.txt" || rc=$?
    [[ $rc -eq $want ]] || fl_fail "'$*' exited $rc, not $want: $(cat "$T/err.txt")"
    grep -qF -- "$needle" "$T/err.txt" ||
        fl_fail "'$*' did not say '$needle': $(cat "$T/err.txt")"
}

# check_svg FILE : well-formed XML with an <svg> root
check_svg() {
    grep -q '<svg' "$1" || fl_fail "$1 has no <svg> element"
    if command -v xmllint >/dev/null; then
        xmllint --noout "$1" 2>"$T/xml.txt" ||
            fl_fail "$1 is not well-formed XML: $(head -3 "$T/xml.txt")"
    elif command -v python3 >/dev/null; then
        python3 -c 'import sys, xml.dom.minidom as m
d = m.parse(sys.argv[1]); assert d.documentElement.tagName == "svg"' "$1" ||
            fl_fail "$1 is not well-formed XML"
    else
        fl_fail "need xmllint or python3 to check SVG files"
    fi
}

# check_png FILE W H : PNG magic, IHDR size W x H, more than 8 KiB
check_png() {
    local magic dims size
    magic=$(od -An -tx1 -N8 "$1" | tr -d ' \n')
    [[ $magic == 89504e470d0a1a0a ]] || fl_fail "$1 is not a PNG ($magic)"
    dims=$(od -An -tu1 -j16 -N8 "$1" | awk '{
        printf "%d %d", (($1 * 256 + $2) * 256 + $3) * 256 + $4,
                        (($5 * 256 + $6) * 256 + $7) * 256 + $8 }')
    [[ $dims == "$2 $3" ]] || fl_fail "$1 is $dims, expected $2 $3"
    size=$(stat -c %s "$1")
    [[ $size -gt 8192 ]] || fl_fail "$1 is only $size bytes"
}

# data FILE : the data lines of a .dat file
data() { grep -v '^#' "$1"; }

# same_numbers A B : files with the same fields, numbers equal to 1e-9
# relative ("?" only equals "?"); strings (quoted names) equal exactly
same_numbers() {
    paste -d'|' "$1" "$2" | awk -F'|' '
        { n = split($1, x, " "); m = split($2, y, " ")
          if (n != m) { print "line " NR ": " $1 " <> " $2; bad = 1; next }
          for (i = 1; i <= n; i++) {
              if (x[i] == y[i]) continue
              if (x[i] !~ /^-?[0-9.e+-]+$/ || y[i] !~ /^-?[0-9.e+-]+$/) {
                  print "line " NR " field " i ": " x[i] " <> " y[i]; bad = 1
                  continue }
              d = x[i] - y[i]; if (d < 0) d = -d
              s = x[i] < 0 ? -x[i] : x[i]
              if (d > 1e-9 * (s > 1 ? s : 1)) {
                  print "line " NR " field " i ": " x[i] " <> " y[i]; bad = 1 }
          }
        }
        END { exit bad }' || return 1
    [[ $(wc -l <"$1") -eq $(wc -l <"$2") ]]
}

# ------------------------------------------------------------- the run
OUT=$T/plots
"$REPORT" "$A" --compare "$B" --sweep "$S" --out "$OUT" \
    >"$T/stdout.txt" 2>"$T/stderr.txt" ||
    fl_fail "fedcomp-report failed: $(cat "$T/stderr.txt")"
[[ ! -s $T/stderr.txt ]] || fl_fail "unexpected messages: $(cat "$T/stderr.txt")"
fl_ok "report of two runs and a sweep"

for c in bytes:1000:600 accuracy:1000:600 sweep:1200:900 devices:1200:900; do
    IFS=: read -r name w h <<<"$c"
    [[ -s $OUT/$name.gp ]] || fl_fail "no $name.gp"
    check_svg "$OUT/$name.svg"
    check_png "$OUT/$name.png" "$w" "$h"
done
fl_ok "4 charts: well-formed SVG and PNG of the right size"

# summary.txt is what was printed (before the list of charts)
head -n "$(wc -l <"$OUT/summary.txt")" "$T/stdout.txt" | cmp -s - "$OUT/summary.txt" ||
    fl_fail "summary.txt differs from the printed summary"
charts="bytes.svg bytes.png accuracy.svg accuracy.png sweep.svg sweep.png"
charts="$charts devices.svg devices.png"
grep -qx "charts in $OUT: $charts" "$T/stdout.txt" ||
    fl_fail "list of charts: $(tail -1 "$T/stdout.txt")"

# ---- chart 1: bytes per round = rounds.csv summed over attempts
awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
    { r = $c["round"]; n[r]++
      uw[r] += $c["up_wire_bytes"]; ud[r] += $c["up_dense_bytes"]
      dw[r] += $c["down_wire_bytes"]; dd[r] += $c["down_dense_bytes"] }
    END { for (r in n) printf "%d %d %d %d %d %d\n", r, uw[r], ud[r], dw[r],
                              dd[r], n[r] }' "$A/rounds.csv" | sort -n >"$T/want"
data "$OUT/bytes.dat" >"$T/got"
diff "$T/want" "$T/got" >"$T/diff" || fl_fail "bytes.dat differs: $(cat "$T/diff")"
grep -q '^3 29800 2000000 121000 3200000 2$' "$T/got" || fl_fail "round 3 not summed"
fl_ok "bytes.dat matches rounds.csv ($(wc -l <"$T/got") rounds)"

# ---- chart 2: accuracy against cumulative uplink bytes, per run
acc_want() {
    awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
        { w += $c["up_wire_bytes"]; d += $c["up_dense_bytes"]
          if ($c["test_acc"] != "")
              printf "%d %d %d %s\n", $c["round"], w, d, $c["test_acc"] }' "$1"
}
acc_want "$A/rounds.csv" >"$T/want"
data "$OUT/accuracy-1.dat" >"$T/got"
same_numbers "$T/want" "$T/got" || fl_fail "accuracy-1.dat differs from $A"
grep -q '^3 72300 ' "$T/got" || fl_fail "abandoned attempt's bytes not counted"
acc_want "$B/rounds.csv" >"$T/want"
data "$OUT/accuracy-2.dat" >"$T/got"
same_numbers "$T/want" "$T/got" || fl_fail "accuracy-2.dat differs from $B"
grep -q "title 'topk-1pct'" "$OUT/accuracy.gp" || fl_fail "no legend for run A"
grep -q "title 'dense'" "$OUT/accuracy.gp" || fl_fail "no legend for run B"
grep -q "set logscale x 2" "$OUT/accuracy.gp" || fl_fail "accuracy x not log"
fl_ok "accuracy-N.dat match both runs' rounds.csv"

# ---- chart 3: the sweep and its fitted lines
metrics="up_bytes_per_round up_bytes_per_device down_bytes_per_round
down_bytes_per_device coord_cpu_s_per_round agg_s_per_round round_wall_s"
awk -F, -v m="devices $(echo $metrics)" '
    NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; k = split(m, col, " "); next }
    { s = ""; for (i = 1; i <= k; i++)
          s = s (i > 1 ? " " : "") sprintf("%.17g", $c[col[i]])
      print s }' "$S/sweep.csv" >"$T/want"
data "$OUT/sweep.dat" >"$T/got"
same_numbers "$T/want" "$T/got" || fl_fail "sweep.dat differs from sweep.csv"
grep -o '([-0-9.e+]* + [-0-9.e+]*\*x)' "$OUT/sweep.gp" | sort -u |
    tr -d '()*x+' >"$T/fits"
n_fits=0
for m in $metrics; do
    line=$(grep "^$m," "$S/sweep-fit.csv") || continue
    IFS=, read -r _ a b _ <<<"$line"
    awk -v a="$a" -v b="$b" '
        function close_to(x, y) { d = x - y; if (d < 0) d = -d
            return d <= 1e-8 * (y < 0 ? -y : y) + 1e-12 }
        close_to($1, a) && close_to($2, b) { found = 1 }
        END { exit !found }' "$T/fits" || fl_fail "no fitted line for $m ($a + $b*N)"
    n_fits=$((n_fits + 1))
done
[[ $n_fits -eq 7 ]] || fl_fail "checked $n_fits fits, expected 7"
fl_ok "sweep.dat matches sweep.csv, 7 fitted lines from sweep-fit.csv"

# ---- chart 4: per-device aggregation of devices.csv
awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
    { d = $c["device"]; rows[d]++; st[d, $c["status"]]++
      u = $c["up_bytes"] + 0; if (u > 0) { up[d]++; ut[d] += u }
      ms = $c["upload_ms"]
      if (ms != "") { ms += 0
          if (!(d in tm) || ms < mn[d]) mn[d] = ms
          if (!(d in tm) || ms > mx[d]) mx[d] = ms
          tm[d]++; ts[d] += ms } }
    END { for (d in rows)
        printf "%s %d %d %d %d %d %d %.6f %.6f %.6f %.6f\n", d, rows[d],
            st[d, "reported"], st[d, "dropped"], st[d, "rejected"],
            st[d, "late"], up[d], ut[d] / up[d], ts[d] / tm[d], mn[d], mx[d] }' \
    "$A/devices.csv" | sort >"$T/want"
data "$OUT/devices.dat" | awk '{ gsub(/"/, "", $2)
    printf "%s %d %d %d %d %d %d %.6f %.6f %.6f %.6f\n", $2, $3, $4, $5, $6,
        $7, $8, $9, $10, $11, $12 }' | sort >"$T/got"
diff "$T/want" "$T/got" >"$T/diff" || fl_fail "devices.dat differs: $(cat "$T/diff")"
order=$(data "$OUT/devices.dat" | awk '{ printf "%s ", $2 }')
[[ $order == '"w1" "w2" "w3" "w10" ' ]] || fl_fail "device order: $order"
# the rank columns sort the devices by mean upload size and time
for k in 13:9 14:10; do
    IFS=: read -r rk val <<<"$k"
    data "$OUT/devices.dat" | sort -k"$rk,$rk"n | awk -v r="$rk" -v v="$val" '
        $r != NR - 1 || (NR > 1 && $v < last) { bad = 1 } { last = $v }
        END { exit bad }' || fl_fail "rank column $rk does not sort column $val"
done
want_rows=$(awk -F, 'NR > 1 && ($5 > 0 || $13 != "")' "$A/devices.csv" | wc -l)
[[ $(data "$OUT/devices-rounds.dat" | wc -l) -eq $want_rows ]] ||
    fl_fail "devices-rounds.dat should have $want_rows uploads"
fl_ok "devices.dat matches devices.csv (4 devices, $want_rows uploads)"

# ---- the summary's numbers
S_TXT=$OUT/summary.txt
up_total=$(awk -F, 'NR > 1 { s += $9 } END { printf "%d", s }' "$A/rounds.csv")
grep -q "uplink wire .*($up_total bytes)" "$S_TXT" || fl_fail "uplink total != $up_total"
grep -q "rounds  *5  committed (6 attempts, 1 abandoned)" "$S_TXT" ||
    fl_fail "rounds line: $(grep rounds "$S_TXT")"
grep -q "final accuracy  *0.7689  (loss 0.7000, round 5)" "$S_TXT" ||
    fl_fail "final accuracy line: $(grep 'final acc' "$S_TXT")"
ratio=$(awk -F, 'NR > 1 { w += $9; d += $10 } END { printf "%.1fx", d / w }' \
    "$A/rounds.csv")
grep -q "uplink ratio  *$ratio" "$S_TXT" || fl_fail "uplink ratio != $ratio"
grep -q "devices  *4  seen; device-rounds: 20 reported, 3 dropped, 1 rejected, 1 late" \
    "$S_TXT" || fl_fail "devices line: $(grep 'devices ' "$S_TXT")"
fast=$(sort -k9,9g "$T/want" | head -1 | cut -d' ' -f1)
slow=$(sort -k9,9g "$T/want" | tail -1 | cut -d' ' -f1)
grep -q "fastest upload  *$fast  mean" "$S_TXT" || fl_fail "fastest is not $fast"
grep -q "slowest upload  *$slow  mean" "$S_TXT" || fl_fail "slowest is not $slow"
grep -q "^  dense  *3 " "$S_TXT" || fl_fail "no comparison row for run B"
fl_ok "summary: totals, final accuracy, devices, fastest $fast, slowest $slow"

# ------------------------------------------------- options and defaults
# default --out is REPORT_DIR/plots; a sweep.csv in REPORT_DIR is found;
# --format svg writes no PNG
C=$T/copy
mkdir -p "$C"
cp "$A/rounds.csv" "$A/devices.csv" "$S/sweep.csv" "$C/"
"$REPORT" "$C" --format svg >/dev/null 2>"$T/err.txt" ||
    fl_fail "--format svg failed: $(cat "$T/err.txt")"
for name in bytes accuracy sweep devices; do
    check_svg "$C/plots/$name.svg"
    [[ ! -e $C/plots/$name.png ]] || fl_fail "--format svg wrote $name.png"
done
grep -q '(.* + .*\*x)' "$C/plots/sweep.gp" && fl_fail "fit lines without sweep-fit.csv"
fl_ok "default output dir, sweep found next to the report, --format svg"

# two runs with the same base name get their paths as legends
mkdir -p "$T/x/run" "$T/y/run"
cp "$A/rounds.csv" "$T/x/run/"
cp "$B/rounds.csv" "$T/y/run/"
"$REPORT" "$T/x/run" --compare "$T/y/run" --out "$T/xy" --format png \
    >/dev/null 2>"$T/err.txt" || fl_fail "same-name runs: $(cat "$T/err.txt")"
grep -q "title 'x/run'" "$T/xy/accuracy.gp" &&
    grep -q "title 'y/run'" "$T/xy/accuracy.gp" ||
    fl_fail "runs with the same name are not told apart"
grep -q "no devices chart" "$T/err.txt" || fl_fail "no note about the devices chart"
check_png "$T/xy/accuracy.png" 1000 600
fl_ok "legends tell same-named runs apart; missing devices.csv is a note"

# ------------------------------------------------------------- errors
bad() { # NAME : a copy of run A to break
    rm -rf "${T:?}/$1"
    mkdir -p "$T/$1"
    cp "$A/rounds.csv" "$A/devices.csv" "$T/$1/"
    echo "$T/$1"
}
D=$(bad short)
echo "6,1,4,4,4" >>"$D/rounds.csv"
expect_fail 1 "$D/rounds.csv' line 8: expected 22 columns, got 5" "$REPORT" "$D"
D=$(bad nocol)
sed -i '1s/test_acc/accuracy/' "$D/rounds.csv"
expect_fail 1 "$D/rounds.csv': no column 'test_acc'" "$REPORT" "$D"
D=$(bad nan)
sed -i '4s/^3,1,4,4,1,2,1,0,6000,/3,1,4,4,1,2,1,0,6k,/' "$D/rounds.csv"
expect_fail 1 "$D/rounds.csv' line 4, column 'up_wire_bytes': '6k' is not a number" \
    "$REPORT" "$D"
D=$(bad devcols)
sed -i '5s/,15000,/,/' "$D/devices.csv"
expect_fail 1 "$D/devices.csv' line 5: expected 18 columns, got 17" "$REPORT" "$D"
D=$(bad empty)
: >"$D/rounds.csv"
expect_fail 1 "$D/rounds.csv' is empty (no header line)" "$REPORT" "$D"
expect_fail 1 "$T/nowhere/rounds.csv' does not exist" "$REPORT" "$T/nowhere"
expect_fail 1 "$T/nowhere/sweep.csv' does not exist" "$REPORT" "$A" --sweep "$T/nowhere" \
    --out "$T/o2"
fl_ok "bad column count, missing column, non-numeric, empty file, missing dirs: exit 1"

# gnuplot missing: a clear message naming the package; data, scripts and
# summary are still written
G=$T/nognuplot
expect_fail 1 "apt-get install gnuplot-nox" env PATH=/nonexistent "$REPORT" "$A" \
    --out "$G"
for f in bytes.dat bytes.gp accuracy-1.dat devices.dat summary.txt; do
    [[ -s $G/$f ]] || fl_fail "without gnuplot, $f was not written"
done
[[ ! -e $G/bytes.svg ]] || fl_fail "bytes.svg without gnuplot?"
fl_ok "missing gnuplot: exit 1, names gnuplot-nox, data and scripts kept"

# command line
expect_fail 2 "missing REPORT_DIR" "$REPORT"
expect_fail 2 "unknown option '--bogus'" "$REPORT" "$A" --bogus
expect_fail 2 "--format 'jpg'" "$REPORT" "$A" --format jpg
expect_fail 2 "--compare needs at least one report directory" "$REPORT" "$A" --compare
expect_fail 2 "option '--out' needs a value" "$REPORT" "$A" --out
expect_fail 2 "unexpected argument" "$REPORT" "$A" "$B"
"$REPORT" --help >"$T/help.txt" || fl_fail "--help failed"
grep -q "^usage: fedcomp-report REPORT_DIR" "$T/help.txt" || fl_fail "--help text"
[[ $("$REPORT" --version) == "fedcomp-report 0.1.0" ]] || fl_fail "--version"
fl_ok "command line: exit 2 on misuse, --help, --version"

echo "test_report: all checks passed"
