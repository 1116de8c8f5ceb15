"""Event kinds as one enum, and switchover outcomes found by their request's id (the active's side, and
the CLI's wait, with the in-memory FakeStore and an injected clock)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from scheduler_failover_controller.cli.switchover_wait import NotCarriedOut, Verdict, await_outcome
from scheduler_failover_controller.metastore.events import (
    SWITCHOVER_OUTCOMES,
    EventKind,
    event_kind,
    new_request_id,
    request_id,
)

from .fakes import Cluster, FakeClock, FakeStore

# The strings stored by every release so far: older releases and `history --json` read them as they are.
STORED = {
    "elected",
    "adopt",
    "start",
    "start_failed",
    "restart",
    "move",
    "kill",
    "fence",
    "alert",
    "duplicate",
    "step-down",
    "stop",
    "pause",
    "resume",
    "switchover",
    "switchover_done",
    "switchover_refused",
    "switchover_failed",
    "node_control",
    "drain",
    "undrain",
}


def test_every_kind_keeps_the_string_older_releases_stored() -> None:
    assert {k.value for k in EventKind} == STORED
    assert {str(k) for k in SWITCHOVER_OUTCOMES} == {"switchover_done", "switchover_refused", "switchover_failed"}
    assert f"[{EventKind.STEP_DOWN}]" == "[step-down]"


def test_a_kind_this_release_does_not_know_is_kept_as_written() -> None:
    assert event_kind("move") is EventKind.MOVE
    newer = event_kind("drained")
    assert newer == "drained" and not isinstance(newer, EventKind)


def test_request_ids_are_fresh_words() -> None:
    ids = {new_request_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(request_id("x", i) == i for i in ids)


def test_the_decision_core_does_not_import_the_clis_read_model() -> None:
    code = (
        "import sys, scheduler_failover_controller.controller.cycle, "
        "scheduler_failover_controller.controller.switchover; "
        "print('scheduler_failover_controller.status' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"


# --- the active's side ----------------------------------------------------------------------------------


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    c = Cluster()
    yield c
    c.close()


@pytest.mark.parametrize(
    ("target", "kind"),
    [("n2", EventKind.SWITCHOVER_DONE), ("n1", EventKind.SWITCHOVER_DONE), ("n9", EventKind.SWITCHOVER_REFUSED)],
)
def test_the_outcome_names_the_request_it_answers(cluster: Cluster, target: str, kind: EventKind) -> None:
    c1 = cluster.controller("n1")
    c1.run_cycle()
    cluster.store.request_switchover(target, "controlled", "req-7")
    cluster.clock.advance(1.0)
    c1.run_cycle()
    outcome = cluster.store.events(1)[0]
    assert (outcome.kind, outcome.request_id) == (kind, "req-7")
    assert cluster.store.read_state().switchover_id == ""


def test_a_request_without_id_gets_an_outcome_without_one(cluster: Cluster) -> None:
    c1 = cluster.controller("n1")
    c1.run_cycle()
    cluster.store.request_switchover("n2", "forced")  # from a CLI of a release without ids
    cluster.clock.advance(1.0)
    c1.run_cycle()
    outcome = cluster.store.events(1)[0]
    assert (outcome.kind, outcome.request_id) == (EventKind.SWITCHOVER_DONE, "")


# --- the CLI's wait -------------------------------------------------------------------------------------

Step = Callable[[FakeStore], None]


def waiting(store: FakeStore, key: str, target: str, steps: list[Step], wait: float = 10.0) -> Verdict:
    """The CLI's wait for request ``key``; each of its sleeps runs the next step (what the cluster does)."""
    clock = FakeClock()
    pending = list(steps)

    def sleep(seconds: float) -> None:
        clock.advance(seconds)
        if pending:
            pending.pop(0)(store)

    return await_outcome(store, key, target, wait, 0.5, settle=1.0, clock=clock.monotonic, sleep=sleep)


def ask(store: FakeStore, key: str, target: str) -> None:
    """What the CLI writes: the request's event, then the request."""
    store.add_event("cli", EventKind.SWITCHOVER, f"controlled switchover to {target} requested", request_id=key)
    store.request_switchover(target, "controlled", key)


