#!/usr/bin/env bash
# Edge build: the worker cross-built for 64-bit ARM
# (`make CROSS=aarch64-linux-gnu`), run under qemu-aarch64 (user mode)
# against a native coordinator on loopback.
#   1. builds it (only the worker and the archives it links; up to date
#      when `make CROSS=aarch64-linux-gnu` ran before) into
#      $B/aarch64-linux-gnu/bin/fedcomp-worker, and checks it is an
#      AArch64 executable;
#   2. prints its size, stripped and not;
#   3. one round of a small MLP (784-64-32-10) on a small slice (shard 0/4
#      of the first 4,000 images): the round is committed with the arm64
#      worker's update (rounds.csv, devices.csv, the worker's "was used"
#      line and its bytes), every process exits 0; prints the worker's peak
#      RSS (its own ru_maxrss from its "round 1 cost" line, at most GNU
#      time's over the whole run), which under qemu-user is the emulator
#      process's (guest memory plus qemu itself and its translated code).
# Exits 77 after "skip: REASON" when the cross toolchain, the arm64
# libraries or qemu-aarch64 are missing (deploy/deps.sh --cross aarch64
# installs them).
#
# qemu runs without -L: Debian 12's arm64 libraries come with the
# multiarch libc6:arm64, whose loader is /lib/ld-linux-aarch64.so.1 on
# this machine. `-L /usr/aarch64-linux-gnu` would pair the cross
# toolchain's loader (libc6-arm64-cross 2.36-8cross1) with libc6:arm64's
# libc.so.6 (2.36-9+deb12u*), and the worker then hangs at start.
# Not in the ASan subset.
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
fl_need
FL_WATCHDOG=120
CROSS=aarch64-linux-gnu
PCDIR=/usr/lib/$CROSS/pkgconfig:/usr/share/pkgconfig

skip() {
    echo "skip: $*"
    exit 77
}
command -v $CROSS-gcc >/dev/null ||
    skip "no $CROSS-gcc (deploy/deps.sh --cross aarch64 installs the cross toolchain)"
command -v pkg-config >/dev/null || skip "no pkg-config"
PKG_CONFIG_LIBDIR=$PCDIR pkg-config --exists libzmq libprotobuf-c libzstd liblz4 \
    openblas zlib || skip "arm64 libraries missing (deploy/deps.sh --cross aarch64)"
QEMU=$(command -v qemu-aarch64 || command -v qemu-aarch64-static) ||
    skip "no qemu-aarch64 (Debian package qemu-user; deploy/deps.sh --cross aarch64)"
[[ -e /lib/ld-linux-aarch64.so.1 ]] ||
    skip "no /lib/ld-linux-aarch64.so.1 (Debian package libc6:arm64)"
[[ -x /usr/bin/time ]] || fl_fail "/usr/bin/time not installed (Debian package time)"
unset QEMU_LD_PREFIX

# ---- 1. build (build/rel/bin -> build/aarch64-linux-gnu)
B=$(realpath --relative-to="$FL_ROOT" "$FL_BIN/../..")
BC=$B/$CROSS
t0=$(date +%s)
(cd "$FL_ROOT" && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
    make --no-print-directory -s -j2 FL_INNER=1 CROSS=$CROSS B="$BC" worker) \
    >"$FL_TMP/make.log" 2>&1 ||
    fl_fail "make CROSS=$CROSS: $(tail -20 "$FL_TMP/make.log")"
W=$FL_ROOT/$BC/bin/fedcomp-worker
[[ -x $W ]] || fl_fail "$W not built"
readelf -h "$W" | grep -q 'Machine:.*AArch64' || fl_fail "$W is not an AArch64 executable"
fl_ok "make CROSS=$CROSS worker: $W ($(($(date +%s) - t0)) s)"
"$QEMU" "$W" --version | grep -q '^fedcomp-worker ' || fl_fail "$W --version under qemu"

# ---- 2. sizes
$CROSS-strip -o "$FL_TMP/worker.stripped" "$W"
echo "size: aarch64 worker $(stat -c %s "$W") bytes" \
    "($(stat -c %s "$FL_TMP/worker.stripped") stripped)"

# ---- 3. one round under qemu-aarch64
dir=$FL_TMP/run
csv=$dir/report/rounds.csv
dev=$dir/report/devices.csv
fl_coord "$dir" --rounds 1 --min-devices 1 --hidden 64,32 --eval-limit 1000 \
    --round-timeout 100 --wait-timeout 100
t0=$(date +%s)
timeout -s TERM "$FL_WATCHDOG" /usr/bin/time -f '%M' -o "$dir/w0.rss" \
    "$QEMU" "$W" --connect "$FL_EP" --id w0 --state-dir "$dir/state-w0" \
    --data-dir "$FL_DATA" --train-limit 4000 --shard 0/4 --hello-timeout 100 \
    "${FL_WORKER_SECURITY[@]}" >"$dir/w0.out" 2>"$dir/w0.log" &
FL_PIDS+=("$!")
FL_WORKER_PIDS+=("$!")
fl_wait_all "$dir"
secs=$(($(date +%s) - t0))

[[ -f $csv && -f $dev ]] || fl_fail "no report in $dir/report"
[[ $(($(wc -l <"$csv") - 1)) -eq 1 ]] || fl_fail "$csv has not 1 row"
[[ $(fl_col "$csv" reported) == 1 ]] || fl_fail "round 1 not reported in $csv"
[[ $(fl_sum "$csv" rejected) -eq 0 && $(fl_sum "$csv" dropped) -eq 0 ]] ||
    fl_fail "rejected/dropped updates in $csv"
grep -q "model: mlp 784-64-32-10" "$dir/w0.log" ||
    fl_fail "the worker did not build the small model ($dir/w0.log)"
grep -q "loaded shard 0/4: 1000 of 4000" "$dir/w0.log" ||
    fl_fail "the worker did not load shard 0/4 of 4000 images"
grep -q "update of round 1 was used" "$dir/w0.log" ||
    fl_fail "the arm64 worker did not learn that its update was used"
b=$(fl_used_bytes "$dir/w0.log")
dev_b=$(fl_reported_up_bytes "$dev" w0)
[[ $b -gt 0 && $dev_b -eq $b ]] ||
    fl_fail "devices.csv has $dev_b up bytes for w0, it logged $b"
[[ $(fl_sum "$csv" up_wire_bytes) -eq $b ]] ||
    fl_fail "rounds.csv up_wire_bytes != the arm64 worker's $b bytes"
life=$(tail -1 "$dir/w0.rss")
[[ $life =~ ^[0-9]+$ && $life -gt 0 ]] || fl_fail "no peak RSS in $dir/w0.rss"
rss=$(sed -n 's/.*round 1 cost: .*peak RSS \([0-9]*\) KiB.*/\1/p' "$dir/w0.log")
[[ $rss =~ ^[0-9]+$ && $rss -gt 0 ]] ||
    fl_fail "no 'round 1 cost: ... peak RSS' line in $dir/w0.log"
[[ $rss -le $life ]] || fl_fail "the worker's peak RSS $rss KiB > GNU time's $life KiB"
fl_ok "arm64 worker under $(basename "$QEMU"): round 1 committed with its update" \
    "($b bytes, $secs s)"
echo "peak RSS under qemu-aarch64 (includes the emulator):" \
    "$rss KiB; $(grep -o 'train [0-9.]* ms' "$dir/w0.log" | head -1)"
echo "PASS"
