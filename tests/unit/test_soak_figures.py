"""The chaos soak's per-service figures (benchmarks/soak_figures.py), from scripted observer histories."""

from __future__ import annotations

from dataclasses import dataclass, field

from benchmarks.soak import KINDS, SERVICE_KINDS, kinds_for
from benchmarks.soak_figures import SCHEDULER, ServiceTally, SoakResult, longest_outage


@dataclass
class FakeObserver:
    """What a tally reads of an observer: its changes, its running totals, when it stopped."""

    history: list[tuple[float, tuple[object, ...], tuple[object, ...]]] = field(default_factory=list)
    doubled: list[tuple[float, tuple[object, ...]]] = field(default_factory=list)
    seconds_two_or_more: float = 0.0
    seconds_none: float = 0.0
    stopped: float = 0.0
    interval: float = 0.05

    def mean_interval(self) -> float:
        return self.interval


@dataclass(frozen=True)
class Node:
    node: str


def test_longest_outage_clips_to_the_window() -> None:
    history = [(0.0, ("a",), ()), (10.0, (), ()), (13.0, ("b",), ()), (20.0, (), ()), (21.0, ("a",), ())]
    assert longest_outage(history, 11.0, 30.0) == 2.0  # 11..13 of the 10..13 gap
    assert longest_outage(history, 0.0, 30.0) == 3.0
    assert longest_outage(history, 14.0, 19.0) == 0.0
    assert longest_outage(history[:2], 12.0, 15.0) == 3.0  # still down when the window ends


def test_each_service_keeps_its_own_figures_per_kind() -> None:
    result = SoakResult(1, "mariadb", "self", ("scheduler_kill", "service_kill"), (SCHEDULER, "standin"))
    sched, standin = FakeObserver(), FakeObserver()
    sched.history = [(0.0, ("h1",), ()), (5.0, (), ()), (6.5, ("h2",), ())]
    standin.history = [(0.0, ("h3",), ())]
    before = {SCHEDULER: ServiceTally.mark(sched), "standin": ServiceTally.mark(standin)}
    sched.seconds_none = 1.5
    assert result.services[SCHEDULER].record("scheduler_kill", sched, before[SCHEDULER], 5.0, 10.0) == 0.0
    assert result.services["standin"].record("scheduler_kill", standin, before["standin"], 5.0, 10.0) == 0.0

    standin.history += [(20.0, (), ()), (24.0, ("h1",), ())]
    before = {SCHEDULER: ServiceTally.mark(sched), "standin": ServiceTally.mark(standin)}
    standin.seconds_none = 4.0
    result.services[SCHEDULER].record("service_kill", sched, before[SCHEDULER], 20.0, 30.0)
    result.services["standin"].record("service_kill", standin, before["standin"], 20.0, 30.0)

    s, t = result.services[SCHEDULER].kinds, result.services["standin"].kinds
    assert (s["scheduler_kill"].longest_outage, s["scheduler_kill"].none) == (1.5, 1.5)
    assert (s["service_kill"].longest_outage, s["service_kill"].none) == (0.0, 0.0)
    assert (t["scheduler_kill"].longest_outage, t["service_kill"].longest_outage) == (0.0, 4.0)
    assert t["service_kill"].none == 4.0
    assert result.worst(SCHEDULER) == ("scheduler_kill", 1.5)
    assert result.worst("standin") == ("service_kill", 4.0)
    assert result.exit_status == 0


def test_two_of_the_second_service_fails_the_soak() -> None:
    result = SoakResult(1, "zookeeper", "self", ("partition",), (SCHEDULER, "standin"))
    sched, standin = FakeObserver(), FakeObserver()
    before = ServiceTally.mark(standin)
    standin.seconds_two_or_more = 0.3
    standin.doubled = [(3.0, (Node("h1"), Node("h2")))]
    two = result.services["standin"].record("partition", standin, before, 2.0, 9.0, at="t+2s partition")
    result.services[SCHEDULER].record("partition", sched, ServiceTally.mark(sched), 2.0, 9.0)
    for name, obs in ((SCHEDULER, sched), ("standin", standin)):
        obs.stopped = 10.0
        result.services[name].finish(obs)
    assert two == 0.3
    assert result.two == 0.0  # the scheduler's, as a soak with one service reports it
    assert result.services["standin"].two == 0.3
    assert result.exit_status == 1
    assert result.doubled == ["standin: t+2s partition: [\"+1.00s ['h1', 'h2']\"]"]
    assert "TWO AT ONCE: standin" in result.table()


def test_unsettled_window_is_exit_status_2_and_the_scheduler_alone_reads_as_before() -> None:
    result = SoakResult(1, "mariadb", "self", ("partition",))
    assert list(result.services) == [SCHEDULER]
    obs = FakeObserver(history=[(1.0, ("h1",), ()), (4.0, (), ())], seconds_none=6.0, stopped=21.0)
    result.services[SCHEDULER].finish(obs)
    assert (result.none, result.pace) == (6.0, 0.05)
    assert result.availability == 1.0 - 6.0 / 20.0
    result.unsettled.append("t+1s partition: not healthy")
    assert result.exit_status == 2


def test_the_second_services_faults_only_when_it_runs() -> None:
    assert kinds_for("ssh", 0) == KINDS  # the same draws for a seed as the scheduler alone always had
    assert "sshd_freeze" not in kinds_for("self", 0)
    assert kinds_for("self", 1)[-len(SERVICE_KINDS) :] == SERVICE_KINDS
    assert not set(SERVICE_KINDS) & set(kinds_for("self", 0))
