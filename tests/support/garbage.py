"""Records no valid write produces, planted straight into a real store's rows and znodes.

``populate`` gives every table (znode) one valid record of each kind; ``SQL_FIELDS`` and
``ZK_FIELDS`` name every field the stores read, which call reads it, and garbage for it. Each
backend takes what its column types allow: SQLite keeps text in a number column, MariaDB and
PostgreSQL only numbers there (so their garbage is an implausible number), PostgreSQL also NaN.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from scheduler_failover_controller.metastore.base import ControllerInfo, Metastore, Observation
from scheduler_failover_controller.metastore.events import EventKind
from scheduler_failover_controller.metastore.sql import SQLMetastore
from scheduler_failover_controller.metastore.zookeeper import ZooKeeperMetastore

HOLDER, HOST = "n1:1:feed", "n1"
YEARS_AHEAD = 1e15  # an expiry or stamp some thirty million years ahead

NAMES = ("two words", "line\nbreak", "")  # holders, hosts, nodes: any SQL text column takes them
LABELS = ("bell\x07", "line\nbreak")  # roles, states, kinds, versions


def populate(store: Metastore) -> None:
    """One valid record of each kind: lease, placement, a controller, an observation, an event."""
    store.setup()
    lease = store.acquire_or_renew(HOLDER, HOST, 30)
    assert lease is not None
    placement = store.read_state().placement
    assert store.set_placement(HOST, HOLDER, lease.epoch, placement.version, 30) is not None
    store.heartbeat(ControllerInfo(HOST, HOLDER, 4242, "1.0", "active", 0, 0, leashed=True))
    assert store.record_observations(HOLDER, lease.epoch, [Observation(HOST, "running", (77,), "ok", by_host=HOST)])
    store.add_event(HOST, EventKind.ELECTED, "n1 became active", lease.epoch)


def read(store: Metastore, call: str) -> object:
    """Run the store call that reads a field ("setup": a fresh look at the schema version)."""
    if call == "setup":
        store._ready = False
        store.setup()
        return None
    method: Callable[[], object] = getattr(store, call)
    return method()


# --- SQL -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SqlField:
    table: str
    column: str
    key: tuple[str, object] | None  # (key column, value) of the row planted in (None: the lowest)
    call: str  # the store call that reads it
    anywhere: tuple[object, ...] = ()  # garbage every SQL backend stores
    sqlite: tuple[object, ...] = ()  # only SQLite (text in a number column, ...)
    postgresql: tuple[object, ...] = ()  # only PostgreSQL (NaN, infinities)

    @property
    def label(self) -> str:
        key = f"[{self.key[1]}]" if self.key and self.table == "sfc_meta" else ""
        return f"{self.table}{key}.{self.column}"

    def garbage(self, backend: str) -> tuple[object, ...]:
        extra = {"sqlite": self.sqlite, "postgresql": self.postgresql}.get(backend, ())
        return self.anywhere + extra

    def named_in(self, message: str) -> bool:
        """Whether a CorruptRecord's message names this table (row) and field."""
        row = f"{self.table}[{self.key[1]}]" if self.key and self.table == "sfc_meta" else self.table
        return f"row {row}" in message and f".{self.column}" in message


def _stamps(call: str, table: str, column: str, key: tuple[str, object] | None) -> SqlField:
    """A time the server stamps: negative or years ahead anywhere, NaN/infinite on PostgreSQL."""
    return SqlField(
        table, column, key, call, (-1.0, YEARS_AHEAD), ("soon", b"\x00\x01"), (math.nan, math.inf, -math.inf)
    )


def _counter(call: str, table: str, column: str, key: tuple[str, object] | None, low: int = -1) -> SqlField:
    return SqlField(table, column, key, call, (low,), ("x", 1.5, b"\x01"))


def _flag(call: str, table: str, column: str, key: tuple[str, object]) -> SqlField:
    return SqlField(table, column, key, call, (2, -1), ("yes",))


LEASE_ROW = ("name", "leader")
PLACEMENT_ROW = ("name", "scheduler")
CONTROLLER_ROW = ("host", HOST)
OBSERVATION_ROW = ("node", HOST)
EVENT_ROW = ("id", None)  # the oldest event

