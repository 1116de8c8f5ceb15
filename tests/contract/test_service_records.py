"""The metastore contract of services beside the scheduler (``Metastore.for_service``), run against
every backend: each service keeps its own placement, switchover request, observations, node
reports and failed starts under the one lease and epoch; events name their service; the lease,
the registry, paused, node_control and drained nodes are the fleet's; and a store that knows no
services (a release with one service) reads the scheduler's records exactly as before.

The backends and the ``be``, ``store`` and ``other`` fixtures: tests/contract/conftest.py and
metastore_backends.py.
"""

from __future__ import annotations

import contextlib
from typing import Any

from scheduler_failover_controller.exceptions import MetastoreError
from scheduler_failover_controller.metastore.base import (
    SCHEDULER,
    ControllerInfo,
    Metastore,
    Observation,
)
from scheduler_failover_controller.metastore.events import EventKind
from scheduler_failover_controller.metastore.reports import NodeReport
from tests.contract.metastore_backends import LEASE, Backend

TTL = 30.0


def place(view: Metastore, node: str | None, holder: str, epoch: int) -> int:
    """Point ``view``'s service at ``node``; its new version."""
    placed = view.set_placement(node, holder, epoch, view.read_state().placement.version, TTL)
    assert placed is not None and placed.node == node and placed.epoch == epoch
    return placed.version


def test_the_schedulers_view_is_the_store_and_the_fleets_records_are_shared(store: Metastore) -> None:
    assert store.for_service(SCHEDULER) is store
    beat = store.for_service("beat")
    assert beat.for_service(SCHEDULER) is store or beat.for_service(SCHEDULER).read_state() == store.read_state()
    lease = beat.acquire_or_renew("a", "host-a", LEASE)  # the fleet's lease, whichever view takes it
    assert lease is not None
    assert store.read_state().lease.holder == "a" and store.read_state().lease.epoch == lease.epoch
    assert store.acquire_or_renew("b", "host-b", LEASE) is None
    renewed = store.acquire_or_renew("a", "host-a", LEASE)
    assert renewed is not None and renewed.epoch == lease.epoch  # a renewal: one term for every service
    assert beat.release("a") is True
    assert not store.read_state().lease.valid
    beat.set_paused(True)
    assert store.read_state().paused is True
    store.set_paused(False)
    assert beat.read_state().paused is False
    assert beat.drain("n1", ["n1", "n2"], "d-1") is True
    assert store.read_state().drained == {"n1": "d-1"} == beat.read_state().drained
    assert store.drain("n2", ["n1", "n2"]) is False  # the last undrained node, whichever view asks
    assert store.undrain("n1") is True and beat.read_state().drained == {}
    assert beat.claim_node_control("self") == "self"
    assert store.read_node_control() == "self"
    beat.heartbeat(ControllerInfo("n1", "h1", 11, "0.2", "standby", 0, 0))
    assert [c.host for c in store.controllers()] == ["n1"]
    store.deregister("n1", "h1")
    assert beat.controllers() == []


def test_each_services_placement_is_its_own_under_the_one_epoch(store: Metastore, other: Any, be: Backend) -> None:
    lease = store.acquire_or_renew("a", "host-a", LEASE)
    assert lease is not None
    beat, trig = store.for_service("beat"), store.for_service("triggerer")
    before = store.read_state().placement
    assert beat.read_state().placement.node is None and trig.read_state().placement.node is None
    place(store, "n1", "a", lease.epoch)
    v_beat = place(beat, "n2", "a", lease.epoch)
    place(trig, "n3", "a", lease.epoch)
    assert [v.read_state().placement.node for v in (store, beat, trig)] == ["n1", "n2", "n3"]
    assert store.read_state().placement.version == before.version + 1
    # A compare-and-set against another service's version is that service's business only.
    assert beat.set_placement("n3", "a", lease.epoch, v_beat - 1, TTL) is None
    # Renewals: only the service placed on the node, and never another's.
    assert beat.renew_placement("n1", TTL) is None
    assert beat.renew_placement("n2", TTL, "a", lease.epoch) is not None
    assert store.renew_placement("n2", TTL) is None
    # A release clears the service's own placement alone.
    assert trig.release_placement("n1") is False
    assert trig.release_placement("n3") is True
    assert trig.read_state().placement.node is None
    assert store.read_state().placement.node == "n1" and beat.read_state().placement.node == "n2"
    # Every service's writes are fenced by the one lease and epoch.
    version = beat.read_state().placement.version
    b = other()
    be.lapse(store)
    new = b.acquire_or_renew("b", "host-b", LEASE)
    assert new is not None and new.epoch == lease.epoch + 1
    for attempt in (
        lambda: beat.set_placement("n2", "a", lease.epoch, version, TTL),
        lambda: beat.renew_placement("n2", TTL, "a", lease.epoch),
        lambda: beat.record_observations("a", lease.epoch, []),
    ):
        with contextlib.suppress(MetastoreError):  # ZooKeeper: a lost session cannot even send it
            assert not attempt()
    b_beat = b.for_service("beat")
    assert b_beat.set_placement("n2", "b", new.epoch, version, TTL) is not None
    assert b_beat.read_state().placement.epoch == new.epoch


