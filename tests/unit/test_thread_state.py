"""No unlocked state between the cycle and the renewal thread (docs/design.md, section 4).

Each test forces one bad interleaving, with no timing luck: the renewal's metastore call is held
in flight (a hook of the FakeStore, run inside that call) while the cycle, in a thread of its
own, takes a step; then the renewal's answer arrives late. The late answer must not undo the
step. The cycle's thread must finish while the call is still in flight: a lock held across a
metastore call would make it wait, and the test fails on that too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from scheduler_failover_controller.controller.cycle import PLEASE_REPORT, Controller
from scheduler_failover_controller.controller.term import NEVER, Role
from scheduler_failover_controller.exceptions import CorruptRecord
from scheduler_failover_controller.probe_result import ProbeResult, SchedulerState
from tests.support.waiting import wait_for

from .fakes import Cluster, FakeStore

BOUND = 5.0  # real seconds any step of a test may take


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    c = Cluster()
    yield c
    c.close()


def active_on_n1(cluster: Cluster) -> Controller:
    c1 = cluster.controller("n1")
    assert "placed and started the scheduler on n1" in c1.run_cycle()
    return c1


class CycleStep(threading.Thread):
    """A step of the cycle, run as the cycle would, in a thread of its own (started at once)."""

    def __init__(self, step: Callable[[], object]) -> None:
        super().__init__(name="cycle", daemon=True)
        self.step = step
        self.errors: list[BaseException] = []
        self.start()

    def run(self) -> None:
        try:
            self.step()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.errors.append(exc)


def finished(thread: CycleStep) -> None:
    """The cycle's step is done (it never waited for the renewal's call in flight), and did not raise."""
    thread.join(BOUND)
    assert not thread.is_alive(), "the cycle waited for a renewal's metastore call"
    assert not thread.errors, thread.errors


def after_answer(store: FakeStore, name: str, step: Callable[[], None]) -> None:
    """Once: when the store has answered the next call of ``name``, run ``step`` before the answer
    reaches the caller (an answer that arrives late). An error the store raised reaches it after ``step`` too."""
    original: Callable[..., Any] = getattr(store, name)
    fired = threading.Event()

    def late(*args: Any, **kwargs: Any) -> Any:
        if fired.is_set():
            return original(*args, **kwargs)
        fired.set()
        try:
            return original(*args, **kwargs)
        finally:
            step()

    setattr(store, name, late)


def test_a_late_own_placement_renewal_does_not_bring_back_a_placement_the_cycle_forgot(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    cluster.clock.advance(1.0)
    before = c1.placement_deadline
    leash_writes = len(cluster.runners["n1"].deadlines)

    def cycle_moves_on() -> None:
        # The store renewed n1's placement; then it was placed on n2, and the cycle saw that.
        cluster.store.force_placement("n2", c1.ttl)
        finished(CycleStep(c1.run_cycle))
        assert c1.placement_deadline == NEVER

    after_answer(cluster.store, "renew_placement", cycle_moves_on)
    c1.renew()
    assert c1.placement_deadline == NEVER, f"the late answer brought back {c1.placement_deadline - before:+.1f}s"
    assert not c1.may_run_locally()
    writes = cluster.runners["n1"].deadlines[leash_writes:]
    assert not [d for kind, d in writes if kind == "renew" and d > before], "n1's leash was given the late deadline"


def test_a_late_own_placement_renewal_does_not_replace_a_newer_placement(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    cluster.clock.advance(1.0)
    newer: list[float] = []

    def cycle_places_anew() -> None:
        # The renewal's answer is on its way; the cycle writes a new placement of n1 meanwhile.
        cluster.clock.advance(1.0)

        def place() -> None:
            assert c1.term.place(cluster.store.placement(), "n1") is not None
            newer.append(c1.placement_deadline)

        finished(CycleStep(place))

    after_answer(cluster.store, "renew_placement", cycle_places_anew)
    c1.renew()
    assert c1.placement_deadline == newer[0]


def test_a_lease_renewal_in_flight_does_not_take_back_a_lease_the_cycle_left(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    cluster.store.register("n2")  # a live controller that can see: the blind active leaves it the lease
    cluster.clock.advance(1.0)
    c1.run_cycle()
    c1.blind.note(ProbeResult("n1", SchedulerState.UNKNOWN, detail="cannot list processes"))
    cluster.store.force_placement("n2", c1.ttl)  # n1's own placement is over: nothing keeps it
    state = cluster.store.read_state()
    cycle: list[CycleStep] = []
    sentences: list[str] = []

    def cycle_steps_down() -> None:
        # The renewal asked for the lease; before the store sees that call, the cycle steps down.
        cycle.append(
            CycleStep(lambda: sentences.append(c1.blind.step_down(state, c1.holder, c1.term.stand_by, c1._event)))
        )
        # Until it is done, or it waits for this very call (as it must: the release comes after it).
        wait_for(lambda: not cycle[0].is_alive() or getattr(c1.term, "settling", False), BOUND, "the cycle's step-down")

    cluster.store.on("acquire_or_renew", cycle_steps_down)
    c1.renew()
    finished(cycle[0])
    assert sentences and "left the lease to n2" in sentences[0]
    assert c1.role is Role.STANDBY and not c1.leads()
    lease = cluster.store.read_state().lease
    assert not lease.valid, f"the lease was taken again by {lease.holder} (epoch {lease.epoch})"


def test_a_late_failed_remote_renewal_does_not_drop_a_node_the_cycle_keeps_anew(cluster: Cluster) -> None:
    c1 = cluster.controller("n1")
    cluster.runners["n2"].run()  # no controller of its own on n2: the active keeps its placement
    assert "adopted the scheduler already running on n2" in c1.run_cycle()
    cluster.clock.advance(1.0)
    assert "scheduler healthy on n2" in c1.run_cycle()
    assert c1.renewals.renewing == {"n2": True}
    cluster.store.placement_expires_at = cluster.store.server_now - 0.1  # expired: the renewal finds it gone

    def cycle_adopts_and_keeps() -> None:
        def two_cycles() -> None:
            cluster.clock.advance(0.5)
            assert "adopted the scheduler already running on n2" in c1.run_cycle()
            cluster.clock.advance(0.5)
            assert "scheduler healthy on n2" in c1.run_cycle()

        finished(CycleStep(two_cycles))
        assert c1.renewals.renewing == {"n2": True}

    after_answer(cluster.store, "renew_placement", cycle_adopts_and_keeps)
    c1.renew()
    wait_for(lambda: not c1.renewals.leash_pending, BOUND, "the background leash renewal")
    assert c1.renewals.renewing == {"n2": True}, "the late answer dropped what the cycle keeps"


def test_a_late_unreadable_answer_does_not_outlive_the_cycle_reading_the_store_fine(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    cluster.clock.advance(1.0)

    def store_fixed_and_read() -> None:
        # The store held a bad record for a moment (the cycle saw it), then read fine again.
        c1.term.failed(CorruptRecord("lease.expires_at: 'x'"))
        finished(CycleStep(c1.run_cycle))
        assert c1.term.readable()

    original = cluster.store.acquire_or_renew

    def corrupt_then_late(holder: str, host: str, ttl: float) -> None:
        cluster.store.acquire_or_renew = original  # type: ignore[method-assign]
        store_fixed_and_read()
        raise CorruptRecord("lease.expires_at: 'x'")  # what the store said before it was fixed

    cluster.store.acquire_or_renew = corrupt_then_late  # type: ignore[method-assign]
    c1.renew()
    assert c1.term.readable(), "a late answer stopped the renewals of a store that reads fine"


def test_renewals_and_cycles_in_real_threads_keep_the_term_consistent(cluster: Cluster) -> None:
    """A second check with real threads (bounded): no cycle fails, and the term ends consistent."""
    c1 = active_on_n1(cluster)
    stop = threading.Event()
    sentences: list[str] = []

    def renewals() -> None:
        for _ in range(400):
            if stop.is_set():
                return
            c1.renew()

    renewer = threading.Thread(target=renewals, name="renewals", daemon=True)
    renewer.start()
    for i in range(60):
        cluster.clock.advance(0.25)
        if i % 20 == 10:
            cluster.store.force_placement("n2", c1.ttl)  # moved away: the cycle forgets n1's placement
        sentences.append(c1.run_cycle())
    stop.set()
    renewer.join(BOUND)
    assert not renewer.is_alive()
    assert not [s for s in sentences if PLEASE_REPORT in s]
    role, epoch = c1.term.role, c1.term.epoch
    assert (role is Role.ACTIVE) == (epoch != 0)
    if cluster.store.placement_node != "n1":
        assert c1.placement_deadline == NEVER or cluster.store.placement_node is None
