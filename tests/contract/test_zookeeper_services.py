"""Services beside the scheduler in the ZooKeeper metastore, against a real 3-server ensemble.

Each service's view keeps its own placement, switchover request, observations, reports and
failed starts under ``<root>/services/<NAME>/``; the lease, registry, paused flag, node_control
and drains are the fleet's; every fenced write of a view checks the one shared epoch; events name
their service; the scheduler's znodes stay exactly where and as a release with one service keeps them.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kazoo.client import KazooClient
from kazoo.security import make_digest_acl

from scheduler_failover_controller.exceptions import CorruptRecord, MetastoreError
from scheduler_failover_controller.metastore.base import Metastore, Observation
from scheduler_failover_controller.metastore.events import EventKind
from scheduler_failover_controller.metastore.reports import NodeReport
from scheduler_failover_controller.metastore.zookeeper import ZooKeeperMetastore
from tests.contract.metastore_backends import LEASE, ROOT, TIMEOUT, Backend, open_spec

NODES = ["n1", "n2", "n3"]


@pytest.fixture
def zk_be(zk_hosts: str) -> Backend:
    return Backend("zookeeper", ("zookeeper", zk_hosts))


@pytest.fixture
def opened(zk_be: Backend) -> Iterator[Any]:
    """Opens independent clients (each its own session) of one store; closes them after the test."""
    stores: list[Metastore] = []

    def make() -> ZooKeeperMetastore:
        stores.append(zk_be.open())
        assert isinstance(stores[-1], ZooKeeperMetastore)
        return stores[-1]

    yield make
    for s in stores:
        s.close()


@pytest.fixture
def raw(zk_hosts: str) -> Iterator[KazooClient]:
    """A plain kazoo client of the test's chroot: reads and plants znodes as they are."""
    client = KazooClient(hosts=zk_hosts, timeout=10)
    client.start(timeout=30)
    yield client
    client.stop()
    client.close()


def _report(node: str, state: str, seq: int) -> NodeReport:
    return NodeReport(node, "a", state, (42,), False, (), "", 0, 0, seq)


def _observe(node: str, state: str) -> Observation:
    return Observation(node, state, (7,), "seen", by_host="host-a")


def _lead(store: Metastore) -> int:
    lease = store.acquire_or_renew("a", "host-a", LEASE)
    assert lease is not None
    return lease.epoch


def test_two_services_keep_their_own_records_and_share_the_fleets(opened: Any) -> None:
    store = opened()
    beat, trig = store.for_service("beat"), store.for_service("triggerer")
    epoch = _lead(store)
    versions = {}
    for view, node in ((store, "n1"), (beat, "n2"), (trig, "n3")):
        start = view.read_state().placement
        placed = view.set_placement(node, "a", epoch, start.version, 10)
        assert placed is not None and placed.node == node and placed.epoch == epoch
        versions[node] = placed.version
    # A second move of one service moves no other, and its version is its own.
    moved = beat.set_placement("n1", "a", epoch, versions["n2"], 10)
    assert moved is not None and moved.version == versions["n2"] + 1
    assert beat.set_placement("n3", "a", epoch, versions["n2"], 10) is None  # its own stale version
    assert trig.renew_placement("n3", 10) is not None and beat.renew_placement("n3", 10) is None
    beat.request_switchover("n3", "controlled", "req-beat")
    beat.write_report(_report("n1", "running", 1))
    beat.record_failure("n2")
    assert beat.record_observations("a", epoch, [_observe("n1", "running")])
    assert store.record_observations("a", epoch, [_observe("n1", "stopped")])

    other = opened()  # another controller's session sees the same, service by service
    for view, node, switch in (
        (other, "n1", None),
        (other.for_service("beat"), "n1", ("n3", "controlled")),
        (other.for_service("triggerer"), "n3", None),
    ):
        state = view.read_state()
        assert state.placement.node == node and state.switchover == switch
        assert state.lease.holder == "a" and state.lease.epoch == epoch  # one lease, one epoch
    assert other.for_service("beat").read_state().switchover_id == "req-beat"
    assert [(r.node, r.state) for r in other.for_service("beat").reports()] == [("n1", "running")]
    assert other.reports() == [] and other.for_service("triggerer").reports() == []
    assert [f.node for f in other.for_service("beat").failures()] == ["n2"] and other.failures() == []
    assert [o.state for o in other.for_service("beat").observations()] == ["running"]
    assert [o.state for o in other.observations()] == ["stopped"]
    assert other.for_service("triggerer").observations() == []
    beat.clear_switchover()
    assert other.for_service("beat").read_state().switchover is None

    # Paused, drained, node_control and the registry are the fleet's, whichever view writes them.
    trig.set_paused(True)
    beat.drain("n2", NODES, "d1")
    assert trig.set_node_control("self")
    for view in (other, other.for_service("beat"), other.for_service("triggerer")):
        state = view.read_state()
        assert state.paused and state.drained == {"n2": "d1"}
        assert view.read_node_control() == "self"
    assert beat.forget_failures("n2") and other.for_service("beat").failures() == []


