"""Self mode with fakes and an injected clock: each controller acts on its own node only, by the
placement, and reports; the active decides and writes placements (docs/design.md, section 5a).

Every controller here has its own copy of the runners: its own node's FakeRunner, and for every
other node the ReportRunner self mode gives it. While the active waits for a node's report, that
node's controller reconciles (``SelfCluster.sleep``), as it would in its own process.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from scheduler_failover_controller.controller.cycle import Controller
from scheduler_failover_controller.metastore.base import Placement
from scheduler_failover_controller.metastore.reports import NodeReport
from scheduler_failover_controller.nodes.by_report import ReportRunner, report_probe
from scheduler_failover_controller.probe_result import SchedulerState

from .fakes import Cluster, FakeRunner


class SelfCluster(Cluster):
    """The fakes' cluster with ``node_control = self``, and never two schedulers checked at every step."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.settings = {"node_control": "self", **self.settings}
        self.max_running = 0
        self._inside: set[str] = set()

    def controller(self, host: str = "n1", **kwargs: Any) -> Controller:
        controller = super().controller(host, **kwargs)
        for runner in controller.runners.values():
            if isinstance(runner, ReportRunner):
                runner.sleep = self.sleep
        controller.starts.sleep = self.sleep  # a wait for a start: the node's own controller acts meanwhile
        self.runners[host].enforce_leash(controller.monotonic)
        return controller

    def check(self) -> None:
        self.max_running = max(self.max_running, len(self.running()))
        assert len(self.running()) <= 1, f"two schedulers: {self.running()}"

    def sleep(self, seconds: float) -> None:
        """Time passes for the waiting active; every other controller reconciles and renews meanwhile."""
        self.clock.advance(seconds)
        self.check()
        for host, controller in self.controllers.items():
            if host in self._inside or controller.selfmode is None:
                continue
            self._inside.add(host)
            try:
                controller.renew()
                controller.selfmode.reconcile(controller.paused)
            finally:
                self._inside.discard(host)
            self.check()

    def tick(self, *controllers: Controller, seconds: float = 1.0) -> list[str]:
        """One cycle of each controller (each in its own turn), then one renewal of each."""
        self.clock.advance(seconds)
        out = []
        for c in controllers:
            self._inside.add(c.host)
            try:
                out.append(c.run_cycle())
            finally:
                self._inside.discard(c.host)
            self.check()
        for c in controllers:
            c.renew()
            self.check()
        return out


@pytest.fixture
def cluster() -> Iterator[SelfCluster]:
    c = SelfCluster()
    yield c
    c.close()


def three(cluster: SelfCluster) -> tuple[Controller, Controller, Controller]:
    """n1 active with its scheduler up on n1; n2 and n3 standbys that have reported."""
    c1 = cluster.controller("n1")
    assert "placed and started the scheduler on n1" in c1.run_cycle()
    c2, c3 = cluster.controller("n2"), cluster.controller("n3")
    for _ in range(2):
        cluster.tick(c1, c2, c3)
    assert cluster.running() == ["n1"]
    return c1, c2, c3


def report(cluster: SelfCluster, node: str) -> Any:
    return next(r for r in cluster.store.reports() if r.node == node)


def test_every_node_reports_and_only_its_own_controller_touches_it(cluster: SelfCluster) -> None:
    c1, c2, _c3 = three(cluster)
    assert {r.node: r.state for r in cluster.store.reports()} == {"n1": "running", "n2": "stopped", "n3": "stopped"}
    placement = cluster.store.placement()
    assert report(cluster, "n1").started_for == placement.version
    assert all(r.answers == placement.version for r in cluster.store.reports())
    # Nothing but n1's own controller ever started or stopped anything: the others did not even look at n1.
    assert cluster.actions == [("n1", "start")]
    assert cluster.runners["n2"].starts == cluster.runners["n3"].starts == 0
    assert cluster.store.read_node_control() == "self"
    assert isinstance(c1.runners["n2"], ReportRunner) and not isinstance(c2.runners["n2"], ReportRunner)


