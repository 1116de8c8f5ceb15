"""The active controller's restarts in place and moves to another node, and Airflow's health check
that triggers them, on fakes."""

from __future__ import annotations

import pytest

from .controller_support import active_on_n1, bump_version, healthy, pid, tick
from .fakes import Cluster

# --- _restart_or_move -------------------------------------------------------------------


def test_dead_scheduler_is_restarted_in_place(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    cluster.runners["n1"].die()
    (sentence,) = tick(cluster, c1)
    assert sentence == (
        "active (epoch 1): scheduler was stopped on n1; restarted it in place "
        f"(attempt 1/3, up after 0.0s, running (pid {pid(cluster, 'n1')}))"
    )
    assert cluster.actions == [("n1", "start"), ("n1", "start")]  # nothing to stop first
    assert cluster.running() == ["n1"]
    assert (cluster.store.placement_node, cluster.store.placement_version) == ("n1", 1)
    assert "restart" in cluster.store.kinds()


@pytest.mark.parametrize("fault", ["unhealthy", "two schedulers"])
def test_unhealthy_or_doubled_scheduler_is_stopped_then_restarted_in_place(cluster: Cluster, fault: str) -> None:
    c1 = active_on_n1(cluster)
    if fault == "unhealthy":
        cluster.runners["n1"].hang()
    else:
        cluster.runners["n1"].run(count=2)
    (sentence,) = tick(cluster, c1)
    state = "unhealthy" if fault == "unhealthy" else "running"
    assert sentence == (
        f"active (epoch 1): scheduler was {state} on n1; restarted it in place "
        f"(attempt 1/3, up after 0.0s, running (pid {pid(cluster, 'n1')}))"
    )
    assert cluster.actions == [("n1", "start"), ("n1", "stop"), ("n1", "start")]
    assert len(cluster.runners["n1"].pids) == 1 and cluster.running() == ["n1"]


def test_failed_restart_in_place_is_counted(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    cluster.runners["n1"].die()
    cluster.runners["n1"].start_error = "exit 1"
    (sentence,) = tick(cluster, c1)
    assert sentence == "active (epoch 1): restart of the scheduler on n1 failed (attempt 1/3): n1: exit 1"
    assert cluster.actions == [("n1", "start"), ("n1", "start")]
    assert "start_failed" in cluster.store.kinds()


def test_restart_that_never_comes_up_is_cleaned_up(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    n1 = cluster.runners["n1"]
    n1.die()
    n1.comes_up = False
    lease_expiry = cluster.store.lease_expires_at
    (sentence,) = tick(cluster, c1)
    assert sentence == (
        "active (epoch 1): restart of the scheduler on n1 failed (attempt 1/3): not up within 3s (cleanup: stopped)"
    )
    assert cluster.actions == [("n1", "start"), ("n1", "start"), ("n1", "stop")]
    assert sum(cluster.clock.slept) >= 3  # waited with the injected sleep, not a real one
    assert cluster.store.lease_expires_at >= lease_expiry + 3  # the lease was renewed while waiting
    assert cluster.store.placement().valid


def test_move_after_max_restart_attempts_stops_before_it_starts_and_alerts(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    n1 = cluster.runners["n1"]
    n1.die()
    n1.start_error = "exit 1"
    for attempt in (1, 2, 3):
        (sentence,) = tick(cluster, c1)
        assert sentence == f"active (epoch 1): restart of the scheduler on n1 failed (attempt {attempt}/3): n1: exit 1"
    before = len(cluster.actions)
    (sentence,) = tick(cluster, c1)
    assert sentence == (
        "active (epoch 1): moved the scheduler from n1 to n2 after 3 failed restarts "
        f"(up after 0.0s, running (pid {pid(cluster, 'n2')}))"
    )
    assert cluster.actions[before:] == [("n1", "stop"), ("n2", "start")]  # stop-before-start
    assert cluster.running() == ["n2"]
    store = cluster.store
    assert (store.placement_node, store.placement_epoch, store.placement_version) == ("n2", 1, 2)
    assert "move" in store.kinds()
    assert cluster.alerters["n1"].summaries == ["scheduler moved from n1 to n2"]


def test_move_whose_start_fails_alerts_once(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster, max_restart_attempts=1)
    cluster.runners["n1"].die()
    for runner in cluster.runners.values():
        runner.start_error = "exit 1"
    (sentence,) = tick(cluster, c1)
    assert sentence == "active (epoch 1): restart of the scheduler on n1 failed (attempt 1/1): n1: exit 1"
    (sentence,) = tick(cluster, c1)
    assert sentence == (
        "active (epoch 1): moved the scheduler from n1 to n2 after 1 failed restarts, "
        "but the start there failed: n2: exit 1"
    )
    assert cluster.actions[-2:] == [("n1", "stop"), ("n2", "start")]
    assert cluster.store.placement_node == "n2"
    assert len(cluster.alerters["n1"].sent) == 1


def test_no_other_node_to_move_to_retries_in_place(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    for node in ("n2", "n3"):
        cluster.runners[node].reachable = False
        cluster.store.register(node)  # guarded by their own controllers: they do not block
    cluster.runners["n1"].die()
    cluster.runners["n1"].start_error = "exit 1"
    tick(cluster, c1)
    tick(cluster, c1)
    tick(cluster, c1)
    before = len(cluster.actions)
    (sentence,) = tick(cluster, c1)
    assert sentence == (
        "active (epoch 1): scheduler down on n1 after 3 failed restarts and no other node can take it "
        "(n1 backing off 19s, n2 unknown, n3 unknown); next try in place in 19.0s"
    )
    assert cluster.actions[before:] == []
    # Backing off: no start at all until the node's backoff is over, then one more try in place.
    # Meanwhile the placement lapses (nobody renews the placement of a dead scheduler), so the
    # retry places it afresh.
    sentences = [tick(cluster, c1)[0] for _ in range(20)]
    assert cluster.actions[before:] == [("n1", "start")]
    assert sentences[3] == (
        "active (epoch 1): no scheduler runs and no node can take it now (n1 backing off 15s, n2 unknown, n3 unknown)"
    )
    retried = [i for i, s in enumerate(sentences) if "placed the scheduler on n1 but its start failed: n1: exit 1" in s]
    assert retried == [18], sentences  # 19 s of backoff left after the first tick
    assert sentences[19] == (  # twice as long
        "active (epoch 1): scheduler down on n1 after 3 failed restarts and no other node can take it "
        "(n1 backing off 39s, n2 unknown, n3 unknown); next try in place in 39.0s"
    )


def test_single_node_crash_loop_backs_off_after_its_budget() -> None:
    """On one node there is nowhere to move to: past max_restart_attempts, restarts are spaced out."""
    cluster = Cluster(nodes=("n1",))
    try:
        c1 = active_on_n1(cluster)
        n1 = cluster.runners["n1"]
        sentences = []
        for _ in range(30):
            n1.die()  # it comes up, then dies before the next poll: a crash loop
            sentences += tick(cluster, c1)
        starts = [s for s in sentences if "restarted it in place" in s]
        assert len(starts) < 10, sentences
        assert any("it has no other node; next try in place in" in s for s in sentences)
        assert "attempt 4, after its backoff" in starts[3]
    finally:
        cluster.close()


def test_move_refused_when_the_old_node_cannot_be_confirmed_stopped(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster, max_restart_attempts=1)
    n1 = cluster.runners["n1"]
    n1.hang()
    n1.stop_fails = True
    (sentence,) = tick(cluster, c1)
    assert sentence == (
        "active (epoch 1): restart of the scheduler on n1 failed (attempt 1/1): not up within 3s (cleanup: unhealthy)"
    )
    (sentence,) = tick(cluster, c1)
    assert sentence == (
        "active (epoch 1): cannot move the scheduler off n1: could not confirm it stopped "
        f"(unhealthy (pid {pid(cluster, 'n1')}))"
    )
    assert cluster.runners["n2"].starts == 0 and cluster.runners["n3"].starts == 0
    assert cluster.store.placement_node == "n1"


def test_move_race_lost_starts_nothing(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster, max_restart_attempts=1)
    cluster.runners["n1"].die()
    cluster.runners["n1"].start_error = "exit 1"
    tick(cluster, c1)
    cluster.store.on("set_placement", lambda: bump_version(cluster.store))
    (sentence,) = tick(cluster, c1)
    assert sentence == "active (epoch 1): lost the race to move the scheduler from n1 to n2; retrying next cycle"
    assert cluster.actions[-1] == ("n1", "stop")
    assert cluster.runners["n2"].starts == 0


@pytest.mark.parametrize("retry_count_before_alerting", [1, 5])
def test_all_nodes_failing_backs_off_and_alerts_once_per_incident(
    cluster: Cluster, retry_count_before_alerting: int
) -> None:
    for runner in cluster.runners.values():
        runner.start_error = "exit 1"
    c1 = cluster.controller("n1", retry_count_before_alerting=retry_count_before_alerting)
    sentences = [c1.run_cycle()]
    idle_cycles = 0
    for _ in range(60):
        before = len(cluster.actions)
        sentences += tick(cluster, c1)
        idle_cycles += len(cluster.actions) == before
    assert cluster.running() == []
    assert len(cluster.alerters["n1"].sent) == 1, cluster.alerters["n1"].summaries  # no alert storm
    assert any("no other node can take it" in s and "backing off" in s for s in sentences)
    assert idle_cycles >= 10  # backoff: many cycles start nothing at all
    assert {r.starts > 1 for r in cluster.runners.values()} == {True}  # every node was tried

    # Recovery ends the incident; the next incident alerts again, once.
    for runner in cluster.runners.values():
        runner.start_error = None
    for _ in range(60):
        sentences += tick(cluster, c1)
    assert "scheduler healthy" in sentences[-1]
    (node,) = cluster.running()
    for runner in cluster.runners.values():
        runner.start_error = "exit 1"
    cluster.runners[node].die()
    for _ in range(30):
        tick(cluster, c1)
    assert len(cluster.alerters["n1"].sent) == 2, cluster.alerters["n1"].summaries


# --- Airflow's health check -------------------------------------------------------------------


def test_a_failing_health_check_restarts_only_after_n_failures_in_a_row(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scheduler_failover_controller.controller import health as health_module

    answers: list[str | None] = []
    urls: list[str] = []

    def fake_check(url: str, timeout: float) -> str | None:
        urls.append(url)
        return answers.pop(0) if answers else None

    monkeypatch.setattr(health_module, "check_health", fake_check)
    c1 = active_on_n1(cluster, scheduler_health_url="http://{node}:8974/health", scheduler_health_failures=3)
    answers.extend(["health check answered HTTP 503", None, "health check failed: timed out"])
    (sentence,) = tick(cluster, c1)
    assert sentence == healthy(cluster, "n1")  # one failure is not a restart
    (sentence,) = tick(cluster, c1)
    assert sentence == healthy(cluster, "n1")  # and a success resets the count
    answers.extend(["health check answered HTTP 503"] * 3)
    for _ in range(2):
        (sentence,) = tick(cluster, c1)
        assert sentence == healthy(cluster, "n1")
    (sentence,) = tick(cluster, c1)
    assert sentence == (
        "active (epoch 1): scheduler was unhealthy on n1 (health check answered HTTP 503 3 times in a row); "
        f"restarted it in place (attempt 1/3, up after 0.0s, running (pid {pid(cluster, 'n1')}))"
    )
    assert cluster.actions == [("n1", "start"), ("n1", "stop"), ("n1", "start")]
    assert urls[0] == "http://n1:8974/health"


def test_a_new_scheduler_gets_its_start_timeout_to_bring_up_its_health_server(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scheduler_failover_controller.controller import health as health_module

    monkeypatch.setattr(health_module, "check_health", lambda url, timeout: "health check failed: refused")
    c1 = active_on_n1(
        cluster,
        scheduler_health_url="http://{node}:8974/health",
        scheduler_health_failures=2,
        scheduler_start_timeout=10,
    )
    # The grace counts from the first look at this scheduler process (the first tick).
    for _ in range(10):  # never answered yet, within scheduler_start_timeout: not counted
        (sentence,) = tick(cluster, c1)
        assert sentence == healthy(cluster, "n1")
        assert c1.last_probes["n1"].detail == "starting: health check failed: refused"
    (sentence,) = tick(cluster, c1, seconds=1.5)  # grace over: failure 1 of 2
    assert sentence == healthy(cluster, "n1")
    (sentence,) = tick(cluster, c1)
    assert sentence == (
        "active (epoch 1): scheduler was unhealthy on n1 (health check failed: refused 2 times in a row); "
        f"restarted it in place (attempt 1/3, up after 0.0s, running (pid {pid(cluster, 'n1')}))"
    )
