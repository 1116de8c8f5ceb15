"""Services beside the scheduler in the SQL metastore: one view of the store per service.

A service's own records are keyed by its name: its row of ``sfc_placement`` (``name = NAME``), its
switchover request in rows ``switchover:NAME`` and ``switchover_id:NAME`` of ``sfc_meta``, and its
rows of ``sfc_observations_by_service``, ``sfc_reports_by_service`` and ``sfc_failures_by_service``
(keyed (service, node)). The scheduler's stay where a release with one service keeps them, so
both releases can run side by side. Everything else is the fleet's and every view reads and writes
the same rows: the lease (one lease, one epoch: every fenced write of a view checks it in the same
statement, as the scheduler's do), the controller registry, paused, node_control, the drained
nodes and the event history (an event of a service names it in its ``service`` column).

A view is the store's own code with its service's keys. It shares its parent's engine, connection
pool and deadline guards, and its ``close`` closes nothing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ..exceptions import MetastoreError
from . import deadline as dl
from . import sql_switchover
from .base import SCHEDULER, Metastore
from .rows import service_name, service_name_problem
from .service_dump import dump_service
from .sql import SQLMetastore
from .sql_tables import field_name, placement_seed

#: Attributes of the parent a view does not share: its own setup state and the parent's views.
_OWN = ("_ready", "_catalog", "_service_views")


class SQLServiceView(SQLMetastore):
    """Service ``name``'s view of ``parent`` (see the module docstring)."""

    def __init__(self, parent: SQLMetastore, name: str) -> None:
        # Not SQLMetastore.__init__: the engine, its pool and its guards are the parent's.
        self.__dict__.update({k: v for k, v in vars(parent).items() if k not in _OWN})
        self._parent = parent
        self.service = name

    def _prepare(self, d: dl.Deadline) -> tuple[str, object]:
        """The fleet's setup (once per client), then this service's rows, each inserted if missing."""
        if not self._parent._ready:
            self._parent._setup(d)
        t = self.tables
        seeds = [placement_seed(t, self.service)]
        seeds += [(t.meta, {"name": row, "value": ""}) for row in sql_switchover.names(self.service)]
        version = select(t.meta.c.value).where(t.meta.c.name == "schema_version")

        def seed(conn: Connection) -> Any:
            for table, row in seeds:
                if conn.execute(select(table.c.name).where(table.c.name == row["name"])).first() is None:
                    conn.execute(insert(table).values(**row))
            return conn.execute(version).scalar()

        try:
            found = self._step(d, seed)
        except IntegrityError:  # another controller seeded a row at the same moment: its rows are there now
            found = self._step(d, seed)
        return field_name(t.meta, "value", "schema_version"), found

    def _upgrade(self, d: dl.Deadline) -> None:
        """Nothing: the parent's setup brought the tables up to date."""

    def close(self) -> None:
        """Nothing: the engine is the parent's."""

    def for_service(self, name: str) -> Metastore:
        return self._parent.for_service(name)

    def dump(self) -> dict[str, Any]:
        return self._parent.dump()


def service_view(parent: SQLMetastore, name: str) -> SQLServiceView:
    """Service ``name``'s view of ``parent``: one per name and store, set up on its first call."""
    problem = service_name_problem(name) if isinstance(name, str) else "is not text"
    if problem is not None:
        raise MetastoreError(f"service {name!r} {problem}")
    views: dict[str, SQLServiceView] = parent.__dict__.setdefault("_service_views", {})
    if name not in views:
        views[name] = SQLServiceView(parent, name)
    return views[name]


def stored_services(store: SQLMetastore) -> list[str]:
    """The services other than the scheduler with records in the store, by name."""
    t = store.tables
    keys = [(t.placement, t.placement.c.name), *((table, table.c.service) for table in t.service_tables)]

    def go(conn: Connection) -> list[str]:
        found = set()
        for table, column in keys:
            query = select(column).distinct()
            if table is t.placement:  # its scheduler's row is the one a release with one service keeps
                query = query.where(column != SCHEDULER)
            names: list[Any] = list(conn.execute(query).scalars())
            for name in names:
                found.add(service_name(field_name(table, column.name), name))
        return sorted(found)

    return store._run(go)


def dump_services(store: SQLMetastore) -> list[dict[str, Any]]:
    """Each stored service's own records, as ``dump`` shows the scheduler's."""
    return [dump_service(store.for_service(name), name) for name in stored_services(store)]
