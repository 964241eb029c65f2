#!/usr/bin/env bash
# Edge build: the static worker (`make worker-static`).
#   1. builds it (only a link: it reuses the release objects) into
#      $B/static/bin/fedcomp-worker;
#   2. checks what stays dynamic: the binary itself needs only libzmq.so.5
#      and glibc (libm, libc), and no libprotobuf-c, libzstd, liblz4,
#      libopenblas, libgfortran or libz is loaded at all (ldd);
#   3. prints its size, stripped and not, next to the dynamic worker's;
#   4. runs it against a native coordinator on loopback, one round of the
#      default MLP on shard 0/8 of Fashion-MNIST (7,500 images): the round
#      is committed with its update (rounds.csv, devices.csv, the worker's
#      "was used" line and its bytes), every process exits 0; then the same
#      round with the dynamic worker, and prints both workers' peak RSS:
#      the worker's own (ru_maxrss, its "round 1 cost: ... peak RSS" line),
#      which must be > 0 and at most GNU time's peak over the whole run.
# Not in the ASan subset: it is about the release build's linking.
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
fl_need
FL_WATCHDOG=90
for tool in readelf ldd strip make; do
    command -v $tool >/dev/null ||
        fl_fail "$tool not installed (deploy/deps.sh installs it)"
done
[[ -x /usr/bin/time ]] || fl_fail "/usr/bin/time not installed (Debian package time)"

# the build folder of the programs under test, relative to the tree as the
# Makefile's own rules name it (build/rel/bin -> build)
B=$(realpath --relative-to="$FL_ROOT" "$FL_BIN/../..")

# ---- 1. build
(cd "$FL_ROOT" && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
    make --no-print-directory -s -j2 FL_INNER=1 B="$B" worker-static) \
    >"$FL_TMP/make.log" 2>&1 ||
    fl_fail "make worker-static: $(tail -20 "$FL_TMP/make.log")"
W=$FL_ROOT/$B/static/bin/fedcomp-worker
[[ -x $W ]] || fl_fail "$W not built"
"$W" --version | grep -q '^fedcomp-worker ' || fl_fail "$W --version"
fl_ok "make worker-static: $W"

# ---- 2. what stays dynamic
needed=$(readelf -d "$W" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort | tr '\n' ' ')
[[ $needed == "libc.so.6 libm.so.6 libzmq.so.5 " ]] ||
    fl_fail "static worker needs '$needed', want libc.so.6 libm.so.6 libzmq.so.5"
ldd "$W" >"$FL_TMP/ldd.txt" 2>&1 || fl_fail "ldd: $(cat "$FL_TMP/ldd.txt")"
grep -q 'not found' "$FL_TMP/ldd.txt" && fl_fail "ldd: $(grep 'not found' "$FL_TMP/ldd.txt")"
for lib in libprotobuf-c libzstd liblz4 libopenblas libgfortran libquadmath 'libz\.'; do
    grep -q "^[[:space:]]*$lib" "$FL_TMP/ldd.txt" &&
        fl_fail "static worker still loads $lib: $(grep "$lib" "$FL_TMP/ldd.txt")"
done
# and the dynamic worker does load them: the check above can fail
D=$FL_BIN/fedcomp-worker
ldd "$D" | grep -q '^[[:space:]]*libopenblas' ||
    fl_fail "the dynamic worker does not load libopenblas (the check is void)"
fl_ok "needed: $needed; loaded through libzmq: $(awk '{ print $1 }' "$FL_TMP/ldd.txt" |
    grep -v -e linux-vdso -e ld-linux -e libzmq -e '^libc\.' -e '^libm\.' | tr '\n' ' ')"

# ---- 3. sizes
size_of() { stat -c %s "$1"; }
strip -o "$FL_TMP/static.stripped" "$W"
strip -o "$FL_TMP/dynamic.stripped" "$D"
s_size=$(size_of "$W")
s_strip=$(size_of "$FL_TMP/static.stripped")
d_size=$(size_of "$D")
d_strip=$(size_of "$FL_TMP/dynamic.stripped")
"$FL_TMP/static.stripped" --version >/dev/null || fl_fail "stripped static worker does not run"
echo "size: static worker $s_size bytes ($s_strip stripped);" \
    "dynamic worker $d_size bytes ($d_strip stripped)"

