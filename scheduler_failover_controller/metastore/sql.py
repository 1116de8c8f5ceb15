"""SQL metastore through SQLAlchemy 2.x: embedded SQLite, MySQL/MariaDB (pymysql), PostgreSQL
(psycopg2 or psycopg 3).

Every safety decision is one statement evaluated with the database server's clock
(``now`` below is a SQL expression, never a value sent by the controller).

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
import json
import logging
import math
import os
import selectors
import socket
import sqlite3
import struct
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    case,
    create_engine,
    delete,
    event,
    exists,
    func,
    insert,
    inspect,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy import __version__ as sqlalchemy_version
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DisconnectionError,
    IntegrityError,
    NoSuchModuleError,
    ProgrammingError,
    SQLAlchemyError,
)
from sqlalchemy.schema import CreateColumn, CreateTable
from sqlalchemy.sql.expression import ColumnElement

from ..exceptions import ConfigError, CorruptRecord, MetastoreError
from ..redaction import redact_url
from . import deadline as dl
from . import rows
from .base import (
    EVENTS_KEPT,
    LEADER,
    SCHEDULER,
    SCHEMA_VERSION,
    TEXT_LIMIT,
    ClusterState,
    ControllerInfo,
    Event,
    Lease,
    Metastore,
    Observation,
    Placement,
    capped,
)

log = logging.getLogger(__name__)

# Airflow 2 pins SQLAlchemy 1.4, which has no psycopg 3 dialect; everything else here works on both.
_SQLALCHEMY_2 = int(sqlalchemy_version.split(".")[0]) >= 2

T = TypeVar("T")

# Seconds since the epoch, as a double on every database (FLOAT(53) is DOUBLE on MySQL/MariaDB and
# DOUBLE PRECISION on PostgreSQL). Spelled this way so that SQLAlchemy 1.4, the one inside an Airflow 2
# virtualenv, builds the same schema as 2.x's ``Double``.
Double = Float(precision=53)

metadata = MetaData()
meta_table = Table(
    "sfc_meta",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(255), nullable=False),
)
lease_table = Table(
    "sfc_lease",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(255), nullable=True),
    Column("host", String(255), nullable=True),
    Column("epoch", BigInteger, nullable=False, default=0),
    Column("acquired_at", Double, nullable=False, default=0.0),
    Column("expires_at", Double, nullable=False, default=0.0),
)
placement_table = Table(
    "sfc_placement",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("node", String(255), nullable=True),
    Column("epoch", BigInteger, nullable=False, default=0),
    Column("version", BigInteger, nullable=False, default=0),
    Column("expires_at", Double, nullable=False, default=0.0),
    Column("updated_at", Double, nullable=False, default=0.0),
)
controllers_table = Table(
    "sfc_controllers",
    metadata,
    Column("host", String(255), primary_key=True),
    Column("holder", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("version", String(64), nullable=False),
    Column("role", String(32), nullable=False),
    Column("last_seen", Double, nullable=False),
    Column("started_at", Double, nullable=False),
    # Added after schema version 1 was released: setup() adds them to older tables (see _add_columns).
    Column("paused", Integer, nullable=False, server_default="0"),
    Column("leashed", Integer, nullable=False, server_default="0"),
)
observations_table = Table(
    "sfc_observations",
    metadata,
    Column("node", String(255), primary_key=True),
    Column("state", String(32), nullable=False),
    Column("pids", String(255), nullable=False),
    Column("detail", String(TEXT_LIMIT), nullable=False),
    Column("observed_at", Double, nullable=False),
    Column("by_host", String(255), nullable=False),
    Column("epoch", BigInteger, nullable=False),
    Column("leashed", Integer, nullable=False, server_default="0"),  # added after version 1, like paused
)
# Columns added to a released schema (each with a default); older controllers ignore them.
_ADDED_COLUMNS = [controllers_table.c.paused, controllers_table.c.leashed, observations_table.c.leashed]
events_table = Table(
    "sfc_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Double, nullable=False),
    Column("host", String(255), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("message", String(TEXT_LIMIT), nullable=False),
    Column("epoch", BigInteger, nullable=False),
)

# The server's clock as seconds since the epoch, per dialect.
_NOW_SQL = {
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
    "mysql": "UNIX_TIMESTAMP(NOW(6))",
    "mariadb": "UNIX_TIMESTAMP(NOW(6))",
    "postgresql": "EXTRACT(EPOCH FROM statement_timestamp())",
}


def _f(value: Any) -> float:
    return float(value) if value is not None else 0.0


def _at(table: Table, column: str, key: object = None) -> str:
    """How a CorruptRecord names a field: ``row sfc_lease.epoch``, ``row sfc_controllers[n1].pid``."""
    return f"row {table.name}{'' if key is None else f'[{key}]'}.{column}"


def _execute(statement: Any, conn: Connection) -> None:
    conn.execute(statement)


def _execute_sql(sql: str, conn: Connection) -> None:
    conn.exec_driver_sql(sql)


# The rows setup() makes sure of: (table, row), each keyed by its ``name``.
_SEEDS: list[tuple[Table, dict[str, Any]]] = [
    (meta_table, {"name": "schema_version", "value": str(SCHEMA_VERSION)}),
    (meta_table, {"name": "paused", "value": "0"}),
    (meta_table, {"name": "switchover", "value": ""}),
    (lease_table, {"name": LEADER, "epoch": 0, "acquired_at": 0.0, "expires_at": 0.0}),
    (placement_table, {"name": SCHEDULER, "epoch": 0, "version": 0, "expires_at": 0.0, "updated_at": 0.0}),
]

# Drivers each backend is held to its deadline with (see the module docstring).
_DRIVERS = {
    "sqlite": ("pysqlite",),
    "mysql": ("pymysql",),
    "mariadb": ("pymysql",),
    "postgresql": ("psycopg2", "psycopg"),
}


class SQLDatabase:
    """A database reached through SQLAlchemy, every call held to a hard client-side deadline.

    ``key`` is the config key of the URL, named in errors. ``foreign``: a database that is not
    ours (Airflow's own), only read: SQLite is opened read-only and left in its journal mode, and
    no write lock is taken.
    """

    def __init__(
        self,
        url: str,
        timeout: float,
        *,
        key: str = "metadata_service_sql_conn",
        foreign: bool = False,
    ) -> None:
        self.url = url
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
        t = self.timeout
        if self.backend == "sqlite":
            if self.foreign:
                parsed = _read_only(parsed)
            elif parsed.database and parsed.database != ":memory:":
                Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(parsed, future=True, connect_args={"timeout": t})

            @event.listens_for(engine, "connect")
            def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
                _sqlite_guard(dbapi_conn, self.timeout)
                if self.foreign:
                    return  # read only, in the journal mode its owner chose
                dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.close()

            @event.listens_for(engine, "begin")
            def _on_begin(conn: Connection) -> None:
                # Take the write lock up front: no deadlock-prone lock upgrades between writers.
                if not self.foreign:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")

        elif self.backend in ("mysql", "mariadb"):
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

        else:
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
                _install_psycopg2_wait_callback()
            else:
                event.listen(engine, "do_connect", self._connect_psycopg)
        # Our own ping, after the connection is guarded (SQLAlchemy's pool_pre_ping runs before
        # any event could guard it); a failed ping makes the pool replace the connection.
        event.listen(engine, "checkout", self._on_checkout)
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
                _tune_tcp(sock, self.timeout)
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
        conn = _psycopg_connection_class().connect(*cargs, **cparams)
        d = dl.current()
        if d is not None:
            dl.cut_socket(d, conn.fileno(), key=id(conn))
        record.info["sfc_fresh"] = True
        return conn

    def _on_checkout(self, dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        """Guard the connection a call takes from the pool; ping it unless it was just made."""
        d = dl.current()
        if self.backend == "sqlite":
            _sqlite_guard(dbapi_conn, self.timeout)
            return
        if d is not None:
            fd = _socket_fd(dbapi_conn)
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
            raise MetastoreError(_describe_db_error(exc)) from exc

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


class SQLMetastore(SQLDatabase, Metastore):
    """The metastore in a relational database, tables prefixed ``sfc_``."""

    kind = "sql"

    def _step(self, d: dl.Deadline, fn: Callable[[Connection], T]) -> T:
        """``fn`` in one transaction; SQLAlchemy errors are raised as they are."""
        with self._connection(d) as conn:
            conn.begin()
            result = fn(conn)
            conn.commit()
            return result

    def _run(self, fn: Callable[[Connection], T]) -> T:
        """A public call (see Metastore._call): ``fn`` in one transaction."""
        with self._call() as d:
            return self._step(d, fn)

    # --- setup (see Metastore.setup) ----------------------------------------------------------

    _catalog: dict[str, set[str]]  # the columns _prepare found, for _upgrade

    def _prepare(self, d: dl.Deadline) -> tuple[str, object]:
        """Create and seed the schema, in as few round trips as what is missing needs.

        A store that is already complete (every restart) costs one look at the catalog and one
        transaction: setup runs within the one call's deadline like everything else.
        """
        present = self._columns(d)
        missing = [table for table in metadata.sorted_tables if table.name not in present]
        if missing:
            self._create_tables(d, missing)
            present = self._columns(d)  # as created: by us, or by a controller of an older release
        version = select(meta_table.c.value).where(meta_table.c.name == "schema_version")

        def seed(conn: Connection) -> Any:
            for table, row in _SEEDS:
                if conn.execute(select(table.c.name).where(table.c.name == row["name"])).first() is None:
                    conn.execute(insert(table).values(**row))
            return conn.execute(version).scalar()

        try:
            found = self._step(d, seed)
        except IntegrityError:  # another controller seeded a row at the same moment: its rows are there now
            found = self._step(d, seed)
        self._catalog = present
        return _at(meta_table, "value", "schema_version"), found

    def _upgrade(self, d: dl.Deadline) -> None:
        self._add_columns(d, self._catalog)

    def _columns(self, d: dl.Deadline) -> dict[str, set[str]]:
        """The column names of each of our tables that exists."""
        with self._connection(d) as conn:
            found = inspect(conn)
            names = set(found.get_table_names())
            return {
                t.name: {c["name"] for c in found.get_columns(t.name)}
                for t in metadata.sorted_tables
                if t.name in names
            }

    def _create_tables(self, d: dl.Deadline, tables: list[Table]) -> None:
        """Create what is missing. Several controllers may do so at the same moment.

        IF NOT EXISTS covers most of that race, but not all of it: PostgreSQL checks for the
        table before it takes the catalog's locks, so of two creators one may still fail, on a
        unique index of its catalog or with "type ... already exists". The loser tries that
        table again and then finds it there. (A real error fails every try and is raised.)
        """
        for table in tables:
            for attempt in range(3):
                try:
                    self._step(d, partial(_execute, CreateTable(table, if_not_exists=True)))
                    break
                except (IntegrityError, ProgrammingError):
                    if attempt == 2:
                        raise

    def _add_columns(self, d: dl.Deadline, present: dict[str, set[str]]) -> None:
        """Bring tables made by an older release up to date, additively.

        ``present`` is what the catalog shows (table: column names). New columns have defaults,
        so controllers of the older release keep working beside newer ones during a rolling
        upgrade; the schema version is left as it is. Another controller may add the same column
        at the same moment: a failed ALTER whose column now exists is that race, lost.
        """
        for column in _ADDED_COLUMNS:
            table = column.table.name
            if table not in present or column.name in present[table]:
                continue
            ddl = CreateColumn(column).compile(dialect=self.engine.dialect)  # from the one definition above
            try:
                self._step(d, partial(_execute_sql, f"ALTER TABLE {table} ADD COLUMN {ddl}"))
                log.info("metastore: added column %s.%s", table, column.name)
            except SQLAlchemyError:
                if column.name not in self._columns(d).get(table, set()):
                    raise

    def _lease(self, conn: Connection) -> Lease:
        t = lease_table
        row = conn.execute(
            select(t.c.holder, t.c.host, t.c.epoch, t.c.acquired_at, t.c.expires_at, self.now).where(t.c.name == LEADER)
        ).first()
        if row is None:
            raise rows.missing(f"row {t.name}[{LEADER}]")
        now = _f(row[5])
        rows.stamp(_at(t, "acquired_at"), row[3], now)
        return Lease(
            rows.optional_holder(_at(t, "holder"), row[0]),
            rows.optional_name(_at(t, "host"), row[1]),
            rows.integer(_at(t, "epoch"), row[2]),
            rows.expiry(_at(t, "expires_at"), row[4], now),
            now,
        )

    def _placement(self, conn: Connection) -> Placement:
        p = placement_table
        row = conn.execute(
            select(p.c.node, p.c.epoch, p.c.expires_at, p.c.version, p.c.updated_at, self.now).where(
                p.c.name == SCHEDULER
            )
        ).first()
        if row is None:
            raise rows.missing(f"row {p.name}[{SCHEDULER}]")
        now = _f(row[5])
        rows.stamp(_at(p, "updated_at"), row[4], now)
        return Placement(
            rows.optional_name(_at(p, "node"), row[0]),
            rows.integer(_at(p, "epoch"), row[1]),
            rows.expiry(_at(p, "expires_at"), row[2], now),
            rows.integer(_at(p, "version"), row[3]),
            now,
        )

    def _leader_is(self, holder: str, epoch: int) -> ColumnElement[bool]:
        lease = lease_table
        return exists().where(
            lease.c.name == LEADER, lease.c.holder == holder, lease.c.epoch == epoch, lease.c.expires_at > self.now
        )

    # --- the contract -----------------------------------------------------------------------

    def acquire_or_renew(self, holder: str, host: str, ttl: float) -> Lease | None:
        lease = lease_table
        still_mine = and_(lease.c.holder == holder, lease.c.expires_at > self.now)
        # MySQL evaluates SET left to right with already-updated values, so every expression
        # that reads holder/expires_at comes before the assignments that change them.
        stmt = (
            update(lease)
            .where(
                lease.c.name == LEADER,
                or_(lease.c.holder == holder, lease.c.holder.is_(None), lease.c.expires_at <= self.now),
            )
            .ordered_values(
                (lease.c.epoch, case((still_mine, lease.c.epoch), else_=lease.c.epoch + 1)),
                (lease.c.acquired_at, case((still_mine, lease.c.acquired_at), else_=self.now)),
                (lease.c.holder, holder),
                (lease.c.host, host),
                (lease.c.expires_at, self.now + ttl),
            )
        )

        def go(conn: Connection) -> Lease | None:
            conn.execute(stmt)
            current = self._lease(conn)
            return current if current.holder == holder else None

        return self._run(go)

    def release(self, holder: str) -> bool:
        lease = lease_table
        stmt = (
            update(lease)
            .where(lease.c.name == LEADER, lease.c.holder == holder, lease.c.expires_at > self.now)
            .values(expires_at=self.now - 0.001)
        )
        return self._run(lambda conn: conn.execute(stmt).rowcount == 1)

    def read_state(self) -> ClusterState:
        def go(conn: Connection) -> ClusterState:
            lease = self._lease(conn)
            placement = self._placement(conn)
            flags = dict(
                conn.execute(
                    select(meta_table.c.name, meta_table.c.value).where(meta_table.c.name.in_(("paused", "switchover")))
                ).all()
            )
            paused = rows.paused(_at(meta_table, "value", "paused"), flags.get("paused", "0"))
            request = flags.get("switchover", "")
            where = _at(meta_table, "value", "switchover")
            if not isinstance(request, str):
                raise rows.corrupt(where, "is not text", request)
            switchover = None
            if request:
                target, _, mode = request.partition(" ")
                try:
                    switchover = rows.switchover(where, target, where, mode)
                except CorruptRecord:
                    raise rows.corrupt(where, "is not a switchover request (NODE controlled|forced)", request) from None
            return ClusterState(lease, placement, paused, lease.server_now, switchover)

        return self._run(go)

    def set_placement(
        self, node: str | None, holder: str, epoch: int, expected_version: int, ttl: float
    ) -> Placement | None:
        p = placement_table
        stmt = (
            update(p)
            .where(p.c.name == SCHEDULER, p.c.version == expected_version, self._leader_is(holder, epoch))
            .values(node=node, epoch=epoch, version=p.c.version + 1, expires_at=self.now + ttl, updated_at=self.now)
        )

        def go(conn: Connection) -> Placement | None:
            if conn.execute(stmt).rowcount != 1:
                return None
            return self._placement(conn)

        return self._run(go)

    def renew_placement(
        self, node: str, ttl: float, holder: str | None = None, epoch: int | None = None
    ) -> Placement | None:
        p = placement_table
        conditions: list[ColumnElement[bool]] = [p.c.name == SCHEDULER, p.c.node == node, p.c.expires_at > self.now]
        if holder is not None and epoch is not None:
            conditions.append(self._leader_is(holder, epoch))
        stmt = update(p).where(*conditions).values(expires_at=self.now + ttl, updated_at=self.now)

        def go(conn: Connection) -> Placement | None:
            if conn.execute(stmt).rowcount != 1:
                return None
            return self._placement(conn)

        return self._run(go)

    def release_placement(self, node: str) -> bool:
        p = placement_table
        stmt = (
            update(p)
            .where(p.c.name == SCHEDULER, p.c.node == node)
            .values(node=None, version=p.c.version + 1, expires_at=self.now, updated_at=self.now)
        )
        return self._run(lambda conn: conn.execute(stmt).rowcount == 1)

    def heartbeat(self, info: ControllerInfo) -> None:
        c = controllers_table
        values = {
            "holder": info.holder,
            "pid": info.pid,
            "version": info.version,
            "role": info.role,
            "last_seen": self.now,
            "paused": int(info.paused),
            "leashed": int(info.leashed),
        }

        def go(conn: Connection) -> None:
            if conn.execute(update(c).where(c.c.host == info.host).values(**values)).rowcount == 0:
                conn.execute(insert(c).values(host=info.host, started_at=self.now, **values))

        with self._call() as d:  # one deadline for both tries
            try:
                self._step(d, go)
            except IntegrityError:
                self._step(d, go)  # lost an insert race for our own host row: update it

    def deregister(self, host: str, holder: str) -> None:
        c = controllers_table
        self._run(lambda conn: conn.execute(delete(c).where(c.c.host == host, c.c.holder == holder)))

    def controllers(self) -> list[ControllerInfo]:
        c = controllers_table

        def decode(r: Any) -> ControllerInfo:
            host = rows.name(_at(c, "host"), r.host)
            now = _f(r[-1])
            return ControllerInfo(
                host=host,
                holder=rows.holder(_at(c, "holder", host), r.holder),
                pid=rows.integer(_at(c, "pid", host), r.pid, minimum=1),
                version=rows.label(_at(c, "version", host), r.version, 64),
                role=rows.label(_at(c, "role", host), r.role, 32),
                last_seen=rows.stamp(_at(c, "last_seen", host), r.last_seen, now),
                started_at=rows.stamp(_at(c, "started_at", host), r.started_at, now),
                server_now=now,
                paused=rows.flag(_at(c, "paused", host), r.paused),
                leashed=rows.flag(_at(c, "leashed", host), r.leashed),
            )

        def go(conn: Connection) -> list[ControllerInfo]:
            return [decode(r) for r in conn.execute(select(c, self.now).order_by(c.c.host)).all()]

        return self._run(go)

    def record_observations(self, holder: str, epoch: int, observations: list[Observation]) -> bool:
        o = observations_table

        def go(conn: Connection) -> bool:
            if not conn.execute(select(self._leader_is(holder, epoch))).scalar():
                return False
            conn.execute(delete(o))
            for obs in observations:
                conn.execute(
                    insert(o).values(
                        node=obs.node,
                        state=obs.state,
                        pids=json.dumps(list(obs.pids)),
                        detail=capped(obs.detail),
                        observed_at=self.now,
                        by_host=obs.by_host,
                        epoch=epoch,
                        leashed=int(obs.leashed),
                    )
                )
            return True

        return self._run(go)

    def observations(self) -> list[Observation]:
        o = observations_table

        def decode(r: Any) -> Observation:
            node = rows.name(_at(o, "node"), r.node)
            now = _f(r[-1])
            rows.integer(_at(o, "epoch", node), r.epoch)
            return Observation(
                node=node,
                state=rows.label(_at(o, "state", node), r.state, 32),
                pids=rows.pids(_at(o, "pids", node), r.pids, encoded=True),
                detail=rows.text(_at(o, "detail", node), r.detail, TEXT_LIMIT),
                observed_at=rows.stamp(_at(o, "observed_at", node), r.observed_at, now),
                by_host=rows.name(_at(o, "by_host", node), r.by_host, empty=True),
                server_now=now,
                leashed=rows.flag(_at(o, "leashed", node), r.leashed),
            )

        def go(conn: Connection) -> list[Observation]:
            return [decode(r) for r in conn.execute(select(o, self.now).order_by(o.c.node)).all()]

        return self._run(go)

    def set_paused(self, paused: bool) -> None:
        m = meta_table
        self._run(lambda conn: conn.execute(update(m).where(m.c.name == "paused").values(value="1" if paused else "0")))

    def request_switchover(self, node: str, mode: str) -> None:
        m = meta_table
        self._run(lambda conn: conn.execute(update(m).where(m.c.name == "switchover").values(value=f"{node} {mode}")))

    def clear_switchover(self) -> None:
        m = meta_table
        self._run(lambda conn: conn.execute(update(m).where(m.c.name == "switchover").values(value="")))

    def add_event(self, host: str, kind: str, message: str, epoch: int = 0) -> None:
        e = events_table

        def go(conn: Connection) -> None:
            conn.execute(insert(e).values(at=self.now, host=host, kind=kind, message=capped(message), epoch=epoch))
            newest = conn.execute(select(func.max(e.c.id))).scalar() or 0
            if newest > EVENTS_KEPT:
                conn.execute(delete(e).where(e.c.id <= newest - EVENTS_KEPT))

        self._run(go)

    def events(self, limit: int = 50) -> list[Event]:
        e = events_table

        def decode(r: Any, now: float) -> Event:
            key = rows.integer(_at(e, "id"), r.id, minimum=1)
            return Event(
                rows.stamp(_at(e, "at", key), r.at, now),
                rows.name(_at(e, "host", key), r.host),
                rows.label(_at(e, "kind", key), r.kind, 32),
                rows.text(_at(e, "message", key), r.message, TEXT_LIMIT),
                rows.integer(_at(e, "epoch", key), r.epoch),
            )

        def go(conn: Connection) -> list[Event]:
            found = conn.execute(select(e, self.now).order_by(e.c.id.desc()).limit(limit)).all()
            return [decode(r, _f(r[-1])) for r in reversed(found)]

        return self._run(go)

    def clear(self) -> None:
        lease, p = lease_table, placement_table

        def counter(conn: Connection, column: Any, key: str) -> Any:
            """The counter's new value: kept (a valid one) or 0 (one no valid write produces)."""
            raw = conn.execute(select(column).where(column.table.c.name == key).with_for_update()).scalar()
            try:
                rows.integer(_at(column.table, column.name), raw)
            except CorruptRecord:
                return 0
            return column

        def go(conn: Connection) -> None:
            for table in (controllers_table, observations_table, events_table):
                conn.execute(delete(table))
            # Keep the epoch: fencing tokens must never go backwards, even across a wipe. Only a
            # counter no valid write produces (text, negative) restarts from 0: tokens are compared
            # together with the holder, unique to each controller process, so none can match again.
            conn.execute(
                update(lease)
                .where(lease.c.name == LEADER)
                .values(holder=None, host=None, epoch=counter(conn, lease.c.epoch, LEADER), acquired_at=0.0)
                .values(expires_at=0.0)
            )
            conn.execute(
                update(p)
                .where(p.c.name == SCHEDULER)
                .values(node=None, epoch=counter(conn, p.c.epoch, SCHEDULER), expires_at=0.0, updated_at=self.now)
                .values(version=counter(conn, p.c.version, SCHEDULER) + 1)
            )
            conn.execute(update(meta_table).where(meta_table.c.name == "paused").values(value="0"))
            conn.execute(update(meta_table).where(meta_table.c.name == "switchover").values(value=""))

        self._run(go)


# --- drivers held to the deadline -------------------------------------------------------------


def _read_only(url: URL) -> URL:
    """A SQLite URL as a read-only ``file:`` URI: the file is never created nor written."""
    database = url.database or ""
    if not database.startswith("file:"):
        database = "file:" + quote(str(Path(database).expanduser()))
    return url.set(database=database, query={**url.query, "mode": "ro", "uri": "true"})


def _sqlite_guard(conn: sqlite3.Connection, timeout: float) -> None:
    """SQLite waits for a lock at most what is left of the call, and is interrupted at its deadline.

    Outside a call (a test's own use of the engine) it waits ``timeout``.
    """
    d = dl.current()
    left = timeout if d is None else d.remaining()
    conn.execute(f"PRAGMA busy_timeout={max(1, int(left * 1000))}")
    if d is not None:
        d.guard(("sqlite", id(conn)), conn.interrupt)


def _tune_tcp(sock: socket.socket, timeout: float) -> None:
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


def _socket_fd(dbapi_conn: Any) -> int:
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


def _install_psycopg2_wait_callback() -> None:
    import psycopg2.extensions as ext

    current = ext.get_wait_callback()
    if current is None:
        ext.set_wait_callback(_psycopg2_wait)
    elif current is not _psycopg2_wait:
        log.warning("another psycopg2 wait callback is installed: PostgreSQL connects may outlast metastore_timeout")


_PSYCOPG_CONNECTION: Any = None


def _psycopg_connection_class() -> Any:
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


def _describe_db_error(exc: SQLAlchemyError) -> str:
    """One line about a database failure, without the SQL text or parameters."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).splitlines()[0]
    return f"metastore error: {type(orig or exc).__name__}: {text}"[:300]
