#!/usr/bin/env bash
# Prometheus metrics: a coordinator with --metrics-bind 127.0.0.1:0 (the
# port comes back through --metrics-port-file) and 2 workers that train 3
# rounds and then crash on round 4's Task (--test-exit-at-round 4), so the
# coordinator sits in round 4 with nothing changing while we look:
#   1. curl /metrics | promtool check metrics, and the values equal the
#      report (rounds.csv) the coordinator wrote;
#   2. Debian's prometheus server scrapes the coordinator (generated config,
#      loopback port, TSDB in the temp dir); its HTTP API returns the same
#      values;
#   3. SIGTERM: the coordinator exits 0 and its summary agrees.
# Also: 404 for another path, a second coordinator on the same metrics port
# fails at start (exit 1) instead of sharing it.
# asan: yes
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
fl_need
FL_WATCHDOG=90
for tool in curl promtool prometheus python3; do
    command -v $tool >/dev/null ||
        fl_fail "$tool not installed (deploy/deps.sh installs it)"
done

# plaintext on loopback (the coordinator refuses to run without keys
# unless told so, when it knows --insecure)
sec=() wsec=()
"$FL_BIN/fedcomp-coordinator" --help | grep -q -- --insecure && sec=(--insecure)
"$FL_BIN/fedcomp-worker" --help | grep -q -- --insecure && wsec=(--insecure)

dir=$FL_TMP/run
csv=$dir/report/rounds.csv
mkdir -p "$dir"

# ---- coordinator and workers
fl_coord "$dir" "${sec[@]}" --rounds 10 --min-devices 2 --eval-limit 1000 \
    --hidden 32 --round-timeout 80 --wait-timeout 60 \
    --metrics-bind 127.0.0.1:0 --metrics-port-file "$dir/mport"
[[ -s $dir/mport ]] || fl_fail "no metrics port file"
mport=$(head -1 "$dir/mport")
[[ $mport =~ ^[0-9]+$ && $mport -gt 0 ]] || fl_fail "bad metrics port '$mport'"
grep -q "metrics on '127.0.0.1:0', port $mport" "$dir/coord.log" ||
    fl_fail "the metrics port is not logged"
murl=http://127.0.0.1:$mport/metrics

for i in 0 1; do
    fl_worker "$dir" $i 2 "${wsec[@]}" --train-limit 3000 \
        --test-exit-at-round 4
done
i=0
for pid in "${FL_WORKER_PIDS[@]}"; do
    rc=0
    wait "$pid" || rc=$?
    [[ $rc -eq 1 ]] || fl_fail "worker $i exited $rc, want 1 (crash at 4)"
    i=$((i + 1))
done
FL_WORKER_PIDS=()
fl_running "$FL_COORD_PID" || fl_fail "the coordinator is gone"
rows=$(($(wc -l <"$csv") - 1))
[[ $rows -eq 3 ]] || fl_fail "$csv has $rows rows, want 3"
fl_ok "3 rounds trained, the coordinator waits in round 4"

# ---- 1. scrape it ourselves
curl -sf "$murl" >"$dir/scrape.txt" || fl_fail "cannot GET $murl"
promtool check metrics <"$dir/scrape.txt" >"$dir/promtool.txt" 2>&1 ||
    fl_fail "promtool check metrics: $(cat "$dir/promtool.txt")"
fl_ok "promtool accepts the exposition"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$mport/")
[[ $code == 404 ]] || fl_fail "GET / gave $code, want 404"

# metric NAME : its value in the scrape (exact series name with labels)
metric() {
    awk -v s="$1" '$1 == s { print $2; f = 1 } END { exit !f }' \
        "$dir/scrape.txt" || fl_fail "no series '$1' in the scrape"
}
# same A B what : numbers equal within 1e-9 (relative)
same() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        d = a - b; if (d < 0) d = -d; m = b < 0 ? -b : b
        exit !(d <= 1e-9 * (m + 1)) }' || fl_fail "$3: $1 != $2"
}

up_wire=$(fl_sum "$csv" up_wire_bytes)
up_dense=$(fl_sum "$csv" up_dense_bytes)
down_wire=$(fl_sum "$csv" down_wire_bytes)
acc=$(fl_col "$csv" test_acc | tail -1)
loss=$(fl_col "$csv" test_loss | tail -1)
same "$(metric fedcomp_rounds_completed_total)" 3 "rounds completed"
same "$(metric fedcomp_round)" 4 "current round"
same "$(metric fedcomp_updates_received_total)" 6 "updates received"
same "$(metric 'fedcomp_updates_rejected_total{reason="late"}')" 0 "late"
same "$(metric fedcomp_bytes_up_wire_total)" "$up_wire" "bytes up (wire)"
same "$(metric fedcomp_bytes_up_dense_total)" "$up_dense" "bytes up (dense)"
same "$(metric fedcomp_uplink_compression_ratio)" \
    "$(awk -v a="$up_dense" -v b="$up_wire" 'BEGIN { printf "%.17g", a / b }')" \
    "uplink ratio"
same "$(metric fedcomp_round_duration_seconds_count)" 3 "histogram count"
same "$(metric 'fedcomp_round_duration_seconds_bucket{le="+Inf"}')" 3 \
    "histogram +Inf bucket"
# the report prints wall_s rounded: compare within 1 ms per round
wsum=$(fl_col "$csv" wall_s | awk '{ s += $1 } END { printf "%.6f", s }')
hsum=$(metric fedcomp_round_duration_seconds_sum)
awk -v a="$hsum" -v b="$wsum" 'BEGIN { d = a - b; exit !(d < .003 && d > -.003) }' ||
    fl_fail "histogram sum $hsum != the report's wall_s sum $wsum"
