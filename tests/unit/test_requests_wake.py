"""Operator requests are taken up within a renewal interval: the renewal thread, which reads the
store anyway, wakes the cycle when a switchover, a pause or its end is pending (fake clock)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .fakes import Cluster
from .test_controller import active_on_n1, tick
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
