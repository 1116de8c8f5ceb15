"""The exit channel: a leash tells its node's controller at once that its scheduler exited.

A Unix datagram socket, ``state_dir/leash/NODE.exit``, in the leash directory (0700, the
controller's user's alone: nobody else can even reach it). The leash sends one short datagram
when its scheduler has exited on its own and waits a moment for the controller's answer, so that
it is still alive (a live leash of the node, as its registration says) while the controller checks
who sent it. Sending never blocks: a full queue, no listener or no answer costs the leash nothing
but the hint. The controller's side is :mod:`.exit_listener`.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
from pathlib import Path

from .leash.records import leash_dir

#: what a leash sends; anything else is refused
MESSAGE = b"sfc-exit 1\n"
#: what the controller answers a message it took
ACK = b"ok\n"
#: the longest datagram the controller reads (a longer one is refused, not read on)
MAX_SIZE = 64
#: seconds a leash waits for the answer before it exits anyway
ACK_WAIT = 2.0
#: a path that fits ``sockaddr_un`` (108 bytes, with the terminating NUL)
_PATH_MAX = 100


def exit_socket_name(node: str) -> str:
    return f"{node}.exit"


def exit_socket_path(state_dir: Path, node: str) -> Path:
    """Where ``node``'s controller listens."""
    return leash_dir(state_dir) / exit_socket_name(node)


class ShortPath:
    """A name in a directory as a path short enough for a Unix socket address.

    A long ``state_dir`` would not fit ``sockaddr_un``: the directory is then reached through an
    ``O_PATH`` descriptor of it (``/proc/self/fd/N/NAME``), which also pins the directory opened.
    """

    def __init__(self, directory: Path, name: str) -> None:
        self.fd = -1
        full = str(directory / name)
        if len(full.encode()) <= _PATH_MAX:
            self.path = full
            return
        self.fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        self.path = f"/proc/self/fd/{self.fd}/{name}"

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> ShortPath:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def send_exit(state_dir: Path, node: str, wait: float = ACK_WAIT) -> bool:
    """Tell ``node``'s controller that this leash's scheduler exited; True when it answered.

    Best effort and bounded: nothing listening, a full queue or any error returns False at once;
    otherwise at most ``wait`` seconds pass waiting for the answer.
    """
    try:
        target = ShortPath(leash_dir(state_dir), exit_socket_name(node))
        with target, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind("")  # an address of its own (Linux autobind) for the answer
            sock.setblocking(False)
            sock.sendto(MESSAGE, target.path)
            readable, _w, _x = select.select([sock], [], [], max(0.0, wait))
            return bool(readable) and sock.recv(16) == ACK
    except OSError:
        return False
