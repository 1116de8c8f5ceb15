"""The SQL metastore's tables (all prefixed ``sfc_``), the rows setup() seeds, and small helpers on them."""

from __future__ import annotations

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
    Column("foreign_procs", String(TEXT_LIMIT), nullable=False, server_default=""),  # [[pid, user], ...]
)
events_table = Table(
    "sfc_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Double, nullable=False),
    Column("host", String(255), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("message", String(TEXT_LIMIT), nullable=False),
    Column("epoch", BigInteger, nullable=False),
    # The switchover request an event asks for or answers ('' for the others); added after version 1.
    Column("request_id", String(REQUEST_ID_LIMIT), nullable=False, server_default=""),
)
# Columns added to a released schema (each with a default); older controllers ignore them.
ADDED_COLUMNS = [
    controllers_table.c.paused,
    controllers_table.c.leashed,
    observations_table.c.leashed,
    observations_table.c.foreign_procs,
    events_table.c.request_id,
]


def num(value: Any) -> float:
    return float(value) if value is not None else 0.0


def field_name(table: Table, column: str, key: object = None) -> str:
    """How a CorruptRecord names a field: ``row sfc_lease.epoch``, ``row sfc_controllers[n1].pid``."""
    return f"row {table.name}{'' if key is None else f'[{key}]'}.{column}"


def execute(statement: Any, conn: Connection) -> None:
    conn.execute(statement)


def execute_sql(sql: str, conn: Connection) -> None:
    conn.exec_driver_sql(sql)


# The rows setup() makes sure of: (table, row), each keyed by its ``name``.
SEEDS: list[tuple[Table, dict[str, Any]]] = [
    (meta_table, {"name": "schema_version", "value": str(SCHEMA_VERSION)}),
    (meta_table, {"name": "paused", "value": "0"}),
    (meta_table, {"name": "switchover", "value": ""}),
    # The pending request's id, as "ID NODE MODE": it names the request it was written with, so an
    # older release that rewrites only the request row leaves an id that no longer matches it.
    (meta_table, {"name": "switchover_id", "value": ""}),
    (lease_table, {"name": LEADER, "epoch": 0, "acquired_at": 0.0, "expires_at": 0.0}),
    (placement_table, {"name": SCHEDULER, "epoch": 0, "version": 0, "expires_at": 0.0, "updated_at": 0.0}),
]
