#!/usr/bin/env bash
# fedcomp-swarm against a real coordinator (small model, --hidden 16):
#  1. 50 devices in 2 processes, 2 rounds: the coordinator completes, the
#     swarm reports every device joined and every round answered, both
#     reports have 2 rounds with 50 updates each, and the update bytes the
#     swarm sent equal the bytes the coordinator accepted.
#  2. 20 devices of which about 20% vanish per Task (socket closed without
#     answering, then back with a new socket and the same id): rounds
#     close at the deadline on quorum, the coordinator drops at least the
#     devices that vanished, the vanished ones come back, and the swarm
#     still finds every Task it did not vanish on answered.
#  3. fedcomp-router-baseline with 30 devices and 3 rounds: every device
#     gets its Bye, the router counts every Hello and Update.
#     Its default geometry (1 MiB chunks, 64 KiB inline) sends the
#     20,000-parameter model (67 KB compressed) as one announced chunk:
#     every download completes and every chunk is credited.
#  4. Connections lost: a router serves for 2 s and exits, a second one
#     binds the same ipc:// endpoint; every device sees its connection
#     drop and come back, says Hello again, and finishes with the second.
#  5. Chunked transfers with the coordinator (docs/protocol.md
#     "Transfers"): --chunk-bytes 4096, window 2, inline 1 KiB, 8 chunks in
#     flight, 2 upload slots, density 0.5 so that updates (~11 KB) are
#     chunked too. Every Task's model comes in chunks and is taken in
#     (each chunk credited, checked and compared with the process's
#     reassembly, which decodes), every update is announced, granted and
#     sent in chunks; the coordinator's accepted update bytes equal the
#     swarm's (announcement + chunk frames).
# Every process runs under a watchdog; no sleeps as synchronisation.
# asan: yes
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
fl_need
[[ -x $FL_BIN/fedcomp-swarm ]] || fl_fail "$FL_BIN/fedcomp-swarm not built"

# fl_swarm DIR ARGS... : run the swarm against FL_EP in the foreground
# (under the watchdog); report in DIR/swarm.json, exit code in SWARM_RC.
fl_swarm() {
    local dir=$1 pid
    shift
    SWARM_RC=0
    timeout -s TERM "$FL_WATCHDOG" "$FL_BIN/fedcomp-swarm" \
        --connect "$FL_EP" --report "$dir/swarm.json" --max-seconds 50 "$@" \
        >"$dir/swarm.out" 2>"$dir/swarm.log" &
    pid=$!
    FL_PIDS+=("$pid")
    wait "$pid" || SWARM_RC=$?
}

# jnum FILE EXPR : a number from a JSON file (jq)
jnum() { jq -r "$2" "$1" 2>/dev/null; }

# ---- 1. 50 devices, 2 processes, 2 rounds
N=50
dir=$FL_TMP/swarm
fl_coord "$dir" --hidden 16 --rounds 2 --min-devices $N --fraction 1 \
    --quorum 1 --eval-limit 200 --round-timeout 30 --wait-timeout 40 \
    --density 0.01 --values fp16 --codec zstd:1
fl_swarm "$dir" --devices $N --procs 2
fl_wait "$FL_COORD_PID" "coordinator ($dir/coord.log)"
[[ $SWARM_RC -eq 0 ]] ||
    fl_fail "swarm exited $SWARM_RC: $(cat "$dir/swarm.out" "$dir/swarm.log")"
grep -q "^verdict: all $N devices joined; every round got its answers$" \
    "$dir/swarm.out" || fl_fail "verdict: $(cat "$dir/swarm.out")"
fl_ok "coordinator completed; swarm: all $N devices joined, all answered"

js=$dir/swarm.json
[[ $(jnum "$js" .ok) == true && $(jnum "$js" .joined) -eq $N &&
   $(jnum "$js" .procs) -eq 2 && $(jnum "$js" .byes) -eq $N ]] ||
    fl_fail "swarm report: $(cat "$js")"
[[ $(jnum "$js" '.rounds | length') -eq 2 ]] ||
    fl_fail "swarm report: want 2 rounds: $(jq -c .rounds "$js")"
