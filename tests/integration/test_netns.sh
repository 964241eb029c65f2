#!/usr/bin/env bash
# Slow links for real (deploy/netns/netns.sh): a coordinator and 2 workers
# in their own network namespaces, each worker on its own veth link shaped
# with tc tbf (2 Mbit/s up, 8 Mbit/s down).
#
# Checks: the namespaces and shapers exist; 'netns.sh check' measures every
# link within 30% of its configured rate, both directions; a dense 2-round
# federation over those links completes (every process exits 0); the
# report's per-device transfer time (devices.csv upload_ms: Task sent ->
# Update received minus the device's compute) is at least 80% of what the
# configured rates allow for the bytes it moved, and not absurdly more;
# the shapers' own counters saw at least the report's bytes; `down` leaves
# no namespace behind, and the trap removes them when a check fails.
#
# Needs root, 'ip netns', tc and python3: otherwise prints "skip: REASON"
# and exits 77.
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"

skip() {
    echo "skip: $*"
    exit 77
}
[[ $(id -u) -eq 0 ]] || skip "not root (network namespaces and tc need it)"
command -v ip >/dev/null || skip "no 'ip' (iproute2)"
command -v tc >/dev/null || skip "no 'tc' (iproute2)"
ip netns list >/dev/null 2>&1 || skip "'ip netns' is not available"
command -v python3 >/dev/null || skip "no python3 (netns.sh check needs it)"
fl_need

NETNS=$FL_ROOT/deploy/netns/netns.sh
# a prefix of our own: never touches the benchmark's or another run's
export FCN_PREFIX="fct$$-"
UP_BITS=2000000
DOWN_BITS=8000000
N=2
ROUNDS=2

netns_down() {
    "$NETNS" down >/dev/null 2>&1 || "$NETNS" down
}
# namespaces first (ends what runs in them), then lib.sh's cleanup
trap 'netns_down; fl_cleanup' EXIT

ours() { ip netns list | awk '{ print $1 }' | grep -c "^${FCN_PREFIX}" || true; }

# ---- the namespaces and their shapers
"$NETNS" up $N --up 2mbit --down 8mbit >"$FL_TMP/up.log" 2>&1 ||
    fl_fail "netns.sh up failed: $(cat "$FL_TMP/up.log")"
[[ $(ours) -eq $((N + 1)) ]] || fl_fail "want $((N + 1)) namespaces, have $(ours)"
for i in 1 2; do
    tc -n "${FCN_PREFIX}w$i" qdisc show dev fcc0 | grep -q 'tbf.*rate 2Mbit' ||
        fl_fail "no 2Mbit tbf on worker $i's uplink"
    tc -n "${FCN_PREFIX}coord" qdisc show dev "fcw$i" | grep -q 'tbf.*rate 8Mbit' ||
        fl_fail "no 8Mbit tbf on worker $i's downlink"
done
# only the namespaces' own interfaces: nothing of ours in the host's
! ip -br link | grep -qE '^(fcw[0-9]+|fcc0)[@ ]' ||
    fl_fail "a link of ours is in the host namespace"
fl_ok "up: $((N + 1)) namespaces, tbf shapers on both ends of each link"

# ---- the shaping is in effect: measured rate within 30% of configured
"$NETNS" check --seconds 1 --tolerance 0.3 >"$FL_TMP/check.log" 2>&1 ||
    fl_fail "netns.sh check: $(cat "$FL_TMP/check.log")"
[[ $(grep -c ' ok$' "$FL_TMP/check.log") -eq $((2 * N)) ]] ||
    fl_fail "want $((2 * N)) links ok: $(cat "$FL_TMP/check.log")"
fl_ok "check: $(awk '$NF == "ok" { printf "%s %s %s/%s; ", $1, $2, $5, $3 }' \
    "$FL_TMP/check.log")(wire/configured Mbit/s)"

# ---- a dense federation over the shaped links
tc_sent() { # NS DEV -> bytes sent through the shaper
    tc -n "$1" -s qdisc show dev "$2" | awk '/Sent/ { print $2; exit }'
}
TC0_UP=() TC0_DOWN=()
for i in 1 2; do
    TC0_UP[i]=$(tc_sent "${FCN_PREFIX}w$i" fcc0)
    TC0_DOWN[i]=$(tc_sent "${FCN_PREFIX}coord" "fcw$i")
done
dir=$FL_TMP/fl
mkdir -p "$dir"
timeout -s TERM 60 "$NETNS" exec coord "$FL_BIN/fedcomp-coordinator" \
    --bind 'tcp://*:5555' --endpoint-file "$dir/endpoint" \
    --report-dir "$dir/report" --data-dir "$FL_DATA" --insecure \
    --rounds $ROUNDS --min-devices $N --eval-limit 1000 --round-timeout 40 \
    --wait-timeout 30 --density 1 --values fp32 --codec none \
    >"$dir/coord.out" 2>"$dir/coord.log" &
