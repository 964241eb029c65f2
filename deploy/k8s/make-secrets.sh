#!/usr/bin/env bash
# Print the Kubernetes Secrets of a fleet from a key directory made by
# deploy/provision-keys.sh:
#
#   deploy/k8s/make-secrets.sh KEYDIR [--prefix P] | kubectl apply -f -
#
#   fedcomp-coordinator-key   coordinator.key        (the coordinator only)
#   fedcomp-authorized-keys   every KEYDIR/authorized-keys/*.pub
#   fedcomp-device-keys       P*.key and coordinator.pub (the test fleet)
# The output holds secret keys: pipe it to kubectl, do not commit it.
set -euo pipefail

prefix=w
dir=
while [[ $# -gt 0 ]]; do
    case $1 in
    --prefix) prefix=$2; shift 2 ;;
    -h | --help) sed -n '2,12s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) dir=$1; shift ;;
    esac
done
[[ -n $dir && -f $dir/coordinator.key ]] ||
    { echo "make-secrets: no coordinator.key in '$dir'" >&2; exit 2; }

# secret NAME FILE... : one Secret with a data entry per file
secret() {
    local name=$1 f
    shift
    printf -- '---\napiVersion: v1\nkind: Secret\nmetadata:\n'
    printf '  name: %s\n  labels: {app.kubernetes.io/name: fedcomp}\n' "$name"
    printf 'type: Opaque\ndata:\n'
    for f in "$@"; do
        printf '  %s: %s\n' "$(basename "$f")" "$(base64 -w0 <"$f")"
    done
}

secret fedcomp-coordinator-key "$dir/coordinator.key"
shopt -s nullglob
pubs=("$dir"/authorized-keys/*.pub)
keys=("$dir/$prefix"[0-9]*.key)
[[ ${#pubs[@]} -gt 0 && ${#keys[@]} -gt 0 ]] ||
    { echo "make-secrets: no device keys in '$dir'" >&2; exit 2; }
secret fedcomp-authorized-keys "${pubs[@]}"
secret fedcomp-device-keys "${keys[@]}" "$dir/coordinator.pub"
