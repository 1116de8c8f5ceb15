"""A node's start lock held over SSH: ``flock`` on the node's lock file (the one its own controller
takes), held for as long as one channel stays open."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import paramiko

from ...exceptions import CommandFailed
from . import scripts
from .scripts import Marker
from .transport import Connection, Deadline, SSHFailure, open_channel

LOCK_WAIT = 2.0  # seconds to wait for the node's start lock, as the local runner does


@contextmanager
def start_lock(conn: Connection, deadline: Deadline, node: str, lock_path: Path, timeout: float) -> Iterator[None]:
    """Hold the node's start lock (flock, the file the node's own controller uses) meanwhile.

    The lock is held by ``flock`` on the node for as long as this channel stays open.
    """
    hold = math.ceil(max(1.0, deadline.left())) + 5
    chan = open_channel(conn, deadline)
    try:
        chan.exec_command(scripts.lock_command(lock_path, LOCK_WAIT, hold))
        seen = bytearray()
        local = deadline.within(LOCK_WAIT + timeout)
        while Marker.LOCKED.text.encode() not in seen:
            chan.settimeout(max(0.01, local.left()))
            try:
                data = chan.recv(1024)
            except TimeoutError:
                raise SSHFailure("timeout", f"no answer while taking the start lock on {node}") from None
            if not data:
                raise _lock_refused(chan, local, node, lock_path)
            seen += data
        yield
    finally:
        with suppress(paramiko.SSHException, OSError, EOFError):
            chan.shutdown_write()
        chan.close()


def _lock_refused(chan: paramiko.Channel, local: Deadline, node: str, lock_path: Path) -> CommandFailed:
    """Why the lock command ended without the lock."""
    chan.status_event.wait(max(0.01, local.left()))
    status = chan.exit_status
    err = bytearray()
    while chan.recv_stderr_ready():
        err += chan.recv_stderr(4096)
    why = err.decode(errors="replace").strip()
    if status == 1 and not why:  # flock -w timed out (it says nothing)
        return CommandFailed(f"{node}: another controller is starting the scheduler")
    return CommandFailed(f"{node}: cannot take the start lock {lock_path}: {why or f'exit status {status}'}")
