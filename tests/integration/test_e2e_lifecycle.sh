#!/usr/bin/env bash
# The worker's life outside the happy path:
#  1. no coordinator: --hello-timeout gives up with exit status 3
#  2. SIGTERM: the worker says Bye (the coordinator sees it leave) and
#     exits 0 promptly
#  3. a worker crashes on receiving round 2's Task (--test-exit-at-round):
#     the round closes with the quorum, the others finish, exit 0
#  4. the coordinator is killed (SIGKILL) and restarted on the same
#     endpoint: the worker reconnects, sees the new epoch, joins again and
#     trains to the end
# asan: yes
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
fl_need

# ---- 1. nobody listening
dir=$FL_TMP/nobody
mkdir -p "$dir"
FL_EP=ipc://$dir/none.ipc
t0=$(date +%s%N)
fl_worker "$dir" 0 1 --train-limit 1000 --hello-timeout 1
rc=0
wait "${FL_WORKER_PIDS[0]}" || rc=$?
FL_WORKER_PIDS=()
ms=$((($(date +%s%N) - t0) / 1000000))
[[ $rc -eq 3 ]] || fl_fail "exit status $rc without a coordinator, want 3"
grep -q "no welcome from" "$dir/w0.log" || fl_fail "no 'no welcome' line"
[[ $ms -lt 15000 ]] || fl_fail "took $ms ms to give up"
fl_ok "no coordinator: exit 3 after $ms ms"

# ---- 2. SIGTERM -> Bye, exit 0
dir=$FL_TMP/sigterm
fl_coord "$dir" --min-devices 2 --rounds 1 --wait-timeout 60
fl_worker "$dir" 0 2 --train-limit 1000
wpid=${FL_WORKER_PIDS[0]}
fl_wait_log "$dir/w0.log" "joined .* as 'w0'"
fl_wait_log "$dir/coord.log" "worker 'w0' joined"
t0=$(date +%s%N)
kill -TERM "$wpid"
rc=0
wait "$wpid" || rc=$?
FL_WORKER_PIDS=()
ms=$((($(date +%s%N) - t0) / 1000000))
[[ $rc -eq 0 ]] || fl_fail "worker exit status $rc after SIGTERM"
[[ $ms -lt 3000 ]] || fl_fail "worker took $ms ms to stop"
grep -q "stopping on signal" "$dir/w0.log" || fl_fail "no 'stopping' line"
fl_wait_log "$dir/coord.log" "worker 'w0' left"
kill -TERM "$FL_COORD_PID"
{ wait "$FL_COORD_PID"; } 2>/dev/null
fl_ok "SIGTERM: bye seen by the coordinator, exit 0 in $ms ms"

# ---- 3. a worker crashes in round 2
dir=$FL_TMP/crash
fl_coord "$dir" --min-devices 3 --rounds 3 --round-timeout 3 --quorum 0.5 \
    --wait-timeout 60 --eval-limit 1000
fl_worker "$dir" 0 3 --train-limit 3000
fl_worker "$dir" 1 3 --train-limit 3000
fl_worker "$dir" 2 3 --train-limit 3000 --test-exit-at-round 2
crash_pid=${FL_WORKER_PIDS[2]}
FL_WORKER_PIDS=("${FL_WORKER_PIDS[@]:0:2}")
rc=0
wait "$crash_pid" || rc=$?
[[ $rc -eq 1 ]] || fl_fail "crashing worker exit status $rc, want 1"
fl_wait_all "$dir"
csv=$dir/report/rounds.csv
[[ $(($(wc -l <"$csv") - 1)) -eq 3 ]] || fl_fail "$csv: $(cat "$csv")"
[[ $(fl_col "$csv" reported | sed -n 2p) -eq 2 ]] ||
    fl_fail "round 2 should have 2 reports: $(cat "$csv")"
[[ $(fl_col "$csv" dropped | sed -n 2p) -eq 1 ]] ||
    fl_fail "round 2 should have 1 dropped: $(cat "$csv")"
fl_ok "crash in round 2: round closed with 2 of 3, training completed"

# ---- 4. coordinator restart on the same endpoint
dir=$FL_TMP/restart
FL_BIND=ipc://$dir/coord.ipc
mkdir -p "$dir"
fl_coord "$dir/a" --min-devices 2 --rounds 2 --wait-timeout 60
pid_a=$FL_COORD_PID
fl_worker "$dir" 0 2 --train-limit 2000
fl_wait_log "$dir/w0.log" "joined .* as 'w0'"
disown "$pid_a" # no "Killed" job notice
kill -KILL -- "-$pid_a"
for ((i = 0; i < 50; i++)); do # bounded: 5 s
    fl_running "$pid_a" || break
    sleep 0.1
done
fl_coord "$dir/b" --min-devices 2 --rounds 2 --wait-timeout 60 \
    --eval-limit 1000
fl_wait_log "$dir/w0.log" "coordinator restarted"
fl_worker "$dir" 1 2 --train-limit 2000
fl_wait_all "$dir/b"
[[ $(grep -c "joined .* as 'w0'" "$dir/w0.log") -eq 2 ]] ||
    fl_fail "w0 should have joined twice: $(cat "$dir/w0.log")"
grep -q "update of round 2 was used" "$dir/w0.log" ||
    fl_fail "w0 did not finish with the new coordinator"
[[ $(($(wc -l <"$dir/b/report/rounds.csv") - 1)) -eq 2 ]] ||
    fl_fail "restarted coordinator did not run 2 rounds"
fl_ok "coordinator restart: worker rejoined on the new epoch and finished"
echo "PASS"
