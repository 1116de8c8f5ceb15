"""Fence, then start: the active fences the placed node it cannot see and moves the scheduler at
once, without waiting for that node's placement to expire (docs/design.md, "Fence, then start").

On fakes with an injected clock; ``fence_command`` is a fake too (``FakeFence``): exit 0 for the
nodes it may fence, after it made their scheduler die, as a power-off would.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from scheduler_failover_controller.controller.cycle import Controller
from scheduler_failover_controller.metastore.base import Placement
from scheduler_failover_controller.metastore.reports import NodeReport
from scheduler_failover_controller.nodes.by_report import report_probe
from scheduler_failover_controller.probe_result import ProbeResult, SchedulerState

from .fakes import Cluster
from .test_selfmode import SelfCluster

TTL = 10.0  # lease_ttl here: the old placement outlives the two unreachable looks by far


class FakeFence:
    """``fence_command`` as ``run_command`` runs it: exit 0 (after killing the node's scheduler)
    for the nodes in ``kills``, ``status`` for the others (None: it timed out)."""

    def __init__(self, cluster: Cluster, kills: set[str], status: int | None = 1) -> None:
        self.cluster = cluster
        self.kills = kills
        self.status = status
        self.calls: list[str] = []
        self.during: list[object] = []  # called with the node while it runs (a race)

    def __call__(self, argv: list[str], timeout: float) -> tuple[int | None, str]:
        node = argv[-1].split()[-1]
        self.calls.append(node)
        for hook in self.during:
            hook(node)  # type: ignore[operator]
        if node in self.kills:
            self.cluster.runners[node].die()
            self.cluster.runners[node].reachable = False  # powered off: it stays unreachable
            return 0, ""
        return self.status, "no"


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    c = Cluster(settings={"lease_ttl": TTL, "fence_command": "fence-it"})
    yield c
    c.close()


def fake_fence(monkeypatch: pytest.MonkeyPatch, cluster: Cluster, kills: set[str], status: int | None = 1) -> FakeFence:
    fence = FakeFence(cluster, kills, status)
    monkeypatch.setattr("scheduler_failover_controller.controller.fencing.run_command", fence)
    return fence


def on_n2(cluster: Cluster) -> Controller:
    """n1 active (ssh mode), the scheduler moved to n2 by a switchover."""
    c1 = cluster.controller("n1")
    assert "placed and started the scheduler on n1" in c1.run_cycle()
    cluster.store.request_switchover("n2", "controlled")
    cluster.clock.advance(1)
    c1.run_cycle()
    assert cluster.running() == ["n2"] and cluster.store.placement().node == "n2"
    cluster.runners["n2"].enforce_leash(c1.monotonic)  # its leash stops it by the deadline c1 gave it
    return c1


def cycles_until(cluster: Cluster, c1: Controller, done: object, limit: int = 30) -> list[str]:
    """Cycles of ``c1`` a second apart until ``done()`` (never two schedulers meanwhile)."""
    sentences: list[str] = []
    for _ in range(limit):
        cluster.clock.advance(1)
        sentences.append(c1.run_cycle())
        assert len(cluster.running()) <= 1, sentences
        if done():  # type: ignore[operator]
            return sentences
    raise AssertionError(f"not done after {limit} cycles: {sentences}")


def test_a_fenced_node_is_replaced_at_once_before_its_placement_expires(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    fence = fake_fence(monkeypatch, cluster, {"n2"})
    c1 = on_n2(cluster)
    cluster.runners["n2"].reachable = False  # the host is lost: its scheduler still runs, unseen
    expires_at = cluster.store.placement().expires_at
    sentences = cycles_until(cluster, c1, lambda: cluster.running() == ["n1"])
    assert cluster.store.server_now < expires_at  # the old placement had not expired: not waited for
    assert "not fenced: silent in one look only" in sentences[0]  # one look is not a failover
    up = f"up after 0.0s, running (pid {cluster.runners['n1'].pids[0]})"
    assert sentences[-1].startswith("active (epoch 1): moved the scheduler from n2 to n1 without waiting ")
    assert sentences[-1].endswith(f"for its placement to expire: fence_command fenced n2 ({up})"), sentences
    assert fence.calls == ["n2"]
    kinds = [(e.kind, e.message.split(":")[0]) for e in cluster.store.events() if e.kind in ("fence", "move")]
    assert kinds[-2:] == [("fence", "fence_command for n2 succeeded"), ("move", kinds[-1][1])]
    assert "fence_command fenced n2" in cluster.store.events_of("move")[-1].message


@pytest.mark.parametrize(("status", "said"), [(1, "fence_command for n2 failed (1): no"), (None, "timed out")])
def test_a_failed_or_timed_out_fence_waits_for_the_placement_to_expire(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch, status: int | None, said: str
) -> None:
    fence = fake_fence(monkeypatch, cluster, set(), status)
    c1 = on_n2(cluster)
    runner = cluster.runners["n2"]
    runner.reachable = False
    expires_at = cluster.store.placement().expires_at
    sentences = cycles_until(cluster, c1, lambda: cluster.store.placement().node != "n2")
    assert cluster.store.server_now >= expires_at, sentences  # waited for the expiry, as without a fence
    assert cluster.running() == ["n1"], sentences
    assert fence.calls == ["n2"]  # once for this placement: then it is waited out, as without a fence
    assert any("not fenced: fence_command did not succeed" in s for s in sentences), sentences
    assert any("not fenced: fence_command failed for this placement" in s for s in sentences), sentences
    assert said in cluster.store.events_of("fence")[-1].message
    assert "n2" not in c1.fencing.fenced


def test_a_fence_that_succeeds_for_another_node_is_no_shortcut(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    fence = fake_fence(monkeypatch, cluster, {"n3"})
    c1 = on_n2(cluster)
    assert c1.fencing.fence("n3", c1.cycles) and c1.fencing.fenced == {"n3"}  # n3 fenced (say, earlier)
    cluster.runners["n2"].reachable = False
    expires_at = cluster.store.placement().expires_at
    sentences = cycles_until(cluster, c1, lambda: cluster.store.placement().node != "n2")
    assert cluster.store.server_now >= expires_at, sentences
    assert not any("moved the scheduler from n2" in s for s in sentences), sentences
    assert fence.calls.count("n2") == 1 and c1.fencing.fenced == {"n3"}


def test_a_fence_proves_nothing_once_this_term_places_the_node_again(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_fence(monkeypatch, cluster, {"n3"})
    c1 = on_n2(cluster)
    assert c1.fencing.fence("n3", c1.cycles) and c1.fencing.fenced == {"n3"}
    assert c1.term.place(cluster.store.placement(), "n3") is not None  # anything may start there now
    assert c1.fencing.fenced == set()
    assert c1.fencing.fence("n3", c1.cycles + 1) and c1.fencing.fenced == {"n3"}
    cluster.store.expire_session()  # the term is lost; a later one knows nothing of this fence
    cluster.clock.advance(1)
    c1.run_cycle()
    assert c1.epoch > 1 and c1.fencing.fenced == set()


def test_no_fence_for_a_node_whose_own_controller_heartbeats(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    fence = fake_fence(monkeypatch, cluster, {"n2"})
    c1 = on_n2(cluster)
    cluster.runners["n2"].reachable = False
    sentences = []
    for _ in range(4):
        cluster.store.register("n2")  # its controller is alive and guards it; only SSH to it is broken
        cluster.clock.advance(1)
        sentences.append(c1.run_cycle())
    assert fence.calls == [] and cluster.running() == ["n2"]
    assert "not fenced: its own controller heartbeats" in sentences[-1], sentences


def test_an_active_that_loses_its_lease_while_fencing_places_nothing(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    fence = fake_fence(monkeypatch, cluster, {"n2"})
    c1 = on_n2(cluster)
    store = cluster.store
    before = store.placement()

    def lose_the_lease(node: str) -> None:  # another controller's term begins while the command runs
        store.expire_session()
        assert store.acquire_or_renew("other", "n3", TTL) is not None

    fence.during.append(lose_the_lease)
    cluster.runners["n2"].reachable = False
    actions = len(cluster.actions)
    sentences = [c1.run_cycle() for _ in range(2)]
    assert "fenced n2, but lost the race to move the scheduler to n1" in sentences[-1], sentences
    assert store.placement() == before and cluster.running() == []
    assert cluster.actions[actions:] == []  # nothing started anywhere


def test_the_active_never_fences_its_own_node(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    fence = fake_fence(monkeypatch, cluster, {"n1"})
    c1 = cluster.controller("n1")
    c1.run_cycle()
    unseen = ProbeResult("n1", SchedulerState.UNKNOWN, unreachable=True)
    c1.health.remember({"n1": unseen})
    c1.health.remember({"n1": unseen})
    assert c1.fencing.fence_placed("n1", unseen, c1.cycles, 1) == "it is this controller's own node"
    assert fence.calls == []


def test_only_looks_without_any_answer_in_a_row_count(cluster: Cluster) -> None:
    c1 = cluster.controller("n1")
    silent = ProbeResult("n2", SchedulerState.UNKNOWN, unreachable=True)
    answered = ProbeResult("n2", SchedulerState.UNKNOWN, detail="placed there, not started yet")
    for probe, count in ((silent, 1), (silent, 2), (answered, 0), (silent, 1)):
        c1.health.remember({"n2": probe})
        assert c1.health.unreachable_looks("n2") == count


def test_a_stale_report_is_silence_a_report_behind_is_not() -> None:
    placement = Placement("n2", 1, 1010.0, 5, 1000.0)
    assert report_probe("n2", None, placement, 3.5).unreachable
    old = NodeReport("n2", "h", "running", (1,), True, (), "", 5, 5, 1, observed_at=990.0, server_now=1000.0)
    assert report_probe("n2", old, placement, 3.5).unreachable
    behind = replace(old, answers=4, observed_at=999.0)
    probe = report_probe("n2", behind, placement, 3.5)
    assert probe.state is SchedulerState.UNKNOWN and not probe.unreachable


# --- self mode: the node's controller is dead, its report goes stale -------------------------


@pytest.fixture
def selfcluster() -> Iterator[SelfCluster]:
    c = SelfCluster(settings={"lease_ttl": TTL, "fence_command": "fence-it"})
    yield c
    c.close()


def test_self_mode_a_fenced_node_is_replaced_before_its_placement_expires(
    selfcluster: SelfCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = selfcluster
    fence = fake_fence(monkeypatch, cluster, {"n2"})
    c1 = cluster.controller("n1")
    assert "placed and started the scheduler on n1" in c1.run_cycle()
    c2, c3 = cluster.controller("n2"), cluster.controller("n3")
    for _ in range(2):
        cluster.tick(c1, c2, c3)
    cluster.store.request_switchover("n2", "controlled")
    cluster.tick(c1, c2, c3)
    assert cluster.running() == ["n2"]
    del cluster.controllers["n2"]  # its host is lost: no report, no renewal; its leash runs on
    expires_at = cluster.store.placement().expires_at
    sentences: list[str] = []
    for _ in range(40):
        sentences += cluster.tick(c1, c3, seconds=0.5)
        if cluster.running() not in ([], ["n2"]):
            break
    assert cluster.running() in (["n1"], ["n3"]), sentences
    assert cluster.store.server_now < expires_at, sentences
    assert fence.calls == ["n2"]
    assert any("fence_command fenced n2" in s for s in sentences), sentences
    assert [e.message for e in cluster.store.events_of("fence")] == ["fence_command for n2 succeeded"]
