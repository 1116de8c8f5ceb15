"""The controller on a metastore holding records no valid write produces (issue 10, class 3).

Such a record is a CorruptRecord, a MetastoreError: the controller acts on nothing and the fencing
rules apply as if the store were down. It renews nothing (the lease lapses, its node's scheduler is
stopped before its placement runs out), takes no new term while the store stays unreadable, never
logs an INTERNAL ERROR, and recovers by itself once the record is fixed. A lease or placement its
config could not have written (a host it does not name, longer than lease_ttl) is warned about every
cycle and never taken as expired.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from scheduler_failover_controller.controller.cycle import PLEASE_REPORT, Controller
from scheduler_failover_controller.exceptions import CorruptRecord
from scheduler_failover_controller.metastore.sql import SQLMetastore
from scheduler_failover_controller.nodes.base import NodeRunner
from tests.support.garbage import SQL_FIELDS, SqlField, plant_sql

from .fakes import Cluster, FakeRunner, FakeStore, RecordingAlerter, make_config

TTL = 5.0
PLACEMENT_NODE = "metastore row sfc_placement.node is not a valid host name: 'two words'"


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    c = Cluster()
    yield c
    c.close()


def corrupt(store: FakeStore, message: str, *methods: str) -> None:
    """From now on, each of ``methods`` finds the record ``message`` names."""

    def found() -> None:
        raise CorruptRecord(message)

    for method in methods:
        store.on(method, found, once=False)


def fix(store: FakeStore) -> None:
    store.hooks.clear()


# What reads a record of each kind: the placement row, the lease row, the paused flag.
CORRUPTIONS = {
    "placement": (PLACEMENT_NODE, ("read_state", "renew_placement", "set_placement")),
    "lease": ("metastore row sfc_lease.expires_at is not a number: 'soon'", ("read_state", "acquire_or_renew")),
    "paused": ("metastore row sfc_meta[paused].value is not 0 or 1: 'yes'", ("read_state",)),
}


@pytest.mark.parametrize("record", sorted(CORRUPTIONS))
def test_a_corrupt_record_fences_as_if_the_store_were_down_and_recovers_once_fixed(
    cluster: Cluster, record: str, caplog: pytest.LogCaptureFixture
) -> None:
    message, methods = CORRUPTIONS[record]
    c1 = cluster.controller("n1")
    assert "placed and started the scheduler on n1" in c1.run_cycle()
    c2 = cluster.controller("n2")
    assert c2.run_cycle().startswith("standby: n1 is active")
    store, runner, clock = cluster.store, cluster.runners["n1"], cluster.clock
    epoch = store.lease_epoch
    corrupt(store, message, *methods)
    caplog.set_level(logging.WARNING)
    sentences: list[str] = []
    for step in range(int(6 * TTL)):  # half-second steps: cycles every other step, renewals every step
        clock.advance(0.5)
        if step % 2 == 0:
            sentences += [c1.run_cycle(), c2.run_cycle()]
        before = len(store.calls)
        c1.renew()
        c2.renew()
        renewed = store.calls[before:]
        assert "acquire_or_renew" not in renewed and "renew_placement" not in renewed, renewed
        # Never unguarded: the scheduler is gone before the placement deadline its controller holds.
        assert not runner.running or clock.monotonic() < c1.placement_deadline
        assert store.lease_epoch == epoch  # nobody takes a term while the store is unreadable
    assert not any(PLEASE_REPORT in s for s in sentences)
    assert all("metastore unreadable (" + message + ")" in s for s in sentences), sentences
    assert any("self-fenced: stopped the local scheduler" in s for s in sentences), sentences
    assert cluster.running() == [] and store.lease_expires_at <= store.server_now  # the lease lapsed
    assert not c1.leads() and c1.role == "standby"
    assert any("no valid write produces that record" in r.getMessage() for r in caplog.records)

    fix(store)
    clock.advance(1)
    assert c2.renew() is True  # readable again: wake the cycle
    recovered = [c2.run_cycle(), c1.run_cycle()]
    assert recovered[0].startswith(f"active (epoch {epoch + 1}): placed and started the scheduler on n1"), recovered
    assert recovered[1].startswith("standby: n2 is active"), recovered
    assert cluster.running() == ["n1"]  # where it was placed last, started by the new active
    assert any("reads fine again" in r.getMessage() for r in caplog.records)


def test_a_start_wait_ends_when_the_store_turns_unreadable(cluster: Cluster) -> None:
    runner = cluster.runners["n1"]
    runner.up_after_probes = 1000  # never up within scheduler_start_timeout
    c1 = cluster.controller("n1")
    calls = 0

    def second_renewal_finds_garbage() -> None:
        nonlocal calls
        calls += 1
        if calls > 1:  # the start's own confirmation passes; the renewal while waiting does not
            raise CorruptRecord(PLACEMENT_NODE)

    cluster.store.on("renew_placement", second_renewal_finds_garbage, once=False)
    sentence = c1.run_cycle()
    assert "the metastore became unreadable while waiting (" + PLACEMENT_NODE + "); stopped it" in sentence
    assert cluster.actions == [("n1", "start"), ("n1", "stop")] and cluster.running() == []


def test_a_lease_held_by_a_host_the_config_does_not_name_is_warned_about_every_cycle_and_kept(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """Loud, never unsafe: a real holder with another config must not be overridden."""
    store = cluster.store
    store.lease_holder, store.lease_host, store.lease_epoch = "zz:1:x", "zz", 7
    store.lease_expires_at = store.server_now + 3600
    c1 = cluster.controller("n1")
    caplog.set_level(logging.WARNING)
    for left in (3600, 3599, 3598):
        sentence = c1.run_cycle()
        assert sentence == (
            "standby: zz is active (epoch 7); scheduler placed on no node; not plausible: the lease is held by "
            f"'zz:1:x' on 'zz', which is not in scheduler_nodes_in_cluster; the lease of 'zz' expires in {left}s, "
            "more than lease_ttl (5s)"
        ), sentence
        cluster.clock.advance(1)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("which is not in scheduler_nodes_in_cluster" in w for w in warnings) == 3
    assert cluster.actions == [] and store.lease_holder == "zz:1:x"
    store.lease_expires_at = store.server_now - 1  # it ends by itself: then it is taken
    assert c1.run_cycle().startswith("active (epoch 8): placed and started the scheduler on n1")


def test_a_placement_on_a_node_the_config_does_not_name_is_waited_out_with_a_warning(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    c1 = cluster.controller("n1")
    cluster.store.lease_epoch = 1
    cluster.store.force_placement("n9", 3)
    caplog.set_level(logging.WARNING)
    sentence = c1.run_cycle()
    assert "cannot see the scheduler node n9" in sentence and cluster.actions == []
    assert any("placed on 'n9', which is not in scheduler_nodes_in_cluster" in r.getMessage() for r in caplog.records)


# --- on a real SQLite file, garbage in every field --------------------------------------------------


def _sqlite_controller(path: Path, node_control: str = "ssh") -> tuple[Controller, SQLMetastore]:
    config = make_config("n1", ("n1", "n2"), node_control=node_control)
    store = SQLMetastore(f"sqlite:///{path}", 2.0)
    runners: dict[str, NodeRunner] = {n: FakeRunner(n) for n in config.nodes}
    return Controller(config, store, runners, RecordingAlerter(config)), store


def _recording(store: SQLMetastore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the writes that renew something, as the store is called."""
    calls: list[str] = []
    for name in ("acquire_or_renew", "renew_placement", "set_placement"):
        method: Callable[..., object] = getattr(store, name)

        def record(*args: object, _name: str = name, _method: Callable[..., object] = method) -> object:
            calls.append(_name)
            return _method(*args)

        monkeypatch.setattr(store, name, record)
    return calls


