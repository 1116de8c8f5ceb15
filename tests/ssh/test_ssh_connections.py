"""SSHNodeRunner's connections to a real sshd on 127.0.0.1: one connection and one ``probe --serve``
process reused across probes, shared by parallel ones, reopened after sshd restarts or goes down.

The "remote" node is this machine reached over SSH (tests/ssh/conftest.py), so every remote
process is also visible to a local probe (tests/ssh/runner_support.py).
"""

from __future__ import annotations

import threading

import psutil

from scheduler_failover_controller.probe_result import ProbeResult, SchedulerState
from tests.ssh.conftest import NODE, Env, Sshd
from tests.ssh.runner_support import spawn
from tests.support.waiting import wait_for

# --- connections ----------------------------------------------------------------------------------


def serve_processes(sshd: Sshd) -> list[psutil.Process]:
    """The ``probe --serve`` processes running in our sshd's sessions."""
    found = []
    for proc in sshd.processes():  # the listener and all below it
        try:
            if "--serve" in proc.cmdline():
                found.append(proc)
        except psutil.Error:
            continue
    return found


def test_probes_are_answered_by_one_server_process_per_connection(env: Env) -> None:
    proc = spawn(env)
    runner = env.runner()
    for _ in range(5):
        assert runner.probe() == ProbeResult(NODE, SchedulerState.RUNNING, (proc.pid,))
    [server] = serve_processes(env.sshd)
    assert env.match.replace("{node}", NODE) not in " ".join(server.cmdline())  # the match is in its environment
    assert runner.remote_project is True
    runner.close()  # its end of input: the server exits
    wait_for(lambda: not server.is_running() or server.status() == psutil.STATUS_ZOMBIE, 10, "the server to exit")


def test_a_dead_probe_server_is_replaced(env: Env) -> None:
    runner = env.runner()
    assert runner.probe().state is SchedulerState.STOPPED
    [server] = serve_processes(env.sshd)
    server.kill()
    proc = spawn(env)
    # the probe right after finds the server gone and answers with ps; the next one starts a new server
    assert runner.probe() == ProbeResult(NODE, SchedulerState.RUNNING, (proc.pid,))
    assert runner.probe() == ProbeResult(NODE, SchedulerState.RUNNING, (proc.pid,))
    wait_for(lambda: len(serve_processes(env.sshd)) == 1, 10, "a new server")
    assert runner.connections_opened == 1


def test_one_connection_is_reused_across_probes(env: Env, mode: dict[str, str]) -> None:
    runner = env.runner(**mode)
    accepted_before = env.sshd.log.read_text().count("Accepted publickey")
    for _ in range(5):
        assert runner.probe().state is SchedulerState.STOPPED
    runner.stop()
    assert runner.connections_opened == 1
    assert env.sshd.log.read_text().count("Accepted publickey") == accepted_before + 1


def test_parallel_probes_share_the_connection(env: Env) -> None:
    runner = env.runner()
    results: list[ProbeResult] = []
    threads = [threading.Thread(target=lambda: results.append(runner.probe())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert [r.state for r in results] == [SchedulerState.STOPPED] * 8
    assert runner.connections_opened == 1


def test_connection_is_reopened_after_sshd_restarts(env: Env, sshd: Sshd) -> None:
    runner = env.runner()
    assert runner.probe().state is SchedulerState.STOPPED
    sshd.restart()
    # the old connection is broken; the next call opens a new one instead of failing
    assert runner.probe().state is SchedulerState.STOPPED
    assert runner.connections_opened == 2
    proc = spawn(env)
    assert runner.probe() == ProbeResult(NODE, SchedulerState.RUNNING, (proc.pid,))
    assert runner.connections_opened == 2


def test_down_then_up_again(env: Env, sshd: Sshd) -> None:
    runner = env.runner()
    assert runner.probe().state is SchedulerState.STOPPED
    sshd.stop()
    try:
        assert runner.probe().state is SchedulerState.UNKNOWN
    finally:
        sshd.start()
    assert runner.probe().state is SchedulerState.STOPPED
