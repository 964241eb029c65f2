#!/usr/bin/env bash
# netns.sh - slow edge links for real: one network namespace for the
# coordinator and one per worker, each worker joined to the coordinator by
# its own veth pair, its rate shaped with tc tbf in both directions.
#
#   netns.sh up N [--up RATE] [--down RATE] [--latency MS]
#       create PREFIXcoord and PREFIXw1..PREFIXwN (removes leftovers of an
#       earlier run with the same prefix first). Worker i's link:
#       coordinator side 'fcw<i>' NET.i.1/24 in PREFIXcoord, worker side
#       'fcc0' NET.i.2/24 in PREFIXw<i>. Uplink (worker -> coordinator) is
#       shaped on egress of fcc0, downlink on egress of fcw<i>.
#       RATE is tc syntax: 1mbit, 500kbit, 10mbit, 1gbit (bits per second;
#       default up 1mbit, down 10mbit). MS: the most a packet may wait in
#       the shaper's queue (default 200).
#   netns.sh down               remove every namespace of the prefix (the
#                               processes still in them are ended first)
#   netns.sh exec NS CMD...     run CMD in namespace NS: 'coord', 'wI' or a
#                               full name
#   netns.sh addr I             the coordinator's address on worker I's link
#   netns.sh status             namespaces, links, shapers and their counters
#   netns.sh check [--seconds S] [--tolerance F] [--workers "1 2 .."]
#       send S seconds' worth of data (at the configured rate) over every
#       worker's link, uplinks together then downlinks together, with
#       meter.py (python3); print measured against configured rate. Exit 1
#       when a link's measured rate is not within F (default 0.25) of the
#       configured one.
#
# Global options (before the subcommand, or as environment variables):
#   --prefix P   (FCN_PREFIX, default 'fcn-'): name prefix of the
#                namespaces; 1-12 characters of [A-Za-z0-9_-]. Nothing
#                outside namespaces with this prefix is touched.
#   --net A.B    (FCN_NET, default '10.77'): the /16 the links use.
# Needs root, iproute2 (ip, tc) and python3 for 'check'.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PREFIX=${FCN_PREFIX:-fcn-}
NET=${FCN_NET:-10.77}
CHECK_PORT=47001

die() {
    echo "netns.sh: $*" >&2
    exit 1
}

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
}

validate_globals() {
    [[ $PREFIX =~ ^[A-Za-z0-9_-]{1,12}$ ]] ||
        die "bad prefix '$PREFIX' (1-12 characters of [A-Za-z0-9_-])"
    if ! [[ $NET =~ ^([0-9]{1,3})\.([0-9]{1,3})$ ]] ||
        ((BASH_REMATCH[1] > 255 || BASH_REMATCH[2] > 255)); then
        die "bad --net '$NET' (want A.B, the first half of a /16)"
    fi
}

need_tools() {
    [[ $(id -u) -eq 0 ]] || die "must run as root"
    command -v ip >/dev/null || die "ip (iproute2) not found"
    command -v tc >/dev/null || die "tc (iproute2) not found"
    ip netns list >/dev/null 2>&1 || die "'ip netns' is not available"
}

ns_coord() { echo "${PREFIX}coord"; }
ns_worker() { echo "${PREFIX}w$1"; }

# ns_name coord|wI|FULL -> full namespace name
ns_name() {
    case $1 in
    coord) ns_coord ;;
    w[0-9]*) ns_worker "${1#w}" ;;
    *) echo "$1" ;;
    esac
}

# our namespaces (this prefix only), coordinator last
our_namespaces() {
    ip netns list 2>/dev/null | awk '{ print $1 }' |
        grep -E "^${PREFIX}(coord|w[0-9]+)$" | sort -r -V || true
}

# worker indexes present, ascending
our_workers() {
    ip netns list 2>/dev/null | awk '{ print $1 }' |
        sed -n "s/^${PREFIX}w\([0-9][0-9]*\)$/\1/p" | sort -n || true
}

