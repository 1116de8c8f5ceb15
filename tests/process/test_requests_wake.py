"""Operator requests at poll 60, with real processes: the active takes them up within a renewal
interval, so ``sfc switchover`` finishes well within its own timeout instead of timing out."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.process.harness import SFC, Cluster
from tests.process.test_failover import assert_never_two, started
from tests.support.waiting import wait_for

pytestmark = pytest.mark.process

POLL = 60.0  # the 2016 default: the next cycle is a minute away
TTL = 8.0  # the CLI waits 2 x lease_ttl + scheduler_start_timeout (5) = 21 s by default


def test_switchover_at_poll_60_finishes_within_the_clis_timeout(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    cluster = started(make_cluster, f"sqlite:///{tmp_path / 'metastore.db'}", 2, poll=POLL, ttl=TTL)
    (old,) = cluster.observer.pids()
    # The CLI's default wait: it is what an operator gets.
    asked = subprocess.run(
        [*SFC, "--config", str(cluster.config), "switchover", "--to", "n2"],
        env=cluster.env("n1"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert asked.returncode == 0, (asked.stdout, asked.stderr)
    wait_for(lambda: cluster.observer.pids() not in ((), (old,)), 10, "the scheduler on n2")
    assert cluster.status().get("scheduler_node") == "n2"
    assert_never_two(cluster)


def test_pause_at_poll_60_is_taken_up_within_a_renewal_interval(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    cluster = started(make_cluster, f"sqlite:///{tmp_path / 'metastore.db'}", 1, poll=POLL, ttl=TTL)
    assert cluster.cli("pause").returncode == 0
    wait_for(lambda: "paused; acting on nothing" in cluster.log("n1"), POLL / 3, "the active to take up the pause")
    assert cluster.cli("resume").returncode == 0
    wait_for(
        lambda: "scheduler healthy on n1" in cluster.log("n1").split("paused; acting on nothing")[-1],
        POLL / 3,
        "the active to take up the resume",
    )
