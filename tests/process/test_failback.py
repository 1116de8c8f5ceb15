"""Failback and failure memory against real controllers on SQLite (stand-in schedulers, 50 ms observer,
short leases): with failback on, the scheduler moves back to the preferred node once it has been
healthy for failback_delay; a node's failed start is kept in the metastore, inherited by the next
active, shown by status, and forgotten failure_timeout after it."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.process.harness import Cluster
from tests.process.test_failover import assert_never_two
from tests.support.waiting import wait_for

pytestmark = pytest.mark.process


def on(cluster: Cluster) -> list[str]:
    return [seen.node for seen in cluster.observer.current()]


def configured(make_cluster: Callable[..., Cluster], tmp_path: Path, size: int, extra: str) -> Cluster:
    """A cluster on SQLite whose config has ``extra`` lines; nothing started yet."""
    cluster = make_cluster(f"sqlite:///{tmp_path / 'metastore.db'}", size)
    cluster.config.write_text(cluster.config.read_text() + extra)
    cluster.observer.start()
    return cluster


def test_failback_moves_the_scheduler_back_to_the_preferred_node(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    cluster = configured(make_cluster, tmp_path, 2, "failback = true\nfailback_delay = 2\n")
    for node in cluster.nodes:
        cluster.start(node)
    wait_for(lambda: on(cluster) == ["n1"], 30, "the scheduler on n1, the preferred node")
    out = cluster.cli("drain", "n1", "--wait", "30")
    assert out.returncode == 0, out.stderr
    wait_for(lambda: on(cluster) == ["n2"], 5, "the observer to see the scheduler on n2")
    began = time.monotonic()
    assert cluster.cli("undrain", "n1").returncode == 0
    took = wait_for(lambda: on(cluster) == ["n1"], 30, "the failback to n1")
    assert time.monotonic() - began >= 2  # not before failback_delay
    assert took < 25
    # The outcome is recorded once the start is confirmed, a moment after the observer sees it.
    said = "failback to n1, more preferred than n2: controlled switchover from n2 to n1"
    wait_for(lambda: said in cluster.cli("history", "--json").stdout, 15, "the failback's outcome in the history")
    assert_never_two(cluster)


@pytest.mark.manual  # waits out failure_timeout (about 25 s): make day2
def test_a_failed_start_is_inherited_shown_and_forgotten(make_cluster: Callable[..., Cluster], tmp_path: Path) -> None:
    flag = tmp_path / "fail-n1"
    extra = "failure_timeout = 20\nmove_backoff = 60\nmax_restart_attempts = 0\n"
    cluster = configured(make_cluster, tmp_path, 2, extra)
    text = cluster.config.read_text().replace("scheduler_start_timeout = 5", "scheduler_start_timeout = 2")
    start = "airflow_scheduler_start_command = "
    cluster.config.write_text(text.replace(f"{start}exec", f"{start}test -e {tmp_path}/fail-{{node}} && exit 1; exec"))
    flag.write_text("")
    cluster.start("n1")
    wait_for(lambda: on(cluster) == ["n2"], 30, "the scheduler on n2 after n1's start failed")
    flag.unlink()
    shown = cluster.status()["failed_starts"]
    assert [(f["host"], f["count"]) for f in shown] == [("n1", 1)], shown
    assert 0 < shown[0]["forgotten_in_s"] <= 20
    # A new active (n1's controller stops; n2's takes over) inherits the count: it keeps the
    # scheduler off n1 and says so.
    cluster.start("n2")
    wait_for(lambda: len(cluster.status().get("controllers", [])) == 2, 20, "n2's controller registered")
    cluster.procs["n1"].terminate()
    cluster.procs["n1"].wait(timeout=30)
    wait_for(lambda: "1 failed start(s) kept from before" in cluster.log("n2"), 20, "n2 to inherit n1's failure")
    wait_for(lambda: cluster.status().get("failed_starts") == [], 40, "the failure to be forgotten")
    assert "n1: its 1 failed start(s) are forgotten (failure_timeout)" in cluster.log("n2")
    assert_never_two(cluster)
