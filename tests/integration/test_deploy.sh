#!/usr/bin/env bash
# Deployment files (deploy/): what can be checked without systemd as PID 1,
# a Docker engine or a Kubernetes cluster, none of which this machine has.
#   1. install: the programs as `make install` places them (its dry run is
#      checked), deploy/install-systemd.sh into a DESTDIR (twice: an
#      existing config is kept);
#   2. systemd-analyze verify --root=DESTDIR of both units: no warning at
#      all (an unknown key is only a warning, so any output fails; a
#      broken copy proves it), and systemd-analyze security's exposure
#      level stays below 3 ("OK");
#   3. the exact ExecStart of each unit with --check-config on the
#      installed example configs: every key is a real flag and comes back
#      with its value; the credentials the units load are the key names
#      the configs use;
#   4. a real run laid out as the units would run it: keys made with
#      deploy/provision-keys.sh, each process given its own
#      CREDENTIALS_DIRECTORY holding only its credentials, the installed
#      configs plus loopback overrides: 2 CURVE workers train 2 rounds
#      and log JSON lines, as worker.conf asks;
#   5. deploy/docker and deploy/k8s through tests/integration/
#      deploy_check.py: packages exist in Debian (apt-cache), the runtime
#      image has every library the programs load, the build runs the
#      Makefile's own targets, manifests agree with each other and with
#      the programs' flags (--check-config).
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
fl_need
FL_WATCHDOG=90
for tool in systemd-analyze python3 readelf apt-cache; do
    command -v $tool >/dev/null ||
        fl_fail "$tool not installed (deploy/deps.sh installs it)"
done
python3 -c 'import yaml' 2>/dev/null || fl_fail "python3-yaml not installed"

root=$FL_TMP/root
bindir=$root/usr/local/bin
units=$root/etc/systemd/system
conf=$root/etc/fedcomp

# ---- 1. install
B=$(cd "$FL_BIN/../.." && pwd)
dry=$(make -C "$FL_ROOT" -n -s FL_INNER=1 B="$B" install DESTDIR="$root" 2>&1) ||
    fl_fail "make -n install: $dry"
for p in fedcomp-coordinator fedcomp-worker fedcomp-keygen; do
    grep -E "^install .*$B/rel/bin/$p .*$root/usr/local/bin/?$" <<<"$dry" \
        >/dev/null || fl_fail "make install does not install $p into $bindir"
    install -D -m 0755 "$FL_BIN/$p" "$bindir/$p"
done
"$FL_ROOT/deploy/install-systemd.sh" --destdir "$root" >"$FL_TMP/install.log" ||
    fl_fail "install-systemd.sh failed: $(cat "$FL_TMP/install.log")"
for f in "$units/fedcomp-coordinator.service" "$units/fedcomp-worker@.service" \
    "$conf/coordinator.conf" "$conf/worker.conf" \
    "$root/usr/local/share/doc/fedcomp/README.md"; do
    [[ -f $f ]] || fl_fail "install-systemd.sh did not install $f"
done
[[ $(stat -c %a "$conf/keys") == 700 ]] || fl_fail "$conf/keys is not 0700"
echo "# edited" >>"$conf/worker.conf"
"$FL_ROOT/deploy/install-systemd.sh" --destdir "$root" >"$FL_TMP/install2.log" ||
    fl_fail "second install-systemd.sh failed"
grep -q "# edited" "$conf/worker.conf" || fl_fail "an existing config was overwritten"
[[ -f $conf/worker.conf.example ]] || fl_fail "no worker.conf.example beside it"
fl_ok "make install (dry run) and install-systemd.sh into $root"

# ---- 2. systemd-analyze verify and security
mkdir -p "$root/usr/lib/systemd" "$root/usr/bin"
cp -a /usr/lib/systemd/system "$root/usr/lib/systemd/" # targets, for deps
ln -sfn usr/bin "$root/bin"
install -m 0755 "$(type -P kill)" "$root/usr/bin/kill" # ExecReload
# verify UNIT... : exit 0 and not a line of output (warnings included)
verify() {
    local out rc=0
    out=$(systemd-analyze verify --root="$root" --man=no "$@" 2>&1) || rc=$?
    [[ $rc -eq 0 && -z $out ]] || { echo "$out"; return 1; }
}
verify fedcomp-coordinator.service fedcomp-worker@dev-1.service >"$FL_TMP/verify.txt" ||
    fl_fail "systemd-analyze verify: $(cat "$FL_TMP/verify.txt")"