def test_a_view_uses_its_parents_session(opened: Any) -> None:
    store = opened()
    beat = store.for_service("beat")
    assert store.for_service("beat") is beat and beat.for_service("scheduler") is store
    assert store.for_service("scheduler") is store
    beat.setup()  # sets the fleet up too, on the parent's one connection
    assert beat.session() == store.session() is not None and beat.usable()
    lease = beat.acquire_or_renew("a", "host-a", LEASE)  # the lease is the fleet's, on that session
    assert lease is not None and store.read_state().lease.holder == "a"
    beat.close()  # closes nothing
    assert store.usable() and store.read_state().lease.holder == "a"
    for bad in ("", "a/b", "..", "x" * 65, "sp ace"):
        with pytest.raises(MetastoreError, match=r"^service .* is not a service name") as caught:
            store.for_service(bad)
        assert "\n" not in str(caught.value)


@pytest.mark.parametrize("service", ["scheduler", "beat"])
def test_a_term_begun_between_the_fence_and_the_commit_fails_the_transaction(
    opened: Any, raw: KazooClient, monkeypatch: pytest.MonkeyPatch, service: str
) -> None:
    a = opened()
    view = a.for_service(service)
    assert isinstance(view, ZooKeeperMetastore)
    epoch = _lead(a)
    placed = view.set_placement("n1", "a", epoch, view.read_state().placement.version, 10)
    assert placed is not None
    where = ROOT if service == "scheduler" else f"{ROOT}/services/{service}"
    before = raw.get(f"{where}/placement")[0]
    fence = view._fence

    def moved_after_fence(tx: Any, holder: str, epoch: int) -> bool:
        ok = fence(tx, holder, epoch)
        raw.set(f"{ROOT}/epoch", b"")  # one more version of the shared counter: another term began
        return ok

    monkeypatch.setattr(view, "_fence", moved_after_fence)
    # Refused as a lost race (None/False), not failed as if the outcome were unknown.
    assert view.set_placement("n2", "a", epoch, placed.version, 10) is None
    assert view.record_observations("a", epoch, [_observe("n1", "running")]) is False
    assert view.renew_placement("n1", 10, "a", epoch) is None
    monkeypatch.undo()
    assert raw.get(f"{where}/placement")[0] == before
    assert json.loads(raw.get(f"{where}/observations")[0]) == {}


def test_a_views_fenced_writes_end_with_its_leaders_term(opened: Any, zk_be: Backend) -> None:
    a = opened()
    beat: Metastore = a.for_service("beat")
    epoch = _lead(a)
    placed = beat.set_placement("n1", "a", epoch, beat.read_state().placement.version, 10)
    assert placed is not None
    b = opened()
    zk_be.lapse(a)
    new = b.acquire_or_renew("b", "host-b", LEASE)
    assert new is not None and new.epoch == epoch + 1
    for attempt in (
        lambda: beat.set_placement("n2", "a", epoch, placed.version, 10),
        lambda: beat.renew_placement("n1", 10, "a", epoch),
        lambda: beat.record_observations("a", epoch, []),
    ):
        with contextlib.suppress(MetastoreError):  # a lost session cannot even send it
            assert not attempt()
    b_beat = b.for_service("beat")
    assert b_beat.set_placement("n2", "b", new.epoch, placed.version, 10) is not None
    assert b_beat.read_state().placement.node == "n2" and b.read_state().placement.node is None


