#!/usr/bin/env bash
# Uplink byte budget (--uplink-budget, docs/tuning.md): a coordinator and 4
# workers, 3 rounds, first unconstrained, then with a budget of 60% of the
# bytes the unconstrained run sent in its smallest round.
#
# Checks, from the reports of the constrained run: every device row has
# the cap the coordinator sent (budget / cohort), no device's up_bytes is
# over its budget, no round's up_wire_bytes is over the budget, nothing was
# rejected or counted over budget (rounds.jsonl), and every k is below the
# unconstrained run's smallest k.
# asan: yes
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
fl_need

N=4
ROUNDS=3

run_fl() {
    local dir=$1 i
    shift
    fl_coord "$dir" --rounds $ROUNDS --min-devices $N --eval-limit 1000 \
        --hidden 64 --density 0.05 --values fp16 --codec zstd:1 \
        --round-timeout 60 --wait-timeout 60 "$@"
    for ((i = 0; i < N; i++)); do
        fl_worker "$dir" $i $N --train-limit 4000
    done
    fl_wait_all "$dir"
    local rows
    rows=$(($(wc -l <"$dir/report/rounds.csv") - 1))
    [[ $rows -eq $ROUNDS ]] || fl_fail "$dir: $rows rounds, want $ROUNDS"
    [[ $(fl_col "$dir/report/rounds.csv" reported | sort -u) == "$N" ]] ||
        fl_fail "$dir: not every device reported in every round"
}

free_dir=$FL_TMP/free
run_fl "$free_dir"
min_round=$(fl_col "$free_dir/report/rounds.csv" up_wire_bytes | sort -n |
    head -1)
free_k=$(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) h[$i] = i; next }
    $h["status"] == "reported" && (m == "" || $h["k"] < m) { m = $h["k"] }
    END { print m }' "$free_dir/report/devices.csv")
# an unconstrained run sends no cap: the budget column is empty
[[ -z $(fl_col "$free_dir/report/devices.csv" budget | sort -u) ]] ||
    fl_fail "budget column not empty without --uplink-budget"
budget=$((min_round * 6 / 10))
cap=$((budget / N))
fl_ok "unconstrained: smallest round $min_round bytes, smallest k $free_k;" \
    "budget $budget (cap $cap per device)"

dir=$FL_TMP/budget
run_fl "$dir" --uplink-budget "$budget"
dev=$dir/report/devices.csv
awk -F, -v cap="$cap" -v kmax="$free_k" '
    NR == 1 { for (i = 1; i <= NF; i++) h[$i] = i; next }
    $h["budget"] != cap { printf "row %d: budget %s, want %s\n", NR,
                          $h["budget"], cap; bad = 1 }
    $h["up_bytes"] + 0 > $h["budget"] + 0 {
        printf "row %d: up_bytes %s over budget %s\n", NR, $h["up_bytes"],
               $h["budget"]; bad = 1 }
    $h["status"] == "reported" && $h["k"] + 0 >= kmax + 0 {
        printf "row %d: k %s not below the unconstrained %s\n", NR,
               $h["k"], kmax; bad = 1 }
    END { exit bad }' "$dev" || fl_fail "device rows break the budget"
awk -F, -v b="$budget" '
    NR == 1 { for (i = 1; i <= NF; i++) h[$i] = i; next }
    $h["up_wire_bytes"] + 0 > b + 0 || $h["up_wire_bytes"] + 0 == 0 { bad = 1 }
    END { exit bad }' "$dir/report/rounds.csv" ||
    fl_fail "a round's up_wire_bytes is over the budget $budget (or 0)"
[[ $(grep -c "\"uplink_budget\":$budget,\"over_budget\":0" \
    "$dir/report/rounds.jsonl") -eq $ROUNDS ]] ||
    fl_fail "rounds.jsonl lacks uplink_budget $budget / over_budget 0"
acc=$(fl_col "$dir/report/rounds.csv" test_acc | tail -1)
fl_float_gt "$acc" 0.3 || fl_fail "final accuracy $acc <= 0.3 under budget"
fl_ok "budget $budget held: $(fl_col "$dir/report/rounds.csv" up_wire_bytes |
    tr '\n' ' ')bytes per round, accuracy $acc"
echo "PASS"
