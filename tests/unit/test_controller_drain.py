"""Drained nodes on fakes: the scheduler moves off a drained node by a controlled switchover whose
outcome carries the drain's id, never lands on one, and stays where it runs while nothing else can
take it."""

from __future__ import annotations

from .controller_support import active_on_n1, healthy, pid, tick
from .fakes import Cluster

NODES = ("n1", "n2", "n3")


def test_a_drained_node_running_the_scheduler_hands_it_over_by_a_controlled_switchover(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    assert cluster.store.drain("n1", NODES, "req-7")
    (sentence,) = tick(cluster, c1)
    assert sentence == (
        "active (epoch 1): n1 is drained: controlled switchover from n1 to n2: stopped ['n1'], started: "
        f"up after 0.0s, running (pid {pid(cluster, 'n2')})"
    )
    assert cluster.runners["n1"].graces == [None]  # controlled: SIGTERM and the stop timeout
    assert cluster.actions == [("n1", "start"), ("n1", "stop"), ("n2", "start")]
    done = cluster.store.events_of("switchover_done")[-1]
    assert done.request_id == "req-7"
    assert cluster.store.drained == {"n1": "req-7"}  # the drain stays: n1 takes no scheduler
    (sentence,) = tick(cluster, c1)
    assert sentence == healthy(cluster, "n2")


def test_a_pending_switchover_request_is_not_cleared_by_a_drain_move(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    cluster.store.drain("n1", NODES, "req-1")
    tick(cluster, c1)
    assert cluster.store.placement_node == "n2"
    cluster.store.request_switchover("n3", "controlled", "sw-1")
    (sentence,) = tick(cluster, c1)
    assert "switchover from n2 to n3" in sentence and cluster.store.switchover is None


def test_no_scheduler_is_placed_on_a_drained_node(cluster: Cluster) -> None:
    cluster.store.drain("n1", NODES)
    cluster.store.drain("n2", NODES)
    c1 = cluster.controller("n1")
    sentence = c1.run_cycle()
    assert "placed and started the scheduler on n3" in sentence
    assert cluster.running() == ["n3"]


def test_a_drained_node_keeps_the_scheduler_while_no_other_node_can_take_it(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    cluster.store.drain("n1", NODES)
    cluster.runners["n2"].reachable = False
    cluster.runners["n3"].reachable = False
    (sentence,) = tick(cluster, c1)
    assert sentence.startswith("active (epoch 1): n1 is drained, but no other node can take the scheduler (")
    assert "n1 drained" in sentence and sentence.endswith(
        f"scheduler healthy on n1 (running (pid {pid(cluster, 'n1')}))"
    )
    assert cluster.running() == ["n1"]
    cluster.runners["n2"].reachable = True  # n3 still unseen: a switchover would be refused
    (sentence,) = tick(cluster, c1)
    assert "n1 is drained, but the scheduler stays until n3 can be seen" in sentence
    cluster.runners["n3"].reachable = True
    (sentence,) = tick(cluster, c1)
    assert "n1 is drained: controlled switchover from n1 to n2" in sentence
    assert cluster.running() == ["n2"]


def test_an_undrained_node_is_a_target_again(cluster: Cluster) -> None:
    cluster.store.drain("n1", NODES)
    c1 = cluster.controller("n1")
    c1.run_cycle()
    assert cluster.running() == ["n2"]
    cluster.store.undrain("n1")
    cluster.store.drain("n2", NODES)
    (sentence,) = tick(cluster, c1)
    assert "n2 is drained: controlled switchover from n2 to n1" in sentence