for r in 1 2; do
    sel=".rounds[] | select(.round == $r)"
    [[ $(jnum "$js" "$sel.tasks") -eq $N &&
       $(jnum "$js" "$sel.updates") -eq $N &&
       $(jnum "$js" "$sel.unanswered") -eq 0 ]] ||
        fl_fail "swarm round $r: $(jq -c "$sel" "$js")"
done
[[ $(jnum "$js" .model_errors) -eq 0 && $(jnum "$js" .base_errors) -eq 0 &&
   $(jnum "$js" .model_decodes) -ge 2 ]] ||
    fl_fail "model checks: $(jq -c '{model_decodes, delta_applies,
        model_matched, model_errors, base_errors}' "$js")"
fl_ok "swarm report: 2 rounds x $N tasks and updates, models checked"

csv=$dir/report/rounds.csv
[[ $(($(wc -l <"$csv") - 1)) -eq 2 ]] || fl_fail "$csv: $(cat "$csv")"
for r in 1 2; do
    rep=$(fl_col "$csv" reported | sed -n "${r}p")
    [[ $rep -eq $N ]] || fl_fail "round $r: $rep reported, want $N"
done
up=$(fl_sum "$csv" up_wire_bytes)
[[ $up -eq $(jnum "$js" .update_bytes) ]] ||
    fl_fail "coordinator accepted $up update bytes, swarm sent" \
        "$(jnum "$js" .update_bytes)"
fl_ok "coordinator report: 2 rounds x $N reported; $up update bytes match"

# ---- 2. vanishing devices
# Rounds last at least --think-ms (1.5 s); a device that vanishes comes
# back after the Task's timeout + 250 ms (3.25 s: the round it left has
# closed at its 3 s deadline and the next one is open), says Hello again
# and is given the open round's Task. Devices that vanish in
# the last round come back after training ended: "stranded".
N=20
dir=$FL_TMP/vanish
fl_coord "$dir" --hidden 16 --rounds 3 --min-devices $N --fraction 1 \
    --quorum 0.3 --eval-limit 200 --round-timeout 3 --wait-timeout 40 \
    --max-attempts 3
fl_swarm "$dir" --devices $N --procs 2 --vanish 0.2 --seed 7 --think-ms 1500
fl_wait "$FL_COORD_PID" "coordinator ($dir/coord.log)"
[[ $SWARM_RC -eq 0 ]] ||
    fl_fail "swarm exited $SWARM_RC: $(cat "$dir/swarm.out" "$dir/swarm.log")"
js=$dir/swarm.json
vanished=$(jnum "$js" .vanished)
back=$(jnum "$js" .reconnects)
[[ $vanished -ge 1 && $(jnum "$js" .unanswered) -eq 0 &&
   $(jnum "$js" .joined) -eq $N && $(jnum "$js" .rejects) -eq 0 ]] ||
    fl_fail "swarm report: $(cat "$js")"
[[ $back -ge 1 && $(jnum "$js" .welcomes) -gt $N ]] ||
    fl_fail "no vanished device came back and joined again: $(cat "$js")"
csv=$dir/report/rounds.csv
for r in 1 2 3; do
    v=$(jnum "$js" ".rounds[] | select(.round == $r) | .vanished")
    # every attempt of the round (a retried round is asked again)
    d=$(awk -F, -v r="$r" 'NR == 1 { for (i = 1; i <= NF; i++) h[$i] = i;
        next } $h["round"] == r { d += $h["dropped"] }
        END { print d + 0 }' "$csv")
    [[ ${v:-0} -le $d ]] ||
        fl_fail "round $r: $v vanished but $d dropped: $(cat "$csv")"
done
fl_ok "$vanished vanished, $back came back (and were tasked again)," \
    "$(jnum "$js" .stranded) stranded at the end;" \
    "$(fl_sum "$csv" dropped) dropped by the coordinator; every other task" \
    "answered"

