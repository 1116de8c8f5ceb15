"""SSHNodeRunner's probe against a real sshd on 127.0.0.1, through the project's ``probe --json``
and through the ps fallback, each compared with a local probe; and make_runners.

The "remote" node is this machine reached over SSH (tests/ssh/conftest.py), so every remote
process is also visible to a local probe (tests/ssh/runner_support.py).
"""

from __future__ import annotations

import os
import signal

from scheduler_failover_controller.nodes import LocalNodeRunner, SSHNodeRunner, make_runners
from scheduler_failover_controller.probe_result import ProbeResult, SchedulerState
from tests.ssh.conftest import CONTROLLER, NODE, Env
from tests.ssh.runner_support import local_probe, spawn

# --- probing --------------------------------------------------------------------------------------


def test_probe_stopped_equals_local(env: Env, mode: dict[str, str]) -> None:
    runner = env.runner(**mode)
    result = runner.probe()
    assert result == ProbeResult(NODE, SchedulerState.STOPPED)
    assert result == local_probe(runner)
    assert runner.remote_project is (not mode)


def test_probe_running_equals_local(env: Env, mode: dict[str, str]) -> None:
    proc = spawn(env)
    runner = env.runner(**mode)
    result = runner.probe()
    assert result == ProbeResult(NODE, SchedulerState.RUNNING, (proc.pid,))
    assert result == local_probe(runner)


def test_probe_counts_tree_roots_only_and_each_scheduler(env: Env, mode: dict[str, str]) -> None:
    first = spawn(env)
    second = spawn(env)
    runner = env.runner(**mode)
    result = runner.probe()
    # each stand-in has a child (not counted); two roots are two schedulers, oldest first
    assert result.state is SchedulerState.RUNNING
    assert set(result.pids) == {first.pid, second.pid}
    assert result.detail == "2 scheduler processes"
    assert result == local_probe(runner)


def test_probe_of_a_stopped_scheduler_is_unhealthy(env: Env, mode: dict[str, str]) -> None:
    proc = spawn(env)
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        runner = env.runner(**mode)
        result = runner.probe()
        assert result == ProbeResult(NODE, SchedulerState.UNHEALTHY, (proc.pid,), f"pid {proc.pid} is stopped")
        assert result == local_probe(runner)
    finally:
        os.kill(proc.pid, signal.SIGCONT)


def test_probe_ignores_other_nodes_and_other_clusters(env: Env, mode: dict[str, str]) -> None:
    spawn(env, "other-node")
    runner = env.runner(**mode)
    assert runner.probe().state is SchedulerState.STOPPED


def test_empty_remote_command_always_uses_the_fallback(env: Env) -> None:
    proc = spawn(env)
    runner = env.runner(ssh_remote_command="")
    assert runner.probe() == ProbeResult(NODE, SchedulerState.RUNNING, (proc.pid,))
    assert runner.remote_project is False


# --- make_runners ---------------------------------------------------------------------------------


def test_make_runners_local_for_own_node_ssh_for_others(env: Env) -> None:
    runners = make_runners(env.config())
    assert isinstance(runners[CONTROLLER], LocalNodeRunner)
    assert isinstance(runners[NODE], SSHNodeRunner)
    runners = make_runners(env.config(local_nodes=NODE))
    assert isinstance(runners[NODE], LocalNodeRunner)
