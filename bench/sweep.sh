#!/usr/bin/env bash
# Cost against device count (make sweep): the same training for
# N = 1, 2, 4, ... devices with the 60,000 training images split among them;
# writes OUT/sweep.csv (per N: bytes up/down per round and per device,
# coordinator CPU per round and per device, round wall time, accuracy) and
# OUT/sweep-fit.csv (fitted growth against N with goodness of fit).
#
#   bench/sweep.sh [--devices "1 2 4 8 16 32"] [--rounds R] [--out DIR]
set -u
cd "$(dirname "$0")/.."
. bench/fleet.sh
trap 'fleet_cleanup; exit 130' INT TERM

list="1 2 4 8 16 32" rounds=5 out=out/sweep extra=""
while [[ $# -gt 0 ]]; do
    case $1 in
    --devices) list=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --coordinator-args) extra=$2; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "sweep.sh: unknown option '$1'" >&2; exit 2 ;;
    esac
done
for n in $list; do
    dir="$out/n$n"
    rm -rf "$dir"
    echo -n "sweep: N = $n ... "
    t0=$(date +%s)
    fleet_run "$dir" "$n" "--rounds $rounds --fraction 1 --quorum 1 \
        --round-timeout 900 --density 0.01 --values fp16 --codec zstd:1 $extra" \
        "--partition iid"
    echo "exit $?, $(( $(date +%s) - t0 )) s"
done
python3 bench/analyze.py sweep "$out"
