"""The metastore contract of self mode: per-node reports, the cluster's node_control, and the
placement to nowhere that orders every node to stop, run against every backend (embedded SQLite, a
real MariaDB, a real PostgreSQL through psycopg2 and psycopg 3, a real 3-server ZooKeeper ensemble,
and the unit tests' in-memory FakeStore).

The backends and the ``be``, ``sql_be``, ``store`` and ``other`` fixtures: tests/contract/conftest.py and
metastore_backends.py.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from scheduler_failover_controller.metastore.base import (
    FOREIGN_LIMIT,
    TEXT_LIMIT,
    USER_LIMIT,
    Metastore,
)
from scheduler_failover_controller.metastore.reports import NodeReport
from tests.contract.metastore_backends import LEASE

# --- self mode: per-node reports and the cluster's node_control ---------------------------------


def test_reports_round_trip_and_a_late_write_never_replaces_a_newer_one(store: Metastore) -> None:
    """Each node's report as written (stamped by the server), ordered by ``seq``: an older look's
    write that lands after a newer one is refused, and the newer report stays."""
    first = NodeReport("n1", "n1:1:aa", "running", (5, 6), True, ((7, "nobody"),), "ok", 3, 3, seq=10)
    assert store.write_report(first)
    assert store.write_report(NodeReport("n2", "n2:2:bb", "stopped", answers=3, seq=1))
    got = {r.node: r for r in store.reports()}
    assert set(got) == {"n1", "n2"}
    n1 = got["n1"]
    assert (n1.holder, n1.state, n1.pids, n1.leashed, n1.foreign, n1.detail) == (
        "n1:1:aa",
        "running",
        (5, 6),
        True,
        ((7, "nobody"),),
        "ok",
    )
    assert (n1.answers, n1.started_for, n1.seq) == (3, 3, 10)
    assert 0 <= n1.age < 5
    newer = NodeReport("n1", "n1:1:aa", "stopped", answers=4, started_for=3, seq=12)
    assert store.write_report(newer)
    late = NodeReport("n1", "n1:1:aa", "running", (5,), True, answers=3, started_for=3, seq=11)
    assert not store.write_report(late)
    assert not store.write_report(replace(late, seq=12))  # equal is not newer
    kept = {r.node: r for r in store.reports()}["n1"]
    assert (kept.state, kept.answers, kept.seq) == ("stopped", 4, 12)
    # A restarted controller (a new holder) goes on from the stored seq.
    assert store.write_report(NodeReport("n1", "n1:9:cc", "running", (8,), True, answers=4, started_for=4, seq=13))
    assert {r.node: r.holder for r in store.reports()}["n1"] == "n1:9:cc"


def test_reports_cap_their_free_text(store: Metastore) -> None:
    many = tuple((100 + i, "u" * 40) for i in range(20))
    assert store.write_report(NodeReport("n1", "n1:1:aa", "unknown", detail="x" * 5000, foreign=many, seq=1))
    report = store.reports()[0]
    assert report.detail == "x" * TEXT_LIMIT
    assert report.foreign == tuple((pid, user[:USER_LIMIT]) for pid, user in many[:FOREIGN_LIMIT])


def test_node_control_is_recorded_once_and_changed_only_while_paused(store: Metastore, other: Any) -> None:
    assert store.read_node_control() is None
    assert store.claim_node_control("self") == "self"
    assert store.read_node_control() == "self"
    second = other()
    assert second.claim_node_control("ssh") == "self"  # the first one recorded stays
    assert not second.set_node_control("ssh")  # not paused: refused
    assert store.claim_node_control("ssh") == "self"
    store.set_paused(True)
    assert second.set_node_control("ssh")
    assert store.claim_node_control("self") == "ssh"
    store.set_paused(False)
    assert not store.set_node_control("self")
    assert second.claim_node_control("self") == "ssh"


def test_clear_wipes_reports_and_node_control(store: Metastore) -> None:
    assert store.write_report(NodeReport("n1", "n1:1:aa", "running", (5,), True, answers=1, started_for=1, seq=4))
    assert store.claim_node_control("ssh") == "ssh"
    assert store.dump()["node_control"] == "ssh"
    assert [r["node"] for r in store.dump()["reports"]] == ["n1"]
    store.clear()
    assert store.reports() == []
    assert store.read_node_control() is None
    assert store.claim_node_control("self") == "self"
    assert store.write_report(NodeReport("n1", "n1:1:aa", "stopped", seq=1))


def test_a_placement_to_nowhere_keeps_its_expiry(store: Metastore) -> None:
    """Self mode's stop order: no node may run the scheduler, and its expiry (ttl after the write, by
    the server's clock) bounds every placement renewed before it (docs/design.md, 5a)."""
    lease = store.acquire_or_renew("h1", "n1", LEASE)
    assert lease is not None
    placed = store.set_placement("n2", "h1", lease.epoch, store.read_state().placement.version, 30)
    assert placed is not None
    order = store.set_placement(None, "h1", lease.epoch, placed.version, 30)
    assert order is not None and order.node is None and not order.valid
    read = store.read_state().placement
    assert read.node is None and not read.valid and 25 < read.remaining <= 30
    assert store.renew_placement("n2", 30) is None  # the old node can no longer renew it
