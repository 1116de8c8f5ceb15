"""A controller that cannot see its own scheduler does not keep its placement alive (real processes).

Its open-file limit is lowered to the descriptors it holds (``prlimit`` on its pid): it keeps its
metastore connection, but can no longer list processes (its probe is UNKNOWN) nor write its leash's deadline.
Its placement then runs out instead of being renewed for ever, which would hold every other node
off the scheduler for as long as the controller stays blind; and, the active, it then leaves the
lease to the other controller, which brings a scheduler up again.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.process.harness import Cluster
from tests.support.waiting import wait_for

pytestmark = pytest.mark.process

TTL = 4.0


def lowest_free_fd(pid: int) -> int:
    """The lowest descriptor number ``pid`` may still open, over a few looks (a probe in progress
    holds a few for a moment). A limit at that number fails every new open; those held stay."""
    lowest = 1 << 20
    for _ in range(20):
        held = {int(fd.name) for fd in Path(f"/proc/{pid}/fd").iterdir()}
        lowest = min(lowest, next(n for n in range(len(held) + 1) if n not in held))
        time.sleep(0.02)
    return lowest


@pytest.mark.skipif(not shutil.which("prlimit"), reason="needs prlimit(1)")
def test_a_controller_that_cannot_see_its_scheduler_lets_its_placement_expire(
    make_cluster: Callable[..., Cluster], mariadb_url: str
) -> None:
    cluster: Cluster = make_cluster(mariadb_url, 2, poll=0.5, ttl=TTL)
    cluster.observer.start()
    cluster.start("n1")
    wait_for(lambda: len(cluster.observer.current()) == 1, 20, "the first scheduler")
    cluster.start("n2")
    wait_for(lambda: len(cluster.status().get("controllers", [])) == 2, 20, "both controllers registered")
    assert cluster.status().get("scheduler_node") == "n1"
    pid = cluster.procs["n1"].pid
    limit = lowest_free_fd(pid)
    subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={limit}:{limit}"], check=True)
    wait_for(lambda: "cannot list processes" in cluster.log("n1"), 10, "n1's probe to fail")

    # n1 does not renew its placement while it cannot see its scheduler. Either n1 keeps the
    # lease (blind, it acts on nothing) and its placement runs out, or its
    # failing metastore calls (out of descriptors too) cost it the lease first, and n2, which sees
    # n1's scheduler over the node runner, looks after it: then n2 keeps that placement, by right.
    def settled() -> bool:
        status = cluster.status()
        return status.get("scheduler_node") != "n1" or status.get("active_controller") == "n2"

    try:
        wait_for(settled, 10 * TTL, "n1's placement to run out, or n2 to take over")
    except AssertionError as exc:
        logs = f"--- n1:\n{cluster.log('n1')[-4000:]}\n--- n2:\n{cluster.log('n2')[-3000:]}"
        raise AssertionError(f"{exc}\n{logs}") from None
    if cluster.status().get("active_controller") != "n2":
        # Its leash, which it can no longer renew either, has stopped the scheduler by then.
        assert not any(s.node == "n1" for s in cluster.observer.current())
    cluster.observer.stop()
    assert cluster.observer.max_seen <= 1, cluster.observer.history


@pytest.mark.skipif(not shutil.which("prlimit"), reason="needs prlimit(1)")
def test_a_blind_active_leaves_the_lease_and_the_scheduler_comes_up_again(
    make_cluster: Callable[..., Cluster], mariadb_url: str
) -> None:
    """The blind controller is the active one: it can place nothing (it sees no node), so it
    steps down once its placement has run out, and the standby starts the scheduler."""
    cluster: Cluster = make_cluster(mariadb_url, 2, poll=0.5, ttl=TTL)
    cluster.observer.start()
    cluster.start("n1")
    wait_for(lambda: len(cluster.observer.current()) == 1, 20, "the first scheduler")
    cluster.start("n2")
    wait_for(lambda: len(cluster.status().get("controllers", [])) == 2, 20, "both controllers registered")
    assert cluster.active() == "n1"
    pid = cluster.procs["n1"].pid
    limit = lowest_free_fd(pid)
    subprocess.run(["prlimit", f"--pid={pid}", f"--nofile={limit}:{limit}"], check=True)
    wait_for(lambda: "cannot list processes" in cluster.log("n1"), 10, "n1's probe to fail")
    blinded = time.monotonic()
    wait_for(lambda: not cluster.observer.current(), 4 * TTL, "n1's leash to stop its scheduler")
    wait_for(lambda: cluster.active() == "n2", 6 * TTL, f"n2 to take the lease\n{cluster.log('n1')[-2000:]}")
    wait_for(lambda: len(cluster.observer.current()) == 1, 6 * TTL, f"a scheduler again\n{cluster.log('n2')[-2000:]}")
    assert time.monotonic() - blinded < 12 * TTL
    assert cluster.procs["n1"].poll() is None  # still running, blind
    cluster.observer.stop()
    assert cluster.observer.max_seen <= 1, cluster.observer.history
