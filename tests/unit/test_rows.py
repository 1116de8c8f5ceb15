"""Records no valid write produces, in a real SQLite file (planted with plain SQL) and in ZooKeeper's
JSON (decoded without a server): each is a CorruptRecord for the call that reads it, one line naming
the table (or znode) and the field, and nothing else ever escapes (no ValueError, no JSONDecodeError).
The same garbage on MariaDB, PostgreSQL and a real ZooKeeper: tests/contract/test_metastore_rows.py."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from sqlalchemy.exc import SQLAlchemyError

from scheduler_failover_controller.exceptions import CorruptRecord, MetastoreError
from scheduler_failover_controller.metastore import rows, zookeeper_records
from scheduler_failover_controller.metastore.base import ClusterState, Lease, Placement
from scheduler_failover_controller.metastore.sql import SQLMetastore
from tests.support.garbage import SQL_FIELDS, SqlField, one_line, plant_sql, populate, read

NOW = 1_700_000_000.0


def sqlite_store(path: Path) -> SQLMetastore:
    store = SQLMetastore(f"sqlite:///{path}", 2.0)
    populate(store)
    return store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLMetastore]:
    s = sqlite_store(tmp_path / "metastore.db")
    yield s
    s.close()


# --- every field, its garbage, on SQLite ----------------------------------------------------------


@pytest.mark.parametrize("field", SQL_FIELDS, ids=lambda f: f.label)
def test_garbage_in_a_sqlite_field_is_one_line_naming_it_and_recovers(store: SQLMetastore, field: SqlField) -> None:
    read(store, field.call)  # populated: reads fine
    for garbage in field.garbage("sqlite"):
        restore = plant_sql(store, field, garbage)
        with pytest.raises(CorruptRecord) as info:
            read(store, field.call)
        message = str(info.value)
        assert isinstance(info.value, MetastoreError)
        assert one_line(message), message
        assert field.named_in(message), f"{field.label} not named in {message!r}"
        assert rows.shorten(garbage)[:20] in message
        if field.call == "read_state":
            with pytest.raises(CorruptRecord):
                store.dump()  # metadata's view
        restore()
        read(store, field.call)  # fixed row: reads fine again


@pytest.mark.parametrize("field", [f for f in SQL_FIELDS if f.call != "setup"], ids=lambda f: f.label)
def test_clear_repairs_every_field_but_the_schema_version(store: SQLMetastore, field: SqlField) -> None:
    """clear_metadata wipes what it can read back clean: the epoch kept, a counter no write makes reset."""
    epoch = store.read_state().lease.epoch
    plant_sql(store, field, field.garbage("sqlite")[0])
    store.clear()
    state = store.read_state()
    assert state.lease.holder is None and state.placement.node is None and not state.paused
    assert store.controllers() == [] and store.observations() == [] and store.events() == []
    if field.column != "epoch":
        assert state.lease.epoch == epoch  # fencing tokens never go back
    lease = store.acquire_or_renew("n2:2:beef", "n2", 5)
    assert lease is not None and lease.epoch >= 1


def test_a_missing_row_is_named(store: SQLMetastore) -> None:
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM sfc_placement")
    with pytest.raises(CorruptRecord, match=r"^metastore row sfc_placement\[scheduler\] is missing$"):
        store.read_state()


def test_a_write_that_reads_a_corrupt_row_back_is_rolled_back(store: SQLMetastore) -> None:
    """renew_placement reads the placement it renewed: refused as a whole, nothing written."""
    field = next(f for f in SQL_FIELDS if f.table == "sfc_placement" and f.column == "version")
    plant_sql(store, field, "x")
    before = _raw(store, "SELECT expires_at FROM sfc_placement")
    with pytest.raises(CorruptRecord, match=r"sfc_placement\.version"):
        store.renew_placement("n1", 30)
    assert _raw(store, "SELECT expires_at FROM sfc_placement") == before


def _raw(store: SQLMetastore, sql: str) -> Any:
    with store.engine.connect() as conn:
        return conn.exec_driver_sql(sql).scalar()


# --- anything at all in any field (hypothesis) ------------------------------------------------------

ANYTHING = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),  # SQLite keeps NaN as NULL
    st.text(max_size=80),
    st.binary(max_size=20),
    st.sampled_from(["[1, 2]", "[]", "[0]", "[-1]", '{"a": 1}', "1e999", "0", "1", "n1 forced", "n1 controlled"]),
    st.builds(lambda n: f"{NOW + n}", st.floats(-1e6, 1e6)),
)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SQLMetastore]:
    s = sqlite_store(tmp_path_factory.mktemp("rows") / "metastore.db")
    yield s
    s.close()


@settings(max_examples=300, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(SQL_FIELDS), value=ANYTHING)
def test_any_value_in_any_sqlite_field_is_read_or_refused_in_one_line(
    shared: SQLMetastore, field: SqlField, value: object
) -> None:
    try:
        restore = plant_sql(shared, field, value)
    except SQLAlchemyError:  # refused by SQLite itself (NOT NULL, an INTEGER PRIMARY KEY)
        reject()
    try:
        read(shared, field.call)
    except CorruptRecord as exc:
        assert one_line(str(exc)) and field.named_in(str(exc)), str(exc)
    except MetastoreError as exc:  # a valid schema version, newer than ours
        assert field.call == "setup" and "is newer than this controller's" in str(exc)
    finally:
        restore()


# --- ZooKeeper's JSON, decoded without a server --------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
STAT = SimpleNamespace(mtime=int(NOW * 1000), ctime=int(NOW * 1000), version=3)


def _document(valid: dict[str, Any], key: str, value: object) -> bytes:
    return json.dumps({**valid, key: value}).encode()


VALID_PLACEMENT = {"node": "n1", "epoch": 2, "version": 3, "ttl": 5.0}
VALID_CONTROLLER = {"holder": "n1:1:ab", "pid": 7, "version": "1.0", "role": "active", "paused": False, "leashed": True}
VALID_EVENT = {"host": "n1", "kind": "elected", "message": "m", "epoch": 1}
VALID_OBSERVATION = {"state": "running", "pids": [7], "detail": "", "by": "n1", "leashed": True}


def _decoders() -> list[tuple[str, dict[str, Any], Any]]:
    z = zookeeper_records
    return [
        (
            "/sfc/placement",
            VALID_PLACEMENT,
            lambda data: z.decode_placement("/sfc/placement", data, STAT, NOW),
        ),
        (
            "/sfc/controllers/n1",
            VALID_CONTROLLER,
            lambda data: z.decode_controller("/sfc/controllers/n1", "n1", data, STAT, NOW),
        ),
        (
            "/sfc/events/e-0000000001",
            VALID_EVENT,
            lambda data: z.decode_event("/sfc/events/e-0000000001", data, STAT),
        ),
        (
            "/sfc/observations",
            VALID_OBSERVATION,
            lambda data: zookeeper_records.decode_observations("/sfc/observations", b'{"n1": ' + data + b"}", NOW, NOW),
        ),
    ]


def test_zookeeper_decoders_read_valid_records() -> None:
    for _path, valid, decode in _decoders():
        decode(json.dumps(valid).encode())


@settings(max_examples=300, database=None, deadline=None)
@given(
    which=st.integers(0, 3),
    key=st.text(max_size=8) | st.sampled_from(["node", "epoch", "pid", "ttl", "pids", "by"]),
    value=JSON,
)
def test_any_json_in_a_znode_is_read_or_refused_in_one_line(which: int, key: str, value: object) -> None:
    path, valid, decode = _decoders()[which]
    try:
        decode(_document(valid, key, value))
    except CorruptRecord as exc:
        assert one_line(str(exc)) and f"znode {path}" in str(exc), str(exc)


@settings(max_examples=100, database=None, deadline=None)
@given(which=st.integers(0, 3), data=st.binary(max_size=40))
def test_any_bytes_in_a_znode_is_read_or_refused_in_one_line(which: int, data: bytes) -> None:
    path, _valid, decode = _decoders()[which]
    try:
        decode(data)
    except CorruptRecord as exc:
        assert one_line(str(exc)) and f"znode {path}" in str(exc), str(exc)


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("node", 5, "field node is not text: 5"),
        ("epoch", "x", "field epoch is not an integer: 'x'"),
        ("version", -1, "field version is below 0: -1"),
        ("ttl", 1e15, "field ttl is not a duration"),
        ("ttl", None, "field ttl is not a number: None"),
    ],
)
def test_zookeeper_placement_garbage_names_the_field(key: str, value: object, problem: str) -> None:
    with pytest.raises(CorruptRecord, match="^metastore znode /sfc/placement " + problem):
        zookeeper_records.decode_placement("/sfc/placement", _document(VALID_PLACEMENT, key, value), STAT, NOW)
    data = json.dumps({k: v for k, v in VALID_PLACEMENT.items() if k != key}).encode()
    with pytest.raises(CorruptRecord, match=f"^metastore znode /sfc/placement field {key} is missing$"):
        zookeeper_records.decode_placement("/sfc/placement", data, STAT, NOW)


def test_first_release_controller_entries_have_no_flags() -> None:
    old = {k: v for k, v in VALID_CONTROLLER.items() if k not in ("paused", "leashed")}
    info = zookeeper_records.decode_controller("/sfc/controllers/n1", "n1", json.dumps(old).encode(), STAT, NOW)
    assert (info.paused, info.leashed) == (False, False)


# --- the checks themselves ----------------------------------------------------------------------


def test_messages_are_one_line_with_the_value_shortened() -> None:
    with pytest.raises(CorruptRecord) as info:
        rows.integer("row sfc_lease.epoch", "x\n" * 100)
    message = str(info.value)
    assert message.startswith("metastore row sfc_lease.epoch is not an integer: 'x\\nx")
    assert one_line(message) and message.endswith("...") and len(message) < 120


@pytest.mark.parametrize(
    ("value", "ok"),
    [(NOW + 30, True), (0.0, True), (NOW - 1e6, True), (NOW + 2 * 86400, False), (math.inf, False), ("1", False)],
)
def test_an_expiry_may_not_lie_further_ahead_than_any_lease(value: object, ok: bool) -> None:
    if ok:
        assert rows.expiry("row sfc_lease.expires_at", value, NOW) == value
    else:
        with pytest.raises(CorruptRecord, match=r"^metastore row sfc_lease.expires_at is"):
            rows.expiry("row sfc_lease.expires_at", value, NOW)


def _state(
    holder: str | None, host: str | None, lease_left: float, node: str | None, placement_left: float
) -> ClusterState:
    return ClusterState(
        Lease(holder, host, 3, NOW + lease_left, NOW), Placement(node, 3, NOW + placement_left, 1, NOW), False, NOW
    )


def test_implausible_names_hosts_outside_the_config_and_leases_longer_than_lease_ttl() -> None:
    nodes = ("n1", "n2")
    assert rows.implausible(_state("n1:1:a", "n1", 5, "n2", 5), nodes, 5) == []
    assert rows.implausible(_state("n1:1:a", "n1", 6, "n2", 5.4), nodes, 5) == []  # within the slack
    assert rows.implausible(_state("zz:1:a", "zz", -1, "zz", -1), nodes, 5) == []  # expired: no matter
    doubts = rows.implausible(_state("zz:1:a", "zz", 3600, "n9", 5), nodes, 5)
    assert doubts == [
        "the lease is held by 'zz:1:a' on 'zz', which is not in scheduler_nodes_in_cluster",
        "the lease of 'zz' expires in 3600s, more than lease_ttl (5s)",
        "the scheduler is placed on 'n9', which is not in scheduler_nodes_in_cluster",
    ]
    assert rows.implausible(_state(None, None, 0, "n1", 900), nodes, 5) == [
        "the placement on 'n1' expires in 900s, more than lease_ttl (5s)"
    ]
