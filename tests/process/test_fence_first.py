"""Fence, then start, with real processes (self mode, MariaDB): the node that runs the scheduler goes
silent (its controller frozen: no report, no renewal; its leash would keep the scheduler until the
placement's deadline), ``fence_command`` really ends everything of that node (its controller, its
leash and the leash's whole tree, by pid: tests/support/pid_fence.py), and the active starts the
scheduler elsewhere at once, before that node's placement could have expired by the server's clock.

The order is read from the metastore, on the server's clock: the fence's event, then the move's,
and the move before the old placement's expiry. No duration is asserted.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from scheduler_failover_controller.config import load_config
from scheduler_failover_controller.metastore import open_metastore
from tests.process.harness import Cluster
from tests.process.test_self_mode import finish, switch_to
from tests.support import pid_fence
from tests.support.waiting import wait_for

pytestmark = pytest.mark.process

TTL = 30.0  # the lease: long, so that waiting for it and not waiting cannot be mistaken on a loaded host
POLL = 1.0
FENCE = Path(pid_fence.__file__)


def node_processes(cluster: Cluster, node: str, scheduler: int) -> list[int]:
    """What runs on ``node``: its controller, and the leash of its scheduler with all below it."""
    proc = psutil.Process(scheduler)
    leashes = [p for p in proc.parents() if "scheduler_failover_controller.leash" in " ".join(p.cmdline())]
    assert leashes, f"no leash above scheduler {scheduler}"
    leash = leashes[0]
    return [cluster.procs[node].pid, leash.pid, *(p.pid for p in leash.children(recursive=True))]


def test_a_fenced_node_is_replaced_before_its_placement_could_expire_mariadb(
    make_cluster: Callable[..., Cluster], mariadb_url: str, tmp_path: Path
) -> None:
    cluster: Cluster = make_cluster(mariadb_url, 3, node_control="self", poll=POLL, ttl=TTL)
    records = tmp_path / "fence"
    records.mkdir()
    with cluster.config.open("a") as cfg:
        cfg.write(f"fence_command = {sys.executable} {FENCE} {records}\nmetastore_timeout = 1\n")
    cluster.extra_env["PYTHONPROFILEIMPORTTIME"] = "1"  # for finish(): no controller ever loads SSH
    cluster.observer.start()
    cluster.start("n1")
    wait_for(lambda: len(cluster.observer.current()) == 1, 30, "the first scheduler")
    for node in ("n2", "n3"):
        cluster.start(node)
    wait_for(lambda: all(n.get("report_age_s") is not None for n in cluster.status().get("nodes", [])), 30, "reports")
    old = switch_to(cluster, "n2")
    pid_fence.record(records, "n2", node_processes(cluster, "n2", old))
    config = load_config(str(cluster.config), env={"AIRFLOW__SCHEDULER_FAILOVER__CURRENT_HOST": "n1"})
    store = open_metastore(config)
    try:
        cluster.signal("n2", signal.SIGSTOP)  # silent from now on; its leash keeps the scheduler up
        # A renewal still in flight could only move the expiry later: this one is the stricter bound.
        frozen = store.read_state().placement
        assert frozen.node == "n2" and frozen.valid, frozen
        wait_for(
            lambda: [s.node for s in cluster.observer.current()] in (["n1"], ["n3"]),
            TTL + 30,
            "the scheduler elsewhere",
        )
        # The move's event is written once the start is confirmed, just after the observer saw it.
        wait_for(lambda: any("fence_command fenced n2" in e.message for e in store.events(200)), 15, "the move")
        events = store.events(200)  # oldest first
    finally:
        store.close()
    assert (records / "n2.fenced").exists(), "fence_command never ended n2"
    said = [(e.kind, e.message) for e in events]
    fenced = next((i for i, (kind, text) in enumerate(said) if text == "fence_command for n2 succeeded"), None)
    moved = next((i for i, (kind, text) in enumerate(said) if "fence_command fenced n2" in text), None)
    assert fenced is not None and moved is not None and fenced < moved, said[-10:]
    assert events[moved].kind == "move"
    # The move came before n2's placement could have run out (both on the server's clock).
    assert events[moved].at < frozen.expires_at, (events[moved].at, frozen.expires_at)
    assert not psutil.pid_exists(old) or psutil.Process(old).status() == psutil.STATUS_ZOMBIE
    finish(cluster)