# rate_bits RATE -> bits per second (integer); accepts [0-9.]+(bit|kbit|mbit|gbit)
rate_bits() {
    local r=${1,,}
    [[ $r =~ ^([0-9]+(\.[0-9]+)?)(bit|kbit|mbit|gbit)$ ]] ||
        die "bad rate '$1' (e.g. 1mbit, 500kbit, 10mbit)"
    awk -v v="${BASH_REMATCH[1]}" -v u="${BASH_REMATCH[3]}" 'BEGIN {
        m = (u == "bit") ? 1 : (u == "kbit") ? 1e3 : (u == "mbit") ? 1e6 : 1e9
        x = v * m; if (x < 8000) exit 1; printf "%d\n", x }' ||
        die "rate '$1' is below 8kbit"
}

# ----------------------------------------------------------------- down

do_down() {
    local ns pids p t left
    for ns in $(our_namespaces); do
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        if [[ -n $pids ]]; then
            echo "netns.sh: ending processes left in $ns: ${pids//$'\n'/ }" >&2
            for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
            for ((t = 0; t < 30; t++)); do
                left=$(ip netns pids "$ns" 2>/dev/null || true)
                [[ -z $left ]] && break
                sleep 0.1
            done
            for p in $(ip netns pids "$ns" 2>/dev/null || true); do
                kill -KILL "$p" 2>/dev/null || true
            done
        fi
        # deleting a namespace destroys its veth ends, and so their peers
        ip netns del "$ns" 2>/dev/null || true
    done
    [[ -z $(our_namespaces) ]] || die "could not remove: $(our_namespaces)"
}

# ------------------------------------------------------------------- up

# shape NS DEV RATE_BITS LATENCY_MS
shape() {
    local ns=$1 dev=$2 bits=$3 lat=$4 burst
    # bucket: 1 ms at the rate, at least one full frame (1514 B; tbf drops
    # a packet bigger than the bucket, GSO packets are segmented to fit).
    # Kept small because a full bucket lets its bytes through at once: a
    # message of n bytes on an idle link takes about (n - burst) / rate.
    burst=$((bits / 8 / 1000))
    ((burst >= 1600)) || burst=1600
    tc -n "$ns" qdisc replace dev "$dev" root tbf rate "${bits}bit" \
        burst "$burst" latency "${lat}ms"
}

do_up() {
    local n="" up=1mbit down=10mbit lat=200 up_b down_b i c w
    while [[ $# -gt 0 ]]; do
        case $1 in
        --up) up=${2:?--up needs a rate}; shift 2 ;;
        --down) down=${2:?--down needs a rate}; shift 2 ;;
        --latency) lat=${2:?--latency needs milliseconds}; shift 2 ;;
        --up=*) up=${1#*=}; shift ;;
        --down=*) down=${1#*=}; shift ;;
        --latency=*) lat=${1#*=}; shift ;;
        -*) die "up: unknown option '$1'" ;;
        *) [[ -z $n ]] || die "up: unexpected '$1'"; n=$1; shift ;;
        esac
    done
    if ! [[ $n =~ ^[0-9]+$ ]] || ((n < 1 || n > 250)); then
        die "up: want a worker count 1..250, got '${n}'"
    fi
    if ! [[ $lat =~ ^[0-9]+$ ]] || ((lat < 1 || lat > 10000)); then
        die "up: bad --latency '$lat' (1..10000 ms)"
    fi
    up_b=$(rate_bits "$up")
    down_b=$(rate_bits "$down")

    do_down # leftovers of a crashed run
    # from here on, any failure removes what was made
    trap 'rc=$?; if ((rc != 0)); then echo "netns.sh: up failed, removing the namespaces" >&2; do_down; fi' EXIT
    trap 'exit 130' INT TERM

    c=$(ns_coord)
    ip netns add "$c"
    ip -n "$c" link set lo up
    for ((i = 1; i <= n; i++)); do
        w=$(ns_worker "$i")
        ip netns add "$w"
        ip -n "$w" link set lo up
        # created directly inside the two namespaces: never in ours
        ip link add name "fcw$i" netns "$c" type veth peer name fcc0 netns "$w"
        ip -n "$c" addr add "$NET.$i.1/24" dev "fcw$i"
        ip -n "$w" addr add "$NET.$i.2/24" dev fcc0
        # one packet per MTU (no GSO): a 64 KB GSO burst cut into 44
        # frames at the shaper overflows its queue, and the losses left the
        # 1 Mbit/s link idle ~12% of the time in our measurements
        ip -n "$c" link set dev "fcw$i" gso_max_segs 1 ||
            echo "netns.sh: warning: cannot turn GSO off on fcw$i" >&2
        ip -n "$w" link set dev fcc0 gso_max_segs 1 ||
            echo "netns.sh: warning: cannot turn GSO off on fcc0 in $w" >&2
        ip -n "$c" link set "fcw$i" up
        ip -n "$w" link set fcc0 up
        shape "$w" fcc0 "$up_b" "$lat"        # uplink: worker egress
        shape "$c" "fcw$i" "$down_b" "$lat"   # downlink: coordinator egress
    done
    # every worker has its route to the coordinator ('check' sends traffic)
    for ((i = 1; i <= n; i++)); do
        ip -n "$(ns_worker "$i")" route get "$NET.$i.1" >/dev/null
    done
    trap - EXIT INT TERM
    echo "up: $c + $n workers ($(ns_worker 1)..$(ns_worker "$n")), uplink $up," \
        "downlink $down per worker; worker i reaches the coordinator at $NET.i.1"
}

