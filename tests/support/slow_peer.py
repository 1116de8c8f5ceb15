"""An HTTP peer run as ``nobody`` on 127.0.0.1 that answers its first connections one byte per second.

Each of the first ``slow`` connections gets a valid ``200 OK`` status line and then a header that
never ends, one byte a second (for at most ``SLOW_FOR`` seconds); an SMTP client, which sends
nothing first, gets a greeting line that never ends. A client whose timeout bounds each read only
waits for either forever. Later connections get a whole ``200 OK`` at once. Every accepted
connection is one ``conn N`` line in :attr:`SlowPeer.log`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

from tests.support.ports import free_port
from tests.support.waiting import wait_for

AS_NOBODY = ["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups"]
# An interpreter ``nobody`` can run: a pyenv build under /root (mode 0700) may not load its own
# libpython for another user; the system's Python (stdlib only is needed) can.
PEER_PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
SLOW_FOR = 300  # seconds a slow answer dribbles at most (the process ends with the test anyway)

_SERVE = r"""
import socket, sys, threading, time
port, slow, slow_for = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(64)
print("ready", flush=True)

def serve(conn, k):
    with conn:
        try:
            conn.settimeout(1)
            try:
                asked = conn.recv(65536)
            except socket.timeout:
                asked = b""  # an SMTP client: it waits for the greeting
            if k > slow:
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
                return
            for b in b"HTTP/1.1 200 OK\r\nX-Slow: " if asked else b"220 ":
                conn.sendall(bytes([b]))
                time.sleep(1)
            for _ in range(slow_for):
                conn.sendall(b"a")
                time.sleep(1)
        except OSError:
            pass

for n in range(1, 100001):
    conn, _ = srv.accept()
    print(f"conn {n}", flush=True)
    threading.Thread(target=serve, args=(conn, n), daemon=True).start()
"""


class SlowPeer:
    """The slow peer's process (as ``nobody``) on a free port; stopped by pid on exit."""

    def __init__(self, tmp: Path, slow: int = 1000000) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / f"slow-peer-{self.port}.log"
        self.slow = slow
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> SlowPeer:
        out = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [*AS_NOBODY, PEER_PYTHON, "-c", _SERVE, str(self.port), str(self.slow), str(SLOW_FOR)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd="/",
        )
        out.close()
        wait_for(lambda: "ready" in self.log, 15, "the slow peer listening")
        return self

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def connections(self) -> int:
        return self.log.count("conn ")

    def __exit__(self, *_exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
