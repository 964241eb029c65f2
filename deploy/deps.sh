#!/usr/bin/env bash
# Install the Debian packages fedcomp needs, only those that are missing.
# Without root, print the exact command and fail.
set -euo pipefail

PKGS=(build-essential pkg-config libzmq3-dev libprotobuf-c-dev
      protobuf-c-compiler libzstd-dev liblz4-dev libopenblas-dev zlib1g-dev
      libcmocka-dev clang libclang-rt-14-dev dataset-fashion-mnist
      python3 gnuplot-nox valgrind
      libmicrohttpd-dev prometheus curl python3-yaml systemd)
STAMP=build/.apt-updated

missing=()
for p in "${PKGS[@]}"; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ "$st" == "install ok installed" ]] || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "deps: missing Debian packages: ${missing[*]}"
cmd=(apt-get install -y --no-install-recommends "${missing[@]}")
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO=(sudo -n)
    else
        echo "deps: not root; run this, then make again:" >&2
        echo "  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive ${cmd[*]}" >&2
        exit 1
    fi
else
    SUDO=()
fi
export DEBIAN_FRONTEND=noninteractive
mkdir -p build
if [[ ! -f $STAMP ]]; then
    echo "deps: apt-get update"
    "${SUDO[@]}" apt-get update -q
    touch "$STAMP"
fi
echo "deps: installing ${missing[*]}"
"${SUDO[@]}" "${cmd[@]}"
