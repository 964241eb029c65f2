#!/usr/bin/env bash
# Make the CURVE keys of a fleet with fedcomp-keygen.
#
#   deploy/provision-keys.sh DIR N [--prefix P] [--owner UID[:GID]]
#
# writes, keeping any key that already exists (so it can be run again to
# add devices):
#   DIR/coordinator.key, DIR/coordinator.pub     the coordinator's pair
#   DIR/P0.key ... DIR/P{N-1}.key (+ .pub)       one pair per device
#   DIR/authorized-keys/P0.pub ...               the coordinator's allowlist
# P defaults to "w" (device names w0, w1, ...; a device's name at the
# coordinator is the name of its .pub file). --owner chowns the secret
# files (for container secrets mounted with the host owner: 10001 is the
# user of the images in deploy/docker). The program is fedcomp-keygen from
# PATH, or $FEDCOMP_KEYGEN.
set -euo pipefail

usage() {
    sed -n '2,17s/^# \{0,1\}//p' "$0"
    exit "$1"
}

prefix=w
owner=
args=()
while [[ $# -gt 0 ]]; do
    case $1 in
    --prefix) prefix=$2; shift 2 ;;
    --owner) owner=$2; shift 2 ;;
    -h | --help) usage 0 ;;
    -*) echo "provision-keys: unknown option '$1'" >&2; usage 2 >&2 ;;
    *) args+=("$1"); shift ;;
    esac
done
[[ ${#args[@]} -eq 2 && ${args[1]} =~ ^[0-9]+$ ]] || usage 2 >&2
dir=${args[0]}
n=${args[1]}
keygen=${FEDCOMP_KEYGEN:-fedcomp-keygen}
command -v "$keygen" >/dev/null ||
    { echo "provision-keys: '$keygen' not found (make install?)" >&2; exit 1; }

# make NAME : a key pair unless NAME.key exists
make_pair() {
    if [[ -e $dir/$1.key ]]; then
        echo "kept $dir/$1.key"
    else
        "$keygen" "$1" --dir "$dir"
    fi
    [[ -z $owner ]] || chown "$owner" "$dir/$1.key"
}

mkdir -p "$dir"
make_pair coordinator
install -d -m 0755 "$dir/authorized-keys"
for ((i = 0; i < n; i++)); do
    make_pair "$prefix$i"
    install -m 0644 "$dir/$prefix$i.pub" "$dir/authorized-keys/$prefix$i.pub"
done
echo "$n device keys in $dir; the coordinator's allowlist is $dir/authorized-keys"
