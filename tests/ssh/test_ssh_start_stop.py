"""SSHNodeRunner's start and stop against a real sshd on 127.0.0.1: whole trees stopped, starts
detached from the session and never doubled, and starts that timed out (their answer lost).

The "remote" node is this machine reached over SSH (tests/ssh/conftest.py), so every remote
process is also visible to a local probe (tests/ssh/runner_support.py).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psutil
import pytest

from scheduler_failover_controller.exceptions import CommandFailed, NodeUnreachable
from scheduler_failover_controller.nodes import SSHNodeRunner
from scheduler_failover_controller.nodes import ssh as ssh_module
from scheduler_failover_controller.probe_result import ProbeResult, SchedulerState
from tests.ssh.conftest import FAKE, NODE, PYTHON, Env, later, spawn_remote
from tests.ssh.runner_support import local_probe, spawn, tree
from tests.support.waiting import holds_for, wait_for

# --- start and stop -------------------------------------------------------------------------------


def test_start_then_running_then_stop_kills_the_whole_tree(env: Env, mode: dict[str, str]) -> None:
    runner = env.runner(**mode)
    runner.start(later())
    wait_for(lambda: runner.probe().state is SchedulerState.RUNNING, 10, "the started scheduler")
    [root] = env.schedulers()
    wait_for(lambda: len(tree(root)) == 2, 10, "the stand-in's child")  # it forks right after starting
    procs = tree(root)
    leashed = not mode  # under a leash where the project is installed; the fallback starts it bare
    expected = ProbeResult(NODE, SchedulerState.RUNNING, (root.pid,), leashed=leashed)
    assert runner.probe() == expected == local_probe(runner)
    result = runner.stop()
    assert result == ProbeResult(NODE, SchedulerState.STOPPED)
    for proc in procs:
        assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    assert local_probe(runner).state is SchedulerState.STOPPED
    # its output went to the log in state_dir (on the node)
    assert (env.tmp / "state" / "scheduler.log").exists()


def test_start_is_detached_from_the_ssh_session(env: Env) -> None:
    runner = env.runner()
    runner.start(later())
    wait_for(lambda: bool(env.schedulers()), 10, "the started scheduler")
    [root] = env.schedulers()
    runner.close()  # the session ends; the scheduler must stay
    holds_for(root.is_running, 0.5, "the scheduler outliving its SSH session")
    assert root.pid not in {p.pid for s in env.sshd.processes() for p in s.children(recursive=True)}


def test_start_does_nothing_when_a_scheduler_runs(env: Env) -> None:
    proc = spawn(env)
    runner = env.runner()
    runner.start(later())
    holds_for(lambda: [p.pid for p in env.schedulers()] == [proc.pid], 0.5, "only the scheduler that was there")


def test_two_controllers_starting_at_once_start_one_scheduler(env: Env) -> None:
    runners = [env.runner(), env.runner(ssh_remote_command="sfc_no_such_command_here")]
    for runner in runners:
        assert runner.probe().state is SchedulerState.STOPPED  # both connected
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(runners))

    def start(runner: SSHNodeRunner) -> None:
        barrier.wait()
        try:
            runner.start(later())
        except CommandFailed as exc:  # "another controller is starting the scheduler" is fine
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(r,)) for r in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    holds_for(lambda: len(env.schedulers()) == 1, 1.0, f"one scheduler ({errors})")
    assert all("another controller" in str(e) for e in errors)


def test_stop_of_a_stopped_node_is_stopped(env: Env, mode: dict[str, str]) -> None:
    assert env.runner(**mode).stop() == ProbeResult(NODE, SchedulerState.STOPPED)


def test_stop_kills_a_scheduler_that_ignores_sigterm(env: Env, mode: dict[str, str]) -> None:
    stubborn = env.tmp / "stubborn" / "fake_scheduler.py"  # the program the match names
    stubborn.parent.mkdir()
    stubborn.write_text("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(600)\n")
    spawn_remote(env.sshd, f"{PYTHON} {stubborn} --cluster {env.token} --node {NODE}")
    wait_for(lambda: bool(env.schedulers()), 10, "the stubborn scheduler")
    runner = env.runner(scheduler_stop_timeout=1, **mode)
    began = time.monotonic()
    assert runner.stop().state is SchedulerState.STOPPED
    assert time.monotonic() - began < 1 + 3 + 2
    assert not env.schedulers()


def test_stop_runs_the_configured_stop_command_first(env: Env) -> None:
    proc = spawn(env)
    marker = env.tmp / "stop command ran"
    runner = env.runner(airflow_scheduler_stop_command=f"touch '{marker}' && kill -TERM {proc.pid}")
    assert runner.stop().state is SchedulerState.STOPPED
    assert marker.exists()
    assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE


def test_stop_kills_what_the_stop_command_left(env: Env) -> None:
    proc = spawn(env)
    marker = env.tmp / "ran"
    runner = env.runner(airflow_scheduler_stop_command=f"touch {marker}")
    assert runner.stop().state is SchedulerState.STOPPED
    assert marker.exists()
    assert not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE


# --- a start that timed out ----------------------------------------------------------------------


def _lose_launch_answer(runner: SSHNodeRunner, monkeypatch: pytest.MonkeyPatch, *, run_it: bool) -> list[str]:
    """Make the launch command time out: after it ran (its answer lost), or before it was sent."""
    real = SSHNodeRunner._exec
    scripts: list[str] = []

    def exec_(self: SSHNodeRunner, conn: Any, script: str, deadline: Any, budget: float | None = None) -> Any:
        if "@@sfc-launched@@" in script and not scripts:
            scripts.append(script)
            if run_it:
                real(self, conn, script, deadline, budget)
            raise ssh_module.SSHFailure("timeout", "command did not finish within 3s (simulated)")
        return real(self, conn, script, deadline, budget)

    monkeypatch.setattr(SSHNodeRunner, "_exec", exec_)
    return scripts


def test_a_start_whose_answer_was_lost_counts_until_seen(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = env.runner()
    _lose_launch_answer(runner, monkeypatch, run_it=True)
    with pytest.raises(NodeUnreachable, match="may still come up"):
        runner.start(later())
    assert runner._pending
    # the next probe settles it: the start had run, so the scheduler is seen
    assert runner.probe().state is SchedulerState.RUNNING
    assert not runner._pending


def test_a_start_that_never_arrived_is_cancelled_for_good(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = env.runner()
    scripts = _lose_launch_answer(runner, monkeypatch, run_it=False)
    with pytest.raises(NodeUnreachable, match="may still come up"):
        runner.start(later())
    assert runner._pending
    assert runner.probe().state is SchedulerState.STOPPED  # settled: cancelled
    assert not runner._pending
    # the launch arrives late (a frozen sshd thawing): it must not start anything any more
    late = env.runner()
    deadline = ssh_module.Deadline(5)
    status, out, _err = late._session(deadline, lambda conn: late._exec(conn, scripts[0], deadline))
    assert "@@sfc-cancelled@@" in out and status != 0
    holds_for(lambda: not env.schedulers(), 0.5, "no scheduler from the late launch")


def test_a_start_after_one_that_launched_unseen_starts_nothing_more(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by the chaos soak (PostgreSQL, a metastore restart): a start's answer was lost, the
    next start found it had launched but its scheduler did not show yet (a slow leash), and
    launched a second one on the same node: two schedulers for 0.5 s."""
    slow = f"sleep 2; exec {PYTHON} {FAKE} --cluster {env.token} --node {{node}}"  # shows 2 s late
    runner = env.runner(airflow_scheduler_start_command=slow)
    _lose_launch_answer(runner, monkeypatch, run_it=True)
    with pytest.raises(NodeUnreachable, match="may still come up"):
        runner.start(later())
    assert not env.schedulers()  # not yet
    runner.start(later())  # settles the first: it had run, so nothing more is launched
    assert not runner._pending
    wait_for(lambda: env.schedulers(), 15, "the first start's scheduler")
    holds_for(lambda: len(env.schedulers()) == 1, 3, "one scheduler on the node")


