"""Preference and failback on fakes with an injected clock: new placements follow the list order,
the scheduler stays where it runs with failback off, moves back to a more preferred node healthy for
failback_delay with it on, and never loops, whatever the preferred node does."""

from __future__ import annotations

from typing import Any

from scheduler_failover_controller.controller.cycle import Controller

from .controller_support import tick
from .fakes import Cluster


def on_n2(cluster: Cluster, **settings: Any) -> Controller:
    """n2's controller active with the scheduler on n2, n1 (more preferred) having been away."""
    c2 = cluster.controller("n2", **settings)
    cluster.store.drain("n1", ("n1", "n2", "n3"))  # n1 away: the scheduler goes to the next node in the list
    assert "placed and started the scheduler on n2" in c2.run_cycle()
    cluster.store.undrain("n1")
    return c2


def failbacks(cluster: Cluster) -> int:
    return sum(1 for e in cluster.store.events_of("switchover_done") if "failback" in e.message) + sum(
        1 for e in cluster.store.events_of("switchover_failed") if "failback" in e.message
    )


def test_new_placements_follow_the_list_order_not_the_actives_node() -> None:
    cluster = Cluster(nodes=("n3", "n1", "n2"))
    try:
        for node in cluster.nodes:
            cluster.store.register(node)  # every node's own controller alive
        c2 = cluster.controller("n2")
        assert "placed and started the scheduler on n3" in c2.run_cycle()
    finally:
        cluster.close()


def test_a_node_whose_own_controller_runs_comes_before_one_without() -> None:
    cluster = Cluster(nodes=("n3", "n1", "n2"))
    try:
        cluster.store.register("n1")
        c2 = cluster.controller("n2")
        assert "placed and started the scheduler on n1" in c2.run_cycle()
    finally:
        cluster.close()


def test_with_failback_off_the_scheduler_stays_where_it_runs(cluster: Cluster) -> None:
    c2 = on_n2(cluster, failback_delay=5)
    for _ in range(30):
        tick(cluster, c2)
    assert cluster.running() == ["n2"] and failbacks(cluster) == 0


def test_failback_moves_it_back_once_the_preferred_node_was_healthy_for_the_delay(cluster: Cluster) -> None:
    c2 = on_n2(cluster, failback="true", failback_delay=5)
    sentences = [s for _ in range(5) for s in tick(cluster, c2)]
    assert cluster.running() == ["n2"], sentences  # healthy for 4 s: not yet
    (sentence,) = tick(cluster, c2)
    assert sentence.startswith(
        "active (epoch 1): failback to n1, more preferred than n2: controlled switchover from n2 to n1: "
        "stopped ['n2'], started"
    ), sentence
    assert cluster.running() == ["n1"] and cluster.runners["n2"].graces == [None]  # controlled
    for _ in range(20):
        tick(cluster, c2)
    assert cluster.running() == ["n1"] and failbacks(cluster) == 1  # the most preferred: it stays


def test_a_flapping_preferred_node_never_gets_the_scheduler_back(cluster: Cluster) -> None:
    c2 = on_n2(cluster, failback="true", failback_delay=5)
    for i in range(200):
        cluster.runners["n1"].reachable = i % 4 != 0  # seen for 3 s, then gone again
        tick(cluster, c2)
    assert cluster.running() == ["n2"] and failbacks(cluster) == 0


def test_a_preferred_node_that_fails_its_start_is_not_tried_again_in_a_loop(cluster: Cluster) -> None:
    c2 = on_n2(cluster, failback="true", failback_delay=5, failure_timeout=0, max_restart_attempts=1)
    cluster.runners["n1"].start_error = "start shell exited with 1"
    for _ in range(500):
        tick(cluster, c2)
        assert len(cluster.running()) <= 1
    assert failbacks(cluster) == 1  # tried once; its failure is never forgotten (failure_timeout 0)
    assert cluster.running() in (["n2"], ["n3"])


def test_a_crash_looping_preferred_node_is_tried_at_most_once_per_failure_timeout(cluster: Cluster) -> None:
    c2 = on_n2(cluster, failback="true", failback_delay=5, failure_timeout=60, max_restart_attempts=1)
    cluster.runners["n1"].comes_up = False  # starts, never comes up
    cycles = 1000
    for _ in range(cycles):
        tick(cluster, c2)
        assert len(cluster.running()) <= 1
    assert 1 <= failbacks(cluster) <= cycles // (60 + 5) + 1


def test_a_gap_in_the_looks_starts_the_delay_again(cluster: Cluster) -> None:
    c2 = on_n2(cluster, failback="true", failback_delay=5)
    for _ in range(3):
        tick(cluster, c2)
    cluster.store.set_paused(True)
    for _ in range(10):  # paused: the active looks at nothing
        tick(cluster, c2)
    cluster.store.set_paused(False)
    for _ in range(4):  # seen healthy for 3 s since the pause: not yet
        tick(cluster, c2)
    assert cluster.running() == ["n2"] and failbacks(cluster) == 0
    for _ in range(3):
        tick(cluster, c2)
    assert cluster.running() == ["n1"] and failbacks(cluster) == 1
