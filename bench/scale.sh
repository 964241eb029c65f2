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
#                  [--rss-cap-mb 12288] [--max-seconds 1800] [--no-baseline]
#                  [--bin DIR] [--swarm-args "..."] [--coordinator-args "..."]
#
# --rss-cap-mb protects the machine: a coordinator whose RSS passes the cap
# is stopped and its N is reported as "rss cap". Every process runs under a
# `timeout` watchdog; an EXIT trap stops whatever is still running.
set -u
cd "$(dirname "$0")/.."

list="10 100 1000 5000 10000"
rounds=3 hidden=1024,192 out=out/bench-scale rss_cap_mb=12288
max_s=1800 baseline=1 bin=build swarm_args="" coord_args=""
data=${FL_DATA:-/usr/share/datasets/fashion-mnist}
while [[ $# -gt 0 ]]; do
    case $1 in
    --quick) list="10 100 1000"; shift ;;
    --devices) list=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --hidden) hidden=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --rss-cap-mb) rss_cap_mb=$2; shift 2 ;;
    --max-seconds) max_s=$2; shift 2 ;;
    --no-baseline) baseline=0; shift ;;
    --bin) bin=$2; shift 2 ;;
    --swarm-args) swarm_args=$2; shift 2 ;;
    --coordinator-args) coord_args=$2; shift 2 ;;
    -h|--help) sed -n '2,31p' "$0"; exit 0 ;;
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

# sample_rss PID FILE CAP_KB : every 0.2 s write "hwm_kb rss_kb" of PID
# into FILE; stop PID (and write "cap" into FILE.cap) when RSS > CAP_KB.
sample_rss() {
    local pid=$1 file=$2 cap=$3 hwm rss
    while [[ -r /proc/$pid/status ]]; do
        hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)
        rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)
        [[ -n $hwm ]] && echo "$hwm ${rss:-0}" >"$file.tmp" &&
            mv -f "$file.tmp" "$file"
        if [[ -n $rss && $rss -gt $cap ]]; then
            echo cap >"$file.cap"
            kill -TERM "$pid" 2>/dev/null
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
        --max-seconds "$max_s" --report "$2/swarm.json" $swarm_args \
        >"$2/swarm.out" 2>"$2/swarm.log" &
    pid=$!
    PIDS+=("$pid")
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
    sample_rss "$pid" "$dir/rss" "$((rss_cap_mb * 1024))" &
    spid=$!
    run_swarm "$n" "$dir"
    rc=0
    wait "$cpid" || rc=$?
    echo "$rc" >"$dir/coord.rc"
    wait "$spid" 2>/dev/null
}

# run_router N DIR DIM FRACTION : baseline router + swarm
run_router() {
    local n=$1 dir=$2 dim=$3 frac=$4 rpid rc
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
    run_swarm "$n" "$dir"
    rc=0
    wait "$rpid" || rc=$?
    echo "$rc" >"$dir/router.rc"
}

# parameters of the MLP 784-HIDDEN-10
model_dim=$(echo "784,$hidden,10" | awk -F, '{ for (i = 2; i <= NF; i++)
    s += $(i - 1) * $i + $i; print s }')
mkdir -p "$out"
echo "== decode+aggregate baseline (fedcomp-bench compress, n = $model_dim)"
"$bin/fedcomp-bench" compress --n "$model_dim" --density 0.01 --json \
    --no-laplace >"$out/bench-compress.jsonl" ||
    echo "scale.sh: fedcomp-bench compress failed" >&2

for n in $list; do
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

def read_int(path, default=None):
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return default

