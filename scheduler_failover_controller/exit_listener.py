"""The controller's side of the exit channel (:mod:`.exit_channel`): a hint, never an order.

A thread of its own reads the node's exit socket. Each datagram carries its sender's credentials,
filled in by the kernel (``SO_PASSCRED``): it is taken only from a process of this controller's
own user that is a live leash of this node by the leash registrations, only when it is exactly the
leash's message, and only within a rate; anything else is dropped (a warning, at most one per
reason a minute). A message taken does one thing: it wakes the cycle, which probes and decides as
it always does. So a forged or stale message can cost a cycle, never a start or a stop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .exit_channel import ACK, MAX_SIZE, MESSAGE, ShortPath, exit_socket_name, exit_socket_path
from .leash.deadline import ensure_private_dir
from .leash.records import leash_dir, live_leashes
from .trust import directory_problem

log = logging.getLogger(__name__)

_UCRED = struct.Struct("iII")  # struct ucred: pid, uid, gid
#: messages read per second at most, and in a burst; more wait in the kernel's queue (whose
#: senders then drop theirs: a leash never waits for a full queue)
RATE = 10.0
BURST = 20
#: seconds between two warnings of the same kind
WARN_EVERY = 60.0
_POLL = 0.5  # seconds between looks at the stop event


@dataclass(frozen=True)
class Datagram:
    """One message as read: its bytes, whether it was longer than read, who sent it, from where."""

    data: bytes
    truncated: bool
    pid: int | None
    uid: int | None
    address: object = None


class Gate:
    """Which datagrams are taken: the sender's credentials, the message, the rate (no I/O)."""

    def __init__(self, uid: int, is_leash: Callable[[int], bool], clock: Callable[[], float] = time.monotonic) -> None:
        self.uid = uid
        self.is_leash = is_leash
        self.clock = clock
        self.tokens = float(BURST)
        self.refilled = clock()

    def wait(self) -> float:
        """Seconds to wait before reading the next datagram (0: read it now); spends a token."""
        now = self.clock()
        self.tokens = min(float(BURST), self.tokens + (now - self.refilled) * RATE)
        self.refilled = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / RATE

    def refusal(self, d: Datagram) -> tuple[str, str] | None:
        """Why ``d`` is not taken, as (kind, one line), or None when it is: a leash of this node
        says its scheduler exited."""
        if d.pid is None or d.uid is None:
            return "credentials", "no sender credentials"
        if d.uid != self.uid:
            return f"uid {d.uid}", f"sent by uid {d.uid} (pid {d.pid}), not this controller's user (uid {self.uid})"
        if d.truncated or len(d.data) > MAX_SIZE:
            return "size", f"longer than {MAX_SIZE} bytes (pid {d.pid})"
        if d.data != MESSAGE:
            return "message", f"not the leash's message (pid {d.pid})"
        if not self.is_leash(d.pid):
            return "leash", f"pid {d.pid} is not a live leash of this node"
        return None


