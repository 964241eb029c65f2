#!/usr/bin/env bash
# The coordinator dies and comes back from its checkpoint (--state-dir).
#  1. kill -9 while round 3 is open, on a TCP endpoint that was picked by
#     binding tcp://127.0.0.1:* and is reused by the restart. The report
#     files get a torn tail, as a crash in the middle of a write could
#     leave. The restarted coordinator resumes at round 3 attempt 1 with
#     model version 3, cuts the reports back to the checkpoint, the
#     workers reconnect by themselves (new epoch: Hello again), their
#     round-3 updates that the crash lost are restored into their
#     residuals, and training ends: every round 1..R exactly once in
#     rounds.csv, no torn line, rounds.jsonl agrees, every process exits 0.
#  2. SIGTERM while round 2 is open: the attempt is abandoned (its row
#     written), a checkpoint written, Bye sent, exit 0 at once; a worker
#     stopped by SIGTERM mid-round exits 0 too. Coordinator and workers are
#     restarted (the workers from their state dirs): the run resumes at
#     round 2 attempt 2 and completes, the summary counts every attempt.
# asan: yes
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source=tests/integration/lib_faults.sh
source "$(dirname "$0")/lib_faults.sh"
fl_need

# ---- 1. kill -9 mid-round, restart on the same TCP endpoint
ROUNDS=6
dir=$FL_TMP/kill
args=(--min-devices 3 --rounds $ROUNDS --round-timeout 6 --quorum 0.5
    --wait-timeout 60 --eval-limit 500 --density 0.02
    --state-dir "$dir/state" --report-dir "$dir/report")
