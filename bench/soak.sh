#!/usr/bin/env bash
# Soak test (make soak): does the coordinator's memory stay flat over a
# long run with churn?
#
#   default: 784-1024-192-10 (1,002,570 parameters), 1,000 swarm devices,
#            300 rounds, --vanish 0.2: every Task is drawn anew, so about
#            20% of the cohort leaves each round (socket closed without
#            answering) and rejoins (new socket, same id, Hello) after the
#            Task's timeout + 250 ms, i.e. in the next round, holding an
#            older model version. Rounds close at their deadline
#            (--round-timeout, 5 s) on quorum (0.5); the leavers are
#            dropped for that round.
#            The coordinator's VmRSS/VmHWM is read from /proc/PID/status
#            each time a row appears in its rounds.csv (sampled every
#            0.25 s); the script prints RSS at round 50 and at the last
#            round and the target
#              RSS(round 300) within 10% of RSS(round 50): met / MISSED
#   --lsan:  a short run with the ASan/UBSan build of the coordinator
#            (LeakSanitizer is part of ASan on x86_64): 100 devices, 20
#            rounds, the same churn, ASAN_OPTIONS=detect_leaks=1; the
#            coordinator must exit 0 by itself (training ends, Byes sent,
#            peers gone) so that LeakSanitizer's exit check runs, and its
#            log must hold no LeakSanitizer/AddressSanitizer/UBSan report:
#              no leak (LeakSanitizer ran at a normal exit): met / MISSED
#
#   bench/soak.sh [--lsan] [--devices N] [--rounds R] [--vanish F]
#                 [--hidden 1024,192] [--round-timeout S] [--quorum Q]
#                 [--heartbeat-ms 0] [--out DIR] [--bin DIR]
#                 [--asan-bin DIR] [--swarm-args "..."]
#                 [--coordinator-args "..."]
#                 [--report-only]  (the verdict again from OUT's files)
#
# Plaintext (--insecure), heartbeats off (--heartbeat-ms 0, as bench/scale.sh
# at large N). Exit 0 when the target is met, 1 when it is missed or the run
# failed, 2 on a usage error. Every process runs under a `timeout` watchdog;
# an EXIT trap stops whatever is still running.
set -u
cd "$(dirname "$0")/.." || exit 2

lsan=0 devices="" rounds="" vanish=0.2 hidden=1024,192 round_timeout=5
quorum=0.5 hb_ms=0 out="" bin=build asan_bin=build/asan/bin swarm_args=""
coord_args="" report_only=0
data=${FL_DATA:-/usr/share/datasets/fashion-mnist}
while [[ $# -gt 0 ]]; do
    case $1 in
    --lsan) lsan=1; shift ;;
    --devices) devices=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --vanish) vanish=$2; shift 2 ;;
    --hidden) hidden=$2; shift 2 ;;
    --round-timeout) round_timeout=$2; shift 2 ;;
    --quorum) quorum=$2; shift 2 ;;
    --heartbeat-ms) hb_ms=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    --asan-bin) asan_bin=$2; shift 2 ;;
    --swarm-args) swarm_args=$2; shift 2 ;;
    --coordinator-args) coord_args=$2; shift 2 ;;
    --report-only) report_only=1; shift ;;
    -h|--help) sed -n '2,38p' "$0"; exit 0 ;;
    *) echo "soak.sh: unknown option '$1'" >&2; exit 2 ;;
    esac
done
if [[ $lsan == 1 ]]; then
    devices=${devices:-100} rounds=${rounds:-20} out=${out:-out/soak-lsan}
    coord_bin=$asan_bin/fedcomp-coordinator
else
    devices=${devices:-1000} rounds=${rounds:-300} out=${out:-out/soak}
    coord_bin=$bin/fedcomp-coordinator
fi
for p in "$coord_bin" "$bin/fedcomp-swarm"; do
    [[ -x $p ]] || { echo "soak.sh: $p not built" >&2; exit 2; }
done

# shellcheck source=bench/procs.sh
source "$(dirname "$0")/procs.sh"
trap procs_stop EXIT
trap 'exit 130' INT TERM


