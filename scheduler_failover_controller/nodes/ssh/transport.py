"""SSH connections to one node: connect, host keys, deadlines, channels.

One connection per node, opened on first use, kept alive (SSH and TCP keepalive) and reused across calls;
one that breaks or times out is dropped and re-opened by the next call. Each step (resolving the name,
TCP connect, banner and key exchange, authentication, opening a channel, a command) gives up after
``ssh_timeout``. A watchdog closes the connection when a call's deadline passes, so nothing blocks
longer whatever the node does. Host keys are checked against known_hosts; a changed key is always
refused, an unknown one as ``ssh_host_key_policy`` says (``reject`` by default).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import paramiko

from ...trust import UntrustedFile
from .known_hosts import append_known_host, check_key_file, fingerprint, load_known_hosts

#: One logger for the whole package (the name its lines had when it was one module).
LOG_NAME = __name__.rpartition(".")[0]
log = logging.getLogger(LOG_NAME)
#: paramiko's own transport log goes here, shown only when this package logs at DEBUG: it would
#: print a traceback for every failed handshake, every cycle, while a node hangs.
PARAMIKO_LOG = LOG_NAME + ".paramiko"

#: The most a command may print before it is taken for a misbehaving node.
MAX_OUTPUT = 16 * 1024 * 1024

T = TypeVar("T")


class _OnlyWhenDebugging(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return log.isEnabledFor(logging.DEBUG)


def quiet_paramiko() -> None:
    """Hide paramiko's transport log unless this package logs at DEBUG (installed once)."""
    chatter = logging.getLogger(PARAMIKO_LOG)
    if not any(isinstance(f, _OnlyWhenDebugging) for f in chatter.filters):
        chatter.addFilter(_OnlyWhenDebugging())


