"""The SQL metastore's controller registry (``sfc_controllers``, one row per host: the fleet's) and the
active's observations (``sfc_observations``, the scheduler's; another service's are its rows of
``sfc_observations_by_service``; rewritten whole, fenced by the writer's epoch). A mixin of ``SQLMetastore``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.expression import ColumnElement

from . import deadline as dl
from . import rows
from .base import TEXT_LIMIT, ControllerInfo, Observation, capped, foreign_rows
from .sql_tables import Schema, field_name, num

T = TypeVar("T")


class SQLRegistry:
    """``heartbeat``, ``deregister``, ``controllers``, ``record_observations``, ``observations`` as SQL."""

    now: ColumnElement[Any]
    tables: Schema
    service: str

    if TYPE_CHECKING:  # SQLMetastore's and Metastore's, which come after this mixin

        def _run(self, fn: Callable[[Connection], T]) -> T: ...

        @contextlib.contextmanager
        def _call(self) -> Iterator[dl.Deadline]: ...

        def _step(self, d: dl.Deadline, fn: Callable[[Connection], T]) -> T: ...

        def _leader_is(self, holder: str, epoch: int) -> ColumnElement[bool]: ...

    def heartbeat(self, info: ControllerInfo) -> None:
        c = self.tables.controllers
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
        c = self.tables.controllers
        self._run(lambda conn: conn.execute(delete(c).where(c.c.host == host, c.c.holder == holder)))

    def controllers(self) -> list[ControllerInfo]:
        c = self.tables.controllers

        def decode(r: Any) -> ControllerInfo:
            host = rows.name(field_name(c, "host"), r.host)
            now = num(r[-1])
            return ControllerInfo(
                host=host,
                holder=rows.holder(field_name(c, "holder", host), r.holder),
                pid=rows.integer(field_name(c, "pid", host), r.pid, minimum=1),
                version=rows.label(field_name(c, "version", host), r.version, 64),
                role=rows.label(field_name(c, "role", host), r.role, 32),
                last_seen=rows.stamp(field_name(c, "last_seen", host), r.last_seen, now),
                started_at=rows.stamp(field_name(c, "started_at", host), r.started_at, now),
                server_now=now,
                paused=rows.flag(field_name(c, "paused", host), r.paused),
                leashed=rows.flag(field_name(c, "leashed", host), r.leashed),
            )

        def go(conn: Connection) -> list[ControllerInfo]:
            return [decode(r) for r in conn.execute(select(c, self.now).order_by(c.c.host)).all()]

        return self._run(go)

    def record_observations(self, holder: str, epoch: int, observations: list[Observation]) -> bool:
        scope = self.tables.scoped("observations", self.service)
        o = scope.table

        def go(conn: Connection) -> bool:
            if not conn.execute(select(self._leader_is(holder, epoch))).scalar():
                return False
            conn.execute(delete(o).where(*scope.where))
            for obs in observations:
                conn.execute(
                    insert(o).values(
                        **scope.key,
                        node=obs.node,
                        state=obs.state,
                        pids=json.dumps(list(obs.pids)),
                        detail=capped(obs.detail),
                        observed_at=self.now,
                        by_host=obs.by_host,
                        epoch=epoch,
                        leashed=int(obs.leashed),
                        foreign_procs=json.dumps(foreign_rows(obs.foreign)) if obs.foreign else "",
                    )
                )
            return True

        return self._run(go)

    def observations(self) -> list[Observation]:
        scope = self.tables.scoped("observations", self.service)
        o = scope.table

        def decode(r: Any) -> Observation:
            node = rows.name(field_name(o, "node", scope.owner), r.node)
            key = scope.name(node)
            now = num(r[-1])
            rows.integer(field_name(o, "epoch", key), r.epoch)
            return Observation(
                node=node,
                state=rows.label(field_name(o, "state", key), r.state, 32),
                pids=rows.pids(field_name(o, "pids", key), r.pids, encoded=True),
                detail=rows.text(field_name(o, "detail", key), r.detail, TEXT_LIMIT),
                observed_at=rows.stamp(field_name(o, "observed_at", key), r.observed_at, now),
                by_host=rows.name(field_name(o, "by_host", key), r.by_host, empty=True),
                server_now=now,
                leashed=rows.flag(field_name(o, "leashed", key), r.leashed),
                foreign=rows.foreign(field_name(o, "foreign_procs", key), r.foreign_procs, encoded=True),
            )

        def go(conn: Connection) -> list[Observation]:
            query = select(o, self.now).where(*scope.where).order_by(o.c.node)
            return [decode(r) for r in conn.execute(query).all()]

        return self._run(go)
