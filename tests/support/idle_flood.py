"""Idle connections held by another local user (``nobody``), reopened as the server closes them.

Needs root (to act as nobody, and to raise the holder's own open-file limit with ``prlimit``).
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator

# Run as nobody by the system's Python (the virtualenv may be where nobody cannot read): opens
# ``count`` connections, then reopens each one the server closes, until stdin closes.
HOLDER = r"""
import select, socket, sys, time
port, count = int(sys.argv[1]), int(sys.argv[2])
def connect():
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=0.2)
        s.setblocking(False)
        return s
    except OSError:
        return None
socks = []
until = time.monotonic() + 20
while len(socks) < count and time.monotonic() < until:
    s = connect()
    if s is not None:
        socks.append(s)
print("holding", len(socks), flush=True)
poller = select.poll()  # not select(): descriptors past 1023
poller.register(sys.stdin, select.POLLIN)
by_fd = {}
for s in socks:
    by_fd[s.fileno()] = s
    poller.register(s, select.POLLIN)
until = time.monotonic() + 180
while time.monotonic() < until:
    events = poller.poll(500)
    if any(fd == sys.stdin.fileno() for fd, _ in events):
        break
    for fd, _ in events:
        s = by_fd.pop(fd, None)
        if s is None:
            continue
        try:
            data = s.recv(100)
        except OSError:
            data = b""
        if data:
            by_fd[fd] = s
            continue
        poller.unregister(fd)
        s.close()
        new = connect()
        if new is not None:
            by_fd[new.fileno()] = new
            poller.register(new, select.POLLIN)
"""


@contextlib.contextmanager
def idle_flood(port: int, count: int) -> Iterator[int]:
    """``count`` idle connections held by nobody (its own open-file limit raised); yields how many."""
    holder = subprocess.Popen(
        [
            "prlimit",
            f"--nofile={count + 64}:{count + 64}",
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
            HOLDER,
            str(port),
            str(count),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd="/",
    )
    try:
        assert holder.stdout is not None
        held = holder.stdout.readline().split()
        assert held[:1] == ["holding"], held
        yield int(held[1])
    finally:
        with contextlib.suppress(OSError):
            assert holder.stdin is not None
            holder.stdin.close()
        try:
            holder.wait(timeout=10)
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.wait()