@pytest.mark.parametrize("field", SQL_FIELDS, ids=lambda f: f.label)
def test_garbage_in_any_sqlite_field_never_makes_an_internal_error(
    tmp_path: Path, field: SqlField, monkeypatch: pytest.MonkeyPatch
) -> None:
    # self mode's records are written (and read) by a controller in self mode
    mode = "self" if field.call in ("reports", "node_control") else "ssh"
    controller, store = _sqlite_controller(tmp_path / "metastore.db", mode)
    try:
        assert "placed and started the scheduler on n1" in controller.run_cycle()
        restore = plant_sql(store, field, field.garbage("sqlite")[0])
        if field.call == "setup":  # read when a controller starts: a second one, started now
            controller, store = _sqlite_controller(tmp_path / "metastore.db", mode)
        calls = _recording(store, monkeypatch)
        first = controller.run_cycle()
        first_calls = list(calls)
        del calls[:]
        controller.renew()
        renewed = list(calls)
        second = controller.run_cycle()
        for sentence in (first, second):
            assert PLEASE_REPORT not in sentence
        if field.call in ("read_state", "setup") and "unreadable" in first:
            assert "metastore unreadable (metastore row " in second and field.named_in(second), second
            assert renewed == []  # nothing renewed on a store that cannot be read
        elif field.call in ("read_state", "setup"):
            # The holder's own renewal wrote that field anew (its lease's host, expiry): fixed already.
            assert field.table == "sfc_lease" and "acquire_or_renew" in first_calls, first
            store.read_state()
        restore()
        controller.renew()
        third = controller.run_cycle()
        assert "unreadable" not in third and PLEASE_REPORT not in third, third
    finally:
        store.close()
