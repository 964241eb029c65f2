#!/usr/bin/env bash
# Slow edge links, for real: a coordinator and N workers, each in its own
# network namespace, every worker on its own veth link shaped with tc tbf
# (deploy/netns/netns.sh): default 8 workers, 1 Mbit/s up, 10 Mbit/s down.
# The accuracy benchmark's task (MLP 784-256-128-10, IID, 1 local epoch,
# batch 32, lr 0.05, momentum 0.9, server lr 1, full participation), for
# dense fp32, top-k 1% and top-k 0.1% (fp16, zstd:1, error feedback).
#
# Per round and configuration: download, on-device compute, upload and
# round wall time; time to reach the dense run's final accuracy minus 1
# point. Writes OUT/summary.txt, OUT/summary.csv (one row per config) and
# OUT/rounds.csv (one row per config and round); logs and reports of each
# run in OUT/<config>/.
#
#   bench/slowlink.sh [--rounds R] [--workers N] [--up RATE] [--down RATE]
#                     [--configs "dense topk1 topk0.1"] [--out DIR]
#                     [--bin DIR] [--check-seconds S] [--report-only]
#                     [--coordinator-args "ARGS"]
#   R default 30 (--rounds 5 for a quick run), N 8, RATE tc syntax
#   (1mbit, 10mbit), OUT out/slowlink, DIR the programs (FL_BIN, default
#   build). --report-only: no runs, the tables from what OUT holds.
#   Needs root, 'ip netns', tc and python3.
#
# Where the numbers come from: round wall time, accuracy and bytes from the
# coordinator's rounds.csv; train_ms/encode_ms and upload_ms from
# devices.csv. The reports have no download time and upload_ms holds
# download + upload + queueing together, so both transfers are measured
# from the programs' timestamped logs (ms resolution, one clock: the
# namespaces share the host's): download = from the coordinator's "task for
# round R sent to worker" (debug level) to the worker holding the model
# ("task received: round R", or "model of round R received" when the model
# came in chunks); upload = from the worker starting to hand its update
# over ("sent update round R" minus the "send X ms" of its "round R cost"
# line) to the coordinator's "update from worker .. for round R"; compute =
# the device's time between the two (load + train + encode + state file).
# The link's own bytes (L2, with TCP/IP headers) come from the tc counters
# of the shapers.
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)

rounds=30 workers=8 up=1mbit down=10mbit out=out/slowlink
configs="dense topk1 topk0.1" check_secs=2 report_only=0 extra=""
FL_BIN=${FL_BIN:-build}
FL_DATA=${FL_DATA:-/usr/share/datasets/fashion-mnist}
while [[ $# -gt 0 ]]; do
    case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --up) up=$2; shift 2 ;;
    --down) down=$2; shift 2 ;;
    --configs) configs=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --bin) FL_BIN=$2; shift 2 ;;
    --check-seconds) check_secs=$2; shift 2 ;;
    --report-only) report_only=1; shift ;;
    --coordinator-args) extra=$2; shift 2 ;;
    -h | --help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "slowlink.sh: unknown option '$1'" >&2; exit 2 ;;
    esac
done
[[ $rounds =~ ^[0-9]+$ && $rounds -ge 1 ]] || { echo "slowlink.sh: bad --rounds" >&2; exit 2; }
[[ $workers =~ ^[0-9]+$ && $workers -ge 1 && $workers -le 250 ]] ||
    { echo "slowlink.sh: bad --workers (1..250)" >&2; exit 2; }