SQL_FIELDS: list[SqlField] = [
    SqlField("sfc_meta", "value", ("name", "schema_version"), "setup", ("abc", "-1", "1.5", "")),
    SqlField("sfc_meta", "value", ("name", "paused"), "read_state", ("yes", "2", "")),
    SqlField("sfc_meta", "value", ("name", "switchover"), "read_state", ("n2", "n2 sideways", " forced", "a b forced")),
    SqlField("sfc_lease", "holder", LEASE_ROW, "read_state", NAMES, (b"\xff",)),
    SqlField("sfc_lease", "host", LEASE_ROW, "read_state", NAMES, (b"\xff",)),
    _counter("read_state", "sfc_lease", "epoch", LEASE_ROW),
    _stamps("read_state", "sfc_lease", "acquired_at", LEASE_ROW),
    SqlField(
        "sfc_lease", "expires_at", LEASE_ROW, "read_state", (YEARS_AHEAD,), ("soon", b"\x01"), (math.nan, math.inf)
    ),
    SqlField("sfc_placement", "node", PLACEMENT_ROW, "read_state", NAMES, (b"\xff",)),
    _counter("read_state", "sfc_placement", "epoch", PLACEMENT_ROW),
    _counter("read_state", "sfc_placement", "version", PLACEMENT_ROW),
    SqlField(
        "sfc_placement", "expires_at", PLACEMENT_ROW, "read_state", (YEARS_AHEAD,), ("soon",), (math.nan, math.inf)
    ),
    _stamps("read_state", "sfc_placement", "updated_at", PLACEMENT_ROW),
    SqlField("sfc_controllers", "host", CONTROLLER_ROW, "controllers", NAMES),
    SqlField("sfc_controllers", "holder", CONTROLLER_ROW, "controllers", NAMES),
    _counter("controllers", "sfc_controllers", "pid", CONTROLLER_ROW, low=0),
    SqlField("sfc_controllers", "version", CONTROLLER_ROW, "controllers", LABELS, (b"\x01",)),
    SqlField("sfc_controllers", "role", CONTROLLER_ROW, "controllers", LABELS, ("x" * 40,)),
    _stamps("controllers", "sfc_controllers", "last_seen", CONTROLLER_ROW),
    _stamps("controllers", "sfc_controllers", "started_at", CONTROLLER_ROW),
    _flag("controllers", "sfc_controllers", "paused", CONTROLLER_ROW),
    _flag("controllers", "sfc_controllers", "leashed", CONTROLLER_ROW),
    SqlField("sfc_observations", "node", OBSERVATION_ROW, "observations", NAMES),
    SqlField("sfc_observations", "state", OBSERVATION_ROW, "observations", LABELS),
    SqlField(
        "sfc_observations",
        "pids",
        OBSERVATION_ROW,
        "observations",
        ("not json", "[0]", '{"a": 1}', '["77"]', "[true]", "[" * 200, "[1e999]"),
        (b"[77]",),
    ),
    SqlField("sfc_observations", "detail", OBSERVATION_ROW, "observations", (), (b"\xff", "x" * 2000)),
    _stamps("observations", "sfc_observations", "observed_at", OBSERVATION_ROW),
    SqlField("sfc_observations", "by_host", OBSERVATION_ROW, "observations", NAMES[:2]),
    _counter("observations", "sfc_observations", "epoch", OBSERVATION_ROW),
    _flag("observations", "sfc_observations", "leashed", OBSERVATION_ROW),
    SqlField("sfc_events", "id", EVENT_ROW, "events", (0, -1)),
    _stamps("events", "sfc_events", "at", EVENT_ROW),
    SqlField("sfc_events", "host", EVENT_ROW, "events", NAMES),
    SqlField("sfc_events", "kind", EVENT_ROW, "events", LABELS),
    SqlField("sfc_events", "message", EVENT_ROW, "events", (), (b"\xff", "x" * 2000)),
    _counter("events", "sfc_events", "epoch", EVENT_ROW),
    SqlField("sfc_events", "request_id", EVENT_ROW, "events", ("two words", "semi;colon"), ("x" * 33,)),
]


def sql_backend(store: SQLMetastore) -> str:
    return "postgresql" if store.backend == "postgresql" else store.backend


def plant_sql(store: SQLMetastore, field: SqlField, value: object) -> Callable[[], None]:
    """Write ``value`` into the field, bypassing every check; returns what puts the old value back."""
    from sqlalchemy import text

    assert field.key is not None
    key_column, key = field.key
    if key is None:
        with store.engine.connect() as conn:
            key = conn.execute(text(f"SELECT MIN({key_column}) FROM {field.table}")).scalar_one()
    with store.engine.begin() as conn:
        old: Any = conn.execute(
            text(f"SELECT {field.column} FROM {field.table} WHERE {key_column} = :k"), {"k": key}
        ).scalar_one()
        conn.execute(
            text(f"UPDATE {field.table} SET {field.column} = :v WHERE {key_column} = :k"), {"v": value, "k": key}
        )
    now_key = value if field.column == key_column else key

    def restore() -> None:
        with store.engine.begin() as conn:
            if (
                field.column == key_column
                and conn.execute(text(f"SELECT 1 FROM {field.table} WHERE {key_column} = :k"), {"k": old}).first()
            ):  # written anew meanwhile (a heartbeat of its host): the garbage row goes
                conn.execute(text(f"DELETE FROM {field.table} WHERE {key_column} = :k"), {"k": now_key})
                return
            conn.execute(
                text(f"UPDATE {field.table} SET {field.column} = :v WHERE {key_column} = :k"), {"v": old, "k": now_key}
            )

    return restore


