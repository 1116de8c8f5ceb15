"""A ZooKeeper session through kazoo, every request held to the call's deadline.

kazoo keeps (re)connecting in its own thread, never on a caller's time: every public call,
connect and setup included, waits at most ``metastore_timeout`` in all (one :mod:`.deadline` per
call, each request waited for with what is left of it). While the connection is SUSPENDED or the
session LOST nothing may act (:meth:`ZooKeeperSession.usable` is False and every call fails).
The session timeout the servers grant is watched, because the leadership lease is that session.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import AuthFailedError, KazooException, NoAuthError
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.retry import KazooRetry
from kazoo.security import ACL, Permissions, make_digest_acl

from ..exceptions import MetastoreError
from . import deadline as dl

log = logging.getLogger(__name__)


class _QuietReconnects(logging.Filter):
    """kazoo's warning about each reconnect attempt, turned into DEBUG.

    Through an outage kazoo warns every second or so ("Connection time-out: ...", "Connection
    dropped: ..."), beside the caller's own line per failed call. This store already says once
    that the connection is suspended or the session lost (see ``_on_state``); anything else kazoo
    warns about (auth failures, hosts that do not resolve) and every error stay as they are.
    """

    NOISE = ("Connection dropped", "Connection time-out", "Transition to CONNECTING", "Session has expired")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING and str(record.msg).startswith(self.NOISE):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return kazoo_log.isEnabledFor(logging.DEBUG)
        return True


# Our clients' own kazoo logger (under kazoo.client, so kazoo's logging settings still apply to it).
kazoo_log = logging.getLogger("kazoo.client.sfc")
kazoo_log.addFilter(_QuietReconnects())

#: What no other client may be granted on our znodes: writing one, or deleting and recreating it.
FOREIGN = Permissions.WRITE | Permissions.ADMIN | Permissions.CREATE | Permissions.DELETE


class ZooKeeperSession:
    """A kazoo client under ``root``: its connection, its session, and requests within a deadline."""

    def __init__(
        self,
        hosts: str,
        root: str,
        lease_ttl: float,
        timeout: float,
        auth: str = "",
        use_ssl: bool = False,
        ca: str = "",
        certfile: str = "",
        keyfile: str = "",
        verify_certs: bool = True,
    ) -> None:
        self.hosts = hosts
        self.root = root.rstrip("/") or ""
        self.lease_ttl = lease_ttl
        self.timeout = timeout
        self.acl = None  # the digest user's ACL on every znode we create, when auth is set
        auth_data = None
        if auth:
            user, _, password = auth.partition(":")
            auth_data = [("digest", auth)]
            self.acl = [make_digest_acl(user, password, all=True)]
        ssl: dict[str, Any] = {}
        if use_ssl:
            ssl = {"use_ssl": True, "verify_certs": verify_certs}
            ssl.update({k: v for k, v in (("ca", ca), ("certfile", certfile), ("keyfile", keyfile)) if v})
        self.client = KazooClient(
            hosts=hosts,
            timeout=lease_ttl,
            auth_data=auth_data,
            default_acl=self.acl,
            # Keep reconnecting in the background; each call itself fails fast (see _call).
            connection_retry=KazooRetry(max_tries=-1, delay=0.1, max_delay=1.0),
            command_retry=None,
            logger=kazoo_log,
            **ssl,
        )
        self._state_lock = threading.Lock()
        self._warned_open = False
        self._negotiated: float | None = None
        self._watch_negotiation()
        self._suspended = True  # until kazoo reports CONNECTED
        self._connected = threading.Event()
        self._start_lock = threading.Lock()
        self._started = False
        self._closing = False  # set while we end the session ourselves: its LOST is no loss
        self.client.add_listener(self._on_state)

    # --- connection ---------------------------------------------------------------------

    def _watch_negotiation(self) -> None:
        """Record the session timeout the server grants on every (re)connect.

        kazoo does not keep it, and the lease is only as long as what the server granted.
        """
        from kazoo.protocol.serialization import Connect

        connection = getattr(self.client, "_connection", None)
        original = getattr(connection, "_invoke", None)
        if original is None:
            log.warning("cannot observe the negotiated ZooKeeper session timeout; assuming lease_ttl")
            return

        def invoke(timeout: float, request: Any, xid: int | None = None) -> Any:
            result = original(timeout, request, xid)
            if isinstance(request, Connect) and isinstance(result, tuple) and result:
                granted = getattr(result[0], "time_out", 0)
                if granted > 0:
                    self._negotiated = granted / 1000.0
            return result

        connection._invoke = invoke  # type: ignore[union-attr]

    def _on_state(self, state: str) -> None:
        with self._state_lock:
            self._suspended = state != KazooState.CONNECTED
            if state == KazooState.CONNECTED:
                self._connected.set()
            else:
                self._connected.clear()
        if state == KazooState.SUSPENDED:
            log.warning("zookeeper connection suspended: not acting until it is confirmed")
        elif state == KazooState.LOST and self._closing:
            log.debug("zookeeper session closed")  # we ended it: nothing was lost
        elif state == KazooState.LOST:
            log.warning("zookeeper session lost: any leadership it held is gone")

    def usable(self) -> bool:
        """False while the connection is SUSPENDED or LOST: nobody may act on this session."""
        with self._state_lock:
            return self._started and not self._suspended

    def _connect(self, d: dl.Deadline) -> None:
        """Wait (at most what is left of the call) for kazoo's connection, starting it the first time.

        Not ``KazooClient.start(timeout)``: when that times out it stops the client, which waits
        for the connection thread (up to 10 s and more on a frozen server). Started once, kazoo
        keeps connecting in the background and a later call finds it connected.
        """
        with self._start_lock:  # a second start_async would wait for the first one's connection thread
            if not self._started:
                try:
                    self._closing = False
                    self.client.start_async()
                except (KazooException, OSError) as exc:
                    raise MetastoreError(f"cannot connect: {exc or type(exc).__name__}") from None
                self._started = True
        if not self._connected.wait(d.remaining()):
            raise dl.MetastoreTimeout(f"cannot connect: no ZooKeeper server answered within {d.seconds:g}s")
        granted = self._negotiated
        if granted is not None and abs(granted - self.lease_ttl) > max(0.05, 0.01 * self.lease_ttl):
            self._stop_client()
            raise MetastoreError(
                f"zookeeper granted a session timeout of {granted:g}s but lease_ttl is {self.lease_ttl:g}s; "
                "set the servers' minSessionTimeout/maxSessionTimeout so they allow lease_ttl"
            )

    @property
    def session_timeout(self) -> float:
        """The session timeout the server granted (the lease), never more than lease_ttl."""
        return min(self._negotiated or self.lease_ttl, self.lease_ttl)

    def _stop_client(self) -> None:
        """Stop and close kazoo, waiting at most the timeout.

        ``stop()`` sends the session's close and waits for kazoo's connection thread, which on a
        frozen or cut-off server takes until its ping or connect times out. Past our timeout that
        wait goes on in a thread of its own: all it can still do is end this store's own session,
        which is what closing it asked for.
        """
        with self._start_lock:
            self._started = False
            self._closing = True
        self._connected.clear()
        with self._state_lock:
            self._suspended = True
        client = self.client

        def stop() -> None:
            with contextlib.suppress(Exception):  # kazoo raises what it likes while tearing down
                client.stop()
                client.close()

        closer = threading.Thread(target=stop, name="sfc-zookeeper-close", daemon=True)
        closer.start()
        closer.join(self.timeout)

    @contextlib.contextmanager
    def _failures(self, d: dl.Deadline) -> Iterator[None]:
        """Any ZooKeeper failure in a call as MetastoreError (MetastoreTimeout when a wait ran out)."""
        try:
            yield
        except KazooTimeoutError:
            raise d.timeout() from None
        except (KazooException, OSError) as exc:
            raise MetastoreError(self._error(exc)) from None

    def _error(self, exc: BaseException, during: str = "") -> str:
        """One line for a failed ZooKeeper request; an ACL refusal says what to check."""
        if isinstance(exc, NoAuthError):
            who = "the digest user in metadata_service_zookeeper_auth" if self.acl else "no digest user"
            return (
                f"zookeeper refused access{during} (NoAuthError): the znodes under {self.root} have an ACL that "
                f"{who} does not pass; check metadata_service_zookeeper_auth (user and password) against "
                "the other controllers'"
            )
        if isinstance(exc, AuthFailedError):
            return f"zookeeper rejected the login{during} (AuthFailedError): check metadata_service_zookeeper_auth"
        return f"zookeeper error{during}: {type(exc).__name__}: {exc}"[:300]

    def _p(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def _wait(self, pending: Any) -> Any:
        """The result of a kazoo async request, waiting at most what is left of the call."""
        d = dl.current()
        return pending.get(timeout=d.remaining() if d is not None else self.timeout)

    def _get(self, path: str) -> tuple[bytes, Any]:
        return self._wait(self.client.get_async(path))  # type: ignore[no-any-return]

    def _get_synced(self, path: str) -> tuple[bytes, Any]:
        """``_get`` after a ``sync``: the server this session talks to has caught up with the
        leader, so a value another session wrote before this call is seen (a follower may lag)."""
        self._wait(self.client.sync_async(path))
        return self._get(path)

    def _set(self, path: str, data: bytes, version: int = -1) -> Any:
        return self._wait(self.client.set_async(path, data, version))

    def _children(self, path: str) -> list[str]:
        return list(self._wait(self.client.get_children_async(path)))

    def _server_now(self) -> float:
        """The ZooKeeper leader's clock: the mtime of a write we just made."""
        stat = self._set(self._p("clock"), b"")
        return float(stat.mtime) / 1000.0

    def describe(self) -> str:
        return f"zookeeper {self.hosts}{self.root}"

    def exposure(self) -> str | None:
        """Without a digest user every znode is open: anyone who can reach the ensemble may rewrite it."""
        if self.acl:
            return None
        return (
            f"metadata_service_zookeeper_auth is empty: the znodes under {self.root or '/'} are open, and anyone "
            "who can reach the ensemble can rewrite the placement and the lease; set a digest user"
        )

    def _check_acls(self, paths: list[str]) -> None:
        """Refuse a znode that grants another client more than reading (one created first by someone
        else is adopted as it is); without a digest user, warn once that everything is open."""
        if not self.acl:
            if not self._warned_open:
                self._warned_open = True
                log.warning("%s", self.exposure())
            return
        mine = self.acl[0].id
        pending = [(path, self.client.get_acls_async(path)) for path in paths]
        for path, answer in pending:
            acls: list[ACL] = self._wait(answer)[0]
            for acl in acls:
                if acl.perms & FOREIGN and acl.id != mine:
                    raise MetastoreError(
                        f"znode {path} lets {acl.id.scheme}:{acl.id.id} write it (ACL perms {acl.perms}), not only "
                        "the digest user of metadata_service_zookeeper_auth; delete it or set its ACL to that user"
                    )

    def close(self) -> None:
        """End the session (waiting at most the timeout: see _stop_client)."""
        if self._started:
            self._stop_client()
