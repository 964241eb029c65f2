#!/usr/bin/env bash
# Security end to end (docs/security.md): keys from fedcomp-keygen, a
# coordinator with CURVE and a ZAP allowlist, workers with their keys.
#
#   0. policy: neither program runs without keys unless --insecure.
#   1. CURVE run: devices with listed keys train 3 rounds; a client with an
#      unlisted key, a plaintext client and one with the wrong coordinator
#      key are refused at the handshake (the unlisted key logged with its
#      fingerprint and counted in rounds.jsonl; none of them ever in the
#      report); a listed key claiming another device's id in Hello gets
#      its own name and the honest device keeps working; a TCP peer that
#      never completes a handshake is dropped after ZMQ_HANDSHAKE_IVL (5 s).
#   2. SIGHUP: a removed key's device is told Bye and dropped at once, a
#      newly listed key can join; the report shows the switch.
#   3. admission: --max-devices-connected refuses a Hello with 51 (full);
#      --max-msg-rate drops messages over the limit, counted and logged once
#      per device and round.
# asan: yes
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
fl_need
[[ -x $FL_BIN/fedcomp-keygen ]] || fl_fail "$FL_BIN/fedcomp-keygen not built"

K=$FL_TMP/keys
AUTH=$FL_TMP/authorized
for n in coord w0 w1 mallory intruder; do
    "$FL_BIN/fedcomp-keygen" "$n" --dir "$K" >/dev/null ||
        fl_fail "fedcomp-keygen $n failed"
done
[[ $(stat -c %a "$K/w0.key") == 600 ]] || fl_fail "w0.key is not mode 600"
"$FL_BIN/fedcomp-keygen" w0 --dir "$K" >/dev/null 2>&1 &&
    fl_fail "fedcomp-keygen overwrote w0's keys"
mkdir -p "$AUTH"
cp "$K"/{w0,w1,mallory}.pub "$AUTH"/
# fpr NAME : the fingerprint of a key (first 12 characters of its Z85)
fpr() { sed -n 's/^public = \(.\{12\}\).*/\1/p' "$K/$1.pub"; }
CURVE=(--coordinator-key "$K/coord.pub")

# expect_rc RC TEXT FILE CMD... : CMD exits RC and FILE (its stderr) has TEXT
expect_rc() {
    local want=$1 text=$2 file=$3 rc=0
    shift 3
    timeout 30 "$@" >/dev/null 2>"$file" || rc=$?
    [[ $rc -eq $want ]] || fl_fail "$* exited $rc, want $want: $(cat "$file")"
    grep -qF -- "$text" "$file" || fl_fail "no '$text' in $file"
}

# start_client NAME ARGS... : a worker that is expected to be refused (not in
# FL_WORKER_PIDS: fl_wait_all expects exit 0); sets CLIENT_PID
start_client() {
    local name=$1
    shift
    timeout -s TERM "$FL_WATCHDOG" "$FL_BIN/fedcomp-worker" \
        --connect "$FL_EP" --state-dir "$FL_TMP/state-$name" \
        --data-dir "$FL_DATA" --train-limit 1000 "$@" \
        >/dev/null 2>"$dir/$name.log" &
    CLIENT_PID=$!
    FL_PIDS+=("$CLIENT_PID")
}

# coord_pid : the coordinator itself (FL_COORD_PID is its `timeout`)
coord_pid() { pgrep -P "$FL_COORD_PID" | head -1; }

# wait_file FILE TEXT : bounded poll (60 s) for a fixed string in FILE
wait_file() {
    local i
    for ((i = 0; i < 600; i++)); do
        grep -qF -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    fl_fail "'$2' not seen in $1"
}

# ---------------------------------------------------------------- 0. policy
p=$FL_TMP/policy.log
expect_rc 2 "refusing to run without encryption" "$p" \
    "$FL_BIN/fedcomp-coordinator" --data-dir "$FL_DATA"
