#!/usr/bin/env bash
# Scale benchmark (make bench-scale): one coordinator against
# fedcomp-swarm playing N devices, for N in a list, with a ~1M-parameter
# model (784-1024-192-10 = 1,002,570 floats), density 1%, fp16, zstd-1,
# 3 rounds, every device in every round (--fraction 1 --quorum 1).
# Evaluation is not what is measured: --eval-limit 100 (noted below).
# Plaintext (--insecure): the cost of CURVE is not part of this benchmark.
#
# Per N and round: wall time, coordinator CPU (rounds.csv cpu_s), bytes up
# and down, CPU us per update, coordinator peak RSS (VmHWM sampled from
# /proc while it runs). Baselines measured in the same run:
#   - fedcomp-router-baseline with the same swarm: CPU us per message and
#     peak RSS of a ROUTER that only counts and answers precomputed frames;
#   - fedcomp-bench compress: decode+aggregate ns per nonzero of the same
#     update (n = model size, 1%, fp16, zstd-1, exact top-k) x k.
# Targets printed at the end:
#   T1 coord us/update - baseline us/msg <= 1.2 x decode+aggregate us/update
#   T2 us/update at N=10,000 <= 1.2 x us/update at N=100
#   T3 10,000 devices complete (swarm verdict ok, coordinator exit 0)
#   T4 coord RSS - baseline RSS <= 4 x model bytes + 64 MiB at N=10,000
# Outputs OUT/scale.csv (one row per N and round) and OUT/scale.json.
#
#   bench/scale.sh [--quick] [--devices "10 100 1000 5000 10000"]
#                  [--rounds 3] [--hidden 1024,192] [--out out/bench-scale]
#                  [--rss-cap-mb 12288] [--mem-floor-mb 3072]
#                  [--max-seconds 1800] [--no-baseline]
#                  [--bin DIR] [--swarm-args "..."] [--coordinator-args "..."]
#                  [--report-only]  (recompute the tables from OUT's files)
#
# The machine is protected: a coordinator whose RSS passes --rss-cap-mb,
# or a run during which MemAvailable drops under --mem-floor-mb, is stopped
# (coordinator or router and swarm) and its N is reported as "rss cap" /
# "mem floor". Every process runs under a `timeout` watchdog; an EXIT trap
# stops whatever is still running.
#
# The swarm runs with --hello-retry-ms 10000: its first Hello waits in the
# socket's pipe until the connection is up (no ZMQ_IMMEDIATE), so it is not
# lost; with the protocol's 1 s retry, joins slowed by the listen backlog
# (see docs/scale.md) produce duplicate Hellos, each answered with a
# Welcome (and by the router baseline with its open Task again).
set -u
cd "$(dirname "$0")/.."

list="10 100 1000 5000 10000"
rounds=3 hidden=1024,192 out=out/bench-scale rss_cap_mb=12288 mem_floor_mb=3072
max_s=1800 baseline=1 bin=build swarm_args="" coord_args="" report_only=0
data=${FL_DATA:-/usr/share/datasets/fashion-mnist}
while [[ $# -gt 0 ]]; do
    case $1 in
    --quick) list="10 100 1000"; shift ;;
    --devices) list=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --hidden) hidden=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --rss-cap-mb) rss_cap_mb=$2; shift 2 ;;
    --mem-floor-mb) mem_floor_mb=$2; shift 2 ;;
    --max-seconds) max_s=$2; shift 2 ;;
    --no-baseline) baseline=0; shift ;;
    --report-only) report_only=1; shift ;;
    --bin) bin=$2; shift 2 ;;
    --swarm-args) swarm_args=$2; shift 2 ;;
    --coordinator-args) coord_args=$2; shift 2 ;;
    -h|--help) sed -n '2,42p' "$0"; exit 0 ;;
    *) echo "scale.sh: unknown option '$1'" >&2; exit 2 ;;
    esac
done
for p in fedcomp-coordinator fedcomp-swarm fedcomp-router-baseline \
         fedcomp-bench; do
    [[ -x $bin/$p ]] || { echo "scale.sh: $bin/$p not built" >&2; exit 2; }
done

PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
    done
    wait 2>/dev/null
    PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_file FILE PID : bounded poll (60 s) until FILE is non-empty; fails
