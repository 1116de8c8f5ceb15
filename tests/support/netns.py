"""Run Python code of the test process inside a network namespace of the lab.

The lab's metastore lives on 198.18.0.0/24 inside namespaces; the root namespace has no address
or route there (by design). MariaDB is also reachable over its unix socket, ZooKeeper is not: a
ZooKeeper client of the tests must open its sockets inside the metastore's namespace instead.

``setns(2)`` moves only the calling thread, and threads it starts inherit its namespace. So
:func:`in_netns` runs a function in a fresh thread that first enters the namespace: a kazoo
client started there keeps its connection thread (and every reconnect) in that namespace, while
the rest of the test process stays where it was.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000


def _enter(name: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns into network namespace {name}: {os.strerror(errno)}")
    finally:
        os.close(fd)


def in_netns(name: str | None, fn: Callable[[], T], timeout: float = 120) -> T:
    """``fn()`` in a thread inside network namespace ``name`` (None: here); its result or exception."""
    if name is None:
        return fn()
    result: list[T] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            _enter(name)
            result.append(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            error.append(exc)

    thread = threading.Thread(target=run, name=f"netns-{name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"code in network namespace {name} did not finish in {timeout:g}s")
    if error:
        raise error[0]
    return result[0]
