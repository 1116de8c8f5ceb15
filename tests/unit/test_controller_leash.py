"""The leash and the renewals on their own clock, on fakes: deadlines handed to the leash, renewals
without a cycle, and start-up with the store down."""

from __future__ import annotations

import pytest

from scheduler_failover_controller.probe_result import SchedulerState
from tests.support.waiting import wait_for

from .controller_support import TTL, active_on_n1, healthy, pid, tick
from .fakes import Cluster

# --- the leash and renewals on their own clock ------------------------------------------------


def test_a_start_hands_the_placement_deadline_to_the_leash(cluster: Cluster) -> None:
    c1 = cluster.controller("n1")
    assert "placed and started the scheduler on n1" in c1.run_cycle()
    kinds = [kind for kind, _d in cluster.runners["n1"].deadlines]
    assert "start" in kinds
    start_deadline = dict(cluster.runners["n1"].deadlines)["start"]
    # the placement's server expiry less the safety margin, measured from before the renewal
    assert start_deadline == pytest.approx(cluster.clock.now + TTL - c1.margin, abs=0.01)
    before = len(cluster.runners["n1"].deadlines)
    tick(cluster, c1)
    renewed = cluster.runners["n1"].deadlines[before:]
    assert renewed and renewed[-1][0] == "renew"
    assert renewed[-1][1] == pytest.approx(cluster.clock.now + TTL - c1.margin, abs=0.01)


def test_a_dead_scheduler_s_placement_is_not_renewed_by_its_own_controller(cluster: Cluster) -> None:
    """Else an active that cannot reach the node would wait for its placement for ever."""
    c1 = cluster.controller("n1")
    c2 = cluster.controller("n2")
    cluster.store.acquire_or_renew(c1.holder, "n1", TTL)
    c1.run_cycle()
    cluster.store.force_placement("n2", TTL)
    cluster.runners["n2"].run()
    assert c2.run_cycle() == "standby: n1 is active (epoch 1); scheduler placed on n2"
    cluster.runners["n2"].die()
    expires = cluster.store.placement_expires_at
    for _ in range(3):
        cluster.clock.advance(1.0)
        c2.run_cycle()
        c2.renew()
    assert cluster.store.placement_expires_at == expires


def test_renew_keeps_lease_and_placements_without_a_cycle(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    for _ in range(int(3 * TTL)):
        cluster.clock.advance(1.0)
        assert c1.renew() is False
    assert c1.leads() and cluster.store.lease().valid and cluster.store.placement().valid
    assert cluster.store.placement_node == "n1" and cluster.running() == ["n1"]


def test_renew_renews_a_remote_placement_seen_healthy(cluster: Cluster) -> None:
    c1 = cluster.controller("n1")
    cluster.runners["n2"].run()
    assert c1.run_cycle() == (
        f"active (epoch 1): adopted the scheduler already running on n2 (running (pid {pid(cluster, 'n2')}))"
    )
    assert tick(cluster, c1)[0] == healthy(cluster, "n2")
    assert c1.renewals.renewing == {"n2": True}  # n2 has no controller of its own: its leash is renewed too
    for _ in range(int(3 * TTL)):
        cluster.clock.advance(1.0)
        c1.renew()
        wait_for(lambda: not c1.renewals.leash_pending, 5, "the background leash renewal")
    assert cluster.store.placement().valid and cluster.store.placement_node == "n2"
    assert [kind for kind, _d in cluster.runners["n2"].deadlines].count("renew") >= int(3 * TTL)


def test_renew_wakes_a_standby_when_the_lease_is_free(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    c2 = cluster.controller("n2")
    c2.run_cycle()
    assert c2.renew() is False
    cluster.clock.advance(TTL + 1)  # n1's controller is gone
    assert c2.renew() is True
    assert "became" not in c1.role


def test_sigterm_during_a_start_wait_gives_up_at_once(cluster: Cluster) -> None:
    cluster.runners["n1"].up_after_probes = 10**6  # would wait scheduler_start_timeout
    c1 = cluster.controller("n1")
    cluster.runners["n1"].on_probe = c1.stopping.set
    sentence = c1.run_cycle()
    assert sentence == (
        "active (epoch 1): placed the scheduler on n1 but its start failed: "
        "gave up the start to shut down (cleanup: stopped)"
    )
    assert sum(cluster.clock.slept) < 1.0
    assert cluster.actions == [("n1", "start"), ("n1", "stop")]


def test_store_down_at_start_up_leaves_a_leashed_scheduler_to_its_leash(cluster: Cluster) -> None:
    cluster.runners["n1"].run()  # started by a previous incarnation, under its leash
    c1 = cluster.controller("n1")
    sentence = cluster.store.unreachable_for(c1.run_cycle)
    assert sentence == (
        "starting: metastore unreachable (fake metastore unreachable (acquire_or_renew)); the local scheduler "
        f"({cluster.runners['n1'].probe().describe()}) is left to its leash, which stops it at its placement "
        "deadline unless the store answers first"
    )
    assert cluster.actions == []


def test_store_down_at_start_up_self_fences_an_unleashed_scheduler(cluster: Cluster) -> None:
    cluster.runners["n1"].run()
    cluster.runners["n1"].leashed = False  # started by hand: nothing else would stop it
    c1 = cluster.controller("n1")
    running = pid(cluster, "n1")
    sentence = cluster.store.unreachable_for(c1.run_cycle)
    assert sentence == (
        "starting: metastore unreachable (fake metastore unreachable (acquire_or_renew)); self-fenced: stopped "
        f"the local scheduler (running (pid {running}) -> stopped) before its placement could expire"
    )
    assert cluster.running() == []


def test_a_new_active_learns_the_leash_of_nodes_from_the_last_observations(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    cluster.runners["n3"].leashed = False
    cluster.runners["n3"].run()
    cluster.runners["n3"].stop_fails = True  # a stray that cannot be killed
    tick(cluster, c1)
    c2 = cluster.controller("n2")
    cluster.clock.advance(TTL + 1)  # n1's controller is gone; its host with it
    cluster.runners["n1"].die()
    cluster.runners["n1"].reachable = False
    cluster.runners["n3"].reachable = False
    c2.run_cycle()
    assert cluster.store.lease_host == "n2"
    seen = c2.health.last_seen("n3")
    assert seen is not None
    assert not seen.leashed and seen.state is SchedulerState.RUNNING