FL_COORD_PID=$!
FL_PIDS+=("$FL_COORD_PID")
for ((t = 0; t < 300; t++)); do
    [[ -s $dir/endpoint ]] && break
    kill -0 "$FL_COORD_PID" 2>/dev/null ||
        fl_fail "coordinator exited early: $(tail -5 "$dir/coord.log")"
    sleep 0.1
done
[[ -s $dir/endpoint ]] || fl_fail "no endpoint file from the coordinator"
for i in 1 2; do
    timeout -s TERM 60 "$NETNS" exec "w$i" "$FL_BIN/fedcomp-worker" \
        --connect "tcp://$("$NETNS" addr $i):5555" --id "w$i" \
        --state-dir "$dir/state-w$i" --data-dir "$FL_DATA" \
        --shard "$((i - 1))/$N" --train-limit 2000 --hello-timeout 30 \
        --insecure >"$dir/w$i.out" 2>"$dir/w$i.log" &
    FL_PIDS+=("$!")
    FL_WORKER_PIDS+=("$!")
done
fl_wait_all "$dir"
csv=$dir/report/rounds.csv
dev=$dir/report/devices.csv
[[ $(($(wc -l <"$csv") - 1)) -eq $ROUNDS ]] || fl_fail "$csv: want $ROUNDS rows"
[[ $(fl_col "$csv" reported | sort -u) == "$N" ]] ||
    fl_fail "not every worker reported in every round"
fl_ok "federation: $ROUNDS dense rounds over the shaped links, final accuracy" \
    "$(fl_col "$csv" test_acc | tail -1)"

# Transfer time in the report against the configured rates. tbf lets the
# first ~1.6 kB through at once and TCP/IP adds ~5% on top of the payload:
# a floor of 80% of payload/rate is safe and still ~100x what an unshaped
# veth gives (a dense round moves ~0.94 MB each way).
awk -F, -v up="$UP_BITS" -v down="$DOWN_BITS" '
    NR == 1 { for (i = 1; i <= NF; i++) h[$i] = i; next }
    $h["status"] == "reported" {
        want = ($h["down_bytes"] * 8 / down + $h["up_bytes"] * 8 / up) * 1000
        got = $h["upload_ms"]
        printf "round %s %s: %.0f ms for %d B down + %d B up (rates allow %.0f ms)\n",
            $h["round"], $h["device"], got, $h["down_bytes"], $h["up_bytes"], want
        if (got < 0.8 * want || got > 3 * want + 2000) bad = 1
        n++
    }
    END { exit (bad || n != 4) }' "$dev" >"$FL_TMP/times.log" ||
    fl_fail "transfer times do not match the shaping: $(cat "$FL_TMP/times.log")"
fl_ok "transfer times follow the configured rates:"
sed 's/^/    /' "$FL_TMP/times.log"

# the traffic went through the shapers: their counters (L2, with TCP/IP
# headers) hold at least the report's application bytes
for i in 1 2; do
    up_rep=$(awk -F, -v d="w$i" 'NR == 1 { for (j = 1; j <= NF; j++) h[$j] = j; next }
        $h["device"] == d { s += $h["up_bytes"] } END { printf "%d", s }' "$dev")
    down_rep=$(awk -F, -v d="w$i" 'NR == 1 { for (j = 1; j <= NF; j++) h[$j] = j; next }
        $h["device"] == d { s += $h["down_bytes"] } END { printf "%d", s }' "$dev")
    up_tc=$(tc_sent "${FCN_PREFIX}w$i" fcc0)
    up_tc=$((up_tc - TC0_UP[i]))
    down_tc=$(tc_sent "${FCN_PREFIX}coord" "fcw$i")
    down_tc=$((down_tc - TC0_DOWN[i]))
    ((up_tc >= up_rep && up_rep > 0)) ||
        fl_fail "w$i: uplink shaper sent $up_tc B, the report counts $up_rep B"
    ((down_tc >= down_rep && down_rep > 0)) ||
        fl_fail "w$i: downlink shaper sent $down_tc B, the report counts $down_rep B"
    fl_ok "w$i: shaper bytes up $up_tc >= report $up_rep, down $down_tc >= report $down_rep"
done

# ---- down removes everything, twice is fine
"$NETNS" down >/dev/null || fl_fail "netns.sh down failed"
"$NETNS" down >/dev/null || fl_fail "a second netns.sh down failed"
[[ $(ours) -eq 0 ]] || fl_fail "namespaces left after down: $(ours)"
fl_ok "down: no namespace left (twice)"
echo "PASS"
