#!/usr/bin/env bash
# Workers die mid-round (kill -9) and come back from their state dirs.
#  1. 6 workers; w4 and w5 are killed while round 3 is open (they hold
#     their update, so the round cannot close before the kill). Round 3
#     closes at the deadline with the quorum (4 of 6), the 2 drops are in
#     rounds.csv and devices.csv; round 4 goes on (its Tasks to the dead
#     peers fail: dropped too); w4 and w5 are restarted with the same
#     state dirs, load their error-feedback state, rejoin, and their
#     updates are used in later rounds. Every round is committed exactly
#     once, no report line is torn or duplicated, every process exits 0.
#  2. A worker that hangs (SIGSTOP: its connection stays open, nothing
#     answers) is dropped at each round's deadline; the ZMTP heartbeat
#     closes its connection, the next Task to it fails and unbinds it, and
#     the coordinator waits for devices; after SIGCONT the worker
#     reconnects, joins again and training completes.
#  3. A round that cannot reach its quorum is retried with a fresh cohort
#     and, after --max-attempts, the coordinator says Bye to everyone and
#     exits 4; the workers exit 0.
# asan: yes
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source=tests/integration/lib_faults.sh
source "$(dirname "$0")/lib_faults.sh"
fl_need

# ---- 1. kill -9 of a third of the workers
N=6
ROUNDS=6
dir=$FL_TMP/kill
fl_coord "$dir" --min-devices $N --rounds $ROUNDS --round-timeout 4 \
    --quorum 0.5 --wait-timeout 60 --eval-limit 500 --density 0.02
for ((i = 0; i < N; i++)); do
    extra=()
    ((i >= 4)) && extra=(--test-delay-update "3:60000")
    fl_worker "$dir" $i $N --train-limit 1200 "${extra[@]}"
done
victims=("${FL_WORKER_PIDS[@]:4:2}")
fl_wait_log "$dir/coord.log" "round 3 attempt 1 opened"
fl_wait_log "$dir/w4.log" "test: holding the update of round 3"
fl_wait_log "$dir/w5.log" "test: holding the update of round 3"
for pid in "${victims[@]}"; do
    fl_kill9 "$pid"
    fl_drop_worker "$pid"
done
grep -q "round 3/$ROUNDS" "$dir/coord.log" &&
    fl_fail "round 3 closed before the workers were killed"
fl_ok "w4 and w5 killed while round 3 was open"

# round 3 closes at its deadline; then the dead come back
fl_wait_log "$dir/coord.log" "round 4 attempt 1 opened"
mkdir -p "$dir/again"
for i in 4 5; do
    fl_worker "$dir/again" $i $N --state-dir "$dir/state-w$i" \
        --train-limit 1200
done
fl_wait_all "$dir"

csv=$dir/report/rounds.csv
dev=$dir/report/devices.csv
fl_check_reports "$dir/report" $ROUNDS
[[ $(fl_row "$csv" 3 reported) -eq 4 && $(fl_row "$csv" 3 dropped) -eq 2 ]] ||
    fl_fail "round 3 should have 4 reports and 2 drops: $(cat "$csv")"
[[ $(fl_row "$csv" 4 dropped) -eq 2 ]] ||
    fl_fail "round 4 should drop the 2 dead peers: $(cat "$csv")"
for w in w4 w5; do
    grep -qE "^3,$w,dropped," "$dev" ||
        fl_fail "$w not dropped in round 3: $(grep "^3," "$dev")"
done
fl_ok "round 3 closed at the deadline with 4 of 6, drops reported"

for i in 4 5; do
    log=$dir/again/w$i.log
    grep -q "loaded error-feedback state from '$dir/state-w$i/ef-state.bin'" \
        "$log" || fl_fail "w$i did not load its state: $(head -20 "$log")"
    grep -q "update of round [5-9] was used" "$log" ||
        fl_fail "w$i was not used after rejoining: $(grep round "$log")"
    [[ $(awk -F, -v w="w$i" '$2 == w && $3 == "reported" && $1 >= 5' \
        "$dev" | wc -l) -ge 1 ]] || fl_fail "w$i never reported again"
done
grep -q "worker 'w4' joined again" "$dir/coord.log" ||
    fl_fail "the coordinator did not see w4 come back"
# the state files are whole and current
for i in 0 4; do
    [[ -s $dir/state-w$i/ef-state.bin ]] || fl_fail "no state file for w$i"
    [[ $(head -c 8 "$dir/state-w$i/ef-state.bin") == FCWSTATE ]] ||
        fl_fail "state file of w$i has no magic"
