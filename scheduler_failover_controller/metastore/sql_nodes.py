"""The SQL metastore's per-node records: ``sfc_nodes``, one row per node with its drain and its failed
starts. A mixin of ``SQLMetastore``; setup creates the table in a store of an older release too
(additively: older controllers never read it)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import BigInteger, Column, Integer, String, Table, delete, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.expression import ColumnElement

from . import deadline as dl
from . import rows
from .events import REQUEST_ID_LIMIT
from .nodestate import NodeFailures, NodeStateStore, drained_entry
from .sql_tables import Double, field_name, meta_table, metadata, num

T = TypeVar("T")

nodes_table = Table(
    "sfc_nodes",
    metadata,
    Column("node", String(255), primary_key=True),
    Column("drained", Integer, nullable=False, server_default="0"),
    Column("drain_id", String(REQUEST_ID_LIMIT), nullable=False, server_default=""),
    Column("strikes", BigInteger, nullable=False, server_default="0"),
    Column("failed_at", Double, nullable=False, server_default="0"),
)


def read_drained(conn: Connection, locking: bool = False) -> dict[str, str]:
    """The drained nodes and their requests' ids, in one statement (part of ``read_state``).

    ``locking``: a locking read, which sees the latest commit (a plain read in MySQL's repeatable
    read sees the transaction's first snapshot)."""
    n = nodes_table
    query = select(n.c.node, n.c.drain_id).where(n.c.drained == 1).order_by(n.c.node)
    found = conn.execute(query.with_for_update() if locking else query).all()
    return dict(drained_entry(field_name(n, "drain_id", row.node), row.node, row.drain_id) for row in found)


class SQLNodes(NodeStateStore):
    """``drain``, ``undrain``, ``record_failure``, ``failures``, ``forget_failures`` as SQL."""

    now: ColumnElement[Any]

    if TYPE_CHECKING:  # SQLMetastore's and Metastore's, which come after this mixin

        def _run(self, fn: Callable[[Connection], T]) -> T: ...

        @contextlib.contextmanager
        def _call(self) -> Iterator[dl.Deadline]: ...

        def _step(self, d: dl.Deadline, fn: Callable[[Connection], T]) -> T: ...

    def _upsert(self, node: str, values: dict[str, Any], go: Callable[[Connection], T]) -> T:
        """``go`` in one transaction, after making sure ``node`` has a row (another client may insert it too)."""
        n = nodes_table

        def ensure(conn: Connection) -> T:
            if conn.execute(select(n.c.node).where(n.c.node == node)).first() is None:
                conn.execute(insert(n).values(node=node, **values))
            return go(conn)

        with self._call() as d:
            try:
                return self._step(d, ensure)
            except IntegrityError:  # inserted by another client at the same moment: it is there now
                return self._step(d, ensure)

    def drain(self, node: str, nodes: Sequence[str], request_id: str = "") -> bool:
        n, m = nodes_table, meta_table

        def go(conn: Connection) -> bool:
            # One drain at a time: the schema_version row is the lock (PostgreSQL, MySQL; SQLite
            # has one writer anyway), so two drains of the last two nodes cannot both pass.
            conn.execute(select(m.c.value).where(m.c.name == "schema_version").with_for_update()).scalar()
            drained = set(read_drained(conn, locking=True)) | {node}
            if not [x for x in nodes if x not in drained]:
                return False
            conn.execute(update(n).where(n.c.node == node).values(drained=1, drain_id=request_id))
            return True

        return self._upsert(node, {}, go)

    def undrain(self, node: str) -> bool:
        n = nodes_table
        stmt = update(n).where(n.c.node == node, n.c.drained == 1).values(drained=0, drain_id="")
        return self._run(lambda conn: conn.execute(stmt).rowcount == 1)

    def _failure_rows(self, conn: Connection, node: str | None = None) -> list[NodeFailures]:
        n = nodes_table
        query = select(n.c.node, n.c.strikes, n.c.failed_at, self.now).where(n.c.strikes > 0)
        if node is not None:
            query = query.where(n.c.node == node)
        found = []
        for row in conn.execute(query.order_by(n.c.node)).all():
            name = rows.name(field_name(n, "node"), row.node)
            now = num(row[3])
            strikes = rows.integer(field_name(n, "strikes", name), row.strikes)
            found.append(
                NodeFailures(name, strikes, rows.stamp(field_name(n, "failed_at", name), row.failed_at, now), now)
            )
        return found

    def record_failure(self, node: str) -> NodeFailures:
        n = nodes_table

        def go(conn: Connection) -> NodeFailures:
            conn.execute(update(n).where(n.c.node == node).values(strikes=n.c.strikes + 1, failed_at=self.now))
            return self._failure_rows(conn, node)[0]

        return self._upsert(node, {}, go)

    def failures(self) -> list[NodeFailures]:
        return self._run(self._failure_rows)

    def forget_failures(self, node: str, strikes: int | None = None) -> bool:
        n = nodes_table
        stmt = update(n).where(n.c.node == node, n.c.strikes > 0)
        if strikes is not None:
            stmt = stmt.where(n.c.strikes == strikes)
        return self._run(lambda conn: conn.execute(stmt.values(strikes=0, failed_at=0.0)).rowcount == 1)

    def _clear_nodes(self, conn: Connection) -> None:
        conn.execute(delete(nodes_table))
