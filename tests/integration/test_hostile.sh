#!/usr/bin/env bash
# Hostile devices: a coordinator and 3 honest workers train while
# fedcomp-attack instances (each joins, gets into the cohort with
# --fraction 1, sends one malicious message) try every attack at once:
# garbage, truncated, oversize frame, zip bomb, NaN, bad indices, wrong
# dimension, replayed round, duplicate, huge sample count, huge norm,
# k > dimension, bad checksum, trailing zstd frame, wrong version, no body,
# several frames, a log-injection attempt, and a valid but very heavy
# update. Then one device earns the penalty box (3 refusals in a row) and
# comes back: it is ignored.
#
# The honest workers keep training (the coordinator runs until SIGTERM,
# so the test decides when it ends, not a round count that fast rounds
# could use up before the attackers arrive); --min-devices is the honest
# three, so rounds go on whether attackers are connected or not.
#
# Checks: every attacker got the Reject code expected (or was dropped /
# disconnected); the coordinator stayed up and exits 0 on SIGTERM; honest
# rounds kept committing with finite accuracy; the Reject counts per reason
# in rounds.jsonl are exactly those of the attacks; no report row is lost
# (one row per progress line, rounds and attempts in sequence, CSV and
# JSONL agree); the share cap cut the heavy update; the norm bound was in
# force; the injected log line did not get into the log; the penalised
# device was not drawn again.
# asan: yes
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
fl_need
[[ -x $FL_BIN/fedcomp-attack ]] || fl_fail "$FL_BIN/fedcomp-attack not built"

N=3
dir=$FL_TMP/hostile
fl_coord "$dir" --rounds 1000000 --min-devices $N --fraction 1 \
    --quorum 0.1 --eval-limit 300 --hidden 64 --local-epochs 2 \
    --max-message 1M --round-timeout 30 --wait-timeout 60 \
    --penalty-after 3 --penalty-rounds 100000
for ((i = 0; i < N; i++)); do
    fl_worker "$dir" $i $N --train-limit 9000
done
log=$dir/coord.log
# the adaptive norm bound needs a committed round
fl_wait_log "$log" '^round 2/'

# attack NAME EXPECT [ARGS...] : one attacker in the background (its own
# device id), output in DIR/atk-NAME.out
ATK_PIDS=()
ATK_NAMES=()
attack() {
    local name=$1 expect=$2
    shift 2
    timeout -s TERM 60 "$FL_BIN/fedcomp-attack" --connect "$FL_EP" \
        --id "atk-$name" --reply-timeout 1.5 --task-timeout 30 \
        --expect "$expect" "$@" >"$dir/atk-$name.out" 2>&1 &
    FL_PIDS+=("$!")
    ATK_PIDS+=("$!")
    ATK_NAMES+=("$name")
}
wait_attacks() {
    local i rc
    for i in "${!ATK_PIDS[@]}"; do
        rc=0
        wait "${ATK_PIDS[$i]}" || rc=$?
        [[ $rc -eq 0 ]] || fl_fail "attack ${ATK_NAMES[$i]} (exit $rc): \
$(cat "$dir/atk-${ATK_NAMES[$i]}.out")"
    done
    ATK_PIDS=()
    ATK_NAMES=()
}

# name expected-outcome --attack ... (codes by name: fl_err_name())
attack garbage proto --attack garbage
attack truncated proto --attack truncated
attack oversize disconnected --attack oversize --size 2000000
attack zipbomb size_mismatch --attack zipbomb
attack nan nonfinite --attack nan
attack index-range index_range --attack index-range
attack index-order index_range --attack index-order
attack wrong-dim dimension --attack wrong-dim
attack stale-round stale_round --attack stale-round
attack duplicate duplicate --attack duplicate
attack huge-samples samples --attack huge-samples
attack huge-norm norm --attack huge-norm
attack k-over-dim k_range --attack k-over-dim
attack bad-checksum checksum --attack bad-checksum
attack trailing-frame trailing --attack trailing-frame
attack wrong-version version --attack wrong-version
attack no-body missing_field --attack no-body
attack multipart drop --attack multipart
attack log-inject drop --attack log-inject
attack heavy none --attack valid --samples 1000000
attack pen ignored --attack garbage --repeat 4
wait_attacks
fl_ok "every attack got the expected answer"

# the penalised device comes back: Welcome, but no Task; dropped
attack pen ignored,drop --attack garbage --no-task
wait_attacks
grep -q "outcome: disconnected" "$dir/atk-oversize.out" ||
    fl_fail "oversize: $(cat "$dir/atk-oversize.out")"