def test_the_active_never_renews_another_nodes_placement(cluster: SelfCluster, monkeypatch: Any) -> None:
    c1, c2, c3 = three(cluster)
    cluster.store.request_switchover("n2", "controlled")
    cluster.tick(c1, c2, c3)
    assert cluster.running() == ["n2"]
    renewals: list[tuple[str, object]] = []
    real = cluster.store.renew_placement

    def record(node: str, ttl: float, holder: str | None = None, epoch: int | None = None) -> Any:
        renewals.append((node, holder))
        return real(node, ttl, holder, epoch)

    monkeypatch.setattr(cluster.store, "renew_placement", record)
    for _ in range(5):
        cluster.tick(c1, c2, c3)
    assert renewals and all(node == "n2" and holder is None for node, holder in renewals), renewals
    assert cluster.running() == ["n2"]


def test_a_controlled_switchover_stops_first_then_the_target_starts_itself(cluster: SelfCluster) -> None:
    c1, c2, c3 = three(cluster)
    cluster.store.request_switchover("n3", "controlled")
    sentence = cluster.tick(c1, c2, c3)[0]
    assert "controlled switchover from n1 to n3" in sentence and "started" in sentence, sentence
    assert cluster.running() == ["n3"]
    assert cluster.actions == [("n1", "start"), ("n1", "stop"), ("n3", "start")]
    assert cluster.max_running == 1
    assert report(cluster, "n3").state == "running"


def test_a_dead_remote_scheduler_is_restarted_in_place_by_a_new_version(cluster: SelfCluster) -> None:
    c1, c2, c3 = three(cluster)
    cluster.store.request_switchover("n2", "controlled")
    cluster.tick(c1, c2, c3)
    version = cluster.store.placement().version
    cluster.runners["n2"].die()
    # n2's own controller does not restart it on its own: it started for this version already.
    assert c2.selfmode is not None and c2.selfmode.reconcile(False) is None
    assert cluster.running() == []
    assert report(cluster, "n2").state == "stopped"
    sentence = cluster.tick(c1, c2, c3)[0]
    assert "restarted it in place" in sentence, sentence
    assert cluster.running() == ["n2"]
    assert cluster.store.placement().version == version + 1
    assert cluster.runners["n2"].starts == 2


def test_a_stray_on_a_standby_is_stopped_by_that_nodes_own_controller(cluster: SelfCluster) -> None:
    _c1, _c2, c3 = three(cluster)
    cluster.runners["n3"].run()  # by hand
    assert c3.selfmode is not None
    said = c3.selfmode.reconcile(False)
    assert said is not None and "stopped the local scheduler" in said and "placement is on n1" in said
    assert cluster.running() == ["n1"]
    assert cluster.actions[-1] == ("n3", "stop")


def test_a_stale_read_never_starts_a_scheduler(cluster: SelfCluster) -> None:
    """n2 read a placement naming it, but the active moved it before n2's renewal: nothing starts."""
    _c1, c2, _c3 = three(cluster)
    store = cluster.store
    lease = store.lease()
    store.set_placement("n2", lease.holder or "", lease.epoch, store.placement().version, 5)
    cluster.runners["n1"].die()  # as if stopped by the move

    def moved_on() -> None:
        store.set_placement(None, lease.holder or "", lease.epoch, store.placement().version, 5)

    store.on("renew_placement", moved_on)
    assert c2.selfmode is not None
    said = c2.selfmode.reconcile(False)
    assert said is not None and "could not be renewed: not starting" in said
    assert cluster.runners["n2"].starts == 0


def test_a_restarted_controller_adopts_its_running_scheduler(cluster: SelfCluster) -> None:
    c1, c2, c3 = three(cluster)
    cluster.store.request_switchover("n2", "controlled")
    cluster.tick(c1, c2, c3)
    before = report(cluster, "n2")
    del cluster.controllers["n2"]  # SIGKILL: its scheduler runs on under its leash
    c2 = cluster.controller("n2")
    for _ in range(3):
        cluster.tick(c1, c2, c3)
    assert cluster.running() == ["n2"]
    assert cluster.runners["n2"].starts == 1 and cluster.runners["n2"].stops == 0
    after = report(cluster, "n2")
    assert after.holder != before.holder and after.seq > before.seq and after.started_for == before.started_for


def test_a_node_whose_controller_is_dead_is_replaced_once_its_placement_expired(cluster: SelfCluster) -> None:
    c1, c2, c3 = three(cluster)
    cluster.store.request_switchover("n2", "controlled")
    cluster.tick(c1, c2, c3)
    assert cluster.running() == ["n2"]
    del cluster.controllers["n2"]  # dead: nobody renews n2's placement; its leash stops the scheduler
    sentences = []
    for _ in range(20):
        sentences += cluster.tick(c1, c3, seconds=0.5)
        if cluster.running() not in ([], ["n2"]):
            break
    assert cluster.running() in (["n1"], ["n3"]), sentences
    assert cluster.max_running == 1
    assert any("cannot see the scheduler node n2" in s for s in sentences), sentences


