#!/usr/bin/env python3
"""meter.py - time a bulk TCP transfer (used by netns.sh check).

  meter.py sink PORT [TIMEOUT_S]
      accept one connection on 0.0.0.0:PORT, read until EOF, reply with
      "BYTES SECONDS" (bytes received after the first read, and the time
      from the first read to the last), print the same line, exit.
  meter.py source HOST PORT NBYTES [TIMEOUT_S]
      connect (retrying while the sink is not listening yet), send NBYTES,
      half-close, wait for the sink's reply; print
      "SINK_BYTES SINK_SECONDS SOURCE_SECONDS" (source seconds: from the
      connection to the reply).

Exit status 0 on success, 1 on any error (message on stderr).
"""
import socket
import sys
import time


def sink(port, timeout):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(1)
    srv.settimeout(timeout)
    conn, _ = srv.accept()
    conn.settimeout(timeout)
    first = None
    last = None
    after_first = 0
    while True:
        buf = conn.recv(1 << 16)
        if not buf:
            break
        now = time.monotonic()
        if first is None:
            first = now
        else:
            after_first += len(buf)
        last = now
    if first is None:
        raise RuntimeError("no data received")
    line = "%d %.6f\n" % (after_first, last - first)
    conn.sendall(line.encode())
    conn.close()
    srv.close()
    sys.stdout.write(line)


def source(host, port, nbytes, timeout):
    deadline = time.monotonic() + timeout
    while True:
        try:
            s = socket.create_connection((host, port), timeout=2)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    s.settimeout(timeout)
    t0 = time.monotonic()
    chunk = b"\xa5" * (1 << 16)
    left = nbytes
    while left > 0:
        n = min(left, len(chunk))
        s.sendall(chunk[:n])
        left -= n
    s.shutdown(socket.SHUT_WR)
    reply = b""
    while not reply.endswith(b"\n"):
        buf = s.recv(256)
        if not buf:
            break
        reply += buf
    t1 = time.monotonic()
    s.close()
    parts = reply.split()
    if len(parts) != 2:
        raise RuntimeError("bad reply from the sink: %r" % reply)
    print("%s %s %.6f" % (parts[0].decode(), parts[1].decode(), t1 - t0))


def main(argv):
    try:
        if len(argv) >= 2 and argv[0] == "sink":
            sink(int(argv[1]), float(argv[2]) if len(argv) > 2 else 60.0)
        elif len(argv) >= 4 and argv[0] == "source":
            source(argv[1], int(argv[2]), int(argv[3]),
                   float(argv[4]) if len(argv) > 4 else 60.0)
        else:
            sys.stderr.write(__doc__)
            return 2
    except Exception as exc:  # report, do not trace back
        sys.stderr.write("meter.py: %s\n" % exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