def test_events_name_their_service_and_every_view_reads_them_all(opened: Any, raw: KazooClient) -> None:
    store = opened()
    beat = store.for_service("beat")
    store.add_event("host-a", EventKind.START, "scheduler up", 1)
    beat.add_event("host-a", EventKind.MOVE, "beat moved", 1, "r1")
    store.for_service("triggerer").add_event("host-b", EventKind.KILL, "stray triggerer")
    for view in (store, beat, opened().for_service("triggerer")):
        found = [(e.service, str(e.kind), e.message) for e in view.events()]
        assert found == [
            ("scheduler", "start", "scheduler up"),
            ("beat", "move", "beat moved"),
            ("triggerer", "kill", "stray triggerer"),
        ]
    names = sorted(raw.get_children(f"{ROOT}/events"))
    first = json.loads(raw.get(f"{ROOT}/events/{names[0]}")[0])
    assert "service" not in first  # the scheduler's, as a release with one service writes it
    assert json.loads(raw.get(f"{ROOT}/events/{names[1]}")[0])["service"] == "beat"
    assert [e["service"] for e in store.dump()["events"]] == ["scheduler", "beat", "triggerer"]


def test_a_corrupt_service_znode_is_one_corrupt_record_line(opened: Any, raw: KazooClient) -> None:
    store = opened()
    beat = store.for_service("beat")
    beat.setup()
    raw.set(f"{ROOT}/services/beat/placement", b'{"node": "n1", "epoch": "x", "version": 0, "ttl": 1}')
    with pytest.raises(CorruptRecord, match=r"^metastore znode /sfc/services/beat/placement field epoch") as caught:
        beat.read_state()
    assert "\n" not in str(caught.value)
    assert store.read_state().placement.node is None  # the scheduler's own is untouched and readable
    raw.create(f"{ROOT}/services/beat/reports/n1", b"not json")
    with pytest.raises(CorruptRecord, match=r"^metastore znode /sfc/services/beat/reports/n1 "):
        beat.reports()
    raw.delete(f"{ROOT}/services/beat/reports/n1")
    raw.create(f"{ROOT}/services/bad name", b"")
    with pytest.raises(CorruptRecord, match=r"^metastore znode /sfc/services/bad name is not a service name") as caught:
        store.dump()
    assert "\n" not in str(caught.value)
    raw.delete(f"{ROOT}/services/bad name")
    raw.create(f"{ROOT}/services/scheduler", b"")  # the scheduler's records are at the root
    with pytest.raises(CorruptRecord, match=r"^metastore znode /sfc/services/scheduler is not another service's"):
        store.clear()
    raw.delete(f"{ROOT}/services/scheduler")
    raw.create(
        f"{ROOT}/events/e-", b'{"host":"h","kind":"move","message":"m","epoch":0,"service":"a/b"}', sequence=True
    )
    with pytest.raises(CorruptRecord, match=r"^metastore znode /sfc/events/e-\d+ field service is not a service name"):
        store.events()


def test_the_schedulers_znodes_stay_as_a_release_without_services_keeps_them(
    opened: Any, raw: KazooClient, zk_hosts: str
) -> None:
    store = opened()
    epoch = _lead(store)
    assert store.set_placement("n1", "a", epoch, 0, 30) is not None
    store.request_switchover("n2", "forced", "req-1")
    store.write_report(_report("n1", "running", 3))
    store.record_failure("n3")
    assert store.record_observations("a", epoch, [_observe("n1", "running")])
    records = ["placement", "switchover", "observations", "reports/n1", "failures/n3"]
    before = {path: raw.get(f"{ROOT}/{path}") for path in records}

    beat = store.for_service("beat")  # every per-service write, by the same leader
    placed = beat.set_placement("n2", "a", epoch, 0, 30)
    assert placed is not None and beat.renew_placement("n2", 30, "a", epoch) is not None
    beat.request_switchover("n1", "controlled", "req-2")
    beat.write_report(_report("n1", "stopped", 9))
    beat.record_failure("n3")
    assert beat.record_observations("a", epoch, [_observe("n2", "running")])
    assert beat.release_placement("n2")
    for path in records:
        data, stat = raw.get(f"{ROOT}/{path}")
        assert (data, stat.version) == (before[path][0], before[path][1].version), path
    assert sorted(raw.get_children(ROOT + "/reports")) == ["n1"]

    # A client that never asks for a service (what a release with one service does) reads them all.
    plain = ZooKeeperMetastore(zk_hosts, ROOT, LEASE, TIMEOUT)
    try:
        state = plain.read_state()
        assert state.placement.node == "n1" and state.switchover == ("n2", "forced") and state.switchover_id == "req-1"
        assert [(r.node, r.state, r.seq) for r in plain.reports()] == [("n1", "running", 3)]
        assert [(f.node, f.strikes) for f in plain.failures()] == [("n3", 1)]
        assert [o.node for o in plain.observations()] == ["n1"]
    finally:
        plain.close()


