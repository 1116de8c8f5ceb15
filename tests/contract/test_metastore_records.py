"""The metastore contract's records: the controllers' registry, observations, the paused flag,
switchover requests and events, run against every backend (embedded SQLite, a real MariaDB, a real
PostgreSQL through psycopg2 and psycopg 3, a real 3-server ZooKeeper ensemble, and the unit tests'
in-memory FakeStore).

The backends and the ``be``, ``sql_be``, ``store`` and ``other`` fixtures: tests/contract/conftest.py and
metastore_backends.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from scheduler_failover_controller.metastore import sql as sqlstore
from scheduler_failover_controller.metastore.base import (
    FOREIGN_LIMIT,
    TEXT_LIMIT,
    USER_LIMIT,
    ControllerInfo,
    Metastore,
    Observation,
)
from scheduler_failover_controller.metastore.events import EventKind
from tests.contract.metastore_backends import LEASE
from tests.unit import fakes

# --- registry, observations, pause, events ----------------------------------------------------


def test_registry_heartbeats_and_deregistration(store: Metastore) -> None:
    store.heartbeat(ControllerInfo("n1", "h1", 11, "0.1", "standby", 0, 0))
    store.heartbeat(ControllerInfo("n2", "h2", 22, "0.1", "active", 0, 0))
    store.heartbeat(ControllerInfo("n1", "h1", 11, "0.1", "active", 0, 0))
    found = {c.host: c for c in store.controllers()}
    assert set(found) == {"n1", "n2"} and found["n1"].role == "active" and found["n2"].pid == 22
    assert all(0 <= c.age < 5 for c in found.values())
    store.deregister("n1", "someone-else")
    assert len(store.controllers()) == 2
    store.deregister("n1", "h1")
    assert [c.host for c in store.controllers()] == ["n2"]


def test_registry_keeps_the_paused_flag_each_controller_acts_on(store: Metastore) -> None:
    store.heartbeat(ControllerInfo("n1", "h1", 11, "0.1", "standby", 0, 0, paused=True))
    store.heartbeat(ControllerInfo("n2", "h2", 22, "0.1", "active", 0, 0))
    assert {c.host: c.paused for c in store.controllers()} == {"n1": True, "n2": False}
    store.heartbeat(ControllerInfo("n1", "h1", 11, "0.1", "standby", 0, 0, paused=False))
    assert {c.host: c.paused for c in store.controllers()} == {"n1": False, "n2": False}


def test_leashed_flags_round_trip(store: Metastore) -> None:
    """Each controller's own leashed report, and the active controller's per-node leashed observation."""
    store.heartbeat(ControllerInfo("n1", "h1", 11, "0.1", "active", 0, 0, leashed=True))
    store.heartbeat(ControllerInfo("n2", "h2", 22, "0.1", "standby", 0, 0))
    assert {c.host: c.leashed for c in store.controllers()} == {"n1": True, "n2": False}
    store.heartbeat(ControllerInfo("n1", "h1", 11, "0.1", "active", 0, 0, leashed=False))
    assert {c.host: c.leashed for c in store.controllers()} == {"n1": False, "n2": False}
    lease = store.acquire_or_renew("h1", "n1", LEASE)
    assert lease is not None
    obs = [Observation("n1", "running", (5,), "", leashed=True), Observation("n2", "stopped", (), "")]
    assert store.record_observations("h1", lease.epoch, obs)
    assert {o.node: o.leashed for o in store.observations()} == {"n1": True, "n2": False}
    dumped = store.dump()
    assert {c["host"]: c["leashed"] for c in dumped["controllers"]} == {"n1": False, "n2": False}
    assert {o["node"]: o["leashed"] for o in dumped["observations"]} == {"n1": True, "n2": False}


def test_foreign_processes_round_trip(store: Metastore) -> None:
    """An observation's foreign processes (another user's look-alikes): kept, capped, read back."""
    lease = store.acquire_or_renew("h1", "n1", LEASE)
    assert lease is not None
    many = tuple((100 + i, "u" * 40) for i in range(20))
    obs = [
        Observation("n1", "running", (5,), "", foreign=((7, "nobody"),)),
        Observation("n2", "stopped", (), "", foreign=many),
    ]
    assert store.record_observations("h1", lease.epoch, obs)
    got = {o.node: o.foreign for o in store.observations()}
    assert got["n1"] == ((7, "nobody"),)
    assert got["n2"] == tuple((pid, user[:USER_LIMIT]) for pid, user in many[:FOREIGN_LIMIT])
    assert {o["node"]: o["foreign"] for o in store.dump()["observations"]}["n1"] == [{"pid": 7, "user": "nobody"}]
    assert store.record_observations("h1", lease.epoch, [Observation("n1", "stopped", (), "")])
    assert [o.foreign for o in store.observations()] == [()]


def test_observations_are_fenced_by_epoch(store: Metastore) -> None:
    lease = store.acquire_or_renew("a", "host-a", LEASE)
    assert lease is not None
    obs = [Observation("n1", "running", (12, 13), ""), Observation("n2", "stopped", (), "")]
    assert store.record_observations("a", lease.epoch, obs) is True
    assert store.record_observations("a", lease.epoch + 1, obs[:1]) is False
    got = {o.node: o for o in store.observations()}
    assert got["n1"].pids == (12, 13) and got["n2"].state == "stopped"
    assert all(0 <= o.age < 5 for o in got.values())


def test_paused_flag(store: Metastore) -> None:
    assert store.read_state().paused is False
    store.set_paused(True)
    assert store.read_state().paused is True
    store.set_paused(False)
    assert store.read_state().paused is False


def test_switchover_request_is_seen_by_every_client_and_cleared(store: Metastore, other: Any) -> None:
    assert store.read_state().switchover is None
    store.request_switchover("n2", "forced")
    assert other().read_state().switchover == ("n2", "forced")
    store.request_switchover("n3", "controlled")  # a newer ask replaces the older one
    assert store.read_state().switchover == ("n3", "controlled")
    store.clear_switchover()
    assert store.read_state().switchover is None


def test_events_are_kept_bounded(store: Metastore, monkeypatch: pytest.MonkeyPatch) -> None:
    from scheduler_failover_controller.metastore import zookeeper as zkmod

    monkeypatch.setattr(sqlstore, "EVENTS_KEPT", 15)
    monkeypatch.setattr(zkmod, "EVENTS_KEPT", 15)
    monkeypatch.setattr(fakes, "EVENTS_KEPT", 15)
    for i in range(41):
        store.add_event("n1", EventKind.RESTART, f"event {i}", 3)
    events = store.events(100)
    assert 15 <= len(events) <= 35  # ZooKeeper trims in batches, SQL on every insert
    assert events[-1].message == "event 40" and events[-1].epoch == 3
    assert [e.message for e in store.events(3)] == ["event 38", "event 39", "event 40"]


def test_long_text_is_capped_to_what_the_store_keeps(store: Metastore) -> None:
    """A message or detail longer than the records keep is cut, never refused."""
    store.add_event("n1", EventKind.RESTART, "m" * (TEXT_LIMIT + 500))
    assert store.events(1)[0].message == "m" * TEXT_LIMIT
    lease = store.acquire_or_renew("a", "host-a", LEASE)
    assert lease is not None
    assert store.record_observations("a", lease.epoch, [Observation("n1", "failed", (), "d" * (TEXT_LIMIT + 1))])
    assert [o.detail for o in store.observations()] == ["d" * TEXT_LIMIT]


def test_clear_wipes_everything_but_the_epoch(store: Metastore) -> None:
    lease = store.acquire_or_renew("a", "host-a", LEASE)
    assert lease is not None
    store.set_placement("n1", "a", lease.epoch, store.read_state().placement.version, 30)
    store.heartbeat(ControllerInfo("n1", "a", 1, "0.1", "active", 0, 0))
    store.add_event("n1", EventKind.ELECTED, "x")
    store.set_paused(True)
    store.clear()
    state = store.read_state()
    assert state.lease.holder is None and state.placement.node is None and not state.paused
    assert store.controllers() == [] and store.events() == []
    assert state.lease.epoch == lease.epoch