class SSHFailure(Exception):
    """Why a node could not be reached or commanded; ``kind`` says at which step."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # resolve, connect, handshake, host-key-unknown, host-key-mismatch, auth, timeout, channel


class StaleConnection(Exception):
    """A cached connection failed before the command was sent: safe to retry on a new one."""


class _HostKeyRejected(paramiko.SSHException):
    pass


@dataclass
class Deadline:
    """A point on the monotonic clock ``seconds`` from its creation."""

    seconds: float
    at: float = field(init=False)

    def __post_init__(self) -> None:
        self.at = time.monotonic() + self.seconds

    def left(self, cap: float | None = None) -> float:
        remaining = self.at - time.monotonic()
        return remaining if cap is None else min(cap, remaining)

    def expired(self) -> bool:
        return self.left() <= 0

    def within(self, cap: float) -> Deadline:
        """A deadline no later than this one, at most ``cap`` seconds away."""
        return Deadline(max(0.0, self.left(cap)))


@dataclass(frozen=True)
class Endpoint:
    """Where and how to reach one node (from the configuration)."""

    node: str
    port: int
    user: str
    timeout: float
    key_file: str = ""
    known_hosts_file: str = ""
    host_key_policy: str = "reject"

    @property
    def target(self) -> str:
        return f"{self.user}@{self.node}:{self.port}"

    def known_hosts_files(self) -> list[Path]:
        if self.known_hosts_file:
            return [Path(self.known_hosts_file).expanduser()]
        return [Path("~/.ssh/known_hosts").expanduser(), Path("/etc/ssh/ssh_known_hosts")]


@dataclass
class Connection:
    """One open SSH connection to a node."""

    client: paramiko.SSHClient
    transport: paramiko.Transport
    target: str  # user@node:port, for messages
    timeout: float  # ssh_timeout: the most any step on it may take
    host_key: str  # "known", or "unknown (accepted: ...)"
    fingerprint: str
    opened_at: float
    timed_out: bool = False  # its watchdog closed it


class _Policy(paramiko.MissingHostKeyPolicy):
    """ssh_host_key_policy for a host key that known_hosts does not list (a changed key is always refused)."""

    def __init__(self, endpoint: Endpoint, accepted: dict[str, paramiko.PKey]) -> None:
        self.endpoint = endpoint
        self.accepted = accepted
        self.status = ""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        mode = self.endpoint.host_key_policy
        print_ = fingerprint(key)
        files = self.endpoint.known_hosts_files()
        if mode == "reject":
            raise _HostKeyRejected(
                f"host key of {hostname} ({print_}) is not in known_hosts ({', '.join(map(str, files))}); "
                f"ssh_host_key_policy = reject. Check it and add it, e.g. "
                f"ssh-keyscan -p {self.endpoint.port} {self.endpoint.node} >> known_hosts"
            )
        self.accepted[hostname] = key
        if mode == "auto_add":
            saved = append_known_host(files[0], hostname, key)
            self.status = f"unknown, accepted and {'saved' if saved else 'NOT saved'} (ssh_host_key_policy = auto_add)"
            log.warning("%s: unknown host key %s accepted and added to known_hosts (auto_add)", hostname, print_)
        else:
            self.status = "unknown, accepted (ssh_host_key_policy = warn)"
            log.warning("%s: unknown host key %s accepted (ssh_host_key_policy = warn)", hostname, print_)


Address = tuple[int, int, int, tuple[object, ...]]


class Connector:
    """The cached connection to one node, and calls on it under a deadline."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.connections_opened = 0  # for tests and metrics
        self._conn: Connection | None = None
        self._lock = threading.Lock()
        self._accepted: dict[str, paramiko.PKey] = {}  # host keys accepted by warn/auto_add
        quiet_paramiko()

    # --- opening ------------------------------------------------------------------------

    def _resolve(self, deadline: Deadline) -> list[Address]:
        """getaddrinfo bounded by the deadline (a slow resolver must not block the caller)."""
        node, port = self.endpoint.node, self.endpoint.port
        try:
            ipaddress.ip_address(node)
            numeric = True
        except ValueError:
            numeric = False
        result: list[list[Address]] = []
        error: list[BaseException] = []

        def resolve() -> None:
            try:
                infos = socket.getaddrinfo(node, port, type=socket.SOCK_STREAM)
                result.append([(fam, kind, proto, tuple(addr)) for fam, kind, proto, _name, addr in infos])
            except (OSError, UnicodeError) as exc:
                error.append(exc)

        if numeric:
            resolve()
        else:
            thread = threading.Thread(target=resolve, name=f"resolve-{node}", daemon=True)
            thread.start()
            thread.join(max(0.0, deadline.left()))
        if result:
            return result[0]
        if error:
            raise SSHFailure("resolve", f"cannot resolve {node}: {error[0]}")
        raise SSHFailure("timeout", f"cannot resolve {node} within {self.endpoint.timeout:g}s")

    def _open_socket(self, deadline: Deadline) -> socket.socket:
        node, port, timeout = self.endpoint.node, self.endpoint.port, self.endpoint.timeout
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
                ("TCP_KEEPIDLE", max(1, int(timeout))),
                ("TCP_KEEPINTVL", max(1, int(timeout / 3))),
                ("TCP_KEEPCNT", 3),
            ):
                if hasattr(socket, name):
                    sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
            return sock
        if deadline.expired() and not errors:
            raise SSHFailure("timeout", f"no TCP connection to {node}:{port} within {timeout:g}s")
        raise SSHFailure("connect", f"cannot connect to {node}:{port}: {'; '.join(errors) or 'timed out'}")

    def _client(self, key_name: str) -> tuple[paramiko.SSHClient, _Policy]:
        """A client that knows the known_hosts keys (and those accepted before) and our policy."""
        client = paramiko.SSHClient()
        client.set_log_channel(PARAMIKO_LOG)
        for path in self.endpoint.known_hosts_files():
            try:
                load_known_hosts(client.get_host_keys(), path)
            except UntrustedFile as exc:
                raise SSHFailure("host-key-unknown", f"refused: {exc}") from None
            except OSError as exc:
                raise SSHFailure("host-key-unknown", f"cannot read known_hosts file {path}: {exc}") from None
        if key_name in self._accepted:
            accepted = self._accepted[key_name]
            client.get_host_keys().add(key_name, accepted.get_name(), accepted)
        policy = _Policy(self.endpoint, self._accepted)
        client.set_missing_host_key_policy(policy)
        return client, policy

    def connect(self, deadline: Deadline) -> Connection:
        """A new connection: TCP, handshake, host key check, authentication; SSHFailure says why not."""
        ep = self.endpoint
        sock = self._open_socket(deadline)
        key_name = ep.node if ep.port == 22 else f"[{ep.node}]:{ep.port}"
        try:
            client, policy = self._client(key_name)
            self._check_key_file()
        except SSHFailure:
            sock.close()
            raise
        key_file = ep.key_file
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
                ep.node,
                port=ep.port,
                username=ep.user,
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
        except (paramiko.SSHException, OSError, EOFError) as exc:  # host key and auth failures too
            client.close()
            sock.close()
            raise self._failure(exc, key_name, deadline) from None
        finally:
            done.set()
            watchdog.cancel()
        transport = client.get_transport()
        if transport is None or not transport.is_active():
            client.close()
            raise SSHFailure("handshake", f"SSH connection to {ep.target} closed during the handshake")
        transport.set_keepalive(max(1, int(ep.timeout)))
        remote_key = transport.get_remote_server_key()
        self.connections_opened += 1
        host_key = policy.status or "known"
        log.info("%s: SSH connection to %s opened (host key %s)", ep.node, ep.target, host_key)
        return Connection(client, transport, ep.target, ep.timeout, host_key, fingerprint(remote_key), time.monotonic())

    def _check_key_file(self) -> None:
        """Refuse an ssh_key_file another user could have written or that cannot be read."""
        key_file = self.endpoint.key_file
        try:
            if key_file:
                check_key_file(Path(key_file).expanduser())
        except (UntrustedFile, OSError) as exc:
            why = f"refused: {exc}" if isinstance(exc, UntrustedFile) else f"cannot read ssh_key_file {key_file}"
            raise SSHFailure("auth", why) from None

    def _failure(self, exc: Exception, key_name: str, deadline: Deadline) -> SSHFailure:
        """The SSHFailure for what ``client.connect`` raised."""
        ep = self.endpoint
        if isinstance(exc, _HostKeyRejected):
            return SSHFailure("host-key-unknown", str(exc))
        if isinstance(exc, paramiko.BadHostKeyException):
            offered, known = fingerprint(exc.key), fingerprint(exc.expected_key)
            log.error(
                "%s: HOST KEY MISMATCH: the node offered %s, known_hosts has %s; refusing to connect",
                ep.node,
                offered,
                known,
            )
            return SSHFailure(
                "host-key-mismatch",
                f"host key mismatch for {key_name}: offered {offered}, known_hosts has "
                f"{known} (a re-installed node, or someone in between); refused",
            )
        if isinstance(exc, paramiko.AuthenticationException):
            how = f"key {ep.key_file}" if ep.key_file else "the SSH agent and the default keys"
            return SSHFailure("auth", f"authentication as {ep.user} with {how} failed: {exc}")
        if deadline.expired():
            return SSHFailure("handshake", f"no SSH handshake with {ep.target} within {ep.timeout:g}s")
        why = str(exc) or type(exc).__name__
        return SSHFailure("handshake", f"SSH handshake with {ep.target} failed: {why}")

    # --- the cached connection --------------------------------------------------------------

    def connection(self, deadline: Deadline) -> tuple[Connection, bool]:
        """The cached connection if it is alive, else a new one; and whether it is new."""
        if not self._lock.acquire(timeout=max(0.0, deadline.left())):
            raise SSHFailure("timeout", f"still connecting to {self.endpoint.target} (another call)")
        try:
            conn = self._conn
            if conn is not None and conn.transport.is_active() and not conn.timed_out:
                return conn, False
            if conn is not None:
                self._conn = None
                conn.client.close()
            self._conn = self.connect(deadline.within(self.endpoint.timeout))
            return self._conn, True
        finally:
            self._lock.release()

    def drop(self, conn: Connection) -> None:
        """Close ``conn`` and forget it if it is the cached one."""
        with self._lock:
            if self._conn is conn:
                self._conn = None
        conn.client.close()

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.client.close()

    def session(self, deadline: Deadline, action: Callable[[Connection], T]) -> T:
        """Run ``action`` on a connection under the deadline; retry once on a stale connection.

        A connection that times out or breaks is dropped; SSHFailure says why.
        """
        target = self.endpoint.target
        for attempt in (1, 2):
            conn, fresh = self.connection(deadline)
            try:
                with _watchdog(conn, deadline):
                    return action(conn)
            except StaleConnection as exc:
                self.drop(conn)
                if fresh or attempt == 2 or deadline.expired():
                    raise SSHFailure("channel", f"SSH connection to {target} failed: {exc}") from None
                log.info("%s: SSH connection broken (%s); reconnecting", self.endpoint.node, exc)
            except SSHFailure:
                self.drop(conn)
                raise
            except (paramiko.SSHException, OSError, EOFError) as exc:
                self.drop(conn)
                if conn.timed_out or deadline.expired():
                    raise SSHFailure("timeout", f"no answer from {target} within the deadline") from None
                raise SSHFailure("channel", f"SSH connection to {target} failed: {exc}") from None
            except Exception:
                if not conn.timed_out:
                    raise
                # whatever paramiko raised once the watchdog had closed the connection under it
                self.drop(conn)
                raise SSHFailure("timeout", f"no answer from {target} within the deadline") from None
        raise AssertionError("unreachable")  # pragma: no cover


