"""Control of a scheduler on another master over SSH (paramiko).

Connections: one per node, opened on first use, kept alive (SSH and TCP keepalive) and reused
across cycles; one that breaks or times out is dropped and re-opened by the next call. Each step
(resolving the name, TCP connect, banner and key exchange, authentication, opening a channel, a
command) gives up after ``ssh_timeout``; a probe as a whole does too. A watchdog closes the
connection when a call's deadline passes, so nothing blocks longer whatever the node does.

Probing: when this project is installed on the node (``ssh_remote_command`` found there), one
long-running ``probe --json --serve`` per connection answers each probe with psutil, for the cost
of a process listing rather than a Python start. Otherwise, or while it starts, the node lists its
processes with ``ps -A -ww -o pid=,ppid=,stat=,etime=,args=`` and the same matching and root
rules are applied here (:func:`~scheduler_failover_controller.probe.probe_table`). Whatever goes
wrong (resolution, connection, host key, authentication, timeout, unreadable answer) makes the
probe UNKNOWN, never running or stopped.

Starting and stopping: see :meth:`SSHNodeRunner.start` and :meth:`SSHNodeRunner.stop`.

Quoting: scripts go to the standard input of ``/bin/sh -s``, so no configured value shows on a
command line on the node (a concurrent ``ps`` listing would match the process-match words, and a
start command may carry secrets); every value in them is quoted with :func:`shlex.quote`. The
match reaches this project's commands there in ``$SFC_PROCESS_MATCH``, not as an argument.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import ipaddress
import json
import logging
import math
import os
import secrets
import shlex
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import paramiko

from ..config import Config
from ..exceptions import CommandFailed, NodeUnreachable
from ..leash import CLI_SUBCOMMAND, ENV_NODE, ENV_STATE_DIR, SERVE_BANNER
from ..probe import (
    MATCH_ENV,
    STATE_DIR_ENV,
    LeashRecord,
    ProbeResult,
    ProcessEntry,
    SchedulerState,
    leash_dir,
    leash_record_prefix,
    parse_leash_record,
    probe_table,
    table_descendants,
    table_roots,
)
from .base import NodeRunner
from .local import launch_command, leash_spec, node_lock_path, session_file

log = logging.getLogger(__name__)
#: paramiko's own transport log goes here, shown only when this module logs at DEBUG: it would
#: print a traceback for every failed handshake, every cycle, while a node hangs.
PARAMIKO_LOG = __name__ + ".paramiko"


_UNREACHABLE_REPEAT = 60.0  # seconds between warnings while a node stays unreachable


class _OnlyWhenDebugging(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return log.isEnabledFor(logging.DEBUG)


T = TypeVar("T")

#: The fallback listing: POSIX ``ps`` fields plus ``stat`` (procps, BSD, busybox) and ``-ww``
#: (no truncation of the arguments).
PS_LISTING = "ps -A -ww -o pid=,ppid=,stat=,etime=,args="

#: ``ps`` STAT letters to psutil's status names (the rest count as running).
_STAT_NAMES = {
    "R": "running",
    "S": "sleeping",
    "D": "disk-sleep",
    "I": "idle",
    "Z": "zombie",
    "T": "stopped",
    "t": "tracing-stop",
    "X": "dead",
    "W": "waking",
    "P": "parked",
}

_LOCK_WAIT = 2.0  # seconds to wait for the node's start lock, as the local runner does
_LEASH_WAIT = 2.0  # seconds more a start may take: the leash's helper and the leash start there
_VISIBLE_WAIT = 1.0  # seconds a start waits, holding the lock, for the new process to show
_MAX_OUTPUT = 16 * 1024 * 1024
_MARK = "@@sfc-"


class SSHFailure(Exception):
    """Why a node could not be reached or commanded; ``kind`` says at which step."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # resolve, connect, handshake, host-key-unknown, host-key-mismatch, auth, timeout, channel


class _HostKeyRejected(paramiko.SSHException):
    pass


@dataclass
class _Deadline:
    seconds: float
    at: float = field(init=False)

    def __post_init__(self) -> None:
        self.at = time.monotonic() + self.seconds

    def left(self, cap: float | None = None) -> float:
        remaining = self.at - time.monotonic()
        return remaining if cap is None else min(cap, remaining)

    def expired(self) -> bool:
        return self.left() <= 0


@dataclass
class _Connection:
    client: paramiko.SSHClient
    transport: paramiko.Transport
    host_key: str  # "known", or "unknown (accepted: ...)"
    fingerprint: str
    opened_at: float
    timed_out: bool = False
    # this project's ``probe --serve`` on the node: one JSON line per request, no process start
    server: paramiko.Channel | None = None
    server_buffer: bytearray = field(default_factory=bytearray)
    server_lock: threading.Lock = field(default_factory=threading.Lock)
    server_ready: bool = False  # its first answer (printed at start) has been read
    server_started_at: float = 0.0
    server_retry_at: float = 0.0  # when to try starting it again after it could not be started
    # this project's ``leash --serve`` on the node: the clock and the deadline file, for leashes
    leash: paramiko.Channel | None = None
    leash_buffer: bytearray = field(default_factory=bytearray)
    leash_lock: threading.Lock = field(default_factory=threading.Lock)
    leash_ready: bool = False  # its banner has been read
    leash_started_at: float = 0.0
    leash_retry_at: float = 0.0  # when to try starting it again after it was not available


@dataclass
class SSHCheck:
    """What ``test_connection`` reports for one SSH node."""

    target: str
    reachable: bool = False
    host_key: str = "not checked"
    host_key_ok: bool = False
    auth: str = "not tried"
    auth_ok: bool = False
    project: str = "not checked"
    tools_missing: tuple[str, ...] = ()
    error: str = ""
    probe: ProbeResult | None = None

    @property
    def ok(self) -> bool:
        return (
            self.reachable
            and self.host_key_ok
            and self.auth_ok
            and not self.tools_missing
            and self.probe is not None
            and self.probe.state is not SchedulerState.UNKNOWN
        )


def fingerprint(key: paramiko.PKey) -> str:
    """``ssh-keygen -l`` style: ``ssh-ed25519 SHA256:...``."""
    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    return f"{key.get_name()} SHA256:{digest}"


def parse_etime(text: str) -> float:
    """Seconds from ``ps`` etime: ``[[dd-]hh:]mm:ss``."""
    days = 0
    if "-" in text:
        head, text = text.split("-", 1)
        days = int(head)
    seconds = 0
    for part in text.split(":"):
        seconds = seconds * 60 + int(part)
    return float(days * 86400 + seconds)


def parse_ps(text: str, now: float | None = None) -> list[ProcessEntry]:
    """Rows of :data:`PS_LISTING`. Arguments are split on whitespace (ps joins them with spaces)."""
    now = time.time() if now is None else now
    rows = []
    for line in text.splitlines():
        parts = line.split(None, 4)
        if len(parts) < 4:
            continue
        try:
            pid, ppid, elapsed = int(parts[0]), int(parts[1]), parse_etime(parts[3])
        except ValueError:
            continue
        args = parts[4] if len(parts) == 5 else ""
        status = _STAT_NAMES.get(parts[2][:1], "running")
        rows.append(ProcessEntry(pid, ppid, tuple(args.split()), status, now - elapsed, args=args))
    return rows


