"""The drivers under SQLAlchemy, each held to a call's hard deadline (see :mod:`.sql_engine`).

SQLite's guard and WAL switch, TCP tuning, psycopg2's wait callback, psycopg 3's watched connection.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import selectors
import socket
import sqlite3
import struct
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

from . import deadline as dl

log = logging.getLogger(__name__)


def read_only(url: URL) -> URL:
    """A SQLite URL as a read-only ``file:`` URI: the file is never created nor written."""
    database = url.database or ""
    if not database.startswith("file:"):
        database = "file:" + quote(str(Path(database).expanduser()))
    return url.set(database=database, query={**url.query, "mode": "ro", "uri": "true"})


def use_wal(cur: sqlite3.Cursor, timeout: float) -> None:
    """Switch the file to WAL, trying again while another connection holds it.

    Leaving a rollback journal needs the file to itself, and SQLite answers "database is locked"
    at once there, without its busy handler: two controllers opening the same file at one moment
    (seen with a file made by the first release) would fail setup. Bounded by what is left of
    the call, or ``timeout`` outside one.
    """
    d = dl.current()
    give_up = time.monotonic() + (timeout if d is None else d.remaining())
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= give_up:
                raise
        time.sleep(0.01)


def sqlite_guard(conn: sqlite3.Connection, timeout: float) -> None:
    """SQLite waits for a lock at most what is left of the call, and is interrupted at its deadline.

    Outside a call (a test's own use of the engine) it waits ``timeout``.
    """
    d = dl.current()
    left = timeout if d is None else d.remaining()
    conn.execute(f"PRAGMA busy_timeout={max(1, int(left * 1000))}")
    if d is not None:
        d.guard(("sqlite", id(conn)), conn.interrupt)


def tune_tcp(sock: socket.socket, timeout: float) -> None:
    """What libpq gets from its keepalive and tcp_user_timeout parameters, for a socket of ours."""
    seconds = max(1, math.ceil(timeout))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (
        ("TCP_KEEPIDLE", seconds),
        ("TCP_KEEPINTVL", seconds),
        ("TCP_KEEPCNT", 3),
        ("TCP_USER_TIMEOUT", max(1000, int(timeout * 1000))),
    ):
        option = getattr(socket, name, None)
        if option is not None:  # Linux has them all
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


def socket_fd(dbapi_conn: Any) -> int:
    """The file descriptor of a live DBAPI connection's socket, or -1."""
    sock = getattr(dbapi_conn, "_sock", None)  # pymysql (None once it closed it)
    try:
        if sock is not None:
            return int(sock.fileno())
        if hasattr(dbapi_conn, "fileno") and not getattr(dbapi_conn, "closed", False):
            return int(dbapi_conn.fileno())  # psycopg2, psycopg
    except Exception:  # noqa: BLE001 - a closed connection: nothing to guard, its ping fails
        return -1
    return -1


def _psycopg2_wait(conn: Any) -> None:
    """psycopg2's wait callback: libpq non-blocking, waiting at most until the call's deadline.

    Without a metastore deadline (any other use of psycopg2 in the process) it waits as long as
    psycopg2 itself would. At the deadline the socket gets SO_LINGER 0 and the wait fails: psycopg2
    then closes the connection (a RST; nothing unsent goes out later).
    """
    import psycopg2
    import psycopg2.extensions as ext

    d = dl.current()
    while True:
        state = conn.poll()
        if state == ext.POLL_OK:
            return
        if state == ext.POLL_READ:
            events = selectors.EVENT_READ
        elif state == ext.POLL_WRITE:
            events = selectors.EVENT_WRITE
        else:
            raise psycopg2.OperationalError(f"bad state from poll: {state}")
        with selectors.DefaultSelector() as selector:
            selector.register(conn.fileno(), events)
            if d is None:
                selector.select()
                continue
            timeout = d.remaining()
            if timeout > 0 and selector.select(timeout):
                continue
        with contextlib.suppress(OSError):
            dup = socket.socket(fileno=os.dup(conn.fileno()))
            with dup:
                dup.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raise psycopg2.OperationalError(f"metastore deadline of {d.seconds:g}s passed")


def install_psycopg2_wait_callback() -> None:
    import psycopg2.extensions as ext

    current = ext.get_wait_callback()
    if current is None:
        ext.set_wait_callback(_psycopg2_wait)
    elif current is not _psycopg2_wait:
        log.warning("another psycopg2 wait callback is installed: PostgreSQL connects may outlast metastore_timeout")


_PSYCOPG_CONNECTION: Any = None


def psycopg_connection_class() -> Any:
    """A psycopg 3 Connection whose connect keeps to the call's deadline (made once, on first use).

    psycopg drives libpq's non-blocking connect from a generator, waking it at least every 0.1 s;
    this one checks the deadline at every wake-up and guards each socket the attempt uses.
    """
    global _PSYCOPG_CONNECTION
    if _PSYCOPG_CONNECTION is not None:
        return _PSYCOPG_CONNECTION
    import psycopg

    class DeadlineConnection(psycopg.Connection[Any]):
        @classmethod
        def _connect_gen(cls, *args: Any, **kwargs: Any) -> Any:
            return _within_deadline(super()._connect_gen(*args, **kwargs))

    def _within_deadline(gen: Generator[Any, Any, Any]) -> Generator[Any, Any, Any]:
        d = dl.current()
        if d is None:
            return (yield from gen)
        try:
            waiting = next(gen)
            while True:
                fd = waiting[0]
                if not d.guarded(("psycopg-connect", fd)):
                    dl.cut_socket(d, fd, key=("psycopg-connect", fd))
                if d.passed:
                    gen.close()
                    raise psycopg.errors.ConnectionTimeout(f"metastore deadline of {d.seconds:g}s passed")
                waiting = gen.send((yield waiting))
        except StopIteration as done:
            return done.value

    _PSYCOPG_CONNECTION = DeadlineConnection
    return DeadlineConnection


def describe_db_error(exc: SQLAlchemyError) -> str:
    """One line about a database failure, without the SQL text or parameters."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).splitlines()[0]
    return f"metastore error: {type(orig or exc).__name__}: {text}"[:300]
