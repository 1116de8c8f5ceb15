"""The leash over SSH, against the real sshd of conftest.py: a remote start runs under a leash,
renew_leash keeps it running, and without renewals it stops at the deadline; without this project
on the node the scheduler starts unleashed, as its probes say.

The "remote" node is this machine, so its monotonic clock is ours: the deadline a remote leash
holds is checked against the local one (never later).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from scheduler_failover_controller.boot import started_monotonic
from scheduler_failover_controller.leash.deadline import deadline_path, read_deadline_file, read_renewal
from scheduler_failover_controller.leash.records import read_leash_records
from scheduler_failover_controller.leash.spec import LOCAL_ARGV
from scheduler_failover_controller.matching import LEASH_NAMES
from scheduler_failover_controller.nodes.local import leash_spec
from scheduler_failover_controller.nodes.ssh import Deadline, SSHNodeRunner
from scheduler_failover_controller.probe_result import ProbeResult, SchedulerState
from tests.ssh.conftest import NODE, Env, later
from tests.support.clock_step import stepped_stat, under_stat
from tests.support.waiting import wait_for

FALLBACK = {"ssh_remote_command": "sfc_no_such_command_here"}


def leash_of(proc: psutil.Process) -> psutil.Process | None:
    for parent in proc.parents():
        if parent.name() in LEASH_NAMES:
            return parent
    return None


def listed(runner: SSHNodeRunner) -> ProbeResult:
    """A probe by the ps-listing fallback (not the node's probe server)."""
    budget = Deadline(runner.timeout)

    def look(conn: object) -> ProbeResult:
        _status, out, _err = runner._exec(conn, runner._probe_script(), budget)  # type: ignore[arg-type]
        table = runner._parse_listing(out)
        assert table is not None
        return runner._probe_listed(out, table)

    return runner._session(budget, look)


def test_a_remote_start_runs_under_a_leash(env: Env) -> None:
    runner = env.runner()
    runner.start(later())
    wait_for(lambda: runner.probe().state is SchedulerState.RUNNING, 10, "the started scheduler")
    [root] = env.schedulers()
    leash = leash_of(root)
    assert leash is not None
    argv = " ".join(leash.cmdline())
    assert env.token not in argv and NODE not in argv  # nothing of the start command or the match
    assert runner.probe() == ProbeResult(NODE, SchedulerState.RUNNING, (root.pid,), leashed=True)
    assert listed(runner) == ProbeResult(NODE, SchedulerState.RUNNING, (root.pid,), leashed=True)
    [record] = read_leash_records(env.tmp / "state", NODE)
    assert record.pid == leash.pid and record.mode == "tree"
    assert runner.stop().state is SchedulerState.STOPPED
    wait_for(lambda: not leash.is_running() or leash.status() == psutil.STATUS_ZOMBIE, 5, "the leash to leave")


def test_the_remote_deadline_is_never_later_than_ours(env: Env) -> None:
    runner = env.runner()
    assert runner.probe().state is SchedulerState.STOPPED
    ours = time.monotonic() + 5.0
    budget = Deadline(runner.timeout)
    theirs = runner._session(budget, lambda conn: runner._remote_deadline(conn, budget, ours))
    assert theirs is not None
    assert ours - 0.5 < theirs <= ours  # the same clock here: only the round trip is lost


def test_renewals_over_ssh_keep_it_running_and_it_stops_at_the_last_deadline(env: Env) -> None:
    runner = env.runner(scheduler_stop_timeout=1)
    renewer = env.runner(scheduler_stop_timeout=1)  # another controller's connection: several writers
    renewer.renew_leash(time.monotonic())  # starts its helper there (a past deadline changes nothing)
    first = time.monotonic() + 5.0
    runner.start(first)
    wait_for(lambda: bool(env.schedulers()), 10, "the started scheduler")
    [root] = env.schedulers()
    last = first
    until = first + 2.0
    while time.monotonic() < until:
        last = time.monotonic() + 3.0
        (runner if int(time.monotonic() * 2) % 2 else renewer).renew_leash(last)
        time.sleep(0.4)
    assert root.is_running()
    began = time.monotonic()
    while root.is_running() and root.status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < last + 0.5, "not stopped at its deadline"
        time.sleep(0.02)
    assert time.monotonic() >= last - 1.0 - 0.1, "stopped before deadline - stop_timeout"
    assert time.monotonic() - began < 5


def test_without_renewals_it_stops_at_the_deadline_even_with_the_ssh_session_gone(env: Env) -> None:
    runner = env.runner(scheduler_stop_timeout=1)
    deadline = time.monotonic() + 5.0
    runner.start(deadline)
    wait_for(lambda: bool(env.schedulers()), 10, "the started scheduler")
    procs = [p for r in env.schedulers() for p in (r, *r.children(recursive=True))]
    runner.close()
    frozen = env.sshd.freeze()  # nothing reaches the node any more
    try:
        while not all(not p.is_running() or p.status() == psutil.STATUS_ZOMBIE for p in procs):
            assert time.monotonic() <= deadline + 0.5, f"the remote scheduler outlived its deadline: {procs}"
            time.sleep(0.02)
    finally:
        env.sshd.thaw(frozen)


def test_without_the_project_there_it_starts_unleashed(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    runner = env.runner(**FALLBACK)
    runner.start(later())
    wait_for(lambda: bool(env.schedulers()), 10, "the started scheduler")
    [root] = env.schedulers()
    assert leash_of(root) is None
    assert runner.probe() == ProbeResult(NODE, SchedulerState.RUNNING, (root.pid,), leashed=False)
    with caplog.at_level(logging.WARNING):
        runner.renew_leash(later())  # nothing there to renew: no error, no warning
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert runner.stop().state is SchedulerState.STOPPED


def test_with_an_empty_ssh_remote_command_it_starts_unleashed(env: Env) -> None:
    """ssh_remote_command empty: always the POSIX fallback, no leash helper tried (it used to fail
    with an IndexError looking for the helper's command)."""
    runner = env.runner(ssh_remote_command="")
    assert runner.remote_words == []
    runner.start(later())
    wait_for(lambda: bool(env.schedulers()), 10, "the started scheduler")
    [root] = env.schedulers()
    assert leash_of(root) is None
    assert runner.probe() == ProbeResult(NODE, SchedulerState.RUNNING, (root.pid,), leashed=False)
    runner.renew_leash(later())  # nothing to renew
    assert runner.stop().state is SchedulerState.STOPPED


def renew_until_written(env: Env, runner: SSHNodeRunner, seconds: float = 30.0) -> None:
    """Renew until the node's deadline file shows it (a busy node's helper may take a few calls)."""
    path = deadline_path(env.tmp / "state", NODE)
    until = time.monotonic() + 15
    while time.monotonic() < until:
        value = time.monotonic() + seconds
        runner.renew_leash(value)
        written = read_deadline_file(path)
        if written is not None and value - 1.0 < written <= value:
            return
        time.sleep(0.1)
    raise AssertionError("the renewal never reached the deadline file")


def test_a_renewal_to_a_frozen_node_gives_up_within_the_timeout(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    runner = env.runner(ssh_timeout=1)
    renew_until_written(env, runner)  # connected, helper started
    pids = env.sshd.freeze()
    try:
        with caplog.at_level(logging.WARNING):
            for _ in range(2):
                began = time.monotonic()
                runner.renew_leash(later())
                assert time.monotonic() - began < 1.7
    finally:
        env.sshd.thaw(pids)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and "renew the leash" in r.getMessage()]
    assert len(warnings) == 1  # one warning, not one per cycle
    renew_until_written(env, runner)  # reconnects
    assert not runner._renew_failing


def test_a_remote_start_writes_the_deadline_before_it_launches_the_leash(env: Env) -> None:
    """A deadline file left there (an earlier leash's, an hour ahead) never extends the new leash:
    the start writes its own deadline there first, and the leash takes nothing written before it."""
    runner = env.runner(scheduler_stop_timeout=1)
    renewer = env.runner()
    path = deadline_path(env.tmp / "state", NODE)
    renewer.renew_leash(time.monotonic() + 3600)  # the earlier leash's last renewal (clamped to lease_ttl)
    assert read_deadline_file(path) is not None
    deadline = time.monotonic() + 8.0  # room for a start over SSH on a loaded machine
    runner.start(deadline)
    wait_for(lambda: bool(env.schedulers()), 10, "the started scheduler")
    [root] = env.schedulers()
    leash = leash_of(root)
    assert leash is not None
    renewal = read_renewal(path)
    assert renewal is not None and deadline - 3.0 < renewal.deadline <= deadline  # the start's own (node's clock)
    # written before the leash started (both on the monotonic clock: psutil's create times carry
    # the whole-second rounding of the kernel's boot time)
    assert renewal.written <= started_monotonic(leash.pid, time.monotonic(), window=10**6)
    procs = [root, *root.children(recursive=True)]
    while not all(not p.is_running() or p.status() == psutil.STATUS_ZOMBIE for p in procs):
        assert time.monotonic() <= deadline + 0.3, "the remote scheduler outlived its starter's deadline"
        time.sleep(0.02)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare(1)")
def test_the_listing_recognises_a_leash_registered_before_a_wall_clock_step(env: Env) -> None:
    """The ps listing (a node without the probe server) tells a leash by its start since boot: a
    leash that registered while the node's wall clock was an hour off is still live after the step
    (see tests/support/clock_step.py; the machine's clock is never touched)."""
    runner = env.runner()
    config = env.config()
    spec = leash_spec(config, NODE, time.monotonic() + 60, "step")
    (env.tmp / "state").mkdir(parents=True, exist_ok=True)
    leash = subprocess.Popen(
        under_stat(stepped_stat(env.tmp, -3600), LOCAL_ARGV),
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), **spec.environment()},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(lambda: env.schedulers() and read_leash_records(env.tmp / "state", NODE), 10, "a registered leash")
        [record] = read_leash_records(env.tmp / "state", NODE)
        assert abs(record.create_time - psutil.Process(leash.pid).create_time()) > 3000
        [root] = env.schedulers()
        assert listed(runner) == ProbeResult(NODE, SchedulerState.RUNNING, (root.pid,), leashed=True)
    finally:
        leash.kill()
        leash.wait()