def test_requests_are_each_services_own_and_events_name_it(store: Metastore, other: Any) -> None:
    beat, trig = store.for_service("beat"), store.for_service("triggerer")
    beat.request_switchover("n2", "controlled", "id-beat")
    store.request_switchover("n3", "forced", "id-sched")
    seen = other().for_service("beat").read_state()
    assert (seen.switchover, seen.switchover_id) == (("n2", "controlled"), "id-beat")
    assert (store.read_state().switchover, store.read_state().switchover_id) == (("n3", "forced"), "id-sched")
    assert trig.read_state().switchover is None and trig.read_state().switchover_id == ""
    beat.clear_switchover()
    assert beat.read_state().switchover is None
    assert store.read_state().switchover == ("n3", "forced")
    store.add_event("h", EventKind.START, "scheduler up", 3)
    beat.add_event("h", EventKind.RESTART, "beat up", 3, "id-1")
    store.for_service("triggerer").add_event("h", EventKind.MOVE, "triggerer moved", 4)
    expected = [("scheduler", "start"), ("beat", "restart"), ("triggerer", "move")]
    for reader in (store, beat, other(), other().for_service("triggerer")):
        assert [(e.service, str(e.kind)) for e in reader.events()][-3:] == expected
    assert [e.request_id for e in store.events()][-3:] == ["", "id-1", ""]


def test_observations_reports_and_failures_are_each_services_own(store: Metastore) -> None:
    lease = store.acquire_or_renew("a", "host-a", LEASE)
    assert lease is not None
    beat, trig = store.for_service("beat"), store.for_service("triggerer")
    assert store.record_observations("a", lease.epoch, [Observation("n1", "running", (11,), "sched")])
    assert beat.record_observations(
        "a", lease.epoch, [Observation("n1", "stopped", (), "beat"), Observation("n2", "running", (22,), "")]
    )
    assert [(o.node, o.state, o.pids) for o in store.observations()] == [("n1", "running", (11,))]
    assert [(o.node, o.state, o.pids) for o in beat.observations()] == [("n1", "stopped", ()), ("n2", "running", (22,))]
    assert trig.observations() == []
    assert beat.record_observations("a", lease.epoch, [])  # a rewrite replaces the service's own only
    assert beat.observations() == [] and len(store.observations()) == 1

    assert store.write_report(NodeReport("n1", "h1", "running", (11,), seq=5))
    assert beat.write_report(NodeReport("n1", "h1", "stopped", seq=1))  # its own seq, below the scheduler's
    assert not beat.write_report(NodeReport("n1", "h1", "running", seq=1))
    assert [(r.node, r.state, r.seq) for r in store.reports()] == [("n1", "running", 5)]
    assert [(r.node, r.state, r.seq) for r in beat.reports()] == [("n1", "stopped", 1)]
    assert trig.reports() == []

    assert beat.record_failure("n1").strikes == 1
    assert beat.record_failure("n1").strikes == 2
    assert store.record_failure("n1").strikes == 1
    assert [(f.node, f.strikes) for f in beat.failures()] == [("n1", 2)]
    assert [(f.node, f.strikes) for f in store.failures()] == [("n1", 1)]
    assert trig.failures() == []
    assert beat.forget_failures("n1", strikes=1) is False
    assert beat.forget_failures("n1") is True
    assert beat.failures() == [] and [f.strikes for f in store.failures()] == [1]


