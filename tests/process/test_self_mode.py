"""Self mode with real processes: three controllers on this one machine, each its own node (n1, n2,
n3) whose scheduler match finds only its own node's stand-in scheduler, no ``local_nodes``, no SSH.

Each controller acts on its own node only; the active writes placements. The observer samples the
process table every ~50 ms the whole time: never two schedulers at once. Every controller runs with
``PYTHONPROFILEIMPORTTIME``, so its log lists every module it ever imported: paramiko never is.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from tests.process.harness import ZK_PREFIX, Cluster
from tests.support.waiting import holds_for, wait_for

pytestmark = pytest.mark.process


@pytest.fixture(params=["mariadb", "zookeeper"])
def shared_url(request: pytest.FixtureRequest) -> str:
    """A metastore every master reaches over the network (the embedded SQLite file is one host's)."""
    if request.param == "mariadb":
        return str(request.getfixturevalue("mariadb_url"))
    return ZK_PREFIX + str(request.getfixturevalue("zk_hosts"))


def self_cluster(make_cluster: Callable[..., Cluster], url: str, size: int = 3, **timing: float) -> Cluster:
    """A self-mode cluster, n1 started first (its scheduler up on n1), then the others, all reporting."""
    cluster: Cluster = make_cluster(url, size, node_control="self", **timing)
    cluster.extra_env["PYTHONPROFILEIMPORTTIME"] = "1"  # every import on stderr, into the node's log
    cluster.observer.start()
    cluster.start("n1")
    wait_for(lambda: len(cluster.observer.current()) == 1, 20, "the first scheduler")
    for node in cluster.nodes[1:]:
        cluster.start(node)
    wait_for(lambda: all(n.get("report_age_s") is not None for n in cluster.status().get("nodes", [])), 20, "reports")
    return cluster


def on(cluster: Cluster, node: str) -> int:
    """The pid of the one scheduler, which must run on ``node``."""
    (seen,) = cluster.observer.current()
    assert seen.node == node, cluster.observer.describe()
    return seen.pid


def switch_to(cluster: Cluster, node: str) -> int:
    result = cluster.cli("switchover", "--to", node)
    assert result.returncode == 0, result.stdout + result.stderr
    wait_for(lambda: [s.node for s in cluster.observer.current()] == [node], 15, f"the scheduler on {node}")
    return on(cluster, node)


def finish(cluster: Cluster) -> None:
    """Never two at once, and no controller ever imported paramiko (so never opened an SSH connection)."""
    cluster.observer.stop()
    assert cluster.observer.samples > 20, "the observer did not run"
    assert cluster.observer.max_seen <= 1, f"two schedulers at once: {cluster.observer.doubled}"
    for node in cluster.nodes:
        log = cluster.log(node)
        imported = re.findall(r"^import time:.*\|\s+(\S+)\s*$", log, re.MULTILINE)
        assert "scheduler_failover_controller.controller.selfmode" in imported, node  # the listing works
        assert not [m for m in imported if m.split(".")[0] in ("paramiko", "scheduler_failover_controller.nodes.ssh")]
        assert "scheduler_failover_controller.nodes.ssh" not in imported, f"{node} loaded the SSH runner"
        assert "INTERNAL ERROR" not in log, node


def test_a_killed_scheduler_on_a_standby_node_is_restarted_there_by_its_own_controller(
    make_cluster: Callable[..., Cluster], mariadb_url: str
) -> None:
    cluster = self_cluster(make_cluster, mariadb_url)
    pid = switch_to(cluster, "n2")
    assert cluster.active() == "n1"
    mark = len(cluster.log("n2"))
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: cluster.observer.pids() not in ((), (pid,)), 15, "a new scheduler")
    on(cluster, "n2")
    wait_for(lambda: "restarted it in place" in cluster.log("n1"), 10, "the active's restart decision")
    said = "started the local scheduler for placement version"  # once its cycle is over
    wait_for(lambda: said in cluster.log("n2")[mark:], 10, "n2's own controller saying it started it")
    finish(cluster)


def test_a_killed_controller_leaves_its_scheduler_to_its_leash_then_another_node_takes_over(
    make_cluster: Callable[..., Cluster], shared_url: str
) -> None:
    cluster = self_cluster(make_cluster, shared_url)
    pid = switch_to(cluster, "n2")
    cluster.signal("n2", signal.SIGKILL)
    killed = time.monotonic()
    # It outlives its controller (a scheduler ended with it would be gone within milliseconds), but
    # its leash begins to stop it at the last renewal's deadline less the stop timeout: as little as
    # about a second after the kill when the kill came just before a renewal.
    holds_for(lambda: cluster.observer.pids() == (pid,), cluster.ttl / 6, "n2's scheduler running on its leash")
    wait_for(lambda: not psutil.pid_exists(pid), 2 * cluster.ttl, "n2's leash to stop its scheduler")
    gone = time.monotonic() - killed
    assert gone < cluster.ttl + 2, gone  # the leash stopped it by its placement's deadline (slack: a loaded host)
    wait_for(lambda: [s.node for s in cluster.observer.current()] in (["n1"], ["n3"]), 20, "a scheduler elsewhere")
    finish(cluster)


