#!/usr/bin/env bash
# End to end: a coordinator and 4 workers as separate processes on
# loopback, 3 rounds, twice: compressed (top-k 1%, fp16, zstd, error
# feedback) and dense (density 1, fp32, no codec).
#
# Checks: 3 committed report rows with consistent columns; the uplink bytes
# in the report equal, exactly, the bytes the workers logged as sent for
# updates they learned were used (the last round's fate comes with Bye);
# per-device bytes agree too; accuracy above chance; every process exits 0;
# the dense run needs >= 50x the uplink bytes of the compressed one.
# asan: yes
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
fl_need

N=4
ROUNDS=3
DIM=235146 # 784-256-128-10

# run_fl DIR COORD_ARGS... : one federated run of N workers.
run_fl() {
    local dir=$1 i
    shift
    fl_coord "$dir" --rounds $ROUNDS --min-devices $N --eval-limit 2000 \
        --round-timeout 60 --wait-timeout 60 "$@"
    for ((i = 0; i < N; i++)); do
        fl_worker "$dir" $i $N --train-limit 8000
    done
    fl_wait_all "$dir"
}

# check_run DIR : assertions common to both runs; sets RUN_UP (uplink
# bytes) and RUN_ACC (final accuracy).
check_run() {
    local dir=$1 csv=$1/report/rounds.csv dev=$1/report/devices.csv
    local rows i
    [[ -f $csv ]] || fl_fail "$csv missing"
    rows=$(($(wc -l <"$csv") - 1))
    [[ $rows -eq $ROUNDS ]] || fl_fail "$csv has $rows rows, want $ROUNDS"
    [[ $(fl_col "$csv" round | tr '\n' ' ') == "1 2 3 " ]] ||
        fl_fail "rounds are not 1 2 3 in $csv"
    for col in selected reported; do
        [[ $(fl_col "$csv" $col | sort -u) == "$N" ]] ||
            fl_fail "column $col is not $N in every row of $csv"
    done
    for col in dropped rejected late; do
        [[ $(fl_sum "$csv" $col) -eq 0 ]] || fl_fail "$col not 0 in $csv"
    done
    # up_dense_bytes = reported * dimension * 4 in every row
    awk -F, -v dim=$DIM '
        NR == 1 { for (i = 1; i <= NF; i++) h[$i] = i; next }
        $h["up_dense_bytes"] != $h["reported"] * dim * 4 { bad = 1 }
        $h["up_wire_bytes"] <= 0 || $h["down_wire_bytes"] <= 0 { bad = 1 }
        END { exit bad }' "$csv" || fl_fail "inconsistent byte columns in $csv"

    # report bytes == bytes the workers sent for updates that were used
    local report_up used=0 b
    report_up=$(fl_sum "$csv" up_wire_bytes)
    for ((i = 0; i < N; i++)); do
        grep -q "update of round $ROUNDS was used" "$dir/w$i.log" ||
            fl_fail "worker $i did not learn that its last update was used"
        b=$(fl_used_bytes "$dir/w$i.log")
        used=$((used + b))
        # the device report has the same bytes for this worker
        local dev_b
        dev_b=$(fl_reported_up_bytes "$dev" "w$i")
        [[ $dev_b -eq $b ]] ||
            fl_fail "devices.csv has $dev_b up bytes for w$i, it logged $b"
    done
    [[ $report_up -eq $used ]] ||
        fl_fail "report up_wire_bytes $report_up != workers' used bytes $used"
    # the workers' own cost figures reach devices.csv: a load time and a
    # peak RSS (at least 1 MiB) on every reported row
    awk -F, '
        NR == 1 { for (j = 1; j <= NF; j++) h[$j] = j; next }
        $h["status"] == "reported" && ($h["load_ms"] !~ /^[0-9]+$/ ||
            $h["peak_rss_kb"] !~ /^[0-9]+$/ || $h["peak_rss_kb"] < 1024) {
            bad = 1 }
        END { exit bad }' "$dev" ||
        fl_fail "a reported row of $dev lacks load_ms or peak_rss_kb"

    # learning happened
    local acc
    acc=$(fl_col "$csv" test_acc | tail -1)
    fl_float_gt "$acc" 0.4 || fl_fail "final accuracy $acc <= 0.4"
    grep -q "summary" "$dir/coord.out" || fl_fail "no summary in coord.out"
    RUN_UP=$report_up
    RUN_ACC=$acc
}

run_fl "$FL_TMP/sparse" --density 0.01 --values fp16 --codec zstd \
    --error-feedback on
check_run "$FL_TMP/sparse"
sparse_up=$RUN_UP
sparse_acc=$RUN_ACC
fl_ok "compressed run: $sparse_up uplink bytes, accuracy $sparse_acc"

run_fl "$FL_TMP/dense" --density 1 --values fp32 --codec none
check_run "$FL_TMP/dense"
dense_up=$RUN_UP
dense_acc=$RUN_ACC
fl_ok "dense run: $dense_up uplink bytes, accuracy $dense_acc"

# the dense update is dimension * 4 bytes of payload per device and round
[[ $dense_up -ge $((N * ROUNDS * DIM * 4)) ]] ||
    fl_fail "dense uplink $dense_up < $N * $ROUNDS * $DIM * 4"
ratio=$(awk -v a="$dense_up" -v b="$sparse_up" 'BEGIN { printf "%.1f", a / b }')
fl_float_gt "$ratio" 49.999 ||
    fl_fail "dense/compressed uplink ratio $ratio < 50"
fl_ok "dense/compressed uplink ratio $ratio"
echo "PASS"
