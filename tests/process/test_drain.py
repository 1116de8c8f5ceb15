"""Drain and undrain against real controllers on SQLite (stand-in schedulers, 50 ms observer): the
scheduler leaves a drained node by a controlled switchover that `drain --wait` reports, never lands
on a drained node, and the drain outlives a restart of every controller; the same in self mode on
ZooKeeper."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.process.harness import ZK_PREFIX, Cluster
from tests.process.test_failover import assert_never_two, started
from tests.support.waiting import wait_for

pytestmark = pytest.mark.process


def on(cluster: Cluster) -> list[str]:
    """The nodes whose scheduler runs now (the observer's truth)."""
    return [seen.node for seen in cluster.observer.current()]


def test_drain_moves_the_scheduler_off_and_the_drain_survives_restarts(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    drain_story(started(make_cluster, f"sqlite:///{tmp_path / 'metastore.db'}", 3))


def test_drain_in_self_mode_on_zookeeper(make_cluster: Callable[..., Cluster], zk_hosts: str) -> None:
    """Each node's own controller stops and starts its scheduler: the drain works the same."""

    def self_mode(url: str, size: int, **timing: float) -> Cluster:
        return make_cluster(url, size, node_control="self", **timing)

    drain_story(started(self_mode, ZK_PREFIX + str(zk_hosts), 3))


def drain_story(cluster: Cluster) -> None:
    assert on(cluster) == ["n1"]
    out = cluster.cli("drain", "n1", "--wait", "30")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("n1 is drained: controlled switchover from n1 to n2: stopped ['n1'], started"), out
    wait_for(lambda: on(cluster) == ["n2"], 5, "the observer to see the scheduler on n2 alone")
    # The last node left undrained cannot be drained.
    assert cluster.cli("drain", "n3", "--wait", "0").returncode == 0
    refused = cluster.cli("drain", "n2", "--wait", "0")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1] == (
        "Error: refused to drain n2: every other node is drained, no node would be left"
    )
    assert cluster.cli("undrain", "n3").stdout.strip() == "undrained n3"
    # Every controller stops (each hands over or stops its scheduler), then starts again: n1 is
    # still drained, and the first controller back (n1's own) places the scheduler elsewhere.
    for node in cluster.nodes:
        cluster.procs[node].terminate()
    for node in cluster.nodes:
        cluster.procs[node].wait(timeout=30)
    wait_for(lambda: on(cluster) == [], 15, "every scheduler stopped")
    for node in cluster.nodes:
        cluster.start(node)
    wait_for(lambda: len(on(cluster)) == 1, 30, "a scheduler again")
    status = cluster.status()
    assert status["drained"] == ["n1"] and on(cluster) != ["n1"], (status, on(cluster))
    assert "drained: n1" in cluster.cli("status").stdout
    history = cluster.cli("history", "--json").stdout
    assert history.count('"drain"') == 2 and history.count('"undrain"') == 1, history
    assert_never_two(cluster)