[[ $FL_BIN == /* ]] || FL_BIN=$ROOT/$FL_BIN
[[ $out == /* ]] || out=$ROOT/$out

NETNS=$ROOT/deploy/netns/netns.sh
export FCN_PREFIX=${FCN_PREFIX:-fcnb-} # not the smoke test's namespaces
PORT=5555

die() { echo "slowlink.sh: $*" >&2; exit 1; }
command -v python3 >/dev/null || die "python3 not found"
if ((!report_only)); then
    [[ $(id -u) -eq 0 ]] || die "needs root (network namespaces and tc)"
    ip netns list >/dev/null 2>&1 || die "'ip netns' is not available"
    command -v tc >/dev/null || die "tc not found"
    for p in fedcomp-coordinator fedcomp-worker; do
        [[ -x $FL_BIN/$p ]] || die "$FL_BIN/$p not built (make, or --bin DIR)"
    done
fi

config_args() { # as bench/accuracy.sh
    case $1 in
    dense) echo "--density 1 --values fp32 --codec none" ;;
    topk1) echo "--density 0.01 --values fp16 --codec zstd:1 --error-feedback on" ;;
    topk0.1) echo "--density 0.001 --values fp16 --codec zstd:1 --error-feedback on" ;;
    *) return 1 ;;
    esac
}
for c in $configs; do
    config_args "$c" >/dev/null || die "unknown config '$c' (dense topk1 topk0.1)"
done
[[ " $configs " == *" dense "* ]] ||
    echo "slowlink.sh: note: without 'dense' there is no accuracy target" >&2

failed=0
if ((!report_only)); then
# ---- processes and namespaces are always cleaned up
# shellcheck source=bench/procs.sh
source "$(dirname "$0")/procs.sh"
cleanup() {
    procs_stop
    "$NETNS" down >/dev/null 2>&1 || "$NETNS" down
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bits() { # tc rate -> bits/s
    awk -v r="${1,,}" 'BEGIN {
        if (!match(r, /^[0-9.]+/)) exit 1
        v = substr(r, 1, RLENGTH); u = substr(r, RLENGTH + 1)
        m = (u == "bit") ? 1 : (u == "kbit") ? 1e3 : (u == "mbit") ? 1e6 : (u == "gbit") ? 1e9 : 0
        if (!m) exit 1
        printf "%d\n", v * m }'
}
up_bits=$(bits "$up") || die "bad --up '$up'"
down_bits=$(bits "$down") || die "bad --down '$down'"
DIM=235146
# round deadline: a dense update up plus a full model down at the
# configured rates, x4, + 60 s (the default 60 s would cut dense uploads
# on links slower than ~150 kbit/s)
round_timeout=$(awk -v u="$up_bits" -v d="$down_bits" -v n=$DIM 'BEGIN {
    printf "%d", 60 + 4 * (n * 4 * 8 / u + n * 4 * 8 / d) }')

mkdir -p "$out"
{
    echo "programs: $FL_BIN ($("$FL_BIN/fedcomp-coordinator" --version 2>&1 | head -1)," \
        "built $(date -r "$FL_BIN/fedcomp-coordinator" '+%F %T')), source HEAD" \
        "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
        "(uncommitted changes not recorded)"
    echo "machine: $(nproc) cores, $(uname -r)"
} >"$out/programs.txt"
echo "slowlink: $workers workers, uplink $up, downlink $down, $rounds rounds," \
    "configs: $configs; round timeout ${round_timeout} s"
"$NETNS" up "$workers" --up "$up" --down "$down" || die "netns up failed"
echo "slowlink: link check (measured against configured rate)"
"$NETNS" check --seconds "$check_secs" | tee "$out/links.txt"
[[ ${PIPESTATUS[0]} -eq 0 ]] || die "the shaping is not in effect as configured (see above)"

# tc_sent_all FILE: "up|down I BYTES" lines of every shaper's counter
tc_sent_all() {
    local i
    for ((i = 1; i <= workers; i++)); do
        echo "up $i $(tc -n "${FCN_PREFIX}w$i" -s qdisc show dev fcc0 | awk '/Sent/ { print $2; exit }')"
        echo "down $i $(tc -n "${FCN_PREFIX}coord" -s qdisc show dev "fcw$i" | awk '/Sent/ { print $2; exit }')"
    done >"$1"
}

common="--rounds $rounds --fraction 1 --hidden 256,128 --local-epochs 1"
common+=" --batch-size 32 --lr 0.05 --momentum 0.9 --server-lr 1"
common+=" --round-timeout $round_timeout --quorum 1 --seed 1"
common+=" --min-devices $workers --wait-timeout 120 --data-dir $FL_DATA"

run_config() {
    local c=$1 dir=$out/$1 cargs cpid rc i t0 watchdog
    cargs=$(config_args "$c")
    rm -rf "$dir"
    mkdir -p "$dir"
    watchdog=$((rounds * round_timeout + 300))
    tc_sent_all "$dir/tc-before.txt"
    cat /proc/loadavg >"$dir/loadavg"  # the machine is shared: its load
    t0=$(date +%s)
    # shellcheck disable=SC2086
    "$NETNS" exec coord timeout -s TERM "$watchdog" \
        "$FL_BIN/fedcomp-coordinator" --bind "tcp://*:$PORT" \
        --endpoint-file "$dir/endpoint" --report-dir "$dir/report" \
        --insecure --log-level debug $common $cargs $extra \
        >"$dir/coordinator.out" 2>"$dir/coordinator.log" &
    cpid=$!
    PIDS+=("$cpid")
    for ((i = 0; i < 300; i++)); do
        [[ -s $dir/endpoint ]] && break
        kill -0 "$cpid" 2>/dev/null || break
        sleep 0.1
    done
    [[ -s $dir/endpoint ]] || { echo "slowlink: coordinator did not start ($dir/coordinator.log)" >&2; return 1; }
    for ((i = 1; i <= workers; i++)); do
        "$NETNS" exec "w$i" timeout -s TERM "$watchdog" \
            "$FL_BIN/fedcomp-worker" --connect "tcp://$("$NETNS" addr "$i"):$PORT" \
            --id "w$i" --shard "$((i - 1))/$workers" --partition iid --seed 1 \
            --state-dir "$dir/state-w$i" --data-dir "$FL_DATA" --insecure \
            --hello-timeout 120 >"$dir/worker-$i.out" 2>"$dir/worker-$i.log" &
        PIDS+=("$!")
    done
    wait "$cpid"
    rc=$?
    for p in "${PIDS[@]}"; do
        [[ $p == "$cpid" ]] && continue
        # workers leave on the coordinator's Bye; give them 10 s
        for ((i = 0; i < 100; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    done
    procs_stop
    tc_sent_all "$dir/tc-after.txt"
    echo "$c: coordinator exit $rc, $(($(date +%s) - t0)) s," \
        "final acc $(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) h[$i] = i; next }
            { a = $h["test_acc"] } END { print a }' "$dir/report/rounds.csv" 2>/dev/null)"
    return $rc
}

for c in $configs; do
    echo -n "slowlink: running $c ... "
    run_config "$c" || { failed=1; echo "slowlink: $c failed (logs in $out/$c)" >&2; }
done
cleanup
trap - EXIT
fi

python3 - "$out" "$rounds" "$workers" "$up" "$down" "$configs" <<'PY'
import csv, datetime, glob, os, re, statistics, sys

out, rounds, workers, up, down, configs = sys.argv[1:7]
rounds, workers, configs = int(rounds), int(workers), configs.split()
NAMES = {"dense": "dense fp32", "topk1": "top-k 1% fp16 zstd + EF",
         "topk0.1": "top-k 0.1% fp16 zstd + EF"}

TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z ")
def ts(line):
    m = TS.match(line)
    if not m:
        return None
    return datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").replace(
        tzinfo=datetime.timezone.utc).timestamp()

def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))

def num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None

def mean(xs):
    xs = [x for x in xs if x is not None]
    return statistics.fmean(xs) if xs else None

def analyse(c):
    d = os.path.join(out, c)
    rep = os.path.join(d, "report")
    rows = [r for r in read_csv(os.path.join(rep, "rounds.csv"))]
    devs = read_csv(os.path.join(rep, "devices.csv"))
    # --- log timestamps
    sent, recv_up = {}, {}           # coordinator: (round, dev) -> t
    got_task, sent_up = {}, {}       # worker: (round, dev) -> t
    got_model, send_ms = {}, {}      # chunked model: its end; send time
    re_task = re.compile(r"task for round (\d+) sent to worker '([^']+)'")
    re_upd = re.compile(r"update from worker '([^']+)' for round (\d+):")
    with open(os.path.join(d, "coordinator.log"), errors="replace") as f:
        for line in f:
            m = re_task.search(line)
            if m:
                sent[(int(m.group(1)), m.group(2))] = ts(line)  # last send
                continue
            m = re_upd.search(line)
            if m:
                recv_up.setdefault((int(m.group(2)), m.group(1)), ts(line))
    re_got = re.compile(r"task received: round (\d+)")
    re_model = re.compile(r"model of round (\d+) received")
    re_sent = re.compile(r"sent update round (\d+): (\d+) bytes")
    re_cost = re.compile(r"round (\d+) cost: .*\bsend ([0-9.]+) ms")
    for p in sorted(glob.glob(os.path.join(d, "worker-*.log"))):
        dev = "w" + os.path.basename(p)[len("worker-"):-len(".log")]
        with open(p, errors="replace") as f:
            for line in f:
                m = re_got.search(line)
                if m:
                    got_task[(int(m.group(1)), dev)] = ts(line)
                    continue
                m = re_model.search(line)
                if m:
                    got_model[(int(m.group(1)), dev)] = ts(line)
                    continue
                m = re_sent.search(line)
                if m:
                    sent_up.setdefault((int(m.group(1)), dev), ts(line))
                    continue
                m = re_cost.search(line)
                if m:
                    send_ms.setdefault((int(m.group(1)), dev), float(m.group(2)))
    per_round = {}
    for r in rows:
        if num(r["test_acc"]) is None:
            continue                         # abandoned attempt
        per_round[int(r["round"])] = {"wall": float(r["wall_s"]),
            "acc": float(r["test_acc"]), "up_b": int(r["up_wire_bytes"]),
            "down_b": int(r["down_wire_bytes"]), "dl": [], "cp": [], "ul": [],
            "span": [], "train": [], "enc": [], "rep_up": []}
    walls_all = sum(float(r["wall_s"]) for r in rows)
    missing = 0
    for r in devs:
        if r["status"] != "reported":
            continue
        rnd, dev = int(r["round"]), r["device"]
        pr = per_round.get(rnd)
        if pr is None:
            continue
        pr["train"].append(num(r["train_ms"]))
        pr["enc"].append(num(r["encode_ms"]))
        pr["rep_up"].append(num(r["upload_ms"]))
        k = (rnd, dev)
        if all(k in x and x[k] is not None for x in (sent, got_task, sent_up, recv_up)):
            # the model is in when the Task is (inline) or when its last
            # chunk is ("model of round R received"); the upload starts
            # when the worker starts handing the update over: the "sent
            # update" line is logged once the last frame is handed over,
            # "round R cost: ... send X ms" says how long that took
            dl_end = got_model.get(k) or got_task[k]
            ul_start = sent_up[k] - send_ms.get(k, 0.0) / 1000.0
            pr["dl"].append(dl_end - sent[k])
            pr["cp"].append(ul_start - dl_end)
            pr["ul"].append(recv_up[k] - ul_start)
            pr["span"].append(recv_up[k] - sent[k])
        else:
            missing += 1
    tcb = {}
    for name in ("before", "after"):
        p = os.path.join(d, "tc-%s.txt" % name)
        if os.path.exists(p):
            with open(p) as f:
                for line in f:
                    a = line.split()
                    if len(a) == 3 and a[2].isdigit():
                        tcb.setdefault((a[0], a[1]), {})[name] = int(a[2])
    tc_up = sum(v["after"] - v["before"] for (k, _), v in tcb.items()
                if k == "up" and len(v) == 2)
    tc_down = sum(v["after"] - v["before"] for (k, _), v in tcb.items()
                  if k == "down" and len(v) == 2)
    rs = sorted(per_round)
    cum, t = [], 0.0
    # cumulative time: every row's wall time (abandoned attempts too)
    cum_by_round = {}
    for r in rows:
        t += float(r["wall_s"])
        if num(r["test_acc"]) is not None:
            cum_by_round[int(r["round"])] = t
    for n in rs:
        p = per_round[n]
        p["dl_m"] = mean(p["dl"]); p["cp_m"] = mean(p["cp"]); p["ul_m"] = mean(p["ul"])
        p["ul_max"] = max(p["ul"]) if p["ul"] else None
        p["train_m"] = mean(p["train"]); p["enc_m"] = mean(p["enc"])
        p["rep_up_m"] = mean(p["rep_up"])
        p["other"] = (p["wall"] - max(p["span"])) if p["span"] else None
        p["cum"] = cum_by_round[n]
    return {"config": c, "rows": rows, "per_round": per_round, "rounds": rs,
            "missing": missing, "tc_up": tc_up, "tc_down": tc_down,
            "total_s": walls_all}

res = {}
for c in configs:
    try:
        res[c] = analyse(c)
    except (OSError, KeyError, ValueError) as e:
        print("slowlink: cannot analyse %s: %s" % (c, e), file=sys.stderr)
if not res:
    sys.exit(1)

def per_cfg_mean(a, key):
    return mean([a["per_round"][n][key] for n in a["rounds"]])

target = None
if "dense" in res and res["dense"]["rounds"]:
    dn = res["dense"]
    dense_final = dn["per_round"][dn["rounds"][-1]]["acc"]
    target = dense_final - 0.01

def time_to(a, tgt):
    for n in a["rounds"]:
        if a["per_round"][n]["acc"] >= tgt:
            return n, a["per_round"][n]["cum"]
    return None, None

def f(x, fmt="%.2f"):
    return "-" if x is None else fmt % x

lines = []
P = lines.append
P("slowlink: %d workers, uplink %s, downlink %s per worker (tc tbf, own veth "
  "link each), %d rounds" % (workers, up, down, rounds))
P("task: MLP 784-256-128-10, IID, 1 local epoch, batch 32, lr 0.05, "
  "momentum 0.9, server lr 1, full participation, seed 1")
P("per round, mean over rounds (device times: mean over the devices of a round):")
hdr = ("config", "rounds", "final acc", "down s", "compute s", "up s", "up max s",
       "other s", "wall s", "total s", "up KB/dev", "down KB/dev",
       "t(target) s")
P("%-27s %6s %9s %7s %9s %7s %8s %7s %7s %8s %9s %11s %12s" % hdr)
csv_rows = []
for c in configs:
    if c not in res:
        continue
    a = res[c]
    pr, rs = a["per_round"], a["rounds"]
    nrep = [len(pr[n]["train"]) for n in rs]
    up_kb = mean([pr[n]["up_b"] / max(1, len(pr[n]["train"])) / 1000 for n in rs])
    dn_kb = mean([pr[n]["down_b"] / max(1, len(pr[n]["train"])) / 1000 for n in rs])
    tr, tt = time_to(a, target) if target is not None else (None, None)
    final = pr[rs[-1]]["acc"] if rs else None
    a["tta"] = (tr, tt)
    a["m"] = {k: per_cfg_mean(a, k) for k in
              ("dl_m", "cp_m", "ul_m", "ul_max", "other", "wall", "train_m",
               "enc_m", "rep_up_m")}
    m = a["m"]
    tstr = ("%.1f (r%d)" % (tt, tr)) if tt is not None else "never"
    P("%-27s %6d %9s %7s %9s %7s %8s %7s %7s %8.1f %9s %11s %12s" % (
        NAMES.get(c, c), len(rs), f(final and final * 100, "%.2f%%"),
        f(m["dl_m"]), f(m["cp_m"]), f(m["ul_m"], "%.3f"), f(m["ul_max"], "%.3f"),
        f(m["other"]), f(m["wall"]), a["total_s"], f(up_kb, "%.1f"),
        f(dn_kb, "%.1f"), tstr))
    csv_rows.append({"config": c, "rounds": len(rs),
        "final_acc": f(final, "%.4f"), "download_s": f(m["dl_m"], "%.4f"),
        "compute_s": f(m["cp_m"], "%.4f"), "train_ms": f(m["train_m"], "%.1f"),
        "encode_ms": f(m["enc_m"], "%.1f"), "upload_s": f(m["ul_m"], "%.4f"),
        "upload_max_s": f(m["ul_max"], "%.4f"),
        "report_upload_ms": f(m["rep_up_m"], "%.1f"),
        "other_s": f(m["other"], "%.4f"), "wall_s": f(m["wall"], "%.4f"),
        "total_s": "%.3f" % a["total_s"], "up_bytes_per_device": f(up_kb and up_kb * 1000, "%.0f"),
        "down_bytes_per_device": f(dn_kb and dn_kb * 1000, "%.0f"),
        "tc_up_bytes": a["tc_up"], "tc_down_bytes": a["tc_down"],
        "target_acc": f(target, "%.4f"), "target_round": tr if tr else "",
        "time_to_target_s": f(tt, "%.3f")})
P("")
P("down: coordinator 'task for round R sent' -> worker has the model ('task "
  "received', or 'model of round R received' when chunked); up: worker starts "
  "handing the update over ('sent update' - its 'send X ms') -> coordinator "
  "'update from' (log timestamps, ms); compute: the device's time between "
  "the two (load + train + encode + state file);")
P("up max: slowest device's upload, mean over rounds; other: wall - slowest "
  "device's task-sent..update-received span (cohort, aggregation, "
  "evaluation); total: sum of rounds.csv wall_s.")
for c in configs:
    if c in res:
        a = res[c]
        m = a["m"]
        if a["missing"]:
            P("note: %s: %d device-rounds without every log timestamp (not in the "
              "transfer means)" % (c, a["missing"]))
        P("%s: reports say train %s ms + encode %s ms per device; devices.csv "
          "upload_ms %s ms (= down + up + queueing: logs give %s ms); link bytes "
          "(tc, L2 with TCP/IP): up %.2f MB, down %.2f MB" % (
            c, f(m["train_m"], "%.0f"), f(m["enc_m"], "%.0f"),
            f(m["rep_up_m"], "%.0f"),
            f(m["dl_m"] is not None and m["ul_m"] is not None and
              (m["dl_m"] + m["ul_m"]) * 1000 or None, "%.0f"),
            a["tc_up"] / 1e6, a["tc_down"] / 1e6))
P("")
verdict_ok = True
if "dense" in res and "topk1" in res:
    ud, u1 = res["dense"]["m"]["ul_m"], res["topk1"]["m"]["ul_m"]
    if ud is not None and u1:
        x = ud / u1
        ok = x >= 50
        verdict_ok = ok
        P("upload time per round at 1%%: dense/1%% = %.1f (target >= 50) %s" %
          (x, "met" if ok else "MISSED"))
        P("  (dense %.3f s, 1%% %.3f s per device-round)" % (ud, u1))
    else:
        P("upload time per round at 1%: no measurement (log lines missing)")
if target is not None:
    P("target accuracy: dense final %.2f%% - 1 point = %.2f%%" %
      ((target + 0.01) * 100, target * 100))
    dn = res["dense"]
    for c in configs:
        if c == "dense" or c not in res:
            continue
        a = res[c]
        (dr, dt), (cr, ct) = dn["tta"], a["tta"]
        md, mc = dn["m"], a["m"]
        def split(m):
            if None in (m["dl_m"], m["cp_m"], m["ul_m"]):
                return "n/a"
            tr = m["dl_m"] + m["ul_m"]
            return ("%.2f s down + %.2f s compute + %.3f s up + %.2f s other = "
                    "%.2f s wall; transfer %.0f%% of the device time" % (
                        m["dl_m"], m["cp_m"], m["ul_m"], m["other"] or 0,
                        m["wall"], 100 * tr / (tr + m["cp_m"])))
        if dt is not None and ct is not None:
            P("time to %.2f%%: dense %.1f s (round %d), %s %.1f s (round %d): "
              "%s is %.2fx faster" % (target * 100, dt, dr, c, ct, cr, c, dt / ct))
        else:
            best = max(a["per_round"][n]["acc"] for n in a["rounds"]) if a["rounds"] else 0
            P("time to %.2f%%: dense %s, %s %s (its best %.2f%%)" % (
                target * 100, f(dt, "%.1f s"), c,
                "never in %d rounds" % len(a["rounds"]) if ct is None else "%.1f s" % ct,
                best * 100))
        P("  per round: dense  %s" % split(md))
        P("  per round: %-6s %s" % (c, split(mc)))
        if md["wall"] and mc["wall"]:
            P("  round time ratio dense/%s = %.2fx; rounds to target dense %s, %s %s" % (
                c, md["wall"] / mc["wall"], dr or "never", c, cr or "never"))
txt = "\n".join(lines) + "\n"
sys.stdout.write(txt)
with open(os.path.join(out, "summary.txt"), "w") as fo:
    fo.write(txt)
    for c in configs:
        try:
            with open(os.path.join(out, c, "loadavg")) as fl:
                fo.write("%s: load average before the run: %s\n" % (
                    c, " ".join(fl.read().split()[:3])))
        except OSError:
            pass
    try:
        with open(os.path.join(out, "programs.txt")) as fl:
            fo.write(fl.read())
    except OSError:
        pass
    try:
        with open(os.path.join(out, "links.txt")) as fl:
            fo.write("\nlink check (deploy/netns/netns.sh check):\n" + fl.read())
    except OSError:
        pass
if csv_rows:
    with open(os.path.join(out, "summary.csv"), "w", newline="") as fo:
        w = csv.DictWriter(fo, fieldnames=list(csv_rows[0]))
        w.writeheader()
        w.writerows(csv_rows)
with open(os.path.join(out, "rounds.csv"), "w", newline="") as fo:
    w = csv.writer(fo)
    w.writerow(["config", "round", "test_acc", "wall_s", "cum_s", "download_s",
                "compute_s", "upload_s", "upload_max_s", "other_s", "train_ms",
                "encode_ms", "report_upload_ms", "up_wire_bytes", "down_wire_bytes"])
    for c in configs:
        if c not in res:
            continue
        for n in res[c]["rounds"]:
            p = res[c]["per_round"][n]
            w.writerow([c, n, "%.4f" % p["acc"], "%.3f" % p["wall"], "%.3f" % p["cum"],
                        f(p["dl_m"], "%.4f"), f(p["cp_m"], "%.4f"), f(p["ul_m"], "%.4f"),
                        f(p["ul_max"], "%.4f"), f(p["other"], "%.4f"),
                        f(p["train_m"], "%.1f"), f(p["enc_m"], "%.1f"),
                        f(p["rep_up_m"], "%.1f"), p["up_b"], p["down_b"]])
print("written: %s/summary.txt, %s/summary.csv, %s/rounds.csv" % (out, out, out))
PY
rc=$?
((failed == 0 && rc == 0)) || exit 1
exit 0
