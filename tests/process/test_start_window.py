"""A start on a node while another start there is still bringing up its scheduler.

A scheduler may take up to ``scheduler_start_timeout`` to show below its leash, but the node's
start lock is held only until a second after the leash launched the start command. A second
starter on the node (two controllers of one machine, a controller restarted mid-start) must see
the node as not empty in the meantime: else it launches a second scheduler, or (finding the first
start's session) ends the start under way to launch its own.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil
import pytest

from scheduler_failover_controller.config import load_config
from scheduler_failover_controller.leash.records import read_leash_records
from scheduler_failover_controller.nodes.local import LocalNodeRunner
from scheduler_failover_controller.probe import probe_local
from scheduler_failover_controller.probe_result import SchedulerState
from tests.process.test_leash import FAKE, PY, ROOT, Lab
from tests.support.observer import Observer
from tests.support.waiting import holds_for, wait_until

pytestmark = pytest.mark.process


def test_a_second_start_during_a_slow_start_launches_no_second_scheduler(lab: Lab, tmp_path: Path) -> None:
    """The start command execs its scheduler after 3 s; a second runner of the node starts once
    the first has returned (its lock released, nothing matching yet): one scheduler, never two."""
    slow = f"sleep 3; exec {PY} {FAKE} --cluster {lab.token} --node {{node}}"
    cfg = tmp_path / "sfc.cfg"
    cfg.write_text(
        "[scheduler_failover]\nscheduler_nodes_in_cluster = n1\ncurrent_host = n1\n"
        f"state_dir = {lab.state}\npoll_frequency = 1\nlease_ttl = 10\nscheduler_stop_timeout = 0.5\n"
        "scheduler_start_timeout = 10\n"
        f"scheduler_process_match = fake_scheduler.py --cluster {lab.token} --node {{node}}\n"
        f"airflow_scheduler_start_command = setsid nohup sh -c '{slow}' >/dev/null 2>&1 &\n"
    )
    config = load_config(str(cfg), env={**os.environ, "PYTHONPATH": str(ROOT)})
    first, second = LocalNodeRunner("n1", config), LocalNodeRunner("n1", config)
    observer = Observer(lab.match)
    observer.start()
    try:
        first.start(time.monotonic() + 20)
        [leash] = read_leash_records(lab.state, "n1")
        early = probe_local("n1", lab.match, lab.state)
        second.start(time.monotonic() + 20)
        wait_until(lambda: len(observer.current()) == 1, 10, "the slow scheduler to show")
        # the second start's leash, had it launched one, would show its scheduler 3 s after its own
        holds_for(lambda: observer.max_seen <= 1, 4.0, f"at most one scheduler: {observer.describe()}")
        assert observer.max_seen == 1, observer.describe()
        # and it is the first start's: the second neither doubled nor ended the start under way
        [seen] = observer.current()
        assert leash.pid in {p.pid for p in psutil.Process(seen.pid).parents()}, observer.describe()
        assert probe_local("n1", lab.match, lab.state).state is SchedulerState.RUNNING
        # what the second starter saw: a start under way, never an empty node
        assert early.state is SchedulerState.UNHEALTHY and "starting" in early.detail, early
    finally:
        observer.stop()
        first.stop(0)
        second.stop(0)


def test_a_stop_during_a_slow_start_ends_it_and_no_scheduler_comes_up_later(lab: Lab, tmp_path: Path) -> None:
    """A stop that finds nothing matching yet ends the leash still starting one: STOPPED means no
    scheduler comes up later (a give-up on a start, a move off the node rely on it)."""
    slow = f"sleep 3; exec {PY} {FAKE} --cluster {lab.token} --node {{node}}"
    cfg = tmp_path / "sfc.cfg"
    cfg.write_text(
        "[scheduler_failover]\nscheduler_nodes_in_cluster = n1\ncurrent_host = n1\n"
        f"state_dir = {lab.state}\npoll_frequency = 1\nlease_ttl = 10\nscheduler_stop_timeout = 0.5\n"
        "scheduler_start_timeout = 10\n"
        f"scheduler_process_match = fake_scheduler.py --cluster {lab.token} --node {{node}}\n"
        f"airflow_scheduler_start_command = setsid nohup sh -c '{slow}' >/dev/null 2>&1 &\n"
    )
    runner = LocalNodeRunner("n1", load_config(str(cfg), env={**os.environ, "PYTHONPATH": str(ROOT)}))
    observer = Observer(lab.match)
    observer.start()
    try:
        runner.start(time.monotonic() + 20)
        after = runner.stop()
        assert after.state is SchedulerState.STOPPED, after
        holds_for(lambda: observer.max_seen == 0, 5.0, f"no scheduler after the stop: {observer.describe()}")
    finally:
        observer.stop()
        runner.stop(0)
