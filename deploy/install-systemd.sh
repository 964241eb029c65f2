#!/usr/bin/env bash
# Install fedcomp's systemd units and example configuration.
#
#   deploy/install-systemd.sh [--destdir DIR] [--bindir DIR] [--unitdir DIR]
#                             [--confdir DIR] [--docdir DIR]
#
# The programs themselves come from `make install` (PREFIX/DESTDIR, default
# /usr/local/bin). This script adds what `make install` does not:
#   UNITDIR/fedcomp-coordinator.service, UNITDIR/fedcomp-worker@.service
#       (ExecStart pointing at BINDIR, configuration under CONFDIR)
#   CONFDIR/coordinator.conf, CONFDIR/worker.conf   (example settings; an
#       existing file is never overwritten: the new one is put beside it as
#       FILE.example)
#   CONFDIR/keys/ (0700) and CONFDIR/authorized-keys/ (0755), empty
#   DOCDIR/README.md   deploy/README.md (the units' Documentation=)
# Defaults: DESTDIR empty, BINDIR /usr/local/bin, UNITDIR /etc/systemd/system,
# CONFDIR /etc/fedcomp, DOCDIR /usr/local/share/doc/fedcomp (the environment
# variables of the same names work too). It does not run systemctl; it
# prints what to do next.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
DESTDIR=${DESTDIR:-}
BINDIR=${BINDIR:-/usr/local/bin}
UNITDIR=${UNITDIR:-/etc/systemd/system}
CONFDIR=${CONFDIR:-/etc/fedcomp}
DOCDIR=${DOCDIR:-/usr/local/share/doc/fedcomp}

usage() {
    sed -n '2,22s/^# \{0,1\}//p' "$0"
    exit "$1"
}

while [[ $# -gt 0 ]]; do
    case $1 in
    --destdir) DESTDIR=$2; shift 2 ;;
    --bindir) BINDIR=$2; shift 2 ;;
    --unitdir) UNITDIR=$2; shift 2 ;;
    --confdir) CONFDIR=$2; shift 2 ;;
    --docdir) DOCDIR=$2; shift 2 ;;
    -h | --help) usage 0 ;;
    *) echo "install-systemd: unknown argument '$1'" >&2; usage 2 >&2 ;;
    esac
done
for d in "$BINDIR" "$UNITDIR" "$CONFDIR" "$DOCDIR"; do
    [[ $d == /* ]] || { echo "install-systemd: '$d' is not absolute" >&2; exit 2; }
done

# unit files: the paths they name follow BINDIR and CONFDIR
install -d "$DESTDIR$UNITDIR"
for u in fedcomp-coordinator.service fedcomp-worker@.service; do
    sed -e "s|/usr/local/bin/|$BINDIR/|g" -e "s|/etc/fedcomp/|$CONFDIR/|g" \
        -e "s|file:///usr/local/share/doc/fedcomp/|file://$DOCDIR/|g" \
        "$here/systemd/$u" >"$DESTDIR$UNITDIR/$u.tmp"
    chmod 0644 "$DESTDIR$UNITDIR/$u.tmp"
    mv "$DESTDIR$UNITDIR/$u.tmp" "$DESTDIR$UNITDIR/$u"
    echo "installed $DESTDIR$UNITDIR/$u"
done

install -D -m 0644 "$here/README.md" "$DESTDIR$DOCDIR/README.md"
echo "installed $DESTDIR$DOCDIR/README.md"
install -d -m 0755 "$DESTDIR$CONFDIR" "$DESTDIR$CONFDIR/authorized-keys"
install -d -m 0700 "$DESTDIR$CONFDIR/keys"
for c in coordinator.conf worker.conf; do
    dst=$DESTDIR$CONFDIR/$c
    if [[ -e $dst ]]; then
        dst=$dst.example
        echo "kept $DESTDIR$CONFDIR/$c; the new example is $dst"
    fi
    sed -e "s|/etc/fedcomp/|$CONFDIR/|g" "$here/systemd/$c" >"$dst.tmp"
    chmod 0644 "$dst.tmp"
    mv "$dst.tmp" "$dst"
    echo "installed $dst"
done

cat <<EOF

next steps (deploy/README.md has the details):
  fedcomp-keygen coordinator --dir $CONFDIR/keys   # on the server
  edit $CONFDIR/coordinator.conf, then
  $BINDIR/fedcomp-coordinator --config $CONFDIR/coordinator.conf --check-config
  systemctl daemon-reload && systemctl enable --now fedcomp-coordinator
  on a device: fedcomp-worker@NAME.service with $CONFDIR/keys/NAME.key
EOF