@contextmanager
def _watchdog(conn: Connection, deadline: Deadline) -> Iterator[None]:
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


# --- channels -------------------------------------------------------------------------------


def open_channel(conn: Connection, deadline: Deadline) -> paramiko.Channel:
    """A new session channel on ``conn``, within the deadline and ``ssh_timeout``.

    SSHFailure("timeout") when none came in time; StaleConnection when the connection failed
    at once (the caller's session retries on a new one).
    """
    step = deadline.within(conn.timeout)
    try:
        return conn.transport.open_session(timeout=max(0.01, step.left()))
    except (paramiko.SSHException, OSError, EOFError) as exc:
        if step.expired() or conn.timed_out:
            raise SSHFailure("timeout", f"no SSH channel on {conn.target} within {conn.timeout:g}s") from None
        raise StaleConnection(str(exc) or type(exc).__name__) from None


def run_script(conn: Connection, script: str, deadline: Deadline, budget: float | None = None) -> tuple[int, str, str]:
    """Run ``script`` with ``/bin/sh -s`` on the node; (exit status, stdout, stderr).

    The script goes to the shell's standard input, so nothing of it shows on a command line
    there. ``budget``: the most it may take (default ``ssh_timeout``).
    """
    cap = budget if budget is not None else conn.timeout
    local = deadline.within(cap)
    chan = open_channel(conn, local)
    try:
        chan.settimeout(max(0.01, local.left()))
        chan.exec_command("/bin/sh -s")
        chan.sendall(script.encode())
        chan.shutdown_write()
        return _collect(conn, chan, local)
    except socket.timeout:
        raise SSHFailure("timeout", f"command on {conn.target} did not finish within {cap:g}s") from None
    finally:
        chan.close()


