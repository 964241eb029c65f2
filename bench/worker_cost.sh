#!/usr/bin/env bash
# Worker cost on a device, against the issue's target: "for the
# 1M-parameter model: compression under 5% of one local epoch's training
# time; peak RSS above an idle process under 2 x (model + residual + its
# data shard) + 16 MiB".
#
# One coordinator and N workers on loopback (real processes), MLP
# 784-1024-200-10 (1,010,850 parameters), top-k 1% with error feedback,
# fp16 values, zstd level 1, one local epoch per round. Each worker writes
# --stats-csv (docs/worker.md "Cost per round"); the table comes from those
# rows and from the workers' logs.
#
# Baseline for the RSS target: the worker's own resident set right after
# start, before it loads any data ("memory at start" in its log). That is
# the same binary with the same shared libraries mapped (libzmq, OpenBLAS,
# zstd, LZ4, protobuf-c, libc) and nothing of ours allocated: what an idle
# worker process costs on the device. A trivial process (grep, VmHWM) is
# printed beside it for scale only. "Model + residual + shard" is what the
# worker must hold: the model and the residual as dim float32 each, and
# the shard as the trainer holds it (784 float32 pixels + 1 label byte per
# image).
#
#   bench/worker_cost.sh [--workers N] [--rounds R] [--hidden LIST]
#                        [--train-limit N] [--out DIR]
# FL_BIN (default build/) points at the programs. Prints the table; exit 0
# when the runs completed (MISSED targets are reported, not an error).
set -u
cd "$(dirname "$0")/.." || exit 1
FL_BIN=${FL_BIN:-build}
workers=2 rounds=4 hidden=1024,200 train_limit=0 out=out/bench-worker-cost
while [[ $# -gt 0 ]]; do
    case $1 in
    --workers) workers=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --hidden) hidden=$2; shift 2 ;;
    --train-limit) train_limit=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "worker_cost.sh: unknown option '$1'" >&2; exit 2 ;;
    esac
done
for p in fedcomp-coordinator fedcomp-worker; do
    [[ -x $FL_BIN/$p ]] || { echo "worker_cost.sh: $FL_BIN/$p not built" >&2; exit 1; }
done

# shellcheck source=bench/procs.sh
source "$(dirname "$0")/procs.sh"
trap 'procs_stop; exit 130' INT TERM
trap procs_stop EXIT

rm -rf "$out"
mkdir -p "$out"
"$FL_BIN/fedcomp-coordinator" --bind 'tcp://127.0.0.1:*' \
    --endpoint-file "$out/endpoint" --report-dir "$out/report" --insecure \
    --hidden "$hidden" --rounds "$rounds" --min-devices "$workers" \
    --local-epochs 1 --density 0.01 --values fp16 --codec zstd:1 \
    --error-feedback on --eval-limit 2000 --round-timeout 1800 \
    --wait-timeout 120 >"$out/coordinator.out" 2>"$out/coordinator.log" &
cpid=$!
PIDS+=("$cpid")
wait_file "$out/endpoint" "$cpid" || { echo "coordinator did not start: $out/coordinator.log" >&2; exit 1; }
wpids=()
for ((i = 0; i < workers; i++)); do
    "$FL_BIN/fedcomp-worker" --connect "$(cat "$out/endpoint")" --id "w$i" \
        --shard "$i/$workers" --state-dir "$out/state-$i" --insecure \
        --train-limit "$train_limit" --stats-csv "$out/worker-$i.csv" \
        2>"$out/worker-$i.log" &
    PIDS+=("$!")
    wpids+=("$!")
done
rc=0
wait "$cpid" || rc=$?
for p in "${wpids[@]}"; do wait "$p" || rc=$?; done
PIDS=()
if [[ $rc -ne 0 ]]; then
    echo "worker_cost.sh: a process failed (exit $rc); logs in $out" >&2
    exit 1
fi

# A trivial process's peak resident set, for scale.
trivial_kb=$(grep VmHWM /proc/self/status | awk '{ print $2 }')

echo "worker cost: MLP 784-${hidden//,/-}-10, top-k 1% + EF, fp16, zstd:1, 1 local epoch, $rounds rounds, $workers workers"
echo "(baseline: the worker's RSS at start, before loading data; a trivial process peaks at $trivial_kb KiB)"
all_met=1
for ((i = 0; i < workers; i++)); do
    log=$out/worker-$i.log
    csv=$out/worker-$i.csv
    dim=$(sed -n 's/.*model: mlp [0-9-]*, \([0-9]*\) parameters.*/\1/p' "$log" | head -1)
    shard=$(sed -n 's/.*loaded shard [0-9/]*: \([0-9]*\) of .*/\1/p' "$log" | head -1)
    base=$(sed -n 's/.*memory at start: \([0-9]*\) KiB.*/\1/p' "$log" | head -1)
    [[ -n $dim && -n $shard && -n $base && -s $csv ]] ||
        { echo "worker $i: missing log lines or $csv" >&2; exit 1; }
    awk -F, -v w="$i" -v dim="$dim" -v shard="$shard" -v base="$base" '
        NR == 1 { next }
        {
            n++; train += $3; enc += $4
            if ($4 > emax) emax = $4
            if (tmin == "" || $3 < tmin) tmin = $3
            if ($8 > peak) peak = $8
        }
        END {
            if (n == 0) { print "worker " w ": no rows"; exit 1 }
            ratio = enc / train; worst = emax / tmin
            mib = 1048576
            held = 4 * dim + 4 * dim + shard * (784 * 4 + 1)
            target = 2 * held + 16 * mib
            above = (peak - base) * 1024
            printf "worker %d: %d parameters, shard %d images, %d rounds\n", w, dim, shard, n
            printf "  train per epoch      %10.1f ms (mean; min %.1f)\n", train / n, tmin
            printf "  encode (compress)    %10.3f ms (mean; max %.3f)\n", enc / n, emax
            printf "  encode / train       %10.4f (worst round %.4f), target < 0.05: %s\n", \
                ratio, worst, worst < 0.05 ? "met" : "MISSED"
            printf "  peak RSS             %10.1f MiB\n", peak / 1024
            printf "  idle RSS (at start)  %10.1f MiB\n", base / 1024
            printf "  peak above idle      %10.1f MiB\n", above / mib
            printf "  model+residual+shard %10.1f MiB (model %.1f, residual %.1f, shard %.1f)\n", \
                held / mib, 4 * dim / mib, 4 * dim / mib, shard * (784 * 4 + 1) / mib
            printf "  RSS target           %10.1f MiB = 2 x %.1f + 16: %s\n", \
                target / mib, held / mib, above < target ? "met" : "MISSED"
            exit !(worst < 0.05 && above < target)
        }' "$csv" || all_met=0
done
[[ $all_met == 1 ]] && echo "all targets met" || echo "some target MISSED"
echo "rows: $out/worker-*.csv; logs: $out"
exit 0
