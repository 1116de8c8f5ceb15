"""This project's long-lived helpers on a node, reached over one SSH channel each.

``probe --json --serve`` answers each empty request line with a psutil probe (one JSON line), for
the cost of a process listing rather than of a Python start. ``leash --serve`` answers ``clock``
(the node's monotonic clock) and ``set DEADLINE`` (a leash renewal) after its banner line.

Each is started on first use on the runner's connection (the one line of shell that starts it is
read by ``sh -s`` from the channel's stdin; the helper then reads its requests from the same
stdin), and lives as long as that connection. When the project is not installed on the node they
are not tried again for a while, and the runner probes with ``ps`` and starts without a leash.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path

import paramiko

from ...leash.spec import CLI_SUBCOMMAND, ENV_NODE, ENV_STATE_DIR, SERVE_BANNER
from ...ownership import SCHEDULER_USER_ENV
from ...probe import MATCH_ENV, STATE_DIR_ENV
from ...probe_result import ProbeResult
from .scripts import parse_probe_json, serve_script
from .transport import LOG_NAME, Connection, Deadline, SSHFailure, open_channel, read_line

log = logging.getLogger(LOG_NAME)

_NOISE_LINES = 50  # lines a login script may print before the helper starts, skipped


class LeashNotReady(Exception):
    """The node's ``leash --serve`` is still starting (a busy node): its channel is kept for later."""


class ServeChannel:
    """One helper's channel and what is known about it; it belongs to one connection.

    Callers hold :attr:`lock` while they use it.
    """

    def __init__(self, node: str, remote: Sequence[str]) -> None:
        self.node = node
        self.remote = list(remote)
        self.lock = threading.Lock()
        self.chan: paramiko.Channel | None = None
        self.buffer = bytearray()  # what was read past the last line
        self.ready = False  # its first line (answer or banner) has been read
        self.started_at = 0.0
        self.retry_at = 0.0  # when to try starting it again after it could not be started
        self._conn: Connection | None = None

    def attach(self, conn: Connection) -> None:
        """Use ``conn`` from now on; a channel on an earlier connection went with it."""
        if self._conn is not conn:
            self._conn = conn
            self.chan, self.ready, self.started_at, self.retry_at = None, False, 0.0, 0.0
            self.buffer.clear()

    def running_on(self, conn: Connection) -> bool:
        """Whether a channel to the helper is open (or opening) on ``conn``."""
        return self._conn is conn and self.chan is not None

    def start(self, conn: Connection, deadline: Deadline, script: str) -> paramiko.Channel:
        chan = open_channel(conn, deadline)
        self.buffer.clear()
        chan.exec_command("/bin/sh -s")
        chan.sendall(script.encode())
        self.chan, self.ready, self.started_at = chan, False, time.monotonic()
        return chan

    def read_line(self, conn: Connection, chan: paramiko.Channel, deadline: Deadline) -> bytes:
        return read_line(conn, chan, self.buffer, deadline)

    def forget(self, retry_in: float = 0.0) -> None:
        """Close the channel; start a new one on next use, but not within ``retry_in`` seconds."""
        if self.chan is not None:
            self.chan.close()
        self.chan, self.ready = None, False
        self.buffer.clear()
        self.retry_at = time.monotonic() + retry_in if retry_in else 0.0


class ProbeServer(ServeChannel):
    """``probe --json --serve`` on the node."""

    def __init__(self, node: str, remote: Sequence[str], match: str, state_dir: Path, user: str = "") -> None:
        super().__init__(node, remote)
        argv = ["probe", "--json", "--node", node, "--serve"]
        env: dict[str, object] = {MATCH_ENV: match, STATE_DIR_ENV: state_dir}
        if user:  # else the helper's own user there (the SSH user) is the one whose processes count
            env[SCHEDULER_USER_ENV] = user
        self.script = serve_script(remote, argv, env) if remote else ""

    def probe(self, conn: Connection, deadline: Deadline) -> ProbeResult | None:
        """A probe by the helper; None when it is not available (yet).

        A helper still starting (a busy node) is not waited for beyond part of the budget: the
        caller's ps listing answers meanwhile.
        """
        if not self.remote or (self._conn is conn and time.monotonic() < self.retry_at):
            return None
        if not self.lock.acquire(timeout=max(0.0, deadline.left(conn.timeout))):
            return None
        try:
            self.attach(conn)
            if time.monotonic() < self.retry_at:
                return None
            return self._ask(conn, deadline.within(conn.timeout))
        finally:
            self.lock.release()

    def _ask(self, conn: Connection, local: Deadline) -> ProbeResult | None:
        chan = self.chan
        if chan is None or chan.closed or chan.exit_status_ready():
            chan = self.start(conn, local, self.script)
        try:
            if not self.ready:
                fresh = time.monotonic() - self.started_at < 0.5 * conn.timeout
                wait = Deadline(max(0.0, local.left() * 0.6) if fresh else 0.0)
                try:
                    first = self.read_line(conn, chan, wait)
                    for _skip in range(_NOISE_LINES):
                        if not first or first.lstrip().startswith(b"{"):
                            break
                        first = self.read_line(conn, chan, wait)
                except SSHFailure:  # not up yet
                    if time.monotonic() - self.started_at > max(30.0, 3 * conn.timeout):
                        self._give_up("did not start")
                    return None
                if not first:
                    self._give_up("is not available")
                    return None
                self.ready = True
                if fresh:  # answered just now: that is this probe
                    return self._answer(first)
            chan.sendall(b"\n")
            line = self.read_line(conn, chan, local)
        except (paramiko.SSHException, OSError, EOFError):
            line = b""
        if not line:
            self._give_up("stopped answering", retry=True)
            return None
        return self._answer(line)

    def _answer(self, line: bytes) -> ProbeResult | None:
        result = parse_probe_json(self.node, line.decode(errors="replace"))
        if result is None:
            self._give_up("answered something else")
        return result

    def _give_up(self, why: str, retry: bool = False) -> None:
        self.forget(0.0 if retry else 300.0)
        level = logging.WARNING if retry or why != "is not available" else logging.DEBUG
        log.log(level, "%s: `%s probe --serve` %s there; probing with ps", self.node, self.remote[0], why)


