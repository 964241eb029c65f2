#!/usr/bin/env bash
# Accuracy benchmark, pinned to the independent reference: MLP 784-256-128-10,
# 16 devices, 30 rounds, 1 local epoch, batch 32, lr 0.05, momentum 0.9,
# server lr 1, full participation, IID and Dirichlet(0.5), several seeds.
# Configurations: dense (density 1, fp32, no codec) and top-k + error
# feedback at 1% and 0.1% (fp16, zstd), each also with the accuracy-protecting
# techniques. Real processes on loopback; the table comes from the reports.
#
#   bench/accuracy.sh [--seeds N] [--rounds R] [--devices D] [--out DIR]
#                     [--configs "dense topk1 ..."] [--partitions "iid dir0.5"]
set -u
cd "$(dirname "$0")/.."
. bench/fleet.sh
trap 'fleet_cleanup; exit 130' INT TERM

seeds=3 rounds=30 devices=16 out=out/bench-accuracy
configs="dense topk1 topk1-tech topk0.1 topk0.1-tech"
partitions="iid dir0.5"
while [[ $# -gt 0 ]]; do
    case $1 in
    --seeds) seeds=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --devices) devices=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --configs) configs=$2; shift 2 ;;
    --partitions) partitions=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "accuracy.sh: unknown option '$1'" >&2; exit 2 ;;
    esac
done

config_args() {
    local tech="--density-warmup 4 --momentum-correction=0.9"
    case $1 in
    dense) echo "--density 1 --values fp32 --codec none" ;;
    topk1) echo "--density 0.01 --values fp16 --codec zstd:1 --error-feedback on" ;;
    topk1-tech) echo "--density 0.01 --values fp16 --codec zstd:1 --error-feedback on $tech" ;;
    topk0.1) echo "--density 0.001 --values fp16 --codec zstd:1 --error-feedback on" ;;
    topk0.1-tech) echo "--density 0.001 --values fp16 --codec zstd:1 --error-feedback on $tech" ;;
    *) echo "accuracy.sh: unknown config '$1'" >&2; return 1 ;;
    esac
}

common="--rounds $rounds --fraction 1 --hidden 256,128 --local-epochs 1"
common+=" --batch-size 32 --lr 0.05 --momentum 0.9 --server-lr 1"
common+=" --round-timeout 600 --quorum 1"
total=0
for p in $partitions; do for c in $configs; do total=$((total + seeds)); done; done
done_runs=0
for p in $partitions; do
    case $p in
    iid) part="--partition iid" ;;
    dir0.5) part="--partition dirichlet:0.5" ;;
    *) echo "unknown partition $p" >&2; exit 2 ;;
    esac
    for c in $configs; do
        cargs=$(config_args "$c") || exit 2
        for ((s = 1; s <= seeds; s++)); do
            dir="$out/$p/$c/seed$s"
            done_runs=$((done_runs + 1))
            if [[ -f $dir/rounds.csv ]] && [[ $(wc -l <"$dir/rounds.csv") -gt $rounds ]]; then
                echo "[$done_runs/$total] $p $c seed $s: already done"
                continue
            fi
            rm -rf "$dir"
            t0=$(date +%s)
            echo -n "[$done_runs/$total] $p $c seed $s ... "
            fleet_run "$dir" "$devices" "$common $cargs --seed $s" \
                "$part --seed $s"
            rc=$?
            echo "exit $rc, $(( $(date +%s) - t0 )) s, final acc" \
                "$(tail -1 "$dir/rounds.csv" 2>/dev/null | awk -F, '{print $(NF-1)}')"
        done
    done
done
python3 bench/analyze.py accuracy "$out" | tee "$out/accuracy-table.txt"