def answer(kind: EventKind, message: str, place: str | None = None, with_id: bool = True) -> Step:
    """The active carries the pending request out: placement, clear, then the outcome event."""

    def step(store: FakeStore) -> None:
        key = store.read_state().switchover_id if with_id else ""
        if place is not None:
            store.placement_node, store.placement_expires_at = place, store.server_now + 30
        store.clear_switchover()
        store.add_event("n1", kind, message, 1, key)

    return step


def idle(store: FakeStore) -> None:
    pass


def test_the_outcome_with_the_requests_id_is_taken_whatever_came_around_it() -> None:
    store = FakeStore()
    store.add_event("n1", EventKind.SWITCHOVER_FAILED, "an old failure")
    ask(store, "mine", "n2")

    def others_and_mine(s: FakeStore) -> None:
        answer(EventKind.SWITCHOVER_DONE, "switched to n2", place="n2")(s)
        s.add_event("n1", EventKind.SWITCHOVER_REFUSED, "someone else's", 1, "theirs")
        s.add_event("n1", EventKind.MOVE, "later news", 1)

    assert waiting(store, "mine", "n2", [idle, others_and_mine]) == Verdict(True, "switched to n2")


def test_an_outcome_written_just_after_the_clear_is_still_found() -> None:
    store = FakeStore()
    ask(store, "mine", "n2")

    def clear_only(s: FakeStore) -> None:
        s.placement_node, s.placement_expires_at = "n2", s.server_now + 30
        s.clear_switchover()

    def outcome(s: FakeStore) -> None:
        s.add_event("n1", EventKind.SWITCHOVER_FAILED, "its start failed", 1, "mine")

    assert waiting(store, "mine", "n2", [clear_only, outcome]) == Verdict(False, "its start failed")


def test_a_request_replaced_before_it_was_carried_out_says_so() -> None:
    store = FakeStore()
    ask(store, "mine", "n2")
    verdict = waiting(store, "mine", "n2", [lambda s: ask(s, "theirs", "n3")])
    assert verdict == Verdict(
        False, "the switchover request to n2 was replaced by another one (to n3) before it was carried out"
    )


def test_a_request_replaced_and_the_other_carried_out_before_the_cli_looked_says_so() -> None:
    store = FakeStore()
    ask(store, "mine", "n2")

    def replaced_and_done(s: FakeStore) -> None:
        ask(s, "theirs", "n3")
        answer(EventKind.SWITCHOVER_DONE, "switched to n3", place="n3")(s)

    verdict = waiting(store, "mine", "n2", [replaced_and_done])
    assert not verdict.ok
    assert verdict.message.startswith("the switchover request to n2 was replaced by another one")


def test_an_older_controller_answers_without_an_id() -> None:
    store = FakeStore()
    store.add_event("cli", EventKind.SWITCHOVER, "an earlier request, of an older CLI")
    store.add_event("n1", EventKind.SWITCHOVER_FAILED, "the earlier one failed")
    ask(store, "mine", "n2")
    steps = [answer(EventKind.SWITCHOVER_DONE, "switched to n2", place="n2", with_id=False)]
    assert waiting(store, "mine", "n2", steps) == Verdict(True, "switched to n2")


def test_no_outcome_at_all_is_judged_by_the_placement() -> None:
    for placed, ok in (("n2", True), ("n1", False)):
        store = FakeStore()
        ask(store, "mine", "n2")

        def silently(s: FakeStore, placed: str = placed) -> None:
            s.placement_node, s.placement_expires_at = placed, s.server_now + 30
            s.clear_switchover()

        assert waiting(store, "mine", "n2", [silently]) == Verdict(ok, "no outcome recorded")


def test_a_done_outcome_while_the_scheduler_is_placed_elsewhere_is_not_ok() -> None:
    store = FakeStore()
    ask(store, "mine", "n2")
    steps = [answer(EventKind.SWITCHOVER_DONE, "switched", place="n3")]
    assert waiting(store, "mine", "n2", steps) == Verdict(False, "switched")


def test_a_request_still_pending_at_the_end_of_the_wait_is_not_carried_out() -> None:
    store = FakeStore()
    ask(store, "mine", "n2")
    with pytest.raises(NotCarriedOut):
        waiting(store, "mine", "n2", [], wait=3.0)
    assert store.read_state().switchover_id == "mine"  # it stays pending
