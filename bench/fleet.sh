# fleet.sh - run one coordinator and N workers on loopback (sourced by the
# benchmark scripts). Processes are started in their own process group and
# always cleaned up, also on Ctrl-C.
#
#   fleet_run OUT_DIR N_WORKERS "COORDINATOR ARGS" "WORKER ARGS"
# runs until the coordinator exits; the coordinator's report goes to
# OUT_DIR, logs to OUT_DIR/{coordinator,worker-I}.log. Returns the
# coordinator's exit code. FL_BIN points at the programs (default build/).

FL_BIN=${FL_BIN:-build}
FLEET_PIDS=()

fleet_cleanup() {
    local p
    for p in "${FLEET_PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null
    done
    for p in "${FLEET_PIDS[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    FLEET_PIDS=()
}

fleet_run() {
    local out=$1 n=$2 cargs=$3 wargs=$4 ep_file cpid rc i
    mkdir -p "$out"
    ep_file="$out/endpoint"
    rm -f "$ep_file"
    # shellcheck disable=SC2086
    "$FL_BIN/fedcomp-coordinator" --bind 'tcp://127.0.0.1:*' \
        --endpoint-file "$ep_file" --min-devices "$n" --report-dir "$out" \
        --insecure $cargs >"$out/coordinator.log" 2>&1 &
    cpid=$!
    FLEET_PIDS+=("$cpid")
    for _ in $(seq 600); do
        [[ -s $ep_file ]] && break
        kill -0 "$cpid" 2>/dev/null || break
        sleep 0.1
    done
    if [[ ! -s $ep_file ]]; then
        echo "fleet: coordinator did not start (see $out/coordinator.log)" >&2
        fleet_cleanup
        return 1
    fi
    for ((i = 0; i < n; i++)); do
        # shellcheck disable=SC2086
        "$FL_BIN/fedcomp-worker" --connect "$(cat "$ep_file")" \
            --shard "$i/$n" --state-dir "$out/state-$i" --insecure $wargs \
            >"$out/worker-$i.log" 2>&1 &
        FLEET_PIDS+=("$!")
    done
    wait "$cpid"
    rc=$?
    fleet_cleanup
    return $rc
}
