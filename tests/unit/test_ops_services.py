"""Operations per service on fakes: ``status`` reads every service through its own view, the
history names the service, ``drain --wait`` waits for every service to leave the node, and the
metrics carry a ``service`` label."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from scheduler_failover_controller.cli.drain_wait import NotMoved, await_move
from scheduler_failover_controller.metastore.base import Metastore
from scheduler_failover_controller.metastore.events import EventKind
from scheduler_failover_controller.metrics import Metrics
from scheduler_failover_controller.status import ClusterHealth, history_json, read_status

from .controller_support import active_on_n1
from .fakes import Cluster, FakeClock, FakeStore, make_config
from .ops_support import BEAT, place, with_beat

HOLDER = "n1:1:fake"
ALL_STOPPED = {"n1": "stopped", "n2": "stopped", "n3": "stopped"}


@pytest.fixture
def store() -> FakeStore:
    store = FakeStore()
    store.setup()
    assert store.acquire_or_renew(HOLDER, "n1", 5) is not None
    return store


def test_status_lists_every_service_the_scheduler_first_and_keeps_the_top_level(store: FakeStore) -> None:
    place(store, HOLDER, "n1", {**ALL_STOPPED, "n1": "running"})
    place(store.for_service(BEAT), HOLDER, "n2", {**ALL_STOPPED, "n2": "running"})
    alone = read_status(store, make_config()).to_json()
    both = read_status(store, with_beat(make_config())).to_json()
    assert both["health"] == "healthy"
    assert [(s["name"], s["node"], s["state"], s["health"]) for s in both["services"]] == [
        ("scheduler", "n1", "running", "healthy"),
        (BEAT, "n2", "running", "healthy"),
    ]
    assert [n["state"] for n in both["services"][1]["nodes"]] == ["stopped", "running", "stopped"]
    # The top-level fields are the scheduler's, as they were: only "services" is added.
    assert list(both)[-1] == "services"
    assert {k: v for k, v in both.items() if k != "services"} == {k: v for k, v in alone.items() if k != "services"}
    assert [s["name"] for s in alone["services"]] == ["scheduler"]


def test_a_service_that_does_not_run_degrades_the_cluster_but_is_no_missing_scheduler(store: FakeStore) -> None:
    place(store, HOLDER, "n1", {**ALL_STOPPED, "n1": "running"})
    place(store.for_service(BEAT), HOLDER, "n2", ALL_STOPPED)
    status = read_status(store, with_beat(make_config()))
    assert status.health is ClusterHealth.DEGRADED
    assert status.problems == ["beat not running"]
    beat = status.to_json()["services"][1]
    assert (beat["node"], beat["state"], beat["health"]) == ("n2", "stopped", "not running")
    store.for_service(BEAT).request_switchover("n3", "controlled", "r1")
    beat = read_status(store, with_beat(make_config())).to_json()["services"][1]
    assert beat["switchover"] == "n3"


def test_a_service_never_placed_is_stopped_on_no_node(store: FakeStore) -> None:
    place(store, HOLDER, "n1", {**ALL_STOPPED, "n1": "running"})
    beat = read_status(store, with_beat(make_config(), nodes=("n2", "n3"))).to_json()["services"][1]
    assert (beat["node"], beat["state"], beat["health"]) == (None, "unknown", "not running")  # never seen
    assert [n["host"] for n in beat["nodes"]] == ["n2", "n3"]  # the service's own nodes
    assert beat["problems"][0] == "no valid placement"


def test_two_of_one_service_is_a_problem_of_that_service(store: FakeStore) -> None:
    place(store, HOLDER, "n1", {**ALL_STOPPED, "n1": "running"})
    place(store.for_service(BEAT), HOLDER, "n2", {**ALL_STOPPED, "n2": "running", "n3": "running"})
    status = read_status(store, with_beat(make_config()))
    assert "beat: more than one beat running (n2, n3)" in status.problems
    assert status.to_json()["services"][1]["health"] == "degraded"


def test_history_names_the_service_of_each_event(store: FakeStore) -> None:
    store.add_event("n1", EventKind.START, "scheduler started")
    store.for_service(BEAT).add_event("n1", EventKind.START, "beat started")
    assert [(e["service"], e["message"]) for e in history_json(store.events())] == [
        ("scheduler", "scheduler started"),
        (BEAT, "beat started"),
    ]


# --- drain --wait ----------------------------------------------------------------------------


def _views(store: FakeStore) -> list[tuple[str, Metastore]]:
    return [("scheduler", store), (BEAT, store.for_service(BEAT))]


def test_drain_wait_waits_for_every_service_to_leave(store: FakeStore) -> None:
    """The scheduler is elsewhere already; beat runs on the drained node until its move's outcome."""
    clock = FakeClock()
    beat = store.for_service(BEAT)
    place(store, HOLDER, "n2", {**ALL_STOPPED, "n2": "running"})
    place(beat, HOLDER, "n1", {**ALL_STOPPED, "n1": "running"})
    assert store.drain("n1", ["n1", "n2", "n3"], "d1")
    steps = iter(range(100))

    def sleep(seconds: float) -> None:
        clock.advance(seconds)
        if next(steps) == 3:  # the active moves beat, and says so under the drain's id
            place(beat, HOLDER, "n3", {**ALL_STOPPED, "n3": "running"})
            beat.add_event("n1", EventKind.SWITCHOVER_DONE, "beat moved from n1 to n3", 1, "d1")

    said = await_move(_views(store), "n1", "d1", 30, 0.5, clock=clock.monotonic, sleep=sleep)
    assert said.splitlines() == ["drained n1; the scheduler runs on n2", "beat moved from n1 to n3"]
    assert clock.monotonic() >= 2.0  # it waited for beat