# when PID has exited first.
wait_file() {
    local i
    for ((i = 0; i < 600; i++)); do
        [[ -s $1 ]] && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# stop_run PID DIR : stop the server PID and the swarm of DIR (the process
# group of its watchdog)
stop_run() {
    kill -TERM "$1" 2>/dev/null
    [[ -s $2/swarm.pid ]] && kill -TERM -- "-$(cat "$2/swarm.pid")" 2>/dev/null
}

# sample_rss PID FILE CAP_KB DIR : every 0.2 s write "hwm_kb rss_kb" of PID
# into FILE; stop the run (and write FILE.cap) when RSS > CAP_KB or when
# MemAvailable < the floor.
sample_rss() {
    local pid=$1 file=$2 cap=$3 dir=$4 hwm rss avail
    while [[ -r /proc/$pid/status ]]; do
        hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)
        rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)
        avail=$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo)
        [[ -n $hwm ]] && echo "$hwm ${rss:-0}" >"$file.tmp" &&
            mv -f "$file.tmp" "$file"
        if [[ -n $rss && $rss -gt $cap ]]; then
            echo "rss cap" >"$file.cap"
            stop_run "$pid" "$dir"
            break
        fi
        if [[ -n $avail && $avail -lt $((mem_floor_mb * 1024)) ]]; then
            echo "mem floor" >"$file.cap"
            stop_run "$pid" "$dir"
            break
        fi
        sleep 0.2
    done
}

# the program inside a `timeout` wrapper
child_of() {
    local i c
    for ((i = 0; i < 100; i++)); do
        c=$(cat "/proc/$1/task/$1/children" 2>/dev/null | awk '{ print $1 }')
        [[ -n $c ]] && { echo "$c"; return 0; }
        sleep 0.05
    done
    return 1
}

# run_swarm N DIR : the swarm against DIR/endpoint; exit code in DIR/swarm.rc
run_swarm() {
    local rc=0 pid
    timeout -s TERM "$((max_s + 60))" "$bin/fedcomp-swarm" \
        --connect "$(head -1 "$2/endpoint")" --devices "$1" \
        --max-seconds "$max_s" --hello-retry-ms 10000 \
        --report "$2/swarm.json" $swarm_args \
        >"$2/swarm.out" 2>"$2/swarm.log" &
    pid=$!
    PIDS+=("$pid")
    echo "$pid" >"$2/swarm.pid"
    wait "$pid" || rc=$?
    echo "$rc" >"$2/swarm.rc"
}

# run_coord N DIR : coordinator + swarm; leaves files in DIR
run_coord() {
    local n=$1 dir=$2 cpid pid spid rc
    mkdir -p "$dir"
    timeout -s TERM "$((max_s + 120))" "$bin/fedcomp-coordinator" \
        --bind 'tcp://127.0.0.1:*' --endpoint-file "$dir/endpoint" \
        --report-dir "$dir/report" --data-dir "$data" \
        --hidden "$hidden" --density 0.01 --values fp16 --codec zstd:1 \
        --rounds "$rounds" --min-devices "$n" --fraction 1 --quorum 1 \
        --eval-limit 100 --round-timeout "$max_s" --wait-timeout "$max_s" \
        --insecure --max-devices-connected "$n" \
        --log-level notice $coord_args \
        >"$dir/coord.out" 2>"$dir/coord.log" &
    cpid=$!
    PIDS+=("$cpid")
    if ! wait_file "$dir/endpoint" "$cpid"; then
        echo "coordinator did not start: $(tail -3 "$dir/coord.log")" >&2
        return 1
    fi
    pid=$(child_of "$cpid") || pid=$cpid
    sample_rss "$pid" "$dir/rss" "$((rss_cap_mb * 1024))" "$dir" &
    spid=$!
    run_swarm "$n" "$dir"
    rc=0
    wait "$cpid" || rc=$?
    echo "$rc" >"$dir/coord.rc"
    wait "$spid" 2>/dev/null
}

# run_router N DIR DIM FRACTION : baseline router + swarm
run_router() {
    local n=$1 dir=$2 dim=$3 frac=$4 rpid rc pid spid
    mkdir -p "$dir"
    timeout -s TERM "$((max_s + 120))" "$bin/fedcomp-router-baseline" \
        --endpoint-file "$dir/endpoint" --devices "$n" --dimension "$dim" \
        --rounds "$rounds" --delta-fraction "$frac" --density 0.01 \
        --values fp16 --codec zstd:1 --max-seconds "$max_s" \
        --report "$dir/router.json" >"$dir/router.out" 2>"$dir/router.log" &
    rpid=$!
    PIDS+=("$rpid")
    if ! wait_file "$dir/endpoint" "$rpid"; then
        echo "router baseline did not start: $(tail -3 "$dir/router.log")" >&2
        return 1
    fi
    pid=$(child_of "$rpid") || pid=$rpid
    sample_rss "$pid" "$dir/rss" "$((rss_cap_mb * 1024))" "$dir" &
    spid=$!
    run_swarm "$n" "$dir"
    rc=0
    wait "$rpid" || rc=$?
    echo "$rc" >"$dir/router.rc"
    wait "$spid" 2>/dev/null
}