def test_a_store_that_knows_no_services_reads_the_schedulers_records_unchanged(store: Metastore, other: Any) -> None:
    """What a release with one service reads (the scheduler's records through a store on which no
    service's view was ever opened) is the same after every service wrote all of its own."""
    lease = store.acquire_or_renew("a", "host-a", LEASE)
    assert lease is not None
    place(store, "n1", "a", lease.epoch)
    store.request_switchover("n2", "controlled", "id-s")
    assert store.record_observations("a", lease.epoch, [Observation("n1", "running", (11,), "s")])
    assert store.write_report(NodeReport("n1", "h1", "running", (11,), seq=4))
    store.record_failure("n2")

    def schedulers(reader: Metastore) -> Any:
        state = reader.read_state()
        placement = state.placement
        return (
            (placement.node, placement.epoch, placement.version),
            (state.lease.holder, state.lease.epoch),
            (state.switchover, state.switchover_id),
            [(o.node, o.state, o.pids, o.detail) for o in reader.observations()],
            [(r.node, r.state, r.pids, r.seq) for r in reader.reports()],
            [(f.node, f.strikes) for f in reader.failures()],
        )

    before = schedulers(other())
    for name in ("beat", "triggerer"):
        view = store.for_service(name)
        place(view, "n2", "a", lease.epoch)
        assert view.renew_placement("n2", TTL) is not None
        view.request_switchover("n1", "forced", f"id-{name}")
        assert view.record_observations("a", lease.epoch, [Observation("n2", "stopped", (), name)])
        assert view.write_report(NodeReport("n2", "h2", "stopped", seq=9))
        view.record_failure("n1")
        view.add_event("h", EventKind.RESTART, f"{name} up", lease.epoch)
        assert view.release_placement("n2") is True
    assert schedulers(other()) == before
    assert schedulers(store) == before


def test_dump_shows_every_services_records_and_clear_wipes_them(store: Metastore, be: Backend) -> None:
    lease = store.acquire_or_renew("a", "host-a", LEASE)
    assert lease is not None
    beat = store.for_service("beat")
    version = place(beat, "n1", "a", lease.epoch)
    beat.request_switchover("n2", "forced", "id-1")
    assert beat.record_observations("a", lease.epoch, [Observation("n1", "running", (5,), "")])
    assert beat.write_report(NodeReport("n1", "h1", "running", (5,), seq=3))
    beat.record_failure("n1")
    beat.add_event("h", EventKind.START, "beat up", lease.epoch)
    if be.fake is None:  # (the in-memory store's dump is the base store's, without services)
        dumped = store.dump()
        assert [s["name"] for s in beat.dump()["services"]] == [s["name"] for s in dumped["services"]]
        [service] = [s for s in dumped["services"] if s["name"] == "beat"]
        assert service["placement"]["node"] == "n1"
        assert service["switchover_requested"] == {"to": "n2", "mode": "forced", "id": "id-1"}
        assert [o["node"] for o in service["observations"]] == ["n1"]
        assert [(f["node"], f["strikes"]) for f in service["failures"]] == [("n1", 1)]
        assert dumped["placement"]["node"] is None  # the scheduler's own stays nowhere
        assert [(e["service"], e["message"]) for e in dumped["events"]][-1] == ("beat", "beat up")
    beat.clear()
    state = beat.read_state()
    assert state.placement.node is None and state.placement.version > version and state.switchover is None
    assert beat.observations() == [] and beat.reports() == [] and beat.failures() == [] and beat.events() == []
    assert not store.read_state().lease.valid
    # The view works on after the wipe: a new term places its service again, and reports start over.
    again = store.acquire_or_renew("b", "host-b", LEASE)
    assert again is not None and again.epoch >= lease.epoch
    place(beat, "n2", "b", again.epoch)
    assert beat.write_report(NodeReport("n1", "h1", "running", (5,), seq=1))
