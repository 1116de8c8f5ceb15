"""The domain types of a probe stand alone: importing them loads no process or network library,
and every layer uses these very classes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from scheduler_failover_controller import probe_result
from scheduler_failover_controller.nodes import base
from scheduler_failover_controller.nodes.ssh import scripts
from scheduler_failover_controller.probe_result import ForeignProcess, ProbeResult, SchedulerState

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("psutil", "paramiko", "sqlalchemy", "kazoo", "click")


def test_the_domain_types_import_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "from scheduler_failover_controller.probe_result import ForeignProcess, ProbeResult, SchedulerState\n"
        f"loaded = sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
        "assert not loaded, f'imported with the domain types: {loaded}'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


def test_every_layer_shares_the_one_definition() -> None:
    for module in (base, scripts):  # the local and the SSH side (no second definition of any)
        names = vars(module)
        assert names["ProbeResult"] is ProbeResult, module.__name__
    assert vars(scripts)["SchedulerState"] is SchedulerState and vars(scripts)["ForeignProcess"] is ForeignProcess
    assert {ProbeResult.__module__, SchedulerState.__module__, ForeignProcess.__module__} == {probe_result.__name__}


def test_a_result_reads_the_same_as_before() -> None:
    result = ProbeResult("n", SchedulerState.UNHEALTHY, (5,), "pid 5 is stopped", foreign=(ForeignProcess(9, "bob"),))
    assert result.describe() == "unhealthy (pid 5): pid 5 is stopped; foreign, not counted: pid 9 (bob)"
    assert result.to_json() == {
        "node": "n",
        "state": "unhealthy",
        "pids": [5],
        "detail": "pid 5 is stopped",
        "leashed": False,
        "foreign": [{"pid": 9, "user": "bob"}],
    }
    assert SchedulerState.UNKNOWN.maybe_running and not SchedulerState.STOPPED.maybe_running
