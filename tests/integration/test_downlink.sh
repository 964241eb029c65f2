#!/usr/bin/env bash
# End to end: the lossy downlink with server-side error feedback, against
# a lossless run with the same uplink settings (4 workers, 4 rounds,
# uplink top-k 10% fp16 zstd).
#
# Checks: every round commits in both runs; from round 2 on (round 1
# carries the full model either way) the lossy run (--down-density 0.1
# --down-values fp16) sends less than half the downlink bytes of the
# lossless one, and fewer in total; the coordinator logs each broadcast
# step with k = ceil(0.1 * dimension); workers receive sparse deltas;
# training reaches above-chance accuracy; and every worker's model at the
# end (--save-model) equals the coordinator's broadcast model
# (--save-broadcast-model) byte for byte. The lossy run also uses
# --momentum-correction=0.5, which the workers must take from the Task.
# asan: yes
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
fl_need

N=4
ROUNDS=4
DIM=235146 # 784-256-128-10
K=23515    # ceil(0.1 * DIM)

# run_fl DIR COORD_ARGS... : one federated run of N workers; the workers
# save the model they hold at exit into DIR/wI.fcm.
run_fl() {
    local dir=$1 i
    shift
    fl_coord "$dir" --rounds $ROUNDS --min-devices $N --eval-limit 2000 \
        --round-timeout 60 --wait-timeout 60 --density 0.1 --values fp16 \
        --codec zstd "$@"
    for ((i = 0; i < N; i++)); do
        fl_worker "$dir" $i $N --train-limit 4000 --save-model "$dir/w$i.fcm"
    done
    fl_wait_all "$dir"
    local csv=$dir/report/rounds.csv
    [[ -f $csv ]] || fl_fail "$csv missing"
    [[ $(($(wc -l <"$csv") - 1)) -eq $ROUNDS ]] ||
        fl_fail "$csv: want $ROUNDS rows: $(cat "$csv")"
    [[ $(fl_col "$csv" reported | sort -u) == "$N" ]] ||
        fl_fail "not every worker reported in every round of $csv"
}

# down_bytes DIR [FROM_ROUND] : downlink wire bytes from the report.
down_bytes() {
    fl_col "$1/report/rounds.csv" down_wire_bytes |
        awk -v from="${2:-1}" 'NR >= from { s += $1 } END { printf "%d\n", s }'
}

lossless=$FL_TMP/lossless
lossy=$FL_TMP/lossy
run_fl "$lossless"
run_fl "$lossy" --down-density 0.1 --down-values fp16 \
    --save-broadcast-model "$lossy/broadcast.fcm" --momentum-correction=0.5

# the lossy run compressed the downlink: the log says so for each commit
re="broadcast model version [0-9]+: $K of $DIM entries sent \(fp16\)"
n=$(grep -cE "$re" "$lossy/coord.log")
[[ $n -eq $ROUNDS ]] ||
    fl_fail "$n broadcast steps of k=$K logged, want $ROUNDS"
! grep -q "broadcast model version" "$lossless/coord.log" ||
    fl_fail "the lossless run logged broadcast steps"
for ((i = 0; i < N; i++)); do
    n=$(grep -c "task received: round .*, sparse delta" "$lossy/w$i.log")
    [[ $n -eq $((ROUNDS - 1)) ]] ||
        fl_fail "worker $i got $n sparse deltas, want $((ROUNDS - 1))"
    grep -q "momentum correction with factor 0.5 (the coordinator's)" \
        "$lossy/w$i.log" ||
        fl_fail "worker $i did not use the coordinator's momentum factor"
done
fl_ok "$ROUNDS broadcast steps of $K entries; workers applied sparse deltas"

# fewer downlink bytes, counted from the frames sent
a1=$(down_bytes "$lossless")
b1=$(down_bytes "$lossy")
a2=$(down_bytes "$lossless" 2)
b2=$(down_bytes "$lossy" 2)
[[ $b1 -lt $a1 ]] || fl_fail "lossy downlink $b1 bytes >= lossless $a1"
[[ $((2 * b2)) -lt $a2 ]] ||
    fl_fail "rounds 2-$ROUNDS: lossy downlink $b2 bytes, lossless $a2"
fl_ok "downlink bytes: lossless $a1 ($a2 after round 1), lossy $b1 ($b2)"

# training still works
for dir in "$lossless" "$lossy"; do
    acc=$(fl_col "$dir/report/rounds.csv" test_acc | tail -1)
    fl_float_gt "$acc" 0.3 || fl_fail "final accuracy $acc <= 0.3 in $dir"
done
fl_ok "final accuracy: lossless $(fl_col "$lossless/report/rounds.csv" \
    test_acc | tail -1), lossy $(fl_col "$lossy/report/rounds.csv" \
    test_acc | tail -1)"

# every device holds exactly the broadcast model
[[ -s $lossy/broadcast.fcm ]] || fl_fail "no broadcast model saved"
for ((i = 0; i < N; i++)); do
    [[ -s $lossy/w$i.fcm ]] || fl_fail "worker $i saved no model"
    cmp -s "$lossy/w$i.fcm" "$lossy/broadcast.fcm" ||
        fl_fail "worker $i's model differs from the broadcast model"
done
fl_ok "all $N workers hold the broadcast model byte for byte"
echo "PASS"