dec_agg_ns = None
try:
    with open(os.path.join(out, "bench-compress.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if (r.get("values") == "fp16" and r.get("codec") == "zstd-1"
                    and r.get("topk") == "exact" and r.get("density") == 0.01):
                dec_agg_ns = r["decode_aggregate_ns_per_nnz"]
                k_bench = r["k"]
except (OSError, ValueError, KeyError):
    pass

rows, summary = [], []
for n in ns:
    d = os.path.join(out, "n%d" % n)
    sw = load_json(os.path.join(d, "coord", "swarm.json")) or {}
    rt = load_json(os.path.join(d, "router", "router.json"))
    rss = None
    try:
        with open(os.path.join(d, "coord", "rss")) as f:
            rss = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    capped = os.path.exists(os.path.join(d, "coord", "rss.cap"))
    dim, k = sw.get("dimension", 0), sw.get("k", 0)
    dec_agg_us = dec_agg_ns * k / 1e3 if dec_agg_ns and k else None
    base_us = rt["cpu_us_per_msg"] if rt else None
    base_rss = rt["peak_rss_kb"] if rt else None
    cpu_tot = upd_tot = cpu_ss = upd_ss = 0.0
    try:
        with open(os.path.join(d, "coord", "report", "rounds.csv")) as f:
            for r in csv.DictReader(f):
                rep = int(r["reported"])
                cpu = float(r["cpu_s"])
                us = cpu * 1e6 / rep if rep else None
                rows.append({
                    "devices": n, "round": int(r["round"]),
                    "attempt": int(r["attempt"]), "reported": rep,
                    "wall_s": float(r["wall_s"]), "cpu_s": cpu,
                    "agg_s": float(r["agg_s"]),
                    "up_wire_bytes": int(r["up_wire_bytes"]),
                    "down_wire_bytes": int(r["down_wire_bytes"]),
                    "other_rx_bytes": int(r["other_rx_bytes"]),
                    "cpu_us_per_update": us,
                    "coord_peak_rss_kb": rss,
                    "baseline_us_per_msg": base_us,
                    "baseline_peak_rss_kb": base_rss,
                    "decode_aggregate_us_per_update": dec_agg_us})
                cpu_tot += cpu
                upd_tot += rep
                if int(r["round"]) >= 2:
                    cpu_ss += cpu
                    upd_ss += rep
    except (OSError, ValueError, KeyError):
        pass
    complete = (read_int(os.path.join(d, "coord", "swarm.rc")) == 0 and
                read_int(os.path.join(d, "coord", "coord.rc")) == 0 and
                sw.get("ok") is True and not capped)
    summary.append({
        "devices": n, "complete": complete, "rss_capped": capped,
        "swarm_verdict": sw.get("verdict"), "dimension": dim, "k": k,
        "model_bytes": dim * 4,
        "updates": int(upd_tot),
        "cpu_us_per_update": cpu_tot * 1e6 / upd_tot if upd_tot else None,
        "cpu_us_per_update_rounds_2plus":
            cpu_ss * 1e6 / upd_ss if upd_ss else None,
        "coord_peak_rss_kb": rss,
        "baseline_us_per_msg": base_us,
        "baseline_us_per_update": rt["cpu_us_per_update"] if rt else None,
        "baseline_peak_rss_kb": base_rss,
        "baseline_ok": rt["ok"] if rt else None,
        "decode_aggregate_us_per_update": dec_agg_us,
        "swarm_join_ms_max": sw.get("join_ms_max"),
        "swarm_cpu_s": sw.get("cpu_s")})

fields = ["devices", "round", "attempt", "reported", "wall_s", "cpu_s",
          "agg_s", "up_wire_bytes", "down_wire_bytes", "other_rx_bytes",
          "cpu_us_per_update", "coord_peak_rss_kb", "baseline_us_per_msg",
          "baseline_peak_rss_kb", "decode_aggregate_us_per_update"]
with open(os.path.join(out, "scale.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=fields)
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else
                        ("%.3f" % v if isinstance(v, float) else v))
                    for k, v in r.items()})

def fmt(v, spec="%.1f"):
    return "-" if v is None else spec % v

print()
print("model %s, %d rounds, density 1%%, fp16, zstd-1; evaluation on 100 "
      "test images only (--eval-limit 100)" % (hidden, rounds))
print("%7s %5s %7s %8s %8s %10s %12s %12s %9s" % (
    "N", "round", "wall_s", "cpu_s", "us/upd", "up_MiB", "down_MiB",
    "rss_MiB", "base_us"))
