"""The SQL metastore's table prefix (``metadata_service_sql_table_prefix``) and its service tables, on
SQLite, MariaDB and PostgreSQL (psycopg2 and psycopg 3): fleets with different prefixes on one
database never see each other's records, and a bad row of a service's is one CorruptRecord line.

The backends and the ``sql_be`` fixture: tests/contract/conftest.py and metastore_backends.py.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Column, MetaData, Table, create_engine, inspect, update
from sqlalchemy.schema import CreateTable

from scheduler_failover_controller.exceptions import ConfigError, CorruptRecord
from scheduler_failover_controller.metastore.base import Observation
from scheduler_failover_controller.metastore.events import EventKind
from scheduler_failover_controller.metastore.reports import NodeReport
from scheduler_failover_controller.metastore.sql import SQLMetastore
from scheduler_failover_controller.metastore.sql_tables import schema
from tests.contract.metastore_backends import LEASE, TIMEOUT, Backend


def test_no_two_prefixes_name_one_table() -> None:
    """A table's name is prefix + suffix: were one suffix the end of another (``reports`` and
    ``service_reports``), prefixes ``sfc_`` and ``sfc_service_`` would both name ``sfc_service_reports``."""
    suffixes = [t.name[len("sfc_") :] for t in schema().metadata.sorted_tables]
    assert len(suffixes) == 11
    for a, b in itertools.permutations(suffixes, 2):
        assert not a.endswith(b), (a, b)
    assert schema("fleet_b_") is schema("fleet_b_")  # built once per prefix
    assert {t.name for t in schema("fleet_b_").metadata.sorted_tables} == {f"fleet_b_{s}" for s in suffixes}


@pytest.mark.parametrize("prefix", ["", "1x_", "sfc-", "a b", "x;drop table sfc_lease;", "p" * 17])
def test_a_prefix_that_cannot_name_a_table_is_refused(prefix: str) -> None:
    with pytest.raises(ConfigError) as caught:
        SQLMetastore("sqlite://", TIMEOUT, prefix=prefix)
    message = str(caught.value)
    assert message.startswith("metadata_service_sql_table_prefix: ") and "\n" not in message


def test_fleets_with_different_prefixes_share_a_database_apart(sql_be: Backend) -> None:
    """Each fleet has its own lease and epoch, placements, services, drains, pause, events and
    wipes; a mixed-case prefix (quoted by PostgreSQL) works like any other."""
    url = sql_be.spec[1]
    fleets = [SQLMetastore(url, TIMEOUT), SQLMetastore(url, TIMEOUT, prefix="Fleet_B_")]
    try:
        for i, store in enumerate(fleets):
            store.setup()
            lease = store.acquire_or_renew(f"h{i}", f"host{i}", LEASE)
            assert lease is not None and lease.epoch == 1  # every fleet its own term
            state = store.read_state()
            assert store.set_placement(f"n{i}", f"h{i}", 1, state.placement.version, 30) is not None
            beat = store.for_service("beat")
            assert beat.set_placement(f"m{i}", f"h{i}", 1, beat.read_state().placement.version, 30) is not None
            assert beat.record_observations(f"h{i}", 1, [Observation(f"m{i}", "running", (i + 1,), "")])
            store.add_event(f"host{i}", EventKind.START, f"fleet {i}", 1)
        a, b = fleets
        assert "tables" not in a.describe() and b.describe().endswith(" (tables Fleet_B_*)")
        assert a.drain("n0", ["n0", "n1"]) is True
        b.set_paused(True)
        assert [s.read_state().placement.node for s in fleets] == ["n0", "n1"]
        assert [s.for_service("beat").read_state().placement.node for s in fleets] == ["m0", "m1"]
        assert [[o.node for o in s.for_service("beat").observations()] for s in fleets] == [["m0"], ["m1"]]
        assert [[e.message for e in s.events()] for s in fleets] == [["fleet 0"], ["fleet 1"]]
        assert [sorted(s.read_state().drained) for s in fleets] == [["n0"], []]
        assert [s.read_state().paused for s in fleets] == [False, True]
        b.clear()
        assert b.read_state().placement.node is None and b.events() == []
        assert b.for_service("beat").observations() == []
        assert a.read_state().lease.holder == "h0" and a.read_state().placement.node == "n0"
        assert [e.message for e in a.events()] == ["fleet 0"] and len(a.for_service("beat").observations()) == 1
        names = set(inspect(create_engine(url)).get_table_names())
        for store in fleets:
            assert {t.name for t in store.tables.metadata.sorted_tables} <= names
    finally:
        for store in fleets:
            store.close()


def test_a_prefixed_table_of_an_older_release_gains_the_service_column(sql_be: Backend) -> None:
    """The added columns are added to the prefix's own tables (its name quoted where it must be)."""
    events = schema("Old_").events
    old = Table(
        events.name,
        MetaData(),
        *(Column(c.name, c.type, primary_key=c.primary_key) for c in events.columns if c.name != "service"),
    )
    engine = create_engine(sql_be.spec[1])
    with engine.begin() as conn:
        conn.execute(CreateTable(old))
        conn.execute(old.insert().values(at=1.0, host="n0", kind="elected", message="old", epoch=1, request_id=""))
    engine.dispose()
    store = SQLMetastore(sql_be.spec[1], TIMEOUT, prefix="Old_")
    try:
        store.setup()
        store.for_service("beat").add_event("n1", EventKind.START, "new", 1)
        assert [(e.service, e.message) for e in store.events()] == [("scheduler", "old"), ("beat", "new")]
    finally:
        store.close()


