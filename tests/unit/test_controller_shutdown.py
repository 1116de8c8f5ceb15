"""The controller's shutdown on fakes: what it stops, what it releases, and what it leaves alone."""

from __future__ import annotations

import re

from .controller_support import active_on_n1, pid, placed, tick
from .fakes import Cluster

# --- shutdown -----------------------------------------------------------------------------


def test_shutdown_stops_the_local_scheduler_and_releases_everything(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    c2 = cluster.controller("n2")
    c2.run_cycle()
    sentence = c1.shutdown()
    assert re.fullmatch(
        r"stopped the local scheduler \(running \(pid \d+\) -> stopped\); released the placement; "
        r"released the leadership lease \(epoch 1\)",
        sentence,
    )
    store = cluster.store
    assert cluster.actions == [("n1", "start"), ("n1", "stop")] and cluster.running() == []
    assert store.placement_node is None and not store.read_state().lease.valid
    assert [c.host for c in store.controllers()] == ["n2"]
    assert store.events_of("stop")[-1].host == "n1"
    assert c1.role == "stopped" and not c1.leads() and not c1.may_run_locally()
    # A standby takes over within one poll, and places the scheduler on the most preferred node
    # whose own controller is alive: its own (n1's has stopped).
    (s2,) = tick(cluster, c2)
    assert s2 == placed(cluster, "n2", epoch=2)


def test_shutdown_of_the_active_records_its_node_stopped(cluster: Cluster) -> None:
    """Else `status` shows the stopped scheduler running until another active looks (a single host: never)."""
    c1 = active_on_n1(cluster)
    c1.run_cycle()
    assert {o.node: o.state for o in cluster.store.observations()}["n1"] == "running"
    c1.shutdown()
    seen = {o.node: (o.state, o.pids) for o in cluster.store.observations()}
    assert seen["n1"] == ("stopped", ())
    assert set(seen) == set(c1.runners)  # the other nodes' last looks are kept


def test_shutdown_while_paused_leaves_the_scheduler_alone(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    cluster.store.set_paused(True)
    tick(cluster, c1)
    sentence = c1.shutdown()
    assert sentence == "paused: left the local scheduler as it is; released the leadership lease (epoch 1)"
    assert cluster.running() == ["n1"] and cluster.store.placement_node == "n1"


def test_shutdown_with_the_metastore_down_still_stops_the_local_scheduler(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    cluster.store.fail = True
    running = pid(cluster, "n1")
    sentence = c1.shutdown()
    assert sentence == (
        f"stopped the local scheduler (running (pid {running}) -> stopped); could not release the placement "
        "(fake metastore unreachable (release_placement)); metastore unreachable (fake metastore unreachable (release))"
    )
    assert "could not release the placement (fake metastore unreachable (release_placement))" in sentence
    assert sentence.endswith("metastore unreachable (fake metastore unreachable (release))")
    assert cluster.running() == []


def test_shutdown_of_a_standby_without_scheduler_releases_nothing_it_does_not_hold(cluster: Cluster) -> None:
    active_on_n1(cluster)
    c2 = cluster.controller("n2")
    c2.run_cycle()
    assert c2.shutdown() == "nothing held"
    assert cluster.running() == ["n1"] and cluster.store.placement_node == "n1"
    assert [c.host for c in cluster.store.controllers()] == ["n1"]
