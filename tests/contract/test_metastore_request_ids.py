"""Switchover request ids and event kinds, on every backend (the in-memory FakeStore, SQLite, MariaDB,
PostgreSQL through psycopg2 and psycopg 3, a 3-server ZooKeeper ensemble): a request's id is written
with it and read back by every client, an event carries it, a kind this release does not know reads
back as written, and records of a release without ids keep working both ways."""

from __future__ import annotations

import json
from typing import cast

from scheduler_failover_controller.metastore.base import Metastore
from scheduler_failover_controller.metastore.events import EventKind
from scheduler_failover_controller.metastore.sql import SQLMetastore
from scheduler_failover_controller.metastore.zookeeper import ZooKeeperMetastore
from tests.contract.metastore_backends import TIMEOUT, Backend

NEWER_KIND = cast(EventKind, "from_a_newer_release")  # what a later release may write


def test_a_request_and_its_id_are_written_together_and_seen_by_every_client(store: Metastore, be: Backend) -> None:
    other = be.open()
    try:
        assert store.read_state().switchover_id == ""
        store.request_switchover("n2", "forced", "id-1")
        state = other.read_state()
        assert (state.switchover, state.switchover_id) == (("n2", "forced"), "id-1")
        store.request_switchover("n3", "controlled", "id-2")  # a newer ask replaces the older one, id and all
        state = other.read_state()
        assert (state.switchover, state.switchover_id) == (("n3", "controlled"), "id-2")
        store.request_switchover("n2", "controlled")  # as a CLI of a release without ids asks
        state = other.read_state()
        assert (state.switchover, state.switchover_id) == (("n2", "controlled"), "")
        store.request_switchover("n3", "forced", "id-3")
        other.clear_switchover()
        state = store.read_state()
        assert (state.switchover, state.switchover_id) == (None, "")
        store.request_switchover("n3", "forced", "id-4")
        store.clear()
        assert store.read_state().switchover_id == ""
    finally:
        if other is not store:
            other.close()


def test_events_carry_request_ids_and_a_kind_this_release_does_not_know_reads_back_as_written(
    store: Metastore,
) -> None:
    store.add_event("n1", EventKind.SWITCHOVER, "controlled switchover to n2 requested", 3, request_id="id-1")
    store.add_event("n1", NEWER_KIND, "something new", 3)
    store.add_event("n1", EventKind.SWITCHOVER_DONE, "done", 4, "id-1")
    events = store.events(10)
    assert [(e.kind, e.request_id, e.epoch) for e in events] == [
        (EventKind.SWITCHOVER, "id-1", 3),
        ("from_a_newer_release", "", 3),
        (EventKind.SWITCHOVER_DONE, "id-1", 4),
    ]
    assert isinstance(events[0].kind, EventKind) and not isinstance(events[1].kind, EventKind)
    assert [e["kind"] for e in store.dump()["events"]] == ["switchover", "from_a_newer_release", "switchover_done"]
    assert [e["request_id"] for e in store.dump()["events"]] == ["id-1", "", "id-1"]


def test_a_release_without_ids_reads_and_rewrites_requests_as_before(store: Metastore, be: Backend) -> None:
    """What an older controller reads is unchanged; what it writes (no id, or only the request) reads as no id."""
    be.needs_server("raw records")
    store.request_switchover("n2", "forced", "id-1")
    store.add_event("n1", EventKind.SWITCHOVER_DONE, "done", 1, "id-1")
    if isinstance(store, SQLMetastore):
        from sqlalchemy import text

        with store.engine.begin() as conn:
            raw = {str(r[0]): str(r[1]) for r in conn.execute(text("SELECT name, value FROM sfc_meta"))}
            assert raw["switchover"] == "n2 forced"  # exactly what a release without ids parses
            # An older CLI replaces the request: it writes its own row only.
            conn.execute(text("UPDATE sfc_meta SET value = 'n3 controlled' WHERE name = 'switchover'"))
            # An older controller records an event without the column.
            conn.execute(
                text("INSERT INTO sfc_events (at, host, kind, message, epoch) VALUES (1, 'n1', 'move', 'old', 1)")
            )
    else:
        assert isinstance(store, ZooKeeperMetastore)
        path = store._p("switchover")
        value = json.loads(store.client.get(path)[0])
        assert (value["node"], value["mode"]) == ("n2", "forced")
        store.client.set(path, json.dumps({"node": "n3", "mode": "controlled"}).encode())
        old_event = {"host": "n1", "kind": "move", "message": "old", "epoch": 1}
        store.client.create(store._p("events", "e-"), json.dumps(old_event).encode(), sequence=True)
    state = store.read_state()
    assert (state.switchover, state.switchover_id) == (("n3", "controlled"), "")
    assert [(e.kind, e.request_id) for e in store.events(2)] == [
        (EventKind.SWITCHOVER_DONE, "id-1"),
        (EventKind.MOVE, ""),
    ]


def test_a_store_of_a_release_without_ids_gains_them(sql_be: Backend) -> None:
    """Tables made before ids (no request_id column, no switchover_id row) are brought up to date."""
    from sqlalchemy import Column, MetaData, Table, create_engine, text
    from sqlalchemy.schema import CreateTable

    from scheduler_failover_controller.metastore import sql_tables

    events = sql_tables.events_table
    old_events = Table(
        events.name,
        MetaData(),
        *(
            Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
            for c in events.columns
            if c.name not in ("request_id", "service")
        ),
    )
    engine = create_engine(sql_be.spec[1])
    with engine.begin() as conn:
        conn.execute(CreateTable(old_events))
        conn.execute(old_events.insert().values(at=1.0, host="n0", kind="elected", message="old", epoch=1))
    engine.dispose()
    store = SQLMetastore(sql_be.spec[1], TIMEOUT)
    try:
        store.setup()
        assert [(e.kind, e.request_id) for e in store.events()] == [(EventKind.ELECTED, "")]
        store.request_switchover("n2", "forced", "id-1")
        assert store.read_state().switchover_id == "id-1"
        with store.engine.begin() as conn:  # the id's row as a store of the release before lacks it
            conn.execute(text("DELETE FROM sfc_meta WHERE name = 'switchover_id'"))
        assert (store.read_state().switchover, store.read_state().switchover_id) == (("n2", "forced"), "")
        store._ready = False
        store.setup()  # seeds it again
        store.request_switchover("n3", "forced", "id-2")
        assert store.read_state().switchover_id == "id-2"
    finally:
        store.close()
