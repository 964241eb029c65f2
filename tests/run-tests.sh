#!/usr/bin/env bash
# Run fedcomp's test suites and end with one line "N passed, N failed".
#   --quick : style check + release unit tests (make check)
#   --full  : + the same unit tests under ASan/UBSan, fuzz corpus replay,
#             integration tests (release, and the asan subset)  (make test)
# Each cmocka case counts as one test; a binary that dies before its summary
# counts as one failure. Every binary runs under a `timeout` watchdog.
set -u
cd "$(dirname "$0")/.."
mode=${1:---full}
B=${FL_BUILD:-build}
pass=0
fail=0
skipped_names=()
failed_names=()
log_dir=$B/test-logs
mkdir -p "$log_dir"

note_result() { # name status(0 ok) [count]
    local n=${3:-1}
    if [[ $2 -eq 0 ]]; then
        pass=$((pass + n))
        printf '  ok    %s\n' "$1"
    else
        fail=$((fail + n))
        failed_names+=("$1")
        printf '  FAIL  %s (log: %s)\n' "$1" "$4"
    fi
}

run_cmocka() { # variant binary
    local v=$1 bin=$2 name log out p f
    name="$v/$(basename "$bin")"
    log="$log_dir/${v}_$(basename "$bin").log"
    timeout 600 "$bin" >"$log" 2>&1
    local rc=$?
    p=$(grep -ao '\[  PASSED  \] [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
    f=$(grep -ao '\[  FAILED  \] [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
    p=${p:-0}
    f=${f:-0}
    if [[ $rc -ne 0 && $f -eq 0 ]]; then
        f=1 # crashed, timed out or died before the summary
    fi
    pass=$((pass + p))
    fail=$((fail + f))
    if [[ $f -eq 0 ]]; then
        printf '  ok    %s (%d cases)\n' "$name" "$p"
    else
        failed_names+=("$name")
        printf '  FAIL  %s (%d passed, %d failed; log: %s)\n' "$name" "$p" "$f" "$log"
    fi
}

echo "== style"
tests/checksrc.sh >"$log_dir/checksrc.log" 2>&1
note_result checksrc $? 1 "$log_dir/checksrc.log"

variants=(rel)
[[ $mode == --full ]] && variants+=(asan)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

for v in "${variants[@]}"; do
    echo "== unit tests ($v)"
    for bin in "$B/$v"/tests/test_*; do
        [[ -x $bin ]] || continue
        run_cmocka "$v" "$bin"
    done
done

if [[ $mode == --full ]]; then
    echo "== fuzz corpus replay (asan)"
    for bin in "$B"/asan/fuzz/fuzz_*; do
        [[ -x $bin ]] || continue
        t=$(basename "$bin")
        dir=tests/fuzz/corpus/$t
        [[ -d $dir ]] || continue
        n=$(find "$dir" -type f | wc -l)
        log="$log_dir/replay_$t.log"
        timeout 600 "$bin" "$dir" >"$log" 2>&1
        note_result "replay $t ($n inputs)" $? "$n" "$log"
    done

    for v in rel asan; do
        echo "== integration tests ($v)"
        for t in tests/integration/test_*.sh; do
            [[ -f $t ]] || continue
            if [[ $v == asan ]] && ! grep -q '^# asan: yes' "$t"; then
                continue
            fi
            name="$v/$(basename "$t" .sh)"
            log="$log_dir/${v}_$(basename "$t" .sh).log"
            FL_BIN="$B/$v/bin" FL_VARIANT=$v timeout 900 bash "$t" >"$log" 2>&1
            rc=$?
            if [[ $rc -eq 77 ]]; then
                # a prerequisite is missing (not root, no cross toolchain):
                # neither passed nor failed, and said so
                skipped_names+=("$name")
                printf '  skip  %s (%s)\n' "$name" \
                    "$(grep -m1 '^skip:' "$log" || echo "exit 77")"
                continue
            fi
            note_result "$name" $rc 1 "$log"
        done
    done
fi

if [[ ${#skipped_names[@]} -gt 0 ]]; then
    echo "skipped (not counted): ${skipped_names[*]}"
fi
if [[ ${#failed_names[@]} -gt 0 ]]; then
    echo "failed: ${failed_names[*]}"
fi
echo "$pass passed, $fail failed"
[[ $fail -eq 0 ]]
