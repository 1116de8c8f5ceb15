"""The controller's start of a scheduler on fakes: when an unknown node blocks it, the lease margin it
needs, and a lease lost while waiting."""

from __future__ import annotations

import pytest

from .controller_support import TTL, active_on_n1, pid, placed, tick
from .fakes import Cluster

# --- _start_on ----------------------------------------------------------------------------


def test_start_waits_until_the_scheduler_is_up(cluster: Cluster) -> None:
    cluster.runners["n1"].up_after_probes = 3
    c1 = cluster.controller("n1")
    sentence = c1.run_cycle()
    assert sentence == (
        f"active (epoch 1): placed and started the scheduler on n1 (up after 0.5s, running (pid {pid(cluster, 'n1')}))"
    )
    assert cluster.clock.slept == [0.25, 0.25]


def test_unknown_node_without_controller_blocks_a_start(cluster: Cluster) -> None:
    cluster.runners["n3"].reachable = False  # might run a scheduler; nothing says it is leashed
    c1 = cluster.controller("n1")
    sentence = c1.run_cycle()
    assert sentence == (
        "active (epoch 1): no scheduler seen, but one may still run on n3 (unreachable; not known to run "
        "its scheduler under a leash); not placing one on n1"
    )
    assert cluster.actions == [] and cluster.running() == []
    assert cluster.store.placement_node is None and not c1.incidents.backoff
    assert cluster.alerters["n1"].summaries == ["no scheduler runs: a start is blocked"]
    tick(cluster, c1)
    assert len(cluster.alerters["n1"].sent) == 1  # once per incident


def test_unknown_node_whose_controller_reports_a_leash_does_not_block_a_start(cluster: Cluster) -> None:
    cluster.runners["n3"].reachable = False
    cluster.store.register("n3", leashed=True)  # whatever it runs stops at its deadline
    c1 = cluster.controller("n1")
    assert "placed and started the scheduler on n1" in c1.run_cycle()
    assert cluster.actions == [("n1", "start")]


def test_unknown_node_whose_controller_reports_an_unleashed_scheduler_blocks(cluster: Cluster) -> None:
    cluster.runners["n3"].reachable = False
    cluster.store.register("n3", leashed=False)  # e.g. a scheduler started there by hand
    c1 = cluster.controller("n1")
    sentence = c1.run_cycle()
    assert sentence.endswith(
        "one may still run on n3 (unreachable; its controller last reported a scheduler that is not under "
        "a leash); not placing one on n1"
    )
    assert cluster.actions == []


def test_unknown_node_last_seen_running_unleashed_blocks(cluster: Cluster) -> None:
    c1 = active_on_n1(cluster)
    cluster.store.register("n3", leashed=True)
    cluster.runners["n3"].leashed = False
    cluster.runners["n3"].run()
    stray = pid(cluster, "n3")
    assert tick(cluster, c1)[0] == (
        f"active (epoch 1): scheduler healthy on n1 (running (pid {pid(cluster, 'n1')})); "
        f"killed stray scheduler(s) on n3 (running (pid {stray}) -> stopped); "
        "the scheduler belongs on n1"
    )
    cluster.runners["n3"].run()  # back, and n3 cannot be reached from now on
    cluster.runners["n3"].reachable = False
    c1.health.remember({"n3": cluster.runners["n3"]._result()})  # as a probe just before the cut saw it
    cluster.runners["n1"].die()
    cluster.store.placement_expires_at = cluster.store.server_now  # n1's placement lapses
    sentence = tick(cluster, c1)[0]
    assert sentence == (
        "active (epoch 1): no scheduler seen, but one may still run on "
        "n3 (unreachable; last seen running a scheduler that is not under a leash); not placing one on n1"
    )
    assert cluster.running() == ["n3"]


def test_a_dead_controller_guards_nothing_without_a_leash(cluster: Cluster) -> None:
    """Registered but reporting an unleashed scheduler: its registration alone is no guard."""
    cluster.runners["n2"].reachable = False
    cluster.store.register("n2", leashed=False)
    cluster.clock.advance(3 * TTL)  # its heartbeat is old: the controller is dead
    c1 = cluster.controller("n1")
    assert c1.run_cycle() == (
        "active (epoch 1): no scheduler seen, but one may still run on n2 (unreachable; its controller last "
        "reported a scheduler that is not under a leash); not placing one on n1"
    )
    assert cluster.actions == []


