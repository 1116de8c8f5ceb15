"""The controller when the metastore is down or it lost the lease unseen: it fences itself in time,
and a stale leader places, starts, restarts and stops nothing, whatever the clocks say."""

from __future__ import annotations

import re

import pytest

from .controller_support import TTL, active_on_n1, pid, placed, tick
from .fakes import Cluster

# --- _metastore_down --------------------------------------------------------------------


def test_metastore_unreachable_waits_then_self_fences_before_the_placement_expires(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    store = cluster.store
    expires_at = store.placement_expires_at
    store.fail = True
    running = pid(cluster, "n1")
    waited = 0
    for _ in range(10):
        cluster.clock.advance(1)  # the daemon's next cycle
        # S2: the local scheduler never runs past the server-side expiry of its placement.
        assert not (cluster.runners["n1"].running and store.server_now >= expires_at), (
            f"scheduler still running {store.server_now - expires_at:.1f}s after its placement expired"
        )
        sentence = c1.run_cycle()
        if cluster.runners["n1"].running:
            assert "metastore unreachable" in sentence and "before self-fencing" in sentence
            assert cluster.runners["n1"].stops == 0
            waited += 1
            continue
        break
    assert sentence == (
        "active: metastore unreachable (fake metastore unreachable (acquire_or_renew)); self-fenced: stopped "
        f"the local scheduler (running (pid {running}) -> stopped) before its placement could expire"
    )
    assert waited >= 1  # one failed cycle is not a fence (L2)
    assert store.server_now < expires_at
    assert cluster.actions == [("n1", "start"), ("n1", "stop")]


def test_failing_placement_renewals_fence_before_the_placement_expires(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    store = cluster.store
    expires_at = store.placement_expires_at
    store.failing.add("renew_placement")  # the rest of the store answers
    running = pid(cluster, "n1")
    for _ in range(10):
        cluster.clock.advance(1)
        assert not (cluster.runners["n1"].running and store.server_now >= expires_at), (
            f"scheduler still running {store.server_now - expires_at:.1f}s after its placement expired"
        )
        sentence = c1.run_cycle()
        if not cluster.runners["n1"].running:
            break
        assert cluster.runners["n1"].stops == 0
    assert sentence == (
        f"active: stopped a scheduler on n1 (running (pid {running})) "
        "whose placement could not be renewed before it would expire; now stopped"
    )
    assert store.server_now < expires_at
    assert cluster.actions == [("n1", "start"), ("n1", "stop")]


def test_metastore_unreachable_demotes_the_active_after_its_lease_deadline(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    cluster.store.fail = True
    running = pid(cluster, "n1")
    (sentence,) = tick(cluster, c1, seconds=TTL)
    assert sentence == (
        "standby: metastore unreachable (fake metastore unreachable (acquire_or_renew)); self-fenced: stopped "
        f"the local scheduler (running (pid {running}) -> stopped) before its placement could expire"
    )
    assert c1.role == "standby" and c1.epoch == 0
    assert cluster.running() == []  # long past the placement deadline: fenced in the same cycle


def test_metastore_unreachable_without_a_local_scheduler_acts_on_nothing(cluster: Cluster) -> None:
    active_on_n1(cluster)
    cluster.store.fail = True
    c2 = cluster.controller("n2")
    sentence = c2.run_cycle()
    assert sentence == (
        "starting: metastore unreachable (fake metastore unreachable (acquire_or_renew)); "
        "no local scheduler, acting on nothing"
    )
    assert cluster.actions == [("n1", "start")]


def test_metastore_unreachable_while_paused_acts_on_nothing(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    cluster.store.set_paused(True)
    tick(cluster, c1)
    cluster.store.fail = True
    (sentence,) = tick(cluster, c1)
    assert sentence == (
        "active: metastore unreachable (fake metastore unreachable (acquire_or_renew)); paused, acting on nothing"
    )
    assert cluster.actions == [("n1", "start")]


# --- fencing of a stale leader ------------------------------------------------------------


def _take_lease_during_probes(cluster: Cluster, how: str) -> None:
    """During the active's next probes its lease runs out and another controller takes it."""
    store = cluster.store

    def stale() -> None:
        if how == "controller stalled":  # e.g. SIGSTOP: both clocks move on
            cluster.clock.advance(TTL * 2)
        else:  # the server's clock ran ahead: only the store sees the lease expire
            store.advance(TTL * 2)
        assert store.acquire_or_renew("n2:9:other", "n2", TTL) is not None

    cluster.runners["n2"].on_probe = stale


@pytest.mark.parametrize("how", ["controller stalled", "server clock ran ahead"])
def test_stale_leader_cannot_place_or_start(cluster: Cluster, how: str) -> None:
    for runner in cluster.runners.values():
        runner.reachable = False
    c1 = cluster.controller("n1")
    assert "no node can take it" in c1.run_cycle()
    for node in cluster.runners:
        if node != "n1":
            cluster.store.register(node)
    for runner in cluster.runners.values():
        runner.reachable = True
    store = cluster.store
    _take_lease_during_probes(cluster, how)
    calls_before = len(store.calls)
    (sentence,) = tick(cluster, c1)
    assert "lost the race to place the scheduler on n1" in sentence
    assert cluster.actions == [] and cluster.running() == []
    assert (store.placement_node, store.placement_version, store.lease_epoch) == (None, 0, 2)
    if how == "server clock ran ahead":  # c1 still believes it leads: the store refused the write
        assert c1.leads() and "set_placement" in store.calls[calls_before:]
    # The store refuses the stale epoch, whatever the controller believes.
    assert store.set_placement("n1", c1.holder, 1, store.placement_version, TTL) is None


@pytest.mark.parametrize("how", ["controller stalled", "server clock ran ahead"])
def test_stale_leader_does_not_restart_in_place(cluster: Cluster, how: str) -> None:
    c1 = active_on_n1(cluster)
    cluster.runners["n1"].die()
    _take_lease_during_probes(cluster, how)
    (sentence,) = tick(cluster, c1)
    assert "not starting" in sentence or "lease margin too small to act" in sentence
    assert cluster.actions == [("n1", "start")]  # nothing started, nothing stopped
    assert cluster.running() == []
    assert cluster.store.lease_epoch == 2


def test_stale_leader_does_not_stop_the_scheduler_it_wanted_to_restart(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    cluster.runners["n1"].hang()
    store = cluster.store

    def stalled() -> None:  # c1 stalls past its lease; the new leader re-places the scheduler
        cluster.clock.advance(TTL * 2)
        lease = store.acquire_or_renew("n2:9:other", "n2", TTL)
        assert lease is not None
        assert store.set_placement("n1", "n2:9:other", lease.epoch, store.placement_version, TTL) is not None

    cluster.runners["n2"].on_probe = stalled
    (sentence,) = tick(cluster, c1)
    assert "lease margin too small" in sentence
    assert cluster.actions == [("n1", "start")]  # the stale leader stopped nothing
    assert cluster.running() == ["n1"]


def test_one_failed_call_after_a_freeze_does_not_fence_a_placement_the_store_still_holds(cluster: Cluster) -> None:
    """A controller frozen past its deadline: its first call fails (a ZooKeeper client
    reconnecting with a new session), but the placement is still its node's (the active kept it
    alive meanwhile). It asks once more, renews, and keeps the scheduler."""
    c1 = active_on_n1(cluster)
    c2 = cluster.controller("n2")
    cluster.runners["n1"].die()
    cluster.store.force_placement("n2", TTL)
    cluster.runners["n2"].run()
    tick(cluster, c1, c2)
    for _ in range(int(2 * TTL)):  # c2 frozen; the active renews n2's placement
        tick(cluster, c1)
    assert not c2.may_run_locally() and cluster.store.placement().valid
    cluster.store.failing.add("acquire_or_renew")
    cluster.store.on("read_state", lambda: cluster.store.failing.discard("acquire_or_renew"))
    sentence = c2.run_cycle()
    assert sentence == (
        "standby: a metastore call failed (fake metastore unreachable (acquire_or_renew)), but the store "
        "answered again and renewed this node's placement; local scheduler kept"
    )
    assert cluster.running() == ["n2"] and c2.may_run_locally()


# --- S1/S2 across controllers -------------------------------------------------------------


def test_partitioned_node_fences_itself_before_another_node_starts_a_scheduler(cluster: Cluster) -> None:
    c2 = cluster.controller("n2")
    c1 = cluster.controller("n1")
    assert c2.run_cycle() == placed(cluster, "n2")
    assert c1.run_cycle() == "standby: n2 is active (epoch 1); scheduler placed on n2"
    n2, store = cluster.runners["n2"], cluster.store
    transcript = []
    for _ in range(12):
        cluster.clock.advance(1)
        # n2 is cut off: n1 cannot reach it, and it cannot reach the metastore.
        n2.reachable = False
        transcript.append(("n1", c1.run_cycle()))
        n2.reachable = True
        assert len(cluster.running()) <= 1, transcript
        store.fail = True
        transcript.append(("n2", c2.run_cycle()))
        store.fail = False
        assert len(cluster.running()) <= 1, transcript
    assert cluster.running() == ["n1"], transcript
    assert any("self-fenced" in s for host, s in transcript if host == "n2")
    assert c1.role == "active" and store.placement_node == "n1"


def _skew_scenario(server_now: float, offset_n1: float, offset_n2: float) -> list[str]:
    """A failover story; returns every sentence with pids blanked."""
    cluster = Cluster(server_now=server_now)
    try:
        c1 = cluster.controller("n1", clock_offset=offset_n1)
        c2 = cluster.controller("n2", clock_offset=offset_n2)
        out = [c1.run_cycle(), c2.run_cycle()]
        out += tick(cluster, c1, c2)
        cluster.runners["n1"].die()
        out += tick(cluster, c1, c2)
        cluster.runners["n3"].run()
        out += tick(cluster, c1, c2)
        # n1's host dies: its scheduler and controller are gone, the node cannot be reached
        cluster.runners["n1"].die()
        cluster.runners["n1"].reachable = False
        for _ in range(8):
            out += tick(cluster, c2)
        cluster.store.fail = True
        for _ in range(6):
            out += tick(cluster, c2)
        out.append(",".join(cluster.running()))
        return [re.sub(r"pid [\d, ]+", "pid N", s) for s in out]
    finally:
        cluster.close()


@pytest.mark.parametrize(
    ("server_now", "offset_n1", "offset_n2"),
    [(1_700_000_300.0, 0.0, 0.0), (1_699_999_700.0, 0.0, 0.0), (500.0, 240.0, -180.0), (1_700_000_000.0, 600, 0)],
)
def test_clock_disagreement_of_minutes_does_not_change_the_outcome(
    server_now: float, offset_n1: float, offset_n2: float
) -> None:
    baseline = _skew_scenario(1_700_000_000.0, 0.0, 0.0)
    assert "placed and started the scheduler on n1" in baseline[0]
    assert any("killed stray" in s for s in baseline) and any("self-fenced" in s for s in baseline)
    assert _skew_scenario(server_now, offset_n1, offset_n2) == baseline
