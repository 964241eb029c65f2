#!/usr/bin/env bash
# Chunked transfers end to end (docs/protocol.md "Transfers"): a
# coordinator with 4 KiB chunks, models above 4 KiB sent in chunks, and
# dense fp32 updates (density 1, no codec: 940584-byte payloads), so every
# model and every update travels as 230 chunks; 3 workers, 3 rounds, one
# upload slot (workers wait for their first credit in turn).
#
# Checks: every process exits 0; 3 committed rounds, all 3 workers
# reported in each, nothing dropped, rejected or late; accuracy above
# chance; the report's uplink bytes equal, exactly, the bytes the workers
# logged for used updates (announcement + every chunk frame), so the
# coordinator took in every chunked upload whole; each worker received
# every model and sent every update in 230 chunks (its log and its
# --stats-csv).
#
# The message-rate limit stays at its default (50/s, burst 100): at 4 KiB
# a model is 230 Credits in a few milliseconds, so this also checks that
# Chunks and Credits of an open transfer are paced by the credit window,
# not by --max-msg-rate (protocol.md "Transfers").
# asan: yes
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
fl_need

N=3
ROUNDS=3
DIM=235146 # 784-256-128-10
PAYLOAD=$((DIM * 4))
CHUNKS=$(((PAYLOAD + 4095) / 4096))
dir=$FL_TMP/run
csv=$dir/report/rounds.csv

fl_coord "$dir" --rounds $ROUNDS --min-devices $N --eval-limit 2000 \
    --round-timeout 60 --wait-timeout 60 \
    --density 1 --values fp32 --codec none \
    --chunk-bytes 4096 --chunk-window 4 --inline-bytes 4096 \
    --upload-slots 1 --max-msg-rate 50
for ((i = 0; i < N; i++)); do
    fl_worker "$dir" $i $N --train-limit 6000 --stats-csv "$dir/w$i.csv"
done
fl_wait_all "$dir"

# ---- rounds complete
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
acc=$(fl_col "$csv" test_acc | tail -1)
fl_float_gt "$acc" 0.4 || fl_fail "final accuracy $acc <= 0.4"
fl_ok "$ROUNDS rounds, $N of $N reported each, accuracy $acc"

# ---- uploads received whole: report bytes == bytes the workers sent
awk -F, -v dim=$DIM '
    NR == 1 { for (i = 1; i <= NF; i++) h[$i] = i; next }
    $h["up_dense_bytes"] != $h["reported"] * dim * 4 { bad = 1 }
    $h["up_wire_bytes"] < $h["up_dense_bytes"] { bad = 1 }
    END { exit bad }' "$csv" || fl_fail "uplink bytes too small in $csv"
used=0
for ((i = 0; i < N; i++)); do
    grep -q "update of round $ROUNDS was used" "$dir/w$i.log" ||
        fl_fail "worker $i did not learn that its last update was used"
    used=$((used + $(fl_used_bytes "$dir/w$i.log")))
done
report_up=$(fl_sum "$csv" up_wire_bytes)
[[ $report_up -eq $used ]] ||
    fl_fail "report up_wire_bytes $report_up != workers' used bytes $used"
fl_ok "uplink: the report counts the $used bytes the workers sent"

# ---- chunks both ways, seen by the workers
for ((i = 0; i < N; i++)); do
    log=$dir/w$i.log
    n=$(grep -cE "model of round [0-9]+ received: $PAYLOAD bytes in $CHUNKS chunks" "$log")
    [[ $n -eq $ROUNDS ]] ||
        fl_fail "worker $i received $n chunked models, want $ROUNDS ($log)"
    n=$(grep -cE "sent update round [0-9]+: [0-9]+ bytes .*payload $PAYLOAD in $CHUNKS chunks" "$log")
    [[ $n -eq $ROUNDS ]] ||
        fl_fail "worker $i sent $n chunked updates, want $ROUNDS ($log)"
    grep -qE "stopped after|cancel|bad chunk|rate limit" "$log" &&
        fl_fail "worker $i: a transfer went wrong ($log)"
    # --stats-csv: one row a round, every update in CHUNKS chunks
    [[ $(head -1 "$dir/w$i.csv") == "round,load_ms,train_ms,encode_ms,send_ms,update_bytes,chunks,peak_rss_kb" ]] ||
        fl_fail "bad header in $dir/w$i.csv"
    [[ $(fl_col "$dir/w$i.csv" chunks | sort -u) == "$CHUNKS" ]] ||
        fl_fail "chunks column of $dir/w$i.csv is not $CHUNKS"
    [[ $(fl_col "$dir/w$i.csv" round | tr '\n' ' ') == "1 2 3 " ]] ||
        fl_fail "rounds of $dir/w$i.csv are not 1 2 3"
done
grep -q "rate limit" "$dir/coord.log" &&
    fl_fail "the coordinator dropped messages ($dir/coord.log)"
fl_ok "every model and update in $CHUNKS chunks of 4096 bytes"
echo "PASS"