def lineage(pid: int, table: list[ProcessEntry]) -> set[int]:
    """``pid`` and its ancestors in ``table``: the listing's own shell and session."""
    parents = {e.pid: e.ppid for e in table}
    out: set[int] = set()
    while pid and pid not in out and len(out) < 256:
        out.add(pid)
        pid = parents.get(pid, 0)
    return out


def load_known_hosts(keys: paramiko.HostKeys, path: Path) -> int:
    """Add the entries of a known_hosts file to ``keys``; lines paramiko cannot parse are skipped
    (as OpenSSH does), so one bad line does not make every node unreachable. Returns the count.

    paramiko compares host names exactly (hashed names too): no wildcards, no @cert-authority,
    no @revoked.
    """
    if not path.is_file():
        return 0
    count = 0
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                entry = paramiko.hostkeys.HostKeyEntry.from_line(line, number)
                for name in entry.hostnames if entry is not None else []:
                    if name.startswith("|1|"):
                        paramiko.HostKeys.hash_host("check", name)  # a malformed hash fails later otherwise
            except Exception as exc:  # noqa: BLE001 - InvalidHostKey, bad base64, bad hash, key type ...
                log.warning("%s line %d: skipped (%s)", path, number, type(exc).__name__)
                continue
            if entry is None or entry.key is None:
                continue
            for name in entry.hostnames:
                keys.add(name, entry.key.get_name(), entry.key)
            count += 1
    return count


def _q(value: object) -> str:
    return shlex.quote(str(value))