# fl_router DIR NAME ARGS... : start a router baseline; its endpoint file is
# DIR/NAME.endpoint, its report DIR/NAME.json. Sets ROUTER_PID and FL_EP.
fl_router() {
    local dir=$1 name=$2 i
    shift 2
    mkdir -p "$dir"
    rm -f "$dir/$name.endpoint"
    timeout -s TERM "$FL_WATCHDOG" "$FL_BIN/fedcomp-router-baseline" \
        --endpoint-file "$dir/$name.endpoint" --report "$dir/$name.json" \
        "$@" >"$dir/$name.out" 2>"$dir/$name.log" &
    ROUTER_PID=$!
    FL_PIDS+=("$ROUTER_PID")
    for ((i = 0; i < 300; i++)); do # bounded: 30 s
        [[ -s $dir/$name.endpoint ]] && break
        kill -0 "$ROUTER_PID" 2>/dev/null ||
            fl_fail "router $name exited early: $(cat "$dir/$name.log")"
        sleep 0.1
    done
    [[ -s $dir/$name.endpoint ]] || fl_fail "no endpoint from router $name"
    FL_EP=$(head -1 "$dir/$name.endpoint")
}

# ---- 3. the baseline router
N=30
dir=$FL_TMP/router
fl_router "$dir" router --devices $N --dimension 20000 --rounds 3
rpid=$ROUTER_PID
fl_swarm "$dir" --devices $N --procs 2
fl_wait "$rpid" "router baseline ($dir/router.log)"
[[ $SWARM_RC -eq 0 ]] || fl_fail "swarm exited $SWARM_RC: $(cat "$dir/swarm.out")"
rj=$dir/router.json
[[ $(jnum "$rj" .ok) == true && $(jnum "$rj" .hellos) -eq $N &&
   $(jnum "$rj" .updates) -eq $((3 * N)) && $(jnum "$rj" .byes_out) -eq $N &&
   $(jnum "$rj" .bytes_in) -eq $(jnum "$dir/swarm.json" .bytes_up) &&
   $(jnum "$rj" .bytes_out) -eq $(jnum "$dir/swarm.json" .bytes_down) ]] ||
    fl_fail "router report: $(cat "$rj"); swarm: $(cat "$dir/swarm.json")"
[[ $(jnum "$dir/swarm.json" .model_errors) -eq 0 &&
   $(jnum "$dir/swarm.json" .delta_applies) -ge 2 ]] ||
    fl_fail "models from the router: $(cat "$dir/swarm.json")"
# the full model (version 1) is over 64 KiB: announced, one chunk
js=$dir/swarm.json
[[ $(jnum "$rj" .full_model_bytes) -gt 65536 &&
   $(jnum "$rj" .downloads_done) -ge $N &&
   $(jnum "$js" .transfers_down_done) -eq $(jnum "$rj" .downloads_done) &&
   $(jnum "$js" .chunks_down) -eq $(jnum "$rj" .chunks_out) &&
   $(jnum "$js" .credits_up) -eq $(jnum "$rj" .credits_in) &&
   $(jnum "$js" .transfer_errors) -eq 0 ]] ||
    fl_fail "chunked downloads from the router: $(cat "$rj"); swarm:" \
        "$(cat "$js")"
fl_ok "router baseline: $N hellos, $((3 * N)) updates, $N byes; bytes match;" \
    "$(jnum "$rj" .cpu_us_per_msg) us CPU per message"

# ---- 4. connections lost and back
N=20
dir=$FL_TMP/reconnect
ep=ipc://$dir/router.sock
fl_router "$dir" first --bind "$ep" --devices $N --dimension 20000 \
    --rounds 1000 --max-seconds 2
first=$ROUTER_PID
timeout -s TERM "$FL_WATCHDOG" "$FL_BIN/fedcomp-swarm" --connect "$ep" \
    --devices $N --procs 2 --think-ms 50 --max-seconds 50 \
    --report "$dir/swarm.json" >"$dir/swarm.out" 2>"$dir/swarm.log" &
spid=$!
FL_PIDS+=("$spid")
rc=0
wait "$first" || rc=$?
[[ $rc -eq 1 ]] || fl_fail "first router: exit $rc, want 1 (its deadline)"
fl_router "$dir" second --bind "$ep" --devices $N --dimension 20000 \
    --rounds 3
second=$ROUTER_PID
fl_wait "$second" "second router ($dir/second.log)"
rc=0
wait "$spid" || rc=$?
[[ $rc -eq 0 ]] || fl_fail "swarm exited $rc: $(cat "$dir/swarm.out")"
js=$dir/swarm.json
[[ $(jnum "$js" .reconnected) -ge $N && $(jnum "$js" .disconnects) -ge $N &&
   $(jnum "$js" .joined) -eq $N && $(jnum "$js" .byes) -eq $N &&
   $(jnum "$js" .unanswered) -eq 0 ]] ||
    fl_fail "swarm report: $(cat "$js")"
