"""A hard client-side deadline on every metastore call.

Server-side timeouts (statement_timeout, max_statement_time, busy_timeout) only help while the
server runs: a frozen server, or a network path that silently drops packets, leaves a client
thread blocked in ``recv`` for as long as TCP cares to retry (minutes). Self-fencing must not wait
for that, so every public metastore call runs inside a :func:`scope`: a :class:`Deadline` of
``metastore_timeout`` seconds, shared by everything the call does (setup, pool checkout, connect,
statements, commit).

Each backend arms the deadline with *cuts*: what makes its blocked thread return at once. For a
TCP connection that is :func:`cut_socket`: ``shutdown(2)`` of the connection's socket, after
``SO_LINGER`` 0 so that its close sends a RST and drops any unsent data (a COMMIT still queued in
the kernel is never retransmitted after the caller was told the call failed). One watchdog thread
per process runs the cuts of every deadline that passes while its call is still running; the cuts
of a finished call are dropped under the deadline's lock, so the watchdog never touches a
connection after its call returned.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Hashable, Iterator

from ..exceptions import MetastoreError

__all__ = ["Deadline", "MetastoreTimeout", "current", "cut_socket", "scope"]


class MetastoreTimeout(MetastoreError):
    """A metastore call ran out of its ``metastore_timeout``; whether a write in it landed is unknown."""


class Deadline:
    """The time budget of one metastore call, and the cuts that end it when it runs out."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.expired = False  # set (once) by the watchdog when it ran the cuts
        self._lock = threading.Lock()
        self._done = False
        self._cuts: dict[Hashable, Callable[[], None]] = {}
        self._closers: list[Callable[[], None]] = []

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.at - time.monotonic())

    @property
    def passed(self) -> bool:
        return time.monotonic() >= self.at

    def check(self) -> None:
        """Raise MetastoreTimeout if no time is left (before starting another step of the call)."""
        if self.passed:
            raise self.timeout()

    def timeout(self) -> MetastoreTimeout:
        """The one error a call that ran out of time raises."""
        return MetastoreTimeout(f"metastore did not answer within {self.seconds:g}s (metastore_timeout)")

    def guard(self, key: Hashable, cut: Callable[[], None], close: Callable[[], None] | None = None) -> None:
        """Run ``cut()`` if the deadline passes while ``key`` is guarded (at once if it has passed).

        ``close`` runs when the call ends, whatever happened. A key already guarded is left as it is.
        """
        with self._lock:
            if close is not None:
                self._closers.append(close)
            if key in self._cuts:
                return
            self._cuts[key] = cut
            if self.expired:
                _run_cut(cut)

    def guarded(self, key: Hashable) -> bool:
        """Whether ``key`` is guarded now."""
        with self._lock:
            return key in self._cuts

    def release(self) -> bool:
        """Stop guarding what is guarded now (a connection going back to its pool). True if it was cut."""
        with self._lock:
            self._cuts.clear()
            return self.expired

    def expire(self) -> None:
        """Run the cuts now (the watchdog does so when the deadline passes)."""
        with self._lock:
            if self._done or self.expired:
                return
            self.expired = True
            for cut in self._cuts.values():
                _run_cut(cut)

    def finish(self) -> None:
        """The call is over: nothing is cut after this returns; the closers run."""
        with self._lock:
            self._done = True
            self._cuts.clear()
            closers, self._closers = self._closers, []
        for close in closers:
            with contextlib.suppress(OSError):
                close()


def _run_cut(cut: Callable[[], None]) -> None:
    # A cut acts on a connection that may already be broken or closed: that is fine.
    with contextlib.suppress(OSError, ValueError):
        cut()


def cut_socket(deadline: Deadline, fd: int, key: Hashable = None) -> None:
    """Guard the TCP (or unix) socket behind file descriptor ``fd`` with ``deadline``.

    The descriptor is duplicated now, while the caller's connection is known to be open: the cut
    then acts on that very socket even if the driver closes its own descriptor and the number is
    reused. The duplicate is closed when the call ends.
    """
    if key is None:
        key = ("socket", fd)
    if deadline.guarded(key):
        return
    try:
        dup = socket.socket(fileno=os.dup(fd))
    except OSError:
        return  # not a socket (or already closed): nothing to cut

    def cut() -> None:
        with contextlib.suppress(OSError):  # unix sockets have no linger to speak of
            dup.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        dup.shutdown(socket.SHUT_RDWR)

    deadline.guard(key, cut, dup.close)


class _Watchdog:
    """One daemon thread that expires the deadlines of calls still running when they pass."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, deadline: Deadline) -> None:
        with self._cond:
            heapq.heappush(self._heap, (deadline.at, next(self._order), deadline))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="sfc-metastore-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                at, _, deadline = self._heap[0]
                wait = at - time.monotonic()
                if wait > 0 and not deadline._done:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
            deadline.expire()  # outside our lock: a cut may take a moment


_watchdog = _Watchdog()
_local = threading.local()


def _after_fork() -> None:
    """A forked child has no watchdog thread, and its lock may have been held at the fork."""
    global _watchdog
    _watchdog = _Watchdog()
    _local.__dict__.clear()


os.register_at_fork(after_in_child=_after_fork)


def current() -> Deadline | None:
    """The deadline of the metastore call this thread is running, if any."""
    return getattr(_local, "deadline", None)


@contextlib.contextmanager
def scope(seconds: float) -> Iterator[Deadline]:
    """Run one metastore call within ``seconds``; a call made inside another shares its deadline."""
    outer = current()
    if outer is not None:
        yield outer
        return
    deadline = Deadline(seconds)
    _local.deadline = deadline
    _watchdog.watch(deadline)
    try:
        yield deadline
    finally:
        _local.deadline = None
        deadline.finish()