expect_rc 2 "--insecure cannot be combined" "$p" \
    "$FL_BIN/fedcomp-coordinator" --insecure --curve-secret "$K/coord.key" \
    --authorized-keys "$AUTH"
expect_rc 2 "--curve-secret needs --authorized-keys" "$p" \
    "$FL_BIN/fedcomp-coordinator" --curve-secret "$K/coord.key"
expect_rc 2 "refusing to connect without encryption" "$p" \
    "$FL_BIN/fedcomp-worker" --state-dir "$FL_TMP/st-p"
expect_rc 2 "--curve-key needs --coordinator-key" "$p" \
    "$FL_BIN/fedcomp-worker" --curve-key "$K/w0.key" --state-dir "$FL_TMP/st-p"
# a secret key readable by others is refused
cp "$K/coord.key" "$FL_TMP/open.key"
chmod 644 "$FL_TMP/open.key"
expect_rc 1 "other users may access it" "$p" \
    "$FL_BIN/fedcomp-coordinator" --curve-secret "$FL_TMP/open.key" \
    --authorized-keys "$AUTH" --bind 'tcp://127.0.0.1:*' \
    --data-dir "$FL_DATA" --eval-limit 10 --hidden 8
fl_ok "no plaintext without --insecure; bad key files refused"

# ------------------------------------------------------------ 1. CURVE run
FL_COORD_SECURITY=(--curve-secret "$K/coord.key" --authorized-keys "$AUTH")
FL_WORKER_SECURITY=()
dir=$FL_TMP/run
fl_coord "$dir" --rounds 3 --min-devices 3 --fraction 1 --eval-limit 1000 \
    --hidden 32 --round-timeout 60 --wait-timeout 60
grep -qF "CURVE on: coordinator key $(fpr coord), 3 authorized keys" \
    "$dir/coord.log" || fl_fail "no CURVE line in $dir/coord.log"