def test_node_cut_off_during_a_pause_is_stopped_by_its_leash_before_a_start_elsewhere(cluster: Cluster) -> None:
    """Paused; the scheduler node is cut off; resumed: never two schedulers.

    The cut-off controller still acts on the pause it saw last and fences nothing itself, but its
    scheduler runs under a leash that nobody renews any more: it stops at the placement deadline,
    and only after the placement expired does the active start one elsewhere.
    """
    c1 = active_on_n1(cluster)
    c2 = cluster.controller("n2")
    cluster.runners["n2"].enforce_leash(cluster.clock.monotonic)
    cluster.runners["n1"].die()
    cluster.store.force_placement("n2", TTL)
    cluster.runners["n2"].run()
    assert [s.split(":")[1].strip() for s in tick(cluster, c1, c2)] == [
        f"scheduler healthy on n2 ({cluster.runners['n2'].probe().describe()})",
        "n1 is active (epoch 1); scheduler placed on n2",
    ]
    cluster.store.set_paused(True)
    tick(cluster, c1, c2)
    assert c2.paused and [c.paused for c in cluster.store.controllers()] == [True, True]
    # n2 is cut off: from the store (its cycles fail) and from n1 (its probe is unknown).
    cluster.runners["n2"].reachable = False
    cluster.store.set_paused(False)
    sentences = []
    for _ in range(int(TTL) + 3):
        cluster.clock.advance(1.0)
        down = cluster.store.unreachable_for(c2.run_cycle)
        assert down.startswith("standby: metastore unreachable") and "paused, acting on nothing" in down
        sentences.append(c1.run_cycle())
        assert len(cluster.running()) <= 1, sentences
    assert "waiting" in sentences[0] and "for its placement to expire" in sentences[0]
    assert cluster.running() == ["n1"], sentences
    assert any("placed and started the scheduler on n1" in s for s in sentences), sentences


@pytest.mark.parametrize(("command", "started"), [("true", True), ("false", False)])
def test_fence_command_decides_whether_an_unknown_node_blocks(cluster: Cluster, command: str, started: bool) -> None:
    cluster.runners["n3"].reachable = False
    c1 = cluster.controller("n1", fence_command=command)
    sentence = c1.run_cycle()
    fence_events = [e.message for e in cluster.store.events_of("fence")]
    if started:
        assert sentence == placed(cluster, "n1")
        assert cluster.actions == [("n1", "start")]
        assert fence_events == ["fence_command for n3 succeeded"]
        assert c1.fencing.fenced == {"n3"}
    else:
        assert sentence == (
            "active (epoch 1): no scheduler seen, but one may still run on n3 (unreachable; not known to run "
            "its scheduler under a leash); not placing one on n1"
        )
        assert cluster.actions == []
        assert fence_events == ["fence_command for n3 failed (1)"]
        assert c1.fencing.fenced == set()


def test_start_refused_when_the_lease_margin_ran_out(cluster: Cluster) -> None:
    c1 = cluster.controller("n1")
    store = cluster.store

    def stall() -> None:  # stalled just before starting, and the store cannot be reached now
        cluster.clock.advance(TTL)
        store.failing.add("acquire_or_renew")

    store.on("acquire_or_renew", lambda: store.on("acquire_or_renew", stall))  # the renewal in _start_on
    sentence = c1.run_cycle()
    assert (
        sentence
        == "active (epoch 1): placed the scheduler on n1 but its start failed: not starting: lease margin too small"
    )
    assert cluster.actions == []


def test_start_refused_when_the_lease_lapsed_just_before(cluster: Cluster) -> None:
    """The renewal before a start finds a new term (the lease lapsed meanwhile): nothing starts."""
    c1 = cluster.controller("n1")
    store = cluster.store
    store.on("acquire_or_renew", lambda: store.on("acquire_or_renew", lambda: cluster.clock.advance(TTL)))
    sentence = c1.run_cycle()
    assert sentence == (
        "active (epoch 1): placed the scheduler on n1 but its start failed: not starting: lost the leadership lease"
    )
    assert cluster.actions == [] and not c1.leads()


def test_lease_lost_while_waiting_for_the_start_stops_it(cluster: Cluster) -> None:
    cluster.runners["n1"].up_after_probes = 100
    c1 = cluster.controller("n1")
    store = cluster.store

    def steal() -> None:
        store.lease_holder, store.lease_host = "n2:9:other", "n2"
        store.lease_epoch += 1
        store.lease_expires_at = store.server_now + TTL

    # The renewal just before the start succeeds; the next one, while waiting, finds it taken.
    store.on("acquire_or_renew", lambda: store.on("acquire_or_renew", lambda: store.on("acquire_or_renew", steal)))
    sentence = c1.run_cycle()
    assert sentence == (
        "active (epoch 1): placed the scheduler on n1 but its start failed: "
        "lost the lease while waiting for the scheduler to come up; stopped it"
    )
    assert cluster.actions == [("n1", "start"), ("n1", "stop")]
    assert cluster.running() == []
    assert not c1.leads()
