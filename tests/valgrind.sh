#!/usr/bin/env bash
# make check-valgrind: a short real training (coordinator + 2 workers,
# 2 rounds, small data) with every process under valgrind memcheck.
# Passes only with zero memcheck errors in every process.
set -u
cd "$(dirname "$0")/.."
. bench/fleet.sh
out=$(mktemp -d /tmp/fedcomp-valgrind.XXXXXX)
trap 'fleet_cleanup; rm -rf "$out"' EXIT
trap 'exit 130' INT TERM
VG="valgrind --tool=memcheck --error-exitcode=99 --leak-check=full"
VG+=" --errors-for-leak-kinds=definite --track-origins=yes --quiet"

mkdir -p "$out/vgbin"
# wrap the programs so fleet_run starts them under valgrind
for p in fedcomp-coordinator fedcomp-worker; do
    printf '#!/bin/sh\nexec %s --log-file=%s/vg-%s.%%p.log %s/%s "$@"\n' \
        "$VG" "$out" "$p" "$PWD/build/rel/bin" "$p" >"$out/vgbin/$p"
    chmod +x "$out/vgbin/$p"
done
FL_BIN="$out/vgbin"
fleet_run "$out/run" 2 "--rounds 2 --eval-limit 500 --hidden 32 \
    --round-timeout 300 --quorum 1" "--train-limit 1000"
rc=$?
errors=0
for f in "$out"/vg-*.log; do
    # with --quiet, memcheck writes only errors: any content is a finding
    if [[ -s $f ]]; then
        echo "memcheck errors in $(basename "$f"):"
        cat "$f"
        errors=1
    fi
done
rows=$(($(wc -l <"$out/run/rounds.csv" 2>/dev/null || echo 1) - 1))
echo "check-valgrind: coordinator exit $rc, $rows report rows, memcheck logs: $(ls "$out"/vg-*.log | wc -l)"
if [[ $rc -ne 0 || $errors -ne 0 || $rows -ne 2 ]]; then
    echo "check-valgrind: FAILED"
    cat "$out/run/coordinator.log" | tail -20
    exit 1
fi
echo "check-valgrind: 0 memcheck errors"
