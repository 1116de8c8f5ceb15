"""The ps fallback without SSH: parsing the listing and the same matching and root rules as psutil's."""

from __future__ import annotations

import os
import pwd
import shlex
import subprocess
import sys
import time
import uuid

import psutil
import pytest

from scheduler_failover_controller.leash.records import LeashRecord, below_leashes
from scheduler_failover_controller.nodes.ssh.ps_table import (
    PS_LISTING,
    ProcessEntry,
    lineage,
    parse_etime,
    parse_ps,
    probe_table,
    table_descendants,
    table_leashed,
    table_owned,
    table_roots,
)
from scheduler_failover_controller.nodes.ssh.scripts import kill_script
from scheduler_failover_controller.ownership import split_procs
from scheduler_failover_controller.probe import leashed_roots, probe_local
from scheduler_failover_controller.probe_result import ForeignProcess, ProbeResult, SchedulerState
from scheduler_failover_controller.process_tree import ancestors, kernel_ppid
from tests.ssh.conftest import FAKE, PYTHON
from tests.support.waiting import wait_for


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("00:05", 5), ("01:02", 62), ("1:00:00", 3600), ("2-03:04:05", 2 * 86400 + 3 * 3600 + 4 * 60 + 5)],
)
def test_parse_etime(text: str, seconds: float) -> None:
    assert parse_etime(text) == seconds


LISTING = """\
    1     0     0     0 Ss     10:00 /sbin/init
  100     1     0     0 Ss     05:00 /venv/bin/python /venv/bin/airflow scheduler
  101   100     0     0 S      04:59 airflow scheduler -- DagFileProcessorManager
  102   101     0     0 S      04:58 /venv/bin/python /venv/bin/airflow scheduler
  200     1     0     0 Tl     01:00 /venv/bin/airflow scheduler --pid /tmp/x
  300     1     0     0 S      00:30 grep airflow scheduler
  301     1     0     0 S      00:30 sh -c echo airflow scheduler
  400     1     0     0 Z      00:10 [airflow] <defunct>
  500     1 65534 65534 S      00:20 /venv/bin/airflow scheduler
  501     1     0 65534 S      00:20 /venv/bin/airflow scheduler
  garbage line
"""


def test_parse_ps_and_roots_only() -> None:
    table = parse_ps(LISTING, now=1000.0)
    assert [e.pid for e in table] == [1, 100, 101, 102, 200, 300, 301, 400, 500, 501]
    assert table[1].argv == ("/venv/bin/python", "/venv/bin/airflow", "scheduler")
    assert table[1].args == "/venv/bin/python /venv/bin/airflow scheduler"
    assert table[1].create_time == 1000.0 - 300
    assert (table[1].uid, table[1].ruid, table[8].uid, table[9].uid, table[9].ruid) == (0, 0, 65534, 0, 65534)
    assert table[4].status == "stopped"
    assert table[7].status == "zombie"
    roots = table_roots(table, "airflow scheduler")
    # 101 and 102 sit below 100; grep and the shell run another program than airflow.
    assert [e.pid for e in roots] == [100, 200, 500, 501]
    # 500 is another user's; 501 runs as root by a set-uid program of another user: not ours
    result = probe_table("n", table, "airflow scheduler", skip=[300, 301], expected=0)
    assert result == ProbeResult("n", SchedulerState.UNHEALTHY, (100, 200), "pid 200 is stopped")
    assert [(f.pid, f.user) for f in result.foreign] == [(500, "nobody"), (501, "nobody")]
    # the same table read by uid 65534: only its own process counts
    assert probe_table("n", table, "airflow scheduler", skip=[300, 301], expected=65534).pids == (500,)


def test_descendants_deepest_first() -> None:
    table = parse_ps(LISTING)
    assert [e.pid for e in table_descendants(table, [100])] == [102, 101]


def test_lineage_of_the_listing_shell() -> None:
    table = [ProcessEntry(1, 0, ()), ProcessEntry(50, 1, ()), ProcessEntry(60, 50, ()), ProcessEntry(70, 60, ())]
    assert lineage(70, table) == {70, 60, 50, 1}


def test_real_ps_listing_agrees_with_psutil() -> None:
    """The fallback on this machine's own ps gives what probe_local gives."""
    token = uuid.uuid4().hex[:12]
    procs = [subprocess.Popen([PYTHON, str(FAKE), "--cluster", token, "--node", "n"]) for _ in range(2)]
    try:
        wait_for(lambda: all(psutil.Process(p.pid).children() for p in procs), 10, "the stand-ins' children")
        match = f"fake_scheduler.py --cluster {token} --node n"
        out = subprocess.run(PS_LISTING.split(), capture_output=True, text=True, check=True).stdout
        assert probe_table("n", parse_ps(out), match) == probe_local("n", match)
        assert probe_table("n", parse_ps(out), match).pids == tuple(p.pid for p in procs)
    finally:
        for proc in procs:
            for child in psutil.Process(proc.pid).children(recursive=True):
                child.kill()
            proc.kill()
            proc.wait()