# ---- 4. one round against a native coordinator
# edge_worker DIR BINARY : worker w0, shard 0/8 of the full training set,
# under GNU time (peak RSS into DIR/w0.rss)
edge_worker() {
    local dir=$1 bin=$2
    timeout -s TERM "$FL_WATCHDOG" /usr/bin/time -f '%M' -o "$dir/w0.rss" \
        "$bin" --connect "$FL_EP" --id w0 --state-dir "$dir/state-w0" \
        --data-dir "$FL_DATA" --shard 0/8 --hello-timeout 60 \
        "${FL_WORKER_SECURITY[@]}" >"$dir/w0.out" 2>"$dir/w0.log" &
    FL_PIDS+=("$!")
    FL_WORKER_PIDS+=("$!")
}

# one_round DIR BINARY : sets RSS_KB and UP_BYTES
one_round() {
    local dir=$1 csv=$1/report/rounds.csv dev=$1/report/devices.csv
    fl_coord "$dir" --rounds 1 --min-devices 1 --eval-limit 1000 \
        --round-timeout 60 --wait-timeout 60
    edge_worker "$dir" "$2"
    fl_wait_all "$dir"
    [[ -f $csv && -f $dev ]] || fl_fail "no report in $dir/report"
    [[ $(($(wc -l <"$csv") - 1)) -eq 1 ]] || fl_fail "$csv has not 1 row"
    [[ $(fl_col "$csv" reported) == 1 ]] || fl_fail "round 1 not reported in $csv"
    [[ $(fl_sum "$csv" rejected) -eq 0 && $(fl_sum "$csv" dropped) -eq 0 ]] ||
        fl_fail "rejected/dropped updates in $csv"
    grep -q "update of round 1 was used" "$dir/w0.log" ||
        fl_fail "the worker did not learn that its update was used ($dir/w0.log)"
    grep -q "loaded shard 0/8: 7500 of 60000" "$dir/w0.log" ||
        fl_fail "the worker did not load shard 0/8 of the full set"
    local b dev_b
    b=$(fl_used_bytes "$dir/w0.log")
    dev_b=$(fl_reported_up_bytes "$dev" w0)
    [[ $b -gt 0 && $dev_b -eq $b ]] ||
        fl_fail "devices.csv has $dev_b up bytes for w0, it logged $b"
    [[ $(fl_sum "$csv" up_wire_bytes) -eq $b ]] ||
        fl_fail "rounds.csv up_wire_bytes != the worker's $b bytes"
    local life
    life=$(tail -1 "$dir/w0.rss")
    [[ $life =~ ^[0-9]+$ && $life -gt 0 ]] || fl_fail "no peak RSS in $dir/w0.rss"
    RSS_KB=$(sed -n 's/.*round 1 cost: .*peak RSS \([0-9]*\) KiB.*/\1/p' "$dir/w0.log")
    [[ $RSS_KB =~ ^[0-9]+$ && $RSS_KB -gt 0 ]] ||
        fl_fail "no 'round 1 cost: ... peak RSS' line in $dir/w0.log"
    [[ $RSS_KB -le $life ]] ||
        fl_fail "the worker's peak RSS $RSS_KB KiB > GNU time's $life KiB"
    UP_BYTES=$b
}

one_round "$FL_TMP/static" "$W"
static_rss=$RSS_KB
fl_ok "static worker: round 1 committed with its update ($UP_BYTES bytes)"
one_round "$FL_TMP/dynamic" "$D"
dynamic_rss=$RSS_KB
fl_ok "dynamic worker: round 1 committed with its update ($UP_BYTES bytes)"
echo "peak RSS, one round, default MLP, shard 0/8 (7500 images):" \
    "static worker $static_rss KiB, dynamic worker $dynamic_rss KiB"
echo "PASS"
