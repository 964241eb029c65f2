#!/usr/bin/env bash
# End to end with a slow device: worker 3 holds its round-2 update past the
# round deadline (--test-delay-update). The quorum lets round 2 close
# without it; the report shows it dropped in round 2 and its update late;
# the worker learns that the update was not used and restores it into its
# error-feedback residual; training still completes and every process
# exits 0.
# asan: yes
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
fl_need

N=4
ROUNDS=3
TIMEOUT_S=3     # round deadline
DELAY_MS=4500   # > deadline: the update arrives late
dir=$FL_TMP/drop

fl_coord "$dir" --rounds $ROUNDS --min-devices $N --eval-limit 1000 \
    --round-timeout $TIMEOUT_S --quorum 0.5 --wait-timeout 60 \
    --density 0.01 --values fp16 --codec zstd --error-feedback on
for ((i = 0; i < N; i++)); do
    extra=()
    [[ $i -eq 3 ]] && extra=(--test-delay-update "2:$DELAY_MS")
    fl_worker "$dir" $i $N --train-limit 4000 "${extra[@]}"
done
fl_wait_all "$dir"

csv=$dir/report/rounds.csv
dev=$dir/report/devices.csv
[[ -f $csv && -f $dev ]] || fl_fail "no report in $dir/report"

# every round committed, round 2 with 3 of 4
[[ $(($(wc -l <"$csv") - 1)) -eq $ROUNDS ]] ||
    fl_fail "$csv: want $ROUNDS rows: $(cat "$csv")"
row2() { fl_col "$csv" "$1" | sed -n 2p; }
[[ $(row2 selected) -eq 4 ]] || fl_fail "round 2 selected $(row2 selected)"
[[ $(row2 reported) -eq 3 ]] || fl_fail "round 2 reported $(row2 reported)"
[[ $(row2 dropped) -eq 1 ]] || fl_fail "round 2 dropped $(row2 dropped)"
fl_ok "round 2 closed at the deadline with 3 of 4 (1 dropped)"

# the device report: w3 dropped in round 2, and a late update counted
awk -F, '
    NR == 1 { for (i = 1; i <= NF; i++) h[$i] = i; next }
    $h["round"] == 2 && $h["device"] == "w3" && $h["status"] == "dropped" {
        found = 1 }
    END { exit !found }' "$dev" ||
    fl_fail "w3 not dropped in round 2: $(cat "$dev")"
late=$(fl_sum "$csv" late)
grep -q ',w3,late,' "$dev" || fl_fail "no late row for w3 in $dev"
[[ $late -ge 1 ]] || fl_fail "no late update counted in $csv"
fl_ok "w3 dropped in round 2, its late update counted ($late late)"

# the slow worker: held, sent, learned it was not used, restored it
w3=$dir/w3.log
grep -q "test: holding the update of round 2" "$w3" || fl_fail "w3 did not hold"
grep -q "sent update round 2:" "$w3" || fl_fail "w3 never sent round 2"
grep -q "update of round 2 was not used: restored into the residual" "$w3" ||
    fl_fail "w3 did not restore its round-2 update: $(grep round "$w3")"
[[ $(grep -c "update of round 2 was not used" "$w3") -eq 1 ]] ||
    fl_fail "w3 restored its round-2 update more than once"
! grep -q "update of round 2 was used" "$w3" || fl_fail "w3 thinks round 2 used"
fl_ok "w3 restored its unused update into the residual exactly once"

# the others' round-2 updates were used, and bytes still add up
used=0
for ((i = 0; i < N; i++)); do
    if [[ $i -lt 3 ]]; then
        grep -q "update of round 2 was used" "$dir/w$i.log" ||
            fl_fail "worker $i: round 2 not used"
    fi
    used=$((used + $(fl_used_bytes "$dir/w$i.log")))
done
report_up=$(fl_sum "$csv" up_wire_bytes)
[[ $used -eq $report_up ]] ||
    fl_fail "report up_wire_bytes $report_up != used bytes logged $used"
fl_ok "uplink bytes of used updates add up ($report_up)"
echo "PASS"
