"""Quiet logs: a steady state writes nothing at INFO per cycle, a change is logged once, and an
unchanged decision is summed up once per ``log_summary_interval`` (injected clock, real controllers)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from scheduler_failover_controller.cycle_log import CycleLog, kind

from .controller_support import active_on_n1, tick
from .fakes import Cluster

LOGGER = logging.getLogger("scheduler_failover_controller.daemon")


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    cluster = Cluster()
    yield cluster
    cluster.close()


def _info(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]


def test_healthy_cycles_log_nothing_at_info_but_one_summary_per_interval(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    c1 = active_on_n1(cluster)
    c2 = cluster.controller("n2")
    logs = {c: CycleLog(LOGGER, 10.0, cluster.clock.monotonic) for c in (c1, c2)}
    for controller, log in logs.items():
        log.note(controller.run_cycle())  # the first decision: a change, logged
    caplog.clear()
    caplog.set_level(logging.DEBUG)
    for _ in range(35):  # 35 polls of 1 s: each controller's decision unchanged
        for controller, sentence in zip(logs, tick(cluster, *logs)):
            logs[controller].note(sentence)
    info = _info(caplog)
    summaries = [line for line in info if line.startswith("unchanged for ")]
    assert info == summaries, info  # nothing else at INFO, from any logger of the controller
    assert len(summaries) == 6  # at 10, 20, 30 s, for each of the two controllers
    assert "unchanged for 10s (11 cycles): active (epoch 1): scheduler healthy on n1" in summaries[0]
    assert any("standby: n1 is active (epoch 1); scheduler placed on n1" in line for line in summaries)
    assert len([r for r in caplog.records if r.levelno == logging.DEBUG and "healthy on n1" in r.getMessage()]) > 20


def test_a_change_is_logged_once(cluster: Cluster, caplog: pytest.LogCaptureFixture) -> None:
    c1 = active_on_n1(cluster)
    log = CycleLog(LOGGER, 600.0, cluster.clock.monotonic)
    log.note(c1.run_cycle())
    caplog.set_level(logging.INFO)
    caplog.clear()
    cluster.runners["n1"].die()  # the scheduler is killed
    for _ in range(5):
        (sentence,) = tick(cluster, c1)
        log.note(sentence)
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER.name and r.levelno == logging.INFO]
    # The restart, then healthy again (a new pid): two changes, each logged once, then quiet.
    assert len(lines) == 2, lines
    assert "restarted" in lines[0] or "started" in lines[0], lines
    assert "scheduler healthy on n1" in lines[1]


def test_kind_blanks_numbers_but_names_and_epochs() -> None:
    assert kind("active (epoch 3): scheduler healthy on n1 (running (pid 4242))") == kind(
        "active (epoch 3): scheduler healthy on n1 (running (pid 77))"
    )
    assert kind("standby: n1 is active (epoch 1)") != kind("standby: n2 is active (epoch 1)")
    assert kind("standby: n1 is active (epoch 1)") != kind("standby: n1 is active (epoch 2)")
    assert kind("up after 1.5s") == kind("up after 0.2s")


def test_no_summary_when_the_interval_is_zero(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    log = CycleLog(LOGGER, 0.0, lambda: now[0])
    caplog.set_level(logging.INFO)
    for _ in range(100):
        now[0] += 60
        log.note("standby: n1 is active (epoch 1); scheduler placed on n1")
    assert len(_info(caplog)) == 1