def _collect(conn: Connection, chan: paramiko.Channel, local: Deadline) -> tuple[int, str, str]:
    out = bytearray()
    while True:
        chan.settimeout(max(0.01, local.left()))
        data = chan.recv(65536)
        if not data:
            break
        out += data
        if len(out) > MAX_OUTPUT:
            raise SSHFailure("channel", f"too much output from {conn.target}")
    if not chan.status_event.wait(max(0.01, local.left())):
        raise socket.timeout()
    if chan.exit_status < 0:
        # The channel closed with no exit status: the connection was closed under it (another
        # call's deadline), or the shell was killed by a signal. What the script did is unknown:
        # a launch in it may still happen. Never a status its callers could take for an answer.
        kind = "timeout" if conn.timed_out else "channel"
        raise SSHFailure(kind, f"the command on {conn.target} ended without an exit status")
    err = bytearray()
    while chan.recv_stderr_ready() and len(err) < 65536:
        err += chan.recv_stderr(65536)
    return chan.exit_status, out.decode(errors="replace"), err.decode(errors="replace")


def read_line(conn: Connection, chan: paramiko.Channel, buffer: bytearray, local: Deadline) -> bytes:
    """One line from ``chan`` (b"" at end of output), kept apart from the rest in ``buffer``;
    SSHFailure at the deadline."""
    while b"\n" not in buffer:
        chan.settimeout(max(0.01, local.left()))
        try:
            data = chan.recv(65536)
        except socket.timeout:
            raise SSHFailure("timeout", f"no probe answer from {conn.target} within {conn.timeout:g}s") from None
        if not data:
            return b""
        buffer += data
        if len(buffer) > MAX_OUTPUT:
            raise SSHFailure("channel", f"too much output from {conn.target}")
    line, _nl, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return line + b"\n"
