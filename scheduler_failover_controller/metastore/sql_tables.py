"""The SQL metastore's tables, named with the fleet's prefix (``sfc_`` by default), the rows setup()
seeds, and small helpers on them.

Every table name is the prefix followed by a suffix, and no suffix ends with another one, so two
prefixes never name one table (``sfc_`` + ``observations_by_service`` is no other prefix's table).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
)
from sqlalchemy.engine import Connection
from sqlalchemy.sql.expression import ColumnElement

from . import rows
from .base import (
    LEADER,
    SCHEDULER,
    SCHEMA_VERSION,
    TEXT_LIMIT,
)
from .events import REQUEST_ID_LIMIT

# Seconds since the epoch, as a double on every database (FLOAT(53) is DOUBLE on MySQL/MariaDB and
# DOUBLE PRECISION on PostgreSQL). Spelled this way so that SQLAlchemy 1.4, the one inside an Airflow 2
# virtualenv, builds the same schema as 2.x's ``Double``.
Double = Float(precision=53)

DEFAULT_PREFIX = "sfc_"
#: What a prefix may be: the start of an SQL identifier on every database we support (the config checks the same).
PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,15}")


def prefix_problem(prefix: str) -> str | None:
    """Why ``prefix`` cannot start the metastore's table names (None: it can)."""
    if not PREFIX.fullmatch(prefix):
        return f"{prefix!r} is not a table name prefix (a letter or _, then up to 15 letters, digits or _)"
    return None


def event_service(where: str, value: Any) -> str:
    """The service an event row is of: '' (a release with one service wrote it, or the scheduler) is the scheduler."""
    return SCHEDULER if value == "" else rows.service_name(where, value)


def _node_key() -> Column[Any]:
    return Column("node", String(255), primary_key=True)


def _service_key() -> Column[Any]:
    return Column("service", String(64), primary_key=True)


def _observation_columns() -> list[Column[Any]]:
    return [
        Column("state", String(32), nullable=False),
        Column("pids", String(255), nullable=False),
        Column("detail", String(TEXT_LIMIT), nullable=False),
        Column("observed_at", Double, nullable=False),
        Column("by_host", String(255), nullable=False),
        Column("epoch", BigInteger, nullable=False),
        Column("leashed", Integer, nullable=False, server_default="0"),  # added after version 1, like paused
        Column("foreign_procs", String(TEXT_LIMIT), nullable=False, server_default=""),  # [[pid, user], ...]
    ]


def _report_columns() -> list[Column[Any]]:
    return [
        Column("holder", String(255), nullable=False),
        Column("state", String(32), nullable=False),
        Column("pids", String(255), nullable=False),
        Column("leashed", Integer, nullable=False),
        Column("foreign_procs", String(TEXT_LIMIT), nullable=False),
        Column("detail", String(TEXT_LIMIT), nullable=False),
        Column("answers", BigInteger, nullable=False),
        Column("started_for", BigInteger, nullable=False),
        Column("seq", BigInteger, nullable=False),
        Column("observed_at", Double, nullable=False),
    ]


def _failure_columns() -> list[Column[Any]]:
    return [
        Column("strikes", BigInteger, nullable=False, server_default="0"),
        Column("failed_at", Double, nullable=False, server_default="0"),
    ]


@dataclass(frozen=True)
class Scoped:
    """One service's rows of a per-node table: the table, the condition that picks them, and the key
    values an insert adds (none for the scheduler, whose rows are the tables a release with one service keeps)."""

    table: Table
    service: str = SCHEDULER
    where: tuple[ColumnElement[bool], ...] = ()
    key: dict[str, str] = field(default_factory=dict)

    @property
    def owner(self) -> str | None:
        """How a CorruptRecord names the rows of a field that is their key (None: the scheduler's)."""
        return None if self.service == SCHEDULER else self.service

    def name(self, node: str) -> str:
        """How a CorruptRecord names a row: ``n1``, or ``triggerer/n1`` for a service's."""
        return node if self.service == SCHEDULER else f"{self.service}/{node}"