def test_a_controller_restarted_while_its_scheduler_runs_adopts_it(
    make_cluster: Callable[..., Cluster], mariadb_url: str
) -> None:
    # A lease long enough for a new process to start (slow on a loaded machine) and to look for its
    # predecessor's heartbeat (2 renewals and a call) before the leash begins to stop the scheduler.
    cluster = self_cluster(make_cluster, mariadb_url, poll=1.0, ttl=15.0)
    pid = switch_to(cluster, "n2")
    cluster.signal("n2", signal.SIGKILL)
    cluster.procs["n2"].wait(timeout=10)
    mark = len(cluster.log("n2"))
    cluster.start("n2")
    # Not renewed, its leash would stop it within one lease of the kill: it must outlive that.
    holds_for(lambda: cluster.observer.pids() == (pid,), cluster.ttl + 2, "the same scheduler on n2")
    assert cluster.status().get("scheduler_node") == "n2"
    assert "started the local scheduler" not in cluster.log("n2")[mark:]
    assert "stopped the local scheduler" not in cluster.log("n2")[mark:]
    finish(cluster)


def test_a_controlled_switchover_stops_first_and_the_target_starts_itself(
    make_cluster: Callable[..., Cluster], shared_url: str
) -> None:
    cluster = self_cluster(make_cluster, shared_url)
    before = on(cluster, "n1")
    result = cluster.cli("switchover", "--to", "n3")
    assert result.returncode == 0 and "controlled switchover from n1 to n3" in result.stdout, result.stdout
    after = on(cluster, "n3")
    assert after != before and not psutil.pid_exists(before)
    said = "started the local scheduler for placement version"  # once its cycle is over
    wait_for(lambda: said in cluster.log("n3"), 10, "n3's own controller saying it started it")
    finish(cluster)


def test_a_stray_on_a_standby_is_stopped_by_that_nodes_own_controller(
    make_cluster: Callable[..., Cluster], mariadb_url: str
) -> None:
    cluster = self_cluster(make_cluster, mariadb_url)
    on(cluster, "n1")
    stray = cluster.start_stray("n3")
    wait_for(lambda: stray.poll() is not None, 10, "the stray on n3 to be stopped")
    said = ("stopped the local scheduler", "stopped a scheduler on n3")  # the reconcile's, or the guard's (S2)
    wait_for(lambda: any(s in cluster.log("n3") for s in said), 10, "n3's own controller saying so")
    assert "killed stray" not in cluster.log("n1")  # the active never acts on another node
    on(cluster, "n1")
    finish(cluster)


def test_a_controller_of_another_node_control_refuses_to_start(
    make_cluster: Callable[..., Cluster], mariadb_url: str
) -> None:
    cluster = self_cluster(make_cluster, mariadb_url, size=2)
    pid = on(cluster, "n1")
    cluster.signal("n2", signal.SIGTERM)
    assert cluster.procs["n2"].wait(timeout=15) == 0
    text = cluster.config.read_text().replace("node_control = self", "node_control = ssh")
    cluster.config.write_text(text + "local_nodes = n1,n2\n")
    cluster.start("n2")
    assert cluster.procs["n2"].wait(timeout=30) == 2
    lines = [line for line in cluster.log("n2").splitlines() if "refusing to act" in line]
    assert lines and "node_control is ssh here but self for the cluster" in lines[-1]
    assert cluster.observer.pids() == (pid,)
    finish(cluster)


def test_status_is_true_within_one_renewal_of_a_start_and_of_a_death_at_poll_60(
    make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    """At poll 60 the cycle runs once a minute; each node's report goes with every renewal (2 s here)."""
    cluster: Cluster = make_cluster(f"sqlite:///{tmp_path / 'm.db'}", 1, node_control="self", poll=60, ttl=8)
    renew = 2.0  # min(poll_frequency, lease_ttl / 4)
    cluster.observer.start()
    cluster.start("n1")
    wait_for(lambda: len(cluster.observer.current()) == 1, 30, "the scheduler")
    up = time.monotonic()
    wait_for(lambda: cluster.cli("status", "--json").returncode == 0, renew + 3, "status: healthy")
    assert time.monotonic() - up < renew + 3
    (seen,) = cluster.observer.current()
    os.kill(seen.pid, signal.SIGKILL)
    gone = time.monotonic()

    def dead_one_gone() -> bool:
        """Status shows no scheduler, or already the new one (its leash had the controller restart it)."""
        out = cluster.cli("status", "--json")
        nodes = json.loads(out.stdout).get("nodes", []) if out.stdout.startswith("{") else []
        pids = [pid for node in nodes for pid in node.get("pids") or []]
        return out.returncode == 2 or (bool(pids) and seen.pid not in pids)

    wait_for(dead_one_gone, renew + 3, "status: the dead scheduler gone")
    assert time.monotonic() - gone < renew + 3
    cluster.observer.stop()
    assert cluster.observer.max_seen <= 1


def test_the_active_killed_with_the_scheduler_on_its_node_is_replaced_after_the_placement_expired(
    make_cluster: Callable[..., Cluster], mariadb_url: str
) -> None:
    cluster = self_cluster(make_cluster, mariadb_url)
    pid = on(cluster, "n1")
    cluster.signal("n1", signal.SIGKILL)
    wait_for(lambda: cluster.active() in ("n2", "n3"), 20, "a standby to become active")
    wait_for(lambda: not psutil.pid_exists(pid), 2 * cluster.ttl, "n1's leash to stop its scheduler")
    wait_for(lambda: [s.node for s in cluster.observer.current()] in (["n2"], ["n3"]), 20, "a scheduler elsewhere")
    finish(cluster)