done
[[ -z $(find "$dir"/state-w* -name '*.tmp.*') ]] ||
    fl_fail "temporary state files left behind"
fl_ok "w4 and w5 restarted from their state dirs, rejoined and were used"

# ---- 2. a hung worker: dropped at the deadlines, cut off by heartbeats
ROUNDS=8
dir=$FL_TMP/hang
fl_coord "$dir" --min-devices 3 --rounds $ROUNDS --round-timeout 3 \
    --quorum 0.5 --wait-timeout 60 --eval-limit 500 --log-level debug
for i in 0 1 2; do
    extra=()
    ((i == 2)) && extra=(--test-delay-update "2:1000")
    fl_worker "$dir" $i 3 --train-limit 1200 "${extra[@]}"
done
hung=${FL_WORKER_PIDS[2]}
fl_wait_log "$dir/w2.log" "test: holding the update of round 2"
kill -STOP -- "-$hung"
t0=$(date +%s%N)
before=$(grep -c "peer disconnected" "$dir/coord.log")
# the heartbeat (10 s without an answer) closes the connection
fl_wait_log "$dir/coord.log" "peer disconnected" $((before + 1))
ms=$((($(date +%s%N) - t0) / 1000000))
fl_wait_log "$dir/coord.log" "cannot send task to worker 'w2'"
kill -CONT -- "-$hung"
fl_wait_all "$dir"
fl_check_reports "$dir/report" $ROUNDS
grep -qE "^2,w2,dropped," "$dir/report/devices.csv" ||
    fl_fail "w2 not dropped in round 2: $(cat "$dir/report/devices.csv")"
grep -q "worker 'w2' joined again" "$dir/coord.log" ||
    fl_fail "w2 did not come back"
# its messages queued across the reconnection are refused one by one; they
# must not each bring a join (and a re-sent Task, and a duplicate Update)
joins=$(grep -c "worker 'w2' joined again" "$dir/coord.log")
((joins <= 2)) || fl_fail "w2 joined again $joins times after SIGCONT"
! grep -q "worker 'w2' is ignored" "$dir/coord.log" ||
    fl_fail "w2 ignored: $(grep "worker 'w2' is ignored" "$dir/coord.log")"
grep -q "update of round $ROUNDS was used" "$dir/w2.log" ||
    fl_fail "w2 did not finish: $(tail -5 "$dir/w2.log")"
fl_ok "hung worker dropped, disconnected by heartbeat after $ms ms, rejoined"

# ---- 3. no quorum: retried, then --max-attempts ends the run
dir=$FL_TMP/attempts
fl_coord "$dir" --min-devices 2 --rounds 3 --round-timeout 1.5 --quorum 1 \
    --max-attempts 2 --wait-timeout 60 --eval-limit 500
fl_worker "$dir" 0 2 --train-limit 1200
# w1 holds round 1's update past both attempts' deadlines
fl_worker "$dir" 1 2 --train-limit 1200 --test-delay-update "1:4000"
rc=0
wait "$FL_COORD_PID" || rc=$?
[[ $rc -eq 4 ]] || fl_fail "coordinator exit status $rc, want 4: $(tail "$dir/coord.log")"
for i in 0 1; do
    fl_wait "${FL_WORKER_PIDS[$i]}" "worker $i ($dir/w$i.log)"
    grep -q "coordinator said bye: too many failed attempts" "$dir/w$i.log" ||
        fl_fail "w$i got no bye: $(tail -3 "$dir/w$i.log")"
done
FL_WORKER_PIDS=()
csv=$dir/report/rounds.csv
[[ $(awk -F, 'NR > 1 && $1 == 1' "$csv" | wc -l) -eq 2 ]] ||
    fl_fail "want 2 attempts of round 1: $(cat "$csv")"
[[ $(awk -F, 'NR > 1 && $NF != ""' "$csv" | wc -l) -eq 0 ]] ||
    fl_fail "nothing may be committed: $(cat "$csv")"
grep -q "round 1 failed 2 attempts: giving up" "$dir/coord.log" ||
    fl_fail "no give-up line"
grep -q "rounds *0 *of 3 (2 attempts)" "$dir/coord.out" ||
    fl_fail "summary: $(cat "$dir/coord.out")"
fl_ok "no quorum: 2 attempts, bye to all, exit 4"
echo "PASS"
