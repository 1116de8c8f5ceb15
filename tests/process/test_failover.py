"""Every guarantee checked by observing real processes: controllers, a stand-in scheduler, a metastore.

The observer samples the stand-in schedulers every ~50 ms; each scenario asserts it never saw two.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import MariaDB
from tests.process.harness import Cluster
from tests.support.waiting import wait_for

pytestmark = pytest.mark.process


def started(make_cluster: Callable[..., Cluster], url: str, size: int, **timing: float) -> Cluster:
    """A cluster with n1 active and its scheduler up on n1, standbys started after."""
    cluster: Cluster = make_cluster(url, size, **timing)
    cluster.observer.start()
    cluster.start("n1")
    wait_for(lambda: len(cluster.observer.current()) == 1, 20, "the first scheduler")
    # The start is logged once the scheduler is seen up: a test that freezes n1 before that line
    # would read it as written after the thaw.
    wait_for(lambda: "started the scheduler" in cluster.log("n1"), 20, "n1 to log the first start")
    for node in cluster.nodes[1:]:
        cluster.start(node)
    wait_for(lambda: len(cluster.status().get("controllers", [])) == size, 20, "every controller registered")
    return cluster


def assert_never_two(cluster: Cluster) -> None:
    """Stop the observer once it has looked often enough to count (a loaded machine samples slower)."""
    obs = cluster.observer
    # A sanity check that it ran at all: it is stopped once it has taken its 21st sample, however
    # slowly a starved machine lets it sample.
    wait_for(lambda: obs.samples > 20, 10, "the observer's 21st sample")
    obs.stop()
    assert obs.max_seen <= 1, f"two schedulers at once: {obs.history}"


def test_killed_scheduler_is_restarted(make_cluster: Callable[..., Cluster], cluster_url: str) -> None:
    cluster = started(make_cluster, cluster_url, 2)
    (pid,) = cluster.observer.pids()
    time.sleep(1)
    import os

    os.kill(pid, signal.SIGKILL)
    took = wait_for(
        lambda: len(cluster.observer.current()) == 1 and cluster.observer.pids() != (pid,), 15, "a new scheduler"
    )
    assert took < 10
    wait_for(lambda: "restarted it in place" in cluster.log("n1"), 10, "the restart to be logged")
    assert_never_two(cluster)


def test_active_controller_killed_standby_takes_over(make_cluster: Callable[..., Cluster], cluster_url: str) -> None:
    cluster = started(make_cluster, cluster_url, 3)
    before = cluster.status()
    assert before["active_controller"] == "n1"
    cluster.signal("n1", signal.SIGKILL)
    wait_for(lambda: cluster.active() in ("n2", "n3"), 15, "a standby to become active")
    after = cluster.status()
    assert int(after["epoch"]) > int(before["epoch"])
    time.sleep(2 * cluster.poll + 0.5)
    assert len(cluster.observer.current()) == 1
    assert_never_two(cluster)


def test_stopped_controller_resumes_with_stale_epoch_and_acts_on_nothing(
    make_cluster: Callable[..., Cluster], cluster_url: str
) -> None:
    cluster = started(make_cluster, cluster_url, 2)
    cluster.signal("n1", signal.SIGSTOP)
    wait_for(lambda: cluster.active() == "n2", 15, "n2 to take over while n1 is frozen")
    time.sleep(cluster.ttl)  # well past the frozen controller's lease
    mark = len(cluster.log("n1"))
    cluster.signal("n1", signal.SIGCONT)
    wait_for(lambda: "standby" in cluster.log("n1")[mark:], 10, "n1 to notice it is a standby")
    time.sleep(2)
    resumed = cluster.log("n1")[mark:]
    assert "started the scheduler" not in resumed and "restarted it in place" not in resumed
    assert "active (epoch 1)" not in resumed.split("standby", 1)[1]
    assert cluster.active() == "n2"
    assert len(cluster.observer.current()) == 1
    assert_never_two(cluster)


def test_sigterm_hands_over_gracefully(make_cluster: Callable[..., Cluster], cluster_url: str) -> None:
    cluster = started(make_cluster, cluster_url, 2)
    cluster.signal("n1", signal.SIGTERM)
    wait_for(lambda: cluster.active() == "n2", 10, "n2 to take over after SIGTERM", interval=0.05)
    assert cluster.procs["n1"].wait(timeout=10) == 0
    wait_for(lambda: len(cluster.observer.current()) == 1, 15, "the scheduler to run again")
    log = cluster.log("n1")
    assert "released the leadership lease" in log and "stopped the local scheduler" in log
    assert_never_two(cluster)


def test_stray_scheduler_is_killed(make_cluster: Callable[..., Cluster], cluster_url: str) -> None:
    cluster = started(make_cluster, cluster_url, 3)
    stray = cluster.start_stray("n3")
    wait_for(lambda: stray.poll() is not None, 10, "the stray on n3 to be killed")
    wait_for(
        lambda: "stray" in cluster.log("n1") or "holds no valid placement" in cluster.log("n3"), 10, "the kill logged"
    )
    assert len(cluster.observer.current()) == 1
    assert_never_two(cluster)


def test_controllers_racing_at_start_up(make_cluster: Callable[..., Cluster], cluster_url: str) -> None:
    cluster: Cluster = make_cluster(cluster_url, 3)
    cluster.observer.start()
    for node in cluster.nodes:
        cluster.start(node)
    wait_for(lambda: len(cluster.observer.current()) == 1, 20, "one scheduler")
    wait_for(
        lambda: sorted(c["role"] for c in cluster.status().get("controllers", [])) == ["active", "standby", "standby"],
        20,
        "one active controller and two standbys",
        interval=0.3,
    )
    assert_never_two(cluster)


def test_frozen_database_never_yields_a_second_scheduler(
    make_cluster: Callable[..., Cluster], mariadb: MariaDB, mariadb_url: str
) -> None:
    cluster = started(make_cluster, mariadb_url, 3)
    mariadb.freeze()
    try:
        # Longer than the lease: the scheduler's node must fence itself; nobody may start another.
        time.sleep(cluster.ttl * 2.5)
        assert cluster.observer.max_seen <= 1
        assert cluster.observer.current() == (), "the scheduler node did not fence itself"
    finally:
        mariadb.thaw()
    wait_for(lambda: len(cluster.observer.current()) == 1, 30, "recovery after the database returns")
    # Either stopped it first: the controller (self-fence) or the leash beside the scheduler.
    scheduler_log = cluster.tmp / "state" / "scheduler.log"
    leash_said = scheduler_log.read_text(errors="replace") if scheduler_log.exists() else ""
    assert "self-fenced" in "".join(cluster.log(n) for n in cluster.nodes) or "not renewed" in leash_said
    assert_never_two(cluster)


@pytest.mark.parametrize("mode", ["controlled", "forced"])
def test_switchover_moves_the_scheduler_without_overlap(
    make_cluster: Callable[..., Cluster], mode: str, tmp_path: Path
) -> None:
    cluster = started(make_cluster, f"sqlite:///{tmp_path / 'metastore.db'}", 3)
    (before,) = cluster.observer.current()
    result = cluster.cli("switchover", "--to", "n3", "--mode", mode)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{mode} switchover from n1 to n3" in result.stdout
    assert cluster.status().get("scheduler_node") == "n3"
    wait_for(lambda: len(cluster.observer.current()) == 1, 10, "the scheduler on n3")
    assert cluster.observer.current() != (before,)
    refused = cluster.cli("switchover", "--to", "n9")
    assert refused.returncode == 2 and "not in scheduler_nodes_in_cluster" in refused.stderr
    assert_never_two(cluster)