def test_views_set_up_at_once_from_many_clients(zk_hosts: str, raw: KazooClient) -> None:
    errors: list[MetastoreError] = []
    stores = [ZooKeeperMetastore(zk_hosts, ROOT, LEASE, TIMEOUT) for _ in range(4)]

    def set_up(store: Metastore) -> None:
        try:
            for name in ("beat", "triggerer"):
                store.for_service(name).setup()
        except MetastoreError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=set_up, args=(s,)) for s in stores]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == [] and not any(t.is_alive() for t in threads)
        assert sorted(raw.get_children(f"{ROOT}/services")) == ["beat", "triggerer"]
        for name in ("beat", "triggerer"):
            assert sorted(raw.get_children(f"{ROOT}/services/{name}")) == sorted(
                ["placement", "switchover", "observations", "reports", "failures"]
            )
        stores[0].for_service("beat").setup()  # again: nothing to do, nothing fails
    finally:
        for s in stores:
            s.close()


def test_clear_wipes_every_service_and_dump_shows_them(opened: Any) -> None:
    store = opened()
    beat = store.for_service("beat")
    epoch = _lead(store)
    placed = beat.set_placement("n2", "a", epoch, 0, 30)
    assert placed is not None
    beat.request_switchover("n1", "controlled", "r9")
    beat.write_report(_report("n2", "running", 1))
    beat.record_failure("n1")
    assert beat.record_observations("a", epoch, [_observe("n2", "running")])
    shown = {s["name"]: s for s in store.dump()["services"]}
    assert list(shown) == ["beat"]
    assert shown["beat"]["placement"]["node"] == "n2" and shown["beat"]["switchover_requested"]["id"] == "r9"
    assert [r["node"] for r in shown["beat"]["reports"]] == ["n2"]
    assert [f["node"] for f in shown["beat"]["failures"]] == ["n1"]
    assert [o["node"] for o in shown["beat"]["observations"]] == ["n2"]

    beat.clear()  # any view's clear wipes the fleet's records and every service's
    other = open_spec(("zookeeper", store.hosts))
    try:
        view = other.for_service("beat")
        state = view.read_state()
        assert state.placement.node is None and state.placement.version > placed.version
        assert state.switchover is None and state.lease.holder is None
        assert view.reports() == [] and view.failures() == [] and view.observations() == []
    finally:
        other.close()


def test_a_planted_service_znode_is_refused(zk_hosts: str) -> None:
    ours = make_digest_acl("sfc", "pw", all=True)
    theirs = make_digest_acl("eve", "evil", all=True)
    stranger = KazooClient(hosts=zk_hosts, timeout=10, auth_data=[("digest", "eve:evil")])
    stranger.start(timeout=30)
    store = ZooKeeperMetastore(zk_hosts, "/secured", LEASE, TIMEOUT, auth="sfc:pw")
    try:
        stranger.create("/secured/services/beat/placement", b"", acl=[ours, theirs], makepath=True)
        for path in ("/secured/services/beat", "/secured/services", "/secured"):
            stranger.set_acls(path, [ours])  # only the service's placement still lets the stranger in
        store.setup()  # the fleet's znodes are ours
        with pytest.raises(MetastoreError, match=r"^znode /secured/services/beat/placement lets digest:eve:") as caught:
            store.for_service("beat").setup()
        assert "\n" not in str(caught.value)
        store.for_service("triggerer").setup()  # created by us: accepted
    finally:
        store.close()
        stranger.stop()
        stranger.close()