for r in rows:
    print("%7d %5d %7.2f %8.3f %8s %10.1f %12.1f %12s %9s" % (
        r["devices"], r["round"], r["wall_s"], r["cpu_s"],
        fmt(r["cpu_us_per_update"]), r["up_wire_bytes"] / 2**20,
        r["down_wire_bytes"] / 2**20,
        fmt(r["coord_peak_rss_kb"] and r["coord_peak_rss_kb"] / 1024.0),
        fmt(r["baseline_us_per_msg"])))
print()
print("%7s %9s %9s %12s %10s %10s %10s %9s" % (
    "N", "complete", "us/upd", "us/upd(r2+)", "base_us", "dec+agg_us",
    "rss_MiB", "base_MiB"))
for s in summary:
    print("%7d %9s %9s %12s %10s %10s %10s %9s" % (
        s["devices"], "yes" if s["complete"] else
        ("rss cap" if s["rss_capped"] else "no"),
        fmt(s["cpu_us_per_update"]),
        fmt(s["cpu_us_per_update_rounds_2plus"]),
        fmt(s["baseline_us_per_msg"]),
        fmt(s["decode_aggregate_us_per_update"]),
        fmt(s["coord_peak_rss_kb"] and s["coord_peak_rss_kb"] / 1024.0),
        fmt(s["baseline_peak_rss_kb"] and
            s["baseline_peak_rss_kb"] / 1024.0)))

by_n = {s["devices"]: s for s in summary}
big = by_n.get(10000) or (summary[-1] if summary else None)
targets = []

def target(name, value, limit, met, note=""):
    targets.append({"target": name, "value": value, "limit": limit,
                    "met": met, "note": note})

if big:
    n = big["devices"]
    cpu, base, dec = (big["cpu_us_per_update"], big["baseline_us_per_msg"],
                      big["decode_aggregate_us_per_update"])
    if cpu is not None and base is not None and dec:
        target("T1 N=%d: coord us/update - baseline us/msg <= 1.2 x "
               "decode+aggregate us/update" % n, cpu - base, 1.2 * dec,
               cpu - base <= 1.2 * dec)
    else:
        target("T1 N=%d: coord us/update - baseline us/msg" % n, None, None,
               False, "not measured")
small = by_n.get(100)
if big and small and big["cpu_us_per_update"] and small["cpu_us_per_update"]:
    v, lim = big["cpu_us_per_update"], 1.2 * small["cpu_us_per_update"]
    target("T2 us/update at N=%d <= 1.2 x at N=100" % big["devices"], v, lim,
           v <= lim)
else:
    target("T2 us/update at N=10000 <= 1.2 x at N=100", None, None, False,
           "needs N=100 and a larger N")
ten = by_n.get(10000)
target("T3 10,000 devices complete", 1 if ten and ten["complete"] else 0, 1,
       bool(ten and ten["complete"]),
       "" if ten else "N=10000 not in this run")
if ten and ten["coord_peak_rss_kb"] and ten["baseline_peak_rss_kb"]:
    v = (ten["coord_peak_rss_kb"] - ten["baseline_peak_rss_kb"]) * 1024.0
    lim = 4.0 * ten["model_bytes"] + 64 * 2**20
    target("T4 N=10000: coord RSS - baseline RSS <= 4 x model bytes + "
           "64 MiB (bytes)", v, lim, v <= lim)
else:
    target("T4 N=10000: coord RSS - baseline RSS", None, None, False,
           "not measured")
print()
for t in targets:
    print("%-4s %s: %s (limit %s)%s" % (
        "MET" if t["met"] else "NOT", t["target"], fmt(t["value"], "%.1f"),
        fmt(t["limit"], "%.1f"), " - " + t["note"] if t["note"] else ""))
with open(os.path.join(out, "scale.json"), "w") as f:
    json.dump({"model_hidden": hidden, "rounds": rounds,
               "eval_limit": 100, "decode_aggregate_ns_per_nnz": dec_agg_ns,
               "summary": summary, "rows": rows, "targets": targets}, f,
              indent=1)
print("\nwrote %s and %s" % (os.path.join(out, "scale.csv"),
                             os.path.join(out, "scale.json")))
EOF
