# shellcheck shell=bash
# lib.sh - helpers for fedcomp's end-to-end tests (sourced, not run).
#
# The runner (tests/run-tests.sh) sets FL_BIN (build/rel/bin or
# build/asan/bin) and FL_VARIANT. Every process is started under a
# `timeout` watchdog and recorded; an EXIT/INT/TERM trap kills whatever is
# still running, so a failing test never leaves processes behind. No
# sleeps as synchronisation: we wait for processes to exit, and poll for
# the endpoint file with a bounded loop.
#
# Set FL_KEEP=1 to keep the temporary directory after a run.

set -u
FL_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
FL_BIN=${FL_BIN:-build/rel/bin}
[[ $FL_BIN == /* ]] || FL_BIN=$FL_ROOT/$FL_BIN
FL_VARIANT=${FL_VARIANT:-rel}
FL_DATA=${FL_DATA:-/usr/share/datasets/fashion-mnist}
# seconds a single process may live (watchdog)
FL_WATCHDOG=${FL_WATCHDOG:-120}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# Security flags fl_coord and fl_worker put before the test's own: plaintext
# on loopback by default (both programs refuse plaintext unless asked);
# test_security.sh empties them and passes CURVE keys instead.
FL_COORD_SECURITY=(--insecure)
FL_WORKER_SECURITY=(--insecure)

FL_PIDS=()
FL_TMP=$(mktemp -d "${TMPDIR:-/tmp}/fedcomp-it.XXXXXX")
FL_FAILED=0

# fl_running PID : true while PID exists and is not a zombie.
fl_running() {
    local st=""
    read -r _ _ st _ 2>/dev/null <"/proc/$1/stat" || return 1
    [[ $st != Z ]]
}

fl_cleanup() {
    local pid t
    # bash 5.2 prints spurious "wait_for: No record of process" notes when
    # reaping inside an EXIT trap; nothing else here writes to stderr.
    exec 2>/dev/null
    # Each process runs under `timeout`, which makes itself the leader of a
    # new process group holding the program: signal the group, so the
    # program is reached even if timeout has not recorded its child yet.
    for pid in "${FL_PIDS[@]}"; do
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${FL_PIDS[@]}"; do
        # bounded: a program exits on TERM within ~1 s; KILL after 3 s
        for ((t = 0; t < 30; t++)); do
            fl_running "$pid" || break
            sleep 0.1
        done
        kill -KILL -- "-$pid" 2>/dev/null
    done
    wait 2>/dev/null # reap; every child is gone by now
    FL_PIDS=()
    if [[ ${FL_KEEP:-0} == 1 || $FL_FAILED == 1 ]]; then
        echo "logs kept in $FL_TMP"
    else
        rm -rf "$FL_TMP"
    fi
}
trap fl_cleanup EXIT
trap 'exit 130' INT TERM

fl_fail() {
    FL_FAILED=1
    echo "FAIL: $*"
    exit 1
}

fl_ok() { echo "ok: $*"; }

fl_need() {
    local p
    for p in fedcomp-coordinator fedcomp-worker; do
        [[ -x $FL_BIN/$p ]] || fl_fail "$FL_BIN/$p not built"
    done
    [[ -d $FL_DATA ]] || fl_fail "no Fashion-MNIST in $FL_DATA"
}

# fl_coord DIR ARGS... : start a coordinator bound to FL_BIND (default: a
# free loopback port); logs in DIR/coord.log, progress/summary in
# DIR/coord.out, reports in DIR/report. Sets FL_COORD_PID and FL_EP (after
# the endpoint appears).
fl_coord() {
    local dir=$1
    shift
    mkdir -p "$dir"
    rm -f "$dir/endpoint"
    timeout -s TERM "$FL_WATCHDOG" "$FL_BIN/fedcomp-coordinator" \
        --bind "${FL_BIND:-tcp://127.0.0.1:*}" \
        --endpoint-file "$dir/endpoint" \
        --report-dir "$dir/report" --data-dir "$FL_DATA" \
        "${FL_COORD_SECURITY[@]}" "$@" \
        >"$dir/coord.out" 2>"$dir/coord.log" &
    FL_COORD_PID=$!
    FL_PIDS+=("$FL_COORD_PID")
    local i
    for ((i = 0; i < 300; i++)); do # bounded: 30 s
        [[ -s $dir/endpoint ]] && break
        kill -0 "$FL_COORD_PID" 2>/dev/null ||
            fl_fail "coordinator exited early: $(tail -5 "$dir/coord.log")"
        sleep 0.1
    done
    [[ -s $dir/endpoint ]] || fl_fail "no endpoint file from the coordinator"
    FL_EP=$(head -1 "$dir/endpoint")
}

# fl_worker DIR I N ARGS... : start worker I of N (shard I/N) against
# FL_EP; log in DIR/wI.log. The pid is appended to FL_WORKER_PIDS.
FL_WORKER_PIDS=()
fl_worker() {
    local dir=$1 i=$2 n=$3
    shift 3
    timeout -s TERM "$FL_WATCHDOG" "$FL_BIN/fedcomp-worker" \
        --connect "$FL_EP" --id "w$i" --state-dir "$dir/state-w$i" \
        --data-dir "$FL_DATA" --shard "$i/$n" --hello-timeout 60 \
        "${FL_WORKER_SECURITY[@]}" "$@" \
        >"$dir/w$i.out" 2>"$dir/w$i.log" &
    FL_PIDS+=("$!")
    FL_WORKER_PIDS+=("$!")
}

# fl_wait_log FILE REGEX [COUNT] : bounded poll (30 s) until FILE has COUNT
# (default 1) lines matching REGEX.
fl_wait_log() {
    local file=$1 re=$2 count=${3:-1} i
    for ((i = 0; i < 300; i++)); do
        [[ $(grep -cE "$re" "$file" 2>/dev/null) -ge $count ]] && return 0
        sleep 0.1
    done
    fl_fail "'$re' not seen $count time(s) in $file"
}

# fl_wait PID NAME : wait for a process and fail unless it exits 0.
fl_wait() {
    local rc=0
    wait "$1" || rc=$?
    [[ $rc -eq 0 ]] || fl_fail "$2 exited with status $rc"
}

# fl_wait_all DIR : wait for the coordinator and every worker of the run.
fl_wait_all() {
    local dir=$1 pid i=0
    fl_wait "$FL_COORD_PID" "coordinator ($dir/coord.log)"
    for pid in "${FL_WORKER_PIDS[@]}"; do
        fl_wait "$pid" "worker $i ($dir/w$i.log)"
        i=$((i + 1))
    done
    FL_WORKER_PIDS=()
}

# fl_col FILE.csv COLUMN : the values of a named column, one per line.
fl_col() {
    awk -F, -v col="$2" '
        NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i; next }
        c { print $c }
        END { if (!c) exit 1 }' "$1" || fl_fail "no column '$2' in $1"
}

# fl_sum FILE.csv COLUMN : sum of a numeric column.
fl_sum() {
    fl_col "$1" "$2" | awk '{ s += $1 } END { printf "%d\n", s }'
}

# fl_reported_up_bytes DEVICES.csv ID : up_bytes of device ID summed over
# its reported rows (the bytes of its updates that were aggregated).
fl_reported_up_bytes() {
    awk -F, -v id="$2" '
        NR == 1 { for (j = 1; j <= NF; j++) h[$j] = j; next }
        $h["device"] == id && $h["status"] == "reported" {
            s += $h["up_bytes"] }
        END { printf "%d\n", s }' "$1"
}

# fl_used_bytes LOG : bytes a worker logged as sent for the updates that it
# learned were used (sum over rounds).
fl_used_bytes() {
    awk '
        /sent update round [0-9]+: [0-9]+ bytes/ {
            for (i = 1; i <= NF; i++)
                if ($i == "round") { r = $(i + 1); sub(":", "", r);
                                     b[r] = $(i + 2) }
        }
        /update of round [0-9]+ was used/ {
            for (i = 1; i <= NF; i++) if ($i == "round") used[$(i + 1)] = 1
        }
        END { for (r in used) s += b[r]; printf "%d\n", s }' "$1"
}

# fl_float_gt A B : true when A > B (floats).
fl_float_gt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 > b + 0) }'; }
