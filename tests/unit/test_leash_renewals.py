"""A placement is renewed only as far as its leash; a node that cannot see its own scheduler does not
keep its placement alive; so a scheduler whose leash cannot be renewed moves (on fakes)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scheduler_failover_controller.controller.cycle import Controller
from scheduler_failover_controller.probe_result import SchedulerState
from tests.support.waiting import wait_for

from .fakes import Cluster

TTL = 5.0  # lease_ttl of the test config (poll_frequency 1, metastore_timeout 0.5)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    c = Cluster()
    yield c
    c.close()


def active_on_n1(cluster: Cluster) -> Controller:
    c1 = cluster.controller("n1")
    assert "placed and started the scheduler on n1" in c1.run_cycle()
    return c1


def leash_deadlines(cluster: Cluster, node: str) -> list[float]:
    return [d for _kind, d in cluster.runners[node].deadlines]


def test_a_failed_local_leash_renewal_stops_the_placement_renewals_until_the_leash_has_it(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    runner = cluster.runners["n1"]
    runner.leash_fails = True
    cluster.clock.advance(1.0)
    c1.renew()  # the placement first, then the leash: that one renewal gets ahead of the leash
    ahead = cluster.store.placement_expires_at
    leash = max(leash_deadlines(cluster, "n1"))
    for _ in range(2):
        cluster.clock.advance(1.0)
        c1.renew()
        c1.run_cycle()
        assert cluster.store.placement_expires_at == ahead  # not renewed any further
    # never more than one renewal interval (and the margin) past what the leash holds
    assert c1.placement_deadline - leash <= c1.config.renew_interval + 0.01
    runner.leash_fails = False
    cluster.clock.advance(1.0)
    c1.renew()
    assert max(leash_deadlines(cluster, "n1")) == pytest.approx(c1.placement_deadline)  # the leash caught up first
    assert cluster.store.placement_expires_at > ahead  # and the placement is renewed again


def test_the_node_fences_its_scheduler_before_a_placement_its_leash_cannot_follow_expires(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    cluster.runners["n1"].leash_fails = True
    sentences = []
    for _ in range(4):
        cluster.clock.advance(1.0)
        c1.renew()
        sentences.append(c1.run_cycle())
    assert "whose placement could not be renewed before it would expire" in sentences[-1]
    assert cluster.running() == []
    assert cluster.clock.monotonic() < c1.placement_deadline


def test_a_node_that_cannot_see_its_own_scheduler_does_not_renew_its_placement(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    expires = cluster.store.placement_expires_at
    cluster.runners["n1"].reachable = False  # its probe: UNKNOWN
    for _ in range(3):
        cluster.clock.advance(1.0)
        c1.renew()
        c1.run_cycle()
    assert cluster.store.placement_expires_at == expires


def test_a_scheduler_whose_leash_cannot_be_renewed_moves(cluster: Cluster) -> None:
    """n1 runs the scheduler and renews its own leash, but cannot write it (nor see its scheduler:
    out of file descriptors); the active on n2 cannot see it either. n1's leash stops it, n1's
    placement runs out, and the active starts the scheduler elsewhere, never two at once."""
    c2 = cluster.controller("n2")
    cluster.runners["n1"].run()
    assert "adopted the scheduler already running on n1" in c2.run_cycle()
    c1 = cluster.controller("n1")
    c1.run_cycle()
    cluster.clock.advance(1.0)
    c1.renew()
    c2.renew()
    cluster.runners["n1"].enforce_leash(cluster.clock.monotonic)
    cluster.runners["n1"].leash_fails = True
    cluster.runners["n1"].reachable = False
    moved_at = None
    for step in range(int(6 * TTL)):
        cluster.clock.advance(0.5)
        c1.renew()
        c2.renew()
        if step % 2:
            c1.run_cycle()
            c2.run_cycle()
        assert len(cluster.running()) <= 1, cluster.running()
        if cluster.running() and cluster.running() != ["n1"]:
            moved_at = step * 0.5
            break
    assert moved_at is not None, f"never moved: {c2.run_cycle()}"
    assert moved_at <= 2 * TTL + 2.0


def test_a_failed_remote_leash_renewal_stops_that_placement_s_renewals_until_it_is_renewed(
    cluster: Cluster,
) -> None:
    c1 = cluster.controller("n1")
    cluster.runners["n2"].run()
    assert "adopted the scheduler already running on n2" in c1.run_cycle()
    cluster.clock.advance(1.0)
    assert "scheduler healthy on n2" in c1.run_cycle()
    assert c1.renewals.renewing == {"n2": True}  # no controller there: its leash is ours to renew
    cluster.runners["n2"].leash_fails = True
    cluster.clock.advance(1.0)
    c1.renew()
    wait_for(lambda: not c1.renewals.leash_pending, 5, "the background leash renewal")
    ahead = cluster.store.placement_expires_at
    assert "n2" in c1.renewals.leash_owed
    for _ in range(2):
        cluster.clock.advance(1.0)
        c1.renew()
        wait_for(lambda: not c1.renewals.leash_pending, 5, "the background leash renewal")
        assert cluster.store.placement_expires_at == ahead
    cluster.runners["n2"].leash_fails = False
    cluster.clock.advance(1.0)
    c1.renew()  # the owed deadline reaches the leash ...
    wait_for(lambda: not c1.renewals.leash_pending, 5, "the background leash renewal")
    assert "n2" not in c1.renewals.leash_owed
    cluster.clock.advance(1.0)
    c1.renew()  # ... and the placement is renewed again
    assert cluster.store.placement_expires_at > ahead
    assert cluster.runners["n2"].state is SchedulerState.RUNNING


def test_during_a_start_a_remote_placement_is_not_renewed_past_a_leash_that_missed_a_deadline(
    cluster: Cluster,
) -> None:
    c1 = cluster.controller("n1")
    cluster.runners["n2"].run()
    assert "adopted the scheduler already running on n2" in c1.run_cycle()
    cluster.runners["n2"].leash_fails = True
    assert c1.renewals.while_waiting("n2")  # renews the placement; the leash renewal fails
    wait_for(lambda: not c1.renewals.leash_pending, 5, "the background leash renewal")
    owed = c1.renewals.leash_owed["n2"]
    ahead = cluster.store.placement_expires_at
    cluster.clock.advance(1.0)
    assert c1.renewals.while_waiting("n2")  # the placement still holds: the start may go on ...
    wait_for(lambda: not c1.renewals.leash_pending, 5, "the background leash renewal")
    assert cluster.store.placement_expires_at == ahead  # ... but it is not renewed
    cluster.clock.advance(owed - cluster.clock.monotonic() + 0.1)
    assert not c1.renewals.while_waiting("n2")  # past what the placement had: the start is undone
    wait_for(lambda: not c1.renewals.leash_pending, 5, "the background leash renewal")
    cluster.runners["n2"].leash_fails = False
