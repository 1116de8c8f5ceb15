"""A database reached through SQLAlchemy (1.4 or 2.x): embedded SQLite, MySQL/MariaDB (pymysql),
PostgreSQL (psycopg2 or psycopg 3), every call held to a hard client-side deadline.

Every public call runs within ``metastore_timeout`` of the client's clock, whatever the server or
the network does (see :mod:`.deadline`): connects, pool checkouts, statements and the commit all
share the call's deadline, and when it passes the connection's socket is cut (SQLite: the
statement interrupted) and the connection invalidated, never returned to the pool. How each driver
is held to it:

* pymysql: the TCP connection is opened here (connect timeout = what is left of the call) and
  handed to pymysql, so its socket is guarded from the first byte of the handshake;
* psycopg2: libpq runs non-blocking under a wait callback that gives up at the deadline
  (``psycopg2.extensions.set_wait_callback``, process-wide; without a deadline it waits as usual);
* psycopg 3: the connection generator is watched (deadline checked at every wake-up, its socket
  guarded); libpq's own ``connect_timeout`` cannot go below 2 s;
* SQLite: ``busy_timeout`` is what is left of the call, and ``interrupt()`` at the deadline.

A call that missed its deadline leaves nothing that can act later: no statement is sent after it
(the socket is shut down), nothing unsent is retransmitted (``SO_LINGER`` 0: the close is a RST,
and ``tcp_user_timeout`` bounds retransmission anyway), and the server drops a transaction left
open by a client that vanished (``idle_in_transaction_session_timeout`` / MariaDB's
``idle_transaction_timeout``, both the timeout). The one thing no client can take back is a COMMIT
the server already received but did not answer in time: it may still apply, so a MetastoreError
from a write means "outcome unknown". That is safe because every fenced write re-checks the lease
with the server's clock when it executes, and every compare-and-set re-checks its version, so a
write that lands late lands exactly as a slow one would have.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import os
import socket
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import __version__ as sqlalchemy_version
from sqlalchemy import create_engine, event, literal_column
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.sql.expression import ColumnElement

from ..exceptions import ConfigError, MetastoreError
from ..redaction import redact_url
from . import deadline as dl
from .sql_drivers import (
    describe_db_error,
    install_psycopg2_wait_callback,
    psycopg_connection_class,
    read_only,
    socket_fd,
    sqlite_guard,
    tune_tcp,
    use_wal,
)

log = logging.getLogger(__name__)

# Airflow 2 pins SQLAlchemy 1.4, which has no psycopg 3 dialect; everything else here works on both.
_SQLALCHEMY_2 = int(sqlalchemy_version.split(".")[0]) >= 2

T = TypeVar("T")

# The server's clock as seconds since the epoch, per dialect.
_NOW_SQL = {
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
    "mysql": "UNIX_TIMESTAMP(NOW(6))",
    "mariadb": "UNIX_TIMESTAMP(NOW(6))",
    "postgresql": "EXTRACT(EPOCH FROM statement_timestamp())",
}


# Drivers each backend is held to its deadline with (see the module docstring).
_DRIVERS = {
    "sqlite": ("pysqlite",),
    "mysql": ("pymysql",),
    "mariadb": ("pymysql",),
    "postgresql": ("psycopg2", "psycopg"),
}


def create_private(path: Path) -> None:
    """Create the SQLite file ``path`` 0600 (SQLite gives its -wal and -shm files the database's
    mode), and the directories missing above it 0700, so that other users cannot read the records
    (nor, with a lax umask, write them). An existing file or directory is left as it is."""
    missing = []
    for parent in path.parents:
        if parent.exists():
            break
        missing.append(parent)
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory, 0o700)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))


class SQLDatabase:
    """A database reached through SQLAlchemy, every call held to a hard client-side deadline.

    ``key`` is the config key of the URL, named in errors. ``foreign``: a database that is not
    ours (Airflow's own): SQLite is left in its journal mode, no write lock is taken up front, and
    (unless ``writable``, for :mod:`~scheduler_failover_controller.airflow_fence`) it is opened read-only.
    """

    def __init__(
        self,
        url: str,
        timeout: float,
        *,
        key: str = "metadata_service_sql_conn",
        foreign: bool = False,
        writable: bool = False,
    ) -> None:
        self.url = url
        self.writable = writable
        self.timeout = timeout
        self.key = key
        self.foreign = foreign
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise ConfigError(f"{key}: {redact_url(url)!r} is not a SQLAlchemy URL") from None
        backend = parsed.get_backend_name()
        if backend not in _NOW_SQL:
            raise ConfigError(f"{key}: database {backend!r} is not supported (sqlite, mysql, mariadb, postgresql)")
        self.backend = backend
        self.now: ColumnElement[Any] = literal_column(_NOW_SQL[backend])
        try:
            self.driver = parsed.get_driver_name()
        except (NoSuchModuleError, ImportError) as exc:
            raise ConfigError(f"{key}: driver not installed: {exc}") from None
        if backend in ("mysql", "mariadb") and ("+" not in parsed.drivername or (foreign and self.driver == "mysqldb")):
            # e.g. Airflow's own mysql:// (mysqlclient): pymysql takes the same URL and is ours to hold to the deadline
            # (Airflow's explicit mysql+mysqldb:// too, when we only read Airflow's database)
            parsed = parsed.set(drivername=f"{backend}+pymysql")
            self.driver = "pymysql"
        if backend == "postgresql" and "+" not in parsed.drivername and importlib.util.find_spec(self.driver) is None:
            # plain postgresql:// means psycopg 3 to SQLAlchemy 2.1, psycopg2 to 2.0: take the one installed
            for other in _DRIVERS[backend]:
                if importlib.util.find_spec(other) is not None and (other != "psycopg" or _SQLALCHEMY_2):
                    parsed = parsed.set(drivername=f"postgresql+{other}")
                    self.driver = other
                    break
        if self.driver == "psycopg" and not _SQLALCHEMY_2:
            raise ConfigError(
                f"{key}: the psycopg 3 driver needs SQLAlchemy 2 (installed: {sqlalchemy_version});"
                " use postgresql+psycopg2:// with psycopg2-binary installed"
            )
        if self.driver not in _DRIVERS[backend]:
            names = " or ".join(f"{backend}+{d}://" for d in _DRIVERS[backend])
            raise ConfigError(f"{key}: driver {self.driver!r} cannot be held to metastore_timeout; use {names}")
        try:
            self.engine = self._make_engine(parsed)
        except (NoSuchModuleError, ImportError) as exc:
            raise ConfigError(f"{key}: driver not installed: {exc}") from None

    def _make_engine(self, parsed: URL) -> Engine:
        if self.backend == "sqlite":
            engine = self._sqlite_engine(parsed)
        elif self.backend in ("mysql", "mariadb"):
            engine = self._mysql_engine(parsed)
        else:
            engine = self._postgresql_engine(parsed)
        # Our own ping, after the connection is guarded (SQLAlchemy's pool_pre_ping runs before
        # any event could guard it); a failed ping makes the pool replace the connection.
        event.listen(engine, "checkout", self._on_checkout)
        return engine

    def _sqlite_engine(self, parsed: URL) -> Engine:
        if self.foreign:
            if not self.writable:
                parsed = read_only(parsed)
        elif parsed.database and parsed.database != ":memory:":
            create_private(Path(parsed.database).expanduser())
        engine = create_engine(parsed, future=True, connect_args={"timeout": self.timeout})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
            sqlite_guard(dbapi_conn, self.timeout)
            if self.foreign:
                return  # read only, in the journal mode its owner chose
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
            cur = dbapi_conn.cursor()
            use_wal(cur, self.timeout)
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # Take the write lock up front: no deadlock-prone lock upgrades between writers.
            if not self.foreign:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine

    def _mysql_engine(self, parsed: URL) -> Engine:
        t = self.timeout
        engine = create_engine(
            parsed,
            future=True,  # 2.0-style connections on SQLAlchemy 1.4 too (commit, autobegin)
            isolation_level="READ COMMITTED",
            pool_recycle=1800,
            pool_timeout=t,
            connect_args={"connect_timeout": t, "read_timeout": t, "write_timeout": t},
        )
        event.listen(engine, "do_connect", self._connect_pymysql)

        @event.listens_for(engine, "connect")
        def _on_mysql_connect(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("SET SESSION time_zone = '+00:00'")
            cur.execute(f"SET SESSION innodb_lock_wait_timeout = {max(1, int(t))}")
            try:  # MariaDB: seconds; MySQL has max_execution_time (SELECT only) instead
                cur.execute(f"SET SESSION max_statement_time = {t:.3f}")
            except Exception:  # noqa: BLE001 - optional server feature
                cur.execute(f"SET SESSION max_execution_time = {int(t * 1000)}")
            # A controller cut off mid-transaction must not keep the lease row locked: the
            # server drops such a session (MariaDB: idle in a transaction; MySQL: any idle one).
            try:
                cur.execute(f"SET SESSION idle_transaction_timeout = {max(1, math.ceil(t))}")
            except Exception:  # noqa: BLE001 - MySQL has no such variable
                cur.execute(f"SET SESSION wait_timeout = {max(2, math.ceil(4 * t))}")
            cur.close()

        return engine

    def _postgresql_engine(self, parsed: URL) -> Engine:
        t = self.timeout
        engine = create_engine(
            parsed,
            future=True,
            pool_timeout=t,
            connect_args={
                # A backstop only: libpq counts whole seconds, at least 2 (the deadline is what holds).
                "connect_timeout": max(2, math.ceil(t)),
                # The kernel gives up on data unacknowledged for the timeout, and probes idle connections.
                "keepalives": 1,
                "keepalives_idle": max(1, math.ceil(t)),
                "keepalives_interval": max(1, math.ceil(t)),
                "keepalives_count": 3,
                "tcp_user_timeout": max(1000, int(t * 1000)),
                # statement timeout, and no lock held by a client cut off mid-transaction
                "options": " ".join(
                    f"-c {name}={int(t * 1000)}"
                    for name in ("statement_timeout", "idle_in_transaction_session_timeout")
                ),
            },
        )
        if self.driver == "psycopg2":
            install_psycopg2_wait_callback()
        else:
            event.listen(engine, "do_connect", self._connect_psycopg)
        return engine

    def describe(self) -> str:
        return f"sql {redact_url(self.url)}"

    # --- deadlines ----------------------------------------------------------------------------

    def _connect_pymysql(self, _dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        """Open the TCP (or unix) connection ourselves, guarded from its first byte, and hand it to pymysql."""
        import pymysql

        d = dl.current()
        if d is not None:
            d.check()
        budget = d.remaining() if d is not None else self.timeout
        where = cparams.get("unix_socket") or f"{cparams.get('host') or 'localhost'}:{cparams.get('port') or 3306}"
        try:
            if cparams.get("unix_socket"):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(budget)
                try:
                    sock.connect(cparams["unix_socket"])
                except OSError:
                    sock.close()
                    raise
            else:
                sock = socket.create_connection(
                    (cparams.get("host") or "localhost", int(cparams.get("port") or 3306)), timeout=budget
                )
                tune_tcp(sock, self.timeout)
        except OSError as exc:  # as pymysql reports it, so that SQLAlchemy sees a DBAPI error
            raise pymysql.err.OperationalError(2003, f"Can't connect to MySQL server on {where!r} ({exc})") from None
        conn = pymysql.connect(*cargs, **cparams, defer_connect=True)
        if d is not None:
            dl.cut_socket(d, sock.fileno(), key=id(conn))
        conn.connect(sock)  # closes the socket itself if the handshake fails
        record.info["sfc_fresh"] = True
        return conn

    def _connect_psycopg(self, _dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        """psycopg 3: connect through a connection class that keeps to the call's deadline."""
        conn = psycopg_connection_class().connect(*cargs, **cparams)
        d = dl.current()
        if d is not None:
            dl.cut_socket(d, conn.fileno(), key=id(conn))
        record.info["sfc_fresh"] = True
        return conn

    def _on_checkout(self, dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        """Guard the connection a call takes from the pool; ping it unless it was just made."""
        d = dl.current()
        if self.backend == "sqlite":
            sqlite_guard(dbapi_conn, self.timeout)
            return
        if d is not None:
            fd = socket_fd(dbapi_conn)
            if fd >= 0:
                dl.cut_socket(d, fd, key=id(dbapi_conn))
        if record.info.pop("sfc_fresh", False):
            return
        try:
            self.engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:  # any failure: the pool replaces this connection
            raise DisconnectionError(f"ping failed: {type(exc).__name__}") from exc

    @contextmanager
    def _failures(self, d: dl.Deadline) -> Iterator[None]:
        """Every database failure in a call as one MetastoreError (MetastoreTimeout once ``d`` passed)."""
        try:
            yield
        except SQLAlchemyError as exc:
            if d.expired or d.passed:
                raise d.timeout() from exc
            raise MetastoreError(describe_db_error(exc)) from exc

    @contextmanager
    def _connection(self, d: dl.Deadline) -> Iterator[Connection]:
        """A pooled connection for one step of a call, guarded by the call's deadline.

        After a failure it is rolled back, or invalidated when that fails or its socket was cut:
        a connection whose state is not known to be clean never goes back to the pool (which would
        otherwise try to reset it, and log that failure with tracebacks).
        """
        conn = self.engine.connect()
        try:
            yield conn
        except BaseException:
            clean = False
            if not conn.invalidated and not d.expired:
                try:
                    conn.rollback()
                    clean = True
                except SQLAlchemyError:
                    pass
            if (d.release() or not clean) and not conn.invalidated:
                conn.invalidate()
            raise
        else:
            if d.release() and not conn.invalidated:
                conn.invalidate()  # done, but its socket was cut as it finished
        finally:
            d.release()
            conn.close()

    def read(self, fn: Callable[[Connection], T]) -> T:
        """``fn`` on one pooled connection within one call's deadline; nothing is committed.

        Raises MetastoreError (MetastoreTimeout when the deadline passed) for any database failure.
        """
        with dl.scope(self.timeout) as d, self._failures(d), self._connection(d) as conn:
            return fn(conn)

    def close(self) -> None:
        self.engine.dispose()