def test_the_kernel_and_the_listing_walk_a_real_tree_alike() -> None:
    """One walker, two sources of parents: whether a real scheduler runs below a leash, and whether
    it counts, read from the kernel (psutil) and from this machine's ps listing, agree."""
    token = uuid.uuid4().hex[:12]
    nobody = pwd.getpwnam("nobody").pw_uid
    # sh stands in for a tree-mode leash: it stays the stand-in scheduler's parent (no exec).
    command = f"{shlex.join([PYTHON, str(FAKE), '--cluster', token, '--node', 'n'])}; :"
    shell = subprocess.Popen(["/bin/sh", "-c", command])
    try:
        outer = psutil.Process(shell.pid)
        wait_for(lambda: any(c.children() for c in outer.children()), 10, "the stand-in and its child")
        [root] = outer.children()
        [child] = root.children()
        out = subprocess.run(PS_LISTING.split(), capture_output=True, text=True, check=True).stdout
        table = parse_ps(out)
        [entry] = table_roots(table, f"fake_scheduler.py --cluster {token}")
        assert entry.pid == root.pid
        parents = {e.pid: e.ppid for e in table}
        assert list(ancestors(root.pid, parents.get)) == list(ancestors(root.pid, kernel_ppid([root])))
        assert list(ancestors(root.pid, parents.get))[:2] == [shell.pid, os.getpid()]
        for leash, leashed in [(shell.pid, True), (os.getpid(), True), (root.pid, False), (child.pid, False)]:
            records = [LeashRecord(leash, 0.0, "tree")]
            assert leashed_roots([root], records) is leashed, leash
            assert table_leashed(table, [entry], records) is leashed, leash
            # Run as another user than the expected one, it counts only below a leash of the node.
            mine = split_procs([root], nobody, below_leashes(records))
            listed = table_owned(table, [entry], nobody, records)
            assert [p.pid for p in mine[0]] == [e.pid for e in listed[0]] == ([root.pid] if leashed else [])
            foreign = [] if leashed else [ForeignProcess(root.pid, pwd.getpwuid(os.geteuid()).pw_name)]
            assert mine[1] == listed[1] == foreign
    finally:
        for leftover in outer.children(recursive=True):
            leftover.kill()
        shell.kill()
        shell.wait()


def test_kill_script_checks_identity_and_kills_the_tree() -> None:
    token = uuid.uuid4().hex[:12]
    proc = subprocess.Popen([PYTHON, str(FAKE), "--cluster", token, "--node", "n"])
    try:
        ps = psutil.Process(proc.pid)
        wait_for(lambda: bool(ps.children()), 10, "the stand-in's child")
        child = ps.children()[0]
        out = subprocess.run(PS_LISTING.split(), capture_output=True, text=True, check=True).stdout
        table = parse_ps(out)
        [root] = table_roots(table, f"fake_scheduler.py --cluster {token}")
        targets = [*table_descendants(table, [root.pid]), root]
        # a wrong identity for the child: it must be left alone
        impostor = ProcessEntry(child.pid, proc.pid, ("x",), args="not what it runs")
        subprocess.run(["/bin/sh", "-s"], input=kill_script([impostor], 1), text=True, check=True, timeout=10)
        assert child.is_running() and child.status() != psutil.STATUS_ZOMBIE
        began = time.monotonic()
        subprocess.run(["/bin/sh", "-s"], input=kill_script(targets, 2), text=True, check=True, timeout=10)
        assert time.monotonic() - began < 2
        proc.wait(5)
        wait_for(lambda: not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, 5, "the child to go")
    finally:
        for leftover in psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []:
            leftover.kill()
        proc.kill()
        proc.wait()


def test_kill_script_sigkills_after_the_timeout() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"]
    )
    try:
        time.sleep(0.3)
        out = subprocess.run(PS_LISTING.split(), capture_output=True, text=True, check=True).stdout
        [entry] = [e for e in parse_ps(out) if e.pid == proc.pid]
        began = time.monotonic()
        subprocess.run(["/bin/sh", "-s"], input=kill_script([entry], 1), text=True, check=True, timeout=10)
        assert 0.9 <= time.monotonic() - began < 3
        assert proc.wait(5) == -9
    finally:
        proc.kill()
        proc.wait()