fl_coord "$dir/a" "${args[@]}"
pid_a=$FL_COORD_PID
ep=$FL_EP
[[ $ep == tcp://127.0.0.1:* ]] || fl_fail "unexpected endpoint '$ep'"
for i in 0 1 2; do
    extra=()
    ((i == 2)) && extra=(--test-delay-update "3:3000")
    fl_worker "$dir" $i 3 --train-limit 1200 "${extra[@]}"
done
fl_wait_log "$dir/a/coord.log" "round 3 attempt 1 opened"
fl_wait_log "$dir/w2.log" "test: holding the update of round 3"
fl_kill9 "$pid_a"
grep -q "round 3/$ROUNDS" "$dir/a/coord.log" &&
    fl_fail "round 3 closed before the kill"
[[ -s $dir/state/checkpoint.bin ]] || fl_fail "no checkpoint written"
fl_ok "coordinator killed while round 3 was open"

# what a crash in the middle of writing rows could leave behind
printf '3,1,3,3,2' >>"$dir/report/rounds.csv"
printf '{"round":3,"attempt":1,"joi' >>"$dir/report/rounds.jsonl"
printf '3,w0,reported,200,1' >>"$dir/report/devices.csv"

FL_BIND=$ep fl_coord "$dir/b" "${args[@]}"
[[ $FL_EP == "$ep" ]] || fl_fail "restart bound '$FL_EP', not '$ep'"
fl_wait_all "$dir/b"

blog=$dir/b/coord.log
grep -q "resuming from '$dir/state/checkpoint.bin': round 3 attempt 1, model version 3" \
    "$blog" || fl_fail "no resume at round 3: $(grep -m3 -E 'resum|checkpoint' "$blog")"
grep -qE "removed [0-9]+ bytes of report rows written after the checkpoint" \
    "$blog" || fl_fail "torn report rows not removed"
grep -q "round 3 attempt 1 opened: .* model version 3" "$blog" ||
    fl_fail "round 3 did not run again on model version 3"
fl_check_reports "$dir/report" $ROUNDS
[[ $(($(wc -l <"$dir/report/rounds.csv") - 1)) -eq $ROUNDS ]] ||
    fl_fail "want $ROUNDS rows: $(cat "$dir/report/rounds.csv")"
grep -q "rounds *$ROUNDS *of $ROUNDS" "$dir/b/coord.out" ||
    fl_fail "summary: $(cat "$dir/b/coord.out")"
fl_ok "resumed at round 3, rounds 1..$ROUNDS exactly once, no torn line"

restored=0
for i in 0 1 2; do
    log=$dir/w$i.log
    grep -q "coordinator restarted" "$log" ||
        fl_fail "w$i did not notice the restart: $(tail -5 "$log")"
    [[ $(grep -c "joined .* as 'w$i'" "$log") -eq 2 ]] ||
        fl_fail "w$i should have joined twice"
    grep -q "update of round $ROUNDS was used" "$log" ||
        fl_fail "w$i did not finish with the new coordinator"
    grep -q "update of round 3 was not used: restored into the residual.*coordinator restart)" \
        "$log" && restored=$((restored + 1))
done
[[ $restored -ge 1 ]] ||
    fl_fail "no worker restored the round-3 update the crash lost"
fl_ok "workers reconnected by themselves; $restored restored their lost update"

# ---- 2. SIGTERM mid-round, then coordinator and workers restarted
ROUNDS=4
dir=$FL_TMP/term
args=(--min-devices 2 --rounds $ROUNDS --round-timeout 6 --quorum 1
    --wait-timeout 60 --eval-limit 500 --density 0.02
    --state-dir "$dir/state" --report-dir "$dir/report")
FL_BIND=ipc://$FL_TMP/term.ipc
mkdir -p "$dir"
fl_coord "$dir/a" "${args[@]}"
fl_worker "$dir" 0 2 --train-limit 1200
fl_worker "$dir" 1 2 --train-limit 1200 --test-delay-update "2:20000"
fl_wait_log "$dir/a/coord.log" "round 2 attempt 1 opened"
fl_wait_log "$dir/w1.log" "test: holding the update of round 2"
t0=$(date +%s%N)
kill -TERM "$FL_COORD_PID"
fl_wait "$FL_COORD_PID" "coordinator after SIGTERM ($dir/a/coord.log)"
ms=$((($(date +%s%N) - t0) / 1000000))
[[ $ms -lt 4000 ]] || fl_fail "the coordinator took $ms ms to stop"
kill -TERM "${FL_WORKER_PIDS[1]}"
fl_wait "${FL_WORKER_PIDS[0]}" "worker 0 ($dir/w0.log)"
fl_wait "${FL_WORKER_PIDS[1]}" "worker 1 ($dir/w1.log)"
FL_WORKER_PIDS=()
grep -q "stopping: round 2 attempt 1 abandoned" "$dir/a/coord.log" ||
    fl_fail "no abandon on SIGTERM"
grep -q "coordinator said bye: interrupted" "$dir/w0.log" ||
    fl_fail "w0 got no bye: $(tail -3 "$dir/w0.log")"
grep -q "update of round 2 was not used: restored into the residual.*never sent: stopping" \
    "$dir/w1.log" || fl_fail "w1 did not keep its unsent update: $(tail -4 "$dir/w1.log")"
csv=$dir/report/rounds.csv
[[ $(awk -F, 'NR > 1 { print $1 "/" $2 "/" ($NF != "") }' "$csv" |
    tr '\n' ' ') == "1/1/1 2/1/0 " ]] ||
    fl_fail "want round 1 committed, round 2 abandoned: $(cat "$csv")"
fl_ok "SIGTERM: round 2 abandoned, bye, exit 0 in $ms ms; worker stopped cleanly"

fl_coord "$dir/b" "${args[@]}"
mkdir -p "$dir/b"
for i in 0 1; do
    fl_worker "$dir/b" $i 2 --state-dir "$dir/state-w$i" --train-limit 1200
done
fl_wait_all "$dir/b"
grep -q "resuming from '$dir/state/checkpoint.bin': round 2 attempt 2, model version 2" \
    "$dir/b/coord.log" || fl_fail "no resume at round 2 attempt 2"
fl_check_reports "$dir/report" $ROUNDS
grep -q "rounds *$ROUNDS *of $ROUNDS (5 attempts)" "$dir/b/coord.out" ||
    fl_fail "summary: $(cat "$dir/b/coord.out")"
for i in 0 1; do
    log=$dir/b/w$i.log
    grep -q "loaded error-feedback state from '$dir/state-w$i/ef-state.bin'" \
        "$log" || fl_fail "w$i did not load its state"
    grep -q "update of round $ROUNDS was used" "$log" ||
        fl_fail "w$i did not finish: $(tail -3 "$log")"
done
fl_ok "resumed at round 2 attempt 2 with restarted workers; $ROUNDS rounds done"
echo "PASS"
