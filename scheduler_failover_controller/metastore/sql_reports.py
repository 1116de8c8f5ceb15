"""The SQL metastore's self-mode records: ``sfc_reports`` (one row per node: the scheduler's;
another service's are its rows of ``sfc_reports_by_service``) and ``node_control`` (a row of
``sfc_meta``, the fleet's). A mixin of ``SQLMetastore``; the tables are created by setup like the others."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.expression import ColumnElement

from . import deadline as dl
from . import rows
from .base import TEXT_LIMIT, capped, foreign_rows
from .reports import NodeReport, ReportStore, node_control_value
from .sql_tables import Schema, field_name, num

T = TypeVar("T")

NODE_CONTROL = "node_control"  # its row in sfc_meta ("" until a controller records one)


class SQLReports(ReportStore):
    """``write_report``, ``reports``, ``claim_node_control``, ``set_node_control`` as SQL."""

    now: ColumnElement[Any]
    tables: Schema
    service: str

    if TYPE_CHECKING:  # SQLMetastore's and Metastore's, which come after this mixin

        def _run(self, fn: Callable[[Connection], T]) -> T: ...

        @contextlib.contextmanager
        def _call(self) -> Iterator[dl.Deadline]: ...

        def _step(self, d: dl.Deadline, fn: Callable[[Connection], T]) -> T: ...

    def write_report(self, report: NodeReport) -> bool:
        scope = self.tables.scoped("reports", self.service)
        r = scope.table
        values = {
            "holder": report.holder,
            "state": report.state,
            "pids": json.dumps(list(report.pids)),
            "leashed": int(report.leashed),
            "foreign_procs": json.dumps(foreign_rows(report.foreign)) if report.foreign else "",
            "detail": capped(report.detail),
            "answers": report.answers,
            "started_for": report.started_for,
            "seq": report.seq,
            "observed_at": self.now,
        }

        def go(conn: Connection) -> bool:
            mine = (r.c.node == report.node, *scope.where)
            if conn.execute(update(r).where(*mine, r.c.seq < report.seq).values(**values)).rowcount:
                return True
            if conn.execute(select(r.c.seq).where(*mine)).first() is not None:
                return False  # a newer report is stored
            conn.execute(insert(r).values(node=report.node, **scope.key, **values))
            return True

        with self._call() as d:  # one deadline for both tries
            try:
                return self._step(d, go)
            except IntegrityError:  # our own row inserted at the same moment (by an older write)
                return self._step(d, go)

    def reports(self) -> list[NodeReport]:
        scope = self.tables.scoped("reports", self.service)
        r = scope.table

        def decode(row: Any) -> NodeReport:
            node = rows.name(field_name(r, "node", scope.owner), row.node)
            now = num(row[-1])

            def where(column: str) -> str:
                return field_name(r, column, scope.name(node))

            return NodeReport(
                node=node,
                holder=rows.holder(where("holder"), row.holder),
                state=rows.label(where("state"), row.state, 32),
                pids=rows.pids(where("pids"), row.pids, encoded=True),
                leashed=rows.flag(where("leashed"), row.leashed),
                foreign=rows.foreign(where("foreign_procs"), row.foreign_procs, encoded=True),
                detail=rows.text(where("detail"), row.detail, TEXT_LIMIT),
                answers=rows.integer(where("answers"), row.answers),
                started_for=rows.integer(where("started_for"), row.started_for),
                seq=rows.integer(where("seq"), row.seq),
                observed_at=rows.stamp(where("observed_at"), row.observed_at, now),
                server_now=now,
            )

        def go(conn: Connection) -> list[NodeReport]:
            query = select(r, self.now).where(*scope.where).order_by(r.c.node)
            return [decode(row) for row in conn.execute(query).all()]

        return self._run(go)

    def _node_control(self, conn: Connection) -> str | None:
        m = self.tables.meta
        raw = conn.execute(select(m.c.value).where(m.c.name == NODE_CONTROL)).scalar()
        return node_control_value(field_name(m, "value", NODE_CONTROL), "" if raw is None else raw)

    def read_node_control(self) -> str | None:
        return self._run(self._node_control)

    def claim_node_control(self, value: str) -> str:
        m = self.tables.meta

        def go(conn: Connection) -> str:
            conn.execute(update(m).where(m.c.name == NODE_CONTROL, m.c.value == "").values(value=value))
            return self._node_control(conn) or value

        return self._run(go)

    def set_node_control(self, value: str) -> bool:
        m = self.tables.meta

        def go(conn: Connection) -> bool:
            paused = conn.execute(select(m.c.value).where(m.c.name == "paused").with_for_update()).scalar()
            if not rows.paused(field_name(m, "value", "paused"), paused):
                return False
            conn.execute(update(m).where(m.c.name == NODE_CONTROL).values(value=value))
            return True

        return self._run(go)