# --- ZooKeeper -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ZkField:
    znode: str  # under the store's root ("events/" + the first event's name: see zk_path)
    member: str | None  # a member of its JSON ("n1.state": of an observation); None: the whole data
    call: str
    garbage: tuple[object, ...]  # bytes for the whole data, JSON values for a member

    @property
    def label(self) -> str:
        return f"{self.znode}{'' if self.member is None else ' ' + self.member}"

    def named_in(self, message: str, path: str) -> bool:
        if f"znode {path}" not in message:
            return False
        return self.member is None or f"field {self.member}" in message


ZK_FIELDS: list[ZkField] = [
    ZkField("schema", None, "setup", (b"abc", b"-1", b"", b"\xff")),
    ZkField("paused", None, "read_state", (b"yes", b"", b"true")),
    ZkField("switchover", None, "read_state", (b"n2 forced", b"[1]", b"\xff")),
    ZkField("switchover", "node", "read_state", (5, None, "two words")),
    ZkField("switchover", "mode", "read_state", ("sideways", None)),
    ZkField("switchover", "id", "read_state", (5, "two words", "x" * 33)),
    ZkField("leader", None, "read_state", (b"{", b"[]", b"null")),
    ZkField("leader", "holder", "read_state", (None, 5, "two words")),
    ZkField("leader", "host", "read_state", (5, "line\nbreak")),
    ZkField("leader", "ttl", "read_state", ("soon", -1, YEARS_AHEAD, None, True)),
    ZkField("placement", None, "read_state", (b"x", b"null", b"[" * 5000)),
    ZkField("placement", "node", "read_state", (5, "two words")),
    ZkField("placement", "epoch", "read_state", ("x", -1, 1.5, True, None)),
    ZkField("placement", "version", "read_state", ("x", -1, 1.5)),
    ZkField("placement", "ttl", "read_state", ("soon", -1, YEARS_AHEAD, None)),
    ZkField("observations", None, "observations", (b"x", b"[]")),
    ZkField("observations", "n1", "observations", (5, "x")),
    ZkField("observations", "n1.state", "observations", (5, "line\nbreak")),
    ZkField("observations", "n1.pids", "observations", ("[77]", [0], [True], None)),
    ZkField("observations", "n1.detail", "observations", (5, None)),
    ZkField("observations", "n1.by", "observations", (5, "two words")),
    ZkField("observations", "n1.leashed", "observations", ("yes", 2)),
    ZkField("controllers/n1", None, "controllers", (b"x", b"5")),
    ZkField("controllers/n1", "holder", "controllers", (None, "two words")),
    ZkField("controllers/n1", "pid", "controllers", ("x", 0, -1, True)),
    ZkField("controllers/n1", "version", "controllers", (5, "line\nbreak")),
    ZkField("controllers/n1", "role", "controllers", (None, "bell\x07")),
    ZkField("controllers/n1", "paused", "controllers", ("no", 2)),
    ZkField("controllers/n1", "leashed", "controllers", ("no", 2)),
    ZkField("events/", None, "events", (b"x",)),
    ZkField("events/", "host", "events", (5, "two words")),
    ZkField("events/", "kind", "events", (None, "line\nbreak")),
    ZkField("events/", "message", "events", (5,)),
    ZkField("events/", "epoch", "events", ("x", -1)),
    ZkField("events/", "request_id", "events", (5, None, "two words")),
]


def zk_path(store: ZooKeeperMetastore, field: ZkField) -> str:
    if field.znode == "events/":
        return store._p("events", sorted(store.client.get_children(store._p("events")))[0])
    return store._p(*field.znode.split("/"))


def populate_zk(store: ZooKeeperMetastore) -> None:
    """``populate``, plus a pending switchover (so that its members exist)."""
    populate(store)
    store.request_switchover(HOST, "controlled", "request-1")


def plant_zk(store: ZooKeeperMetastore, field: ZkField, value: object) -> Callable[[], None]:
    path = zk_path(store, field)
    old, _ = store.client.get(path)
    if field.member is None:
        assert isinstance(value, bytes)
        data = value
    else:
        document = json.loads(old.decode())
        parent, _, member = field.member.rpartition(".")
        (document[parent] if parent else document)[member] = value
        data = json.dumps(document).encode()
    store.client.set(path, data)

    def restore() -> None:
        store.client.set(path, old)

    return restore


def one_line(message: str) -> bool:
    return "\n" not in message and "\r" not in message and message.startswith("metastore ") and len(message) < 400


def planted(garbage: Any) -> str:
    return repr(garbage)[:40]