[[ $report_only == 1 ]] && list_run="" || list_run=$list

# parameters of the MLP 784-HIDDEN-10
model_dim=$(echo "784,$hidden,10" | awk -F, '{ for (i = 2; i <= NF; i++)
    s += $(i - 1) * $i + $i; print s }')
mkdir -p "$out"
if [[ $report_only == 0 ]]; then
    echo "== decode+aggregate baseline (fedcomp-bench compress, n = $model_dim)"
    "$bin/fedcomp-bench" compress --n "$model_dim" --density 0.01 --json \
        --no-laplace >"$out/bench-compress.jsonl" ||
        echo "scale.sh: fedcomp-bench compress failed" >&2
fi

for n in $list_run; do
    echo "== N = $n: coordinator + swarm"
    rm -rf "$out/n$n"
    t0=$(date +%s)
    run_coord "$n" "$out/n$n/coord"
    echo "   swarm exit $(cat "$out/n$n/coord/swarm.rc" 2>/dev/null)," \
         "coordinator exit $(cat "$out/n$n/coord/coord.rc" 2>/dev/null)," \
         "$(($(date +%s) - t0)) s; $(grep '^verdict' \
            "$out/n$n/coord/swarm.out" 2>/dev/null)"
    [[ $baseline == 1 ]] || continue
    dim=$(jq -r '.dimension // 0' "$out/n$n/coord/swarm.json" 2>/dev/null)
    k=$(jq -r '.k // 0' "$out/n$n/coord/swarm.json" 2>/dev/null)
    if [[ -z $dim || $dim == 0 ]]; then
        echo "   no dimension from the swarm: baseline skipped"
        continue
    fi
    # the swarm sends 4 distinct updates: the model changes where any does
    frac=$(awk -v k="$k" -v d="$dim" 'BEGIN { printf "%.6f", 1 - (1 - k / d) ^ 4 }')
    echo "== N = $n: router baseline + swarm"
    t0=$(date +%s)
    run_router "$n" "$out/n$n/router" "$dim" "$frac"
    echo "   swarm exit $(cat "$out/n$n/router/swarm.rc" 2>/dev/null)," \
         "router exit $(cat "$out/n$n/router/router.rc" 2>/dev/null)," \
         "$(($(date +%s) - t0)) s"
done

python3 - "$out" "$rounds" "$hidden" $list <<'EOF'
import csv, json, os, sys

out, rounds, hidden = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ns = [int(x) for x in sys.argv[4:]]

def load_json(path):
    try:
        with open(path) as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return None

