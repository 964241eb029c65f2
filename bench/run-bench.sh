#!/usr/bin/env bash
# make bench: every benchmark, each with its baseline measured in the same
# run. The accuracy benchmark is long (30 rounds x 16 devices x configs x
# seeds); BENCH_SEEDS (default 3) trims it.
set -u
cd "$(dirname "$0")/.."
mkdir -p out
echo "== fedcomp-bench compress"
build/fedcomp-bench compress | tee out/bench-compress.txt
echo "== fedcomp-bench train"
build/fedcomp-bench train | tee out/bench-train.txt
echo "== worker cost (bench/worker_cost.sh)"
bench/worker_cost.sh | tee out/bench-worker-cost.txt
echo "== accuracy benchmark"
bench/accuracy.sh --seeds "${BENCH_SEEDS:-3}"