class ExitListener:
    """Listens on ``state_dir/leash/NODE.exit`` and calls ``on_exit(pid)`` for each message taken.

    Its fields are its thread's alone (``serve``): ``close`` stops that thread and waits for it
    before it closes the socket, so no other thread touches them while it runs.
    """

    def __init__(
        self,
        state_dir: Path,
        node: str,
        on_exit: Callable[[int], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state_dir = state_dir
        self.node = node
        self.on_exit = on_exit
        self.gate = Gate(os.geteuid(), lambda pid: self._is_leash(pid), clock)
        self.clock = clock
        self.sock: socket.socket | None = None
        self._where: ShortPath | None = None
        self._warned: dict[str, float] = {}  # kind of refusal -> when last warned
        self._dropped: dict[str, int] = {}  # kind of refusal -> how many since its last warning
        self._inode = 0  # of the socket bound: only that one is removed at the end
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _is_leash(self, pid: int) -> bool:
        return any(r.pid == pid for r in live_leashes(self.state_dir, self.node))

    def open(self) -> bool:
        """Bind the socket; False (a warning: restarts wait for the next cycle) when it cannot."""
        directory = leash_dir(self.state_dir)
        try:
            ensure_private_dir(directory)
            problem = directory_problem(directory)
            if problem:
                log.warning("exit channel off: %s", problem)
                return False
            where = ShortPath(directory, exit_socket_name(self.node))
            self._remove_stale(exit_socket_path(self.state_dir, self.node))
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
                sock.bind(where.path)
                os.chmod(where.path, 0o600)
                sock.settimeout(_POLL)
            except OSError:
                sock.close()
                where.close()
                raise
        except OSError as exc:
            log.warning("exit channel off (restarts wait for the next cycle): %s", exc.strerror or exc)
            return False
        self.sock, self._where = sock, where
        self._inode = os.stat(where.path).st_ino
        return True

    @staticmethod
    def _remove_stale(path: Path) -> None:
        """A socket left by an earlier controller of this node (ours, in our own directory)."""
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return
        if stat.S_ISSOCK(info.st_mode) and info.st_uid == os.geteuid():
            os.unlink(path)
        else:
            raise OSError(f"{path} exists and is not a socket of this user")

    def start(self) -> None:
        """Serve in a daemon thread of its own until :meth:`close`."""
        self._thread = threading.Thread(target=self.serve, args=(self._stop,), name="exits", daemon=True)
        self._thread.start()

    def serve(self, stop: threading.Event) -> None:
        """Read and judge datagrams until ``stop``; never raises."""
        while not stop.is_set() and self.sock is not None:
            pause = self.gate.wait()
            if pause > 0:
                stop.wait(pause)
                continue
            try:
                d = self.read()
            except (socket.timeout, BlockingIOError, InterruptedError):
                self.gate.tokens += 1.0  # nothing was read: the token is not spent
                continue
            except OSError as exc:
                log.warning("exit channel: %s; closed (restarts wait for the next cycle)", exc.strerror or exc)
                return
            self.handle(d)

    def read(self) -> Datagram:
        assert self.sock is not None
        data, ancillary, flags, address = self.sock.recvmsg(MAX_SIZE + 1, socket.CMSG_SPACE(_UCRED.size))
        pid = uid = None
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(payload) >= _UCRED.size:
                pid, uid, _gid = _UCRED.unpack(payload[: _UCRED.size])
        truncated = bool(flags & socket.MSG_TRUNC) or len(data) > MAX_SIZE
        return Datagram(data[:MAX_SIZE], truncated, pid, uid, address or None)

    def handle(self, d: Datagram) -> bool:
        """Take or drop one datagram; True when taken (the cycle is woken, nothing else)."""
        refusal = self.gate.refusal(d)
        if refusal is not None:
            self._refused(*refusal)
            return False
        assert d.pid is not None
        log.info("the leash (pid %d) says the scheduler exited; probing now", d.pid)
        self._answer(d.address)
        self.on_exit(d.pid)
        return True

    def _answer(self, address: object) -> None:
        """Let the leash go (it waits for this, bounded): never blocks."""
        if self.sock is None or not isinstance(address, (str, bytes)) or not address:
            return
        with contextlib.suppress(OSError):
            self.sock.sendto(ACK, socket.MSG_DONTWAIT, address)

    def _refused(self, kind: str, refusal: str) -> None:
        now = self.clock()
        last = self._warned.get(kind)
        if last is not None and now - last < WARN_EVERY:
            self._dropped[kind] = self._dropped.get(kind, 0) + 1
            return
        more = self._dropped.pop(kind, 0)
        self._warned[kind] = now
        also = f" ({more} more like it since the last warning)" if more else ""
        log.warning("exit channel: ignored a message: %s%s", refusal, also)

    def close(self) -> None:
        """Stop serving (its thread ends within its read timeout), then close and remove the socket."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5 * _POLL)
            if self._thread.is_alive():
                return  # still in a call: left to the process's exit rather than closed under it
        sock, self.sock = self.sock, None
        if sock is not None:
            path = exit_socket_path(self.state_dir, self.node)
            with contextlib.suppress(OSError):
                if os.lstat(path).st_ino == self._inode:  # not a later controller's
                    os.unlink(path)
            sock.close()
        if self._where is not None:
            self._where.close()
            self._where = None


def listen(state_dir: Path, node: str, on_exit: Callable[[int], None]) -> ExitListener | None:
    """Open the node's exit channel and serve it in a thread of its own until ``close``; None when
    it is off (a warning said why)."""
    listener = ExitListener(state_dir, node, on_exit)
    if not listener.open():
        return None
    listener.start()
    return listener
