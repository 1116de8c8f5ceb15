"""Several services from one daemon on fakes: one holder, one lease and epoch, per-service records."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from scheduler_failover_controller.config.services import SCHEDULER
from scheduler_failover_controller.controller.fleet import LeaseCalls
from scheduler_failover_controller.daemon import run
from scheduler_failover_controller.metastore.base import Lease
from scheduler_failover_controller.metastore.events import EventKind
from tests.support.waiting import wait_for

from .fakes import FakeStore
from .services_support import Services, spec


@pytest.fixture
def services() -> Iterator[Services]:
    s = Services((spec("beat"), spec("trig")))
    yield s
    s.close()


def test_a_view_keeps_its_own_placement_and_shares_the_fleets_records() -> None:
    store = FakeStore()
    view = store.for_service("beat")
    assert store.for_service(SCHEDULER) is store and store.for_service("beat") is view
    lease = view.acquire_or_renew("h:1:x", "n1", 5)
    assert lease is not None and store.lease().holder == "h:1:x"  # one lease for all
    assert view.set_placement("n2", "h:1:x", lease.epoch, 0, 5) is not None
    assert view.read_state().placement.node == "n2" and store.read_state().placement.node is None
    view.request_switchover("n3", "controlled")
    assert store.read_state().switchover is None
    store.set_paused(True)
    store.drain("n1", ("n1", "n2", "n3"))
    assert view.read_state().paused and "n1" in view.read_state().drained
    view.record_failure("n2")
    assert store.failures() == [] and [f.node for f in view.failures()] == ["n2"]
    view.add_event("n1", EventKind.START, "started")
    store.add_event("n1", EventKind.START, "started")
    assert [e.service for e in store.events()] == ["beat", SCHEDULER]
    view.close()
    assert not store.closed


def test_every_service_of_a_daemon_leads_under_one_holder_and_epoch(services: Services) -> None:
    n1, n2 = services.fleet("n1"), services.fleet("n2")
    for controller in n1.values():
        controller.run_cycle()
    assert {c.holder for c in n1.values()} == {services.store.lease_holder}
    assert {c.epoch for c in n1.values()} == {1}
    for controller in n2.values():
        assert controller.run_cycle().startswith("standby")
    assert services.running(SCHEDULER) == ["n1"] and services.running("beat") == ["n1"]
    assert services.running("trig") == ["n1"]
    placed = {name: services.store.for_service(name).read_state().placement.node for name in n1}
    assert placed == {SCHEDULER: "n1", "beat": "n1", "trig": "n1"}


def test_only_the_schedulers_controller_keeps_the_registry_row(services: Services) -> None:
    n1 = services.fleet("n1")
    n1["beat"].run_cycle()
    assert services.store.registry == {}
    n1[SCHEDULER].run_cycle()
    assert [c.holder for c in services.store.controllers()] == [n1[SCHEDULER].holder]


def test_the_registry_says_leashed_only_when_every_service_here_is(services: Services) -> None:
    n1 = services.fleet("n1")
    for controller in n1.values():
        controller.run_cycle()
    services.runners["beat"]["n1"].leashed = False
    n1["beat"].run_cycle()
    n1[SCHEDULER].run_cycle()
    (row,) = services.store.controllers()
    assert not row.leashed


def test_a_service_shutting_down_leaves_the_lease_to_the_schedulers(services: Services) -> None:
    n1 = services.fleet("n1")
    for controller in n1.values():
        controller.run_cycle()
    assert "released the leadership lease" not in n1["beat"].shutdown()
    assert services.running("beat") == [] and services.store.lease().valid
    assert services.store.for_service("beat").read_state().placement.node is None
    assert "released the leadership lease (epoch 1)" in n1[SCHEDULER].shutdown()
    stops = [e for e in services.store.events() if e.kind == "stop"]
    assert [e.service for e in stops] == ["beat", SCHEDULER]
    assert stops[0].message.startswith("[beat] controller on n1 stopped")


def test_a_service_that_fails_to_start_moves_alone(services: Services) -> None:
    n1 = services.fleet("n1")
    for controller in n1.values():
        controller.run_cycle()
    beat = services.runners["beat"]["n1"]
    beat.start_error = "exit 1"
    beat.die()
    for _ in range(8):
        services.clock.advance(1)
        for controller in n1.values():
            controller.run_cycle()
    assert services.running("beat") == ["n2"]
    assert services.running(SCHEDULER) == ["n1"] and services.running("trig") == ["n1"]


class RacingStore(FakeStore):
    """As ZooKeeper: taking a free lease is a transaction, lost to a twin's call that took it meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.twin: list[object] = []

    def acquire_or_renew(self, holder: str, host: str, ttl: float) -> Lease | None:
        free = self.lease_holder is None or self.lease_expires_at <= self.server_now
        while self.twin:
            call = self.twin.pop()
            assert callable(call)
            call()
        if free and self.lease_holder is not None:
            return None  # its create lost: the node exists now
        return super().acquire_or_renew(holder, host, ttl)


@pytest.mark.parametrize("shared", [True, False])
def test_a_call_that_lost_the_race_to_its_twin_renews_the_twins_term(shared: bool) -> None:
    store = RacingStore()
    mine, twins = LeaseCalls(), LeaseCalls()
    twin = mine if shared else twins
    taken: list[Lease | None] = []
    store.twin.append(lambda: taken.append(twin.acquire(store, "h:1:x", "n1", 5)))
    lease = mine.acquire(store, "h:1:x", "n1", 5)
    assert taken[0] is not None and taken[0].epoch == 1
    if shared:  # the fleet's calls: the loser asks once more and renews the same term
        assert lease is not None and lease.epoch == 1
    else:  # two unrelated callers: the loser reads "another holds it"
        assert lease is None


def test_the_daemon_runs_every_service_and_releases_the_lease_after_them(services: Services) -> None:
    n1 = services.fleet("n1")
    scheduler, *others = n1.values()
    stop = threading.Event()
    codes: list[int] = []
    runner = threading.Thread(target=lambda: codes.append(run(scheduler.config, scheduler, stop, services=others)))
    runner.start()
    try:
        wait_for(lambda: all(services.running(name) == ["n1"] for name in n1), 10, "every service running")
    finally:
        stop.set()
        scheduler.stopping.set()
        runner.join(30)
    assert codes == [0] and not runner.is_alive()
    assert all(services.running(name) == [] for name in n1)
    stops = [e.service for e in services.store.events() if e.kind == "stop"]
    assert sorted(stops[:2]) == ["beat", "trig"] and stops[2:] == [SCHEDULER]
    assert not services.store.lease().valid


def test_a_service_found_on_a_node_not_among_its_nodes_is_stopped_not_adopted() -> None:
    services = Services((spec("beat", nodes=("n2", "n3")),))
    try:
        n1 = services.fleet("n1")
        services.runners["beat"]["n1"].run()  # by hand, where beat may not run
        sentence = n1["beat"].run_cycle()
        assert "killed stray" in sentence and "not among its nodes" in sentence
        n1["beat"].run_cycle()
        assert services.running("beat") == ["n2"]
    finally:
        services.close()