fl_ok "the penalised device is ignored when it comes back"

# two more attempts close (so every attack round has its row), then stop
rows=$(grep -cE '^round [0-9]+/' "$log")
fl_wait_log "$log" '^round [0-9]+/' $((rows + 2))
kill -0 "$FL_COORD_PID" 2>/dev/null || fl_fail "the coordinator died"
kill -TERM "$FL_COORD_PID"
fl_wait_all "$dir"
grep -q "signal 15: stopping" "$log" || fl_fail "no clean stop in $log"
fl_ok "the coordinator stayed up and stopped cleanly on SIGTERM"

csv=$dir/report/rounds.csv
jsonl=$dir/report/rounds.jsonl
dev=$dir/report/devices.csv
python3 - "$csv" "$jsonl" "$dev" "$log" <<'EOF' || fl_fail "report checks"
import csv, json, math, re, sys
csv_path, jsonl_path, dev_path, log_path = sys.argv[1:]
rows = list(csv.DictReader(open(csv_path)))
js = [json.loads(l) for l in open(jsonl_path)]
log = open(log_path, encoding="utf-8", errors="replace").read()
progress = re.findall(r"^round \d+/", log, re.M)
fail = []
# no row lost: one per progress line, CSV == JSONL, in sequence
if not (len(rows) == len(js) == len(progress)):
    fail.append("rows: csv %d, jsonl %d, progress lines %d"
                % (len(rows), len(js), len(progress)))
prev = None
for r, j in zip(rows, js):
    rnd, att = int(r["round"]), int(r["attempt"])
    if (j["round"], j["attempt"]) != (rnd, att):
        fail.append("csv/jsonl differ at round %d.%d" % (rnd, att))
    want = (1, 1) if prev is None else \
        (prev[0] + 1, 1) if prev[2] else (prev[0], prev[1] + 1)
    if (rnd, att) != want:
        fail.append("row %d.%d follows %s" % (rnd, att, prev))
    prev = (rnd, att, r["test_acc"] != "")
committed = [r for r in rows if r["test_acc"] != ""]
if len(committed) < 4:
    fail.append("only %d committed rounds" % len(committed))
for r in committed:
    if not math.isfinite(float(r["test_acc"])):
        fail.append("round %s: accuracy %s" % (r["round"], r["test_acc"]))
if committed and float(committed[-1]["test_acc"]) < 0.3:
    fail.append("final accuracy %s" % committed[-1]["test_acc"])
# the Reject counts per reason are exactly the attacks'
want = {"proto": 5, "size_mismatch": 1, "nonfinite": 1, "index_range": 2,
        "dimension": 1, "late": 1, "stale_round": 1, "duplicate": 1,
        "samples": 1, "norm": 1, "k_range": 1, "checksum": 1,
        "trailing": 1, "version": 1, "missing_field": 1, "ignored": 4}
got = {}
for j in js:
    for k, v in j["rejects"].items():
        got[k] = got.get(k, 0) + v
if got != want:
    fail.append("rejects %s, want %s" % (sorted(got.items()),
                                         sorted(want.items())))
for key in ("multipart", "weight_capped", "disconnects"):
    if sum(j[key] for j in js) < 1:
        fail.append("no %s counted" % key)
if any(j["norm_bound"] is None for j in js[1:]):
    fail.append("a round after the first without a norm bound")
# cohort members whose update was refused: the 10 update attacks (the
# duplicate counts as reported) and the penalised device; message-level
# refusals leave the member waiting until its Bye (dropped)
if sum(int(r["rejected"]) for r in rows) != 11:
    fail.append("rejected column: %d" % sum(int(r["rejected"]) for r in rows))
# the injected text is escaped, never a line of its own
if re.search(r"^FAKE", log, re.M) or "\x1b" in log:
    fail.append("the log-inject text reached the log unescaped")
if "\\x0aFAKE coordinator[1] info" not in log:
    fail.append("no escaped log-inject text in the log")
# the penalised device: one cohort (the round it was boxed in), no other
pen = [d for d in csv.DictReader(open(dev_path)) if d["device"] == "atk-pen"]
if len(pen) != 1 or pen[0]["status"] != "rejected":
    fail.append("atk-pen rows: %s" % pen)
if fail:
    print("\n".join(fail))
    sys.exit(1)
print("report ok: %d rows, %d committed, rejects %s" % (
    len(rows), len(committed), sorted(got.items())))
EOF
fl_ok "report: rows complete, reject counts exact, share cap and norm bound applied"
echo "PASS"