def test_a_script_whose_shell_dies_without_an_exit_status_is_a_failure_not_an_answer(env: Env) -> None:
    """paramiko reports -1 for a channel closed with no exit status (its connection closed under
    it by another call's deadline, or its shell killed): the script's outcome is unknown, so it
    must not pass for a status (a start taken as failed for good may still launch)."""
    runner = env.runner()
    deadline = ssh_module.Deadline(5)
    with pytest.raises(ssh_module.SSHFailure, match="ended without an exit status"):
        runner._session(deadline, lambda conn: runner._exec(conn, "kill -KILL $$\n", deadline))
    status, out, _err = runner._session(deadline, lambda conn: runner._exec(conn, "echo fine\n", deadline))
    assert (status, out) == (0, "fine\n")


def test_probe_does_not_call_a_pending_start_stopped_while_unreachable(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = env.runner(ssh_timeout=3)  # the settling probe after the thaw reconnects: room for a loaded machine
    _lose_launch_answer(runner, monkeypatch, run_it=False)
    with pytest.raises(NodeUnreachable):
        runner.start(later())
    pids = env.sshd.freeze()
    try:
        assert runner.probe().state is SchedulerState.UNKNOWN
    finally:
        env.sshd.thaw(pids)
    assert runner._pending  # still in doubt until settled on the node
    assert runner.probe().state is SchedulerState.STOPPED
    assert not runner._pending
