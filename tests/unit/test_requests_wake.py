"""Operator requests are taken up within a renewal interval: the renewal thread, which reads the
store anyway, wakes the cycle when a switchover, a pause or its end is pending (fake clock)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .controller_support import active_on_n1, tick
from .fakes import Cluster
from .test_selfmode import SelfCluster, three

POLL = 60  # a cycle's own pace: without the wake, a request would wait up to this long


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    c = Cluster(settings={"poll_frequency": POLL, "lease_ttl": 40})
    yield c
    c.close()


@pytest.fixture
def self_cluster() -> Iterator[SelfCluster]:
    c = SelfCluster(settings={"poll_frequency": POLL, "lease_ttl": 40})
    yield c
    c.close()


def test_a_switchover_request_wakes_the_active_and_only_until_it_is_taken_up(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    c2 = cluster.controller("n2")
    tick(cluster, c2)
    assert c1.renew() is False  # nothing asked: the cycle keeps its pace
    cluster.store.request_switchover("n2", "controlled")
    assert c1.renew() is True
    assert c2.renew() is False  # a standby does not carry out switchovers
    (sentence,) = tick(cluster, c1, seconds=1)
    assert "switchover from n1 to n2" in sentence and cluster.running() == ["n2"]
    assert c1.renew() is False


def test_a_pause_and_its_end_wake_the_active(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    cluster.store.set_paused(True)
    assert c1.renew() is True
    assert tick(cluster, c1) == ["active: paused; acting on nothing"]
    assert c1.renew() is False  # taken up: no more early cycles
    cluster.store.set_paused(False)
    assert c1.renew() is True
    tick(cluster, c1)
    assert c1.renew() is False


def test_self_mode_wakes_the_active_for_a_request(self_cluster: SelfCluster) -> None:
    c1, c2, _c3 = three(self_cluster)
    assert c1.renew() is False and c2.renew() is False
    self_cluster.store.request_switchover("n2", "controlled")
    assert c1.renew() is True
    assert c2.renew() is False
    self_cluster.store.set_paused(True)
    self_cluster.store.clear_switchover()
    assert c1.renew() is True


def test_self_mode_the_active_is_woken_when_the_placed_node_reports_its_scheduler_stopped(
    self_cluster: SelfCluster,
) -> None:
    c1, c2, c3 = three(self_cluster)
    self_cluster.store.request_switchover("n2", "controlled")
    self_cluster.tick(c1, c2, c3)
    self_cluster.tick(c1, c2, c3)
    assert self_cluster.running() == ["n2"]
    assert c1.renew() is False
    self_cluster.runners["n2"].die()
    assert c1.renew() is False  # n2's controller has not said so yet
    c2.run_cycle()  # woken by its leash: its reconcile reports at once
    assert c1.renew() is True
    assert c3.renew() is False  # only the active decides
    (sentence,) = self_cluster.tick(c1)
    assert "restarted it in place (attempt 1/3" in sentence and self_cluster.running() == ["n2"]
    assert c1.renew() is False


def test_self_mode_a_lost_nodes_placement_running_out_wakes_the_active_once() -> None:
    # At poll 60 the active would find n2's placement expired up to a poll late: the renewal that
    # reads it expired wakes it (once), so a lost host costs its lease plus a renewal interval.
    cluster = SelfCluster(settings={"poll_frequency": POLL, "lease_ttl": 8})
    try:
        c1, c2, c3 = three(cluster)
        cluster.store.request_switchover("n2", "controlled")
        cluster.tick(c1, c2, c3)
        assert cluster.running() == ["n2"]
        del cluster.controllers["n2"]  # n2's host is gone: nobody renews its placement
        cluster.runners["n2"].die()
        renew = c1.config.renew_interval
        woken = []
        for _ in range(8):
            cluster.clock.advance(renew)
            woken.append(c1.renew())
            c3.renew()
        expired_at = woken.index(True)
        assert not any(woken[:expired_at]) and not any(woken[expired_at + 1 :]), woken  # once per placement
        assert cluster.store.placement().node == "n2" and not cluster.store.placement().valid
        assert expired_at * renew <= 8 + renew  # within a renewal interval of the expiry
        assert "moved" in c1.run_cycle() or cluster.store.placement().node != "n2"
        assert cluster.store.placement().node in ("n1", "n3")
    finally:
        cluster.close()


def test_a_paused_or_standby_controller_is_not_woken_by_an_expired_placement() -> None:
    from scheduler_failover_controller.controller.renewals import Lapses
    from scheduler_failover_controller.controller.term import Role
    from scheduler_failover_controller.metastore.base import ClusterState, Lease, Placement

    lapses = Lapses()
    gone = Placement("n2", 3, expires_at=100.0, version=7, server_now=101.0)
    fresh = Placement("n2", 3, expires_at=110.0, version=7, server_now=101.0)

    def state(placement: Placement) -> ClusterState:
        lease = Lease("h", "n1", 3, 110.0, 101.0)
        return ClusterState(lease, placement, paused=False, server_now=101.0)

    assert lapses.due(state(fresh), Role.ACTIVE, False) is False
    assert lapses.due(state(gone), Role.STANDBY, False) is False
    assert lapses.due(state(gone), Role.ACTIVE, True) is False
    assert lapses.due(state(Placement(None, 3, 100.0, 8, 101.0)), Role.ACTIVE, False) is False  # a stop order
    assert lapses.due(state(gone), Role.ACTIVE, False) is True
    assert lapses.due(state(gone), Role.ACTIVE, False) is False  # once for that placement
    assert lapses.due(state(Placement("n3", 3, 100.0, 8, 101.0)), Role.ACTIVE, False) is True