def read_first(path, conv=int):
    try:
        with open(path) as f:
            return conv(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None

def stopped(d):
    try:
        with open(os.path.join(d, "rss.cap")) as f:
            return f.read().strip()
    except OSError:
        return None

dec_agg_ns = None
try:
    with open(os.path.join(out, "bench-compress.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if (r.get("values") == "fp16" and r.get("codec") == "zstd-1"
                    and r.get("topk") == "exact"
                    and abs(r.get("density", 0) - 0.01) < 1e-9):
                dec_agg_ns = r["decode_aggregate_ns_per_nnz"]
except (OSError, ValueError, KeyError):
    pass

rows, summary = [], []
for n in ns:
    d = os.path.join(out, "n%d" % n)
    cdir, rdir = os.path.join(d, "coord"), os.path.join(d, "router")
    sw = load_json(os.path.join(cdir, "swarm.json")) or {}
    rsw = load_json(os.path.join(rdir, "swarm.json")) or {}
    rt = load_json(os.path.join(rdir, "router.json"))
    rss = read_first(os.path.join(cdir, "rss"))
    cut = stopped(cdir)
    dim, k = sw.get("dimension", 0), sw.get("k", 0)
    dec_agg_us = dec_agg_ns * k / 1e3 if dec_agg_ns and k else None
    base_msg = rt["cpu_us_per_msg"] if rt else None
    base_upd = rt["cpu_us_per_update"] if rt else None
    base_rss = rt["peak_rss_kb"] if rt else None
    cpu_tot = upd_tot = cpu_ss = upd_ss = 0.0
    try:
        with open(os.path.join(cdir, "report", "rounds.csv")) as f:
            for r in csv.DictReader(f):
                rep = int(r["reported"])
                cpu = float(r["cpu_s"])
                rows.append({
                    "devices": n, "round": int(r["round"]),
                    "attempt": int(r["attempt"]), "reported": rep,
                    "wall_s": float(r["wall_s"]), "cpu_s": cpu,
                    "agg_s": float(r["agg_s"]),
                    "up_wire_bytes": int(r["up_wire_bytes"]),
                    "down_wire_bytes": int(r["down_wire_bytes"]),
                    "other_rx_bytes": int(r["other_rx_bytes"]),
                    "cpu_us_per_update": cpu * 1e6 / rep if rep else None,
                    "coord_peak_rss_kb": rss,
                    "baseline_us_per_msg": base_msg,
                    "baseline_us_per_update": base_upd,
                    "baseline_peak_rss_kb": base_rss,
                    "decode_aggregate_us_per_update": dec_agg_us})
                cpu_tot += cpu
                upd_tot += rep
                if int(r["round"]) >= 2:
                    cpu_ss += cpu
                    upd_ss += rep
    except (OSError, ValueError, KeyError):
        pass
    complete = (read_first(os.path.join(cdir, "swarm.rc")) == 0 and
                read_first(os.path.join(cdir, "coord.rc")) == 0 and
                sw.get("ok") is True and cut is None)
    summary.append({
        "devices": n, "complete": complete, "stopped": cut,
        "swarm_verdict": sw.get("verdict"), "dimension": dim, "k": k,
        "model_bytes": dim * 4, "updates": int(upd_tot),
        "cpu_us_per_update": cpu_tot * 1e6 / upd_tot if upd_tot else None,
        "cpu_us_per_update_rounds_2plus":
            cpu_ss * 1e6 / upd_ss if upd_ss else None,
        "coord_peak_rss_kb": rss,
        "baseline_us_per_msg": base_msg,
        "baseline_us_per_update": base_upd,
        "baseline_peak_rss_kb": base_rss,
        "baseline_ok": rt["ok"] if rt else None,
        "baseline_stopped": stopped(rdir),
        "decode_aggregate_us_per_update": dec_agg_us,
        "swarm_join_ms_max": sw.get("join_ms_max"),
        "swarm_cpu_s": sw.get("cpu_s"),
        "swarm_peak_rss_kb_sum": sw.get("peak_rss_kb_sum"),
        "baseline_swarm_peak_rss_kb_sum": rsw.get("peak_rss_kb_sum")})

fields = ["devices", "round", "attempt", "reported", "wall_s", "cpu_s",
          "agg_s", "up_wire_bytes", "down_wire_bytes", "other_rx_bytes",
          "cpu_us_per_update", "coord_peak_rss_kb", "baseline_us_per_msg",
          "baseline_us_per_update", "baseline_peak_rss_kb",
          "decode_aggregate_us_per_update"]
with open(os.path.join(out, "scale.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=fields)
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else
                        ("%.3f" % v if isinstance(v, float) else v))
                    for k, v in r.items()})

def fmt(v, spec="%.1f"):
    return "-" if v is None else spec % v

def mib(kb):
    return None if kb is None else kb / 1024.0

print()
print("model 784-%s-10, %d rounds, density 1%%, fp16, zstd-1, plaintext; "
      "evaluation on 100 test images only (--eval-limit 100)" %
      (hidden.replace(",", "-"), rounds))
print("%7s %5s %7s %8s %8s %8s %10s %9s" % (
    "N", "round", "wall_s", "cpu_s", "us/upd", "up_MiB", "down_MiB",
    "rss_MiB"))
for r in rows:
    print("%7d %5d %7.2f %8.3f %8s %8.1f %10.1f %9s" % (
        r["devices"], r["round"], r["wall_s"], r["cpu_s"],
        fmt(r["cpu_us_per_update"]), r["up_wire_bytes"] / 2**20,
        r["down_wire_bytes"] / 2**20, fmt(mib(r["coord_peak_rss_kb"]))))
print()
print("%7s %9s %8s %8s %9s %9s %9s %8s %8s %9s" % (
    "N", "complete", "us/upd", "us/upd", "base_us", "base_us", "dec+agg",
    "rss_MiB", "base_MiB", "swarm_MiB"))
print("%7s %9s %8s %8s %9s %9s %9s %8s %8s %9s" % (
    "", "", "all", "r2+", "/msg", "/update", "us/upd", "coord", "router",
    "rss"))
for s in summary:
    print("%7d %9s %8s %8s %9s %9s %9s %8s %8s %9s" % (
        s["devices"], "yes" if s["complete"] else (s["stopped"] or "no"),
        fmt(s["cpu_us_per_update"]),
        fmt(s["cpu_us_per_update_rounds_2plus"]),
        fmt(s["baseline_us_per_msg"]), fmt(s["baseline_us_per_update"]),
        fmt(s["decode_aggregate_us_per_update"]),
        fmt(mib(s["coord_peak_rss_kb"])),
        fmt(mib(s["baseline_peak_rss_kb"])),
        fmt(mib(s["swarm_peak_rss_kb_sum"]))))

by_n = {s["devices"]: s for s in summary}
done = [s for s in summary if s["cpu_us_per_update"] is not None]
big = by_n.get(10000) if by_n.get(10000) in done else (done[-1] if done
                                                         else None)
targets = []
other = ("N=10000 did not complete; largest completed N shown"
         if 10000 in by_n else "N=10000 not in this run; largest N shown")

def target(name, value, limit, met, note=""):
    targets.append({"target": name, "value": value, "limit": limit,
                    "met": met, "note": note})

if big and big["baseline_us_per_msg"] is not None and \
        big["decode_aggregate_us_per_update"]:
    n = big["devices"]
    v = big["cpu_us_per_update"] - big["baseline_us_per_msg"]
    lim = 1.2 * big["decode_aggregate_us_per_update"]
    note = "" if n == 10000 else other
    target("T1 N=%d: coord us/update - baseline us/msg <= 1.2 x "
           "decode+aggregate us/update" % n, v, lim, v <= lim, note)
    v2 = big["cpu_us_per_update"] - big["baseline_us_per_update"]
    target("T1' N=%d: the same against the baseline's us/update" % n, v2,
           lim, v2 <= lim, "informative")
else:
    target("T1 coord us/update - baseline us/msg", None, None, False,
           "not measured")
small = by_n.get(100)
if big and small and small["cpu_us_per_update"] and big is not small:
    v, lim = big["cpu_us_per_update"], 1.2 * small["cpu_us_per_update"]
    target("T2 us/update at N=%d <= 1.2 x at N=100" % big["devices"], v, lim,
           v <= lim, "" if big["devices"] == 10000 else other)
else:
    target("T2 us/update at N=10000 <= 1.2 x at N=100", None, None, False,
           "needs N=100 and a larger N")
ten = by_n.get(10000)
target("T3 10,000 devices complete", 1 if ten and ten["complete"] else 0, 1,
       bool(ten and ten["complete"]),
       ("stopped: " + ten["stopped"]) if ten and ten["stopped"]
       else ("" if ten else "N=10000 not in this run"))
if ten and ten["coord_peak_rss_kb"] and ten["baseline_peak_rss_kb"]:
    v = (ten["coord_peak_rss_kb"] - ten["baseline_peak_rss_kb"]) * 1024.0
    lim = 4.0 * ten["model_bytes"] + 64 * 2**20
    note = ("run stopped: " + ten["stopped"] + "; RSS at the stop"
            if ten["stopped"] else
            "" if ten["complete"] else "the run did not complete")
    target("T4 N=10000: coord RSS - baseline RSS <= 4 x model bytes + "
           "64 MiB (MiB)", v / 2**20, lim / 2**20,
           v <= lim and ten["complete"], note)
else:
    target("T4 N=10000: coord RSS - baseline RSS", None, None, False,
           "not measured")
print()
for t in targets:
    print("%-4s %s: %s (limit %s)%s" % (
        "MET" if t["met"] else "NOT", t["target"], fmt(t["value"]),
        fmt(t["limit"]), " - " + t["note"] if t["note"] else ""))
with open(os.path.join(out, "scale.json"), "w") as f:
    json.dump({"model_hidden": hidden, "rounds": rounds,
               "eval_limit": 100, "decode_aggregate_ns_per_nnz": dec_agg_ns,
               "summary": summary, "rows": rows, "targets": targets}, f,
              indent=1)
print("\nwrote %s and %s" % (os.path.join(out, "scale.csv"),
                             os.path.join(out, "scale.json")))
EOF
