"""The SQL metastore's per-node records: ``sfc_nodes``, one row per node with its drain (the fleet's)
and the scheduler's failed starts; another service's failed starts are its rows of
``sfc_failures_by_service``. A mixin of ``SQLMetastore``; setup creates the tables in a store of an
older release too (additively: older controllers never read them)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.expression import ColumnElement

from . import deadline as dl
from . import rows
from .nodestate import NodeFailures, NodeStateStore, drained_entry
from .sql_tables import Schema, Scoped, field_name, num

T = TypeVar("T")


def read_drained(tables: Schema, conn: Connection, locking: bool = False) -> dict[str, str]:
    """The drained nodes and their requests' ids, in one statement (part of ``read_state``).

    ``locking``: a locking read, which sees the latest commit (a plain read in MySQL's repeatable
    read sees the transaction's first snapshot)."""
    n = tables.nodes
    query = select(n.c.node, n.c.drain_id).where(n.c.drained == 1).order_by(n.c.node)
    found = conn.execute(query.with_for_update() if locking else query).all()
    return dict(drained_entry(field_name(n, "drain_id", row.node), row.node, row.drain_id) for row in found)


class SQLNodes(NodeStateStore):
    """``drain``, ``undrain``, ``record_failure``, ``failures``, ``forget_failures`` as SQL."""

    now: ColumnElement[Any]
    tables: Schema
    service: str

    if TYPE_CHECKING:  # SQLMetastore's and Metastore's, which come after this mixin

        def _run(self, fn: Callable[[Connection], T]) -> T: ...

        @contextlib.contextmanager
        def _call(self) -> Iterator[dl.Deadline]: ...

        def _step(self, d: dl.Deadline, fn: Callable[[Connection], T]) -> T: ...

    def _upsert(self, scope: Scoped, node: str, go: Callable[[Connection], T]) -> T:
        """``go`` in one transaction, after making sure ``node`` has a row (another client may insert it too)."""
        n = scope.table

        def ensure(conn: Connection) -> T:
            if conn.execute(select(n.c.node).where(n.c.node == node, *scope.where)).first() is None:
                conn.execute(insert(n).values(node=node, **scope.key))
            return go(conn)

        with self._call() as d:
            try:
                return self._step(d, ensure)
            except IntegrityError:  # inserted by another client at the same moment: it is there now
                return self._step(d, ensure)

    def drain(self, node: str, nodes: Sequence[str], request_id: str = "") -> bool:
        n, m = self.tables.nodes, self.tables.meta

        def go(conn: Connection) -> bool:
            # One drain at a time: the schema_version row is the lock (PostgreSQL, MySQL; SQLite
            # has one writer anyway), so two drains of the last two nodes cannot both pass.
            conn.execute(select(m.c.value).where(m.c.name == "schema_version").with_for_update()).scalar()
            drained = set(read_drained(self.tables, conn, locking=True)) | {node}
            if not [x for x in nodes if x not in drained]:
                return False
            conn.execute(update(n).where(n.c.node == node).values(drained=1, drain_id=request_id))
            return True

        return self._upsert(Scoped(n), node, go)

    def undrain(self, node: str) -> bool:
        n = self.tables.nodes
        stmt = update(n).where(n.c.node == node, n.c.drained == 1).values(drained=0, drain_id="")
        return self._run(lambda conn: conn.execute(stmt).rowcount == 1)

    def _failure_rows(self, conn: Connection, node: str | None = None) -> list[NodeFailures]:
        scope = self.tables.scoped("failures", self.service)
        n = scope.table
        query = select(n.c.node, n.c.strikes, n.c.failed_at, self.now).where(n.c.strikes > 0, *scope.where)
        if node is not None:
            query = query.where(n.c.node == node)
        found = []
        for row in conn.execute(query.order_by(n.c.node)).all():
            name = rows.name(field_name(n, "node", scope.owner), row.node)
            key = scope.name(name)
            now = num(row[3])
            strikes = rows.integer(field_name(n, "strikes", key), row.strikes)
            last = rows.stamp(field_name(n, "failed_at", key), row.failed_at, now)
            found.append(NodeFailures(name, strikes, last, now))
        return found

    def record_failure(self, node: str) -> NodeFailures:
        scope = self.tables.scoped("failures", self.service)
        n = scope.table

        def go(conn: Connection) -> NodeFailures:
            conn.execute(
                update(n).where(n.c.node == node, *scope.where).values(strikes=n.c.strikes + 1, failed_at=self.now)
            )
            return self._failure_rows(conn, node)[0]

        return self._upsert(scope, node, go)

    def failures(self) -> list[NodeFailures]:
        return self._run(self._failure_rows)

    def forget_failures(self, node: str, strikes: int | None = None) -> bool:
        scope = self.tables.scoped("failures", self.service)
        n = scope.table
        stmt = update(n).where(n.c.node == node, n.c.strikes > 0, *scope.where)
        if strikes is not None:
            stmt = stmt.where(n.c.strikes == strikes)
        return self._run(lambda conn: conn.execute(stmt.values(strikes=0, failed_at=0.0)).rowcount == 1)
