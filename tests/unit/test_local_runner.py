"""The local runner with real processes: start (under a leash), stop, and the orphans of a scheduler
that died hard. The leash itself: tests/process/test_leash.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from scheduler_failover_controller.boot import start_ticks
from scheduler_failover_controller.config import load_config
from scheduler_failover_controller.nodes.local import LocalNodeRunner, session_leftovers, session_record
from scheduler_failover_controller.probe_result import SchedulerState

FAKE = Path(__file__).resolve().parents[1] / "support" / "fake_scheduler.py"


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[LocalNodeRunner]:
    token = uuid.uuid4().hex[:10]
    cfg = tmp_path / "sfc.cfg"
    cfg.write_text(
        "[scheduler_failover]\nscheduler_nodes_in_cluster = n1\ncurrent_host = n1\n"
        f"state_dir = {tmp_path / 'state'}\npoll_frequency = 1\nlease_ttl = 30\nscheduler_stop_timeout = 2\n"
        f"scheduler_process_match = fake_scheduler.py --cluster {token}\n"
        f"airflow_scheduler_start_command = exec {sys.executable} {FAKE} --cluster {token} --node n1 --orphan-child\n"
    )
    runner = LocalNodeRunner("n1", load_config(str(cfg), env={}))
    yield runner
    runner.stop()
    for proc in runner._leftovers():  # never leave a process behind, even when a test fails
        proc.kill()


def orphans(node: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if cmdline[-2:] == ["orphan-of", node] and proc.status() != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


def later(seconds: float = 30.0) -> float:
    """A leash deadline well beyond the test."""
    return time.monotonic() + seconds


def wait_until(predicate: object, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_start_then_stop_kills_the_whole_tree(runner: LocalNodeRunner) -> None:
    runner.start(later())
    assert wait_until(lambda: runner.probe().state is SchedulerState.RUNNING)
    assert runner.probe().leashed
    assert wait_until(lambda: [p for p in runner._leftovers() if "orphan-of" in p.cmdline()])
    assert runner.stop().state is SchedulerState.STOPPED
    assert wait_until(lambda: runner._leftovers() == [], 5)  # the leash and its watcher leave too


def test_the_leash_ends_the_orphans_of_a_scheduler_killed_hard(runner: LocalNodeRunner) -> None:
    runner.start(later())
    assert wait_until(lambda: runner.probe().state is SchedulerState.RUNNING)
    (root,) = runner.probe().pids
    assert wait_until(lambda: [p for p in runner._leftovers() if "orphan-of" in p.cmdline()])
    left = [p for p in runner._leftovers() if "orphan-of" in p.cmdline()]
    os.kill(root, signal.SIGKILL)
    assert wait_until(lambda: runner.probe().state is SchedulerState.STOPPED)
    # The worker would outlive its scheduler; the leash ends what is left of the tree, then itself.
    assert wait_until(lambda: all(not p.is_running() or p.status() == psutil.STATUS_ZOMBIE for p in left), 5)
    assert wait_until(lambda: runner._leftovers() == [], 5)


def test_a_start_ends_what_is_left_in_the_recorded_session(runner: LocalNodeRunner, tmp_path: Path) -> None:
    """Leftovers no leash took care of (e.g. one killed with its watcher) are found by session."""
    marker = f"left-{uuid.uuid4().hex[:8]}"
    leftover = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(100000)", marker], start_new_session=True
    )
    try:
        runner.lock_path.parent.mkdir(parents=True, exist_ok=True)
        runner._session_file.write_text(session_record(leftover.pid, start_ticks(leftover.pid) or 0))
        runner.start(later())
        assert leftover.wait(timeout=5) == -signal.SIGKILL
        assert wait_until(lambda: runner.probe().state is SchedulerState.RUNNING)
    finally:
        if leftover.poll() is None:
            leftover.kill()
            leftover.wait()


@pytest.mark.parametrize(
    "forgery", ["other-start-time", "writable-by-others", "other-owner", "symlink", "other-boot", "old-format"]
)
def test_a_session_file_anyone_could_have_written_is_not_obeyed(
    runner: LocalNodeRunner, tmp_path: Path, forgery: str
) -> None:
    """Whoever can write the session file must not make the controller SIGKILL a session."""
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(100000)"], start_new_session=True)
    try:
        runner.lock_path.parent.mkdir(parents=True, exist_ok=True)
        path = runner._session_file
        ticks = start_ticks(victim.pid) or 0
        if forgery == "symlink":
            real = tmp_path / "elsewhere"
            real.write_text(session_record(victim.pid, ticks))
            path.symlink_to(real)
        elif forgery == "other-boot":  # pids and ticks of the last boot mean nothing in this one
            path.write_text(f"{victim.pid} {ticks} 0a1b2c3d-0000-4000-8000-000000000000\n")
        elif forgery == "old-format":  # SID and a wall-clock time: which boot, no one can tell
            path.write_text(f"{victim.pid} {psutil.Process(victim.pid).create_time()}\n")
        else:
            path.write_text(session_record(victim.pid, ticks - 6000 if forgery == "other-start-time" else ticks))
        if forgery == "writable-by-others":
            path.chmod(0o666)
        if forgery == "other-owner":
            if os.geteuid() != 0:
                pytest.skip("needs root to give the file to another user")
            os.chown(path, 65534, 65534)
        assert session_leftovers(path) == []
        runner.start(later())
        assert wait_until(lambda: runner.probe().state is SchedulerState.RUNNING)
        assert victim.poll() is None  # not killed
    finally:
        victim.kill()
        victim.wait()


def test_a_forked_child_left_by_a_dead_scheduler_is_unhealthy_not_running() -> None:
    from scheduler_failover_controller.orphans import OrphanWatch
    from scheduler_failover_controller.probe_result import ProbeResult

    watch = OrphanWatch()
    now = time.time()
    first = ProbeResult(
        "n1", SchedulerState.RUNNING, (100,), create_times=(now - 60,), hidden=frozenset({(101, now - 59)})
    )
    assert watch.check(first) is first
    # pid 101 (same command line, forked 1 s after 100) was hidden under 100; 100 died.
    orphan = watch.check(ProbeResult("n1", SchedulerState.RUNNING, (101,), create_times=(now - 59,)))
    assert orphan.state is SchedulerState.UNHEALTHY and "pid 101 outlived its scheduler (pid 100)" in orphan.detail
    # A scheduler started after the last look is a new scheduler, not an orphan.
    fresh = ProbeResult("n1", SchedulerState.RUNNING, (200,), create_times=(time.time() + 1,))
    assert watch.check(fresh).state is SchedulerState.RUNNING


def test_an_orphan_stays_one_whoever_probes_and_whatever_is_seen_between() -> None:
    """The renewal thread probes the node too: its look must not make the cycle's next look take
    the orphan for the scheduler (seen in CI: a killed Airflow scheduler's fork passed for it, so
    it was never restarted). Nor may a look at the dying scheduler in between."""
    from scheduler_failover_controller.orphans import OrphanWatch
    from scheduler_failover_controller.probe_result import ProbeResult

    watch = OrphanWatch()
    now = time.time()
    below = frozenset({(101, now - 59)})  # pid 101 (same command line) is hidden under 100
    assert watch.check(
        ProbeResult("n1", SchedulerState.RUNNING, (100,), create_times=(now - 60,), hidden=below)
    ).pids == (100,)
    zombie = ProbeResult("n1", SchedulerState.UNHEALTHY, (100,), "pid 100 is a zombie", create_times=(now - 60,))
    assert watch.check(zombie).state is SchedulerState.UNHEALTHY
    assert watch.check(ProbeResult("n1", SchedulerState.STOPPED)).state is SchedulerState.STOPPED
    orphan = ProbeResult("n1", SchedulerState.RUNNING, (101,), create_times=(now - 59,))
    for _ in range(3):  # the renewal thread's look, then the cycle's, then the next
        seen = watch.check(orphan)
        assert seen.state is SchedulerState.UNHEALTHY and "pid 101 outlived its scheduler (pid 100)" in seen.detail
    assert watch.check(ProbeResult("n1", SchedulerState.STOPPED)).state is SchedulerState.STOPPED  # cleaned up
    fresh = ProbeResult("n1", SchedulerState.RUNNING, (200,), create_times=(time.time() + 1,))
    assert watch.check(fresh).state is SchedulerState.RUNNING
    assert watch.check(fresh).state is SchedulerState.RUNNING


def test_a_new_scheduler_is_no_orphan_whatever_its_create_time_says() -> None:
    """Found by the e2e test of a hung Airflow 2 scheduler: the renewal thread's look at the old
    scheduler, listed before the restart and taken in after it, made the new scheduler (created
    "before" that look) an orphan, so the restart waited 60 s for a scheduler that never counted."""
    from scheduler_failover_controller.orphans import OrphanWatch
    from scheduler_failover_controller.probe_result import ProbeResult

    watch = OrphanWatch()
    now = time.time()
    old = ProbeResult("n1", SchedulerState.RUNNING, (100,), create_times=(now - 60,), looked_at=10.0)
    assert watch.check(old) is old
    # The new scheduler's create time reads a little before the last look at the old one (psutil's
    # create times are off by up to the second the boot time is rounded to); it was never below it.
    new = ProbeResult("n1", SchedulerState.RUNNING, (200,), create_times=(now - 0.5,), looked_at=12.0)
    assert watch.check(new) is new
    assert watch.check(new) is new


def test_a_look_listed_before_the_last_one_taken_in_changes_nothing() -> None:
    from scheduler_failover_controller.orphans import OrphanWatch
    from scheduler_failover_controller.probe_result import ProbeResult

    watch = OrphanWatch()
    now = time.time()
    below = frozenset({(101, now - 59)})
    assert watch.check(
        ProbeResult("n1", SchedulerState.RUNNING, (100,), create_times=(now - 60,), hidden=below, looked_at=5.0)
    )
    # The renewal thread's look, listed earlier (nothing below 100 yet), is taken in late.
    stale = ProbeResult("n1", SchedulerState.RUNNING, (100,), create_times=(now - 60,), looked_at=4.0)
    assert watch.check(stale) is stale
    orphan = watch.check(ProbeResult("n1", SchedulerState.RUNNING, (101,), create_times=(now - 59,), looked_at=6.0))
    assert orphan.state is SchedulerState.UNHEALTHY
    assert orphan.detail == "pid 101 outlived its scheduler (pid 100)"


def test_the_real_orphan_of_a_killed_scheduler_is_reported_unhealthy(tmp_path: Path) -> None:
    """A stand-in whose forked child keeps its command line, as Airflow's does."""
    token = uuid.uuid4().hex[:10]
    script = tmp_path / "forking_scheduler.py"
    script.write_text(
        "import os, sys, time\n"
        "if os.fork() == 0:\n"
        "    time.sleep(100000)\n"  # the child keeps the parent's argv: it matches the same words
        "time.sleep(100000)\n"
    )
    cfg = tmp_path / "sfc.cfg"
    cfg.write_text(
        "[scheduler_failover]\nscheduler_nodes_in_cluster = n1\ncurrent_host = n1\n"
        f"state_dir = {tmp_path / 'state'}\npoll_frequency = 1\nlease_ttl = 30\nscheduler_stop_timeout = 2\n"
        f"scheduler_process_match = forking_scheduler.py {token}\n"
        f"airflow_scheduler_start_command = exec {sys.executable} {script} {token}\n"
    )
    runner = LocalNodeRunner("n1", load_config(str(cfg), env={}))
    try:
        runner.start(later())
        assert wait_until(lambda: runner.probe().state is SchedulerState.RUNNING)
        (root,) = runner.probe().pids
        assert wait_until(lambda: runner.probe().hidden)  # its child forked (not only the leash and the root)
        # A look once the child is there (the controller looks every poll): a child forked since
        # the last look and orphaned before the next is not told from a scheduler.
        assert runner.probe().pids == (root,)
        os.kill(root, signal.SIGKILL)
        assert wait_until(lambda: runner.probe().state is SchedulerState.UNHEALTHY, 15)  # a loaded 2-core VM
        assert runner.stop().state is SchedulerState.STOPPED
    finally:
        runner.stop(grace=0)