secret=$(sed -n 's/^secret = //p' "$K/coord.key")
[[ ${#secret} -eq 40 ]] || fl_fail "no secret line in coord.key"

# a TCP peer that never says anything is dropped after the handshake
# interval (ZMQ_HANDSHAKE_IVL 5 s)
port=${FL_EP##*:}
(
    exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
    t0=$(date +%s%N)
    timeout 20 cat <&3 >/dev/null
    echo "$? $((($(date +%s%N) - t0) / 1000000))" >"$dir/raw"
) &
raw_pid=$!
FL_PIDS+=("$raw_pid")

# libzmq gives up on a refused handshake: the worker says why and exits 1
start_client intruder "${CURVE[@]}" --curve-key "$K/intruder.key" \
    --hello-timeout 30
intruder_pid=$CLIENT_PID
start_client plain --insecure --id plain --hello-timeout 30
plain_pid=$CLIENT_PID
# a listed key with the wrong coordinator key never gets through
start_client wrongkey --coordinator-key "$K/w0.pub" --curve-key "$K/w1.key" \
    --hello-timeout 4
wrong_pid=$CLIENT_PID
rc=0
wait "$intruder_pid" || rc=$?
[[ $rc -eq 1 ]] || fl_fail "the intruder exited $rc, want 1"
rc=0
wait "$plain_pid" || rc=$?
[[ $rc -eq 1 ]] || fl_fail "the plaintext client exited $rc, want 1"
rc=0
wait "$wrong_pid" || rc=$?
[[ $rc -eq 3 ]] || fl_fail "the client with a wrong server key exited $rc"
grep -qF "refused this device's key (status 400)" "$dir/intruder.log" ||
    fl_fail "the intruder was not told its key is refused"
grep -qF "security mechanism mismatch" "$dir/plain.log" ||
    fl_fail "the plaintext client was not told why: $(tail -2 "$dir/plain.log")"
grep -qF "no CURVE handshake completed" "$dir/wrongkey.log" ||
    fl_fail "no hint about the coordinator key in $dir/wrongkey.log"
grep -qF "refused handshake from 127.0.0.1: unknown key (key $(fpr intruder))" \
    "$dir/coord.log" || fl_fail "no refusal with the intruder's fingerprint"
grep -q "joined" "$dir/intruder.log" "$dir/plain.log" "$dir/wrongkey.log" &&
    fl_fail "a refused client joined"
fl_ok "unlisted key, plaintext, wrong server key: refused at the handshake"

fl_worker "$dir" 0 2 "${CURVE[@]}" --curve-key "$K/w0.key" --train-limit 4000
fl_worker "$dir" 1 2 "${CURVE[@]}" --curve-key "$K/w1.key" --train-limit 4000
# a listed key that claims to be w0
fl_worker "$dir" 2 3 "${CURVE[@]}" --curve-key "$K/mallory.key" --id w0 \
    --train-limit 4000
fl_wait_all "$dir"

csv=$dir/report/rounds.csv
dev=$dir/report/devices.csv
[[ $(fl_col "$csv" round | tr '\n' ' ') == "1 2 3 " ]] ||
    fl_fail "rounds are not 1 2 3 in $csv"
[[ $(fl_col "$csv" reported | sort -u) == 3 ]] ||
    fl_fail "not 3 devices reported in every round of $csv"
[[ $(fl_col "$dev" device | sort -u | tr '\n' ' ') == "mallory w0 w1 " ]] ||
    fl_fail "devices in $dev: $(fl_col "$dev" device | sort -u | tr '\n' ' ')"
[[ $(awk -F, '$2 == "w0" && $3 == "reported"' "$dev" | wc -l) -eq 3 ]] ||
    fl_fail "w0 did not report in every round"
grep -q "update of round 3 was used" "$dir/w0.log" ||
    fl_fail "w0 did not learn that its last update was used"
grep -qF "hello from the key of device 'mallory' says it is 'w0': it is 'mallory'" \
    "$dir/coord.log" || fl_fail "the false claim was not logged"
grep -qF "the coordinator calls this device 'mallory'" "$dir/w2.log" ||
    fl_fail "mallory was not told its name"
refused=$(grep -o '"refused_handshakes":[0-9]*' "$dir/report/rounds.jsonl" |
    awk -F: '{ s += $2 } END { print s + 0 }')
[[ $refused -ge 1 ]] || fl_fail "refused_handshakes is $refused in rounds.jsonl"
grep -q "refused handshakes" "$dir/coord.out" ||
    fl_fail "no refused handshakes in the summary"
for f in "$dir"/*.log; do
    grep -qF -- "$secret" "$f" && fl_fail "the coordinator's secret is in $f"
done
fl_ok "3 rounds over CURVE; 'mallory' could not take w0's id; $refused refused"

wait "$raw_pid"
read -r raw_rc raw_ms <"$dir/raw" || fl_fail "no result from the raw peer"
[[ $raw_rc -eq 0 && $raw_ms -ge 3000 && $raw_ms -le 15000 ]] ||
    fl_fail "a silent TCP peer was closed after $raw_ms ms (rc $raw_rc)"
fl_ok "a silent TCP peer was dropped after $raw_ms ms"

# ----------------------------------------------------------- 2. SIGHUP
dir=$FL_TMP/hup
# three devices per round: after the revocation rounds wait for a third
fl_coord "$dir" --rounds 100000 --min-devices 3 --fraction 1 \
    --eval-limit 200 --hidden 16 --round-timeout 30 --wait-timeout 60
fl_worker "$dir" 0 2 "${CURVE[@]}" --curve-key "$K/w0.key" --train-limit 2000
fl_worker "$dir" 1 2 "${CURVE[@]}" --curve-key "$K/w1.key" --train-limit 2000
fl_worker "$dir" 2 3 "${CURVE[@]}" --curve-key "$K/mallory.key" \
    --id mallory --train-limit 2000
wait_file "$dir/report/devices.csv" ",mallory,reported,"
rm "$AUTH/mallory.pub"
cp "$K/intruder.pub" "$AUTH/"
kill -HUP "$(coord_pid)"
wait_file "$dir/coord.log" "authorized key removed: device 'mallory' (key $(fpr mallory))"
wait_file "$dir/coord.log" "authorized key added: device 'intruder' (key $(fpr intruder))"
wait_file "$dir/coord.log" "worker 'mallory' dropped: its key was revoked"
wait_file "$dir/w2.log" "coordinator said bye: key revoked"
fl_worker "$dir" 3 4 "${CURVE[@]}" --curve-key "$K/intruder.key" \
    --train-limit 2000
wait_file "$dir/report/devices.csv" ",intruder,reported,"
kill -TERM "$(coord_pid)"
fl_wait_all "$dir"
grep -q "signal 15: stopping" "$dir/coord.log" || fl_fail "not stopped by TERM"
awk -F, '
    NR == 1 { next }
    $2 == "mallory" && $1 > m { m = $1 }
    $2 == "intruder" && (i == 0 || $1 < i) { i = $1 }
    END { exit !(m > 0 && i > m) }' "$dir/report/devices.csv" ||
    fl_fail "mallory has rows after intruder's first in devices.csv"
fl_ok "SIGHUP revoked mallory (bye, dropped) and let intruder in"

# -------------------------------------------------------- 3. admission
cp "$K/mallory.pub" "$AUTH/"
dir=$FL_TMP/admission
# w1 joins alone and fills the coordinator; its second update goes over the
# rate (2 messages at once, then one per 20 s), so round 2 never completes
fl_coord "$dir" --rounds 2 --min-devices 1 --max-devices-connected 1 \
    --max-msg-rate 0.05 --max-msg-burst 2 --round-timeout 5 \
    --max-attempts 1 --eval-limit 200 --hidden 16 --wait-timeout 30
fl_worker "$dir" 1 2 "${CURVE[@]}" --curve-key "$K/w1.key" --train-limit 2000
wait_file "$dir/coord.log" "worker 'w1' joined"
start_client w0 "${CURVE[@]}" --curve-key "$K/w0.key" --hello-timeout 6
w0_pid=$CLIENT_PID
rc=0
wait "$FL_COORD_PID" || rc=$?
[[ $rc -eq 4 ]] || fl_fail "coordinator exited $rc, want 4 (round 2 starved)"
FL_COORD_PID=
rc=0
wait "$w0_pid" || rc=$?
# 3: gave up without a Welcome; 0: a Bye after the end answered a Hello
[[ $rc -eq 3 || $rc -eq 0 ]] || fl_fail "w0 exited $rc, want 3 or 0"
grep -q "joined" "$dir/w0.log" && fl_fail "w0 joined a full coordinator"
fl_wait "${FL_WORKER_PIDS[0]}" "worker w1 ($dir/w1.log)"
grep -qF "coordinator rejected a message: full" "$dir/w0.log" ||
    fl_fail "w0 was not told the coordinator is full"
grep -qF "rejected hello from worker 'w0'" "$dir/coord.log" ||
    fl_fail "the full coordinator did not log w0's refusal"
jsonl=$dir/report/rounds.jsonl
full=$(grep -o '"full":[0-9]*' "$jsonl" | awk -F: '{ s += $2 } END { print s + 0 }')
limited=$(grep -o '"rate_limited":[0-9]*' "$jsonl" |
    awk -F: '{ s += $2 } END { print s + 0 }')
rows=$(wc -l <"$jsonl")
[[ $full -ge 1 ]] || fl_fail "no 'full' rejects in $jsonl"
[[ $limited -ge 1 ]] || fl_fail "rate_limited is $limited in $jsonl"
n=$(grep -c "rate limit: dropping messages from worker 'w1'" "$dir/coord.log")
[[ $n -ge 1 && $n -le $rows ]] ||
    fl_fail "w1's rate limit logged $n times for $rows rows"
grep -q "rate-limited messages" "$dir/coord.out" ||
    fl_fail "no rate-limited messages in the summary"
fl_ok "admission: $full hello(s) refused as full, $limited message(s) rate-limited"
echo "PASS"
