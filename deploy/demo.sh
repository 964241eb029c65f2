#!/usr/bin/env bash
# make demo: one coordinator and 8 workers as separate processes on
# loopback, 20 rounds of federated training on Fashion-MNIST (non-IID:
# Dirichlet 0.5 over labels), updates sent as top-k 1% with error feedback,
# fp16 values and zstd. Everything stays on loopback, so it runs in
# plaintext (--insecure); README.md "Secure set-up" shows CURVE keys.
#
# The terminal shows the coordinator's per-round progress and its final
# summary; every log and report goes to the report directory.
# Ctrl-C stops everything: workers say Bye, the coordinator writes its
# summary, and whatever is still running after 3 s is killed.
#
# Environment (all optional):
#   DEMO_OUT          report directory (./out/demo)
#   DEMO_WORKERS      number of workers (8)
#   DEMO_ROUNDS       rounds (20)
#   DEMO_TRAIN_LIMIT  training images used, 0 = all 60000 (0)
#   FL_BIN            where the programs are (build/rel/bin)
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${FL_BIN:-$ROOT/build/rel/bin}
OUT=${DEMO_OUT:-out/demo}
WORKERS=${DEMO_WORKERS:-8}
ROUNDS=${DEMO_ROUNDS:-20}
TRAIN_LIMIT=${DEMO_TRAIN_LIMIT:-0}
DATA=/usr/share/datasets/fashion-mnist
WATCHDOG=900 # seconds any process of the demo may live

for p in fedcomp-coordinator fedcomp-worker; do
    if [[ ! -x $BIN/$p ]]; then
        echo "demo: $BIN/$p is missing; run 'make' first" >&2
        exit 1
    fi
done
mkdir -p "$OUT" || exit 1
OUT=$(cd "$OUT" && pwd)
# Only our own files: the report files are appended to, so start afresh.
rm -rf "$OUT/state"
rm -f "$OUT"/{rounds.csv,rounds.jsonl,devices.csv,summary.txt,initial_acc} \
    "$OUT"/{endpoint,coordinator.log,coordinator.out} "$OUT"/worker-*.log

# Every process runs under `timeout` (a watchdog), which puts it in its own
# process group: the terminal's Ctrl-C reaches only this script, and the
# trap below stops each group in order.
PIDS=()
stopping=0
# running PID: true while PID exists and is not a zombie
running() {
    local st=""
    read -r _ _ st _ 2>/dev/null <"/proc/$1/stat" || return 1
    [[ $st != Z ]]
}
follower=
cleanup() {
    local pid t
    [[ -n $follower ]] && kill "$follower" 2>/dev/null
    for pid in "${PIDS[@]}"; do
        kill -TERM -- "-$pid" 2>/dev/null
    done
    for pid in "${PIDS[@]}"; do
        for ((t = 0; t < 30; t++)); do # bounded: 3 s
            running "$pid" || break
            sleep 0.1
        done
        kill -KILL -- "-$pid" 2>/dev/null
    done
    PIDS=()
}
on_signal() {
    [[ $stopping == 1 ]] && return
    stopping=1
    echo
    echo "demo: interrupted; stopping the coordinator and the workers"
    cleanup
    cat "$OUT/coordinator.out" 2>/dev/null
    echo "demo: partial report in $OUT"
    exit 130
}
trap on_signal INT TERM
trap cleanup EXIT

images=$TRAIN_LIMIT
[[ $images -eq 0 ]] && images=60000
echo "fedcomp demo: $WORKERS workers, $ROUNDS rounds"
echo "  data     Fashion-MNIST, $images training images split non-IID"
echo "           (Dirichlet 0.5 over labels) into $WORKERS shards;" \
    "test set 10000 images"
echo "  uplink   top-k 1% with error feedback, fp16 values, zstd"
echo "  report   $OUT"
echo "  logs     $OUT/coordinator.log, $OUT/worker-N.log"
echo "  (about 20-60 s on 2 cores)"
echo

timeout -s TERM $WATCHDOG "$BIN/fedcomp-coordinator" \
    --bind 'tcp://127.0.0.1:*' --endpoint-file "$OUT/endpoint" \
    --rounds "$ROUNDS" --min-devices "$WORKERS" --wait-timeout 120 \
    --density 0.01 --values fp16 --codec zstd --error-feedback on \
    --data-dir "$DATA" --report-dir "$OUT" --insecure \
    >"$OUT/coordinator.out" 2>"$OUT/coordinator.log" &
coord=$!
PIDS+=("$coord")

for ((i = 0; i < 300; i++)); do # bounded: 30 s
    [[ -s $OUT/endpoint ]] && break
    if ! kill -0 "$coord" 2>/dev/null; then
        echo "demo: the coordinator did not start:" >&2
        tail -5 "$OUT/coordinator.log" >&2
        exit 1
    fi
    sleep 0.1
done
if [[ ! -s $OUT/endpoint ]]; then
    echo "demo: no endpoint from the coordinator after 30 s" >&2
    exit 1
fi
ep=$(head -1 "$OUT/endpoint")
echo "coordinator listening on $ep; starting $WORKERS workers"

for ((i = 0; i < WORKERS; i++)); do
    timeout -s TERM $WATCHDOG "$BIN/fedcomp-worker" \
        --connect "$ep" --id "demo-w$i" --state-dir "$OUT/state/w$i" \
        --data-dir "$DATA" --partition dirichlet:0.5 --seed 1 \
        --shard "$i/$WORKERS" --train-limit "$TRAIN_LIMIT" \
        --hello-timeout 60 --insecure >/dev/null 2>"$OUT/worker-$i.log" &
    PIDS+=("$!")
done

# The coordinator logs to stderr, per-round progress lines included: show
# those lines while it runs (tail stops when the coordinator process, the
# child of `timeout`, is gone), then its summary from stdout.
cpid=$(pgrep -P "$coord" | head -1)
# It runs in the background because bash defers traps while a foreground
# command runs, and `wait` returns at once on a signal.
if [[ -n $cpid ]]; then
    tail -n +1 -s 0.2 -f --pid="$cpid" "$OUT/coordinator.log" |
        grep --line-buffered -E '^round [0-9]+/' &
    follower=$!
    wait "$follower"
    follower=
fi
rc=0
wait "$coord" || rc=$?
cat "$OUT/coordinator.out"
# Workers leave on the coordinator's Bye; wait for them, bounded (10 s);
# the EXIT trap stops any that are left.
for pid in "${PIDS[@]:1}"; do
    for ((t = 0; t < 100; t++)); do
        running "$pid" || break
        sleep 0.1
    done
done
echo
if [[ $rc -ne 0 ]]; then
    echo "demo: the coordinator exited with status $rc;" \
        "see $OUT/coordinator.log" >&2
    exit "$rc"
fi
echo "demo: done. Report files in $OUT:"
echo "  rounds.csv / rounds.jsonl   one row per round (bytes, accuracy, time)"
echo "  devices.csv                 one row per device and round"
echo "  summary.txt                 the summary above"
echo "  coordinator.log, worker-N.log"
