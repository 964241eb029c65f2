# shellcheck shell=bash
# lib_faults.sh - checks shared by the fault tests (sourced after lib.sh):
# the report files of a run that was interrupted must still hold every
# round exactly once, no torn line, and the CSV and JSON Lines rows must
# agree.

# fl_kill9 PID : SIGKILL a process started by fl_coord/fl_worker (the
# `timeout` watchdog's whole group) and wait until it is gone (bounded).
fl_kill9() {
    local pid=$1 i
    disown "$pid" 2>/dev/null # no "Killed" job notice
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
    for ((i = 0; i < 50; i++)); do # bounded: 5 s
        fl_running "$pid" || return 0
        sleep 0.1
    done
    fl_fail "process $pid survived SIGKILL"
}

# fl_drop_worker PID : forget a worker pid (it was killed on purpose).
fl_drop_worker() {
    local p keep=()
    for p in "${FL_WORKER_PIDS[@]}"; do
        [[ $p == "$1" ]] || keep+=("$p")
    done
    FL_WORKER_PIDS=("${keep[@]}")
}

# fl_check_reports REPORT_DIR ROUNDS : rounds.csv has every round
# 1..ROUNDS committed exactly once (abandoned attempts may add rows, but no
# (round, attempt) appears twice), every line of the three files is whole
# (field count of the header, a newline at the end), and rounds.jsonl has
# the same rows in the same order with the same outcome.
fl_check_reports() {
    local rdir=$1 rounds=$2 f out
    local csv=$rdir/rounds.csv jsonl=$rdir/rounds.jsonl dev=$rdir/devices.csv
    for f in "$csv" "$jsonl" "$dev"; do
        [[ -s $f ]] || fl_fail "missing or empty $f"
        [[ -z $(tail -c1 "$f") ]] || fl_fail "$f: torn last line: $(tail -1 "$f")"
    done
    for f in "$csv" "$dev"; do
        out=$(awk -F, 'NR == 1 { n = NF; next }
                       NF != n { printf "line %d has %d fields, not %d\n",
                                 NR, NF, n }' "$f")
        [[ -z $out ]] || fl_fail "$f: $out"
    done
    out=$(awk -F, -v rounds="$rounds" '
        NR == 1 { for (i = 1; i <= NF; i++) h[$i] = i; next }
        {
            r = $h["round"]; a = $h["attempt"]
            if (seen[r "/" a]++) printf "round %s attempt %s twice\n", r, a
            if ($h["test_acc"] != "") committed[r]++
            if (r < 1 || r > rounds) printf "round %s out of range\n", r
        }
        END {
            for (r = 1; r <= rounds; r++)
                if (committed[r] != 1)
                    printf "round %d committed %d times\n", r, committed[r]
        }' "$csv")
    [[ -z $out ]] || fl_fail "$csv: $out$(printf '\n')$(cat "$csv")"
    # the JSON rows, reduced to "round,attempt,committed"
    local from_json from_csv
    from_json=$(awk '
        !/^\{.*\}$/ { print "torn json line " NR; next }
        {
            r = $0; sub(/.*"round":/, "", r); sub(/,.*/, "", r)
            a = $0; sub(/.*"attempt":/, "", a); sub(/,.*/, "", a)
            c = ($0 ~ /"test_acc":null/) ? 0 : 1
            print r "," a "," c
        }' "$jsonl")
    from_csv=$(awk -F, '
        NR == 1 { for (i = 1; i <= NF; i++) h[$i] = i; next }
        { print $h["round"] "," $h["attempt"] "," ($h["test_acc"] != "") }
        ' "$csv")
    [[ $from_json == "$from_csv" ]] ||
        fl_fail "rounds.jsonl and rounds.csv differ:$(printf '\n')$(
            diff <(echo "$from_csv") <(echo "$from_json"))"
    # devices.csv: one row per cohort member per attempt (late rows apart)
    out=$(awk -F, '
        NR == 1 { for (i = 1; i <= NF; i++) h[$i] = i; next }
        $h["status"] != "late" {
            k = $h["round"] "/" $h["device"] "/" $h["attempt"]
            if (seen[k]++) printf "device row %s twice\n", k
        }' "$dev")
    [[ -z $out ]] || fl_fail "$dev: $out"
}

# fl_row CSV ROUND COLUMN : the value of COLUMN in the committed row of
# ROUND.
fl_row() {
    awk -F, -v r="$2" -v col="$3" '
        NR == 1 { for (i = 1; i <= NF; i++) h[$i] = i; next }
        $h["round"] == r && $h["test_acc"] != "" { print $h[col]; exit }
        ' "$1"
}