awk -v a="$(metric fedcomp_test_accuracy)" -v b="$acc" \
    'BEGIN { d = a - b; exit !(d < 1e-5 && d > -1e-5) }' ||
    fl_fail "test accuracy $(metric fedcomp_test_accuracy) != report $acc"
awk -v a="$(metric fedcomp_test_loss)" -v b="$loss" \
    'BEGIN { d = a - b; exit !(d < 1e-4 && d > -1e-4) }' ||
    fl_fail "test loss $(metric fedcomp_test_loss) != report $loss"
# round 4's Tasks went down after the last row: the counter is ahead
dw=$(metric fedcomp_bytes_down_wire_total)
awk -v a="$dw" -v b="$down_wire" 'BEGIN { exit !(a > b) }' ||
    fl_fail "bytes down $dw not above the rows' $down_wire"
fl_ok "scraped values equal the report: 3 rounds, $up_wire bytes up, acc $acc"

# ---- a second coordinator cannot take the same metrics port
rc=0
timeout 20 "$FL_BIN/fedcomp-coordinator" "${sec[@]}" --bind 'tcp://127.0.0.1:*' \
    --data-dir "$FL_DATA" --eval-limit 10 --hidden 8 \
    --metrics-bind "127.0.0.1:$mport" >"$dir/second.out" 2>"$dir/second.log" ||
    rc=$?
[[ $rc -eq 1 ]] || fl_fail "second coordinator on port $mport exited $rc"
grep -q "cannot serve metrics on '127.0.0.1:$mport'" "$dir/second.log" ||
    fl_fail "no clear error for the busy port: $(cat "$dir/second.log")"
fl_ok "a busy metrics port is an error"

# ---- 2. Debian's prometheus scrapes it
free_port() {
    python3 -c 'import socket; s = socket.socket()
s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
cat >"$dir/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: fedcomp
    static_configs:
      - targets: ['127.0.0.1:$mport']
EOF
promtool check config "$dir/prometheus.yml" >"$dir/promtool-config.txt" 2>&1 ||
    fl_fail "promtool check config: $(cat "$dir/promtool-config.txt")"

# query EXPR : the value of the first series of an instant query ("" when
# the result is still empty)
query() {
    curl -sf -G "http://127.0.0.1:$pport/api/v1/query" \
        --data-urlencode "query=$1" | python3 -c '
import json, sys
d = json.load(sys.stdin)
r = d["data"]["result"] if d.get("status") == "success" else []
print(r[0]["value"][1] if r else "")'
}

# The port may be taken between free_port and the bind: retry a few times.
started=0
for attempt in 1 2 3; do
    pport=$(free_port)
    timeout -s TERM 60 prometheus --config.file="$dir/prometheus.yml" \
        --storage.tsdb.path="$dir/tsdb-$attempt" \
        --web.listen-address="127.0.0.1:$pport" --log.level=warn \
        >"$dir/prometheus.log" 2>&1 &
    prom_pid=$!
    FL_PIDS+=("$prom_pid")
    for ((t = 0; t < 300; t++)); do # bounded: 30 s
        fl_running "$prom_pid" || break
        if curl -sf "http://127.0.0.1:$pport/-/ready" >/dev/null 2>&1; then
            started=1
            break
        fi
        sleep 0.1
    done
    [[ $started -eq 1 ]] && break
    kill -TERM "$prom_pid" 2>/dev/null
    wait "$prom_pid" 2>/dev/null
done
[[ $started -eq 1 ]] ||
    fl_fail "prometheus did not start: $(tail -5 "$dir/prometheus.log")"

v=""
for ((t = 0; t < 300; t++)); do # bounded: 30 s
    v=$(query fedcomp_rounds_completed_total)
    [[ -n $v ]] && break
    sleep 0.1
done
[[ -n $v ]] || fl_fail "prometheus has not scraped the coordinator in 30 s"
same "$v" 3 "prometheus: rounds completed"
same "$(query fedcomp_bytes_up_wire_total)" "$up_wire" "prometheus: bytes up"
same "$(query fedcomp_bytes_up_dense_total)" "$up_dense" \
    "prometheus: dense bytes up"
same "$(query 'up{job="fedcomp"}')" 1 "prometheus: target up"
same "$(query 'sum(fedcomp_updates_rejected_total)')" 0 \
    "prometheus: rejected updates"
hc=$(query 'histogram_quantile(0.5, fedcomp_round_duration_seconds_bucket)')
[[ -n $hc && $hc != NaN ]] || fl_fail "prometheus: no round-duration quantile"
fl_ok "prometheus scraped it: rounds 3, bytes up $up_wire, median round ${hc}s"
kill -TERM "$prom_pid"
wait "$prom_pid" 2>/dev/null

# ---- 3. stop the coordinator; its summary agrees
kill -TERM "$FL_COORD_PID"
fl_wait "$FL_COORD_PID" "coordinator ($dir/coord.log)"
grep -qE "^  rounds +3  of 10 " "$dir/coord.out" ||
    fl_fail "summary does not say 3 of 10 rounds: $(cat "$dir/coord.out")"
grep -qE "^  uplink wire .*\($up_wire bytes\)" "$dir/coord.out" ||
    fl_fail "summary uplink differs from the scraped $up_wire bytes"
grep -q "interrupted" "$dir/coord.out" || fl_fail "summary: not interrupted"
fl_ok "SIGTERM: exit 0, summary 3 of 10 rounds, $up_wire bytes up"
echo "PASS"
