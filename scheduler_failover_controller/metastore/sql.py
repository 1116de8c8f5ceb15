"""SQL metastore: the schema, and the contract as SQL statements (the connections: :mod:`.sql_engine`).

Every safety decision is one statement evaluated with the database server's clock
(``now`` below is a SQL expression, never a value sent by the controller). A MetastoreError from a
write means "outcome unknown": every fenced write re-checks the lease with the server's clock when
it executes, and every compare-and-set re-checks its version, so a write that lands late lands
exactly as a slow one would have.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import (
    and_,
    case,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.sql.expression import ColumnElement

from ..exceptions import ConfigError, CorruptRecord
from . import deadline as dl
from . import rows, sql_switchover
from .base import (
    EVENTS_KEPT,
    LEADER,
    SCHEDULER,
    TEXT_LIMIT,
    ClusterState,
    Event,
    Lease,
    Metastore,
    Placement,
    capped,
)
from .events import EventKind, event_kind, request_id
from .sql_engine import SQLDatabase
from .sql_nodes import SQLNodes, read_drained
from .sql_registry import SQLRegistry
from .sql_reports import NODE_CONTROL, SQLReports
from .sql_schema import SQLSchema
from .sql_tables import DEFAULT_PREFIX, event_service, field_name, num, prefix_problem, schema

log = logging.getLogger(__name__)

T = TypeVar("T")


class SQLMetastore(SQLRegistry, SQLSchema, SQLReports, SQLNodes, SQLDatabase, Metastore):
    """The metastore in a relational database, its tables named with ``prefix`` (``sfc_``: as ever).

    A fleet with another prefix keeps tables of its own in the same database and never sees these.
    """

    kind = "sql"
    service = SCHEDULER  # whose placement, request and per-node records this store keeps (see for_service)

    def __init__(self, url: str, timeout: float, *, prefix: str = DEFAULT_PREFIX) -> None:
        problem = prefix_problem(prefix) if isinstance(prefix, str) else "is not text"
        if problem is not None:
            raise ConfigError(f"metadata_service_sql_table_prefix: {problem}")
        super().__init__(url, timeout)
        self.tables = schema(prefix)

    def describe(self) -> str:
        """Where the store lives (secrets masked), and its tables' prefix when it is not the default."""
        where = super().describe()
        prefix = self.tables.prefix
        return where if prefix == DEFAULT_PREFIX else f"{where} (tables {prefix}*)"

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

    def _lease(self, conn: Connection) -> Lease:
        t = self.tables.lease
        row = conn.execute(
            select(t.c.holder, t.c.host, t.c.epoch, t.c.acquired_at, t.c.expires_at, self.now).where(t.c.name == LEADER)
        ).first()
        if row is None:
            raise rows.missing(f"row {t.name}[{LEADER}]")
        now = num(row[5])
        rows.stamp(field_name(t, "acquired_at"), row[3], now)
        return Lease(
            rows.optional_holder(field_name(t, "holder"), row[0]),
            rows.optional_name(field_name(t, "host"), row[1]),
            rows.integer(field_name(t, "epoch"), row[2]),
            rows.expiry(field_name(t, "expires_at"), row[4], now),
            now,
        )

    def _placement(self, conn: Connection) -> Placement:
        p, service = self.tables.placement, self.service
        row = conn.execute(
            select(p.c.node, p.c.epoch, p.c.expires_at, p.c.version, p.c.updated_at, self.now).where(
                p.c.name == service
            )
        ).first()
        if row is None:
            raise rows.missing(f"row {p.name}[{service}]")
        key = None if service == SCHEDULER else service  # the scheduler's fields, named as ever
        now = num(row[5])
        rows.stamp(field_name(p, "updated_at", key), row[4], now)
        return Placement(
            rows.optional_name(field_name(p, "node", key), row[0]),
            rows.integer(field_name(p, "epoch", key), row[1]),
            rows.expiry(field_name(p, "expires_at", key), row[2], now),
            rows.integer(field_name(p, "version", key), row[3]),
            now,
        )

    def _leader_is(self, holder: str, epoch: int) -> ColumnElement[bool]:
        lease = self.tables.lease
        return exists().where(
            lease.c.name == LEADER, lease.c.holder == holder, lease.c.epoch == epoch, lease.c.expires_at > self.now
        )

    # --- the contract -----------------------------------------------------------------------

    def acquire_or_renew(self, holder: str, host: str, ttl: float) -> Lease | None:
        lease = self.tables.lease
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
        lease = self.tables.lease
        stmt = (
            update(lease)
            .where(lease.c.name == LEADER, lease.c.holder == holder, lease.c.expires_at > self.now)
            .values(expires_at=self.now - 0.001)
        )
        return self._run(lambda conn: conn.execute(stmt).rowcount == 1)

    def read_state(self) -> ClusterState:
        m = self.tables.meta
        request_row, id_row = sql_switchover.names(self.service)

        def go(conn: Connection) -> ClusterState:
            lease = self._lease(conn)
            placement = self._placement(conn)
            flags = {
                name: value
                for name, value in conn.execute(
                    select(m.c.name, m.c.value).where(m.c.name.in_(("paused", request_row, id_row)))
                )
            }
            paused = rows.paused(field_name(m, "value", "paused"), flags.get("paused", "0"))
            request = flags.get(request_row, "")
            switchover, key = sql_switchover.decode(m, request, flags.get(id_row), self.service)
            drained = read_drained(self.tables, conn)
            return ClusterState(lease, placement, paused, lease.server_now, switchover, key, drained)

        return self._run(go)

    def set_placement(
        self, node: str | None, holder: str, epoch: int, expected_version: int, ttl: float
    ) -> Placement | None:
        p = self.tables.placement
        stmt = (
            update(p)
            .where(p.c.name == self.service, p.c.version == expected_version, self._leader_is(holder, epoch))
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
        p = self.tables.placement
        conditions: list[ColumnElement[bool]] = [p.c.name == self.service, p.c.node == node, p.c.expires_at > self.now]
        if holder is not None and epoch is not None:
            conditions.append(self._leader_is(holder, epoch))
        stmt = update(p).where(*conditions).values(expires_at=self.now + ttl, updated_at=self.now)

        def go(conn: Connection) -> Placement | None:
            if conn.execute(stmt).rowcount != 1:
                return None
            return self._placement(conn)

        return self._run(go)

    def release_placement(self, node: str) -> bool:
        p = self.tables.placement
        stmt = (
            update(p)
            .where(p.c.name == self.service, p.c.node == node)
            .values(node=None, version=p.c.version + 1, expires_at=self.now, updated_at=self.now)
        )
        return self._run(lambda conn: conn.execute(stmt).rowcount == 1)

    def set_paused(self, paused: bool) -> None:
        m = self.tables.meta
        self._run(lambda conn: conn.execute(update(m).where(m.c.name == "paused").values(value="1" if paused else "0")))

    def request_switchover(self, node: str, mode: str, request_id: str = "") -> None:
        self._run(lambda conn: sql_switchover.write(conn, self.tables.meta, node, mode, request_id, self.service))

    def clear_switchover(self) -> None:
        self._run(lambda conn: sql_switchover.write(conn, self.tables.meta, "", "", "", self.service))

    def add_event(self, host: str, kind: EventKind, message: str, epoch: int = 0, request_id: str = "") -> None:
        e = self.tables.events
        row = {"host": host, "kind": str(kind), "message": capped(message), "epoch": epoch, "request_id": request_id}
        if self.service != SCHEDULER:  # the scheduler's events stay as a release with one service writes them
            row["service"] = self.service

        def go(conn: Connection) -> None:
            conn.execute(insert(e).values(at=self.now, **row))
            newest = conn.execute(select(func.max(e.c.id))).scalar() or 0
            if newest > EVENTS_KEPT:
                conn.execute(delete(e).where(e.c.id <= newest - EVENTS_KEPT))

        self._run(go)

    def events(self, limit: int = 50) -> list[Event]:
        """The fleet's history, whichever service's store asks; each event names its service."""
        e = self.tables.events

        def decode(r: Any, now: float) -> Event:
            key = rows.integer(field_name(e, "id"), r.id, minimum=1)
            return Event(
                rows.stamp(field_name(e, "at", key), r.at, now),
                rows.name(field_name(e, "host", key), r.host),
                event_kind(rows.label(field_name(e, "kind", key), r.kind, 32)),
                rows.text(field_name(e, "message", key), r.message, TEXT_LIMIT),
                rows.integer(field_name(e, "epoch", key), r.epoch),
                request_id(field_name(e, "request_id", key), r.request_id),
                event_service(field_name(e, "service", key), r.service),
            )

        def go(conn: Connection) -> list[Event]:
            found = conn.execute(select(e, self.now).order_by(e.c.id.desc()).limit(limit)).all()
            return [decode(r, num(r[-1])) for r in reversed(found)]

        return self._run(go)

    def clear(self) -> None:
        """Wipe the fleet's records and every service's, whichever service's store asks."""
        t = self.tables
        lease, p, m = t.lease, t.placement, t.meta

        def counter(conn: Connection, column: Any, key: str) -> Any:
            """The counter's new value: kept (a valid one) or 0 (one no valid write produces)."""
            raw = conn.execute(select(column).where(column.table.c.name == key).with_for_update()).scalar()
            try:
                rows.integer(field_name(column.table, column.name, None if key in (LEADER, SCHEDULER) else key), raw)
            except CorruptRecord:
                return 0
            return column

        def go(conn: Connection) -> None:
            for table in (t.controllers, t.observations, t.events, t.reports, *t.service_tables):
                conn.execute(delete(table))
            conn.execute(delete(t.nodes))
            # Keep the epoch: fencing tokens must never go backwards, even across a wipe. Only a
            # counter no valid write produces (text, negative) restarts from 0: tokens are compared
            # together with the holder, unique to each controller process, so none can match again.
            conn.execute(
                update(lease)
                .where(lease.c.name == LEADER)
                .values(holder=None, host=None, epoch=counter(conn, lease.c.epoch, LEADER), acquired_at=0.0)
                .values(expires_at=0.0)
            )
            # Every service's placement row stays (nowhere, its version past every one it held), so
            # that a service's store set up before the wipe keeps working after it.
            placed: list[Any] = list(conn.execute(select(p.c.name).order_by(p.c.name)).scalars())
            for name in placed:
                conn.execute(
                    update(p)
                    .where(p.c.name == name)
                    .values(node=None, epoch=counter(conn, p.c.epoch, name), expires_at=0.0, updated_at=self.now)
                    .values(version=counter(conn, p.c.version, name) + 1)
                )
            conn.execute(update(m).where(m.c.name == "paused").values(value="0"))
            # every service's request and id: switchover, switchover_id, switchover:NAME, switchover_id:NAME
            conn.execute(update(m).where(m.c.name.like(f"{sql_switchover.REQUEST}%")).values(value=""))
            conn.execute(update(m).where(m.c.name == NODE_CONTROL).values(value=""))

        self._run(go)

    def for_service(self, name: str) -> Metastore:
        if name == SCHEDULER:
            return self
        from .sql_services import service_view

        return service_view(self, name)

    def dump(self) -> dict[str, Any]:
        """The fleet's records and each service's own ones (``services``), for ``metadata``."""
        from .sql_services import dump_services

        found = super().dump()
        found["services"] = dump_services(self)
        return found