# sample_rounds PID CSV FILE : every 0.25 s (one awk per sample) count the
# rows of CSV; for each new row append "row rss_kb hwm_kb seconds" to FILE.
# The last sample is in FILE.last.
sample_rounds() {
    local pid=$1 csv=$2 file=$3 rows=0 src line hwm rss n t0=$SECONDS
    : >"$file"
    while [[ -r /proc/$pid/status ]]; do
        src=$csv
        [[ -e $src ]] || src=/dev/null   # mawk stops at a missing file
        line=$(awk 'FILENAME ~ /status$/ && /^VmHWM:/ { h = $2 }
                    FILENAME ~ /status$/ && /^VmRSS:/ { r = $2 }
                    FILENAME !~ /status$/ { n++ }
                    END { print h + 0, r + 0, n + 0 }' \
                   "/proc/$pid/status" "$src" 2>/dev/null)
        read -r hwm rss n <<<"$line"
        [[ -z ${hwm:-} || $hwm == 0 ]] && break
        echo "$rss $hwm" >"$file.last"
        while [[ ${n:-0} -gt 1 && $rows -lt $((n - 1)) ]]; do
            rows=$((rows + 1))
            echo "$rows $rss $hwm $((SECONDS - t0))" >>"$file"
        done
        sleep 0.25
    done
}

# run_soak : coordinator + swarm; files in $out (coord.rc, swarm.rc,
# rss.rounds, report/, swarm.json)
run_soak() {
    rm -rf "$out"
    mkdir -p "$out"
    # a round lasts about --round-timeout (it closes at the deadline on quorum)
    max_s=$((rounds * (round_timeout + 3) + 600))
    export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
    if [[ $lsan == 1 ]] &&
        ! ASAN_OPTIONS="help=1" "$coord_bin" --version 2>&1 |
            grep -q "detect_leaks"; then
        echo "soak.sh: $coord_bin is not an ASan build" >&2
        exit 2
    fi
    echo "== soak: $devices devices, $rounds rounds, vanish $vanish," \
         "round timeout ${round_timeout} s, $coord_bin"
    timeout -s TERM "$((max_s + 120))" "$coord_bin" \
        --bind 'tcp://127.0.0.1:*' --endpoint-file "$out/endpoint" \
        --report-dir "$out/report" --data-dir "$data" --hidden "$hidden" \
        --density 0.01 --values fp16 --codec zstd:1 --rounds "$rounds" \
        --min-devices "$((devices / 2))" --fraction 1 --quorum "$quorum" \
        --round-timeout "$round_timeout" --wait-timeout 600 --max-attempts 10 \
        --eval-limit 100 --insecure --max-devices-connected "$devices" \
        --heartbeat-ms "$hb_ms" --backlog 4096 --log-level notice $coord_args \
        >"$out/coord.out" 2>"$out/coord.log" &
    cpid=$!
    PIDS+=("$cpid")
    if ! wait_file "$out/endpoint" "$cpid"; then
        echo "soak.sh: the coordinator did not start:" \
             "$(tail -3 "$out/coord.log")" >&2
        exit 1
    fi
    pid=$(child_of "$cpid") || pid=$cpid
    sample_rounds "$pid" "$out/report/rounds.csv" "$out/rss.rounds" &
    spid=$!
    timeout -s TERM "$((max_s + 60))" "$bin/fedcomp-swarm" \
        --connect "$(head -1 "$out/endpoint")" --devices "$devices" \
        --vanish "$vanish" --max-seconds "$max_s" --report "$out/swarm.json" \
        $swarm_args >"$out/swarm.out" 2>"$out/swarm.log" &
    wpid=$!
    PIDS+=("$wpid")
    swarm_rc=0
    wait "$wpid" || swarm_rc=$?
    coord_rc=0
    wait "$cpid" || coord_rc=$?
    wait "$spid" 2>/dev/null
    echo "$coord_rc" >"$out/coord.rc"
    echo "$swarm_rc" >"$out/swarm.rc"
    echo "   coordinator exit $coord_rc, swarm exit $swarm_rc, $SECONDS s"
}

[[ $report_only == 1 ]] || run_soak || exit 1
coord_rc=$(cat "$out/coord.rc" 2>/dev/null || echo "?")
swarm_rc=$(cat "$out/swarm.rc" 2>/dev/null || echo "?")
echo "   $(grep '^verdict' "$out/swarm.out" 2>/dev/null)"
rows=$(($(wc -l <"$out/report/rounds.csv" 2>/dev/null || echo 1) - 1))
last_round=$(awk -F, 'NR > 1 { r = $1 } END { print r + 0 }' \
    "$out/report/rounds.csv" 2>/dev/null)
echo "   $rows round rows, last round $last_round of $rounds;" \
     "swarm: $(jq -r '"\(.vanished) vanished, \(.reconnects) came back,
        \(.tasks) tasks, \(.updates) updates, \(.transfers_down_done)
        downloads, \(.chunks_down) chunks"' "$out/swarm.json" 2>/dev/null |
        tr -s ' \n' ' ')"

