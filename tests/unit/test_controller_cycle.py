"""The controller cycle's dispatch (active, standby, paused) and every controller's guard of its own
node, on fakes: each test asserts the sentence and the actions."""

from __future__ import annotations

from scheduler_failover_controller.controller.cycle import PLEASE_REPORT

from .controller_support import TTL, active_on_n1, healthy, pid, placed, tick
from .fakes import Cluster

# --- _cycle -----------------------------------------------------------------------------


def test_first_cycle_becomes_active_and_places_and_starts_on_its_own_node(cluster: Cluster) -> None:
    c1 = cluster.controller("n1")
    sentence = c1.run_cycle()
    assert sentence == placed(cluster, "n1")
    assert cluster.actions == [("n1", "start")]
    assert cluster.running() == ["n1"]
    store = cluster.store
    assert (store.lease_holder, store.lease_host, store.lease_epoch) == (c1.holder, "n1", 1)
    assert (store.placement_node, store.placement_epoch, store.placement_version) == ("n1", 1, 1)
    assert store.placement().valid
    assert c1.role == "active" and c1.epoch == 1 and c1.leads() and c1.may_run_locally()
    assert store.kinds() == ["elected", "start"]
    assert [c.host for c in store.controllers()] == ["n1"]
    assert {o.node: o.state for o in store.observations()} == {"n1": "stopped", "n2": "stopped", "n3": "stopped"}


def test_standby_reports_who_is_active_and_acts_on_nothing(cluster: Cluster) -> None:
    active_on_n1(cluster)
    c2 = cluster.controller("n2")
    calls_before = len(cluster.store.calls)
    sentence = c2.run_cycle()
    assert sentence == "standby: n1 is active (epoch 1); scheduler placed on n1"
    assert c2.role == "standby" and c2.epoch == 0 and not c2.leads()
    assert cluster.actions == [("n1", "start")]
    assert [c.host for c in cluster.store.controllers()] == ["n1", "n2"]
    calls = cluster.store.calls[calls_before:]
    assert "set_placement" not in calls and "record_observations" not in calls