def test_renewal_wakes_the_cycle_when_the_placement_comes_here(cluster: SelfCluster) -> None:
    c1, c2, _c3 = three(cluster)
    assert c2.renew() is False
    store, lease = cluster.store, cluster.store.lease()
    store.set_placement(None, lease.holder or "", lease.epoch, store.placement().version, 5)
    assert c1.renew() is True  # the placement left n1 while its scheduler runs
    cluster.tick(c1)
    store.set_placement("n2", lease.holder or "", lease.epoch, store.placement().version, 5)
    assert c2.renew() is True  # placed here, nothing runs for it: start now, not at the next poll
    assert report(cluster, "n2").answers == store.placement().version


def test_paused_acts_on_nothing_but_reports(cluster: SelfCluster) -> None:
    c1, c2, c3 = three(cluster)
    cluster.store.set_paused(True)
    cluster.tick(c1, c2, c3)
    cluster.runners["n3"].run()
    cluster.runners["n3"].leashed = False
    cluster.max_running = 0
    assert c3.selfmode is not None and c3.selfmode.reconcile(True) is None
    assert report(cluster, "n3").state == "running"
    assert cluster.runners["n3"].stops == 0


def test_a_controller_of_another_node_control_refuses_to_act(cluster: SelfCluster) -> None:
    _c1, _c2, c3 = three(cluster)
    other = cluster.controller("n2", node_control="ssh")
    sentence = other.run_cycle()
    assert sentence == "refusing to act: node_control is ssh here but self for the cluster"
    assert other.renew() is False
    assert "left the local scheduler and its placement as they are" in other.shutdown()
    assert cluster.running() == ["n1"]
    # Changed while paused (the ssh <-> self procedure): now the self one refuses.
    assert not cluster.store.set_node_control("ssh")
    cluster.store.set_paused(True)
    assert cluster.store.set_node_control("ssh")
    assert c3.run_cycle().startswith("refusing to act: node_control is self here but ssh")


def test_reports_from_an_older_look_never_replace_newer_ones(cluster: SelfCluster) -> None:
    """The renewal thread's look began first but its write lands last: the store keeps the newer."""
    _c1, c2, _c3 = three(cluster)
    assert c2.selfmode is not None
    mode = c2.selfmode
    cluster.runners["n2"].run()
    cluster.runners["n2"].leashed = True

    def cycle_in_between() -> None:
        cluster.runners["n2"].die()
        mode.reconcile(False)  # a newer look: stopped

    cluster.runners["n2"].on_probe = cycle_in_between  # while the renewal looks, the cycle looks and writes
    c2.renew()
    assert report(cluster, "n2").state == "stopped"


def test_report_probe_says_unknown_when_stale_or_behind(cluster: SelfCluster) -> None:
    c1, _c2, _c3 = three(cluster)
    runner = c1.runners["n2"]
    assert runner.probe().state is SchedulerState.STOPPED
    del cluster.controllers["n2"]
    cluster.clock.advance(10)
    probe = runner.probe()
    assert probe.state is SchedulerState.UNKNOWN and "last report is" in probe.detail


def test_a_stop_order_to_a_node_that_died_is_waited_out_before_anything_starts(cluster: SelfCluster) -> None:
    """The active ordered n2's scheduler stopped (placement to nowhere), and n2's controller died
    before it acted: its scheduler runs on under its leash. The nowhere placement's expiry bounds
    that leash's deadline: nothing starts elsewhere before it, and then everything is stopped."""
    c1, c2, c3 = three(cluster)
    cluster.store.request_switchover("n2", "controlled")
    cluster.tick(c1, c2, c3)
    assert cluster.running() == ["n2"]
    store, lease = cluster.store, cluster.store.lease()
    order = store.set_placement(None, lease.holder or "", lease.epoch, store.placement().version, 5)
    assert order is not None
    del cluster.controllers["n2"]  # dead before it saw the order
    sentences = []
    for _ in range(30):
        sentences += cluster.tick(c1, c3, seconds=0.5)  # SelfCluster.check: never two at once
        if cluster.running() not in ([], ["n2"]):
            break
    assert cluster.running() in (["n1"], ["n3"]), sentences
    assert any("unseen; a placement it held may last until the stop order expires" in s for s in sentences), sentences