status=0
if [[ $lsan == 1 ]]; then
    reports=$(grep -cE "LeakSanitizer|AddressSanitizer|runtime error:" \
        "$out/coord.log")
    if [[ $coord_rc == 0 && $reports -eq 0 && $last_round -eq $rounds ]]; then
        echo "met    no leak: the ASan coordinator ran $rounds rounds with" \
             "$devices devices, exited 0 (LeakSanitizer ran at exit), no" \
             "report in $out/coord.log"
    else
        echo "MISSED no leak: coordinator exit $coord_rc, $reports" \
             "sanitizer report line(s), last round $last_round of $rounds" \
             "(see $out/coord.log)"
        grep -m 20 -A 12 -E "ERROR: (LeakSanitizer|AddressSanitizer)|runtime error:" \
            "$out/coord.log"
        status=1
    fi
    exit $status
fi

# RSS at round 50 and at the last round: the row whose round number it is
# (the sampler numbers rows; a retried attempt adds a row)
rss_at() { # ROUND -> "rss_kb hwm_kb" of the first row of that round
    awk -F, -v r="$1" 'NR > 1 && $1 == r { print NR - 1; exit }' \
        "$out/report/rounds.csv" 2>/dev/null | {
        read -r row || exit 0
        awk -v row="$row" '$1 == row { print $2, $3 }' "$out/rss.rounds"
    }
}
read -r r50 _ <<<"$(rss_at 50)"
read -r rl hl <<<"$(rss_at "$rounds")"
# The coordinator exits right after its last row; when no sample came
# between that row and the exit, the last sample (taken after the row of
# the round before, so during the last round) stands for it, and says so.
last_note=""
if [[ -z ${rl:-} && $last_round == "$rounds" && -s $out/rss.rounds.last &&
      $(awk 'END { print $1 + 0 }' "$out/rss.rounds") -eq $((rows - 1)) ]]; then
    read -r rl hl <"$out/rss.rounds.last"
    last_note=" (during round $rounds: the last sample before the exit)"
fi
printf '%8s %10s %10s\n' round rss_MiB hwm_MiB
awk -v n="$rounds" 'NR == 1 || $1 % 25 == 0 || $1 == n {
    printf "%8d %10.1f %10.1f\n", $1, $2 / 1024, $3 / 1024 }' "$out/rss.rounds"
if [[ -n ${r50:-} && -n ${rl:-} && $coord_rc == 0 ]]; then
    verdict=$(awk -v a="$r50" -v b="$rl" 'BEGIN { d = (b - a) / a * 100
        w = (d <= 10 && d >= -10) ? "met" : "MISSED"; printf "%s %+.1f", w, d }')
    read -r word pct <<<"$verdict"
    printf '%-6s RSS at round %d within 10%% of round 50: %.1f MiB at 50,' \
        "$word" "$rounds" "$(awk -v k="$r50" 'BEGIN { print k / 1024 }')"
    printf ' %.1f MiB at %d%s (%s%%; peak %.1f MiB)\n' \
        "$(awk -v k="$rl" 'BEGIN { print k / 1024 }')" "$rounds" \
        "$last_note" "$pct" "$(awk -v k="$hl" 'BEGIN { print k / 1024 }')"
    [[ $word == met ]] || status=1
else
    echo "MISSED RSS at round $rounds within 10% of round 50: not measured" \
         "(coordinator exit $coord_rc, last round $last_round)"
    status=1
fi
python3 - "$out" "$rounds" "$devices" "$vanish" "${r50:-}" "${rl:-}" \
    "$coord_rc" "$swarm_rc" "$status" <<'EOF'
import json, os, sys
out, rounds, devices, vanish, r50, rl, crc, src, st = sys.argv[1:10]
rows = []
with open(os.path.join(out, "rss.rounds")) as f:
    for line in f:
        p = line.split()
        if len(p) == 4:
            rows.append({"row": int(p[0]), "rss_kb": int(p[1]),
                         "hwm_kb": int(p[2]), "seconds": int(p[3])})
num = lambda s: int(s) if s else None
json.dump({"devices": int(devices), "rounds": int(rounds),
           "vanish": float(vanish), "rss_kb_round_50": num(r50),
           "rss_kb_last_round": num(rl), "coordinator_exit": int(crc),
           "swarm_exit": int(src), "target_met": st == "0",
           "rss_by_row": rows},
          open(os.path.join(out, "soak.json"), "w"), indent=1)
EOF
echo "wrote $out/soak.json, $out/rss.rounds"
exit $status