def test_healthy_scheduler_renews_placement_and_lease(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    store = cluster.store
    placement_expiry, lease_expiry = store.placement_expires_at, store.lease_expires_at
    (sentence,) = tick(cluster, c1)
    assert sentence == healthy(cluster, "n1")
    assert cluster.actions == [("n1", "start")]
    assert store.placement_expires_at == placement_expiry + 1 and store.lease_expires_at == lease_expiry + 1
    assert (store.placement_version, store.lease_epoch) == (1, 1)


def test_healthy_scheduler_on_a_node_without_controller_keeps_its_placement(cluster: Cluster) -> None:
    cluster.runners["n2"].run()
    cluster.store.force_placement("n2", TTL)
    c1 = cluster.controller("n1")
    assert c1.run_cycle() == healthy(cluster, "n2")
    expiry = cluster.store.placement_expires_at
    (sentence,) = tick(cluster, c1)
    assert sentence == healthy(cluster, "n2")
    assert cluster.store.placement_expires_at == expiry + 1  # renewed by the active, fenced by its epoch
    assert cluster.actions == []


def test_lease_lost_to_another_holder_turns_standby_and_acts_on_nothing(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    c2 = cluster.controller("n2")
    assert c2.run_cycle() == "standby: n1 is active (epoch 1); scheduler placed on n1"
    cluster.clock.advance(TTL + 1)  # c1 misses its renewals (stalled); c2 takes over
    assert c2.run_cycle() == (
        f"active (epoch 2): adopted the scheduler already running on n1 (running (pid {pid(cluster, 'n1')}))"
    )
    assert cluster.store.lease_epoch == 2
    calls_before = len(cluster.store.calls)
    sentence = c1.run_cycle()
    assert sentence == "standby: n2 is active (epoch 2); scheduler placed on n1"
    assert c1.role == "standby" and c1.epoch == 0 and not c1.leads()
    calls = cluster.store.calls[calls_before:]
    assert "set_placement" not in calls and "record_observations" not in calls
    assert cluster.actions == [("n1", "start")]  # nothing stopped, nothing started
    assert cluster.running() == ["n1"]


def test_paused_active_acts_on_nothing(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    cluster.store.set_paused(True)
    cluster.runners["n1"].die()
    cluster.runners["n3"].run()
    (sentence,) = tick(cluster, c1)
    assert sentence == "active: paused; acting on nothing"
    assert c1.role == "active" and c1.paused
    assert cluster.actions == [("n1", "start")]
    assert cluster.running() == ["n3"]


def test_paused_standby_does_not_guard_its_node(cluster: Cluster) -> None:
    active_on_n1(cluster)
    cluster.store.set_paused(True)
    cluster.runners["n2"].run()  # an operator's scheduler during maintenance
    c2 = cluster.controller("n2")
    assert c2.run_cycle() == "standby: paused; acting on nothing"
    assert cluster.runners["n2"].stops == 0 and cluster.running() == ["n1", "n2"]


def test_run_cycle_catches_an_unexpected_exception(cluster: Cluster) -> None:
    c1 = cluster.controller("n1")

    def boom() -> None:
        raise RuntimeError("bug")

    cluster.store.on("read_state", boom)
    sentence = c1.run_cycle()
    assert sentence.startswith(PLEASE_REPORT) and "please report" in sentence
    assert sentence == f"{PLEASE_REPORT}: the cycle failed; nothing more was done"
    assert cluster.actions == []
    assert c1.cycles == 1
    assert c1.run_cycle() == placed(cluster, "n1")  # the next cycle works


# --- _guard (every controller guards its own node) ------------------------------------------


def test_guard_stops_a_standby_nodes_scheduler_that_has_no_placement(cluster: Cluster) -> None:
    active_on_n1(cluster)
    c2 = cluster.controller("n2")
    cluster.runners["n2"].run()
    stopped = pid(cluster, "n2")
    sentence = c2.run_cycle()
    assert sentence == (
        f"standby: stopped a scheduler on n2 (running (pid {stopped})) "
        "that holds no valid placement (placement is on n1); now stopped"
    )
    assert cluster.actions == [("n1", "start"), ("n2", "stop")]
    assert cluster.running() == ["n1"]
    assert cluster.store.events_of("fence")[-1].host == "n2"


def test_guard_rereads_before_killing_and_spares_a_scheduler_just_placed_here(cluster: Cluster) -> None:
    active_on_n1(cluster)
    c2 = cluster.controller("n2")
    cluster.runners["n1"].die()
    cluster.runners["n2"].run()
    # The active moves the placement to n2 after c2 read the state but before its guard acts.
    cluster.store.on("heartbeat", lambda: cluster.store.force_placement("n2", TTL))
    sentence = c2.run_cycle()
    assert sentence == "standby: n1 is active (epoch 1); scheduler placed on n1"
    assert cluster.runners["n2"].stops == 0 and cluster.running() == ["n2"]
    assert c2.may_run_locally()


def test_guard_stops_when_the_reread_fails(cluster: Cluster) -> None:
    active_on_n1(cluster)
    c2 = cluster.controller("n2")
    cluster.runners["n2"].run()
    cluster.store.on("heartbeat", lambda: cluster.store.failing.add("read_state"))
    stopped = pid(cluster, "n2")
    sentence = c2.run_cycle()
    assert sentence == (
        f"standby: stopped a scheduler on n2 (running (pid {stopped})) "
        "that holds no valid placement (placement is on n1); now stopped"
    )
    assert cluster.runners["n2"].stops == 1


def test_guard_keeps_renewing_the_placement_of_a_standby_node(cluster: Cluster) -> None:
    cluster.runners["n2"].run()
    cluster.store.force_placement("n2", TTL)
    c1 = cluster.controller("n1")
    c2 = cluster.controller("n2")
    c1.run_cycle()
    for _ in range(10):
        s1, s2 = tick(cluster, c1, c2)
        assert s1 == healthy(cluster, "n2")
        assert s2 == "standby: n1 is active (epoch 1); scheduler placed on n2"
    assert c2.may_run_locally() and cluster.running() == ["n2"] and cluster.actions == []
