"""Idle connections held by another local user (``nobody``), reopened as the server closes them.

Needs root (to act as nobody, and to raise the holder's own open-file limit with ``prlimit``).
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator

# Run as nobody by the system's Python (the virtualenv may be where nobody cannot read): starts
# ``count`` connections, then replaces each one the server closes or refuses, until stdin closes.
HOLDER = r"""
import errno, select, socket, sys, time
port, count = int(sys.argv[1]), int(sys.argv[2])
poller = select.poll()  # not select(): descriptors past 1023
poller.register(sys.stdin, select.POLLIN)
held = {}
def connect():  # non-blocking: a SYN the server's backlog drops is retried by the kernel
    s = socket.socket()
    s.setblocking(False)
    if s.connect_ex(("127.0.0.1", port)) not in (0, errno.EINPROGRESS):
        s.close()
        return
    held[s.fileno()] = s
    poller.register(s, select.POLLIN)
for _ in range(count):
    connect()
print("holding", len(held), flush=True)
until = time.monotonic() + 180
while time.monotonic() < until:
    events = poller.poll(500)
    if any(fd == sys.stdin.fileno() for fd, _ in events):
        break
    for fd, _ in events:
        s = held.get(fd)
        if s is None:
            continue
        try:
            data = s.recv(100)
        except BlockingIOError:
            continue
        except OSError:
            data = b""
        if data:
            continue
        del held[fd]
        poller.unregister(fd)
        s.close()
        connect()  # another in its place: always as many
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