class SSHNodeRunner(NodeRunner):
    """A master node reached over SSH: ``node`` is its host name or address."""

    def __init__(self, node: str, config: Config) -> None:
        super().__init__(node)
        self.config = config
        self.match = config.process_match(node)
        self.port = config.ssh_port
        self.user = config.ssh_user or getpass.getuser()
        self.timeout = config.ssh_timeout
        self.remote_words = shlex.split(config.ssh_remote_command)
        self.lock_path = node_lock_path(config, node)
        self.session_path = session_file(config, node)  # on the node: the same path as there
        self._unreachable_since: float | None = None  # monotonic time its probes began to fail
        self._unreachable_warned: float | None = None
        self.connections_opened = 0  # for tests and metrics
        #: whether the last look found this project on the node (None: not known yet)
        self.remote_project: bool | None = None
        self._conn: _Connection | None = None
        self._conn_lock = threading.Lock()
        self._pending: set[str] = set()  # tokens of starts that timed out, not yet settled
        self._pending_lock = threading.Lock()
        self._accepted: dict[str, paramiko.PKey] = {}  # host keys accepted by warn/auto_add
        chatter = logging.getLogger(PARAMIKO_LOG)
        if not any(isinstance(f, _OnlyWhenDebugging) for f in chatter.filters):
            chatter.addFilter(_OnlyWhenDebugging())

    @property
    def target(self) -> str:
        return f"{self.user}@{self.node}:{self.port}"

    # --- connections ------------------------------------------------------------------

    def _known_hosts_files(self) -> list[Path]:
        if self.config.ssh_known_hosts_file:
            return [Path(self.config.ssh_known_hosts_file).expanduser()]
        return [Path("~/.ssh/known_hosts").expanduser(), Path("/etc/ssh/ssh_known_hosts")]

    def _resolve(self, deadline: _Deadline) -> list[tuple[int, int, int, tuple[object, ...]]]:
        """getaddrinfo bounded by the deadline (a slow resolver must not block the caller)."""
        try:
            ipaddress.ip_address(self.node)
            numeric = True
        except ValueError:
            numeric = False
        result: list[list[tuple[int, int, int, tuple[object, ...]]]] = []
        error: list[BaseException] = []

        def resolve() -> None:
            try:
                infos = socket.getaddrinfo(self.node, self.port, type=socket.SOCK_STREAM)
                result.append([(fam, kind, proto, tuple(addr)) for fam, kind, proto, _name, addr in infos])
            except (OSError, UnicodeError) as exc:
                error.append(exc)

        if numeric:
            resolve()
        else:
            thread = threading.Thread(target=resolve, name=f"resolve-{self.node}", daemon=True)
            thread.start()
            thread.join(max(0.0, deadline.left()))
        if result:
            return result[0]
        if error:
            raise SSHFailure("resolve", f"cannot resolve {self.node}: {error[0]}")
        raise SSHFailure("timeout", f"cannot resolve {self.node} within {self.timeout:g}s")

    def _open_socket(self, deadline: _Deadline) -> socket.socket:
        errors: list[str] = []
        for family, kind, proto, address in self._resolve(deadline):
            if deadline.expired():
                break
            sock = socket.socket(family, kind, proto)
            sock.settimeout(max(0.01, deadline.left()))
            try:
                sock.connect(address)
            except OSError as exc:
                sock.close()
                errors.append(f"{address[0]}:{address[1]}: {exc.strerror or exc}")
                continue
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            for name, value in (
                ("TCP_KEEPIDLE", max(1, int(self.timeout))),
                ("TCP_KEEPINTVL", max(1, int(self.timeout / 3))),
                ("TCP_KEEPCNT", 3),
            ):
                if hasattr(socket, name):
                    sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
            return sock
        if deadline.expired() and not errors:
            raise SSHFailure("timeout", f"no TCP connection to {self.node}:{self.port} within {self.timeout:g}s")
        raise SSHFailure("connect", f"cannot connect to {self.node}:{self.port}: {'; '.join(errors) or 'timed out'}")

    def _connect(self, deadline: _Deadline) -> _Connection:
        sock = self._open_socket(deadline)
        client = paramiko.SSHClient()
        client.set_log_channel(PARAMIKO_LOG)
        for path in self._known_hosts_files():
            try:
                load_known_hosts(client.get_host_keys(), path)
            except OSError as exc:
                sock.close()
                raise SSHFailure("host-key-unknown", f"cannot read known_hosts file {path}: {exc}") from None
        key_name = self.node if self.port == 22 else f"[{self.node}]:{self.port}"
        if key_name in self._accepted:
            accepted = self._accepted[key_name]
            client.get_host_keys().add(key_name, accepted.get_name(), accepted)
        policy = _Policy(self, key_name)
        client.set_missing_host_key_policy(policy)
        key_file = self.config.ssh_key_file
        if key_file and not os.access(os.path.expanduser(key_file), os.R_OK):
            sock.close()
            raise SSHFailure("auth", f"cannot read ssh_key_file {key_file}")
        left = max(0.01, deadline.left())
        done = threading.Event()

        def expire() -> None:
            if not done.is_set():
                client.close()
                sock.close()

        watchdog = threading.Timer(left, expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            client.connect(
                self.node,
                port=self.port,
                username=self.user,
                key_filename=os.path.expanduser(key_file) if key_file else None,
                allow_agent=not key_file,
                look_for_keys=not key_file,
                sock=sock,
                timeout=left,
                banner_timeout=left,
                auth_timeout=left,
                channel_timeout=left,
            )
            done.set()
        except _HostKeyRejected as exc:
            client.close()
            sock.close()
            raise SSHFailure("host-key-unknown", str(exc)) from None
        except paramiko.BadHostKeyException as exc:
            client.close()
            sock.close()
            log.error(
                "%s: HOST KEY MISMATCH: the node offered %s, known_hosts has %s; refusing to connect",
                self.node,
                fingerprint(exc.key),
                fingerprint(exc.expected_key),
            )
            raise SSHFailure(
                "host-key-mismatch",
                f"host key mismatch for {key_name}: offered {fingerprint(exc.key)}, known_hosts has "
                f"{fingerprint(exc.expected_key)} (a re-installed node, or someone in between); refused",
            ) from None
        except paramiko.AuthenticationException as exc:
            client.close()
            sock.close()
            how = f"key {key_file}" if key_file else "the SSH agent and the default keys"
            raise SSHFailure("auth", f"authentication as {self.user} with {how} failed: {exc}") from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            client.close()
            sock.close()
            if deadline.expired():
                raise SSHFailure("handshake", f"no SSH handshake with {self.target} within {self.timeout:g}s") from None
            why = str(exc) or type(exc).__name__
            raise SSHFailure("handshake", f"SSH handshake with {self.target} failed: {why}") from None
        finally:
            done.set()
            watchdog.cancel()
        transport = client.get_transport()
        if transport is None or not transport.is_active():
            client.close()
            raise SSHFailure("handshake", f"SSH connection to {self.target} closed during the handshake")
        transport.set_keepalive(max(1, int(self.timeout)))
        remote_key = transport.get_remote_server_key()
        self.connections_opened += 1
        host_key = policy.status or "known"
        log.info("%s: SSH connection to %s opened (host key %s)", self.node, self.target, host_key)
        return _Connection(client, transport, host_key, fingerprint(remote_key), time.monotonic())

    def _connection(self, deadline: _Deadline) -> tuple[_Connection, bool]:
        """The cached connection if it is alive, else a new one; and whether it is new."""
        if not self._conn_lock.acquire(timeout=max(0.0, deadline.left())):
            raise SSHFailure("timeout", f"still connecting to {self.target} (another call)")
        try:
            conn = self._conn
            if conn is not None and conn.transport.is_active() and not conn.timed_out:
                return conn, False
            if conn is not None:
                self._conn = None
                conn.client.close()
            self._conn = self._connect(_Deadline(max(0.0, deadline.left(self.timeout))))
            return self._conn, True
        finally:
            self._conn_lock.release()

    def _drop(self, conn: _Connection) -> None:
        with self._conn_lock:
            if self._conn is conn:
                self._conn = None
        conn.client.close()

    def close(self) -> None:
        with self._conn_lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.client.close()

    @contextmanager
    def _watchdog(self, conn: _Connection, deadline: _Deadline) -> Iterator[None]:
        """Close the connection when the deadline passes: no channel call can block past it."""

        def expire() -> None:
            conn.timed_out = True
            conn.client.close()

        timer = threading.Timer(max(0.0, deadline.left()), expire)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()

    def _session(self, deadline: _Deadline, action: Callable[[_Connection], T]) -> T:
        """Run ``action`` on a connection under the deadline; retry once on a stale connection.

        A connection that times out or breaks is dropped; SSHFailure says why.
        """
        for attempt in (1, 2):
            conn, fresh = self._connection(deadline)
            try:
                with self._watchdog(conn, deadline):
                    return action(conn)
            except _StaleConnection as exc:
                self._drop(conn)
                if fresh or attempt == 2 or deadline.expired():
                    raise SSHFailure("channel", f"SSH connection to {self.target} failed: {exc}") from None
                log.info("%s: SSH connection broken (%s); reconnecting", self.node, exc)
            except SSHFailure:
                self._drop(conn)
                raise
            except (paramiko.SSHException, OSError, EOFError) as exc:
                self._drop(conn)
                if conn.timed_out or deadline.expired():
                    raise SSHFailure("timeout", f"no answer from {self.target} within the deadline") from None
                raise SSHFailure("channel", f"SSH connection to {self.target} failed: {exc}") from None
            except Exception:
                if not conn.timed_out:
                    raise
                # whatever paramiko raised once the watchdog had closed the connection under it
                self._drop(conn)
                raise SSHFailure("timeout", f"no answer from {self.target} within the deadline") from None
        raise AssertionError("unreachable")  # pragma: no cover

    # --- commands ---------------------------------------------------------------------

    def _exec(
        self,
        conn: _Connection,
        script: str,
        deadline: _Deadline,
        budget: float | None = None,
    ) -> tuple[int, str, str]:
        """Run ``script`` with ``/bin/sh -s`` on the node; (exit status, stdout, stderr)."""
        cap = budget if budget is not None else self.timeout
        local = _Deadline(max(0.0, deadline.left(cap)))
        began = time.monotonic()
        try:
            chan = conn.transport.open_session(timeout=max(0.01, local.left(self.timeout)))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            if local.expired() or conn.timed_out or time.monotonic() - began >= self.timeout:
                raise SSHFailure("timeout", f"no SSH channel on {self.target} within {self.timeout:g}s") from None
            raise _StaleConnection(str(exc) or type(exc).__name__) from None
        try:
            chan.settimeout(max(0.01, local.left()))
            chan.exec_command("/bin/sh -s")
            chan.sendall(script.encode())
            chan.shutdown_write()
            return self._collect(chan, local)
        except socket.timeout:
            raise SSHFailure("timeout", f"command on {self.target} did not finish within {cap:g}s") from None
        finally:
            chan.close()

    def _collect(self, chan: paramiko.Channel, local: _Deadline) -> tuple[int, str, str]:
        out = bytearray()
        while True:
            chan.settimeout(max(0.01, local.left()))
            data = chan.recv(65536)
            if not data:
                break
            out += data
            if len(out) > _MAX_OUTPUT:
                raise SSHFailure("channel", f"too much output from {self.target}")
        if not chan.status_event.wait(max(0.01, local.left())):
            raise socket.timeout()
        err = bytearray()
        while chan.recv_stderr_ready() and len(err) < 65536:
            err += chan.recv_stderr(65536)
        return chan.exit_status, out.decode(errors="replace"), err.decode(errors="replace")

    def _remote(self, subcommand: str, *options: str) -> str:
        """``MATCH=... sfc SUBCOMMAND --json --node NODE ...``, every word quoted."""
        words = " ".join(_q(w) for w in [*self.remote_words, subcommand, "--json", "--node", self.node, *options])
        return f"{MATCH_ENV}={_q(self.match)} {STATE_DIR_ENV}={_q(self.config.state_dir)} {words} </dev/null"

    def _listing(self) -> list[str]:
        """Shell lines printing the fallback listing: the node's leash registrations (files of
        this user) and its clock, a marker with the shell's pid, then ps."""
        records = f"{_q(leash_dir(self.config.state_dir))}/{_q(leash_record_prefix(self.node))}*"
        return [
            f"for f in {records}; do",
            '  [ -f "$f" ] && [ -O "$f" ] && printf \'@@sfc-leash@@ %s\\n\' "$(cat "$f" 2>/dev/null)"',
            "done 2>/dev/null",
            'echo "@@sfc-now@@ $(date +%s)"',
            'echo "@@sfc-ps@@ $$"',
            "LC_ALL=C",
            "export LC_ALL",
            f"exec {PS_LISTING}",
        ]

    @staticmethod
    def _parse_leashes(out: str) -> tuple[list[LeashRecord], float | None]:
        """The leash registrations and the node's clock (``date +%s``) printed before a listing."""
        head = out.partition("@@sfc-ps@@")[0]
        records, now = [], None
        for line in head.splitlines():
            if line.startswith("@@sfc-leash@@ "):
                record = parse_leash_record(line[len("@@sfc-leash@@ ") :])
                if record is not None:
                    records.append(record)
            elif line.startswith("@@sfc-now@@ "):
                with suppress(ValueError):
                    now = float(line.split()[1])
        return records, now

    def _probe_listed(self, out: str, table: list[ProcessEntry]) -> ProbeResult:
        """probe_table with the node's leashes (verifiable only when its clock was printed)."""
        records, now = self._parse_leashes(out)
        return probe_table(self.node, table, self.match, leashes=records if now is not None else ())

    def _probe_script(self) -> str:
        return "\n".join(self._listing()) + "\n"

    def _parse_json(self, out: str) -> ProbeResult | None:
        """The ProbeResult printed by the node's ``probe --json`` / ``kill_local --json``."""
        start = out.find("{")
        if start < 0:
            return None
        try:
            data, _end = json.JSONDecoder().raw_decode(out[start:])
            state = SchedulerState(data["state"])
            pids = tuple(int(p) for p in data.get("pids", []))
            detail = str(data.get("detail", ""))
            leashed = data.get("leashed", False) is True
        except (ValueError, KeyError, TypeError):
            return None
        return ProbeResult(self.node, state, pids, detail, leashed=leashed)

    def _parse_listing(self, out: str) -> list[ProcessEntry] | None:
        """The ps table after the marker, with the listing's own shell and session left out."""
        if "@@sfc-ps@@" not in out:
            return None
        _head, _mark, rest = out.partition("@@sfc-ps@@")
        first, _nl, text = rest.partition("\n")
        try:
            own = int(first.strip())
        except ValueError:
            return None
        # Start times on the node's clock when it printed it: they are compared with its leashes'.
        table = parse_ps(text, self._parse_leashes(out)[1])
        skip = lineage(own, table)
        return [e for e in table if e.pid not in skip]

    def _read_line(self, chan: paramiko.Channel, buffer: bytearray, local: _Deadline) -> bytes:
        """One line from ``chan`` (b"" at end of output); SSHFailure at the deadline."""
        while b"\n" not in buffer:
            chan.settimeout(max(0.01, local.left()))
            try:
                data = chan.recv(65536)
            except socket.timeout:
                raise SSHFailure("timeout", f"no probe answer from {self.target} within {self.timeout:g}s") from None
            if not data:
                return b""
            buffer += data
            if len(buffer) > _MAX_OUTPUT:
                raise SSHFailure("channel", f"too much output from {self.target}")
        line, _nl, rest = bytes(buffer).partition(b"\n")
        buffer[:] = rest
        return line + b"\n"

    def _served_probe(self, conn: _Connection, deadline: _Deadline) -> ProbeResult | None:
        """A probe by the node's long-running ``probe --serve``; None when it is not available (yet).

        Started once per connection (when this project is installed on the node), it answers each
        request with a psutil probe for the cost of a process listing, not of a Python start. A
        server still starting (a busy node) is not waited for beyond part of the budget: the ps
        listing answers meanwhile.
        """
        if not self.remote_words or time.monotonic() < conn.server_retry_at:
            return None
        if not conn.server_lock.acquire(timeout=max(0.0, deadline.left(self.timeout))):
            return None
        try:
            local = _Deadline(max(0.0, deadline.left(self.timeout)))
            chan = conn.server
            if chan is None or chan.closed or chan.exit_status_ready():
                chan = conn.server = self._start_server(conn, local)
                conn.server_ready = False
                conn.server_started_at = time.monotonic()
            try:
                if not conn.server_ready:
                    fresh = time.monotonic() - conn.server_started_at < 0.5 * self.timeout
                    wait = _Deadline(max(0.0, local.left() * 0.6) if fresh else 0.0)
                    try:
                        first = self._read_line(chan, conn.server_buffer, wait)
                        for _skip in range(50):  # what a login script printed before the server started
                            if not first or first.lstrip().startswith(b"{"):
                                break
                            first = self._read_line(chan, conn.server_buffer, wait)
                    except SSHFailure:  # not up yet
                        if time.monotonic() - conn.server_started_at > max(30.0, 3 * self.timeout):
                            self._give_up_server(conn, "did not start")
                        return None
                    if not first:
                        self._give_up_server(conn, "is not available")
                        return None
                    conn.server_ready = True
                    if fresh:  # answered just now: that is this probe
                        return self._server_answer(conn, first)
                chan.sendall(b"\n")
                line = self._read_line(chan, conn.server_buffer, local)
            except (paramiko.SSHException, OSError, EOFError):
                line = b""
            if not line:
                self._give_up_server(conn, "stopped answering", retry=True)
                return None
            return self._server_answer(conn, line)
        finally:
            conn.server_lock.release()

    def _server_answer(self, conn: _Connection, line: bytes) -> ProbeResult | None:
        result = self._parse_json(line.decode(errors="replace"))
        if result is None:
            self._give_up_server(conn, "answered something else")
        else:
            self.remote_project = True
        return result

    def _give_up_server(self, conn: _Connection, why: str, retry: bool = False) -> None:
        if conn.server is not None:
            conn.server.close()
        conn.server = None
        conn.server_ready = False
        conn.server_buffer.clear()
        conn.server_retry_at = 0.0 if retry else time.monotonic() + 300
        level = logging.WARNING if retry or why != "is not available" else logging.DEBUG
        log.log(level, "%s: `%s probe --serve` %s there; probing with ps", self.node, self.remote_words[0], why)

    def _start_server(self, conn: _Connection, local: _Deadline) -> paramiko.Channel:
        try:
            chan = conn.transport.open_session(timeout=max(0.01, local.left()))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            if local.expired() or conn.timed_out:
                raise SSHFailure("timeout", f"no SSH channel on {self.target} within {self.timeout:g}s") from None
            raise _StaleConnection(str(exc) or type(exc).__name__) from None
        conn.server_buffer.clear()
        # One line, read by sh from stdin; the server then reads its requests from the same stdin
        # (none is sent before its first answer, so sh cannot have read any of them).
        words = " ".join(_q(w) for w in [*self.remote_words, "probe", "--json", "--node", self.node, "--serve"])
        script = (
            f"command -v {_q(self.remote_words[0])} >/dev/null 2>&1 || exit 127; "
            f"{MATCH_ENV}={_q(self.match)} {STATE_DIR_ENV}={_q(self.config.state_dir)} exec {words} 2>/dev/null\n"
        )
        chan.exec_command("/bin/sh -s")
        chan.sendall(script.encode())
        return chan

    def _look(self, conn: _Connection, deadline: _Deadline) -> tuple[ProbeResult, list[ProcessEntry] | None]:
        """One probe on the node; with the ps table when the fallback was used."""
        served = self._served_probe(conn, deadline)
        if served is not None:
            return served, None
        status, out, err = self._exec(conn, self._probe_script(), deadline)
        table = self._parse_listing(out)
        if table is None:
            why = (err.strip().splitlines() or [f"exit status {status}"])[-1]
            return ProbeResult(
                self.node, SchedulerState.UNKNOWN, detail=f"ssh: unreadable process listing ({why})"
            ), None
        if conn.server is None:
            self.remote_project = False
        return self._probe_listed(out, table), table

    # --- starts that timed out -------------------------------------------------------

    def _token_dir(self, token: str) -> str:
        return str(self.lock_path.parent / f"{self.node}.start-{token}")

    def _settle_pending(self, conn: _Connection, deadline: _Deadline) -> bool:
        """Make sure no earlier start that timed out can still launch; True if one already did.

        Each start creates its token directory (mkdir is atomic) before launching and gives up if
        it exists; settling creates it first, so the start can no longer happen, or finds it
        created, so the start has launched.
        """
        with self._pending_lock:
            tokens = sorted(self._pending)
        if not tokens:
            return False
        dirs = " ".join(_q(self._token_dir(t)) for t in tokens)
        script = (
            f"mkdir -p {_q(self.lock_path.parent)} || exit 1\n"
            f"for d in {dirs}; do\n"
            '  if mkdir "$d" 2>/dev/null; then echo "@@sfc-cancelled@@ $d"; else echo "@@sfc-ran@@ $d"; fi\n'
            "done\n"
        )
        status, out, err = self._exec(conn, script, deadline)
        if status != 0:
            raise SSHFailure("channel", f"cannot settle an earlier start: {err.strip() or status}")
        with self._pending_lock:
            self._pending.difference_update(tokens)
        ran = "@@sfc-ran@@" in out
        how = "one had run" if ran else "cancelled"
        log.info("%s: settled %d start(s) that had timed out (%s)", self.node, len(tokens), how)
        return ran

    # --- NodeRunner -------------------------------------------------------------------

    def probe(self) -> ProbeResult:
        deadline = _Deadline(self.timeout)

        def look(conn: _Connection) -> ProbeResult:
            ran = self._settle_pending(conn, deadline)
            result, _table = self._look(conn, deadline)
            if ran and result.state is SchedulerState.STOPPED and deadline.left() > _VISIBLE_WAIT:
                time.sleep(_VISIBLE_WAIT)  # a late start just launched: give it a moment to show
                result, _table = self._look(conn, deadline)
            return result

        try:
            result = self._session(deadline, look)
        except SSHFailure as exc:
            self._note_unreachable(str(exc))
            return ProbeResult(self.node, SchedulerState.UNKNOWN, detail=f"ssh: {exc}")
        except Exception as exc:  # noqa: BLE001 - probe never raises (NodeRunner contract)
            log.warning("%s: probe failed unexpectedly: %r", self.node, exc)
            return ProbeResult(self.node, SchedulerState.UNKNOWN, detail=f"ssh: probe failed: {exc}")
        if self._unreachable_since is not None:
            log.info("%s: reachable over SSH again after %.1fs", self.node, time.monotonic() - self._unreachable_since)
            self._unreachable_since = self._unreachable_warned = None
        return result

    def _note_unreachable(self, why: str) -> None:
        """A warning when the node turns unreachable and once a minute while it stays so; DEBUG between."""
        now = time.monotonic()
        if self._unreachable_since is None:
            self._unreachable_since = self._unreachable_warned = now
            log.warning("%s: unreachable over SSH (%s); it counts as unknown until it answers", self.node, why)
        elif self._unreachable_warned is None or now - self._unreachable_warned >= _UNREACHABLE_REPEAT:
            self._unreachable_warned = now
            log.warning(
                "%s: still unreachable over SSH after %.0fs (%s)", self.node, now - self._unreachable_since, why
            )
        else:
            log.debug("%s: probe failed: %s", self.node, why)

    def start(self, deadline: float) -> None:
        """Launch the scheduler on the node as the local runner does, under the node's start lock.

        The lock is ``flock`` on ``state_dir/locks/NODE.lock`` there (the file the node's own
        controller locks), held over a channel while this probes, launches (``setsid``, detached,
        output appended to ``state_dir/scheduler.log`` there) and waits to see it: up to 1s, or
        until its leash has launched the start command and 1s more.

        The leash: with this project on the node, the launch runs ``ssh_remote_command leash``,
        which runs the start command and stops it at ``deadline`` (our monotonic clock) turned
        into the node's clock by :meth:`_remote_deadline`. Without it (the POSIX fallback) the
        start command runs unleashed, as its probes then say.

        A launch whose answer does not come back may still happen later. Each launch first
        creates a token directory with ``mkdir`` and gives up if it exists; until this runner has
        settled such a start on the node (by creating its token first, so it can never launch, or
        by finding it created, so it did), every probe says UNKNOWN at best, never STOPPED.
        """
        budget = _Deadline(self.timeout + _LOCK_WAIT + _VISIBLE_WAIT + _LEASH_WAIT)
        token = ""

        def launch(conn: _Connection) -> None:
            nonlocal token
            self._settle_pending(conn, budget)
            token = secrets.token_hex(8)  # new on a retry: settling cancels the last one
            with suppress(_LeashNotReady):  # its Python starts there while we take the lock and look
                self._leash_lock_and_channel(conn, budget, _Deadline(0))
            with self._remote_lock(conn, budget):
                current, _table = self._look(conn, budget)
                if current.state is SchedulerState.UNKNOWN:
                    raise CommandFailed(f"{self.node}: cannot tell whether a scheduler runs: {current.detail}")
                if current.state.maybe_running:
                    log.info("%s: a scheduler is already there; not starting another", self.node)
                    return
                # what is left once the launch and the wait to see it have their share
                patience = _Deadline(max(0.0, budget.left() - self.timeout - _VISIBLE_WAIT))
                try:
                    remote_deadline = self._remote_deadline(conn, budget, deadline, patience)
                except _LeashNotReady:
                    raise CommandFailed(f"{self.node}: the leash helper did not start there in time") from None
                if remote_deadline is None:
                    log.info("%s: this project is not there: starting the scheduler without a leash", self.node)
                with self._pending_lock:
                    self._pending.add(token)  # from here until it answers, the start may still happen
                status, out, err = self._exec(conn, self._launch_script(token, remote_deadline), budget)
                with self._pending_lock:
                    self._pending.discard(token)
                if status != 0 or "@@sfc-launched@@" not in out:
                    why = (err.strip().splitlines() or [f"exit status {status}"])[-1]
                    raise CommandFailed(f"{self.node}: start over SSH failed: {why}")
                # Hold the lock until the new process is visible, so a concurrent starter sees it.
                self._wait_visible(conn, budget, token if remote_deadline is not None else "")

        try:
            self._session(budget, launch)
        except SSHFailure as exc:
            with self._pending_lock:
                doubt = token in self._pending
            later = "; the scheduler may still come up there, so the node counts as running until seen" if doubt else ""
            raise NodeUnreachable(f"{self.node}: start over SSH: {exc}{later}") from None

    def _wait_visible(self, conn: _Connection, budget: _Deadline, token: str) -> None:
        """Until the scheduler shows; at most 1s, or (leashed) 1s after its leash registered."""
        began = time.monotonic()
        spawned = 0.0
        while budget.left() > 0.2:
            if not token:
                if self._look(conn, budget)[0].state.maybe_running:
                    return
            else:  # the listing shows both the scheduler and the leash's registration
                _status, out, _err = self._exec(conn, self._probe_script(), budget)
                table = self._parse_listing(out)
                if table is not None and self._probe_listed(out, table).state.maybe_running:
                    return
                if not spawned and any(r.token == token for r in self._parse_leashes(out)[0]):
                    spawned = time.monotonic()
            now = time.monotonic()
            if (spawned or not token) and now - (spawned or began) >= _VISIBLE_WAIT:
                return
            time.sleep(0.05)

    # --- the leash ----------------------------------------------------------------------

    def renew_leash(self, deadline: float) -> None:
        """Renew the node's leash to ``deadline`` (our monotonic clock), through ``leash --serve``.

        The deadline is turned into the node's clock by a round trip (:meth:`_remote_deadline`)
        and sent as an absolute value, so a late answer or a late write is still safe. Bounded by
        ``ssh_timeout``; never raises; a failure logs one warning until a renewal succeeds again.
        Nothing to do where this project is not installed (no leash there).
        """
        if not self.remote_words:
            return
        budget = _Deadline(self.timeout)

        def renew(conn: _Connection) -> str | None:
            remote = self._remote_deadline(conn, budget, deadline)
            if remote is None:
                return None
            answer = self._leash_request(conn, budget, f"set {remote!r}")
            if answer != "ok":
                raise SSHFailure("channel", f"the leash helper answered {(answer or '')[:200]!r}")
            return answer

        try:
            done = self._session(budget, renew)
        except _LeashNotReady:
            log.debug("%s: the leash helper is still starting there; renewal skipped", self.node)
            return
        except SSHFailure as exc:
            self._leash_failed(str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - renew_leash never raises (NodeRunner contract)
            self._leash_failed(f"unexpected {exc!r}")
            return
        if done is not None and self._renew_failing:
            self._renew_failing = False
            log.info("%s: leash renewed again", self.node)

    _renew_failing = False

    def _leash_failed(self, why: str) -> None:
        if self._renew_failing:
            log.debug("%s: leash renewal failed again: %s", self.node, why)
            return
        self._renew_failing = True
        log.warning("%s: could not renew the leash over SSH: %s", self.node, why)

    def _remote_deadline(
        self, conn: _Connection, budget: _Deadline, deadline: float, patience: _Deadline | None = None
    ) -> float | None:
        """``deadline`` (our monotonic clock) on the node's monotonic clock; None without the project.

        At t0 we ask for the node's reading m1 and get it at t1: m1 was read at a real time >= t0,
        at most t1 - t0 before t1, so ``m1 + (deadline - t1)`` is never later than ``deadline``
        whatever the delays (the round trip only costs margin). ``patience``: how long to wait
        for a helper still starting (default: the budget); then _LeashNotReady.
        """
        answer = self._leash_request(conn, budget, "clock", patience)
        if answer is None:
            return None
        t1 = time.monotonic()
        words = answer.split()
        try:
            if len(words) != 2 or words[0] != "clock":
                raise ValueError(answer)
            m1 = float(words[1])
        except ValueError:
            raise SSHFailure("channel", f"the leash helper answered {answer[:200]!r} to clock") from None
        return m1 + (deadline - t1)

    def _leash_request(
        self, conn: _Connection, budget: _Deadline, request: str, patience: _Deadline | None = None
    ) -> str | None:
        """One request to the node's ``leash --serve`` (started on first use); None without the project."""
        chan = self._leash_lock_and_channel(conn, budget, patience or budget, hold=True)
        try:
            if chan is None:
                return None
            local = _Deadline(max(0.0, budget.left(self.timeout)))
            try:
                chan.sendall(request.encode() + b"\n")
                line = self._read_line(chan, conn.leash_buffer, local)
            except (paramiko.SSHException, OSError, EOFError):
                line = b""
            if not line:
                chan.close()
                conn.leash, conn.leash_ready = None, False
                raise SSHFailure("channel", f"the leash helper on {self.node} stopped answering")
            return line.decode(errors="replace").strip()
        finally:
            conn.leash_lock.release()

    def _leash_lock_and_channel(
        self, conn: _Connection, budget: _Deadline, patience: _Deadline, hold: bool = False
    ) -> paramiko.Channel | None:
        """:meth:`_leash_channel` under the connection's helper lock (kept on return with ``hold``)."""
        if not conn.leash_lock.acquire(timeout=max(0.0, budget.left())):
            raise SSHFailure("timeout", f"the leash helper on {self.node} is busy")
        try:
            chan = self._leash_channel(conn, budget, patience)
        except BaseException:
            conn.leash_lock.release()
            raise
        if not hold:
            conn.leash_lock.release()
        return chan

    def _leash_channel(self, conn: _Connection, budget: _Deadline, patience: _Deadline) -> paramiko.Channel | None:
        """The node's ``leash --serve`` on this connection, started now if need be (the caller holds
        ``conn.leash_lock``). None when this project is not there (not tried again for 5 minutes);
        _LeashNotReady when it has not printed its banner within ``patience`` (a busy node: its
        Python is still starting; the channel is kept, and the next call goes on waiting)."""
        chan = conn.leash
        if chan is not None and (chan.closed or chan.exit_status_ready()) and conn.leash_ready:
            chan.close()
            chan = conn.leash = None  # it died: start another
        if chan is None:
            if time.monotonic() < conn.leash_retry_at:
                return None
            step = _Deadline(max(0.0, budget.left(self.timeout)))
            try:
                chan = conn.transport.open_session(timeout=max(0.01, step.left()))
            except (paramiko.SSHException, OSError, EOFError) as exc:
                if step.expired() or conn.timed_out:
                    raise SSHFailure("timeout", f"no SSH channel on {self.target} within {self.timeout:g}s") from None
                raise _StaleConnection(str(exc) or type(exc).__name__) from None
            conn.leash_buffer.clear()
            # One line, read by sh from stdin; the helper then reads its requests from the same
            # stdin (none is sent before its banner). The node name goes in the environment.
            words = " ".join(_q(w) for w in [*self.remote_words, CLI_SUBCOMMAND, "--serve"])
            script = (
                f"command -v {_q(self.remote_words[0])} >/dev/null 2>&1 || exit 127; "
                f"{ENV_NODE}={_q(self.node)} {ENV_STATE_DIR}={_q(self.config.state_dir)} exec {words} 2>/dev/null\n"
            )
            chan.exec_command("/bin/sh -s")
            chan.sendall(script.encode())
            conn.leash, conn.leash_ready, conn.leash_started_at = chan, False, time.monotonic()
        if conn.leash_ready:
            return chan
        try:
            for _skip in range(50):  # what a login script printed before the helper started
                line = self._read_line(chan, conn.leash_buffer, patience)
                if not line:
                    break
                if line.decode(errors="replace").strip() == SERVE_BANNER:
                    conn.leash_ready = True
                    return chan
        except SSHFailure:
            if time.monotonic() - conn.leash_started_at < max(30.0, 3 * self.timeout):
                raise _LeashNotReady from None
            log.warning("%s: `%s leash --serve` did not start there; no leash", self.node, self.remote_words[0])
            chan.close()
            conn.leash, conn.leash_retry_at = None, time.monotonic() + 60
            return None
        chan.status_event.wait(max(0.01, min(1.0, budget.left())))
        status = chan.exit_status if chan.exit_status_ready() else None
        chan.close()
        conn.leash, conn.leash_retry_at = None, time.monotonic() + 300
        if status == 127:
            log.debug("%s: `%s` is not there: no leash", self.node, self.remote_words[0])
        else:
            log.warning(
                "%s: `%s leash --serve` is not available there (exit status %s): no leash",
                self.node,
                self.remote_words[0],
                status,
            )
        return None

    def stop(self, grace: float | None = None) -> ProbeResult:
        """The configured stop command first (if any, ``scheduler_stop_timeout`` for it), then kill.

        Kill: this project's ``kill_local`` on the node when installed there (psutil, identity
        checked, SIGTERM then SIGKILL after ``scheduler_stop_timeout``, whole trees); otherwise
        the roots and every descendant found in the ``ps`` listing get :func:`kill_script`.
        Returns a fresh probe; NodeUnreachable when the node cannot be commanded.
        """
        stop_timeout = self.config.scheduler_stop_timeout if grace is None else grace
        command = self.config.stop_command(self.node) if grace is None else ""
        budget = 2 * self.timeout + stop_timeout * (2 if command else 1) + 2

        deadline = _Deadline(budget)

        def run(conn: _Connection) -> ProbeResult:
            self._settle_pending(conn, deadline)
            if command:
                # in a subshell of the script (read from stdin), so it shows on no command line there
                script = f"(\n{command}\n) </dev/null >/dev/null 2>&1\n"
                try:
                    self._exec(conn, script, deadline, budget=stop_timeout + self.timeout)
                except SSHFailure as exc:
                    if exc.kind != "timeout" or deadline.left() < self.timeout:
                        raise
                    log.warning("%s: stop command did not finish within %.1fs", self.node, stop_timeout)
                result, _table = self._look(conn, deadline)
                if result.state is SchedulerState.STOPPED:
                    return result
                log.warning("%s: scheduler still there after the stop command; killing it", self.node)
            return self._kill(conn, deadline, stop_timeout)

        try:
            return self._session(deadline, run)
        except SSHFailure as exc:
            raise NodeUnreachable(f"{self.node}: stop over SSH: {exc}") from None

    # --- start and stop helpers -------------------------------------------------------

    @contextmanager
    def _remote_lock(self, conn: _Connection, deadline: _Deadline) -> Iterator[None]:
        """Hold the node's start lock (flock, the file the node's own controller uses) meanwhile.

        The lock is held by ``flock`` on the node for as long as this channel stays open (``cat``
        waits for our end of its input), at most ``hold`` seconds should the connection hang.
        """
        hold = math.ceil(max(1.0, deadline.left())) + 5
        inner = (
            "echo @@sfc-locked@@; if command -v timeout >/dev/null 2>&1; "
            f"then exec timeout {hold} cat >/dev/null; else exec cat >/dev/null; fi"
        )
        lock_dir, lock_file = _q(self.lock_path.parent), _q(self.lock_path)
        command = f"mkdir -p {lock_dir} && exec flock -o -w {_LOCK_WAIT:g} {lock_file} /bin/sh -c {_q(inner)}"
        began = time.monotonic()
        try:
            chan = conn.transport.open_session(timeout=max(0.01, deadline.left(self.timeout)))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            if deadline.expired() or conn.timed_out or time.monotonic() - began >= self.timeout:
                raise SSHFailure("timeout", f"no SSH channel on {self.target} within {self.timeout:g}s") from None
            raise _StaleConnection(str(exc) or type(exc).__name__) from None
        try:
            chan.exec_command(f"/bin/sh -c {_q(command)}")
            seen = bytearray()
            local = _Deadline(max(0.0, deadline.left(_LOCK_WAIT + self.timeout)))
            while b"@@sfc-locked@@" not in seen:
                chan.settimeout(max(0.01, local.left()))
                try:
                    data = chan.recv(1024)
                except socket.timeout:
                    raise SSHFailure("timeout", f"no answer while taking the start lock on {self.node}") from None
                if not data:
                    chan.status_event.wait(max(0.01, local.left()))
                    status = chan.exit_status
                    err = bytearray()
                    while chan.recv_stderr_ready():
                        err += chan.recv_stderr(4096)
                    why = err.decode(errors="replace").strip()
                    if status == 1 and not why:  # flock -w timed out (it says nothing)
                        raise CommandFailed(f"{self.node}: another controller is starting the scheduler")
                    why = why or f"exit status {status}"
                    raise CommandFailed(f"{self.node}: cannot take the start lock {self.lock_path}: {why}")
                seen += data
            yield
        finally:
            with suppress(paramiko.SSHException, OSError, EOFError):
                chan.shutdown_write()
            chan.close()

    def _launch_script(self, token: str, remote_deadline: float | None = None) -> str:
        """The start script; with ``remote_deadline`` (the node's clock) it starts a leash."""
        if remote_deadline is None:
            launch = launch_command(self.config, self.node)
        else:
            spec = leash_spec(self.config, self.node, remote_deadline, token)
            launch = launch_command(self.config, self.node, [*self.remote_words, CLI_SUBCOMMAND], spec.environment())
        token_dir = self._token_dir(token)
        end = f"SFC_LAUNCH_{token}"  # here-document delimiter: a line the launch cannot contain
        if any(line == end for line in launch.splitlines()):
            raise CommandFailed(f"{self.node}: the start command contains the line {end}")
        pattern = f"{self.node}.start-*"
        return (
            f"mkdir -p {_q(self.config.state_dir)} {_q(self.lock_path.parent)} || exit 1\n"
            f"mkdir {_q(token_dir)} 2>/dev/null || {{ echo @@sfc-cancelled@@; exit 1; }}\n"
            f"find {_q(self.lock_path.parent)} -maxdepth 1 -type d -name {_q(pattern)} -mtime +7 "
            "-exec rmdir {} + 2>/dev/null\n"
            # In its own session; the launch (with the start command) is fed on stdin, so it shows
            # on no command line there (secrets; and a ps listing would take it for a scheduler).
            "if command -v setsid >/dev/null 2>&1; then detach=setsid; else detach=; fi\n"
            f"$detach /bin/sh -s >/dev/null 2>&1 <<'{end}'\n"
            # The detached shell leads the new session: record it, so that a stop can end a
            # launch still on its way (a start given up on) and a dead scheduler's leftovers.
            f'(umask 077 && echo "$$ $(date +%s)" > {_q(self.session_path)})\n'
            f"{launch}\n"
            f"{end}\n"
            "rc=$?\n"
            'echo "@@sfc-launched@@ $rc"\n'
            "exit $rc\n"
        )

    def _end_session_script(self) -> str:
        """POSIX shell: SIGKILL what is left in the session the last launch recorded, then forget it.

        Only processes of that session (``ps -o sid``) whose age is within the time since the
        launch count, so a recycled session id is never taken for ours.
        """
        path = _q(self.session_path)
        return (
            f"if [ -f {path} ]; then\n"
            f"  read sfc_sid sfc_started < {path}\n"
            "  sfc_age=$(( $(date +%s) - ${sfc_started:-0} + 1 ))\n"
            "  for sfc_pid in $(ps -A -o pid=,sid=,etimes= 2>/dev/null | "
            'awk -v s="$sfc_sid" -v a="$sfc_age" \'$2 == s && $3 <= a {print $1}\'); do\n'
            '    [ "$sfc_pid" = "$$" ] || kill -KILL "$sfc_pid" 2>/dev/null\n'
            "  done\n"
            f"  rm -f {path}\n"
            "fi\n"
        )

    def _kill(self, conn: _Connection, deadline: _Deadline, stop_timeout: float) -> ProbeResult:
        """SIGTERM every scheduler tree, SIGKILL what is left after ``stop_timeout``; a fresh probe."""
        lines = []
        if self.remote_words:
            remote = self._remote(
                "kill_local", "--timeout", f"{stop_timeout:g}", "--session-file", str(self.session_path)
            )
            lines += [
                f"if command -v {_q(self.remote_words[0])} >/dev/null 2>&1; then",
                f"  {remote}",
                '  echo "@@sfc-rc@@ $?"',
                "  exit 0",
                "fi",
                "echo @@sfc-missing@@",
            ]
        _status, out, err = self._exec(
            conn, "\n".join(lines + self._listing()) + "\n", deadline, budget=stop_timeout + self.timeout + 2
        )
        table = self._parse_listing(out)
        if table is None:
            result = self._parse_json(out)
            if result is not None:
                self.remote_project = True
                return result
            log.warning(
                "%s: `%s kill_local` gave no answer; using the shell fallback", self.node, " ".join(self.remote_words)
            )
            _status, out, err = self._exec(conn, "\n".join(self._listing()) + "\n", deadline)
            table = self._parse_listing(out)
            if table is None:
                raise SSHFailure("channel", f"unreadable process listing from {self.node}: {err.strip()}")
        roots = table_roots(table, self.match)
        targets = table_descendants(table, [r.pid for r in roots]) + roots if roots else []
        script = (
            (kill_script(targets, stop_timeout) if targets else "")
            + self._end_session_script()
            + "\n".join(self._listing())
            + "\n"
        )
        _status, out, err = self._exec(conn, script, deadline, budget=stop_timeout + self.timeout + 2)
        after = self._parse_listing(out)
        if after is None:
            raise SSHFailure("channel", f"unreadable process listing from {self.node} after the kill: {err.strip()}")
        return self._probe_listed(out, after)

    # --- test_connection --------------------------------------------------------------

    def check(self) -> SSHCheck:
        """Reachability, host key, authentication, this project and the tools on the node."""
        report = SSHCheck(self.target)
        deadline = _Deadline(self.timeout)
        try:
            conn, _fresh = self._connection(deadline)
        except SSHFailure as exc:
            report.error = str(exc)
            if exc.kind in ("resolve", "connect", "timeout", "handshake"):
                report.reachable = exc.kind == "handshake"
                return report
            report.reachable = True
            if exc.kind == "host-key-unknown":
                report.host_key = f"unknown: {exc}"
            elif exc.kind == "host-key-mismatch":
                report.host_key = f"MISMATCH: {exc}"
            else:
                report.host_key, report.host_key_ok = "known", True
                report.auth = f"FAILED: {exc}"
            return report
        report.reachable = True
        report.host_key = f"{conn.host_key} ({conn.fingerprint})"
        report.host_key_ok = True
        report.auth, report.auth_ok = "ok", True
        script = 'for t in ps flock; do command -v "$t" >/dev/null 2>&1 || echo "@@sfc-lacks@@ $t"; done\n'
        if self.remote_words:
            first = _q(self.remote_words[0])
            ask = " ".join(_q(w) for w in [*self.remote_words, "version"])
            script += (
                f'if command -v {first} >/dev/null 2>&1; then\n  echo "@@sfc-version@@ $({ask} </dev/null 2>&1)"\nfi\n'
            )
        try:
            _status, out, _err = self._session(deadline, lambda c: self._exec(c, script, deadline))
        except SSHFailure as exc:
            report.error = str(exc)
            return report
        version = [line.split(" ", 1)[-1] for line in out.splitlines() if line.startswith("@@sfc-version@@")]
        if version:
            report.project = f"installed ({self.config.ssh_remote_command} version {version[0].strip()})"
        elif self.remote_words:
            report.project = f"not installed ({self.remote_words[0]} not found): probing with ps"
        else:
            report.project = "not used (ssh_remote_command is empty): probing with ps"
        report.tools_missing = tuple(
            line.split(" ", 1)[-1].strip() for line in out.splitlines() if line.startswith("@@sfc-lacks@@")
        )
        report.probe = self.probe()
        return report


class _LeashNotReady(Exception):
    """The node's ``leash --serve`` is still starting (a busy node): its channel is kept for later."""


class _StaleConnection(Exception):
    """A cached connection failed before the command was sent: safe to retry on a new one."""


class _Policy(paramiko.MissingHostKeyPolicy):
    """ssh_host_key_policy for a host key that known_hosts does not list (a changed key is always refused)."""

    def __init__(self, runner: SSHNodeRunner, key_name: str) -> None:
        self.runner = runner
        self.key_name = key_name
        self.status = ""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        mode = self.runner.config.ssh_host_key_policy
        print_ = fingerprint(key)
        files = ", ".join(str(p) for p in self.runner._known_hosts_files())
        if mode == "reject":
            raise _HostKeyRejected(
                f"host key of {hostname} ({print_}) is not in known_hosts ({files}); ssh_host_key_policy = reject. "
                f"Check it and add it, e.g. ssh-keyscan -p {self.runner.port} {self.runner.node} >> known_hosts"
            )
        self.runner._accepted[hostname] = key
        if mode == "auto_add":
            saved = _append_known_host(self.runner._known_hosts_files()[0], hostname, key)
            self.status = f"unknown, accepted and {'saved' if saved else 'NOT saved'} (ssh_host_key_policy = auto_add)"
            log.warning("%s: unknown host key %s accepted and added to known_hosts (auto_add)", hostname, print_)
        else:
            self.status = "unknown, accepted (ssh_host_key_policy = warn)"
            log.warning("%s: unknown host key %s accepted (ssh_host_key_policy = warn)", hostname, print_)


def _append_known_host(path: Path, hostname: str, key: paramiko.PKey) -> bool:
    """Append one known_hosts line (never rewrite the file: paramiko would drop what it cannot parse)."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="ascii") as handle:
            handle.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        return True
    except OSError as exc:
        log.warning("could not add the host key of %s to %s: %s", hostname, path, exc)
        return False


def kill_script(targets: list[ProcessEntry], timeout: float) -> str:
    """The shell fallback of a stop: SIGTERM (and SIGCONT) each target, SIGKILL what is left after
    ``timeout`` seconds. A pid is signalled only while ``ps`` still shows it with the arguments it
    was listed with (a recycled pid is left alone); zombies count as gone.
    """
    steps = max(1, math.ceil(timeout / 0.1))
    lines = [
        'same() { [ "$(ps -ww -o args= -p "$1" 2>/dev/null)" = "$2" ]; }',
        'alive() { s=$(ps -o stat= -p "$1" 2>/dev/null) || return 1; case "$s" in ""|Z*|X*) return 1;; esac; }',
        "pids=",
    ]
    for entry in targets:
        pid, args = entry.pid, _q(entry.args)
        lines += [
            f"if same {pid} {args}; then",
            f'  kill -TERM {pid} 2>/dev/null; kill -CONT {pid} 2>/dev/null; pids="$pids {pid}"',
            "fi",
        ]
    wait = [
        "i=0",
        'while [ -n "$pids" ] && [ "$i" -lt {steps} ]; do',
        '  left=; for p in $pids; do alive "$p" && left="$left $p"; done; pids=$left',
        '  [ -n "$pids" ] || break',
        "  if sleep 0.1 2>/dev/null; then i=$((i+1)); else sleep 1; i=$((i+10)); fi",
        "done",
    ]
    lines += [line.replace("{steps}", str(steps)) for line in wait]
    for entry in targets:
        pid, args = entry.pid, _q(entry.args)
        lines.append(f'case " $pids " in *" {pid} "*) same {pid} {args} && kill -KILL {pid} 2>/dev/null;; esac')
    lines += [line.replace("{steps}", "10") for line in wait]
    return "\n".join(lines) + "\n"