# ----------------------------------------------------------------- info

# qdisc_field NS DEV FIELD: a field of the root tbf qdisc ('rate' in
# bytes/s, 'bytes' sent)
qdisc_rate_bytes() {
    tc -n "$1" -j qdisc show dev "$2" | python3 -c '
import json, sys
q = [x for x in json.load(sys.stdin) if x.get("kind") == "tbf"]
print(q[0]["options"]["rate"] if q else 0)'
}

qdisc_sent() {
    tc -n "$1" -s qdisc show dev "$2" | awk '/Sent/ { print $2; exit }'
}

do_status() {
    local ns i
    if [[ -z $(our_namespaces) ]]; then
        echo "no namespaces with prefix '$PREFIX'"
        return 0
    fi
    for ns in $(our_namespaces | sort -V); do
        echo "== $ns"
        ip -n "$ns" -br addr show | grep -v '^lo ' || true
        tc -n "$ns" -s qdisc show | grep -A1 '^qdisc tbf' || true
    done
}

# ---------------------------------------------------------------- check

do_check() {
    local secs=3 tol=0.25 workers="" i tmp c rc=0
    while [[ $# -gt 0 ]]; do
        case $1 in
        --seconds) secs=${2:?}; shift 2 ;;
        --tolerance) tol=${2:?}; shift 2 ;;
        --workers) workers=${2:?}; shift 2 ;;
        *) die "check: unknown option '$1'" ;;
        esac
    done
    [[ $secs =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "check: bad --seconds '$secs'"
    [[ $tol =~ ^0?\.[0-9]+$ ]] || die "check: bad --tolerance '$tol' (0..1)"
    command -v python3 >/dev/null || die "check needs python3"
    c=$(ns_coord)
    ip netns list | awk '{print $1}' | grep -qx "$c" ||
        die "no namespace $c: run 'netns.sh up N' first"
    [[ -n $workers ]] || workers=$(our_workers)
    [[ -n $workers ]] || die "no worker namespaces"
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/fcn-check.XXXXXX")
    # shellcheck disable=SC2064
    trap "check_cleanup '$tmp'" EXIT
    trap 'exit 130' INT TERM

    printf '%-5s %-4s %12s %12s %12s %8s  %s\n' link dir "configured" \
        "goodput" "on the wire" "wire/cfg" "(Mbit/s; goodput = TCP payload)"
    check_dir up "$workers" "$secs" "$tol" "$tmp" || rc=1
    check_dir down "$workers" "$secs" "$tol" "$tmp" || rc=1
    if ((rc == 0)); then
        echo "check: every link within ${tol} of its configured rate"
    else
        echo "check: FAILED: a link is outside ${tol} of its configured rate"
    fi
    return $rc
}

CHECK_PIDS=()
check_cleanup() {
    local p
    for p in "${CHECK_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${CHECK_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$1"
}

# check_dir up|down WORKERS SECS TOL TMP: transfers over every link in
# parallel, in one direction; prints one line per link.
check_dir() {
    local dir=$1 workers=$2 secs=$3 tol=$4 tmp=$5 i c w snd rcv dev addr
    local rate nbytes sent0 sent1 out bad=0 timeout
    c=$(ns_coord)
    for i in $workers; do
        w=$(ns_worker "$i")
        if [[ $dir == up ]]; then
            snd=$w rcv=$c dev=fcc0 addr=$NET.$i.1
        else
            snd=$c rcv=$w dev=fcw$i addr=$NET.$i.2
        fi
        rate=$(qdisc_rate_bytes "$snd" "$dev")
        ((rate > 0)) || die "no tbf shaper on $dev in $snd"
        nbytes=$(awk -v r="$rate" -v s="$secs" 'BEGIN { printf "%d", r * s }')
        timeout=$(awk -v s="$secs" 'BEGIN { printf "%d", s * 4 + 20 }')
        echo "$rate $nbytes $(qdisc_sent "$snd" "$dev")" >"$tmp/$dir-$i.cfg"
        ip netns exec "$rcv" python3 "$HERE/meter.py" sink "$((CHECK_PORT + i))" \
            "$timeout" >"$tmp/$dir-$i.sink" 2>&1 &
        CHECK_PIDS+=("$!")
        ip netns exec "$snd" python3 "$HERE/meter.py" source "$addr" \
            "$((CHECK_PORT + i))" "$nbytes" "$timeout" >"$tmp/$dir-$i.src" 2>&1 &
        CHECK_PIDS+=("$!")
    done
    for i in "${CHECK_PIDS[@]}"; do wait "$i" || bad=1; done
    CHECK_PIDS=()
    for i in $workers; do
        w=$(ns_worker "$i")
        if [[ $dir == up ]]; then snd=$w dev=fcc0; else snd=$c dev=fcw$i; fi
        read -r rate nbytes sent0 <"$tmp/$dir-$i.cfg"
        sent1=$(qdisc_sent "$snd" "$dev")
        out=$(cat "$tmp/$dir-$i.src")
        if ! [[ $out =~ ^[0-9]+\ [0-9.]+\ [0-9.]+$ ]]; then
            printf 'w%-4s %-4s transfer failed: %s %s\n' "$i" "$dir" "$out" \
                "$(cat "$tmp/$dir-$i.sink")"
            bad=1
            continue
        fi
        # goodput: payload after the first read / time from first to last
        # read at the receiver. On the wire: bytes through the shaper (L2:
        # Ethernet + IP + TCP headers, ACKs of nothing else) over the
        # sender's whole transfer time.
        awk -v cfg="$rate" -v o="$out" -v s0="$sent0" -v s1="$sent1" \
            -v tol="$tol" -v name="w$i" -v d="$dir" 'BEGIN {
            split(o, f, " ")
            good = f[1] * 8 / f[2] / 1e6
            wire = (s1 - s0) * 8 / f[3] / 1e6
            c = cfg * 8 / 1e6
            ratio = wire / c
            ok = (ratio >= 1 - tol && ratio <= 1 + tol)
            printf "%-5s %-4s %12.3f %12.3f %12.3f %8.3f  %s\n", name, d, c,
                good, wire, ratio, ok ? "ok" : "OUT OF BAND"
            exit !ok }' || bad=1
    done
    return $bad
}