def test_a_report_of_a_scheduler_without_a_valid_placement_is_never_adopted() -> None:
    """Its own controller stops it (or its leash did): the active reads it as unknown, not running."""
    fresh = NodeReport("n2", "n2:1:aa", "running", (7,), True, answers=4, started_for=4, seq=9, server_now=1.0)
    expired = Placement("n2", 1, 100.0, 4, 100.5)
    elsewhere = Placement("n3", 1, 200.0, 4, 100.5)
    placed = Placement("n2", 1, 200.0, 4, 100.5)
    assert report_probe("n2", fresh, placed, 3.5).state is SchedulerState.RUNNING
    for placement in (expired, elsewhere):
        probe = report_probe("n2", fresh, placement, 3.5)
        assert probe.state is SchedulerState.UNKNOWN and "without a valid placement" in probe.detail
    stopped = NodeReport("n2", "n2:1:aa", "stopped", answers=4, started_for=3, seq=9, server_now=1.0)
    assert report_probe("n2", stopped, placed, 3.5).state is SchedulerState.UNKNOWN  # placed, not started yet
    assert report_probe("n2", stopped, elsewhere, 3.5).state is SchedulerState.STOPPED


def test_a_new_incarnation_that_cannot_see_the_old_ones_scheduler_never_runs_a_second(
    cluster: SelfCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    c1, c2, c3 = three(cluster)
    cluster.store.request_switchover("n2", "controlled")
    cluster.tick(c1, c2, c3)
    assert cluster.running() == ["n2"]
    old = cluster.runners["n2"]
    del cluster.controllers["n2"]  # cut off from the metastore: its scheduler runs on under its leash
    # A second controller as n2 elsewhere (a force-deleted pod's replacement): its own empty node.
    cluster.runners["n2"] = FakeRunner("n2", actions=cluster.actions)
    monkeypatch.setattr(
        cluster, "running", lambda: [n for n, r in [*cluster.runners.items(), ("n2", old)] if r.running]
    )
    c2 = cluster.controller("n2")
    sentences = []
    for _ in range(80):
        sentences += cluster.tick(c1, c2, c3, seconds=0.5)  # check(): never two, at every step
        if not old.running and len(cluster.running()) == 1:
            break
    assert not old.running and len(cluster.running()) == 1, sentences
    assert cluster.max_running == 1


def test_a_new_incarnation_reads_unknown_until_its_predecessor_is_seen_or_expired() -> None:
    from scheduler_failover_controller.controller.succession import Succession
    from scheduler_failover_controller.probe_result import ProbeResult

    placed = Placement("n2", 1, expires_at=110.0, version=4, server_now=100.0)
    prior = NodeReport("n2", "n2:1:a", "running", (7,), leashed=True, answers=4, started_for=4, seq=9)
    s = Succession("n2", "n2:2:b", ttl=10.0)
    s.begin(prior, placed)
    empty = ProbeResult("n2", SchedulerState.STOPPED)
    assert s.look(empty).state is SchedulerState.UNKNOWN and s.look(empty).leashed
    s.placement(Placement(None, 1, expires_at=115.0, version=5, server_now=105.0))  # the stop order
    s.placement(Placement("n3", 1, expires_at=124.0, version=6, server_now=114.0))
    assert s.look(empty).state is SchedulerState.UNKNOWN  # the stop order's expiry (115) not yet passed
    s.placement(Placement("n3", 1, expires_at=125.0, version=6, server_now=115.0))
    assert s.look(empty) == empty and s.pending is None
    # Seen here running under its leash: the same host's processes, adopted at once.
    s = Succession("n2", "n2:2:b", ttl=10.0)
    s.begin(prior, placed)
    running = ProbeResult("n2", SchedulerState.RUNNING, (7,), leashed=True)
    assert s.look(running) == running and s.pending is None
    # Its own report, or a predecessor that last reported nothing for the current version, not placed here.
    for holder, state, node in (("n2:2:b", "running", "n2"), ("n2:1:a", "stopped", "n3")):
        s = Succession("n2", "n2:2:b", ttl=10.0)
        s.begin(NodeReport("n2", holder, state, answers=4), Placement(node, 1, 110.0, 4, 100.0))
        assert s.pending is None