class Schema:
    """Every table of one prefix, in one MetaData (see :func:`schema`)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.metadata = md = MetaData()
        p = prefix
        self._fleet_tables(p, md)
        self.observations = Table(f"{p}observations", md, _node_key(), *_observation_columns())
        self.events = Table(
            f"{p}events",
            md,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("at", Double, nullable=False),
            Column("host", String(255), nullable=False),
            Column("kind", String(32), nullable=False),
            Column("message", String(TEXT_LIMIT), nullable=False),
            Column("epoch", BigInteger, nullable=False),
            # The switchover request an event asks for or answers ('' for the others); added after version 1.
            Column("request_id", String(REQUEST_ID_LIMIT), nullable=False, server_default=""),
            # The service the event is of: '' the scheduler's (as a release with one service writes it).
            Column("service", String(64), nullable=False, server_default=""),
        )
        # Per node: its drain (the fleet's) and the scheduler's failed starts.
        self.nodes = Table(
            f"{p}nodes",
            md,
            _node_key(),
            Column("drained", Integer, nullable=False, server_default="0"),
            Column("drain_id", String(REQUEST_ID_LIMIT), nullable=False, server_default=""),
            *_failure_columns(),
        )
        self.reports = Table(f"{p}reports", md, _node_key(), *_report_columns())
        # The other services' own per-node records, keyed (service, node); a release with one
        # service never reads them.
        self.service_observations = Table(
            f"{p}observations_by_service", md, _service_key(), _node_key(), *_observation_columns()
        )
        self.service_reports = Table(f"{p}reports_by_service", md, _service_key(), _node_key(), *_report_columns())
        self.service_failures = Table(f"{p}failures_by_service", md, _service_key(), _node_key(), *_failure_columns())
        # Columns added to a released schema (each with a default); older controllers ignore them.
        self.added_columns: list[Column[Any]] = [
            self.controllers.c.paused,
            self.controllers.c.leashed,
            self.observations.c.leashed,
            self.observations.c.foreign_procs,
            self.events.c.request_id,
            self.events.c.service,
        ]
        # The rows setup() makes sure of: (table, row), each keyed by its ``name``.
        self.seeds: list[tuple[Table, dict[str, Any]]] = [
            (self.meta, {"name": "schema_version", "value": str(SCHEMA_VERSION)}),
            (self.meta, {"name": "paused", "value": "0"}),
            (self.meta, {"name": "switchover", "value": ""}),
            (self.meta, {"name": "node_control", "value": ""}),
            # The pending request's id, as "ID NODE MODE": it names the request it was written with, so an
            # older release that rewrites only the request row leaves an id that no longer matches it.
            (self.meta, {"name": "switchover_id", "value": ""}),
            (self.lease, {"name": LEADER, "epoch": 0, "acquired_at": 0.0, "expires_at": 0.0}),
            placement_seed(self, SCHEDULER),
        ]

    def _fleet_tables(self, p: str, md: MetaData) -> None:
        """The lease, meta, placement and registry tables: one row (or one per host) for the fleet."""
        self.meta = Table(
            f"{p}meta",
            md,
            Column("name", String(64), primary_key=True),
            Column("value", String(255), nullable=False),
        )
        self.lease = Table(
            f"{p}lease",
            md,
            Column("name", String(64), primary_key=True),
            Column("holder", String(255), nullable=True),
            Column("host", String(255), nullable=True),
            Column("epoch", BigInteger, nullable=False, default=0),
            Column("acquired_at", Double, nullable=False, default=0.0),
            Column("expires_at", Double, nullable=False, default=0.0),
        )
        # One row per service, keyed by its name: the scheduler's as a release with one service keeps it.
        self.placement = Table(
            f"{p}placement",
            md,
            Column("name", String(64), primary_key=True),
            Column("node", String(255), nullable=True),
            Column("epoch", BigInteger, nullable=False, default=0),
            Column("version", BigInteger, nullable=False, default=0),
            Column("expires_at", Double, nullable=False, default=0.0),
            Column("updated_at", Double, nullable=False, default=0.0),
        )
        self.controllers = Table(
            f"{p}controllers",
            md,
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

    def scoped(self, kind: str, service: str) -> Scoped:
        """``service``'s rows of the per-node table ``kind``: observations, reports or failures."""
        if service == SCHEDULER:
            return Scoped({"observations": self.observations, "reports": self.reports, "failures": self.nodes}[kind])
        table = {
            "observations": self.service_observations,
            "reports": self.service_reports,
            "failures": self.service_failures,
        }[kind]
        return Scoped(table, service, (table.c.service == service,), {"service": service})

    @property
    def service_tables(self) -> tuple[Table, ...]:
        return (self.service_observations, self.service_reports, self.service_failures)


def placement_seed(tables: Schema, service: str) -> tuple[Table, dict[str, Any]]:
    """The placement row a service starts with: nowhere, epoch and version 0."""
    return tables.placement, {"name": service, "epoch": 0, "version": 0, "expires_at": 0.0, "updated_at": 0.0}


@functools.cache
def schema(prefix: str = DEFAULT_PREFIX) -> Schema:
    """The tables named with ``prefix``: built once per prefix (SQLAlchemy's statement cache keys on them)."""
    return Schema(prefix)


# The default prefix's tables, as modules that name one table (tools, tests) know them.
_default = schema()
metadata = _default.metadata
meta_table = _default.meta
lease_table = _default.lease
placement_table = _default.placement
controllers_table = _default.controllers
observations_table = _default.observations
events_table = _default.events
ADDED_COLUMNS = _default.added_columns
SEEDS = _default.seeds


def num(value: Any) -> float:
    return float(value) if value is not None else 0.0


def field_name(table: Table, column: str, key: object = None) -> str:
    """How a CorruptRecord names a field: ``row sfc_lease.epoch``, ``row sfc_controllers[n1].pid``."""
    return f"row {table.name}{'' if key is None else f'[{key}]'}.{column}"


def execute(statement: Any, conn: Connection) -> None:
    conn.execute(statement)


def execute_sql(sql: str, conn: Connection) -> None:
    conn.exec_driver_sql(sql)
