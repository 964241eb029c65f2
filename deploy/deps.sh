#!/usr/bin/env bash
# Install the Debian packages fedcomp needs, only those that are missing.
# Without root, print the exact command and fail.
#   deploy/deps.sh                  the native build and the tests (make deps)
#   deploy/deps.sh --cross aarch64  also the arm64 cross toolchain, the arm64
#                                   libraries of the worker and qemu-user
#                                   (adds the dpkg architecture arm64;
#                                   make CROSS=aarch64-linux-gnu runs this)
set -euo pipefail

CROSS=
while [[ $# -gt 0 ]]; do
    case $1 in
    --cross)
        [[ $# -ge 2 ]] || { echo "deps: --cross needs an architecture" >&2; exit 2; }
        CROSS=$2
        shift 2
        ;;
    --cross=*) CROSS=${1#--cross=}; shift ;;
    *) echo "usage: deploy/deps.sh [--cross aarch64]" >&2; exit 2 ;;
    esac
done
DARCH=
if [[ -n $CROSS ]]; then
    case $CROSS in
    aarch64 | arm64 | aarch64-linux-gnu) DARCH=arm64 TRIPLET=aarch64-linux-gnu ;;
    *) echo "deps: unknown --cross '$CROSS' (known: aarch64)" >&2; exit 2 ;;
    esac
fi

PKGS=(build-essential pkg-config libzmq3-dev libprotobuf-c-dev
      protobuf-c-compiler libzstd-dev liblz4-dev libopenblas-dev zlib1g-dev
      libcmocka-dev clang libclang-rt-14-dev dataset-fashion-mnist
      python3 gnuplot-nox valgrind
      libmicrohttpd-dev prometheus curl python3-yaml systemd
      time)
STAMP=build/.apt-updated
if [[ -n $DARCH ]]; then
    # the worker's libraries for the target (the same versions as the
    # build machine's: Multi-Arch: same packages are kept in step by apt),
    # the cross compiler, and qemu-user for the tests (qemu-aarch64)
    PKGS+=(gcc-$TRIPLET libc6-dev-$DARCH-cross qemu-user
           libzmq3-dev:$DARCH libprotobuf-c-dev:$DARCH libzstd-dev:$DARCH
           liblz4-dev:$DARCH libopenblas-dev:$DARCH zlib1g-dev:$DARCH)
    # a new architecture needs its own package lists
    STAMP=build/.apt-updated-$DARCH
fi

# installed NAME[:ARCH]: true when NAME is installed for ARCH (default: the
# machine's own) or as Architecture: all. With a foreign architecture added,
# a Multi-Arch: same package can be installed once per architecture, and a
# bare name then matches every instance.
NATIVE=$(dpkg --print-architecture)
installed() {
    local name=${1%%:*} want=$NATIVE
    [[ $1 == *:* ]] && want=${1#*:}
    dpkg-query -W -f='${Architecture}|${Status}\n' "$name" 2>/dev/null |
        awk -F'|' -v a="$want" '
            ($1 == a || $1 == "all") && $2 == "install ok installed" { ok = 1 }
            END { exit !ok }'
}

missing=()
for p in "${PKGS[@]}"; do
    installed "$p" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "deps: missing Debian packages: ${missing[*]}"
cmd=(apt-get install -y --no-install-recommends "${missing[@]}")
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO=(sudo -n)
    else
        echo "deps: not root; run this, then make again:" >&2
        [[ -n $DARCH ]] && echo "  sudo dpkg --add-architecture $DARCH" >&2
        echo "  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive ${cmd[*]}" >&2
        exit 1
    fi
else
    SUDO=()
fi
export DEBIAN_FRONTEND=noninteractive
mkdir -p build
if [[ -n $DARCH && $NATIVE != "$DARCH" ]] &&
    ! dpkg --print-foreign-architectures | grep -qx "$DARCH"; then
    echo "deps: dpkg --add-architecture $DARCH"
    "${SUDO[@]}" dpkg --add-architecture "$DARCH"
    rm -f "$STAMP"
fi
if [[ ! -f $STAMP ]]; then
    echo "deps: apt-get update"
    "${SUDO[@]}" apt-get update -q
    touch "$STAMP"
fi
echo "deps: installing ${missing[*]}"
"${SUDO[@]}" "${cmd[@]}"