def test_drain_wait_gives_up_naming_the_service_still_there(store: FakeStore) -> None:
    clock = FakeClock()
    place(store, HOLDER, "n2", {**ALL_STOPPED, "n2": "running"})
    place(store.for_service(BEAT), HOLDER, "n1", {**ALL_STOPPED, "n1": "running"})
    assert store.drain("n1", ["n1", "n2", "n3"], "d1")
    with pytest.raises(NotMoved, match="drained n1, but beat still runs there after 3s"):
        await_move(_views(store), "n1", "d1", 3, 0.5, clock=clock.monotonic, sleep=clock.advance)


def test_a_failed_move_of_one_service_ends_the_wait(store: FakeStore) -> None:
    clock = FakeClock()
    beat = store.for_service(BEAT)
    place(store, HOLDER, "n1", {**ALL_STOPPED, "n1": "running"})
    place(beat, HOLDER, "n1", {**ALL_STOPPED, "n1": "running"})
    assert store.drain("n1", ["n1", "n2", "n3"], "d1")
    store.add_event("n1", EventKind.SWITCHOVER_FAILED, "the scheduler's move failed", 1, "d1")  # not beat's
    beat.add_event("n1", EventKind.SWITCHOVER_FAILED, "no node for beat", 1, "d1")
    with pytest.raises(NotMoved, match="the scheduler was not moved: the scheduler's move failed"):
        await_move(_views(store), "n1", "d1", 3, 0.5, clock=clock.monotonic, sleep=clock.advance)
    with pytest.raises(NotMoved, match="beat was not moved: no node for beat"):
        await_move([(BEAT, beat)], "n1", "d1", 3, 0.5, clock=clock.monotonic, sleep=clock.advance)


# --- metrics ---------------------------------------------------------------------------------


@pytest.fixture
def clusters() -> Iterator[tuple[Cluster, Cluster]]:
    """The scheduler's cluster and beat's (each a store, runners and controllers of its own)."""
    made = (Cluster(), Cluster())
    yield made
    for cluster in made:
        cluster.close()


def _samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    _type, body = metrics.exposition()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def test_metrics_carry_the_service_label(clusters: tuple[Cluster, Cluster]) -> None:
    scheduler, beat_cluster = clusters
    c1 = active_on_n1(scheduler)
    c1.run_cycle()  # its probes see the scheduler it started
    beat = active_on_n1(beat_cluster)
    beat_cluster.runners["n1"].die()
    beat.run_cycle()  # restarts it: an event of beat's
    samples = _samples(Metrics(c1, {BEAT: beat}))
    assert samples[("sfc_scheduler_running", (("node", "n1"), ("service", "scheduler")))] == 1
    assert samples[("sfc_scheduler_running", (("node", "n2"), ("service", "scheduler")))] == 0
    assert ("sfc_scheduler_running", (("node", "n1"), ("service", BEAT))) in samples
    assert samples[("sfc_scheduler_unknown", (("node", "n3"), ("service", BEAT)))] == 0
    assert samples[("sfc_self_fences_total", (("service", BEAT),))] == 0
    beat_events = {
        dict(labels)["kind"]
        for (name, labels) in samples
        if name == "sfc_events_total" and dict(labels)["service"] == BEAT
    }
    assert "restart" in beat_events
    scheduler_events = {
        dict(labels)["kind"]
        for (name, labels) in samples
        if name == "sfc_events_total" and dict(labels)["service"] == "scheduler"
    }
    assert "restart" not in scheduler_events
    assert samples[("sfc_active", ())] == 1  # the fleet's series have no service label


def test_a_hook_shared_by_services_is_counted_once(clusters: tuple[Cluster, Cluster]) -> None:
    scheduler, _ = clusters
    c1 = active_on_n1(scheduler)
    twin = scheduler.controller("n2")
    twin.hooks = c1.hooks
    samples = _samples(Metrics(c1, {BEAT: twin}))
    assert not [labels for (name, labels) in samples if name == "sfc_events_total" and ("service", BEAT) in labels]