[[ $(jnum "$dir/second.json" .hellos) -ge $N &&
   $(jnum "$dir/second.json" .byes_out) -eq $N ]] ||
    fl_fail "second router: $(cat "$dir/second.json")"
fl_ok "every device lost its connection ($(jnum "$js" .disconnects)" \
    "drops), came back, said Hello again and finished with the second" \
    "router"

# ---- 5. chunked transfers both ways with the coordinator
N=20
dir=$FL_TMP/chunked
fl_coord "$dir" --hidden 16 --rounds 2 --min-devices $N --fraction 1 \
    --quorum 1 --eval-limit 200 --round-timeout 30 --wait-timeout 40 \
    --density 0.5 --values fp16 --codec zstd:1 --chunk-bytes 4096 \
    --chunk-window 2 --inline-bytes 1024 --max-inflight-chunks 8 \
    --upload-slots 2
fl_swarm "$dir" --devices $N --procs 2
fl_wait "$FL_COORD_PID" "coordinator ($dir/coord.log)"
[[ $SWARM_RC -eq 0 ]] ||
    fl_fail "swarm exited $SWARM_RC: $(cat "$dir/swarm.out" "$dir/swarm.log")"
js=$dir/swarm.json
tasks=$(jnum "$js" .tasks)
chunks=$(jnum "$js" .chunks_down)
# 12,730 floats: ~47 KB full model and XOR delta, 4 KiB chunks
[[ $tasks -eq $((2 * N)) && $(jnum "$js" .transfers_down) -eq $tasks &&
   $(jnum "$js" .transfers_down_done) -eq $tasks &&
   $chunks -ge $((10 * tasks)) &&
   $(jnum "$js" .credits_up) -eq $chunks &&
   $(jnum "$js" .stale_chunks) -eq 0 &&
   $(jnum "$js" .transfer_errors) -eq 0 &&
   $(jnum "$js" .geometry_errors) -eq 0 ]] ||
    fl_fail "chunked downloads: $(cat "$js")"
[[ $(jnum "$js" .chunks_compared) -gt 0 &&
   $(jnum "$js" .chunk_mismatches) -eq 0 &&
   $(jnum "$js" .model_decodes) -eq 2 && $(jnum "$js" .delta_applies) -eq 2 &&
   $(jnum "$js" .model_errors) -eq 0 && $(jnum "$js" .model_unverified) -eq 0 &&
   $(jnum "$js" .model_matched) -eq $tasks ]] ||
    fl_fail "chunked models not checked: $(jq -c '{chunks_compared,
        chunk_mismatches, model_decodes, delta_applies, model_errors,
        model_unverified, model_matched}' "$js")"
fl_ok "$tasks tasks, each model in chunks: $chunks chunks, each credited;" \
    "$(jnum "$js" .chunks_compared) compared with the reassembly," \
    "models decoded and matched"
upd=$(jnum "$js" .updates)
[[ $upd -eq $((2 * N)) && $(jnum "$js" .uploads_announced) -eq $upd &&
   $(jnum "$js" .uploads_granted) -eq $upd &&
   $(jnum "$js" .uploads_done) -eq $upd &&
   $(jnum "$js" .chunks_up) -ge $((3 * upd)) &&
   $(jnum "$js" .stale_credits) -eq 0 ]] ||
    fl_fail "chunked uploads: $(cat "$js")"
csv=$dir/report/rounds.csv
for r in 1 2; do
    rep=$(fl_col "$csv" reported | sed -n "${r}p")
    [[ $rep -eq $N ]] || fl_fail "round $r: $rep reported, want $N"
done
up=$(fl_sum "$csv" up_wire_bytes)
[[ $up -eq $(jnum "$js" .update_bytes) ]] ||
    fl_fail "coordinator accepted $up update bytes, swarm sent" \
        "$(jnum "$js" .update_bytes)"
fl_ok "$upd updates announced and sent in $(jnum "$js" .chunks_up) chunks" \
    "after the coordinator's credit; 2 rounds x $N reported; $up bytes match"