def test_a_bad_row_of_a_service_is_one_line_naming_it(sql_be: Backend) -> None:
    store = SQLMetastore(sql_be.spec[1], TIMEOUT)
    try:
        store.setup()
        lease = store.acquire_or_renew("h", "host", LEASE)
        assert lease is not None
        beat = store.for_service("beat")
        assert beat.record_observations("h", lease.epoch, [Observation("n1", "running", (5,), "")])
        assert beat.write_report(NodeReport("n1", "h1", "running", (5,), seq=3))
        beat.record_failure("n1")
        beat.add_event("n1", EventKind.START, "beat up", lease.epoch)
        assert store.record_observations("h", lease.epoch, [Observation("n1", "running", (7,), "")])
        t = store.tables
        cases: list[tuple[Any, Callable[[], object], str]] = [
            (
                t.service_observations.update().values(pids="x"),
                beat.observations,
                "row sfc_observations_by_service[beat/n1].pids is not JSON: 'x'",
            ),
            (
                t.service_reports.update().values(state="a\nb"),
                beat.reports,
                "row sfc_reports_by_service[beat/n1].state holds control characters",
            ),
            (
                t.service_failures.update().values(failed_at=-5.0),
                beat.failures,
                "row sfc_failures_by_service[beat/n1].failed_at is negative: -5.0",
            ),
            (
                update(t.meta).where(t.meta.c.name == "switchover:beat").values(value="n1 sideways"),
                beat.read_state,
                "row sfc_meta[switchover:beat].value is not a switchover request",
            ),
            (
                update(t.placement).where(t.placement.c.name == "beat").values(version=-1),
                beat.read_state,
                "row sfc_placement[beat].version is below 0",
            ),
            (
                update(t.placement).where(t.placement.c.name == "beat").values(name="bad name"),
                store.dump,
                "row sfc_placement.name is not a service name",
            ),
            (
                t.events.update().values(service="scheduler"),  # the scheduler's are ''; none names it
                store.events,
                "row sfc_events[1].service is not a service name",
            ),
        ]
        for statement, read, message in cases:
            with store.engine.begin() as conn:
                conn.execute(statement)
            with pytest.raises(CorruptRecord) as caught:
                read()
            assert str(caught.value).startswith(f"metastore {message}") and "\n" not in str(caught.value)
            assert [o.pids for o in store.observations()] == [(7,)]  # the scheduler's records read on
        store.clear()  # a wipe leaves a store that reads again
        assert beat.observations() == [] and beat.reports() == [] and beat.failures() == [] and store.events() == []
    finally:
        store.close()