class LeashHelper(ServeChannel):
    """``leash --serve`` on the node: its monotonic clock, and renewals of its leash's deadline."""

    def __init__(self, node: str, remote: Sequence[str], state_dir: Path) -> None:
        super().__init__(node, remote)
        # The node name goes in the environment, not on a command line.
        env = {ENV_NODE: node, ENV_STATE_DIR: state_dir}
        self.script = serve_script(remote, [CLI_SUBCOMMAND, "--serve"], env) if remote else ""

    def warm_up(self, conn: Connection, budget: Deadline) -> None:
        """Start the helper without waiting for it (its Python starts while the caller goes on)."""
        with suppress(LeashNotReady):
            self._locked_channel(conn, budget, Deadline(0))

    def request(self, conn: Connection, budget: Deadline, request: str, patience: Deadline | None = None) -> str | None:
        """One request and its answer (stripped); None without the project there.

        ``patience``: how long to wait for a helper still starting (default: the budget); then
        LeashNotReady.
        """
        chan = self._locked_channel(conn, budget, patience or budget, hold=True)
        try:
            if chan is None:
                return None
            local = budget.within(conn.timeout)
            try:
                chan.sendall(request.encode() + b"\n")
                line = self.read_line(conn, chan, local)
            except (paramiko.SSHException, OSError, EOFError):
                line = b""
            if not line:
                chan.close()
                self.chan, self.ready = None, False
                raise SSHFailure("channel", f"the leash helper on {self.node} stopped answering")
            return line.decode(errors="replace").strip()
        finally:
            self.lock.release()

    def _locked_channel(
        self, conn: Connection, budget: Deadline, patience: Deadline, hold: bool = False
    ) -> paramiko.Channel | None:
        """:meth:`_channel` under :attr:`lock` (kept on return with ``hold``)."""
        if not self.lock.acquire(timeout=max(0.0, budget.left())):
            raise SSHFailure("timeout", f"the leash helper on {self.node} is busy")
        try:
            self.attach(conn)
            chan = self._channel(conn, budget, patience)
        except BaseException:
            self.lock.release()
            raise
        if not hold:
            self.lock.release()
        return chan

    def _channel(self, conn: Connection, budget: Deadline, patience: Deadline) -> paramiko.Channel | None:
        """The helper's channel, started now if need be. None when this project is not there (not
        tried again for 5 minutes); LeashNotReady when it has not printed its banner within
        ``patience`` (a busy node: its Python is still starting; the channel is kept, and the
        next call goes on waiting)."""
        chan = self.chan
        if chan is not None and (chan.closed or chan.exit_status_ready()) and self.ready:
            chan.close()
            chan = self.chan = None  # it died: start another
        if chan is None:
            if time.monotonic() < self.retry_at:
                return None
            chan = self.start(conn, budget.within(conn.timeout), self.script)
        if self.ready:
            return chan
        try:
            for _skip in range(_NOISE_LINES):
                line = self.read_line(conn, chan, patience)
                if not line:
                    break
                if line.decode(errors="replace").strip() == SERVE_BANNER:
                    self.ready = True
                    return chan
        except SSHFailure:
            if time.monotonic() - self.started_at < max(30.0, 3 * conn.timeout):
                raise LeashNotReady from None
            log.warning("%s: `%s leash --serve` did not start there; no leash", self.node, self.remote[0])
            self.forget(60.0)
            return None
        chan.status_event.wait(max(0.01, min(1.0, budget.left())))
        status = chan.exit_status if chan.exit_status_ready() else None
        self.forget(300.0)
        if status == 127:
            log.debug("%s: `%s` is not there: no leash", self.node, self.remote[0])
        else:
            log.warning(
                "%s: `%s leash --serve` is not available there (exit status %s): no leash",
                self.node,
                self.remote[0],
                status,
            )
        return None
