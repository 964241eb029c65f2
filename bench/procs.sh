# shellcheck shell=bash
# procs.sh - the benchmarks' child processes (sourced by scale.sh,
# soak.sh, slowlink.sh and worker_cost.sh, not run).
#
# A script appends the PID of every program it starts in the background to
# PIDS; procs_stop, which the script calls from its EXIT trap, ends them
# all: TERM to the process group (a program started under `timeout` or
# `setsid` leads its own) or else to the process, up to 5 s for it to
# leave, then KILL. A failing or interrupted run leaves nothing behind.

PIDS=()

procs_stop() {
    local p t
    for p in "${PIDS[@]}"; do
        kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null
    done
    for p in "${PIDS[@]}"; do
        for ((t = 0; t < 50; t++)); do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    PIDS=()
    wait 2>/dev/null # the samplers, which end with the process they watch
}

# wait_file FILE PID: bounded poll (60 s) until FILE is non-empty; fails
# when PID has exited first or the time is up.
wait_file() {
    local i
    for ((i = 0; i < 600; i++)); do
        [[ -s $1 ]] && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# child_of PID: the first child of PID (the program a `timeout` wrapper
# started), waiting up to 5 s for it to appear.
child_of() {
    local i c
    for ((i = 0; i < 100; i++)); do
        c=$(awk '{ print $1; exit }' "/proc/$1/task/$1/children" 2>/dev/null)
        [[ -n $c ]] && { echo "$c"; return 0; }
        sleep 0.05
    done
    return 1
}
