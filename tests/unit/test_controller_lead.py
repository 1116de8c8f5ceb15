"""The active controller's lead step on fakes: strays, adoption, placement and its races."""

from __future__ import annotations

import re

from scheduler_failover_controller.controller.cycle import PLEASE_REPORT

from .controller_support import TTL, active_on_n1, bump_version, healthy, pid, tick
from .fakes import Cluster

# --- _lead ------------------------------------------------------------------------------


def test_strays_are_killed_and_the_placed_scheduler_kept(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    cluster.runners["n3"].run()
    stray = pid(cluster, "n3")
    (sentence,) = tick(cluster, c1)
    assert sentence == (
        f"active (epoch 1): scheduler healthy on n1 (running (pid {pid(cluster, 'n1')})); "
        f"killed stray scheduler(s) on n3 (running (pid {stray}) -> stopped); "
        "the scheduler belongs on n1"
    )
    assert re.search(r"killed stray scheduler\(s\) on n3 \(running \(pid \d+\) -> stopped\)", sentence)
    assert sentence.endswith("the scheduler belongs on n1")
    assert cluster.actions == [("n1", "start"), ("n3", "stop")]
    assert cluster.running() == ["n1"]
    assert cluster.store.events_of("kill")


def test_strays_are_not_killed_without_lease_margin(cluster: Cluster) -> None:
    cluster.runners["n2"].run()
    cluster.store.force_placement("n2", TTL)
    c1 = cluster.controller("n1")
    assert c1.run_cycle() == healthy(cluster, "n2")
    cluster.runners["n3"].run()
    cluster.runners["n2"].on_probe = lambda: cluster.clock.advance(TTL)  # stalled during the probes
    (sentence,) = tick(cluster, c1)
    assert sentence == (
        f"active (epoch 1): scheduler healthy on n2 (running (pid {pid(cluster, 'n2')})); "
        "lease margin too small to act; not killing strays this cycle"
    )
    assert cluster.actions == [] and cluster.running() == ["n2", "n3"]


def test_two_schedulers_without_placement_one_is_killed_then_the_other_adopted(cluster: Cluster) -> None:
    cluster.runners["n2"].run()
    cluster.runners["n3"].run()
    stray = pid(cluster, "n3")
    c1 = cluster.controller("n1")
    sentence = c1.run_cycle()
    assert sentence == (
        f"active (epoch 1): killed stray scheduler(s) on n3 (running (pid {stray}) -> stopped); "
        "the scheduler belongs on n2"
    )
    assert cluster.actions == [("n3", "stop")]
    assert cluster.running() == ["n2"]
    (sentence,) = tick(cluster, c1)
    assert sentence == (
        f"active (epoch 1): adopted the scheduler already running on n2 (running (pid {pid(cluster, 'n2')}))"
    )
    assert cluster.store.placement_node == "n2" and cluster.actions == [("n3", "stop")]


def test_adopts_a_running_scheduler_when_the_placement_expired(cluster: Cluster) -> None:
    cluster.store.force_placement("n2", TTL)
    cluster.runners["n2"].run()
    cluster.clock.advance(TTL + 3)  # placement long expired (e.g. its active controller died)
    c1 = cluster.controller("n1")
    sentence = c1.run_cycle()
    assert sentence == (
        f"active (epoch 1): adopted the scheduler already running on n2 (running (pid {pid(cluster, 'n2')}))"
    )
    store = cluster.store
    assert (store.placement_node, store.placement_epoch, store.placement_version) == ("n2", 1, 2)
    assert store.placement().valid
    assert cluster.actions == [] and cluster.running() == ["n2"]
    assert "adopt" in store.kinds()


def test_the_active_adopts_a_scheduler_on_its_own_node_instead_of_killing_it(cluster: Cluster) -> None:
    """A controller restarted after its placement expired must not restart a healthy scheduler."""
    cluster.store.force_placement("n1", TTL)
    cluster.runners["n1"].run()
    cluster.clock.advance(TTL + 3)
    c1 = cluster.controller("n1")
    sentence = c1.run_cycle()
    assert sentence == (
        f"active (epoch 1): adopted the scheduler already running on n1 (running (pid {pid(cluster, 'n1')}))"
    )
    assert cluster.actions == [] and cluster.running() == ["n1"]
    assert c1.may_run_locally()


def test_shutdown_keeps_the_placement_when_the_stop_is_not_confirmed(cluster: Cluster) -> None:
    c1 = cluster.controller("n1")
    c1.run_cycle()
    assert cluster.running() == ["n1"]
    cluster.runners["n1"].stop_fails = True
    summary = c1.shutdown()
    assert "kept the placement" in summary
    assert cluster.store.placement_node == "n1"


def test_adoption_race_lost(cluster: Cluster) -> None:
    cluster.runners["n2"].run()
    c1 = cluster.controller("n1")
    cluster.store.on("set_placement", lambda: bump_version(cluster.store))
    assert c1.run_cycle() == "active (epoch 1): lost the race to adopt the scheduler on n2; retrying next cycle"
    assert cluster.actions == []


def test_placement_race_lost_starts_nothing(cluster: Cluster) -> None:
    c1 = cluster.controller("n1")
    cluster.store.on("set_placement", lambda: bump_version(cluster.store))
    assert c1.run_cycle() == "active (epoch 1): lost the race to place the scheduler on n1; retrying next cycle"
    assert cluster.actions == []


def test_no_node_can_take_the_scheduler(cluster: Cluster) -> None:
    for runner in cluster.runners.values():
        runner.reachable = False
    cluster.store.register("n1")  # no other controller could do better
    c1 = cluster.controller("n1")
    sentence = c1.run_cycle()
    assert sentence == (
        "active (epoch 1): no scheduler runs and no node can take it now (n1 unknown, n2 unknown, n3 unknown)"
    )
    assert cluster.actions == [] and cluster.store.placement_node is None


def test_an_active_that_cannot_see_its_own_node_leaves_the_lease_to_another_controller(cluster: Cluster) -> None:
    for node, runner in cluster.runners.items():
        runner.reachable = False
        cluster.store.register(node)
    c1 = cluster.controller("n1")
    sentence = c1.run_cycle()
    assert sentence.startswith("standby: cannot see n1") and "left the lease to n2, n3" in sentence
    assert c1.role.value == "standby" and not cluster.store.read_state().lease.valid
    assert cluster.actions == [] and cluster.store.placement_node is None
    assert "standby: nobody is active" in c1.run_cycle()  # blind: it does not take the lease back
    assert not cluster.store.read_state().lease.valid


def test_placed_but_start_failed_backs_the_node_off(cluster: Cluster) -> None:
    cluster.runners["n1"].start_error = "start shell exited with 1"
    c1 = cluster.controller("n1")
    sentence = c1.run_cycle()
    assert sentence == (
        "active (epoch 1): placed the scheduler on n1 but its start failed: n1: start shell exited with 1"
    )
    assert cluster.actions == [("n1", "start")] and cluster.running() == []
    assert cluster.store.placement_node == "n1"
    assert c1.incidents.backoff["n1"].until > cluster.clock.monotonic()
    assert "start_failed" in cluster.store.kinds()


def test_placement_node_unknown_waits_and_starts_nothing_elsewhere(cluster: Cluster) -> None:
    n2 = cluster.runners["n2"]
    n2.run()
    n2.reachable = False
    cluster.store.force_placement("n2", TTL)
    c1 = cluster.controller("n1")
    sentence = c1.run_cycle()
    assert sentence == (
        "active (epoch 1): cannot see the scheduler node n2 (n2: fake node unreachable); "
        "waiting 5.0s for its placement to expire before moving it"
    )
    assert cluster.actions == [] and cluster.store.placement_node == "n2" and cluster.store.placement_version == 1


def test_placement_on_a_node_outside_the_config_waits_instead_of_crashing(cluster: Cluster) -> None:
    # e.g. a node was removed from scheduler_nodes_in_cluster while it still held the placement
    cluster.store.force_placement("old-node", TTL)
    c1 = cluster.controller("n1")
    sentence = c1.run_cycle()
    assert PLEASE_REPORT not in sentence
    assert sentence == (
        "active (epoch 1): cannot see the scheduler node old-node (not a configured node); "
        "waiting 5.0s for its placement to expire before moving it"
    )
    assert cluster.actions == []
