"""SQL metastore through SQLAlchemy 2.x: embedded SQLite, MySQL/MariaDB (pymysql), PostgreSQL.

Every safety decision is one statement evaluated with the database server's clock
(``now`` below is a SQL expression, never a value sent by the controller).
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Connection,
    Double,
    Engine,
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
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, ProgrammingError, SQLAlchemyError
from sqlalchemy.schema import CreateColumn, CreateTable

from ..config import redact_url
from ..exceptions import ConfigError, MetastoreError
from .base import (
    EVENTS_KEPT,
    LEADER,
    SCHEDULER,
    ClusterState,
    ControllerInfo,
    Event,
    Lease,
    Metastore,
    Observation,
    Placement,
)

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
T = TypeVar("T")

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
    # Added after schema version 1 was released: setup() adds it to older tables (see _add_columns).
    Column("paused", Integer, nullable=False, server_default="0"),
)
# Columns added to a released schema (each with a default); older controllers ignore them.
_ADDED_COLUMNS = [controllers_table.c.paused]
observations_table = Table(
    "sfc_observations",
    metadata,
    Column("node", String(255), primary_key=True),
    Column("state", String(32), nullable=False),
    Column("pids", String(255), nullable=False),
    Column("detail", String(1024), nullable=False),
    Column("observed_at", Double, nullable=False),
    Column("by_host", String(255), nullable=False),
    Column("epoch", BigInteger, nullable=False),
)
events_table = Table(
    "sfc_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Double, nullable=False),
    Column("host", String(255), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("message", String(1024), nullable=False),
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


class SQLMetastore(Metastore):
    """The metastore in a relational database, tables prefixed ``sfc_``."""

    kind = "sql"

    def __init__(self, url: str, timeout: float, sqlite_dir: Path | None = None) -> None:
        self.url = url
        self.timeout = timeout
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise ConfigError(f"metadata_service_sql_conn: {redact_url(url)!r} is not a SQLAlchemy URL") from None
        backend = parsed.get_backend_name()
        if backend not in _NOW_SQL:
            raise ConfigError(
                f"metadata_service_sql_conn: database {backend!r} is not supported (sqlite, mysql, mariadb, postgresql)"
            )
        self.backend = backend
        self.now: ColumnElement[Any] = literal_column(_NOW_SQL[backend])
        try:
            self.engine = self._make_engine(parsed)
        except (NoSuchModuleError, ImportError) as exc:
            raise ConfigError(f"metadata_service_sql_conn: driver not installed: {exc}") from None
        self._ready = False

    def _make_engine(self, parsed: Any) -> Engine:
        t = self.timeout
        if self.backend == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(parsed, connect_args={"timeout": t})

            @event.listens_for(engine, "connect")
            def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
                dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute(f"PRAGMA busy_timeout={int(t * 1000)}")
                cur.close()

            @event.listens_for(engine, "begin")
            def _on_begin(conn: Connection) -> None:
                # Take the write lock up front: no deadlock-prone lock upgrades between writers.
                conn.exec_driver_sql("BEGIN IMMEDIATE")

            return engine
        if self.backend in ("mysql", "mariadb"):
            engine = create_engine(
                parsed,
                isolation_level="READ COMMITTED",
                pool_pre_ping=True,
                pool_recycle=1800,
                pool_timeout=t,
                connect_args={"connect_timeout": t, "read_timeout": t, "write_timeout": t},
            )

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
        return create_engine(
            parsed,
            pool_pre_ping=True,
            pool_timeout=t,
            connect_args={
                "connect_timeout": max(1, int(t)),
                # statement timeout, and no lock held by a client cut off mid-transaction
                "options": " ".join(
                    f"-c {name}={int(t * 1000)}"
                    for name in ("statement_timeout", "idle_in_transaction_session_timeout")
                ),
            },
        )

    def describe(self) -> str:
        return f"sql {redact_url(self.url)}"

    # --- plumbing -----------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        """A transaction; any database failure becomes MetastoreError."""
        if not self._ready:
            self.setup()
        try:
            with self.engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise MetastoreError(_describe_db_error(exc)) from exc

    def _run(self, fn: Callable[[Connection], T]) -> T:
        with self._tx() as conn:
            return fn(conn)

    def setup(self) -> None:
        try:
            self._create_tables()
            for table, row in (
                (meta_table, {"name": "schema_version", "value": str(SCHEMA_VERSION)}),
                (meta_table, {"name": "paused", "value": "0"}),
                (meta_table, {"name": "switchover", "value": ""}),
                (lease_table, {"name": LEADER, "epoch": 0, "acquired_at": 0.0, "expires_at": 0.0}),
                (placement_table, {"name": SCHEDULER, "epoch": 0, "version": 0, "expires_at": 0.0, "updated_at": 0.0}),
            ):
                try:
                    with self.engine.begin() as conn:
                        if conn.execute(select(table).where(table.c.name == row["name"])).first() is None:
                            conn.execute(insert(table).values(**row))
                except IntegrityError:
                    pass  # inserted concurrently by another controller
            with self.engine.begin() as conn:
                found = conn.execute(select(meta_table.c.value).where(meta_table.c.name == "schema_version")).scalar()
            if found is None or int(found) <= SCHEMA_VERSION:
                self._add_columns()
        except SQLAlchemyError as exc:
            raise MetastoreError(_describe_db_error(exc)) from exc
        if found is not None and int(found) > SCHEMA_VERSION:
            raise MetastoreError(
                f"metastore schema version {found} is newer than this controller's ({SCHEMA_VERSION}); upgrade it"
            )
        self._ready = True

    def _create_tables(self) -> None:
        """Create what is missing. Several controllers may do so at the same moment.

        IF NOT EXISTS covers most of that race, but not all of it: PostgreSQL checks for the
        table before it takes the catalog's locks, so of two creators one may still fail, on a
        unique index of its catalog or with "type ... already exists". The loser tries that
        table again and then finds it there. (A real error fails every try and is raised.)
        """
        for table in metadata.sorted_tables:
            for attempt in range(3):
                try:
                    with self.engine.begin() as conn:
                        conn.execute(CreateTable(table, if_not_exists=True))
                    break
                except (IntegrityError, ProgrammingError):
                    if attempt == 2:
                        raise

    def _add_columns(self) -> None:
        """Bring tables made by an older release up to date, additively.

        New columns have defaults, so controllers of the older release keep working beside
        newer ones during a rolling upgrade; the schema version is left as it is. Another
        controller may add the same column at the same moment: a failed ALTER whose column now
        exists is that race, lost.
        """

        def present(column: Column[Any]) -> bool:
            with self.engine.connect() as conn:
                return column.name in {c["name"] for c in inspect(conn).get_columns(column.table.name)}

        for column in _ADDED_COLUMNS:
            if present(column):
                continue
            ddl = CreateColumn(column).compile(dialect=self.engine.dialect)  # from the one definition above
            try:
                with self.engine.begin() as conn:
                    conn.exec_driver_sql(f"ALTER TABLE {column.table.name} ADD COLUMN {ddl}")
                log.info("metastore: added column %s.%s", column.table.name, column.name)
            except SQLAlchemyError:
                if not present(column):
                    raise

    def _server_now(self, conn: Connection) -> float:
        return _f(conn.execute(select(self.now)).scalar())

    def _lease(self, conn: Connection) -> Lease:
        row = conn.execute(
            select(
                lease_table.c.holder, lease_table.c.host, lease_table.c.epoch, lease_table.c.expires_at, self.now
            ).where(lease_table.c.name == LEADER)
        ).one()
        return Lease(row[0], row[1], int(row[2]), _f(row[3]), _f(row[4]))

    def _placement(self, conn: Connection) -> Placement:
        p = placement_table
        row = conn.execute(
            select(p.c.node, p.c.epoch, p.c.expires_at, p.c.version, self.now).where(p.c.name == SCHEDULER)
        ).one()
        return Placement(row[0], int(row[1]), _f(row[2]), int(row[3]), _f(row[4]))

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
            target, _, mode = (flags.get("switchover") or "").partition(" ")
            switchover = (target, mode) if target else None
            return ClusterState(lease, placement, flags.get("paused") == "1", lease.server_now, switchover)

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
        }

        def go(conn: Connection) -> None:
            if conn.execute(update(c).where(c.c.host == info.host).values(**values)).rowcount == 0:
                conn.execute(insert(c).values(host=info.host, started_at=self.now, **values))

        try:
            self._run(go)
        except MetastoreError as exc:
            if not isinstance(exc.__cause__, IntegrityError):
                raise
            self._run(go)  # lost an insert race for our own host row: update it

    def deregister(self, host: str, holder: str) -> None:
        c = controllers_table
        self._run(lambda conn: conn.execute(delete(c).where(c.c.host == host, c.c.holder == holder)))

    def controllers(self) -> list[ControllerInfo]:
        c = controllers_table

        def go(conn: Connection) -> list[ControllerInfo]:
            rows = conn.execute(select(c, self.now).order_by(c.c.host)).all()
            return [
                ControllerInfo(
                    host=r.host,
                    holder=r.holder,
                    pid=int(r.pid),
                    version=r.version,
                    role=r.role,
                    last_seen=_f(r.last_seen),
                    started_at=_f(r.started_at),
                    server_now=_f(r[-1]),
                    paused=bool(r.paused),
                )
                for r in rows
            ]

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
                        detail=obs.detail[:1000],
                        observed_at=self.now,
                        by_host=obs.by_host,
                        epoch=epoch,
                    )
                )
            return True

        return self._run(go)

    def observations(self) -> list[Observation]:
        o = observations_table

        def go(conn: Connection) -> list[Observation]:
            rows = conn.execute(select(o, self.now).order_by(o.c.node)).all()
            return [
                Observation(
                    node=r.node,
                    state=r.state,
                    pids=tuple(json.loads(r.pids)),
                    detail=r.detail,
                    observed_at=_f(r.observed_at),
                    by_host=r.by_host,
                    server_now=_f(r[-1]),
                )
                for r in rows
            ]

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
            conn.execute(insert(e).values(at=self.now, host=host, kind=kind, message=message[:1000], epoch=epoch))
            newest = conn.execute(select(func.max(e.c.id))).scalar() or 0
            if newest > EVENTS_KEPT:
                conn.execute(delete(e).where(e.c.id <= newest - EVENTS_KEPT))

        self._run(go)

    def events(self, limit: int = 50) -> list[Event]:
        e = events_table

        def go(conn: Connection) -> list[Event]:
            rows = conn.execute(select(e).order_by(e.c.id.desc()).limit(limit)).all()
            return [Event(_f(r.at), r.host, r.kind, r.message, int(r.epoch)) for r in reversed(rows)]

        return self._run(go)

    def clear(self) -> None:
        def go(conn: Connection) -> None:
            for table in (controllers_table, observations_table, events_table):
                conn.execute(delete(table))
            # Keep the epoch: fencing tokens must never go backwards, even across a wipe.
            conn.execute(update(lease_table).values(holder=None, host=None, expires_at=0.0))
            conn.execute(
                update(placement_table).values(node=None, version=placement_table.c.version + 1, expires_at=0.0)
            )
            conn.execute(update(meta_table).where(meta_table.c.name == "paused").values(value="0"))
            conn.execute(update(meta_table).where(meta_table.c.name == "switchover").values(value=""))

        self._run(go)

    def server_time(self) -> float:
        """The server's clock now (seconds since the epoch)."""
        return self._run(self._server_now)

    def close(self) -> None:
        self.engine.dispose()


def _describe_db_error(exc: SQLAlchemyError) -> str:
    """One line about a database failure, without the SQL text or parameters."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).splitlines()[0]
    return f"metastore error: {type(orig or exc).__name__}: {text}"[:300]
