#!/usr/bin/env bash
# run-fuzz.sh - run libFuzzer targets for a while each (used by `make fuzz`).
#
#   tests/fuzz/run-fuzz.sh BUILD_DIR/fuzz/bin/fuzz_x [more targets...]
#
# For each target NAME:
#   - seeds come from tests/fuzz/corpus/NAME/ (read only: never written);
#   - new inputs go to a working copy BUILD_DIR/fuzz/corpus/NAME/ (next to
#     the binary's bin/ folder), which starts from the seeds and is kept
#     between runs;
#   - crash, leak, timeout and OOM files land in BUILD_DIR/fuzz/artifacts/NAME/
#     and are copied to tests/fuzz/crashes/NAME/ for triage;
#   - one line is printed: executions, execs/s, new corpus files, crashes.
# Environment: FUZZ_SECONDS (default 60) per target, FUZZ_ARGS (extra
# libFuzzer flags, e.g. "-max_len=4096"). Exits 1 if any target found a
# crash or failed to run, else 0.
set -u
cd "$(dirname "$0")/../.." || exit 2

seconds=${FUZZ_SECONDS:-60}
if ! [[ $seconds =~ ^[0-9]+$ ]] || [[ $seconds -eq 0 ]]; then
    echo "run-fuzz: FUZZ_SECONDS must be a positive integer, not '$seconds'" >&2
    exit 2
fi
if [[ $# -eq 0 ]]; then
    echo "usage: $0 FUZZ_BINARY..." >&2
    exit 2
fi

status=0
summary=()
for bin in "$@"; do
    name=$(basename "$bin")
    if [[ ! -x $bin ]]; then
        echo "run-fuzz: '$bin' is not an executable" >&2
        status=1
        continue
    fi
    fuzz_dir=$(cd "$(dirname "$bin")/.." && pwd)
    seeds=tests/fuzz/corpus/$name
    work=$fuzz_dir/corpus/$name
    art=$fuzz_dir/artifacts/$name
    log=$fuzz_dir/logs/$name.log
    mkdir -p "$work" "$art" "$(dirname "$log")"
    rm -f "$art"/crash-* "$art"/leak-* "$art"/timeout-* "$art"/oom-* \
        "$art"/slow-unit-*
    [[ -d $seeds ]] && cp -n "$seeds"/* "$work"/ 2>/dev/null
    before=$(find "$work" -type f | wc -l)

    echo "== fuzzing $name for ${seconds}s (corpus $work)"
    # The first corpus dir receives new inputs; the seed dir is only read.
    dirs=("$work")
    [[ -d $seeds ]] && dirs+=("$seeds")
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
    "$bin" -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$art/" ${FUZZ_ARGS:-} \
        "${dirs[@]}" >"$log" 2>&1
    rc=$?

    execs=$(grep -ao 'stat::number_of_executed_units: *[0-9]*' "$log" |
        tail -1 | grep -o '[0-9]*$')
    rate=$(grep -ao 'stat::average_exec_per_sec: *[0-9]*' "$log" |
        tail -1 | grep -o '[0-9]*$')
    after=$(find "$work" -type f | wc -l)
    crashes=$(find "$art" -maxdepth 1 -type f \( -name 'crash-*' -o \
        -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
    if [[ $crashes -gt 0 ]]; then
        mkdir -p "tests/fuzz/crashes/$name"
        cp "$art"/crash-* "$art"/leak-* "$art"/timeout-* "$art"/oom-* \
            "tests/fuzz/crashes/$name/" 2>/dev/null
        status=1
    elif [[ $rc -ne 0 ]]; then
        echo "run-fuzz: $name exited with $rc without a crash file; see $log" >&2
        crashes="? (exit $rc)"
        status=1
    fi
    line=$(printf '%s: executions %s, %s execs/s, corpus %d -> %d, crashes %s' \
        "$name" "${execs:-?}" "${rate:-?}" "$before" "$after" "$crashes")
    echo "$line"
    [[ $crashes != 0 ]] && echo "   crash files copied to tests/fuzz/crashes/$name/ (log: $log)"
    summary+=("$line")
done

echo "== fuzz summary"
for l in "${summary[@]}"; do
    echo "  $l"
done
exit $status