# ----------------------------------------------------------------- main

main() {
    while [[ $# -gt 0 ]]; do
        case $1 in
        --prefix) PREFIX=${2:?}; shift 2 ;;
        --prefix=*) PREFIX=${1#*=}; shift ;;
        --net) NET=${2:?}; shift 2 ;;
        --net=*) NET=${1#*=}; shift ;;
        -h | --help | help) usage; exit 0 ;;
        *) break ;;
        esac
    done
    [[ $# -gt 0 ]] || { usage >&2; exit 2; }
    validate_globals
    local cmd=$1
    shift
    case $cmd in
    up) need_tools; do_up "$@" ;;
    down) need_tools; do_down; echo "down: no namespace with prefix '$PREFIX' left" ;;
    exec)
        [[ $# -ge 2 ]] || die "exec: want NS CMD..."
        need_tools
        local ns
        ns=$(ns_name "$1")
        shift
        our_namespaces | grep -qx -- "$ns" ||
            die "exec: '$ns' is not a namespace of prefix '$PREFIX' (up first?)"
        [[ ${1:-} == -- ]] && shift
        exec ip netns exec "$ns" "$@"
        ;;
    addr)
        [[ ${1:-} =~ ^[0-9]+$ ]] || die "addr: want a worker index"
        echo "$NET.$1.1"
        ;;
    status) need_tools; do_status ;;
    check) need_tools; do_check "$@" ;;
    *) die "unknown subcommand '$cmd' (up, down, exec, addr, status, check)" ;;
    esac
}

main "$@"
