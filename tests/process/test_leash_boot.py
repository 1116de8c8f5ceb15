"""The leash against state it must not believe, with real processes: deadline files of another boot,
of an earlier leash, or written before its launch; and its liveness across a step of the wall clock.

A leash never runs past the deadline its starter gave it unless a renewal written after its start
says so (docs/design.md, section 3).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from scheduler_failover_controller.boot import boot_id
from scheduler_failover_controller.config import load_config
from scheduler_failover_controller.leash.deadline import deadline_path, write_deadline
from scheduler_failover_controller.leash.records import live_leashes, read_leash_records
from scheduler_failover_controller.leash.spec import LOCAL_ARGV
from scheduler_failover_controller.nodes.local import LocalNodeRunner
from scheduler_failover_controller.probe import probe_local
from tests.process.test_leash import FAKE, PY, ROOT, Lab, gone
from tests.support.clock_step import stepped_stat, under_stat
from tests.support.waiting import holds_for, wait_until

OTHER_BOOT = "0a1b2c3d-0000-4000-8000-000000000000"


def leftover(path: Path, style: str) -> None:
    """A deadline file as a reboot or an earlier leash leaves it, an hour or more ahead."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = time.monotonic()
    if style == "another boot":  # a long uptime then: huge monotonic readings, written "after" now
        path.write_text(f"{now + 10**6!r} {OTHER_BOOT} {now + 10**6 - 60!r}\n")
    elif style == "older format":  # a bare number: which boot, and when written, no one can tell
        path.write_text(f"{now + 10**6!r}\n")
    else:  # "earlier leash": this boot, written before this leash started
        write_deadline(path.parent.parent, path.name.removesuffix(".deadline"), now + 3600)
    path.chmod(0o600)


@pytest.mark.parametrize("style", ["another boot", "older format", "earlier leash"])
def test_a_leftover_deadline_file_does_not_extend_the_starters_deadline(lab: Lab, style: str) -> None:
    leftover(deadline_path(lab.state, "n1"), style)
    spec = lab.spec(lab.scheduler, deadline_in=3.0, stop_timeout=0.5, ttl=10.0)
    lab.leash(spec)
    wait_until(lambda: lab.schedulers(), 10, "the scheduler")
    procs = lab.marked()
    done = wait_until(lambda: gone(procs), 12, "the scheduler to go", interval=0.02)
    assert done <= spec.deadline + 0.2, (done - spec.deadline, lab.log())
    if style == "another boot":
        assert "written during another boot" in lab.log()


def test_a_renewal_written_after_the_start_still_extends_it(lab: Lab) -> None:
    leftover(deadline_path(lab.state, "n1"), "another boot")
    spec = lab.spec(lab.scheduler, deadline_in=3.0, stop_timeout=0.5, ttl=10.0)
    lab.leash(spec)
    wait_until(lambda: lab.schedulers(), 10, "the scheduler")
    [root] = lab.schedulers()
    written = time.monotonic()
    write_deadline(lab.state, "n1", written + 5.0)
    holds_for(root.is_running, spec.deadline + 0.5 - time.monotonic(), "the renewed scheduler")
    done = wait_until(lambda: gone([root]), 8, "the scheduler to go", interval=0.02)
    assert written + 5.0 - 0.5 - 0.1 <= done <= written + 5.0, lab.log()


def test_a_leash_started_for_another_local_node_keeps_its_starters_deadline(lab: Lab, tmp_path: Path) -> None:
    """Not the controller's own node (no placement of its own writes that file first): the runner
    writes the deadline before the launch, and the leash takes nothing older anyway."""
    cfg = tmp_path / "sfc.cfg"
    cfg.write_text(
        "[scheduler_failover]\nscheduler_nodes_in_cluster = n0,n1\ncurrent_host = n0\nlocal_nodes = n0,n1\n"
        f"state_dir = {lab.state}\npoll_frequency = 1\nlease_ttl = 10\nscheduler_stop_timeout = 0.5\n"
        f"scheduler_process_match = fake_scheduler.py --cluster {lab.token} --node {{node}}\n"
        f"airflow_scheduler_start_command = exec {PY} {FAKE} --cluster {lab.token} --node {{node}}\n"
    )
    lab.state.mkdir(parents=True, exist_ok=True)
    leftover(deadline_path(lab.state, "n1"), "earlier leash")
    runner = LocalNodeRunner("n1", load_config(str(cfg), env={**os.environ, "PYTHONPATH": str(ROOT)}))
    try:
        deadline = time.monotonic() + 3.0
        runner.start(deadline)
        wait_until(lambda: lab.schedulers(), 10, "the scheduler")
        procs = lab.marked()
        done = wait_until(lambda: gone(procs), 12, "the scheduler to go", interval=0.02)
        assert done <= deadline + 0.2, (done - deadline, (lab.state / "scheduler.log").read_text())
    finally:
        runner.stop(0)


def test_a_leash_record_of_another_boot_counts_for_nothing_and_is_pruned(lab: Lab) -> None:
    """A record left by a reboot names a pid that may be anything now: here a live leash's own."""
    first = lab.leash(lab.spec(lab.scheduler, deadline_in=30))
    wait_until(lambda: lab.schedulers() and live_leashes(lab.state, "n1"), 10, "the scheduler and its leash")
    [record] = read_leash_records(lab.state, "n1")
    path = lab.state / "leash" / f"n1.leash-{first.pid}"
    path.write_text(record.to_json().replace(boot_id(), OTHER_BOOT) + "\n")
    wait_until(lambda: not live_leashes(lab.state, "n1"), 5, "the record to count for nothing")
    assert not probe_local("n1", lab.match, lab.state).leashed
    first.kill()  # its watcher takes the scheduler with it
    wait_until(lambda: not lab.schedulers(), 5, "the scheduler to go with its leash")
    second = lab.leash(lab.spec(lab.scheduler, deadline_in=30))
    wait_until(lambda: lab.schedulers() and live_leashes(lab.state, "n1"), 10, "the second leash")
    wait_until(lambda: not path.exists(), 5, "the other boot's record to be pruned")
    assert [r.pid for r in read_leash_records(lab.state, "n1")] == [second.pid]


# --- a step of the wall clock ---------------------------------------------------------------------------


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare(1)")
def test_a_wall_clock_step_keeps_a_live_leash_recognised(lab: Lab) -> None:
    """The leash registers while the wall clock (and so the kernel's boot time, which psutil
    re-reads on every call) is an hour off, and is probed after it was stepped back. The machine's
    clock is never touched: the leash alone sees a /proc/stat an hour off, in a mount namespace of
    its own."""
    spec = lab.spec(lab.scheduler, deadline_in=30)
    fake = stepped_stat(lab.tmp, -3600)
    lab.state.mkdir(parents=True, exist_ok=True)
    log = (lab.tmp / "leash.log").open("ab")
    leash = subprocess.Popen(
        under_stat(fake, LOCAL_ARGV),
        env={**os.environ, "PYTHONPATH": str(ROOT), **spec.environment()},
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    lab.procs.append(leash)
    wait_until(lambda: lab.schedulers() and read_leash_records(lab.state, "n1"), 10, "the scheduler and its record")
    [record] = read_leash_records(lab.state, "n1")
    assert record.pid == leash.pid
    assert abs(record.create_time - psutil.Process(leash.pid).create_time()) > 3000  # registered "before the step"
    assert live_leashes(lab.state, "n1") == [record]
    assert probe_local("n1", lab.match, lab.state).leashed