# negative control: the same check refuses a unit with a typo
sed 's/^ProtectSystem=/ProtectSytem=/' "$units/fedcomp-coordinator.service" \
    >"$units/fedcomp-typo.service"
verify fedcomp-typo.service >/dev/null &&
    fl_fail "systemd-analyze verify did not notice 'ProtectSytem='"
rm "$units/fedcomp-typo.service"
for u in fedcomp-coordinator.service fedcomp-worker@dev-1.service; do
    level=$(systemd-analyze security --offline=yes --root="$root" "$u" 2>&1 |
        sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')
    [[ -n $level ]] || fl_fail "systemd-analyze security gave no level for $u"
    awk -v l="$level" 'BEGIN { exit !(l < 3.0) }' ||
        fl_fail "$u: exposure level $level, want below 3"
    fl_ok "$u: verified, exposure level $level"
done

# ---- 3. each ExecStart with --check-config
# execstart UNIT INSTANCE : the unit's ExecStart words, paths into $root
execstart() {
    # shellcheck disable=SC2016 # the unit's literal $FEDCOMP_WORKER_ARGS
    sed -n 's/^ExecStart=//p' "$units/$1" | sed -e "s/%i/$2/g" \
        -e 's/\$FEDCOMP_WORKER_ARGS//' -e "s|/usr/local/bin/|$bindir/|g" \
        -e "s|/etc/fedcomp/|$conf/|g"
}
# conf_keys FILE : its `key = value` lines, comments and blanks dropped
conf_keys() { sed -e 's/#.*//' -e 's/[[:space:]]*$//' "$1" | grep -v '^$'; }
# credentials UNIT : the credential names it loads
credentials() { sed -n 's/^LoadCredential=\([^:]*\):.*/\1/p' "$units/$1"; }

for pair in coordinator:fedcomp-coordinator.service worker:fedcomp-worker@.service; do
    name=${pair%%:*}
    unit=${pair#*:}
    read -r -a cmd <<<"$(execstart "$unit" dev-1)"
    [[ ${cmd[0]} == "$bindir/fedcomp-$name" ]] ||
        fl_fail "$unit runs ${cmd[0]}, not the installed fedcomp-$name"
    "${cmd[@]}" --check-config >"$FL_TMP/$name.eff" 2>"$FL_TMP/$name.err" ||
        fl_fail "$unit: --check-config failed: $(cat "$FL_TMP/$name.err")"
    # the edited worker.conf kept its lines: compare with the example
    src=$FL_ROOT/deploy/systemd/$name.conf
    n=0
    while IFS= read -r line; do
        grep -qxF "$line" "$FL_TMP/$name.eff" ||
            fl_fail "$name.conf: '$line' is not an effective setting"
        n=$((n + 1))
    done < <(conf_keys "$src")
    for cred in $(credentials "$unit"); do
        grep -qE "^(curve-secret|curve-key|coordinator-key) = $cred\$" \
            "$FL_TMP/$name.eff" ||
            fl_fail "$unit loads credential '$cred' that $name.conf never names"
    done
    fl_ok "$unit: ExecStart + $name.conf pass --check-config ($n keys)"
done
grep -qx "id = dev-1" "$FL_TMP/worker.eff" || fl_fail "worker@dev-1 is not device dev-1"

# ---- 4. a run laid out as the units run it
keys=$FL_TMP/keys
FEDCOMP_KEYGEN=$bindir/fedcomp-keygen "$FL_ROOT/deploy/provision-keys.sh" \
    "$keys" 4 >"$FL_TMP/provision.log" 2>&1 ||
    fl_fail "provision-keys.sh: $(cat "$FL_TMP/provision.log")"
cp "$keys"/*.key "$keys"/coordinator.pub "$conf/keys/"
cp "$keys"/authorized-keys/*.pub "$conf/authorized-keys/"
# creds DIR SRC:NAME... : a credentials directory as systemd makes it
creds() {
    local dir=$1 c
    shift
    mkdir -p "$dir"
    for c in "$@"; do
        install -m 0400 "$conf/keys/${c%%:*}" "$dir/${c#*:}"
    done
}
run=$FL_TMP/run
mkdir -p "$run/state"
creds "$run/cred-coord" coordinator.key:coordinator.key
read -r -a cmd <<<"$(execstart fedcomp-coordinator.service x)"
(cd "$run/state" && CREDENTIALS_DIRECTORY=$run/cred-coord exec timeout -s TERM \
    "$FL_WATCHDOG" "${cmd[@]}" --authorized-keys "$conf/authorized-keys" \
    --bind 'tcp://127.0.0.1:*' --endpoint-file "$run/endpoint" \
    --state-dir "$run/state/ckpt" --report-dir "$run/state/reports" \
    --save-model "$run/state/model.fcm" --metrics-bind 127.0.0.1:0 \
    --data-dir "$FL_DATA" --min-devices 2 --rounds 2 --hidden 32 \
    --eval-limit 500 --wait-timeout 60 --round-timeout 60 --log-format text \
    >"$run/coord.out" 2>"$run/coord.log") &
FL_COORD_PID=$!
FL_PIDS+=("$FL_COORD_PID")
for ((t = 0; t < 300; t++)); do # bounded: 30 s
    [[ -s $run/endpoint ]] && break
    fl_running "$FL_COORD_PID" ||
        fl_fail "coordinator exited early: $(tail -3 "$run/coord.log")"
    sleep 0.1
done
[[ -s $run/endpoint ]] || fl_fail "no endpoint from the coordinator"
FL_EP=$(head -1 "$run/endpoint")
wpids=()
for i in 0 1; do
    creds "$run/cred-w$i" "w$i.key:device.key" coordinator.pub:coordinator.pub
    read -r -a cmd <<<"$(execstart fedcomp-worker@.service "w$i")"
    CREDENTIALS_DIRECTORY=$run/cred-w$i timeout -s TERM "$FL_WATCHDOG" \
        "${cmd[@]}" --connect "$FL_EP" --state-dir "$run/w$i" \
        --data-dir "$FL_DATA" --shard "$i/2" --train-limit 3000 \
        --hello-timeout 60 >"$run/w$i.out" 2>"$run/w$i.log" &
    FL_PIDS+=("$!")
    wpids+=("$!")
done
fl_wait "$FL_COORD_PID" "coordinator ($run/coord.log)"
for i in 0 1; do
    fl_wait "${wpids[$i]}" "worker w$i ($run/w$i.log)"
done
csv=$run/state/reports/rounds.csv
[[ -f $csv && $(($(wc -l <"$csv") - 1)) -eq 2 ]] || fl_fail "no 2 rows in $csv"
[[ $(fl_col "$csv" reported | sort -u) == 2 ]] || fl_fail "not 2 reports a round"
for i in 0 1; do
    grep -q "worker 'w$i'" "$run/coord.log" ||
        fl_fail "the coordinator never named device w$i (key identity)"
done
[[ -s $run/state/model.fcm ]] || fl_fail "no model saved under the state dir"
# worker.conf says log-format = json: every line of the workers' logs is a
# JSON object
python3 - "$run/w0.log" "$run/w1.log" <<'EOF' || fl_fail "worker logs are not JSON lines"
import json, sys
for path in sys.argv[1:]:
    lines = open(path).read().splitlines()
    assert lines, path + " is empty"
    for line in lines:
        assert isinstance(json.loads(line), dict), line
EOF
fl_ok "units' layout: 2 CURVE workers with their credentials trained 2 rounds"

# ---- 5. Docker and Kubernetes files
python3 "$FL_ROOT/tests/integration/deploy_check.py" docker "$FL_ROOT" \
    "$bindir" "$keys" "$FL_TMP" || fl_fail "deploy/docker checks"
python3 "$FL_ROOT/tests/integration/deploy_check.py" k8s "$FL_ROOT" \
    "$bindir" "$keys" "$FL_TMP" >"$FL_TMP/k8s.txt" ||
    fl_fail "deploy/k8s checks: $(cat "$FL_TMP/k8s.txt")"
cat "$FL_TMP/k8s.txt"
echo "PASS"
